//! `liaison policy check` and `liaison policy explain`: the routing policy as an operator
//! sees it, before any message is sent.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use liaison_core::policy::{Condition, OriginalMessage};
use liaison_core::{AgencyCode, Envelope, Policy};
use liaison_server::Config;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Load the policy against the registry and the catalogue: unknown agencies, unknown
    /// types and conditions that can never hold are errors naming the file and line.
    Check,
    /// Write the policy built into the binary, to edit and name as `policy` in the
    /// configuration.
    Export {
        /// Where to write it; standard output when absent. An existing file is not replaced.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show who would receive a message, and which rule chose each recipient.
    Explain {
        /// The sending agency.
        #[arg(long = "from", value_name = "AGENCY")]
        from: String,
        /// The message type.
        #[arg(long = "type", value_name = "TYPE")]
        type_: String,
        /// The payload (`data`) as JSON, or a whole CloudEvent (its `data` and
        /// `recipients` are then used).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Agencies the message names in its `recipients` attribute (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "AGENCY,...")]
        recipients: Vec<String>,
        /// For answers: the sender of the message it answers.
        #[arg(long, value_name = "AGENCY")]
        original_from: Option<String>,
        /// For answers: the addressees of the message it answers (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "AGENCY,...")]
        original_to: Vec<String>,
        /// For answers: the agencies copied on the message it answers (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "AGENCY,...")]
        original_cc: Vec<String>,
        /// For answers: the type of the message it answers.
        #[arg(long, value_name = "TYPE")]
        original_type: Option<String>,
    },
}

/// The policy, registry and catalogue come from the configuration (files it names, or
/// the built-in ones).
pub fn run(command: PolicyCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check => {
            let report = check(config)?;
            print!("{report}");
            Ok(())
        }
        PolicyCommand::Export { out } => {
            let text = liaison_server::defaults::POLICY.text;
            match out {
                Some(path) => {
                    write_new(&path, text.as_bytes())?;
                    eprintln!(
                        "the built-in policy written to {}; name it as `policy` in the configuration",
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        PolicyCommand::Explain {
            from,
            type_,
            data,
            recipients,
            original_from,
            original_to,
            original_cc,
            original_type,
        } => {
            let registry = config.load_registry()?;
            let policy = config.load_policy(&registry)?;
            let payload = match data {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => json!({}),
            };
            let original = match original_from {
                Some(sender) => {
                    let codes = |list: Vec<String>| {
                        list.into_iter()
                            .map(AgencyCode::new)
                            .collect::<Result<Vec<_>, _>>()
                    };
                    let addressees = codes(original_to)?;
                    let copies = codes(original_cc)?;
                    Some(OriginalMessage {
                        id: Uuid::nil(),
                        type_: original_type.unwrap_or_default(),
                        sender: AgencyCode::new(sender)?,
                        recipients: addressees.iter().chain(&copies).cloned().collect(),
                        addressees,
                        caseref: None,
                    })
                }
                None => None,
            };
            print!(
                "{}",
                explain(&policy, &from, &type_, payload, &recipients, original)?
            );
            Ok(())
        }
    }
}

/// Loads and cross-checks the policy; the report lists each rule with its line.
pub fn check(config: &Config) -> anyhow::Result<String> {
    let registry = config.load_registry()?;
    let policy = config.load_policy(&registry)?;
    let catalogue = config.load_catalogue()?;
    let origin = config.policy_origin();
    let mut problems = Vec::new();
    let mut report = String::new();
    for rule in policy.rules() {
        let Some(message_type) = catalogue.get(rule.type_) else {
            problems.push(format!(
                "{origin}:{}: rule {:?}: message type {} is not in the catalogue {}",
                rule.line,
                rule.name,
                rule.type_,
                config.schemas_origin()
            ));
            continue;
        };
        for (condition, why) in never_holding(rule.conditions, &message_type.schema) {
            problems.push(format!(
                "{origin}:{}: rule {:?}: `when` {} can never hold: {why}",
                rule.line, rule.name, condition.path
            ));
        }
        report.push_str(&format!(
            "  {origin}:{:<4} {:<48} {}\n",
            rule.line, rule.name, rule.type_
        ));
    }
    let lifecycle = config.load_lifecycle()?;
    let lifecycle_origin = config.lifecycle_origin();
    lifecycle.check_types(
        &lifecycle_origin,
        catalogue.types().map(|t| t.name.as_str()),
    )?;
    let mut flows = String::new();
    for flow in lifecycle.flows() {
        for step in &flow.steps {
            let Some(message_type) = catalogue.get(&step.on) else {
                continue;
            };
            for (condition, why) in never_holding(&step.when, &message_type.schema) {
                problems.push(format!(
                    "{lifecycle_origin}:{}: flow {:?}: `when` {} can never hold: {why}",
                    step.line, flow.name, condition.path
                ));
            }
        }
        flows.push_str(&format!(
            "  {lifecycle_origin}:{:<4} {:<22} {} states, {} steps, opened by {}\n",
            flow.line,
            flow.name,
            flow_states(flow).len(),
            flow.steps.len(),
            flow.opened_by
        ));
    }
    if let Err(problem) =
        liaison_server::workers::clock_watcher::check_notices(&lifecycle, &catalogue)
    {
        problems.push(format!("{lifecycle_origin}: {problem}"));
    }
    for clock in lifecycle.clocks() {
        let Some(message_type) = catalogue.get(&clock.starts_on) else {
            continue;
        };
        for (when, _) in &clock.period_when {
            for (condition, why) in never_holding(when, &message_type.schema) {
                problems.push(format!(
                    "{lifecycle_origin}:{}: clock {:?}: `when` {} can never hold: {why}",
                    clock.line, clock.name, condition.path
                ));
            }
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    let types: std::collections::BTreeSet<&str> = policy.types().collect();
    Ok(format!(
        "✓ {origin}: {} rules over {} message types; every agency registered, every type in the catalogue, every condition satisfiable\n{report}\
         ✓ {lifecycle_origin}: {} flows; every catalogue type has its place, every state is reached, every condition satisfiable\n{flows}\
         ✓ {lifecycle_origin}: {} clocks; each starts and stops on steps of its flow, and its notices are valid deadline.reminder.v1\n",
        policy.rules().count(),
        types.len(),
        lifecycle.flows().len(),
        lifecycle.clocks().len(),
    ))
}

/// The conditions (of a policy rule or a lifecycle step) that no payload valid for
/// `schema` satisfies, each with the reason.
fn never_holding<'a>(
    conditions: &'a [Condition],
    schema: &'a Value,
) -> impl Iterator<Item = (&'a Condition, String)> {
    conditions
        .iter()
        .filter_map(|c| condition_can_hold(c, schema).err().map(|why| (c, why)))
}

/// Every state of a flow: the initial one and every step's.
pub fn flow_states(flow: &liaison_core::lifecycle::Flow) -> std::collections::BTreeSet<&str> {
    std::iter::once(flow.initial.as_str())
        .chain(flow.steps.iter().flat_map(|s| {
            s.from
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(s.to.as_str()))
        }))
        .collect()
}

/// Writes `bytes` to a new file at `path`: an operator's edited copy is never replaced.
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether some payload valid for `schema` could satisfy the condition: the field exists
/// and, where the schema restricts its values (`enum`, `const`, `type`), one listed value
/// is among them.
pub fn condition_can_hold(condition: &Condition, schema: &Value) -> Result<(), String> {
    let mut at = schema;
    let field = condition
        .path
        .strip_prefix("data.")
        .unwrap_or(&condition.path);
    for key in field.split('.') {
        at = at
            .get("properties")
            .and_then(|p| p.get(key))
            .ok_or_else(|| format!("the payload schema has no field {key:?}"))?;
    }
    let possible = |v: &Value| -> bool {
        if let Some(values) = at.get("enum").and_then(Value::as_array) {
            return values.contains(v);
        }
        if let Some(constant) = at.get("const") {
            return constant == v;
        }
        match at.get("type").and_then(Value::as_str) {
            Some("boolean") => v.is_boolean(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            _ => true,
        }
    };
    if condition.any_of.iter().any(possible) {
        Ok(())
    } else {
        Err(format!(
            "none of {} is a value the schema allows",
            Value::Array(condition.any_of.clone())
        ))
    }
}

/// The recipients of one hypothetical message, each with the rule that chose it.
pub fn explain(
    policy: &Policy,
    from: &str,
    type_: &str,
    payload: Value,
    recipients: &[String],
    original: Option<OriginalMessage>,
) -> anyhow::Result<String> {
    let sender = AgencyCode::new(from)?;
    // A whole CloudEvent brings its own data and recipients; a bare payload is `data`.
    let (data, mut named) = if payload.get("specversion").is_some() {
        let named = payload
            .get("recipients")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        (payload.get("data").cloned().unwrap_or(Value::Null), named)
    } else {
        (payload, Vec::new())
    };
    if !recipients.is_empty() {
        named = recipients.to_vec();
    }
    let mut event = json!({
        "specversion": "1.0",
        "id": Uuid::now_v7().to_string(),
        "source": sender.urn(),
        "type": type_,
        "time": "2026-01-01T00:00:00Z",
        "data": data,
    });
    if !named.is_empty() {
        event["recipients"] = json!(named);
    }
    if let Some(o) = &original {
        event["inreplyto"] = json!(o.id.to_string());
    }
    let envelope = Envelope::from_value(&event)?;
    match policy.route_event(&sender, &envelope, Some(&event), original.as_ref()) {
        Ok(route) if route.recipients.is_empty() => Ok(format!(
            "{from} may send {type_}, but it reaches no one (only the sender matched)\n"
        )),
        Ok(route) => {
            let mandatory = policy.mandatory_recipients(&sender, type_, Some(&event));
            let mut out = format!("{from} → {type_}:\n");
            for r in &route.recipients {
                let role = match r.role {
                    liaison_core::RecipientRole::To => "to",
                    liaison_core::RecipientRole::Cc => "cc",
                };
                out.push_str(&format!(
                    "  {role}  {:<16} rule {}\n",
                    r.agency.as_str(),
                    r.rule
                ));
                for m in mandatory.iter().filter(|m| m.agency == &r.agency) {
                    out.push_str(&format!(
                        "        mandatory (rule {}): {}; `recipients` cannot remove it\n",
                        m.rule, m.why
                    ));
                }
            }
            Ok(out)
        }
        Err(e) => anyhow::bail!(
            "refused ({}, HTTP {}): {e}",
            e.code(),
            e.code().http_status()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(path: &str, any_of: Vec<Value>) -> Condition {
        Condition {
            path: path.into(),
            any_of,
        }
    }

    #[test]
    fn explain_shows_a_supervisory_copy_that_recipients_cannot_remove() {
        // The built-in policy: the demo county's.
        let config = Config::default();
        let registry = config.load_registry().unwrap();
        let policy = config.load_policy(&registry).unwrap();
        let out = explain(
            &policy,
            "eco",
            "case.transfer.v1",
            json!({}),
            &["police".to_owned()],
            None,
        )
        .unwrap();
        assert!(out.contains("to  police"), "{out}");
        assert!(out.contains("cc  procuratorate"), "{out}");
        assert!(
            out.contains("mandatory (rule case-transfer-to-police): §三(一)"),
            "{out}"
        );
    }

    #[test]
    fn conditions_are_checked_against_the_payload_schema() {
        let schema = json!({"properties": {
            "impact": {"enum": ["normal", "high"]},
            "urgent": {"type": "boolean"},
            "party": {"properties": {"kind": {"const": "person"}}}
        }});
        assert!(
            condition_can_hold(&condition("data.impact", vec![json!("high")]), &schema).is_ok()
        );
        let err = condition_can_hold(&condition("data.impact", vec![json!("hgih")]), &schema)
            .unwrap_err();
        assert!(err.contains("hgih"), "{err}");
        assert!(
            condition_can_hold(&condition("data.urgent", vec![json!("yes")]), &schema).is_err()
        );
        assert!(condition_can_hold(&condition("data.urgent", vec![json!(true)]), &schema).is_ok());
        assert!(
            condition_can_hold(
                &condition("data.party.kind", vec![json!("person")]),
                &schema
            )
            .is_ok()
        );
        let err = condition_can_hold(&condition("data.nope", vec![json!(1)]), &schema).unwrap_err();
        assert!(err.contains("no field"), "{err}");
    }
}
