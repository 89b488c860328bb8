//! `TicketWork`: the pipeline's working memory for one ticket, persisted next to its state (one JSON column written
//! in the same transaction as the transition it belongs to). It holds what the contract's states do not carry but a
//! resumed or retried ticket needs: the search results, the ranked candidates (for falling back after a dead
//! download), the chosen candidate and its torrent, the conversion's outputs. Pure data; the store writes it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::ScoredCandidate;
use super::torrent::{InfoHash, TorrentCandidate};
use super::verification::ReleaseVerification;

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
    /// Every release verified for this ticket, oldest first (the current download's is the one with its hash).
    #[serde(default)]
    pub verifications: Vec<ReleaseVerification>,
}

impl TicketWork {
    /// The verification of the torrent being converted, if it was verified.
    pub fn current_verification(&self) -> Option<&ReleaseVerification> {
        let hash = self.torrent_hash.as_ref()?.to_string();
        self.verifications.iter().rev().find(|verification| verification.info_hash == hash)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Doubt, HardReject};

    /// `TicketWork` as versions before the typed verdict stored it in SQLite: hard rejects as text, no `doubts`.
    const OLD_WORK: &str = r#"{"search_results":[],
        "ranked":[
          {"candidate":{"title":"A - B [FLAC]","indexer":"x","magnet_uri":null,"info_hash":"0123456789abcdef0123456789abcdef01234567",
           "size_bytes":10,"seeders":12,"leechers":0,"files":[{"path":"A - B [FLAC]/01 - One.flac","size_bytes":10}],"publish_date":null},
           "score":0.99,"reasoning":"1/1 tracks mapped","track_mapping":[{"catalog_track_id":"a","torrent_file_path":"A - B [FLAC]/01 - One.flac","confidence":1.0}]},
          {"candidate":{"title":"A - B [MP3]","indexer":"x","magnet_uri":null,"info_hash":null,"size_bytes":10,"seeders":40,
           "leechers":0,"files":[],"publish_date":null},
           "score":0.3,"reasoning":"","track_mapping":[],"hard_rejects":["missing 1 of 1 ticket tracks (a)"]}],
        "selected":{"candidate":{"title":"A - B [FLAC]","indexer":"x","magnet_uri":null,"info_hash":"0123456789abcdef0123456789abcdef01234567",
           "size_bytes":10,"seeders":12,"leechers":0,"files":null,"publish_date":null},"score":0.99,"reasoning":"","track_mapping":[]},
        "torrent_hash":"0123456789abcdef0123456789abcdef01234567","failed_hashes":[],
        "download_started_at":"2026-11-25T10:00:00Z","download_bytes":0,"download_duration_secs":0.0,"conversion":null}"#;

    #[test]
    fn work_stored_before_the_typed_verdict_still_loads() {
        let work: TicketWork = serde_json::from_str(OLD_WORK).unwrap();
        assert_eq!(work.ranked.len(), 2);
        assert!(work.verifications.is_empty(), "no verification recorded before the verifier");
        assert_eq!(work.ranked[0].doubts, vec![Doubt::NotRecorded]);
        assert_eq!(
            work.ranked[1].hard_rejects,
            vec![HardReject::Recorded { text: "missing 1 of 1 ticket tracks (a)".into() }]
        );
        assert_eq!(work.selected.as_ref().map(|s| s.doubts.clone()), Some(vec![Doubt::NotRecorded]));
        let again: TicketWork = serde_json::from_str(&serde_json::to_string(&work).unwrap()).unwrap();
        assert_eq!(again, work);
    }
}
