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

use crate::policy::Condition;

/// Markers around the section of docs/cases.md generated from the lifecycle file.
pub const DOC_BEGIN: &str = "<!-- generated from deploy/demo/lifecycle.toml: begin -->";
pub const DOC_END: &str = "<!-- generated from deploy/demo/lifecycle.toml: end -->";

/// The checked lifecycle file.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    flows: Vec<Flow>,
    informational: BTreeSet<String>,
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
                let mut when = Vec::with_capacity(step.when.len());
                for (path, value) in step.when {
                    if !path.starts_with("data.") || path.len() <= 5 {
                        return Err(invalid(
                            line,
                            format!("condition {path:?} must name a payload field: data.FIELD"),
                        ));
                    }
                    let any_of = match value {
                        Value::Array(values) if !values.is_empty() => values,
                        Value::Array(_) => {
                            return Err(invalid(
                                line,
                                format!("condition {path:?} lists no value"),
                            ));
                        }
                        value => vec![value],
                    };
                    when.push(Condition { path, any_of });
                }
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
            flows.push(checked);
        }
        Ok(Self {
            flows,
            informational,
        })
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
