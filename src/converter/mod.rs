//! Conversion: the `Converter` trait the pipeline calls and its real implementation on ffmpeg. For one ticket it
//! resolves the mapped torrent files (or CUE image tracks) safely under the download directory, reads their headers,
//! refuses a source whose duration does not match the catalog (`DurationMismatch`) or a lossy source asked as FLAC
//! (`LossySourceForLossless`), prepares the ticket's images as JPEG, transcodes every track (at most
//! `max_parallel_conversions` ffmpeg processes over all tickets), tags it with lofty, and validates the result per
//! codec (`validate.rs`). Everything is written inside the ticket's own work directory; this module never writes to
//! a destination (that is the placer) and never spawns a program except through `crate::process`.
//!
//! Files: `album.rs` (one ticket's flow, the hot path), `ffmpeg.rs` (encoding rules and argument vectors),
//! `inspect.rs` (in-process header reading), `probe.rs` (ffprobe), `validate.rs` (output checks), `tags.rs`,
//! `images.rs`, `cue.rs`, `sources.rs` (safe paths).

mod album;
pub mod cue;
pub mod ffmpeg;
mod images;
pub mod inspect;
pub mod probe;
pub mod sources;
pub mod tags;
pub mod validate;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::ConverterConfig;
use crate::models::{Ticket, TicketTrack, TorrentFile, TrackMapping};
use crate::process::{Program, ProgramOutput};

pub use crate::process::ProcessError;
pub use ffmpeg::{EncodePlan, SampleRange, MAX_IMAGE_SIDE_PX};
pub use probe::{ImageInfo, SourceInfo};
pub use sources::SourcePathError;
pub use tags::TagWriteError;
pub use validate::{Check, BITRATE_TOLERANCE, CONTAINER_ALLOWANCE_BYTES};

/// Prefix of every per-ticket work directory under the work root; start-up cleanup removes only these.
pub const WORK_DIR_PREFIX: &str = "d2-work-";
/// The work directory of ticket `ticket_id` under `work_root`: the one place its name is built (the converter
/// writes there, the reaper removes it, start-up cleanup recognises it by [`WORK_DIR_PREFIX`]).
pub fn work_dir_in(work_root: &Path, ticket_id: &str) -> PathBuf {
    work_root.join(format!("{WORK_DIR_PREFIX}{ticket_id}"))
}

/// How long an in-process header read of a source may take before ffprobe decides instead.
const HEADER_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// One catalog track being converted: what the `converting` state shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionProgress {
    /// Index of the track in the ticket's `tracks`.
    pub track_idx: usize,
    pub total_tracks: usize,
    pub track_name: String,
}

/// Everything the converter needs for one ticket.
#[derive(Debug, Clone)]
pub struct ConversionJob {
    pub ticket: Ticket,
    /// The directory the torrent was downloaded into; every mapped path is relative to it.
    pub source_root: PathBuf,
    /// The matcher's mapping: catalog track id -> torrent-relative file, or `<image path>#<track number>`.
    pub mapping: Vec<TrackMapping>,
    /// The torrent's file list (cover selection, CUE sheet lookup).
    pub torrent_files: Vec<TorrentFile>,
    /// Cancelling kills this ticket's ffmpeg children at once and removes its work directory.
    pub cancel: CancellationToken,
    /// ReplayGain 2.0 values per catalog track id (the audio verifier's EBU R128 measurement of the source),
    /// written as tags (`REPLAYGAIN_*`, `R128_*` for Opus) when metadata is embedded; empty: none written.
    pub replaygain: std::collections::BTreeMap<String, tags::ReplayGain>,
}

/// One file produced in the work directory, with where it must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedFile {
    /// The catalog track or image id.
    pub catalog_id: String,
    pub path: PathBuf,
    pub dest_path: String,
    pub size_bytes: u64,
}

/// What a ticket's conversion produced. The files live in `work_dir` until the reaper removes it once the ticket
/// no longer needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionOutput {
    pub work_dir: PathBuf,
    pub tracks: Vec<ConvertedFile>,
    pub images: Vec<ConvertedFile>,
    /// Ticket tracks the mapping did not cover (only possible with an admin's approval of a partial release).
    pub missing_track_ids: Vec<String>,
    /// Ticket images no source was found for (reported, not fatal).
    pub missing_image_ids: Vec<String>,
    /// What the conversion did differently from what was asked, one sentence each (a bitrate capped at a lossy
    /// source's), for the ticket's history.
    pub adjustments: Vec<String>,
    pub conversion_duration_secs: f64,
}

/// Why a ticket could not be converted. Messages name the track and the torrent file, and say what to do when a
/// human must act.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("unusable converter configuration: {0}")]
    Config(String),
    #[error("no ticket track is mapped to a file")]
    NothingMapped,
    #[error("source {path:?} refused: {source}")]
    SourcePath { path: String, source: SourcePathError },
    #[error("CUE image {path:?}: {reason}")]
    CueSheet { path: String, reason: String },
    #[error("cannot read {path:?} as audio: {reason}")]
    Probe { path: String, reason: String },
    #[error(
        "track {catalog_track_id}: source lasts {found_secs:.1} s but the catalog says {expected_secs:.1} s \
         (wrong file or edition)"
    )]
    DurationMismatch { catalog_track_id: String, expected_secs: f64, found_secs: f64 },
    #[error(
        "track {catalog_track_id}: {path:?} is damaged or incomplete ({detail}); this release cannot be used: search \
         again (force-search) or reject it"
    )]
    DamagedSource { catalog_track_id: String, path: String, expected_secs: f64, decoded_secs: f64, detail: String },
    #[error(
        "{path:?} is {codec}, a lossy format: FLAC made from it would claim a quality it does not have; approve \
         a lossless release for this ticket, or ask for a lossy output format"
    )]
    LossySourceForLossless { path: String, codec: String },
    #[error("{path:?}: {source}")]
    Program { path: String, source: ProcessError },
    #[error(
        "output of {path:?} failed the {} check: {detail}. This is a converter or resource fault, not a property \
         of the album: the ticket is retried; if it keeps failing, report it with this message",
        check.name()
    )]
    Validation { path: String, check: Check, detail: String },
    #[error("{source} (a converter or resource fault: the ticket is retried)")]
    Tags { source: TagWriteError },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("conversion cancelled")]
    Cancelled,
}

impl ConvertError {
    /// Whether trying the same ticket again later may succeed without a human changing anything. A check failed
    /// by our own output (validation, tags) is never the album's fault, so it is retried; what the sources are
    /// (durations, damage, a lossy source for FLAC) needs a human.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConvertError::Program { source, .. } => source.is_retryable(),
            // The disk may be full or the work dir briefly unavailable.
            ConvertError::Io { .. } | ConvertError::Validation { .. } | ConvertError::Tags { .. } => true,
            ConvertError::Config(_)
            | ConvertError::NothingMapped
            | ConvertError::SourcePath { .. }
            | ConvertError::CueSheet { .. }
            | ConvertError::Probe { .. }
            | ConvertError::DurationMismatch { .. }
            | ConvertError::DamagedSource { .. }
            | ConvertError::LossySourceForLossless { .. }
            | ConvertError::Cancelled => false,
        }
    }
}

/// The conversion stage as the pipeline sees it.
#[async_trait::async_trait]
pub trait Converter: Send + Sync {
    /// Converts every mapped track of a ticket into its own work directory, reporting each track as it starts,
    /// validates each output, and returns the files with their destinations. On error or cancellation the work
    /// directory is removed.
    async fn convert_ticket(
        &self,
        job: ConversionJob,
        progress: &(dyn Fn(ConversionProgress) + Send + Sync),
    ) -> Result<ConversionOutput, ConvertError>;
}

/// The real converter: ffmpeg and ffprobe from `[converter]`, one semaphore for all tickets.
#[derive(Debug, Clone)]
pub struct FfmpegConverter {
    ffmpeg: Program,
    ffprobe: Program,
    work_root: PathBuf,
    slots: Arc<Semaphore>,
}

/// Where one track's audio comes from.
#[derive(Debug, Clone)]
struct TrackSource {
    /// Torrent-relative name, for messages.
    shown: String,
    path: PathBuf,
    /// For a CUE image: the sheet and the track number.
    cue_track: Option<(cue::CueSheet, u32)>,
}

impl FfmpegConverter {
    /// Builds the converter. `work_root` holds one `d2-work-<ticket id>` directory per ticket (the caller resolves
    /// `[converter] temp_dir`, default `<data dir>/work`); it is created if needed. Leftovers of a crash are the
    /// caller's to remove with [`clean_work_leftovers`], which knows which tickets may still need their outputs.
    pub fn new(config: &ConverterConfig, work_root: PathBuf) -> Result<Self, ConvertError> {
        if config.max_parallel_conversions == 0 {
            return Err(ConvertError::Config("[converter] max_parallel_conversions must be at least 1".into()));
        }
        if config.ffmpeg_path.is_empty() || config.ffprobe_path.is_empty() {
            return Err(ConvertError::Config("[converter] ffmpeg_path and ffprobe_path must not be empty".into()));
        }
        std::fs::create_dir_all(&work_root).map_err(|source| io_error(&work_root, source))?;
        Ok(FfmpegConverter {
            ffmpeg: Program::ffmpeg(&config.ffmpeg_path),
            ffprobe: Program::ffprobe(&config.ffprobe_path),
            work_root,
            slots: Arc::new(Semaphore::new(config.max_parallel_conversions)),
        })
    }

    /// The work directory of a ticket.
    pub fn work_dir_for(&self, ticket_id: &str) -> PathBuf {
        work_dir_in(&self.work_root, ticket_id)
    }

    async fn run_ffprobe(
        &self,
        path: &Path,
        shown: &str,
        demuxers: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, ConvertError> {
        let args = probe::probe_args(path, demuxers);
        match crate::process::run_program(&self.ffprobe, &args, crate::process::time_limit_for(0.0), cancel).await {
            Ok(output) => Ok(output.stdout),
            Err(ProcessError::Cancelled { .. }) => Err(ConvertError::Cancelled),
            Err(ProcessError::Failed { stderr_tail, .. }) => {
                Err(ConvertError::Probe { path: shown.to_string(), reason: stderr_tail })
            }
            Err(source) => Err(ConvertError::Program { path: shown.to_string(), source }),
        }
    }

    async fn probe_source(
        &self,
        path: &Path,
        shown: &str,
        cancel: &CancellationToken,
    ) -> Result<SourceInfo, ConvertError> {
        let json = self.run_ffprobe(path, shown, probe::AUDIO_DEMUXERS, cancel).await?;
        probe::parse_source_info(&json)
            .map_err(|err| ConvertError::Probe { path: shown.to_string(), reason: err.to_string() })
    }

    /// A source's properties: from its headers in-process when lofty knows the type, else (and always when
    /// `exact` sample positions are needed, for CUE images) from ffprobe. Header reading runs on a blocking thread,
    /// where a panic on a hostile file only sends the file to ffprobe.
    async fn inspect_source(
        &self,
        path: &Path,
        shown: &str,
        exact: bool,
        cancel: &CancellationToken,
    ) -> Result<SourceInfo, ConvertError> {
        if !exact {
            let owned = path.to_path_buf();
            let reading = tokio::task::spawn_blocking(move || inspect::read_source_info(&owned));
            // A header parser stuck on a hostile file is abandoned to ffprobe, which has a time limit.
            if let Ok(Ok(Some(info))) = tokio::time::timeout(HEADER_READ_LIMIT, reading).await {
                return Ok(info);
            }
        }
        self.probe_source(path, shown, cancel).await
    }

    /// Waits for one of the shared ffmpeg slots (FIFO over all tickets).
    async fn acquire_slot(&self, cancel: &CancellationToken) -> Result<tokio::sync::SemaphorePermit<'_>, ConvertError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ConvertError::Cancelled),
            permit = self.slots.acquire() => permit.map_err(|_| ConvertError::Cancelled),
        }
    }

    /// Runs ffmpeg with one of the shared slots.
    async fn run_ffmpeg(
        &self,
        args: &[OsString],
        media_secs: f64,
        shown: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ConvertError> {
        let _permit = self.acquire_slot(cancel).await?;
        self.run_ffmpeg_in_slot(args, media_secs, shown, cancel).await.map(|_| ())
    }

    /// Runs ffmpeg; the caller holds a slot.
    async fn run_ffmpeg_in_slot(
        &self,
        args: &[OsString],
        media_secs: f64,
        shown: &str,
        cancel: &CancellationToken,
    ) -> Result<ProgramOutput, ConvertError> {
        match crate::process::run_program(&self.ffmpeg, args, crate::process::time_limit_for(media_secs), cancel).await
        {
            Ok(output) => Ok(output),
            Err(ProcessError::Cancelled { .. }) => Err(ConvertError::Cancelled),
            Err(source) => Err(ConvertError::Program { path: shown.to_string(), source }),
        }
    }

    /// Resolves where a mapped track's audio is: a plain file, or a track of a CUE image.
    async fn locate_track(&self, job: &ConversionJob, mapped: &str) -> Result<TrackSource, ConvertError> {
        let listed = job.torrent_files.iter().any(|file| file.path == mapped);
        let reference = if listed { None } else { cue::split_image_reference(mapped) };
        let Some((image, number)) = reference else {
            let path = sources::resolve_source_file(&job.source_root, mapped)
                .map_err(|source| ConvertError::SourcePath { path: mapped.to_string(), source })?;
            return Ok(TrackSource { shown: mapped.to_string(), path, cue_track: None });
        };
        let path = sources::resolve_source_file(&job.source_root, image)
            .map_err(|source| ConvertError::SourcePath { path: image.to_string(), source })?;
        let cue_error = |reason: String| ConvertError::CueSheet { path: image.to_string(), reason };
        let mut names: Vec<String> = job.torrent_files.iter().map(|file| file.path.clone()).collect();
        if names.is_empty() {
            names = list_sibling_names(&path, image);
        }
        let candidates = cue::cue_candidates(image, names.iter().map(String::as_str));
        let mut last_reason = "no .cue sheet next to the image".to_string();
        for candidate in candidates {
            let Ok(cue_path) = sources::resolve_source_file(&job.source_root, candidate) else {
                continue;
            };
            let size = tokio::fs::metadata(&cue_path).await.map_err(|source| io_error(&cue_path, source))?.len();
            if size > u64::try_from(cue::MAX_CUE_BYTES).unwrap_or(u64::MAX) {
                last_reason = format!("{candidate}: {}", cue::CueSheetError::TooLarge);
                continue;
            }
            let bytes = tokio::fs::read(&cue_path).await.map_err(|source| io_error(&cue_path, source))?;
            let sheet = match cue::parse_cue_sheet(&bytes) {
                Ok(sheet) => sheet,
                Err(err) => {
                    last_reason = format!("{candidate}: {err}");
                    continue;
                }
            };
            let refers =
                sheet.files.len() == 1 || sheet.files.iter().any(|file| cue::file_refers_to(&file.name, image));
            if !refers {
                last_reason = format!("{candidate} does not describe this image");
                continue;
            }
            if sheet.files.len() > 1 {
                if let Ok((file, _)) = sheet.track_range(number, 44_100) {
                    if !cue::file_refers_to(&file.name, image) {
                        last_reason = format!("{candidate}: track {number} is in FILE {:?}, not this image", file.name);
                        continue;
                    }
                }
            }
            // The sample range needs the image's sample rate: computed once the image is probed.
            return Ok(TrackSource { shown: format!("{image}#{number}"), path, cue_track: Some((sheet, number)) });
        }
        Err(cue_error(last_reason))
    }
}

/// Names of the files next to an image, as torrent-relative paths (used when the torrent's file list is unknown).
fn list_sibling_names(image_path: &Path, image_relative: &str) -> Vec<String> {
    let prefix = image_relative.rsplit_once('/').map(|(dir, _)| format!("{dir}/")).unwrap_or_default();
    let Some(dir) = image_path.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries.flatten().filter_map(|entry| entry.file_name().to_str().map(|name| format!("{prefix}{name}"))).collect()
}

fn io_error(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io { path: path.display().to_string(), source }
}

async fn remove_dir_if_present(dir: &Path) -> Result<(), ConvertError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io_error(dir, source)),
    }
}

/// Removes the `d2-work-<ticket id>` directories under `work_root` (leftovers of a crash) except those of tickets
/// `keep` names (a ticket in `placing` still needs its outputs). Other entries are left alone, so a misconfigured
/// `temp_dir` never costs unrelated files. Returns how many directories were removed.
pub fn clean_work_leftovers(work_root: &Path, keep: &dyn Fn(&str) -> bool) -> Result<usize, ConvertError> {
    let entries = match std::fs::read_dir(work_root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(io_error(work_root, source)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(ticket_id) = name.to_str().and_then(|name| name.strip_prefix(WORK_DIR_PREFIX)) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir && !keep(ticket_id) {
            std::fs::remove_dir_all(entry.path()).map_err(|source| io_error(&entry.path(), source))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A source is the catalog's track when its duration is within max(5 s, 3 %) of the catalog's.
pub fn check_source_duration(track: &TicketTrack, found_secs: f64) -> Result<(), ConvertError> {
    let expected = track.duration_secs;
    let tolerance = (0.03 * expected).max(5.0);
    if (found_secs - expected).abs() > tolerance {
        return Err(ConvertError::DurationMismatch {
            catalog_track_id: track.catalog_track_id.clone(),
            expected_secs: expected,
            found_secs,
        });
    }
    Ok(())
}

fn valid_ticket_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= crate::models::ticket::MAX_TICKET_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Track and disc totals of a ticket: (tracks on each disc, number of discs).
fn track_totals(ticket: &Ticket) -> (HashMap<u32, u32>, u32) {
    let mut per_disc: HashMap<u32, u32> = HashMap::new();
    for track in &ticket.tracks {
        *per_disc.entry(track.disc_number).or_default() += 1;
    }
    let discs = ticket.tracks.iter().map(|track| track.disc_number).max().unwrap_or(1);
    (per_disc, discs)
}

#[async_trait::async_trait]
impl Converter for FfmpegConverter {
    async fn convert_ticket(
        &self,
        job: ConversionJob,
        progress: &(dyn Fn(ConversionProgress) + Send + Sync),
    ) -> Result<ConversionOutput, ConvertError> {
        if !valid_ticket_id(&job.ticket.ticket_id) {
            return Err(ConvertError::Config(format!("ticket id {:?} cannot name a directory", job.ticket.ticket_id)));
        }
        let started = Instant::now();
        let work_dir = self.work_dir_for(&job.ticket.ticket_id);
        remove_dir_if_present(&work_dir).await?;
        tokio::fs::create_dir_all(&work_dir).await.map_err(|source| io_error(&work_dir, source))?;
        match self.convert_into(&job, &work_dir, progress).await {
            Ok(mut output) => {
                output.conversion_duration_secs = started.elapsed().as_secs_f64();
                Ok(output)
            }
            Err(err) => {
                if let Err(cleanup) = remove_dir_if_present(&work_dir).await {
                    tracing::warn!(error = %cleanup, "cannot remove work directory");
                }
                if job.cancel.is_cancelled() {
                    return Err(ConvertError::Cancelled);
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(duration_secs: f64) -> TicketTrack {
        TicketTrack {
            catalog_track_id: "t1".into(),
            disc_number: 1,
            track_number: 1,
            name: "One".into(),
            duration_secs,
            dest_path: "/media/a.ogg".into(),
        }
    }

    #[test]
    fn duration_tolerance_is_max_of_5s_and_3_percent() {
        assert!(check_source_duration(&track(100.0), 104.9).is_ok());
        assert!(matches!(
            check_source_duration(&track(100.0), 105.5),
            Err(ConvertError::DurationMismatch { expected_secs, found_secs, .. }) if expected_secs == 100.0 && found_secs == 105.5
        ));
        assert!(check_source_duration(&track(1000.0), 1029.0).is_ok());
        assert!(check_source_duration(&track(1000.0), 1031.0).is_err());
    }

    #[test]
    fn every_error_decides_retryability() {
        assert!(ConvertError::Io { path: "x".into(), source: std::io::Error::other("full") }.is_retryable());
        assert!(!ConvertError::DurationMismatch { catalog_track_id: "t".into(), expected_secs: 1.0, found_secs: 9.0 }
            .is_retryable());
        assert!(!ConvertError::Cancelled.is_retryable());
        let validation = ConvertError::Validation {
            path: "track t1 (01.flac)".into(),
            check: Check::BitrateCeiling,
            detail: "x".into(),
        };
        assert!(validation.is_retryable(), "our own output's fault is never the album's");
        let message = validation.to_string();
        assert!(
            message.contains("01.flac") && message.contains("bitrate ceiling") && message.contains("retried"),
            "{message}"
        );
        let lossy = ConvertError::LossySourceForLossless { path: "01.mp3".into(), codec: "mp3".into() };
        assert!(!lossy.is_retryable());
        assert!(lossy.to_string().contains("approve a lossless release"), "{lossy}");
    }
}
