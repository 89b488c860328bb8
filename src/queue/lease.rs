//! The transition fence: what a write of a ticket must prove, checked by the store inside the write's transaction.
//!
//! A worker claims a ticket ([`Lease`]: its owner name and the claim's number, `lease_attempt`, which every claim
//! increments). While it works, the lease may expire (the worker hung, its machine slept) and another worker may
//! claim the ticket; the first one's late writes must then lose, whatever the timing. So every write a worker makes
//! names its lease and the version it last saw ([`Fence::Lease`]), and the store's `UPDATE ... WHERE id = ? AND
//! version = ? AND lease_owner = ? AND lease_attempt = ?` only changes the row while both still hold. API commands,
//! which hold no lease (an admin may cancel a ticket a worker is on), name the version they read
//! ([`Fence::Version`]).
//!
//! The check is plain SQL inside the transaction, so it means the same on PostgreSQL with several worker processes
//! (an `UPDATE`'s `WHERE` is re-evaluated on the row's latest committed version there).

/// A worker's claim on a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The worker (one name per service process).
    pub owner: String,
    /// Which claim of the ticket this is (incremented by every claim, never reused): a worker that lost its lease
    /// and claimed the same ticket again later holds a new attempt, and its old task's writes still lose.
    pub attempt: i64,
}

/// What a ticket write checks in its transaction before it changes the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// A command (the API, the scheduler's rest-retry): the ticket must still be at the version the caller read.
    Version(i64),
    /// A worker's write: the ticket must be at `version` (the last one the worker wrote or read) and still be
    /// claimed by `lease`.
    Lease { version: i64, lease: Lease },
}

impl Fence {
    /// The version the write expects.
    pub fn version(&self) -> i64 {
        match self {
            Fence::Version(version) | Fence::Lease { version, .. } => *version,
        }
    }

    /// The lease the write needs, if it is a worker's.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Fence::Version(_) => None,
            Fence::Lease { lease, .. } => Some(lease),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::models::{StateKind, Ticket, TicketState};
    use crate::queue::{Store, StoreError, TransitionExtras};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn ticket(id: &str) -> Ticket {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ticket.json");
        let mut ticket: Ticket = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        ticket.ticket_id = id.to_string();
        ticket
    }

    fn searching_by(worker: &str, secs: i64) -> TicketState {
        TicketState::Searching { query: Some(format!("written by {worker}")), started_at: at(secs) }
    }

    fn lost(result: Result<impl std::fmt::Debug, StoreError>, lease: &Lease) {
        match result {
            Err(StoreError::LeaseLost { owner, attempt, .. }) => {
                assert_eq!((owner.as_str(), attempt), (lease.owner.as_str(), lease.attempt));
            }
            other => panic!("expected LeaseLost for {lease:?}, got {other:?}"),
        }
    }

    /// Two `Store` handles on one SQLite file (as two worker processes would have): worker A claims the ticket,
    /// stalls past its lease, worker B claims it through the other handle, and both then write at the same time.
    /// A's writes all lose with a typed error, whatever the order; the history holds only B's work.
    #[tokio::test]
    async fn two_stores_racing_on_one_ticket_the_stale_lease_loses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let store_a = Store::open(&path).await.unwrap();
        let store_b = Store::open(&path).await.unwrap();
        store_a.create_ticket(&ticket("race"), at(0)).await.unwrap();
        let duration = Duration::from_secs(30);
        let pending = [StateKind::Pending];

        let (claimed_a, lease_a) =
            store_a.claim_next_ready("worker-a", &pending, duration, at(1)).await.unwrap().unwrap();
        assert!(
            store_b.claim_next_ready("worker-b", &pending, duration, at(10)).await.unwrap().is_none(),
            "a live lease is not claimed again"
        );
        // A stalls past its lease (never renewed); B claims the ticket.
        let (claimed_b, lease_b) =
            store_b.claim_next_ready("worker-b", &pending, duration, at(40)).await.unwrap().unwrap();
        assert_eq!(claimed_a.version, claimed_b.version, "a claim does not move the version: only the lease fences A");
        assert!(lease_b.attempt > lease_a.attempt);

        let fence_a = Fence::Lease { version: claimed_a.version, lease: lease_a.clone() };
        let fence_b = Fence::Lease { version: claimed_b.version, lease: lease_b.clone() };
        let (result_a, result_b) = tokio::join!(
            store_a.transition("race", Some(&fence_a), at(41), TransitionExtras::default(), |_| {
                Ok(searching_by("a", 41))
            }),
            store_b.transition("race", Some(&fence_b), at(41), TransitionExtras::default(), |_| {
                Ok(searching_by("b", 41))
            }),
        );
        lost(result_a, &lease_a);
        let moved = result_b.unwrap();
        assert_eq!(moved.record.state, searching_by("b", 41));

        // Every other write of A loses too, even with the ticket's current version.
        let fresh_a = Fence::Lease { version: moved.record.version, lease: lease_a.clone() };
        lost(store_a.update_state_data("race", &searching_by("a", 42), &fresh_a, at(42)).await, &lease_a);
        lost(
            store_a.schedule_retry("race", StateKind::Searching, 1, at(100), "a failed", &fresh_a, at(42)).await,
            &lease_a,
        );
        lost(
            store_a.record_note("race", StateKind::Searching, &serde_json::json!({"by": "a"}), &fresh_a, at(42)).await,
            &lease_a,
        );
        assert!(!store_a.renew_lease("race", &lease_a, duration, at(42)).await.unwrap(), "A cannot renew B's claim");
        store_a.release_lease("race", &lease_a).await.unwrap();
        assert!(
            store_b.renew_lease("race", &lease_b, duration, at(43)).await.unwrap(),
            "A's release left B's claim alone"
        );

        // B carries on; a later claim by A's worker name is a new attempt, and the stalled task still loses.
        let fence_b = Fence::Lease { version: moved.record.version, lease: lease_b.clone() };
        let progressed = store_b.update_state_data("race", &searching_by("b", 44), &fence_b, at(44)).await.unwrap();
        store_b.release_lease("race", &lease_b).await.unwrap();
        let searching = [StateKind::Searching];
        let (_, lease_a_again) =
            store_a.claim_next_ready("worker-a", &searching, duration, at(45)).await.unwrap().unwrap();
        assert_eq!(lease_a_again.owner, lease_a.owner);
        assert_ne!(lease_a_again.attempt, lease_a.attempt);
        let stale = Fence::Lease { version: progressed.version, lease: lease_a.clone() };
        lost(
            store_a
                .transition("race", Some(&stale), at(46), TransitionExtras::default(), |_| {
                    Ok(TicketState::Cancelled { cancelled_at: at(46) })
                })
                .await,
            &lease_a,
        );

        // The history: the ticket's creation and B's move, nothing of A.
        let history = store_b.get_history("race").await.unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[1].to_state, StateKind::Searching);
        assert_eq!(history[1].details["query"], "written by b");
        let current = store_b.get_ticket("race").await.unwrap().unwrap();
        assert_eq!(current.state, searching_by("b", 44));
    }

    /// A command's fence is the version it read: a write in between is a conflict, not a silent overwrite.
    #[tokio::test]
    async fn a_version_fence_refuses_a_ticket_that_moved_since_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("one.db")).await.unwrap();
        store.create_ticket(&ticket("v"), at(0)).await.unwrap();
        let read = store.get_ticket("v").await.unwrap().unwrap();
        let fence = Fence::Version(read.version);
        store
            .transition("v", Some(&fence), at(1), TransitionExtras::default(), |_| Ok(searching_by("x", 1)))
            .await
            .unwrap();
        let again = store
            .transition("v", Some(&fence), at(2), TransitionExtras::default(), |_| {
                Ok(TicketState::Cancelled { cancelled_at: at(2) })
            })
            .await;
        assert!(matches!(again, Err(StoreError::VersionConflict { .. })), "{again:?}");
        assert_eq!(store.get_history("v").await.unwrap().len(), 2);
    }
}
