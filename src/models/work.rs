//! `TicketWork`: the pipeline's working memory for one ticket, persisted next to its state (one JSON column written
//! in the same transaction as the transition it belongs to). It holds what the contract's states do not carry but a
//! resumed or retried ticket needs: the search results, the ranked candidates (for falling back after a dead
//! download), the chosen candidate and its torrent, the conversion's outputs. Pure data; the store writes it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::ScoredCandidate;
use super::torrent::{InfoHash, TorrentCandidate};

/// Everything a stage left for the next one (or for a restart).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketWork {
    /// The last search's results, kept so a restart in `matching` does not search again.
    #[serde(default)]
    pub search_results: Vec<TorrentCandidate>,
    /// The last match's candidates, best first (the fallback list after a dead download).
    #[serde(default)]
    pub ranked: Vec<ScoredCandidate>,
    /// The candidate being downloaded or converted.
    #[serde(default)]
    pub selected: Option<ScoredCandidate>,
    /// The torrent this ticket holds in the client (shared with other tickets choosing the same hash).
    #[serde(default)]
    pub torrent_hash: Option<InfoHash>,
    /// Torrents that stalled or died for this ticket: never chosen again for it.
    #[serde(default)]
    pub failed_hashes: Vec<InfoHash>,
    #[serde(default)]
    pub download_started_at: Option<DateTime<Utc>>,
    /// Selected bytes of the finished download.
    #[serde(default)]
    pub download_bytes: u64,
    #[serde(default)]
    pub download_duration_secs: f64,
    /// What the conversion produced (read by `placing`, also after a restart).
    #[serde(default)]
    pub conversion: Option<ConversionRecord>,
}

/// The converter's output, as `placing` needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversionRecord {
    pub work_dir: PathBuf,
    pub files: Vec<ConvertedFileRecord>,
    #[serde(default)]
    pub missing_track_ids: Vec<String>,
    #[serde(default)]
    pub missing_image_ids: Vec<String>,
    pub conversion_duration_secs: f64,
}

/// One converted file waiting in the work dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertedFileRecord {
    pub path: PathBuf,
    pub dest_path: String,
    pub size_bytes: u64,
}
