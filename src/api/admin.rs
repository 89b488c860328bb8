//! The admin's routes: approve, reject, retry, force-search, a candidate's whole file list, stats, the effective
//! configuration and the catalog webhook's delivery status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::AdminAuth;
use super::body::OptionalJsonBody;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::tickets::TicketView;
use super::AppState;
use crate::models::{TicketState, TorrentFile};
use crate::queue::{OutboxBacklog, StoreStats};

/// Body of `approve`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ApproveRequest {
    /// Index into the `needs_approval` state's `candidates`; default: the recommended one. A JSON integer (`2`,
    /// or `2.0`, which JSON Schema also calls an integer), 0 to 9999.
    #[serde(default, deserialize_with = "candidate_index")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 9999)]
    pub candidate_idx: Option<usize>,
}

/// Largest `candidate_idx` accepted (far beyond any candidate list).
const MAX_CANDIDATE_IDX: u64 = 9_999;

/// `candidate_idx`: null, or a non-negative integral number up to `MAX_CANDIDATE_IDX` (`3.0` included).
fn candidate_index<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    let integral = match (number.as_u64(), number.as_f64()) {
        (Some(value), _) => Some(value),
        (None, Some(value)) if value.fract() == 0.0 && (0.0..=MAX_CANDIDATE_IDX as f64).contains(&value) => {
            format!("{:.0}", value.abs()).parse().ok()
        }
        (None, _) => None,
    };
    match integral.filter(|value| *value <= MAX_CANDIDATE_IDX).and_then(|value| usize::try_from(value).ok()) {
        Some(index) => Ok(Some(index)),
        None => Err(D::Error::custom(format!("must be an integer from 0 to {MAX_CANDIDATE_IDX}, not {number}"))),
    }
}

/// Body of `reject`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RejectRequest {
    pub reason: Option<String>,
}

/// Body of `force-search`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ForceSearchRequest {
    /// A query to use instead of the ones built from the ticket.
    pub query: Option<String>,
}

/// Longest free text (reason, query) kept.
const MAX_TEXT_LEN: usize = 1000;

fn clean_text(text: Option<String>) -> Option<String> {
    text.map(|t| t.chars().filter(|c| !c.is_control()).take(MAX_TEXT_LEN).collect::<String>())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Approve a `needs_approval` ticket.
#[utoipa::path(post, path = "/api/v1/ticket/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")), request_body(content = ApproveRequest),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody),
              (status = 409, description = "Not waiting for approval", body = ErrorBody),
              (status = 422, description = "candidate_idx out of range", body = ErrorBody)))]
#[tracing::instrument(skip(app, auth, body), fields(actor = %auth.actor))]
pub async fn approve(
    State(app): State<AppState>,
    auth: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<ApproveRequest>,
) -> Result<Json<TicketView>, ApiError> {
    let candidate_idx = body.unwrap_or_default().candidate_idx;
    let record = app.approve(&id, candidate_idx, &auth.actor).await?;
    tracing::info!(?candidate_idx, "ticket approved");
    Ok(Json(TicketView::from_record(record, None)))
}

/// Reject a `needs_approval` ticket.
#[utoipa::path(post, path = "/api/v1/ticket/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")), request_body(content = RejectRequest),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[tracing::instrument(skip(app, auth, body), fields(actor = %auth.actor))]
pub async fn reject(
    State(app): State<AppState>,
    auth: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<RejectRequest>,
) -> Result<Json<TicketView>, ApiError> {
    let reason = clean_text(body.unwrap_or_default().reason).unwrap_or_else(|| "rejected by admin".to_string());
    let record = app.reject(&id, reason, &auth.actor).await?;
    tracing::info!("ticket rejected");
    Ok(Json(TicketView::from_record(record, None)))
}

/// Retry a `failed` ticket.
#[utoipa::path(post, path = "/api/v1/ticket/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[tracing::instrument(skip(app, auth), fields(actor = %auth.actor))]
pub async fn retry(
    State(app): State<AppState>,
    auth: AdminAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TicketView>, ApiError> {
    let record = app.retry(&id, &auth.actor).await?;
    tracing::info!("ticket retried");
    Ok(Json(TicketView::from_record(record, None)))
}

/// Search again (optionally with a custom query) from `needs_approval`, `failed` or `pending`.
#[utoipa::path(post, path = "/api/v1/ticket/{id}/force-search", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")), request_body(content = ForceSearchRequest),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[tracing::instrument(skip(app, auth, body), fields(actor = %auth.actor))]
pub async fn force_search(
    State(app): State<AppState>,
    auth: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<ForceSearchRequest>,
) -> Result<Json<TicketView>, ApiError> {
    let query = clean_text(body.unwrap_or_default().query);
    let record = app.force_search(&id, query, &auth.actor).await?;
    tracing::info!("ticket force-searched");
    Ok(Json(TicketView::from_record(record, None)))
}

/// Largest page of a candidate's file list.
pub const MAX_FILES_PAGE: usize = 1000;
const DEFAULT_FILES_PAGE: usize = 200;

/// Query of `GET /ticket/{id}/candidates/{idx}/files`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FilesQuery {
    /// Files to skip (default 0).
    pub offset: Option<usize>,
    /// Page size, 1-1000 (default 200).
    pub limit: Option<usize>,
}

/// A page of the whole file list kept for one candidate (the ticket view shows only the mapped files and a few
/// others).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CandidateFiles {
    pub ticket_id: String,
    pub candidate_idx: usize,
    pub title: String,
    /// Files in the kept list (all pages).
    pub total: usize,
    /// Files of the torrent not kept at all: of no use to the pipeline (not audio, CUE, image or log) or beyond the
    /// caps on a candidate's list.
    pub files_omitted: u64,
    pub offset: usize,
    pub files: Vec<TorrentFile>,
}

/// The whole kept file list of candidate `idx` of a `needs_approval` ticket, a page at a time.
#[utoipa::path(get, path = "/api/v1/ticket/{id}/candidates/{idx}/files", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id"),
           ("idx" = u32, Path, description = "index into the needs_approval state's candidates"), FilesQuery),
    responses((status = 200, body = CandidateFiles), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Not waiting for approval", body = ErrorBody)))]
pub async fn candidate_files(
    State(app): State<AppState>,
    _auth: AdminAuth,
    ApiPath((id, idx)): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<FilesQuery>,
) -> Result<Json<CandidateFiles>, ApiError> {
    let idx = usize::try_from(idx).unwrap_or(usize::MAX);
    let limit = query.limit.unwrap_or(DEFAULT_FILES_PAGE);
    if !(1..=MAX_FILES_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_FILES_PAGE}")));
    }
    let offset = query.offset.unwrap_or(0);
    let record = app.store.get_ticket(&id).await.map_err(crate::app::AppError::from)?;
    let record = record.ok_or_else(|| ApiError::not_found(format!("ticket {id:?} not found")))?;
    let TicketState::NeedsApproval { candidates, .. } = &record.state else {
        return Err(ApiError {
            current_state: Some(Box::new(record.state.clone())),
            ..ApiError::new(StatusCode::CONFLICT, "candidates are listed while the ticket needs approval")
        });
    };
    let shown = candidates
        .get(idx)
        .ok_or_else(|| ApiError::not_found(format!("the ticket has {} candidates, no #{idx}", candidates.len())))?;
    // The state holds the trimmed candidate; the work keeps the search result with its whole kept list.
    let work = app.store.get_work(&id).await.map_err(crate::app::AppError::from)?;
    let full = work.search_results.iter().find(|c| c.same_release(&shown.candidate)).unwrap_or(&shown.candidate);
    let listed = full.files.as_deref().unwrap_or_default();
    Ok(Json(CandidateFiles {
        ticket_id: id,
        candidate_idx: idx,
        title: full.title.clone(),
        total: listed.len(),
        files_omitted: full.files_omitted,
        offset,
        files: listed.iter().skip(offset).take(limit).cloned().collect(),
    }))
}

/// Answer of `GET /stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    #[serde(flatten)]
    pub store: StoreStats,
}

/// Counts per state, recent throughput and median time per stage.
#[utoipa::path(get, path = "/api/v1/stats", tag = "tickets", security(("bearer" = [])),
    responses((status = 200, body = StatsView)))]
pub async fn stats(State(app): State<AppState>, _auth: super::auth::CatalogAuth) -> Result<Json<StatsView>, ApiError> {
    let store = app.store.stats(chrono::Utc::now()).await.map_err(crate::app::AppError::from)?;
    Ok(Json(StatsView { store }))
}

/// The effective configuration, secrets redacted.
#[utoipa::path(get, path = "/api/v1/config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The configuration, secrets redacted", body = Object)))]
pub async fn config(State(app): State<AppState>, _auth: AdminAuth) -> Json<crate::config::Config> {
    Json(app.config.redacted())
}

/// Answer of `GET /webhook`: whether a webhook is configured and what waits in its outbox.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookStatus {
    /// Whether `[notify] url` is set (events are recorded and delivered).
    pub enabled: bool,
    /// The receiver, without credentials or query.
    pub url: Option<String>,
    /// The states whose entry is reported.
    pub events: Vec<String>,
    #[serde(flatten)]
    pub backlog: OutboxBacklog,
}

/// The catalog webhook: events waiting for delivery, and how the next one's last delivery failed (the admin page
/// shows it in its header).
#[utoipa::path(get, path = "/api/v1/webhook", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = WebhookStatus)))]
pub async fn webhook(State(app): State<AppState>, _auth: AdminAuth) -> Result<Json<WebhookStatus>, ApiError> {
    let backlog = app.store.outbox_backlog().await.map_err(crate::app::AppError::from)?;
    let notify = &app.config.notify;
    let url = notify
        .enabled()
        .then(|| reqwest::Url::parse(&notify.url).ok())
        .flatten()
        .map(|url| crate::notify::shown_url(&url));
    Ok(Json(WebhookStatus {
        enabled: notify.enabled(),
        url,
        events: if notify.enabled() { notify.events.clone() } else { Vec::new() },
        backlog,
    }))
}
