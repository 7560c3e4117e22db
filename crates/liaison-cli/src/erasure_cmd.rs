//! `liaison erase` and `liaison keys`: erasing a case's personal data from the command
//! line, listing the cases due for it, and the key-encryption keys that make it possible.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use liaison_ledger::{ErasureOutcome, NewErasure};
use liaison_server::Config;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["case", "proposals"])))]
pub struct EraseArgs {
    /// The case whose personal data to erase: every body of it becomes unreadable.
    #[arg(long, requires = "basis")]
    pub case: Option<String>,
    /// The legal basis (PIPL Art. 47), recorded in the `case.erased` entry.
    #[arg(long)]
    pub basis: Option<String>,
    /// Instead: list the cases past the retention periods of `[retention]`.
    #[arg(long)]
    pub proposals: bool,
    #[arg(long)]
    pub json: bool,
}

pub async fn erase(config: &Config, args: EraseArgs) -> anyhow::Result<()> {
    let ledger = crate::open_ledger(config).await?;
    if args.proposals {
        let due = ledger
            .erasure_proposals(
                &config.retention.periods_seconds(),
                time::OffsetDateTime::now_utc(),
                liaison_server::workers::retention::PROPOSALS_LIMIT,
            )
            .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&due)?);
        } else if due.is_empty() {
            println!("no case is past its retention periods");
        } else {
            for p in &due {
                println!(
                    "{}\t{} message(s)\tdue {}",
                    p.caseref,
                    p.messages,
                    p.due_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                );
            }
            println!(
                "{} case(s) proposed; erase each with `liaison erase --case REF --basis TEXT`",
                due.len()
            );
        }
        return Ok(());
    }
    let (Some(caseref), Some(basis)) = (args.case, args.basis) else {
        anyhow::bail!("--case and --basis are needed");
    };
    anyhow::ensure!(
        !basis.trim().is_empty(),
        "--basis: the legal basis is required"
    );
    let outcome = ledger
        .erase(NewErasure {
            caseref: caseref.clone(),
            basis: basis.trim().to_owned(),
            by: None,
            via: "cli".into(),
        })
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    }
    match outcome {
        ErasureOutcome::Erased { seq, messages } => {
            if !args.json {
                println!(
                    "✓ case {caseref}: {} message(s) erased by ledger entry {seq}",
                    messages.len()
                );
            }
            Ok(())
        }
        ErasureOutcome::AlreadyErased { seqs } => {
            if !args.json {
                println!("case {caseref} was erased before (entries {seqs:?}); nothing recorded");
            }
            Ok(())
        }
        ErasureOutcome::UnknownCase => {
            anyhow::bail!("the ledger holds no message of case {caseref}")
        }
        ErasureOutcome::StoredInClear { messages } => anyhow::bail!(
            "{} message(s) of case {caseref} are stored in clear (accepted before bodies were sealed); nothing was erased",
            messages.len()
        ),
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Writes a new random key-encryption key `<id>.kek` into the KEK directory
    /// (`[erasure] kek_dir`, default `<tls_dir>/kek`), readable by its owner only.
    New {
        /// Its id, e.g. `k2`.
        #[arg(long)]
        id: String,
        /// Another directory than the configured one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Re-wraps every data key under the active KEK (`[erasure] active_kek`); the message
    /// bodies are not touched. Afterwards the other KEK files can be removed.
    Rotate,
    /// The configured KEKs and how many data keys each wraps.
    Status,
}

pub async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::New { id, dir } => {
            let dir = dir.unwrap_or_else(|| config.kek_dir());
            let path = liaison_ledger::keys::generate_kek(&dir, &id)
                .with_context(|| format!("a new key-encryption key in {}", dir.display()))?;
            println!(
                "wrote {}; to make it the one that wraps new keys, set [erasure] active_kek = {id:?} (LIAISON_ERASURE__ACTIVE_KEK) on every instance, restart them, then run `liaison keys rotate`",
                path.display()
            );
            Ok(())
        }
        KeysCommand::Rotate => {
            let ledger = crate::open_ledger(config).await?;
            let keyring = ledger
                .keyring()
                .context("no key-encryption key is configured: nothing to rotate")?;
            let active = keyring.active().to_owned();
            let done = ledger.rotate_keys(1000, &mut |_| {}).await?;
            let left: i64 = ledger
                .key_usage()
                .await?
                .into_iter()
                .filter(|(kek, _)| kek.as_deref().is_some_and(|k| k != active))
                .map(|(_, n)| n)
                .sum();
            println!("✓ {done} data key(s) re-wrapped under {active}");
            anyhow::ensure!(
                left == 0,
                "{left} data key(s) are still wrapped by another KEK: an instance with another active_kek is still running; restart it with active_kek = {active:?} and run this again"
            );
            println!("every data key is wrapped by {active}: the other KEK files can be removed");
            Ok(())
        }
        KeysCommand::Status => {
            let ledger = crate::open_ledger(config).await?;
            match ledger.keyring() {
                Some(k) => println!(
                    "KEKs in {}: {} (active {})",
                    config.kek_dir().display(),
                    k.ids().join(", "),
                    k.active()
                ),
                None => println!(
                    "no key-encryption key in {}: bodies are stored in clear and cannot be erased",
                    config.kek_dir().display()
                ),
            }
            for (kek, count) in ledger.key_usage().await? {
                match kek {
                    Some(kek) => println!("{kek}\t{count} data key(s)"),
                    None => println!("(erased)\t{count} data key(s) destroyed"),
                }
            }
            Ok(())
        }
    }
}
