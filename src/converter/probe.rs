//! ffprobe: the argument vector that reads a file safely (only the `file` protocol, only audio or image demuxers,
//! a `file:` URL so a name can never be an option or a protocol) and the parsing of its JSON into `SourceInfo` /
//! `ImageInfo`. Owns no policy about what is acceptable; must never trust a number it did not parse and check.

use std::ffi::OsString;
use std::path::Path;

use serde::Deserialize;

/// Demuxers an audio source may be read with. Playlist-like demuxers (concat, hls, ...) are absent on purpose: a
/// hostile file could otherwise make ffmpeg read any local file.
pub const AUDIO_DEMUXERS: &str = "flac,mp3,mov,ogg,wav,w64,ape,wv,aiff,matroska,webm,aac,ac3,dts,tta,asf,caf,dsf";
/// Demuxers an image may be read with. `image2` (chosen for `.jpg` names) is always paired with
/// `-pattern_type none` (see `IMAGE_INPUT_OPTIONS`) so a `%d` in a name is not a sequence pattern.
pub const IMAGE_DEMUXERS: &str = "image2,jpeg_pipe,png_pipe,bmp_pipe,webp_pipe,tiff_pipe,gif,gif_pipe";
/// Input options for every image read.
pub const IMAGE_INPUT_OPTIONS: [&str; 2] = ["-pattern_type", "none"];

/// What ffprobe says about an audio file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// The demuxer ffprobe chose (first name of `format_name`); passed to ffmpeg as `-f` so both agree.
    pub format_name: String,
    /// Duration of the first audio stream (or of the container when the stream has none), seconds.
    pub duration_secs: f64,
    pub codec: String,
    pub sample_rate_hz: u32,
    pub channels: u32,
    /// Bits per sample of the decoded samples when the codec says (lossless sources), else `None`.
    pub bits_per_sample: Option<u32>,
    /// Exact number of samples when the stream's time base is 1/sample rate (FLAC, WAV, ...).
    pub sample_count: Option<u64>,
    /// Audio bitrate, bit/s: the stream's when the container states it, else the container's (bytes over duration,
    /// so an embedded cover inflates it). Caps the target of a lossy source.
    pub bit_rate_bps: Option<u64>,
    /// Whether an attached picture (embedded cover) is present.
    pub has_embedded_picture: bool,
}

/// What ffprobe says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The demuxer ffprobe chose (`image2`, `png_pipe`, ...); passed to ffmpeg as `-f`.
    pub format_name: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

/// Why ffprobe's answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeParseError {
    #[error("ffprobe printed invalid JSON: {0}")]
    Json(String),
    #[error("no audio stream")]
    NoAudioStream,
    #[error("no image stream")]
    NoImageStream,
    #[error("missing or invalid {0}")]
    Missing(&'static str),
}

/// The `file:` URL of an absolute path: ffmpeg then treats the whole name as a file, whatever it contains.
pub fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// ffprobe arguments that describe `path` (absolute) as JSON, reading it with one of `demuxers` only.
pub fn probe_args(path: &Path, demuxers: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        demuxers,
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-i",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if demuxers == IMAGE_DEMUXERS {
        let at = args.len() - 1;
        for (offset, option) in IMAGE_INPUT_OPTIONS.iter().enumerate() {
            args.insert(at + offset, OsString::from(option));
        }
    }
    args.push(file_url(path));
    args
}

#[derive(Debug, Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Debug, Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    codec_name: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    bits_per_sample: Option<u32>,
    bits_per_raw_sample: Option<String>,
    time_base: Option<String>,
    duration_ts: Option<u64>,
    duration: Option<String>,
    bit_rate: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
}

#[derive(Debug, Deserialize)]
struct FormatJson {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
}

fn parse_json(json: &[u8]) -> Result<ProbeJson, ProbeParseError> {
    serde_json::from_slice(json).map_err(|err| ProbeParseError::Json(err.to_string()))
}

fn parse_positive_f64(text: Option<&str>) -> Option<f64> {
    let value: f64 = text?.trim().parse().ok()?;
    (value.is_finite() && value > 0.0).then_some(value)
}

/// Parses ffprobe's JSON for an audio file.
pub fn parse_source_info(json: &[u8]) -> Result<SourceInfo, ProbeParseError> {
    let probe = parse_json(json)?;
    let audio = probe
        .streams
        .iter()
        .find(|stream| stream.codec_type.as_deref() == Some("audio"))
        .ok_or(ProbeParseError::NoAudioStream)?;
    let format = probe.format.as_ref();
    let format_name = format
        .and_then(|format| format.format_name.as_deref())
        .and_then(|name| name.split(',').next())
        .filter(|name| !name.is_empty())
        .ok_or(ProbeParseError::Missing("format_name"))?
        .to_string();
    let sample_rate_hz: u32 = audio
        .sample_rate
        .as_deref()
        .and_then(|rate| rate.trim().parse().ok())
        .filter(|rate| *rate > 0)
        .ok_or(ProbeParseError::Missing("sample_rate"))?;
    let channels = audio.channels.filter(|channels| *channels > 0).ok_or(ProbeParseError::Missing("channels"))?;
    let duration_secs = parse_positive_f64(audio.duration.as_deref())
        .or_else(|| parse_positive_f64(format.and_then(|format| format.duration.as_deref())))
        .ok_or(ProbeParseError::Missing("duration"))?;
    let bits_per_sample = audio
        .bits_per_raw_sample
        .as_deref()
        .and_then(|bits| bits.trim().parse::<u32>().ok())
        .or(audio.bits_per_sample)
        .filter(|bits| *bits > 0);
    let sample_count = match (&audio.time_base, audio.duration_ts) {
        (Some(time_base), Some(ts)) if *time_base == format!("1/{sample_rate_hz}") => Some(ts),
        _ => None,
    };
    let parse_rate = |rate: Option<&str>| rate.and_then(|rate| rate.trim().parse::<u64>().ok()).filter(|bps| *bps > 0);
    let bit_rate_bps = parse_rate(audio.bit_rate.as_deref())
        .or_else(|| parse_rate(format.and_then(|format| format.bit_rate.as_deref())));
    let has_embedded_picture = probe.streams.iter().any(|stream| {
        stream.codec_type.as_deref() == Some("video") && stream.disposition.get("attached_pic") == Some(&1)
    });
    Ok(SourceInfo {
        format_name,
        duration_secs,
        codec: audio.codec_name.clone().unwrap_or_default(),
        sample_rate_hz,
        channels,
        bits_per_sample,
        sample_count,
        bit_rate_bps,
        has_embedded_picture,
    })
}

/// Parses ffprobe's JSON for an image file.
pub fn parse_image_info(json: &[u8]) -> Result<ImageInfo, ProbeParseError> {
    let probe = parse_json(json)?;
    let video = probe
        .streams
        .iter()
        .find(|stream| stream.codec_type.as_deref() == Some("video"))
        .ok_or(ProbeParseError::NoImageStream)?;
    let format_name = probe
        .format
        .as_ref()
        .and_then(|format| format.format_name.as_deref())
        .and_then(|name| name.split(',').next())
        .filter(|name| !name.is_empty())
        .ok_or(ProbeParseError::Missing("format_name"))?
        .to_string();
    Ok(ImageInfo {
        format_name,
        codec: video.codec_name.clone().unwrap_or_default(),
        width: video.width.filter(|width| *width > 0).ok_or(ProbeParseError::Missing("width"))?,
        height: video.height.filter(|height| *height > 0).ok_or(ProbeParseError::Missing("height"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flac_with_cover() {
        let json = br#"{"streams":[
            {"codec_type":"audio","codec_name":"flac","sample_rate":"96000","channels":2,"bits_per_sample":0,
             "bits_per_raw_sample":"24","time_base":"1/96000","duration_ts":192000,"duration":"2.000000"},
            {"codec_type":"video","codec_name":"mjpeg","width":10,"height":10,"disposition":{"attached_pic":1}}],
            "format":{"format_name":"flac","duration":"2.0","bit_rate":"1234"}}"#;
        let info = parse_source_info(json).unwrap();
        assert_eq!(info.format_name, "flac");
        assert_eq!(info.sample_rate_hz, 96_000);
        assert_eq!(info.bits_per_sample, Some(24));
        assert_eq!(info.sample_count, Some(192_000));
        assert!(info.has_embedded_picture);
        assert_eq!(info.bit_rate_bps, Some(1234));
    }

    #[test]
    fn rejects_garbage_and_missing_audio() {
        assert!(matches!(parse_source_info(b"not json"), Err(ProbeParseError::Json(_))));
        let json = br#"{"streams":[{"codec_type":"video","width":1,"height":1}],"format":{"format_name":"png_pipe"}}"#;
        assert_eq!(parse_source_info(json), Err(ProbeParseError::NoAudioStream));
        let json = br#"{"streams":[{"codec_type":"audio","sample_rate":"0","channels":2,"duration":"1"}],
            "format":{"format_name":"wav"}}"#;
        assert_eq!(parse_source_info(json), Err(ProbeParseError::Missing("sample_rate")));
        let image = parse_image_info(json);
        assert_eq!(image, Err(ProbeParseError::NoImageStream));
    }

    #[test]
    fn names_become_file_urls_not_options() {
        let args = probe_args(Path::new("/src/-i evil.flac"), AUDIO_DEMUXERS);
        assert_eq!(args.last().unwrap(), "file:/src/-i evil.flac");
    }
}
