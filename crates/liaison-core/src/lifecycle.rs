//! Case lifecycles as data: which message opens which flow, and how each message type
//! moves a flow from one state to the next.
//!
//! A case (one `caseref`) holds one or more *threads*: every message that opens a matter (a
//! lead, a transfer, a recommendation…) starts a thread of its flow, identified by that
//! message's id, and every answer belongs to the thread of the message it answers. A
//! message that is part of a thread must be one of its flow's steps from the thread's
//! current state, or a type the file declares informational (receipts, notifications,
//! reminders), which never change a state. Anything else is an invalid transition.
//!
//! The flows live in a TOML file next to the policy (`deploy/demo/lifecycle.toml`); this
//! module parses and checks it (errors name the file and line) and answers, for one message,
//! which moves it could make ([`Lifecycle::moves`]). Which move applies is decided against
//! the thread's state when the message is recorded, by the ledger's committer, so that
//! concurrent messages of one case are ordered by the ledger and nowhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;
use uuid::Uuid;

use crate::calendar::{HolidayCalendar, Period};
use crate::clocks::{self, ClockIntent, ClockKind, ClockRule, ClockStart, ClockStop};
use crate::policy::Condition;

/// Markers around the section of docs/cases.md generated from the lifecycle file.
pub const DOC_BEGIN: &str = "<!-- generated from deploy/demo/lifecycle.toml: begin -->";
pub const DOC_END: &str = "<!-- generated from deploy/demo/lifecycle.toml: end -->";

/// The checked lifecycle file.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    flows: Vec<Flow>,
    informational: BTreeSet<String>,
    clocks: Vec<ClockRule>,
}

/// One flow: the states a matter of one kind goes through.
#[derive(Clone, Debug)]
pub struct Flow {
    pub name: String,
    pub title: String,
    /// The message type that opens a thread of this flow.
    pub opened_by: String,
    pub initial: String,
    /// States in which the matter is closed: no step leaves them.
    pub closed: BTreeSet<String>,
    pub steps: Vec<Step>,
    pub line: usize,
}

/// One transition: a message of type `on`, sent while the thread is in one of `from`
/// (and, with `by_addressee`, sent by an addressee of the message it answers; with `when`,
/// whose payload matches), moves the thread to `to`.
#[derive(Clone, Debug)]
pub struct Step {
    pub on: String,
    pub from: Vec<String>,
    pub to: String,
    pub by_addressee: bool,
    pub when: Vec<Condition>,
    pub line: usize,
}

/// `data.FIELD = value`: the same conditions as the policy's `when`.
fn describe(condition: &Condition) -> String {
    let values: Vec<String> = condition
        .any_of
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    format!("{} = {}", condition.path, values.join(" | "))
}

/// What one message could do to its case, decided from the message alone. The ledger
/// applies it to the thread the message belongs to ([`CaseMoves::apply`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseMoves {
    /// The flow a message of this type opens, with its initial state.
    pub opens: Option<Opening>,
    /// The transitions open to this message, in file order.
    pub steps: Vec<Move>,
    /// A type that may join any thread without changing its state.
    pub informational: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub flow: String,
    pub initial: String,
    /// The initial state is already closed (a notice that needs no answer).
    pub closed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub flow: String,
    pub from: Vec<String>,
    pub to: String,
    /// `to` is a closed state of the flow.
    pub closes: bool,
}

/// A message that is no legal transition of its thread: the state it met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTransition {
    pub flow: String,
    pub state: String,
}

impl CaseMoves {
    /// The state a thread of `flow` in `state` moves to: `Ok(Some(to))` for a transition,
    /// `Ok(None)` when the message joins the thread without changing it.
    pub fn apply(&self, flow: &str, state: &str) -> Result<Option<&Move>, InvalidTransition> {
        if let Some(step) = self
            .steps
            .iter()
            .find(|m| m.flow == flow && m.from.iter().any(|f| f == state))
        {
            return Ok(Some(step));
        }
        if self.informational {
            return Ok(None);
        }
        Err(InvalidTransition {
            flow: flow.to_owned(),
            state: state.to_owned(),
        })
    }
}

/// What a recorded message did to its thread, as written into its ledger entry (`case`).
/// Opening: `from` is `None`; a transition: `from` differs from `to`; joining without a
/// change: `from` equals `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStep {
    pub thread: Uuid,
    pub flow: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// `to` is a closed state of the flow (recorded so that a replay of the entries alone
    /// knows which matters are closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

impl ThreadStep {
    pub fn is_transition(&self) -> bool {
        self.from.as_deref() != Some(self.to.as_str())
    }
}

/// Why a lifecycle file was refused; every variant names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot read lifecycle {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("lifecycle {path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

impl LifecycleError {
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { line, .. } => Some(*line),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleFile {
    #[serde(default)]
    informational: Vec<String>,
    #[serde(default, rename = "flow")]
    flows: Vec<Spanned<FlowFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowFile {
    name: String,
    title: String,
    opened_by: Spanned<String>,
    initial: String,
    closed: Spanned<Vec<String>>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<StepFile>>,
    #[serde(default, rename = "clock")]
    clocks: Vec<Spanned<ClockFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockFile {
    name: String,
    title: String,
    #[serde(default)]
    kind: Option<String>,
    starts_on: String,
    #[serde(default)]
    entering: Option<String>,
    stops_on: Vec<String>,
    #[serde(default)]
    period: Option<String>,
    /// A period in working days (ISO 8601 has no designator for them).
    #[serde(default)]
    working_days: Option<u32>,
    #[serde(default)]
    period_when: Vec<PeriodWhenFile>,
    #[serde(default)]
    stated_due: Option<String>,
    #[serde(default)]
    remind_before: Vec<String>,
    #[serde(default)]
    escalate_after: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodWhenFile {
    when: BTreeMap<String, Value>,
    period: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    on: String,
    from: Vec<String>,
    to: String,
    #[serde(default)]
    by: Option<By>,
    #[serde(default)]
    when: BTreeMap<String, Value>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum By {
    /// Only an addressee (`to`) of the message this one answers.
    Addressee,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

impl Lifecycle {
    pub fn load(path: &Path) -> Result<Self, LifecycleError> {
        let text = std::fs::read_to_string(path).map_err(|source| LifecycleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks a lifecycle file; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, LifecycleError> {
        let invalid = |line: usize, message: String| LifecycleError::Invalid {
            path: origin.to_owned(),
            line,
            message,
        };
        let file: LifecycleFile = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
                e.message().to_owned(),
            )
        })?;
        let informational: BTreeSet<String> = file.informational.into_iter().collect();
        let mut flows: Vec<Flow> = Vec::new();
        let mut clocks: Vec<ClockRule> = Vec::new();
        let mut openers = BTreeMap::new();
        for spanned in file.flows {
            let line = line_of(text, spanned.span().start);
            let flow = spanned.into_inner();
            if flows.iter().any(|f| f.name == flow.name) {
                return Err(invalid(
                    line,
                    format!("another flow is named {:?}", flow.name),
                ));
            }
            let opener_line = line_of(text, flow.opened_by.span().start);
            let opened_by = flow.opened_by.into_inner();
            if let Some(other) = openers.insert(opened_by.clone(), flow.name.clone()) {
                return Err(invalid(
                    opener_line,
                    format!("{opened_by} already opens flow {other:?}; a type opens one flow"),
                ));
            }
            if informational.contains(&opened_by) {
                return Err(invalid(
                    opener_line,
                    format!("{opened_by} is informational; it cannot also open a flow"),
                ));
            }
            let closed_line = line_of(text, flow.closed.span().start);
            let closed: BTreeSet<String> = flow.closed.into_inner().into_iter().collect();
            let mut steps = Vec::with_capacity(flow.steps.len());
            for step in flow.steps {
                let line = line_of(text, step.span().start);
                let step = step.into_inner();
                if step.from.is_empty() {
                    return Err(invalid(
                        line,
                        "a step needs at least one `from` state".into(),
                    ));
                }
                if let Some(state) = step.from.iter().find(|s| closed.contains(*s)) {
                    return Err(invalid(
                        line,
                        format!("state {state:?} is closed: no step may leave it"),
                    ));
                }
                let when = conditions(step.when).map_err(|m| invalid(line, m))?;
                steps.push(Step {
                    on: step.on,
                    from: step.from,
                    to: step.to,
                    by_addressee: step.by == Some(By::Addressee),
                    when,
                    line,
                });
            }
            let checked = Flow {
                name: flow.name,
                title: flow.title,
                opened_by,
                initial: flow.initial,
                closed,
                steps,
                line,
            };
            check_states(&checked, closed_line)
                .map_err(|(line, message)| invalid(line, message))?;
            for clock in flow.clocks {
                let line = line_of(text, clock.span().start);
                let rule = check_clock(clock.into_inner(), &checked, line)
                    .map_err(|m| invalid(line, m))?;
                if clocks
                    .iter()
                    .any(|c: &ClockRule| c.name == rule.name && c.flow == rule.flow)
                {
                    return Err(invalid(
                        line,
                        format!(
                            "another clock of flow {:?} is named {:?}",
                            rule.flow, rule.name
                        ),
                    ));
                }
                clocks.push(rule);
            }
            flows.push(checked);
        }
        Ok(Self {
            flows,
            informational,
            clocks,
        })
    }

    /// The same lifecycle with its clocks in trial time, for demonstrations and trials: a
    /// day of every period and of every notice's offset lasts `day` (so with one second,
    /// a three-day review is due three seconds after the transfer); dates a message states
    /// are ignored and no holiday calendar applies.
    pub fn in_trial_time(mut self, day: std::time::Duration) -> Self {
        let scale = |offset: time::Duration| offset * (day.as_secs_f64() / 86_400.0);
        for clock in &mut self.clocks {
            clock.period = clock
                .period
                .or(Some(Period::Days(30)))
                .map(|p| p.in_trial_time(day));
            for (_, period) in &mut clock.period_when {
                *period = period.in_trial_time(day);
            }
            clock.stated_due = None;
            for stage in &mut clock.stages {
                stage.offset = scale(stage.offset);
            }
        }
        self
    }

    /// Every clock of every flow, in file order.
    pub fn clocks(&self) -> &[ClockRule] {
        &self.clocks
    }

    /// The clock `name` of flow `flow` (names are unique within a flow: every flow may
    /// have its `receipt` clock).
    pub fn clock(&self, flow: &str, name: &str) -> Option<&ClockRule> {
        self.clocks
            .iter()
            .find(|c| c.flow == flow && c.name == name)
    }

    /// The clocks a message of `type_` (the whole CloudEvent `event`, received at
    /// `received_at`) could start, and the clocks it could stop; the ledger decides which
    /// apply, against the message's thread.
    pub fn clock_intent(
        &self,
        type_: &str,
        event: &Value,
        received_at: time::OffsetDateTime,
        calendar: &HolidayCalendar,
    ) -> ClockIntent {
        let starts = self
            .clocks
            .iter()
            .filter(|c| c.starts_on == type_)
            .map(|c| ClockStart {
                clock: c.name.clone(),
                flow: c.flow.clone(),
                kind: c.kind,
                entering: c.entering.clone(),
                due: c.due(event, received_at, calendar),
            })
            .collect();
        let stops = self
            .clocks
            .iter()
            .filter(|c| c.stops_on.iter().any(|t| t == type_))
            .map(|c| ClockStop {
                clock: c.name.clone(),
                flow: c.flow.clone(),
                kind: c.kind,
            })
            .collect();
        ClockIntent {
            starts,
            stops,
            stage: None,
        }
    }

    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The flow a message of `type_` opens.
    pub fn opened_by(&self, type_: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.opened_by == type_)
    }

    pub fn informational(&self) -> impl Iterator<Item = &str> {
        self.informational.iter().map(String::as_str)
    }

    pub fn is_informational(&self, type_: &str) -> bool {
        self.informational.contains(type_)
    }

    /// Every type the file names (openers, steps, informational), with the line naming it.
    fn named_types(&self) -> Vec<(&str, usize)> {
        let mut named: Vec<(&str, usize)> =
            self.informational.iter().map(|t| (t.as_str(), 1)).collect();
        for flow in &self.flows {
            named.push((&flow.opened_by, flow.line));
            named.extend(flow.steps.iter().map(|s| (s.on.as_str(), s.line)));
        }
        for clock in &self.clocks {
            named.push((&clock.starts_on, clock.line));
            named.extend(clock.stops_on.iter().map(|t| (t.as_str(), clock.line)));
        }
        named
    }

    /// Checks the file against the catalogue's types: every type it names must exist, and
    /// every catalogue type must have a place (open a flow, be a step, or be informational),
    /// or a message of it could never be part of a case.
    pub fn check_types<'a>(
        &self,
        origin: &str,
        catalogue: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), LifecycleError> {
        let known: BTreeSet<&str> = catalogue.into_iter().collect();
        let named = self.named_types();
        if let Some((type_, line)) = named.iter().find(|(t, _)| !known.contains(t)) {
            return Err(LifecycleError::Invalid {
                path: origin.to_owned(),
                line: *line,
                message: format!("{type_} is not a type of the catalogue"),
            });
        }
        let placed: BTreeSet<&str> = named.iter().map(|(t, _)| *t).collect();
        let unplaced: Vec<&str> = known.difference(&placed).copied().collect();
        if !unplaced.is_empty() {
            return Err(LifecycleError::Invalid {
                path: origin.to_owned(),
                line: 1,
                message: format!(
                    "these catalogue types have no place in any flow; open a flow with them, \
                     make them a step, or list them as informational: {}",
                    unplaced.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// What a message of `type_` with this `event` (the whole CloudEvent, whose payload is
    /// `data`) could do to its case. `by_addressee`: its sender is an addressee (`to`) of
    /// the message it answers.
    pub fn moves(&self, type_: &str, event: &Value, by_addressee: bool) -> CaseMoves {
        let opens = self.opened_by(type_).map(|f| Opening {
            flow: f.name.clone(),
            initial: f.initial.clone(),
            closed: f.closed.contains(&f.initial),
        });
        let steps = self
            .flows
            .iter()
            .flat_map(|flow| flow.steps.iter().map(move |s| (flow, s)))
            .filter(|(_, s)| {
                s.on == type_
                    && (!s.by_addressee || by_addressee)
                    && s.when.iter().all(|c| c.holds(Some(event)))
            })
            .map(|(flow, s)| Move {
                flow: flow.name.clone(),
                from: s.from.clone(),
                to: s.to.clone(),
                closes: flow.closed.contains(&s.to),
            })
            .collect();
        CaseMoves {
            opens,
            steps,
            informational: self.is_informational(type_),
        }
    }

    /// The section of docs/cases.md drawn from this file: per flow, its title, what opens
    /// it, its closed states and its state diagram.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for flow in &self.flows {
            out.push_str(&format!(
                "### `{}` — {}\n\nOpened by `{}`; closed in {}.\n\n```mermaid\n{}```\n\n",
                flow.name,
                flow.title,
                flow.opened_by,
                flow.closed
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                Self::mermaid(flow)
            ));
            let clocks: Vec<&ClockRule> =
                self.clocks.iter().filter(|c| c.flow == flow.name).collect();
            if !clocks.is_empty() {
                out.push_str(
                    "| clock | kind | starts on | stops on (sent by an addressee) | period | notices |\n\
                     |---|---|---|---|---|---|\n",
                );
                for clock in clocks {
                    out.push_str(&format!(
                        "| `{}` {} | {} | {} | {} | {} | {} |\n",
                        clock.name,
                        clock.title,
                        clock.kind.as_str(),
                        match &clock.entering {
                            Some(state) => format!("`{}` entering `{state}`", clock.starts_on),
                            None => format!("`{}`", clock.starts_on),
                        },
                        clock
                            .stops_on
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        describe_period(clock),
                        describe_stages(clock),
                    ));
                }
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "Informational in every state (they never move a matter): {}.\n",
            self.informational
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }

    /// Replaces the generated section of `doc` (between [`DOC_BEGIN`] and [`DOC_END`]).
    pub fn splice_into(&self, doc: &str) -> Option<String> {
        let start = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
        let end = doc.find(DOC_END)?;
        (start <= end).then(|| format!("{}\n{}{}", &doc[..start], self.markdown(), &doc[end..]))
    }

    /// The flow as a Mermaid state diagram, for docs/cases.md.
    pub fn mermaid(flow: &Flow) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        out.push_str(&format!(
            "    [*] --> {}: {}\n",
            flow.initial, flow.opened_by
        ));
        for step in &flow.steps {
            let mut label = step.on.clone();
            if step.by_addressee {
                label.push_str(" (addressee)");
            }
            for condition in &step.when {
                label.push_str(&format!(" [{}]", describe(condition)));
            }
            for from in &step.from {
                out.push_str(&format!("    {from} --> {}: {label}\n", step.to));
            }
        }
        for state in &flow.closed {
            out.push_str(&format!("    {state} --> [*]\n"));
        }
        out
    }
}

/// A clock's period for docs/cases.md: the law's, its alternatives, a stated date.
fn describe_period(clock: &ClockRule) -> String {
    let mut parts = Vec::new();
    if let Some(period) = clock.period {
        parts.push(format!("`{period}`"));
    }
    for (when, period) in &clock.period_when {
        let conditions: Vec<String> = when.iter().map(describe).collect();
        parts.push(format!("`{period}` when {}", conditions.join(", ")));
    }
    if let Some(field) = &clock.stated_due {
        parts.push(match clock.period {
            Some(_) => format!("or the date in `{field}` if later"),
            None => format!("the date in `{field}`"),
        });
    }
    parts.join("; ")
}

/// A deadline clock's notices for docs/cases.md; a window's closing.
fn describe_stages(clock: &ClockRule) -> String {
    if clock.kind == ClockKind::Window {
        return "closes: later `stops_on` messages are refused `window_closed`".into();
    }
    clock
        .stages
        .iter()
        .map(|s| s.key.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `when = { "data.FIELD" = value | [values] }` as conditions.
fn conditions(when: BTreeMap<String, Value>) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::with_capacity(when.len());
    for (path, value) in when {
        if !path.starts_with("data.") || path.len() <= 5 {
            return Err(format!(
                "condition {path:?} must name a payload field: data.FIELD"
            ));
        }
        let any_of = match value {
            Value::Array(values) if !values.is_empty() => values,
            Value::Array(_) => return Err(format!("condition {path:?} lists no value")),
            value => vec![value],
        };
        conditions.push(Condition { path, any_of });
    }
    Ok(conditions)
}

/// Checks one `[[flow.clock]]` of `flow`: its start is the flow's opening type or one of
/// its steps (entering a state of the flow), it stops on steps of the flow, its periods
/// and offsets parse, and a window sends no notices.
fn check_clock(file: ClockFile, flow: &Flow, line: usize) -> Result<ClockRule, String> {
    let kind = match file.kind.as_deref() {
        None => ClockKind::Deadline,
        Some(kind) => ClockKind::parse(kind)
            .ok_or_else(|| format!("clock kind {kind:?} is neither \"deadline\" nor \"window\""))?,
    };
    let step_types: BTreeSet<&str> = flow.steps.iter().map(|s| s.on.as_str()).collect();
    if file.starts_on != flow.opened_by && !step_types.contains(file.starts_on.as_str()) {
        return Err(format!(
            "clock {:?} starts on {}, which neither opens flow {:?} nor is one of its steps",
            file.name, file.starts_on, flow.name
        ));
    }
    if let Some(state) = &file.entering {
        let enters = (file.starts_on == flow.opened_by && *state == flow.initial)
            || flow
                .steps
                .iter()
                .any(|s| s.on == file.starts_on && s.to == *state);
        if !enters {
            return Err(format!(
                "clock {:?}: no {} enters state {state:?} of flow {:?}",
                file.name, file.starts_on, flow.name
            ));
        }
    }
    if file.stops_on.is_empty() {
        return Err(format!("clock {:?} names no `stops_on` type", file.name));
    }
    if let Some(type_) = file
        .stops_on
        .iter()
        .find(|t| !step_types.contains(t.as_str()))
    {
        return Err(format!(
            "clock {:?} stops on {type_}, which is no step of flow {:?}",
            file.name, flow.name
        ));
    }
    let period = |text: &str| {
        text.parse::<Period>()
            .map_err(|e| format!("clock {:?}: {e}", file.name))
    };
    let law = match (file.period.as_deref(), file.working_days) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "clock {:?}: give `period` or `working_days`, not both",
                file.name
            ));
        }
        (_, Some(0)) => return Err(format!("clock {:?}: zero working days", file.name)),
        (_, Some(n)) => Some(Period::WorkingDays(n)),
        (text, None) => text.map(period).transpose()?,
    };
    let mut period_when = Vec::with_capacity(file.period_when.len());
    for alternative in file.period_when {
        period_when.push((conditions(alternative.when)?, period(&alternative.period)?));
    }
    if let Some(field) = &file.stated_due
        && (!field.starts_with("data.") || field.len() <= 5)
    {
        return Err(format!(
            "clock {:?}: stated_due {field:?} must name a payload field: data.FIELD",
            file.name
        ));
    }
    if law.is_none() && file.stated_due.is_none() {
        return Err(format!(
            "clock {:?} needs a `period` (or `working_days`), a `stated_due` field, or both",
            file.name
        ));
    }
    let offsets = |texts: Vec<String>| {
        texts
            .into_iter()
            .map(|text| match clocks::parse_offset(&text) {
                Some(d) => Ok((text, d)),
                None => Err(format!(
                    "clock {:?}: offset {text:?} is not PnD, PTnH, PTnM or PTnS",
                    file.name
                )),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let (remind_before, escalate_after) =
        (offsets(file.remind_before)?, offsets(file.escalate_after)?);
    if kind == ClockKind::Window && !(remind_before.is_empty() && escalate_after.is_empty()) {
        return Err(format!(
            "clock {:?} is a window: it closes, it sends no reminders or escalations",
            file.name
        ));
    }
    let stages = match kind {
        ClockKind::Deadline => clocks::stages(&remind_before, &escalate_after),
        ClockKind::Window => Vec::new(),
    };
    Ok(ClockRule {
        name: file.name,
        title: file.title,
        flow: flow.name.clone(),
        kind,
        starts_on: file.starts_on,
        entering: file.entering,
        stops_on: file.stops_on,
        period: law,
        period_when,
        stated_due: file.stated_due,
        stages,
        line,
    })
}

/// Every state a step leaves must be reachable (the initial state or some step's target),
/// every closed state must be reachable, and a closed state must be reachable at all.
fn check_states(flow: &Flow, closed_line: usize) -> Result<(), (usize, String)> {
    let mut reached: BTreeSet<&str> = BTreeSet::from([flow.initial.as_str()]);
    // Fixpoint over the steps: a state is reached if some step from a reached state leads
    // to it.
    loop {
        let before = reached.len();
        for step in &flow.steps {
            if step.from.iter().any(|f| reached.contains(f.as_str())) {
                reached.insert(&step.to);
            }
        }
        if reached.len() == before {
            break;
        }
    }
    for step in &flow.steps {
        if let Some(state) = step.from.iter().find(|f| !reached.contains(f.as_str())) {
            return Err((
                step.line,
                format!(
                    "flow {:?}: state {state:?} is never reached (a misspelling?)",
                    flow.name
                ),
            ));
        }
    }
    if flow.closed.is_empty() {
        return Err((
            closed_line,
            format!("flow {:?} has no closed state", flow.name),
        ));
    }
    if let Some(state) = flow.closed.iter().find(|s| !reached.contains(s.as_str())) {
        return Err((
            closed_line,
            format!(
                "flow {:?}: closed state {state:?} is never reached",
                flow.name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE: &str = r#"
informational = ["receipt.v1", "case.notification.v1"]

[[flow]]
name = "transfer"
title = "两法衔接 / Criminal case transfer"
opened_by = "case.transfer.v1"
initial = "transferred"
closed = ["filed"]

[[flow.step]]
on = "receipt.v1"
by = "addressee"
from = ["transferred"]
to = "received"

[[flow.step]]
on = "case.filing-decision.v1"
from = ["transferred", "received"]
when = { "data.decision" = "file" }
to = "filed"

[[flow.step]]
on = "case.filing-decision.v1"
from = ["transferred", "received"]
when = { "data.decision" = ["not_file"] }
to = "not_filed"

[[flow.step]]
on = "case.filing-notice.v1"
from = ["not_filed"]
to = "filed"
"#;

    fn sample() -> Lifecycle {
        Lifecycle::from_toml(SAMPLE, "lifecycle.toml").expect("sample lifecycle")
    }

    fn event(data: Value) -> Value {
        json!({ "data": data })
    }

    #[test]
    fn an_opener_opens_its_flow() {
        let moves = sample().moves("case.transfer.v1", &event(json!({})), false);
        assert_eq!(
            moves.opens,
            Some(Opening {
                flow: "transfer".into(),
                initial: "transferred".into(),
                closed: false,
            })
        );
        assert!(moves.steps.is_empty());
    }

    #[test]
    fn conditions_pick_the_transition() {
        let lifecycle = sample();
        let filed = lifecycle.moves(
            "case.filing-decision.v1",
            &event(json!({"decision": "file"})),
            true,
        );
        let to = filed.apply("transfer", "received").unwrap().unwrap();
        assert_eq!((to.to.as_str(), to.closes), ("filed", true));
        let refused = lifecycle.moves(
            "case.filing-decision.v1",
            &event(json!({"decision": "not_file"})),
            true,
        );
        let to = refused.apply("transfer", "transferred").unwrap().unwrap();
        assert_eq!((to.to.as_str(), to.closes), ("not_filed", false));
    }

    #[test]
    fn a_message_that_is_no_step_from_the_state_is_invalid() {
        let lifecycle = sample();
        let decision = lifecycle.moves(
            "case.filing-decision.v1",
            &event(json!({"decision": "file"})),
            true,
        );
        assert_eq!(
            decision.apply("transfer", "not_filed"),
            Err(InvalidTransition {
                flow: "transfer".into(),
                state: "not_filed".into()
            })
        );
        // Closed states are left by nothing.
        assert!(decision.apply("transfer", "filed").is_err());
    }

    #[test]
    fn receipts_move_only_when_sent_by_an_addressee_and_otherwise_join_unchanged() {
        let lifecycle = sample();
        let by_police = lifecycle.moves("receipt.v1", &event(json!({})), true);
        assert_eq!(
            by_police
                .apply("transfer", "transferred")
                .unwrap()
                .map(|m| m.to.as_str()),
            Some("received")
        );
        let by_copy = lifecycle.moves("receipt.v1", &event(json!({})), false);
        assert_eq!(by_copy.apply("transfer", "transferred"), Ok(None));
        // Informational types join any state, closed ones included.
        assert_eq!(by_police.apply("transfer", "filed"), Ok(None));
    }

    #[test]
    fn a_missing_field_fails_a_condition() {
        let moves = sample().moves("case.filing-decision.v1", &event(json!({})), true);
        assert!(moves.steps.is_empty());
        assert!(moves.apply("transfer", "received").is_err());
    }

    fn refused(text: &str) -> LifecycleError {
        Lifecycle::from_toml(text, "lc.toml").expect_err("must be refused")
    }

    #[test]
    fn errors_name_the_line() {
        let text = SAMPLE.replace(r#"from = ["not_filed"]"#, r#"from = ["not_filde"]"#);
        let error = refused(&text);
        assert!(error.to_string().contains("not_filde"), "{error}");
        let expected = text
            .lines()
            .position(|l| l.contains("case.filing-notice.v1"))
            .unwrap();
        // The step's table header is the line before its `on`.
        assert_eq!(error.line(), Some(expected), "{error}");

        let unknown_key = SAMPLE.replace("by = \"addressee\"", "by = \"addressee\"\nbye = 1");
        let error = refused(&unknown_key);
        assert!(error.to_string().contains("bye"), "{error}");
    }

    #[test]
    fn closed_states_must_be_reached_and_never_left() {
        let error = refused(&SAMPLE.replace(r#"closed = ["filed"]"#, r#"closed = ["filled"]"#));
        assert!(error.to_string().contains("filled"), "{error}");
        let error = refused(&SAMPLE.replace(
            r#"closed = ["filed"]"#,
            r#"closed = ["filed", "not_filed"]"#,
        ));
        assert!(
            error.to_string().contains("no step may leave it"),
            "{error}"
        );
    }

    const CLOCKS: &str = r#"
[[flow.clock]]
name = "filing_review"
title = "立案审查 / Police filing review"
starts_on = "case.transfer.v1"
stops_on = ["case.filing-decision.v1"]
period = "P3D"
remind_before = ["P1D"]
escalate_after = ["P3D"]

[[flow.clock]]
name = "reconsideration_request"
title = "提请复议 / Request for reconsideration"
kind = "window"
starts_on = "case.filing-decision.v1"
entering = "not_filed"
stops_on = ["case.filing-notice.v1"]
period = "P3D"
"#;

    #[test]
    fn clocks_start_on_their_types_and_stop_on_their_answers() {
        let lifecycle =
            Lifecycle::from_toml(&format!("{SAMPLE}{CLOCKS}"), "lifecycle.toml").unwrap();
        let calendar = HolidayCalendar::shipped();
        // Tue 29 September 2026, 10:00: three days end on Fri 2 October, in the National
        // Day holiday (1–7 October), so the first working day after it, Thu 8 October.
        let start = time::macros::datetime!(2026-09-29 10:00 +8);
        let intent =
            lifecycle.clock_intent("case.transfer.v1", &event(json!({})), start, &calendar);
        assert_eq!(intent.starts.len(), 1);
        let review = &intent.starts[0];
        assert_eq!(
            (review.clock.as_str(), review.kind),
            ("filing_review", ClockKind::Deadline)
        );
        assert_eq!(review.due, Ok(time::macros::datetime!(2026-10-09 00:00 +8)));
        assert!(intent.stops.is_empty());

        let decision = lifecycle.clock_intent(
            "case.filing-decision.v1",
            &event(json!({})),
            start,
            &calendar,
        );
        assert_eq!(decision.stops.len(), 1, "{decision:?}");
        assert_eq!(decision.stops[0].clock, "filing_review");
        assert_eq!(decision.starts[0].entering.as_deref(), Some("not_filed"));
        assert_eq!(decision.starts[0].kind, ClockKind::Window);

        let keys: Vec<&str> = lifecycle
            .clock("transfer", "filing_review")
            .unwrap()
            .stages
            .iter()
            .map(|s| s.key.as_str())
            .collect();
        assert_eq!(keys, ["reminder-P1D", "overdue", "escalation-P3D"]);
        assert!(
            lifecycle
                .clock("transfer", "reconsideration_request")
                .unwrap()
                .stages
                .is_empty()
        );
        assert!(lifecycle.markdown().contains("| `filing_review` 立案审查"));
    }

    #[test]
    fn in_trial_time_a_day_lasts_what_the_trial_says() {
        let lifecycle = Lifecycle::from_toml(&format!("{SAMPLE}{CLOCKS}"), "lifecycle.toml")
            .unwrap()
            .in_trial_time(std::time::Duration::from_secs(2));
        let review = lifecycle.clock("transfer", "filing_review").unwrap();
        assert_eq!(review.period, Some(Period::Seconds(6)));
        let offsets: Vec<i64> = review
            .stages
            .iter()
            .map(|s| s.offset.whole_seconds())
            .collect();
        assert_eq!(offsets, [-2, 0, 6]);
        // No calendar: the holiday that moved the legal due date does not apply.
        let start = time::macros::datetime!(2026-09-30 23:59:58 +8);
        let intent = lifecycle.clock_intent(
            "case.transfer.v1",
            &event(json!({})),
            start,
            &HolidayCalendar::empty(),
        );
        assert_eq!(intent.starts[0].due, Ok(start + time::Duration::seconds(6)));
    }

    #[test]
    fn clocks_naming_unknown_states_or_steps_are_refused_with_their_line() {
        let cases = [
            (
                "entering = \"not_filed\"",
                "entering = \"not_fild\"",
                "not_fild",
            ),
            (
                "stops_on = [\"case.filing-notice.v1\"]",
                "stops_on = [\"pil.lead.v1\"]",
                "no step of flow",
            ),
            (
                "starts_on = \"case.transfer.v1\"",
                "starts_on = \"receipt.v2\"",
                "receipt.v2",
            ),
            (
                "period = \"P3D\"\nremind",
                "period = \"P3Q\"\nremind",
                "P3Q",
            ),
            (
                "kind = \"window\"",
                "kind = \"window\"\nremind_before = [\"P1D\"]",
                "window",
            ),
            ("kind = \"window\"", "kind = \"windw\"", "windw"),
            (
                "remind_before = [\"P1D\"]",
                "remind_before = [\"P1M\"]",
                "P1M",
            ),
        ];
        for (from, to, named) in cases {
            let text = format!("{SAMPLE}{}", CLOCKS.replacen(from, to, 1));
            let error = refused(&text);
            assert!(error.to_string().contains(named), "{to}: {error}");
            assert!(
                error.line().is_some_and(|l| l > SAMPLE.lines().count()),
                "{error}"
            );
        }
        let no_period = CLOCKS.replace("period = \"P3D\"\n\"#", "\"#");
        let text = format!(
            "{SAMPLE}{}",
            no_period.replacen("period = \"P3D\"\n", "", 2)
        );
        assert!(refused(&text).to_string().contains("needs a `period`"));
        let twice = format!(
            "{SAMPLE}{CLOCKS}{}",
            CLOCKS.replace("reconsideration_request", "x")
        );
        assert!(refused(&twice).to_string().contains("another clock"));
        // A clock's types are checked against the catalogue like every other type.
        let lifecycle = Lifecycle::from_toml(&format!("{SAMPLE}{CLOCKS}"), "l.toml").unwrap();
        let without_notice = [
            "receipt.v1",
            "case.notification.v1",
            "case.transfer.v1",
            "case.filing-decision.v1",
        ];
        let error = lifecycle.check_types("l.toml", without_notice).unwrap_err();
        assert!(
            error.to_string().contains("case.filing-notice.v1"),
            "{error}"
        );
    }

    #[test]
    fn one_type_opens_one_flow() {
        let twice = format!(
            "{SAMPLE}\n[[flow]]\nname = \"again\"\ntitle = \"t\"\nopened_by = \"case.transfer.v1\"\n\
             initial = \"x\"\nclosed = [\"x\"]\n"
        );
        let error = refused(&twice);
        assert!(error.to_string().contains("already opens"), "{error}");
    }

    #[test]
    fn the_catalogue_must_know_every_type_and_place_every_type() {
        let lifecycle = sample();
        let types = [
            "receipt.v1",
            "case.notification.v1",
            "case.transfer.v1",
            "case.filing-decision.v1",
            "case.filing-notice.v1",
        ];
        lifecycle.check_types("lc.toml", types).expect("all placed");
        let error = lifecycle
            .check_types("lc.toml", types.into_iter().chain(["hotline.record.v1"]))
            .expect_err("an unplaced type");
        assert!(error.to_string().contains("hotline.record.v1"), "{error}");
        let error = lifecycle
            .check_types("lc.toml", types.into_iter().filter(|t| *t != "receipt.v1"))
            .expect_err("an unknown type");
        assert!(error.to_string().contains("receipt.v1"), "{error}");
    }

    #[test]
    fn mermaid_lists_every_transition() {
        let lifecycle = sample();
        let diagram = Lifecycle::mermaid(lifecycle.flow("transfer").unwrap());
        assert!(diagram.contains("[*] --> transferred: case.transfer.v1"));
        assert!(
            diagram.contains("received --> filed: case.filing-decision.v1 [data.decision = file]")
        );
        assert!(diagram.contains("filed --> [*]"));
    }

    #[test]
    fn thread_steps_say_whether_they_moved() {
        let opened = ThreadStep {
            thread: Uuid::nil(),
            flow: "transfer".into(),
            from: None,
            to: "transferred".into(),
            closed: false,
        };
        assert!(opened.is_transition());
        let joined = ThreadStep {
            from: Some("filed".into()),
            to: "filed".into(),
            ..opened.clone()
        };
        assert!(!joined.is_transition());
        assert_eq!(
            serde_json::to_value(&opened).unwrap(),
            json!({"thread": Uuid::nil(), "flow": "transfer", "to": "transferred"})
        );
    }
}
