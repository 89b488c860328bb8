//! Audio verification: what was downloaded, judged from the audio itself before anything is placed. For each
//! file one decoding pass (symphonia, `decode`) feeds every measurement (`analysis`): integrity (damaged frames,
//! FLAC's stored MD5, truncation, zero-filled runs), the transcode check of lossless claims from the long-term
//! spectrum (`transcode`), upsampling and padded bits, the acoustic fingerprint (duplicates within a set) and EBU
//! R128 loudness (ReplayGain 2.0 values, `loudness`). The result is a [`FileVerification`] per file with a verdict
//! (`genuine`, `suspect`, `unknown`, `corrupt`), a reason and a confidence, never a bare boolean.
//!
//! Depends only on `models` and `config` (`[verifier]`, [`VerifierSettings::from_config`]); it reads the files it is given and writes nothing. The pipeline step,
//! the `downloader2 verify` command and the benchmarks all call [`verify_set`].

pub mod analysis;
pub mod command;
pub mod decode;
pub mod fingerprint;
pub mod loudness;
pub mod spectrum;
pub mod transcode;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ebur128::EbuR128;

use crate::models::verification::{AlbumLoudness, FileVerification, Md5Check, Verdict, ZeroRun};
use analysis::{FileAnalyzer, Measured, Measurements};
use decode::{DecodeFailure, DecodeSummary, StreamFacts};
pub use transcode::SpectrumThresholds;

/// `value` as an index into a spectrum or a count of frames: NaN and negatives give 0, values beyond `usize::MAX`
/// saturate (float-to-integer `as` saturates; the lint cannot see that the value is clamped first).
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn to_index(value: f64) -> usize {
    if value.is_nan() {
        0
    } else {
        value.max(0.0) as usize
    }
}

/// [`to_index`] for 64-bit counts.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn to_count(value: f64) -> u64 {
    if value.is_nan() {
        0
    } else {
        value.max(0.0) as u64
    }
}

/// A window coefficient or sample in single precision (the FFT input): the precision lost is intended.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn to_f32(value: f64) -> f32 {
    value as f32
}

/// Which checks run and their thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierSettings {
    pub check_integrity: bool,
    pub check_transcode: bool,
    pub check_upsampling: bool,
    pub check_padding: bool,
    pub check_duplicates: bool,
    pub check_loudness: bool,
    pub spectrum: SpectrumThresholds,
    /// Digital silence inside music at least this long is a zero-filled download.
    pub zero_run_secs: f64,
    /// Two fingerprints that differ in at most this share of bits are the same audio.
    pub duplicate_max_bit_error: f64,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        VerifierSettings {
            check_integrity: true,
            check_transcode: true,
            check_upsampling: true,
            check_padding: true,
            check_duplicates: true,
            check_loudness: true,
            spectrum: SpectrumThresholds::default(),
            zero_run_secs: 2.0,
            duplicate_max_bit_error: 0.2,
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn the_default_configuration_gives_the_default_settings() {
        let from_config = VerifierSettings::from_config(&crate::config::VerifierConfig::default());
        assert_eq!(from_config, VerifierSettings::default());
    }
}

impl VerifierSettings {
    /// The checks and thresholds of `[verifier]` (the rest of the spectrum thresholds keep their defaults).
    pub fn from_config(config: &crate::config::VerifierConfig) -> VerifierSettings {
        VerifierSettings {
            check_integrity: config.check_integrity,
            check_transcode: config.check_transcode,
            check_upsampling: config.check_upsampling,
            check_padding: config.check_padding,
            check_duplicates: config.check_duplicates,
            check_loudness: config.check_loudness,
            spectrum: SpectrumThresholds {
                min_lossy_cutoff_hz: config.min_lossy_cutoff_hz,
                max_above_db: config.max_above_cutoff_db,
                min_slope_db_per_khz: config.min_slope_db_per_khz,
                high_cutoff_min_drop_db: config.high_cutoff_min_drop_db,
                ..SpectrumThresholds::default()
            },
            zero_run_secs: config.zero_run_secs,
            duplicate_max_bit_error: config.duplicate_max_bit_error,
        }
    }
}

/// One file to verify: where it is and how reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToVerify {
    pub path: PathBuf,
    pub shown: String,
}

/// The verification of a set of files (one release).
#[derive(Debug, Clone, PartialEq)]
pub struct SetVerification {
    pub files: Vec<FileVerification>,
    /// The loudness of all the files together, when the loudness check ran and any file was not silent.
    pub album: Option<AlbumLoudness>,
}

/// What one file's pass produced besides its report: what the set-level checks need.
struct FileOutcome {
    report: FileVerification,
    fingerprint: Vec<u32>,
    meter: Option<EbuR128>,
}

/// Level (dBFS) above which the audio on both sides of a silent run counts as music playing.
const MUSIC_EDGE_DB: f64 = -50.0;

/// Verifies every file, `parallelism` at a time (each on its own thread), then compares them with each other
/// (duplicates) and measures them together (album loudness). `cancelled` is polled between packets; a cancelled
/// run returns `None`.
pub fn verify_set(
    files: &[FileToVerify],
    settings: &VerifierSettings,
    parallelism: usize,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Option<SetVerification> {
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<Option<FileOutcome>> = (0..files.len()).map(|_| None).collect();
    let workers = parallelism.clamp(1, files.len().max(1));
    let finished: Vec<Vec<(usize, FileOutcome)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let idx = next.fetch_add(1, Ordering::SeqCst);
                        let Some(file) = files.get(idx) else { break };
                        match verify_file(file, settings, cancelled) {
                            Some(outcome) => done.push((idx, outcome)),
                            None => break,
                        }
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap_or_default()).collect()
    });
    for (idx, outcome) in finished.into_iter().flatten() {
        outcomes[idx] = Some(outcome);
    }
    if cancelled() {
        return None;
    }
    let mut outcomes: Vec<FileOutcome> = outcomes.into_iter().collect::<Option<Vec<_>>>()?;
    if settings.check_duplicates {
        mark_duplicates(&mut outcomes, settings.duplicate_max_bit_error);
    }
    let album = if settings.check_loudness {
        let meters: Vec<&EbuR128> = outcomes.iter().filter_map(|outcome| outcome.meter.as_ref()).collect();
        let peak =
            outcomes.iter().filter_map(|outcome| outcome.report.true_peak_dbtp).fold(f64::NEG_INFINITY, f64::max);
        loudness::album_lufs(meters)
            .map(|lufs| AlbumLoudness { loudness_lufs: round2(lufs), true_peak_dbtp: round2(peak.max(-200.0)) })
    } else {
        None
    };
    Some(SetVerification { files: outcomes.into_iter().map(|outcome| outcome.report).collect(), album })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Marks each file whose audio equals an earlier file's (by fingerprint and duration).
fn mark_duplicates(outcomes: &mut [FileOutcome], max_bit_error: f64) {
    for later in 1..outcomes.len() {
        let (earlier_part, rest) = outcomes.split_at_mut(later);
        let candidate = &mut rest[0];
        if !fingerprint::is_informative(&candidate.fingerprint) {
            continue;
        }
        let found = earlier_part.iter().find(|earlier| {
            let (a, b) = (earlier.report.duration_secs, candidate.report.duration_secs);
            let similar_length = (a - b).abs() <= (0.05 * a.max(b)).max(2.0);
            similar_length
                && fingerprint::is_informative(&earlier.fingerprint)
                && fingerprint::bit_error_rate(&earlier.fingerprint, &candidate.fingerprint)
                    .is_some_and(|rate| rate <= max_bit_error)
        });
        if let Some(earlier) = found {
            candidate.report.duplicate_of = Some(earlier.report.path.clone());
        }
    }
}

/// Decodes and judges one file; `None` when cancelled.
fn verify_file(file: &FileToVerify, settings: &VerifierSettings, cancelled: &dyn Fn() -> bool) -> Option<FileOutcome> {
    let wanted = Measurements {
        spectrum: settings.check_transcode || settings.check_upsampling,
        loudness: settings.check_loudness,
        fingerprint: settings.check_duplicates,
    };
    let mut analyzer = FileAnalyzer::new(wanted, settings.zero_run_secs);
    let decoded = decode::decode_file(&file.path, &mut analyzer, cancelled);
    let (facts, summary) = match decoded {
        Ok(decoded) => decoded,
        Err(DecodeFailure::Cancelled) => return None,
        Err(failure) => return Some(unreadable(file, &failure)),
    };
    let measured = analyzer.finish();
    Some(judge_file(file, &facts, &summary, measured, settings))
}

fn unreadable(file: &FileToVerify, failure: &DecodeFailure) -> FileOutcome {
    let (verdict, reason) = match failure {
        DecodeFailure::Open(why) => (Verdict::Unknown, format!("cannot open: {why}")),
        DecodeFailure::Unsupported(why) => (Verdict::Unknown, format!("cannot decode this format: {why}")),
        DecodeFailure::Unreadable(why) => (Verdict::Corrupt, format!("unreadable: {why}")),
        DecodeFailure::Cancelled => (Verdict::Unknown, "cancelled".to_string()),
    };
    FileOutcome {
        report: FileVerification {
            path: file.shown.clone(),
            verdict,
            reason,
            confidence: if verdict == Verdict::Corrupt { 0.99 } else { 0.0 },
            codec: String::new(),
            lossless: false,
            sample_rate_hz: 0,
            channels: 0,
            bits_per_sample: None,
            duration_secs: 0.0,
            cutoff_hz: None,
            upsampled: false,
            padded_bits: 0,
            duplicate_of: None,
            loudness_lufs: None,
            true_peak_dbtp: None,
            spectrum: None,
            decode_errors: 0,
            md5: Md5Check::NotApplicable,
            missing_secs: 0.0,
            zero_runs: Vec::new(),
        },
        fingerprint: Vec::new(),
        meter: None,
    }
}

/// Seconds of audio the header promised but the stream did not deliver.
fn missing_secs(facts: &StreamFacts, summary: &DecodeSummary) -> f64 {
    let Some(expected) = facts.expected_frames else { return 0.0 };
    let missing = expected.saturating_sub(summary.frames) as f64 / f64::from(facts.sample_rate_hz.max(1));
    // Encoder delay and padding bookkeeping differs by a frame or two between containers.
    let tolerance = (0.002 * expected as f64 / f64::from(facts.sample_rate_hz.max(1))).max(0.05);
    if missing > tolerance {
        missing
    } else {
        0.0
    }
}

fn format_time(secs: f64) -> String {
    let whole = to_count(secs.floor());
    format!("{}:{:02}", whole / 60, whole % 60)
}

/// A hole this big after the point where decoding stopped is damage in the middle, not a cut file.
const HOLE_MIN_BYTES: u64 = 64 * 1024;

/// The integrity finding, if any: the reason the file is corrupt.
fn integrity_problem(summary: &DecodeSummary, missing: f64, zero_runs: &[ZeroRun], duration: f64) -> Option<String> {
    if summary.decode_errors > 0 {
        let first = summary.first_error.clone().unwrap_or_default();
        return Some(format!("{} damaged frame(s): {first}", summary.decode_errors));
    }
    if missing > 0.0 {
        let how = if summary.bytes_unread >= HOLE_MIN_BYTES { "damaged in the middle" } else { "truncated or damaged" };
        return Some(format!(
            "audio stops at {}: {missing:.1} s of {:.1} s missing ({how})",
            format_time(duration),
            duration + missing
        ));
    }
    if summary.md5 == Some(Md5Check::Mismatch) {
        return Some("MD5 mismatch: the decoded audio differs from what was encoded".into());
    }
    if let Some(run) = zero_runs.first() {
        return Some(format!(
            "zero-filled: {:.1} s of digital silence at {} inside music",
            run.length_secs,
            format_time(run.start_secs)
        ));
    }
    if let Some(why) = &summary.stopped_early {
        return Some(format!("stream ends early: {why}"));
    }
    None
}

fn judge_file(
    file: &FileToVerify,
    facts: &StreamFacts,
    summary: &DecodeSummary,
    measured: Measured,
    settings: &VerifierSettings,
) -> FileOutcome {
    let rate = f64::from(facts.sample_rate_hz.max(1));
    let duration_secs = summary.frames as f64 / rate;
    let missing = missing_secs(facts, summary);
    let interior_runs: Vec<ZeroRun> = measured
        .zero_runs
        .iter()
        .filter(|run| {
            !run.at_start
                && run.level_before_db >= MUSIC_EDGE_DB
                && run.level_after_db.is_some_and(|level| level >= MUSIC_EDGE_DB)
        })
        .map(|run| run.run.clone())
        .collect();
    let stereo = facts.channels >= 2;
    let bits = facts.bits_per_sample.unwrap_or(16);
    let padded_bits = match facts.bits_per_sample {
        Some(bits) if settings.check_padding && facts.lossless && measured.used_bits != 0 => {
            let used = 32u32.saturating_sub(measured.used_bits.trailing_zeros());
            bits.saturating_sub(used)
        }
        _ => 0,
    };
    let upsampled = settings.check_upsampling
        && measured.spectrum.as_ref().is_some_and(|spectrum| transcode::is_upsampled(spectrum, bits, stereo));
    let judgement = measured.spectrum.as_ref().filter(|_| settings.check_transcode && facts.lossless).map(|spectrum| {
        // The floor of the bits actually used: 16-bit audio padded to 24 bits has a 16-bit floor.
        transcode::judge_spectrum(spectrum, bits.saturating_sub(padded_bits).max(8), &settings.spectrum)
    });
    let problem = if settings.check_integrity {
        integrity_problem(summary, missing, &interior_runs, duration_secs)
    } else {
        None
    };
    let (verdict, reason, confidence) = match (&problem, &judgement) {
        (Some(problem), _) => (Verdict::Corrupt, problem.clone(), 0.99),
        (None, Some(judgement)) => (judgement.verdict, judgement.reason.clone(), judgement.confidence),
        (None, None) if facts.lossless => (Verdict::Genuine, "decoded cleanly (transcode check off)".to_string(), 0.5),
        (None, None) => (
            Verdict::Genuine,
            format!("lossy {}: decoded cleanly (no transcode check for lossy formats)", facts.codec),
            0.9,
        ),
    };
    let evidence = judgement.and_then(|judgement| judgement.evidence);
    let meter = measured.loudness;
    let loudness_lufs = meter.as_ref().and_then(loudness::integrated_lufs).map(round2);
    let true_peak_dbtp = meter.as_ref().and_then(loudness::true_peak_dbtp).map(round2);
    let report = FileVerification {
        path: file.shown.clone(),
        verdict,
        reason,
        confidence,
        codec: facts.codec.clone(),
        lossless: facts.lossless,
        sample_rate_hz: facts.sample_rate_hz,
        channels: facts.channels,
        bits_per_sample: facts.bits_per_sample,
        duration_secs: round2(duration_secs),
        cutoff_hz: evidence.as_ref().map(|evidence| evidence.cutoff_hz),
        upsampled,
        padded_bits,
        duplicate_of: None,
        loudness_lufs,
        true_peak_dbtp,
        spectrum: evidence,
        decode_errors: summary.decode_errors,
        md5: summary.md5.unwrap_or(Md5Check::NotApplicable),
        missing_secs: round2(missing),
        zero_runs: interior_runs,
    };
    FileOutcome { report, fingerprint: measured.fingerprint, meter }
}
