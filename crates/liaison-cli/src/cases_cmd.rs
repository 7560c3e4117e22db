//! `liaison cases show|list|replay`: cases as administrators read them, straight from the
//! ledger database, and the check that the live case tables are what the entries lead to.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use liaison_core::AgencyCode;
use liaison_ledger::{CaseFilter, CaseReplay, CaseReplayReport, CaseView, ExportDir, Ledger};
use liaison_server::Config;

#[derive(Debug, Subcommand)]
pub enum CasesCommand {
    /// One case: its state, threads, parties and every message in ledger order.
    Show {
        caseref: String,
        /// Print the JSON the HTTPS route answers instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cases, newest first.
    List {
        /// The state of the case's first matter.
        #[arg(long)]
        state: Option<String>,
        /// Cases this agency is a party of.
        #[arg(long, value_parser = agency_code)]
        agency: Option<AgencyCode>,
        /// The flow of the case's first matter (lead, transfer, recommendation, …).
        #[arg(long)]
        flow: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Rebuilds every case from ledger entries alone and compares it with the live case
    /// tables; exits non-zero naming each difference.
    Replay {
        /// Fold the entries of this export directory instead of the database's.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Replace the live case tables with the fold (the database owner's right).
        #[arg(long, conflicts_with = "export")]
        rebuild: bool,
    },
    /// Prints the flows of the lifecycle file as Markdown with state diagrams; with
    /// `--write FILE`, replaces the generated section of that file (docs/cases.md).
    Diagrams {
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

fn agency_code(s: &str) -> Result<AgencyCode, String> {
    AgencyCode::new(s).map_err(|e| e.to_string())
}

/// Writes the lifecycle's flows as Markdown, or splices them into `write`.
fn diagrams(config: &Config, write: Option<&std::path::Path>) -> anyhow::Result<()> {
    let lifecycle = config.load_lifecycle()?;
    let Some(path) = write else {
        print!("{}", lifecycle.markdown());
        return Ok(());
    };
    let doc =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let updated = lifecycle
        .splice_into(&doc)
        .with_context(|| format!("{} lacks the generated-section markers", path.display()))?;
    std::fs::write(path, updated)?;
    println!(
        "✓ {} updated from {}",
        path.display(),
        config.lifecycle_origin()
    );
    Ok(())
}

pub async fn run(config: &Config, command: CasesCommand) -> anyhow::Result<()> {
    // Only the diagrams need no database.
    let ledger = match &command {
        CasesCommand::Diagrams { write } => return diagrams(config, write.as_deref()),
        _ => crate::open_ledger(config).await?,
    };
    match command {
        CasesCommand::Diagrams { .. } => {}
        CasesCommand::Show { caseref, json } => {
            let case = ledger
                .case(&caseref)
                .await?
                .with_context(|| format!("no case {caseref}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&case)?);
            } else {
                print!("{}", render_case(&case));
            }
        }
        CasesCommand::List {
            state,
            agency,
            flow,
            limit,
            json,
        } => {
            let page = ledger
                .cases(&CaseFilter {
                    party: agency,
                    state,
                    flow,
                    limit,
                    ..CaseFilter::default()
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!(
                    "{:<24} {:<22} {:<26} {:<6} {:<14} OPENED",
                    "CASE", "FLOW", "STATE", "OPEN", "OPENED BY"
                );
                for case in &page.cases {
                    println!(
                        "{:<24} {:<22} {:<26} {:<6} {:<14} {}",
                        case.head.caseref,
                        case.head.flow.as_deref().unwrap_or("-"),
                        case.head.state.as_deref().unwrap_or("-"),
                        if case.head.closed { "no" } else { "yes" },
                        case.head.opened_by,
                        rfc3339(case.head.opened_at)
                    );
                }
                if page.next.is_some() {
                    println!("(more: raise --limit)");
                }
            }
        }
        CasesCommand::Replay { export, rebuild } => {
            let report = replay(&ledger, export, rebuild).await?;
            println!(
                "replayed {} entries: {} cases, {} threads",
                report.entries, report.cases, report.threads
            );
            for d in &report.differences {
                println!(
                    "✗ {} {}: entries lead to {}; the case tables hold {}",
                    d.caseref, d.what, d.expected, d.found
                );
            }
            anyhow::ensure!(
                report.differences.is_empty(),
                "{} difference(s) between the entries and the case tables",
                report.differences.len()
            );
            if rebuild {
                println!("✓ the case tables were rebuilt from the entries");
            } else {
                println!("✓ the case tables hold the states the entries lead to");
            }
        }
    }
    Ok(())
}

async fn replay(
    ledger: &Ledger,
    export: Option<PathBuf>,
    rebuild: bool,
) -> anyhow::Result<CaseReplayReport> {
    if rebuild {
        return Ok(ledger.rebuild_cases().await?);
    }
    match export {
        Some(dir) => {
            let export =
                ExportDir::open(&dir).with_context(|| format!("export {}", dir.display()))?;
            let mut fold = CaseReplay::default();
            for record in export.entries()? {
                let record = record?;
                fold.entry(&record.bytes)
                    .map_err(|e| anyhow::anyhow!("{}: entry {}: {e}", dir.display(), record.seq))?;
            }
            Ok(ledger.compare_cases(&fold).await?)
        }
        None => {
            let bar = crate::ledger_cmd::progress_bar(ledger.size().await?, "replaying cases");
            let report = ledger.replay_cases(&mut |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            Ok(report)
        }
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A case as text: its state, threads, parties and timeline.
pub fn render_case(case: &CaseView) -> String {
    let mut out = format!(
        "case {}  {} {}{}\nopened {} by {} (ledger seq {})\n",
        case.head.caseref,
        case.head.flow.as_deref().unwrap_or("-"),
        case.head.state.as_deref().unwrap_or("-"),
        if case.head.closed { " (closed)" } else { "" },
        rfc3339(case.head.opened_at),
        case.head.opened_by,
        case.head.opened_seq
    );
    out.push_str("parties:");
    for party in &case.parties {
        out.push_str(&format!(" {} ({})", party.agency, party.roles.join("/")));
    }
    out.push('\n');
    if case.threads.len() > 1 {
        out.push_str("matters:\n");
        for thread in &case.threads {
            out.push_str(&format!(
                "  {:<22} {}{}\n",
                thread.flow,
                thread.state,
                if thread.closed { " (closed)" } else { "" }
            ));
        }
    }
    out.push_str("timeline:\n");
    for m in &case.messages {
        let to: Vec<String> = m
            .recipients
            .iter()
            .map(|r| match r.role {
                liaison_core::RecipientRole::To => r.agency.to_string(),
                liaison_core::RecipientRole::Cc => format!("cc:{}", r.agency),
            })
            .collect();
        let step = match &m.case {
            Some(step) if step.from.is_none() => format!("  ⇒ {} {}", step.flow, step.to),
            Some(step) if step.is_transition() => {
                format!("  {} → {}", step.from.as_deref().unwrap_or("-"), step.to)
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "  seq {:<6} {} {:<40} {} → {}{step}\n",
            m.seq,
            rfc3339(m.at),
            m.type_,
            m.sender,
            to.join(", ")
        ));
    }
    out
}
