//! The message catalogue against the running broker: every valid example, sent by the agency
//! in its `source`, is accepted; every invalid example is refused with the code, pointer and
//! keyword it declares; `/openapi.json` and `/v1/schemas` describe every type.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_schema::{Catalogue, Example, Expectation, load_examples};
use liaison_server::Broker;
use liaison_tests::{World, repo_root};
use serde_json::Value;

const AGENCY_URN: &str = "urn:liaison:agency:";

fn source_agency(event: &Value) -> Option<&str> {
    event["source"].as_str()?.strip_prefix(AGENCY_URN)
}

/// One client per agency, made on first use.
struct Clients<'a> {
    world: &'a World,
    broker: &'a Broker,
    by_agency: BTreeMap<String, AgencyClient>,
}

impl Clients<'_> {
    fn of(&mut self, agency: &str) -> &AgencyClient {
        self.by_agency
            .entry(agency.to_owned())
            .or_insert_with(|| self.world.client(self.broker, agency))
    }
}

/// Valid examples ordered so that every original is posted before the replies naming it in
/// `inreplyto`. Panics when a reply names no valid example: the test could not satisfy it.
fn originals_first(examples: Vec<&Example>) -> Vec<&Example> {
    let ids: HashSet<&str> = examples
        .iter()
        .filter_map(|e| e.event["id"].as_str())
        .collect();
    for example in &examples {
        if let Some(original) = example.event["inreplyto"].as_str() {
            assert!(
                ids.contains(original),
                "{}: inreplyto {original} is not the id of any valid example",
                example.path.display()
            );
        }
    }
    let mut posted: HashSet<&str> = HashSet::new();
    let mut ordered = Vec::new();
    let mut waiting = examples;
    while !waiting.is_empty() {
        let (ready, blocked): (Vec<&Example>, Vec<&Example>) = waiting.into_iter().partition(|e| {
            e.event["inreplyto"]
                .as_str()
                .is_none_or(|original| posted.contains(original))
        });
        assert!(
            !ready.is_empty(),
            "inreplyto forms a cycle among: {:?}",
            blocked.iter().map(|e| &e.path).collect::<Vec<_>>()
        );
        posted.extend(ready.iter().filter_map(|e| e.event["id"].as_str()));
        ordered.extend(ready);
        waiting = blocked;
    }
    ordered
}

#[tokio::test]
async fn every_example_gets_the_answer_it_declares_from_the_running_broker() {
    let mut world = World::new().await;
    let schemas = repo_root().join("schemas");
    let mut examples = load_examples(&schemas).expect("examples load");
    let catalogue = Catalogue::load(&schemas).expect("catalogue loads");
    // The examples show each type on its own, not one coherent matter: this test checks
    // the catalogue and the routes, so every type is informational to a lifecycle without
    // flows, and the examples' case references of the valid ones (each names the case it would be part
    // of) are left out. tests/e2e/cases.rs walks the real lifecycle.
    let lifecycle_dir = tempfile::tempdir().unwrap();
    let lifecycle = lifecycle_dir.path().join("lifecycle.toml");
    let types: Vec<String> = catalogue.types().map(|t| format!("{:?}", t.name)).collect();
    std::fs::write(
        &lifecycle,
        format!("informational = [{}]\n", types.join(", ")),
    )
    .unwrap();
    world.config.lifecycle = Some(lifecycle);
    for example in &mut examples {
        if example.expectation == Expectation::Valid
            && let Some(map) = example.event.as_object_mut()
        {
            map.remove("caseref");
        }
    }
    let broker = world.start().await;
    let mut clients = Clients {
        world: &world,
        broker: &broker,
        by_agency: BTreeMap::new(),
    };
    let mut failures = Vec::new();

    let valid: Vec<&Example> = examples
        .iter()
        .filter(|e| e.expectation == Expectation::Valid)
        .collect();
    let valid_count = valid.len();
    let mut accepted_types = HashSet::new();
    for example in originals_first(valid) {
        let agency = source_agency(&example.event)
            .unwrap_or_else(|| panic!("{}: source is not an agency URN", example.path.display()));
        let answer = clients.of(agency).submit(&example.event).await.unwrap();
        if answer.status == 202 {
            accepted_types.insert(example.event["type"].as_str().unwrap_or_default());
        } else {
            failures.push(format!(
                "{} (as {agency}): expected 202, got {} {}",
                example.path.display(),
                answer.status,
                answer.body
            ));
        }
    }

    let mut invalid_count = 0;
    for example in &examples {
        let Expectation::Invalid {
            code,
            pointer,
            keyword,
        } = &example.expectation
        else {
            continue;
        };
        invalid_count += 1;
        // An example whose source is itself the fault is sent by an agency of the registry.
        let agency = source_agency(&example.event)
            .filter(|a| is_agency_code(a))
            .unwrap_or("eco");
        let answer = clients.of(agency).submit(&example.event).await.unwrap();
        let listed = answer.body["errors"].as_array().is_some_and(|errors| {
            errors
                .iter()
                .any(|e| e["pointer"] == pointer.as_str() && e["keyword"] == keyword.as_str())
        });
        let as_declared = answer.status == code.http_status()
            && answer.body["code"] == code.as_str()
            && answer.content_type.starts_with("application/problem+json")
            && listed;
        if !as_declared {
            failures.push(format!(
                "{}: expected {} {code} with {keyword} at {pointer:?}, got {} {}",
                example.path.display(),
                code.http_status(),
                answer.status,
                answer.body
            ));
        }
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;

    assert!(
        failures.is_empty(),
        "{} of {} examples did not get the answer they declare:\n{}",
        failures.len(),
        valid_count + invalid_count,
        failures.join("\n")
    );
    let every_type: HashSet<&str> = catalogue.types().map(|t| t.name.as_str()).collect();
    assert_eq!(
        accepted_types, every_type,
        "a type without an accepted example"
    );
    assert!(invalid_count >= 2 * every_type.len(), "{invalid_count}");
}

/// Whether `code` has the shape of an agency code (the bad-source example
/// carries one that is not).
fn is_agency_code(code: &str) -> bool {
    liaison_core::AgencyCode::new(code).is_ok()
}

#[tokio::test]
async fn openapi_and_schemas_describe_every_type() {
    let world = World::new().await;
    let broker = world.start().await;
    let catalogue = Catalogue::load(&repo_root().join("schemas")).expect("catalogue loads");
    let market = world.client(&broker, "market");

    let openapi = market.get("/openapi.json").await.unwrap();
    assert_eq!(openapi.status, 200, "{}", openapi.body);
    assert_eq!(openapi.body["openapi"], "3.1.0");
    assert!(openapi.body["paths"]["/v1/messages"]["post"].is_object());
    let components = &openapi.body["components"]["schemas"];
    let listing = market.get("/v1/schemas").await.unwrap();
    assert_eq!(listing.status, 200);
    let listed: Vec<&str> = listing.body["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    for message_type in catalogue.types() {
        let name = message_type.name.as_str();
        assert_eq!(
            components[format!("{name}.data")],
            message_type.schema,
            "{name} in /openapi.json"
        );
        assert!(listed.contains(&name), "{name} in /v1/schemas");
        let one = market.get(&format!("/v1/schemas/{name}")).await.unwrap();
        assert_eq!(
            (one.status, &one.body),
            (200, &message_type.schema),
            "{name}"
        );
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
