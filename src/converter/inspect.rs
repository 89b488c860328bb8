//! In-process reading of audio headers with lofty: a source's properties without starting ffprobe, and a
//! converted file's codec, rate, channels and duration (with its tags, for the read-back) without probing it
//! again. One ffprobe run costs about 65 ms of CPU, a fifth of encoding a minute of FLAC: per track that alone
//! would break the converter's speed budget, so ffprobe is kept for what this module does not know (CUE images,
//! whose exact sample count matters, images, and container types lofty does not read).
//!
//! Reads headers only, detects the type from the content (never from the hostile name), never writes, and owns
//! no policy about what is acceptable. Must never be trusted to say a file decodes: only ffmpeg says that.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use lofty::ape::ApeFile;
use lofty::config::ParseOptions;
use lofty::file::{AudioFile, FileType, TaggedFile, TaggedFileExt};
use lofty::flac::FlacFile;
use lofty::iff::aiff::{AiffCompressionType, AiffFile};
use lofty::iff::wav::{WavFile, WavFormat};
use lofty::mp4::{Mp4Codec, Mp4File};
use lofty::mpeg::{Layer, MpegFile};
use lofty::ogg::{OpusFile, VorbisFile};
use lofty::probe::Probe;
use lofty::wavpack::WavPackFile;

use super::probe::SourceInfo;

/// A file read with lofty: its tags and generic properties, plus what the generic view loses.
pub struct HeaderView {
    /// The file as lofty sees it (tags, pictures, generic properties).
    pub tagged: TaggedFile,
    /// The codec, named as ffprobe names it (`flac`, `mp3`, `aac`, `alac`, `vorbis`, `opus`, `pcm_s16le`, ...).
    pub codec: &'static str,
    /// The ffmpeg demuxer that reads this container (`flac`, `mp3`, `mov`, `ogg`, `wav`, `aiff`, `ape`, `wv`).
    pub demuxer: &'static str,
}

impl std::fmt::Debug for HeaderView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderView").field("codec", &self.codec).field("demuxer", &self.demuxer).finish_non_exhaustive()
    }
}

impl HeaderView {
    /// Sample rate in Hz (0 when the header has none).
    pub fn sample_rate_hz(&self) -> u32 {
        self.tagged.properties().sample_rate().unwrap_or(0)
    }

    /// Channel count (0 when the header has none).
    pub fn channels(&self) -> u32 {
        u32::from(self.tagged.properties().channels().unwrap_or(0))
    }

    /// Duration in seconds (millisecond precision).
    pub fn duration_secs(&self) -> f64 {
        self.tagged.properties().duration().as_secs_f64()
    }
}

/// Reads the headers (and tags, with pictures) of `path`. `Err` says why lofty cannot (an unknown or damaged
/// container, or a codec inside it this module does not name).
pub fn read_headers(path: &Path) -> Result<HeaderView, String> {
    let options = ParseOptions::new().read_properties(true).read_tags(true).read_cover_art(true);
    let file = File::open(path).map_err(|err| err.to_string())?;
    let probe = Probe::new(BufReader::new(file)).options(options).guess_file_type().map_err(|err| err.to_string())?;
    let file_type = probe.file_type().ok_or_else(|| "unknown container".to_string())?;
    let mut reader = probe.into_inner();
    reader.seek(SeekFrom::Start(0)).map_err(|err| err.to_string())?;
    let reader = &mut reader;
    let lofty = |err: lofty::error::LoftyError| err.to_string();
    let view = |tagged: TaggedFile, codec: Option<&'static str>, demuxer: &'static str| match codec {
        Some(codec) => Ok(HeaderView { tagged, codec, demuxer }),
        None => Err(format!("{file_type:?} with a codec this reader does not name")),
    };
    match file_type {
        FileType::Flac => view(FlacFile::read_from(reader, options).map_err(lofty)?.into(), Some("flac"), "flac"),
        FileType::Mpeg => {
            let file = MpegFile::read_from(reader, options).map_err(lofty)?;
            let codec = match file.properties().layer() {
                Layer::Layer3 => "mp3",
                Layer::Layer2 => "mp2",
                Layer::Layer1 => "mp1",
            };
            view(file.into(), Some(codec), "mp3")
        }
        FileType::Mp4 => {
            let file = Mp4File::read_from(reader, options).map_err(lofty)?;
            let codec = match file.properties().codec() {
                Mp4Codec::AAC => Some("aac"),
                Mp4Codec::ALAC => Some("alac"),
                Mp4Codec::MP3 => Some("mp3"),
                Mp4Codec::FLAC => Some("flac"),
                _ => None,
            };
            view(file.into(), codec, "mov")
        }
        FileType::Vorbis => view(VorbisFile::read_from(reader, options).map_err(lofty)?.into(), Some("vorbis"), "ogg"),
        FileType::Opus => view(OpusFile::read_from(reader, options).map_err(lofty)?.into(), Some("opus"), "ogg"),
        FileType::Wav => {
            let file = WavFile::read_from(reader, options).map_err(lofty)?;
            let properties = file.properties();
            let codec = match (properties.format(), properties.bit_depth()) {
                (WavFormat::PCM, 8) => Some("pcm_u8"),
                (WavFormat::PCM, 16) => Some("pcm_s16le"),
                (WavFormat::PCM, 24) => Some("pcm_s24le"),
                (WavFormat::PCM, 32) => Some("pcm_s32le"),
                (WavFormat::IEEE_FLOAT, 32) => Some("pcm_f32le"),
                (WavFormat::IEEE_FLOAT, 64) => Some("pcm_f64le"),
                _ => None,
            };
            view(file.into(), codec, "wav")
        }
        FileType::Aiff => {
            let file = AiffFile::read_from(reader, options).map_err(lofty)?;
            let properties = file.properties();
            let uncompressed = matches!(properties.compression_type(), None | Some(AiffCompressionType::None));
            let codec = match (uncompressed, properties.sample_size()) {
                (true, 8) => Some("pcm_s8"),
                (true, 16) => Some("pcm_s16be"),
                (true, 24) => Some("pcm_s24be"),
                (true, 32) => Some("pcm_s32be"),
                _ => None,
            };
            view(file.into(), codec, "aiff")
        }
        FileType::Ape => view(ApeFile::read_from(reader, options).map_err(lofty)?.into(), Some("ape"), "ape"),
        FileType::WavPack => {
            let file = WavPackFile::read_from(reader, options).map_err(lofty)?;
            // Hybrid (lossy) WavPack is as lossy as any other lossy codec.
            let codec = if file.properties().is_lossless() { "wavpack" } else { "wavpack_lossy" };
            view(file.into(), Some(codec), "wv")
        }
        other => Err(format!("{other:?} is left to ffprobe")),
    }
}

/// A source's properties from its headers, or `None` when ffprobe must look (unknown container or codec, a header
/// without rate, channels or duration). `sample_count` stays `None`: exact sample positions (CUE images) need
/// ffprobe.
pub fn read_source_info(path: &Path) -> Option<SourceInfo> {
    let view = read_headers(path).ok()?;
    let properties = view.tagged.properties();
    let sample_rate_hz = properties.sample_rate().filter(|rate| *rate > 0)?;
    let channels = u32::from(properties.channels().filter(|channels| *channels > 0)?);
    let duration_secs = properties.duration().as_secs_f64();
    if duration_secs <= 0.0 {
        return None;
    }
    let bits_per_sample = match view.codec {
        "flac" | "alac" | "ape" | "wavpack" | "wavpack_lossy" => properties.bit_depth().map(u32::from),
        codec if codec.starts_with("pcm_") => properties.bit_depth().map(u32::from),
        _ => None,
    };
    let has_embedded_picture = view.tagged.tags().iter().any(|tag| !tag.pictures().is_empty());
    Some(SourceInfo {
        format_name: view.demuxer.to_string(),
        duration_secs,
        codec: view.codec.to_string(),
        sample_rate_hz,
        channels,
        bits_per_sample,
        sample_count: None,
        bit_rate_bps: properties.audio_bitrate().filter(|kbps| *kbps > 0).map(|kbps| u64::from(kbps) * 1000),
        has_embedded_picture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_unknown_files_are_left_to_ffprobe() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.flac");
        std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
        assert!(read_source_info(&garbage).is_none(), "the name says FLAC, the content does not");
        let script = dir.path().join("script.flac");
        std::fs::write(&script, "ffconcat version 1.0\nfile /etc/hostname\n").unwrap();
        assert!(read_source_info(&script).is_none());
        assert!(read_source_info(&dir.path().join("missing.flac")).is_none());
    }
}
