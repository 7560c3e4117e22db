//! Routing and authorization policy: who may send what, and who receives it.
//!
//! Deny by default. A rule names a message type, the agencies that may send it (`from`,
//! `"*"` for any registered agency), optional conditions on the payload (`when`), and its
//! recipients:
//!
//! - fixed agencies: `to` (主送) and `cc` (抄送);
//! - agencies the message names itself: `to = "named"` with the set it may name in
//!   `allowed` (`["*"]`: any registered agency) — the envelope's `recipients` picks them;
//! - for answers, the parties of the message named by `inreplyto` (`reply_to`): its
//!   `sender`, its `sender_and_copies`, or — for the original's own sender chasing an
//!   answer — its `recipients`.
//!
//! An answer names its original in `inreplyto`, and only the original's addressees send
//! it (`answered_by = "recipients"`: copies too). A rule with `answered_by` and no
//! `reply_to` routes an answer to its own fixed or named recipients instead of the
//! original's parties — a transferring agency asking the procuratorate to supervise a
//! police refusal answers that refusal, and the police must not receive the request —
//! while the original is still checked the same way.
//!
//! Every rule that matches the sender and type and whose `when` holds contributes
//! recipients; the sender never receives its own message. An explicit `recipients`
//! attribute may only narrow the result: for fixed routes it keeps a subset, for named
//! routes it chooses the addressees within `allowed`, and the copies that the policy
//! requires (e.g. the county government on a high-impact recommendation) are kept.
//!
//! Supervisory recipients are never narrowed away: a rule's `mandatory` list names the
//! agencies that must receive every message it routes (the procuratorate on criminal case
//! transfers and filing decisions, discipline inspection on misconduct leads), with the
//! reason in `why`. A `recipients` attribute that leaves one out still delivers to it.
//!
//! The route is computed once, when the message is accepted, and recorded with it; a
//! policy changed later never alters where an accepted message goes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;
use uuid::Uuid;

use crate::agency::{AgencyCode, Registry};
use crate::envelope::Envelope;
use crate::reject::RejectCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyTo {
    /// The sender of the original message.
    Sender,
    /// The sender of the original and every other recipient of it.
    SenderAndCopies,
    /// Every recipient of the original, which only its own sender may answer this way: a
    /// party chasing those who owe it an answer (deadline reminders).
    Recipients,
}

/// Which recipients of the original may send an answer routed by `reply_to`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    /// Its addressees (主送) only: a copied agency is informed, it does not reply or object.
    #[default]
    Addressees,
    /// Any recipient, copies included (receipts: every recipient acknowledges).
    Recipients,
}

/// `to` is either a list of agency codes or the keyword `"named"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum ToFile {
    Keyword(String),
    Fixed(Vec<String>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: Spanned<String>,
    #[serde(rename = "type")]
    type_: Spanned<String>,
    from: Spanned<Vec<String>>,
    #[serde(default)]
    to: Option<Spanned<ToFile>>,
    #[serde(default)]
    allowed: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    cc: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    reply_to: Option<ReplyTo>,
    #[serde(default)]
    answered_by: Option<Spanned<AnsweredBy>>,
    #[serde(default)]
    when: Option<Spanned<BTreeMap<String, Value>>>,
    /// Recipients of this rule that no `recipients` attribute may leave out.
    #[serde(default)]
    mandatory: Option<Spanned<Vec<String>>>,
    /// Why the `mandatory` recipients supervise: shown by `liaison policy explain`.
    #[serde(default)]
    why: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(rename = "rule", default)]
    rules: Vec<Spanned<RuleFile>>,
}

#[derive(Clone, Debug)]
enum Senders {
    Any,
    Only(Vec<AgencyCode>),
}

/// Which agencies a `to = "named"` rule lets the message name.
#[derive(Clone, Debug)]
enum Named {
    AnyRegistered,
    Only(Vec<AgencyCode>),
}

/// One payload condition: the value at `path` (dotted, from the event root, e.g.
/// `data.impact`) must equal one of `any_of`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub path: String,
    pub any_of: Vec<Value>,
}

impl Condition {
    pub fn holds(&self, event: Option<&Value>) -> bool {
        let Some(mut at) = event else { return false };
        for key in self.path.split('.') {
            match at.get(key) {
                Some(next) => at = next,
                None => return false,
            }
        }
        self.any_of.iter().any(|v| v == at)
    }
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    line: usize,
    type_: String,
    from: Senders,
    to: Vec<AgencyCode>,
    named: Option<Named>,
    cc: Vec<AgencyCode>,
    reply_to: Option<ReplyTo>,
    /// For answers checked against their original's addressees (or recipients): who may
    /// send them. `None` for messages that answer nothing, and for `reply_to =
    /// "recipients"`, which only the original's own sender sends.
    answered_by: Option<AnsweredBy>,
    when: Vec<Condition>,
    /// Supervisory recipients that a `recipients` attribute cannot remove.
    mandatory: Vec<AgencyCode>,
    /// The reason they are mandatory (empty when `mandatory` is).
    why: String,
}

impl Rule {
    /// Whether the rule routes answers: its messages must name an original they may answer.
    fn answers(&self) -> bool {
        self.reply_to.is_some() || self.answered_by.is_some()
    }

    fn sends(&self, sender: &AgencyCode, type_: &str) -> bool {
        self.type_ == type_
            && match &self.from {
                Senders::Any => true,
                Senders::Only(codes) => codes.contains(sender),
            }
    }
}

/// A rule as `liaison policy check` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSummary<'a> {
    pub name: &'a str,
    pub line: usize,
    pub type_: &'a str,
    pub conditions: &'a [Condition],
}

/// Who may send a rule's type and who receives it, as `GET /v1/agencies` lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleRoute<'a> {
    pub name: &'a str,
    pub type_: &'a str,
    /// The agencies that may send it; `None`: any registered agency.
    pub from: Option<&'a [AgencyCode]>,
    /// Fixed addressees (主送).
    pub to: &'a [AgencyCode],
    /// Fixed copies (抄送).
    pub cc: &'a [AgencyCode],
    /// `to = "named"`: the message's `recipients` picks its addressees among these
    /// (`Some(None)`: any registered agency).
    pub named: Option<Option<&'a [AgencyCode]>>,
    /// For answers: which parties of the original receive it.
    pub reply_to: Option<ReplyTo>,
    /// Payload conditions: the rule applies only when all hold.
    pub when: &'a [Condition],
}

impl RuleRoute<'_> {
    /// Whether `agency` may send messages of this rule.
    pub fn sent_by(&self, agency: &AgencyCode) -> bool {
        self.from.is_none_or(|codes| codes.contains(agency))
    }

    /// Whether some sender of the rule is not `agency` (a sender never receives its own
    /// message, so a rule whose only sender is `agency` never delivers to it).
    pub fn sent_by_another_than(&self, agency: &AgencyCode) -> bool {
        self.from
            .is_none_or(|codes| codes.iter().any(|c| c != agency))
    }
}

/// A supervisory recipient that no sender can remove, as `liaison policy explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MandatoryRecipient<'a> {
    pub agency: &'a AgencyCode,
    /// The rule that makes it mandatory.
    pub rule: &'a str,
    /// Why it must receive the message.
    pub why: &'a str,
}

/// How a recipient came to receive a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    /// Addressed directly (主送), or the party a reply answers.
    To,
    /// A copy (抄送).
    Cc,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub agency: AgencyCode,
    pub role: RecipientRole,
    /// The name of the rule that chose this recipient.
    pub rule: String,
}

/// The recipients the policy chose for one message, in a stable order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub recipients: Vec<Recipient>,
}

impl Route {
    pub fn agencies(&self) -> impl Iterator<Item = &AgencyCode> {
        self.recipients.iter().map(|r| &r.agency)
    }
}

/// What the policy needs to know about the message a reply answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalMessage {
    pub id: Uuid,
    /// Its CloudEvents type (what the answer's `x-liaison.answers` must name).
    pub type_: String,
    pub sender: AgencyCode,
    /// Every recipient, copies included.
    pub recipients: Vec<AgencyCode>,
    /// The recipients it was addressed to (主送): the only ones that answer it, unless the
    /// answering rule says `answered_by = "recipients"`.
    pub addressees: Vec<AgencyCode>,
    /// Its case reference: an answer belongs to the same case.
    pub caseref: Option<String>,
}

impl OriginalMessage {
    /// The original as recorded with its route.
    pub fn from_route(id: Uuid, type_: String, sender: AgencyCode, route: &Route) -> Self {
        Self {
            id,
            type_,
            sender,
            recipients: route.agencies().cloned().collect(),
            addressees: route
                .recipients
                .iter()
                .filter(|r| r.role == RecipientRole::To)
                .map(|r| r.agency.clone())
                .collect(),
            caseref: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy does not allow {sender} to send {type_}")]
    TypeNotAllowed { sender: AgencyCode, type_: String },
    #[error("the policy lets {sender} send {type_} only with other content ({conditions})")]
    ConditionsNotMet {
        sender: AgencyCode,
        type_: String,
        conditions: String,
    },
    #[error("the policy does not route this message to {}; {}", join(.agencies), may_go_to(.allowed))]
    RecipientsNotAllowed {
        agencies: Vec<AgencyCode>,
        /// Every agency `recipients` may name for this message (the sender left out).
        allowed: Vec<AgencyCode>,
    },
    #[error(
        "{type_} is addressed by name: the `recipients` attribute must name its addressees; {}",
        may_go_to(.allowed)
    )]
    RecipientsRequired {
        type_: String,
        /// The agencies it may name (the sender left out).
        allowed: Vec<AgencyCode>,
    },
    #[error("the policy routes this {type_} from {sender} to no agency other than its sender")]
    NoRecipients { sender: AgencyCode, type_: String },
    #[error(
        "{type_} answers another message: inreplyto must name a message {sender} sent or received"
    )]
    UnknownOriginal { sender: AgencyCode, type_: String },
    #[error(
        "{sender} {role} message {original}, so it may not answer it with {type_}: only its addressees answer"
    )]
    NotAnAddressee {
        sender: AgencyCode,
        type_: String,
        original: Uuid,
        /// "sent" or "was only copied on".
        role: &'static str,
    },
}

/// The end of a `recipients_not_allowed` detail: who the sender may name instead.
fn may_go_to(allowed: &[AgencyCode]) -> String {
    if allowed.is_empty() {
        "it may go to no agency other than its sender".to_owned()
    } else {
        format!("it may go to: {}", join(allowed))
    }
}

fn join(agencies: &[AgencyCode]) -> String {
    agencies
        .iter()
        .map(AgencyCode::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PolicyError {
    pub fn code(&self) -> RejectCode {
        match self {
            Self::TypeNotAllowed { .. } | Self::ConditionsNotMet { .. } => {
                RejectCode::TypeNotAllowed
            }
            Self::RecipientsNotAllowed { .. }
            | Self::RecipientsRequired { .. }
            | Self::NoRecipients { .. } => RejectCode::RecipientsNotAllowed,
            Self::UnknownOriginal { .. } => RejectCode::UnknownOriginal,
            Self::NotAnAddressee { .. } => RejectCode::NotAnAddressee,
        }
    }
}

/// Why a policy file was refused; every variant names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("policy {path}:{line}: rule {rule:?}: {message}")]
    Rule {
        path: String,
        line: usize,
        rule: String,
        message: String,
    },
}

impl PolicyLoadError {
    /// The 1-based line the error points at, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { .. } => None,
            Self::Parse { line, .. } | Self::Rule { line, .. } => Some(*line),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// The registry's agencies when the policy was loaded: what `allowed = ["*"]` means.
    agencies: BTreeSet<AgencyCode>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

impl Policy {
    pub fn load(path: &Path, registry: &Registry) -> Result<Self, PolicyLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyLoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string(), registry)
    }

    /// Parses and checks a policy against the registry; `origin` names the file in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        registry: &Registry,
    ) -> Result<Self, PolicyLoadError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyLoadError::Parse {
            path: origin.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().to_owned(),
        })?;
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for rule in file.rules {
            let rule_line = line_of(text, rule.span().start);
            let rule = rule.into_inner();
            let checked = RuleChecker {
                text,
                origin,
                registry,
                name: rule.name.get_ref().clone(),
            }
            .check(rule, rule_line)?;
            if !names.insert(checked.name.clone()) {
                return Err(PolicyLoadError::Rule {
                    path: origin.to_owned(),
                    line: checked.line,
                    rule: checked.name,
                    message: "another rule has the same name".into(),
                });
            }
            rules.push(checked);
        }
        Ok(Self {
            rules,
            agencies: registry.codes().cloned().collect(),
        })
    }

    /// Every message type some rule names.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.type_.as_str())
    }

    /// Every rule, in file order, for reports and cross-checks against the catalogue.
    pub fn rules(&self) -> impl Iterator<Item = RuleSummary<'_>> {
        self.rules.iter().map(|r| RuleSummary {
            name: &r.name,
            line: r.line,
            type_: &r.type_,
            conditions: &r.when,
        })
    }

    /// Whether some rule routes `type_` as an answer to an earlier message.
    pub fn is_reply_type(&self, type_: &str) -> bool {
        self.rules.iter().any(|r| r.type_ == type_ && r.answers())
    }

    /// Whether any rule lets `sender` send `type_` at all, whatever its payload, recipients
    /// or original: what the pipeline checks before the payload schema, so that a sender
    /// learns it may not send a type before it is told how to fix the payload.
    pub fn may_send(&self, sender: &AgencyCode, type_: &str) -> bool {
        self.rules.iter().any(|r| r.sends(sender, type_))
    }

    /// Every rule's senders and recipients, in file order, for the agencies' directory.
    pub fn routes(&self) -> impl Iterator<Item = RuleRoute<'_>> {
        self.rules.iter().map(|r| RuleRoute {
            name: &r.name,
            type_: &r.type_,
            from: match &r.from {
                Senders::Any => None,
                Senders::Only(codes) => Some(codes),
            },
            to: &r.to,
            cc: &r.cc,
            named: r.named.as_ref().map(|named| match named {
                Named::AnyRegistered => None,
                Named::Only(codes) => Some(codes.as_slice()),
            }),
            reply_to: r.reply_to,
            when: &r.when,
        })
    }

    /// The supervisory recipients `sender`'s messages of `type_` must reach whatever their
    /// `recipients` attribute says (of rules whose `when` holds for `event`; all rules of
    /// the type when `event` is `None`).
    pub fn mandatory_recipients<'p>(
        &'p self,
        sender: &AgencyCode,
        type_: &str,
        event: Option<&Value>,
    ) -> Vec<MandatoryRecipient<'p>> {
        self.rules
            .iter()
            .filter(|r| r.sends(sender, type_))
            .filter(|r| event.is_none() || r.when.iter().all(|c| c.holds(event)))
            .flat_map(|r| {
                r.mandatory.iter().map(|agency| MandatoryRecipient {
                    agency,
                    rule: &r.name,
                    why: &r.why,
                })
            })
            .collect()
    }

    /// Decides the recipients of a message without looking at its payload: rules with a
    /// `when` condition never apply. Use [`Policy::route_event`] for a whole CloudEvent.
    pub fn route(
        &self,
        sender: &AgencyCode,
        envelope: &Envelope,
        original: Option<&OriginalMessage>,
    ) -> Result<Route, PolicyError> {
        self.route_event(sender, envelope, None, original)
    }

    /// Decides the recipients of one message, or why it may not be sent.
    ///
    /// `event` is the whole CloudEvent (what `when` conditions look at); `original` is the
    /// message that `inreplyto` names, as the ledger knows it; `None` when there is no
    /// `inreplyto` or the ledger does not hold it.
    pub fn route_event(
        &self,
        sender: &AgencyCode,
        envelope: &Envelope,
        event: Option<&Value>,
        original: Option<&OriginalMessage>,
    ) -> Result<Route, PolicyError> {
        let authorizing: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.sends(sender, &envelope.type_))
            .collect();
        if authorizing.is_empty() {
            return Err(PolicyError::TypeNotAllowed {
                sender: sender.clone(),
                type_: envelope.type_.clone(),
            });
        }
        let matching: Vec<&Rule> = authorizing
            .iter()
            .copied()
            .filter(|r| r.when.iter().all(|c| c.holds(event)))
            .collect();
        if matching.is_empty() {
            let conditions = authorizing
                .iter()
                .flat_map(|r| r.when.iter())
                .map(|c| format!("{} in {}", c.path, Value::Array(c.any_of.clone())))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PolicyError::ConditionsNotMet {
                sender: sender.clone(),
                type_: envelope.type_.clone(),
                conditions,
            });
        }

        let mut chosen = Chosen::new(sender);
        let mut named_route = false;
        // Who a named route lets the message name, for a refusal to list.
        let mut nameable: BTreeSet<AgencyCode> = BTreeSet::new();
        for rule in &matching {
            for agency in &rule.to {
                chosen.add(agency, RecipientRole::To, &rule.name);
            }
            for agency in &rule.cc {
                chosen.add(agency, RecipientRole::Cc, &rule.name);
            }
            if let Some(named) = &rule.named {
                named_route = true;
                nameable.extend(
                    match named {
                        Named::AnyRegistered => self.agencies.iter().collect::<Vec<_>>(),
                        Named::Only(codes) => codes.iter().collect(),
                    }
                    .into_iter()
                    .filter(|a| *a != sender)
                    .cloned(),
                );
                let wanted = envelope.recipients.as_ref().ok_or_else(|| {
                    PolicyError::RecipientsRequired {
                        type_: envelope.type_.clone(),
                        allowed: nameable.iter().cloned().collect(),
                    }
                })?;
                for agency in wanted {
                    let allowed = match named {
                        Named::AnyRegistered => self.agencies.contains(agency),
                        Named::Only(codes) => codes.contains(agency),
                    };
                    if allowed {
                        chosen.add(agency, RecipientRole::To, &rule.name);
                    }
                }
            }
            if rule.answers() {
                let unknown = || PolicyError::UnknownOriginal {
                    sender: sender.clone(),
                    type_: envelope.type_.clone(),
                };
                let original = original.ok_or_else(unknown)?;
                let may_answer = match (rule.reply_to, rule.answered_by) {
                    (Some(ReplyTo::Recipients), _) => &original.sender == sender,
                    (_, Some(AnsweredBy::Recipients)) => original.recipients.contains(sender),
                    (_, _) => original.addressees.contains(sender),
                };
                if !may_answer {
                    // A party that may not answer learns why; anyone else learns nothing
                    // about the original.
                    let role = if rule.reply_to == Some(ReplyTo::Recipients) {
                        return Err(unknown());
                    } else if &original.sender == sender {
                        "sent"
                    } else if original.recipients.contains(sender) {
                        "was only copied on"
                    } else {
                        return Err(unknown());
                    };
                    return Err(PolicyError::NotAnAddressee {
                        sender: sender.clone(),
                        type_: envelope.type_.clone(),
                        original: original.id,
                        role,
                    });
                }
                match rule.reply_to {
                    // Those who owe the answer are reminded; the original's copies (the
                    // supervisors) are copied again.
                    Some(ReplyTo::Recipients) => {
                        for agency in &original.recipients {
                            let role = if original.addressees.contains(agency) {
                                RecipientRole::To
                            } else {
                                RecipientRole::Cc
                            };
                            chosen.add(agency, role, &rule.name);
                        }
                    }
                    Some(ReplyTo::Sender) => {
                        chosen.add(&original.sender, RecipientRole::To, &rule.name);
                    }
                    Some(ReplyTo::SenderAndCopies) => {
                        chosen.add(&original.sender, RecipientRole::To, &rule.name);
                        for agency in &original.recipients {
                            chosen.add(agency, RecipientRole::Cc, &rule.name);
                        }
                    }
                    // The rule's own `to`, `cc` or named recipients, added above.
                    None => {}
                }
            }
        }
        let mut chosen = chosen.into_map();
        // Supervisory recipients the matching rules chose: no `recipients` removes them.
        let mandatory: BTreeSet<&AgencyCode> = matching
            .iter()
            .flat_map(|r| r.mandatory.iter())
            .filter(|a| chosen.contains_key(*a))
            .collect();

        if let Some(wanted) = &envelope.recipients {
            let refused: Vec<AgencyCode> = wanted
                .iter()
                .filter(|a| *a != sender && !chosen.contains_key(*a))
                .cloned()
                .collect();
            if !refused.is_empty() {
                let allowed: BTreeSet<AgencyCode> =
                    chosen.keys().cloned().chain(nameable).collect();
                return Err(PolicyError::RecipientsNotAllowed {
                    agencies: refused,
                    allowed: allowed.into_iter().collect(),
                });
            }
            // A named route's `recipients` picked the addressees; the policy's copies stay.
            if !named_route {
                chosen.retain(|agency, _| wanted.contains(agency) || mandatory.contains(agency));
            }
        }

        let mut recipients: Vec<Recipient> = chosen.into_values().collect();
        // A sender is never its own recipient; a message left with nobody to deliver to
        // (e.g. the procuratorate sending a lead "to the procuratorate") is refused
        // rather than accepted into the ledger and delivered nowhere.
        if recipients.is_empty() {
            return Err(PolicyError::NoRecipients {
                sender: sender.clone(),
                type_: envelope.type_.clone(),
            });
        }
        recipients.sort_by(|a, b| (a.role, &a.agency).cmp(&(b.role, &b.agency)));
        Ok(Route { recipients })
    }
}

/// The recipients collected so far; a direct address outranks a copy.
struct Chosen<'s> {
    sender: &'s AgencyCode,
    map: BTreeMap<AgencyCode, Recipient>,
}

impl<'s> Chosen<'s> {
    fn new(sender: &'s AgencyCode) -> Self {
        Self {
            sender,
            map: BTreeMap::new(),
        }
    }

    fn add(&mut self, agency: &AgencyCode, role: RecipientRole, rule: &str) {
        if agency == self.sender {
            return;
        }
        let entry = self.map.entry(agency.clone()).or_insert_with(|| Recipient {
            agency: agency.clone(),
            role,
            rule: rule.to_owned(),
        });
        if role < entry.role {
            entry.role = role;
            entry.rule = rule.to_owned();
        }
    }

    fn into_map(self) -> BTreeMap<AgencyCode, Recipient> {
        self.map
    }
}

/// Checks one rule of the file; errors point at the offending line.
struct RuleChecker<'a> {
    text: &'a str,
    origin: &'a str,
    registry: &'a Registry,
    name: String,
}

impl RuleChecker<'_> {
    fn fail(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> PolicyLoadError {
        PolicyLoadError::Rule {
            path: self.origin.to_owned(),
            line: line_of(self.text, span.start),
            rule: self.name.clone(),
            message: message.into(),
        }
    }

    /// Registered agency codes of a list; `field` names the key in errors.
    fn agencies(
        &self,
        list: &Spanned<Vec<String>>,
        field: &str,
    ) -> Result<Vec<AgencyCode>, PolicyLoadError> {
        let mut codes = Vec::with_capacity(list.get_ref().len());
        for raw in list.get_ref() {
            let code = AgencyCode::new(raw.clone())
                .map_err(|e| self.fail(list.span(), format!("`{field}`: {e}")))?;
            if !self.registry.contains(&code) {
                return Err(self.fail(
                    list.span(),
                    format!("`{field}`: agency {code} is not in the registry"),
                ));
            }
            codes.push(code);
        }
        Ok(codes)
    }

    /// `["*"]` or a non-empty list of registered agencies.
    fn any_or_agencies(
        &self,
        list: &Spanned<Vec<String>>,
        field: &str,
    ) -> Result<Option<Vec<AgencyCode>>, PolicyLoadError> {
        let items = list.get_ref();
        if items.iter().any(|f| f == "*") {
            if items.len() > 1 {
                return Err(self.fail(
                    list.span(),
                    format!("\"*\" in `{field}` cannot be combined with agency codes"),
                ));
            }
            return Ok(None);
        }
        if items.is_empty() {
            return Err(self.fail(
                list.span(),
                format!("`{field}` is empty, so the rule can never match"),
            ));
        }
        self.agencies(list, field).map(Some)
    }

    fn check(self, rule: RuleFile, rule_line: usize) -> Result<Rule, PolicyLoadError> {
        if rule.type_.get_ref().trim().is_empty() {
            return Err(self.fail(rule.type_.span(), "`type` is empty"));
        }
        let from = match self.any_or_agencies(&rule.from, "from")? {
            None => Senders::Any,
            Some(codes) => Senders::Only(codes),
        };
        let (to, named) = match &rule.to {
            None => (Vec::new(), false),
            Some(to) => match to.get_ref() {
                ToFile::Keyword(word) if word == "named" => (Vec::new(), true),
                ToFile::Keyword(word) => {
                    return Err(self.fail(
                        to.span(),
                        format!("`to` is a list of agencies or \"named\", not {word:?}"),
                    ));
                }
                ToFile::Fixed(list) => (
                    self.agencies(&Spanned::new(to.span(), list.clone()), "to")?,
                    false,
                ),
            },
        };
        let named = match (named, &rule.allowed) {
            (true, Some(allowed)) => Some(match self.any_or_agencies(allowed, "allowed")? {
                None => Named::AnyRegistered,
                Some(codes) => Named::Only(codes),
            }),
            (true, None) => {
                let span = rule.to.as_ref().map(Spanned::span).unwrap_or(0..0);
                return Err(self.fail(
                    span,
                    "`to = \"named\"` needs `allowed`: the agencies a message may name ([\"*\"] for any)",
                ));
            }
            (false, Some(allowed)) => {
                return Err(self.fail(allowed.span(), "`allowed` only applies to `to = \"named\"`"));
            }
            (false, None) => None,
        };
        let cc = match &rule.cc {
            Some(cc) => self.agencies(cc, "cc")?,
            None => Vec::new(),
        };
        if let (Senders::Only(senders), false) = (&from, named.is_some() || rule.reply_to.is_some())
        {
            // Every sender would only address itself: nothing could ever be delivered.
            let fixed: BTreeSet<&AgencyCode> = to.iter().chain(&cc).collect();
            if !fixed.is_empty()
                && senders
                    .iter()
                    .all(|s| fixed.len() == 1 && fixed.contains(s))
            {
                return Err(self.fail(
                    rule.from.span(),
                    "every sender of this rule is its only recipient, so it never routes anywhere",
                ));
            }
        }
        if to.is_empty() && cc.is_empty() && rule.reply_to.is_none() && named.is_none() {
            return Err(PolicyLoadError::Rule {
                path: self.origin.to_owned(),
                line: rule_line,
                rule: self.name.clone(),
                message: "the rule names no recipients (`to`, `cc` or `reply_to`)".into(),
            });
        }
        let when = match &rule.when {
            None => Vec::new(),
            Some(when) => self.conditions(when)?,
        };
        let (mandatory, why) = self.mandatory(&rule, &to, &cc)?;
        let answered_by = match (&rule.answered_by, rule.reply_to) {
            (Some(by), Some(ReplyTo::Recipients)) => {
                return Err(self.fail(
                    by.span(),
                    "`answered_by` does not apply to `reply_to = \"recipients\"`: only the original's own sender sends those",
                ));
            }
            // An answer routed to the original's parties, or to this rule's own recipients.
            (Some(by), _) => Some(*by.get_ref()),
            (None, Some(ReplyTo::Sender | ReplyTo::SenderAndCopies)) => Some(AnsweredBy::default()),
            (None, Some(ReplyTo::Recipients) | None) => None,
        };
        Ok(Rule {
            name: rule.name.into_inner(),
            line: rule_line,
            type_: rule.type_.into_inner(),
            from,
            to,
            named,
            cc,
            reply_to: rule.reply_to,
            answered_by,
            when,
            mandatory,
            why,
        })
    }

    /// `mandatory` with its `why`: each agency must be one this rule can route to (its
    /// fixed `to` or `cc`; for answers, any registered agency among the original's parties).
    fn mandatory(
        &self,
        rule: &RuleFile,
        to: &[AgencyCode],
        cc: &[AgencyCode],
    ) -> Result<(Vec<AgencyCode>, String), PolicyLoadError> {
        let (list, why) = match (&rule.mandatory, &rule.why) {
            (None, None) => return Ok((Vec::new(), String::new())),
            (None, Some(why)) => {
                return Err(self.fail(why.span(), "`why` explains `mandatory`, which is missing"));
            }
            (Some(list), None) => {
                return Err(self.fail(
                    list.span(),
                    "`mandatory` needs `why`: the reason these recipients supervise",
                ));
            }
            (Some(list), Some(why)) => (list, why),
        };
        if why.get_ref().trim().is_empty() {
            return Err(self.fail(why.span(), "`why` is empty"));
        }
        if list.get_ref().is_empty() {
            return Err(self.fail(list.span(), "`mandatory` is empty"));
        }
        let agencies = self.agencies(list, "mandatory")?;
        if rule.reply_to.is_none()
            && let Some(stray) = agencies.iter().find(|a| !to.contains(a) && !cc.contains(a))
        {
            return Err(self.fail(
                list.span(),
                format!("`mandatory`: {stray} is not in this rule's `to` or `cc`"),
            ));
        }
        Ok((agencies, why.get_ref().clone()))
    }

    fn conditions(
        &self,
        when: &Spanned<BTreeMap<String, Value>>,
    ) -> Result<Vec<Condition>, PolicyLoadError> {
        let mut conditions = Vec::new();
        for (path, value) in when.get_ref() {
            let field = path.strip_prefix("data.").unwrap_or_default();
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(self.fail(
                    when.span(),
                    format!("`when` key {path:?} must name a payload field, e.g. \"data.impact\""),
                ));
            }
            let any_of = match value {
                Value::Array(values) => values.clone(),
                single => vec![single.clone()],
            };
            if any_of.is_empty() {
                return Err(self.fail(
                    when.span(),
                    format!("`when` {path:?} lists no value, so the rule can never match"),
                ));
            }
            if let Some(bad) = any_of.iter().find(|v| v.is_object() || v.is_array()) {
                return Err(self.fail(
                    when.span(),
                    format!("`when` {path:?}: {bad} is not a string, number or boolean"),
                ));
            }
            conditions.push(Condition {
                path: path.clone(),
                any_of,
            });
        }
        Ok(conditions)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::agency::Registry;
    use time::macros::datetime;

    fn registry() -> Registry {
        let mut text = String::new();
        for code in ["eco", "procuratorate", "police", "gov", "market"] {
            text.push_str(&format!(
                "[[agency]]\ncode = \"{code}\"\nname_zh = \"{code}\"\nname_en = \"{code}\"\n"
            ));
        }
        Registry::from_toml(&text, "test").unwrap()
    }

    const POLICY: &str = r#"
        [[rule]]
        name = "pil-lead"
        type = "pil.lead.v1"
        from = ["*"]
        to = ["procuratorate"]

        [[rule]]
        name = "case-transfer"
        type = "case.transfer.v1"
        from = ["eco", "market"]
        to = ["police"]
        cc = ["procuratorate"]

        [[rule]]
        name = "receipt"
        type = "receipt.v1"
        from = ["*"]
        reply_to = "sender"

        [[rule]]
        name = "filing-decision"
        type = "case.filing-decision.v1"
        from = ["police"]
        reply_to = "sender_and_copies"
    "#;

    fn policy() -> Policy {
        Policy::from_toml(POLICY, "policy.toml", &registry()).unwrap()
    }

    fn code(s: &str) -> AgencyCode {
        AgencyCode::new(s).unwrap()
    }

    fn envelope(type_: &str, recipients: Option<&[&str]>) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            source: "urn:liaison:agency:eco".into(),
            type_: type_.into(),
            time: datetime!(2026-11-26 08:00 UTC),
            subject: None,
            caseref: Some("SD-1".into()),
            inreplyto: None,
            recipients: recipients.map(|r| r.iter().map(|s| code(s)).collect()),
            traceparent: None,
        }
    }

    fn agencies(route: &Route) -> Vec<(&str, RecipientRole)> {
        route
            .recipients
            .iter()
            .map(|r| (r.agency.as_str(), r.role))
            .collect()
    }

    #[test]
    fn a_pil_lead_goes_to_the_procuratorate() {
        let route = policy()
            .route(&code("eco"), &envelope("pil.lead.v1", None), None)
            .unwrap();
        assert_eq!(agencies(&route), vec![("procuratorate", RecipientRole::To)]);
        assert_eq!(route.recipients[0].rule, "pil-lead");
    }

    #[test]
    fn a_case_transfer_goes_to_police_with_a_copy_to_the_procuratorate() {
        let route = policy()
            .route(&code("market"), &envelope("case.transfer.v1", None), None)
            .unwrap();
        assert_eq!(
            agencies(&route),
            vec![
                ("police", RecipientRole::To),
                ("procuratorate", RecipientRole::Cc)
            ]
        );
    }

    #[test]
    fn senders_not_named_and_unknown_types_are_denied() {
        let p = policy();
        let err = p
            .route(&code("gov"), &envelope("case.transfer.v1", None), None)
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::TypeNotAllowed);
        let err = p
            .route(&code("eco"), &envelope("no.such.v1", None), None)
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::TypeNotAllowed);
    }

    #[test]
    fn explicit_recipients_only_narrow() {
        let p = policy();
        let route = p
            .route(
                &code("eco"),
                &envelope("case.transfer.v1", Some(&["police"])),
                None,
            )
            .unwrap();
        assert_eq!(agencies(&route), vec![("police", RecipientRole::To)]);
        let err = p
            .route(
                &code("eco"),
                &envelope("case.transfer.v1", Some(&["police", "gov"])),
                None,
            )
            .unwrap_err();
        assert_eq!(
            err,
            PolicyError::RecipientsNotAllowed {
                agencies: vec![code("gov")],
                allowed: vec![code("police"), code("procuratorate")],
            }
        );
        assert!(
            err.to_string()
                .ends_with("it may go to: police, procuratorate"),
            "{err}"
        );
    }

    const SUPERVISED: &str = r#"
        [[rule]]
        name = "case-transfer"
        type = "case.transfer.v1"
        from = ["eco", "market"]
        to = ["police"]
        cc = ["procuratorate", "gov"]
        mandatory = ["procuratorate"]
        why = "the procuratorate supervises every transfer"

        [[rule]]
        name = "filing-decision"
        type = "case.filing-decision.v1"
        from = ["police"]
        reply_to = "sender_and_copies"
        mandatory = ["procuratorate"]
        why = "the procuratorate supervises filing"
    "#;

    #[test]
    fn recipients_cannot_remove_a_mandatory_copy() {
        let p = Policy::from_toml(SUPERVISED, "policy.toml", &registry()).unwrap();
        let route = p
            .route(
                &code("eco"),
                &envelope("case.transfer.v1", Some(&["police"])),
                None,
            )
            .unwrap();
        // The optional copy to gov was narrowed away; the supervisory copy stays.
        assert_eq!(
            agencies(&route),
            vec![
                ("police", RecipientRole::To),
                ("procuratorate", RecipientRole::Cc)
            ]
        );
        let original = original(
            "case.transfer.v1",
            "eco",
            &["police"],
            &["procuratorate", "gov"],
        );
        let route = p
            .route(
                &code("police"),
                &envelope("case.filing-decision.v1", Some(&["eco"])),
                Some(&original),
            )
            .unwrap();
        assert_eq!(
            agencies(&route),
            vec![
                ("eco", RecipientRole::To),
                ("procuratorate", RecipientRole::Cc)
            ]
        );
        let why = p.mandatory_recipients(&code("eco"), "case.transfer.v1", None);
        assert_eq!(
            why,
            vec![MandatoryRecipient {
                agency: &code("procuratorate"),
                rule: "case-transfer",
                why: "the procuratorate supervises every transfer",
            }]
        );
        assert!(
            p.mandatory_recipients(&code("gov"), "case.transfer.v1", None)
                .is_empty(),
            "gov may not send transfers, so nothing is mandatory for it"
        );
    }

    #[test]
    fn mandatory_needs_a_reason_and_a_recipient_of_its_rule() {
        let rule = |extra: &str| {
            format!(
                "[[rule]]\nname = \"t\"\ntype = \"case.transfer.v1\"\nfrom = [\"eco\"]\nto = [\"police\"]\ncc = [\"procuratorate\"]\n{extra}\n"
            )
        };
        for (extra, expected) in [
            ("mandatory = [\"procuratorate\"]", "needs `why`"),
            ("why = \"because\"", "`mandatory`, which is missing"),
            (
                "mandatory = [\"gov\"]\nwhy = \"because\"",
                "gov is not in this rule's `to` or `cc`",
            ),
            ("mandatory = []\nwhy = \"because\"", "`mandatory` is empty"),
            (
                "mandatory = [\"procuratorate\"]\nwhy = \" \"",
                "`why` is empty",
            ),
        ] {
            let err = Policy::from_toml(&rule(extra), "policy.toml", &registry()).unwrap_err();
            assert!(err.to_string().contains(expected), "{extra}: {err}");
            assert!(err.line().is_some(), "{extra}: {err}");
        }
        Policy::from_toml(
            &rule("mandatory = [\"procuratorate\"]\nwhy = \"because\""),
            "policy.toml",
            &registry(),
        )
        .unwrap();
    }

    /// An original of `type_` sent by `sender`, addressed `to` and copied `cc`.
    fn original(type_: &str, sender: &str, to: &[&str], cc: &[&str]) -> OriginalMessage {
        OriginalMessage {
            id: Uuid::nil(),
            type_: type_.into(),
            sender: code(sender),
            recipients: to.iter().chain(cc).map(|a| code(a)).collect(),
            addressees: to.iter().map(|a| code(a)).collect(),
            caseref: None,
        }
    }

    #[test]
    fn a_receipt_goes_back_to_the_sender_of_the_original() {
        let original = original("pil.lead.v1", "eco", &["procuratorate"], &[]);
        let route = policy()
            .route(
                &code("procuratorate"),
                &envelope("receipt.v1", None),
                Some(&original),
            )
            .unwrap();
        assert_eq!(agencies(&route), vec![("eco", RecipientRole::To)]);
    }

    #[test]
    fn a_reply_needs_an_original_the_sender_took_part_in() {
        let p = policy();
        let err = p
            .route(&code("procuratorate"), &envelope("receipt.v1", None), None)
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::UnknownOriginal);
        let original = original("pil.lead.v1", "eco", &["procuratorate"], &[]);
        let err = p
            .route(
                &code("market"),
                &envelope("receipt.v1", None),
                Some(&original),
            )
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::UnknownOriginal);
    }

    #[test]
    fn a_filing_decision_goes_to_the_transferring_agency_and_its_copies() {
        let original = original("case.transfer.v1", "eco", &["police"], &["procuratorate"]);
        let route = policy()
            .route(
                &code("police"),
                &envelope("case.filing-decision.v1", None),
                Some(&original),
            )
            .unwrap();
        assert_eq!(
            agencies(&route),
            vec![
                ("eco", RecipientRole::To),
                ("procuratorate", RecipientRole::Cc)
            ]
        );
    }

    #[test]
    fn only_addressees_answer_unless_the_rule_lets_every_recipient() {
        let p = policy();
        let transfer = original("case.transfer.v1", "eco", &["police"], &["procuratorate"]);
        // The copied procuratorate and the transfer's own sender may not decide on filing.
        let rules = r#"
            [[rule]]
            name = "filing-decision"
            type = "case.filing-decision.v1"
            from = ["police", "procuratorate", "eco"]
            reply_to = "sender_and_copies"

            [[rule]]
            name = "receipt"
            type = "receipt.v1"
            from = ["*"]
            reply_to = "sender"
            answered_by = "recipients"
        "#;
        let open = Policy::from_toml(rules, "policy.toml", &registry()).unwrap();
        for (sender, role) in [("procuratorate", "was only copied on"), ("eco", "sent")] {
            let err = open
                .route(
                    &code(sender),
                    &envelope("case.filing-decision.v1", None),
                    Some(&transfer),
                )
                .unwrap_err();
            assert_eq!(err.code(), RejectCode::NotAnAddressee, "{sender}: {err}");
            assert!(err.to_string().contains(role), "{err}");
        }
        // A receipt is answered by every recipient, copies included.
        let route = open
            .route(
                &code("procuratorate"),
                &envelope("receipt.v1", None),
                Some(&transfer),
            )
            .unwrap();
        assert_eq!(agencies(&route), vec![("eco", RecipientRole::To)]);
        // With the default (`addressees`), the copied procuratorate may not send a receipt.
        let err = p
            .route(
                &code("procuratorate"),
                &envelope("receipt.v1", None),
                Some(&transfer),
            )
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::NotAnAddressee);
        // Reminders come from the original's own sender: `answered_by` has no say there.
        let err = Policy::from_toml(
            "[[rule]]\nname = \"x\"\ntype = \"deadline.reminder.v1\"\nfrom = [\"*\"]\nreply_to = \"recipients\"\nanswered_by = \"recipients\"\n",
            "policy.toml",
            &registry(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`answered_by` does not apply"),
            "{err}"
        );
    }

    /// An answer to fixed recipients: the agency that received a refusal asks the
    /// procuratorate to supervise it, and the police who refused are not told.
    const FIXED_ANSWER: &str = r#"
        [[rule]]
        name = "supervision-request"
        type = "filing.supervision-request.v1"
        from = ["eco", "market"]
        to = ["procuratorate"]
        answered_by = "addressees"
    "#;

    #[test]
    fn an_answer_with_fixed_recipients_still_needs_an_original_it_may_answer() {
        let p = Policy::from_toml(FIXED_ANSWER, "policy.toml", &registry()).unwrap();
        assert!(p.is_reply_type("filing.supervision-request.v1"));
        let refusal = original(
            "case.filing-decision.v1",
            "police",
            &["eco"],
            &["procuratorate"],
        );
        let route = p
            .route(
                &code("eco"),
                &envelope("filing.supervision-request.v1", None),
                Some(&refusal),
            )
            .unwrap();
        assert_eq!(agencies(&route), vec![("procuratorate", RecipientRole::To)]);
        // No original, or one the sender took no part in: nothing to answer.
        for (sender, original) in [("eco", None), ("market", Some(&refusal))] {
            let err = p
                .route(
                    &code(sender),
                    &envelope("filing.supervision-request.v1", None),
                    original,
                )
                .unwrap_err();
            assert_eq!(err.code(), RejectCode::UnknownOriginal, "{sender}: {err}");
        }
        // A copy of the original does not answer it.
        let copied = original("case.filing-decision.v1", "police", &["market"], &["eco"]);
        let err = p
            .route(
                &code("eco"),
                &envelope("filing.supervision-request.v1", None),
                Some(&copied),
            )
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::NotAnAddressee, "{err}");
    }

    #[test]
    fn load_errors_name_the_rule() {
        let bad =
            "[[rule]]\nname = \"x\"\ntype = \"pil.lead.v1\"\nfrom = [\"*\"]\nto = [\"nobody\"]\n";
        let err = Policy::from_toml(bad, "p.toml", &registry())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.toml") && err.contains("\"x\"") && err.contains("nobody"),
            "{err}"
        );
        let none = "[[rule]]\nname = \"y\"\ntype = \"pil.lead.v1\"\nfrom = [\"*\"]\n";
        assert!(Policy::from_toml(none, "p.toml", &registry()).is_err());
        let unknown_key =
            "[[rule]]\nname = \"z\"\ntype = \"t\"\nfrom = [\"*\"]\nto = [\"eco\"]\nwhen = 1\n";
        assert!(matches!(
            Policy::from_toml(unknown_key, "p.toml", &registry()),
            Err(PolicyLoadError::Parse { .. })
        ));
    }

    #[test]
    fn load_errors_name_file_and_line() {
        let bad = "# header\n\n[[rule]]\nname = \"x\"\ntype = \"t.v1\"\nfrom = [\"*\"]\ncc = [\"nobody\"]\n";
        let err = Policy::from_toml(bad, "p.toml", &registry()).unwrap_err();
        assert_eq!(err.line(), Some(7), "{err}");
        assert!(
            err.to_string().starts_with("policy p.toml:7: rule \"x\""),
            "{err}"
        );
        let syntax = "[[rule]]\nname = \"x\"\ntype = = 1\n";
        let err = Policy::from_toml(syntax, "p.toml", &registry()).unwrap_err();
        assert_eq!(err.line(), Some(3), "{err}");
        let never = "[[rule]]\nname = \"w\"\ntype = \"t.v1\"\nfrom = [\"eco\"]\nto = [\"eco\"]\n";
        let err = Policy::from_toml(never, "p.toml", &registry()).unwrap_err();
        assert!(err.to_string().contains("never routes"), "{err}");
        let empty_when = "[[rule]]\nname = \"e\"\ntype = \"t.v1\"\nfrom = [\"*\"]\nto = [\"gov\"]\nwhen = { \"data.x\" = [] }\n";
        let err = Policy::from_toml(empty_when, "p.toml", &registry()).unwrap_err();
        assert!(
            err.to_string().contains("can never match") && err.line() == Some(6),
            "{err}"
        );
        let unnamed = "[[rule]]\nname = \"n\"\ntype = \"t.v1\"\nfrom = [\"*\"]\nto = \"named\"\n";
        let err = Policy::from_toml(unnamed, "p.toml", &registry()).unwrap_err();
        assert!(
            err.to_string().contains("needs `allowed`") && err.line() == Some(5),
            "{err}"
        );
    }

    const NAMED: &str = r#"
        [[rule]]
        name = "rec"
        type = "rec.v1"
        from = ["procuratorate"]
        to = "named"
        allowed = ["*"]

        [[rule]]
        name = "rec-high"
        type = "rec.v1"
        from = ["procuratorate"]
        cc = ["gov"]
        when = { "data.impact" = ["high", "severe"] }

        [[rule]]
        name = "only-food"
        type = "lead.v1"
        from = ["*"]
        to = ["procuratorate"]
        when = { "data.domain" = "food_drug_safety" }
    "#;

    fn with_data(
        type_: &str,
        recipients: Option<&[&str]>,
        data: serde_json::Value,
    ) -> (Envelope, serde_json::Value) {
        let env = envelope(type_, recipients);
        let event = serde_json::json!({ "data": data });
        (env, event)
    }

    #[test]
    fn named_routes_pick_addressees_and_keep_required_copies() {
        let p = Policy::from_toml(NAMED, "p.toml", &registry()).unwrap();
        let pro = code("procuratorate");
        let (env, event) = with_data(
            "rec.v1",
            Some(&["market"]),
            serde_json::json!({"impact": "severe"}),
        );
        let route = p.route_event(&pro, &env, Some(&event), None).unwrap();
        assert_eq!(
            agencies(&route),
            vec![("market", RecipientRole::To), ("gov", RecipientRole::Cc)]
        );
        let (env, event) = with_data(
            "rec.v1",
            Some(&["market"]),
            serde_json::json!({"impact": "normal"}),
        );
        let route = p.route_event(&pro, &env, Some(&event), None).unwrap();
        assert_eq!(agencies(&route), vec![("market", RecipientRole::To)]);
        let (env, event) = with_data("rec.v1", None, serde_json::json!({}));
        let err = p.route_event(&pro, &env, Some(&event), None).unwrap_err();
        let PolicyError::RecipientsRequired { type_, allowed } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(type_, "rec.v1");
        // `allowed = ["*"]`: every registered agency but the sender.
        assert!(
            allowed.contains(&code("market")) && !allowed.contains(&pro),
            "{err}"
        );
        assert!(err.to_string().contains("it may go to: "), "{err}");
        let (env, event) = with_data("rec.v1", Some(&["unregistered"]), serde_json::json!({}));
        let err = p.route_event(&pro, &env, Some(&event), None).unwrap_err();
        assert_eq!(err.code(), RejectCode::RecipientsNotAllowed);
    }

    #[test]
    fn a_condition_that_does_not_hold_refuses_when_no_other_rule_applies() {
        let p = Policy::from_toml(NAMED, "p.toml", &registry()).unwrap();
        let (env, event) = with_data("lead.v1", None, serde_json::json!({"domain": "ecology"}));
        let err = p
            .route_event(&code("eco"), &env, Some(&event), None)
            .unwrap_err();
        assert_eq!(err.code(), RejectCode::TypeNotAllowed);
        assert!(err.to_string().contains("data.domain"), "{err}");
        let (env, event) = with_data(
            "lead.v1",
            None,
            serde_json::json!({"domain": "food_drug_safety"}),
        );
        let route = p
            .route_event(&code("eco"), &env, Some(&event), None)
            .unwrap();
        assert_eq!(agencies(&route), vec![("procuratorate", RecipientRole::To)]);
        // Without the payload a conditional rule never applies.
        assert!(p.route(&code("eco"), &env, None).is_err());
    }
}
