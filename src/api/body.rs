//! `JsonBody<T>`: the request-body extractor of every JSON route. Wrong content type -> 415, bytes that are not
//! JSON -> 400, JSON of the wrong shape -> 422 naming the field (`tracks[3].duration_secs`); an empty body is
//! accepted where the route's body is optional (`OptionalJsonBody`). The size limit is the router's; the time
//! limit (`[server] body_timeout_secs`, 408) is here.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A required JSON body.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON body that may be absent (empty); `None` then.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

fn is_json_content_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Reads the whole body within `[server] body_timeout_secs` of the headers: a client that trickles its body (or
/// never sends the bytes its Content-Length promised) gets 408 and the connection is closed.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let deadline = Duration::from_secs(state.config.server.body_timeout_secs.max(1));
    let read = tokio::time::timeout(deadline, Bytes::from_request(request, state)).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", deadline.as_secs()),
        )
    })?;
    read.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "request body is too large (limit 1 MiB)")
        } else {
            ApiError::new(status, format!("cannot read request body: {rejection}"))
        }
    })
}

/// Parses JSON bytes into `T`: syntax errors are 400, shape errors 422 with the field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::unprocessable(field, err.into_inner().to_string())
    })
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(&request) {
            return Err(unsupported_media_type());
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let has_type = request.headers().contains_key(header::CONTENT_TYPE);
        let json_type = is_json_content_type(&request);
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if has_type && !json_type {
            return Err(unsupported_media_type());
        }
        parse_json(&bytes).map(|value| OptionalJsonBody(Some(value)))
    }
}
