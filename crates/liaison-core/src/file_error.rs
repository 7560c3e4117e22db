//! The one error for a file that could not be read or written: what was being done, to
//! which path, and the operating system's reason. The ledger's exports and keys and the
//! PKI's certificates and revocation lists all report it the same way.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.into(),
            source,
        }
    }

    /// For `map_err`: the error of doing `action` to `path`.
    pub fn at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::new(action, path, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_names_the_action_the_path_and_the_reason() {
        let error = FileError::at("read", Path::new("/srv/liaison/k1.kek"))(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        assert_eq!(
            error.to_string(),
            "cannot read /srv/liaison/k1.kek: permission denied"
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
