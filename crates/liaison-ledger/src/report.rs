//! The county's periodic report (通报): per agency and flow, what each agency sent and
//! received, the matters it opened and closed, how it answered the clocks it owed, what it
//! still owes past due, its filing decisions and its replies to recommendations, and the
//! submissions refused, by code.
//!
//! Computed from ledger entries alone — their `detail.case`, `detail.clocks` and
//! `detail.code` — so that an auditor reproduces it from an export: this module does no
//! I/O. [`ReportFold`] folds entries in seq order; [`Report::compute`] folds a sequence of
//! them. Every entry is fed, also those before the period (the matters and clocks opened
//! earlier) and after it (clocks stopped since, for "overdue now"); the fold decides what
//! each one counts for by its `at`:
//!
//! - `at` after `now`: nothing (the report is the ledger as it stood at `now`);
//! - `at` in the period: counted, and kept in the fold's state (matters, open clocks);
//! - `at` before the period: kept in the fold's state only;
//! - `at` after the period (up to `now`): only the clocks it stops are closed.
//!
//! The columns are described in `docs/cases.md`, "The periodic report (通报)".

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use liaison_core::calendar::CHINA_STANDARD_TIME;
use liaison_core::{Entry, EntryKind};
use serde::{Serialize, Serializer};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// The flow of a message that belongs to no matter, and the agency of a rejection whose
/// sender is unknown.
pub const NONE: &str = "-";

/// The calendar days a report covers, both included, in China Standard Time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportPeriod {
    from: Date,
    to: Date,
}

/// Why two dates make no period.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{name} {value:?} is not a date of the form 2026-01-31")]
    NotADate { name: &'static str, value: String },
    #[error("from {from} is after to {to}")]
    Reversed { from: Date, to: Date },
    #[error("to {0} is the last day time can hold")]
    OutOfRange(Date),
}

impl ReportPeriod {
    pub fn new(from: Date, to: Date) -> Result<Self, PeriodError> {
        if from > to {
            return Err(PeriodError::Reversed { from, to });
        }
        if to.next_day().is_none() {
            return Err(PeriodError::OutOfRange(to));
        }
        Ok(Self { from, to })
    }

    /// Two dates written `YYYY-MM-DD`.
    pub fn parse(from: &str, to: &str) -> Result<Self, PeriodError> {
        let date = |name: &'static str, value: &str| {
            Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| {
                PeriodError::NotADate {
                    name,
                    value: value.to_owned(),
                }
            })
        };
        Self::new(date("from", from)?, date("to", to)?)
    }

    pub fn from(&self) -> Date {
        self.from
    }

    pub fn to(&self) -> Date {
        self.to
    }

    /// The first instant of the period: `from` at 00:00 China Standard Time.
    pub fn start(&self) -> OffsetDateTime {
        self.from.midnight().assume_offset(CHINA_STANDARD_TIME)
    }

    /// The first instant after the period: the day after `to` at 00:00 China Standard Time.
    pub fn end(&self) -> OffsetDateTime {
        // `new` refused a `to` without a next day.
        let after = self.to.next_day().unwrap_or(self.to);
        after.midnight().assume_offset(CHINA_STANDARD_TIME)
    }

    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.start() <= at && at < self.end()
    }
}

/// The numbers of one row (an agency in a flow), or of all rows (`totals`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Messages the agency sent (accepted).
    pub sent: u64,
    /// Messages routed to the agency, as addressee or copy.
    pub received: u64,
    /// Matters the agency opened.
    pub cases_opened: u64,
    /// Matters the agency opened that reached a closed state.
    pub cases_closed: u64,
    /// Clocks the agency answered by their due time.
    pub answers_on_time: u64,
    /// Clocks the agency answered after their due time.
    pub answers_late: u64,
    /// The median time from a clock's start to the agency's answer, in seconds.
    pub median_answer_seconds: Option<i64>,
    /// The same, readable: `2d 3h`.
    pub median_answer: Option<String>,
    /// Deadlines the agency owes that are past due at the report's `now`.
    pub overdue_now: u64,
    /// Transfers the agency decided to file (`transfer` → `filed`).
    pub transfers_filed: u64,
    /// Transfers the agency decided not to file (`transfer` → `not_filed`).
    pub transfers_not_filed: u64,
    /// Recommendations the agency replied it adopted.
    pub recommendations_adopted: u64,
    /// Recommendations the agency replied it partly adopted.
    pub recommendations_partly_adopted: u64,
    /// Recommendations the agency replied it did not adopt.
    pub recommendations_not_adopted: u64,
}

/// One row: an agency in a flow (`-`: messages of no matter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    pub agency: String,
    pub flow: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Submissions of one agency (`-`: unknown sender) refused with one code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionCount {
    pub agency: String,
    pub code: String,
    pub count: u64,
}

/// The periodic report of a period, as the ledger stood at `now`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The first day, China Standard Time.
    #[serde(serialize_with = "iso_date")]
    pub from: Date,
    /// The last day, included.
    #[serde(serialize_with = "iso_date")]
    pub to: Date,
    /// The first instant counted.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// The first instant not counted.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Entries after this instant are left out; deadlines due before it are overdue.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// Ledger entries the report was folded from (every kind, up to `now`).
    pub entries: u64,
    /// One row per agency and flow with any number, by agency then flow.
    pub rows: Vec<ReportRow>,
    /// The sum of every column over the rows; the median over every answer.
    pub totals: Counts,
    /// Refused submissions by agency and code.
    pub rejections: Vec<RejectionCount>,
}

fn iso_date<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// A matter as the fold knows it.
struct Thread {
    opener: String,
    flow: String,
    closed: bool,
}

/// A clock started and not (yet) stopped.
struct OpenClock {
    deadline: bool,
    due: Option<OffsetDateTime>,
    owed_by: Vec<String>,
    flow: String,
}

#[derive(Default)]
struct Tally {
    counts: Counts,
    /// Seconds from a clock's start to its answer, for the median.
    answer_times: Vec<i64>,
}

/// The report's fold: feed every entry in seq order, then [`ReportFold::finish`].
pub struct ReportFold {
    period: ReportPeriod,
    now: OffsetDateTime,
    entries: u64,
    threads: HashMap<Uuid, Thread>,
    clocks: BTreeMap<(Uuid, String), OpenClock>,
    tallies: BTreeMap<(String, String), Tally>,
    rejections: BTreeMap<(String, String), u64>,
}

impl ReportFold {
    pub fn new(period: ReportPeriod, now: OffsetDateTime) -> Self {
        Self {
            period,
            now,
            entries: 0,
            threads: HashMap::new(),
            clocks: BTreeMap::new(),
            tallies: BTreeMap::new(),
            rejections: BTreeMap::new(),
        }
    }

    /// Folds one entry. Parts of a detail that do not have the documented shape are
    /// skipped: `liaison ledger verify` is the check of the entries, not the report.
    pub fn entry(&mut self, entry: &Entry) {
        if entry.at > self.now {
            return;
        }
        self.entries += 1;
        let agency = entry
            .agency
            .as_ref()
            .map_or_else(|| NONE.to_owned(), |a| a.as_str().to_owned());
        let before_end = entry.at < self.period.end();
        let counted = before_end && entry.at >= self.period.start();
        match entry.kind {
            EntryKind::MessageAccepted => self.accepted(entry, &agency, before_end, counted),
            EntryKind::MessageRejected if counted => {
                let code = entry.detail["code"].as_str().unwrap_or(NONE).to_owned();
                *self.rejections.entry((agency, code)).or_default() += 1;
            }
            // Refusals beyond the budget count like those recorded one by one.
            EntryKind::RejectionsSummarized if counted => {
                if let Some(codes) = entry.detail["codes"].as_object() {
                    for (code, n) in codes {
                        *self
                            .rejections
                            .entry((agency.clone(), code.clone()))
                            .or_default() += n.as_u64().unwrap_or(0);
                    }
                }
            }
            _ => {}
        }
    }

    fn tally(&mut self, agency: &str, flow: &str) -> &mut Tally {
        self.tallies
            .entry((agency.to_owned(), flow.to_owned()))
            .or_default()
    }

    fn accepted(&mut self, entry: &Entry, agency: &str, before_end: bool, counted: bool) {
        let detail = &entry.detail;
        let step = Step::read(detail.get("case"));
        if before_end && let Some(step) = &step {
            self.step(step, agency, counted);
        }
        let flow = step.as_ref().map_or(NONE, |s| s.flow.as_str()).to_owned();
        if counted {
            self.tally(agency, &flow).counts.sent += 1;
            let recipients = detail["recipients"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            for recipient in recipients {
                if let Some(to) = recipient["agency"].as_str() {
                    self.tally(to, &flow).counts.received += 1;
                }
            }
        }
        let clocks = &detail["clocks"];
        // Stops first: an entry may stop a clock and start one of the same name.
        for stopped in clocks["stopped"].as_array().into_iter().flatten() {
            self.stopped(entry, agency, &flow, stopped, counted);
        }
        if before_end {
            for started in clocks["started"].as_array().into_iter().flatten() {
                self.started(&flow, started);
            }
        }
    }

    /// What a message did to its matter.
    fn step(&mut self, step: &Step, agency: &str, counted: bool) {
        let thread = self.threads.entry(step.thread).or_insert_with(|| Thread {
            // A matter is opened by the entry without `from`; one first seen later (never
            // in a whole ledger) has no known opener.
            opener: if step.from.is_none() { agency } else { NONE }.to_owned(),
            flow: step.flow.clone(),
            closed: false,
        });
        let newly_closed = step.closed && !thread.closed;
        thread.closed = step.closed;
        let (opener, thread_flow) = (thread.opener.clone(), thread.flow.clone());
        if !counted {
            return;
        }
        if step.from.is_none() {
            self.tally(agency, &step.flow).counts.cases_opened += 1;
        }
        if newly_closed {
            self.tally(&opener, &thread_flow).counts.cases_closed += 1;
        }
        if step.from.as_deref() == Some(step.to.as_str()) {
            return; // joined without moving: no decision
        }
        let counts = &mut self.tally(agency, &step.flow).counts;
        match (step.flow.as_str(), step.to.as_str()) {
            ("transfer", "filed") => counts.transfers_filed += 1,
            ("transfer", "not_filed") => counts.transfers_not_filed += 1,
            ("recommendation", "adopted") => counts.recommendations_adopted += 1,
            ("recommendation", "partly_adopted") => counts.recommendations_partly_adopted += 1,
            ("recommendation", "not_adopted") => counts.recommendations_not_adopted += 1,
            _ => {}
        }
    }

    fn stopped(&mut self, entry: &Entry, agency: &str, flow: &str, stopped: &Value, counted: bool) {
        let (Some(thread), Some(clock)) = (uuid(&stopped["thread"]), stopped["clock"].as_str())
        else {
            return;
        };
        let open = self.clocks.remove(&(thread, clock.to_owned()));
        if !counted || stopped["reason"].as_str() != Some("answered") {
            return;
        }
        let flow = open
            .map(|c| c.flow)
            .or_else(|| self.threads.get(&thread).map(|t| t.flow.clone()))
            .unwrap_or_else(|| flow.to_owned());
        let due = instant(&stopped["due"]);
        let late = stopped["late"]
            .as_bool()
            .unwrap_or_else(|| due.is_some_and(|due| entry.at > due));
        let took =
            instant(&stopped["started_at"]).map(|started| (entry.at - started).whole_seconds());
        let tally = self.tally(agency, &flow);
        if late {
            tally.counts.answers_late += 1;
        } else {
            tally.counts.answers_on_time += 1;
        }
        tally.answer_times.extend(took);
    }

    fn started(&mut self, flow: &str, started: &Value) {
        let (Some(thread), Some(clock)) = (uuid(&started["thread"]), started["clock"].as_str())
        else {
            return;
        };
        let flow = self
            .threads
            .get(&thread)
            .map_or_else(|| flow.to_owned(), |t| t.flow.clone());
        let owed_by = started["owed_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        self.clocks.insert(
            (thread, clock.to_owned()),
            OpenClock {
                deadline: started["kind"].as_str() == Some("deadline"),
                due: instant(&started["due"]),
                owed_by,
                flow,
            },
        );
    }

    /// The report: overdue deadlines counted at `now`, medians taken, rows sorted.
    pub fn finish(mut self) -> Report {
        let now = self.now;
        let overdue: Vec<(Vec<String>, String)> = self
            .clocks
            .values()
            .filter(|c| c.deadline && c.due.is_some_and(|due| due < now))
            .map(|c| (c.owed_by.clone(), c.flow.clone()))
            .collect();
        for (owed_by, flow) in overdue {
            if owed_by.is_empty() {
                self.tally(NONE, &flow).counts.overdue_now += 1;
            }
            for agency in owed_by {
                self.tally(&agency, &flow).counts.overdue_now += 1;
            }
        }
        let mut totals = Counts::default();
        let mut all_times = Vec::new();
        let mut rows = Vec::new();
        for ((agency, flow), mut tally) in self.tallies {
            set_median(&mut tally.counts, &mut tally.answer_times);
            totals.add(&tally.counts);
            all_times.append(&mut tally.answer_times);
            rows.push(ReportRow {
                agency,
                flow,
                counts: tally.counts,
            });
        }
        set_median(&mut totals, &mut all_times);
        Report {
            from: self.period.from,
            to: self.period.to,
            start: self.period.start(),
            end: self.period.end(),
            now: now.to_offset(CHINA_STANDARD_TIME),
            entries: self.entries,
            rows,
            totals,
            rejections: self
                .rejections
                .into_iter()
                .map(|((agency, code), count)| RejectionCount {
                    agency,
                    code,
                    count,
                })
                .collect(),
        }
    }
}

/// `detail.case` of an accepted entry.
struct Step {
    thread: Uuid,
    flow: String,
    from: Option<String>,
    to: String,
    closed: bool,
}

impl Step {
    fn read(case: Option<&Value>) -> Option<Self> {
        let case = case?;
        Some(Self {
            thread: uuid(&case["thread"])?,
            flow: case["flow"].as_str()?.to_owned(),
            from: case["from"].as_str().map(str::to_owned),
            to: case["to"].as_str()?.to_owned(),
            closed: case["closed"].as_bool().unwrap_or(false),
        })
    }
}

fn uuid(value: &Value) -> Option<Uuid> {
    value.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

fn instant(value: &Value) -> Option<OffsetDateTime> {
    value
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

fn set_median(counts: &mut Counts, times: &mut [i64]) {
    times.sort_unstable();
    let n = times.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(times[n / 2]),
        _ => Some((times[n / 2 - 1] + times[n / 2]).div_euclid(2)),
    };
    counts.median_answer_seconds = median;
    counts.median_answer = median.map(human_duration);
}

impl Counts {
    /// Adds every number of `other` (the median is taken separately).
    fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.received += other.received;
        self.cases_opened += other.cases_opened;
        self.cases_closed += other.cases_closed;
        self.answers_on_time += other.answers_on_time;
        self.answers_late += other.answers_late;
        self.overdue_now += other.overdue_now;
        self.transfers_filed += other.transfers_filed;
        self.transfers_not_filed += other.transfers_not_filed;
        self.recommendations_adopted += other.recommendations_adopted;
        self.recommendations_partly_adopted += other.recommendations_partly_adopted;
        self.recommendations_not_adopted += other.recommendations_not_adopted;
    }
}

/// A duration in its two largest units: `2d 3h`, `5h 12m`, `45m`, `30s`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    let pair = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    if days > 0 {
        pair(days, "d", hours, "h")
    } else if hours > 0 {
        pair(hours, "h", minutes, "m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{s}s")
    }
}

impl Report {
    /// Folds `entries`, given in seq order (see the module's documentation for which ones
    /// count for what).
    pub fn compute<'a>(
        entries: impl IntoIterator<Item = &'a Entry>,
        period: ReportPeriod,
        now: OffsetDateTime,
    ) -> Report {
        let mut fold = ReportFold::new(period, now);
        for entry in entries {
            fold.entry(entry);
        }
        fold.finish()
    }
}

/// How a report is written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    /// Markdown tables (the default of the command line).
    #[default]
    Markdown,
    Csv,
    /// `Report` serialised, pretty-printed.
    Json,
}

impl ReportFormat {
    /// `md`, `csv` or `json`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "md" => Some(Self::Markdown),
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Markdown => "text/markdown; charset=utf-8",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }

    pub fn render(self, report: &Report) -> String {
        match self {
            Self::Markdown => report.markdown(),
            Self::Csv => report.csv(),
            Self::Json => {
                // A struct of strings and numbers always serialises.
                let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
                text.push('\n');
                text
            }
        }
    }
}

type Column = (&'static str, &'static str, fn(&Counts) -> String);

/// (CSV header, Markdown header, value) of every number, in table order.
const COLUMNS: [Column; 13] = [
    ("sent", "sent", |c| c.sent.to_string()),
    ("received", "received", |c| c.received.to_string()),
    ("cases_opened", "opened", |c| c.cases_opened.to_string()),
    ("cases_closed", "closed", |c| c.cases_closed.to_string()),
    ("answers_on_time", "on time", |c| {
        c.answers_on_time.to_string()
    }),
    ("answers_late", "late", |c| c.answers_late.to_string()),
    ("median_answer", "median answer", |c| {
        c.median_answer.clone().unwrap_or_else(|| NONE.to_owned())
    }),
    ("overdue_now", "overdue now", |c| c.overdue_now.to_string()),
    ("transfers_filed", "filed", |c| {
        c.transfers_filed.to_string()
    }),
    ("transfers_not_filed", "not filed", |c| {
        c.transfers_not_filed.to_string()
    }),
    ("recommendations_adopted", "adopted", |c| {
        c.recommendations_adopted.to_string()
    }),
    ("recommendations_partly_adopted", "partly adopted", |c| {
        c.recommendations_partly_adopted.to_string()
    }),
    ("recommendations_not_adopted", "not adopted", |c| {
        c.recommendations_not_adopted.to_string()
    }),
];

/// The row label of the totals.
pub const TOTAL: &str = "total";

fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(CHINA_STANDARD_TIME)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

impl Report {
    /// Markdown: a heading, the table of rows and totals, and the rejections.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# 通报 {} – {}\n", self.from, self.to);
        let _ = writeln!(
            out,
            "Entries dated from {} to before {} (China Standard Time); overdue as of {}; \
             folded from {} ledger entries.\n",
            rfc3339(self.start),
            rfc3339(self.end),
            rfc3339(self.now),
            self.entries
        );
        let headers: Vec<&str> = COLUMNS.iter().map(|(_, header, _)| *header).collect();
        let _ = writeln!(out, "| agency | flow | {} |", headers.join(" | "));
        let _ = writeln!(out, "|---|---|{}", "---:|".repeat(COLUMNS.len()));
        let line = |agency: &str, flow: &str, counts: &Counts| {
            let cells: Vec<String> = COLUMNS
                .iter()
                .map(|(_, _, value)| md_cell(&value(counts)))
                .collect();
            format!("| {agency} | {flow} | {} |\n", cells.join(" | "))
        };
        for row in &self.rows {
            out.push_str(&line(
                &md_cell(&row.agency),
                &md_cell(&row.flow),
                &row.counts,
            ));
        }
        out.push_str(&line(&format!("**{TOTAL}**"), "", &self.totals));
        out.push_str("\n## Rejections\n\n");
        if self.rejections.is_empty() {
            out.push_str("None.\n");
        } else {
            out.push_str("| agency | code | count |\n|---|---|---:|\n");
            for r in &self.rejections {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    md_cell(&r.agency),
                    md_cell(&r.code),
                    r.count
                );
            }
        }
        out
    }

    /// CSV: the table of rows and totals (`agency` = `total`, `flow` empty), a blank line,
    /// then the rejections table (`agency,code,count`).
    pub fn csv(&self) -> String {
        let mut out = String::from("agency,flow");
        for (header, _, _) in COLUMNS {
            out.push(',');
            out.push_str(header);
        }
        out.push_str(",median_answer_seconds\n");
        let line = |agency: &str, flow: &str, counts: &Counts| {
            let mut cells = vec![csv_cell(agency), csv_cell(flow)];
            cells.extend(COLUMNS.iter().map(|(_, _, value)| {
                let text = value(counts);
                csv_cell(if text == NONE { "" } else { &text })
            }));
            cells.push(
                counts
                    .median_answer_seconds
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            );
            cells.join(",") + "\n"
        };
        for row in &self.rows {
            out.push_str(&line(&row.agency, &row.flow, &row.counts));
        }
        out.push_str(&line(TOTAL, "", &self.totals));
        out.push_str("\nagency,code,count\n");
        for r in &self.rejections {
            let _ = writeln!(
                out,
                "{},{},{}",
                csv_cell(&r.agency),
                csv_cell(&r.code),
                r.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use liaison_core::AgencyCode;
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn thread(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Entries in seq order, written the way the committer writes them.
    #[derive(Default)]
    struct Entries(Vec<Entry>);

    impl Entries {
        fn push(&mut self, at_: &str, kind: EntryKind, agency: Option<&str>, detail: Value) {
            let seq = self.0.len() as u64 + 1;
            self.0.push(Entry {
                seq,
                at: at(at_),
                kind,
                message: Some(Uuid::from_u128(1_000 + u128::from(seq))),
                caseref: None,
                agency: agency.map(|a| AgencyCode::new(a).unwrap()),
                detail,
            });
        }

        /// A `message.accepted` entry with its route, its step and its clocks.
        fn accept(
            &mut self,
            at_: &str,
            sender: &str,
            to: &[&str],
            cc: &[&str],
            case: Option<Value>,
            clocks: Option<Value>,
        ) {
            let recipients: Vec<Value> = to
                .iter()
                .map(|a| json!({"agency": a, "role": "to", "rule": "r"}))
                .chain(
                    cc.iter()
                        .map(|a| json!({"agency": a, "role": "cc", "rule": "r"})),
                )
                .collect();
            let mut detail = json!({"type": "t.v1", "recipients": recipients});
            if let Some(case) = case {
                if case.get("from").is_none() {
                    detail["caseref_assigned"] = json!(true);
                }
                detail["case"] = case;
            }
            if let Some(clocks) = clocks {
                detail["clocks"] = clocks;
            }
            self.push(at_, EntryKind::MessageAccepted, Some(sender), detail);
        }

        fn reject(&mut self, at_: &str, sender: Option<&str>, code: &str) {
            let detail = json!({"code": code, "errors": []});
            self.push(at_, EntryKind::MessageRejected, sender, detail);
        }
    }

    fn opens(t: u128, flow: &str, to: &str) -> Option<Value> {
        Some(json!({"thread": thread(t).to_string(), "flow": flow, "to": to}))
    }

    fn moves(t: u128, flow: &str, from: &str, to: &str, closed: bool) -> Option<Value> {
        let mut step =
            json!({"thread": thread(t).to_string(), "flow": flow, "from": from, "to": to});
        if closed {
            step["closed"] = json!(true);
        }
        Some(step)
    }

    fn started(t: u128, clock: &str, kind: &str, due: &str, owed_by: &str) -> Option<Value> {
        Some(json!({"started": [{
            "thread": thread(t).to_string(), "clock": clock, "kind": kind,
            "due": due, "owed_by": [owed_by],
        }]}))
    }

    fn answered(t: u128, clock: &str, started_at: &str, due: &str, late: bool) -> Value {
        json!({
            "thread": thread(t).to_string(), "clock": clock, "reason": "answered",
            "started_at": started_at, "due": due, "late": late,
        })
    }

    fn stops(answer: Value) -> Option<Value> {
        Some(json!({"stopped": [answer]}))
    }

    const QUARTER: (&str, &str) = ("2026-01-01", "2026-03-31");
    const NOW: &str = "2026-04-10T09:00:00+08:00";

    /// The first quarter of 2026 in the county, with every outcome known:
    ///
    /// - t1: market's transfer of December, received and filed by the police in January
    ///   within its filing review (15 days from start to answer); the procuratorate's
    ///   receipt after the filing joins the closed matter;
    /// - t2: eco's transfer, not filed by the police after its due time (10d 6h), which
    ///   starts eco's reconsideration window (a window, never overdue);
    /// - t3: the procuratorate's recommendation to natres, adopted in 4 days;
    /// - t4: eco's lead, declined by the procuratorate in 6d 3h;
    /// - t5: eco's transfer the police never answered: overdue;
    /// - t6: market's transfer answered after the quarter but before `now`: not overdue,
    ///   its answer not counted;
    /// - t7: market's transfer answered after `now`: overdue;
    /// - t8: market's transfer after the quarter, already past due: not counted;
    /// - a notification outside any matter; rejections of three codes, one of an unknown
    ///   sender, and two just outside the quarter; a delivery entry.
    fn quarter() -> Entries {
        let mut e = Entries::default();
        let (police, proc) = ("police", "procuratorate");
        e.accept(
            "2025-12-20T10:00:00+08:00",
            "market",
            &[police],
            &[proc],
            opens(1, "transfer", "transferred"),
            started(
                1,
                "filing_review",
                "deadline",
                "2026-01-05T00:00:00+08:00",
                police,
            ),
        );
        e.reject("2025-12-31T23:59:59+08:00", Some("eco"), "payload_invalid");
        e.reject("2026-01-01T00:00:00+08:00", Some("eco"), "payload_invalid");
        e.accept(
            "2026-01-03T10:00:00+08:00",
            police,
            &["market"],
            &[],
            moves(1, "transfer", "transferred", "received", false),
            None,
        );
        e.push(
            "2026-01-03T10:00:01+08:00",
            EntryKind::DeliveryDispatched,
            Some("market"),
            json!({"delivery": 1}),
        );
        e.accept(
            "2026-01-04T10:00:00+08:00",
            police,
            &["market"],
            &[proc],
            moves(1, "transfer", "received", "filed", true),
            stops(answered(
                1,
                "filing_review",
                "2025-12-20T10:00:00+08:00",
                "2026-01-05T00:00:00+08:00",
                false,
            )),
        );
        e.accept(
            "2026-01-05T09:00:00+08:00",
            proc,
            &["market"],
            &[],
            moves(1, "transfer", "filed", "filed", true),
            None,
        );
        e.accept(
            "2026-01-10T09:00:00+08:00",
            "eco",
            &[police],
            &[proc],
            opens(2, "transfer", "transferred"),
            started(
                2,
                "filing_review",
                "deadline",
                "2026-01-13T00:00:00+08:00",
                police,
            ),
        );
        e.accept(
            "2026-01-15T09:00:00+08:00",
            "gov",
            &["eco", "market"],
            &[],
            None,
            None,
        );
        let not_filed = json!({
            "stopped": [answered(
                2,
                "filing_review",
                "2026-01-10T09:00:00+08:00",
                "2026-01-13T00:00:00+08:00",
                true,
            )],
            "started": [{
                "thread": thread(2).to_string(), "clock": "reconsideration", "kind": "window",
                "due": "2026-01-23T00:00:00+08:00", "owed_by": ["eco"],
            }],
        });
        e.accept(
            "2026-01-20T15:00:00+08:00",
            police,
            &["eco"],
            &[proc],
            moves(2, "transfer", "transferred", "not_filed", false),
            Some(not_filed),
        );
        e.reject("2026-01-21T09:00:00+08:00", Some("market"), "not_a_party");
        e.reject("2026-01-22T09:00:00+08:00", None, "unauthenticated");
        e.accept(
            "2026-02-01T09:00:00+08:00",
            proc,
            &["natres"],
            &["gov"],
            opens(3, "recommendation", "issued"),
            started(
                3,
                "reply",
                "deadline",
                "2026-04-01T00:00:00+08:00",
                "natres",
            ),
        );
        e.accept(
            "2026-02-05T09:00:00+08:00",
            "natres",
            &[proc],
            &["gov"],
            moves(3, "recommendation", "issued", "adopted", true),
            stops(answered(
                3,
                "reply",
                "2026-02-01T09:00:00+08:00",
                "2026-04-01T00:00:00+08:00",
                false,
            )),
        );
        e.accept(
            "2026-02-10T09:00:00+08:00",
            "eco",
            &[proc],
            &[],
            opens(4, "lead", "submitted"),
            started(
                4,
                "lead_review",
                "deadline",
                "2026-03-10T00:00:00+08:00",
                proc,
            ),
        );
        e.reject("2026-02-11T09:00:00+08:00", Some("eco"), "payload_invalid");
        e.accept(
            "2026-02-16T12:00:00+08:00",
            proc,
            &["eco"],
            &[],
            moves(4, "lead", "submitted", "declined", true),
            stops(answered(
                4,
                "lead_review",
                "2026-02-10T09:00:00+08:00",
                "2026-03-10T00:00:00+08:00",
                false,
            )),
        );
        for (t, day, due, sender) in [
            (5, "2026-03-20", "2026-03-23", "eco"),
            (6, "2026-03-25", "2026-03-28", "market"),
            (7, "2026-03-28", "2026-03-31", "market"),
        ] {
            e.accept(
                &format!("{day}T09:00:00+08:00"),
                sender,
                &[police],
                &[proc],
                opens(t, "transfer", "transferred"),
                started(
                    t,
                    "filing_review",
                    "deadline",
                    &format!("{due}T00:00:00+08:00"),
                    police,
                ),
            );
        }
        e.reject("2026-04-01T00:00:00+08:00", Some("eco"), "payload_invalid");
        e.accept(
            "2026-04-02T09:00:00+08:00",
            "market",
            &[police],
            &[proc],
            opens(8, "transfer", "transferred"),
            started(
                8,
                "filing_review",
                "deadline",
                "2026-04-05T00:00:00+08:00",
                police,
            ),
        );
        for (t, day, started_at, due) in [
            (6, "2026-04-05", "2026-03-25", "2026-03-28"),
            (7, "2026-04-12", "2026-03-28", "2026-03-31"),
        ] {
            e.accept(
                &format!("{day}T09:00:00+08:00"),
                police,
                &["market"],
                &[proc],
                moves(t, "transfer", "transferred", "filed", true),
                stops(answered(
                    t,
                    "filing_review",
                    &format!("{started_at}T09:00:00+08:00"),
                    &format!("{due}T00:00:00+08:00"),
                    true,
                )),
            );
        }
        e
    }

    fn report(entries: &Entries) -> Report {
        let period = ReportPeriod::parse(QUARTER.0, QUARTER.1).unwrap();
        Report::compute(&entries.0, period, at(NOW))
    }

    fn row<'a>(report: &'a Report, agency: &str, flow: &str) -> &'a Counts {
        &report
            .rows
            .iter()
            .find(|r| r.agency == agency && r.flow == flow)
            .unwrap_or_else(|| panic!("no row {agency}/{flow} in {:#?}", report.rows))
            .counts
    }

    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;

    #[test]
    fn the_quarter_is_counted_as_its_outcomes_say() {
        let report = report(&quarter());
        let keys: Vec<(&str, &str)> = report
            .rows
            .iter()
            .map(|r| (r.agency.as_str(), r.flow.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("eco", "-"),
                ("eco", "lead"),
                ("eco", "transfer"),
                ("gov", "-"),
                ("gov", "recommendation"),
                ("market", "-"),
                ("market", "transfer"),
                ("natres", "recommendation"),
                ("police", "transfer"),
                ("procuratorate", "lead"),
                ("procuratorate", "recommendation"),
                ("procuratorate", "transfer"),
            ]
        );

        let police = row(&report, "police", "transfer");
        let expected = Counts {
            // t1 receipt and filing, t2 refusal
            sent: 3,
            // t2, t5, t6, t7 (t8 is after the quarter)
            received: 4,
            transfers_filed: 1,
            transfers_not_filed: 1,
            answers_on_time: 1,
            answers_late: 1,
            // 15d and 10d 6h
            median_answer_seconds: Some((15 * DAY + 10 * DAY + 6 * HOUR) / 2),
            median_answer: Some("12d 15h".into()),
            // t5 and t7; not t6 (answered before now), not t8 (started after the quarter)
            overdue_now: 2,
            ..Counts::default()
        };
        assert_eq!(police, &expected);

        let market = row(&report, "market", "transfer");
        let expected = Counts {
            sent: 2,     // t6, t7 (t1 was opened in December, t8 in April)
            received: 3, // t1's receipt, filing and the procuratorate's receipt
            cases_opened: 2,
            cases_closed: 1, // t1, opened before the quarter, filed in it
            ..Counts::default()
        };
        assert_eq!(market, &expected);

        let eco_transfer = Counts {
            sent: 2,
            received: 1, // the refusal to file t2
            cases_opened: 2,
            ..Counts::default()
        };
        assert_eq!(row(&report, "eco", "transfer"), &eco_transfer);
        let eco_lead = Counts {
            sent: 1,
            received: 1,
            cases_opened: 1,
            cases_closed: 1, // declined
            ..Counts::default()
        };
        assert_eq!(row(&report, "eco", "lead"), &eco_lead);
        let received_only = |n| Counts {
            received: n,
            ..Counts::default()
        };
        assert_eq!(row(&report, "eco", "-"), &received_only(1));
        assert_eq!(row(&report, "market", "-"), &received_only(1));
        assert_eq!(row(&report, "gov", "recommendation"), &received_only(2));
        assert_eq!(
            row(&report, "gov", "-"),
            &Counts {
                sent: 1,
                ..Counts::default()
            }
        );

        let natres = Counts {
            sent: 1,
            received: 1,
            answers_on_time: 1,
            median_answer_seconds: Some(4 * DAY),
            median_answer: Some("4d".into()),
            recommendations_adopted: 1,
            ..Counts::default()
        };
        assert_eq!(row(&report, "natres", "recommendation"), &natres);
        let recommending = Counts {
            sent: 1,
            received: 1,
            cases_opened: 1,
            cases_closed: 1, // adopted
            ..Counts::default()
        };
        assert_eq!(
            row(&report, "procuratorate", "recommendation"),
            &recommending
        );
        let lead_answer = Counts {
            sent: 1,
            received: 1,
            answers_on_time: 1,
            median_answer_seconds: Some(6 * DAY + 3 * HOUR),
            median_answer: Some("6d 3h".into()),
            ..Counts::default()
        };
        assert_eq!(row(&report, "procuratorate", "lead"), &lead_answer);
        // Copies of t1's filing, t2 and its refusal, t5, t6, t7; its receipt on filed t1
        // joins the closed matter without closing it again or deciding anything.
        let copies = Counts {
            sent: 1,
            received: 6,
            ..Counts::default()
        };
        assert_eq!(row(&report, "procuratorate", "transfer"), &copies);

        let totals = Counts {
            sent: 13,
            received: 22,
            cases_opened: 6,
            cases_closed: 3,
            answers_on_time: 3,
            answers_late: 1,
            // 4d, 6d 3h, 10d 6h, 15d: the middle two
            median_answer_seconds: Some((6 * DAY + 3 * HOUR + 10 * DAY + 6 * HOUR) / 2),
            median_answer: Some("8d 4h".into()),
            overdue_now: 2,
            transfers_filed: 1,
            transfers_not_filed: 1,
            recommendations_adopted: 1,
            ..Counts::default()
        };
        assert_eq!(report.totals, totals);

        let rejections: Vec<(&str, &str, u64)> = report
            .rejections
            .iter()
            .map(|r| (r.agency.as_str(), r.code.as_str(), r.count))
            .collect();
        // Not the one a second before the quarter, nor the one at its end.
        assert_eq!(
            rejections,
            [
                ("-", "unauthenticated", 1),
                ("eco", "payload_invalid", 2),
                ("market", "not_a_party", 1),
            ]
        );
        // Every entry up to now: all but t7's answer.
        assert_eq!(report.entries, quarter().0.len() as u64 - 1);
        assert_eq!(report.start, at("2026-01-01T00:00:00+08:00"));
        assert_eq!(report.end, at("2026-04-01T00:00:00+08:00"));
    }

    #[test]
    fn the_report_is_the_ledger_as_it_stood_at_now() {
        let entries = quarter();
        let period = ReportPeriod::parse(QUARTER.0, QUARTER.1).unwrap();
        let as_of = |now: &str| Report::compute(&entries.0, period, at(now));
        let overdue = |report: &Report| row(report, "police", "transfer").overdue_now;
        // Before t7 was sent: only t5 was past due, and t7 is not counted at all.
        let early = as_of("2026-03-26T00:00:00+08:00");
        assert_eq!(overdue(&early), 1);
        assert_eq!(early.totals.sent, 12);
        // t6 past due too; t7 not yet.
        assert_eq!(overdue(&as_of("2026-03-30T00:00:00+08:00")), 2);
        // Before t6 was answered: t5, t6 and t7.
        assert_eq!(overdue(&as_of("2026-04-04T00:00:00+08:00")), 3);
        // Once t7 is answered, only t5.
        let later = as_of("2026-05-01T00:00:00+08:00");
        assert_eq!(overdue(&later), 1);
        // The rest of a past period does not change with `now`.
        let mut totals = later.totals.clone();
        totals.overdue_now = 2;
        assert_eq!(totals, report(&entries).totals);
    }

    #[test]
    fn one_day_is_counted_from_midnight_to_midnight_china_standard_time() {
        let mut e = Entries::default();
        for text in [
            "2026-03-01T15:59:59Z", // 23:59:59 on the 1st in Beijing
            "2026-03-01T16:00:00Z", // 00:00 on the 2nd
            "2026-03-02T15:59:59.999999Z",
            "2026-03-02T16:00:00Z",
        ] {
            e.accept(text, "gov", &["eco"], &[], None, None);
        }
        let period = ReportPeriod::parse("2026-03-02", "2026-03-02").unwrap();
        let report = Report::compute(&e.0, period, at("2026-04-01T00:00:00Z"));
        assert_eq!(report.totals.sent, 2);
        assert_eq!(report.totals.received, 2);
    }

    #[test]
    fn periods_are_two_dates_in_order() {
        assert!(ReportPeriod::parse("2026-01-01", "2026-01-01").is_ok());
        assert_eq!(
            ReportPeriod::parse("2026-02-01", "2026-01-31"),
            Err(PeriodError::Reversed {
                from: time::macros::date!(2026 - 02 - 01),
                to: time::macros::date!(2026 - 01 - 31),
            })
        );
        for (from, to) in [("2026-1-1", "2026-01-31"), ("2026-01-01", "2026-02-30")] {
            assert!(
                matches!(
                    ReportPeriod::parse(from, to),
                    Err(PeriodError::NotADate { .. })
                ),
                "{from} {to}"
            );
        }
        assert!(matches!(
            ReportPeriod::parse("2026-01-01", "9999-12-31"),
            Err(PeriodError::OutOfRange(_))
        ));
    }

    #[test]
    fn durations_read_in_their_two_largest_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(45 * 60 + 30), "45m");
        assert_eq!(human_duration(5 * HOUR + 12 * 60), "5h 12m");
        assert_eq!(human_duration(3 * HOUR), "3h");
        assert_eq!(human_duration(2 * DAY + 3 * HOUR + 59 * 60), "2d 3h");
        assert_eq!(human_duration(15 * DAY), "15d");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn the_formats_carry_the_same_numbers() {
        let report = report(&quarter());
        let markdown = report.markdown();
        assert!(
            markdown.starts_with("# 通报 2026-01-01 – 2026-03-31\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| police | transfer | 3 | 4 | 0 | 0 | 1 | 1 | 12d 15h | 2 | 1 | 1 | 0 | 0 | 0 |\n"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| **total** |  | 13 | 22 | 6 | 3 | 3 | 1 | 8d 4h | 2 | 1 | 1 | 1 | 0 | 0 |\n"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| eco | payload_invalid | 2 |\n"),
            "{markdown}"
        );
        assert!(markdown.contains("2026-04-01T00:00:00+08:00"), "{markdown}");

        let csv = report.csv();
        let mut tables = csv.split("\n\n");
        let main: Vec<&str> = tables.next().unwrap().lines().collect();
        assert_eq!(
            main[0],
            "agency,flow,sent,received,cases_opened,cases_closed,answers_on_time,answers_late,\
             median_answer,overdue_now,transfers_filed,transfers_not_filed,\
             recommendations_adopted,recommendations_partly_adopted,recommendations_not_adopted,\
             median_answer_seconds"
        );
        assert_eq!(main.len(), 1 + report.rows.len() + 1);
        assert!(main.contains(&"eco,-,0,1,0,0,0,0,,0,0,0,0,0,0,"), "{csv}");
        assert!(
            main.contains(&"police,transfer,3,4,0,0,1,1,12d 15h,2,1,1,0,0,0,1090800"),
            "{csv}"
        );
        assert_eq!(
            main.last().unwrap(),
            &"total,,13,22,6,3,3,1,8d 4h,2,1,1,1,0,0,707400"
        );
        assert_eq!(
            tables.next().unwrap(),
            "agency,code,count\n-,unauthenticated,1\neco,payload_invalid,2\nmarket,not_a_party,1\n"
        );

        let json: Value = serde_json::from_str(&ReportFormat::Json.render(&report)).unwrap();
        assert_eq!(json["from"], "2026-01-01");
        assert_eq!(json["to"], "2026-03-31");
        assert_eq!(json["start"], "2026-01-01T00:00:00+08:00");
        assert_eq!(json["end"], "2026-04-01T00:00:00+08:00");
        assert_eq!(json["totals"]["sent"], 13);
        assert_eq!(json["totals"]["median_answer"], "8d 4h");
        let police = json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agency"] == "police")
            .unwrap();
        assert_eq!(police["flow"], "transfer");
        assert_eq!(police["overdue_now"], 2);
        assert_eq!(
            json["rejections"][1],
            json!({"agency": "eco", "code": "payload_invalid", "count": 2})
        );
    }

    #[test]
    fn an_empty_ledger_makes_an_empty_report() {
        let period = ReportPeriod::parse(QUARTER.0, QUARTER.1).unwrap();
        let report = Report::compute(&[], period, at(NOW));
        assert!(report.rows.is_empty() && report.rejections.is_empty());
        assert_eq!(report.totals, Counts::default());
        assert!(report.markdown().contains("None.\n"));
        assert_eq!(ReportFormat::parse("md"), Some(ReportFormat::Markdown));
        assert_eq!(ReportFormat::parse("xml"), None);
    }
}
