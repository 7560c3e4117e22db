//! The worked examples next to each schema, and checking them against the catalogue.
//!
//! `schemas/<type>/valid/*.json` are complete CloudEvents that must validate;
//! `schemas/<type>/invalid/*.json` and `schemas/envelope/invalid/*.json` are
//! `{"expect": {"pointer", "keyword", "code"?}, "event": {...}}` documents whose event must be
//! refused with that pointer and keyword among its violations. `code` defaults to
//! `envelope_invalid` under `envelope/` and `payload_invalid` under a type folder.

use std::fmt;
use std::path::{Path, PathBuf};

use liaison_core::RejectCode;
use serde::Deserialize;
use serde_json::Value;

use crate::catalogue::Catalogue;
use crate::error::CatalogueError;
use crate::load::ENVELOPE_EXAMPLES_DIR;
use crate::parse::{ParseLimits, parse};
use crate::source::CatalogueSource;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    Valid,
    Invalid {
        code: RejectCode,
        pointer: String,
        keyword: String,
    },
}

/// One example file.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub path: PathBuf,
    /// The message type of the folder, `None` for `envelope/`.
    pub folder_type: Option<String>,
    pub expectation: Expectation,
    pub event: Value,
}

/// An example whose outcome is not the one it declares.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ExampleFailure {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidExampleFile {
    expect: Expect,
    event: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    pointer: String,
    keyword: String,
    code: Option<RejectCode>,
}

/// Reads every example under `dir`, sorted by path.
pub fn load_examples(dir: &Path) -> Result<Vec<Example>, CatalogueError> {
    load_examples_from(&CatalogueSource::read_dir(dir)?)
}

/// [`load_examples`] from files already in memory.
pub fn load_examples_from(source: &CatalogueSource) -> Result<Vec<Example>, CatalogueError> {
    let mut examples = Vec::new();
    for name in source.folders() {
        let folder_type = (name != ENVELOPE_EXAMPLES_DIR).then(|| name.to_owned());
        for relative in source.json_files_in(&format!("{name}/valid")) {
            let event = read_json(source, relative)?;
            examples.push(Example {
                path: source.path_of(relative),
                folder_type: folder_type.clone(),
                expectation: Expectation::Valid,
                event,
            });
        }
        let default_code = if folder_type.is_some() {
            RejectCode::PayloadInvalid
        } else {
            RejectCode::EnvelopeInvalid
        };
        for relative in source.json_files_in(&format!("{name}/invalid")) {
            let path = source.path_of(relative);
            let file: InvalidExampleFile = serde_json::from_value(read_json(source, relative)?)
                .map_err(|error| CatalogueError::Invalid {
                    path: path.clone(),
                    message: format!("not an invalid-example document: {error}"),
                })?;
            examples.push(Example {
                path,
                folder_type: folder_type.clone(),
                expectation: Expectation::Invalid {
                    code: file.expect.code.unwrap_or(default_code),
                    pointer: file.expect.pointer,
                    keyword: file.expect.keyword,
                },
                event: file.event,
            });
        }
    }
    Ok(examples)
}

/// What checking a set of examples found, for `liaison schemas check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExampleSummary {
    /// Examples that must validate.
    pub valid: usize,
    /// Examples that must be refused at a declared pointer.
    pub invalid: usize,
    /// Every example whose outcome is not the one it declares.
    pub failures: Vec<ExampleFailure>,
}

impl Catalogue {
    /// Checks every example and counts them.
    pub fn check_examples(&self, examples: &[Example]) -> ExampleSummary {
        let mut summary = ExampleSummary::default();
        for example in examples {
            match example.expectation {
                Expectation::Valid => summary.valid += 1,
                Expectation::Invalid { .. } => summary.invalid += 1,
            }
            if let Err(failure) = self.check_example(example) {
                summary.failures.push(failure);
            }
        }
        summary
    }

    /// Checks that an example has the outcome it declares.
    pub fn check_example(&self, example: &Example) -> Result<(), ExampleFailure> {
        let fail = |reason: String| ExampleFailure {
            path: example.path.clone(),
            reason,
        };
        if let Some(folder_type) = &example.folder_type {
            let event_type = example.event.get("type").and_then(Value::as_str);
            if event_type != Some(folder_type.as_str()) {
                return Err(fail(format!(
                    "the event's type is {event_type:?} but the example sits under {folder_type}/"
                )));
            }
        }
        let outcome = self.validate(&example.event);
        match (&example.expectation, outcome) {
            (Expectation::Valid, Ok(())) => Ok(()),
            (Expectation::Valid, Err(error)) => Err(fail(format!("should validate, but: {error}"))),
            (Expectation::Invalid { .. }, Ok(())) => {
                Err(fail("should be refused, but validates".into()))
            }
            (
                Expectation::Invalid {
                    code,
                    pointer,
                    keyword,
                },
                Err(error),
            ) => {
                if error.code != *code {
                    return Err(fail(format!(
                        "expected code {code}, got {}: {error}",
                        error.code
                    )));
                }
                let found = error
                    .violations
                    .iter()
                    .any(|v| v.pointer == *pointer && v.keyword == *keyword);
                if found {
                    Ok(())
                } else {
                    Err(fail(format!(
                        "expected {keyword} at {pointer:?} among: {}",
                        Listing(&error.violations)
                    )))
                }
            }
        }
    }
}

struct Listing<'a>(&'a [crate::Violation]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} at {:?}", violation.keyword, violation.pointer)?;
        }
        Ok(())
    }
}

fn read_json(source: &CatalogueSource, relative: &str) -> Result<Value, CatalogueError> {
    let bytes = source.read(relative)?;
    // The wrapper of an invalid example adds one level to the event's own nesting.
    let limits = ParseLimits {
        max_depth: ParseLimits::default().max_depth + 1,
    };
    parse(bytes, &limits).map_err(|error| CatalogueError::Json {
        path: source.path_of(relative),
        source: error,
    })
}
