//! The body of `downloader2 match CASE.json [--threshold X]`: parses `{"ticket", "candidates"}` (other keys ignored),
//! runs the matcher and renders the exact JSON the issue specifies. Needs no config file, database or network; a
//! malformed input is an error naming the JSON path of the bad field, never a panic.

use serde::{Deserialize, Serialize};

use crate::models::{ApprovalReason, Ticket, TorrentCandidate, TrackMapping};

use super::{match_candidates, MatchDecision, MatchOutcome};

/// Why the `match` command could not run.
#[derive(Debug, thiserror::Error)]
pub enum MatchInputError {
    /// The input is not the expected JSON; `path` is where (e.g. `candidates[3].files[0].size_bytes`).
    #[error("malformed match input at {path}: {message} (expected {{\"ticket\": {{...}}, \"candidates\": [...]}})")]
    Malformed { path: String, message: String },
    /// The threshold is not a number in [0, 1].
    #[error("auto-approve threshold must be a number in [0, 1], got {0}")]
    InvalidThreshold(f64),
    /// The result could not be rendered (should not happen).
    #[error("could not render the match result: {0}")]
    Render(String),
}

impl MatchInputError {
    /// Whether running again with the same input could succeed (never: the input must be fixed).
    pub fn is_retryable(&self) -> bool {
        match self {
            MatchInputError::Malformed { .. } => false,
            MatchInputError::InvalidThreshold(_) => false,
            MatchInputError::Render(_) => false,
        }
    }
}

/// A case file: the ticket and its candidates.
#[derive(Debug, Deserialize)]
pub struct MatchInput {
    pub ticket: Ticket,
    pub candidates: Vec<TorrentCandidate>,
}

#[derive(Serialize)]
struct MatchOutput<'a> {
    decision: MatchDecision,
    recommended_idx: Option<usize>,
    confidence: f64,
    reason: Option<&'a ApprovalReason>,
    candidates: Vec<CandidateOutput<'a>>,
}

#[derive(Serialize)]
struct CandidateOutput<'a> {
    idx: usize,
    score: f64,
    reasoning: &'a str,
    track_mapping: &'a [TrackMapping],
}

/// Reads the case JSON, matches, and returns the output JSON (one line).
pub fn run_match_command(input: &[u8], auto_approve_threshold: f64) -> Result<String, MatchInputError> {
    check_threshold(auto_approve_threshold)?;
    let parsed = parse_match_input(input)?;
    let outcome = match_candidates(&parsed.ticket, &parsed.candidates, auto_approve_threshold);
    render_outcome(&outcome)
}

/// Refuses a threshold outside [0, 1].
pub fn check_threshold(auto_approve_threshold: f64) -> Result<(), MatchInputError> {
    if (0.0..=1.0).contains(&auto_approve_threshold) {
        Ok(())
    } else {
        Err(MatchInputError::InvalidThreshold(auto_approve_threshold))
    }
}

/// Parses a case file, naming the JSON path of a bad field.
pub fn parse_match_input(input: &[u8]) -> Result<MatchInput, MatchInputError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(input);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        MatchInputError::Malformed { path, message: err.into_inner().to_string() }
    })
}

/// The exact JSON the `match` command prints for an outcome.
pub fn render_outcome(outcome: &MatchOutcome) -> Result<String, MatchInputError> {
    let output = MatchOutput {
        decision: outcome.decision,
        recommended_idx: outcome.recommended_idx,
        confidence: outcome.confidence,
        reason: outcome.reason.as_ref(),
        candidates: outcome
            .candidates
            .iter()
            .map(|c| CandidateOutput {
                idx: c.idx,
                score: c.scored.score,
                reasoning: &c.scored.reasoning,
                track_mapping: &c.scored.track_mapping,
            })
            .collect(),
    };
    serde_json::to_string(&output).map_err(|e| MatchInputError::Render(e.to_string()))
}
