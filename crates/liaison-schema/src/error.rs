//! What can be wrong with a catalogue: a file that cannot be read, is not JSON, lacks what
//! the catalogue relies on, or does not compile; schemas that do not resolve together.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: crate::ParseError,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{} does not compile as a JSON Schema 2020-12: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("the schemas in {} do not form a consistent registry: {message}", dir.display())]
    Registry { dir: PathBuf, message: String },
}
