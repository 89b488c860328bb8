//! The ticket's images: the best image file of the torrent for each requested kind (or, for the front cover, art
//! embedded in a source), written as a JPEG of at most `MAX_IMAGE_SIDE_PX` per side into the work dir. A JPEG
//! already small enough is copied byte for byte after an in-process look at its header (no ffprobe run); anything
//! else is probed and converted by ffmpeg. A corrupt image counts as absent; only cancellation is an error.

use std::path::{Path, PathBuf};

use lofty::picture::PictureInformation;
use tokio_util::sync::CancellationToken;

use super::ffmpeg::{self, MAX_IMAGE_SIDE_PX};
use super::{io_error, probe, sources, tags, ConversionJob, ConvertError, FfmpegConverter};
use crate::models::ImageType;
use crate::placer::images::choose_image_file;

/// Images larger than this are not read into memory for the header look (ffprobe decides).
const MAX_JPEG_INSPECT_BYTES: u64 = 32 * 1024 * 1024;

/// A source whose embedded picture may serve as the front cover.
#[derive(Debug, Clone)]
pub(super) struct PictureSource {
    pub path: PathBuf,
    pub shown: String,
}

impl FfmpegConverter {
    /// Finds and converts the image of `kind` to `output`: a torrent file chosen by name, else (front cover only)
    /// art embedded in one of `embedded` (sources whose headers showed a picture).
    pub(super) async fn prepare_image(
        &self,
        job: &ConversionJob,
        kind: &ImageType,
        output: &Path,
        embedded: &[PictureSource],
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
        let Some(source) = embedded.first() else {
            return Ok(None);
        };
        let path = source.path.clone();
        let picture = tokio::task::spawn_blocking(move || tags::read_embedded_picture(&path)).await.ok().flatten();
        let Some((data, _)) = picture else {
            return Ok(None);
        };
        let extracted = output.with_extension("embedded");
        tokio::fs::write(&extracted, &data).await.map_err(|source| io_error(&extracted, source))?;
        let result = self.normalise_jpeg(&extracted, &source.shown, output, &job.cancel).await;
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
        if small_jpeg(input).await {
            tokio::fs::copy(input, output).await.map_err(|source| io_error(output, source))?;
            return Ok(());
        }
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

/// Whether `path` is a JPEG whose header (read in-process) says it fits `MAX_IMAGE_SIDE_PX`. Anything unusual
/// (not a JPEG, a header lofty cannot read, a huge file) answers `false` and goes through ffprobe. The header parser
/// runs on a blocking thread, where a panic on a hostile file (lofty subtracts section lengths unchecked) only
/// means `false`.
async fn small_jpeg(path: &Path) -> bool {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > MAX_JPEG_INSPECT_BYTES {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let info = PictureInformation::from_jpeg(&bytes).ok()?;
        Some((1..=MAX_IMAGE_SIDE_PX).contains(&info.width) && (1..=MAX_IMAGE_SIDE_PX).contains(&info.height))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}
