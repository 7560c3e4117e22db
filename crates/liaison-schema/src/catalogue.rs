//! The message catalogue: the envelope schema and one payload schema per message type,
//! each compiled once at load and shared by every request.

use std::collections::BTreeMap;
use std::path::Path;

use jsonschema::Validator;
use liaison_core::RejectCode;
use serde_json::Value;

use crate::error::CatalogueError;
use crate::info::TypeInfo;
use crate::load::{self, SchemaFile};
use crate::source::CatalogueSource;
use crate::violation::{ValidationError, Violation, sorted, violations_of};

/// One message type of the catalogue, as agencies see it in `GET /v1/schemas`.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageType {
    /// The CloudEvents `type`, e.g. `pil.lead.v1`.
    pub name: String,
    /// Bilingual title, "中文 / English".
    pub title: String,
    /// Bilingual description, "中文 / English".
    pub description: String,
    /// The payload (`data`) schema as written in `schemas/<name>/schema.json`.
    pub schema: Value,
    /// Who sends it, who receives it, what it answers (its `x-liaison` annotation).
    pub info: TypeInfo,
}

impl MessageType {
    /// The schema's `$id`, which a sender may quote in `dataschema`.
    pub fn schema_id(&self) -> Option<&str> {
        self.schema.get("$id").and_then(Value::as_str)
    }
}

struct CompiledType {
    message_type: MessageType,
    validator: Validator,
}

/// The compiled catalogue. Build it once with [`Catalogue::load`] and share it in an `Arc`.
pub struct Catalogue {
    envelope_schema: Value,
    envelope: Validator,
    types: BTreeMap<String, CompiledType>,
}

// The server shares one catalogue across its tasks; keep that possible.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Catalogue>();
};

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    /// Loads `dir/envelope.json` and every `dir/<type>/schema.json`, and compiles them.
    ///
    /// Fails on the first file that cannot be read, is not JSON, lacks `$schema` 2020-12,
    /// `$id`, `title` or `description`, or does not compile; the error names that file.
    pub fn load(dir: &Path) -> Result<Catalogue, CatalogueError> {
        Self::from_source(&CatalogueSource::read_dir(dir)?)
    }

    /// [`Catalogue::load`] from files already in memory, such as a catalogue built into
    /// the program.
    pub fn from_source(source: &CatalogueSource) -> Result<Catalogue, CatalogueError> {
        let envelope = load::read_envelope(source)?;
        let types = load::read_types(source)?;
        let files: Vec<&SchemaFile> = std::iter::once(&envelope)
            .chain(types.iter().map(|t| &t.file))
            .collect();
        load::check_references(&files)?;
        let registry = load::build_registry(source.root(), files.iter().copied())?;
        let envelope_validator = load::compile(&envelope, &registry)?;
        let attributes: Vec<&str> = envelope
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| properties.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let is_type = |name: &str| types.iter().any(|t| t.name == name);
        let mut compiled = BTreeMap::new();
        for type_file in &types {
            let info = TypeInfo::read(&type_file.file.schema, &type_file.file.path, &attributes)?;
            info.check_answers(&type_file.file.path, &is_type)?;
            let validator = load::compile(&type_file.file, &registry)?;
            let message_type = message_type(&type_file.name, &type_file.file, info);
            compiled.insert(
                type_file.name.clone(),
                CompiledType {
                    message_type,
                    validator,
                },
            );
        }
        Ok(Catalogue {
            envelope_schema: envelope.schema.clone(),
            envelope: envelope_validator,
            types: compiled,
        })
    }

    /// Validates a parsed CloudEvent: the envelope schema first (pointers like `/source`),
    /// then the payload schema of its `type` applied to `data` (pointers like
    /// `/data/domain`).
    ///
    /// Every fault is reported. When the envelope is invalid but `type` names a known type
    /// and `data` is an object, the payload faults are reported too, under the code
    /// [`RejectCode::EnvelopeInvalid`], so a sender fixes everything in one round.
    pub fn validate(&self, event: &Value) -> Result<(), ValidationError> {
        let mut envelope_violations = violations_of(self.envelope.iter_errors(event), "");
        let type_name = event.get("type").and_then(Value::as_str);
        let known_type = type_name.and_then(|name| self.types.get(name));
        let mut payload_violations = match (known_type, event.get("data")) {
            (Some(compiled), Some(data @ Value::Object(_))) => {
                violations_of(compiled.validator.iter_errors(data), "/data")
            }
            _ => Vec::new(),
        };
        if let (Some(compiled), Value::Object(members)) = (known_type, event) {
            envelope_violations.extend(missing_attributes(&compiled.message_type, members));
        }
        let unknown_type = match (type_name, known_type) {
            (Some(name), None) => Some(unknown_type_violation(name)),
            _ => None,
        };

        if !envelope_violations.is_empty() {
            let type_already_faulted = envelope_violations.iter().any(|v| v.pointer == "/type");
            if !type_already_faulted {
                envelope_violations.extend(unknown_type);
            }
            envelope_violations.append(&mut payload_violations);
            return Err(ValidationError {
                code: RejectCode::EnvelopeInvalid,
                violations: sorted(envelope_violations),
            });
        }
        if let Some(violation) = unknown_type {
            return Err(ValidationError {
                code: RejectCode::UnknownType,
                violations: vec![violation],
            });
        }
        if !payload_violations.is_empty() {
            return Err(ValidationError {
                code: RejectCode::PayloadInvalid,
                violations: sorted(payload_violations),
            });
        }
        Ok(())
    }

    /// Every message type, sorted by name.
    pub fn types(&self) -> impl Iterator<Item = &MessageType> {
        self.types.values().map(|compiled| &compiled.message_type)
    }

    pub fn get(&self, type_name: &str) -> Option<&MessageType> {
        self.types
            .get(type_name)
            .map(|compiled| &compiled.message_type)
    }

    /// Whether a message of `type_name` may answer (`inreplyto`) a message of
    /// `original_type`, as its `x-liaison.answers` says; the refusal explains why not.
    pub fn check_answer(&self, type_name: &str, original_type: &str) -> Result<(), String> {
        let Some(answers) = self.get(type_name).map(|t| &t.info.answers) else {
            return Err(format!("{type_name} is not a type of the catalogue"));
        };
        if answers
            .iter()
            .any(|a| a == crate::info::ANY_TYPE || a == original_type)
        {
            return Ok(());
        }
        if answers.is_empty() {
            return Err(format!(
                "{type_name} opens a matter of its own and answers no message: remove inreplyto"
            ));
        }
        Err(format!(
            "{type_name} answers {}, but inreplyto names a {original_type}",
            answers.join(" or ")
        ))
    }

    /// The envelope schema as written in `schemas/envelope.json`.
    pub fn envelope_schema(&self) -> &Value {
        &self.envelope_schema
    }
}

fn message_type(name: &str, file: &SchemaFile, info: TypeInfo) -> MessageType {
    MessageType {
        name: name.to_owned(),
        title: file.title.clone(),
        description: file.description.clone(),
        schema: file.schema.clone(),
        info,
    }
}

/// The envelope attributes the type requires (`x-liaison.requires`) that the event lacks.
/// They are envelope faults: the envelope schema is shared by every type and cannot say
/// that a decision needs `inreplyto` while a lead does not.
fn missing_attributes(
    message_type: &MessageType,
    members: &serde_json::Map<String, Value>,
) -> Vec<Violation> {
    message_type
        .info
        .requires
        .iter()
        .filter(|attribute| !members.contains_key(attribute.as_str()))
        .map(|attribute| Violation {
            pointer: format!("/{attribute}"),
            keyword: "required".to_owned(),
            message: format!(
                "required member {attribute:?} is missing: every {} message carries it",
                message_type.name
            ),
        })
        .collect()
}

fn unknown_type_violation(name: &str) -> Violation {
    Violation {
        pointer: "/type".to_owned(),
        keyword: "enum".to_owned(),
        // Quoting the name is safe: the envelope pattern has already bounded it, or the
        // envelope is being refused anyway.
        message: format!("no message type {name:?} in the catalogue (see GET /v1/schemas)"),
    }
}
