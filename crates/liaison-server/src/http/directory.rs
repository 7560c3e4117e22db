//! The agencies' directory: every registered agency and what the policy lets it send and
//! brings it — `GET /v1/agencies`, and the generated section of `docs/integration.md`.
//!
//! What an agency sends is every type some rule lets it send. What it receives is read
//! off the rules as they route: a fixed `to` or `cc` names it; a `to = "named"` rule lets
//! a message name it in `recipients`; an answer (`reply_to`) reaches it when it was a
//! party of a message of a type the answer answers (the catalogue's `x-liaison.answers`):
//! its sender, or for `sender_and_copies` and `recipients` a recipient of it, and another
//! agency that may send the answer can be the party that answers. That is a type that
//! *can* reach it: whether one does depends on the message it answers (`POST
//! /v1/routes/preview` tells for one message).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use liaison_core::policy::{Condition, ReplyTo, RuleRoute};
use liaison_core::{AgencyCode, Policy, Registry};
use liaison_schema::Catalogue;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::gateway::Gateway;

/// One registered agency and the message types it exchanges.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(as = Agency)]
pub struct AgencyEntry {
    /// Its code: `source` is `urn:liaison:agency:<code>`, and so is its certificate's SAN URI
    pub code: String,
    /// Official name in Chinese
    pub name_zh: String,
    /// Name in English
    pub name_en: String,
    /// Its RabbitMQ delivery queue
    pub queue: String,
    /// Every type the policy lets it send (a rule's `when` may still require some content)
    pub sends: Vec<String>,
    /// Every type that can reach it, and how
    pub receives: Vec<Received>,
}

/// A type that can reach an agency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Received {
    #[serde(rename = "type")]
    pub type_: String,
    /// `to` and `cc`: every such message (that meets `when`); `named`: when the message
    /// names the agency in `recipients`; `answers`: when it answers a message the agency
    /// took part in
    #[serde(rename = "as")]
    pub how: How,
    /// The payload conditions under which it does, when not always
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// How a type reaches an agency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// A fixed addressee (主送)
    To,
    /// A fixed copy (抄送)
    Cc,
    /// Chosen by the message's `recipients`
    Named,
    /// The party of the original that the answer goes back to
    Answers,
}

impl How {
    fn as_str(self) -> &'static str {
        match self {
            Self::To => "to",
            Self::Cc => "cc",
            Self::Named => "named",
            Self::Answers => "answers",
        }
    }
}

/// The registered agencies
#[derive(Serialize, ToSchema)]
#[schema(as = Agencies)]
pub struct AgenciesBody {
    agencies: Vec<AgencyEntry>,
}

/// Every agency of the registry, with what it may send and what can reach it
#[utoipa::path(
    get,
    path = "/v1/agencies",
    operation_id = "listAgencies",
    tag = "catalogue",
    responses((status = 200, description = "The registry, in code order", body = AgenciesBody)),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn agencies(State(gateway): State<Gateway>) -> Json<AgenciesBody> {
    let pipeline = &gateway.pipeline;
    Json(AgenciesBody {
        agencies: directory(pipeline.registry(), pipeline.policy(), pipeline.catalogue()),
    })
}

/// The directory of `registry` under `policy`, in code order.
pub fn directory(registry: &Registry, policy: &Policy, catalogue: &Catalogue) -> Vec<AgencyEntry> {
    let rules: Vec<RuleRoute<'_>> = policy.routes().collect();
    let mut received: BTreeMap<&AgencyCode, BTreeMap<(String, How), Conditions>> = registry
        .codes()
        .map(|code| (code, fixed_and_named(code, &rules)))
        .collect();
    // An answer reaches the parties of its original, which may itself be an answer: add
    // what answers bring until nothing more is found.
    loop {
        let mut added = false;
        for code in registry.codes() {
            let mut found = Vec::new();
            for rule in &rules {
                let Some(reply_to) = rule.reply_to else {
                    continue;
                };
                if !rule.sent_by_another_than(code) {
                    continue;
                }
                let gets = |agency: &AgencyCode, original: &str| {
                    received[agency].keys().any(|(t, _)| t == original)
                };
                // `code` is the right party of an original, and another agency that may
                // send the answer is the party that answers it.
                let party = |original: &str| {
                    let sent = policy.may_send(code, original);
                    let got = gets(code, original);
                    let answerer = |other: &AgencyCode| {
                        other != code
                            && rule.sent_by(other)
                            && match reply_to {
                                ReplyTo::Sender | ReplyTo::SenderAndCopies => gets(other, original),
                                ReplyTo::Recipients => policy.may_send(other, original),
                            }
                    };
                    let role = match reply_to {
                        ReplyTo::Sender => sent,
                        ReplyTo::SenderAndCopies => sent || got,
                        ReplyTo::Recipients => got,
                    };
                    role && registry.codes().any(answerer)
                };
                let answered = catalogue
                    .get(rule.type_)
                    .map(|t| t.info.answers.as_slice())
                    .unwrap_or_default();
                let reaches = answered.iter().any(|original| {
                    if original == liaison_schema::ANY_TYPE {
                        catalogue.types().any(|t| party(&t.name))
                    } else {
                        party(original)
                    }
                });
                if reaches {
                    found.push(((rule.type_.to_owned(), How::Answers), rule.when));
                }
            }
            let receives = received.get_mut(code).expect("every code has an entry");
            for (key, when) in found {
                added |= add(receives, key, when);
            }
        }
        if !added {
            break;
        }
    }
    registry
        .agencies()
        .map(|agency| {
            let sends: BTreeSet<&str> = rules
                .iter()
                .filter(|r| r.sent_by(&agency.code))
                .map(|r| r.type_)
                .collect();
            AgencyEntry {
                code: agency.code.to_string(),
                name_zh: agency.name_zh.clone(),
                name_en: agency.name_en.clone(),
                queue: liaison_bus::agency_queue(&agency.code),
                sends: sends.into_iter().map(str::to_owned).collect(),
                receives: received[&agency.code]
                    .iter()
                    .map(|((type_, how), conditions)| Received {
                        type_: type_.clone(),
                        how: *how,
                        when: conditions.describe(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The payload conditions under which a (type, how) reaches an agency: `Always`, or any
/// one of several rules' conditions.
#[derive(Clone, Debug, PartialEq)]
enum Conditions {
    Always,
    AnyOf(Vec<Vec<Condition>>),
}

impl Conditions {
    fn describe(&self) -> Option<String> {
        match self {
            Self::Always => None,
            Self::AnyOf(alternatives) => Some(
                alternatives
                    .iter()
                    .map(|all| {
                        all.iter()
                            .map(|c| {
                                format!(
                                    "{} in {}",
                                    c.path,
                                    serde_json::Value::Array(c.any_of.clone())
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(" and ")
                    })
                    .collect::<Vec<_>>()
                    .join(", or "),
            ),
        }
    }
}

/// Adds one way a type reaches an agency; `true` when that changed anything.
fn add(
    receives: &mut BTreeMap<(String, How), Conditions>,
    key: (String, How),
    when: &[Condition],
) -> bool {
    match (receives.get_mut(&key), when.is_empty()) {
        (Some(Conditions::Always), _) => false,
        (Some(existing), true) => {
            *existing = Conditions::Always;
            true
        }
        (Some(Conditions::AnyOf(alternatives)), false) => {
            if alternatives.iter().any(|a| a.as_slice() == when) {
                false
            } else {
                alternatives.push(when.to_vec());
                true
            }
        }
        (None, always) => {
            let conditions = if always {
                Conditions::Always
            } else {
                Conditions::AnyOf(vec![when.to_vec()])
            };
            receives.insert(key, conditions);
            true
        }
    }
}

/// What reaches `code` through rules that name it: fixed `to`/`cc`, and `to = "named"`.
fn fixed_and_named(
    code: &AgencyCode,
    rules: &[RuleRoute<'_>],
) -> BTreeMap<(String, How), Conditions> {
    let mut receives = BTreeMap::new();
    for rule in rules {
        // A sender never receives its own message.
        if !rule.sent_by_another_than(code) {
            continue;
        }
        let type_ = rule.type_.to_owned();
        if rule.to.contains(code) {
            add(&mut receives, (type_.clone(), How::To), rule.when);
        }
        if rule.cc.contains(code) {
            add(&mut receives, (type_.clone(), How::Cc), rule.when);
        }
        if let Some(named) = rule.named
            && named.is_none_or(|codes| codes.contains(code))
        {
            add(&mut receives, (type_, How::Named), rule.when);
        }
    }
    receives
}

/// Where the generated section of `docs/integration.md` begins and ends.
pub const DOC_BEGIN: &str =
    "<!-- generated from the registry, policy and catalogue (GET /v1/agencies): begin -->";
pub const DOC_END: &str =
    "<!-- generated from the registry, policy and catalogue (GET /v1/agencies): end -->";

/// The directory as Markdown: a table of the agencies, then what each sends and receives.
pub fn markdown(entries: &[AgencyEntry]) -> String {
    let mut out = String::from("| code | 名称 | name | delivery queue |\n|---|---|---|---|\n");
    for entry in entries {
        out.push_str(&format!(
            "| [`{}`](#agency-{}) | {} | {} | `{}` |\n",
            entry.code, entry.code, entry.name_zh, entry.name_en, entry.queue
        ));
    }
    for entry in entries {
        out.push_str(&format!(
            "\n<a id=\"agency-{}\"></a>\n#### `{}` {} — {}\n\n",
            entry.code, entry.code, entry.name_zh, entry.name_en
        ));
        let sends: Vec<String> = entry.sends.iter().map(|t| format!("`{t}`")).collect();
        out.push_str(&format!(
            "- **sends:** {}\n",
            if sends.is_empty() {
                "nothing".to_owned()
            } else {
                sends.join(", ")
            }
        ));
        let receives: Vec<String> = entry
            .receives
            .iter()
            .map(|r| match &r.when {
                Some(when) => format!("`{}` ({}, when {when})", r.type_, r.how.as_str()),
                None => format!("`{}` ({})", r.type_, r.how.as_str()),
            })
            .collect();
        out.push_str(&format!(
            "- **receives:** {}\n",
            if receives.is_empty() {
                "nothing".to_owned()
            } else {
                receives.join(", ")
            }
        ));
    }
    out
}

/// `doc` with its generated section replaced by `entries`; `None` without the markers.
pub fn splice_into(doc: &str, entries: &[AgencyEntry]) -> Option<String> {
    let start = doc.find(DOC_BEGIN)? + DOC_BEGIN.len();
    let end = doc.find(DOC_END)?;
    (start <= end).then(|| format!("{}\n{}{}", &doc[..start], markdown(entries), &doc[end..]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::defaults;

    fn built_in() -> Vec<AgencyEntry> {
        let registry =
            Registry::from_toml(defaults::REGISTRY.text, &defaults::REGISTRY.origin()).unwrap();
        let policy =
            Policy::from_toml(defaults::POLICY.text, &defaults::POLICY.origin(), &registry)
                .unwrap();
        let catalogue = Catalogue::from_source(&defaults::schemas()).unwrap();
        directory(&registry, &policy, &catalogue)
    }

    fn entry<'a>(entries: &'a [AgencyEntry], code: &str) -> &'a AgencyEntry {
        entries.iter().find(|e| e.code == code).unwrap()
    }

    fn receives(entry: &AgencyEntry, type_: &str, how: How) -> Option<Option<String>> {
        entry
            .receives
            .iter()
            .find(|r| r.type_ == type_ && r.how == how)
            .map(|r| r.when.clone())
    }

    #[test]
    fn the_demo_county_reads_as_its_policy_routes() {
        let entries = built_in();
        assert_eq!(entries.len(), 19);
        let eco = entry(&entries, "eco");
        assert_eq!(eco.name_en, "Ecology and Environment Bureau");
        assert_eq!(eco.queue, "liaison.agency.eco");
        assert!(eco.sends.contains(&"case.transfer.v1".to_owned()));
        assert!(eco.sends.contains(&"pil.lead.v1".to_owned()));
        // The police decide on eco's transfers: the decision comes back as an answer.
        assert_eq!(
            receives(eco, "case.filing-decision.v1", How::Answers),
            Some(None)
        );
        let police = entry(&entries, "police");
        assert_eq!(receives(police, "case.transfer.v1", How::To), Some(None));
        assert!(!police.sends.contains(&"case.transfer.v1".to_owned()));
        let procuratorate = entry(&entries, "procuratorate");
        assert_eq!(
            receives(procuratorate, "case.transfer.v1", How::Cc),
            Some(None)
        );
        assert_eq!(receives(procuratorate, "pil.lead.v1", How::To), Some(None));
        // Copied on the transfer, so it receives the filing decision as one of its copies.
        assert_eq!(
            receives(procuratorate, "case.filing-decision.v1", How::Answers),
            Some(None)
        );
        // A lead of official misconduct also goes to discipline inspection.
        let when = receives(entry(&entries, "discipline"), "pil.lead.v1", How::To)
            .expect("discipline receives misconduct leads");
        assert_eq!(when.as_deref(), Some("data.official_misconduct in [true]"));
        // No agency receives what only it may send.
        for entry in &entries {
            for received in &entry.receives {
                assert!(
                    !(entry.sends == [received.type_.clone()] && received.how != How::Answers),
                    "{} {received:?}",
                    entry.code
                );
            }
        }
    }

    #[test]
    fn a_fixed_route_outranks_a_conditional_one() {
        let mut receives = BTreeMap::new();
        let condition = Condition {
            path: "data.x".into(),
            any_of: vec![serde_json::json!(1)],
        };
        let key = ("t.v1".to_owned(), How::To);
        assert!(add(
            &mut receives,
            key.clone(),
            std::slice::from_ref(&condition)
        ));
        assert!(!add(
            &mut receives,
            key.clone(),
            std::slice::from_ref(&condition)
        ));
        assert_eq!(receives[&key].describe().as_deref(), Some("data.x in [1]"));
        assert!(add(&mut receives, key.clone(), &[]));
        assert_eq!(receives[&key], Conditions::Always);
        assert!(!add(&mut receives, key, std::slice::from_ref(&condition)));
    }

    /// `docs/integration.md` lists the built-in registry as this module renders it.
    /// Regenerate with `LIAISON_UPDATE_DOCS=1 cargo test -p liaison-server directory`.
    #[test]
    fn docs_integration_md_lists_the_current_agencies() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/integration.md");
        let doc = std::fs::read_to_string(&path).expect("docs/integration.md");
        let entries = built_in();
        let current =
            splice_into(&doc, &entries).expect("docs/integration.md keeps the section markers");
        if std::env::var_os("LIAISON_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &current).expect("write docs/integration.md");
            return;
        }
        assert!(
            current == doc,
            "docs/integration.md is stale: regenerate it with \
             LIAISON_UPDATE_DOCS=1 cargo test -p liaison-server directory"
        );
        for entry in &entries {
            assert!(
                doc.contains(&format!("#### `{}`", entry.code)),
                "{}",
                entry.code
            );
        }
    }
}
