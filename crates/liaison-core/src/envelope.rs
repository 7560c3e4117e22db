//! The CloudEvents 1.0 envelope (structured JSON mode) and the submission that carries it.
//!
//! The envelope schema in `schemas/envelope.json` is checked first; this module then reads
//! the attributes the broker acts on into typed fields. The bytes the agency sent are kept
//! untouched alongside: they are what the ledger records and what recipients receive.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::agency::AgencyCode;

/// How a submission reached the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Https,
    Amqp,
    /// The broker's own deadline watcher.
    Clock,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Amqp => "amqp",
            Self::Clock => "clock",
        }
    }
}

/// What every intake channel hands to the one pipeline.
///
/// `sender` is the authenticated identity (client certificate or validated AMQP user id),
/// never something the client wrote in the body.
#[derive(Clone, Debug)]
pub struct Submission {
    pub sender: AgencyCode,
    pub bytes: Bytes,
    pub channel: Channel,
    pub received_at: OffsetDateTime,
    /// The W3C `traceparent` of the transport that carried it (the HTTP request's header,
    /// the AMQP message's), continued by the broker's spans before the CloudEvent's own.
    pub traceparent: Option<String>,
}

/// The attributes of a CloudEvent that the broker acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub id: Uuid,
    pub source: String,
    pub type_: String,
    pub time: OffsetDateTime,
    pub subject: Option<String>,
    pub caseref: Option<String>,
    pub inreplyto: Option<Uuid>,
    pub recipients: Option<Vec<AgencyCode>>,
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope must be a JSON object")]
    NotAnObject,
    #[error("attribute {attribute}: {message}")]
    Attribute {
        attribute: &'static str,
        message: String,
    },
}

impl EnvelopeError {
    /// The JSON pointer of the offending attribute, for problem documents.
    pub fn pointer(&self) -> String {
        match self {
            Self::NotAnObject => String::new(),
            Self::Attribute { attribute, .. } => format!("/{attribute}"),
        }
    }
}

impl Envelope {
    /// Reads the envelope attributes from an already parsed CloudEvent.
    pub fn from_value(event: &Value) -> Result<Self, EnvelopeError> {
        let obj = event.as_object().ok_or(EnvelopeError::NotAnObject)?;
        let string = |attribute: &'static str| -> Result<Option<String>, EnvelopeError> {
            match obj.get(attribute) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(EnvelopeError::Attribute {
                    attribute,
                    message: "must be a string".into(),
                }),
            }
        };
        let required = |attribute: &'static str| -> Result<String, EnvelopeError> {
            string(attribute)?.ok_or(EnvelopeError::Attribute {
                attribute,
                message: "is required".into(),
            })
        };
        let uuid = |attribute: &'static str, s: &str| -> Result<Uuid, EnvelopeError> {
            Uuid::parse_str(s).map_err(|e| EnvelopeError::Attribute {
                attribute,
                message: format!("must be a UUID: {e}"),
            })
        };

        let specversion = required("specversion")?;
        if specversion != "1.0" {
            return Err(EnvelopeError::Attribute {
                attribute: "specversion",
                message: "must be \"1.0\"".into(),
            });
        }
        let id = uuid("id", &required("id")?)?;
        let time_text = required("time")?;
        let time =
            OffsetDateTime::parse(&time_text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| EnvelopeError::Attribute {
                    attribute: "time",
                    message: format!("must be an RFC 3339 timestamp: {e}"),
                })?;
        let inreplyto = string("inreplyto")?
            .map(|s| uuid("inreplyto", &s))
            .transpose()?;
        let recipients = match obj.get("recipients") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| {
                        item.as_str().and_then(|s| AgencyCode::new(s).ok()).ok_or(
                            EnvelopeError::Attribute {
                                attribute: "recipients",
                                message: "must be a list of agency codes".into(),
                            },
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => {
                return Err(EnvelopeError::Attribute {
                    attribute: "recipients",
                    message: "must be a list of agency codes".into(),
                });
            }
        };
        Ok(Self {
            id,
            source: required("source")?,
            type_: required("type")?,
            time,
            subject: string("subject")?,
            caseref: string("caseref")?,
            inreplyto,
            recipients,
            traceparent: string("traceparent")?,
        })
    }

    /// The agency that `source` names, if it is of the form `urn:liaison:agency:<code>`.
    pub fn source_agency(&self) -> Option<AgencyCode> {
        AgencyCode::from_urn(&self.source)
    }
}

/// The envelope schema's pattern for `caseref` (`schemas/envelope.json`; a test of the
/// catalogue keeps the two equal).
pub const CASEREF_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$";

/// Whether `s` matches [`CASEREF_PATTERN`]: at most 64 printable ASCII characters, so it is
/// safe to record, index and print whatever else about its message was refused.
pub fn is_well_formed_caseref(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead() -> Value {
        json!({
            "specversion": "1.0",
            "id": "0192f0c1-7a2b-7c3d-8e4f-001122334455",
            "source": "urn:liaison:agency:eco",
            "type": "pil.lead.v1",
            "time": "2026-11-26T08:00:00+08:00",
            "caseref": "SD-2026-0001",
            "recipients": ["procuratorate"],
            "data": {}
        })
    }

    #[test]
    fn reads_the_attributes_the_broker_acts_on() {
        let env = Envelope::from_value(&lead()).unwrap();
        assert_eq!(env.type_, "pil.lead.v1");
        assert_eq!(env.source_agency().unwrap().as_str(), "eco");
        assert_eq!(env.caseref.as_deref(), Some("SD-2026-0001"));
        assert_eq!(env.recipients.unwrap()[0].as_str(), "procuratorate");
        assert_eq!(env.time.offset().whole_hours(), 8);
    }

    #[test]
    fn names_the_failing_attribute() {
        let mut bad = lead();
        bad["id"] = json!("not-a-uuid");
        let err = Envelope::from_value(&bad).unwrap_err();
        assert_eq!(err.pointer(), "/id");

        let mut bad = lead();
        bad["specversion"] = json!("0.3");
        assert_eq!(
            Envelope::from_value(&bad).unwrap_err().pointer(),
            "/specversion"
        );

        let mut bad = lead();
        bad.as_object_mut().unwrap().remove("time");
        assert_eq!(Envelope::from_value(&bad).unwrap_err().pointer(), "/time");

        assert_eq!(
            Envelope::from_value(&json!([1])).unwrap_err(),
            EnvelopeError::NotAnObject
        );
    }

    #[test]
    fn source_in_another_form_names_no_agency() {
        let mut other = lead();
        other["source"] = json!("https://eco.example/system");
        assert_eq!(Envelope::from_value(&other).unwrap().source_agency(), None);
    }

    #[test]
    fn only_case_references_of_the_schema_pattern_are_well_formed() {
        for good in ["SD-2026-0001", "a", "A1._/-", &"x".repeat(64)] {
            assert!(is_well_formed_caseref(good), "{good:?}");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            "-SD",
            "SD\u{0}1",
            "SD 1",
            "SD\n1",
            "案件",
            long.as_str(),
            "SD\u{7f}",
        ] {
            assert!(!is_well_formed_caseref(bad), "{bad:?}");
        }
    }
}
