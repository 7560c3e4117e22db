//! `GET /openapi.json`: an OpenAPI 3.1 description of the gateway, with the message
//! catalogue's own schemas in it.
//!
//! The document is built from the loaded [`Catalogue`], so it always describes exactly the
//! types this broker accepts: the request body of `POST /v1/messages` is one CloudEvent
//! schema per type (the envelope, its `type` fixed, its `data` the type's schema). OpenAPI
//! 3.1 uses JSON Schema 2020-12, the catalogue's dialect, so the schemas go in unchanged.

use axum::Json;
use axum::extract::State;
use liaison_core::RejectCode;
use liaison_schema::Catalogue;
use serde_json::{Map, Value, json};

use crate::gateway::Gateway;

/// The handler of `GET /openapi.json`. Built per request: it is asked for rarely and the
/// catalogue is small, and this keeps the gateway's state free of derived copies.
pub async fn serve(State(gateway): State<Gateway>) -> Json<Value> {
    Json(document(gateway.pipeline.catalogue()))
}

/// The component name of a message type's payload schema.
pub fn payload_component(type_name: &str) -> String {
    format!("{type_name}.data")
}

/// The component name of a complete CloudEvent of one type.
pub fn event_component(type_name: &str) -> String {
    format!("{type_name}.event")
}

/// The OpenAPI 3.1 document for this catalogue.
pub fn document(catalogue: &Catalogue) -> Value {
    let mut schemas = Map::new();
    schemas.insert("envelope".into(), catalogue.envelope_schema().clone());
    let mut events = Vec::new();
    for message_type in catalogue.types() {
        let name = &message_type.name;
        schemas.insert(payload_component(name), message_type.schema.clone());
        let mut required = vec![json!("type"), json!("data")];
        required.extend(message_type.info.requires.iter().map(|a| json!(a)));
        schemas.insert(
            event_component(name),
            json!({
                "title": message_type.title,
                "description": message_type.description,
                "allOf": [{"$ref": "#/components/schemas/envelope"}],
                "required": required,
                "properties": {
                    "type": {"const": name},
                    "data": {"$ref": format!("#/components/schemas/{}", payload_component(name))}
                }
            }),
        );
        events.push(json!({"$ref": format!("#/components/schemas/{}", event_component(name))}));
    }
    schemas.insert(
        "CloudEvent".into(),
        json!({
            "title": "CloudEvent of the catalogue",
            "description": "One CloudEvent in structured JSON mode, of one of the catalogue's types",
            "oneOf": events,
            "discriminator": {"propertyName": "type"}
        }),
    );
    schemas.insert("Problem".into(), problem_schema());
    schemas.insert("Accepted".into(), accepted_schema());
    schemas.insert("Recipient".into(), recipient_schema());

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": liaison_schema::DRAFT_2020_12,
        "info": {
            "title": "liaison",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The inter-agency message broker's HTTPS API. Every request needs the \
                agency's client certificate (mutual TLS); its SAN URI urn:liaison:agency:<code> is \
                the caller's identity. Errors are RFC 9457 problem documents with a stable `code`."
        },
        "security": [{"agencyCertificate": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "agencyCertificate": {
                    "type": "mutualTLS",
                    "description": "A client certificate issued by the county CA, naming the agency as urn:liaison:agency:<code>"
                }
            },
            "schemas": schemas,
            "responses": {
                "Problem": {
                    "description": "Refused; `code` says why",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                }
            }
        }
    })
}

fn problem_response() -> Value {
    json!({"$ref": "#/components/responses/Problem"})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// Every route of the gateway. `tests::every_gateway_route_is_described` keeps this list
/// in step with `gateway.rs`.
fn paths() -> Value {
    json!({
        "/v1/messages": {
            "post": {
                "operationId": "submitMessage",
                "summary": "Submit one CloudEvent",
                "description": "Checked against the catalogue and the routing policy, recorded in the ledger, then \
                    delivered. The same id with the same bytes gets the same answer again; the same id \
                    with other bytes gets 409. A schema violation is 422 with every failing JSON pointer in `errors`.",
                "requestBody": {
                    "required": true,
                    "content": {
                        "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}},
                        "application/json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}
                    }
                },
                "responses": {
                    "202": {"description": "Accepted: recorded, and going to be delivered", "content": json_content(json!({"$ref": "#/components/schemas/Accepted"}))},
                    "400": problem_response(), "403": problem_response(), "409": problem_response(),
                    "413": problem_response(), "415": problem_response(), "422": problem_response(),
                    "503": problem_response()
                }
            }
        },
        "/v1/messages/{id}": {
            "get": {
                "operationId": "getMessage",
                "summary": "A message and its delivery states (its sender and recipients only)",
                "parameters": [path_parameter("id", "The message id (UUID)")],
                "responses": {
                    "200": {"description": "The message as recorded", "content": json_content(json!({"type": "object", "required": ["id", "seq", "sender", "type", "deliveries", "event"]}))},
                    "404": problem_response()
                }
            }
        },
        "/v1/messages/{id}/proof": {
            "get": {
                "operationId": "getMessageProof",
                "summary": "Inclusion proofs of the message's ledger entries against a signed checkpoint",
                "parameters": [path_parameter("id", "The message id (UUID)")],
                "responses": {"200": {"description": "Inclusion proofs", "content": json_content(json!({"type": "object"}))}, "404": problem_response()}
            }
        },
        "/v1/checkpoints/latest": {
            "get": {
                "operationId": "getLatestCheckpoint",
                "summary": "The latest signed checkpoint of the ledger",
                "responses": {"200": {"description": "A signed checkpoint", "content": json_content(json!({"type": "object"}))}, "404": problem_response()}
            }
        },
        "/v1/checkpoints/consistency": {
            "get": {
                "operationId": "getConsistencyProof",
                "summary": "A consistency proof between two tree sizes",
                "parameters": [
                    query_parameter("from", "The older tree size", json!({"type": "integer", "minimum": 0})),
                    query_parameter("to", "The newer tree size", json!({"type": "integer", "minimum": 0}))
                ],
                "responses": {"200": {"description": "A consistency proof", "content": json_content(json!({"type": "object"}))}, "400": problem_response(), "404": problem_response()}
            }
        },
        "/v1/trace/{key}": {
            "get": {
                "operationId": "getTrace",
                "summary": "Every ledger entry of a message (and its answers) or of a case, in ledger order; administrators only",
                "parameters": [{"name": "key", "in": "path", "required": true, "description": "A message id (UUID) or a case reference", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The trace", "content": json_content(json!({
                        "type": "object",
                        "required": ["key", "entries"],
                        "properties": {"key": {"type": "string"}, "entries": {"type": "array", "items": {
                            "type": "object",
                            "required": ["seq", "at", "kind", "detail"],
                            "properties": {
                                "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                                "kind": {"type": "string"}, "message": {"type": ["string", "null"]},
                                "caseref": {"type": ["string", "null"]}, "agency": {"type": ["string", "null"]},
                                "detail": {"type": "object"}
                            }
                        }}}
                    }))},
                    "403": problem_response(),
                    "404": problem_response()
                }
            }
        },
        "/v1/inbox": {
            "get": {
                "operationId": "pullInbox",
                "summary": "Pull the caller's deliveries (long poll)",
                "parameters": [
                    query_parameter("wait", "Seconds to wait for the first delivery", json!({"type": "integer", "minimum": 0, "default": 0})),
                    query_parameter("max", "Most deliveries to return", json!({"type": "integer", "minimum": 1, "default": 10}))
                ],
                "responses": {
                    "200": {"description": "Leased deliveries; acknowledge each", "content": json_content(json!({
                        "type": "object",
                        "required": ["deliveries"],
                        "properties": {"deliveries": {"type": "array", "items": {
                            "type": "object",
                            "required": ["delivery", "redelivered", "event"],
                            "properties": {
                                "delivery": {"type": "integer", "description": "Acknowledge with POST /v1/inbox/{delivery}/ack"},
                                "message_id": {"type": ["string", "null"], "format": "uuid"},
                                "seq": {"type": ["integer", "null"]},
                                "type": {"type": ["string", "null"]},
                                "redelivered": {"type": "boolean"},
                                "event": {"$ref": "#/components/schemas/CloudEvent"}
                            }
                        }}}
                    }))},
                    "503": problem_response()
                }
            }
        },
        "/v1/inbox/{delivery}/ack": {
            "post": {
                "operationId": "ackDelivery",
                "summary": "Acknowledge a pulled delivery",
                "parameters": [path_parameter("delivery", "The delivery number from GET /v1/inbox")],
                "responses": {"204": {"description": "Acknowledged and recorded"}, "404": problem_response(), "503": problem_response()}
            }
        },
        "/v1/schemas": {
            "get": {
                "operationId": "listSchemas",
                "summary": "The message catalogue: the envelope schema and every type",
                "responses": {"200": {"description": "The catalogue", "content": json_content(json!({
                    "type": "object",
                    "required": ["envelope", "types"],
                    "properties": {
                        "envelope": {"type": "object"},
                        "types": {"type": "array", "items": {
                            "type": "object",
                            "required": ["type", "title", "description", "href"],
                            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"}, "href": {"type": "string"}}
                        }}
                    }
                }))}}
            }
        },
        "/v1/schemas/{type}": {
            "get": {
                "operationId": "getSchema",
                "summary": "The payload (data) schema of one message type",
                "parameters": [path_parameter("type", "A message type, e.g. pil.lead.v1")],
                "responses": {"200": {"description": "A JSON Schema 2020-12", "content": json_content(json!({"type": "object"}))}, "404": problem_response()}
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": json_content(json!({"type": "object"}))}}
            }
        }
    })
}

fn problem_schema() -> Value {
    let codes: Vec<&str> = RejectCode::ALL.iter().map(|code| code.as_str()).collect();
    json!({
        "title": "Problem",
        "description": "RFC 9457 problem document",
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "description": "urn:liaison:problem:<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": codes, "description": "Stable error code; a retired code is never reused"},
            "errors": {
                "type": "array",
                "description": "Every schema violation, sorted by pointer",
                "items": {
                    "type": "object",
                    "required": ["pointer", "keyword", "message"],
                    "properties": {
                        "pointer": {"type": "string", "description": "RFC 6901 JSON pointer into the event; for `required` the missing member"},
                        "keyword": {"type": "string", "description": "The failing JSON Schema keyword"},
                        "message": {"type": "string", "description": "Readable; never quotes the value sent"}
                    }
                }
            },
            "message_id": {"type": "string", "format": "uuid"},
            "ledger_seq": {"type": "integer", "description": "The ledger entry that recorded the rejection"}
        }
    })
}

fn accepted_schema() -> Value {
    json!({
        "title": "Accepted",
        "type": "object",
        "required": ["id", "seq", "recorded_at", "recipients", "duplicate"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "seq": {"type": "integer", "description": "Ledger sequence number of the acceptance"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "recipients": {"type": "array", "items": {"$ref": "#/components/schemas/Recipient"}},
            "duplicate": {"type": "boolean", "description": "The same id and bytes were accepted before; this is that answer"}
        }
    })
}

fn recipient_schema() -> Value {
    json!({
        "title": "Recipient",
        "type": "object",
        "required": ["agency", "role"],
        "properties": {
            "agency": {"type": "string"},
            "role": {"type": "string", "enum": ["to", "cc"]}
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn catalogue() -> Catalogue {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        Catalogue::load(&dir).expect("schemas/ loads")
    }

    #[test]
    fn every_gateway_route_is_described() {
        let document = document(&catalogue());
        let source = include_str!("gateway.rs");
        let mut routes = 0;
        for piece in source.split(".route(\"").skip(1) {
            let route = piece.split('"').next().unwrap_or_default();
            routes += 1;
            assert!(
                document["paths"].get(route).is_some(),
                "{route} is routed in gateway.rs but not described in openapi.rs"
            );
        }
        assert!(routes >= 7, "found {routes} routes in gateway.rs");
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
    }

    /// Every `$ref` of the document that points into it resolves.
    #[test]
    fn internal_references_resolve() {
        let document = document(&catalogue());
        let mut references = Vec::new();
        collect_refs(&document, &mut references);
        assert!(!references.is_empty());
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
            let mut schema = json!({
                "$ref": format!("#/components/schemas/{}", event_component(type_name)),
                "components": document["components"].clone(),
            });
            schema["$schema"] = json!(liaison_schema::DRAFT_2020_12);
            let validator = jsonschema::draft202012::options()
                .with_format("cn-resident-id", liaison_schema::formats::is_resident_id)
                .with_format(
                    "cn-uscc",
                    liaison_schema::formats::is_unified_social_credit_code,
                )
                .build(&schema)
                .expect("event schema compiles");
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
}
