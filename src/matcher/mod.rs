//! Matching: scores every search result against the ticket and maps torrent files to catalog tracks, then decides
//! between auto-approval and an admin's review. Deterministic and pure: the same ticket and candidates always give
//! the same outcome, byte for byte. It never auto-approves a candidate with a hard reject, without a file list, or
//! with any doubt; it performs no I/O (the `match` command's body only parses bytes it is given).
//!
//! - `scoring.rs` judges one candidate (title, files, quality) and ranks by the labelling rules of "best".
//! - `mapping.rs` assigns tracks to files (Hungarian algorithm), `duration.rs` estimates durations from sizes,
//!   `cue.rs` handles single-file images with a cue sheet.
//! - `command.rs` is the `downloader2 match CASE.json` body.

pub mod command;
pub mod cue;
pub mod duration;
pub mod mapping;
pub mod scoring;

use serde::{Deserialize, Serialize};

use crate::models::{ApprovalReason, ScoredCandidate, Ticket, TorrentCandidate};

pub use command::{run_match_command, MatchInputError};
use scoring::{evaluate_candidate, CandidateClass, Doubt, Evaluation, TicketContext};

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
    let mut evaluated: Vec<(usize, Evaluation)> =
        candidates.iter().enumerate().map(|(idx, c)| (idx, evaluate_candidate(&ctx, c))).collect();
    evaluated.sort_by(|(ia, a), (ib, b)| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(ia.cmp(ib)));

    let (decision, reason, recommended_idx, confidence) = match evaluated.first() {
        Some((idx, best)) => {
            let (decision, reason) = decide(best, auto_approve_threshold);
            (decision, reason, Some(*idx), best.score)
        }
        None => (MatchDecision::NoCandidates, None, None, 0.0),
    };
    let ranked = evaluated
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
                },
            })
        })
        .collect();
    MatchOutcome { decision, recommended_idx, confidence, reason, candidates: ranked }
}

fn decide(best: &Evaluation, threshold: f64) -> (MatchDecision, Option<ApprovalReason>) {
    match best.class {
        CandidateClass::Rejected => {
            // Nothing acceptable: the closest one, with the most specific reason.
            let reason = if best.hard_rejects.iter().all(|r| r.starts_with("missing ")) {
                ApprovalReason::TrackCountMismatch { expected: best.expected_tracks, found: best.mapped_tracks }
            } else {
                ApprovalReason::NoExactMatch {}
            };
            (MatchDecision::NeedsApproval, Some(reason))
        }
        CandidateClass::TitleOnly => {
            (MatchDecision::NeedsApproval, Some(ApprovalReason::LowConfidence { score: best.score, threshold }))
        }
        CandidateClass::Verified => {
            if let Some(reason) = reason_for_doubts(best, threshold) {
                return (MatchDecision::NeedsApproval, Some(reason));
            }
            if best.score < threshold {
                return (
                    MatchDecision::NeedsApproval,
                    Some(ApprovalReason::LowConfidence { score: best.score, threshold }),
                );
            }
            (MatchDecision::AutoApprove, None)
        }
    }
}

fn reason_for_doubts(best: &Evaluation, threshold: f64) -> Option<ApprovalReason> {
    if best.doubts.is_empty() {
        return None;
    }
    for doubt in &best.doubts {
        if let Doubt::Duration { expected_secs, found_secs } = doubt {
            return Some(ApprovalReason::DurationMismatch { expected_secs: *expected_secs, found_secs: *found_secs });
        }
    }
    for doubt in &best.doubts {
        match doubt {
            Doubt::NamesUnconfirmed { similarity } | Doubt::TitleMismatch { similarity } => {
                return Some(ApprovalReason::NameSimilarityLow { similarity: *similarity });
            }
            Doubt::ArtistUncertain | Doubt::CueUnverified => {
                return Some(ApprovalReason::NameSimilarityLow { similarity: 0.0 });
            }
            _ => {}
        }
    }
    Some(ApprovalReason::LowConfidence { score: best.score, threshold })
}
