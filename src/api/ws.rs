//! `GET /api/v1/ws`: the event stream. Authenticated like the API (header, or `?token=` for browsers), optionally
//! filtered by `?ticket_id=`. Each connection has its own receiver on the bounded broadcast bus, so a slow client
//! never blocks the pipeline: when it falls behind it is sent `{"type": "lagged", "missed": N}` and continues.
//! Idle connections are kept alive with pings.
//!
//! Messages carry states and counts, never whole candidate lists (an indexer controls how long those are): the
//! `needs_approval` state is sent with the number of its candidates and the recommended one's title; the
//! candidates themselves are behind `GET /api/v1/ticket/{id}`.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::auth::CatalogAuth;
use super::AppState;
use crate::events::TicketEvent;
use crate::models::{ApprovalReason, StateKind, TicketState};

/// How often an idle connection is pinged.
const PING_INTERVAL: Duration = Duration::from_secs(30);
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
    _auth: CatalogAuth,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let receiver = app.bus.subscribe();
    upgrade.on_upgrade(move |socket| stream_events(socket, receiver, query.ticket_id))
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

async fn stream_events(
    mut socket: WebSocket,
    mut receiver: tokio::sync::broadcast::Receiver<TicketEvent>,
    ticket_filter: Option<String>,
) {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
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
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}
