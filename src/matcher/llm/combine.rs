//! The guard rails of the LLM second opinion: how a [`ValidatedAnswer`] may change the deterministic
//! [`MatchOutcome`]. Pure: no I/O, same input, same output. The LLM is an adviser that can make the service MORE
//! careful freely and LESS careful only under narrow, checkable conditions. The rules (one unit test each):
//!
//! 1. **Nothing to say, nothing changes.** An answer with no valid verdict leaves the outcome as it was.
//! 2. **Reasoning.** Every judged candidate's reasoning gets the LLM's verdict, score and words appended.
//! 3. **Re-ranking.** Candidates are ordered into buckets, the deterministic order kept inside each: promoted (an
//!    `exact`/`other_edition` verdict with score >= 0.5 on a candidate with a file list and no hard rejects), then
//!    neutral (no verdict, `unsure`), then demoted (`wrong_release`, `incomplete`, or a score < 0.5), then every
//!    hard-rejected candidate. So the LLM can never lift a hard-rejected candidate, nor one without a file list,
//!    above another. When the LLM's order puts another candidate first, the outcome is `needs_approval`
//!    (`multiple_good_matches`): the LLM and the deterministic ranking disagree, a person decides; unless rule 6
//!    raises that candidate.
//! 4. **Confidence.** The outcome's confidence is the deterministic score of the recommended candidate, lowered to
//!    the LLM's score when that is lower. It is never raised.
//! 5. **Lowering.** An auto-approved favourite stays auto-approved only if the LLM (when it judged it) says
//!    `exact` or `other_edition`, with score >= threshold, and its mapping contradicts the deterministic mapping on
//!    no track it names. Otherwise: `needs_approval` (`low_confidence`).
//! 6. **Raising.** The recommended candidate (after rule 3) becomes auto-approved only if ALL hold: its own typed
//!    verdict allows it (`verdict::llm_raise_refusal`: no hard reject, a non-empty file list, >= 3 seeders, every
//!    doubt one that reading names can settle - file names, title, artist, CUE image; never durations, swarm, pack,
//!    bitrate or year - and a deterministic score at or above the threshold); the LLM says `exact` with a score at
//!    or above the threshold; the deterministic mapping covers every ticket track once; the LLM maps every ticket
//!    track to a file and agrees with the deterministic mapping on EVERY track; and every track the deterministic
//!    mapping holds with confidence <= [`CONFIDENT_TRACK`] maps to a file that has a real name (not `Track 05`).
//!    A candidate that is not the deterministic favourite is raised only when the LLM demoted every candidate the
//!    deterministic ranking put before it (overruling a preference the LLM did not dispute is a person's call).
//! 7. **Hard rejects are final.** A hard-rejected candidate is never auto-approved, whatever the answer says; an
//!    auto-approval always needs confidence >= threshold (checked last, over every other rule).
//! 8. **The mapping is the deterministic one.** Track mappings are never taken from the LLM; its mapping only
//!    agrees or disagrees.
//!
//! The cut-off [`CONFIDENT_TRACK`] = 0.8: in `scoring.rs` a track placed by number and size alone scores at most
//! 0.5 + 0.3 = 0.8, while one whose file name confirms it (similarity > 0.5, duration consistent) or a CUE image
//! track (0.85) scores above. Tracks above the cut-off were identified by name; at or below it the LLM's
//! agreement is only worth something if there is a name for it to read.
//!
//! No rule reads text: the deterministic doubts and rejects are the typed verdict each candidate carries.
//! Everything the LLM changed is described in [`Combined::notes`]. This file never builds prompts, never parses
//! answers and never calls a provider.

use crate::matcher::cue::split_track_reference;
use crate::matcher::mapping::read_audio_files;
use crate::matcher::verdict::llm_raise_refusal;
use crate::matcher::{MatchDecision, MatchOutcome, RankedCandidate};
use crate::models::verdict::reword;
use crate::models::ApprovalReason;

use super::answer::{CandidateVerdict, ValidatedAnswer, Verdict};

/// A deterministic track confidence above this was confirmed by the file's name (see the file's doc).
pub const CONFIDENT_TRACK: f64 = 0.8;
/// An `exact`/`other_edition` verdict below this score does not promote a candidate, and any verdict below it
/// demotes one (the prompt asks for a mapping only from 0.5 on).
pub const PROMOTE_SCORE: f64 = 0.5;

/// The outcome after the LLM's opinion, and what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    pub outcome: MatchOutcome,
    /// One line per change (re-rank, lowered, raised, refused raise), for the ticket's history.
    pub notes: Vec<String>,
}

/// Applies the rules of this file's doc to `det` and `answer`.
pub fn combine(det: &MatchOutcome, answer: &ValidatedAnswer, threshold: f64) -> Combined {
    let mut notes = Vec::new();
    if det.candidates.is_empty() || det.decision == MatchDecision::NoCandidates {
        return Combined { outcome: det.clone(), notes };
    }
    if answer.verdicts.is_empty() {
        notes.push(reword("LLM gave no usable verdict; the deterministic result stands".to_string()));
        return Combined { outcome: det.clone(), notes };
    }
    let Some(favourite) = det.candidates.first() else {
        return Combined { outcome: det.clone(), notes };
    };

    // Rule 3: buckets, deterministic order inside each (the sort is stable).
    let mut ranked: Vec<RankedCandidate> = det.candidates.clone();
    ranked.sort_by_key(|c| bucket(c, answer.verdict_for(c.idx)));
    // Rule 2: the LLM's words next to the deterministic evidence.
    for c in &mut ranked {
        if let Some(v) = answer.verdict_for(c.idx) {
            let words = reword(format!("; LLM: {} {:.2}: {}", v.verdict.as_str(), v.score, v.reasoning));
            c.scored.reasoning.push_str(&words);
        }
    }
    let Some(recommended) = ranked.first() else {
        return Combined { outcome: det.clone(), notes };
    };
    let verdict = answer.verdict_for(recommended.idx);
    // Rule 4.
    let confidence = verdict.map_or(recommended.scored.score, |v| v.score.min(recommended.scored.score));

    let (mut decision, mut reason) = (det.decision, det.reason.clone());
    if recommended.idx != favourite.idx {
        // Rule 6 for a candidate the LLM put first: only when it demoted every one the ranking preferred.
        let preferred_all_demoted = det
            .candidates
            .iter()
            .take_while(|c| c.idx != recommended.idx)
            .all(|c| bucket(c, answer.verdict_for(c.idx)) >= DEMOTED);
        let refusal = if preferred_all_demoted {
            raise_refusal(recommended, verdict, &answer.track_ids, threshold)
        } else {
            Some("the LLM did not dispute every candidate ranked before it".to_string())
        };
        match refusal {
            None => {
                notes.push(reword(format!(
                    "LLM raised candidate {} to auto-approval in place of the deterministic favourite {} ({}): it \
                     confirms the release and every track mapping, and its own verdict allows it",
                    recommended.idx,
                    favourite.idx,
                    answer.verdict_for(favourite.idx).map_or("no verdict", |v| v.verdict.as_str()),
                )));
                decision = MatchDecision::AutoApprove;
                reason = None;
            }
            Some(why) => {
                notes.push(reword(format!(
                    "LLM re-ranked: candidate {} ({}) now comes before the deterministic favourite {} ({}); not \
                     auto-approved: {why}",
                    recommended.idx,
                    verdict.map_or("no verdict", |v| v.verdict.as_str()),
                    favourite.idx,
                    answer.verdict_for(favourite.idx).map_or("no verdict", |v| v.verdict.as_str()),
                )));
                decision = MatchDecision::NeedsApproval;
                reason =
                    Some(ApprovalReason::MultipleGoodMatches { top_scores: vec![confidence, favourite.scored.score] });
            }
        }
    } else if det.decision == MatchDecision::AutoApprove {
        // Rule 5.
        if let Some(why) = verdict.and_then(|v| lowering_reason(recommended, v, threshold)) {
            notes.push(reword(format!(
                "LLM lowered the auto-approval of candidate {} to needs_approval: {why}",
                favourite.idx
            )));
            decision = MatchDecision::NeedsApproval;
            reason = Some(ApprovalReason::LowConfidence { score: confidence, threshold });
        }
    } else {
        // Rule 6.
        match raise_refusal(recommended, verdict, &answer.track_ids, threshold) {
            None => {
                notes.push(reword(format!(
                    "LLM raised candidate {} to auto-approval (it confirms the release and every track mapping)",
                    favourite.idx
                )));
                decision = MatchDecision::AutoApprove;
                reason = None;
            }
            Some(why) => {
                if verdict.is_some_and(|v| v.verdict == Verdict::Exact) {
                    notes.push(reword(format!(
                        "LLM endorsement of candidate {} not enough to auto-approve: {why}",
                        favourite.idx
                    )));
                }
                if let Some(ApprovalReason::LowConfidence { score, .. }) = reason.as_mut() {
                    *score = confidence;
                }
            }
        }
    }
    if confidence < recommended.scored.score {
        notes.push(reword(format!(
            "LLM lowered the confidence of candidate {} from {:.3} to {confidence:.3}",
            recommended.idx, recommended.scored.score
        )));
    }

    // Rule 7, over everything above.
    if decision == MatchDecision::AutoApprove && (!recommended.scored.hard_rejects.is_empty() || confidence < threshold)
    {
        decision = MatchDecision::NeedsApproval;
        reason = Some(ApprovalReason::LowConfidence { score: confidence, threshold });
        notes.push(reword(format!("auto-approval of candidate {} refused by the final check", recommended.idx)));
    }

    let outcome =
        MatchOutcome { decision, recommended_idx: Some(recommended.idx), confidence, reason, candidates: ranked };
    Combined { outcome, notes }
}

/// Rule 3's bucket of a demoted candidate (hard-rejected ones come after).
const DEMOTED: u8 = 2;

/// Rule 3's bucket: 0 promoted, 1 neutral, 2 demoted, 3 hard-rejected.
fn bucket(c: &RankedCandidate, verdict: Option<&CandidateVerdict>) -> u8 {
    if !c.scored.hard_rejects.is_empty() {
        return 3;
    }
    let Some(v) = verdict else {
        return 1;
    };
    let has_files = c.scored.candidate.files.as_ref().is_some_and(|f| !f.is_empty());
    match v.verdict {
        _ if v.score < PROMOTE_SCORE => 2,
        Verdict::WrongRelease | Verdict::Incomplete => 2,
        Verdict::Exact | Verdict::OtherEdition if has_files => 0,
        Verdict::Exact | Verdict::OtherEdition | Verdict::Unsure => 1,
    }
}

/// Why an auto-approved favourite must go to an admin (rule 5), `None` when the LLM agrees.
fn lowering_reason(c: &RankedCandidate, v: &CandidateVerdict, threshold: f64) -> Option<String> {
    match v.verdict {
        Verdict::Exact | Verdict::OtherEdition => {}
        Verdict::Incomplete | Verdict::WrongRelease | Verdict::Unsure => {
            return Some(reword(format!("verdict {}", v.verdict.as_str())));
        }
    }
    if v.score < threshold {
        return Some(reword(format!("LLM score {:.2} below the threshold {threshold:.2}", v.score)));
    }
    let contradicted = contradicted_tracks(c, v);
    if !contradicted.is_empty() {
        return Some(reword(format!(
            "the LLM maps {} track(s) differently: {}",
            contradicted.len(),
            contradicted.join(", ")
        )));
    }
    None
}

/// The file part of each deterministic mapping value, by track id.
fn deterministic_files(c: &RankedCandidate) -> Vec<(&str, &str, f64)> {
    let paths: Vec<&str> =
        c.scored.candidate.files.as_ref().map(|f| f.iter().map(|f| f.path.as_str()).collect()).unwrap_or_default();
    c.scored
        .track_mapping
        .iter()
        .map(|m| {
            let (file, _) = split_track_reference(&m.torrent_file_path, &paths);
            (m.catalog_track_id.as_str(), file, m.confidence)
        })
        .collect()
}

/// Tracks the LLM explicitly maps elsewhere than the deterministic mapping (or to no file where it found one).
fn contradicted_tracks(c: &RankedCandidate, v: &CandidateVerdict) -> Vec<String> {
    let det = deterministic_files(c);
    v.track_mapping
        .iter()
        .filter(|m| {
            let det_file = det.iter().find(|(id, _, _)| *id == m.catalog_track_id).map(|(_, file, _)| *file);
            match (det_file, m.file_path.as_deref()) {
                (Some(d), Some(l)) => d != l,
                (Some(_), None) | (None, Some(_)) => true,
                (None, None) => false,
            }
        })
        .map(|m| m.catalog_track_id.clone())
        .collect()
}

/// Why the recommended candidate may not be raised to auto-approval (rule 6), `None` when every condition holds.
fn raise_refusal(
    c: &RankedCandidate,
    verdict: Option<&CandidateVerdict>,
    track_ids: &[String],
    threshold: f64,
) -> Option<String> {
    let Some(v) = verdict else {
        return Some(reword("no verdict".into()));
    };
    if v.verdict != Verdict::Exact {
        return Some(reword(format!("verdict {}", v.verdict.as_str())));
    }
    if let Some(refusal) = llm_raise_refusal(&c.scored, threshold) {
        return Some(refusal.to_string());
    }
    if v.score < threshold {
        return Some(reword(format!("LLM score {:.2} below the threshold {threshold:.2}", v.score)));
    }
    let files = c.scored.candidate.files.as_deref().unwrap_or_default();
    let det = deterministic_files(c);
    if track_ids.is_empty()
        || det.len() != track_ids.len()
        || !track_ids.iter().all(|t| det.iter().filter(|(id, _, _)| id == t).count() == 1)
    {
        return Some(reword("the deterministic mapping does not cover every ticket track once".into()));
    }
    for track in track_ids {
        let llm = v.track_mapping.iter().find(|m| &m.catalog_track_id == track).and_then(|m| m.file_path.as_deref());
        let Some(llm_file) = llm else {
            return Some(reword(format!("the LLM maps no file to track {track}")));
        };
        if det.iter().any(|(id, file, _)| id == track && *file != llm_file) {
            return Some(reword(format!("the LLM maps track {track} to another file")));
        }
    }
    let audio = read_audio_files(files, "");
    for (track, file, confidence) in &det {
        if *confidence > CONFIDENT_TRACK {
            continue;
        }
        let named = audio.iter().find(|a| a.path == *file).is_some_and(|a| a.named);
        if !named {
            return Some(reword(format!(
                "track {track} is placed by number and size only, in a file without a real name"
            )));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::llm::answer::LlmTrackFile;
    use crate::models::{Doubt, HardReject, ScoredCandidate, TorrentCandidate, TorrentFile, TrackMapping};

    const T: f64 = 0.85;

    /// A candidate with `n` files named `prefix NN.flac` mapped one to one with confidence `conf`, carrying the
    /// typed `rejects` and `doubts` (its reasoning says nothing of them: no rule may read it).
    fn cand(
        idx: usize,
        score: f64,
        rejects: &[HardReject],
        names: &[&str],
        conf: f64,
        doubts: &[Doubt],
    ) -> RankedCandidate {
        let mut candidate = TorrentCandidate::with_title(format!("c{idx}"));
        candidate.seeders = 20;
        let files: Vec<TorrentFile> = names
            .iter()
            .enumerate()
            .map(|(n, name)| TorrentFile { path: format!("c{idx}/{:02} {name}.flac", n + 1), size_bytes: 30_000_000 })
            .collect();
        let mapping = files
            .iter()
            .enumerate()
            .map(|(n, f)| TrackMapping {
                catalog_track_id: format!("t{}", n + 1),
                torrent_file_path: f.path.clone(),
                confidence: conf,
            })
            .collect();
        candidate.files = Some(files);
        RankedCandidate {
            idx,
            scored: ScoredCandidate {
                candidate,
                score,
                reasoning: "2/2 tracks mapped".to_string(),
                track_mapping: mapping,
                hard_rejects: rejects.to_vec(),
                doubts: doubts.to_vec(),
            },
        }
    }

    fn good(idx: usize) -> RankedCandidate {
        cand(idx, 0.99, &[], &["Alpha", "Beta"], 0.97, &[])
    }

    fn outcome(decision: MatchDecision, reason: Option<ApprovalReason>, cands: Vec<RankedCandidate>) -> MatchOutcome {
        MatchOutcome {
            decision,
            recommended_idx: cands.first().map(|c| c.idx),
            confidence: cands.first().map_or(0.0, |c| c.scored.score),
            reason,
            candidates: cands,
        }
    }

    /// The LLM's mapping equal to the deterministic one of `c`.
    fn agreeing(c: &RankedCandidate) -> Vec<LlmTrackFile> {
        c.scored
            .track_mapping
            .iter()
            .map(|m| LlmTrackFile {
                catalog_track_id: m.catalog_track_id.clone(),
                file_path: Some(m.torrent_file_path.clone()),
            })
            .collect()
    }

    fn verdict(idx: usize, verdict: Verdict, score: f64, mapping: Vec<LlmTrackFile>) -> CandidateVerdict {
        CandidateVerdict {
            key: format!("C{idx}"),
            idx,
            verdict,
            score,
            track_mapping: mapping,
            reasoning: "because".into(),
        }
    }

    fn answer(verdicts: Vec<CandidateVerdict>) -> ValidatedAnswer {
        ValidatedAnswer { verdicts, track_ids: vec!["t1".into(), "t2".into()], ..ValidatedAnswer::default() }
    }

    fn names_doubt() -> Option<ApprovalReason> {
        Some(ApprovalReason::NameSimilarityLow { similarity: 0.0 })
    }

    #[test]
    fn rule1_no_verdict_changes_nothing() {
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(3), good(1)]);
        let c = combine(&det, &answer(Vec::new()), T);
        assert_eq!(c.outcome, det);
        assert_eq!(c.notes.len(), 1);
    }

    #[test]
    fn rule2_reasoning_gets_the_llm_words() {
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(0)]);
        let fav = &det.candidates[0];
        let c = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 0.95, agreeing(fav))]), T);
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove);
        assert!(c.outcome.candidates[0].scored.reasoning.ends_with("; LLM: exact 0.95: because"));
        assert_eq!(c.outcome.candidates[0].scored.track_mapping, fav.scored.track_mapping);
    }

    #[test]
    fn rule3_rerank_promotes_and_demotes_but_needs_a_person() {
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(0), good(1), good(2)]);
        let a = answer(vec![
            verdict(0, Verdict::WrongRelease, 0.1, Vec::new()),
            verdict(2, Verdict::Exact, 0.97, agreeing(&det.candidates[2])),
        ]);
        let c = combine(&det, &a, T);
        let order: Vec<usize> = c.outcome.candidates.iter().map(|r| r.idx).collect();
        assert_eq!(order, vec![2, 1, 0]);
        assert_eq!(c.outcome.recommended_idx, Some(2));
        assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval);
        assert!(matches!(c.outcome.reason, Some(ApprovalReason::MultipleGoodMatches { .. })));
        assert!(c.notes.iter().any(|n| n.contains("re-ranked")));
    }

    #[test]
    fn rule3_hard_rejected_and_title_only_candidates_cannot_be_promoted() {
        let live = HardReject::UnaskedKind { kind: crate::models::UnaskedKind::Live };
        let rejected = cand(1, 0.3, &[live], &["Alpha", "Beta"], 0.97, &[]);
        let mut bare = good(2);
        bare.scored.candidate.files = None;
        bare.scored.track_mapping.clear();
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(0), rejected.clone(), bare]);
        let a = answer(vec![
            verdict(0, Verdict::WrongRelease, 0.01, Vec::new()),
            verdict(1, Verdict::Exact, 1.0, agreeing(&rejected)),
            verdict(2, Verdict::Exact, 1.0, Vec::new()),
        ]);
        let c = combine(&det, &a, T);
        // The title-only one is neutral, the favourite demoted, the rejected one last.
        let order: Vec<usize> = c.outcome.candidates.iter().map(|r| r.idx).collect();
        assert_eq!(order, vec![2, 0, 1]);
        assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval);
    }

    #[test]
    fn rule4_confidence_is_lowered_never_raised() {
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(0)]);
        let fav = &det.candidates[0];
        let up = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 1.0, agreeing(fav))]), T);
        assert_eq!(up.outcome.confidence, 0.99);
        let down = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 0.6, agreeing(fav))]), T);
        assert_eq!(down.outcome.confidence, 0.6);
    }

    #[test]
    fn rule5_doubting_verdicts_low_scores_and_contradicting_mappings_lower_an_auto_approval() {
        let det = outcome(MatchDecision::AutoApprove, None, vec![good(0)]);
        let fav = &det.candidates[0];
        let mut swapped = agreeing(fav);
        swapped[0].file_path = Some(fav.scored.track_mapping[1].torrent_file_path.clone());
        for (v, s, m) in [
            (Verdict::WrongRelease, 0.9, agreeing(fav)),
            (Verdict::Incomplete, 0.9, agreeing(fav)),
            (Verdict::Unsure, 0.9, agreeing(fav)),
            (Verdict::Exact, 0.7, agreeing(fav)),
            (Verdict::Exact, 0.95, swapped),
        ] {
            let c = combine(&det, &answer(vec![verdict(0, v, s, m)]), T);
            assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval, "{v:?} {s}");
            assert!(matches!(c.outcome.reason, Some(ApprovalReason::LowConfidence { .. })));
            assert!(c.notes.iter().any(|n| n.contains("lowered the auto-approval")), "{:?}", c.notes);
            assert_eq!(c.outcome.candidates[0].scored.track_mapping, fav.scored.track_mapping);
        }
        // Other edition with a high score and an agreeing (even partial) mapping keeps it.
        let partial = agreeing(fav).into_iter().take(1).collect();
        let c = combine(&det, &answer(vec![verdict(0, Verdict::OtherEdition, 0.9, partial)]), T);
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove);
    }

    #[test]
    fn rule6_names_doubt_is_raised_when_everything_agrees() {
        let fav = cand(0, 0.97, &[], &["Alpha", "Beta"], 0.9, &[Doubt::ArtistUncertain]);
        let det = outcome(MatchDecision::NeedsApproval, names_doubt(), vec![fav.clone(), good(1)]);
        let c = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 0.95, agreeing(&fav))]), T);
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove, "{:?}", c.notes);
        assert_eq!(c.outcome.reason, None);
        assert_eq!(c.outcome.candidates[0].scored.track_mapping, fav.scored.track_mapping);
        assert!(c.notes.iter().any(|n| n.contains("raised")));
        // Tracks placed by number, but the files carry real (e.g. other-script) names: still raisable.
        let fav = cand(0, 0.97, &[], &["Ágætis", "Byrjun"], 0.7, &[Doubt::NamesUnconfirmed { similarity: 0.1 }]);
        let det = outcome(MatchDecision::NeedsApproval, names_doubt(), vec![fav.clone()]);
        let c = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 0.95, agreeing(&fav))]), T);
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove, "{:?}", c.notes);
    }

    #[test]
    fn rule6_every_missing_condition_refuses_the_raise() {
        let artist = [Doubt::ArtistUncertain];
        let base = cand(0, 0.97, &[], &["Alpha", "Beta"], 0.9, &artist);
        let ok = |c: &RankedCandidate| verdict(0, Verdict::Exact, 0.95, agreeing(c));
        let mut cases: Vec<(&str, RankedCandidate, Option<ApprovalReason>, CandidateVerdict)> = Vec::new();
        cases.push((
            "other edition",
            base.clone(),
            names_doubt(),
            verdict(0, Verdict::OtherEdition, 0.95, agreeing(&base)),
        ));
        cases.push(("llm score", base.clone(), names_doubt(), verdict(0, Verdict::Exact, 0.8, agreeing(&base))));
        let low = cand(0, 0.8, &[], &["Alpha", "Beta"], 0.9, &artist);
        cases.push(("det score", low.clone(), names_doubt(), ok(&low)));
        let duration = Doubt::Duration { expected_secs: 200.0, found_secs: 150.0 };
        let timed = cand(0, 0.97, &[], &["Alpha", "Beta"], 0.9, &[Doubt::ArtistUncertain, duration]);
        cases.push((
            "duration",
            timed.clone(),
            Some(ApprovalReason::DurationMismatch { expected_secs: 200.0, found_secs: 150.0 }),
            ok(&timed),
        ));
        for doubt in [Doubt::YearConflict, Doubt::Pack, Doubt::LowBitrate, Doubt::NotRecorded] {
            let doubtful = cand(0, 0.97, &[], &["Alpha", "Beta"], 0.9, &[Doubt::ArtistUncertain, doubt]);
            cases.push(("a doubt names cannot settle", doubtful.clone(), names_doubt(), ok(&doubtful)));
        }
        let weak =
            cand(0, 0.97, &[], &["Alpha", "Beta"], 0.9, &[Doubt::ArtistUncertain, Doubt::WeakSwarm { seeders: 2 }]);
        cases.push(("hidden doubt", weak.clone(), names_doubt(), ok(&weak)));
        let mut few = base.clone();
        few.scored.candidate.seeders = 2;
        cases.push(("seeders", few.clone(), names_doubt(), ok(&few)));
        let placeholder = cand(0, 0.97, &[], &["Track", "Track"], 0.8, &[Doubt::NamesUnconfirmed { similarity: 0.0 }]);
        cases.push(("placeholder names", placeholder.clone(), names_doubt(), ok(&placeholder)));
        let mut half = ok(&base);
        half.track_mapping.pop();
        cases.push(("llm mapping incomplete", base.clone(), names_doubt(), half));
        let mut other = ok(&base);
        other.track_mapping.swap(0, 1);
        other.track_mapping[0].catalog_track_id = "t1".into();
        other.track_mapping[1].catalog_track_id = "t2".into();
        cases.push(("llm mapping disagrees", base.clone(), names_doubt(), other));
        let mut short = base.clone();
        short.scored.track_mapping.pop();
        cases.push(("det mapping incomplete", short.clone(), names_doubt(), ok(&base)));
        let mut bare = base.clone();
        bare.scored.candidate.files = None;
        cases.push(("no file list", bare.clone(), names_doubt(), ok(&base)));
        for (name, fav, reason, v) in cases {
            let det = outcome(MatchDecision::NeedsApproval, reason.clone(), vec![fav]);
            let c = combine(&det, &answer(vec![v]), T);
            assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval, "{name}: {:?}", c.notes);
            assert!(c.outcome.reason.is_some(), "{name}");
        }
    }

    #[test]
    fn rule6_a_non_favourite_whose_verdict_allows_it_is_raised_when_the_llm_demoted_the_ones_before_it() {
        // The deterministic favourite has a duration doubt; the second has only a names doubt. The LLM says the
        // favourite is incomplete and the second exact, agreeing on every track: the second goes on by itself.
        let duration = Doubt::Duration { expected_secs: 200.0, found_secs: 150.0 };
        let fav = cand(0, 0.99, &[], &["Alpha", "Beta"], 0.97, &[duration]);
        let second = cand(1, 0.97, &[], &["Alpha", "Beta"], 0.9, &[Doubt::ArtistUncertain]);
        let reason = Some(ApprovalReason::DurationMismatch { expected_secs: 200.0, found_secs: 150.0 });
        let det = outcome(MatchDecision::NeedsApproval, reason.clone(), vec![fav.clone(), second.clone()]);
        let a = answer(vec![
            verdict(0, Verdict::Incomplete, 0.2, Vec::new()),
            verdict(1, Verdict::Exact, 0.95, agreeing(&second)),
        ]);
        let c = combine(&det, &a, T);
        assert_eq!(c.outcome.recommended_idx, Some(1));
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove, "{:?}", c.notes);
        assert_eq!(c.outcome.reason, None);
        assert_eq!(c.outcome.candidates[0].scored.track_mapping, second.scored.track_mapping);
        assert!(c.notes.iter().any(|n| n.contains("raised candidate 1")), "{:?}", c.notes);
        // Even when the favourite had been auto-approved.
        let clean_fav = cand(0, 0.99, &[], &["Alpha", "Beta"], 0.97, &[]);
        let det = outcome(MatchDecision::AutoApprove, None, vec![clean_fav, second.clone()]);
        let c = combine(&det, &a, T);
        assert_eq!((c.outcome.decision, c.outcome.recommended_idx), (MatchDecision::AutoApprove, Some(1)));

        // Its own verdict forbids it: a weak swarm, a year doubt, or a hard reject.
        for (what, doubts, seeders) in [
            ("weak swarm", vec![Doubt::WeakSwarm { seeders: 1 }], 1),
            ("year", vec![Doubt::YearConflict], 20),
            ("stored by an older version", Doubt::not_recorded(), 20),
        ] {
            let mut other = cand(1, 0.97, &[], &["Alpha", "Beta"], 0.97, &doubts);
            other.scored.candidate.seeders = seeders;
            let det = outcome(MatchDecision::NeedsApproval, reason.clone(), vec![fav.clone(), other.clone()]);
            let a = answer(vec![
                verdict(0, Verdict::Incomplete, 0.2, Vec::new()),
                verdict(1, Verdict::Exact, 0.95, agreeing(&other)),
            ]);
            let c = combine(&det, &a, T);
            assert_eq!(c.outcome.recommended_idx, Some(1), "{what}");
            assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval, "{what}: {:?}", c.notes);
            assert!(matches!(c.outcome.reason, Some(ApprovalReason::MultipleGoodMatches { .. })), "{what}");
        }
        // The LLM did not dispute the favourite (no verdict on it): a person decides.
        let det = outcome(MatchDecision::NeedsApproval, reason.clone(), vec![fav.clone(), second.clone()]);
        let c = combine(&det, &answer(vec![verdict(1, Verdict::Exact, 0.95, agreeing(&second))]), T);
        assert_eq!((c.outcome.decision, c.outcome.recommended_idx), (MatchDecision::NeedsApproval, Some(1)));
    }

    #[test]
    fn rule7_a_hard_rejected_candidate_is_never_auto_approved() {
        let missing = HardReject::MissingTracks { missing_track_ids: vec!["t2".into()], expected: 2 };
        let rejected = cand(0, 0.99, &[missing], &["Alpha", "Beta"], 0.97, &[]);
        let det = outcome(MatchDecision::NeedsApproval, Some(ApprovalReason::NoExactMatch {}), vec![rejected.clone()]);
        for reason in [None, names_doubt(), Some(ApprovalReason::MultipleGoodMatches { top_scores: vec![1.0] })] {
            let mut d = det.clone();
            d.reason = reason.clone();
            let c = combine(&d, &answer(vec![verdict(0, Verdict::Exact, 1.0, agreeing(&rejected))]), T);
            assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval, "{reason:?}");
        }
        // Even a (corrupt) deterministic auto-approval of it does not survive the final check.
        let corrupt = outcome(MatchDecision::AutoApprove, None, vec![rejected.clone()]);
        let c = combine(&corrupt, &answer(vec![verdict(0, Verdict::Exact, 1.0, agreeing(&rejected))]), T);
        assert_eq!(c.outcome.decision, MatchDecision::NeedsApproval);
        assert!(c.notes.iter().any(|n| n.contains("final check")));
    }

    #[test]
    fn rule8_cue_image_mapping_agrees_by_file() {
        let mut fav = cand(0, 0.97, &[], &["Image"], 0.85, &[Doubt::CueUnverified]);
        let image = fav.scored.track_mapping[0].torrent_file_path.clone();
        fav.scored.track_mapping = (1..=2)
            .map(|n| TrackMapping {
                catalog_track_id: format!("t{n}"),
                torrent_file_path: format!("{image}#{n}"),
                confidence: 0.85,
            })
            .collect();
        let llm: Vec<LlmTrackFile> = (1..=2)
            .map(|n| LlmTrackFile { catalog_track_id: format!("t{n}"), file_path: Some(image.clone()) })
            .collect();
        let det = outcome(MatchDecision::NeedsApproval, names_doubt(), vec![fav.clone()]);
        let c = combine(&det, &answer(vec![verdict(0, Verdict::Exact, 0.95, llm)]), T);
        assert_eq!(c.outcome.decision, MatchDecision::AutoApprove, "{:?}", c.notes);
        assert_eq!(c.outcome.candidates[0].scored.track_mapping, fav.scored.track_mapping, "the #n references stay");
    }
}
