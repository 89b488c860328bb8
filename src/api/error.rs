//! `ApiError`: the one error type of the HTTP layer, mapped to a status and a JSON body
//! `{"error": "...", "field": ..., "current_state": ...}`. 5xx causes are logged, never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::app::AppError;
use crate::models::TicketState;
use crate::queue::StorageProblem;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    pub current_state: Option<Box<TicketState>>,
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The JSON path of the offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The ticket's state, for 409 answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<TicketState>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None, current_state: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::NotFound(id) => ApiError::not_found(format!("ticket {id:?} not found")),
            AppError::Validation(err) => ApiError::unprocessable(err.field, err.message),
            AppError::Unprocessable { field, message } => {
                ApiError { field, ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message) }
            }
            AppError::Conflict { message, current } => {
                ApiError { current_state: current, ..ApiError::new(StatusCode::CONFLICT, message) }
            }
            AppError::Store(err) => {
                let retryable = err.is_retryable();
                if let Some(problem) = err.storage_problem() {
                    // The store already warned (rate-limited); the answer says what is wrong with the storage.
                    tracing::debug!(error = %err, retryable, "storage problem while answering a request");
                    let status = match problem {
                        StorageProblem::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
                        StorageProblem::DiskFull
                        | StorageProblem::ReadOnly
                        | StorageProblem::Io
                        | StorageProblem::CannotOpen
                        | StorageProblem::FileDeleted
                        | StorageProblem::FileReplaced => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    return ApiError::new(status, format!("cannot use the database: {}", problem.describe()));
                }
                tracing::error!(error = %err, retryable, "store error while answering a request");
                if retryable {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the database is busy; try again")
                } else {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, field: self.field, current_state: self.current_state.map(|s| *s) };
        (self.status, Json(body)).into_response()
    }
}
