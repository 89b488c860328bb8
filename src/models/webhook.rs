//! The catalog webhook's event: what one POST reports about one committed transition (the ticket, its new and
//! previous state, the history entry it belongs to, and the state's data, with the completion stats on top for
//! `completed`). Pure data: the store builds it inside the transition's transaction and keeps it in the outbox,
//! `notify` sends it. The event's id and `occurred_at` never change between deliveries; the `timestamp` and
//! `delivery_attempt` of a delivery are added by the sender (see [`WebhookDelivery`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::{CompletionStats, StateKind, TicketState};

/// The states a webhook may report, in the order the documentation lists them (`[notify] events`).
pub const WEBHOOK_STATES: [StateKind; 5] =
    [StateKind::Completed, StateKind::Failed, StateKind::NeedsApproval, StateKind::Cancelled, StateKind::Rejected];

/// One event of the catalog webhook: a ticket entered a state the catalog asked to hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event (a UUID), the same on every delivery of it: the receiver drops duplicates by it.
    pub event_id: String,
    /// What happened: the name of the state the ticket entered (`completed`, `failed`, `needs_approval`,
    /// `cancelled`, `rejected`).
    pub event: StateKind,
    pub ticket_id: String,
    /// The ticket's state after the transition (the same name as `event`).
    pub state: StateKind,
    /// The state it left.
    pub previous_state: StateKind,
    /// The transition's entry in the ticket's history (`GET /api/v1/ticket/{id}`, `history[].seq`).
    pub history_seq: i64,
    /// When the transition committed.
    pub occurred_at: DateTime<Utc>,
    /// `completed` only: what was downloaded, converted and placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<CompletionStats>,
    /// The new state's data (`error` and `retryable` of `failed`, `reason` of `rejected`, the approval reason and
    /// candidate count of `needs_approval`...), without the candidate lists.
    pub details: serde_json::Value,
}

impl WebhookEvent {
    /// The event reporting the transition from `from` to `next`, recorded as history entry `history_seq` at `at`.
    pub fn for_transition(
        event_id: String,
        ticket_id: &str,
        from: StateKind,
        next: &TicketState,
        history_seq: i64,
        at: DateTime<Utc>,
    ) -> WebhookEvent {
        let (stats, details) = match next {
            TicketState::Completed { completed_at, stats } => {
                (Some(stats.clone()), serde_json::json!({ "completed_at": completed_at }))
            }
            TicketState::NeedsApproval { candidates, recommended_idx, confidence, reason, waiting_since } => {
                let recommended_title =
                    recommended_idx.and_then(|idx| candidates.get(idx)).map(|c| c.candidate.title.clone());
                let details = serde_json::json!({
                    "reason": reason,
                    "confidence": confidence,
                    "candidate_count": candidates.len(),
                    "recommended_idx": recommended_idx,
                    "recommended_title": recommended_title,
                    "waiting_since": waiting_since,
                });
                (None, details)
            }
            TicketState::Pending {}
            | TicketState::Searching { .. }
            | TicketState::Matching { .. }
            | TicketState::AutoApproved { .. }
            | TicketState::Approved { .. }
            | TicketState::Downloading { .. }
            | TicketState::Converting { .. }
            | TicketState::Placing { .. }
            | TicketState::Rejected { .. }
            | TicketState::Failed { .. }
            | TicketState::Cancelled { .. } => {
                let mut details = serde_json::to_value(next).unwrap_or_default();
                if let Some(object) = details.as_object_mut() {
                    object.remove("state");
                }
                (None, details)
            }
        };
        WebhookEvent {
            event_id,
            event: next.kind(),
            ticket_id: ticket_id.to_string(),
            state: next.kind(),
            previous_state: from,
            history_seq,
            occurred_at: at,
            stats,
            details,
        }
    }
}

/// The body of one POST: the event plus when this delivery was sent and which attempt it is. Signed as a whole, so
/// the `timestamp` (also in the `X-Downloader2-Timestamp` header) cannot be changed by whoever replays a request.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookDelivery<'a> {
    #[serde(flatten)]
    pub event: &'a WebhookEvent,
    /// When this delivery was sent, in Unix seconds: a receiver refuses requests too far from its clock (replays).
    pub timestamp: i64,
    /// 1 for the first delivery of the event, 2 for the next one...
    pub delivery_attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ApprovalReason, ScoredCandidate, TorrentCandidate};

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn completed_carries_the_stats_and_needs_approval_no_candidate_list() {
        let stats =
            CompletionStats { final_size_bytes: 42, placed_files: vec!["/m/a.ogg".into()], ..Default::default() };
        let completed = TicketState::Completed { completed_at: at(), stats: stats.clone() };
        let event = WebhookEvent::for_transition("e1".into(), "t1", StateKind::Placing, &completed, 8, at());
        assert_eq!(event.stats, Some(stats));
        assert_eq!(
            (event.event, event.state, event.previous_state),
            (completed.kind(), completed.kind(), StateKind::Placing)
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["stats"]["placed_files"][0], "/m/a.ogg");
        assert_eq!(json["event"], "completed");

        let candidate = |title: &str| ScoredCandidate {
            candidate: TorrentCandidate::with_title(title),
            score: 0.5,
            reasoning: String::new(),
            track_mapping: vec![],
            hard_rejects: vec![],
            doubts: vec![],
        };
        let waiting = TicketState::NeedsApproval {
            candidates: vec![candidate("A"), candidate("B")],
            recommended_idx: Some(1),
            confidence: 0.5,
            reason: ApprovalReason::NoExactMatch {},
            waiting_since: at(),
        };
        let event = WebhookEvent::for_transition("e2".into(), "t1", StateKind::Matching, &waiting, 4, at());
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get("stats").is_none());
        assert_eq!(json["details"]["candidate_count"], 2);
        assert_eq!(json["details"]["recommended_title"], "B");
        assert!(json["details"].get("candidates").is_none(), "no candidate list in a webhook: {json}");

        let failed = TicketState::Failed {
            failed_at_state: StateKind::Searching,
            error: "indexer down".into(),
            retryable: true,
            retry_count: 5,
            failed_at: at(),
        };
        let json = serde_json::to_value(WebhookEvent::for_transition(
            "e3".into(),
            "t1",
            StateKind::Searching,
            &failed,
            3,
            at(),
        ))
        .unwrap();
        assert_eq!(json["details"]["error"], "indexer down");
        assert_eq!(json["details"]["retryable"], true);
        assert!(json["details"].get("state").is_none());
    }

    #[test]
    fn a_delivery_is_the_event_with_its_timestamp_and_attempt() {
        let cancelled = TicketState::Cancelled { cancelled_at: at() };
        let event = WebhookEvent::for_transition("e4".into(), "t9", StateKind::Pending, &cancelled, 2, at());
        let body =
            serde_json::to_value(WebhookDelivery { event: &event, timestamp: 1_800_000_100, delivery_attempt: 3 })
                .unwrap();
        assert_eq!(body["event_id"], "e4");
        assert_eq!(body["ticket_id"], "t9");
        assert_eq!(body["timestamp"], 1_800_000_100_i64);
        assert_eq!(body["delivery_attempt"], 3);
        assert_eq!(body["history_seq"], 2);
    }
}
