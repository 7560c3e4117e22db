//! The HTTPS gateway and the operations port: routes and their handlers, authentication
//! and admission control, problem documents and the generated OpenAPI document.

pub mod audit_routes;
pub mod case_routes;
pub mod connections;
pub mod console;
pub mod directory;
pub mod erasure_routes;
pub mod extract;
pub mod gateway;
pub mod guard;
pub mod inbox;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod report_routes;
pub mod routes;
