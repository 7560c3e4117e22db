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
        /// Only cases with a running deadline past due, listed clock by clock with the
        /// late party, the due instant and how late.
        #[arg(long)]
        overdue: bool,
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
            overdue,
            limit,
            json,
        } => {
            let page = ledger
                .cases(&CaseFilter {
                    party: agency,
                    state,
                    flow,
                    overdue,
                    limit,
                    ..CaseFilter::default()
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else if overdue {
                print!("{}", render_overdue(&page));
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
/// The overdue deadlines of a page of cases, one line per clock.
pub fn render_overdue(page: &liaison_ledger::CasePage) -> String {
    let mut out = format!(
        "{:<20} {:<26} {:<14} {:<26} LATE BY\n",
        "CASE", "CLOCK", "LATE PARTY", "DUE"
    );
    for clock in page.cases.iter().flat_map(|c| &c.clocks) {
        let Some(late) = &clock.overdue_by else {
            continue;
        };
        out.push_str(&format!(
            "{:<20} {:<26} {:<14} {:<26} {late}\n",
            clock.caseref,
            clock.clock,
            clock.owed_by.join(","),
            clock.due.map(rfc3339).unwrap_or_else(|| "-".into()),
        ));
    }
    out
}

/// A case's clocks, one line each, for `render_case`.
fn render_clocks(clocks: &[liaison_ledger::ClockView]) -> String {
    let mut out = String::from("clocks:\n");
    for clock in clocks {
        let due = match (&clock.due, &clock.due_error) {
            (Some(due), _) => rfc3339(*due),
            (None, Some(error)) => format!("unknown ({error})"),
            (None, None) => "unknown".into(),
        };
        out.push_str(&format!(
            "  {:<26} {:<8} owed by {:<12} due {}  {}{}{}\n",
            clock.clock,
            clock.kind.as_str(),
            clock.owed_by.join(","),
            due,
            clock.status,
            clock
                .overdue_by
                .as_ref()
                .map(|late| format!(", overdue by {late}"))
                .unwrap_or_default(),
            if clock.notices.is_empty() {
                String::new()
            } else {
                format!("  notices: {}", clock.notices.join(", "))
            },
        ));
    }
    out
}

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
    if !case.clocks.is_empty() {
        out.push_str(&render_clocks(&case.clocks));
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
