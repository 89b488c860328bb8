//! The HTTP API and the admin page (`ui.rs`): the router (routes exactly as the contract names them), its layers (body limit, request spans,
//! panic catching, JSON 404/405), health and the OpenAPI document generated from the handlers' annotations.
//! Handlers are thin: they authenticate, parse, call an `App` command and map its error.

pub mod admin;
pub mod auth;
pub mod body;
pub mod contract;
pub mod error;
pub mod extract;
pub mod tickets;
pub mod ui;
pub mod verification;
pub mod ws;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;

use crate::app::App;
use crate::queue::DatabaseHealth;
use contract::CommonAnswers;
use error::{ApiError, ErrorBody};

/// What every handler gets.
pub type AppState = Arc<App>;

/// What the server puts into every request's extensions: the request's connection as a slot that a long-lived
/// handler (the WebSocket) holds for as long as it uses the connection, so the server counts it as busy (never
/// closed for room, still counted against `[server] max_connections`), and the server's shutdown signal.
#[derive(Clone)]
pub struct ConnectionSlot {
    /// Requests and sockets in flight on the connection (the server reads it to find idle connections).
    in_flight: Arc<AtomicUsize>,
    /// Whatever keeps the connection's place in the server's count; released when the last holder drops it.
    place: Arc<dyn std::any::Any + Send + Sync>,
    /// Cancelled when the server shuts down: long-lived sockets close themselves.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl ConnectionSlot {
    pub fn new(
        in_flight: Arc<AtomicUsize>,
        place: Arc<dyn std::any::Any + Send + Sync>,
        shutdown: CancellationToken,
    ) -> ConnectionSlot {
        ConnectionSlot { in_flight, place, shutdown }
    }

    /// Marks the connection busy (and keeps its place) until the guard is dropped.
    pub fn hold(&self) -> SlotHold {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        SlotHold { in_flight: self.in_flight.clone(), _place: self.place.clone() }
    }
}

/// A busy mark on a connection; see `ConnectionSlot::hold`.
pub struct SlotHold {
    in_flight: Arc<AtomicUsize>,
    _place: Arc<dyn std::any::Any + Send + Sync>,
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole API.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/app.css", get(ui::stylesheet))
        .route("/ui/icon.svg", get(ui::icon))
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/ticket", post(tickets::create_ticket))
        .route("/api/v1/ticket/{id}", get(tickets::get_ticket).delete(tickets::cancel_ticket))
        .route("/api/v1/tickets", get(tickets::list_tickets))
        .route("/api/v1/ticket/{id}/approve", post(admin::approve))
        .route("/api/v1/ticket/{id}/reject", post(admin::reject))
        .route("/api/v1/ticket/{id}/retry", post(admin::retry))
        .route("/api/v1/ticket/{id}/force-search", post(admin::force_search))
        .route("/api/v1/ticket/{id}/candidates/{idx}/files", get(admin::candidate_files))
        .route("/api/v1/stats", get(admin::stats))
        .route("/api/v1/config", get(admin::config))
        .route("/api/v1/webhook", get(admin::webhook))
        .route("/api/v1/blocklist", get(verification::list))
        .route("/api/v1/blocklist/{info_hash}", axum::routing::delete(verification::remove))
        .route("/api/v1/ticket/{id}/verification/{release}/{file}/spectrogram.png", get(verification::spectrogram))
        .route("/api/v1/ws", get(ws::ws))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(contract::limit_uri_length))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    // The path only: query strings may carry a token.
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                // A 5xx is logged where its cause is known (ApiError, the store's rate-limited warnings), not once
                // more per answer: a failing disk must not log a line per request.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Answer of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database does not answer or cannot be written (disk full, read-only, the
    /// file deleted or replaced while running).
    pub status: &'static str,
    pub version: &'static str,
    /// `ok`, or what is wrong with the database and how to fix it.
    pub database: String,
}

/// Liveness and database health (no authentication). Cheap: no write unless writes are already failing.
#[utoipa::path(get, path = "/api/v1/health", tag = "service",
    responses((status = 200, body = Health), (status = 503, description = "Database degraded", body = Health)))]
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    let version = env!("CARGO_PKG_VERSION");
    match app.database_health().await {
        DatabaseHealth::Ok => (StatusCode::OK, Json(Health { status: "ok", version, database: "ok".into() })),
        // Not logged here (health is polled): the store warns about failing writes, rate-limited.
        DatabaseHealth::Degraded(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "degraded", version, database: reason }))
        }
    }
}

/// Prometheus metrics in the text exposition format (the admin or the metrics token); see `crate::metrics`.
#[utoipa::path(get, path = "/metrics", tag = "service", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics_text(State(app): State<AppState>, _auth: auth::MetricsAuth) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let stats = app.stats(now).await?;
    let backlog = app.webhook_backlog().await?;
    let oldest_age = backlog.oldest_created_at.and_then(|oldest| (now - oldest).to_std().ok()).unwrap_or_default();
    crate::metrics::set_webhook_backlog(backlog.pending, oldest_age);
    let body = crate::metrics::render(crate::metrics::install(), &stats.counts_by_state);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// The OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "downloader2", description = "Fetches music albums for a catalog server."),
    paths(
        health, openapi_json, metrics_text,
        tickets::create_ticket, tickets::get_ticket, tickets::list_tickets, tickets::cancel_ticket,
        admin::approve, admin::reject, admin::retry, admin::force_search, admin::stats, admin::config,
        admin::candidate_files, admin::webhook, verification::list, verification::remove,
        verification::spectrogram,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerSecurity, &CommonAnswers),
)]
pub struct ApiDoc;
