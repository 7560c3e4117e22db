//! The gateway's route table: one list that axum serves and `GET /openapi.json` describes.
//!
//! Each handler carries a `#[utoipa::path]` attribute naming its method, path, parameters,
//! responses and security; `routes!` registers the handler with axum under exactly that
//! method and path and adds the same operation to the document, so the two cannot drift.

use axum::extract::Extension;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::{Router, body::Bytes};
use liaison_core::RejectCode;
use tracing::Instrument;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::gateway::{self, Gateway};
use crate::http::openapi::{self, ApiDoc};
use crate::http::problem::Problem;
use crate::http::{audit_routes, case_routes, console, directory, erasure_routes, report_routes};

/// The gateway with its document, its fallback and client authentication in front of
/// every route. Routes are added in [`routes`], never here.
pub fn router(gateway: Gateway) -> Router {
    let (routes, generated) = routes().split_for_parts();
    let document = openapi::document(generated, gateway.pipeline.catalogue());
    let document = OpenApiJson(Bytes::from(document.to_string()));
    routes
        .fallback(|| async { Problem::new(RejectCode::NotFound, "no such route") })
        .layer(Extension(document))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            gateway::authenticate,
        ))
        .layer(middleware::from_fn(trace_request))
        .with_state(gateway)
}

/// A span per HTTPS request (`http.request`), the child of the request's W3C
/// `traceparent` when it has one. The request goes on with the span's own traceparent in
/// that header, so what the handler does (a submission's spans) is the request span's
/// child.
async fn trace_request(
    mut request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |m| m.as_str().to_owned(),
        );
    let span = tracing::info_span!(
        "http.request",
        http.method = %request.method(),
        http.route = route,
        http.status_code = tracing::field::Empty,
        trace.id = tracing::field::Empty,
    );
    let parent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let own = crate::telemetry::trace::start_child(&span, parent.as_deref());
    if let Ok(value) = axum::http::HeaderValue::from_str(&own) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.status_code", response.status().as_u16());
    response
}

const TRACEPARENT: &str = "traceparent";

/// Every route of the gateway.
///
/// To add a route: write the handler with a `#[utoipa::path(method, path = "...", params(..),
/// responses(..), security(("agencyCertificate" = [])))]` attribute (any handler here is an
/// example), then add one line `.routes(routes!(module::handler))` below. Do not use
/// `.route(..)`: it would serve a path the document does not describe, and
/// `tests::every_served_route_is_documented` fails on it.
pub(crate) fn routes() -> OpenApiRouter<Gateway> {
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(gateway::submit))
        .routes(routes!(gateway::preview))
        .routes(routes!(gateway::message))
        .routes(routes!(audit_routes::proof))
        .routes(routes!(audit_routes::latest_checkpoint))
        .routes(routes!(audit_routes::consistency))
        .routes(routes!(audit_routes::checkpoint))
        .routes(routes!(audit_routes::post_cosignature))
        .routes(routes!(audit_routes::entry_proof))
        .routes(routes!(audit_routes::entries))
        .routes(routes!(gateway::trace))
        .routes(routes!(case_routes::list))
        .routes(routes!(case_routes::case))
        .routes(routes!(erasure_routes::erase))
        .routes(routes!(erasure_routes::proposals))
        .routes(routes!(report_routes::report))
        .routes(routes!(gateway::pull))
        .routes(routes!(gateway::ack))
        .routes(routes!(directory::agencies))
        .routes(routes!(gateway::schemas))
        .routes(routes!(gateway::schema))
        .routes(routes!(openapi_json));
    // The administrators' console: HTML pages for people, not API operations, so served
    // and deliberately left out of the document (the documented-routes test exempts them).
    console::mount(api)
}

/// The complete document, rendered once at start-up: the catalogue it embeds is fixed for
/// the life of the process.
#[derive(Clone)]
struct OpenApiJson(Bytes);

/// This document
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "catalogue",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)),
    security(("agencyCertificate" = [])),
)]
async fn openapi_json(Extension(document): Extension<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}

/// The complete document of this route table for `catalogue`, as [`router`] serves it.
pub fn document(catalogue: &liaison_schema::Catalogue) -> serde_json::Value {
    openapi::document(routes().into_openapi(), catalogue)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::http::openapi::{AGENCY_CERTIFICATE, event_component, payload_component};

    fn catalogue() -> liaison_schema::Catalogue {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        liaison_schema::Catalogue::load(&dir).expect("schemas/ loads")
    }

    /// `(METHOD, path)` of every handler the axum router holds. axum has no public listing
    /// of its routes, but its `Debug` output names each route's path (`RouteId(n): "/path"`)
    /// and each route's method router (`RouteId(n): MethodRouter { get: BoxedHandler,
    /// post: None, … }`). A change of that format fails the count check below rather than
    /// passing silently.
    fn served_operations(router: &Router<Gateway>) -> BTreeSet<(String, String)> {
        let debug = format!("{router:?}");
        let main = debug.split(", fallback_router:").next().unwrap_or_default();
        let mut paths = std::collections::BTreeMap::new();
        let mut methods = std::collections::BTreeMap::new();
        for piece in main.split("RouteId(").skip(1) {
            let Some((id, rest)) = piece.split_once("): ") else {
                continue;
            };
            if let Some(quoted) = rest.strip_prefix('"') {
                let path = quoted.split('"').next().unwrap_or_default();
                paths.insert(id.to_owned(), path.to_owned());
            } else if let Some(fields) = rest.strip_prefix("MethodRouter(MethodRouter { ") {
                let fields = fields.split(", fallback:").next().unwrap_or_default();
                let served: Vec<String> = fields
                    .split(", ")
                    .filter_map(|field| field.split_once(": "))
                    .filter(|(_, endpoint)| *endpoint != "None")
                    .map(|(method, _)| method.to_ascii_uppercase())
                    .collect();
                methods.insert(id.to_owned(), served);
            }
        }
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            methods.keys().collect::<Vec<_>>(),
            "could not pair the router's paths with its method routers: {debug}"
        );
        paths
            .into_iter()
            .flat_map(|(id, path)| {
                methods[&id]
                    .iter()
                    .map(move |method| (method.clone(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .filter(|key| {
                        [
                            "get", "put", "post", "delete", "options", "head", "patch", "trace",
                        ]
                        .contains(&key.as_str())
                    })
                    .map(|method| (method.to_ascii_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The contract at a glance: every operation with its id and the statuses it answers.
    /// A change to any of them shows in review as a change of this snapshot.
    #[test]
    fn the_operations_of_the_openapi_document() {
        let document = document(&catalogue());
        let mut lines = Vec::new();
        for (method, path) in documented_operations(&document) {
            let operation = &document["paths"][&path][method.to_ascii_lowercase()];
            let statuses: Vec<&str> = operation["responses"]
                .as_object()
                .map(|r| r.keys().map(String::as_str).collect())
                .unwrap_or_default();
            lines.push(format!(
                "{method:<6} {path:<45} {:<22} {}",
                operation["operationId"].as_str().unwrap_or("-"),
                statuses.join(" ")
            ));
        }
        insta::assert_snapshot!("openapi_operations", lines.join("\n"));
    }

    #[test]
    fn every_served_route_is_documented() {
        let (router, generated) = routes().split_for_parts();
        let served = served_operations(&router);
        // The console's pages are HTML for administrators, not operations of the API: they
        // are exempt, and only they. They are checked to be there so that the exemption
        // cannot hide a route that the walk stopped seeing.
        let (console, served): (BTreeSet<_>, BTreeSet<_>) = served
            .into_iter()
            .partition(|(_, path)| path == console::PREFIX || path.starts_with("/console/"));
        assert!(
            console.contains(&("GET".into(), "/console/".into()))
                && console.contains(&("POST".into(), "/console/messages/{id}/reveal".into())),
            "{console:?}"
        );
        assert!(served.len() >= 11, "found only {served:?} in the router");
        assert!(served.contains(&("POST".into(), "/v1/messages".into())));
        let documented = documented_operations(&openapi::document(generated, &catalogue()));
        assert_eq!(served, documented);
    }

    /// The walk above would miss a route it cannot see: this proves it sees one added
    /// around the table.
    #[test]
    fn the_walk_finds_a_route_added_without_documentation() {
        let undocumented = routes().route(
            "/v1/undocumented",
            axum::routing::get(|| async { "not in the document" }),
        );
        let (router, generated) = undocumented.split_for_parts();
        let served = served_operations(&router);
        assert!(served.contains(&("GET".into(), "/v1/undocumented".into())));
        let documented = documented_operations(&openapi::document(generated, &catalogue()));
        assert_ne!(served, documented);
    }

    #[test]
    fn every_operation_requires_the_agency_certificate_and_refuses_with_problems() {
        let document = document(&catalogue());
        let problem = json!({"$ref": "#/components/responses/Problem"});
        for (method, path) in documented_operations(&document) {
            let operation = &document["paths"][&path][method.to_ascii_lowercase()];
            let required = json!([{ AGENCY_CERTIFICATE: [] }]);
            assert_eq!(operation["security"], required, "{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            for status in openapi::REFUSED_BEFORE_ANY_HANDLER {
                assert_eq!(responses[status], problem, "{method} {path} {status}");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(response, &problem, "{method} {path} {status}");
                }
            }
        }
        assert_eq!(
            document["components"]["securitySchemes"][AGENCY_CERTIFICATE]["type"],
            "mutualTLS"
        );
        let codes = document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .expect("code enum")
            .len();
        assert_eq!(codes, RejectCode::ALL.len());
    }

    #[test]
    fn every_type_is_an_event_with_its_own_data_schema() {
        let catalogue = catalogue();
        let document = document(&catalogue);
        let schemas = &document["components"]["schemas"];
        let events = schemas["CloudEvent"]["oneOf"].as_array().expect("oneOf");
        assert_eq!(events.len(), catalogue.types().count());
        for message_type in catalogue.types() {
            let event = &schemas[event_component(&message_type.name)];
            assert_eq!(
                event["properties"]["type"]["const"],
                json!(message_type.name)
            );
            assert_eq!(
                schemas[payload_component(&message_type.name)],
                message_type.schema
            );
            for attribute in &message_type.info.requires {
                assert!(
                    event["required"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(attribute)),
                    "{}: {attribute}",
                    message_type.name
                );
            }
        }
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["jsonSchemaDialect"], liaison_schema::DRAFT_2020_12);
        let submit = &document["paths"]["/v1/messages"]["post"]["requestBody"]["content"];
        for media_type in ["application/cloudevents+json", "application/json"] {
            assert_eq!(
                submit[media_type]["schema"],
                json!({"$ref": "#/components/schemas/CloudEvent"})
            );
        }
    }

    /// A request whose parameters cannot be read is refused `400 invalid_parameter`
    /// (`crate::http::extract`), so every operation with parameters documents 400; the
    /// integrators' routes document what they answer.
    #[test]
    fn every_operation_with_parameters_documents_400_and_the_new_routes_their_answers() {
        let document = document(&catalogue());
        let mut with_parameters = 0;
        for (method, path) in documented_operations(&document) {
            let operation = &document["paths"][&path][method.to_ascii_lowercase()];
            let has_parameters = operation["parameters"]
                .as_array()
                .is_some_and(|p| !p.is_empty());
            if has_parameters {
                with_parameters += 1;
                assert_eq!(
                    operation["responses"][openapi::UNREADABLE_PARAMETER],
                    json!({"$ref": "#/components/responses/Problem"}),
                    "{method} {path}"
                );
            }
        }
        assert!(with_parameters >= 8, "{with_parameters}");
        let ack = &document["paths"]["/v1/inbox/{delivery}/ack"]["post"]["responses"];
        assert_eq!(
            ack["200"]["content"]["application/json"]["schema"],
            json!({"$ref": "#/components/schemas/AlreadyAcknowledged"})
        );
        assert!(ack["204"].is_object() && ack["404"].is_object());
        let preview = &document["paths"]["/v1/routes/preview"]["post"];
        for status in ["200", "400", "403", "413", "415", "422"] {
            assert!(preview["responses"][status].is_object(), "{status}");
        }
        assert_eq!(
            preview["requestBody"]["content"]["application/cloudevents+json"]["schema"],
            json!({"$ref": "#/components/schemas/CloudEvent"})
        );
        let agencies = &document["paths"]["/v1/agencies"]["get"]["responses"]["200"];
        assert_eq!(
            agencies["content"]["application/json"]["schema"],
            json!({"$ref": "#/components/schemas/Agencies"})
        );
        // The preview's recipients carry their rule; the 202's do not, under another name.
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            schemas["Recipient"]["required"],
            json!(["agency", "role", "rule"])
        );
        assert_eq!(
            schemas["Accepted"]["properties"]["recipients"]["items"],
            json!({"$ref": "#/components/schemas/AcceptedRecipient"})
        );
        assert_eq!(
            schemas["AcceptedRecipient"]["required"],
            json!(["agency", "role"])
        );
    }

    /// Every `$ref` of the document that points into it resolves.
    #[test]
    fn internal_references_resolve() {
        let document = document(&catalogue());
        let mut references = Vec::new();
        collect_refs(&document, &mut references);
        assert!(references.len() > 20, "{references:?}");
        for reference in references {
            let Some(pointer) = reference.strip_prefix('#') else {
                continue;
            };
            assert!(document.pointer(pointer).is_some(), "{reference}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    match (key.as_str(), member) {
                        ("$ref", Value::String(target)) => out.push(target.clone()),
                        _ => collect_refs(member, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
            _ => {}
        }
    }

    /// A validator for one component of the document, with the catalogue's formats.
    fn component_validator(document: &Value, component: &str) -> jsonschema::Validator {
        let schema = json!({
            "$schema": liaison_schema::DRAFT_2020_12,
            "$ref": format!("#/components/schemas/{component}"),
            "components": document["components"].clone(),
        });
        jsonschema::draft202012::options()
            .with_format("cn-resident-id", liaison_schema::formats::is_resident_id)
            .with_format(
                "cn-uscc",
                liaison_schema::formats::is_unified_social_credit_code,
            )
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{component} compiles: {e}"))
    }

    /// The document's event schemas accept the catalogue's valid examples and refuse one
    /// without its type's required envelope attribute, under a plain JSON Schema validator.
    #[test]
    fn event_schemas_validate_the_examples_on_their_own() {
        let catalogue = catalogue();
        let document = document(&catalogue);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let examples = liaison_schema::load_examples(&dir).expect("examples load");
        let mut checked = 0;
        for example in examples
            .iter()
            .filter(|e| e.expectation == liaison_schema::Expectation::Valid)
        {
            let type_name = example.event["type"].as_str().unwrap();
            let validator = component_validator(&document, &event_component(type_name));
            assert!(
                validator.is_valid(&example.event),
                "{}",
                example.path.display()
            );
            let mut stripped = example.event.clone();
            if let Some(attribute) = catalogue.get(type_name).unwrap().info.requires.first() {
                stripped.as_object_mut().unwrap().remove(attribute);
                assert!(!validator.is_valid(&stripped), "{}", example.path.display());
            }
            checked += 1;
        }
        assert!(checked >= 19, "{checked}");
    }

    /// The schemas written for types of other crates describe what those types serialise to.
    #[test]
    fn described_shapes_match_what_is_served() {
        use time::macros::datetime;

        let document = document(&catalogue());
        let at = datetime!(2026-01-02 03:04:05 UTC);
        let agency: liaison_core::AgencyCode =
            liaison_core::AgencyCode::new("cityhall").expect("agency code");
        let checkpoint = liaison_ledger::StoredCheckpoint {
            tree_size: 3,
            root_hash: [7; 32],
            signed_at: at,
            note: "liaison\n3\nBwc=\n".into(),
        };
        let delivery = liaison_ledger::DeliveryState {
            delivery_id: 1,
            recipient: agency.clone(),
            role: liaison_core::RecipientRole::Cc,
            state: "pending".into(),
            attempts: 0,
            dispatched_at: None,
            acknowledged_at: Some(at),
            last_error: None,
        };
        let rejected =
            Problem::new(RejectCode::PayloadInvalid, "payload invalid").with_errors(vec![
                liaison_schema::Violation {
                    pointer: "/data/name".into(),
                    keyword: "required".into(),
                    message: "missing".into(),
                },
            ]);
        let entry = liaison_core::Entry {
            seq: 4,
            at,
            kind: liaison_core::EntryKind::MessageAccepted,
            message: Some(uuid::Uuid::nil()),
            caseref: None,
            agency: Some(agency.clone()),
            detail: json!({"recipients": []}),
        };
        // A report with a median (the answering agency's row) and without (the recipient's).
        let answer = liaison_core::Entry {
            seq: 5,
            detail: json!({
                "recipients": [{"agency": "eco", "role": "to", "rule": "r"}],
                "clocks": {"stopped": [{
                    "thread": uuid::Uuid::nil(), "clock": "reply", "reason": "answered",
                    "started_at": "2026-01-01T00:00:00Z", "due": null, "late": false,
                }]},
            }),
            ..entry.clone()
        };
        let refusal = liaison_core::Entry {
            seq: 6,
            kind: liaison_core::EntryKind::MessageRejected,
            detail: json!({"code": "payload_invalid"}),
            ..entry.clone()
        };
        let period = liaison_ledger::ReportPeriod::parse("2026-01-01", "2026-01-31").unwrap();
        let report = liaison_ledger::Report::compute([&answer, &refusal], period, at);
        assert_eq!(report.rows.len(), 2);
        let samples = [
            ("Report", serde_json::to_value(&report).unwrap()),
            ("Checkpoint", serde_json::to_value(&checkpoint).unwrap()),
            ("Entry", serde_json::to_value(&entry).unwrap()),
            ("DeliveryState", serde_json::to_value(&delivery).unwrap()),
            ("Problem", serde_json::to_value(&rejected).unwrap()),
            (
                "Problem",
                serde_json::to_value(Problem::new(RejectCode::NotFound, "none")).unwrap(),
            ),
        ];
        for (component, sample) in samples {
            let validator = component_validator(&document, component);
            let errors: Vec<String> = validator
                .iter_errors(&sample)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{component}: {errors:?} for {sample}");
        }
        let unknown_code = json!({
            "type": "urn:liaison:problem:nope", "title": "t", "status": 400,
            "detail": "d", "code": "nope"
        });
        assert!(!component_validator(&document, "Problem").is_valid(&unknown_code));
    }
}
