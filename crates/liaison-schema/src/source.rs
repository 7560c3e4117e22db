//! The files of a catalogue, whether read from a directory or built into a binary.
//!
//! Loading works on this in-memory tree, so the catalogue a deployment names on disk and
//! the one compiled into `liaison` go through the same checks, and an operator can write
//! the built-in one out to edit it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::CatalogueError;

/// Every file of a catalogue, by its `/`-separated path relative to the catalogue root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueSource {
    /// How errors name the catalogue and its files: `root/<relative path>`.
    root: PathBuf,
    /// The folders directly under the root, also empty ones (a type folder that lacks its
    /// schema is an error to report, not something to overlook).
    folders: BTreeSet<String>,
    files: BTreeMap<String, Cow<'static, [u8]>>,
}

impl CatalogueSource {
    /// Reads every file under `dir`, hidden files and folders excluded.
    pub fn read_dir(dir: &Path) -> Result<Self, CatalogueError> {
        let mut files = BTreeMap::new();
        let folders = read_tree(dir, "", &mut files)?;
        Ok(Self {
            root: dir.to_path_buf(),
            folders,
            files,
        })
    }

    /// A catalogue compiled into the program; `root` names it in errors.
    pub fn built_in(
        root: impl Into<PathBuf>,
        files: &'static [(&'static str, &'static [u8])],
    ) -> Self {
        Self {
            root: root.into(),
            folders: files
                .iter()
                .filter_map(|(path, _)| path.split_once('/').map(|(folder, _)| folder.to_owned()))
                .collect(),
            files: files
                .iter()
                .map(|(path, bytes)| ((*path).to_owned(), Cow::Borrowed(*bytes)))
                .collect(),
        }
    }

    /// Where the files came from, as errors name it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every file, by relative path, sorted.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_ref()))
    }

    /// Writes every file under `dir` (created as needed); returns how many.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<usize> {
        for (relative, bytes) in self.files() {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(self.files.len())
    }

    /// How errors name the file at `relative`.
    pub(crate) fn path_of(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The file at `relative`; a missing one is a read error naming it.
    pub(crate) fn read(&self, relative: &str) -> Result<&[u8], CatalogueError> {
        self.files
            .get(relative)
            .map(|bytes| bytes.as_ref())
            .ok_or_else(|| CatalogueError::Read {
                path: self.path_of(relative),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            })
    }

    /// Names of the folders directly under the root, sorted.
    pub(crate) fn folders(&self) -> Vec<&str> {
        self.folders.iter().map(String::as_str).collect()
    }

    /// Relative paths of the `*.json` files directly in `folder`, sorted.
    pub(crate) fn json_files_in(&self, folder: &str) -> Vec<&str> {
        let prefix = format!("{folder}/");
        self.files
            .keys()
            .filter_map(|path| {
                let name = path.strip_prefix(&prefix)?;
                (!name.contains('/') && name.ends_with(".json")).then_some(path.as_str())
            })
            .collect()
    }
}

/// Reads the files under `dir` into `files`; returns the names of its folders.
fn read_tree(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, Cow<'static, [u8]>>,
) -> Result<BTreeSet<String>, CatalogueError> {
    let mut folders = BTreeSet::new();
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CatalogueError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let entry = entry.map_err(read_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        // Follows symbolic links, as reading the files one by one did.
        if path.is_dir() {
            read_tree(&path, &format!("{relative}/"), files)?;
            folders.insert(name);
        } else {
            let bytes = std::fs::read(&path).map_err(read_error(&path))?;
            files.insert(relative, Cow::Owned(bytes));
        }
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[(&str, &[u8])] = &[
        ("envelope.json", b"{}"),
        ("a.v1/schema.json", b"{}"),
        ("a.v1/valid/x.json", b"{}"),
        ("a.v1/valid/notes.txt", b""),
        ("b.v1/schema.json", b"{}"),
    ];

    #[test]
    fn folders_and_example_files_are_listed_from_the_tree() {
        let source = CatalogueSource::built_in("built-in", FILES);
        assert_eq!(source.folders(), ["a.v1", "b.v1"]);
        assert_eq!(source.json_files_in("a.v1/valid"), ["a.v1/valid/x.json"]);
        assert!(source.json_files_in("b.v1/valid").is_empty());
        let err = source.read("c.v1/schema.json").unwrap_err().to_string();
        assert!(err.contains("built-in/c.v1/schema.json"), "{err}");
    }

    #[test]
    fn a_written_tree_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let source = CatalogueSource::built_in(dir.path(), FILES);
        assert_eq!(source.write_to(dir.path()).unwrap(), FILES.len());
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        assert_eq!(CatalogueSource::read_dir(dir.path()).unwrap(), source);
    }
}
