//! The data files built into the binary: the message catalogue (`schemas/`) and the demo
//! county's registry, policy and case lifecycles (`deploy/demo/`). The holiday calendars are built into
//! `liaison-core` (`HolidayCalendar::shipped`). A file named in the configuration replaces
//! the built-in one; `liaison schemas export` and `liaison policy export` write the
//! built-in ones out for an operator to edit.

use liaison_schema::CatalogueSource;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// One data file compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltIn {
    /// Its path in the liaison source tree, which names it in messages.
    pub path: &'static str,
    pub text: &'static str,
}

impl BuiltIn {
    /// How errors and `liaison config show` name it.
    pub fn origin(&self) -> String {
        format!("built-in {}", self.path)
    }
}

/// A file of `deploy/demo/`, compiled in.
macro_rules! demo_file {
    ($name:literal) => {
        BuiltIn {
            path: concat!("deploy/demo/", $name),
            text: include_str!(concat!("../../../deploy/demo/", $name)),
        }
    };
}

// One line per built-in file of the demo county.
/// The demo county's agencies (`registry`).
pub const REGISTRY: BuiltIn = demo_file!("agencies.toml");
/// The demo county's routing and authorization policy (`policy`).
pub const POLICY: BuiltIn = demo_file!("policy.toml");
/// The demo county's case lifecycles (`lifecycle`).
pub const LIFECYCLE: BuiltIn = demo_file!("lifecycle.toml");

/// The catalogue's folder in the liaison source tree.
pub const SCHEMAS_PATH: &str = "schemas";

/// The message catalogue built into the binary (`schemas/`, every file).
pub fn schemas() -> CatalogueSource {
    CatalogueSource::built_in(format!("built-in {SCHEMAS_PATH}"), generated::SCHEMA_FILES)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn repo_root() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    #[test]
    fn the_built_in_catalogue_is_the_schemas_directory() {
        let on_disk = CatalogueSource::read_dir(&repo_root().join(SCHEMAS_PATH)).unwrap();
        let built_in = schemas();
        let names = |source: &CatalogueSource| {
            source
                .files()
                .map(|(path, bytes)| (path.to_owned(), bytes.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&built_in), names(&on_disk));
        liaison_schema::Catalogue::from_source(&built_in).unwrap();
    }

    #[test]
    fn the_built_in_demo_files_load() {
        let registry = liaison_core::Registry::from_toml(REGISTRY.text, &REGISTRY.origin());
        liaison_core::Policy::from_toml(POLICY.text, &POLICY.origin(), &registry.unwrap()).unwrap();
        let lifecycle =
            liaison_core::Lifecycle::from_toml(LIFECYCLE.text, &LIFECYCLE.origin()).unwrap();
        let catalogue = liaison_schema::Catalogue::from_source(&schemas()).unwrap();
        lifecycle
            .check_types(
                &LIFECYCLE.origin(),
                catalogue.types().map(|t| t.name.as_str()),
            )
            .unwrap();
    }
}
