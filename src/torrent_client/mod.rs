//! The torrent client boundary: the `TorrentClient` trait the pipeline calls, its data types, and the one error
//! enum (`TorrentClientError`) every qBittorrent failure becomes.
//!
//! Implementations: [`qbittorrent::QbittorrentClient`] (WebUI API v2, 4.5.x and 5.x) and, to run qBittorrent
//! itself, [`managed::ManagedQbittorrent`] (a supervised qbittorrent-nox with a private profile).
//! [`path_mapping`] translates between qBittorrent's paths and ours, so every path the trait returns is local.
//! This module never decides ticket states: it reports what qBittorrent says, typed, and leaves retry decisions to
//! the queue manager. The only filesystem access is the check that a finished download is visible here.

pub mod managed;
pub mod metainfo;
pub mod path_mapping;
pub mod qbittorrent;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::models::{InfoHash, TorrentFile};

pub use managed::ManagedQbittorrent;
pub use qbittorrent::QbittorrentClient;

/// The qBittorrent category every torrent of downloader2 is filed under (created on first add).
pub const CATEGORY: &str = "downloader2";

/// Where a torrent comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddSource {
    /// A `magnet:?xt=urn:btih:...` URI (hex or base32 v1 hash).
    Magnet(String),
    /// The bytes of a `.torrent` file (untrusted: parsed with limits, never executed).
    TorrentFile(Bytes),
}

/// What qBittorrent says a torrent is doing, normalised over 4.x and 5.x state names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Fetching the info dict of a magnet (`metaDL`, `forcedMetaDL`).
    FetchingMetadata,
    /// Transferring payload (`downloading`, `forcedDL`).
    Downloading,
    /// Wants data but nobody sends any (`stalledDL`).
    StalledDownload,
    /// Stopped before completion (`pausedDL` 4.x / `stoppedDL` 5.x), e.g. parked after add until files are chosen.
    StoppedIncomplete,
    /// Waiting for a queue slot (`queuedDL`).
    QueuedDownload,
    /// Hashing data (`checkingDL`, `checkingUP`, `checkingResumeData`).
    Checking,
    /// Wanted data complete and seeding or ready to (`uploading`, `stalledUP`, `forcedUP`, `queuedUP`).
    Seeding,
    /// Complete and stopped (`pausedUP` / `stoppedUP`), e.g. after reaching its share limits.
    StoppedComplete,
    /// Files are being moved (`moving`).
    Moving,
    /// Files are missing on disk (`missingFiles`).
    MissingFiles,
    /// libtorrent reported an error (`error`), e.g. disk full or not writable.
    Error,
    /// A state name this code does not know (kept verbatim for the logs).
    Unknown(String),
}

impl TorrentState {
    /// Maps qBittorrent's `state` string (4.x and 5.x names).
    pub fn from_qbittorrent(raw: &str) -> Self {
        match raw {
            "metaDL" | "forcedMetaDL" => TorrentState::FetchingMetadata,
            "downloading" | "forcedDL" => TorrentState::Downloading,
            "stalledDL" => TorrentState::StalledDownload,
            "pausedDL" | "stoppedDL" => TorrentState::StoppedIncomplete,
            "queuedDL" => TorrentState::QueuedDownload,
            "checkingDL" | "checkingUP" | "checkingResumeData" => TorrentState::Checking,
            "uploading" | "stalledUP" | "forcedUP" | "queuedUP" => TorrentState::Seeding,
            "pausedUP" | "stoppedUP" => TorrentState::StoppedComplete,
            "moving" => TorrentState::Moving,
            "missingFiles" => TorrentState::MissingFiles,
            "error" => TorrentState::Error,
            other => TorrentState::Unknown(other.to_string()),
        }
    }

    /// True while the torrent is supposed to be receiving data (the states in which a stall can happen).
    pub fn is_active_download(&self) -> bool {
        match self {
            TorrentState::FetchingMetadata | TorrentState::Downloading | TorrentState::StalledDownload => true,
            TorrentState::StoppedIncomplete
            | TorrentState::QueuedDownload
            | TorrentState::Checking
            | TorrentState::Seeding
            | TorrentState::StoppedComplete
            | TorrentState::Moving
            | TorrentState::MissingFiles
            | TorrentState::Error
            | TorrentState::Unknown(_) => false,
        }
    }

    /// True in the states where the wanted data is all there (a `Checking` torrent is not trusted yet).
    pub fn is_upload_side(&self) -> bool {
        matches!(self, TorrentState::Seeding | TorrentState::StoppedComplete)
    }
}

/// Progress of one torrent, as the download stage polls it.
#[derive(Debug, Clone, PartialEq)]
pub struct TorrentProgress {
    /// Our v1 info hash.
    pub hash: InfoHash,
    /// 0.0..=1.0 of the *selected* bytes.
    pub progress: f64,
    /// Bytes per second.
    pub download_speed: u64,
    /// `None` when qBittorrent says infinity (8640000) or the torrent is not downloading.
    pub eta: Option<Duration>,
    pub state: TorrentState,
    /// Selected bytes still missing.
    pub amount_left: u64,
    /// Selected bytes in total (0 while metadata is missing).
    pub size: u64,
    /// Seeds we are connected to.
    pub connected_seeds: u64,
    /// True when the wanted data is complete (`amount_left == 0` in an upload-side state).
    pub is_complete: bool,
    /// Where the torrent's root is on THIS machine: qBittorrent's save path translated through
    /// `[qbittorrent] path_mappings` (join [`ClientFile::path`] to it only after sanitising).
    pub save_path: PathBuf,
}

/// One file of a torrent, as qBittorrent lists it (BEP 47 pad files are not listed and not counted in `index`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFile {
    /// qBittorrent's file index (what `filePrio` takes).
    pub index: u64,
    /// Path inside the torrent, `/`-separated, root folder included (untrusted).
    pub path: String,
    pub size: u64,
    /// 0.0..=1.0; a priority-0 file can show progress while absent from disk (its bytes live in `.parts`).
    pub progress: f64,
    /// 0 skip, 1 normal, 6 high, 7 maximal.
    pub priority: u8,
}

impl ClientFile {
    /// The contract's view of the file.
    pub fn to_torrent_file(&self) -> TorrentFile {
        TorrentFile { path: self.path.clone(), size_bytes: self.size }
    }
}

/// One of our torrents in the all-torrents poll: what the pipeline needs for progress, stalls and seeding limits.
#[derive(Debug, Clone, PartialEq)]
pub struct TorrentStatus {
    /// Our v1 info hash (`infohash_v1`, which stays put when a hybrid's `hash` changes).
    pub hash: InfoHash,
    /// Ticket ids taken from our `d2-<ticket id>` tags (several tickets may share one torrent).
    pub ticket_ids: Vec<String>,
    pub name: String,
    pub progress: TorrentProgress,
    /// True when the torrent made no progress and had no seeds for `stall_timeout_secs` while it wanted data.
    pub stalled: bool,
    /// Upload/download ratio (qBittorrent reports -1 above 9999).
    pub ratio: f64,
    /// Seconds spent seeding.
    pub seeding_time_secs: u64,
    /// True once qBittorrent stopped it on its share limits (complete and stopped), i.e. it may be removed.
    pub share_limit_reached: bool,
}

/// The pipeline's view of a BitTorrent client. Every method is one or a few WebUI requests; none waits longer than
/// its own deadline, none sleeps across a stage.
#[async_trait::async_trait]
pub trait TorrentClient: Send + Sync {
    /// Adds a torrent for a ticket and returns its v1 info hash (taken from the magnet or the .torrent, never guessed).
    ///
    /// Saved under `download_path/<ticket id>`, category `downloader2`, tag `d2-<ticket id>`, share limits from the
    /// configuration. The torrent is *parked*: a magnet fetches its metadata then stops; a .torrent is added stopped.
    /// Nothing of the payload is downloaded until [`TorrentClient::set_file_priorities`] starts it. Adding a torrent
    /// that is already there (another ticket chose it) adds this ticket's tag and returns the same hash.
    async fn add_torrent(&self, source: AddSource, ticket_id: &str) -> Result<InfoHash, TorrentClientError>;

    /// Fetches the file list of a magnet without downloading its payload, within `timeout`. The temporary torrent
    /// is removed again (unless it was already there for a ticket, then it is left alone).
    async fn fetch_metadata(&self, magnet: &str, timeout: Duration) -> Result<Vec<TorrentFile>, TorrentClientError>;

    /// Progress of one torrent. Returns [`TorrentClientError::Stalled`] when it made no progress and had no seeds
    /// for `stall_timeout_secs` (never within a grace period after qBittorrent came back from a restart or an
    /// outage), [`TorrentClientError::TorrentNotFound`] when it is gone, and
    /// [`TorrentClientError::DownloadNotVisible`] when it is complete but a wanted file is not at the local path.
    async fn get_progress(&self, hash: &InfoHash) -> Result<TorrentProgress, TorrentClientError>;

    /// The torrent's files (empty while a magnet's metadata is still missing).
    async fn get_files(&self, hash: &InfoHash) -> Result<Vec<ClientFile>, TorrentClientError>;

    /// Downloads exactly `wanted_paths` (paths as [`ClientFile::path`]): priority 1 for them, 0 for the rest, then
    /// starts the torrent. [`TorrentClientError::MetadataNotReady`] while the file list is unknown;
    /// [`TorrentClientError::UnknownFiles`] when a wanted path is not in the torrent (nothing is changed then).
    async fn set_file_priorities(&self, hash: &InfoHash, wanted_paths: &[String]) -> Result<(), TorrentClientError>;

    /// Removes the torrent; with `delete_files` its data (and `.parts`) too. Removing a missing torrent is not an error.
    async fn remove_torrent(&self, hash: &InfoHash, delete_files: bool) -> Result<(), TorrentClientError>;

    /// Status of every torrent in the `downloader2` category, in one request. A `fetch_metadata` torrent still in
    /// flight shows with empty `ticket_ids`: skip those. The first call also removes the metadata-only torrents an
    /// earlier run abandoned when it was killed during a fetch.
    async fn poll_all(&self) -> Result<Vec<TorrentStatus>, TorrentClientError>;
}

/// Every way talking to qBittorrent (or running qbittorrent-nox) can fail.
#[derive(Debug, thiserror::Error)]
pub enum TorrentClientError {
    /// Nothing answers at the URL (connection refused, DNS, reset).
    #[error("qBittorrent at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// No answer within the configured `[qbittorrent] timeout_secs`.
    #[error("qBittorrent at {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    /// qBittorrent answered 5xx.
    #[error("qBittorrent at {url} failed with HTTP {status}: {body}")]
    Server { url: String, status: u16, body: String },
    /// `auth/login` refused the configured username/password. Not retried: repeated failures get the IP banned.
    #[error(
        "qBittorrent at {url} rejected the login of user {username:?}: fix [qbittorrent] username/password \
         (not retried, qBittorrent bans an IP after repeated failures)"
    )]
    BadCredentials { url: String, username: String },
    /// qBittorrent banned this IP after too many failed logins.
    #[error(
        "qBittorrent at {url} banned this IP after too many failed logins: fix [qbittorrent] username/password \
         and wait for the ban (WebUI\\BanDuration) to end or restart qBittorrent"
    )]
    Banned { url: String },
    /// The session is still refused (403) right after a fresh login.
    #[error("qBittorrent at {url} refused the request with 403 right after a successful login: {body}")]
    Forbidden { url: String, body: String },
    /// qBittorrent refused the request (4xx other than the cases above): a bug or an unsupported version.
    #[error("qBittorrent at {url} rejected the request with HTTP {status}: {body}")]
    Rejected { url: String, status: u16, body: String },
    /// A body that is not what WebAPI v2 answers.
    #[error("unexpected answer from qBittorrent at {url}: {reason}")]
    UnexpectedResponse { url: String, reason: String },
    /// The torrent is not (or no longer) in qBittorrent: it was removed behind our back.
    #[error("torrent {hash} is not in qBittorrent (removed behind our back?): add it again")]
    TorrentNotFound { hash: InfoHash },
    /// The file list of a magnet is not known yet.
    #[error("torrent {hash} has no metadata yet")]
    MetadataNotReady { hash: InfoHash },
    /// A magnet's metadata did not arrive in time (no peer had it).
    #[error("metadata of torrent {hash} did not arrive within {secs} s (no peers?)")]
    MetadataTimeout { hash: InfoHash, secs: u64 },
    /// No progress and no seeds for the configured time.
    #[error("torrent {hash} is stalled: no progress and no seeds for {secs} s")]
    Stalled { hash: InfoHash, secs: u64 },
    /// The torrent is in qBittorrent outside our category: a user's own, which downloader2 never touches.
    #[error(
        "torrent {hash} is already in qBittorrent as {name:?} in category {category:?}, outside downloader2's \
         category: downloader2 never touches a user's own torrents; remove it there (or move it to category \
         \"downloader2\") and retry the ticket"
    )]
    ForeignTorrent { hash: InfoHash, name: String, category: String },
    /// qBittorrent finished the download but a wanted file is not where this machine looks for it.
    #[error(
        "torrent {hash} is complete, but downloader2 cannot see its files: qBittorrent keeps them in \
         {remote_path:?}, read here as {local_path:?}, and {missing:?} does not exist. If qBittorrent sees the \
         download folder under another path (another container or machine), set [qbittorrent] path_mappings = \
         [{{ remote = \"<the folder as qBittorrent sees it>\", local = \"<the same folder here>\" }}]; if a \
         mapping is set, check that its local folder is mounted"
    )]
    DownloadNotVisible { hash: InfoHash, remote_path: String, local_path: String, missing: String },
    /// qBittorrent accepted the add but the torrent never appeared.
    #[error("torrent {hash} did not appear in qBittorrent after it was added: {reason}")]
    AddFailed { hash: InfoHash, reason: String },
    /// The magnet, the .torrent or the ticket id cannot be used (untrusted input that failed validation).
    #[error("invalid torrent source: {reason}")]
    InvalidSource { reason: String },
    /// Wanted paths that are not files of the torrent.
    #[error("torrent {hash} has no files {paths:?}")]
    UnknownFiles { hash: InfoHash, paths: Vec<String> },
    /// The managed qbittorrent-nox program is not installed.
    #[error("{program} not found: apt-get install qbittorrent-nox (or set [qbittorrent] nox_path)")]
    NoxNotFound { program: String },
    /// The managed qbittorrent-nox did not come up.
    #[error("qbittorrent-nox ({program}) did not start: {reason}; log tail: {log_tail}")]
    NoxStartFailed { program: String, reason: String, log_tail: String },
    /// Preparing the managed profile failed.
    #[error("cannot prepare the qbittorrent-nox profile at {path}: {source}")]
    Profile { path: String, source: std::io::Error },
}

impl TorrentClientError {
    /// Whether trying again later may succeed (the queue manager schedules the retry).
    pub fn is_retryable(&self) -> bool {
        match self {
            TorrentClientError::Unreachable { .. }
            | TorrentClientError::Timeout { .. }
            | TorrentClientError::Server { .. }
            | TorrentClientError::MetadataNotReady { .. }
            | TorrentClientError::MetadataTimeout { .. }
            | TorrentClientError::Stalled { .. }
            | TorrentClientError::AddFailed { .. }
            | TorrentClientError::DownloadNotVisible { .. }
            | TorrentClientError::NoxStartFailed { .. } => true,
            TorrentClientError::BadCredentials { .. }
            | TorrentClientError::Banned { .. }
            | TorrentClientError::Forbidden { .. }
            | TorrentClientError::Rejected { .. }
            | TorrentClientError::UnexpectedResponse { .. }
            | TorrentClientError::TorrentNotFound { .. }
            | TorrentClientError::ForeignTorrent { .. }
            | TorrentClientError::InvalidSource { .. }
            | TorrentClientError::UnknownFiles { .. }
            | TorrentClientError::NoxNotFound { .. }
            | TorrentClientError::Profile { .. } => false,
        }
    }

    /// Whether the operator must fix the configuration (credentials, ban, missing program) before anything works.
    pub fn is_configuration_error(&self) -> bool {
        matches!(
            self,
            TorrentClientError::BadCredentials { .. }
                | TorrentClientError::Banned { .. }
                | TorrentClientError::Forbidden { .. }
                | TorrentClientError::NoxNotFound { .. }
        )
    }
}

/// The tag that marks a ticket's torrent.
pub fn ticket_tag(ticket_id: &str) -> String {
    format!("d2-{ticket_id}")
}

/// Checks a ticket id before it becomes a directory name and a tag (the contract allows `[A-Za-z0-9._-]`).
pub fn validate_ticket_id(ticket_id: &str) -> Result<(), TorrentClientError> {
    let valid = !ticket_id.is_empty()
        && ticket_id.len() <= 128
        && ticket_id != "."
        && ticket_id != ".."
        && ticket_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(TorrentClientError::InvalidSource {
            reason: format!(
                "ticket id {:?} cannot name a download folder",
                ticket_id.chars().take(80).collect::<String>()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_both_versions_map_to_the_same_meaning() {
        assert_eq!(TorrentState::from_qbittorrent("pausedDL"), TorrentState::from_qbittorrent("stoppedDL"));
        assert_eq!(TorrentState::from_qbittorrent("pausedUP"), TorrentState::from_qbittorrent("stoppedUP"));
        assert!(TorrentState::from_qbittorrent("stalledDL").is_active_download());
        assert!(!TorrentState::from_qbittorrent("pausedDL").is_active_download());
        assert!(TorrentState::from_qbittorrent("stalledUP").is_upload_side());
        assert_eq!(TorrentState::from_qbittorrent("allocating"), TorrentState::Unknown("allocating".into()));
    }

    #[test]
    fn ticket_ids_that_could_escape_the_download_folder_are_refused() {
        assert!(validate_ticket_id("album-42_x.y").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b", "a b", "../x"] {
            assert!(validate_ticket_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configuration_errors_are_not_retryable() {
        let bad = TorrentClientError::BadCredentials { url: "http://127.0.0.1:1/".into(), username: "u".into() };
        assert!(bad.is_configuration_error());
        assert!(!bad.is_retryable());
        let down = TorrentClientError::Unreachable { url: "http://127.0.0.1:1/".into(), reason: "refused".into() };
        assert!(down.is_retryable());
    }
}
