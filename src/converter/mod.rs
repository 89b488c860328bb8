//! Conversion: the `Converter` trait the pipeline calls and its real implementation on ffmpeg/ffprobe. For one
//! ticket it resolves the mapped torrent files (or CUE image tracks) safely under the download directory, probes
//! them, refuses a source whose duration does not match the catalog (`DurationMismatch`), prepares the ticket's
//! images as JPEG, transcodes every track (at most `max_parallel_conversions` ffmpeg processes over all tickets),
//! tags it with lofty, and validates the result with ffprobe and a lofty read-back. Everything is written inside the
//! ticket's own work directory; this module never writes to a destination (that is the placer) and never spawns a
//! program except through `process.rs`.

pub mod cue;
pub mod ffmpeg;
pub mod probe;
pub mod process;
pub mod sources;
pub mod tags;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::ConverterConfig;
use crate::models::{ImageType, Ticket, TicketTrack, TorrentFile, TrackMapping};
use crate::placer::images::choose_image_file;
use crate::placer::PlacementItem;

pub use ffmpeg::{EncodePlan, SampleRange, MAX_IMAGE_SIDE_PX};
pub use probe::{ImageInfo, SourceInfo};
pub use process::ProcessError;
pub use sources::SourcePathError;
pub use tags::TagWriteError;

/// Prefix of every per-ticket work directory under the work root; start-up cleanup removes only these.
pub const WORK_DIR_PREFIX: &str = "d2-work-";
/// Relative bitrate tolerance of lossy outputs (the 15 %).
pub const BITRATE_TOLERANCE: f64 = 0.15;
/// Container and header bytes allowed on top of the audio payload when checking a lossy output's bitrate.
pub const CONTAINER_ALLOWANCE_BYTES: f64 = 16.0 * 1024.0;

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

/// What a ticket's conversion produced. The files live in `work_dir` until `remove_work_dir` (call it after a
/// successful placement).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionOutput {
    pub work_dir: PathBuf,
    pub tracks: Vec<ConvertedFile>,
    pub images: Vec<ConvertedFile>,
    /// Ticket tracks the mapping did not cover (only possible with an admin's approval of a partial release).
    pub missing_track_ids: Vec<String>,
    /// Ticket images no source was found for (reported, not fatal).
    pub missing_image_ids: Vec<String>,
    pub conversion_duration_secs: f64,
}

impl ConversionOutput {
    /// Every file (tracks, then images) as the placer wants it.
    pub fn placement_items(&self) -> Vec<PlacementItem> {
        self.tracks
            .iter()
            .chain(&self.images)
            .map(|file| PlacementItem { source: file.path.clone(), dest_path: file.dest_path.clone() })
            .collect()
    }

    /// Removes the work directory and everything in it.
    pub async fn remove_work_dir(&self) -> Result<(), ConvertError> {
        remove_dir_if_present(&self.work_dir).await
    }
}

/// Why a ticket could not be converted. Messages name the track and the torrent file.
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
    #[error("{path:?}: {source}")]
    Program { path: String, source: ProcessError },
    #[error("output of {path:?} failed validation: {reason}")]
    Validation { path: String, reason: String },
    #[error("{source}")]
    Tags { source: TagWriteError },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("conversion cancelled")]
    Cancelled,
}

impl ConvertError {
    /// Whether trying the same ticket again later may succeed without a human changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConvertError::Program { source, .. } => source.is_retryable(),
            // The disk may be full or the work dir briefly unavailable.
            ConvertError::Io { .. } => true,
            ConvertError::Config(_)
            | ConvertError::NothingMapped
            | ConvertError::SourcePath { .. }
            | ConvertError::CueSheet { .. }
            | ConvertError::Probe { .. }
            | ConvertError::DurationMismatch { .. }
            | ConvertError::Validation { .. }
            | ConvertError::Tags { .. }
            | ConvertError::Cancelled => false,
        }
    }
}

/// The conversion stage as the pipeline sees it.
#[async_trait::async_trait]
pub trait Converter: Send + Sync {
    /// Probes a downloaded source (duration, codec, sample rate, channels, bit depth, embedded picture).
    async fn probe(&self, path: &Path) -> Result<SourceInfo, ConvertError>;

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
    ffmpeg: String,
    ffprobe: String,
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

/// One track ready to be encoded.
#[derive(Debug, Clone)]
struct TrackWork {
    idx: usize,
    track: TicketTrack,
    source: TrackSource,
    info: SourceInfo,
    range: Option<SampleRange>,
    /// Duration of the part of the source that becomes this track.
    source_secs: f64,
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
            ffmpeg: config.ffmpeg_path.clone(),
            ffprobe: config.ffprobe_path.clone(),
            work_root,
            slots: Arc::new(Semaphore::new(config.max_parallel_conversions)),
        })
    }

    /// The work directory of a ticket.
    pub fn work_dir_for(&self, ticket_id: &str) -> PathBuf {
        self.work_root.join(format!("{WORK_DIR_PREFIX}{ticket_id}"))
    }

    async fn run_ffprobe(
        &self,
        path: &Path,
        shown: &str,
        demuxers: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, ConvertError> {
        let args = probe::probe_args(path, demuxers);
        match process::run_program(&self.ffprobe, &args, process::time_limit_for(0.0), cancel).await {
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
        self.run_ffmpeg_in_slot(args, media_secs, shown, cancel).await
    }

    /// Runs ffmpeg; the caller holds a slot.
    async fn run_ffmpeg_in_slot(
        &self,
        args: &[OsString],
        media_secs: f64,
        shown: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ConvertError> {
        match process::run_program(&self.ffmpeg, args, process::time_limit_for(media_secs), cancel).await {
            Ok(_) => Ok(()),
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

/// Checks a converted file's ffprobe view against its plan: codec, sample rate, channels, duration within
/// max(1 s, 0.5 %) of the source part, and for lossy formats an average bitrate within `BITRATE_TOLERANCE` of the
/// target (the upper bound also allows `CONTAINER_ALLOWANCE_BYTES` of headers).
pub fn validate_output(
    plan: &EncodePlan,
    produced: &SourceInfo,
    expected_secs: f64,
    size_bytes: u64,
) -> Result<(), String> {
    if produced.codec != plan.probe_codec_name() {
        return Err(format!("codec {} instead of {}", produced.codec, plan.probe_codec_name()));
    }
    if produced.sample_rate_hz != plan.sample_rate_hz {
        return Err(format!("sample rate {} Hz instead of {} Hz", produced.sample_rate_hz, plan.sample_rate_hz));
    }
    if produced.channels != plan.channels {
        return Err(format!("{} channels instead of {}", produced.channels, plan.channels));
    }
    let tolerance = (0.005 * expected_secs).max(1.0);
    if (produced.duration_secs - expected_secs).abs() > tolerance {
        return Err(format!("lasts {:.3} s instead of {expected_secs:.3} s", produced.duration_secs));
    }
    if let Some(target_kbps) = plan.bitrate_kbps {
        let target = f64::from(target_kbps);
        let actual = size_bytes as f64 * 8.0 / produced.duration_secs / 1000.0;
        let allowance = CONTAINER_ALLOWANCE_BYTES * 8.0 / produced.duration_secs / 1000.0;
        let low = target * (1.0 - BITRATE_TOLERANCE);
        let high = target * (1.0 + BITRATE_TOLERANCE) + allowance;
        if actual < low || actual > high {
            return Err(format!("average bitrate {actual:.0} kbit/s, target {target_kbps} kbit/s (+-15 %)"));
        }
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
    async fn probe(&self, path: &Path) -> Result<SourceInfo, ConvertError> {
        let absolute = std::path::absolute(path).map_err(|source| io_error(path, source))?;
        self.probe_source(&absolute, &path.display().to_string(), &CancellationToken::new()).await
    }

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

impl FfmpegConverter {
    async fn convert_into(
        &self,
        job: &ConversionJob,
        work_dir: &Path,
        progress: &(dyn Fn(ConversionProgress) + Send + Sync),
    ) -> Result<ConversionOutput, ConvertError> {
        let ticket = &job.ticket;
        let mapping: HashMap<&str, &str> = job
            .mapping
            .iter()
            .map(|mapped| (mapped.catalog_track_id.as_str(), mapped.torrent_file_path.as_str()))
            .collect();
        let mut located = Vec::new();
        let mut missing_track_ids = Vec::new();
        for (idx, track) in ticket.tracks.iter().enumerate() {
            match mapping.get(track.catalog_track_id.as_str()) {
                Some(mapped) => located.push((idx, track.clone(), self.locate_track(job, mapped).await?)),
                None => missing_track_ids.push(track.catalog_track_id.clone()),
            }
        }
        if located.is_empty() {
            return Err(ConvertError::NothingMapped);
        }

        // Probe every source once and check durations before spending CPU on any conversion.
        let mut infos: HashMap<PathBuf, SourceInfo> = HashMap::new();
        let mut works = Vec::new();
        for (idx, track, source) in located {
            let info = match infos.get(&source.path) {
                Some(info) => info.clone(),
                None => {
                    let shown = source.shown.split('#').next().unwrap_or(&source.shown).to_string();
                    let info = self.probe_source(&source.path, &shown, &job.cancel).await?;
                    infos.insert(source.path.clone(), info.clone());
                    info
                }
            };
            let (range, source_secs) = match &source.cue_track {
                None => (None, info.duration_secs),
                Some((sheet, number)) => {
                    let (_, range) = sheet.track_range(*number, info.sample_rate_hz).map_err(|err| {
                        ConvertError::CueSheet { path: source.shown.clone(), reason: err.to_string() }
                    })?;
                    let rate = f64::from(info.sample_rate_hz);
                    let file_samples = info.sample_count.map_or(info.duration_secs * rate, |count| count as f64);
                    let end = range.end_sample.map_or(file_samples, |end| (end as f64).min(file_samples));
                    let start = range.start_sample as f64;
                    if start >= end {
                        return Err(ConvertError::CueSheet {
                            path: source.shown.clone(),
                            reason: format!("track {number} starts after the end of the image"),
                        });
                    }
                    (Some(range), (end - start) / rate)
                }
            };
            check_source_duration(&track, source_secs)?;
            works.push(TrackWork { idx, track, source, info, range, source_secs });
        }

        // Images: the front cover serves both the embedded art and the `cover_front` destination.
        let wants_front = ticket.images.iter().any(|image| image.image_type == ImageType::CoverFront);
        let front = if ticket.constraints.embed_cover || wants_front {
            self.prepare_image(job, &ImageType::CoverFront, &work_dir.join("image-front.jpg"), &works).await?
        } else {
            None
        };
        let mut images = Vec::new();
        let mut missing_image_ids = Vec::new();
        for (idx, image) in ticket.images.iter().enumerate() {
            let prepared = match &image.image_type {
                ImageType::CoverFront => front.clone(),
                other => self.prepare_image(job, other, &work_dir.join(format!("image-{idx:03}.jpg")), &works).await?,
            };
            match prepared {
                Some(path) => {
                    let size_bytes = file_size(&path).await?;
                    images.push(ConvertedFile {
                        catalog_id: image.catalog_image_id.clone(),
                        path,
                        dest_path: image.dest_path.clone(),
                        size_bytes,
                    });
                }
                None => missing_image_ids.push(image.catalog_image_id.clone()),
            }
        }
        let cover_bytes = match (&front, ticket.constraints.embed_cover) {
            (Some(path), true) => Some(Arc::new(tokio::fs::read(path).await.map_err(|source| io_error(path, source))?)),
            _ => None,
        };

        let (per_disc, discs) = track_totals(ticket);
        let total_tracks = ticket.tracks.len();
        let encodes =
            works.into_iter().map(|work| {
                let cover = cover_bytes.clone();
                let track_total = per_disc.get(&work.track.disc_number).copied().unwrap_or(1);
                async move {
                    self.encode_track(job, work, work_dir, cover, (track_total, discs), total_tracks, progress).await
                }
            });
        let mut tracks: Vec<(usize, ConvertedFile)> =
            // Every track waits on the shared semaphore, so a slot freed by one track's ffmpeg is taken by the next
            // at once while the first one is still being validated and tagged.
            stream::iter(encodes).buffer_unordered(total_tracks.max(1)).try_collect().await?;
        tracks.sort_by_key(|(idx, _)| *idx);
        Ok(ConversionOutput {
            work_dir: work_dir.to_path_buf(),
            tracks: tracks.into_iter().map(|(_, file)| file).collect(),
            images,
            missing_track_ids,
            missing_image_ids,
            conversion_duration_secs: 0.0,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn encode_track(
        &self,
        job: &ConversionJob,
        work: TrackWork,
        work_dir: &Path,
        cover: Option<Arc<Vec<u8>>>,
        (track_total, disc_total): (u32, u32),
        total_tracks: usize,
        progress: &(dyn Fn(ConversionProgress) + Send + Sync),
    ) -> Result<(usize, ConvertedFile), ConvertError> {
        let ticket = &job.ticket;
        let shown = format!("track {} ({})", work.track.catalog_track_id, work.source.shown);
        let plan = ffmpeg::plan_encoding(&ticket.constraints, &work.info);
        let output = work_dir.join(format!("track-{:04}.{}", work.idx, plan.work_extension()));
        let args = ffmpeg::transcode_args(&work.source.path, &work.info.format_name, work.range, &plan, &output);
        {
            let _slot = self.acquire_slot(&job.cancel).await?;
            progress(ConversionProgress { track_idx: work.idx, total_tracks, track_name: work.track.name.clone() });
            self.run_ffmpeg_in_slot(&args, work.source_secs, &shown, &job.cancel).await?;
        }

        let produced = self.probe_source(&output, &shown, &job.cancel).await.map_err(|err| match err {
            ConvertError::Probe { reason, .. } => ConvertError::Validation { path: shown.clone(), reason },
            other => other,
        })?;
        let encoded_size = file_size(&output).await?;
        validate_output(&plan, &produced, work.source_secs, encoded_size)
            .map_err(|reason| ConvertError::Validation { path: shown.clone(), reason })?;

        let tags = ticket.constraints.embed_metadata.then(|| tags::TrackTags {
            title: work.track.name.clone(),
            track_number: work.track.track_number,
            track_total,
            disc_number: work.track.disc_number,
            disc_total,
            album_fields: ticket
                .metadata_to_embed
                .iter()
                .filter_map(|(key, value)| tags::value_text(value).map(|text| (key.clone(), text)))
                .collect(),
        });
        if tags.is_some() || cover.is_some() {
            let path = output.clone();
            tokio::task::spawn_blocking(move || {
                let cover = cover.as_deref().map(Vec::as_slice);
                tags::write_tags(&path, tags.as_ref(), cover)?;
                tags::verify_tags(&path, tags.as_ref(), cover)
            })
            .await
            .map_err(|err| ConvertError::Io { path: shown.clone(), source: std::io::Error::other(err.to_string()) })?
            .map_err(|source| ConvertError::Tags { source })?;
        }
        let size_bytes = file_size(&output).await?;
        Ok((
            work.idx,
            ConvertedFile {
                catalog_id: work.track.catalog_track_id.clone(),
                path: output,
                dest_path: work.track.dest_path.clone(),
                size_bytes,
            },
        ))
    }

    /// Finds and converts the image of `kind` to `output`: a torrent file chosen by name, else (front cover only)
    /// art embedded in a source. A corrupt image counts as absent; only cancellation is an error.
    async fn prepare_image(
        &self,
        job: &ConversionJob,
        kind: &ImageType,
        output: &Path,
        works: &[TrackWork],
    ) -> Result<Option<PathBuf>, ConvertError> {
        if let Some(relative) = choose_image_file(&job.torrent_files, kind) {
            if let Ok(path) = sources::resolve_source_file(&job.source_root, relative) {
                match self.normalise_jpeg(&path, relative, output, &job.cancel).await {
                    Ok(()) => return Ok(Some(output.to_path_buf())),
                    Err(ConvertError::Cancelled) => return Err(ConvertError::Cancelled),
                    Err(err) => tracing::warn!(error = %err, "image unusable, looking further"),
                }
            }
        }
        if *kind != ImageType::CoverFront {
            return Ok(None);
        }
        let Some(work) = works.iter().find(|work| work.info.has_embedded_picture) else {
            return Ok(None);
        };
        let source = work.source.path.clone();
        let picture = tokio::task::spawn_blocking(move || tags::read_embedded_picture(&source)).await.ok().flatten();
        let Some((data, _)) = picture else {
            return Ok(None);
        };
        let extracted = output.with_extension("embedded");
        tokio::fs::write(&extracted, &data).await.map_err(|source| io_error(&extracted, source))?;
        let result = self.normalise_jpeg(&extracted, &work.source.shown, output, &job.cancel).await;
        let _ = tokio::fs::remove_file(&extracted).await;
        match result {
            Ok(()) => Ok(Some(output.to_path_buf())),
            Err(ConvertError::Cancelled) => Err(ConvertError::Cancelled),
            Err(err) => {
                tracing::warn!(error = %err, "embedded picture unusable");
                Ok(None)
            }
        }
    }

    /// Writes `input` as a JPEG of at most `MAX_IMAGE_SIDE_PX` per side to `output`; a JPEG already small enough
    /// is copied byte for byte.
    async fn normalise_jpeg(
        &self,
        input: &Path,
        shown: &str,
        output: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), ConvertError> {
        let json = self.run_ffprobe(input, shown, probe::IMAGE_DEMUXERS, cancel).await?;
        let info = probe::parse_image_info(&json)
            .map_err(|err| ConvertError::Probe { path: shown.to_string(), reason: err.to_string() })?;
        if info.codec == "mjpeg" && info.width <= MAX_IMAGE_SIDE_PX && info.height <= MAX_IMAGE_SIDE_PX {
            tokio::fs::copy(input, output).await.map_err(|source| io_error(output, source))?;
            return Ok(());
        }
        self.run_ffmpeg(&ffmpeg::image_to_jpeg_args(input, &info.format_name, output), 0.0, shown, cancel).await
    }
}

async fn file_size(path: &Path) -> Result<u64, ConvertError> {
    Ok(tokio::fs::metadata(path).await.map_err(|source| io_error(path, source))?.len())
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
    fn validation_checks_every_property() {
        let plan = EncodePlan {
            format: crate::models::OutputFormat::Mp3,
            bitrate_kbps: Some(320),
            sample_rate_hz: 44_100,
            channels: 2,
            resample: false,
            flac_bits: None,
        };
        let good = SourceInfo {
            format_name: "mp3".into(),
            duration_secs: 10.0,
            codec: "mp3".into(),
            sample_rate_hz: 44_100,
            channels: 2,
            bits_per_sample: None,
            sample_count: None,
            bit_rate_bps: None,
            has_embedded_picture: false,
        };
        assert!(validate_output(&plan, &good, 10.0, 400_000).is_ok());
        assert!(validate_output(&plan, &good, 10.0, 200_000).unwrap_err().contains("bitrate"));
        assert!(validate_output(&plan, &good, 12.0, 400_000).unwrap_err().contains("lasts"));
        let mono = SourceInfo { channels: 1, ..good.clone() };
        assert!(validate_output(&plan, &mono, 10.0, 400_000).unwrap_err().contains("channels"));
        let vorbis = SourceInfo { codec: "vorbis".into(), ..good };
        assert!(validate_output(&plan, &vorbis, 10.0, 400_000).unwrap_err().contains("codec"));
    }

    #[test]
    fn every_error_decides_retryability() {
        assert!(ConvertError::Io { path: "x".into(), source: std::io::Error::other("full") }.is_retryable());
        assert!(!ConvertError::DurationMismatch { catalog_track_id: "t".into(), expected_secs: 1.0, found_secs: 9.0 }
            .is_retryable());
        assert!(!ConvertError::Cancelled.is_retryable());
    }
}
