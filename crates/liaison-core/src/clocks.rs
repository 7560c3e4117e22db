//! Legal clocks as data: which message starts a clock in a thread, which answers stop it,
//! how long it runs, and when the deadline watcher speaks.
//!
//! A clock belongs to a flow of the lifecycle file (`[[flow.clock]]`). It starts when a
//! message of type `starts_on` is recorded in a thread of that flow (and, with `entering`,
//! moves the thread into that state); the instant the broker received that message is the
//! start of the period. It is owed by the addressees (`to`) of that message, and stops when
//! one of them sends a message of a `stops_on` type in the same thread, or when the thread
//! closes.
//!
//! - A *deadline* clock is an answer someone owes: the watcher reminds the late party
//!   `remind_before` the due instant, sends an overdue notice at it, and escalation notices
//!   `escalate_after` it, each a `deadline.reminder.v1` of the case (routed by the policy).
//! - A *window* clock is a period in which a party may act (an objection, a request for
//!   reconsideration): a `stops_on` message after it is refused `422 window_closed`.
//!
//! The period is `period` (the law's), or the first `[[flow.clock.period_when]]` whose
//! conditions hold; with `stated_due`, a date the message states (a recommendation's reply
//! date) sets the last day instead, never earlier than the law's period allows.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::calendar::{self, HolidayCalendar, Period};
use crate::policy::Condition;

/// One clock of a flow.
#[derive(Clone, Debug)]
pub struct ClockRule {
    pub name: String,
    pub title: String,
    pub flow: String,
    pub kind: ClockKind,
    pub starts_on: String,
    /// Only when the starting message moves its thread into this state.
    pub entering: Option<String>,
    pub stops_on: Vec<String>,
    /// The law's period (and the least a stated date may give).
    pub period: Option<Period>,
    /// Other periods, each under conditions on the starting message; the first that holds.
    pub period_when: Vec<(Vec<Condition>, Period)>,
    /// `data.FIELD`: a date (`YYYY-MM-DD`) the starting message states as the last day.
    pub stated_due: Option<String>,
    /// When the watcher speaks, relative to the due instant, in order.
    pub stages: Vec<Stage>,
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    Deadline,
    Window,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Window => "window",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deadline" => Some(Self::Deadline),
            "window" => Some(Self::Window),
            _ => None,
        }
    }
}

/// What kind of notice a stage sends (`data.stage` of the reminder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    /// Before the due instant.
    Reminder,
    /// At the due instant.
    Overdue,
    /// After it.
    Escalation,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reminder => "reminder",
            Self::Overdue => "overdue",
            Self::Escalation => "escalation",
        }
    }
}

/// One notice of a deadline clock: `offset` seconds after the due instant (negative
/// before it). `key` names it uniquely within its clock (`reminder-P1D`, `overdue`,
/// `escalation-P7D`): the watcher sends each key once per clock start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    pub key: String,
    pub kind: StageKind,
    pub offset: time::Duration,
}

impl Stage {
    /// The instant this stage falls due for a clock due at `due`.
    pub fn at(&self, due: OffsetDateTime) -> OffsetDateTime {
        due.saturating_add(self.offset)
    }
}

/// A clock a message would start, decided from the message alone (its type and payload,
/// and the instant it was received): the ledger starts it if the message's thread is of
/// `flow` and, with `entering`, moves into that state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockStart {
    pub clock: String,
    pub flow: String,
    pub kind: ClockKind,
    pub entering: Option<String>,
    /// The due instant, or why it cannot be computed (no holiday calendar for a year the
    /// period reaches): recorded as such, never guessed.
    pub due: Result<OffsetDateTime, String>,
}

/// A clock a message of its type stops, when sent by a party that owes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockStop {
    pub clock: String,
    pub flow: String,
    pub kind: ClockKind,
}

/// A notice the deadline watcher sends: which clock of which thread, and which stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    pub thread: Uuid,
    pub clock: String,
    pub stage: StageKind,
    pub key: String,
}

/// Everything one message could do to clocks, decided from the message alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockIntent {
    pub starts: Vec<ClockStart>,
    pub stops: Vec<ClockStop>,
    /// Set on the watcher's own notices.
    pub stage: Option<StageRef>,
}

/// Why a clock stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// A party that owed it sent a `stops_on` message.
    Answered,
    /// Its thread reached a closed state.
    Closed,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "answered" => Some(Self::Answered),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// `detail.clocks` of a `message.accepted` entry: the clocks the message started and
/// stopped. Everything a replay or a report needs is here, so that clocks are derived
/// from the ledger alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEvents {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<ClockStarted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<ClockStopped>,
}

impl ClockEvents {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.stopped.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStarted {
    pub thread: Uuid,
    pub clock: String,
    pub kind: ClockKind,
    /// When the broker received the starting message: the period runs from here.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    /// Why `due` is unknown (no holiday calendar for a year the period reaches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_error: Option<String>,
    /// The addressees of the starting message: who owes the answer, or may act.
    pub owed_by: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStopped {
    pub thread: Uuid,
    pub clock: String,
    pub reason: StopReason,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    /// Stopped after its due instant.
    pub late: bool,
}

impl ClockRule {
    /// The period that applies to a message (`event` is the whole CloudEvent).
    pub fn period_for(&self, event: &Value) -> Option<Period> {
        self.period_when
            .iter()
            .find(|(when, _)| when.iter().all(|c| c.holds(Some(event))))
            .map(|(_, p)| *p)
            .or(self.period)
    }

    /// The due instant of this clock started by `event`, received at `start`.
    pub fn due(
        &self,
        event: &Value,
        start: OffsetDateTime,
        calendar: &HolidayCalendar,
    ) -> Result<OffsetDateTime, String> {
        let by_law = self
            .period_for(event)
            .map(|p| calendar::due(start, p, calendar).map_err(|e| e.to_string()))
            .transpose()?;
        let stated = match self
            .stated_due
            .as_deref()
            .and_then(|f| stated_date(event, f))
        {
            Some(day) => Some(calendar::due_on_day(day, calendar).map_err(|e| e.to_string())?),
            None => None,
        };
        match (by_law, stated) {
            (Some(law), Some(stated)) => Ok(law.max(stated)),
            (Some(due), None) | (None, Some(due)) => Ok(due),
            (None, None) => Err(format!(
                "clock {} has no period and the message states no {}",
                self.name,
                self.stated_due.as_deref().unwrap_or("date")
            )),
        }
    }
}

/// The date at `data.FIELD` of `event`, when it is one.
fn stated_date(event: &Value, path: &str) -> Option<Date> {
    let mut value = event;
    for part in path.split('.') {
        value = value.get(part)?;
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(value.as_str()?, format).ok()
}

/// `PnD`, `PTnH`, `PTnM`, `PTnS` (one unit) as an exact duration: the distance of a
/// reminder from its due instant. Days are 24 hours here: a reminder is a courtesy, not
/// a legal period.
pub fn parse_offset(s: &str) -> Option<time::Duration> {
    let rest = s.strip_prefix('P')?;
    let (rest, in_time) = match rest.strip_prefix('T') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let unit = rest.chars().last()?;
    let n: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    if n <= 0 {
        return None;
    }
    match (in_time, unit) {
        (false, 'D') => Some(time::Duration::days(n)),
        (true, 'H') => Some(time::Duration::hours(n)),
        (true, 'M') => Some(time::Duration::minutes(n)),
        (true, 'S') => Some(time::Duration::seconds(n)),
        _ => None,
    }
}

/// An ISO 8601 duration for `d` ≥ 0 (`P3DT4H5M6S`, `PT0S`), as `deadline.reminder.v1`'s
/// `overdue_by` carries it.
pub fn iso_duration(d: time::Duration) -> String {
    let total = d.whole_seconds().max(0);
    let (days, rem) = (total / 86_400, total % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if h > 0 || m > 0 || s > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || (h == 0 && m == 0) {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

/// The stages of a deadline clock, in time order: reminders, the overdue notice,
/// escalations.
pub fn stages(
    remind_before: &[(String, time::Duration)],
    escalate_after: &[(String, time::Duration)],
) -> Vec<Stage> {
    let mut stages: Vec<Stage> = remind_before
        .iter()
        .map(|(text, d)| Stage {
            key: format!("reminder-{text}"),
            kind: StageKind::Reminder,
            offset: -*d,
        })
        .chain(std::iter::once(Stage {
            key: "overdue".into(),
            kind: StageKind::Overdue,
            offset: time::Duration::ZERO,
        }))
        .chain(escalate_after.iter().map(|(text, d)| Stage {
            key: format!("escalation-{text}"),
            kind: StageKind::Escalation,
            offset: *d,
        }))
        .collect();
    stages.sort_by_key(|s| s.offset);
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn rule(period: Option<Period>, stated_due: Option<&str>) -> ClockRule {
        ClockRule {
            name: "recommendation_reply".into(),
            title: String::new(),
            flow: "recommendation".into(),
            kind: ClockKind::Deadline,
            starts_on: "procuratorial.recommendation.v1".into(),
            entering: None,
            stops_on: vec![],
            period,
            period_when: vec![(
                vec![Condition {
                    path: "data.urgent".into(),
                    any_of: vec![json!(true)],
                }],
                Period::Days(15),
            )],
            stated_due: stated_due.map(str::to_owned),
            stages: vec![],
            line: 1,
        }
    }

    #[test]
    fn the_period_follows_conditions_and_a_stated_date_never_shortens_it() {
        let calendar = HolidayCalendar::shipped();
        let start = datetime!(2026-03-02 10:00 +8);
        let rule = rule(Some(Period::Months(2)), Some("data.reply_due"));
        // Two months: last day Sat 2 May, in the Labour Day holiday (1–5 May) → Wed 6 May.
        let plain = json!({"data": {"urgent": false}});
        assert_eq!(
            rule.due(&plain, start, &calendar),
            Ok(datetime!(2026-05-07 00:00 +8))
        );
        // Urgent: 15 days, last day Tue 17 March.
        let urgent = json!({"data": {"urgent": true}});
        assert_eq!(
            rule.due(&urgent, start, &calendar),
            Ok(datetime!(2026-03-18 00:00 +8))
        );
        // A stated date later than the law's period sets the last day…
        let later = json!({"data": {"urgent": true, "reply_due": "2026-03-31"}});
        assert_eq!(
            rule.due(&later, start, &calendar),
            Ok(datetime!(2026-04-01 00:00 +8))
        );
        // …an earlier one does not shorten it.
        let earlier = json!({"data": {"urgent": true, "reply_due": "2026-03-05"}});
        assert_eq!(
            rule.due(&earlier, start, &calendar),
            Ok(datetime!(2026-03-18 00:00 +8))
        );
    }

    #[test]
    fn a_stated_date_alone_sets_the_due_instant_and_a_missing_year_is_an_error() {
        let calendar = HolidayCalendar::shipped();
        let rule = rule(None, Some("data.objection_due"));
        let start = datetime!(2026-03-02 10:00 +8);
        // Sat 14 March is a rest day → Mon 16 March.
        let stated = json!({"data": {"objection_due": "2026-03-14"}});
        assert_eq!(
            rule.due(&stated, start, &calendar),
            Ok(datetime!(2026-03-17 00:00 +8))
        );
        assert!(rule.due(&json!({"data": {}}), start, &calendar).is_err());
        let beyond = json!({"data": {"objection_due": "2031-03-14"}});
        let err = rule.due(&beyond, start, &calendar).unwrap_err();
        assert!(err.contains("2031"), "{err}");
    }

    #[test]
    fn offsets_and_durations() {
        assert_eq!(parse_offset("P1D"), Some(time::Duration::days(1)));
        assert_eq!(parse_offset("PT30S"), Some(time::Duration::seconds(30)));
        assert_eq!(parse_offset("PT5M"), Some(time::Duration::minutes(5)));
        assert_eq!(parse_offset("P0D"), None);
        assert_eq!(parse_offset("P1M"), None, "months are not exact");
        assert_eq!(iso_duration(time::Duration::ZERO), "PT0S");
        assert_eq!(iso_duration(time::Duration::seconds(90_061)), "P1DT1H1M1S");
        assert_eq!(iso_duration(time::Duration::days(3)), "P3D");
        assert_eq!(iso_duration(time::Duration::minutes(5)), "PT5M");
    }

    #[test]
    fn stages_are_in_time_order_with_unique_keys() {
        let stages = stages(
            &[
                ("P1D".into(), time::Duration::days(1)),
                ("P3D".into(), time::Duration::days(3)),
            ],
            &[("P7D".into(), time::Duration::days(7))],
        );
        let keys: Vec<&str> = stages.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            ["reminder-P3D", "reminder-P1D", "overdue", "escalation-P7D"]
        );
        let due = datetime!(2026-03-10 00:00 +8);
        assert_eq!(stages[0].at(due), datetime!(2026-03-07 00:00 +8));
        assert_eq!(stages[3].at(due), datetime!(2026-03-17 00:00 +8));
    }
}
