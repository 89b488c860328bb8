//! The pipeline: one async function per stage (`search`, `matching`, `download`, `convert`, `place`) that takes a
//! ticket's record and working memory and returns the next state (an [`Advance`]) or a typed [`StageError`]; the
//! [`scheduler`] claims tickets, runs the stages under the global limits, writes every transition and turns
//! failures into persisted retries or `failed` (the retry policy is [`retry`]); the [`reaper`] removes torrents and
//! work directories no live ticket needs any more; [`webhook`] delivers the catalog webhook's outbox;
//! [`llm_refine`] is the LLM step of matching (its answer cache and token budget in the store).
//!
//! Stages never write a transition themselves; the only state they write is progress data of their own state
//! (through [`StageContext::report_progress`]), which creates no history event.

pub mod convert;
pub mod download;
pub mod llm_refine;
pub mod matching;
pub mod place;
pub mod reaper;
pub mod retry;
pub mod scheduler;
pub mod search;
pub mod verify;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::converter::ConvertError;
use crate::events::TicketEvent;
use crate::models::{TicketState, TicketWork};
use crate::placer::PlaceError;
use crate::queue::{Fence, Lease, StoreError, TicketRecord};
use crate::searcher::SearchError;
use crate::torrent_client::TorrentClientError;

pub use scheduler::Scheduler;

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

/// What a stage may use: the app (store, bus, config, clients), the ticket's cancellation token, and the worker's
/// fence on the ticket (its lease and the version it last wrote), which every write of the ticket passes.
#[derive(Clone)]
pub struct StageContext {
    pub app: Arc<App>,
    /// Cancelled by `DELETE` on the ticket or by the service stopping.
    pub cancel: CancellationToken,
    /// The worker's lease and the ticket version it last wrote or read; moved on by every write it makes.
    fence: Arc<Mutex<Fence>>,
}

impl StageContext {
    /// The context of a claimed ticket: `lease` from the claim, `version` the claimed record's.
    pub fn new(app: Arc<App>, cancel: CancellationToken, lease: Lease, version: i64) -> StageContext {
        StageContext { app, cancel, fence: Arc::new(Mutex::new(Fence::Lease { version, lease })) }
    }

    /// The fence the next write of the ticket passes.
    pub fn fence(&self) -> Fence {
        match self.fence.lock() {
            Ok(fence) => fence.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records the ticket version a write of this worker produced.
    pub fn saw_version(&self, version: i64) {
        let mut fence = match self.fence.lock() {
            Ok(fence) => fence,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Fence::Lease { version: known, .. } = &mut *fence {
            *known = version;
        }
    }

    /// Writes new data for the ticket's current state (no history event) and publishes a progress event.
    pub async fn report_progress(&self, ticket_id: &str, state: &TicketState, progress_pct: f64) {
        match self.app.store.update_state_data(ticket_id, state, &self.fence(), Utc::now()).await {
            Ok(record) => {
                self.saw_version(record.version);
                self.app.bus.publish(TicketEvent::Progress { ticket_id: ticket_id.to_string(), progress_pct })
            }
            Err(err @ StoreError::LeaseLost { .. }) => {
                tracing::warn!(error = %err, "progress not recorded: stopping work on this ticket");
                self.cancel.cancel();
            }
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
