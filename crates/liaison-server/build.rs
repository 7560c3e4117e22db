//! Compiles the message catalogue (`schemas/`, every file) into the server, so that a
//! `liaison` binary needs no data files beside it. A new schema folder needs no code: the
//! whole directory is listed here, and Cargo reruns this script when anything in it
//! changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by Cargo"));
    let schemas = manifest.join("../../schemas");
    println!("cargo::rerun-if-changed={}", schemas.display());
    let mut files = Vec::new();
    collect(&schemas, "", &mut files);
    files.sort();
    let mut code = String::from(
        "/// `schemas/`, every file: (path relative to `schemas/`, contents).\n\
         pub static SCHEMA_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (relative, path) in &files {
        let absolute = path.canonicalize().expect("schema file path");
        writeln!(
            code,
            "    ({relative:?}, include_bytes!({:?})),",
            absolute.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by Cargo"));
    std::fs::write(out.join("embedded_schemas.rs"), code).expect("writing embedded_schemas.rs");
}

/// Files under `dir`, hidden ones excluded, as the catalogue reads them.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            collect(&path, &format!("{relative}/"), files);
        } else {
            files.push((relative, path));
        }
    }
}
