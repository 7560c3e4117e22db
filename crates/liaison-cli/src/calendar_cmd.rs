//! `liaison calendar due`: when a legal period runs out, counted as the procedure laws
//! count it (docs/clocks.md), with the same calendar the broker's clocks use.

use std::path::PathBuf;

use clap::{ArgGroup, Subcommand};
use liaison_core::calendar::{self, CHINA_STANDARD_TIME, HolidayCalendar, Period};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Subcommand)]
pub enum CalendarCommand {
    /// Print when a period that starts at --from runs out, as one RFC 3339 line at
    /// +08:00. A period in days or months ends at 24:00 of its last day, printed as 00:00
    /// of the next day.
    #[command(group(ArgGroup::new("length").required(true).args(["period", "working_days"])))]
    Due {
        /// When the period starts (the event: receipt, delivery, decision), RFC 3339.
        #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
        from: OffsetDateTime,
        /// The period in ISO 8601: P3D (days), P2M (months), PT24H (hours).
        #[arg(long, value_name = "P3D|P2M|PT24H")]
        period: Option<Period>,
        /// The period in working days.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        working_days: Option<u32>,
        /// Year files to use instead of the built-in ones (and of `calendar_dir` in the
        /// configuration).
        #[arg(long, value_name = "DIR")]
        calendar_dir: Option<PathBuf>,
    },
}

fn parse_instant(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 instant: {e}"))
}

/// Runs the command; `configured` is the configuration's `calendar_dir`.
pub fn run(command: CalendarCommand, configured: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        CalendarCommand::Due {
            from,
            period,
            working_days,
            calendar_dir,
        } => {
            let period = match (period, working_days) {
                (Some(p), _) => p,
                (None, Some(n)) => Period::WorkingDays(n),
                (None, None) => anyhow::bail!("give --period or --working-days"),
            };
            let calendar: HolidayCalendar =
                liaison_server::calendars::load(calendar_dir.or(configured).as_deref())?;
            let due = calendar::due(from, period, &calendar)?;
            println!("{}", due.to_offset(CHINA_STANDARD_TIME).format(&Rfc3339)?);
            Ok(())
        }
    }
}
