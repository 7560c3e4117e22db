//! axum's `Query` and `Path` extractors, refusing with a problem document: axum's own
//! refusal is a plain-text `400` that carries no `code`, which no client can act on.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use liaison_core::RejectCode;
use serde::de::DeserializeOwned;

use crate::http::problem::Problem;

/// The query string, deserialised; unreadable, `400 invalid_parameter` naming the fault.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| Problem::new(RejectCode::InvalidParameter, rejection.body_text()))
    }
}

/// The path parameters, deserialised; unreadable (not UTF-8 once percent-decoded),
/// `400 invalid_parameter`.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| Problem::new(RejectCode::InvalidParameter, rejection.body_text()))
    }
}
