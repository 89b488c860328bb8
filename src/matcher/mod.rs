//! Matching: scores every search result against the ticket and maps torrent files to catalog tracks, then decides
//! between auto-approval and an admin's review. Deterministic and pure: the same ticket and candidates always give
//! the same outcome, byte for byte. It never auto-approves a candidate with a hard reject, without a file list, or
//! with any doubt; it performs no I/O (the `match` command's body only parses bytes it is given).
//!
//! - `scoring.rs` judges one candidate (title, files, quality) and ranks by the labelling rules of "best"; its
//!   verdict is typed (`models::verdict`: hard rejects and doubts, carried on every `ScoredCandidate`).
//! - `verdict.rs` holds the only functions that decide from that verdict: auto-approval, an LLM raise, the next
//!   candidate after a dead download; `wanted.rs` which torrent files a chosen candidate needs. No decision reads
//!   the reasoning text.
//! - `mapping.rs` assigns tracks to files (Hungarian algorithm), `duration.rs` estimates durations from sizes,
//!   `cue.rs` handles single-file images with a cue sheet.
//! - `review.rs` lays out one candidate for the admin (mapping table with durations).
//! - `command.rs` is the `downloader2 match CASE.json` body.

pub mod command;
pub mod cue;
pub mod duration;
pub mod llm;
pub mod mapping;
pub mod review;
pub mod scoring;
pub mod verdict;
pub mod wanted;
#[cfg(test)]
mod wording_tests;

use serde::{Deserialize, Serialize};

use crate::models::{ApprovalReason, ScoredCandidate, Ticket, TorrentCandidate};

pub use command::{run_match_command, MatchInputError};
use mapping::MatchMemo;
use scoring::{evaluate_candidate, Evaluation, TicketContext};
pub use verdict::{approval_blocker, auto_approvable, next_fallback, Fallback, FallbackStep};
pub use wanted::wanted_files;

/// What the matcher concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchDecision {
    /// The best candidate is sure enough: go on without an admin.
    AutoApprove,
    /// An admin must choose (see the reason).
    NeedsApproval,
    /// The search gave nothing to match.
    NoCandidates,
}

/// One candidate with its verdict; `idx` is its index in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedCandidate {
    pub idx: usize,
    pub scored: ScoredCandidate,
}

/// The matcher's result for one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchOutcome {
    pub decision: MatchDecision,
    /// Index into the input candidates of the recommended one.
    pub recommended_idx: Option<usize>,
    /// The recommended candidate's score (0 when there is none).
    pub confidence: f64,
    /// Why an admin is needed; `None` for auto-approval and no candidates.
    pub reason: Option<ApprovalReason>,
    /// Every candidate, best first.
    pub candidates: Vec<RankedCandidate>,
}

/// Scores and ranks `candidates` for `ticket` and decides. Pure and deterministic: same input, same output.
pub fn match_candidates(ticket: &Ticket, candidates: &[TorrentCandidate], auto_approve_threshold: f64) -> MatchOutcome {
    if candidates.is_empty() {
        return MatchOutcome {
            decision: MatchDecision::NoCandidates,
            recommended_idx: None,
            confidence: 0.0,
            reason: None,
            candidates: Vec::new(),
        };
    }
    let ctx = TicketContext::new(ticket);
    let mut memo = MatchMemo::new();
    let mut evaluated: Vec<(usize, Evaluation)> =
        candidates.iter().enumerate().map(|(idx, c)| (idx, evaluate_candidate(&ctx, &mut memo, c))).collect();
    evaluated.sort_by(|(ia, a), (ib, b)| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(ia.cmp(ib)));

    let ranked: Vec<RankedCandidate> = evaluated
        .into_iter()
        .filter_map(|(idx, evaluation)| {
            let candidate = candidates.get(idx)?.clone();
            Some(RankedCandidate {
                idx,
                scored: ScoredCandidate {
                    candidate,
                    score: evaluation.score,
                    reasoning: evaluation.reasoning,
                    track_mapping: evaluation.mapping,
                    hard_rejects: evaluation.hard_rejects,
                    doubts: evaluation.doubts,
                },
            })
        })
        .collect();
    let (decision, reason, recommended_idx, confidence) = match ranked.first() {
        Some(best) => {
            let (decision, reason) = decide(&best.scored, auto_approve_threshold);
            (decision, reason, Some(best.idx), best.scored.score)
        }
        None => (MatchDecision::NoCandidates, None, None, 0.0),
    };
    MatchOutcome { decision, recommended_idx, confidence, reason, candidates: ranked }
}

/// The decision on the best candidate: its typed verdict says whether it may go on without an admin.
fn decide(best: &ScoredCandidate, threshold: f64) -> (MatchDecision, Option<ApprovalReason>) {
    match approval_blocker(best, threshold) {
        None => (MatchDecision::AutoApprove, None),
        Some(reason) => (MatchDecision::NeedsApproval, Some(reason)),
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test fixtures size files from f64 durations
mod tests {
    use super::*;
    use crate::models::{HardReject, TorrentFile};

    const TRACKS: [(&str, f64); 9] = [
        ("Lantern Bay", 241.0),
        ("Salt in the Wires", 305.0),
        ("Harbourmaster (feat. Ina Vos)", 198.0),
        ("Glass Harbour", 362.0),
        ("Tidewater Hymn", 127.0),
        ("Copper Gulls", 274.0),
        ("Night Ferry to Ostend", 419.0),
        ("Breakwater", 233.0),
        ("Lantern Bay (Reprise)", 96.0),
    ];

    fn ticket_with(artist: &str, album: &str, tracks: &[(&str, f64)]) -> Ticket {
        let tracks: Vec<serde_json::Value> = tracks
            .iter()
            .enumerate()
            .map(|(i, (name, secs))| {
                serde_json::json!({
                    "catalog_track_id": format!("t{}", i + 1), "disc_number": 1, "track_number": i + 1,
                    "name": name, "duration_secs": secs, "dest_path": format!("/music/x/{:02}.ogg", i + 1)
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "ticket_id": "t-1", "created_at": "2026-01-01T00:00:00Z",
            "search": {"artist": artist, "album": album, "year": 2016},
            "tracks": tracks,
            "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 320}
        }))
        .unwrap()
    }

    fn ticket() -> Ticket {
        ticket_with("The Northern Lights Orchestra", "Glass Harbour", &TRACKS)
    }

    /// Files named `NN - Title.ext` sized for `kbps` (lossless: varying a little per track, like real FLAC).
    fn candidate(title: &str, seeders: u32, ext: &str, kbps: f64, tracks: &[(&str, f64)]) -> TorrentCandidate {
        let folder = title.replace('/', "-");
        let mut files: Vec<TorrentFile> = tracks
            .iter()
            .enumerate()
            .map(|(i, (name, secs))| {
                let wobble = if ext == "mp3" { 1.0 } else { 1.0 + 0.03 * ((i % 3) as f64 - 1.0) };
                let bytes = (secs * kbps * 125.0 * wobble) as u64 + 4_000;
                TorrentFile { path: format!("{folder}/{:02} - {name}.{ext}", i + 1), size_bytes: bytes }
            })
            .collect();
        files.push(TorrentFile { path: format!("{folder}/cover.jpg"), size_bytes: 500_000 });
        let mut c = TorrentCandidate::with_title(title);
        c.size_bytes = files.iter().map(|f| f.size_bytes).sum();
        c.seeders = seeders;
        c.files = Some(files);
        c
    }

    fn flac(title: &str, seeders: u32) -> TorrentCandidate {
        candidate(title, seeders, "flac", 880.0, &TRACKS)
    }

    fn outcome(cands: &[TorrentCandidate]) -> MatchOutcome {
        match_candidates(&ticket(), cands, 0.85)
    }

    fn rejects_of(o: &MatchOutcome, idx: usize) -> Vec<HardReject> {
        o.candidates.iter().find(|c| c.idx == idx).map(|c| c.scored.hard_rejects.clone()).unwrap_or_default()
    }

    #[test]
    fn clean_lossless_release_is_auto_approved_with_its_mapping() {
        let o = outcome(&[flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 25)]);
        assert_eq!(o.decision, MatchDecision::AutoApprove, "{:?}", o.candidates[0].scored.reasoning);
        assert_eq!(o.recommended_idx, Some(0));
        assert!(o.confidence >= 0.85 && o.confidence <= 1.0);
        let mapping = &o.candidates[0].scored.track_mapping;
        assert_eq!(mapping.len(), 9);
        assert!(mapping[2].torrent_file_path.ends_with("03 - Harbourmaster (feat. Ina Vos).flac"));
        assert!(mapping[8].torrent_file_path.ends_with("09 - Lantern Bay (Reprise).flac"));
        assert!(o.candidates[0].scored.reasoning.contains("9/9 tracks mapped"));
    }

    #[test]
    fn missing_track_is_a_hard_reject() {
        let mut short = TRACKS.to_vec();
        short.remove(4);
        let c = candidate("The Northern Lights Orchestra - Glass Harbour [FLAC]", 40, "flac", 880.0, &short);
        let o = outcome(&[c]);
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
        let missing = HardReject::MissingTracks { missing_track_ids: vec!["t5".into()], expected: 9 };
        assert_eq!(rejects_of(&o, 0), [missing]);
        assert_eq!(o.reason, Some(ApprovalReason::TrackCountMismatch { expected: 9, found: 8 }));
    }

    #[test]
    fn wrong_artist_is_a_hard_reject() {
        let o = outcome(&[flac("Harbour Tribute Band - Glass Harbour (2016) [FLAC]", 30)]);
        assert!(rejects_of(&o, 0).iter().any(|r| matches!(r, HardReject::WrongArtist { .. })));
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
    }

    #[test]
    fn artist_name_forms_are_the_same_artist() {
        for title in [
            "Northern Lights Orchestra, The - Glass Harbour [FLAC]",
            "northern_lights_orchestra-glass_harbour-WEB-2016-GRP",
            "THE NORTHERN LIGHTS ORCHESTRA - Glass Harbour (2016) FLAC",
        ] {
            let o = outcome(&[flac(title, 30)]);
            assert!(rejects_of(&o, 0).is_empty(), "{title}: {:?}", rejects_of(&o, 0));
        }
    }

    #[test]
    fn live_tribute_karaoke_compilation_and_other_mixes_are_hard_rejects() {
        for title in [
            "The Northern Lights Orchestra - Glass Harbour (Live at Paradiso) [FLAC]",
            "The Northern Lights Orchestra - Glass Harbour [Karaoke Version] FLAC",
            "The Northern Lights Orchestra - Glass Harbour (Instrumentals) [FLAC]",
            "String Quartet Tribute to The Northern Lights Orchestra - Glass Harbour [FLAC]",
            "The Northern Lights Orchestra - Greatest Hits: Glass Harbour and More [FLAC]",
            "The Northern Lights Orchestra - Glass Harbour (Mono) [FLAC]",
            "The Northern Lights Orchestra - Glass Harbour (2021 Remix) [FLAC]",
        ] {
            let o = outcome(&[flac(title, 30)]);
            assert!(!rejects_of(&o, 0).is_empty(), "{title} must be rejected");
            assert_ne!(o.decision, MatchDecision::AutoApprove, "{title}");
        }
    }

    #[test]
    fn a_live_album_asked_for_is_not_rejected_for_being_live() {
        let t = ticket_with("The Northern Lights Orchestra", "Live at Paradiso", &TRACKS);
        let c = flac("The Northern Lights Orchestra - Live at Paradiso (2016) [FLAC]", 30);
        let o = match_candidates(&t, &[c], 0.85);
        assert!(rejects_of(&o, 0).is_empty(), "{:?}", rejects_of(&o, 0));
        assert_eq!(o.decision, MatchDecision::AutoApprove);
    }

    #[test]
    fn zero_seeders_is_a_hard_reject() {
        let o = outcome(&[flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 0)]);
        assert!(rejects_of(&o, 0).contains(&HardReject::NoSeeders));
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
    }

    #[test]
    fn files_marked_live_do_not_map() {
        let live: Vec<(String, f64)> = TRACKS.iter().map(|(n, s)| (format!("{n} (Live)"), *s)).collect();
        let live_refs: Vec<(&str, f64)> = live.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let c =
            candidate("The Northern Lights Orchestra - Glass Harbour Sessions [FLAC]", 30, "flac", 880.0, &live_refs);
        let o = outcome(&[c]);
        let missing = rejects_of(&o, 0).iter().any(|r| matches!(r, HardReject::MissingTracks { .. }));
        assert!(missing, "{:?}", o.candidates[0].scored.reasoning);
    }

    #[test]
    fn another_recording_with_the_same_titles_is_rejected_by_durations() {
        // Same names, but each performance is 25-45% shorter or longer in turn.
        let other: Vec<(&str, f64)> =
            TRACKS.iter().enumerate().map(|(i, (n, s))| (*n, s * if i % 2 == 0 { 0.62 } else { 1.4 })).collect();
        let c = candidate("The Northern Lights Orchestra - Glass Harbour [FLAC]", 30, "flac", 880.0, &other);
        let o = outcome(&[c]);
        assert!(!rejects_of(&o, 0).is_empty(), "{}", o.candidates[0].scored.reasoning);
        assert_ne!(o.decision, MatchDecision::AutoApprove);
    }

    #[test]
    fn mp3_cbr_duration_mismatch_of_one_track_needs_review() {
        let mut tracks = TRACKS.to_vec();
        tracks[6].1 = 380.0; // an edit: 39 s shorter than the catalog's 419 s
        let c = candidate("The Northern Lights Orchestra - Glass Harbour (2016) [MP3 320]", 30, "mp3", 320.0, &tracks);
        let o = outcome(&[c]);
        assert_eq!(o.decision, MatchDecision::NeedsApproval, "{}", o.candidates[0].scored.reasoning);
        assert!(matches!(o.reason, Some(ApprovalReason::DurationMismatch { .. })), "{:?}", o.reason);
    }

    #[test]
    fn result_without_file_list_is_never_auto_approved() {
        let mut c = TorrentCandidate::with_title("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]");
        c.seeders = 500;
        let o = outcome(&[c]);
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
        assert!(matches!(o.reason, Some(ApprovalReason::LowConfidence { .. })));
        assert!(o.confidence < 0.85);
    }

    #[test]
    fn verified_files_outrank_a_better_seeded_title_only_result() {
        let mut bare = TorrentCandidate::with_title("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]");
        bare.seeders = 900;
        let o = outcome(&[
            bare,
            candidate("The Northern Lights Orchestra - Glass Harbour [MP3 320]", 5, "mp3", 320.0, &TRACKS),
        ]);
        assert_eq!(o.recommended_idx, Some(1));
    }

    #[test]
    fn preferences_follow_the_labelling_rules() {
        // Weak-swarm lossless loses to a healthy MP3 320.
        let weak = flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 2);
        let mp3 =
            candidate("The Northern Lights Orchestra - Glass Harbour (2016) [MP3 320]", 40, "mp3", 320.0, &TRACKS);
        assert_eq!(outcome(&[weak.clone(), mp3.clone()]).recommended_idx, Some(1));
        // Healthy lossless beats MP3, even a deluxe with extra tracks.
        let mut extra = TRACKS.to_vec();
        extra.push(("Glass Harbour (Demo)", 300.0));
        let deluxe =
            candidate("The Northern Lights Orchestra - Glass Harbour (Deluxe) [FLAC]", 6, "flac", 900.0, &extra);
        let o = outcome(&[mp3.clone(), deluxe.clone()]);
        assert_eq!(o.recommended_idx, Some(1));
        assert_eq!(o.decision, MatchDecision::AutoApprove);
        // The exact edition beats the deluxe at equal quality.
        let exact = flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 4);
        assert_eq!(outcome(&[deluxe, exact]).recommended_idx, Some(1));
        // MP3 320 beats 192, 192 beats 128; a 128 kbps best is never auto-approved.
        let m192 = candidate("The Northern Lights Orchestra - Glass Harbour [MP3 192]", 20, "mp3", 192.0, &TRACKS);
        let m128 = candidate("The Northern Lights Orchestra - Glass Harbour [MP3 128]", 90, "mp3", 128.0, &TRACKS);
        assert_eq!(outcome(&[m192.clone(), mp3]).recommended_idx, Some(1));
        assert_eq!(outcome(&[m128.clone(), m192]).recommended_idx, Some(1));
        let low = outcome(&[m128]);
        assert_eq!(low.decision, MatchDecision::NeedsApproval);
        // A discography pack loses to the plain album.
        let pack = flac("The Northern Lights Orchestra - Discography 2010-2020 [FLAC]", 90);
        let plain = flac("The Northern Lights Orchestra - Glass Harbour [FLAC]", 5);
        let o = outcome(&[pack, plain]);
        assert_eq!(o.recommended_idx, Some(1));
        // Lossless from CD beats a lossless vinyl rip.
        let vinyl = flac("The Northern Lights Orchestra - Glass Harbour (Vinyl Rip) [FLAC]", 50);
        let cd = flac("The Northern Lights Orchestra - Glass Harbour (CD) [FLAC]", 5);
        assert_eq!(outcome(&[vinyl, cd]).recommended_idx, Some(1));
    }

    #[test]
    fn placeholder_file_names_need_review() {
        let mut c = flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 30);
        if let Some(files) = c.files.as_mut() {
            for (i, f) in files.iter_mut().enumerate().filter(|(_, f)| f.path.ends_with(".flac")) {
                f.path = format!("Glass Harbour/Track {:02}.flac", i + 1);
            }
        }
        let o = outcome(&[c]);
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
        assert!(matches!(o.reason, Some(ApprovalReason::NameSimilarityLow { .. })), "{:?}", o.reason);
        assert_eq!(o.candidates[0].scored.track_mapping.len(), 9, "numbers and sizes still map every track");
        assert_eq!(o.candidates[0].scored.track_mapping[4].torrent_file_path, "Glass Harbour/Track 05.flac");
    }

    #[test]
    fn cue_image_maps_every_track_into_the_image() {
        let total: f64 = TRACKS.iter().map(|(_, s)| s).sum();
        let image = "The Northern Lights Orchestra - Glass Harbour (2016) [FLAC image+cue]/NLO - Glass Harbour #1.flac";
        let mut c =
            TorrentCandidate::with_title("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC image+cue]");
        c.seeders = 20;
        c.files = Some(vec![
            TorrentFile { path: image.into(), size_bytes: (total * 850.0 * 125.0) as u64 },
            TorrentFile {
                path: "The Northern Lights Orchestra - Glass Harbour (2016) [FLAC image+cue]/NLO - Glass Harbour.cue"
                    .into(),
                size_bytes: 1_500,
            },
        ]);
        let o = outcome(&[c]);
        let mapping = &o.candidates[0].scored.track_mapping;
        assert_eq!(mapping.len(), 9);
        assert_eq!(mapping[6].torrent_file_path, format!("{image}#7"));
        assert_eq!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
    }

    #[test]
    fn scene_multi_disc_numbering_maps_by_disc() {
        let disc_tracks: Vec<serde_json::Value> = (0..6)
            .map(|i| {
                let disc = 1 + i / 3;
                let number = 1 + i % 3;
                serde_json::json!({"catalog_track_id": format!("d{disc}t{number}"), "disc_number": disc,
                    "track_number": number, "name": format!("Movement {}", ["One", "Two", "Three"][i % 3]),
                    "duration_secs": 200.0 + 30.0 * i as f64, "dest_path": format!("/m/{i}.ogg")})
            })
            .collect();
        let t: Ticket = serde_json::from_value(serde_json::json!({
            "ticket_id": "t", "created_at": "2026-01-01T00:00:00Z",
            "search": {"artist": "Kestrel Unit", "album": "Twin Suites"}, "tracks": disc_tracks,
            "constraints": {"format": "mp3"}
        }))
        .unwrap();
        let folder = "Kestrel_Unit-Twin_Suites-2CD-2019-GRP";
        let mut files =
            vec![TorrentFile { path: format!("{folder}/00-kestrel_unit-twin_suites.nfo"), size_bytes: 3000 }];
        for i in 0..6u64 {
            let disc = 1 + i / 3;
            let number = 1 + i % 3;
            let name = ["one", "two", "three"][(i % 3) as usize];
            files.push(TorrentFile {
                path: format!("{folder}/{disc}{number:02}-kestrel_unit-movement_{name}.mp3"),
                size_bytes: (200 + 30 * i) * 40_000 + 3_000,
            });
        }
        let mut c = TorrentCandidate::with_title(folder);
        c.seeders = 12;
        c.files = Some(files);
        let o = match_candidates(&t, &[c], 0.85);
        let mapping = &o.candidates[0].scored.track_mapping;
        assert_eq!(mapping.len(), 6, "{}", o.candidates[0].scored.reasoning);
        for m in mapping {
            let id = &m.catalog_track_id; // d2t3 -> "203-"
            let expect = format!("{}{:02}-", &id[1..2], id[3..].parse::<u32>().unwrap());
            assert!(m.torrent_file_path.contains(&expect), "{id} -> {}", m.torrent_file_path);
        }
    }

    #[test]
    fn vinyl_side_numbering_maps_by_names() {
        let mut c =
            candidate("The Northern Lights Orchestra - Glass Harbour (LP) [24-96 FLAC]", 9, "flac", 2900.0, &TRACKS);
        if let Some(files) = c.files.as_mut() {
            for (i, f) in files.iter_mut().enumerate().filter(|(_, f)| f.path.ends_with(".flac")) {
                let side = ["A", "A", "A", "B", "B", "C", "C", "D", "D"][i];
                f.path = f.path.replacen(&format!("/{:02} - ", i + 1), &format!("/{side}{} - ", 1 + i % 2), 1);
            }
        }
        let o = outcome(&[c]);
        let mapping = &o.candidates[0].scored.track_mapping;
        assert_eq!(mapping.len(), 9, "{}", o.candidates[0].scored.reasoning);
        assert!(mapping[3].torrent_file_path.contains("Glass Harbour.flac"));
        assert!(o.candidates[0].scored.reasoning.contains("lossless vinyl rip"));
    }

    #[test]
    fn no_candidates() {
        let o = outcome(&[]);
        assert_eq!(o.decision, MatchDecision::NoCandidates);
        assert_eq!(o.recommended_idx, None);
        assert_eq!(o.reason, None);
    }

    #[test]
    fn high_threshold_means_low_confidence() {
        let o =
            match_candidates(&ticket(), &[flac("The Northern Lights Orchestra - Glass Harbour [FLAC]", 30)], 0.9999);
        assert_eq!(o.decision, MatchDecision::NeedsApproval);
        assert!(matches!(o.reason, Some(ApprovalReason::LowConfidence { .. })));
    }

    #[test]
    fn output_is_deterministic_and_independent_of_input_order() {
        let a = flac("The Northern Lights Orchestra - Glass Harbour (2016) [FLAC]", 25);
        let b = candidate("The Northern Lights Orchestra - Glass Harbour [MP3 320]", 40, "mp3", 320.0, &TRACKS);
        let c = flac("Harbour Tribute Band - Glass Harbour [FLAC]", 60);
        let first = outcome(&[a.clone(), b.clone(), c.clone()]);
        let second = outcome(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(first, second);
        let shuffled = outcome(&[c, b, a.clone()]);
        let pick = |o: &MatchOutcome| o.candidates[0].scored.candidate.title.clone();
        assert_eq!(pick(&first), a.title);
        assert_eq!(pick(&shuffled), a.title);
        assert_eq!(shuffled.recommended_idx, Some(2));
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut weird = vec![
            TorrentCandidate::with_title(""),
            TorrentCandidate::with_title("🎵🎵🎵 - ٩(◕‿◕)۶ [FLAC]"),
            TorrentCandidate::with_title("-".repeat(5000)),
        ];
        let mut zeros = flac("The Northern Lights Orchestra - Glass Harbour [FLAC]", u32::MAX);
        if let Some(files) = zeros.files.as_mut() {
            for f in files.iter_mut() {
                f.size_bytes = 0;
            }
        }
        weird.push(zeros);
        let mut huge = flac("The Northern Lights Orchestra - Glass Harbour [MP3 320]", 3);
        if let Some(files) = huge.files.as_mut() {
            for f in files.iter_mut() {
                f.size_bytes = u64::MAX;
            }
            files.push(TorrentFile { path: String::new(), size_bytes: 1 });
            files.push(TorrentFile { path: "/".into(), size_bytes: 1 });
            files.push(TorrentFile { path: ".flac".into(), size_bytes: 1 });
            files.push(TorrentFile { path: "a/#/#.flac#".into(), size_bytes: 1 });
        }
        weird.push(huge);
        let mut empty = TorrentCandidate::with_title("The Northern Lights Orchestra - Glass Harbour");
        empty.files = Some(Vec::new());
        weird.push(empty);
        let o = outcome(&weird);
        assert_eq!(o.candidates.len(), weird.len());
        for c in &o.candidates {
            assert!((0.0..=1.0).contains(&c.scored.score), "{}", c.scored.score);
        }
        let empty_ticket = ticket_with("", "", &[]);
        let _ = match_candidates(&empty_ticket, &weird, 0.85);
    }
}
