//! Turning a request body into JSON without letting the body choose how much work that is.
//!
//! Nesting is measured by a byte scan before serde sees the input, so a hostile body of
//! a million `[` costs one linear pass, not a deep recursion. Duplicate object members are
//! refused: the ledger keeps the sender's bytes and recipients parse them with their own
//! parsers, which may keep the first duplicate where serde keeps the last — a message
//! must mean the same thing to the broker that validated it and to every reader.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Limits applied while parsing a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Deepest nesting of arrays and objects accepted; `[]` and `{}` at the top are depth 1.
    ///
    /// serde_json refuses nesting beyond 128 on its own, so values above 128 act as 128
    /// (reported as [`ParseError::Malformed`]).
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_depth: 32 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("body is not well-formed JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("JSON nests deeper than {max_depth} levels")]
    TooDeep { max_depth: usize },
}

impl ParseError {
    /// The stable rejection code that goes with this error.
    pub fn code(&self) -> liaison_core::RejectCode {
        use liaison_core::RejectCode;
        match self {
            Self::InvalidUtf8 { .. } => RejectCode::InvalidUtf8,
            Self::Malformed { .. } => RejectCode::MalformedJson,
            Self::TooDeep { .. } => RejectCode::TooDeep,
        }
    }
}

/// Parses a request body into JSON, refusing invalid UTF-8, nesting deeper than
/// `limits.max_depth` (before any recursion) and objects with duplicate members.
pub fn parse(bytes: &[u8], limits: &ParseLimits) -> Result<Value, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|error| ParseError::InvalidUtf8 {
        valid_up_to: error.valid_up_to(),
    })?;
    check_depth(text.as_bytes(), limits.max_depth)?;
    serde_json::from_str::<StrictValue>(text)
        .map(|strict| strict.0)
        .map_err(|error| ParseError::Malformed {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error),
        })
}

/// Counts brackets outside strings. Malformed bracket structure is not this scan's
/// business: serde reports it with a position afterwards.
fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ParseError::TooDeep { max_depth });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// serde_json appends " at line L column C" to its message; the position has its own fields.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map_or(message.clone(), str::to_owned)
}

/// A `serde_json::Value` that refuses duplicate object members while it is built.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so `from` never yields null here.
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member {key:?}")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_arrays(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn parses_an_ordinary_object() {
        let value = parse(
            br#"{"a": [1, 2.5, "x", null, true]}"#,
            &ParseLimits::default(),
        )
        .expect("valid JSON");
        assert_eq!(value, serde_json::json!({"a": [1, 2.5, "x", null, true]}));
    }

    #[test]
    fn refuses_invalid_utf8_and_says_where() {
        let error = parse(b"{\"a\": \"\xff\"}", &ParseLimits::default()).unwrap_err();
        assert_eq!(error, ParseError::InvalidUtf8 { valid_up_to: 7 });
        assert_eq!(error.code(), liaison_core::RejectCode::InvalidUtf8);
    }

    #[test]
    fn reports_line_and_column_of_malformed_json() {
        let error = parse(b"{\n  \"a\": 1,\n  \"b\": }\n", &ParseLimits::default()).unwrap_err();
        let ParseError::Malformed {
            line,
            column,
            message,
        } = &error
        else {
            panic!("expected Malformed, got {error:?}");
        };
        assert_eq!((*line, *column), (3, 8));
        assert!(
            !message.contains("at line"),
            "position is not repeated: {message}"
        );
        assert!(error.to_string().contains("line 3, column 8"), "{error}");
    }

    #[test]
    fn refuses_trailing_garbage() {
        let error = parse(b"{} {}", &ParseLimits::default()).unwrap_err();
        assert!(
            matches!(error, ParseError::Malformed { line: 1, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn accepts_depth_32_and_refuses_depth_33() {
        let limits = ParseLimits::default();
        assert!(parse(nested_arrays(32).as_bytes(), &limits).is_ok());
        assert_eq!(
            parse(nested_arrays(33).as_bytes(), &limits).unwrap_err(),
            ParseError::TooDeep { max_depth: 32 }
        );
        let objects = format!("{}1{}", r#"{"a":"#.repeat(33), "}".repeat(33));
        assert_eq!(
            parse(objects.as_bytes(), &limits).unwrap_err(),
            ParseError::TooDeep { max_depth: 32 }
        );
    }

    #[test]
    fn refuses_deep_nesting_before_serde_would_overflow() {
        let hostile = "[".repeat(1_000_000);
        assert_eq!(
            parse(hostile.as_bytes(), &ParseLimits::default()).unwrap_err(),
            ParseError::TooDeep { max_depth: 32 }
        );
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let brackets = "[{".repeat(100);
        let body = format!(r#"{{"text": "{brackets} \" still in the string [[[ \\", "n": [1]}}"#);
        let value = parse(body.as_bytes(), &ParseLimits::default()).expect("depth 2");
        assert_eq!(value["n"], serde_json::json!([1]));
    }

    #[test]
    fn a_lower_limit_is_honoured() {
        let limits = ParseLimits { max_depth: 2 };
        assert!(parse(b"{\"a\": [1]}", &limits).is_ok());
        assert_eq!(
            parse(b"{\"a\": [[1]]}", &limits).unwrap_err(),
            ParseError::TooDeep { max_depth: 2 }
        );
    }

    #[test]
    fn refuses_duplicate_members() {
        let error = parse(br#"{"type": "a", "type": "b"}"#, &ParseLimits::default()).unwrap_err();
        let ParseError::Malformed { message, .. } = &error else {
            panic!("expected Malformed, got {error:?}");
        };
        assert!(message.contains("duplicate member \"type\""), "{message}");
    }
}
