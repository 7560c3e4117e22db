//! `liaison amqp definitions`: a RabbitMQ definitions file for the registry, to import
//! with `rabbitmqctl import_definitions FILE`.
//!
//! It holds the virtual host, the exchanges and quorum queues exactly as the broker
//! declares them, a policy restating the working queues' dead-lettering, one user per
//! agency (`<prefix><code>`) and the broker's user. Permissions are the security boundary:
//! an agency user may configure nothing, write only to the `liaison.intake` exchange, and
//! read only its own queue `liaison.agency.<code>`. RabbitMQ itself checks the `user_id`
//! of what it publishes, which is how the broker knows the sender. Each agency user also
//! has RabbitMQ user limits (`max-connections`, `max-channels`), so that one agency
//! cannot exhaust the broker's connections or channels, and `liaison.intake` is bounded
//! (`x-max-length`, `x-max-length-bytes`, refusing publishes past them); the broker
//! declares it with its `intake.queue_max_length` and `intake.queue_max_bytes`, which
//! must equal `--intake-max-length` and `--intake-max-bytes` here (RabbitMQ refuses a
//! redeclaration with other arguments). Those values, the delivery limit and the user
//! prefix default to the broker's configuration (`liaison amqp definitions --config FILE`
//! reads the same file and `LIAISON_*` variables as `liaison serve`), so the two agree
//! unless told otherwise.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lapin::types::{AMQPValue, FieldTable};
use liaison_bus::{
    EXCHANGE_INTAKE, EXCHANGES, IntakeQueueLimits, QUEUE_DEAD, QUEUE_DEAD_LEDGER, agency_queue,
    queue_plan,
};
use liaison_core::audit::sha256;
use liaison_core::{AgencyCode, Registry};
use liaison_server::Config;
use serde_json::{Map, Value, json};
use uuid::Uuid;

#[derive(Args, Clone, Debug)]
pub struct DefinitionsArgs {
    /// Where to write the definitions (JSON); `-` for standard output.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub out: String,
    /// The virtual host (as in the broker's `amqp_url`).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// Agency `<code>` gets the user `<prefix><code>`. Default: the configured
    /// `intake.user_prefix`.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// The broker's own user: full permissions on the virtual host.
    #[arg(long, default_value = "liaison")]
    pub broker_user: String,
    /// `x-delivery-limit` of the working queues. Default: the configured
    /// `bus.delivery_limit`, which the broker declares them with.
    #[arg(long)]
    pub delivery_limit: Option<u32>,
    /// `x-max-length` of `liaison.intake`. Default: the configured `intake.queue_max_length`.
    #[arg(long)]
    pub intake_max_length: Option<u32>,
    /// `x-max-length-bytes` of `liaison.intake`. Default: the configured
    /// `intake.queue_max_bytes`.
    #[arg(long)]
    pub intake_max_bytes: Option<u64>,
    /// RabbitMQ `max-connections` of each agency user.
    #[arg(long, default_value_t = 8)]
    pub user_max_connections: u32,
    /// RabbitMQ `max-channels` of each agency user (across its connections).
    #[arg(long, default_value_t = 64)]
    pub user_max_channels: u32,
    /// Write a random password for every user to this file (JSON, user → password, mode
    /// 0600); the definitions then hold only salted hashes. Without it the users have no
    /// password and can only log in with a client certificate (EXTERNAL).
    #[arg(long, value_name = "FILE")]
    pub passwords: Option<PathBuf>,
}

/// The definitions document and, when asked for, the generated passwords.
pub struct Definitions {
    pub document: Value,
    pub passwords: Vec<(String, String)>,
}

pub fn run(args: &DefinitionsArgs, registry: &Registry, config: &Config) -> anyhow::Result<()> {
    let settings = Settings::of(args, config);
    // The broker declares its queues with its own configuration; RabbitMQ refuses to
    // redeclare a queue with other arguments, so a difference stops the broker at start.
    let differences = [
        (
            "--delivery-limit",
            "bus.delivery_limit",
            u64::from(settings.delivery_limit),
            u64::from(config.bus.delivery_limit),
        ),
        (
            "--intake-max-length",
            "intake.queue_max_length",
            u64::from(settings.intake.max_length),
            u64::from(config.intake.queue_max_length),
        ),
        (
            "--intake-max-bytes",
            "intake.queue_max_bytes",
            settings.intake.max_bytes,
            config.intake.queue_max_bytes,
        ),
    ];
    for (flag, key, given, configured) in differences {
        if given != configured {
            eprintln!(
                "warning: {flag} {given} differs from the broker's {key} = {configured}: a broker so configured cannot declare its queues; set {key} to {given} too"
            );
        }
    }
    let definitions = build(args, registry, config);
    let text = serde_json::to_string_pretty(&definitions.document)?;
    if args.out == "-" {
        println!("{text}");
    } else {
        std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out))?;
        eprintln!(
            "RabbitMQ definitions for {} agencies written to {}",
            registry.codes().count(),
            args.out
        );
    }
    if let Some(path) = &args.passwords {
        let map: Map<String, Value> = definitions
            .passwords
            .iter()
            .map(|(user, password)| (user.clone(), json!(password)))
            .collect();
        write_secret(path, &serde_json::to_vec_pretty(&map)?)?;
        eprintln!(
            "passwords of {} users written to {}",
            map.len(),
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by the owner only, also when the file already
/// existed with a wider mode (the open mode applies only to new files): the permissions
/// are narrowed before the passwords are written.
pub(crate) fn write_secret(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
    }
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Escapes a name for a RabbitMQ permission regular expression.
fn regex_literal(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ password)), 4-byte salt.
pub fn password_hash(password: &str, salt: [u8; 4]) -> String {
    use base64::Engine;
    let mut salted = salt.to_vec();
    salted.extend_from_slice(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&sha256(&salted));
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::Boolean(b) => json!(b),
        other => json!(format!("{other:?}")),
    }
}

fn table_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
            .collect(),
    )
}

/// The queue and user settings of the definitions: the command line's, else the broker's
/// configured ones.
struct Settings {
    user_prefix: String,
    delivery_limit: u32,
    intake: IntakeQueueLimits,
}

impl Settings {
    fn of(args: &DefinitionsArgs, config: &Config) -> Self {
        Self {
            user_prefix: args
                .user_prefix
                .clone()
                .unwrap_or_else(|| config.intake.user_prefix.clone()),
            delivery_limit: args.delivery_limit.unwrap_or(config.bus.delivery_limit),
            intake: IntakeQueueLimits {
                max_length: args
                    .intake_max_length
                    .unwrap_or(config.intake.queue_max_length),
                max_bytes: args
                    .intake_max_bytes
                    .unwrap_or(config.intake.queue_max_bytes),
            },
        }
    }
}

pub fn build(args: &DefinitionsArgs, registry: &Registry, config: &Config) -> Definitions {
    let settings = Settings::of(args, config);
    let vhost = args.vhost.as_str();
    let codes: Vec<&AgencyCode> = registry.codes().collect();
    let mut passwords = Vec::new();
    let mut user = |name: String, tags: &str, limits: Value| -> Value {
        let hash = match &args.passwords {
            Some(_) => {
                let password = Uuid::new_v4().simple().to_string();
                let salt_source = Uuid::new_v4();
                let salt = [
                    salt_source.as_bytes()[0],
                    salt_source.as_bytes()[1],
                    salt_source.as_bytes()[2],
                    salt_source.as_bytes()[3],
                ];
                let hash = password_hash(&password, salt);
                passwords.push((name.clone(), password));
                hash
            }
            None => String::new(),
        };
        json!({
            "name": name,
            "password_hash": hash,
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": tags,
            "limits": limits,
        })
    };
    let mut users = vec![user(args.broker_user.clone(), "", json!({}))];
    // Any agency user may connect; these keep one from using up the broker's connections
    // and channels (RabbitMQ refuses the connection or channel past them).
    let agency_limits = json!({
        "max-connections": args.user_max_connections,
        "max-channels": args.user_max_channels,
    });
    let mut permissions = vec![json!({
        "user": args.broker_user, "vhost": vhost,
        "configure": ".*", "write": ".*", "read": ".*",
    })];
    for code in &codes {
        let name = format!("{}{code}", settings.user_prefix);
        users.push(user(name.clone(), "", agency_limits.clone()));
        permissions.push(json!({
            "user": name,
            "vhost": vhost,
            // Nothing to declare or delete; publish only to intake; consume only its queue.
            "configure": "^$",
            "write": format!("^{}$", regex_literal(EXCHANGE_INTAKE)),
            "read": format!("^{}$", regex_literal(&agency_queue(code))),
        }));
    }
    let exchanges: Vec<Value> = EXCHANGES
        .iter()
        .map(|(name, kind)| {
            json!({
                "name": name, "vhost": vhost, "type": kind, "durable": true,
                "auto_delete": false, "internal": false, "arguments": {},
            })
        })
        .collect();
    let plan = queue_plan(&codes, settings.delivery_limit, settings.intake);
    let queues: Vec<Value> = plan
        .iter()
        .map(|q| {
            json!({
                "name": q.name, "vhost": vhost, "durable": true, "auto_delete": false,
                "arguments": table_json(&q.arguments),
            })
        })
        .collect();
    let bindings: Vec<Value> = plan
        .iter()
        .map(|q| {
            json!({
                "source": q.exchange, "vhost": vhost, "destination": q.name,
                "destination_type": "queue", "routing_key": q.routing_key, "arguments": {},
            })
        })
        .collect();
    // Restates the working queues' dead-lettering for any queue of the namespace, while
    // the dead-letter queues themselves never dead-letter (nothing may loop).
    let policies = vec![json!({
        "vhost": vhost,
        "name": "liaison-working-queues",
        "pattern": format!(
            "^liaison\\.(?!{}$|{}$)",
            regex_literal(QUEUE_DEAD.trim_start_matches("liaison.")),
            regex_literal(QUEUE_DEAD_LEDGER.trim_start_matches("liaison."))
        ),
        "apply-to": "queues",
        "priority": 0,
        "definition": {
            "dead-letter-exchange": liaison_bus::EXCHANGE_DLX,
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
            "delivery-limit": settings.delivery_limit,
        },
    })];
    Definitions {
        document: json!({
            "rabbit_version": "3.10.0",
            "users": users,
            "vhosts": [{ "name": vhost }],
            "permissions": permissions,
            "topic_permissions": [],
            "parameters": [],
            "global_parameters": [],
            "policies": policies,
            "exchanges": exchanges,
            "queues": queues,
            "bindings": bindings,
        }),
        passwords,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_passwords_file_is_owner_only_even_when_it_existed_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, b"{\"agency-eco\": \"secret\"}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"agency-eco\": \"secret\"}"
        );
    }

    #[test]
    fn password_hash_is_salt_then_salted_sha256() {
        use base64::Engine;
        let salt = [0x90, 0x8d, 0xc6, 0x0a];
        let hash = password_hash("test12", salt);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .unwrap();
        assert_eq!(raw.len(), 36);
        assert_eq!(raw[..4], salt);
        assert_eq!(raw[4..], sha256(b"\x90\x8d\xc6\x0atest12")[..]);
    }

    #[test]
    fn agency_users_may_only_write_intake_and_read_their_own_queue() {
        let registry = Registry::from_toml(
            "[[agency]]\ncode = \"eco\"\nname_zh = \"e\"\nname_en = \"e\"\n",
            "t",
        )
        .unwrap();
        let args = DefinitionsArgs {
            out: "-".into(),
            vhost: "v1".into(),
            user_prefix: Some("agency-".into()),
            broker_user: "liaison".into(),
            delivery_limit: Some(20),
            intake_max_length: Some(50),
            intake_max_bytes: Some(4096),
            user_max_connections: 3,
            user_max_channels: 9,
            passwords: Some(PathBuf::from("unused")),
        };
        let d = build(&args, &registry, &Config::default());
        let permissions = d.document["permissions"].as_array().unwrap();
        let eco = permissions
            .iter()
            .find(|p| p["user"] == "agency-eco")
            .unwrap();
        assert_eq!(eco["configure"], "^$");
        assert_eq!(eco["write"], "^liaison\\.intake$");
        assert_eq!(eco["read"], "^liaison\\.agency\\.eco$");
        assert_eq!(d.passwords.len(), 2);
        let queue = d.document["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "liaison.agency.eco")
            .unwrap();
        assert_eq!(queue["arguments"]["x-delivery-limit"], 20);
        assert_eq!(queue["arguments"]["x-queue-type"], "quorum");
        assert_eq!(queue["arguments"].get("x-max-length"), None);

        let users = d.document["users"].as_array().unwrap();
        let eco_user = users.iter().find(|u| u["name"] == "agency-eco").unwrap();
        assert_eq!(eco_user["limits"]["max-connections"], 3);
        assert_eq!(eco_user["limits"]["max-channels"], 9);
        let broker = users.iter().find(|u| u["name"] == "liaison").unwrap();
        assert_eq!(broker["limits"], json!({}));

        let intake = d.document["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "liaison.intake")
            .unwrap();
        assert_eq!(intake["arguments"]["x-max-length"], 50);
        assert_eq!(intake["arguments"]["x-max-length-bytes"], 4096);
        assert_eq!(intake["arguments"]["x-overflow"], "reject-publish");

        // The write permission names the intake exchange and no other exchange.
        let write = regex_lite(eco["write"].as_str().unwrap());
        for (exchange, _) in EXCHANGES {
            assert_eq!(write(exchange), exchange == EXCHANGE_INTAKE, "{exchange}");
        }
        for other in [
            "amq.default",
            "",
            "amq.topic",
            "liaison.intakeX",
            "xliaison.intake",
        ] {
            assert!(!write(other), "{other}");
        }
    }

    #[test]
    fn queue_settings_default_to_the_brokers_configuration() {
        let registry = Registry::from_toml(
            "[[agency]]\ncode = \"eco\"\nname_zh = \"e\"\nname_en = \"e\"\n",
            "t",
        )
        .unwrap();
        let config = Config::load(
            None,
            [
                ("LIAISON_BUS__DELIVERY_LIMIT".to_owned(), "7".to_owned()),
                (
                    "LIAISON_INTAKE__QUEUE_MAX_LENGTH".to_owned(),
                    "99".to_owned(),
                ),
                ("LIAISON_INTAKE__USER_PREFIX".to_owned(), "org-".to_owned()),
            ],
        )
        .unwrap();
        let args = DefinitionsArgs {
            out: "-".into(),
            vhost: "/".into(),
            user_prefix: None,
            broker_user: "liaison".into(),
            delivery_limit: None,
            intake_max_length: None,
            intake_max_bytes: None,
            user_max_connections: 3,
            user_max_channels: 9,
            passwords: None,
        };
        let d = build(&args, &registry, &config);
        let queues = d.document["queues"].as_array().unwrap();
        let queue = |name: &str| queues.iter().find(|q| q["name"] == name).unwrap();
        assert_eq!(
            queue("liaison.agency.eco")["arguments"]["x-delivery-limit"],
            7
        );
        assert_eq!(queue("liaison.intake")["arguments"]["x-delivery-limit"], 7);
        assert_eq!(queue("liaison.intake")["arguments"]["x-max-length"], 99);
        let users = d.document["users"].as_array().unwrap();
        assert!(users.iter().any(|u| u["name"] == "org-eco"), "{users:?}");
        // The broker declares the same arguments (liaison-bus's own queue plan).
        let eco = AgencyCode::new("eco").unwrap();
        let plan = liaison_bus::queue_plan(
            &[&eco],
            config.bus.delivery_limit,
            config.intake.queue_limits(),
        );
        for planned in plan {
            let written = &queue(&planned.name)["arguments"];
            assert_eq!(*written, table_json(&planned.arguments), "{}", planned.name);
        }
    }

    /// Matches the `^literal$` patterns this module writes (escaped dots only).
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let literal = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .expect("anchored")
            .replace("\\.", ".");
        move |name: &str| name == literal
    }
}
