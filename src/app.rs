//! `App`: the configuration, the store, the event bus, the stage clients ([`Clients`]) and the registry of running
//! tickets' cancellation tokens ([`RunningTickets`]), built once at start and shared as `Arc<App>`. The commands the
//! API calls live here, not in the handlers: each one is a single guarded store transition followed, after the
//! commit, by an event on the bus. It sits above the queue and the clients and below the processor and the API:
//! it never imports either.

pub mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Tokens};
use crate::converter::Converter;
use crate::events::{EventBus, TicketEvent};
use crate::llm::LlmProvider;
use crate::models::{StateKind, Ticket, TicketState, TicketValidationError, TicketWork};
use crate::queue::{
    CreateOutcome, DatabaseHealth, Fence, OutboxBacklog, Store, StoreError, StoreStats, TicketEventRecord,
    TicketRecord, TicketSummary, TransitionExtras, Transitioned,
};
use crate::searcher::Searcher;
use crate::torrent_client::TorrentClient;

pub use tasks::Tasks;

/// The running service's shared state.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub bus: EventBus,
    /// The effective bearer tokens (configured or generated).
    pub tokens: Tokens,
    /// Woken whenever a ticket becomes ready for work, so the scheduler does not wait for its next tick.
    pub work_available: Arc<Notify>,
    /// The qbittorrent-nox this service supervises (when `[qbittorrent] url` is empty); stopped with the service.
    pub managed_qbittorrent: tokio::sync::Mutex<Option<crate::torrent_client::ManagedQbittorrent>>,
    /// The stage clients (searcher, torrent client, converter), shared by every ticket.
    pub clients: Arc<Clients>,
    /// Cancellation tokens of the tickets being worked on (`DELETE` stops their work at once).
    pub running: RunningTickets,
    /// Every background task of the service, named, stopped and joined at shutdown.
    pub tasks: Tasks,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config.redacted()).finish_non_exhaustive()
    }
}

/// The external systems the stages drive, built once at start-up. Each is shared by every ticket: the searcher's
/// rate limit and caches, the torrent client's session and stall tracking, and the converter's ffmpeg slots live
/// inside them.
pub struct Clients {
    pub searcher: Arc<dyn Searcher>,
    pub torrents: Arc<dyn TorrentClient>,
    pub converter: Arc<dyn Converter>,
    /// Where the converter keeps `d2-work-<ticket id>` directories.
    pub work_root: PathBuf,
    /// The optional LLM second opinion (`[matcher] llm_provider`); `None` with `none`.
    pub llm: Option<Arc<dyn LlmProvider>>,
    /// Held while a ticket joins a torrent (`add_torrent`) and while the reaper decides to remove one, so a torrent
    /// is never removed between another ticket's add and its download.
    pub torrent_membership: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("work_root", &self.work_root).finish_non_exhaustive()
    }
}

impl Clients {
    /// The work directory of a ticket (named by `converter::work_dir_in`).
    pub fn work_dir_for(&self, ticket_id: &str) -> PathBuf {
        crate::converter::work_dir_in(&self.work_root, ticket_id)
    }

    /// Where the audio verifier's spectrograms of a ticket are kept (outside the work dir, which each conversion
    /// starts afresh): removed with the work dir when the ticket ends.
    pub fn evidence_dir_for(&self, ticket_id: &str) -> PathBuf {
        self.work_root.join(EVIDENCE_DIR).join(ticket_id)
    }
}

/// The folder under the work root holding one evidence folder per ticket (see [`Clients::evidence_dir_for`]).
pub const EVIDENCE_DIR: &str = "d2-evidence";

/// Where the spectrogram of file `file_idx` of the release `info_hash` is kept in a ticket's evidence folder
/// (written by `processor::verify`, served by the API).
pub fn spectrogram_path(evidence_dir: &Path, info_hash: &str, file_idx: usize) -> PathBuf {
    evidence_dir.join(format!("{info_hash}-{file_idx}.png"))
}

/// The cancellation tokens of the tickets being worked on, so `DELETE` can stop a ticket's work at once.
#[derive(Debug, Default)]
pub struct RunningTickets {
    tokens: Mutex<HashMap<String, CancellationToken>>,
}

impl RunningTickets {
    /// Registers a ticket's token (replacing a stale one).
    pub fn register(&self, ticket_id: &str, token: CancellationToken) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(ticket_id.to_string(), token);
        }
    }

    /// Forgets a ticket's token when its task ends.
    pub fn unregister(&self, ticket_id: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(ticket_id);
        }
    }

    /// Stops the ticket's running stage, if any. Returns whether one was running.
    pub fn cancel(&self, ticket_id: &str) -> bool {
        let token = self.tokens.lock().ok().and_then(|tokens| tokens.get(ticket_id).cloned());
        match token {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A command that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("ticket {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Validation(#[from] TicketValidationError),
    /// The request is well-formed but does not fit the ticket (e.g. a candidate index out of range).
    #[error("{message}")]
    Unprocessable { field: Option<String>, message: String },
    /// The ticket's current state does not allow the command.
    #[error("{message}")]
    Conflict { message: String, current: Option<Box<TicketState>> },
    #[error(transparent)]
    Store(StoreError),
}

impl AppError {
    /// Whether the caller may try again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Store(err) => err.is_retryable(),
            AppError::NotFound(_)
            | AppError::Validation(_)
            | AppError::Unprocessable { .. }
            | AppError::Conflict { .. } => false,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => AppError::NotFound(id),
            StoreError::IllegalTransition { from, to, current } => {
                AppError::Conflict { message: format!("ticket is {from}: cannot move to {to}"), current: Some(current) }
            }
            StoreError::Refused { reason, current } => AppError::Conflict { message: reason, current: Some(current) },
            other => AppError::Store(other),
        }
    }
}

/// What `create_ticket` did.
#[derive(Debug)]
pub enum CreateResult {
    Created(TicketRecord),
    /// The same ticket was posted before: nothing changed.
    AlreadyExists(TicketRecord),
}

/// Why a command's decision refused the ticket's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// The state does not allow the command (409).
    Conflict(String),
    /// The request does not fit the ticket (422), naming the request field.
    Unprocessable { field: &'static str, message: String },
}

impl App {
    /// Builds the app around an opened store.
    pub fn new(config: Config, store: Store, tokens: Tokens, clients: Arc<Clients>) -> App {
        crate::metrics::install();
        App {
            config,
            store,
            bus: EventBus::new(),
            tokens,
            work_available: Arc::new(Notify::new()),
            managed_qbittorrent: tokio::sync::Mutex::new(None),
            clients,
            running: RunningTickets::default(),
            tasks: Tasks::new(),
        }
    }

    /// Validates and stores a ticket (idempotent on an identical body; 409 on a different one).
    pub async fn create_ticket(&self, ticket: Ticket) -> Result<CreateResult, AppError> {
        ticket.validate(&self.config.placer.allowed_roots)?;
        match self.store.create_ticket(&ticket, Utc::now()).await? {
            CreateOutcome::Created(record) => {
                self.bus.publish(TicketEvent::StateChange {
                    ticket_id: record.ticket.ticket_id.clone(),
                    old_state: StateKind::Pending,
                    new_state: StateKind::Pending,
                    details: Box::new(record.state.clone()),
                });
                self.work_available.notify_one();
                Ok(CreateResult::Created(record))
            }
            CreateOutcome::AlreadyExists(record) => Ok(CreateResult::AlreadyExists(record)),
            CreateOutcome::Conflict(record) => Err(AppError::Conflict {
                message: format!(
                    "ticket {:?} already exists with a different body; post it under a new ticket_id",
                    record.ticket.ticket_id
                ),
                current: Some(Box::new(record.state)),
            }),
        }
    }

    /// Cancels a non-terminal ticket and stops its running stage at once (its torrent, ffmpeg processes and work
    /// dir are then removed by the pipeline).
    pub async fn cancel(&self, id: &str, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let record = self.apply(id, notes(actor), move |_| Ok(TicketState::Cancelled { cancelled_at: now })).await?;
        self.running.cancel(id);
        Ok(record)
    }

    /// Approves a `needs_approval` ticket with the given candidate (default: the recommended one).
    pub async fn approve(&self, id: &str, candidate_idx: Option<usize>, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let approved_by = actor.to_string();
        self.apply(id, notes(actor), move |record| {
            let TicketState::NeedsApproval { candidates, recommended_idx, .. } = &record.state else {
                return Err(Refusal::Conflict(format!(
                    "ticket is {}: only a needs_approval ticket can be approved",
                    record.state.kind()
                )));
            };
            let Some(idx) = candidate_idx.or(*recommended_idx) else {
                return Err(Refusal::Unprocessable {
                    field: "candidate_idx",
                    message: "no candidate is recommended: give candidate_idx".into(),
                });
            };
            let Some(selected) = candidates.get(idx) else {
                return Err(Refusal::Unprocessable {
                    field: "candidate_idx",
                    message: format!(
                        "candidate_idx {idx} is out of range (the ticket has {} candidates)",
                        candidates.len()
                    ),
                });
            };
            Ok(TicketState::Approved { selected: selected.clone(), approved_by: approved_by.clone(), approved_at: now })
        })
        .await
    }

    /// Rejects a `needs_approval` ticket.
    pub async fn reject(&self, id: &str, reason: String, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let rejected_by = actor.to_string();
        self.apply(id, notes(actor), move |record| {
            if record.state.kind() != StateKind::NeedsApproval {
                return Err(Refusal::Conflict(format!(
                    "ticket is {}: only a needs_approval ticket can be rejected",
                    record.state.kind()
                )));
            }
            Ok(TicketState::Rejected { rejected_by: rejected_by.clone(), reason: reason.clone(), rejected_at: now })
        })
        .await
    }

    /// Puts a `failed` ticket back in the queue at its last safe point: a fresh search when nothing was chosen yet,
    /// the download (re-attaching to the torrent) when a candidate was chosen, the conversion when the download
    /// had finished.
    pub async fn retry(&self, id: &str, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let work = self.store.get_work(id).await?;
        let extras = TransitionExtras { attempts: Some(0), next_attempt_at: Some(Some(now)), ..notes(actor) };
        self.apply(id, extras, move |record| {
            let TicketState::Failed { failed_at_state, .. } = &record.state else {
                return Err(Refusal::Conflict(format!(
                    "ticket is {}: only a failed ticket can be retried",
                    record.state.kind()
                )));
            };
            Ok(resume_point(*failed_at_state, &work, now))
        })
        .await
    }

    /// Searches again, optionally with an admin's own query, from `needs_approval`, `failed` or `pending`.
    pub async fn force_search(&self, id: &str, query: Option<String>, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let extras = TransitionExtras { attempts: Some(0), next_attempt_at: Some(Some(now)), ..notes(actor) };
        self.apply(id, extras, move |record| {
            let kind = record.state.kind();
            if !matches!(kind, StateKind::NeedsApproval | StateKind::Failed | StateKind::Pending) {
                return Err(Refusal::Conflict(format!(
                    "ticket is {kind}: force-search is possible from needs_approval, failed or pending"
                )));
            }
            Ok(TicketState::Searching { query: query.clone(), started_at: now })
        })
        .await
    }

    /// One transition plus its event, mapping refusals to API-shaped errors. Fenced by the version read just
    /// before: when another write (a worker's progress, another command) lands in between, the ticket is read
    /// again and `decide` asked again, a few times, so a command never fails only because the pipeline was busy.
    async fn apply<F>(&self, id: &str, extras: TransitionExtras, decide: F) -> Result<TicketRecord, AppError>
    where
        F: Fn(&TicketRecord) -> Result<TicketState, Refusal>,
    {
        const ATTEMPTS: usize = 5;
        // The store only carries a refusal's text; the typed refusal of the last decision is kept here.
        let refusal: std::sync::Mutex<Option<Refusal>> = std::sync::Mutex::new(None);
        let decide = |record: &TicketRecord| {
            decide(record).map_err(|refused| {
                let text = match &refused {
                    Refusal::Conflict(message) | Refusal::Unprocessable { message, .. } => message.clone(),
                };
                if let Ok(mut kept) = refusal.lock() {
                    *kept = Some(refused);
                }
                text
            })
        };
        let mut attempt = 1;
        let result = loop {
            let version = match self.store.get_ticket(id).await? {
                Some(record) => record.version,
                None => return Err(AppError::NotFound(id.to_string())),
            };
            let fence = Fence::Version(version);
            match self.store.transition(id, Some(&fence), Utc::now(), extras.clone(), &decide).await {
                Err(StoreError::VersionConflict { .. }) if attempt < ATTEMPTS => attempt += 1,
                other => break other,
            }
        };
        match result {
            Ok(transitioned) => {
                self.publish_transition(&transitioned);
                Ok(transitioned.record)
            }
            Err(StoreError::Refused { reason, current }) => {
                match refusal.lock().ok().and_then(|mut kept| kept.take()) {
                    Some(Refusal::Unprocessable { field, message }) => {
                        Err(AppError::Unprocessable { field: Some(field.to_string()), message })
                    }
                    Some(Refusal::Conflict(_)) | None => {
                        Err(AppError::Conflict { message: reason, current: Some(current) })
                    }
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    // Queries: everything the API reads goes through these, never through the store directly.

    /// A ticket and its state (`None`: no such ticket).
    pub async fn ticket(&self, id: &str) -> Result<Option<TicketRecord>, AppError> {
        Ok(self.store.get_ticket(id).await?)
    }

    /// A ticket's history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<TicketEventRecord>, AppError> {
        Ok(self.store.get_history(id).await?)
    }

    /// The pipeline's working memory of a ticket (its full search results, the chosen candidate...).
    pub async fn ticket_work(&self, id: &str) -> Result<TicketWork, AppError> {
        Ok(self.store.get_work(id).await?)
    }

    /// One page of the ticket list (total count, the page), filtered by state and by text in artist and album.
    pub async fn list_tickets(
        &self,
        state: Option<StateKind>,
        text: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<TicketSummary>), AppError> {
        Ok(self.store.list_tickets(state, text, limit, offset).await?)
    }

    /// The figures of `GET /stats` at `now`.
    pub async fn stats(&self, now: chrono::DateTime<Utc>) -> Result<StoreStats, AppError> {
        Ok(self.store.stats(now).await?)
    }

    /// What waits in the webhook's outbox.
    pub async fn webhook_backlog(&self) -> Result<OutboxBacklog, AppError> {
        Ok(self.store.outbox_backlog().await?)
    }

    /// The releases the audio verifier refused, newest first.
    pub async fn blocklist(&self) -> Result<Vec<crate::queue::BlocklistEntry>, AppError> {
        Ok(self.store.blocklist().await?)
    }

    /// Removes a release from the blocklist (the admin's decision); whether it was there.
    pub async fn blocklist_remove(&self, info_hash: &crate::models::InfoHash) -> Result<bool, AppError> {
        Ok(self.store.blocklist_remove(info_hash).await?)
    }

    /// Whether the database answers and accepts writes.
    pub async fn database_health(&self) -> DatabaseHealth {
        self.store.health().await
    }

    /// Publishes a committed transition and wakes the scheduler when the ticket has work to do.
    pub fn publish_transition(&self, transitioned: &Transitioned) {
        let record = &transitioned.record;
        crate::metrics::transition(transitioned.from, &record.state);
        self.bus.publish(TicketEvent::StateChange {
            ticket_id: record.ticket.ticket_id.clone(),
            old_state: transitioned.from,
            new_state: record.state.kind(),
            details: Box::new(record.state.clone()),
        });
        // Terminal moves wake the scheduler too: it frees what the ticket held.
        self.work_available.notify_one();
    }
}

/// Where a failed ticket resumes (see `retry`).
fn resume_point(failed_at: StateKind, work: &TicketWork, now: chrono::DateTime<Utc>) -> TicketState {
    let downloaded = work.download_bytes > 0 && work.torrent_hash.is_some();
    match (failed_at, &work.selected) {
        (StateKind::Converting | StateKind::Placing, Some(selected)) if downloaded => TicketState::Converting {
            current_track_idx: 0,
            total_tracks: selected.track_mapping.len(),
            current_track_name: String::new(),
            started_at: now,
        },
        (StateKind::AutoApproved | StateKind::Approved | StateKind::Downloading, Some(_))
        | (StateKind::Converting | StateKind::Placing, Some(_)) => TicketState::Downloading {
            torrent_hash: work.torrent_hash.as_ref().map(ToString::to_string).unwrap_or_default(),
            progress_pct: 0.0,
            download_speed_bps: 0,
            eta_secs: None,
            started_at: now,
        },
        _ => TicketState::Pending {},
    }
}

fn notes(actor: &str) -> TransitionExtras {
    let mut extras = TransitionExtras::default();
    extras.notes.insert("actor".into(), serde_json::Value::String(actor.to_string()));
    extras
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{InfoHash, ScoredCandidate, TorrentCandidate};

    fn chosen() -> ScoredCandidate {
        ScoredCandidate {
            candidate: TorrentCandidate::with_title("A - B"),
            score: 0.9,
            reasoning: String::new(),
            track_mapping: Vec::new(),
            hard_rejects: Vec::new(),
            doubts: Vec::new(),
        }
    }

    #[test]
    fn retry_resumes_from_the_last_safe_point() {
        let now = Utc::now();
        let hash: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let nothing_chosen = TicketWork::default();
        let chosen_not_added = TicketWork { selected: Some(chosen()), ..TicketWork::default() };
        let downloading = TicketWork { torrent_hash: Some(hash.clone()), ..chosen_not_added.clone() };
        let downloaded = TicketWork { download_bytes: 10, ..downloading.clone() };

        let kind = |failed_at, work: &TicketWork| resume_point(failed_at, work, now).kind();
        assert_eq!(kind(StateKind::Searching, &nothing_chosen), StateKind::Pending, "search again");
        assert_eq!(kind(StateKind::Matching, &downloaded), StateKind::Pending, "matching restarts with a search");
        assert_eq!(kind(StateKind::AutoApproved, &nothing_chosen), StateKind::Pending);
        assert_eq!(kind(StateKind::Downloading, &chosen_not_added), StateKind::Downloading, "add the torrent");
        assert_eq!(kind(StateKind::Downloading, &downloading), StateKind::Downloading, "re-attach");
        assert_eq!(kind(StateKind::Converting, &downloaded), StateKind::Converting, "files are on disk");
        assert_eq!(kind(StateKind::Placing, &downloaded), StateKind::Converting, "outputs may be gone: convert again");
        assert_eq!(kind(StateKind::Converting, &downloading), StateKind::Downloading, "download never finished");
        match resume_point(StateKind::Downloading, &downloading, now) {
            TicketState::Downloading { torrent_hash, .. } => assert_eq!(torrent_hash, hash.to_string()),
            other => panic!("{other:?}"),
        }
    }
}
