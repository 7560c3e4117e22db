//! docs/cases.md draws every flow of the demo lifecycle file; this fails when it is stale.

use std::path::PathBuf;

use liaison_core::Lifecycle;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn docs_cases_md_draws_the_current_lifecycle() {
    let root = repo_root();
    let lifecycle = Lifecycle::load(&root.join("deploy/demo/lifecycle.toml")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/cases.md")).unwrap();
    let current = lifecycle
        .splice_into(&doc)
        .expect("docs/cases.md keeps the generated-section markers");
    assert!(
        current == doc,
        "docs/cases.md is stale: run `cargo run -p liaison-cli -- cases diagrams --write docs/cases.md`"
    );
    for flow in lifecycle.flows() {
        assert!(
            doc.contains(&format!("### `{}`", flow.name)),
            "{}",
            flow.name
        );
    }
}
