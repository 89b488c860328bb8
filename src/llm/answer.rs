//! Reading an LLM answer: checks the JSON against the rules of [`super::answer_schema`] (required fields, enum
//! values, score a number in [0, 1]) and translates its keys through the [`PromptKeys`] of the prompt it answers.
//!
//! The answer is untrusted: any entry naming a candidate key, track id or file key the prompt did not contain, any
//! entry breaking the schema, and any repeated key is DROPPED and described in [`ValidatedAnswer::dropped`] (the
//! caller logs it), never guessed at. Only a top level that is not `{"candidates": [...]}` is an error. This file
//! never decides anything about the ticket: the guard rails in `crate::matcher::llm_guard` do.

use std::collections::BTreeSet;

use serde_json::Value;

use super::prompt::{cap_text, PromptKeys};
use super::LlmError;
use crate::matcher::llm_guard::{CandidateVerdict, LlmTrackFile, ValidatedAnswer, Verdict};

/// Longest LLM reasoning kept, in characters (it is shown to admins).
pub const MAX_REASONING_CHARS: usize = 400;

/// Checks `answer` against the schema rules and the prompt's keys. Fails only when the top level is unusable.
pub fn validate_answer(answer: &Value, keys: &PromptKeys) -> Result<ValidatedAnswer, LlmError> {
    let object = answer
        .as_object()
        .ok_or_else(|| LlmError::Malformed(format!("the answer is {}, not an object", type_name(answer))))?;
    let entries = object
        .get("candidates")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::Malformed("the answer has no \"candidates\" array".to_string()))?;
    let mut out = ValidatedAnswer { track_ids: keys.track_ids.clone(), ..ValidatedAnswer::default() };
    for extra in object.keys().filter(|k| k.as_str() != "candidates") {
        out.dropped.push(format!("unknown top-level field {:?}", cap_text(extra, 40)));
    }

    // A key answered twice is contradictory: neither answer is kept.
    let mut seen = BTreeSet::new();
    let mut repeated = BTreeSet::new();
    for entry in entries {
        if let Some(key) = entry.get("key").and_then(Value::as_str) {
            if !seen.insert(key) {
                repeated.insert(key);
            }
        }
    }
    for (n, entry) in entries.iter().enumerate() {
        match read_entry(entry, keys, &mut out.dropped) {
            Ok(verdict) if repeated.contains(verdict.key.as_str()) => {
                out.dropped.push(format!("{}: answered more than once, every answer for it dropped", verdict.key));
            }
            Ok(verdict) => out.verdicts.push(verdict),
            Err(why) => out.dropped.push(format!("candidates[{n}]: {why}")),
        }
    }
    out.dropped.dedup();
    out.missing = keys
        .candidates
        .iter()
        .filter(|c| !out.verdicts.iter().any(|v| v.key == c.key))
        .map(|c| c.key.clone())
        .collect();
    Ok(out)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const ENTRY_FIELDS: [&str; 5] = ["key", "verdict", "score", "track_mapping", "reasoning"];

/// One candidate entry; `Err` says why the whole entry is dropped. Bad mapping items are dropped one by one.
fn read_entry(entry: &Value, keys: &PromptKeys, dropped: &mut Vec<String>) -> Result<CandidateVerdict, String> {
    let object = entry.as_object().ok_or_else(|| format!("is {}, not an object", type_name(entry)))?;
    let key = object.get("key").and_then(Value::as_str).ok_or("no string \"key\"")?;
    let shown = cap_text(key, 20);
    let candidate = keys.candidate(key).ok_or_else(|| format!("unknown candidate key {shown:?}"))?;
    let verdict_text =
        object.get("verdict").and_then(Value::as_str).ok_or(format!("{shown}: no string \"verdict\""))?;
    let verdict = Verdict::parse(verdict_text).ok_or_else(|| {
        format!("{shown}: verdict {:?} is not one of the schema's values", cap_text(verdict_text, 30))
    })?;
    let score = object.get("score").and_then(Value::as_f64).ok_or(format!("{shown}: no number \"score\""))?;
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("{shown}: score {score} is outside [0, 1]"));
    }
    let mapping =
        object.get("track_mapping").and_then(Value::as_array).ok_or(format!("{shown}: no array \"track_mapping\""))?;
    let reasoning =
        object.get("reasoning").and_then(Value::as_str).ok_or(format!("{shown}: no string \"reasoning\""))?;
    for extra in object.keys().filter(|k| !ENTRY_FIELDS.contains(&k.as_str())) {
        dropped.push(format!("{shown}: unknown field {:?} ignored", cap_text(extra, 40)));
    }

    let mut track_mapping: Vec<LlmTrackFile> = Vec::new();
    let mut repeated_tracks = BTreeSet::new();
    for (n, item) in mapping.iter().enumerate() {
        let at = format!("{shown}.track_mapping[{n}]");
        let Some(track_id) = item.get("track_id").and_then(Value::as_str) else {
            dropped.push(format!("{at}: no string \"track_id\""));
            continue;
        };
        if !keys.track_ids.iter().any(|t| t == track_id) {
            dropped.push(format!("{at}: unknown track id {:?}", cap_text(track_id, 40)));
            continue;
        }
        let file_path = match item.get("file") {
            Some(Value::Null) => None,
            Some(Value::String(file_key)) => match candidate.file_path(file_key) {
                Some(path) => Some(path.to_string()),
                None => {
                    dropped.push(format!("{at}: unknown file key {:?} for {shown}", cap_text(file_key, 20)));
                    continue;
                }
            },
            _ => {
                dropped.push(format!("{at}: \"file\" is neither a string nor null"));
                continue;
            }
        };
        if track_mapping.iter().any(|m| m.catalog_track_id == track_id) {
            repeated_tracks.insert(track_id.to_string());
            continue;
        }
        track_mapping.push(LlmTrackFile { catalog_track_id: track_id.to_string(), file_path });
    }
    if !repeated_tracks.is_empty() {
        // Mapped twice: the LLM contradicts itself on that track, keep neither.
        track_mapping.retain(|m| !repeated_tracks.contains(&m.catalog_track_id));
        for track in &repeated_tracks {
            dropped.push(format!("{shown}: track {track:?} mapped more than once, dropped"));
        }
    }
    Ok(CandidateVerdict {
        key: candidate.key.clone(),
        idx: candidate.idx,
        verdict,
        score,
        track_mapping,
        reasoning: clean_reasoning(reasoning),
    })
}

/// The reasoning as one capped line of printable text.
fn clean_reasoning(text: &str) -> String {
    let printable: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cap_text(printable.trim(), MAX_REASONING_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::prompt::{PromptCandidate, PromptFile};
    use serde_json::json;

    fn keys() -> PromptKeys {
        let files = |dir: &str| {
            Some(
                (1..=3)
                    .map(|n| PromptFile { key: format!("F{n:02}"), path: format!("{dir}/0{n}.flac") })
                    .collect::<Vec<_>>(),
            )
        };
        PromptKeys {
            track_ids: vec!["t1".into(), "t2".into()],
            candidates: vec![
                PromptCandidate { key: "C1".into(), idx: 4, files: files("a") },
                PromptCandidate { key: "C2".into(), idx: 0, files: files("b") },
                PromptCandidate { key: "C3".into(), idx: 2, files: None },
            ],
        }
    }

    fn entry(key: &str, verdict: &str, score: f64, mapping: Value) -> Value {
        json!({"key": key, "verdict": verdict, "score": score, "track_mapping": mapping, "reasoning": "ok"})
    }

    #[test]
    fn a_valid_answer_translates_keys_to_indices_and_paths() {
        let answer = json!({"candidates": [
            entry("C1", "exact", 0.97, json!([{"track_id": "t1", "file": "F01"}, {"track_id": "t2", "file": "F03"}])),
            entry("C2", "wrong_release", 0.05, json!([])),
            entry("C3", "incomplete", 0.5, json!([{"track_id": "t1", "file": null}])),
        ]});
        let v = validate_answer(&answer, &keys()).unwrap();
        assert!(v.dropped.is_empty(), "{:?}", v.dropped);
        assert!(v.missing.is_empty());
        let c1 = v.verdict_for(4).unwrap();
        assert_eq!(c1.verdict, Verdict::Exact);
        assert_eq!(c1.score, 0.97);
        assert_eq!(
            c1.track_mapping,
            vec![
                LlmTrackFile { catalog_track_id: "t1".into(), file_path: Some("a/01.flac".into()) },
                LlmTrackFile { catalog_track_id: "t2".into(), file_path: Some("a/03.flac".into()) },
            ]
        );
        assert_eq!(v.verdict_for(0).unwrap().verdict, Verdict::WrongRelease);
        assert_eq!(v.verdict_for(2).unwrap().track_mapping[0].file_path, None);
        assert_eq!(v.track_ids, vec!["t1".to_string(), "t2".to_string()]);
    }

    #[test]
    fn unknown_candidate_track_and_file_keys_are_dropped_and_reported() {
        let answer = json!({"candidates": [
            entry("C9", "exact", 1.0, json!([])),
            entry("C1", "exact", 0.9, json!([
                {"track_id": "t1", "file": "F07"},
                {"track_id": "t99", "file": "F01"},
                {"track_id": "t2", "file": "F02"}
            ])),
            entry("C3", "incomplete", 0.4, json!([{"track_id": "t1", "file": "F01"}])),
        ]});
        let v = validate_answer(&answer, &keys()).unwrap();
        assert_eq!(v.verdicts.len(), 2, "C9 names no prompted candidate");
        let c1 = v.verdict_for(4).unwrap();
        assert_eq!(c1.track_mapping.len(), 1);
        assert_eq!(c1.track_mapping[0].file_path.as_deref(), Some("a/02.flac"));
        let c3 = v.verdict_for(2).unwrap();
        assert!(c3.track_mapping.is_empty(), "C3 has no file list, so F01 means nothing");
        let report = v.dropped.join("\n");
        for needle in
            ["unknown candidate key \"C9\"", "unknown file key \"F07\"", "unknown track id \"t99\"", "F01\" for C3"]
        {
            assert!(report.contains(needle), "{needle} missing from {report}");
        }
        assert_eq!(v.missing, vec!["C2".to_string()]);
    }

    #[test]
    fn schema_violations_drop_the_entry() {
        let mut no_reasoning = entry("C2", "exact", 0.9, json!([]));
        no_reasoning.as_object_mut().unwrap().remove("reasoning");
        let answer = json!({"candidates": [
            entry("C1", "perfect", 0.9, json!([])),
            no_reasoning,
            entry("C3", "exact", 1.5, json!([])),
            {"key": "C3", "verdict": "exact", "score": "0.9", "track_mapping": [], "reasoning": ""},
            "C1",
        ]});
        let v = validate_answer(&answer, &keys()).unwrap();
        assert!(v.verdicts.is_empty(), "{:?}", v.verdicts);
        let report = v.dropped.join("\n");
        assert!(report.contains("\"perfect\" is not one of"), "{report}");
        assert!(report.contains("no string \"reasoning\""), "{report}");
        assert!(report.contains("outside [0, 1]"), "{report}");
        assert!(report.contains("no number \"score\""), "{report}");
        assert!(report.contains("not an object"), "{report}");
        assert_eq!(v.missing.len(), 3);
    }

    #[test]
    fn repeated_keys_and_tracks_are_contradictions_and_dropped() {
        let answer = json!({"candidates": [
            entry("C1", "exact", 0.9, json!([{"track_id": "t1", "file": "F01"}, {"track_id": "t1", "file": "F02"},
                                              {"track_id": "t2", "file": "F03"}])),
            entry("C2", "exact", 0.9, json!([])),
            entry("C2", "wrong_release", 0.1, json!([])),
        ]});
        let v = validate_answer(&answer, &keys()).unwrap();
        assert!(v.verdict_for(0).is_none(), "C2 answered twice");
        let c1 = v.verdict_for(4).unwrap();
        assert_eq!(c1.track_mapping.len(), 1);
        assert_eq!(c1.track_mapping[0].catalog_track_id, "t2");
        assert!(v.dropped.iter().any(|d| d.contains("\"t1\" mapped more than once")));
        assert!(v.dropped.iter().any(|d| d.contains("C2: answered more than once")));
    }

    #[test]
    fn an_unusable_top_level_is_malformed() {
        for bad in [json!([]), json!({"answer": []}), json!({"candidates": {}}), Value::Null] {
            assert!(matches!(validate_answer(&bad, &keys()), Err(LlmError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn reasoning_is_capped_and_printable() {
        let mut e = entry("C1", "unsure", 0.3, json!([]));
        e["reasoning"] = json!(format!("line\u{1b}[31m\n{}", "z".repeat(5000)));
        e["extra"] = json!(1);
        let v = validate_answer(&json!({"candidates": [e]}), &keys()).unwrap();
        let r = &v.verdicts[0].reasoning;
        assert!(!r.chars().any(char::is_control));
        assert!(r.chars().count() <= MAX_REASONING_CHARS + 1);
        assert!(v.dropped.iter().any(|d| d.contains("unknown field \"extra\"")));
    }
}
