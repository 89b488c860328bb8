//! Search: turning a ticket's hints into torrent candidates through Torznab indexers (Jackett, Prowlarr).
//!
//! Owns the `Searcher` trait (what the pipeline calls), its one implementation [`TorznabSearcher`], and the
//! boundary error [`SearchError`]. Everything an indexer or a `.torrent` sends is hostile until validated: nothing
//! here may panic on it, and no API key may ever appear in a log line or an error message.
//!
//! | module | owns |
//! |---|---|
//! | [`torznab`] | the HTTP client: endpoints, caps, retries, link resolution, dedup, cache |
//! | [`torznab_xml`] | parsing Torznab documents (results, caps, error) — pure |
//! | [`crate::models::metainfo`] | parsing `.torrent` bytes: v1 info hash and file list — pure (shared with the torrent client) |
//! | [`query`] | query variants built from a ticket, and when results are "enough" — pure |
//! | [`candidates`] | turning items into candidates, dedup by info hash — pure |
//! | [`host_policy`] | which hosts links may be fetched from and which trackers/web seeds the torrent client gets |
//! | [`rate_limit`] | the searches-per-minute window shared by every search |

pub mod candidates;
pub mod host_policy;
pub mod query;
pub mod rate_limit;
pub mod torznab;
pub mod torznab_xml;

use crate::models::{Ticket, TorrentCandidate};

pub use torznab::TorznabSearcher;

/// The pipeline's view of search: a ticket in, deduplicated candidates out.
#[async_trait::async_trait]
pub trait Searcher: Send + Sync {
    /// Queries built from the ticket (or `custom_query` from an admin's force-search), deduplicated candidates.
    async fn search(&self, ticket: &Ticket, custom_query: Option<&str>) -> Result<Vec<TorrentCandidate>, SearchError>;

    /// What to hand the torrent client for a chosen candidate: its magnet or the .torrent bytes (fetched again
    /// through its link if not cached), without the trackers, web seeds, nodes and peers on internal addresses
    /// (see [`host_policy`]).
    async fn torrent_source(&self, candidate: &TorrentCandidate) -> Result<TorrentSource, SearchError>;
}

/// How a chosen release reaches the torrent client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentSource {
    /// A `magnet:` URI (the client fetches the metadata from peers).
    Magnet(String),
    /// The bencoded `.torrent` file (metadata known at once).
    TorrentFile(bytes::Bytes),
}

/// Why a search or a link resolution failed. URLs in messages never carry the API key.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// `[jackett] url` is empty.
    #[error("searching is not configured: set [jackett] url (DOWNLOADER2_JACKETT_URL) and api_key to a Jackett or Prowlarr instance")]
    NotConfigured,
    /// A configuration value is unusable (bad URL, API key refused, unknown indexer id).
    #[error("Torznab configuration error: {0}")]
    Configuration(String),
    /// The indexer or proxy could not be reached or did not answer in time.
    #[error("request to {url} failed: {message}")]
    Network { url: String, message: String },
    /// The request did not complete within `[jackett] timeout_secs`.
    #[error("request to {url} timed out after {timeout_secs} s")]
    Timeout { url: String, timeout_secs: u64 },
    /// An HTTP status that is not success and carried no Torznab error document.
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    /// The indexer (or Jackett for it) reported a failure (Torznab error code 900 and friends).
    #[error("indexer error from {url}: code {code}: {description}")]
    Indexer { url: String, code: u32, description: String },
    /// Too many requests: the indexer asked to come back later.
    #[error("{url} is rate limited; retry after {retry_after_secs} s")]
    RateLimited { url: String, retry_after_secs: u64 },
    /// The answer was not a Torznab document (or not a valid one).
    #[error("invalid Torznab answer from {url}: {message}")]
    InvalidResponse { url: String, message: String },
    /// A body exceeded its size cap.
    #[error("answer from {url} exceeds {limit_bytes} bytes")]
    TooLarge { url: String, limit_bytes: u64 },
    /// A `.torrent` body could not be used.
    #[error("bad .torrent from {url}: {message}")]
    BadTorrent { url: String, message: String },
    /// A link (or a redirect) the host policy never fetches: another scheme than http(s), credentials, or a host
    /// on an internal address that is not the indexer's nor in `[jackett] allowed_link_hosts`.
    #[error("link {url} refused: {reason}")]
    LinkRefused { url: String, reason: String },
    /// The candidate carries no magnet, no info hash and no link.
    #[error("candidate {title:?} has no magnet, info hash or download link")]
    NoDownloadLink { title: String },
}

impl SearchError {
    /// Whether trying the same thing later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SearchError::NotConfigured => true,
            SearchError::Configuration(_) => false,
            SearchError::Network { .. } => true,
            SearchError::Timeout { .. } => true,
            SearchError::HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            SearchError::Indexer { .. } => true,
            SearchError::RateLimited { .. } => true,
            SearchError::InvalidResponse { .. } => true,
            SearchError::TooLarge { .. } => false,
            SearchError::BadTorrent { .. } => false,
            SearchError::LinkRefused { .. } => false,
            SearchError::NoDownloadLink { .. } => false,
        }
    }

    /// Whether the error is about the setup rather than this one request (stop every further request).
    pub fn is_configuration(&self) -> bool {
        matches!(self, SearchError::NotConfigured | SearchError::Configuration(_))
    }
}
