//! The case reference check the pipeline applies to refused submissions is the envelope
//! schema's own: a refused submission's `caseref` is recorded only if it would have passed.

use std::path::Path;

use liaison_core::envelope::{CASEREF_PATTERN, is_well_formed_caseref};

#[test]
fn the_core_caseref_check_is_the_envelope_schemas_pattern() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/envelope.json");
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(
        schema["properties"]["caseref"]["pattern"].as_str(),
        Some(CASEREF_PATTERN)
    );
    assert!(is_well_formed_caseref("SD-2026-0001"));
}
