//! `docs/messages.md` is generated from the catalogue; this test fails when it is out of date.
//! Regenerate with `LIAISON_UPDATE_DOCS=1 cargo test -p liaison-schema --test docs`.

use std::path::{Path, PathBuf};

use liaison_schema::{Catalogue, render_messages_md};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn messages_md_is_up_to_date() {
    let catalogue = Catalogue::load(&repo().join("schemas")).expect("schemas/ loads");
    let rendered = render_messages_md(&catalogue);
    let path = repo().join("docs/messages.md");
    if std::env::var_os("LIAISON_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/messages.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != rendered {
        let line = on_disk
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || on_disk.lines().count().min(rendered.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "docs/messages.md is out of date (first difference at line {line}); \
             regenerate it with LIAISON_UPDATE_DOCS=1 cargo test -p liaison-schema --test docs"
        );
    }
}

#[test]
fn every_type_has_its_section_with_senders_and_fields() {
    let catalogue = Catalogue::load(&repo().join("schemas")).expect("schemas/ loads");
    let page = render_messages_md(&catalogue);
    for message_type in catalogue.types() {
        let heading = format!("\n## {}\n", message_type.name);
        let start = page
            .find(&heading)
            .unwrap_or_else(|| panic!("no section for {}", message_type.name));
        let section = &page[start + heading.len()..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        assert!(section.contains("| sent by |"), "{}", message_type.name);
        assert!(section.contains("| received by |"), "{}", message_type.name);
        assert!(section.contains("| answers |"), "{}", message_type.name);
        let first_required = message_type.schema["required"][0].as_str().unwrap();
        assert!(
            section.contains(&format!("| `{first_required}` |")),
            "{}: field {first_required}",
            message_type.name
        );
    }
    let decision = &page[page.find("\n## pil.lead-decision.v1\n").unwrap()..];
    assert!(decision.contains("[`pil.lead.v1`](#pilleadv1)"));
    assert!(decision.contains("`reasons` when `decision` is `decline` or `more_evidence`"));
}
