//! `liaison report`: the periodic report (通报) of a period, from the ledger database or
//! from an export directory alone (docs/cases.md, "The periodic report").

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use liaison_core::Entry;
use liaison_ledger::report::ReportFold;
use liaison_ledger::{ExportDir, Report, ReportFormat, ReportPeriod};
use liaison_server::Config;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The first day of the period, China Standard Time (e.g. 2026-01-01).
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// The last day of the period, included (e.g. 2026-03-31).
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// md (Markdown tables), csv or json.
    #[arg(long, value_name = "FORMAT", default_value = "md", value_parser = format)]
    pub format: ReportFormat,
    /// Fold the entries of this export directory instead of the database's.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// The ledger as it stood at this instant (RFC 3339): later entries are left out and
    /// deadlines due before it are overdue. Default: now. Give a report's `now` to
    /// reproduce it from a later export.
    #[arg(long, value_name = "RFC3339", value_parser = instant)]
    pub now: Option<OffsetDateTime>,
}

fn format(s: &str) -> Result<ReportFormat, String> {
    ReportFormat::parse(s).ok_or_else(|| format!("{s:?}: the formats are md, csv and json"))
}

fn instant(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?} is not RFC 3339: {e}"))
}

/// Computes the report and writes it to stdout.
pub async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<()> {
    let period = ReportPeriod::parse(&args.from, &args.to)?;
    let now = args.now.unwrap_or_else(|| {
        // Whole seconds, so that the `now` printed reproduces the report exactly.
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    });
    let report = match &args.export {
        Some(dir) => from_export(dir, period, now)?,
        None => {
            crate::open_ledger(config)
                .await?
                .report(period, now)
                .await?
        }
    };
    print!("{}", args.format.render(&report));
    Ok(())
}

/// The report from an export's entries alone: no database.
pub fn from_export(
    dir: &std::path::Path,
    period: ReportPeriod,
    now: OffsetDateTime,
) -> anyhow::Result<Report> {
    let export = ExportDir::open(dir).with_context(|| format!("export {}", dir.display()))?;
    let mut fold = ReportFold::new(period, now);
    for record in export.entries()? {
        let record = record?;
        let entry = Entry::from_canonical(&record.bytes).with_context(|| {
            format!(
                "{}: entry {} is not canonical JSON",
                dir.display(),
                record.seq
            )
        })?;
        fold.entry(&entry);
    }
    Ok(fold.finish())
}
