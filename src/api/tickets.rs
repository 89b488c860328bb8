//! The catalog's routes: create, read, list and cancel tickets. Handlers only translate HTTP to `App` commands.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{CatalogAuth, Role};
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::app::CreateResult;
use crate::matcher::review::{review_candidate, CandidateReview};
use crate::models::{StateKind, Ticket, TicketState};
use crate::queue::{TicketEventRecord, TicketRecord, TicketSummary};

/// Largest page of `GET /tickets`.
pub const MAX_LIST_LIMIT: i64 = 500;
const DEFAULT_LIST_LIMIT: i64 = 50;

/// Answer of `POST /ticket`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedTicket {
    pub ticket_id: String,
    pub state: TicketState,
}

/// Answer of `GET /ticket/{id}` (and of the commands that change a ticket).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    pub ticket_id: String,
    pub ticket: Ticket,
    pub state: TicketState,
    /// Every transition, oldest first (only on `GET /ticket/{id}`). A `needs_approval` event shows how many
    /// candidates it had (`candidate_count`), not the list again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<TicketEventRecord>>,
    /// For `needs_approval` (only on `GET /ticket/{id}`): each candidate laid out for the admin, in the order of
    /// the state's `candidates` - quality, and every ticket track against its file with the size-derived duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<Vec<CandidateReview>>,
    /// Every release the audio verifier checked for this ticket, oldest first: per file its verdict, reason,
    /// cut-off, loudness (only on `GET /ticket/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifications: Option<Vec<crate::models::verification::ReleaseVerification>>,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TicketView {
    pub fn from_record(record: TicketRecord, history: Option<Vec<TicketEventRecord>>) -> Self {
        TicketView {
            ticket_id: record.ticket.ticket_id.clone(),
            ticket: record.ticket,
            state: record.state,
            history,
            review: None,
            verifications: None,
            attempts: record.attempts,
            next_attempt_at: record.next_attempt_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// Query of `GET /tickets`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tickets in this state (empty: all); the document lists the state names.
    #[param(nullable = false)]
    pub state: Option<String>,
    /// Only tickets whose artist or album contains this text (case-insensitive).
    #[param(nullable = false)]
    pub q: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500, nullable = false)]
    pub limit: Option<i64>,
    /// Tickets to skip (default 0).
    #[param(minimum = 0, nullable = false)]
    pub offset: Option<i64>,
}

/// Answer of `GET /tickets`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketList {
    /// How many tickets match the filter (all pages).
    pub total: i64,
    pub tickets: Vec<TicketSummary>,
}

/// Create a ticket.
#[utoipa::path(post, path = "/api/v1/ticket", request_body = Ticket, tag = "tickets",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedTicket),
        (status = 200, description = "The same ticket was posted before", body = CreatedTicket),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 409, description = "Same ticket_id, different body", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid ticket", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(ticket_id = %ticket.ticket_id))]
pub async fn create_ticket(
    State(app): State<AppState>,
    _auth: CatalogAuth,
    JsonBody(ticket): JsonBody<Ticket>,
) -> Result<(StatusCode, Json<CreatedTicket>), ApiError> {
    let (status, record) = match app.create_ticket(ticket).await? {
        CreateResult::Created(record) => {
            tracing::info!("ticket created");
            (StatusCode::CREATED, record)
        }
        CreateResult::AlreadyExists(record) => (StatusCode::OK, record),
    };
    Ok((status, Json(CreatedTicket { ticket_id: record.ticket.ticket_id, state: record.state })))
}

/// A ticket, its state and its history.
#[utoipa::path(get, path = "/api/v1/ticket/{id}", tag = "tickets", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody)))]
#[tracing::instrument(skip(app, _auth))]
pub async fn get_ticket(
    State(app): State<AppState>,
    _auth: CatalogAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TicketView>, ApiError> {
    let record = app.ticket(&id).await?;
    let record = record.ok_or_else(|| ApiError::not_found(format!("ticket {id:?} not found")))?;
    let history = app.history(&id).await?;
    let history = history.into_iter().map(with_candidates_counted).collect();
    let review = match &record.state {
        TicketState::NeedsApproval { candidates, .. } => {
            Some(candidates.iter().map(|scored| review_candidate(&record.ticket, scored)).collect())
        }
        _ => None,
    };
    let verifications = app.ticket_work(&id).await?.verifications;
    Ok(Json(TicketView {
        review,
        verifications: Some(verifications),
        ..TicketView::from_record(record, Some(history))
    }))
}

/// A history event as `GET /ticket/{id}` shows it: a candidate list in its details is replaced by its length.
fn with_candidates_counted(mut event: TicketEventRecord) -> TicketEventRecord {
    if let Some(details) = event.details.as_object_mut() {
        if let Some(count) = details.get("candidates").and_then(|list| list.as_array()).map(Vec::len) {
            details.remove("candidates");
            details.insert("candidate_count".into(), count.into());
        }
    }
    event
}

/// Tickets, newest first.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = TicketList), (status = 400, body = ErrorBody)))]
pub async fn list_tickets(
    State(app): State<AppState>,
    _auth: CatalogAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TicketList>, ApiError> {
    let state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => Some(StateKind::parse(name).ok_or_else(|| {
            let names: Vec<&str> = StateKind::ALL.iter().map(|kind| kind.as_str()).collect();
            ApiError::bad_request(format!("unknown state {name:?}; one of {}", names.join(", ")))
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must be >= 0"));
    }
    let text = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (total, tickets) = app.list_tickets(state, text, limit, offset).await?;
    Ok(Json(TicketList { total, tickets }))
}

/// Cancel a ticket that is not finished.
#[utoipa::path(delete, path = "/api/v1/ticket/{id}", tag = "tickets", security(("bearer" = [])),
    params(("id" = String, Path, description = "ticket_id")),
    responses((status = 200, body = TicketView), (status = 404, body = ErrorBody),
               (status = 409, description = "Already finished", body = ErrorBody)))]
#[tracing::instrument(skip(app, auth))]
pub async fn cancel_ticket(
    State(app): State<AppState>,
    auth: CatalogAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TicketView>, ApiError> {
    let actor = match auth.0 {
        Role::Admin => "admin",
        Role::Catalog | Role::Metrics => "catalog",
    };
    let record = app.cancel(&id, actor).await?;
    tracing::info!(actor, "ticket cancelled");
    Ok(Json(TicketView::from_record(record, None)))
}
