//! The webhook delivery task: sends the outbox's events (`queue::outbox`) to `[notify] url` through the
//! [`WebhookSender`], one at a time, in commit order (the outbox's `seq`, across all tickets), and records each
//! outcome: a delivered event leaves the outbox, a failed attempt stays at the head with its error and the time of
//! the next attempt (`retry_initial_delay_secs` doubling up to `retry_max_delay_secs`, for as long as it takes).
//! Events behind it wait: "in order" is the simplest promise a receiver can rely on.
//!
//! Delivery is at least once: an event is deleted only after the receiver answered 2xx, so a crash or a lost answer
//! between the two sends it again, with the same `event_id`. It wakes on every commit that wrote an event and on
//! its own timer; it never holds a lock the pipeline needs while waiting for the receiver (the pipeline only ever
//! appends to the outbox), so a receiver that is down or slow never delays a ticket.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::notify::{retry_delay, NotifyError, WebhookSender};
use crate::queue::{OutboxEvent, Store};

/// How often an idle task looks at the outbox without being woken (a safety net: every commit wakes it).
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// The wait before reading the outbox again after the database failed.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// The delivery task of one service.
pub struct WebhookDeliveryTask {
    store: Store,
    sender: WebhookSender,
    initial_delay: Duration,
    max_delay: Duration,
    wake: Arc<tokio::sync::Notify>,
}

/// Why a wait ended.
enum Waited {
    Elapsed,
    Stopped,
}

async fn wait_or_stop(wait: Duration, stop: &CancellationToken) -> Waited {
    tokio::select! {
        () = stop.cancelled() => Waited::Stopped,
        () = tokio::time::sleep(wait) => Waited::Elapsed,
    }
}

impl WebhookDeliveryTask {
    /// The task for `config`, or `None` when no webhook is configured.
    pub fn new(store: Store, config: &NotifyConfig) -> Result<Option<WebhookDeliveryTask>, NotifyError> {
        if !config.enabled() {
            return Ok(None);
        }
        let sender = WebhookSender::new(config)?;
        let initial_delay = Duration::from_secs(config.retry_initial_delay_secs.max(1));
        Ok(Some(WebhookDeliveryTask {
            wake: store.outbox_written(),
            store,
            sender,
            initial_delay,
            max_delay: Duration::from_secs(config.retry_max_delay_secs).max(initial_delay),
        }))
    }

    /// Delivers until `stop` is cancelled. An attempt in flight at that moment is abandoned (the event stays in the
    /// outbox and is sent again by the next start).
    #[tracing::instrument(name = "webhook", skip_all, fields(url = %self.sender.shown_url()))]
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!("webhook delivery started");
        loop {
            let head = match self.store.next_outbox_event().await {
                Ok(head) => head,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the webhook outbox; trying again in 5 s");
                    match wait_or_stop(STORE_RETRY, &stop).await {
                        Waited::Elapsed => continue,
                        Waited::Stopped => break,
                    }
                }
            };
            let Some(head) = head else {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_CHECK) => {}
                }
                continue;
            };
            // Due at `next_attempt_at`; never wait longer than the longest backoff (a clock set back meanwhile).
            let until_due = (head.next_attempt_at - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(self.max_delay);
            if !until_due.is_zero() {
                if let Waited::Stopped = wait_or_stop(until_due, &stop).await {
                    break;
                }
            }
            let delivered = tokio::select! {
                () = stop.cancelled() => break,
                result = self.sender.deliver(&head.event, head.attempts.saturating_add(1), Utc::now()) => result,
            };
            if let Waited::Stopped = self.record(&head, delivered, &stop).await {
                break;
            }
        }
        tracing::info!("webhook delivery stopped");
    }

    /// Records the outcome of one delivery of `head`.
    async fn record(&self, head: &OutboxEvent, delivered: Result<(), NotifyError>, stop: &CancellationToken) -> Waited {
        let event = &head.event;
        let attempt = head.attempts.saturating_add(1);
        match delivered {
            Ok(()) => {
                crate::metrics::webhook_delivered();
                tracing::info!(event_id = %event.event_id, ticket_id = %event.ticket_id, event = %event.event,
                    attempt, "webhook event delivered");
                if let Err(err) = self.store.outbox_delivered(head.seq).await {
                    // It will be sent once more: the receiver drops it by its event id.
                    tracing::warn!(error = %err, event_id = %event.event_id, "delivered webhook event not removed");
                    return wait_or_stop(STORE_RETRY, stop).await;
                }
                Waited::Elapsed
            }
            Err(err) => {
                crate::metrics::webhook_failed_attempt(err.reason());
                let delay = retry_delay(self.initial_delay, self.max_delay, attempt);
                let now = Utc::now();
                let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                tracing::warn!(error = %err, retryable = err.is_retryable(), event_id = %event.event_id,
                    ticket_id = %event.ticket_id, attempt, retry_in_secs = delay.as_secs(),
                    "webhook delivery failed; the event is kept and sent again");
                match self.store.outbox_attempt_failed(head.seq, attempt, next, &err.to_string(), now).await {
                    Ok(()) => Waited::Elapsed,
                    Err(store_err) => {
                        tracing::warn!(error = %store_err, "failed webhook attempt not recorded");
                        wait_or_stop(delay, stop).await
                    }
                }
            }
        }
    }
}
