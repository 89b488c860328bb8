//! One ticket's conversion, the hot path: inspect every source once (in-process from its headers; ffprobe only
//! for CUE images and types lofty does not read), refuse what must not be encoded (durations that do not fit the
//! catalog, a lossy source asked as FLAC), then encode every track in a shared ffmpeg slot while the images are
//! prepared and finished tracks are tagged and validated beside the next encodes, outside the slots.
//!
//! Speed budget: the whole album should cost at most 10 % more than its plain ffmpeg encodes. So per track there is
//! exactly one program run (the encode); its statistics give the audio payload size, lofty writes the tags and
//! cover (FLAC: the encode itself does, as a lofty rewrite of a whole FLAC file costs too much; its cover is then
//! prepared before the encodes) and reads the file's headers back once for the checks of `validate.rs`. Only
//! outliers cost more: a Vorbis output above its target is encoded once more with hard rate management, and a
//! variable-bitrate output far below its target gets a silence scan of its source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::ffmpeg::{self, EncodePlan, SampleRange};
use super::images::PictureSource;
use super::probe::SourceInfo;
use super::validate::{self, Check, Failure, OutputFacts};
use super::{
    check_source_duration, inspect, io_error, tags, track_totals, ConversionJob, ConversionOutput, ConversionProgress,
    ConvertError, ConvertedFile, FfmpegConverter, TrackSource,
};
use crate::models::{ImageType, OutputFormat, TicketTrack};

/// Sources inspected at once (header reads and, for the few that need it, ffprobe runs).
const INSPECT_CONCURRENCY: usize = 4;
/// Finished encodes tagged and checked at once (each a blocking lofty job).
const FINISH_CONCURRENCY: usize = 4;

/// Progress callback of a conversion.
type Progress<'a> = &'a (dyn Fn(ConversionProgress) + Send + Sync);

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
    plan: EncodePlan,
    /// `track (<torrent file>)`, for messages.
    shown: String,
    output: PathBuf,
    /// What is written into the file (`None` without `embed_metadata`).
    tags: Option<tags::TrackTags>,
    /// FLAC: the Vorbis comments the encode writes itself (then lofty only reads them back).
    encode_comments: Option<Vec<(String, String)>>,
}

/// A track whose encode finished, waiting to be tagged and checked.
#[derive(Debug)]
struct Encoded {
    work: TrackWork,
    /// ffmpeg's log of the encode (level-prefixed, `info`).
    log: String,
}

/// The ticket's prepared images: placed files, ids with no source, the front cover's bytes and file when it is
/// to be embedded.
#[derive(Debug, Clone, Default)]
struct PreparedImages {
    images: Vec<ConvertedFile>,
    missing_image_ids: Vec<String>,
    cover: Option<(Arc<Vec<u8>>, PathBuf)>,
}

impl FfmpegConverter {
    pub(super) async fn convert_into(
        &self,
        job: &ConversionJob,
        work_dir: &Path,
        progress: Progress<'_>,
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

        // Inspect every distinct source once, before spending CPU on any encode.
        let mut distinct: Vec<(PathBuf, String, bool)> = Vec::new();
        for (_, _, source) in &located {
            let exact = source.cue_track.is_some();
            match distinct.iter_mut().find(|(path, _, _)| *path == source.path) {
                Some(entry) => entry.2 |= exact,
                None => {
                    let shown = source.shown.split('#').next().unwrap_or(&source.shown).to_string();
                    distinct.push((source.path.clone(), shown, exact));
                }
            }
        }
        let infos: HashMap<PathBuf, SourceInfo> = stream::iter(distinct)
            .map(|(path, shown, exact)| async move {
                let info = self.inspect_source(&path, &shown, exact, &job.cancel).await?;
                Ok::<_, ConvertError>((path, info))
            })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .try_collect()
            .await?;

        let (per_disc, discs) = track_totals(ticket);
        let mut works = Vec::new();
        let mut adjustments = Vec::new();
        for (idx, track, source) in located {
            let Some(info) = infos.get(&source.path).cloned() else {
                return Err(ConvertError::Probe { path: source.shown.clone(), reason: "not inspected".into() });
            };
            let (range, source_secs) = track_range(&source, &info)?;
            check_source_duration(&track, source_secs)?;
            if ticket.constraints.format == OutputFormat::Flac && !ffmpeg::is_lossless_codec(&info.codec) {
                return Err(ConvertError::LossySourceForLossless { path: source.shown.clone(), codec: info.codec });
            }
            let plan = ffmpeg::plan_encoding(&ticket.constraints, &info);
            let shown = format!("track {} ({})", track.catalog_track_id, source.shown);
            if let Some(cap) = plan.capped {
                adjustments.push(format!(
                    "{shown}: bitrate capped at {} kbit/s instead of {} kbit/s: the source is {} at {} kbit/s",
                    plan.bitrate_kbps.unwrap_or(cap.source_kbps),
                    cap.asked_kbps,
                    info.codec,
                    cap.source_kbps
                ));
            }
            let output = work_dir.join(format!("track-{idx:04}.{}", plan.work_extension()));
            let tags = ticket.constraints.embed_metadata.then(|| tags::TrackTags {
                title: track.name.clone(),
                track_number: track.track_number,
                track_total: per_disc.get(&track.disc_number).copied().unwrap_or(1),
                disc_number: track.disc_number,
                disc_total: discs,
                album_fields: ticket
                    .metadata_to_embed
                    .iter()
                    .filter_map(|(key, value)| tags::value_text(value).map(|text| (key.clone(), text)))
                    .chain(
                        job.replaygain
                            .get(&track.catalog_track_id)
                            .map(|gain| gain.fields(plan.format))
                            .unwrap_or_default(),
                    )
                    .collect(),
            });
            let encode_comments = match (&tags, plan.format) {
                (Some(tags), OutputFormat::Flac) => tags::flac_comments(tags),
                (None, OutputFormat::Flac) => Some(Vec::new()),
                _ => None,
            };
            works.push(TrackWork {
                idx,
                track,
                source,
                info,
                range,
                source_secs,
                plan,
                shown,
                output,
                tags,
                encode_comments,
            });
        }
        let embedded: Vec<PictureSource> = works
            .iter()
            .filter(|work| work.info.has_embedded_picture)
            .map(|work| PictureSource { path: work.source.path.clone(), shown: work.source.shown.clone() })
            .collect();

        // FLAC embeds its cover in the encode, so its images come first (a few milliseconds for a JPEG cover);
        // otherwise images are prepared beside the first encodes.
        let early_images = if works.iter().any(|work| work.encode_comments.is_some()) {
            Some(self.prepare_images(job, work_dir, &embedded).await?)
        } else {
            None
        };
        let encode_cover =
            early_images.as_ref().and_then(|prepared| prepared.cover.as_ref()).map(|(_, path)| path.clone());

        // Encodes run in the shared slots; images and the finishing of each encoded track run beside them.
        let total_tracks = ticket.tracks.len();
        let (finished_sender, finished_receiver) = futures::channel::mpsc::unbounded::<Encoded>();
        let encode_cover = encode_cover.as_deref();
        let encodes = async move {
            let count = works.len().max(1);
            stream::iter(works)
                .map(|work| {
                    let sender = finished_sender.clone();
                    async move {
                        let log = self.encode(job, &work, encode_cover, total_tracks, progress).await?;
                        // The receiver only goes away when finishing failed; that error is the one reported.
                        let _ = sender.unbounded_send(Encoded { work, log });
                        Ok::<(), ConvertError>(())
                    }
                })
                // Every track waits on the shared semaphore, so a slot freed by one encode is taken by the next at
                // once.
                .buffer_unordered(count)
                .try_collect::<Vec<()>>()
                .await?;
            drop(finished_sender);
            Ok::<(), ConvertError>(())
        };
        let finishing = async {
            let prepared = match early_images {
                Some(prepared) => prepared,
                None => self.prepare_images(job, work_dir, &embedded).await?,
            };
            let cover = prepared.cover.as_ref().map(|(bytes, _)| bytes.clone());
            let tracks: Vec<(usize, ConvertedFile)> = finished_receiver
                .map(|encoded| self.finish(job, encoded, cover.clone(), encode_cover, total_tracks, progress))
                .buffer_unordered(FINISH_CONCURRENCY)
                .try_collect()
                .await?;
            Ok::<_, ConvertError>((prepared.images, prepared.missing_image_ids, tracks))
        };
        let ((), (images, missing_image_ids, mut tracks)) = tokio::try_join!(encodes, finishing)?;
        tracks.sort_by_key(|(idx, _)| *idx);
        Ok(ConversionOutput {
            work_dir: work_dir.to_path_buf(),
            tracks: tracks.into_iter().map(|(_, file)| file).collect(),
            images,
            missing_track_ids,
            missing_image_ids,
            adjustments,
            conversion_duration_secs: 0.0,
        })
    }

    /// The ticket's images, and the front cover when it is to be embedded.
    async fn prepare_images(
        &self,
        job: &ConversionJob,
        work_dir: &Path,
        embedded: &[PictureSource],
    ) -> Result<PreparedImages, ConvertError> {
        let ticket = &job.ticket;
        // The front cover serves both the embedded art and the `cover_front` destination.
        let wants_front = ticket.images.iter().any(|image| image.image_type == ImageType::CoverFront);
        let front = if ticket.constraints.embed_cover || wants_front {
            self.prepare_image(job, &ImageType::CoverFront, &work_dir.join("image-front.jpg"), embedded).await?
        } else {
            None
        };
        let mut images = Vec::new();
        let mut missing_image_ids = Vec::new();
        for (idx, image) in ticket.images.iter().enumerate() {
            let prepared = match &image.image_type {
                ImageType::CoverFront => front.clone(),
                other => {
                    self.prepare_image(job, other, &work_dir.join(format!("image-{idx:03}.jpg")), embedded).await?
                }
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
        let cover = match (front, ticket.constraints.embed_cover) {
            (Some(path), true) => {
                let bytes = tokio::fs::read(&path).await.map_err(|source| io_error(&path, source))?;
                Some((Arc::new(bytes), path))
            }
            _ => None,
        };
        Ok(PreparedImages { images, missing_image_ids, cover })
    }

    /// Encodes one track in a slot (reporting it as started once it has one); returns ffmpeg's log.
    async fn encode(
        &self,
        job: &ConversionJob,
        work: &TrackWork,
        cover: Option<&Path>,
        total_tracks: usize,
        progress: Progress<'_>,
    ) -> Result<String, ConvertError> {
        let embedded =
            work.encode_comments.as_deref().map(|comments| ffmpeg::EmbeddedTags { comments, cover_jpeg: cover });
        let args = ffmpeg::transcode_args(
            &work.source.path,
            &work.info.format_name,
            work.range,
            &work.plan,
            &work.output,
            embedded,
        );
        let _slot = self.acquire_slot(&job.cancel).await?;
        progress(ConversionProgress { track_idx: work.idx, total_tracks, track_name: work.track.name.clone() });
        let output = self.run_ffmpeg_in_slot(&args, work.source_secs, &work.shown, &job.cancel).await?;
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Tags, reads back and checks one encoded track; encodes it once more when a Vorbis bitrate estimate
    /// overshot, and scans the source for silence when a variable-bitrate output is far below its target.
    async fn finish(
        &self,
        job: &ConversionJob,
        encoded: Encoded,
        cover: Option<Arc<Vec<u8>>>,
        encode_cover: Option<&Path>,
        total_tracks: usize,
        progress: Progress<'_>,
    ) -> Result<(usize, ConvertedFile), ConvertError> {
        let Encoded { mut work, mut log } = encoded;
        let facts = loop {
            self.measure_replaygain(job, &mut work).await?;
            let facts = self.tag_and_read_back(&work, &log, cover.clone()).await?;
            match validate::check_output(&work.plan, &facts, work.source_secs) {
                Ok(()) => break facts,
                Err(failure) if failure.check == Check::BitrateCeiling && work.plan.can_limit_rate_harder() => {
                    tracing::info!(track = %work.shown, detail = %failure.detail, "encoding again with hard rate management");
                    work.plan.hard_rate_limit = true;
                    log = self.encode(job, &work, encode_cover, total_tracks, progress).await?;
                }
                Err(failure) => return Err(self.judge_failure(&work, &log, failure, Some(facts.duration_secs))),
            }
        };
        if validate::needs_silence_scan(&work.plan, &facts) {
            let audible = self.audible_secs(job, &work).await?;
            validate::check_vbr_floor(&work.plan, &facts, audible)
                .map_err(|failure| self.judge_failure(&work, &log, failure, None))?;
        }
        let size_bytes = file_size(&work.output).await?;
        Ok((
            work.idx,
            ConvertedFile {
                catalog_id: work.track.catalog_track_id.clone(),
                path: work.output.clone(),
                dest_path: work.track.dest_path.clone(),
                size_bytes,
            },
        ))
    }

    /// Writes the tags and cover with lofty (unless the encode did), then reads the file's headers back once: the
    /// tags are verified and the audio properties returned with the payload size from ffmpeg's statistics.
    async fn tag_and_read_back(
        &self,
        work: &TrackWork,
        log: &str,
        cover: Option<Arc<Vec<u8>>>,
    ) -> Result<OutputFacts, ConvertError> {
        let track_tags = work.tags.clone();
        let tagged_by_encode = work.encode_comments.is_some();
        let audio_bytes = validate::audio_bytes_from_stats(log).ok_or_else(|| {
            self.judge_failure(
                work,
                log,
                Failure { check: Check::EncoderReport, detail: "no audio size in ffmpeg's final statistics".into() },
                None,
            )
        })?;
        let path = work.output.clone();
        let read_back = tokio::task::spawn_blocking(move || {
            let cover = cover.as_deref().map(Vec::as_slice);
            if !tagged_by_encode && (track_tags.is_some() || cover.is_some()) {
                tags::write_tags(&path, track_tags.as_ref(), cover).map_err(Err)?;
            }
            let view = inspect::read_headers(&path).map_err(Ok)?;
            tags::verify_tags(&view.tagged, &path, track_tags.as_ref(), cover).map_err(Err)?;
            Ok(OutputFacts {
                codec: view.codec.to_string(),
                sample_rate_hz: view.sample_rate_hz(),
                channels: view.channels(),
                duration_secs: view.duration_secs(),
                audio_bytes,
            })
        })
        .await
        .map_err(|err| ConvertError::Io { path: work.shown.clone(), source: std::io::Error::other(err.to_string()) })?;
        read_back.map_err(|err: Result<String, tags::TagWriteError>| match err {
            Ok(reason) => self.judge_failure(
                work,
                log,
                Failure { check: Check::Codec, detail: format!("the output's headers do not read: {reason}") },
                None,
            ),
            Err(source) => ConvertError::Tags { source },
        })
    }

    /// Seconds of the track's source part that are not silence (a decode-only ffmpeg run, in a slot).
    /// A lossy encoder changes the loudness a little (a low-pass removes energy the K-weighting counts): for lossy
    /// outputs the ReplayGain track values are measured on the encoded file itself (ffmpeg `ebur128`, true peak)
    /// and replace the source's in the track's tags; album values stay those of the sources. FLAC keeps the
    /// source's values (same samples) and is tagged in the encode.
    async fn measure_replaygain(&self, job: &ConversionJob, work: &mut TrackWork) -> Result<(), ConvertError> {
        let Some(source_gain) = job.replaygain.get(&work.track.catalog_track_id).copied() else { return Ok(()) };
        if work.plan.format == OutputFormat::Flac || work.tags.is_none() {
            return Ok(());
        }
        let args = ffmpeg::loudness_scan_args(&work.output);
        let _slot = self.acquire_slot(&job.cancel).await?;
        let output = self.run_ffmpeg_in_slot(&args, work.source_secs, &work.shown, &job.cancel).await?;
        let log = String::from_utf8_lossy(&output.stderr);
        let Some((lufs, peak)) = ffmpeg::loudness_from_scan(&log) else {
            tracing::warn!(track = %work.shown, "no loudness reading of the output: the source's ReplayGain values are kept");
            return Ok(());
        };
        let measured = tags::ReplayGain { track_lufs: lufs, track_peak_dbtp: peak, ..source_gain };
        if let Some(track_tags) = work.tags.as_mut() {
            track_tags.album_fields.retain(|(key, _)| !tags::is_replaygain_key(key));
            track_tags.album_fields.extend(measured.fields(work.plan.format));
        }
        Ok(())
    }

    async fn audible_secs(&self, job: &ConversionJob, work: &TrackWork) -> Result<f64, ConvertError> {
        let args = ffmpeg::silence_scan_args(&work.source.path, &work.info.format_name, work.range, work.source_secs);
        let _slot = self.acquire_slot(&job.cancel).await?;
        let output = self.run_ffmpeg_in_slot(&args, work.source_secs, &work.shown, &job.cancel).await?;
        let log = String::from_utf8_lossy(&output.stderr);
        Ok((work.source_secs - validate::silent_secs_from_scan(&log, work.source_secs)).max(0.0))
    }

    /// Turns a failed check into the error the ticket gets. An output shorter than its source is a source that
    /// decodes to less than its header promises (damaged or incomplete: ffmpeg writes all it decodes), the album's
    /// problem; anything else is a converter or resource fault (retried).
    fn judge_failure(&self, work: &TrackWork, log: &str, failure: Failure, decoded_secs: Option<f64>) -> ConvertError {
        match decoded_secs {
            Some(decoded_secs) if failure.check == Check::Duration && decoded_secs < work.source_secs => {
                let errors = validate::error_lines(log);
                let detail = if errors.is_empty() {
                    failure.detail
                } else {
                    format!("{}; ffmpeg: {}", failure.detail, last_lines(&errors, 3))
                };
                return ConvertError::DamagedSource {
                    catalog_track_id: work.track.catalog_track_id.clone(),
                    path: work.source.shown.clone(),
                    expected_secs: work.track.duration_secs,
                    decoded_secs,
                    detail,
                };
            }
            _ => {}
        }
        ConvertError::Validation { path: work.shown.clone(), check: failure.check, detail: failure.detail }
    }
}

/// The last `count` of `lines`, joined.
fn last_lines(lines: &[&str], count: usize) -> String {
    lines[lines.len().saturating_sub(count)..].join(" | ")
}

/// The sample range and duration of the part of `source` that becomes the track.
fn track_range(source: &TrackSource, info: &SourceInfo) -> Result<(Option<SampleRange>, f64), ConvertError> {
    let Some((sheet, number)) = &source.cue_track else {
        return Ok((None, info.duration_secs));
    };
    let (_, range) = sheet
        .track_range(*number, info.sample_rate_hz)
        .map_err(|err| ConvertError::CueSheet { path: source.shown.clone(), reason: err.to_string() })?;
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
    Ok((Some(range), (end - start) / rate))
}

async fn file_size(path: &Path) -> Result<u64, ConvertError> {
    Ok(tokio::fs::metadata(path).await.map_err(|source| io_error(path, source))?.len())
}
