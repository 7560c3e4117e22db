//! What a failed validation tells the sender: every fault, each at a JSON pointer.

use std::fmt;

use jsonschema::error::ValidationErrorKind;
use liaison_core::RejectCode;
use serde::Serialize;
use serde_json::Value;

use crate::formats;

/// One fault of a message against the catalogue.
///
/// `pointer` is an RFC 6901 JSON pointer into the whole CloudEvent. For `required` it names
/// the missing member and for `additionalProperties` the member that is not allowed, so
/// every violation points at the one field a sender has to fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub pointer: String,
    /// The failing JSON Schema keyword: `required`, `enum`, `format`, `pattern`, …
    pub keyword: String,
    /// A readable explanation. It never quotes the value sent: values can be personal data
    /// and violations end up in logs and ledger events.
    pub message: String,
}

/// Why a parsed message was refused by the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// [`RejectCode::EnvelopeInvalid`], [`RejectCode::UnknownType`] or
    /// [`RejectCode::PayloadInvalid`].
    pub code: RejectCode,
    /// Every fault found, sorted by pointer; never empty.
    pub violations: Vec<Violation>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code.title())?;
        for (index, violation) in self.violations.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            let pointer = if violation.pointer.is_empty() {
                "(root)"
            } else {
                &violation.pointer
            };
            write!(f, "{pointer}: {}", violation.message)?;
        }
        Ok(())
    }
}

/// Turns the errors of one validator run into violations, with `prefix` (such as `/data`)
/// put in front of every pointer because the payload is validated on its own.
pub(crate) fn violations_of<'a>(
    errors: impl Iterator<Item = jsonschema::ValidationError<'a>>,
    prefix: &str,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for error in errors {
        let at = format!("{prefix}{}", error.instance_path().as_str());
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_owned);
                violations.push(Violation {
                    pointer: member_pointer(&at, &name),
                    keyword: "required".to_owned(),
                    message: format!("required member {name:?} is missing"),
                });
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                violations.extend(unexpected.iter().map(|name| Violation {
                    pointer: member_pointer(&at, name),
                    keyword: "additionalProperties".to_owned(),
                    message: format!("member {name:?} is not allowed here"),
                }));
            }
            kind => violations.push(Violation {
                pointer: at,
                keyword: kind.keyword().to_owned(),
                message: what_to_fix(&error)
                    .unwrap_or_else(|| error.masked_with("the value").to_string()),
            }),
        }
    }
    violations
}

/// A message that says what to fix where the validator's own would not: a check
/// character names the format, the position and the character expected (the validator
/// says only "not valid under any of the schemas" when a field may be either identifier),
/// and an enum lists every allowed value (the validator cuts long lists short).
fn what_to_fix(error: &jsonschema::ValidationError<'_>) -> Option<String> {
    match error.kind() {
        ValidationErrorKind::Format { format } => {
            formats::fault(format, error.instance().as_str()?)
                .map(|why| format!("the value is {why}"))
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let value = error.instance().as_str()?;
            let faults = context
                .iter()
                .map(|branch| {
                    only_custom_format(branch).and_then(|format| formats::fault(format, value))
                })
                .collect::<Option<Vec<String>>>()?;
            (!faults.is_empty()).then(|| format!("the value is {}", faults.join("; and ")))
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options.as_array()?.iter().map(Value::to_string).collect();
            Some(format!(
                "the value is not one of the allowed values: {}",
                allowed.join(", ")
            ))
        }
        _ => None,
    }
}

/// The custom format a branch of `anyOf`/`oneOf` failed on, when that is all it failed on.
fn only_custom_format<'e>(branch: &'e [jsonschema::ValidationError<'_>]) -> Option<&'e str> {
    match branch {
        [only] => match only.kind() {
            ValidationErrorKind::Format { format } if formats::is_custom(format) => Some(format),
            _ => None,
        },
        _ => None,
    }
}

/// Sorts by pointer so that answers are stable whatever order the validator walked in.
pub(crate) fn sorted(mut violations: Vec<Violation>) -> Vec<Violation> {
    violations.sort_by(|a, b| {
        (a.pointer.as_str(), a.keyword.as_str(), a.message.as_str()).cmp(&(
            b.pointer.as_str(),
            b.keyword.as_str(),
            b.message.as_str(),
        ))
    });
    violations.dedup();
    violations
}

/// `parent` + `/name`, escaped as RFC 6901 requires.
fn member_pointer(parent: &str, name: &str) -> String {
    format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_escaped() {
        assert_eq!(member_pointer("/data", "a/b~c"), "/data/a~1b~0c");
        assert_eq!(member_pointer("", "type"), "/type");
    }

    #[test]
    fn display_lists_every_violation() {
        let error = ValidationError {
            code: RejectCode::PayloadInvalid,
            violations: vec![
                Violation {
                    pointer: "/data/a".into(),
                    keyword: "type".into(),
                    message: "wrong type".into(),
                },
                Violation {
                    pointer: String::new(),
                    keyword: "type".into(),
                    message: "not an object".into(),
                },
            ],
        };
        let text = error.to_string();
        assert!(text.contains("/data/a: wrong type"), "{text}");
        assert!(text.contains("(root): not an object"), "{text}");
    }
}
