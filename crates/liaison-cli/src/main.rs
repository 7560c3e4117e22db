//! `liaison`: the one binary. Parses the command line, sets up logging, and hands over to
//! the library crates; nothing here decides anything about messages.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use liaison_core::{AgencyCode, Registry};
use liaison_ledger::TraceKey;
use liaison_pki::{PkiLayout, PkiOptions};
use liaison_server::Config;

/// Every message allocates buffers on several threads (TLS, HTTP, JSON, AMQP, SQL);
/// mimalloc's thread-local heaps keep that off glibc's contended arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "liaison",
    version,
    about = "Inter-agency message broker: checked, recorded, delivered"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// TOML configuration file (see deploy/liaison.example.toml); LIAISON_* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), std::env::vars())?)
    }

    fn layered(&self) -> anyhow::Result<liaison_server::config::Layered> {
        Ok(Config::layered(self.config.as_deref(), std::env::vars())?)
    }
}

/// The agency registry a PKI command names, else the one built into the binary.
fn registry_from(path: Option<&std::path::Path>) -> anyhow::Result<Registry> {
    Ok(Config {
        registry: path.map(ToOwned::to_owned),
        ..Config::default()
    }
    .load_registry()?)
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: HTTPS gateway, outbox relay, operations port.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the effective configuration (passwords masked) and exit, as
        /// `liaison config show` does.
        #[arg(long)]
        print_config: bool,
    },
    /// The configuration: built-in defaults, then the file, then LIAISON_* variables.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start the local services, make a development PKI, run the broker, and send a lead
    /// from the environment bureau to the procuratorate and a receipt back.
    Demo {
        #[command(flatten)]
        config: ConfigArg,
        /// Exit after the scenario: 0 if every step did what it should.
        #[arg(long)]
        once: bool,
    },
    /// Measure throughput and latency against the raw RabbitMQ floor, in one run, in a
    /// private vhost and database on the local services.
    Bench {
        #[command(flatten)]
        config: ConfigArg,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// A short run (a tenth of the messages) for a quick look.
        #[arg(long)]
        quick: bool,
        /// Pad each lead to about this many bytes (up to about 12,000; the schema caps the
        /// harm description), to see how cost grows with message size.
        #[arg(long, value_name = "BYTES", default_value_t = 0)]
        message_bytes: usize,
        /// Add this many synthetic agencies to the registry (each with its quorum queue),
        /// to see how cost grows with the number of agencies.
        #[arg(long, value_name = "N", default_value_t = 0)]
        agencies: usize,
        /// The agencies post over HTTP/1.1 keep-alive connections, one per request in
        /// flight, instead of HTTP/2 connections.
        #[arg(long)]
        http1: bool,
        /// HTTP/2 connections the agencies' requests share, dealt to eight agencies in turn
        /// (8: one each; 1: one agency posts everything). With --http1, the clients.
        #[arg(long, value_name = "N", default_value_t = 8,
              value_parser = clap::value_parser!(u16).range(1..))]
        connections: u16,
        /// Requests in flight in the saturated full-path run (and the gateway-alone run).
        #[arg(long, value_name = "N", default_value_t = 256,
              value_parser = clap::value_parser!(u16).range(1..))]
        in_flight: u16,
        /// Instead of the throughput run: post this many leads and report what they cost
        /// on disk (each table, the WAL) and in a RabbitMQ queue (docs/capacity.md).
        #[arg(long, value_name = "MESSAGES")]
        capacity: Option<usize>,
    },
    /// The benchmark's load generator (the agencies' clients and the consuming agency),
    /// which `liaison bench` starts as a separate process and talks to over stdin/stdout.
    #[command(name = "bench-load", hide = true)]
    BenchLoad {
        /// The run, as JSON.
        #[arg(long)]
        run: String,
    },
    /// Development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Post a CloudEvent file as an agency, with that agency's client certificate.
    Submit {
        #[command(flatten)]
        config: ConfigArg,
        /// The sending agency (its certificate is taken from the PKI directory).
        #[arg(long = "as", value_name = "AGENCY")]
        agency: String,
        /// The CloudEvent (structured JSON) to post.
        file: PathBuf,
        /// Gateway URL; defaults to https://localhost:<port of `listen`>.
        #[arg(long)]
        url: Option<String>,
    },
    /// A witness of the ledger: checks each new checkpoint against the last it cosigned,
    /// and cosigns it (run by an auditor).
    Witness {
        #[command(subcommand)]
        command: liaison_cli::witness_cmd::WitnessCommand,
    },
    /// Erase a case's personal data (PIPL Art. 47): records a `case.erased` entry and
    /// destroys the data keys of its messages; or list the cases due for it.
    Erase {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: liaison_cli::erasure_cmd::EraseArgs,
    },
    /// The key-encryption keys that seal message bodies: new, rotate, status.
    Keys {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::erasure_cmd::KeysCommand,
    },
    /// Cases: show one, list them, or replay them from the ledger's entries.
    Cases {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::cases_cmd::CasesCommand,
    },
    /// The ledger entries of a message id or a case reference, in order.
    Trace {
        #[command(flatten)]
        config: ConfigArg,
        /// A message id (UUID) or a case reference.
        key: String,
        /// Print JSON (one array of entries) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The periodic report (通报) of a period, per agency and flow, from the ledger's
    /// entries (or an export's, with no database).
    Report {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: liaison_cli::report_cmd::ReportArgs,
    },
    /// The local RabbitMQ and PostgreSQL this machine runs for development.
    Services {
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// The audit ledger: verify it (or an export, offline), export it, replay it; migrate
    /// its schema (as the database owner).
    Ledger {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::ledger_cmd::LedgerCommand,
    },
    /// The message catalogue.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// The routing and authorization policy.
    Policy {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::policy_cmd::PolicyCommand,
    },
    /// RabbitMQ set-up for the registry.
    Amqp {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: AmqpCommand,
    },
    /// Legal periods: when a period counted as the procedure laws count it runs out.
    Calendar {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::calendar_cmd::CalendarCommand,
    },
    /// The dead-letter queue liaison.dead.
    Deadletters {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: liaison_cli::deadletters::DeadLettersCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the configuration in effect as TOML, passwords masked, with where each value
    /// came from: the default, the file, or the environment variable.
    Show {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum AmqpCommand {
    /// Write RabbitMQ definitions (users, vhost, permissions, exchanges, queues, policies)
    /// for `rabbitmqctl import_definitions`: each agency may only publish to intake and
    /// read its own queue.
    Definitions(liaison_cli::amqp_defs::DefinitionsArgs),
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create a development CA, a server certificate, one client certificate per agency of
    /// the registry, and the ledger signing key. DIR is the broker's TLS folder; the CA key
    /// goes to DIR/ca/ and the agency keys to DIR/agencies/, which the broker never reads.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The agency registry; default: the demo county's, built into the binary.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
        /// The checkpoints' origin, as [ledger] origin will say: the name in the verifier
        /// key DIR/ledger-signing.vkey that auditors are given.
        #[arg(long, value_name = "NAME", env = "LIAISON_LEDGER__ORIGIN", default_value = liaison_server::config::DEMO_ORIGIN)]
        origin: String,
        /// The password of the agencies' PKCS#12 files (`agencies/<code>.p12`, for
        /// importing into a browser); default: a new random one, printed.
        #[arg(long, value_name = "PASSWORD", env = "LIAISON_P12_PASSWORD")]
        p12_password: Option<String>,
    },
    /// Write the C2SP verifier key of the PKI's ledger key for ORIGIN to
    /// DIR/ledger-signing.vkey and print it: for a PKI made before it existed, or after
    /// [ledger] origin changed. Give it to auditors.
    Vkey {
        /// The PKI directory made by `liaison pki init`.
        #[arg(long, value_name = "DIR", default_value = ".liaison/pki")]
        dir: PathBuf,
        /// The checkpoints' origin, as [ledger] origin says.
        #[arg(long, value_name = "NAME", env = "LIAISON_LEDGER__ORIGIN", default_value = liaison_server::config::DEMO_ORIGIN)]
        origin: String,
    },
    /// Certify a key an agency made itself: sign its PKCS#10 certificate request (PEM)
    /// with the CA. Only the request's public key is used; the certificate names the
    /// agency (SAN URI urn:liaison:agency:CODE) and allows client authentication only.
    Issue {
        /// The agency's certificate signing request (PEM).
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// The agency (must be in the registry).
        #[arg(long, value_name = "CODE")]
        agency: String,
        /// Where to write the certificate. Default: DIR/agencies/CODE.pem, which `pki
        /// revoke --agency` revokes; an unrevoked certificate there is not replaced.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The PKI directory made by `liaison pki init` (the CA is in DIR/ca/).
        #[arg(long, value_name = "DIR", default_value = ".liaison/pki")]
        dir: PathBuf,
        /// The agency registry; default: the demo county's, built into the binary.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
        /// Validity of the certificate, in days from now.
        #[arg(long, value_name = "DAYS", default_value_t = 825)]
        days: u32,
    },
    /// Revoke an agency's current client certificate (or the certificate in --cert): add
    /// it to `crl.pem` in the PKI directory, signed by the CA. A running gateway refuses it
    /// once it has read the new CRL (within `revocation.reload_interval`, or on SIGHUP).
    Revoke {
        #[arg(long, value_name = "CODE", required_unless_present = "cert")]
        agency: Option<String>,
        /// A certificate file to revoke instead of DIR/agencies/CODE.pem.
        #[arg(long, value_name = "FILE", conflicts_with = "agency")]
        cert: Option<PathBuf>,
        /// The PKI directory made by `liaison pki init`.
        #[arg(long, value_name = "DIR", default_value = ".liaison/pki")]
        dir: PathBuf,
    },
    /// Sign the CRL again with the same entries and a new validity: a CRL past its
    /// nextUpdate makes the broker report itself not ready.
    RefreshCrl {
        /// The PKI directory made by `liaison pki init`.
        #[arg(long, value_name = "DIR", default_value = ".liaison/pki")]
        dir: PathBuf,
        /// Days until the next update is due.
        #[arg(long, value_name = "DAYS", default_value_t = 365)]
        days: u32,
    },
    /// Issue a client certificate for an auditor (SAN URI urn:liaison:auditor:NAME): it
    /// reads checkpoints, proofs and ledger entries and posts witness cosignatures once
    /// the broker's `auditors` lists NAME. Writes DIR/auditors/NAME.pem and NAME.key.
    Auditor {
        #[arg(long)]
        name: String,
        /// The PKI directory made by `liaison pki init`.
        #[arg(long, value_name = "DIR", default_value = ".liaison/pki")]
        dir: PathBuf,
        /// Validity of the certificate, in days from now.
        #[arg(long, value_name = "DAYS", default_value_t = 825)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Check that both answer on their standard ports; start them when installed but down.
    Ensure,
}

#[derive(Subcommand)]
enum SchemasCommand {
    /// List the message types of the catalogue.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Compile every schema, check every example behaves as labelled, and check that every
    /// type the policy names exists.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write the catalogue built into the binary (schemas and their examples) to DIR, to
    /// edit and name as `schemas` in the configuration.
    Export {
        /// A directory that does not exist yet or is empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    liaison_server::tls::install_crypto_provider();
    let cli = Cli::parse();
    // `serve` installs the subscriber itself, once its configuration (which may name an
    // OTLP endpoint) is loaded; the interactive commands log warnings only and print their
    // own story.
    let _telemetry = match &cli.command {
        Command::Serve { .. } => None,
        _ => match install_tracing("warn", &Default::default()) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (`LIAISON_LOG`, an `EnvFilter`, overrides `default_filter`; JSON lines
/// with `LIAISON_LOG_FORMAT=json`); spans are exported as `telemetry` says.
fn install_tracing(
    default_filter: &str,
    telemetry: &liaison_server::config::TelemetryConfig,
) -> anyhow::Result<liaison_server::telemetry::subscriber::TelemetryGuard> {
    let json = std::env::var("LIAISON_LOG_FORMAT").is_ok_and(|f| f == "json");
    liaison_server::telemetry::subscriber::install_subscriber(default_filter, json, telemetry)
        .map_err(anyhow::Error::msg)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            print_config,
        } => {
            if print_config {
                print!("{}", config.layered()?.show());
                return Ok(());
            }
            let config = config.load()?;
            let _telemetry = install_tracing("warn,liaison=info", &config.telemetry)?;
            liaison_server::run(config, shutdown_signal()).await?;
        }
        Command::Config {
            command: ConfigCommand::Show { config },
        } => print!("{}", config.layered()?.show()),
        Command::Bench {
            config,
            json,
            quick,
            message_bytes,
            agencies,
            http1,
            connections,
            in_flight,
            capacity,
        } => {
            if let Some(messages) = capacity {
                let report =
                    liaison_devtools::bench::capacity(&config.load()?, messages, message_bytes)
                        .await?;
                print!("{}", report.text());
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                return Ok(());
            }
            let mut options = liaison_devtools::bench::BenchOptions {
                message_bytes,
                extra_agencies: agencies,
                http: if http1 {
                    liaison_devtools::bench::Http::Http1
                } else {
                    liaison_devtools::bench::Http::Http2
                },
                connections: usize::from(connections),
                full_concurrency: usize::from(in_flight),
                ..liaison_devtools::bench::BenchOptions::default()
            };
            if quick {
                options.raw_messages /= 10;
                options.ledger_appends /= 10;
                options.full_messages /= 10;
                options.latency_duration /= 4;
                options.alone_messages /= 5;
                options.compare_messages /= 10;
            }
            let report = liaison_devtools::bench::run(&options, &config.load()?).await?;
            print!("{}", report.text());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::BenchLoad { run } => liaison_devtools::bench::serve_load(&run).await?,
        Command::Demo { config, once } => {
            liaison_devtools::demo::run(
                config.load()?,
                once,
                liaison_devtools::demo::Renderers {
                    trace: liaison_cli::trace::render_text,
                    case: liaison_cli::cases_cmd::render_case,
                },
            )
            .await?
        }
        Command::Pki {
            command:
                PkiCommand::Init {
                    out,
                    registry,
                    origin,
                    p12_password,
                },
        } => {
            let registry = registry_from(registry.as_deref())?;
            let options = PkiOptions {
                origin,
                ..PkiOptions::default()
            };
            let summary = liaison_pki::init(&out, &registry, &options)?;
            let layout = PkiLayout::new(&summary.dir);
            let vkey = std::fs::read_to_string(layout.ledger_verifier_key())
                .with_context(|| format!("reading {}", layout.ledger_verifier_key().display()))?;
            println!(
                "development PKI written to {}: CA, server certificate, {} agency certificates, ledger signing key",
                summary.dir.display(),
                summary.agencies
            );
            println!(
                "ledger verifier key for auditors ({}):\n{}",
                layout.ledger_verifier_key().display(),
                vkey.trim_end()
            );
            let (password, chosen) = match p12_password {
                Some(password) => (password, true),
                None => (liaison_pki::random_password()?, false),
            };
            let bundles = liaison_pki::write_agency_pkcs12s(&layout, &registry, &password)?;
            println!(
                "{} PKCS#12 files for browsers in {} (<agency>.p12), password {}",
                bundles.len(),
                layout.agencies_dir().display(),
                if chosen {
                    "as given".to_owned()
                } else {
                    format!("{password} (keep it; it is not stored)")
                }
            );
        }
        Command::Pki {
            command: PkiCommand::Vkey { dir, origin },
        } => {
            let layout = PkiLayout::new(dir);
            let vkey = liaison_pki::write_verifier_key(&layout, &origin)?;
            println!(
                "{vkey}\n(written to {}; give it to auditors)",
                layout.ledger_verifier_key().display()
            );
        }
        Command::Pki {
            command:
                PkiCommand::Issue {
                    csr,
                    agency,
                    out,
                    dir,
                    registry,
                    days,
                },
        } => {
            let agency = AgencyCode::new(agency)?;
            let registry = registry_from(registry.as_deref())?;
            let layout = PkiLayout::new(dir);
            let request = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let out = match out {
                Some(out) => out,
                None => {
                    let default = layout.agency_cert(&agency);
                    // Replacing the certificate `pki revoke --agency` would revoke must
                    // not leave the old one valid and forgotten.
                    if default.exists() && !liaison_pki::crl::is_revoked(&layout, &default)? {
                        anyhow::bail!(
                            "{} holds a certificate of {agency} that is not revoked: revoke it first (`liaison pki revoke --agency {agency}`), or write the new one elsewhere with --out",
                            default.display()
                        );
                    }
                    default
                }
            };
            let cert =
                liaison_pki::issue_from_csr(&layout.dir, &registry, &agency, &request, days)?;
            std::fs::write(&out, cert).with_context(|| format!("writing {}", out.display()))?;
            // A development key left beside a replaced certificate belongs to a revoked one.
            let stale_key = layout.agency_key(&agency);
            if out == layout.agency_cert(&agency) && stale_key.exists() {
                std::fs::remove_file(&stale_key)
                    .with_context(|| format!("removing {}", stale_key.display()))?;
                println!(
                    "removed {}: it belonged to the revoked certificate",
                    stale_key.display()
                );
            }
            println!(
                "certificate of agency {agency} written to {} (valid {days} days)",
                out.display()
            );
        }
        Command::Pki {
            command: PkiCommand::Revoke { agency, cert, dir },
        } => {
            let layout = PkiLayout::new(dir);
            let (revoked, whose) = match (agency, cert) {
                (_, Some(cert)) => (
                    liaison_pki::crl::revoke_certificate(&layout, &cert)?,
                    cert.display().to_string(),
                ),
                (Some(agency), None) => {
                    let agency = AgencyCode::new(agency)?;
                    (
                        liaison_pki::crl::revoke(&layout, &agency)?,
                        format!("agency {agency}"),
                    )
                }
                (None, None) => anyhow::bail!("name an agency with --agency or a file with --cert"),
            };
            println!(
                "revoked certificate {} of {whose}; {} lists {} certificate(s); a running broker enforces it once it reads the file (reload interval, or SIGHUP)",
                revoked.serial,
                revoked.crl.display(),
                revoked.total
            );
        }
        Command::Pki {
            command: PkiCommand::RefreshCrl { dir, days },
        } => {
            let path = liaison_pki::crl::refresh_for_days(&PkiLayout::new(dir), days)?;
            println!(
                "{} signed again, next update in {days} days",
                path.display()
            );
        }
        Command::Pki {
            command: PkiCommand::Auditor { name, dir, days },
        } => {
            let (cert, key) = liaison_pki::issue_auditor_cert(&dir, &name, days)?;
            let out = dir.join("auditors");
            std::fs::create_dir_all(&out)?;
            let (cert_path, key_path) = (
                out.join(format!("{name}.pem")),
                out.join(format!("{name}.key")),
            );
            std::fs::write(&cert_path, cert)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(&key_path)?, key.as_bytes())?;
            println!(
                "✓ auditor {name}: {} and {} (list {name} under `auditors` in the broker's configuration)",
                cert_path.display(),
                key_path.display()
            );
        }
        Command::Submit {
            config,
            agency,
            file,
            url,
        } => {
            let config = config.load()?;
            let agency = AgencyCode::new(agency)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let base = url.unwrap_or_else(|| format!("https://localhost:{}", config.listen.port()));
            let client = liaison_client::AgencyClient::new(
                &PkiLayout {
                    dir: config.tls_dir.clone(),
                },
                &agency,
                &base,
            )?;
            let answer = client.submit_bytes(bytes).await?;
            println!(
                "{} {}",
                answer.status,
                serde_json::to_string_pretty(&answer.body)?
            );
            anyhow::ensure!(answer.status == 202, "not accepted");
        }
        Command::Cases { config, command } => {
            let config = config.load()?;
            liaison_cli::cases_cmd::run(&config, command).await?;
        }
        Command::Erase { config, args } => {
            let config = config.load()?;
            liaison_cli::erasure_cmd::erase(&config, args).await?;
        }
        Command::Keys { config, command } => {
            let config = config.load()?;
            liaison_cli::erasure_cmd::keys(&config, command).await?;
        }
        Command::Trace { config, key, json } => {
            let config = config.load()?;
            let ledger = liaison_cli::open_ledger(&config).await?;
            let entries = ledger.trace(&TraceKey::parse(&key)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                anyhow::bail!("the ledger holds nothing for {key}");
            } else {
                print!("{}", liaison_cli::trace::render_text(&entries));
            }
        }
        Command::Witness { command } => {
            liaison_cli::witness_cmd::run(command).await?;
        }
        Command::Report { config, args } => {
            liaison_cli::report_cmd::run(&config.load()?, args).await?;
        }
        Command::Ledger { config, command } => {
            liaison_cli::ledger_cmd::run(config.load()?, command).await?;
        }
        Command::Services {
            command: ServicesCommand::Ensure,
        } => {
            liaison_devtools::services::ensure_all()?;
            println!("PostgreSQL and RabbitMQ are up");
        }
        Command::Schemas {
            command: SchemasCommand::Check { config },
        } => {
            let config = config.load()?;
            let source = config.catalogue_source()?;
            let catalogue = liaison_schema::Catalogue::from_source(&source)?;
            let examples = liaison_schema::load_examples_from(&source)?;
            let summary = catalogue.check_examples(&examples);
            let failures: Vec<String> = summary.failures.iter().map(|f| f.to_string()).collect();
            let registry = config.load_registry()?;
            let policy = config.load_policy(&registry)?;
            let unknown: Vec<&str> = policy
                .types()
                .filter(|t| catalogue.get(t).is_none())
                .collect();
            for f in &failures {
                eprintln!("✗ {f}");
            }
            for t in &unknown {
                eprintln!(
                    "✗ {} names type {t}, which the catalogue lacks",
                    config.policy_origin()
                );
            }
            anyhow::ensure!(
                failures.is_empty() && unknown.is_empty(),
                "{} example(s) and {} policy type(s) failed",
                failures.len(),
                unknown.len()
            );
            let policy_types: std::collections::BTreeSet<&str> = policy.types().collect();
            println!(
                "✓ {} types compiled; {} examples ({} valid, {} invalid) behave as labelled; the {} types the policy names all exist",
                catalogue.types().count(),
                examples.len(),
                summary.valid,
                summary.invalid,
                policy_types.len()
            );
            let unrouted: Vec<&str> = catalogue
                .types()
                .map(|t| t.name.as_str())
                .filter(|name| !policy_types.contains(name))
                .collect();
            if !unrouted.is_empty() {
                println!("  no policy rule sends: {}", unrouted.join(", "));
            }
        }
        Command::Policy { config, command } => {
            liaison_cli::policy_cmd::run(command, &config.load()?)?;
        }
        Command::Amqp {
            config,
            command: AmqpCommand::Definitions(args),
        } => {
            let config = config.load()?;
            let registry = config.load_registry()?;
            liaison_cli::amqp_defs::run(&args, &registry, &config)?;
        }
        Command::Calendar { config, command } => {
            liaison_cli::calendar_cmd::run(command, config.load()?.calendar_dir)?;
        }
        Command::Deadletters { config, command } => {
            use liaison_cli::deadletters::{self, DeadLettersCommand};
            let config = config.load()?;
            let bus = liaison_bus::Bus::connect(config.bus_config()).await?;
            match command {
                DeadLettersCommand::List { max, json } => {
                    let listed = deadletters::list(&bus, max).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&listed)?);
                    } else {
                        print!("{}", deadletters::render(&listed));
                    }
                }
                DeadLettersCommand::Redrive { id, all } => {
                    anyhow::ensure!(
                        id.is_some() || all,
                        "name a message with --id, or pass --all"
                    );
                    let ledger = liaison_cli::open_ledger(&config).await?;
                    let report = deadletters::redrive(&bus, &ledger, id).await?;
                    for (message, recipient) in &report.sent {
                        println!(
                            "redriven {} → {recipient}",
                            message.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
                        );
                    }
                    for (message, why) in &report.unmatched {
                        println!(
                            "left {}: matches no delivery in the ledger ({why})",
                            message.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
                        );
                    }
                    println!(
                        "{} redriven, {} left in liaison.dead",
                        report.sent.len(),
                        report.left
                    );
                }
            }
            bus.close().await;
        }
        Command::Schemas {
            command: SchemasCommand::List { config },
        } => {
            let catalogue = config.load()?.load_catalogue()?;
            for t in catalogue.types() {
                println!("{:<24} {}", t.name, t.title);
            }
        }
        Command::Schemas {
            command: SchemasCommand::Export { out },
        } => {
            let occupied =
                std::fs::read_dir(&out).is_ok_and(|mut entries| entries.next().is_some());
            anyhow::ensure!(
                !occupied,
                "{} is not empty: export into a new directory, so that no edited file is replaced",
                out.display()
            );
            let written = liaison_server::defaults::schemas()
                .write_to(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "the built-in catalogue written to {} ({written} files); name it as `schemas` in the configuration",
                out.display()
            );
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
