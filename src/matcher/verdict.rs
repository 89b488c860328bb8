//! The only functions that decide from a candidate's typed verdict (`models::verdict`: hard rejects and doubts):
//! whether it may be auto-approved ([`auto_approvable`], and why not: [`approval_blocker`]), whether an LLM's
//! confirmation may raise it ([`llm_raise_refusal`]), and which candidate a ticket takes after its download died or
//! was refused ([`next_fallback`]). Which files a chosen candidate needs is `wanted.rs`. Pure: they read types,
//! never the reasoning text. The matcher's own decision (`mod.rs`), the download fallback, the LLM guard rails and
//! the review all call them, so the rules live here once.

use std::fmt;

use crate::models::{ApprovalReason, Doubt, HardReject, InfoHash, ScoredCandidate};

use super::scoring::HEALTHY_SEEDERS;

/// Why `candidate` may not be auto-approved at `threshold`, as the reason an admin is shown; `None` when it may.
/// A candidate may be auto-approved only with no hard reject, a non-empty file list, no doubt (but a mild one) and a
/// score at or above the threshold.
pub fn approval_blocker(candidate: &ScoredCandidate, threshold: f64) -> Option<ApprovalReason> {
    let score = candidate.score;
    if !candidate.hard_rejects.is_empty() {
        // Nothing but missing tracks: say how many; otherwise it is simply not the release asked for.
        let only_missing =
            candidate.hard_rejects.iter().all(|reject| matches!(reject, HardReject::MissingTracks { .. }));
        let expected = candidate.hard_rejects.iter().find_map(|reject| match reject {
            HardReject::MissingTracks { expected, .. } => Some(*expected),
            _ => None,
        });
        return Some(match expected.filter(|_| only_missing) {
            Some(expected) => ApprovalReason::TrackCountMismatch { expected, found: candidate.track_mapping.len() },
            None => ApprovalReason::NoExactMatch {},
        });
    }
    if !has_file_list(candidate) {
        return Some(ApprovalReason::LowConfidence { score, threshold });
    }
    if let Some(reason) = reason_for_doubts(&candidate.doubts, score, threshold) {
        return Some(reason);
    }
    if score < threshold {
        return Some(ApprovalReason::LowConfidence { score, threshold });
    }
    None
}

/// Whether `candidate` may be downloaded without an admin (see [`approval_blocker`]).
pub fn auto_approvable(candidate: &ScoredCandidate, threshold: f64) -> bool {
    approval_blocker(candidate, threshold).is_none()
}

fn has_file_list(candidate: &ScoredCandidate) -> bool {
    candidate.candidate.files.as_ref().is_some_and(|files| !files.is_empty())
}

/// The most specific reason among the blocking `doubts` (mild ones block nothing): a duration first, then names,
/// else low confidence.
fn reason_for_doubts(doubts: &[Doubt], score: f64, threshold: f64) -> Option<ApprovalReason> {
    let doubts: Vec<&Doubt> = doubts.iter().filter(|doubt| !doubt.is_mild()).collect();
    if doubts.is_empty() {
        return None;
    }
    for doubt in &doubts {
        if let Doubt::Duration { expected_secs, found_secs } = doubt {
            return Some(ApprovalReason::DurationMismatch { expected_secs: *expected_secs, found_secs: *found_secs });
        }
    }
    for doubt in &doubts {
        match doubt {
            Doubt::NamesUnconfirmed { similarity } | Doubt::TitleMismatch { similarity } => {
                return Some(ApprovalReason::NameSimilarityLow { similarity: *similarity });
            }
            Doubt::ArtistUncertain | Doubt::CueUnverified => {
                return Some(ApprovalReason::NameSimilarityLow { similarity: 0.0 });
            }
            Doubt::NoFileList
            | Doubt::WeakSwarm { .. }
            | Doubt::Pack
            | Doubt::LowBitrate
            | Doubt::Duration { .. }
            | Doubt::YearConflict
            | Doubt::OlderYear { .. }
            | Doubt::NotRecorded => {}
        }
    }
    Some(ApprovalReason::LowConfidence { score, threshold })
}

/// Why a candidate's own verdict forbids an LLM to raise it to auto-approval.
#[derive(Debug, Clone, PartialEq)]
pub enum RaiseRefusal {
    /// It has hard rejects (never auto-approved, whatever anyone says).
    HardRejects(Vec<HardReject>),
    /// Only its title is known: there is no mapping to confirm.
    NoFileList,
    /// Fewer than [`HEALTHY_SEEDERS`] seeders.
    WeakSwarm(u32),
    /// A blocking doubt reading names cannot settle (durations, swarm, pack, bitrate, year, unknown).
    Doubt(Doubt),
    /// Its deterministic score is below the threshold.
    BelowThreshold { score: f64, threshold: f64 },
}

impl fmt::Display for RaiseRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RaiseRefusal::HardRejects(rejects) => {
                format!(
                    "hard rejects: {}",
                    rejects.iter().map(HardReject::plain_message).collect::<Vec<_>>().join(", ")
                )
            }
            RaiseRefusal::NoFileList => "no file list".to_string(),
            RaiseRefusal::WeakSwarm(seeders) => format!("weak swarm ({seeders} seeders)"),
            RaiseRefusal::Doubt(doubt) => format!("doubt {:?} is not about names", doubt.plain_message()),
            RaiseRefusal::BelowThreshold { score, threshold } => {
                format!("score {score:.3} below the threshold {threshold:.2}")
            }
        };
        f.write_str(&crate::models::verdict::reword(text))
    }
}

/// Whether the typed verdict of `candidate` lets an LLM's confirmation raise it to auto-approval (`None`), or why
/// not: no hard reject, a file list, a healthy swarm, only doubts that reading names can settle, and a score at or
/// above the threshold. What the LLM itself must say (verdict, score, mapping) is checked by the guard rails.
pub fn llm_raise_refusal(candidate: &ScoredCandidate, threshold: f64) -> Option<RaiseRefusal> {
    if !candidate.hard_rejects.is_empty() {
        return Some(RaiseRefusal::HardRejects(candidate.hard_rejects.clone()));
    }
    if !has_file_list(candidate) {
        return Some(RaiseRefusal::NoFileList);
    }
    if candidate.candidate.seeders < HEALTHY_SEEDERS {
        return Some(RaiseRefusal::WeakSwarm(candidate.candidate.seeders));
    }
    if let Some(doubt) = candidate.doubts.iter().find(|doubt| !doubt.is_settled_by_names() && !doubt.is_mild()) {
        return Some(RaiseRefusal::Doubt(doubt.clone()));
    }
    if candidate.score < threshold {
        return Some(RaiseRefusal::BelowThreshold { score: candidate.score, threshold });
    }
    None
}

/// What a ticket does after its download died (or turned out unusable).
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// The candidates still worth offering, best first: the ranked list without the failed releases.
    pub remaining: Vec<ScoredCandidate>,
    pub step: FallbackStep,
}

/// The next step after a failed release.
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackStep {
    /// `remaining[selected]` would have been auto-approved on its own merit: download it.
    AutoApprove { selected: usize },
    /// An admin chooses among `remaining`; `recommended_idx` is the first without a hard reject.
    NeedsApproval { recommended_idx: Option<usize>, confidence: f64, reason: ApprovalReason },
}

/// The next candidate after the releases in `failed_hashes` / `failed_titles` failed for a ticket: the first of
/// `ranked` (best first) that is not one of them and is [`auto_approvable`] is taken without an admin; otherwise an
/// admin chooses, with the first candidate without a hard reject recommended and its blocker as the reason. A
/// release is failed when its info hash is in `failed_hashes` or its title in `failed_titles` (the same release
/// from another indexer, or listed without a hash).
pub fn next_fallback(
    ranked: &[ScoredCandidate],
    failed_hashes: &[InfoHash],
    failed_titles: &[&str],
    threshold: f64,
) -> Fallback {
    let remaining: Vec<ScoredCandidate> = ranked
        .iter()
        .filter(|scored| {
            let failed_hash = scored.candidate.info_hash.as_ref().is_some_and(|hash| failed_hashes.contains(hash));
            let failed_title = failed_titles.contains(&scored.candidate.title.as_str());
            !failed_hash && !failed_title
        })
        .cloned()
        .collect();
    if let Some(selected) = remaining.iter().position(|scored| auto_approvable(scored, threshold)) {
        return Fallback { remaining, step: FallbackStep::AutoApprove { selected } };
    }
    let recommended_idx = remaining.iter().position(|scored| scored.hard_rejects.is_empty());
    let recommended = recommended_idx.and_then(|idx| remaining.get(idx));
    let confidence = recommended.map_or(0.0, |scored| scored.score);
    let reason =
        recommended.and_then(|scored| approval_blocker(scored, threshold)).unwrap_or(ApprovalReason::NoExactMatch {});
    Fallback { remaining, step: FallbackStep::NeedsApproval { recommended_idx, confidence, reason } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{TorrentCandidate, TorrentFile, TrackMapping};

    const T: f64 = 0.85;

    fn scored(title: &str, hash: char, seeders: u32, doubts: Vec<Doubt>, rejects: Vec<HardReject>) -> ScoredCandidate {
        let mut candidate = TorrentCandidate::with_title(title);
        candidate.seeders = seeders;
        candidate.info_hash = Some(hash.to_string().repeat(40).parse().unwrap());
        candidate.files = Some(vec![TorrentFile { path: format!("{title}/01 - One.flac"), size_bytes: 30_000_000 }]);
        ScoredCandidate {
            candidate,
            score: 0.97,
            reasoning: "1/1 tracks mapped".into(),
            track_mapping: vec![TrackMapping {
                catalog_track_id: "t1".into(),
                torrent_file_path: format!("{title}/01 - One.flac"),
                confidence: 0.97,
            }],
            hard_rejects: rejects,
            doubts,
        }
    }

    fn clean(title: &str, hash: char) -> ScoredCandidate {
        scored(title, hash, 20, Vec::new(), Vec::new())
    }

    #[test]
    fn only_a_clean_verified_candidate_above_the_threshold_is_auto_approvable() {
        assert!(auto_approvable(&clean("A", 'a'), T));
        let weak = scored("A", 'a', 1, vec![Doubt::WeakSwarm { seeders: 1 }], Vec::new());
        assert_eq!(approval_blocker(&weak, T), Some(ApprovalReason::LowConfidence { score: 0.97, threshold: T }));
        let duration = scored("A", 'a', 9, vec![Doubt::Duration { expected_secs: 200.0, found_secs: 150.0 }], vec![]);
        assert_eq!(
            approval_blocker(&duration, T),
            Some(ApprovalReason::DurationMismatch { expected_secs: 200.0, found_secs: 150.0 })
        );
        let names = scored("A", 'a', 9, vec![Doubt::YearConflict, Doubt::NamesUnconfirmed { similarity: 0.3 }], vec![]);
        assert_eq!(approval_blocker(&names, T), Some(ApprovalReason::NameSimilarityLow { similarity: 0.3 }));
        let missing = scored(
            "A",
            'a',
            9,
            vec![],
            vec![HardReject::MissingTracks { missing_track_ids: vec!["t2".into()], expected: 2 }],
        );
        assert_eq!(approval_blocker(&missing, T), Some(ApprovalReason::TrackCountMismatch { expected: 2, found: 1 }));
        let live = scored("A", 'a', 9, vec![], vec![HardReject::NoSeeders]);
        assert_eq!(approval_blocker(&live, T), Some(ApprovalReason::NoExactMatch {}));
        let mut bare = clean("A", 'a');
        bare.candidate.files = None;
        assert!(!auto_approvable(&bare, T));
        let mut low = clean("A", 'a');
        low.score = 0.8;
        assert!(!auto_approvable(&low, T));
        assert!(!auto_approvable(&scored("A", 'a', 9, Doubt::not_recorded(), vec![]), T), "older verdicts");
    }

    #[test]
    fn fallback_takes_the_next_auto_approvable_candidate_and_skips_failed_releases() {
        let ranked = vec![clean("First", 'a'), clean("First", 'b'), clean("Second", 'c'), clean("Third", 'd')];
        let dead: InfoHash = "a".repeat(40).parse().unwrap();
        let fallback = next_fallback(&ranked, std::slice::from_ref(&dead), &["First"], T);
        let titles: Vec<&str> = fallback.remaining.iter().map(|s| s.candidate.title.as_str()).collect();
        assert_eq!(titles, ["Second", "Third"], "the same release under another hash is skipped too");
        assert_eq!(fallback.step, FallbackStep::AutoApprove { selected: 0 });
        // Without the title, only the hash is skipped.
        let fallback = next_fallback(&ranked, &[dead], &[], T);
        assert_eq!(fallback.remaining.len(), 3);
    }

    #[test]
    fn fallback_to_a_weak_swarm_or_a_doubtful_candidate_asks_an_admin() {
        for (doubts, seeders) in [
            (vec![Doubt::WeakSwarm { seeders: 1 }], 1),
            (vec![Doubt::Duration { expected_secs: 300.0, found_secs: 240.0 }], 30),
            (Doubt::not_recorded(), 30),
        ] {
            let ranked = vec![clean("Dead", 'a'), scored("Next", 'b', seeders, doubts.clone(), Vec::new())];
            let fallback = next_fallback(&ranked, &["a".repeat(40).parse().unwrap()], &["Dead"], T);
            match fallback.step {
                FallbackStep::NeedsApproval { recommended_idx, confidence, reason } => {
                    assert_eq!(recommended_idx, Some(0), "{doubts:?}");
                    assert_eq!(confidence, 0.97);
                    assert_ne!(reason, ApprovalReason::NoExactMatch {}, "the next one's own blocker is the reason");
                }
                other => panic!("{doubts:?}: {other:?}"),
            }
        }
        // Only rejected candidates left: no recommendation.
        let ranked = vec![clean("Dead", 'a'), scored("Live", 'b', 30, vec![], vec![HardReject::NoSeeders])];
        let fallback = next_fallback(&ranked, &[], &["Dead"], T);
        assert_eq!(
            fallback.step,
            FallbackStep::NeedsApproval {
                recommended_idx: None,
                confidence: 0.0,
                reason: ApprovalReason::NoExactMatch {}
            }
        );
    }

    #[test]
    fn candidates_stored_before_the_typed_verdict_never_fall_back_without_an_admin() {
        // What a ticket downloading at the upgrade holds in `TicketWork.ranked`: a clean-looking candidate with no
        // `doubts` field (its doubts were only in the reasoning) and a rejected one with text rejects.
        let ranked: Vec<ScoredCandidate> = serde_json::from_value(serde_json::json!([
            {"candidate": {"title": "Dead", "info_hash": "a".repeat(40), "seeders": 50,
                           "files": [{"path": "Dead/01.flac", "size_bytes": 10}]},
             "score": 0.99, "reasoning": "", "track_mapping": []},
            {"candidate": {"title": "Next", "info_hash": "b".repeat(40), "seeders": 1,
                           "files": [{"path": "Next/01.flac", "size_bytes": 10}]},
             "score": 0.9, "reasoning": "1/1 tracks mapped; doubts: weak swarm (1 seeders)",
             "track_mapping": [{"catalog_track_id": "t1", "torrent_file_path": "Next/01.flac", "confidence": 1.0}]},
            {"candidate": {"title": "Other", "seeders": 30}, "score": 0.2, "reasoning": "",
             "track_mapping": [], "hard_rejects": ["no seeders"]}
        ]))
        .unwrap();
        let fallback = next_fallback(&ranked, &["a".repeat(40).parse().unwrap()], &["Dead"], T);
        assert_eq!(fallback.remaining.len(), 2);
        assert!(
            matches!(fallback.step, FallbackStep::NeedsApproval { recommended_idx: Some(0), .. }),
            "{:?}",
            fallback.step
        );
        assert!(!auto_approvable(&ranked[1], T));
        assert!(llm_raise_refusal(&ranked[1], T).is_some());
    }

    #[test]
    fn an_llm_may_only_raise_a_candidate_whose_doubts_names_can_settle() {
        let names = scored("A", 'a', 20, vec![Doubt::ArtistUncertain, Doubt::CueUnverified], Vec::new());
        assert_eq!(llm_raise_refusal(&names, T), None);
        for (candidate, refusal) in [
            (scored("A", 'a', 2, vec![], vec![]), RaiseRefusal::WeakSwarm(2)),
            (scored("A", 'a', 20, vec![Doubt::YearConflict], vec![]), RaiseRefusal::Doubt(Doubt::YearConflict)),
            (scored("A", 'a', 20, Doubt::not_recorded(), vec![]), RaiseRefusal::Doubt(Doubt::NotRecorded)),
            (
                scored("A", 'a', 20, vec![], vec![HardReject::NoSeeders]),
                RaiseRefusal::HardRejects(vec![HardReject::NoSeeders]),
            ),
        ] {
            assert_eq!(llm_raise_refusal(&candidate, T), Some(refusal));
        }
    }
}
