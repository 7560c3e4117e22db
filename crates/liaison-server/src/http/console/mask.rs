//! Masking personal data for display. The message catalogue marks personal fields with
//! `"x-pii": true`; [`pii_pointers`] walks a payload beside its schema and names every
//! such value, and [`mask`] hides most of each: `张三` → `张*`, an identity card number
//! `620102199001011234` → `6201**********1234`, a phone `13800001234` → `138****1234`.

use serde_json::Value;

/// The JSON pointers (relative to `instance`) of every string `schema` marks `x-pii`.
pub fn pii_pointers(schema: &Value, instance: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, instance, String::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk(schema: &Value, instance: &Value, pointer: String, out: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if schema.get("x-pii") == Some(&Value::Bool(true)) && !instance.is_object() {
        if instance.is_string() || instance.is_number() {
            out.push(pointer.clone());
        } else if let Some(items) = instance.as_array() {
            for (i, item) in items.iter().enumerate() {
                if item.is_string() {
                    out.push(format!("{pointer}/{i}"));
                }
            }
        }
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for sub in schema
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(sub, instance, pointer.clone(), out);
        }
    }
    for branch in ["then", "else"] {
        if let Some(sub) = schema.get(branch) {
            walk(sub, instance, pointer.clone(), out);
        }
    }
    if let Some(members) = instance.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, value) in members {
            let child = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => walk(sub, value, child, out),
                None => {
                    if let Some(sub) = schema.get("additionalProperties") {
                        walk(sub, value, child, out);
                    }
                }
            }
        }
    }
    if let Some(items) = instance.as_array() {
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let child = format!("{pointer}/{i}");
            match prefix.and_then(|p| p.get(i)) {
                Some(sub) => walk(sub, item, child, out),
                None => {
                    if let Some(sub) = schema.get("items") {
                        walk(sub, item, child, out);
                    }
                }
            }
        }
    }
}

/// `text` with most of it hidden. Numbers (identity cards, credit codes, phones: mostly
/// digits) keep a few leading and the last four characters; names and addresses keep
/// their first character.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let digits = chars.iter().filter(|c| c.is_ascii_digit()).count();
    let numeric = n >= 7 && digits * 2 >= n;
    let (keep_head, keep_tail) = match (numeric, n) {
        (true, n) if n >= 15 => (4, 4),
        (true, _) => (3, 4),
        (false, 0) => (0, 0),
        (false, _) => (1, 0),
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_head || i >= n - keep_tail || c.is_whitespace() {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// `instance` with the value at each of `pointers` masked (strings and numbers only).
pub fn masked(instance: &Value, pointers: &[String]) -> Value {
    let mut copy = instance.clone();
    for pointer in pointers {
        if let Some(slot) = copy.pointer_mut(pointer) {
            let shown = match slot {
                Value::String(s) => mask(s),
                Value::Number(n) => mask(&n.to_string()),
                _ => continue,
            };
            *slot = Value::String(shown);
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_numbers_and_phones_are_masked_as_the_console_shows_them() {
        assert_eq!(mask("张三"), "张*");
        assert_eq!(mask("欧阳娜娜"), "欧***");
        assert_eq!(mask("620102199001011234"), "6201**********1234");
        assert_eq!(mask("91620100MA71234567"), "9162**********4567");
        assert_eq!(mask("13800001234"), "138****1234");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn only_fields_marked_pii_are_found_and_masked() {
        let schema = json!({
            "type": "object",
            "properties": {
                "subject": {"type": "object", "properties": {
                    "name": {"type": "string", "x-pii": true},
                    "id_number": {"anyOf": [{"format": "a"}], "x-pii": true},
                    "kind": {"type": "string"}
                }},
                "witnesses": {"type": "array", "items": {"type": "object", "properties": {
                    "phone": {"type": "string", "x-pii": true}
                }}},
                "summary": {"type": "string"}
            }
        });
        let payload = json!({
            "subject": {"name": "张三", "id_number": "620102199001011234", "kind": "person"},
            "witnesses": [{"phone": "13800001234"}, {"phone": "13900005678"}],
            "summary": "张三 illegal dumping"
        });
        let pointers = pii_pointers(&schema, &payload);
        assert_eq!(
            pointers,
            [
                "/subject/id_number",
                "/subject/name",
                "/witnesses/0/phone",
                "/witnesses/1/phone"
            ]
        );
        let shown = masked(&payload, &pointers);
        assert_eq!(shown["subject"]["name"], "张*");
        assert_eq!(shown["subject"]["id_number"], "6201**********1234");
        assert_eq!(shown["subject"]["kind"], "person");
        assert_eq!(shown["witnesses"][1]["phone"], "139****5678");
        assert_eq!(shown["summary"], payload["summary"]);
    }

    /// The catalogue's own example of a lead has personal data, and all of it is found.
    #[test]
    fn the_catalogue_marks_the_personal_fields_of_a_lead() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalogue = liaison_schema::Catalogue::load(&dir).expect("schemas load");
        let lead = catalogue.get("pil.lead.v1").expect("pil.lead.v1");
        let path = dir.join("pil.lead.v1/valid/river-pollution-full.json");
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("the example"))
                .expect("JSON");
        let pointers = pii_pointers(&lead.schema, &example["data"]);
        assert!(!pointers.is_empty(), "{example}");
        let shown = masked(&example["data"], &pointers);
        for pointer in &pointers {
            assert_ne!(shown.pointer(pointer), example["data"].pointer(pointer));
        }
    }
}
