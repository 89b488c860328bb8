//! The scheduler: claims ready tickets from the store (priority, then age; `next_attempt_at` respected; a leased
//! claim, so no ticket is worked on by two tasks) and carries each one through its stages in one task, under the
//! global limits. It wakes at once on new work (`App::work_available`), when a task ends, and every
//! `check_interval_secs` otherwise.
//!
//! Limits are slots per stage class: searches ([`SEARCH_SLOTS`]), downloads (`max_parallel_downloads`),
//! conversions (`max_parallel_conversions`), placements ([`PLACE_SLOTS`]). A ticket enters a working state of a
//! class (`searching`/`matching`, `downloading`, `converting`, `placing`) only while holding one of its slots, so
//! the states the API shows never exceed the limits: a finished download waits in `downloading` for a conversion
//! slot rather than piling up in `converting`.
//!
//! Failures become a persisted retry (the ticket stays in its state with `next_attempt_at`, gives its slot back,
//! and its history shows the retry and, when it is taken up again, a `resumed` note) or `failed`, as
//! `retry::plan_failure` decides. On start-up, leases of the previous process are dropped and every working
//! ticket is claimed again: its stage restarts from its last safe point (see each stage).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::reaper::{reap_torrents, release_work_dir};
use super::retry::{plan_failure, FailurePlan};
use super::{run_stage, unless_cancelled, Advance, StageContext, StageError};
use crate::app::App;
use crate::events::TicketEvent;
use crate::models::{occupies_slot, StageClass, StateKind, TicketState};
use crate::queue::{Lease, StoreError, TicketRecord, TransitionExtras, Transitioned};

/// Searches (and matchings) at once: indexers rate-limit, and the searcher also spaces its requests.
pub const SEARCH_SLOTS: usize = 2;
/// Placements at once (disk-bound and short).
pub const PLACE_SLOTS: usize = 2;
/// How long a claim lasts without renewal; renewed every third of it while the task runs.
pub const LEASE: Duration = Duration::from_secs(60);
/// Torrents and work dirs are reaped at most this often (and after every terminal transition).
pub const REAP_INTERVAL: Duration = Duration::from_secs(2);

/// One semaphore per class.
#[derive(Debug)]
struct Slots {
    search: Arc<Semaphore>,
    download: Arc<Semaphore>,
    convert: Arc<Semaphore>,
    place: Arc<Semaphore>,
}

impl Slots {
    fn of(&self, class: StageClass) -> &Arc<Semaphore> {
        match class {
            StageClass::Search => &self.search,
            StageClass::Download => &self.download,
            StageClass::Convert => &self.convert,
            StageClass::Place => &self.place,
        }
    }
}

/// The scheduler of one service process.
pub struct Scheduler {
    app: Arc<App>,
    slots: Arc<Slots>,
    /// This process's lease owner name.
    worker: String,
    /// Wakes the reaper task (notifications coalesce: one pass serves many requests).
    reap_wanted: Arc<Notify>,
}

impl Scheduler {
    /// A scheduler with the limits of the app's configuration.
    pub fn new(app: Arc<App>) -> Scheduler {
        let processing = &app.config.processing;
        let slots = Slots {
            search: Arc::new(Semaphore::new(SEARCH_SLOTS)),
            download: Arc::new(Semaphore::new(processing.max_parallel_downloads.max(1))),
            convert: Arc::new(Semaphore::new(app.config.converter.max_parallel_conversions.max(1))),
            place: Arc::new(Semaphore::new(PLACE_SLOTS)),
        };
        let worker = format!("worker-{}-{}", std::process::id(), Utc::now().timestamp_millis());
        Scheduler { app, slots: Arc::new(slots), worker, reap_wanted: Arc::new(Notify::new()) }
    }

    /// Runs until `shutdown` is cancelled, then stops every ticket task (their tickets stay in their states and
    /// resume at the next start) and returns once they have ended.
    pub async fn run(self, shutdown: CancellationToken) {
        self.recover().await;
        let (app, wanted) = (self.app.clone(), self.reap_wanted.clone());
        self.app.tasks.spawn("reaper", move |stop| reap_when_wanted(app, wanted, stop));
        let mut events = self.app.bus.subscribe();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let interval = Duration::from_secs(self.app.config.processing.check_interval_secs.max(1));
        let mut last_reap: Option<Instant> = None;
        let mut claim = true;
        loop {
            if last_reap.is_none_or(|at| at.elapsed() >= REAP_INTERVAL) {
                self.reap_wanted.notify_one();
                last_reap = Some(Instant::now());
            }
            if claim {
                self.retry_rested().await;
                self.claim_ready(&mut tasks, &shutdown).await;
            }
            claim = tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.app.work_available.notified() => true,
                () = tokio::time::sleep(interval) => true,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => true,
                event = events.recv() => {
                    match event {
                        Ok(TicketEvent::StateChange { ticket_id, new_state, .. }) if new_state.is_terminal() => {
                            self.free_work_dir(ticket_id);
                            self.reap_wanted.notify_one();
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => self.reap_wanted.notify_one(),
                        Err(broadcast::error::RecvError::Closed) => {}
                    }
                    false
                }
            };
        }
        tracing::info!(tasks = tasks.len(), "scheduler stopping");
        while tasks.join_next().await.is_some() {}
    }

    /// Starts a new round of attempts for the tickets that have rested in `failed { retryable: true }` for
    /// `rest_retry_after_secs` (as `POST /retry` would, recorded as done by `scheduler`).
    async fn retry_rested(&self) {
        let rest = self.app.config.processing.rest_retry_after_secs;
        if rest == 0 {
            return;
        }
        let rest = chrono::Duration::seconds(i64::try_from(rest).unwrap_or(i64::MAX));
        let Some(since) = chrono::Utc::now().checked_sub_signed(rest) else { return };
        let rested = match self.app.store.rested_failures(since, 50).await {
            Ok(rested) => rested,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for rested failures");
                return;
            }
        };
        for id in rested {
            match self.app.retry(&id, "scheduler").await {
                Ok(_) => tracing::info!(ticket_id = %id, "retrying a failed ticket after its rest"),
                Err(err) => tracing::debug!(ticket_id = %id, error = %err, "rested ticket not retried"),
            }
        }
    }

    /// Start-up: drop the previous process's leases, its work dirs and verification evidence that no ticket needs
    /// any more, and the metadata-fetch torrents a killed process left in the client.
    async fn recover(&self) {
        match self.app.clients.torrents.poll_all().await {
            Ok(statuses) => {
                for status in statuses.iter().filter(|status| status.ticket_ids.is_empty()) {
                    match self.app.clients.torrents.remove_torrent(&status.hash, true).await {
                        Ok(()) => {
                            tracing::info!(hash = %status.hash, "removed a metadata fetch left by a previous run")
                        }
                        Err(err) => {
                            tracing::warn!(hash = %status.hash, error = %err, "cannot remove a stale metadata fetch")
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "torrent client not reachable at start-up; will retry with the work")
            }
        }
        match self.app.store.release_all_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tickets = n, "resuming tickets a previous run was working on"),
            Err(err) => tracing::error!(error = %err, "cannot release old leases"),
        }
        let placing: Vec<String> = match self.app.store.tickets_in(&[StateKind::Placing]).await {
            Ok(records) => records.into_iter().map(|record| record.ticket.ticket_id).collect(),
            Err(err) => {
                tracing::error!(error = %err, "cannot list placing tickets; keeping every work dir");
                return;
            }
        };
        let work_root = self.app.clients.work_root.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            crate::converter::clean_work_leftovers(&work_root, &|id| placing.iter().any(|kept| kept == id))
        })
        .await;
        match cleaned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "removed work directories of interrupted conversions"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot clean the work directory"),
            Err(err) => tracing::warn!(error = %err, "work directory clean-up failed"),
        }
        match super::reaper::clean_evidence_leftovers(&self.app).await {
            0 => {}
            n => tracing::info!(removed = n, "removed the verification evidence of finished tickets"),
        }
    }

    /// Removes a finished ticket's work dir in the background.
    fn free_work_dir(&self, ticket_id: String) {
        let app = self.app.clone();
        self.app.tasks.spawn("free_work_dir", move |_| async move { release_work_dir(&app.clients, &ticket_id).await });
    }

    /// Claims ready tickets while their classes have free slots.
    async fn claim_ready(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        for class in StageClass::ALL {
            loop {
                let Ok(permit) = self.slots.of(class).clone().try_acquire_owned() else {
                    break;
                };
                match self.app.store.claim_next_ready(&self.worker, class.kinds(), LEASE, Utc::now()).await {
                    Ok(Some((record, lease))) => {
                        let task = TicketTask {
                            app: self.app.clone(),
                            slots: self.slots.clone(),
                            lease,
                            shutdown: shutdown.clone(),
                        };
                        tasks.spawn(task.carry(record, class, permit));
                    }
                    Ok(None) => break,
                    Err(err) => {
                        // A storage problem (disk full...) is already warned by the store, rate-limited.
                        if err.storage_problem().is_some() {
                            tracing::debug!(error = %err, "cannot claim work");
                        } else {
                            tracing::warn!(error = %err, "cannot claim work");
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// The reaper task: one pass over the client's torrents per wake-up, until shutdown.
async fn reap_when_wanted(app: Arc<App>, wanted: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wanted.notified() => {}
        }
        if let Err(err) = reap_torrents(&app, &app.clients).await {
            tracing::debug!(error = %err, "reaping skipped");
        }
    }
}

/// What one ticket's task needs.
struct TicketTask {
    app: Arc<App>,
    slots: Arc<Slots>,
    /// The claim this task works under: every write it makes is fenced by it.
    lease: Lease,
    shutdown: CancellationToken,
}

impl TicketTask {
    /// Carries a claimed ticket through its stages for as long as it has slots and nothing stops it.
    async fn carry(self, record: TicketRecord, class: StageClass, permit: OwnedSemaphorePermit) {
        let id = record.ticket.ticket_id.clone();
        let span = tracing::info_span!("ticket", ticket_id = %id);
        async move {
            let cancel = self.shutdown.child_token();
            self.app.running.register(&id, cancel.clone());
            let ctx = StageContext::new(self.app.clone(), cancel.clone(), self.lease.clone(), record.version);
            let kind = record.state.kind();
            if record.attempts > 0 && occupies_slot(kind) {
                // The end of a retry's wait: the history shows when the ticket took a slot again.
                let note = serde_json::json!({"resumed": {"attempt": record.attempts}});
                if let Err(err) = self.app.store.record_note(&id, kind, &note, &ctx.fence(), Utc::now()).await {
                    tracing::debug!(error = %err, "resume not noted");
                }
            }
            tokio::select! {
                () = self.work_through(&ctx, record, class, permit) => {}
                () = self.keep_lease(&id, &cancel) => {}
            }
            self.app.running.unregister(&id);
            if let Err(err) = self.app.store.release_lease(&id, &self.lease).await {
                tracing::warn!(error = %err, "cannot release the lease (it expires on its own)");
            }
            self.app.work_available.notify_one();
        }
        .instrument(span)
        .await;
    }

    /// Renews the lease until it is lost (then cancels the work: another worker owns the ticket).
    async fn keep_lease(&self, id: &str, cancel: &CancellationToken) {
        loop {
            tokio::time::sleep(LEASE / 3).await;
            match self.app.store.renew_lease(id, &self.lease, LEASE, Utc::now()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("lease lost: stopping work on this ticket");
                    cancel.cancel();
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "cannot renew the lease"),
            }
        }
    }

    async fn work_through(
        &self,
        ctx: &StageContext,
        mut record: TicketRecord,
        mut class: StageClass,
        mut permit: OwnedSemaphorePermit,
    ) {
        let mut _active = crate::metrics::ActiveTask::start(class);
        loop {
            let work = match self.app.store.get_work(&record.ticket.ticket_id).await {
                Ok(work) => work,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the ticket's working data");
                    return;
                }
            };
            let started = std::time::Instant::now();
            let result = run_stage(ctx, &record, work).await;
            crate::metrics::stage_duration(record.state.kind(), started.elapsed());
            let advance = match result {
                Ok(advance) => advance,
                Err(StageError::Stopped) => return,
                Err(err) => {
                    self.record_failure(ctx, &record, err).await;
                    return;
                }
            };
            let next_kind = advance.next.kind();
            let next_class = StageClass::of(next_kind);
            // Entering a working state of another class needs a slot of that class first.
            let mut previous_permit = None;
            if let Some(next) = next_class.filter(|next| *next != class && occupies_slot(next_kind)) {
                let acquired = unless_cancelled(&ctx.cancel, self.slots.of(next).clone().acquire_owned()).await;
                let Ok(Ok(next_permit)) = acquired else {
                    return;
                };
                previous_permit = Some(std::mem::replace(&mut permit, next_permit));
                class = next;
                _active = crate::metrics::ActiveTask::start(class);
            }
            let transitioned = match self.commit(ctx, &record, advance).await {
                Ok(transitioned) => transitioned,
                Err(err) => {
                    tracing::info!(error = %err, "stage result not recorded (the ticket changed meanwhile)");
                    return;
                }
            };
            drop(previous_permit);
            ctx.saw_version(transitioned.record.version);
            record = transitioned.record;
            if ctx.cancel.is_cancelled() {
                return;
            }
            match next_class {
                Some(next) if next == class => {}
                Some(next) => match self.slots.of(next).clone().try_acquire_owned() {
                    Ok(next_permit) => {
                        permit = next_permit;
                        class = next;
                        _active = crate::metrics::ActiveTask::start(class);
                    }
                    // No free slot: the scheduler claims the ticket again when one frees.
                    Err(_) => return,
                },
                None => return,
            }
        }
    }

    /// Writes a stage's result as one transition, fenced by the task's lease and the version it last wrote (refused
    /// if the ticket changed meanwhile, e.g. cancelled, or another worker claimed it), and publishes it.
    async fn commit(
        &self,
        ctx: &StageContext,
        record: &TicketRecord,
        advance: Advance,
    ) -> Result<Transitioned, StoreError> {
        let kind = record.state.kind();
        let downloaded = crate::metrics::finished_download(kind, &advance.next, &advance.work);
        let extras = TransitionExtras {
            attempts: Some(0),
            next_attempt_at: Some(None),
            notes: advance.notes,
            work: Some(advance.work),
        };
        let next = advance.next;
        let fence = ctx.fence();
        let transitioned = self
            .app
            .store
            .transition(&record.ticket.ticket_id, Some(&fence), Utc::now(), extras, move |current| {
                if current.state.kind() == kind {
                    Ok(next)
                } else {
                    Err(format!("ticket is {} now, not {kind}", current.state.kind()))
                }
            })
            .await?;
        crate::metrics::downloaded(downloaded);
        self.app.publish_transition(&transitioned);
        Ok(transitioned)
    }

    /// A retry later, or `failed` (both fenced by the task's lease).
    async fn record_failure(&self, ctx: &StageContext, record: &TicketRecord, err: StageError) {
        let now = Utc::now();
        let kind = record.state.kind();
        let id = record.ticket.ticket_id.as_str();
        let message = err.to_string();
        crate::metrics::stage_error(kind);
        let attempts = u32::try_from(record.attempts.max(0)).unwrap_or(u32::MAX);
        let (retryable, retry_count) =
            match plan_failure(err.is_retryable(), attempts, &self.app.config.processing, now) {
                FailurePlan::RetryAt { attempt, at } => {
                    tracing::warn!(error = %message, attempt, retry_at = %at, "stage failed; retrying later");
                    if let Err(store_err) = self
                        .app
                        .store
                        .schedule_retry(id, kind, i64::from(attempt), at, &message, &ctx.fence(), now)
                        .await
                    {
                        tracing::info!(error = %store_err, "retry not scheduled (the ticket changed meanwhile)");
                    }
                    return;
                }
                FailurePlan::Rest { attempts } => (true, attempts),
                FailurePlan::Fatal => (false, attempts),
            };
        tracing::error!(error = %message, retryable, "stage failed");
        let failed =
            TicketState::Failed { failed_at_state: kind, error: message, retryable, retry_count, failed_at: now };
        let fence = ctx.fence();
        let result = self
            .app
            .store
            .transition(id, Some(&fence), now, TransitionExtras::default(), move |current| {
                if current.state.kind() == kind {
                    Ok(failed)
                } else {
                    Err(format!("ticket is {} now, not {kind}", current.state.kind()))
                }
            })
            .await;
        match result {
            Ok(transitioned) => self.app.publish_transition(&transitioned),
            Err(store_err) => tracing::info!(error = %store_err, "failure not recorded (the ticket changed meanwhile)"),
        }
    }
}
