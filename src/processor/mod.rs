//! The pipeline: one async function per stage (`search`, `matching`, `download`, `convert`, `place`) that takes a
//! ticket's record and working memory and returns the next state (an [`Advance`]) or a typed [`StageError`]; the
//! [`scheduler`] claims tickets, runs the stages under the global limits, writes every transition and turns
//! failures into persisted retries or `failed` (the retry policy is [`retry`]); the [`reaper`] removes torrents and
//! work directories no live ticket needs any more; [`webhook`] delivers the catalog webhook's outbox.
//!
//! Stages never write a transition themselves; the only state they write is progress data of their own state
//! (through [`StageContext::report_progress`]), which creates no history event.

pub mod convert;
pub mod download;
pub mod matching;
pub mod place;
pub mod reaper;
pub mod retry;
pub mod scheduler;
pub mod search;
pub mod verify;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::converter::{ConvertError, Converter};
use crate::events::TicketEvent;
use crate::models::{TicketState, TicketWork};
use crate::placer::PlaceError;
use crate::queue::{StoreError, TicketRecord};
use crate::searcher::{SearchError, Searcher};
use crate::torrent_client::{TorrentClient, TorrentClientError};

pub use scheduler::Scheduler;

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
    pub llm: Option<Arc<dyn crate::matcher::llm::LlmProvider>>,
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
    /// The work directory of a ticket (see `converter::WORK_DIR_PREFIX`).
    pub fn work_dir_for(&self, ticket_id: &str) -> PathBuf {
        self.work_root.join(format!("{}{ticket_id}", crate::converter::WORK_DIR_PREFIX))
    }

    /// Where the audio verifier's spectrograms of a ticket are kept (outside the work dir, which each conversion
    /// starts afresh): removed with the work dir when the ticket ends.
    pub fn evidence_dir_for(&self, ticket_id: &str) -> PathBuf {
        self.work_root.join(EVIDENCE_DIR).join(ticket_id)
    }
}

/// The folder under the work root holding one evidence folder per ticket (see [`Clients::evidence_dir_for`]).
pub const EVIDENCE_DIR: &str = "d2-evidence";

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

/// A stage's result: the state to move to, the working memory to store with it, and notes for the history.
#[derive(Debug, Clone)]
pub struct Advance {
    pub next: TicketState,
    pub work: TicketWork,
    pub notes: BTreeMap<String, serde_json::Value>,
}

impl Advance {
    /// An advance without notes.
    pub fn to(next: TicketState, work: TicketWork) -> Advance {
        Advance { next, work, notes: BTreeMap::new() }
    }

    /// Adds a note to the history event of the transition.
    pub fn note(mut self, key: &str, value: impl Into<serde_json::Value>) -> Advance {
        self.notes.insert(key.to_string(), value.into());
        self
    }
}

/// Why a stage stopped without a next state. The scheduler decides between a retry and `failed` from
/// [`StageError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Torrent(#[from] TorrentClientError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The indexers answered but found nothing: searched again later.
    #[error("no search results for {query:?} (searching again later; or force-search with another query)")]
    NoResults { query: String },
    /// The ticket's stored data does not allow the stage (a bug or a hand-edited database).
    #[error("{0}")]
    Inconsistent(String),
    /// The ticket was cancelled or the service is stopping: nothing to record.
    #[error("stopped")]
    Stopped,
}

impl StageError {
    /// Whether an automatic retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Search(err) => err.is_retryable(),
            StageError::Torrent(err) => err.is_retryable(),
            StageError::Convert(err) => err.is_retryable(),
            StageError::Place(err) => err.is_retryable(),
            StageError::Store(err) => err.is_retryable(),
            StageError::NoResults { .. } => true,
            StageError::Inconsistent(_) | StageError::Stopped => false,
        }
    }
}

/// What a stage may use: the app (store, bus, config), the clients, and the ticket's cancellation token.
#[derive(Clone)]
pub struct StageContext {
    pub app: Arc<App>,
    pub clients: Arc<Clients>,
    /// Cancelled by `DELETE` on the ticket or by the service stopping.
    pub cancel: CancellationToken,
}

impl StageContext {
    /// Writes new data for the ticket's current state (no history event) and publishes a progress event.
    pub async fn report_progress(&self, ticket_id: &str, state: &TicketState, progress_pct: f64) {
        match self.app.store.update_state_data(ticket_id, state, Utc::now()).await {
            Ok(_) => self.app.bus.publish(TicketEvent::Progress { ticket_id: ticket_id.to_string(), progress_pct }),
            Err(err) => tracing::debug!(error = %err, "progress not recorded"),
        }
    }

    /// Fails with `Stopped` once the ticket is cancelled.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.cancel.is_cancelled() {
            Err(StageError::Stopped)
        } else {
            Ok(())
        }
    }
}

/// Runs the stage for the record's current state.
pub async fn run_stage(ctx: &StageContext, record: &TicketRecord, work: TicketWork) -> Result<Advance, StageError> {
    let now = Utc::now();
    match &record.state {
        TicketState::Pending {} => Ok(Advance::to(TicketState::Searching { query: None, started_at: now }, work)),
        TicketState::Searching { .. } => search::search(ctx, record, work).await,
        TicketState::Matching { .. } => matching::match_candidates(ctx, record, work).await,
        TicketState::AutoApproved { .. } | TicketState::Approved { .. } => {
            download::start_download(ctx, record, work).await
        }
        TicketState::Downloading { .. } => download::follow_download(ctx, record, work).await,
        TicketState::Converting { .. } => convert::convert(ctx, record, work).await,
        TicketState::Placing { .. } => place::place(ctx, record, work).await,
        TicketState::NeedsApproval { .. }
        | TicketState::Completed { .. }
        | TicketState::Rejected { .. }
        | TicketState::Failed { .. }
        | TicketState::Cancelled { .. } => {
            Err(StageError::Inconsistent(format!("no stage works on a {} ticket", record.state.kind())))
        }
    }
}

/// Races a future against the ticket's cancellation.
pub async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, StageError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(StageError::Stopped),
        value = work => Ok(value),
    }
}
