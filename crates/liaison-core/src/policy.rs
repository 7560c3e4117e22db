//! Routing and authorization policy: who may send what, and who receives it.
//!
//! Deny by default. A rule names a message type, the agencies that may send it (`from`,
//! `"*"` for any registered agency), and its recipients: fixed agencies (`to`, copies in
//! `cc`) and/or, for answers, the parties of the message named by `inreplyto`
//! (`reply_to`). Every rule that matches the sender and type contributes recipients; the
//! sender never receives its own message. An explicit `recipients` attribute in the
//! envelope may only narrow the result.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(rename = "type")]
    type_: String,
    from: Vec<String>,
    #[serde(default)]
    to: Vec<AgencyCode>,
    #[serde(default)]
    cc: Vec<AgencyCode>,
    #[serde(default)]
    reply_to: Option<ReplyTo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(rename = "rule")]
    rules: Vec<RuleFile>,
}

#[derive(Clone, Debug)]
enum Senders {
    Any,
    Only(Vec<AgencyCode>),
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    type_: String,
    from: Senders,
    to: Vec<AgencyCode>,
    cc: Vec<AgencyCode>,
    reply_to: Option<ReplyTo>,
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
    pub sender: AgencyCode,
    pub recipients: Vec<AgencyCode>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy does not allow {sender} to send {type_}")]
    TypeNotAllowed { sender: AgencyCode, type_: String },
    #[error("the policy does not route this message to {}", join(.agencies))]
    RecipientsNotAllowed { agencies: Vec<AgencyCode> },
    #[error(
        "{type_} answers another message: inreplyto must name a message {sender} sent or received"
    )]
    UnknownOriginal { sender: AgencyCode, type_: String },
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
            Self::TypeNotAllowed { .. } => RejectCode::TypeNotAllowed,
            Self::RecipientsNotAllowed { .. } => RejectCode::RecipientsNotAllowed,
            Self::UnknownOriginal { .. } => RejectCode::UnknownOriginal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path}: {message}")]
    Parse { path: String, message: String },
    #[error("policy {path}, rule {rule:?}: {message}")]
    Rule {
        path: String,
        rule: String,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
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
            message: e.to_string(),
        })?;
        let mut names = BTreeMap::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for rule in file.rules {
            let fail = |message: String| PolicyLoadError::Rule {
                path: origin.to_owned(),
                rule: rule.name.clone(),
                message,
            };
            if names.insert(rule.name.clone(), ()).is_some() {
                return Err(fail("another rule has the same name".into()));
            }
            let from = if rule.from.iter().any(|f| f == "*") {
                if rule.from.len() > 1 {
                    return Err(fail(
                        "\"*\" in `from` cannot be combined with agency codes".into(),
                    ));
                }
                Senders::Any
            } else {
                let mut codes = Vec::new();
                for f in &rule.from {
                    let code = AgencyCode::new(f.clone()).map_err(|e| fail(e.to_string()))?;
                    codes.push(code);
                }
                if codes.is_empty() {
                    return Err(fail("`from` is empty, so the rule can never match".into()));
                }
                Senders::Only(codes)
            };
            let named = match &from {
                Senders::Any => Vec::new(),
                Senders::Only(codes) => codes.clone(),
            };
            for code in named.iter().chain(&rule.to).chain(&rule.cc) {
                if !registry.contains(code) {
                    return Err(fail(format!("agency {code} is not in the registry")));
                }
            }
            if rule.to.is_empty() && rule.cc.is_empty() && rule.reply_to.is_none() {
                return Err(fail(
                    "the rule names no recipients (`to`, `cc` or `reply_to`)".into(),
                ));
            }
            rules.push(Rule {
                name: rule.name,
                type_: rule.type_,
                from,
                to: rule.to,
                cc: rule.cc,
                reply_to: rule.reply_to,
            });
        }
        Ok(Self { rules })
    }

    /// Every message type some rule names.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.type_.as_str())
    }

    /// Whether some rule routes `type_` as an answer to an earlier message.
    pub fn is_reply_type(&self, type_: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.type_ == type_ && r.reply_to.is_some())
    }

    /// Decides the recipients of one message, or why it may not be sent.
    ///
    /// `original` is the message that `inreplyto` names, as the ledger knows it; `None`
    /// when there is no `inreplyto` or the ledger does not hold it.
    pub fn route(
        &self,
        sender: &AgencyCode,
        envelope: &Envelope,
        original: Option<&OriginalMessage>,
    ) -> Result<Route, PolicyError> {
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.type_ == envelope.type_)
            .filter(|r| match &r.from {
                Senders::Any => true,
                Senders::Only(codes) => codes.contains(sender),
            })
            .collect();
        if matching.is_empty() {
            return Err(PolicyError::TypeNotAllowed {
                sender: sender.clone(),
                type_: envelope.type_.clone(),
            });
        }

        let mut chosen: BTreeMap<AgencyCode, Recipient> = BTreeMap::new();
        let mut add = |agency: &AgencyCode, role: RecipientRole, rule: &str| {
            if agency == sender {
                return;
            }
            let entry = chosen.entry(agency.clone()).or_insert_with(|| Recipient {
                agency: agency.clone(),
                role,
                rule: rule.to_owned(),
            });
            // A direct address outranks a copy.
            if role < entry.role {
                entry.role = role;
                entry.rule = rule.to_owned();
            }
        };
        for rule in &matching {
            for agency in &rule.to {
                add(agency, RecipientRole::To, &rule.name);
            }
            for agency in &rule.cc {
                add(agency, RecipientRole::Cc, &rule.name);
            }
            if let Some(reply_to) = rule.reply_to {
                let unknown = || PolicyError::UnknownOriginal {
                    sender: sender.clone(),
                    type_: envelope.type_.clone(),
                };
                let original = original.ok_or_else(unknown)?;
                let is_party = &original.sender == sender || original.recipients.contains(sender);
                if !is_party {
                    return Err(unknown());
                }
                add(&original.sender, RecipientRole::To, &rule.name);
                if reply_to == ReplyTo::SenderAndCopies {
                    for agency in &original.recipients {
                        add(agency, RecipientRole::Cc, &rule.name);
                    }
                }
            }
        }

        if let Some(wanted) = &envelope.recipients {
            let refused: Vec<AgencyCode> = wanted
                .iter()
                .filter(|a| !chosen.contains_key(*a))
                .cloned()
                .collect();
            if !refused.is_empty() {
                return Err(PolicyError::RecipientsNotAllowed { agencies: refused });
            }
            chosen.retain(|agency, _| wanted.contains(agency));
        }

        let mut recipients: Vec<Recipient> = chosen.into_values().collect();
        recipients.sort_by(|a, b| (a.role, &a.agency).cmp(&(b.role, &b.agency)));
        Ok(Route { recipients })
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
                agencies: vec![code("gov")]
            }
        );
    }

    #[test]
    fn a_receipt_goes_back_to_the_sender_of_the_original() {
        let original = OriginalMessage {
            id: Uuid::nil(),
            sender: code("eco"),
            recipients: vec![code("procuratorate")],
        };
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
        let original = OriginalMessage {
            id: Uuid::nil(),
            sender: code("eco"),
            recipients: vec![code("procuratorate")],
        };
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
        let original = OriginalMessage {
            id: Uuid::nil(),
            sender: code("eco"),
            recipients: vec![code("police"), code("procuratorate")],
        };
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
}
