//! The verification step at the start of `converting`: every mapped file of the finished download goes through the
//! audio verifier (`crate::verifier`: integrity, transcode, upsampling, padding, duplicates, loudness) before any
//! CPU is spent on encoding it. The verdicts are kept in the ticket's work (its API view and, once placed, its
//! completion stats show them). A release with a `suspect` or `corrupt` file is refused as `[verifier] action`
//! says: `fallback` blocklists its info hash and takes the next candidate the matcher's [`next_fallback`] would
//! auto-approve on its own merit, else asks an admin (`transcode_suspected` / `corrupt_download` with the
//! evidence); `ask` blocklists and asks an admin; `warn` converts anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;

use super::{Advance, StageContext, StageError};
use crate::converter::tags::ReplayGain;
use crate::converter::{cue, sources};
use crate::matcher::{next_fallback, FallbackStep};
use crate::models::verification::{ReleaseVerification, TrackVerification, Verdict};
use crate::models::{ApprovalReason, InfoHash, ScoredCandidate, TicketState, TicketWork, TorrentFile};
use crate::queue::{BlocklistEntry, TicketRecord};
use crate::verifier::{verify_set, FileToVerify, VerifierSettings};

/// One file of the download to verify and the catalog tracks it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedFile {
    /// Torrent-relative name (how reports show it).
    pub relative: String,
    pub path: PathBuf,
    pub catalog_track_ids: Vec<String>,
}

/// The files the mapping reads, each once (a CUE image holds several tracks), resolved under `source_root`. A name
/// that does not resolve is left to the converter, which names it in its error.
pub fn mapped_files(selected: &ScoredCandidate, source_root: &Path, torrent_files: &[TorrentFile]) -> Vec<MappedFile> {
    let mut files: Vec<MappedFile> = Vec::new();
    for mapping in &selected.track_mapping {
        let mapped = mapping.torrent_file_path.as_str();
        let listed = torrent_files.iter().any(|file| file.path == mapped);
        let relative = match (listed, cue::split_image_reference(mapped)) {
            (false, Some((image, _))) => image,
            _ => mapped,
        };
        if let Some(known) = files.iter_mut().find(|file| file.relative == relative) {
            known.catalog_track_ids.push(mapping.catalog_track_id.clone());
            continue;
        }
        match sources::resolve_source_file(source_root, relative) {
            Ok(path) => files.push(MappedFile {
                relative: relative.to_string(),
                path,
                catalog_track_ids: vec![mapping.catalog_track_id.clone()],
            }),
            Err(err) => tracing::warn!(file = %relative, error = %err, "mapped file not verified"),
        }
    }
    files
}

/// Verifies the download of `selected` (torrent `hash`, files under `source_root`) and records the result in
/// `work`. `Ok(None)`: go on converting; `Ok(Some(advance))`: the release is refused and the ticket moves on.
pub async fn verify_download(
    ctx: &StageContext,
    record: &TicketRecord,
    work: &mut TicketWork,
    selected: &ScoredCandidate,
    hash: &InfoHash,
    source_root: &Path,
    torrent_files: &[TorrentFile],
) -> Result<Option<Advance>, StageError> {
    let config = &ctx.app.config.verifier;
    let files = mapped_files(selected, source_root, torrent_files);
    let settings = VerifierSettings::from_config(config);
    let parallelism = config.parallelism;
    let to_verify: Vec<FileToVerify> =
        files.iter().map(|file| FileToVerify { path: file.path.clone(), shown: file.relative.clone() }).collect();
    let cancel = ctx.cancel.clone();
    let started = Instant::now();
    let verified =
        tokio::task::spawn_blocking(move || verify_set(&to_verify, &settings, parallelism, &|| cancel.is_cancelled()))
            .await
            .map_err(|err| StageError::Inconsistent(format!("audio verification task failed: {err}")))?;
    let Some(set) = verified else { return Err(StageError::Stopped) };
    let tracks: Vec<TrackVerification> = files
        .iter()
        .zip(set.files)
        .map(|(mapped, file)| TrackVerification {
            catalog_track_ids: mapped.catalog_track_ids.clone(),
            spectrogram: false,
            file,
        })
        .collect();
    let mut verification = ReleaseVerification {
        info_hash: hash.to_string(),
        title: selected.candidate.title.clone(),
        verified_at: Utc::now(),
        tracks,
        album: set.album,
        verification_secs: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    };
    for track in &verification.tracks {
        tracing::info!(
            file = %track.file.path,
            verdict = track.file.verdict.as_str(),
            reason = %track.file.reason,
            "audio verified"
        );
    }
    draw_spectrograms(ctx, &record.ticket.ticket_id, &files, &mut verification).await;
    let refusal = refusal_of(&verification);
    work.verifications.push(verification.clone());
    let Some(refusal) = refusal else { return Ok(None) };
    let summary = refusal.summary(&verification);
    if config.action == "warn" {
        tracing::warn!(%hash, "{summary} (converted anyway: [verifier] action = \"warn\")");
        return Ok(None);
    }
    tracing::warn!(%hash, "{summary}: release refused and blocklisted");
    let entry = BlocklistEntry {
        info_hash: hash.to_string(),
        title: selected.candidate.title.clone(),
        reason: refusal.name().to_string(),
        details: summary.clone(),
        ticket_id: record.ticket.ticket_id.clone(),
        added_at: Utc::now(),
    };
    ctx.app.store.blocklist_add(&entry).await?;
    let blocklisted = ctx.app.store.blocklisted_hashes().await?;
    let reason = refusal.approval_reason(verification);
    let ask_only = config.action == "ask";
    Ok(Some(refuse(ctx, work.clone(), hash, &blocklisted, reason, ask_only).note("error", summary)))
}

/// The ReplayGain 2.0 values of each catalog track of a verified release, for the converter's tags. A file holding
/// several tracks (a CUE image) was measured as a whole: its tracks get none (a per-track figure would be wrong).
pub fn replaygain_of(verification: &ReleaseVerification) -> BTreeMap<String, ReplayGain> {
    let album = verification.album.as_ref();
    verification
        .tracks
        .iter()
        .filter_map(|track| {
            match (track.catalog_track_ids.as_slice(), track.file.loudness_lufs, track.file.true_peak_dbtp) {
                ([id], Some(lufs), Some(peak)) => Some((
                    id.clone(),
                    ReplayGain {
                        track_lufs: lufs,
                        track_peak_dbtp: peak,
                        album_lufs: album.map(|album| album.loudness_lufs),
                        album_peak_dbtp: album.map(|album| album.true_peak_dbtp),
                    },
                )),
                _ => None,
            }
        })
        .collect()
}

/// At most this many spectrograms per release (the first suspect files).
pub const MAX_SPECTROGRAMS: usize = 8;

/// ffmpeg's `-f` for a source file, from its extension (explicit input formats: no guessing on hostile files).
fn input_format(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "flac" => "flac",
        "wav" => "wav",
        "aif" | "aiff" => "aiff",
        "ape" => "ape",
        "wv" => "wv",
        "m4a" | "mp4" | "alac" => "mov",
        _ => return None,
    })
}

/// Draws a spectrogram (ffmpeg `showspectrumpic`) of each suspect file into the ticket's evidence directory and
/// marks it in `verification`. A picture that cannot be drawn is logged and left out: evidence, not a verdict.
async fn draw_spectrograms(
    ctx: &StageContext,
    ticket_id: &str,
    files: &[MappedFile],
    verification: &mut ReleaseVerification,
) {
    let evidence_dir = ctx.app.clients.evidence_dir_for(ticket_id);
    let program = crate::process::Program::ffmpeg(&ctx.app.config.converter.ffmpeg_path);
    let suspects: Vec<usize> = verification
        .tracks
        .iter()
        .enumerate()
        .filter(|(_, track)| track.file.verdict == Verdict::Suspect)
        .map(|(idx, _)| idx)
        .take(MAX_SPECTROGRAMS)
        .collect();
    if suspects.is_empty() {
        return;
    }
    if let Err(err) = tokio::fs::create_dir_all(&evidence_dir).await {
        tracing::warn!(path = %evidence_dir.display(), error = %err, "cannot create the evidence directory");
        return;
    }
    for idx in suspects {
        let (Some(mapped), Some(track)) = (files.get(idx), verification.tracks.get_mut(idx)) else { continue };
        let output = crate::app::spectrogram_path(&evidence_dir, &verification.info_hash, idx);
        let mut args: Vec<std::ffi::OsString> =
            ["-hide_banner", "-nostdin", "-v", "error", "-protocol_whitelist", "file"].map(Into::into).to_vec();
        if let Some(format) = input_format(&mapped.path) {
            args.extend(["-f".into(), format.into()]);
        }
        let mut input = std::ffi::OsString::from("file:");
        input.push(&mapped.path);
        args.extend(["-i".into(), input]);
        args.extend(
            ["-lavfi", "showspectrumpic=s=1024x512:legend=1:scale=log", "-frames:v", "1", "-f", "image2", "-y"]
                .map(Into::into),
        );
        let mut target = std::ffi::OsString::from("file:");
        target.push(&output);
        args.push(target);
        let limit = crate::process::time_limit_for(track.file.duration_secs);
        match crate::process::run_program(&program, &args, limit, &ctx.cancel).await {
            Ok(_) => track.spectrogram = true,
            Err(err) => tracing::warn!(file = %mapped.relative, error = %err, "spectrogram not drawn"),
        }
    }
}

/// Why a verified release is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Corrupt,
    Transcode,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::Corrupt => "corrupt_download",
            Refusal::Transcode => "transcode_suspected",
        }
    }

    /// One line naming the first refused file.
    fn summary(self, verification: &ReleaseVerification) -> String {
        let (verdict, what) = match self {
            Refusal::Corrupt => (Verdict::Corrupt, "corrupt download"),
            Refusal::Transcode => (Verdict::Suspect, "lossy transcode sold as lossless"),
        };
        let refused: Vec<&TrackVerification> =
            verification.tracks.iter().filter(|track| track.file.verdict == verdict).collect();
        let first = refused.first().map(|track| format!("{}: {}", track.file.path, track.file.reason));
        format!(
            "{what} {:?}: {} of {} files {} ({})",
            verification.title,
            refused.len(),
            verification.tracks.len(),
            verdict.as_str(),
            first.unwrap_or_default()
        )
    }

    fn approval_reason(self, verification: ReleaseVerification) -> ApprovalReason {
        let verification = Box::new(verification);
        match self {
            Refusal::Corrupt => ApprovalReason::CorruptDownload { verification },
            Refusal::Transcode => ApprovalReason::TranscodeSuspected { verification },
        }
    }
}

/// A corrupt file refuses the release first (it cannot even be converted), then a suspect one.
fn refusal_of(verification: &ReleaseVerification) -> Option<Refusal> {
    if verification.corrupt().next().is_some() {
        Some(Refusal::Corrupt)
    } else if verification.suspect().next().is_some() {
        Some(Refusal::Transcode)
    } else {
        None
    }
}

/// The refused release is dropped from the ticket (and every blocklisted one with it): the matcher's
/// [`next_fallback`] takes the next candidate that would be auto-approved on its own merit (unless `ask_only`),
/// otherwise an admin chooses among the rest, shown why with `reason`. The torrent is released (the reaper removes
/// it once no live ticket holds it).
fn refuse(
    ctx: &StageContext,
    mut work: TicketWork,
    refused: &InfoHash,
    blocklisted: &[InfoHash],
    reason: ApprovalReason,
    ask_only: bool,
) -> Advance {
    let now = Utc::now();
    let threshold = ctx.app.config.matcher.auto_approve_threshold;
    let refused_title = work.selected.as_ref().map(|selected| selected.candidate.title.clone());
    if !work.failed_hashes.contains(refused) {
        work.failed_hashes.push(refused.clone());
    }
    work.torrent_hash = None;
    work.selected = None;
    work.download_started_at = None;
    work.conversion = None;
    let mut excluded = work.failed_hashes.clone();
    excluded.extend(blocklisted.iter().cloned());
    let titles: Vec<&str> = refused_title.as_deref().into_iter().collect();
    let fallback = next_fallback(&work.ranked, &excluded, &titles, threshold);
    work.ranked = fallback.remaining.clone();
    let next = match fallback.step {
        FallbackStep::AutoApprove { selected } if !ask_only => match fallback.remaining.get(selected) {
            Some(next) => {
                TicketState::AutoApproved { selected: next.clone(), confidence: next.score, approved_at: now }
            }
            None => needs_approval(fallback.remaining, None, 0.0, reason, now),
        },
        FallbackStep::AutoApprove { selected } => {
            let confidence = fallback.remaining.get(selected).map_or(0.0, |scored| scored.score);
            needs_approval(fallback.remaining, Some(selected), confidence, reason, now)
        }
        FallbackStep::NeedsApproval { recommended_idx, confidence, .. } => {
            needs_approval(fallback.remaining, recommended_idx, confidence, reason, now)
        }
    };
    Advance::to(next, work).note("refused", refused.to_string())
}

fn needs_approval(
    candidates: Vec<ScoredCandidate>,
    recommended_idx: Option<usize>,
    confidence: f64,
    reason: ApprovalReason,
    waiting_since: chrono::DateTime<Utc>,
) -> TicketState {
    TicketState::NeedsApproval { candidates, recommended_idx, confidence, reason, waiting_since }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{TorrentCandidate, TrackMapping};

    #[test]
    fn a_cue_image_is_verified_once_for_all_its_tracks_and_hostile_names_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("A")).unwrap();
        for name in ["A/image.flac", "A/01 One.flac"] {
            std::fs::write(root.path().join(name), b"x").unwrap();
        }
        let mapping = |id: &str, path: &str| TrackMapping {
            catalog_track_id: id.into(),
            torrent_file_path: path.into(),
            confidence: 1.0,
        };
        let selected = ScoredCandidate {
            candidate: TorrentCandidate::with_title("A"),
            score: 1.0,
            reasoning: String::new(),
            track_mapping: vec![
                mapping("a", "A/01 One.flac"),
                mapping("b", "A/image.flac#1"),
                mapping("c", "A/image.flac#2"),
                mapping("d", "../../etc/passwd"),
            ],
            hard_rejects: Vec::new(),
            doubts: Vec::new(),
        };
        let listed = vec![
            TorrentFile { path: "A/01 One.flac".into(), size_bytes: 1 },
            TorrentFile { path: "A/image.flac".into(), size_bytes: 1 },
        ];
        let files = mapped_files(&selected, root.path(), &listed);
        let shown: Vec<(&str, Vec<String>)> =
            files.iter().map(|file| (file.relative.as_str(), file.catalog_track_ids.clone())).collect();
        assert_eq!(
            shown,
            vec![("A/01 One.flac", vec!["a".to_string()]), ("A/image.flac", vec!["b".to_string(), "c".to_string()])]
        );
    }
}
