//! The catalogue against the repository's own `schemas/` folder, and against broken copies.

use std::path::{Path, PathBuf};

use liaison_core::RejectCode;
use liaison_schema::{Catalogue, CatalogueError, Expectation, Violation, load_examples};
use serde_json::{Value, json};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn catalogue() -> Catalogue {
    Catalogue::load(&schemas_dir()).unwrap_or_else(|error| panic!("schemas/ must load: {error}"))
}

fn valid_lead() -> Value {
    let path = schemas_dir().join("pil.lead.v1/valid/river-pollution-full.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn valid_receipt() -> Value {
    let path = schemas_dir().join("receipt.v1/valid/procuratorate-receipt.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn pointers_and_keywords(violations: &[Violation]) -> Vec<(&str, &str)> {
    violations
        .iter()
        .map(|v| (v.pointer.as_str(), v.keyword.as_str()))
        .collect()
}

#[test]
fn every_example_has_the_outcome_it_declares() {
    let catalogue = catalogue();
    let examples = load_examples(&schemas_dir()).expect("examples load");
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|example| catalogue.check_example(example).err())
        .map(|failure| failure.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "failing examples:\n{}",
        failures.join("\n")
    );

    let count = |folder: Option<&str>, valid: bool| {
        examples
            .iter()
            .filter(|e| e.folder_type.as_deref() == folder)
            .filter(|e| (e.expectation == Expectation::Valid) == valid)
            .count()
    };
    assert!(count(Some("pil.lead.v1"), true) >= 2);
    assert!(count(Some("pil.lead.v1"), false) >= 4);
    assert!(count(Some("receipt.v1"), true) >= 1);
    assert!(count(Some("receipt.v1"), false) >= 2);
    assert!(count(None, false) >= 3);
}

#[test]
fn the_summary_counts_valid_and_invalid_examples_and_failures() {
    let catalogue = catalogue();
    let mut examples = load_examples(&schemas_dir()).unwrap();
    let summary = catalogue.check_examples(&examples);
    assert_eq!(summary.valid + summary.invalid, examples.len());
    assert!(summary.valid >= catalogue.types().count(), "{summary:?}");
    assert!(
        summary.invalid >= 2 * catalogue.types().count(),
        "{summary:?}"
    );
    assert!(summary.failures.is_empty(), "{summary:?}");
    // A valid example that stops validating, and an invalid one labelled with another
    // pointer, are both failures.
    let valid = examples
        .iter()
        .position(|e| e.expectation == Expectation::Valid)
        .unwrap();
    examples[valid].event["data"] = json!({});
    let invalid = examples
        .iter()
        .position(|e| e.expectation != Expectation::Valid)
        .unwrap();
    if let Expectation::Invalid { pointer, .. } = &mut examples[invalid].expectation {
        *pointer = "/data/elsewhere".into();
    }
    let summary = catalogue.check_examples(&examples);
    assert_eq!(summary.failures.len(), 2, "{summary:?}");
}

#[test]
fn a_mislabelled_example_is_caught() {
    let catalogue = catalogue();
    let mut examples = load_examples(&schemas_dir()).unwrap();
    let example = examples
        .iter_mut()
        .find(|e| {
            e.folder_type.as_deref() == Some("pil.lead.v1") && e.expectation != Expectation::Valid
        })
        .unwrap();
    example.expectation = Expectation::Invalid {
        code: RejectCode::PayloadInvalid,
        pointer: "/data/nowhere".into(),
        keyword: "enum".into(),
    };
    let failure = catalogue.check_example(example).unwrap_err();
    assert!(failure.reason.contains("/data/nowhere"), "{failure}");
}

#[test]
fn lists_types_sorted_with_their_schemas() {
    let catalogue = catalogue();
    let names: Vec<&str> = catalogue.types().map(|t| t.name.as_str()).collect();
    // The agreed catalogue: the types of every flow of the domain brief, plus the reminder.
    assert_eq!(
        names,
        [
            "case.filing-decision.v1",
            "case.notification.v1",
            "case.reconsideration-decision.v1",
            "case.reconsideration-request.v1",
            "case.transfer.v1",
            "deadline.reminder.v1",
            "file.access-request.v1",
            "file.access-response.v1",
            "filing.notice.v1",
            "filing.reasons-demand.v1",
            "filing.reasons-statement.v1",
            "filing.supervision-request.v1",
            "hotline.feedback.v1",
            "hotline.record.v1",
            "meeting.notice.v1",
            "pil.lead-decision.v1",
            "pil.lead-outcome.v1",
            "pil.lead-supplement.v1",
            "pil.lead.v1",
            "procuratorial.objection-decision.v1",
            "procuratorial.objection.v1",
            "procuratorial.opinion-reply.v1",
            "procuratorial.opinion.v1",
            "procuratorial.recommendation-reply.v1",
            "procuratorial.recommendation.v1",
            "receipt.v1",
            "supervision.notice.v1",
            "transfer.supervision-reply.v1",
            "transfer.supervision.v1",
        ]
    );
    let lead = catalogue.get("pil.lead.v1").expect("lead type");
    assert!(lead.title.contains("公益诉讼线索移送 / "), "{}", lead.title);
    assert_eq!(
        lead.schema_id(),
        Some("https://liaison.example/schemas/pil.lead.v1.json")
    );
    assert_eq!(lead.schema["required"][0], "domain");
    assert!(catalogue.get("pil.lead.v2").is_none());
    assert_eq!(
        catalogue.envelope_schema()["$id"],
        "https://liaison.example/schemas/envelope.json"
    );
}

#[test]
fn unknown_type_is_its_own_code_with_one_violation_at_type() {
    let mut event = valid_lead();
    event["type"] = json!("pil.tipoff.v1");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.code, RejectCode::UnknownType);
    assert_eq!(
        pointers_and_keywords(&error.violations),
        [("/type", "enum")]
    );
    assert!(error.violations[0].message.contains("pil.tipoff.v1"));
}

#[test]
fn three_payload_faults_give_three_sorted_violations() {
    let mut event = valid_lead();
    event["data"]["domain"] = json!("river_pollution");
    event["data"]["evidence"][1]["sha256"] = json!("not-a-digest");
    event["data"].as_object_mut().unwrap().remove("summary");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.code, RejectCode::PayloadInvalid);
    assert_eq!(
        pointers_and_keywords(&error.violations),
        [
            ("/data/domain", "enum"),
            ("/data/evidence/1/sha256", "pattern"),
            ("/data/summary", "required"),
        ]
    );
}

#[test]
fn envelope_faults_come_with_the_payload_faults() {
    let mut event = valid_receipt();
    event["source"] = json!("procuratorate");
    event["inreplyto"] = json!("not-a-uuid");
    event["data"]["received_at"] = json!("yesterday");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.code, RejectCode::EnvelopeInvalid);
    assert_eq!(
        pointers_and_keywords(&error.violations),
        [
            ("/data/received_at", "format"),
            ("/inreplyto", "format"),
            ("/source", "pattern"),
        ]
    );
}

#[test]
fn every_extra_member_is_its_own_violation() {
    let mut event = valid_receipt();
    event["priority"] = json!("high");
    event["channel"] = json!("fax");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.code, RejectCode::EnvelopeInvalid);
    assert_eq!(
        pointers_and_keywords(&error.violations),
        [
            ("/channel", "additionalProperties"),
            ("/priority", "additionalProperties")
        ]
    );
}

#[test]
fn a_non_object_event_is_an_envelope_fault_at_the_root() {
    let error = catalogue()
        .validate(&json!(["not", "an", "event"]))
        .unwrap_err();
    assert_eq!(error.code, RejectCode::EnvelopeInvalid);
    assert_eq!(pointers_and_keywords(&error.violations), [("", "type")]);
}

#[test]
fn messages_never_quote_the_value_sent() {
    let mut event = valid_lead();
    event["data"]["suspected_party"]["id_number"] = json!("62072519800101123");
    event["data"]["suspected_party"]["phone"] = json!("call 0936");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.violations.len(), 2, "{error}");
    for violation in &error.violations {
        assert!(
            !violation.message.contains("62072519800101123"),
            "{violation:?}"
        );
        assert!(!violation.message.contains("call 0936"), "{violation:?}");
    }
}

#[test]
fn every_field_is_documented_in_both_languages() {
    let catalogue = catalogue();
    let mut missing = Vec::new();
    check_documented("envelope", catalogue.envelope_schema(), &mut missing);
    for message_type in catalogue.types() {
        check_documented(&message_type.name, &message_type.schema, &mut missing);
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

fn check_documented(at: &str, schema: &Value, missing: &mut Vec<String>) {
    for member in ["title", "description"] {
        let bilingual = schema[member]
            .as_str()
            .is_some_and(|text| text.contains(" / "));
        if !bilingual {
            missing.push(format!("{at}: {member}"));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            check_documented(&format!("{at}/{name}"), property, missing);
        }
    }
    if schema["items"].is_object() {
        check_documented(&format!("{at}/items"), &schema["items"], missing);
    }
}

#[test]
fn every_object_is_closed() {
    let catalogue = catalogue();
    let mut open = Vec::new();
    let mut envelope = catalogue.envelope_schema().clone();
    // `data` is closed by the payload schema of its type.
    envelope["properties"]["data"]["additionalProperties"] = json!(false);
    check_closed("envelope", &envelope, &mut open);
    for message_type in catalogue.types() {
        check_closed(&message_type.name, &message_type.schema, &mut open);
    }
    assert!(
        open.is_empty(),
        "objects without additionalProperties: false: {open:#?}"
    );
}

fn check_closed(at: &str, schema: &Value, open: &mut Vec<String>) {
    if schema["type"] == "object" && schema["additionalProperties"] != json!(false) {
        open.push(at.to_owned());
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            check_closed(&format!("{at}/{name}"), property, open);
        }
    }
    if schema["items"].is_object() {
        check_closed(&format!("{at}/items"), &schema["items"], open);
    }
}

#[test]
fn personal_data_fields_are_marked() {
    let catalogue = catalogue();
    let lead = &catalogue.get("pil.lead.v1").unwrap().schema;
    let party = &lead["properties"]["suspected_party"]["properties"];
    for field in ["name", "id_number", "phone"] {
        assert_eq!(
            party[field]["x-pii"],
            json!(true),
            "suspected_party.{field}"
        );
    }
    let receipt = &catalogue.get("receipt.v1").unwrap().schema;
    assert_eq!(
        receipt["properties"]["handler"]["properties"]["name"]["x-pii"],
        json!(true)
    );
}

/// Names, phone numbers and identification numbers are personal data wherever they appear.
#[test]
fn every_name_phone_and_id_number_is_marked_personal_data() {
    fn walk(at: &str, schema: &Value, unmarked: &mut Vec<String>, seen: &mut usize) {
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let here = format!("{at}/{name}");
                if ["name", "phone", "id_number"].contains(&name.as_str()) {
                    *seen += 1;
                    if property["x-pii"] != json!(true) {
                        unmarked.push(here.clone());
                    }
                }
                walk(&here, property, unmarked, seen);
            }
        }
        if schema["items"].is_object() {
            walk(&format!("{at}[]"), &schema["items"], unmarked, seen);
        }
    }
    let catalogue = catalogue();
    let (mut unmarked, mut seen) = (Vec::new(), 0);
    for message_type in catalogue.types() {
        walk(
            &message_type.name,
            &message_type.schema,
            &mut unmarked,
            &mut seen,
        );
    }
    assert!(unmarked.is_empty(), "not marked x-pii: {unmarked:#?}");
    assert!(seen > 30, "{seen}");
}

/// A copy of `schemas/` (schemas only) in a temporary folder, to break on purpose.
fn scratch_catalogue() -> tempfile::TempDir {
    let scratch = tempfile::tempdir().expect("temporary folder");
    std::fs::copy(
        schemas_dir().join("envelope.json"),
        scratch.path().join("envelope.json"),
    )
    .unwrap();
    for name in ["pil.lead.v1", "receipt.v1"] {
        std::fs::create_dir(scratch.path().join(name)).unwrap();
        std::fs::copy(
            schemas_dir().join(name).join("schema.json"),
            scratch.path().join(name).join("schema.json"),
        )
        .unwrap();
    }
    scratch
}

fn load_error(dir: &Path) -> CatalogueError {
    match Catalogue::load(dir) {
        Ok(catalogue) => panic!("expected a load error, got {catalogue:?}"),
        Err(error) => error,
    }
}

fn write_receipt_schema(dir: &Path, schema: &Value) -> PathBuf {
    let path = dir.join("receipt.v1/schema.json");
    std::fs::write(&path, serde_json::to_vec_pretty(schema).unwrap()).unwrap();
    path
}

fn receipt_schema() -> Value {
    serde_json::from_slice(&std::fs::read(schemas_dir().join("receipt.v1/schema.json")).unwrap())
        .unwrap()
}

#[test]
fn the_scratch_copy_loads() {
    let scratch = scratch_catalogue();
    assert_eq!(Catalogue::load(scratch.path()).unwrap().types().count(), 2);
}

#[test]
fn a_schema_that_is_not_json_is_named() {
    let scratch = scratch_catalogue();
    let path = scratch.path().join("receipt.v1/schema.json");
    std::fs::write(&path, "{\"$schema\": ").unwrap();
    let error = load_error(scratch.path());
    assert!(matches!(error, CatalogueError::Json { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_schema_that_does_not_compile_is_named() {
    let scratch = scratch_catalogue();
    let mut schema = receipt_schema();
    schema["properties"]["note"]["type"] = json!("strnig");
    let path = write_receipt_schema(scratch.path(), &schema);
    let error = load_error(scratch.path());
    assert!(matches!(error, CatalogueError::Compile { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_misspelt_format_is_refused() {
    let scratch = scratch_catalogue();
    let mut schema = receipt_schema();
    schema["properties"]["received_at"]["format"] = json!("datetime");
    let path = write_receipt_schema(scratch.path(), &schema);
    let error = load_error(scratch.path());
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_reference_outside_the_catalogue_is_refused_without_fetching() {
    let scratch = scratch_catalogue();
    let mut schema = receipt_schema();
    schema["properties"]["note"] = json!({"$ref": "absent.json#/properties/x"});
    let path = write_receipt_schema(scratch.path(), &schema);
    let error = load_error(scratch.path());
    assert!(error.to_string().contains("absent.json"), "{error}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_reference_to_another_catalogue_schema_resolves() {
    let scratch = scratch_catalogue();
    let mut schema = receipt_schema();
    schema["properties"]["note"] = json!({
        "title": "备注 / Note",
        "description": "引用信封的主题定义 / Reuses the envelope's subject rule",
        "$ref": "https://liaison.example/schemas/envelope.json#/properties/subject"
    });
    write_receipt_schema(scratch.path(), &schema);
    let catalogue = Catalogue::load(scratch.path()).expect("cross-schema $ref resolves");
    let mut event = valid_receipt();
    event["data"]["note"] = json!("长".repeat(257));
    let error = catalogue.validate(&event).unwrap_err();
    assert_eq!(
        pointers_and_keywords(&error.violations),
        [("/data/note", "maxLength")]
    );
}

#[test]
fn missing_id_title_or_dialect_is_named() {
    for (member, value) in [
        ("$id", Value::Null),
        ("title", json!("")),
        ("$schema", json!("http://json-schema.org/draft-07/schema#")),
    ] {
        let scratch = scratch_catalogue();
        let mut schema = receipt_schema();
        schema[member] = value;
        let path = write_receipt_schema(scratch.path(), &schema);
        let error = load_error(scratch.path());
        assert!(
            matches!(error, CatalogueError::Invalid { .. }),
            "{member}: {error:?}"
        );
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}

#[test]
fn an_id_that_does_not_match_its_folder_is_refused() {
    let scratch = scratch_catalogue();
    std::fs::create_dir(scratch.path().join("receipt.v2")).unwrap();
    std::fs::copy(
        scratch.path().join("receipt.v1/schema.json"),
        scratch.path().join("receipt.v2/schema.json"),
    )
    .unwrap();
    let error = load_error(scratch.path());
    // The copy keeps receipt.v1's $id: two types would share one registry key.
    assert!(matches!(error, CatalogueError::Invalid { .. }), "{error:?}");
    assert!(
        error.to_string().contains("receipt.v2/schema.json"),
        "{error}"
    );
    assert!(error.to_string().contains("/receipt.v2.json"), "{error}");
}

#[test]
fn a_type_folder_without_a_schema_is_named() {
    let scratch = scratch_catalogue();
    std::fs::create_dir(scratch.path().join("case.transfer.v1")).unwrap();
    let error = load_error(scratch.path());
    assert!(matches!(error, CatalogueError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("case.transfer.v1"), "{error}");
}

#[test]
fn a_missing_envelope_is_named() {
    let scratch = scratch_catalogue();
    std::fs::remove_file(scratch.path().join("envelope.json")).unwrap();
    let error = load_error(scratch.path());
    assert!(error.to_string().contains("envelope.json"), "{error}");
}

#[test]
fn answers_are_bound_to_the_types_they_answer() {
    let catalogue = catalogue();
    assert_eq!(
        catalogue.check_answer("pil.lead-decision.v1", "pil.lead.v1"),
        Ok(())
    );
    assert_eq!(
        catalogue.check_answer(
            "procuratorial.objection.v1",
            "procuratorial.recommendation.v1"
        ),
        Ok(())
    );
    // Receipts answer any type.
    assert_eq!(
        catalogue.check_answer("receipt.v1", "case.transfer.v1"),
        Ok(())
    );
    let wrong = catalogue
        .check_answer("file.access-response.v1", "pil.lead.v1")
        .unwrap_err();
    assert!(
        wrong.contains("file.access-request.v1") && wrong.contains("pil.lead.v1"),
        "{wrong}"
    );
    let opener = catalogue
        .check_answer("pil.lead.v1", "pil.lead.v1")
        .unwrap_err();
    assert!(opener.contains("answers no message"), "{opener}");
    assert!(catalogue.check_answer("no.such.v1", "pil.lead.v1").is_err());
}

/// A wrong check character names the format, the position and the character expected,
/// also where the field may hold either identifier (an `anyOf` of two formats).
#[test]
fn a_wrong_check_character_says_which_format_and_which_character() {
    let mut event = valid_lead();
    // The example's code ends in 8; 0 is wrong.
    event["data"]["suspected_party"]["id_number"] = json!("91620725MA7XK3L210");
    let error = catalogue().validate(&event).unwrap_err();
    assert_eq!(error.code, RejectCode::PayloadInvalid);
    let [violation] = error.violations.as_slice() else {
        panic!("one violation: {error}");
    };
    assert_eq!(violation.pointer, "/data/suspected_party/id_number");
    let message = &violation.message;
    assert!(
        !message.contains("not valid under any"),
        "the validator's own words: {message}"
    );
    assert!(
        message.contains("cn-uscc") && message.contains("position 18") && message.contains("'8'"),
        "{message}"
    );
    assert!(message.contains("cn-resident-id"), "{message}");
    assert!(!message.contains("91620725MA7XK3L21"), "{message}");
}

#[test]
fn an_enum_violation_lists_every_allowed_value() {
    let mut event = valid_lead();
    event["data"]["domain"] = json!("rivers");
    let error = catalogue().validate(&event).unwrap_err();
    let violation = error
        .violations
        .iter()
        .find(|v| v.pointer == "/data/domain")
        .expect("the domain is refused");
    assert_eq!(violation.keyword, "enum");
    let catalogue = catalogue();
    let schema = &catalogue.get("pil.lead.v1").unwrap().schema;
    let allowed = schema["properties"]["domain"]["enum"].as_array().unwrap();
    assert!(allowed.len() > 5, "a list the validator would cut short");
    for value in allowed {
        assert!(
            violation.message.contains(&value.to_string()),
            "{value} missing from {}",
            violation.message
        );
    }
    assert!(
        !violation.message.contains("rivers"),
        "{}",
        violation.message
    );
}
