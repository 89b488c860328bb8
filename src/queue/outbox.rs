//! The catalog webhook's outbox (table `webhook_outbox`): every SQL statement about webhook events. A row is
//! inserted by `Store::transition` inside the transition's own transaction (so an event exists if and only if its
//! transition committed, whatever kills the process), read in `seq` order by the delivery task
//! (`processor::webhook`), marked as a failed attempt with the time of the next one, and deleted once the receiver
//! accepted it. Nothing here sends anything or decides a backoff.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};

use super::storage::WriteTx;
use super::store::{from_millis, to_millis, Store, StoreError};
use crate::models::{StateKind, WebhookEvent};

/// Longest error text kept for a failed attempt (the admin page shows it).
const MAX_ERROR_LEN: usize = 500;

/// A webhook event waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Delivery order (commit order).
    pub seq: i64,
    pub event: WebhookEvent,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not to be tried before this.
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// How the last attempt failed.
    pub last_error: Option<String>,
}

/// What waits in the outbox: for `/metrics` and the admin page.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OutboxBacklog {
    /// Events not delivered yet.
    pub pending: i64,
    /// When the oldest of them was committed.
    pub oldest_created_at: Option<DateTime<Utc>>,
    /// The event delivered next (all others wait for it).
    pub head: Option<OutboxHead>,
}

/// The next event to deliver, as the admin page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OutboxHead {
    pub event_id: String,
    pub ticket_id: String,
    pub event: StateKind,
    /// Failed deliveries so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// How the last delivery failed (no secret, no URL credentials).
    pub last_error: Option<String>,
}

/// Inserts `event` into the outbox, on the caller's transaction connection.
pub(super) async fn insert_event(
    tx: &mut SqliteConnection,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event_json = serde_json::to_string(event)
        .map_err(|err| StoreError::Corrupt { id: event.ticket_id.clone(), message: err.to_string() })?;
    sqlx::query(
        "INSERT INTO webhook_outbox (event_id, ticket_id, event, history_seq, event_json, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )
    .bind(&event.event_id)
    .bind(&event.ticket_id)
    .bind(event.event.as_str())
    .bind(event.history_seq)
    .bind(event_json)
    .bind(to_millis(now))
    .execute(tx)
    .await?;
    Ok(())
}

const SELECT_OUTBOX: &str = "SELECT seq, event_json, attempts, next_attempt_at, last_attempt_at, last_error
                             FROM webhook_outbox";

fn outbox_event_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<OutboxEvent, StoreError> {
    let seq: i64 = row.try_get("seq")?;
    let event_json: String = row.try_get("event_json")?;
    let event = serde_json::from_str(&event_json)
        .map_err(|err| StoreError::Corrupt { id: format!("webhook event #{seq}"), message: err.to_string() })?;
    Ok(OutboxEvent {
        seq,
        event,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?),
        last_attempt_at: row.try_get::<Option<i64>, _>("last_attempt_at")?.map(from_millis),
        last_error: row.try_get("last_error")?,
    })
}

impl Store {
    /// Makes every later transition into one of `kinds` write a webhook event into the outbox, in its transaction
    /// (`[notify] events`; none without a webhook). Call once, before the store is shared.
    pub fn with_webhook_events(mut self, kinds: impl IntoIterator<Item = StateKind>) -> Store {
        self.webhook_events = std::sync::Arc::new(kinds.into_iter().collect());
        self
    }

    /// Woken after each committed transition that wrote a webhook event.
    pub fn outbox_written(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox_written.clone()
    }

    /// The next event to deliver (the lowest `seq`), due or not.
    pub async fn next_outbox_event(&self) -> Result<Option<OutboxEvent>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_OUTBOX} ORDER BY seq LIMIT 1")).fetch_optional(&self.pool).await?;
        row.as_ref().map(outbox_event_from_row).transpose()
    }

    /// Every event waiting, in delivery order (tests and diagnostics; the outbox is small when a receiver is up).
    pub async fn outbox_events(&self) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_OUTBOX} ORDER BY seq")).fetch_all(&self.pool).await?;
        rows.iter().map(outbox_event_from_row).collect()
    }

    /// Removes a delivered event.
    pub async fn outbox_delivered(&self, seq: i64) -> Result<(), StoreError> {
        self.outbox_write(sqlx::query("DELETE FROM webhook_outbox WHERE seq = ?1").bind(seq)).await
    }

    /// Records a failed delivery of event `seq`: its attempt count, the error and when to try again.
    pub async fn outbox_attempt_failed(
        &self,
        seq: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        self.outbox_write(
            sqlx::query(
                "UPDATE webhook_outbox SET attempts = ?1, next_attempt_at = ?2, last_attempt_at = ?3, last_error = ?4
                 WHERE seq = ?5",
            )
            .bind(i64::from(attempts))
            .bind(to_millis(next_attempt_at))
            .bind(to_millis(now))
            .bind(error)
            .bind(seq),
        )
        .await
    }

    /// How many events wait, since when, and the next one.
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS pending, MIN(created_at) AS oldest FROM webhook_outbox")
            .fetch_one(&self.pool)
            .await?;
        let head = self.next_outbox_event().await?.map(|head| OutboxHead {
            event_id: head.event.event_id,
            ticket_id: head.event.ticket_id,
            event: head.event.event,
            attempts: head.attempts,
            next_attempt_at: head.next_attempt_at,
            last_attempt_at: head.last_attempt_at,
            last_error: head.last_error,
        });
        Ok(OutboxBacklog {
            pending: row.try_get("pending")?,
            oldest_created_at: row.try_get::<Option<i64>, _>("oldest")?.map(from_millis),
            head,
        })
    }

    /// One write statement of the outbox in its own `BEGIN IMMEDIATE` transaction (queued behind the other
    /// writers of this process).
    async fn outbox_write<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = query.execute(&mut *tx).await.map(|_| ()).map_err(StoreError::from);
        tx.finish(result, &self.storage).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::models::{Ticket, TicketState};
    use crate::queue::TransitionExtras;

    async fn store_reporting(kinds: &[StateKind]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("test.db")).await.unwrap().with_webhook_events(kinds.iter().copied());
        (dir, store)
    }

    fn ticket(id: &str) -> Ticket {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ticket.json");
        let mut ticket: Ticket = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        ticket.ticket_id = id.to_string();
        ticket
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    async fn go(store: &Store, id: &str, secs: i64, state: TicketState) -> Result<(), StoreError> {
        store.transition(id, None, at(secs), TransitionExtras::default(), move |_| Ok(state)).await.map(|_| ())
    }

    #[tokio::test]
    async fn only_committed_transitions_into_configured_states_write_an_event_in_commit_order() {
        let (_dir, store) = store_reporting(&[StateKind::Cancelled, StateKind::Failed]).await;
        for id in ["a", "b", "c"] {
            store.create_ticket(&ticket(id), at(0)).await.unwrap();
        }
        let woken = store.outbox_written();
        go(&store, "b", 1, TicketState::Cancelled { cancelled_at: at(1) }).await.unwrap();
        // The wake-up is kept until the delivery task waits for it.
        tokio::time::timeout(std::time::Duration::from_secs(5), woken.notified()).await.unwrap();
        go(&store, "a", 2, TicketState::Searching { query: None, started_at: at(2) }).await.unwrap();
        // Refused and illegal transitions commit nothing, so they report nothing.
        let refused = store.transition("c", None, at(3), TransitionExtras::default(), |_| Err("no".to_string())).await;
        assert!(matches!(refused, Err(StoreError::Refused { .. })));
        let illegal = go(&store, "b", 3, TicketState::Cancelled { cancelled_at: at(3) }).await;
        assert!(matches!(illegal, Err(StoreError::IllegalTransition { .. })), "{illegal:?}");
        let failed = TicketState::Failed {
            failed_at_state: StateKind::Searching,
            error: "indexer down".into(),
            retryable: true,
            retry_count: 5,
            failed_at: at(4),
        };
        go(&store, "a", 4, failed).await.unwrap();
        // Nanoseconds: the history keeps milliseconds, and the event must name the same instant.
        let precise = at(5) + chrono::Duration::nanoseconds(123_456_789);
        store
            .transition("c", None, precise, TransitionExtras::default(), move |_| {
                Ok(TicketState::Cancelled { cancelled_at: precise })
            })
            .await
            .unwrap();

        let events = store.outbox_events().await.unwrap();
        let reported: Vec<(&str, StateKind)> =
            events.iter().map(|e| (e.event.ticket_id.as_str(), e.event.event)).collect();
        assert_eq!(reported, [("b", StateKind::Cancelled), ("a", StateKind::Failed), ("c", StateKind::Cancelled)]);
        assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        for event in &events {
            let history = store.get_history(&event.event.ticket_id).await.unwrap();
            let entry = history.iter().find(|entry| entry.seq == event.event.history_seq).unwrap();
            assert_eq!(entry.to_state, event.event.state, "the event names its history entry");
            assert_eq!(Some(event.event.previous_state), entry.from_state);
            assert_eq!(entry.at, event.event.occurred_at);
            assert_eq!(event.attempts, 0);
            assert_eq!(event.next_attempt_at, event.event.occurred_at, "due at once");
        }
        let mut ids: Vec<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3, "unique event ids");
    }

    #[tokio::test]
    async fn a_store_without_webhook_events_writes_none() {
        let (_dir, store) = store_reporting(&[]).await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        go(&store, "a", 1, TicketState::Cancelled { cancelled_at: at(1) }).await.unwrap();
        assert_eq!(
            store.outbox_backlog().await.unwrap(),
            OutboxBacklog { pending: 0, oldest_created_at: None, head: None }
        );
    }

    #[tokio::test]
    async fn failed_attempts_are_recorded_and_a_delivered_event_leaves_the_outbox() {
        let (_dir, store) = store_reporting(&[StateKind::Cancelled]).await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        store.create_ticket(&ticket("b"), at(0)).await.unwrap();
        go(&store, "a", 1, TicketState::Cancelled { cancelled_at: at(1) }).await.unwrap();
        go(&store, "b", 2, TicketState::Cancelled { cancelled_at: at(2) }).await.unwrap();
        let head = store.next_outbox_event().await.unwrap().unwrap();
        assert_eq!(head.event.ticket_id, "a");
        let long_error = format!("connection refused {}", "x".repeat(2000));
        store.outbox_attempt_failed(head.seq, 1, at(11), &long_error, at(10)).await.unwrap();
        let backlog = store.outbox_backlog().await.unwrap();
        assert_eq!(backlog.pending, 2);
        assert_eq!(backlog.oldest_created_at, Some(at(1)));
        let shown = backlog.head.unwrap();
        assert_eq!((shown.ticket_id.as_str(), shown.attempts), ("a", 1));
        assert_eq!(shown.next_attempt_at, at(11));
        assert_eq!(shown.last_attempt_at, Some(at(10)));
        let error = shown.last_error.unwrap();
        assert!(error.starts_with("connection refused") && error.chars().count() == MAX_ERROR_LEN, "{error}");
        // The same event stays at the head (in order) until it is delivered.
        assert_eq!(store.next_outbox_event().await.unwrap().unwrap().event.event_id, head.event.event_id);
        store.outbox_delivered(head.seq).await.unwrap();
        let next = store.next_outbox_event().await.unwrap().unwrap();
        assert_eq!(next.event.ticket_id, "b");
        store.outbox_delivered(next.seq).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap().pending, 0);
        assert!(store.next_outbox_event().await.unwrap().is_none());
    }
}
