//! `App`: the configuration, the store, the event bus and (with the pipeline) the stage clients, built once at
//! start and shared as `Arc<App>`. The commands the API calls live here, not in the handlers: each one is a single
//! guarded store transition followed, after the commit, by an event on the bus.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use crate::config::Config;
use crate::events::{EventBus, TicketEvent};
use crate::models::{StateKind, Ticket, TicketState, TicketValidationError, TicketWork};
use crate::processor::{Clients, RunningTickets};
use crate::queue::{CreateOutcome, Store, StoreError, TicketRecord, TransitionExtras, Transitioned};
use crate::server::Tokens;

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
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config.redacted()).finish_non_exhaustive()
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

/// A refusal from inside a transition's decision that the API shows as 422 rather than 409.
const UNPROCESSABLE_PREFIX: &str = "unprocessable:";

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
                return Err(format!("ticket is {}: only a needs_approval ticket can be approved", record.state.kind()));
            };
            let Some(idx) = candidate_idx.or(*recommended_idx) else {
                return Err(format!("{UNPROCESSABLE_PREFIX}no candidate is recommended: give candidate_idx"));
            };
            let Some(selected) = candidates.get(idx) else {
                return Err(format!(
                    "{UNPROCESSABLE_PREFIX}candidate_idx {idx} is out of range (the ticket has {} candidates)",
                    candidates.len()
                ));
            };
            Ok(TicketState::Approved { selected: selected.clone(), approved_by, approved_at: now })
        })
        .await
    }

    /// Rejects a `needs_approval` ticket.
    pub async fn reject(&self, id: &str, reason: String, actor: &str) -> Result<TicketRecord, AppError> {
        let now = Utc::now();
        let rejected_by = actor.to_string();
        self.apply(id, notes(actor), move |record| {
            if record.state.kind() != StateKind::NeedsApproval {
                return Err(format!("ticket is {}: only a needs_approval ticket can be rejected", record.state.kind()));
            }
            Ok(TicketState::Rejected { rejected_by, reason, rejected_at: now })
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
                return Err(format!("ticket is {}: only a failed ticket can be retried", record.state.kind()));
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
                return Err(format!(
                    "ticket is {kind}: force-search is possible from needs_approval, failed or pending"
                ));
            }
            Ok(TicketState::Searching { query, started_at: now })
        })
        .await
    }

    /// One transition plus its event, mapping refusals to API-shaped errors.
    async fn apply<F>(&self, id: &str, extras: TransitionExtras, decide: F) -> Result<TicketRecord, AppError>
    where
        F: FnOnce(&TicketRecord) -> Result<TicketState, String>,
    {
        match self.store.transition(id, None, Utc::now(), extras, decide).await {
            Ok(transitioned) => {
                self.publish_transition(&transitioned);
                Ok(transitioned.record)
            }
            Err(StoreError::Refused { reason, current }) => match reason.strip_prefix(UNPROCESSABLE_PREFIX) {
                Some(message) => {
                    Err(AppError::Unprocessable { field: Some("candidate_idx".into()), message: message.to_string() })
                }
                None => Err(AppError::Conflict { message: reason, current: Some(current) }),
            },
            Err(err) => Err(err.into()),
        }
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
