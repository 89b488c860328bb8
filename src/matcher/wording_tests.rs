//! No decision reads a message. Every labelled development case (`../shared/matching-dev/cases`, or
//! `DOWNLOADER2_MATCHING_DEV_CASES`) and every fixture of `tests/fixtures/matching` is decided twice: with the
//! matcher's messages as written, and with every message (reasoning, hard rejects, doubts, the LLM step's notes and
//! refusals) in other words (`models::verdict::with_reworded_messages`). The deterministic outcome, the LLM guard
//! rails on a series of answers, the fallback after each candidate's download dies, and the wanted files must come
//! out the same; and the messages must really have changed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cue::split_track_reference;
use super::llm::answer::{CandidateVerdict, LlmTrackFile, ValidatedAnswer, Verdict};
use super::llm::combine::combine;
use super::{match_candidates, next_fallback, wanted_files, MatchOutcome, RankedCandidate};
use crate::models::verdict::with_reworded_messages;
use crate::models::{InfoHash, Ticket, TorrentCandidate};

const THRESHOLD: f64 = 0.85;

#[derive(Deserialize)]
struct Case {
    ticket: Ticket,
    candidates: Vec<TorrentCandidate>,
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (the dev cases live in shared/ beside the clone, or set DOWNLOADER2_MATCHING_DEV_CASES)", dir.display())
    });
    let mut paths: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    paths.sort();
    paths
}

fn all_cases() -> Vec<(String, Case)> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = std::env::var_os("DOWNLOADER2_MATCHING_DEV_CASES")
        .map_or_else(|| manifest.join("../shared/matching-dev/cases"), PathBuf::from);
    let mut paths = case_files(&dev);
    assert!(paths.len() >= 20, "expected the 24 dev cases in {}", dev.display());
    paths.extend(case_files(&manifest.join("tests/fixtures/matching")));
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let case: Case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), case)
        })
        .collect()
}

/// Everything a decision produced, without its words.
fn decisions(outcome: &MatchOutcome) -> String {
    let mut out = format!(
        "{:?} rec={:?} conf={} reason={:?}\n",
        outcome.decision, outcome.recommended_idx, outcome.confidence, outcome.reason
    );
    for c in &outcome.candidates {
        out.push_str(&format!(
            "  {} {} {:?} {:?} {:?}\n",
            c.idx, c.scored.score, c.scored.track_mapping, c.scored.hard_rejects, c.scored.doubts
        ));
    }
    out
}

/// An answer judging `endorsed` exact (score 0.97) with the deterministic mapping, and `demoted` wrong.
fn answer(ticket: &Ticket, endorsed: &RankedCandidate, demoted: &[usize]) -> ValidatedAnswer {
    let paths: Vec<&str> = endorsed
        .scored
        .candidate
        .files
        .as_ref()
        .map(|files| files.iter().map(|f| f.path.as_str()).collect())
        .unwrap_or_default();
    let mapping = endorsed
        .scored
        .track_mapping
        .iter()
        .map(|m| LlmTrackFile {
            catalog_track_id: m.catalog_track_id.clone(),
            file_path: Some(split_track_reference(&m.torrent_file_path, &paths).0.to_string()),
        })
        .collect();
    let mut verdicts = vec![CandidateVerdict {
        key: format!("C{}", endorsed.idx),
        idx: endorsed.idx,
        verdict: Verdict::Exact,
        score: 0.97,
        track_mapping: mapping,
        reasoning: "every track is there".into(),
    }];
    for idx in demoted.iter().filter(|idx| **idx != endorsed.idx) {
        verdicts.push(CandidateVerdict {
            key: format!("C{idx}"),
            idx: *idx,
            verdict: Verdict::WrongRelease,
            score: 0.05,
            track_mapping: Vec::new(),
            reasoning: "another release".into(),
        });
    }
    ValidatedAnswer {
        verdicts,
        track_ids: ticket.tracks.iter().map(|t| t.catalog_track_id.clone()).collect(),
        ..ValidatedAnswer::default()
    }
}

#[test]
fn rewording_every_message_changes_no_decision() {
    let mut compared = 0usize;
    for (name, case) in all_cases() {
        let plain = match_candidates(&case.ticket, &case.candidates, THRESHOLD);
        let other = with_reworded_messages(|| match_candidates(&case.ticket, &case.candidates, THRESHOLD));
        assert_eq!(decisions(&plain), decisions(&other), "{name}: the matcher decided differently");
        for (a, b) in plain.candidates.iter().zip(&other.candidates) {
            assert_ne!(a.scored.reasoning, b.scored.reasoning, "{name}: the reasoning was not reworded");
            for (x, y) in a.scored.hard_rejects.iter().zip(&b.scored.hard_rejects) {
                assert_ne!(x.to_string(), with_reworded_messages(|| y.to_string()), "{name}");
            }
        }

        // The LLM guard rails, for an answer endorsing each candidate in turn: once alone, once demoting every
        // candidate the deterministic ranking put before it.
        for (position, endorsed) in plain.candidates.iter().enumerate() {
            let before: Vec<usize> = plain.candidates.iter().take(position).map(|c| c.idx).collect();
            for demoted in [Vec::new(), before] {
                let a = answer(&case.ticket, endorsed, &demoted);
                let with_plain = combine(&plain, &a, THRESHOLD);
                let with_other = with_reworded_messages(|| combine(&other, &a, THRESHOLD));
                assert_eq!(
                    decisions(&with_plain.outcome),
                    decisions(&with_other.outcome),
                    "{name}: the LLM step decided differently endorsing {}",
                    endorsed.idx
                );
                assert_eq!(with_plain.notes.len(), with_other.notes.len(), "{name}");
                for (x, y) in with_plain.notes.iter().zip(&with_other.notes) {
                    assert_ne!(x, y, "{name}: a note was not reworded");
                }
                compared += 1;
            }
        }

        // The fallback after each candidate's download died, and the files the chosen one needs.
        let ranked_plain: Vec<_> = plain.candidates.iter().map(|c| c.scored.clone()).collect();
        let ranked_other: Vec<_> = other.candidates.iter().map(|c| c.scored.clone()).collect();
        for dead in &ranked_plain {
            let hashes: Vec<InfoHash> = dead.candidate.info_hash.iter().cloned().collect();
            let titles = [dead.candidate.title.as_str()];
            let a = next_fallback(&ranked_plain, &hashes, &titles, THRESHOLD);
            let b = with_reworded_messages(|| next_fallback(&ranked_other, &hashes, &titles, THRESHOLD));
            assert_eq!(a.step, b.step, "{name}: another fallback after {}", dead.candidate.title);
            let idx = |f: &super::Fallback| f.remaining.iter().map(|s| s.candidate.title.clone()).collect::<Vec<_>>();
            assert_eq!(idx(&a), idx(&b), "{name}");
        }
        for (a, b) in ranked_plain.iter().zip(&ranked_other) {
            let files = a.candidate.files.clone().unwrap_or_default();
            assert_eq!(wanted_files(a, &files, &[]), wanted_files(b, &files, &[]), "{name}");
        }
    }
    assert!(compared > 100, "the LLM step was compared on {compared} answers only");
}
