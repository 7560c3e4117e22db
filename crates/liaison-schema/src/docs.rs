//! `docs/messages.md`, generated from the catalogue alone: one section per message type
//! with who sends it, who receives it, what it answers and every field.
//!
//! The page is derived, never edited by hand: a test compares it with this rendering and
//! fails when a schema changed without the page (`LIAISON_UPDATE_DOCS=1` rewrites it).

use std::fmt::Write as _;

use serde_json::Value;

use crate::catalogue::{Catalogue, MessageType};
use crate::info::ANY_TYPE;

/// Renders the whole page.
pub fn render_messages_md(catalogue: &Catalogue) -> String {
    let mut page = String::new();
    page.push_str(
        "# Message catalogue\n\n\
         <!-- Generated from schemas/ by liaison-schema (docs.rs); do not edit by hand.\n     \
         Regenerate with: LIAISON_UPDATE_DOCS=1 cargo test -p liaison-schema --test docs -->\n\n\
         Every message is a CloudEvent (`schemas/envelope.json`) whose `type` names one of the \
         types below and whose `data` follows that type's schema (`schemas/<type>/schema.json`, \
         JSON Schema 2020-12). Worked examples sit next to each schema in `valid/` and \
         `invalid/`. A published type never changes what it accepts: a breaking change is a new \
         version (`.v2`) served beside the old one.\n\n\
         Fields marked *personal data* carry `\"x-pii\": true`: they are never quoted in error \
         messages or logs.\n\n",
    );
    page.push_str("| type | title | sent by | received by |\n|---|---|---|---|\n");
    for message_type in catalogue.types() {
        let _ = writeln!(
            page,
            "| [`{name}`](#{anchor}) | {title} | {senders} | {recipients} |",
            name = message_type.name,
            anchor = anchor(&message_type.name),
            title = cell(&message_type.title),
            senders = cell(&message_type.info.senders),
            recipients = cell(&message_type.info.recipients),
        );
    }
    for message_type in catalogue.types() {
        page.push('\n');
        render_type(&mut page, catalogue, message_type);
    }
    page
}

fn render_type(page: &mut String, catalogue: &Catalogue, message_type: &MessageType) {
    let info = &message_type.info;
    let _ = writeln!(
        page,
        "## {name}\n\n**{title}**\n\n{description}\n",
        name = message_type.name,
        title = message_type.title,
        description = message_type.description,
    );
    page.push_str("| | |\n|---|---|\n");
    let _ = writeln!(page, "| sent by | {} |", cell(&info.senders));
    let _ = writeln!(page, "| received by | {} |", cell(&info.recipients));
    let answers = if info.answers.is_empty() {
        "nothing: it opens a matter".to_owned()
    } else {
        info.answers
            .iter()
            .map(|name| type_link(name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(page, "| answers | {answers} |");
    let answered_by: Vec<String> = catalogue
        .types()
        .filter(|other| {
            other
                .info
                .answers
                .iter()
                .any(|a| a == &message_type.name || a == ANY_TYPE)
        })
        .map(|other| type_link(&other.name))
        .collect();
    if !answered_by.is_empty() {
        let _ = writeln!(page, "| answered by | {} |", answered_by.join(", "));
    }
    if !info.requires.is_empty() {
        let required: Vec<String> = info.requires.iter().map(|a| format!("`{a}`")).collect();
        let _ = writeln!(page, "| envelope must carry | {} |", required.join(", "));
    }
    let _ = writeln!(
        page,
        "| schema | [`schemas/{name}/schema.json`](../schemas/{name}/schema.json) |",
        name = message_type.name
    );
    page.push_str("\n| field | type | required | description |\n|---|---|---|---|\n");
    render_fields(page, &message_type.schema, "");
    let conditions = conditional_requirements(&message_type.schema);
    if !conditions.is_empty() {
        page.push_str("\nAlso required:\n\n");
        for condition in conditions {
            let _ = writeln!(page, "- {condition}");
        }
    }
}

/// One row per property, depth first; array items are shown as `name[]`.
fn render_fields(page: &mut String, schema: &Value, prefix: &str) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required = string_list(schema.get("required"));
    for (name, property) in properties {
        let path = format!("{prefix}{name}");
        let pii = if property.get("x-pii") == Some(&Value::Bool(true)) {
            " *personal data*"
        } else {
            ""
        };
        let _ = writeln!(
            page,
            "| `{path}` | {kind} | {required} | {title}{pii} — {description} |",
            kind = cell(&describe_type(property)),
            required = if required.iter().any(|r| r == name) {
                "yes"
            } else {
                ""
            },
            title = cell(text(property, "title")),
            description = cell(text(property, "description")),
        );
        render_fields(page, property, &format!("{path}."));
        if let Some(items) = property
            .get("items")
            .filter(|i| i.get("properties").is_some())
        {
            render_fields(page, items, &format!("{path}[]."));
        }
    }
}

/// A short account of a field's type and constraints, e.g. "string, date-time".
fn describe_type(schema: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => {
            let items = schema.get("items").map(describe_type).unwrap_or_default();
            parts.push(format!("array of {items}"));
        }
        Some(kind) => parts.push(kind.to_owned()),
        None if schema.get("const").is_some() => {}
        None => parts.push("any".to_owned()),
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| format!("`{}`", plain(v))).collect();
        parts.push(format!("one of {}", values.join(", ")));
    }
    if let Some(value) = schema.get("const") {
        parts.push(format!("always `{}`", plain(value)));
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        parts.push(format!("format `{format}`"));
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
        let formats: Vec<String> = alternatives
            .iter()
            .filter_map(|a| a.get("format").and_then(Value::as_str))
            .map(|f| format!("`{f}`"))
            .collect();
        if !formats.is_empty() {
            parts.push(format!("format {}", formats.join(" or ")));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        parts.push(format!("pattern `{pattern}`"));
    }
    for (keyword, label) in [
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("minimum", "≥ {}"),
        ("maximum", "≤ {}"),
    ] {
        if let Some(bound) = schema.get(keyword) {
            parts.push(label.replace("{}", &plain(bound)));
        }
    }
    if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
        parts.push("no duplicates".to_owned());
    }
    parts.join(", ")
}

/// Requirements that depend on another field's value (`allOf` of `if`/`then`), in words.
fn conditional_requirements(schema: &Value) -> Vec<String> {
    let Some(rules) = schema.get("allOf").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut sentences = Vec::new();
    for rule in rules {
        let (Some(condition), Some(then)) = (rule.get("if"), rule.get("then")) else {
            continue;
        };
        let Some((field, values)) = condition
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|properties| properties.iter().next())
        else {
            continue;
        };
        let values: Vec<String> = match (values.get("const"), values.get("enum")) {
            (Some(value), _) => vec![format!("`{}`", plain(value))],
            (None, Some(Value::Array(values))) => {
                values.iter().map(|v| format!("`{}`", plain(v))).collect()
            }
            _ => continue,
        };
        let required: Vec<String> = string_list(then.get("required"))
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        if required.is_empty() {
            continue;
        }
        sentences.push(format!(
            "{} when `{field}` is {}",
            required.join(" and "),
            values.join(" or ")
        ));
    }
    sentences
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn text<'a>(schema: &'a Value, member: &str) -> &'a str {
    schema.get(member).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value as text, without quotes around strings.
fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn type_link(name: &str) -> String {
    if name == ANY_TYPE {
        "any message".to_owned()
    } else {
        format!("[`{name}`](#{})", anchor(name))
    }
}

/// The anchor GitHub-flavoured Markdown gives a `## name` heading: dots dropped.
fn anchor(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describes_constraints_in_words() {
        assert_eq!(
            describe_type(&json!({"type": "string", "enum": ["a", "b"]})),
            "string, one of `a`, `b`"
        );
        assert_eq!(
            describe_type(
                &json!({"type": "array", "minItems": 1, "items": {"type": "string", "format": "uuid"}})
            ),
            "array of string, format `uuid`, at least 1 items"
        );
        assert_eq!(
            describe_type(
                &json!({"type": "string", "anyOf": [{"format": "cn-resident-id"}, {"format": "cn-uscc"}]})
            ),
            "string, format `cn-resident-id` or `cn-uscc`"
        );
    }

    #[test]
    fn turns_if_then_into_sentences() {
        let schema = json!({"allOf": [
            {"if": {"properties": {"decision": {"enum": ["decline", "more_evidence"]}}, "required": ["decision"]},
             "then": {"required": ["reasons"]}}
        ]});
        assert_eq!(
            conditional_requirements(&schema),
            ["`reasons` when `decision` is `decline` or `more_evidence`"]
        );
    }

    #[test]
    fn anchors_and_cells_are_markdown_safe() {
        assert_eq!(anchor("pil.lead-decision.v1"), "pillead-decisionv1");
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }
}
