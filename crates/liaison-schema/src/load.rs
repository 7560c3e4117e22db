//! Reading `schemas/` and compiling every schema once.
//!
//! Every schema goes into one offline `Registry` keyed by its `$id`, so schemas may `$ref`
//! each other and a reference to anything outside the catalogue fails at load time instead
//! of triggering a fetch while a request waits.

use std::path::{Path, PathBuf};

use jsonschema::{Registry, Validator};
use serde_json::Value;

use crate::error::CatalogueError;
use crate::parse::{ParseLimits, parse};
use crate::source::CatalogueSource;

/// The only dialect the catalogue accepts.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The file holding the envelope schema, relative to the catalogue directory.
pub const ENVELOPE_FILE: &str = "envelope.json";

/// The folder of one message type holds its payload schema in this file.
pub const TYPE_SCHEMA_FILE: &str = "schema.json";

/// A folder that holds envelope-level examples only, not a message type.
pub const ENVELOPE_EXAMPLES_DIR: &str = "envelope";

/// A schema file read from disk, checked for the members the catalogue relies on.
pub(crate) struct SchemaFile {
    pub path: PathBuf,
    pub id: String,
    pub title: String,
    pub description: String,
    pub schema: Value,
}

/// A message type folder: its name is the type name.
pub(crate) struct TypeFile {
    pub name: String,
    pub file: SchemaFile,
}

pub(crate) fn read_envelope(source: &CatalogueSource) -> Result<SchemaFile, CatalogueError> {
    read_schema_file(source, ENVELOPE_FILE, "envelope")
}

/// Every message type folder of the catalogue, sorted by name.
pub(crate) fn read_types(source: &CatalogueSource) -> Result<Vec<TypeFile>, CatalogueError> {
    let mut types = Vec::new();
    for name in source.folders() {
        if name == ENVELOPE_EXAMPLES_DIR {
            continue;
        }
        if !is_type_name(name) {
            return Err(invalid(
                &source.path_of(name),
                "folder name is not a message type name such as pil.lead.v1",
            ));
        }
        let file = read_schema_file(source, &format!("{name}/{TYPE_SCHEMA_FILE}"), name)?;
        types.push(TypeFile {
            name: name.to_owned(),
            file,
        });
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(types)
}

/// Refuses a `$ref` to a schema outside the catalogue, naming the file that holds it (the
/// registry would report only the missing URI).
pub(crate) fn check_references(files: &[&SchemaFile]) -> Result<(), CatalogueError> {
    let known: Vec<&str> = files.iter().map(|file| file.id.as_str()).collect();
    for file in files {
        let mut references = Vec::new();
        collect_references(&file.schema, &mut references);
        for reference in references {
            let target = resolve_reference(&file.id, reference);
            if !target.is_empty() && !known.contains(&target.as_str()) {
                return Err(invalid(
                    &file.path,
                    &format!("\"$ref\": {reference:?} names no schema of the catalogue"),
                ));
            }
        }
    }
    Ok(())
}

fn collect_references<'a>(schema: &'a Value, references: &mut Vec<&'a str>) {
    match schema {
        Value::Object(members) => {
            for (name, value) in members {
                match (name.as_str(), value) {
                    ("$ref", Value::String(reference)) => references.push(reference),
                    _ => collect_references(value, references),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_references(item, references)),
        _ => {}
    }
}

/// The document a reference points into, without its fragment; empty for a reference into
/// the same document. Relative references resolve against the folder of `base`.
fn resolve_reference(base: &str, reference: &str) -> String {
    let document = reference.split('#').next().unwrap_or_default();
    let is_absolute = document
        .split_once(':')
        .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains('/'));
    if document.is_empty() || is_absolute {
        return document.to_owned();
    }
    let folder = base.rfind('/').map_or(base, |slash| &base[..=slash]);
    format!("{folder}{}", document.trim_start_matches("./"))
}

/// Puts every schema into one registry. `$id`s cannot collide: each ends in its own
/// file's name, which `read_schema_file` enforces.
pub(crate) fn build_registry<'a>(
    dir: &Path,
    files: impl Iterator<Item = &'a SchemaFile>,
) -> Result<Registry<'a>, CatalogueError> {
    let mut builder = Registry::new();
    for file in files {
        builder = builder
            .add(&file.id, &file.schema)
            .map_err(|error| invalid(&file.path, &format!("$id is not a usable URI: {error}")))?;
    }
    builder.prepare().map_err(|error| CatalogueError::Registry {
        dir: dir.to_path_buf(),
        message: error.to_string(),
    })
}

pub(crate) fn compile(
    file: &SchemaFile,
    registry: &Registry<'_>,
) -> Result<Validator, CatalogueError> {
    let mut options = jsonschema::draft202012::options();
    for (name, check) in crate::formats::custom_formats() {
        options = options.with_format(name, check);
    }
    options
        .with_registry(registry)
        .offline()
        .should_validate_formats(true)
        // A misspelt format would otherwise be ignored and check nothing.
        .should_ignore_unknown_formats(false)
        .build(&file.schema)
        .map_err(|error| CatalogueError::Compile {
            path: file.path.clone(),
            message: describe_compile_error(&error),
        })
}

fn describe_compile_error(error: &jsonschema::ValidationError<'_>) -> String {
    let at = error.instance_path().as_str();
    if at.is_empty() {
        error.to_string()
    } else {
        format!("at {at}: {error}")
    }
}

fn read_schema_file(
    source: &CatalogueSource,
    relative: &str,
    type_name: &str,
) -> Result<SchemaFile, CatalogueError> {
    let bytes = source.read(relative)?;
    let path = &source.path_of(relative);
    // Schemas nest deeper than messages do; 128 is serde_json's own ceiling.
    let schema =
        parse(bytes, &ParseLimits { max_depth: 128 }).map_err(|source| CatalogueError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    if schema.get("$schema").and_then(Value::as_str) != Some(DRAFT_2020_12) {
        return Err(invalid(
            path,
            &format!("\"$schema\" must be \"{DRAFT_2020_12}\""),
        ));
    }
    let id = required_string(&schema, "$id", path)?;
    let expected_suffix = format!("/{type_name}.json");
    if !id.ends_with(&expected_suffix) {
        return Err(invalid(
            path,
            &format!("\"$id\" must end in {expected_suffix:?}, found {id:?}"),
        ));
    }
    let title = required_string(&schema, "title", path)?;
    let description = required_string(&schema, "description", path)?;
    Ok(SchemaFile {
        path: path.to_path_buf(),
        id,
        title,
        description,
        schema,
    })
}

fn required_string(schema: &Value, member: &str, path: &Path) -> Result<String, CatalogueError> {
    match schema.get(member).and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(invalid(
            path,
            &format!("{member:?} must be a non-empty string"),
        )),
    }
}

/// The same rule as the envelope's `type` pattern: dotted lower-case words ending in a
/// version, e.g. `pil.lead.v1`.
pub(crate) fn is_type_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split('.').collect();
    let Some((version, words)) = segments.split_last() else {
        return false;
    };
    let is_word = |word: &&str| {
        let mut bytes = word.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let is_version = version
        .strip_prefix('v')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    !words.is_empty() && words.iter().all(is_word) && is_version
}

fn invalid(path: &Path, message: &str) -> CatalogueError {
    CatalogueError::Invalid {
        path: path.to_path_buf(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_type_name, resolve_reference};

    #[test]
    fn references_resolve_against_the_folder_of_the_id() {
        let base = "https://liaison.example/schemas/receipt.v1.json";
        assert_eq!(resolve_reference(base, "#/$defs/x"), "");
        assert_eq!(
            resolve_reference(base, "envelope.json#/properties/id"),
            "https://liaison.example/schemas/envelope.json"
        );
        assert_eq!(
            resolve_reference(base, "./pil.lead.v1.json"),
            "https://liaison.example/schemas/pil.lead.v1.json"
        );
        assert_eq!(resolve_reference(base, "urn:example:x#a"), "urn:example:x");
    }

    #[test]
    fn type_names_follow_the_envelope_pattern() {
        for good in [
            "pil.lead.v1",
            "receipt.v1",
            "case-transfer.filing-decision.v12",
        ] {
            assert!(is_type_name(good), "{good}");
        }
        for bad in [
            "v1",
            "lead",
            "pil.lead",
            "Pil.lead.v1",
            "pil..v1",
            "pil.lead.v",
            "1pil.v1",
            "pil.lead.V1",
        ] {
            assert!(!is_type_name(bad), "{bad}");
        }
    }
}
