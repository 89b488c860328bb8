//! The `matching` stage: scores the search results with the deterministic matcher; for the best candidates that
//! came without a file list, fetches their metadata (a .torrent through the searcher, a magnet through the torrent
//! client, nothing downloaded) and scores again; with an LLM configured, asks it for a second opinion under the guard
//! rails (its report goes into the history); then decides between `auto_approved` and `needs_approval`. Candidates
//! whose info hash is blocklisted (refused by the audio verifier) are dropped before scoring.

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;

use super::{unless_cancelled, Advance, StageContext, StageError};
use crate::matcher::{match_candidates as score_candidates, MatchDecision, MatchOutcome};
use crate::models::metainfo::parse_torrent;
use crate::models::{
    bound_file_list, ApprovalReason, InfoHash, ScoredCandidate, TicketState, TicketWork, TorrentCandidate, TorrentFile,
};
use crate::processor::llm_refine::LlmRefiner;
use crate::queue::TicketRecord;
use crate::searcher::TorrentSource;

/// How many of the best candidates without a file list get their metadata fetched.
pub const METADATA_FETCHES: usize = 5;
/// How long a magnet's metadata may take to arrive.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
/// How many candidates an admin is shown (best first).
pub const MAX_SHOWN_CANDIDATES: usize = 25;

/// `matching` -> `auto_approved` | `needs_approval`.
pub async fn match_candidates(
    ctx: &StageContext,
    record: &TicketRecord,
    mut work: TicketWork,
) -> Result<Advance, StageError> {
    let threshold = ctx.app.config.matcher.auto_approve_threshold;
    let ticket = &record.ticket;
    // Releases the audio verifier refused are dropped before scoring (not kept as rejected candidates): they may
    // never be chosen for any ticket, not even from the admin's list, until an admin removes them from the
    // blocklist.
    let blocklisted = ctx.app.store.blocklisted_hashes().await?;
    let mut candidates = work.search_results.clone();
    let before = candidates.len();
    candidates.retain(|candidate| !is_blocklisted(candidate, &blocklisted));
    let mut dropped = before - candidates.len();
    let mut outcome = score_candidates(ticket, &candidates, threshold);

    let to_fetch: Vec<usize> = outcome
        .candidates
        .iter()
        .filter(|ranked| {
            let candidate = &ranked.scored.candidate;
            candidate.files.is_none() && candidate.seeders > 0 && ranked.scored.hard_rejects.is_empty()
        })
        .take(METADATA_FETCHES)
        .map(|ranked| ranked.idx)
        .collect();
    if !to_fetch.is_empty() {
        let fetches = to_fetch.iter().filter_map(|idx| candidates.get(*idx).map(|c| (*idx, c.clone()))).map(
            |(idx, candidate)| async move {
                let files = fetch_file_list(ctx, &candidate).await;
                (idx, candidate.title, files)
            },
        );
        let fetched = unless_cancelled(&ctx.cancel, join_all(fetches)).await?;
        let mut filled = 0;
        for (idx, title, files) in fetched {
            match files {
                Ok((files, omitted, hash)) if !files.is_empty() || omitted > 0 => {
                    if let Some(candidate) = candidates.get_mut(idx) {
                        candidate.files = Some(files);
                        candidate.files_omitted = omitted;
                        candidate.info_hash = candidate.info_hash.take().or(hash);
                        filled += 1;
                    }
                }
                Ok(_) => tracing::info!(%title, "candidate's metadata lists no files"),
                Err(err) => {
                    tracing::info!(%title, error = %err, "candidate's file list unavailable: judged on its title")
                }
            }
        }
        if filled > 0 {
            // A fetched .torrent may reveal a blocklisted hash.
            let before = candidates.len();
            candidates.retain(|candidate| !is_blocklisted(candidate, &blocklisted));
            dropped += before - candidates.len();
            outcome = score_candidates(ticket, &candidates, threshold);
        }
    }
    let llm_report = match &ctx.app.clients.llm {
        Some(provider) => {
            let refiner =
                LlmRefiner::from_config(provider.clone(), Some(ctx.app.store.clone()), &ctx.app.config.matcher);
            let (refined, report) =
                unless_cancelled(&ctx.cancel, refiner.refine(ticket, &candidates, outcome, threshold)).await?;
            outcome = refined;
            Some(report)
        }
        None => None,
    };
    work.search_results = candidates;
    let mut advance = decide(outcome, work, threshold);
    if dropped > 0 {
        advance = advance.note("blocklisted_candidates", dropped);
    }
    Ok(match llm_report.map(serde_json::to_value) {
        Some(Ok(report)) => advance.note("llm", report),
        _ => advance,
    })
}

/// Whether the candidate's info hash is on the blocklist.
fn is_blocklisted(candidate: &TorrentCandidate, blocklisted: &[InfoHash]) -> bool {
    candidate.info_hash.as_ref().is_some_and(|hash| blocklisted.contains(hash))
}

/// The bounded file list of a candidate (and how many files it leaves out, and the info hash when a .torrent
/// shows it) without downloading its payload.
async fn fetch_file_list(
    ctx: &StageContext,
    candidate: &TorrentCandidate,
) -> Result<(Vec<TorrentFile>, u64, Option<InfoHash>), StageError> {
    match ctx.app.clients.searcher.torrent_source(candidate).await? {
        TorrentSource::TorrentFile(bytes) => parse_torrent(&bytes)
            .map(|parsed| (parsed.files, parsed.files_omitted, Some(parsed.info_hash)))
            .map_err(|err| StageError::Inconsistent(format!("bad .torrent for {:?}: {err}", candidate.title))),
        TorrentSource::Magnet(magnet) => {
            let (files, omitted) =
                bound_file_list(ctx.app.clients.torrents.fetch_metadata(&magnet, METADATA_TIMEOUT).await?);
            Ok((files, omitted, None))
        }
    }
}

/// Turns the matcher's outcome into the next state.
fn decide(outcome: MatchOutcome, mut work: TicketWork, threshold: f64) -> Advance {
    let now = Utc::now();
    // What the state (and so the history and the WebSocket) carries is trimmed; the full lists stay in
    // `work.search_results`, behind the admin route `.../candidates/{idx}/files`.
    let ranked: Vec<ScoredCandidate> =
        outcome.candidates.into_iter().take(MAX_SHOWN_CANDIDATES).map(|ranked| ranked.scored.trimmed()).collect();
    work.ranked = ranked.clone();
    match (outcome.decision, ranked.first()) {
        (MatchDecision::AutoApprove, Some(best)) => {
            let selected = best.clone();
            Advance::to(TicketState::AutoApproved { selected, confidence: outcome.confidence, approved_at: now }, work)
        }
        (decision, _) => {
            let reason = outcome.reason.unwrap_or(match decision {
                MatchDecision::AutoApprove => ApprovalReason::LowConfidence { score: outcome.confidence, threshold },
                MatchDecision::NeedsApproval | MatchDecision::NoCandidates => ApprovalReason::NoExactMatch {},
            });
            // The ranked list is what the admin sees; the recommendation is its first entry.
            let recommended_idx = outcome.recommended_idx.and(if ranked.is_empty() { None } else { Some(0) });
            Advance::to(
                TicketState::NeedsApproval {
                    candidates: ranked,
                    recommended_idx,
                    confidence: outcome.confidence,
                    reason,
                    waiting_since: now,
                },
                work,
            )
        }
    }
}
