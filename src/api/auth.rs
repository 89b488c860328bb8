//! Bearer-token authentication as extractors for the two roles: `CatalogAuth` (the catalog's token or the admin's)
//! and `AdminAuth` (the admin's only; the catalog's token gets 403). Tokens are compared in constant time and read
//! from `Authorization: Bearer` only, except on the WebSocket upgrade (`WebSocketAuth`), where browsers, which cannot
//! set headers there, may pass `?token=`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Who made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Catalog,
    Admin,
    Metrics,
}

/// A request with the catalog's or the admin's token.
#[derive(Debug)]
pub struct CatalogAuth(pub Role);

/// A request with the admin's token; `actor` is `X-Actor` if given, else `"admin"`.
#[derive(Debug)]
pub struct AdminAuth {
    pub actor: String,
}

/// The WebSocket upgrade: the catalog's or the admin's token, from the header or from `?token=`.
#[derive(Debug)]
pub struct WebSocketAuth(pub Role);

/// A request allowed to read metrics (admin or metrics token).
#[derive(Debug)]
pub struct MetricsAuth;

fn tokens_equal(given: &str, expected: &str) -> bool {
    !expected.is_empty() && given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Where a token may come from: the `Authorization` header always; the query string (`?token=`) only for the
/// WebSocket upgrade, because browsers cannot set headers there. Anywhere else a query token would end up in proxy
/// and access logs, so it is not even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSources {
    HeaderOnly,
    HeaderOrQuery,
}

fn presented_token(parts: &Parts, sources: TokenSources) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string());
    }
    if sources == TokenSources::HeaderOnly {
        return None;
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "token").map(|(_, value)| value.into_owned())
}

fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token (Authorization: Bearer <token>)")
}

fn role_of(parts: &Parts, state: &AppState, sources: TokenSources) -> Result<Role, ApiError> {
    let token = presented_token(parts, sources).ok_or_else(unauthorized)?;
    let tokens = &state.tokens;
    // Compare against every token so the time taken does not tell which one matched.
    let admin = tokens_equal(&token, &tokens.admin);
    let catalog = tokens_equal(&token, &tokens.catalog);
    let metrics = tokens_equal(&token, &tokens.metrics);
    if admin {
        Ok(Role::Admin)
    } else if catalog {
        Ok(Role::Catalog)
    } else if metrics {
        Ok(Role::Metrics)
    } else {
        Err(unauthorized())
    }
}

/// Longest `X-Actor` kept; longer ones are cut.
const MAX_ACTOR_LEN: usize = 64;

fn actor_of(parts: &Parts) -> String {
    parts
        .headers
        .get("x-actor")
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().filter(|c| !c.is_control()).take(MAX_ACTOR_LEN).collect::<String>())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "admin".to_string())
}

impl FromRequestParts<AppState> for CatalogAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match role_of(parts, state, TokenSources::HeaderOnly)? {
            role @ (Role::Catalog | Role::Admin) => Ok(CatalogAuth(role)),
            Role::Metrics => Err(ApiError::new(StatusCode::FORBIDDEN, "the metrics token may only read /metrics")),
        }
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match role_of(parts, state, TokenSources::HeaderOnly)? {
            Role::Admin => Ok(AdminAuth { actor: actor_of(parts) }),
            Role::Catalog | Role::Metrics => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "this route needs the admin token"))
            }
        }
    }
}

impl FromRequestParts<AppState> for MetricsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match role_of(parts, state, TokenSources::HeaderOnly)? {
            Role::Admin | Role::Metrics => Ok(MetricsAuth),
            Role::Catalog => Err(ApiError::new(StatusCode::FORBIDDEN, "this route needs the admin or metrics token")),
        }
    }
}

impl FromRequestParts<AppState> for WebSocketAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match role_of(parts, state, TokenSources::HeaderOrQuery)? {
            role @ (Role::Catalog | Role::Admin) => Ok(WebSocketAuth(role)),
            Role::Metrics => Err(ApiError::new(StatusCode::FORBIDDEN, "the metrics token may only read /metrics")),
        }
    }
}
