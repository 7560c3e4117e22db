//! What a message type means to the people integrating with it, read from the schema's
//! `x-liaison` annotation: who sends it, who receives it, what it answers, and which
//! envelope attributes it cannot do without.
//!
//! The annotation lives in the schema so that the catalogue alone is enough to document
//! every type (`docs/messages.md`, `GET /openapi.json`). JSON Schema ignores unknown
//! keywords, so the annotation never changes what a schema validates; `requires` is
//! enforced by [`crate::Catalogue::validate`] against the envelope.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CatalogueError;

/// The annotation keyword.
pub const ANNOTATION: &str = "x-liaison";

/// `answers` entry meaning "a message of any type" (receipts, reminders).
pub const ANY_TYPE: &str = "*";

/// The `x-liaison` annotation of one message type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeInfo {
    /// Who sends it, "中文 / English".
    pub senders: String,
    /// Who receives it, "中文 / English".
    pub recipients: String,
    /// The types whose messages it answers through `inreplyto`; `"*"` for any type; empty
    /// when it starts a matter of its own.
    pub answers: Vec<String>,
    /// Envelope attributes a message of this type must carry, e.g. `inreplyto`.
    pub requires: Vec<String>,
}

impl TypeInfo {
    /// Reads and checks the annotation of the schema in `path`. `envelope_attributes` are
    /// the envelope's properties (what `requires` may name).
    pub(crate) fn read(
        schema: &Value,
        path: &Path,
        envelope_attributes: &[&str],
    ) -> Result<TypeInfo, CatalogueError> {
        let invalid = |message: String| CatalogueError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let value = schema.get(ANNOTATION).ok_or_else(|| {
            invalid(format!(
                "{ANNOTATION:?} is missing: every type says who sends it, who receives it and what it answers"
            ))
        })?;
        let info: TypeInfo = serde_json::from_value(value.clone())
            .map_err(|error| invalid(format!("{ANNOTATION:?} is malformed: {error}")))?;
        for (member, text) in [("senders", &info.senders), ("recipients", &info.recipients)] {
            if !text.contains(" / ") {
                return Err(invalid(format!(
                    "{ANNOTATION}.{member} must be bilingual, \"中文 / English\""
                )));
            }
        }
        if let Some(unknown) = info
            .requires
            .iter()
            .find(|attribute| !envelope_attributes.contains(&attribute.as_str()))
        {
            return Err(invalid(format!(
                "{ANNOTATION}.requires names {unknown:?}, which is not an envelope attribute"
            )));
        }
        if !info.answers.is_empty() && !info.requires.iter().any(|a| a == "inreplyto") {
            return Err(invalid(format!(
                "{ANNOTATION}: a type that answers another must require \"inreplyto\""
            )));
        }
        Ok(info)
    }

    /// Checks that every type named in `answers` is in the catalogue.
    pub(crate) fn check_answers(
        &self,
        path: &Path,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<(), CatalogueError> {
        match self
            .answers
            .iter()
            .find(|name| name.as_str() != ANY_TYPE && !known(name))
        {
            Some(unknown) => Err(CatalogueError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "{ANNOTATION}.answers names {unknown:?}, which is not in the catalogue"
                ),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ATTRIBUTES: &[&str] = &["inreplyto", "recipients", "caseref"];

    fn read(annotation: Value) -> Result<TypeInfo, CatalogueError> {
        TypeInfo::read(
            &json!({ ANNOTATION: annotation }),
            Path::new("x/schema.json"),
            ATTRIBUTES,
        )
    }

    #[test]
    fn reads_a_complete_annotation() {
        let info = read(json!({
            "senders": "检察院 / The procuratorate",
            "recipients": "移送机关 / The sender",
            "answers": ["pil.lead.v1"],
            "requires": ["inreplyto"]
        }))
        .expect("valid annotation");
        assert_eq!(info.answers, ["pil.lead.v1"]);
        assert_eq!(info.requires, ["inreplyto"]);
    }

    #[test]
    fn refuses_unknown_attributes_members_and_monolingual_text() {
        let base =
            json!({"senders": "a / b", "recipients": "c / d", "answers": [], "requires": []});
        let mut unknown_attribute = base.clone();
        unknown_attribute["requires"] = json!(["priority"]);
        let mut unknown_member = base.clone();
        unknown_member["audience"] = json!("x");
        let mut monolingual = base.clone();
        monolingual["senders"] = json!("procuratorate");
        let mut answers_without_inreplyto = base.clone();
        answers_without_inreplyto["answers"] = json!(["pil.lead.v1"]);
        for (case, annotation) in [
            ("priority", unknown_attribute),
            ("audience", unknown_member),
            ("senders", monolingual),
            ("inreplyto", answers_without_inreplyto),
        ] {
            let error = read(annotation).expect_err(case).to_string();
            assert!(error.contains(case), "{case}: {error}");
            assert!(error.contains("x/schema.json"), "{error}");
        }
        assert!(read(base).is_ok());
        let missing = TypeInfo::read(&json!({}), Path::new("x/schema.json"), ATTRIBUTES);
        assert!(missing.unwrap_err().to_string().contains(ANNOTATION));
    }

    #[test]
    fn answers_must_name_catalogue_types() {
        let info = read(json!({
            "senders": "a / b", "recipients": "c / d",
            "answers": ["*", "pil.lead.v1"], "requires": ["inreplyto"]
        }))
        .unwrap();
        let path = Path::new("x/schema.json");
        assert!(
            info.check_answers(path, &|name| name == "pil.lead.v1")
                .is_ok()
        );
        let error = info.check_answers(path, &|_| false).unwrap_err();
        assert!(error.to_string().contains("pil.lead.v1"), "{error}");
    }
}
