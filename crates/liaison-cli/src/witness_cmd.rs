//! `liaison witness`: an auditor's witness of the ledger (C2SP tlog-witness, in short).
//!
//! The witness keeps the last checkpoint it cosigned in a state file. Each run fetches the
//! broker's latest checkpoint, checks the ledger's signature on it, and checks that it
//! extends the one in the state file — same root at the same size, or a consistency proof
//! from the old size to the new one that verifies against both roots. Only then does it
//! cosign the checkpoint (`cosignature/v1`), post the cosignature to the broker and keep
//! the checkpoint as its new state. A broker that rewrote or forked its history after the
//! witness saw it cannot pass this check: the witness refuses to cosign and exits with
//! status 3, naming the two checkpoints that disagree.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use liaison_core::audit::Hash;
use liaison_core::checkpoint::{Checkpoint, CheckpointVerifier};
use liaison_core::cosignature::Cosigner;
use liaison_core::merkle;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::json;
use time::OffsetDateTime;

use liaison_client::AgencyClient;

#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Makes a witness key: writes the private key (PKCS#8) to --key, readable by its owner
    /// only, and prints the verifier key to list under `witnesses` in the broker's
    /// configuration.
    Init {
        /// The witness's name, a schema-less URL (`audit.example.gov.cn/w1`).
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Checks the broker's latest checkpoint against the last one this witness cosigned
    /// and, when it extends it, cosigns it and posts the cosignature.
    Run(RunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The broker's HTTPS address, e.g. https://liaison.example:8443.
    #[arg(long)]
    pub url: String,
    /// The CA that certifies the broker (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The auditor's client certificate (PEM; `liaison pki auditor`).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The auditor's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// The ledger's checkpoint verifier key, `origin+keyid+base64(0x01 ‖ public key)`.
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// The witness's name, as given to `witness init`.
    #[arg(long)]
    pub name: String,
    /// The witness's private key, from `witness init`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where the last cosigned checkpoint is kept.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

/// What one run of the witness did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub size: u64,
    /// The size of the checkpoint it extended, when the witness had seen one.
    pub previous: Option<u64>,
    /// The broker stored the cosignature now (`false`: it held this one already).
    pub stored: bool,
}

/// The broker showed a history that does not extend what the witness saw before.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ledger's history forked or was rewritten: the witness cosigned size {seen_size} with root {}, \
     and the broker now shows size {shown_size} with root {}: {why}",
    hex::encode(.seen_root),
    hex::encode(.shown_root)
)]
pub struct ForkDetected {
    pub seen_size: u64,
    pub seen_root: Hash,
    pub shown_size: u64,
    pub shown_root: Hash,
    pub why: String,
}

pub async fn run(command: WitnessCommand) -> anyhow::Result<()> {
    match command {
        WitnessCommand::Init { name, key } => {
            let verifier_key = init(&name, &key)?;
            println!("✓ witness key for {name} in {}", key.display());
            println!("verifier key (add it to `witnesses` in the broker's configuration):");
            println!("{verifier_key}");
            Ok(())
        }
        WitnessCommand::Run(args) => match witness_once(&args).await {
            Ok(done) => {
                match done.previous {
                    Some(previous) => println!(
                        "✓ checkpoint {} extends checkpoint {previous}: cosigned{}",
                        done.size,
                        if done.stored { "" } else { " (already stored)" }
                    ),
                    None => println!(
                        "✓ checkpoint {}: first seen, cosigned{}",
                        done.size,
                        if done.stored { "" } else { " (already stored)" }
                    ),
                }
                Ok(())
            }
            Err(error) => {
                if let Some(fork) = error.downcast_ref::<ForkDetected>() {
                    eprintln!("✗ {fork}");
                    std::process::exit(3);
                }
                Err(error)
            }
        },
    }
}

/// Writes a new witness key to `path` and returns its verifier key.
pub fn init(name: &str, path: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(
        !path.exists(),
        "{} exists: a witness key is never replaced",
        path.display()
    );
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow!("cannot generate a key"))?;
    let cosigner = Cosigner::new(
        name,
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow!("bad key"))?,
    )?;
    write_private(path, STANDARD.encode(pkcs8.as_ref()).as_bytes())?;
    Ok(cosigner.verifier_key())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

fn load_cosigner(name: &str, path: &Path) -> anyhow::Result<Cosigner> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let pkcs8 = STANDARD
        .decode(text.trim())
        .with_context(|| format!("{} is not a witness key", path.display()))?;
    let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|_| anyhow!("{} is not an Ed25519 key", path.display()))?;
    Ok(Cosigner::new(name, key)?)
}

/// One round of the witness: check the latest checkpoint, cosign it, post it, keep it.
pub async fn witness_once(args: &RunArgs) -> anyhow::Result<Witnessed> {
    let log = CheckpointVerifier::from_vkey(&args.log_key)
        .with_context(|| format!("the log key {:?}", args.log_key))?;
    let cosigner = load_cosigner(&args.name, &args.key)?;
    let client = AgencyClient::from_files(&args.ca, &args.cert, &args.tls_key, &args.url)?;

    let latest = client.get("/v1/checkpoints/latest").await?;
    anyhow::ensure!(
        latest.status == 200,
        "GET /v1/checkpoints/latest: {} {}",
        latest.status,
        latest.body
    );
    let note = latest.body["note"]
        .as_str()
        .ok_or_else(|| anyhow!("the latest checkpoint has no note: {}", latest.body))?
        .to_owned();
    let shown = log
        .open(&note)
        .context("the latest checkpoint does not verify with the log key")?;

    let previous = match std::fs::read_to_string(&args.state) {
        Ok(text) => Some(
            log.open(&text)
                .with_context(|| format!("the state file {}", args.state.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.state.display())),
    };
    if let Some(seen) = &previous {
        check_extends(&client, seen, &shown).await?;
    }

    let line = cosigner.cosign(&note, OffsetDateTime::now_utc())?;
    let posted = client
        .post_json(
            &format!("/v1/checkpoints/{}/cosignatures", shown.size),
            &json!({ "line": line }),
        )
        .await?;
    anyhow::ensure!(
        posted.status == 201 || posted.status == 200,
        "posting the cosignature: {} {}",
        posted.status,
        posted.body
    );
    let temporary = args.state.with_extension("tmp");
    std::fs::write(&temporary, &note)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &args.state)
        .with_context(|| format!("replacing {}", args.state.display()))?;
    Ok(Witnessed {
        size: shown.size,
        previous: previous.map(|p| p.size),
        stored: posted.status == 201,
    })
}

/// Checks that `shown` extends `seen`, with the broker's consistency proof.
async fn check_extends(
    client: &AgencyClient,
    seen: &Checkpoint,
    shown: &Checkpoint,
) -> anyhow::Result<()> {
    let fork = |why: String| ForkDetected {
        seen_size: seen.size,
        seen_root: seen.root,
        shown_size: shown.size,
        shown_root: shown.root,
        why,
    };
    if shown.size < seen.size {
        return Err(fork("the tree shrank".into()).into());
    }
    if shown.size == seen.size {
        if shown.root != seen.root {
            return Err(fork("two roots for one size".into()).into());
        }
        return Ok(());
    }
    let answer = client
        .get(&format!(
            "/v1/checkpoints/consistency?from={}&to={}",
            seen.size, shown.size
        ))
        .await?;
    if answer.status != 200 {
        return Err(fork(format!(
            "no consistency proof: {} {}",
            answer.status, answer.body
        ))
        .into());
    }
    let proof = answer.body["proof"]
        .as_array()
        .ok_or_else(|| anyhow!("a consistency answer without a proof: {}", answer.body))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| anyhow!("a proof hash is not 32 bytes of hex"))
        })
        .collect::<anyhow::Result<Vec<Hash>>>()?;
    merkle::verify_consistency(seen.size, shown.size, &seen.root, &shown.root, &proof)
        .map_err(|e| fork(format!("the consistency proof does not verify ({e:?})")))?;
    Ok(())
}
