//! The ticket state machine's states and their data, serialised as the contract shows them
//! (`{"state": "needs_approval", ...data}`). Which moves between them are legal lives in `queue/transitions.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::torrent::TorrentCandidate;
use super::verdict::{verdict_entries, Doubt, HardReject};
use super::verification::ReleaseVerification;

/// The state of a ticket, with the data that state carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TicketState {
    /// Accepted, waiting for a search slot.
    Pending {},
    /// Querying the indexers. `query` is an admin's custom query from force-search, if any.
    Searching {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        started_at: DateTime<Utc>,
    },
    /// Scoring the search results against the ticket.
    Matching { candidates_found: usize, started_at: DateTime<Utc> },
    /// Waiting for an admin: the matcher is not sure enough.
    NeedsApproval {
        candidates: Vec<ScoredCandidate>,
        recommended_idx: Option<usize>,
        confidence: f64,
        reason: ApprovalReason,
        waiting_since: DateTime<Utc>,
    },
    /// The matcher was sure enough to go on without an admin.
    AutoApproved { selected: ScoredCandidate, confidence: f64, approved_at: DateTime<Utc> },
    /// An admin chose a candidate.
    Approved { selected: ScoredCandidate, approved_by: String, approved_at: DateTime<Utc> },
    /// qBittorrent is fetching the chosen torrent.
    Downloading {
        torrent_hash: String,
        progress_pct: f64,
        download_speed_bps: u64,
        eta_secs: Option<u64>,
        started_at: DateTime<Utc>,
    },
    /// ffmpeg is transcoding the tracks.
    Converting { current_track_idx: usize, total_tracks: usize, current_track_name: String, started_at: DateTime<Utc> },
    /// Converted files are being moved to their destinations.
    Placing { files_placed: usize, total_files: usize, started_at: DateTime<Utc> },
    /// Every promised file is at its destination.
    Completed { completed_at: DateTime<Utc>, stats: CompletionStats },
    /// An admin refused every candidate.
    Rejected { rejected_by: String, reason: String, rejected_at: DateTime<Utc> },
    /// Work stopped. `retryable` says whether an automatic or `POST /retry` attempt may succeed.
    Failed { failed_at_state: StateKind, error: String, retryable: bool, retry_count: u32, failed_at: DateTime<Utc> },
    /// The catalog withdrew the ticket (`DELETE`).
    Cancelled { cancelled_at: DateTime<Utc> },
}

/// The name of a state without its data: what the database indexes and the API filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Pending,
    Searching,
    Matching,
    NeedsApproval,
    AutoApproved,
    Approved,
    Downloading,
    Converting,
    Placing,
    Completed,
    Rejected,
    Failed,
    Cancelled,
}

impl StateKind {
    /// Every state, in pipeline order.
    pub const ALL: [StateKind; 13] = [
        StateKind::Pending,
        StateKind::Searching,
        StateKind::Matching,
        StateKind::NeedsApproval,
        StateKind::AutoApproved,
        StateKind::Approved,
        StateKind::Downloading,
        StateKind::Converting,
        StateKind::Placing,
        StateKind::Completed,
        StateKind::Rejected,
        StateKind::Failed,
        StateKind::Cancelled,
    ];

    /// The snake_case name used in JSON, the database and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Pending => "pending",
            StateKind::Searching => "searching",
            StateKind::Matching => "matching",
            StateKind::NeedsApproval => "needs_approval",
            StateKind::AutoApproved => "auto_approved",
            StateKind::Approved => "approved",
            StateKind::Downloading => "downloading",
            StateKind::Converting => "converting",
            StateKind::Placing => "placing",
            StateKind::Completed => "completed",
            StateKind::Rejected => "rejected",
            StateKind::Failed => "failed",
            StateKind::Cancelled => "cancelled",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<StateKind> {
        StateKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// No work will ever happen again (cancel answers 409).
    pub fn is_terminal(self) -> bool {
        matches!(self, StateKind::Completed | StateKind::Rejected | StateKind::Cancelled)
    }

    /// A worker owns the ticket while it is in this state (resumed at start-up).
    pub fn is_working(self) -> bool {
        matches!(
            self,
            StateKind::Searching
                | StateKind::Matching
                | StateKind::AutoApproved
                | StateKind::Approved
                | StateKind::Downloading
                | StateKind::Converting
                | StateKind::Placing
        )
    }
}

impl std::fmt::Display for StateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TicketState {
    /// The state's name.
    pub fn kind(&self) -> StateKind {
        match self {
            TicketState::Pending {} => StateKind::Pending,
            TicketState::Searching { .. } => StateKind::Searching,
            TicketState::Matching { .. } => StateKind::Matching,
            TicketState::NeedsApproval { .. } => StateKind::NeedsApproval,
            TicketState::AutoApproved { .. } => StateKind::AutoApproved,
            TicketState::Approved { .. } => StateKind::Approved,
            TicketState::Downloading { .. } => StateKind::Downloading,
            TicketState::Converting { .. } => StateKind::Converting,
            TicketState::Placing { .. } => StateKind::Placing,
            TicketState::Completed { .. } => StateKind::Completed,
            TicketState::Rejected { .. } => StateKind::Rejected,
            TicketState::Failed { .. } => StateKind::Failed,
            TicketState::Cancelled { .. } => StateKind::Cancelled,
        }
    }
}

/// Why the matcher did not auto-approve; the most specific reason wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalReason {
    LowConfidence {
        score: f64,
        threshold: f64,
    },
    TrackCountMismatch {
        expected: usize,
        found: usize,
    },
    DurationMismatch {
        expected_secs: f64,
        found_secs: f64,
    },
    NameSimilarityLow {
        similarity: f64,
    },
    MultipleGoodMatches {
        top_scores: Vec<f64>,
    },
    NoExactMatch {},
    /// The downloaded release claims lossless audio but its spectrum shows a lossy source (see `verification`'s
    /// suspect tracks: verdict, cut-off, spectrogram); its info hash is blocklisted.
    TranscodeSuspected {
        verification: Box<ReleaseVerification>,
    },
    /// Files of the downloaded release do not decode completely (damaged frames, wrong MD5, truncated, zero-filled,
    /// unreadable; see `verification`'s corrupt tracks); its info hash is blocklisted.
    CorruptDownload {
        verification: Box<ReleaseVerification>,
    },
}

/// A candidate with the matcher's verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoredCandidate {
    pub candidate: TorrentCandidate,
    /// In [0, 1].
    pub score: f64,
    /// The evidence in words ("12/12 tracks mapped, titles 0.97, ..."), for people and the LLM: no decision reads
    /// it (they read `hard_rejects` and `doubts`).
    pub reasoning: String,
    pub track_mapping: Vec<TrackMapping>,
    /// Reasons this candidate may never be auto-approved (missing tracks, wrong artist, live, ...). Each is shown as
    /// `{"type": ..., ...data, "message": "..."}`; plain strings stored by older versions load as `recorded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "verdict_entries")]
    pub hard_rejects: Vec<HardReject>,
    /// Why an acceptable candidate still needs an admin (weak swarm, a duration, names, ...), shown like
    /// `hard_rejects`. Always written (an empty list means "no doubt"); missing in what older versions stored, where
    /// it loads as `[not_recorded]` so such a candidate is never auto-approved.
    #[serde(default = "Doubt::not_recorded", with = "verdict_entries")]
    pub doubts: Vec<Doubt>,
}

impl ScoredCandidate {
    /// The candidate as the `needs_approval` state, the history and the WebSocket carry it: its file list trimmed
    /// to the files mapped to tracks (for a CUE image, the image) and a few others
    /// ([`TorrentCandidate::trimmed`]); the whole kept list stays in the ticket's work.
    pub fn trimmed(self) -> ScoredCandidate {
        let ScoredCandidate { candidate, score, reasoning, track_mapping, hard_rejects, doubts } = self;
        let mut keep: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for mapping in &track_mapping {
            let path = mapping.torrent_file_path.as_str();
            keep.insert(path);
            // `<image>#<track number>` names a track of a CUE image.
            if let Some((image, number)) = path.rsplit_once('#') {
                if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                    keep.insert(image);
                }
            }
        }
        let candidate = candidate.trimmed(&keep);
        ScoredCandidate { candidate, score, reasoning, track_mapping, hard_rejects, doubts }
    }
}

/// One ticket track mapped to a file of the torrent (or `<image path>#<track number>` for a CUE image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrackMapping {
    pub catalog_track_id: String,
    pub torrent_file_path: String,
    /// In [0, 1].
    pub confidence: f64,
}

/// What a completed ticket cost and produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionStats {
    pub download_bytes: u64,
    pub download_duration_secs: f64,
    pub conversion_duration_secs: f64,
    pub final_size_bytes: u64,
    /// Destinations written.
    #[serde(default)]
    pub placed_files: Vec<String>,
    /// Destinations left alone because an identical file was already there.
    #[serde(default)]
    pub skipped_files: Vec<String>,
    /// Catalog track ids the chosen release did not have (only with an admin's approval).
    #[serde(default)]
    pub missing_track_ids: Vec<String>,
    /// Catalog image ids no image was found for.
    #[serde(default)]
    pub missing_image_ids: Vec<String>,
    /// The audio verifier's verdicts on the placed release (absent with `[verifier] enabled = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<ReleaseVerification>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_serialises_with_snake_case_tag() {
        let state = TicketState::Rejected {
            rejected_by: "admin".into(),
            reason: "wrong album".into(),
            rejected_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["state"], "rejected");
        assert_eq!(json["rejected_by"], "admin");
        let pending = serde_json::to_value(TicketState::Pending {}).unwrap();
        assert_eq!(pending, serde_json::json!({"state": "pending"}));
    }

    /// A `needs_approval` state exactly as versions before the typed verdict stored it (hard rejects as text, no
    /// `doubts`), and an `auto_approved` one.
    const OLD_NEEDS_APPROVAL: &str = r#"{"state":"needs_approval","candidates":[
        {"candidate":{"title":"Marrow Lane - Paper Satellites (2017) [FLAC]","indexer":"orpheus","magnet_uri":null,
         "info_hash":"0123456789abcdef0123456789abcdef01234567","size_bytes":31000000,"seeders":1,"leechers":2,
         "files":[{"path":"Marrow Lane - Paper Satellites (2017) [FLAC]/01 - Static Bloom.flac","size_bytes":15000000}],
         "publish_date":null},
         "score":0.8642,"reasoning":"1/1 tracks mapped (1 by name), titles 1.00, lossless, 1 seeders; doubts: weak swarm (1 seeders)",
         "track_mapping":[{"catalog_track_id":"a","torrent_file_path":"Marrow Lane - Paper Satellites (2017) [FLAC]/01 - Static Bloom.flac","confidence":1.0}]},
        {"candidate":{"title":"Marrow Lane - Paper Satellites (Live) [MP3 320]","indexer":"orpheus","magnet_uri":null,
         "info_hash":null,"size_bytes":9000000,"seeders":0,"leechers":0,"files":null,"publish_date":null},
         "score":0.05,"reasoning":"title only: album words 1.00; rejected: live recording not asked for, no seeders",
         "track_mapping":[],"hard_rejects":["live recording not asked for","no seeders"]}],
        "recommended_idx":0,"confidence":0.8642,
        "reason":{"type":"low_confidence","score":0.8642,"threshold":0.85},
        "waiting_since":"2026-11-25T10:00:00Z"}"#;

    #[test]
    fn states_stored_before_the_typed_verdict_still_load() {
        let state: TicketState = serde_json::from_str(OLD_NEEDS_APPROVAL).unwrap();
        let TicketState::NeedsApproval { candidates, recommended_idx, .. } = &state else {
            panic!("{state:?}");
        };
        assert_eq!(*recommended_idx, Some(0));
        assert!(candidates[0].hard_rejects.is_empty());
        assert_eq!(candidates[0].doubts, vec![Doubt::NotRecorded], "unknown doubts: never auto-approved");
        assert_eq!(
            candidates[1].hard_rejects,
            vec![
                HardReject::Recorded { text: "live recording not asked for".into() },
                HardReject::Recorded { text: "no seeders".into() }
            ]
        );
        // Written again in the new shape, and read back the same.
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json["candidates"][1]["hard_rejects"][1],
            serde_json::json!({"type": "recorded", "text": "no seeders", "message": "no seeders"})
        );
        assert_eq!(json["candidates"][0]["doubts"][0]["type"], "not_recorded");
        assert_eq!(serde_json::from_value::<TicketState>(json).unwrap(), state);

        let old_approved = serde_json::json!({"state": "auto_approved", "confidence": 0.99,
            "approved_at": "2026-11-25T10:00:00Z",
            "selected": {"candidate": {"title": "A - B"}, "score": 0.99, "reasoning": "", "track_mapping": []}});
        let state: TicketState = serde_json::from_value(old_approved).unwrap();
        let TicketState::AutoApproved { selected, .. } = state else { panic!() };
        assert_eq!((selected.hard_rejects.len(), selected.doubts.clone()), (0, vec![Doubt::NotRecorded]));
    }

    #[test]
    fn a_trimmed_candidate_keeps_its_mapped_files_and_cue_images() {
        use crate::models::TorrentFile;
        let mut candidate = TorrentCandidate::with_title("big");
        let mut files: Vec<TorrentFile> =
            (0..500).map(|n| TorrentFile { path: format!("Box/{n:03}.flac"), size_bytes: 1 }).collect();
        files.push(TorrentFile { path: "Box/CD9/image.flac".into(), size_bytes: 1 });
        candidate.files = Some(files);
        let mapping = |id: &str, path: &str| TrackMapping {
            catalog_track_id: id.into(),
            torrent_file_path: path.into(),
            confidence: 0.9,
        };
        let scored = ScoredCandidate {
            candidate,
            score: 0.5,
            reasoning: String::new(),
            track_mapping: vec![mapping("a", "Box/400.flac"), mapping("b", "Box/CD9/image.flac#3")],
            hard_rejects: vec![],
            doubts: vec![],
        };
        let trimmed = scored.trimmed();
        let paths: Vec<&str> = trimmed.candidate.files.as_ref().unwrap().iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"Box/400.flac") && paths.contains(&"Box/CD9/image.flac"));
        assert_eq!(paths.len(), crate::models::torrent::MAX_SHOWN_OTHER_FILES + 2);
        assert_eq!(trimmed.candidate.files_omitted, 501 - paths.len() as u64);
        assert_eq!(trimmed.track_mapping.len(), 2);
    }

    #[test]
    fn verifier_reasons_round_trip_and_stats_stored_before_them_still_load() {
        use crate::models::verification::{FileVerification, Md5Check, TrackVerification, Verdict};
        let file = FileVerification {
            path: "A/01.flac".into(),
            verdict: Verdict::Suspect,
            reason: "lossy source, cut-off 16.1 kHz".into(),
            confidence: 0.9,
            codec: "flac".into(),
            lossless: true,
            sample_rate_hz: 44_100,
            channels: 2,
            bits_per_sample: Some(16),
            duration_secs: 10.0,
            cutoff_hz: Some(16_100.0),
            upsampled: false,
            padded_bits: 0,
            duplicate_of: None,
            loudness_lufs: Some(-9.0),
            true_peak_dbtp: Some(-0.1),
            spectrum: None,
            decode_errors: 0,
            md5: Md5Check::Match,
            missing_secs: 0.0,
            zero_runs: Vec::new(),
        };
        let verification = ReleaseVerification {
            info_hash: "ab".repeat(20),
            title: "A - B [FLAC]".into(),
            verified_at: DateTime::from_timestamp(0, 0).unwrap(),
            tracks: vec![TrackVerification { catalog_track_ids: vec!["t1".into()], spectrogram: true, file }],
            album: None,
            verification_secs: 1.5,
        };
        let reason = ApprovalReason::TranscodeSuspected { verification: Box::new(verification) };
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["type"], "transcode_suspected");
        assert_eq!(json["verification"]["tracks"][0]["file"]["verdict"], "suspect");
        assert_eq!(serde_json::from_value::<ApprovalReason>(json).unwrap(), reason);
        // A completed state written before the verifier: no `verification` in its stats.
        let old = serde_json::json!({"state": "completed", "completed_at": "2026-11-25T10:00:00Z",
            "stats": {"download_bytes": 1, "download_duration_secs": 1.0, "conversion_duration_secs": 1.0,
                      "final_size_bytes": 1}});
        let TicketState::Completed { stats, .. } = serde_json::from_value(old).unwrap() else { panic!() };
        assert_eq!(stats.verification, None);
        assert!(serde_json::to_value(&stats).unwrap().get("verification").is_none(), "absent, not null");
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in StateKind::ALL {
            assert_eq!(StateKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
