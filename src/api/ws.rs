//! `GET /api/v1/ws`: the event stream. Authenticated like the API (header, or `?token=` for browsers), optionally
//! filtered by `?ticket_id=`. Each connection has its own receiver on the bounded broadcast bus, so a slow client
//! never blocks the pipeline: when it falls behind it is sent `{"type": "lagged", "missed": N}` and continues.
//!
//! Messages carry states and counts, never whole candidate lists (an indexer controls how long those are): the
//! `needs_approval` state is sent with the number of its candidates and the recommended one's title; the
//! candidates themselves are behind `GET /api/v1/ticket/{id}`.
//!
//! The client is pinged every `[server] websocket_ping_secs`; one silent (no pong, no message) for two intervals,
//! or not taking a message for `SEND_TIMEOUT`, is closed. The socket is exempt from the HTTP body timeout and holds
//! its connection's slot until it ends; on shutdown it is closed with 1001 (going away).

use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::auth::WebSocketAuth;
use super::error::ApiError;
use super::AppState;
use super::ConnectionSlot;
use crate::events::TicketEvent;
use crate::models::{ApprovalReason, StateKind, TicketState};

/// A client that has not taken a message for this long is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Query of the WebSocket route.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// Only events of this ticket.
    pub ticket_id: Option<String>,
}

/// A message as the contract shows it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsMessage<'a> {
    StateChange {
        ticket_id: &'a str,
        old_state: StateKind,
        new_state: StateKind,
        details: StateDetails<'a>,
    },
    Progress {
        ticket_id: &'a str,
        progress_pct: f64,
    },
    /// A ticket waits for an admin: how many candidates, which is recommended, why.
    NeedsApproval {
        ticket_id: &'a str,
        candidate_count: usize,
        recommended_idx: Option<usize>,
        recommended_title: Option<&'a str>,
        reason: &'a ApprovalReason,
    },
    Lagged {
        missed: u64,
    },
}

/// A state as a WebSocket message carries it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum StateDetails<'a> {
    /// `needs_approval` with its candidates counted.
    NeedsApproval {
        state: StateKind,
        candidate_count: usize,
        recommended_idx: Option<usize>,
        recommended_title: Option<&'a str>,
        confidence: f64,
        reason: &'a ApprovalReason,
        waiting_since: chrono::DateTime<chrono::Utc>,
    },
    /// Any other state, as it is.
    State(&'a TicketState),
}

impl<'a> StateDetails<'a> {
    pub fn of(state: &'a TicketState) -> StateDetails<'a> {
        match state {
            TicketState::NeedsApproval { candidates, recommended_idx, confidence, reason, waiting_since } => {
                StateDetails::NeedsApproval {
                    state: StateKind::NeedsApproval,
                    candidate_count: candidates.len(),
                    recommended_idx: *recommended_idx,
                    recommended_title: recommended_idx
                        .and_then(|idx| candidates.get(idx))
                        .map(|scored| scored.candidate.title.as_str()),
                    confidence: *confidence,
                    reason,
                    waiting_since: *waiting_since,
                }
            }
            other => StateDetails::State(other),
        }
    }
}

/// The messages one bus event becomes (a transition into needs_approval is also announced as such).
pub fn messages_for(event: &TicketEvent) -> Vec<WsMessage<'_>> {
    match event {
        TicketEvent::StateChange { ticket_id, old_state, new_state, details } => {
            let mut messages = vec![WsMessage::StateChange {
                ticket_id,
                old_state: *old_state,
                new_state: *new_state,
                details: StateDetails::of(details),
            }];
            if let TicketState::NeedsApproval { candidates, recommended_idx, reason, .. } = details.as_ref() {
                messages.push(WsMessage::NeedsApproval {
                    ticket_id,
                    candidate_count: candidates.len(),
                    recommended_idx: *recommended_idx,
                    recommended_title: recommended_idx
                        .and_then(|idx| candidates.get(idx))
                        .map(|scored| scored.candidate.title.as_str()),
                    reason,
                });
            }
            messages
        }
        TicketEvent::Progress { ticket_id, progress_pct } => {
            vec![WsMessage::Progress { ticket_id, progress_pct: *progress_pct }]
        }
    }
}

/// Upgrade to a WebSocket streaming ticket events.
pub async fn ws(
    State(app): State<AppState>,
    _auth: WebSocketAuth,
    query: Result<Query<WsQuery>, QueryRejection>,
    slot: Option<Extension<ConnectionSlot>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(ApiError::from)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(rejection.status(), format!("this route is a WebSocket: {}", rejection.body_text()))
    })?;
    let receiver = app.bus.subscribe();
    let ping_every = Duration::from_secs(app.config.server.websocket_ping_secs.max(1));
    let slot = slot.map(|Extension(slot)| slot);
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The socket keeps its connection's slot (never closed for room) until it ends.
        let _in_flight = slot.as_ref().map(ConnectionSlot::hold);
        let shutdown = slot.map(|slot| slot.shutdown).unwrap_or_default();
        stream_events(socket, receiver, query.ticket_id, ping_every, shutdown).await;
    }))
}

async fn send_json(socket: &mut WebSocket, message: &WsMessage<'_>) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => {
            let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(Utf8Bytes::from(text)))).await;
            matches!(sent, Ok(Ok(())))
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise a WebSocket message");
            true
        }
    }
}

/// Sends a close frame (bounded in time: the client may not be reading) and ends.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

async fn stream_events(
    mut socket: WebSocket,
    mut receiver: tokio::sync::broadcast::Receiver<TicketEvent>,
    ticket_filter: Option<String>,
    ping_every: Duration,
    shutdown: CancellationToken,
) {
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    // Anything from the client (a pong, a message) proves it is there; silence for two pings ends the socket.
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Ok(event) => {
                    if ticket_filter.as_deref().is_some_and(|wanted| wanted != event.ticket_id()) {
                        continue;
                    }
                    for message in messages_for(&event) {
                        if !send_json(&mut socket, &message).await {
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    if !send_json(&mut socket, &WsMessage::Lagged { missed }).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => {
                    close(&mut socket, close_code::AWAY, "service stopping").await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= ping_every * 2 {
                    tracing::debug!("WebSocket client silent for two pings: closing");
                    close(&mut socket, close_code::POLICY, "no answer to pings").await;
                    return;
                }
                let pinged = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default()))).await;
                if !matches!(pinged, Ok(Ok(()))) {
                    return;
                }
            }
            () = shutdown.cancelled() => {
                close(&mut socket, close_code::AWAY, "service stopping").await;
                return;
            }
        }
    }
}
