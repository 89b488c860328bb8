//! Every SQL statement of the crate: tickets, their event history, transitions as guarded compare-and-set
//! transactions. SQLite in WAL mode with `synchronous = FULL`: a ticket is on disk (and survives a power cut) when
//! `create_ticket` returns, which is before the API answers 201. Writers take the lock up front
//! (`BEGIN IMMEDIATE`) so two transitions of one ticket serialise instead of failing half-way.
//!
//! The store never publishes events and never decides legality on its own: `transitions.rs` does, called here
//! inside the transaction so the check and the write see the same row.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::storage::{DatabaseHealth, StorageProblem, StorageWatch, WriteTx};
use super::transitions::check_transition;
use crate::models::{InfoHash, StateKind, Ticket, TicketState, TicketWork, WebhookEvent};

/// How long a writer waits for SQLite's lock before giving up (then the request is retryable).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the pool (readers run in parallel in WAL mode; writers queue on the lock).
const MAX_CONNECTIONS: u32 = 8;

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ticket {0:?} not found")]
    NotFound(String),
    #[error("illegal transition from {from} to {to}")]
    IllegalTransition { from: StateKind, to: StateKind, current: Box<TicketState> },
    /// The caller's precondition on the current state failed (e.g. an index out of range); `current` is the state.
    #[error("{reason}")]
    Refused { reason: String, current: Box<TicketState> },
    /// Someone else changed the ticket since the caller read it.
    #[error("ticket {id:?} changed concurrently (expected version {expected})")]
    VersionConflict { id: String, expected: i64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create database directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    /// Creating the database file (mode 0600) or making an existing one private failed.
    #[error("cannot create or protect database file {path}: {source}")]
    CreateFile { path: String, source: std::io::Error },
    /// The store is shutting down.
    #[error("the ticket store is closed")]
    Closed,
    #[error("corrupt row for ticket {id:?}: {message}")]
    Corrupt { id: String, message: String },
    /// The storage under the database refuses writes (found before the write was tried: the file is gone).
    #[error("database {path}: {}", problem.describe())]
    Storage { problem: StorageProblem, path: String },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(err) => !matches!(
                err,
                sqlx::Error::Configuration(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)
            ),
            StoreError::VersionConflict { .. } => true,
            StoreError::Storage { problem, .. } => problem.may_clear_by_itself(),
            StoreError::NotFound(_)
            | StoreError::IllegalTransition { .. }
            | StoreError::Refused { .. }
            | StoreError::Migration(_)
            | StoreError::CreateDir { .. }
            | StoreError::CreateFile { .. }
            | StoreError::Closed
            | StoreError::Corrupt { .. } => false,
        }
    }
}

impl StoreError {
    /// What the error says about the disk under the database, if anything (full, read-only, file deleted...).
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        match self {
            StoreError::Database(err) => StorageProblem::classify(err),
            StoreError::Storage { problem, .. } => Some(*problem),
            StoreError::NotFound(_)
            | StoreError::IllegalTransition { .. }
            | StoreError::Refused { .. }
            | StoreError::VersionConflict { .. }
            | StoreError::Migration(_)
            | StoreError::CreateDir { .. }
            | StoreError::CreateFile { .. }
            | StoreError::Closed
            | StoreError::Corrupt { .. } => None,
        }
    }
}

/// A ticket row: the ticket as posted, its current state and its queue bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct TicketRecord {
    pub ticket: Ticket,
    pub state: TicketState,
    /// Incremented by every state write; the compare-and-set token.
    pub version: i64,
    pub priority: i64,
    /// Automatic attempts of the current failing step.
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of a ticket's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketEventRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub from_state: Option<StateKind>,
    pub to_state: StateKind,
    /// The new state's data, plus any notes of the transition.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A line of the ticket list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketSummary {
    pub ticket_id: String,
    pub artist: String,
    pub album: String,
    pub year: Option<i64>,
    pub track_count: i64,
    pub state: StateKind,
    /// Download or conversion progress, when the state has one.
    pub progress_pct: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `create_ticket` did.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(TicketRecord),
    /// The same id with the same body: nothing written.
    AlreadyExists(TicketRecord),
    /// The same id with another body: nothing written.
    Conflict(TicketRecord),
}

/// A committed transition.
#[derive(Debug, Clone)]
pub struct Transitioned {
    pub from: StateKind,
    pub record: TicketRecord,
}

/// Queue bookkeeping written together with a transition.
#[derive(Debug, Clone, Default)]
pub struct TransitionExtras {
    /// Set the attempt counter.
    pub attempts: Option<i64>,
    /// Set (Some(Some)) or clear (Some(None)) the earliest time the ticket may be worked on.
    pub next_attempt_at: Option<Option<DateTime<Utc>>>,
    /// Extra keys merged into the event's details (e.g. the actor, an error).
    pub notes: BTreeMap<String, serde_json::Value>,
    /// Replace the pipeline's working memory (and the held torrent) in the same transaction.
    pub work: Option<TicketWork>,
}

/// Figures for `GET /api/v1/stats`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreStats {
    pub counts_by_state: BTreeMap<String, i64>,
    pub created_last_hour: i64,
    pub created_last_day: i64,
    pub completed_last_hour: i64,
    pub completed_last_day: i64,
    pub failed_last_hour: i64,
    pub failed_last_day: i64,
    /// Median seconds spent in each state, over the most recently completed tickets.
    pub median_secs_by_stage: BTreeMap<String, f64>,
    /// What the optional LLM second opinion was asked and cost (all zero with `llm_provider = "none"`).
    pub llm: LlmUsageStats,
}

/// LLM calls and tokens since the database was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LlmUsageStats {
    /// Answers from the provider.
    pub answered: i64,
    /// Answers served from the cache (no network call).
    pub cached: i64,
    /// Calls that failed (matching went on with the deterministic result).
    pub failed: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// A cached LLM answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLlmAnswer {
    pub answer: serde_json::Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// How many completed tickets the stage medians look at.
const STATS_COMPLETED_SAMPLE: i64 = 1000;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) pool: SqlitePool,
    /// Serialises this process's write transactions before they reach SQLite: SQLite admits one writer at a time,
    /// and a connection that finds the lock taken sleeps in its busy handler (1, 2, 5, 10 ms...), which under
    /// concurrent writes costs far more than queueing here.
    pub(super) writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Requests for the group-commit task that writes new tickets.
    creates: tokio::sync::mpsc::Sender<CreateRequest>,
    /// One connection kept for health checks, so `GET /health` never queues behind the pipeline's queries.
    health: SqlitePool,
    /// The database file's identity and the state of writes (failing since when, with what).
    pub(super) storage: std::sync::Arc<StorageWatch>,
    /// The states whose entry writes a webhook event into the outbox (`[notify] events`; empty without a webhook).
    pub(super) webhook_events: std::sync::Arc<std::collections::BTreeSet<StateKind>>,
    /// Woken after a transition that wrote an outbox event committed (the webhook delivery task waits on it).
    pub(super) outbox_written: std::sync::Arc<tokio::sync::Notify>,
}

/// Appends a same-state history event (`from == to`, `details` as its notes) if ticket `id` is still in `kind`;
/// `false` when it is not.
async fn insert_note(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    kind: StateKind,
    details: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO ticket_events (ticket_id, seq, at, from_kind, to_kind, details)
         SELECT ?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_events WHERE ticket_id = ?1), ?2, ?3, ?3, ?4
         WHERE EXISTS (SELECT 1 FROM tickets WHERE id = ?1 AND state_kind = ?3)",
    )
    .bind(id)
    .bind(to_millis(now))
    .bind(kind.as_str())
    .bind(details.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// The connection options every connection of the service uses (also used by the benchmark's raw inserts).
pub fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

impl Store {
    /// Opens (creating if needed) the database file and runs the embedded migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })?;
        }
        super::storage::make_private(path)
            .map_err(|source| StoreError::CreateFile { path: path.display().to_string(), source })?;
        let pool =
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(connect_options(path)).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let storage = std::sync::Arc::new(StorageWatch::new(path));
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let (creates, requests) = tokio::sync::mpsc::channel(CREATE_QUEUE);
        tokio::spawn(run_create_batches(pool.clone(), writer.clone(), storage.clone(), requests));
        let health =
            SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(connect_options(path)).await?;
        Ok(Store {
            pool,
            writer,
            creates,
            health,
            storage,
            webhook_events: std::sync::Arc::default(),
            outbox_written: std::sync::Arc::default(),
        })
    }

    /// The underlying pool (benchmarks and health checks).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (the WAL is checkpointed by SQLite on the last close).
    pub async fn close(&self) {
        self.health.close().await;
        self.pool.close().await;
    }

    /// A trivial query: is the database answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.health).await?;
        Ok(())
    }

    /// Health for `GET /api/v1/health`, cheap: a `SELECT 1` on the health connection, one `stat` of the database
    /// file (deleted or replaced while running?), one `statvfs` of its filesystem (under 1 MiB free is a full disk)
    /// and, only while writes are failing, a one-row probe write at most every 2 s to notice as soon as they work
    /// again.
    pub async fn health(&self) -> DatabaseHealth {
        if let Err(err) = self.ping().await {
            return DatabaseHealth::Degraded(match err.storage_problem() {
                Some(problem) => problem.describe().to_string(),
                None => format!("the database does not answer: {err}"),
            });
        }
        self.storage.health(&self.health).await
    }

    /// Refuses a write when the database file is gone, and records how an autocommit write went.
    fn autocommit<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        let result = result.map_err(StoreError::from);
        self.storage.note_write(&result);
        result
    }

    /// Stores a new ticket in `pending` with its first history event, or tells how it relates to an existing one.
    /// Returns only after the transaction holding it is committed (durable).
    ///
    /// Concurrent creations are group-committed: a background task writes every request waiting at that moment
    /// in one transaction (one WAL sync instead of one per ticket) and answers each after the commit.
    pub async fn create_ticket(&self, ticket: &Ticket, now: DateTime<Utc>) -> Result<CreateOutcome, StoreError> {
        let ticket_json = serde_json::to_string(ticket)
            .map_err(|err| StoreError::Corrupt { id: ticket.ticket_id.clone(), message: err.to_string() })?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = CreateRequest { ticket: ticket.clone(), ticket_json, now, reply };
        self.creates.send(request).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The ticket and its current state, if it exists.
    pub async fn get_ticket(&self, id: &str) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(SELECT_TICKET).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The ticket's history, oldest first.
    pub async fn get_history(&self, id: &str) -> Result<Vec<TicketEventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, from_kind, to_kind, details FROM ticket_events WHERE ticket_id = ?1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let from_kind: Option<String> = row.try_get("from_kind")?;
                let to_kind: String = row.try_get("to_kind")?;
                let details: String = row.try_get("details")?;
                Ok(TicketEventRecord {
                    seq: row.try_get("seq")?,
                    at: from_millis(row.try_get("at")?),
                    from_state: from_kind.as_deref().map(|kind| parse_kind(id, kind)).transpose()?,
                    to_state: parse_kind(id, &to_kind)?,
                    details: serde_json::from_str(&details)
                        .map_err(|err| StoreError::Corrupt { id: id.into(), message: err.to_string() })?,
                })
            })
            .collect()
    }

    /// One page of tickets, newest first, optionally of one state and matching a text in artist/album; and the
    /// total number matching.
    pub async fn list_tickets(
        &self,
        state: Option<StateKind>,
        text: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<TicketSummary>), StoreError> {
        let mut filters = Vec::new();
        if state.is_some() {
            filters.push("state_kind = ?1");
        }
        if text.is_some() {
            filters.push("instr(search_text, ?2) > 0");
        }
        let where_clause = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let state_name = state.map(StateKind::as_str);
        let needle = text.map(str::to_lowercase);
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tickets {where_clause}"))
            .bind(state_name)
            .bind(needle.as_deref())
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT id, json_extract(ticket_json, '$.search.artist') AS artist,
                    json_extract(ticket_json, '$.search.album') AS album,
                    json_extract(ticket_json, '$.search.year') AS year,
                    json_array_length(ticket_json, '$.tracks') AS track_count,
                    state_kind, json_extract(state_json, '$.progress_pct') AS progress_pct,
                    created_at, updated_at
             FROM tickets {where_clause} ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
        ))
        .bind(state_name)
        .bind(needle.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let tickets = rows
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let kind: String = row.try_get("state_kind")?;
                Ok(TicketSummary {
                    state: parse_kind(&id, &kind)?,
                    artist: row.try_get::<Option<String>, _>("artist")?.unwrap_or_default(),
                    album: row.try_get::<Option<String>, _>("album")?.unwrap_or_default(),
                    year: row.try_get("year")?,
                    track_count: row.try_get::<Option<i64>, _>("track_count")?.unwrap_or_default(),
                    progress_pct: row.try_get("progress_pct")?,
                    created_at: from_millis(row.try_get("created_at")?),
                    updated_at: from_millis(row.try_get("updated_at")?),
                    ticket_id: id,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((total, tickets))
    }

    /// Moves a ticket to the state `decide` computes from its current record, in one `BEGIN IMMEDIATE`
    /// transaction: read, decide, check legality, compare-and-set the version, append the event.
    ///
    /// `expected_version`, when given, must still be the ticket's version (a worker's claim), else
    /// `VersionConflict`. `decide` may refuse with `Err(reason)`.
    pub async fn transition<F>(
        &self,
        id: &str,
        expected_version: Option<i64>,
        now: DateTime<Utc>,
        extras: TransitionExtras,
        decide: F,
    ) -> Result<Transitioned, StoreError>
    where
        F: FnOnce(&TicketRecord) -> Result<TicketState, String>,
    {
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = async {
            let row = sqlx::query(SELECT_TICKET)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            let current = record_from_row(&row)?;
            if let Some(expected) = expected_version {
                if expected != current.version {
                    return Err(StoreError::VersionConflict { id: id.to_string(), expected });
                }
            }
            let from = current.state.kind();
            let next = decide(&current)
                .map_err(|reason| StoreError::Refused { reason, current: Box::new(current.state.clone()) })?;
            let to = next.kind();
            check_transition(from, to).map_err(|illegal| StoreError::IllegalTransition {
                from: illegal.from,
                to: illegal.to,
                current: Box::new(current.state.clone()),
            })?;

            let state_json = state_to_json(id, &next)?;
            let mut details = serde_json::to_value(&next)
                .map_err(|err| StoreError::Corrupt { id: id.into(), message: err.to_string() })?;
            if let Some(object) = details.as_object_mut() {
                for (key, value) in &extras.notes {
                    object.insert(key.clone(), value.clone());
                }
            }
            let millis = to_millis(now);
            if let Some(work) = &extras.work {
                let work_json = serde_json::to_string(work)
                    .map_err(|err| StoreError::Corrupt { id: id.into(), message: err.to_string() })?;
                sqlx::query("UPDATE tickets SET work_json = ?1, torrent_hash = ?2 WHERE id = ?3")
                    .bind(work_json)
                    .bind(work.torrent_hash.as_ref().map(|hash| hash.as_str().to_string()))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let attempts = extras.attempts.unwrap_or(current.attempts);
            let next_attempt_at = match extras.next_attempt_at {
                Some(value) => value,
                None => current.next_attempt_at,
            };
            let updated = sqlx::query(
                "UPDATE tickets SET state_json = ?1, state_kind = ?2, version = version + 1, attempts = ?3,
                    next_attempt_at = ?4, updated_at = ?5
             WHERE id = ?6 AND version = ?7",
            )
            .bind(&state_json)
            .bind(to.as_str())
            .bind(attempts)
            .bind(next_attempt_at.map(to_millis))
            .bind(millis)
            .bind(id)
            .bind(current.version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::VersionConflict { id: id.to_string(), expected: current.version });
            }
            let history_seq: i64 = sqlx::query_scalar(
                "INSERT INTO ticket_events (ticket_id, seq, at, from_kind, to_kind, details)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ticket_events WHERE ticket_id = ?1), ?2, ?3, ?4, ?5)
             RETURNING seq",
            )
            .bind(id)
            .bind(millis)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(details.to_string())
            .fetch_one(&mut *tx)
            .await?;
            // The webhook event of this transition commits with it, or not at all.
            if self.webhook_events.contains(&to) {
                let event_id = uuid::Uuid::new_v4().to_string();
                // The history keeps milliseconds: the event says the same instant as its history entry.
                let at = from_millis(millis);
                let event = WebhookEvent::for_transition(event_id, id, from, &next, history_seq, at);
                super::outbox::insert_event(&mut tx, &event, now).await?;
            }
            Ok(Transitioned {
                from,
                record: TicketRecord {
                    state: next,
                    version: current.version + 1,
                    attempts,
                    next_attempt_at,
                    updated_at: now,
                    ..current
                },
            })
        }
        .await;
        let committed = tx.finish(result, &self.storage).await?;
        if self.webhook_events.contains(&committed.record.state.kind()) {
            self.outbox_written.notify_one();
        }
        Ok(committed)
    }

    /// Claims the most urgent ticket in one of `kinds` that is due (`next_attempt_at` passed) and not leased by a
    /// live worker: highest priority first, then oldest. The claim is one `UPDATE ... RETURNING`, so two workers
    /// can never claim the same ticket; an expired lease (its worker died) makes the ticket claimable again.
    pub async fn claim_next_ready(
        &self,
        worker: &str,
        kinds: &[StateKind],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<TicketRecord>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let placeholders = (0..kinds.len()).map(|n| format!("?{}", n + 4)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "UPDATE tickets SET lease_owner = ?1, lease_expires_at = ?2
             WHERE id = (SELECT id FROM tickets
                         WHERE state_kind IN ({placeholders})
                           AND (next_attempt_at IS NULL OR next_attempt_at <= ?3)
                           AND (lease_expires_at IS NULL OR lease_expires_at <= ?3)
                         ORDER BY priority DESC, created_at ASC, id ASC LIMIT 1)
             RETURNING id, ticket_json, state_json, version, priority, attempts, next_attempt_at, created_at, updated_at"
        );
        let lease_until = to_millis(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let mut query = sqlx::query(&sql).bind(worker).bind(lease_until).bind(to_millis(now));
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = query.fetch_optional(&mut *tx).await.map_err(StoreError::from);
        let row = tx.finish(result, &self.storage).await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Extends `worker`'s lease on a ticket; false when the lease was lost (expired and taken by another worker).
    pub async fn renew_lease(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let lease_until = to_millis(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        let done = self.autocommit(
            sqlx::query("UPDATE tickets SET lease_expires_at = ?1 WHERE id = ?2 AND lease_owner = ?3")
                .bind(lease_until)
                .bind(id)
                .bind(worker)
                .execute(&self.pool)
                .await,
        )?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a ticket back to the queue (the worker is done with it for now).
    pub async fn release_lease(&self, id: &str, worker: &str) -> Result<(), StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        self.autocommit(
            sqlx::query(
                "UPDATE tickets SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ?1 AND lease_owner = ?2",
            )
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await,
        )?;
        Ok(())
    }

    /// Replaces the data of the ticket's current state without changing its kind (progress of a download or a
    /// conversion): no history event, but the version moves so stale writers are refused.
    pub async fn update_state_data(
        &self,
        id: &str,
        state: &TicketState,
        now: DateTime<Utc>,
    ) -> Result<TicketRecord, StoreError> {
        let state_json = state_to_json(id, state)?;
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        let row = sqlx::query(
            "UPDATE tickets SET state_json = ?1, version = version + 1, updated_at = ?2
             WHERE id = ?3 AND state_kind = ?4
             RETURNING id, ticket_json, state_json, version, priority, attempts, next_attempt_at, created_at, updated_at",
        )
        .bind(&state_json)
        .bind(to_millis(now))
        .bind(id)
        .bind(state.kind().as_str())
        .fetch_optional(&self.pool)
        .await;
        let row = self.autocommit(row)?;
        match row {
            Some(row) => record_from_row(&row),
            None => match self.get_ticket(id).await? {
                None => Err(StoreError::NotFound(id.to_string())),
                Some(current) => Err(StoreError::Refused {
                    reason: format!("ticket is {}, not {}", current.state.kind(), state.kind()),
                    current: Box::new(current.state),
                }),
            },
        }
    }

    /// The pipeline's working memory of a ticket (empty for a ticket no stage has touched).
    pub async fn get_work(&self, id: &str) -> Result<TicketWork, StoreError> {
        let json: Option<String> = sqlx::query_scalar("SELECT work_json FROM tickets WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let json = json.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        serde_json::from_str(&json).map_err(|err| StoreError::Corrupt { id: id.into(), message: err.to_string() })
    }

    /// Records a failed attempt that will be retried: the ticket stays in `kind`, `attempts` and `next_attempt_at`
    /// are set, and the history gets an event (`from == to`) naming the error and the time of the next attempt.
    /// Refused when the ticket left `kind` meanwhile (cancelled, for instance).
    pub async fn schedule_retry(
        &self,
        id: &str,
        kind: StateKind,
        attempts: i64,
        retry_at: DateTime<Utc>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let details = serde_json::json!({"retry": {"attempt": attempts, "retry_at": retry_at, "error": error}});
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = async {
            let updated = sqlx::query(
                "UPDATE tickets SET attempts = ?1, next_attempt_at = ?2, updated_at = ?3, version = version + 1
                 WHERE id = ?4 AND state_kind = ?5",
            )
            .bind(attempts)
            .bind(to_millis(retry_at))
            .bind(to_millis(now))
            .bind(id)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Ok(false);
            }
            insert_note(&mut tx, id, kind, &details, now).await
        }
        .await;
        if tx.finish(result, &self.storage).await? {
            Ok(())
        } else {
            Err(self.not_in_state(id, kind).await)
        }
    }

    /// Appends a note to a ticket's history without changing its state (an event with `from == to`, e.g. a
    /// scheduled retry being resumed). Refused when the ticket is no longer in `kind`.
    pub async fn record_note(
        &self,
        id: &str,
        kind: StateKind,
        details: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = WriteTx::begin(&self.pool, &self.storage).await?;
        let result = insert_note(&mut tx, id, kind, details, now).await;
        if tx.finish(result, &self.storage).await? {
            Ok(())
        } else {
            Err(self.not_in_state(id, kind).await)
        }
    }

    /// The error for a command refused because ticket `id` is no longer in `kind`: `Refused` with its real state,
    /// or `NotFound`.
    async fn not_in_state(&self, id: &str, kind: StateKind) -> StoreError {
        match self.get_ticket(id).await {
            Ok(Some(current)) => StoreError::Refused {
                reason: format!("ticket {id} is {}, no longer {kind}", current.state.kind()),
                current: Box::new(current.state),
            },
            Ok(None) => StoreError::NotFound(id.to_string()),
            Err(err) => err,
        }
    }

    /// Tickets resting in `failed { retryable: true }` since `rested_since` or earlier, longest resting first (at
    /// most `limit`).
    pub async fn rested_failures(&self, rested_since: DateTime<Utc>, limit: i64) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM tickets
             WHERE state_kind = 'failed' AND json_extract(state_json, '$.retryable') = 1 AND updated_at <= ?1
             ORDER BY updated_at LIMIT ?2",
        )
        .bind(to_millis(rested_since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Drops every lease. Called once at start-up: with one service per database, a lease found then belongs to a
    /// process that died, and waiting for it to expire would only delay the resume. (Several workers sharing one
    /// queue would instead let leases expire.)
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        let done = self.autocommit(
            sqlx::query("UPDATE tickets SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL")
                .execute(&self.pool)
                .await,
        )?;
        Ok(done.rows_affected())
    }

    /// The tickets holding a torrent, with their states (live holders keep it in the client).
    pub async fn torrent_holders(&self, hash: &InfoHash) -> Result<Vec<(String, StateKind)>, StoreError> {
        let rows = sqlx::query("SELECT id, state_kind FROM tickets WHERE torrent_hash = ?1")
            .bind(hash.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let kind: String = row.try_get("state_kind")?;
                let kind = parse_kind(&id, &kind)?;
                Ok((id, kind))
            })
            .collect()
    }

    /// The name of a ticket's current state (`None` for an unknown id).
    pub async fn state_of(&self, id: &str) -> Result<Option<StateKind>, StoreError> {
        let kind: Option<String> = sqlx::query_scalar("SELECT state_kind FROM tickets WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        kind.map(|kind| parse_kind(id, &kind)).transpose()
    }

    /// Every ticket in one of `kinds` (start-up resume and tests; not paged: working tickets are few).
    pub async fn tickets_in(&self, kinds: &[StateKind]) -> Result<Vec<TicketRecord>, StoreError> {
        let mut records = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(
                "SELECT id, ticket_json, state_json, version, priority, attempts, next_attempt_at, created_at, updated_at
                 FROM tickets WHERE state_kind = ?1 ORDER BY created_at",
            )
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                records.push(record_from_row(row)?);
            }
        }
        Ok(records)
    }

    /// Figures for the stats endpoint.
    pub async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
        let hour_ago = to_millis(now - chrono::Duration::hours(1));
        let day_ago = to_millis(now - chrono::Duration::days(1));
        let mut counts_by_state: BTreeMap<String, i64> =
            StateKind::ALL.iter().map(|kind| (kind.as_str().to_string(), 0)).collect();
        for row in sqlx::query("SELECT state_kind, COUNT(*) AS n FROM tickets GROUP BY state_kind")
            .fetch_all(&self.pool)
            .await?
        {
            counts_by_state.insert(row.try_get("state_kind")?, row.try_get("n")?);
        }
        let created_since = |since: i64| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tickets WHERE created_at >= ?1")
                .bind(since)
                .fetch_one(&self.pool)
        };
        let reached_since = |kind: StateKind, since: i64| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(DISTINCT ticket_id) FROM ticket_events WHERE to_kind = ?1 AND at >= ?2",
            )
            .bind(kind.as_str())
            .bind(since)
            .fetch_one(&self.pool)
        };
        let created_last_hour = created_since(hour_ago).await?;
        let created_last_day = created_since(day_ago).await?;
        let completed_last_hour = reached_since(StateKind::Completed, hour_ago).await?;
        let completed_last_day = reached_since(StateKind::Completed, day_ago).await?;
        let failed_last_hour = reached_since(StateKind::Failed, hour_ago).await?;
        let failed_last_day = reached_since(StateKind::Failed, day_ago).await?;

        let rows = sqlx::query(
            "SELECT e.ticket_id, e.at, e.to_kind FROM ticket_events e
             JOIN (SELECT id FROM tickets WHERE state_kind = 'completed' ORDER BY updated_at DESC LIMIT ?1) c
               ON c.id = e.ticket_id
             ORDER BY e.ticket_id, e.seq",
        )
        .bind(STATS_COMPLETED_SAMPLE)
        .fetch_all(&self.pool)
        .await?;
        let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut previous: Option<(String, i64, String)> = None;
        for row in &rows {
            let ticket_id: String = row.try_get("ticket_id")?;
            let at: i64 = row.try_get("at")?;
            let kind: String = row.try_get("to_kind")?;
            if let Some((prev_id, prev_at, prev_kind)) = previous.take() {
                if prev_id == ticket_id {
                    let secs = Duration::from_millis(u64::try_from(at - prev_at).unwrap_or(0)).as_secs_f64();
                    durations.entry(prev_kind).or_default().push(secs);
                }
            }
            previous = Some((ticket_id, at, kind));
        }
        let median_secs_by_stage = durations
            .into_iter()
            .filter_map(|(kind, mut values)| {
                values.sort_by(f64::total_cmp);
                let mid = values.len() / 2;
                let median = if values.len() % 2 == 1 {
                    *values.get(mid)?
                } else {
                    (values.get(mid - 1)? + values.get(mid)?) / 2.0
                };
                Some((kind, median))
            })
            .collect();
        Ok(StoreStats {
            counts_by_state,
            created_last_hour,
            created_last_day,
            completed_last_hour,
            completed_last_day,
            failed_last_hour,
            failed_last_day,
            median_secs_by_stage,
            llm: self.llm_usage().await?,
        })
    }

    /// The cached answer for a prompt hash, if any.
    pub async fn llm_cached_answer(&self, key: &str) -> Result<Option<CachedLlmAnswer>, StoreError> {
        let row = sqlx::query("SELECT answer_json, input_tokens, output_tokens FROM llm_answers WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("answer_json")?;
        let answer = serde_json::from_str(&json)
            .map_err(|err| StoreError::Corrupt { id: format!("llm answer {key}"), message: err.to_string() })?;
        let tokens =
            |name: &str| -> Result<u64, StoreError> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
        Ok(Some(CachedLlmAnswer {
            answer,
            input_tokens: tokens("input_tokens")?,
            output_tokens: tokens("output_tokens")?,
        }))
    }

    /// Stores an answer under its prompt hash (the first one wins).
    pub async fn store_llm_answer(
        &self,
        key: &str,
        provider: &str,
        model: &str,
        answer: &CachedLlmAnswer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        self.autocommit(
sqlx::query(
            "INSERT OR IGNORE INTO llm_answers (key, provider, model, answer_json, input_tokens, output_tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(key)
        .bind(provider)
        .bind(model)
        .bind(answer.answer.to_string())
        .bind(i64::try_from(answer.input_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(answer.output_tokens).unwrap_or(i64::MAX))
        .bind(to_millis(now))
        .execute(&self.pool)
        .await,
        )?;
        Ok(())
    }

    /// Records one LLM call in the ledger (`outcome`: answered, cached or failed).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_llm_call(
        &self,
        ticket_id: Option<&str>,
        provider: &str,
        model: &str,
        outcome: &str,
        input_tokens: u64,
        output_tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        self.autocommit(
            sqlx::query(
                "INSERT INTO llm_calls (at, ticket_id, provider, model, outcome, input_tokens, output_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(to_millis(now))
            .bind(ticket_id)
            .bind(provider)
            .bind(model)
            .bind(outcome)
            .bind(i64::try_from(input_tokens).unwrap_or(i64::MAX))
            .bind(i64::try_from(output_tokens).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await,
        )?;
        Ok(())
    }

    /// Tokens this ticket's LLM calls consumed so far (its budget).
    pub async fn llm_tokens_of_ticket(&self, ticket_id: &str) -> Result<u64, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM llm_calls
             WHERE ticket_id = ?1 AND outcome = 'answered'",
        )
        .bind(ticket_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn llm_usage(&self) -> Result<LlmUsageStats, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(outcome = 'answered'), 0) AS answered, COALESCE(SUM(outcome = 'cached'), 0) AS cached,
                    COALESCE(SUM(outcome = 'failed'), 0) AS failed,
                    COALESCE(SUM(CASE WHEN outcome = 'answered' THEN input_tokens ELSE 0 END), 0) AS input_tokens,
                    COALESCE(SUM(CASE WHEN outcome = 'answered' THEN output_tokens ELSE 0 END), 0) AS output_tokens
             FROM llm_calls",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LlmUsageStats {
            answered: row.try_get("answered")?,
            cached: row.try_get("cached")?,
            failed: row.try_get("failed")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
        })
    }
}

/// One `create_ticket` call waiting for the group-commit task.
struct CreateRequest {
    ticket: Ticket,
    ticket_json: String,
    now: DateTime<Utc>,
    reply: tokio::sync::oneshot::Sender<Result<CreateOutcome, StoreError>>,
}

/// Most ticket creations committed in one transaction.
const MAX_CREATE_BATCH: usize = 128;
/// Waiting creations before `create_ticket` callers queue on the channel.
const CREATE_QUEUE: usize = 1024;

/// The group-commit task: takes every creation waiting, writes them in one transaction, answers each after the
/// commit. If a batch fails as a whole, its requests are retried one by one so one bad row cannot fail the others.
/// Ends when every `Store` clone is dropped.
async fn run_create_batches(
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    storage: std::sync::Arc<StorageWatch>,
    mut requests: tokio::sync::mpsc::Receiver<CreateRequest>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        let _writer = writer.lock().await;
        while batch.len() < MAX_CREATE_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        match insert_tickets(&pool, &storage, &batch).await {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(err) if batch.len() == 1 => {
                if let Some(request) = batch.pop() {
                    let _ = request.reply.send(Err(err));
                }
            }
            Err(_) => {
                for request in batch {
                    let result = insert_tickets(&pool, &storage, std::slice::from_ref(&request))
                        .await
                        .and_then(|mut outcomes| outcomes.pop().ok_or(StoreError::Closed));
                    let _ = request.reply.send(result);
                }
            }
        }
    }
}

/// Inserts the tickets that do not exist yet, in one `BEGIN IMMEDIATE` transaction (the caller holds the writer
/// lock), and says for each what happened.
async fn insert_tickets(
    pool: &SqlitePool,
    storage: &StorageWatch,
    batch: &[CreateRequest],
) -> Result<Vec<CreateOutcome>, StoreError> {
    let mut tx = WriteTx::begin(pool, storage).await?;
    let result = insert_ticket_rows(&mut tx, batch).await;
    tx.finish(result, storage).await
}

/// The statements of `insert_tickets`, inside its transaction.
async fn insert_ticket_rows(
    tx: &mut SqliteConnection,
    batch: &[CreateRequest],
) -> Result<Vec<CreateOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let ticket = &request.ticket;
        let existing = sqlx::query(SELECT_TICKET).bind(&ticket.ticket_id).fetch_optional(&mut *tx).await?;
        if let Some(row) = existing {
            let record = record_from_row(&row)?;
            let same = row.try_get::<String, _>("ticket_json")? == request.ticket_json;
            outcomes.push(if same { CreateOutcome::AlreadyExists(record) } else { CreateOutcome::Conflict(record) });
            continue;
        }
        let state = TicketState::Pending {};
        let state_json = state_to_json(&ticket.ticket_id, &state)?;
        let search_text = format!("{} {}", ticket.search.artist, ticket.search.album).to_lowercase();
        let millis = to_millis(request.now);
        sqlx::query(
            "INSERT INTO tickets (id, ticket_json, search_text, state_json, state_kind, version, priority, attempts,
                                  next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, 0, ?6, ?6, ?6)",
        )
        .bind(&ticket.ticket_id)
        .bind(&request.ticket_json)
        .bind(&search_text)
        .bind(&state_json)
        .bind(state.kind().as_str())
        .bind(millis)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO ticket_events (ticket_id, seq, at, from_kind, to_kind, details) VALUES (?1, 1, ?2, NULL, ?3, ?4)",
        )
        .bind(&ticket.ticket_id)
        .bind(millis)
        .bind(state.kind().as_str())
        .bind(&state_json)
        .execute(&mut *tx)
        .await?;
        outcomes.push(CreateOutcome::Created(TicketRecord {
            ticket: ticket.clone(),
            state,
            version: 0,
            priority: 0,
            attempts: 0,
            next_attempt_at: Some(request.now),
            created_at: request.now,
            updated_at: request.now,
        }));
    }
    Ok(outcomes)
}

const SELECT_TICKET: &str = "SELECT id, ticket_json, state_json, version, priority, attempts, next_attempt_at,
                                    created_at, updated_at
                             FROM tickets WHERE id = ?1";

fn record_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TicketRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |err: serde_json::Error| StoreError::Corrupt { id: id.clone(), message: err.to_string() };
    let ticket_json: String = row.try_get("ticket_json")?;
    let state_json: String = row.try_get("state_json")?;
    Ok(TicketRecord {
        ticket: serde_json::from_str(&ticket_json).map_err(corrupt)?,
        state: serde_json::from_str(&state_json).map_err(corrupt)?,
        version: row.try_get("version")?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(from_millis),
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

fn state_to_json(id: &str, state: &TicketState) -> Result<String, StoreError> {
    serde_json::to_string(state).map_err(|err| StoreError::Corrupt { id: id.into(), message: err.to_string() })
}

fn parse_kind(id: &str, name: &str) -> Result<StateKind, StoreError> {
    StateKind::parse(name)
        .ok_or_else(|| StoreError::Corrupt { id: id.into(), message: format!("unknown state {name:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{CompletionStats, ScoredCandidate, TorrentCandidate};

    async fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db/test.db")).await.unwrap();
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

    async fn go(store: &Store, id: &str, when: DateTime<Utc>, state: TicketState) -> Transitioned {
        store.transition(id, None, when, TransitionExtras::default(), move |_| Ok(state)).await.unwrap()
    }

    fn selected() -> ScoredCandidate {
        ScoredCandidate {
            candidate: TorrentCandidate::with_title("x"),
            score: 1.0,
            reasoning: String::new(),
            track_mapping: vec![],
            hard_rejects: vec![],
            doubts: Vec::new(),
        }
    }

    /// Drives a ticket through the whole forward path, spending `secs` seconds in each working state.
    async fn complete(store: &Store, id: &str, secs: i64) {
        store.create_ticket(&ticket(id), at(0)).await.unwrap();
        let states = [
            TicketState::Searching { query: None, started_at: at(0) },
            TicketState::Matching { candidates_found: 1, started_at: at(0) },
            TicketState::AutoApproved { selected: selected(), confidence: 1.0, approved_at: at(0) },
            TicketState::Downloading {
                torrent_hash: "h".into(),
                progress_pct: 0.0,
                download_speed_bps: 0,
                eta_secs: None,
                started_at: at(0),
            },
            TicketState::Converting {
                current_track_idx: 0,
                total_tracks: 1,
                current_track_name: "a".into(),
                started_at: at(0),
            },
            TicketState::Placing { files_placed: 0, total_files: 1, started_at: at(0) },
            TicketState::Completed { completed_at: at(0), stats: CompletionStats::default() },
        ];
        for (n, state) in states.into_iter().enumerate() {
            let n = i64::try_from(n).unwrap();
            go(store, id, at((n + 1) * secs), state).await;
        }
    }

    #[tokio::test]
    async fn create_is_idempotent_and_detects_other_bodies() {
        let (_dir, store) = fresh_store().await;
        assert!(matches!(store.create_ticket(&ticket("a"), at(0)).await.unwrap(), CreateOutcome::Created(_)));
        assert!(matches!(store.create_ticket(&ticket("a"), at(5)).await.unwrap(), CreateOutcome::AlreadyExists(_)));
        let mut other = ticket("a");
        other.search.album = "Third".into();
        assert!(matches!(store.create_ticket(&other, at(5)).await.unwrap(), CreateOutcome::Conflict(_)));
        assert_eq!(store.get_history("a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn concurrent_creations_are_group_committed_with_correct_outcomes() {
        let (_dir, store) = fresh_store().await;
        let mut calls = Vec::new();
        for n in 0..200 {
            let store = store.clone();
            // Ids repeat every 50 requests: the repeats are identical (n < 150) or different bodies (n >= 150).
            let mut ticket = ticket(&format!("c{}", n % 50));
            if n >= 150 {
                ticket.search.album = format!("other {n}");
            }
            calls.push(tokio::spawn(async move { store.create_ticket(&ticket, at(0)).await.unwrap() }));
        }
        let (mut created, mut existing, mut conflicts) = (0, 0, 0);
        for call in calls {
            match call.await.unwrap() {
                CreateOutcome::Created(_) => created += 1,
                CreateOutcome::AlreadyExists(_) => existing += 1,
                CreateOutcome::Conflict(_) => conflicts += 1,
            }
        }
        assert_eq!(created, 50);
        assert_eq!(created + existing + conflicts, 200);
        let (total, _) = store.list_tickets(None, None, 10, 0).await.unwrap();
        assert_eq!(total, 50);
        for n in 0..50 {
            assert_eq!(store.get_history(&format!("c{n}")).await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn retry_notes_are_written_in_the_state_only_and_a_refusal_names_the_real_state() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        store.schedule_retry("a", StateKind::Pending, 1, at(60), "indexer down", at(1)).await.unwrap();
        store
            .record_note("a", StateKind::Pending, &serde_json::json!({"resumed": {"attempt": 1}}), at(61))
            .await
            .unwrap();
        let history = store.get_history("a").await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[1].details["retry"]["error"], "indexer down");
        assert_eq!((history[1].from_state, history[1].to_state), (Some(StateKind::Pending), StateKind::Pending));
        assert_eq!(history[2].details["resumed"]["attempt"], 1);

        store
            .transition("a", None, at(62), TransitionExtras::default(), |_| {
                Ok(TicketState::Cancelled { cancelled_at: at(62) })
            })
            .await
            .unwrap();
        let refused = store.schedule_retry("a", StateKind::Pending, 2, at(120), "x", at(63)).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Refused { current, .. } if current.kind() == StateKind::Cancelled),
            "{refused:?}"
        );
        let refused = store.record_note("a", StateKind::Pending, &serde_json::json!({}), at(63)).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Refused { current, .. } if current.kind() == StateKind::Cancelled),
            "{refused:?}"
        );
        assert_eq!(store.get_history("a").await.unwrap().len(), 4, "nothing written when refused");
        let missing = store.record_note("nope", StateKind::Pending, &serde_json::json!({}), at(63)).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)));
    }

    #[tokio::test]
    async fn illegal_or_refused_transitions_write_nothing() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        let err = store
            .transition("a", None, at(1), TransitionExtras::default(), |_| {
                Ok(TicketState::Placing { files_placed: 0, total_files: 1, started_at: at(1) })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::IllegalTransition { from: StateKind::Pending, to: StateKind::Placing, .. }));
        let err = store
            .transition("a", None, at(1), TransitionExtras::default(), |_| Err("no".to_string()))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Refused { .. }));
        let record = store.get_ticket("a").await.unwrap().unwrap();
        assert_eq!(record.state, TicketState::Pending {});
        assert_eq!(record.version, 0);
        assert_eq!(store.get_history("a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_stale_version_is_a_conflict() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        let first = go(&store, "a", at(1), TicketState::Searching { query: None, started_at: at(1) }).await;
        assert_eq!(first.record.version, 1);
        let err = store
            .transition("a", Some(0), at(2), TransitionExtras::default(), |_| {
                Ok(TicketState::Matching { candidates_found: 0, started_at: at(2) })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::VersionConflict { expected: 0, .. }));
        assert!(err.is_retryable());
        let ok = store
            .transition("a", Some(1), at(2), TransitionExtras::default(), |_| {
                Ok(TicketState::Matching { candidates_found: 0, started_at: at(2) })
            })
            .await
            .unwrap();
        assert_eq!(ok.from, StateKind::Searching);
    }

    #[tokio::test]
    async fn history_records_each_move_with_notes() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        let mut extras = TransitionExtras::default();
        extras.notes.insert("actor".into(), serde_json::json!("bob"));
        store
            .transition("a", None, at(3), extras, |_| Ok(TicketState::Cancelled { cancelled_at: at(3) }))
            .await
            .unwrap();
        let history = store.get_history("a").await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].from_state, None);
        assert_eq!(history[1].from_state, Some(StateKind::Pending));
        assert_eq!(history[1].to_state, StateKind::Cancelled);
        assert_eq!(history[1].details["actor"], "bob");
        assert_eq!(history[1].details["state"], "cancelled");
        assert_eq!(history[1].at, at(3));
    }

    #[tokio::test]
    async fn stats_medians_are_time_spent_per_state() {
        let (_dir, store) = fresh_store().await;
        complete(&store, "fast", 10).await;
        complete(&store, "mid", 20).await;
        complete(&store, "slow", 60).await;
        let stats = store.stats(at(0)).await.unwrap();
        assert_eq!(stats.counts_by_state["completed"], 3);
        assert_eq!(stats.counts_by_state["pending"], 0);
        for state in ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing"] {
            assert_eq!(stats.median_secs_by_stage.get(state), Some(&20.0), "{state}");
        }
        assert!(!stats.median_secs_by_stage.contains_key("completed"));
    }

    #[tokio::test]
    async fn claims_are_exclusive_ordered_and_expire() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("old"), at(0)).await.unwrap();
        store.create_ticket(&ticket("new"), at(10)).await.unwrap();
        store.create_ticket(&ticket("later"), at(5)).await.unwrap();
        // "later" is not due yet.
        store
            .transition(
                "later",
                None,
                at(5),
                TransitionExtras { next_attempt_at: Some(Some(at(1000))), ..Default::default() },
                |_| {
                    Ok(TicketState::Failed {
                        failed_at_state: StateKind::Pending,
                        error: "x".into(),
                        retryable: true,
                        retry_count: 1,
                        failed_at: at(5),
                    })
                },
            )
            .await
            .unwrap();
        let lease = Duration::from_secs(30);
        let pending = [StateKind::Pending, StateKind::Failed];
        let first = store.claim_next_ready("w1", &pending, lease, at(20)).await.unwrap().unwrap();
        assert_eq!(first.ticket.ticket_id, "old", "oldest first");
        let second = store.claim_next_ready("w2", &pending, lease, at(20)).await.unwrap().unwrap();
        assert_eq!(second.ticket.ticket_id, "new", "a leased ticket is not claimed twice");
        assert!(store.claim_next_ready("w3", &pending, lease, at(20)).await.unwrap().is_none(), "'later' is not due");
        // w1 keeps its lease alive; w2's expires and its ticket is claimable again.
        assert!(store.renew_lease("old", "w1", lease, at(40)).await.unwrap());
        let again = store.claim_next_ready("w3", &pending, lease, at(60)).await.unwrap().unwrap();
        assert_eq!(again.ticket.ticket_id, "new");
        assert!(!store.renew_lease("new", "w2", lease, at(61)).await.unwrap(), "w2 lost its lease");
        store.release_lease("old", "w1").await.unwrap();
        let released = store.claim_next_ready("w4", &pending, lease, at(62)).await.unwrap().unwrap();
        assert_eq!(released.ticket.ticket_id, "old");
        let due = store.claim_next_ready("w5", &[StateKind::Failed], lease, at(2000)).await.unwrap().unwrap();
        assert_eq!(due.ticket.ticket_id, "later", "due once next_attempt_at passed");
    }

    #[tokio::test]
    async fn state_data_updates_keep_the_kind_and_write_no_event() {
        let (_dir, store) = fresh_store().await;
        store.create_ticket(&ticket("a"), at(0)).await.unwrap();
        let wrong = TicketState::Placing { files_placed: 1, total_files: 2, started_at: at(1) };
        assert!(matches!(store.update_state_data("a", &wrong, at(1)).await, Err(StoreError::Refused { .. })));
        go(&store, "a", at(1), TicketState::Searching { query: None, started_at: at(1) }).await;
        let updated = store
            .update_state_data("a", &TicketState::Searching { query: Some("q".into()), started_at: at(1) }, at(2))
            .await
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.state, TicketState::Searching { query: Some("q".into()), started_at: at(1) });
        assert_eq!(store.get_history("a").await.unwrap().len(), 2);
        assert_eq!(store.tickets_in(&[StateKind::Searching]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn list_filters_text_and_state() {
        let (_dir, store) = fresh_store().await;
        let mut radiohead = ticket("r");
        radiohead.search.artist = "Radiohead".into();
        radiohead.search.album = "OK Computer".into();
        store.create_ticket(&radiohead, at(0)).await.unwrap();
        store.create_ticket(&ticket("p"), at(1)).await.unwrap();
        let (total, page) = store.list_tickets(None, Some("computer"), 10, 0).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(page[0].ticket_id, "r");
        assert_eq!(page[0].album, "OK Computer");
        assert_eq!(page[0].track_count, 11);
        let (total, _) = store.list_tickets(Some(StateKind::Failed), None, 10, 0).await.unwrap();
        assert_eq!(total, 0);
    }

    #[tokio::test]
    async fn llm_answers_are_cached_by_key_and_calls_counted() {
        let (_dir, store) = fresh_store().await;
        let now = at(1000);
        assert_eq!(store.llm_cached_answer("k1").await.unwrap(), None);
        let answer =
            CachedLlmAnswer { answer: serde_json::json!({"candidates": []}), input_tokens: 900, output_tokens: 80 };
        store.store_llm_answer("k1", "anthropic", "claude-haiku-5-5", &answer, now).await.unwrap();
        let other = CachedLlmAnswer { answer: serde_json::json!({"candidates": [1]}), ..answer.clone() };
        store.store_llm_answer("k1", "anthropic", "claude-haiku-5-5", &other, now).await.unwrap();
        assert_eq!(store.llm_cached_answer("k1").await.unwrap(), Some(answer), "the first answer wins");

        store.record_llm_call(Some("t1"), "anthropic", "m", "answered", 900, 80, now).await.unwrap();
        store.record_llm_call(Some("t1"), "anthropic", "m", "cached", 900, 80, now).await.unwrap();
        store.record_llm_call(Some("t2"), "anthropic", "m", "failed", 0, 0, now).await.unwrap();
        assert_eq!(store.llm_tokens_of_ticket("t1").await.unwrap(), 980, "cached answers cost nothing");
        let usage = store.stats(now).await.unwrap().llm;
        assert_eq!(usage, LlmUsageStats { answered: 1, cached: 1, failed: 1, input_tokens: 900, output_tokens: 80 });
    }
}
