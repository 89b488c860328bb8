//! What the OpenAPI document promises beyond the handlers' own annotations, applied to every operation so no route
//! can forget it: the JSON error answers each kind of route can give (400 for a malformed path, query or body, 401
//! and 403 on authenticated routes, 404 where a ticket id is in the path, 408/413/415/422 where there is a body,
//! 414 for an over-long URI, 503 when the database is unavailable) and the `ticket_id` pattern of `{id}` path
//! parameters. Together with `extract.rs` (JSON rejections) and `limit_uri_length`, this keeps the document true to
//! what the service answers (checked by schemathesis in `tests/it/api_contract.rs`).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};

use super::error::ApiError;
use crate::models::ticket::{MAX_TICKET_ID_LEN, TICKET_ID_PATTERN};
use crate::models::StateKind;

/// Longest request URI (path and query) served; longer ones get 414 with the JSON error body. (hyper itself
/// refuses URIs over 64 KiB before they reach the router, with an empty 414.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Middleware: 414 for URIs over `MAX_URI_BYTES`.
pub async fn limit_uri_length(request: Request, next: Next) -> Response {
    let length = request.uri().path().len() + request.uri().query().map_or(0, |query| query.len() + 1);
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The `utoipa` modifier adding the common error answers and the ticket id pattern.
pub struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_ticket_id = path.contains("{id}");
            for operation in
                [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch].into_iter().flatten()
            {
                add_common_answers(operation, has_ticket_id);
                constrain_parameters(operation);
            }
        }
    }
}

fn error_answer(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build(),
    )
}

fn add_common_answers(operation: &mut Operation, has_ticket_id: bool) {
    let authenticated = operation.security.as_ref().is_some_and(|security| !security.is_empty());
    let has_body = operation.request_body.is_some();
    let mut answers: Vec<(&str, &str)> = vec![
        ("400", "Bad request: a malformed path parameter, query string or body"),
        ("414", "The request URI is too long"),
        ("503", "The database is unavailable or cannot be written; the error says why (disk full, read-only, ...)"),
    ];
    if authenticated {
        answers.push(("401", "Missing or invalid bearer token"));
        answers.push(("403", "This token's role may not use this route"));
    }
    if has_ticket_id {
        answers.push(("404", "No ticket with this id"));
    }
    if has_body {
        answers.push(("408", "The request body did not arrive in time ([server] body_timeout_secs)"));
        answers.push(("413", "The request body is larger than 1 MiB"));
        answers.push(("415", "The body is not application/json"));
        answers
            .push(("422", "The body does not have the expected shape, or a value is not acceptable; `field` names it"));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in answers {
        responses.entry(status.to_string()).or_insert_with(|| error_answer(description));
    }
}

/// `{id}` path parameters get the ticket id pattern, `{info_hash}` 40 hex digits, indices (`{idx}`, `{release}`,
/// `{file}`) non-negative integers; a `state` query parameter the state names (or empty).
fn constrain_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.name == "id" && parameter.parameter_in == ParameterIn::Path {
            parameter.schema = Some(RefOr::T(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(TICKET_ID_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(MAX_TICKET_ID_LEN))
                    .into(),
            ));
        }
        if parameter.name == "info_hash" && parameter.parameter_in == ParameterIn::Path {
            parameter.schema = Some(RefOr::T(
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9a-fA-F]{40}$")).into(),
            ));
        }
        let index = ["idx", "release", "file"].contains(&parameter.name.as_str());
        if index && parameter.parameter_in == ParameterIn::Path {
            parameter.schema = Some(RefOr::T(
                ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u32::MAX)).into(),
            ));
        }
        if parameter.name == "state" && parameter.parameter_in == ParameterIn::Query {
            let names = std::iter::once("").chain(StateKind::ALL.iter().map(|kind| kind.as_str()));
            parameter.schema =
                Some(RefOr::T(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).into()));
        }
    }
}
