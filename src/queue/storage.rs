//! The database's storage, seen from the store: write transactions that never hand a connection back to the pool
//! in the middle of a transaction, what a failed write says about the disk under the database (full, read-only,
//! I/O error, corrupt), whether the database file is still the one that was opened (not deleted or replaced while
//! running), rate-limited warnings while writes fail, and the health answer built from all of that.
//!
//! Why `WriteTx` instead of sqlx's `Transaction`: sqlx counts the transaction depth of a SQLite connection itself.
//! When SQLite ends a transaction on its own (a `COMMIT` failing with `SQLITE_FULL` rolls back), sqlx's `ROLLBACK`
//! then fails ("no transaction is active"), its count stays at 1, and the pooled connection answers every later
//! `begin_with` with "attempted to call begin_with at non-zero transaction depth", for as long as the process
//! lives. Here the connection returns to the pool only after a `COMMIT` or `ROLLBACK` that SQLite confirmed; any
//! other ending (a failed commit or rollback, a cancelled future) closes the connection, and the pool opens a fresh
//! one.
//!
//! Nothing here decides ticket states or writes tickets: `store.rs` does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use super::store::StoreError;

/// What a failed database operation says about the storage under the database. Drives the error answer, the
/// health answer and the warnings; `None` from `classify` means the failure says nothing about the storage (a
/// busy lock, a constraint, a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// `SQLITE_FULL`: the filesystem holding the database (or its WAL) has no space left.
    DiskFull,
    /// `SQLITE_READONLY`: permissions, a read-only mount, or SQLite noticed the file moved.
    ReadOnly,
    /// `SQLITE_IOERR`: the disk or filesystem failed a read or write.
    Io,
    /// `SQLITE_CANTOPEN`: the file (or its WAL/shm) cannot be opened any more.
    CannotOpen,
    /// `SQLITE_CORRUPT` / `SQLITE_NOTADB`: the file is damaged.
    Corrupt,
    /// The database file was deleted while the service ran: writes would go to an unlinked file and vanish.
    FileDeleted,
    /// Another file now sits at the database's path: writes would go to the old, unlinked one and vanish.
    FileReplaced,
}

impl StorageProblem {
    /// What is wrong and how to fix it, for the error answer, the health answer and the log.
    pub fn describe(self) -> &'static str {
        match self {
            StorageProblem::DiskFull => {
                "the disk holding the database is full (SQLITE_FULL): free space on it; writes resume by themselves"
            }
            StorageProblem::ReadOnly => {
                "the database cannot be written (SQLITE_READONLY): check the permissions of the database file and \
                 its directory, and that the filesystem is mounted read-write"
            }
            StorageProblem::Io => "the disk holding the database failed a read or write (SQLITE_IOERR): check the disk",
            StorageProblem::CannotOpen => {
                "the database file cannot be opened (SQLITE_CANTOPEN): check that it and its directory still exist \
                 and are accessible"
            }
            StorageProblem::Corrupt => {
                "the database file is corrupt (SQLITE_CORRUPT): stop the service and restore it from a backup"
            }
            StorageProblem::FileDeleted => {
                "the database file was deleted while the service was running: writes are refused (they would be \
                 lost); restart the service"
            }
            StorageProblem::FileReplaced => {
                "the database file was replaced by another file while the service was running: writes are refused \
                 (they would go to the old file); restart the service"
            }
        }
    }

    /// Whether the problem may go away without a restart (space freed, permissions fixed).
    pub fn may_clear_by_itself(self) -> bool {
        match self {
            StorageProblem::DiskFull | StorageProblem::ReadOnly | StorageProblem::Io | StorageProblem::CannotOpen => {
                true
            }
            StorageProblem::Corrupt | StorageProblem::FileDeleted | StorageProblem::FileReplaced => false,
        }
    }

    /// The storage problem a sqlx error reports, from SQLite's primary result code.
    pub fn classify(err: &sqlx::Error) -> Option<StorageProblem> {
        match err {
            sqlx::Error::Database(db) => {
                let code: i64 = db.code()?.parse().ok()?;
                match code & 0xff {
                    13 => Some(StorageProblem::DiskFull),
                    8 => Some(StorageProblem::ReadOnly),
                    10 => Some(StorageProblem::Io),
                    14 => Some(StorageProblem::CannotOpen),
                    11 | 26 => Some(StorageProblem::Corrupt),
                    _ => None,
                }
            }
            sqlx::Error::Io(_) => Some(StorageProblem::Io),
            _ => None,
        }
    }
}

/// How long between two warnings about the same failing writes (the first failure is always logged).
const WARN_INTERVAL: Duration = Duration::from_secs(30);
/// Below this much free space on the database's filesystem, health says the disk is full.
const MIN_FREE_BYTES: u64 = 1024 * 1024;
/// While writes are failing, the health check tries a tiny write at most this often to see whether they work again.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The database file as opened: its path and identity (device, inode).
#[derive(Debug)]
struct OpenedFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

/// What the store knows about its storage: the opened file, and the writes failing since the last success.
#[derive(Debug)]
pub struct StorageWatch {
    file: OpenedFile,
    state: Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Writes failing since the last success, if they are.
    failing: Option<Failing>,
    /// The last warning logged (a failing period starting, still failing, or over), for the rate limit: writes
    /// that alternate between failing and succeeding (a nearly full disk) must not log a line each.
    last_warned: Option<Instant>,
    /// Failed writes not mentioned in a warning yet.
    unreported: u64,
}

/// Writes failing since `since` with `problem`.
#[derive(Debug, Clone, Copy)]
struct Failing {
    problem: StorageProblem,
    since: Instant,
    last_probe: Option<Instant>,
}

impl WatchState {
    /// Whether a warning may be logged now (and if so, records that it is).
    fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        if self.last_warned.is_some_and(|at| now.duration_since(at) < WARN_INTERVAL) {
            return false;
        }
        self.last_warned = Some(now);
        true
    }
}

/// Answer of `StorageWatch::health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseHealth {
    Ok,
    /// The reason, for the health answer.
    Degraded(String),
}

fn identity_of(path: &Path) -> std::io::Result<(u64, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

impl StorageWatch {
    /// Watches the database file at `path` (call after it has been opened, so the identity is the opened file's).
    pub fn new(path: &Path) -> StorageWatch {
        StorageWatch {
            file: OpenedFile { path: path.to_path_buf(), identity: identity_of(path).ok() },
            state: Mutex::new(WatchState::default()),
        }
    }

    /// Whether the file at the database's path is still the one that was opened (one `stat`, cheap enough to do
    /// before every write).
    pub fn check_file(&self) -> Result<(), StorageProblem> {
        let Some(opened) = self.file.identity else { return Ok(()) };
        match identity_of(&self.file.path) {
            Ok(now) if now == opened => Ok(()),
            Ok(_) => Err(StorageProblem::FileReplaced),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(StorageProblem::FileDeleted),
            // Cannot tell (permissions on the directory changed): the write itself will say.
            Err(_) => Ok(()),
        }
    }

    /// Bytes an unprivileged writer may still use on the database's filesystem (one `statvfs`), if known.
    fn free_bytes(&self) -> Option<u64> {
        let dir = match self.file.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let stats = rustix::fs::statvfs(dir).ok()?;
        Some(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Refuses a write before it starts when the database file is gone or replaced.
    pub fn before_write(&self) -> Result<(), StoreError> {
        self.check_file().map_err(|problem| {
            self.note_failure(problem);
            StoreError::Storage { problem, path: self.file.path.display().to_string() }
        })
    }

    /// Records the outcome of a write: a success ends a failing period (logged once), a storage failure starts or
    /// extends one (warned at most every `WARN_INTERVAL`). Other failures say nothing about the storage.
    pub fn note_write<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.note_success(),
            Err(err) => self.note_error(err),
        }
    }

    /// Records a failed write (only storage problems count).
    pub fn note_error(&self, err: &StoreError) {
        if let Some(problem) = err.storage_problem() {
            self.note_failure(problem);
        }
    }

    /// Records a successful write: ends a failing period.
    pub fn note_success(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        if let Some(ended) = state.failing.take() {
            if state.may_warn() {
                tracing::warn!(
                    failing_for_secs = ended.since.elapsed().as_secs_f64(),
                    failed_writes = state.unreported,
                    "database writes work again ({} is over)",
                    short_name(ended.problem)
                );
                state.unreported = 0;
            }
        }
    }

    fn note_failure(&self, problem: StorageProblem) {
        let Ok(mut state) = self.state.lock() else { return };
        let now = Instant::now();
        state.unreported += 1;
        let new_problem = state.failing.is_none_or(|current| current.problem != problem);
        if new_problem {
            state.failing = Some(Failing { problem, since: now, last_probe: None });
        }
        if state.may_warn() {
            let since = state.failing.map_or(now, |failing| failing.since);
            tracing::error!(
                path = %self.file.path.display(),
                failing_for_secs = now.duration_since(since).as_secs(),
                failed_writes = state.unreported,
                "database writes failing: {}",
                problem.describe()
            );
            state.unreported = 0;
        }
    }

    /// The storage's health for `GET /api/v1/health`: the file's identity, the free space of its filesystem, then
    /// (only while writes are failing, at most every `PROBE_INTERVAL`) a one-row write on `probe_pool` to see
    /// whether they work again.
    pub async fn health(&self, probe_pool: &SqlitePool) -> DatabaseHealth {
        if let Err(problem) = self.check_file() {
            self.note_failure(problem);
            return DatabaseHealth::Degraded(problem.describe().to_string());
        }
        // A full disk shows before a write fails (and while small writes still fit in the WAL's free frames).
        if let Some(free) = self.free_bytes().filter(|free| *free < MIN_FREE_BYTES) {
            return DatabaseHealth::Degraded(format!("{} ({free} bytes free)", StorageProblem::DiskFull.describe()));
        }
        let probe_due = {
            let Ok(mut state) = self.state.lock() else { return DatabaseHealth::Ok };
            match state.failing.as_mut() {
                None => return DatabaseHealth::Ok,
                Some(current) if !current.problem.may_clear_by_itself() => {
                    return DatabaseHealth::Degraded(current.problem.describe().to_string())
                }
                Some(current) => {
                    let due = current.last_probe.is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
                    if due {
                        current.last_probe = Some(Instant::now());
                    }
                    (due, current.problem)
                }
            }
        };
        match probe_due {
            (false, problem) => DatabaseHealth::Degraded(problem.describe().to_string()),
            (true, _) => {
                let result = sqlx::query("INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, ?1)")
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(probe_pool)
                    .await
                    .map_err(StoreError::from);
                self.note_write(&result);
                match result {
                    Ok(_) => DatabaseHealth::Ok,
                    Err(err) => match err.storage_problem() {
                        Some(problem) => DatabaseHealth::Degraded(problem.describe().to_string()),
                        None => DatabaseHealth::Degraded(format!("the database cannot be written: {err}")),
                    },
                }
            }
        }
    }
}

fn short_name(problem: StorageProblem) -> &'static str {
    match problem {
        StorageProblem::DiskFull => "disk full",
        StorageProblem::ReadOnly => "database read-only",
        StorageProblem::Io => "disk I/O errors",
        StorageProblem::CannotOpen => "database cannot be opened",
        StorageProblem::Corrupt => "database corrupt",
        StorageProblem::FileDeleted => "database file deleted",
        StorageProblem::FileReplaced => "database file replaced",
    }
}

/// A write transaction (`BEGIN IMMEDIATE`) on one pooled connection. Statements run on it through `&mut *tx`.
/// End it with `finish`, which commits an `Ok` and rolls back an `Err`; the connection goes back to the pool only
/// when SQLite confirmed either. Dropped unfinished (a cancelled request), it closes its connection, which makes
/// SQLite roll the transaction back.
#[derive(Debug)]
pub struct WriteTx {
    conn: PoolConnection<Sqlite>,
    /// Set once SQLite confirmed the COMMIT or ROLLBACK: only then may the connection go back to the pool.
    ended_cleanly: bool,
}

impl WriteTx {
    /// Takes a connection and the write lock (`BEGIN IMMEDIATE`), after checking the database file is still there.
    pub async fn begin(pool: &SqlitePool, watch: &StorageWatch) -> Result<WriteTx, StoreError> {
        watch.before_write()?;
        let mut conn = pool.acquire().await?;
        if let Err(err) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            conn.close_on_drop();
            let err = StoreError::from(err);
            watch.note_error(&err);
            return Err(err);
        }
        Ok(WriteTx { conn, ended_cleanly: false })
    }

    /// Commits `Ok`, rolls back `Err` (returning it); records the outcome in `watch`.
    pub async fn finish<T>(mut self, result: Result<T, StoreError>, watch: &StorageWatch) -> Result<T, StoreError> {
        match result {
            Ok(value) => match sqlx::query("COMMIT").execute(&mut *self.conn).await {
                Ok(_) => {
                    self.ended_cleanly = true;
                    watch.note_success();
                    Ok(value)
                }
                Err(err) => {
                    // SQLite may have rolled back already, or may still hold the transaction (SQLITE_BUSY): either
                    // way this connection is not reused (Drop closes it).
                    let err = StoreError::from(err);
                    watch.note_error(&err);
                    Err(err)
                }
            },
            Err(err) => {
                if sqlx::query("ROLLBACK").execute(&mut *self.conn).await.is_ok() {
                    self.ended_cleanly = true;
                }
                watch.note_error(&err);
                Err(err)
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.ended_cleanly {
            self.conn.close_on_drop();
        }
    }
}

/// Makes the database private to the service's user before SQLite opens it: a missing file is created empty with
/// mode 0600 (SQLite gives its `-wal` and `-shm` files the mode of the database file), and an existing database,
/// `-wal` or `-shm` readable by group or others (as older versions created them) is set to 0600, with a log line.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let mut companions = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        companions.push(PathBuf::from(name));
    }
    for file in companions {
        let Ok(metadata) = std::fs::metadata(&file) else { continue };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            tracing::info!(path = %file.display(), was = format!("{mode:04o}"), "database file made private (0600)");
        }
    }
    Ok(())
}
