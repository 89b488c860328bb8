//! `ApiPath` and `ApiQuery`: axum's `Path` and `Query` with rejections turned into the JSON error body (axum's own
//! answer plain text). A path segment that is not UTF-8 after percent-decoding, or a query string of the wrong
//! shape (`limit=abc`), is a 400 like every other bad request.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;

use super::error::ApiError;

/// `axum::extract::Path` with a JSON 400 rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with a JSON 400 rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // Server-side mistakes (a route without the parameter) would be 500; say nothing more for those.
        if rejection.status().is_server_error() {
            tracing::error!(error = %rejection.body_text(), "path extraction failed");
            return ApiError::new(rejection.status(), "internal error");
        }
        ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
    }
}
