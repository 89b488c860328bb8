//! ffmpeg argument vectors and the encoding rules behind them: which codec, bitrate, sample rate and channel count a
//! ticket's constraints give for a given source. Pure; spawns nothing (that is `process.rs`). Must never put an
//! untrusted name anywhere but behind a `file:` URL, and never write anywhere but the explicit output path.
//!
//! Rules (the contract's `constraints`, applied per source):
//! - **Sample rate**: the ticket's `sample_rate_hz` wins when it is at most the source's rate; a higher request is
//!   ignored (no silent upsampling) and the source rate is kept. Then the codec's limits apply: Opus always encodes
//!   at 48 kHz (libopus works at 48 kHz internally; decoders output 48 kHz), MP3 and AAC use the largest rate of
//!   their standard set that is not above the wanted one, and Vorbis stays at or below 48 kHz (libvorbis refuses
//!   to set up a bitrate-managed encoder at 88.2/96 kHz): 88.2 and 176.4 kHz become 44.1 kHz, other rates above
//!   48 kHz become 48 kHz. Resampling uses soxr (precision 28, triangular dither).
//! - **Bitrate** (`bitrate_kbps`, total for the stream; ignored for FLAC), clamped per codec: Vorbis to what
//!   libvorbis can set up at the output's rate and channel count (32 kbit/s per channel at least; at most 240 per
//!   channel at 44.1/48 kHz - 500 for stereo -, 190 at 32 kHz, 90 at 22.05/24 kHz, 100 at 16 kHz, 50 at 11 kHz,
//!   42 at 8 kHz, measured with libvorbis 1.3.7: above it the encoder refuses to start), Opus 6..=min(510, 256 x
//!   channels), MP3 rounded down to a legal Layer III CBR
//!   bitrate (MPEG-1 32..=320 at 32 kHz and above; MPEG-2 8..=160 below), AAC 32..=min(512, 256 x channels).
//!   Defaults without a request: Vorbis 256, Opus 160, MP3 320, AAC 256.
//! - **Channels**: kept (up to 8) for Vorbis, Opus, AAC and FLAC; MP3 is at most stereo, so multichannel sources
//!   are downmixed to 2 channels for it; sources with more than 8 channels are downmixed to 8 (5.1/7.1 stay as they
//!   are).
//! - **Lossy sources** (MP3, AAC, Vorbis, Opus, ...): a lossy target never gets more bits than the source had
//!   (no invented bits): the bitrate is capped at the source's audio bitrate (+3 % for measurement slack, then the
//!   codec rules above), and the plan records the cap. A lossy source is never made into FLAC: the converter
//!   refuses that before encoding (see `is_lossless_codec`).
//! - **FLAC** keeps the source's bit depth class: 16-bit (or lossy) sources give 16-bit FLAC, deeper ones 24-bit.
//! - Source tags, chapters, pictures and every non-audio stream are dropped; tags are written later with lofty.
//! - ffmpeg decodes with one thread (`-threads 1`): the converter runs `max_parallel_conversions` encodes side by
//!   side, so a second decoding thread per encode only competes for the same cores.
//! - The encode logs at `info` with level prefixes: the converter reads the audio payload size from ffmpeg's final
//!   statistics line (`audio:123kB`) instead of probing the output again.

use std::ffi::OsString;
use std::path::Path;

use super::probe::{file_url, SourceInfo, AUDIO_DEMUXERS, IMAGE_DEMUXERS, IMAGE_INPUT_OPTIONS};
use crate::models::{Constraints, OutputFormat};

/// Longest side, in pixels, of a placed or embedded image.
pub const MAX_IMAGE_SIDE_PX: u32 = 3000;

/// MPEG-1 Layer III bitrates (sample rates 32, 44.1, 48 kHz), kbit/s.
const MP3_MPEG1_KBPS: [u32; 14] = [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
/// MPEG-2/2.5 Layer III bitrates (sample rates below 32 kHz), kbit/s.
const MP3_MPEG2_KBPS: [u32; 14] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
const MP3_RATES_HZ: [u32; 9] = [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];
const AAC_RATES_HZ: [u32; 12] =
    [8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 64_000, 88_200, 96_000];
const OPUS_RATE_HZ: u32 = 48_000;
const VORBIS_MAX_RATE_HZ: u32 = 48_000;
const MAX_CHANNELS: u32 = 8;
/// Log level of encodes and scans: `info` (for the final statistics and filter reports), every line prefixed with
/// its level so errors stay recognisable.
const ENCODE_LOG_LEVEL: &str = "level+info";
/// Below this level (dBFS) audio counts as silence when a low bitrate is explained.
pub const SILENCE_THRESHOLD_DB: i32 = -60;
/// Slack on a lossy source's measured bitrate before it caps the target, in percent (a 192 kbit/s MP3 measures
/// 191-193).
const SOURCE_BITRATE_SLACK_PERCENT: u64 = 103;

/// Decoded codecs that are lossless (as ffprobe names them; `pcm_*` are all lossless). Everything else is lossy.
const LOSSLESS_CODECS: [&str; 9] = ["flac", "alac", "ape", "wavpack", "tta", "mlp", "truehd", "shorten", "tak"];

/// Whether a source codec (ffprobe's name) is lossless: PCM, FLAC, ALAC, APE, WavPack, TTA, ... or DSD.
pub fn is_lossless_codec(codec: &str) -> bool {
    codec.starts_with("pcm_") || codec.starts_with("dsd_") || LOSSLESS_CODECS.contains(&codec)
}

/// A target bitrate lowered to what a lossy source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitrateCap {
    /// What the ticket asked (or the codec default), kbit/s.
    pub asked_kbps: u32,
    /// The source's audio bitrate, kbit/s.
    pub source_kbps: u32,
}

/// How one track is encoded: the result of the rules above for one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodePlan {
    pub format: OutputFormat,
    /// Target bitrate in kbit/s for lossy formats, `None` for FLAC.
    pub bitrate_kbps: Option<u32>,
    pub sample_rate_hz: u32,
    pub channels: u32,
    /// Whether the source rate differs from the output rate (soxr runs).
    pub resample: bool,
    /// FLAC only: 16 or 24.
    pub flac_bits: Option<u32>,
    /// Set when the bitrate was lowered to a lossy source's (recorded in the ticket's history).
    pub capped: Option<BitrateCap>,
    /// Vorbis only: hard rate management (`-maxrate`), used for a second encode when libvorbis' bitrate estimate
    /// overshot the target (white-noise-like material); it costs about four times the CPU, so never by default.
    pub hard_rate_limit: bool,
}

impl EncodePlan {
    /// The codec name ffprobe reports for the output.
    pub fn probe_codec_name(&self) -> &'static str {
        match self.format {
            OutputFormat::OggVorbis => "vorbis",
            OutputFormat::Opus => "opus",
            OutputFormat::Mp3 => "mp3",
            OutputFormat::Flac => "flac",
            OutputFormat::Aac => "aac",
        }
    }

    /// Whether the codec holds a constant bitrate (MP3 here: LAME in CBR mode) rather than spending bits as the
    /// material needs (Vorbis, Opus, AAC), which decides how the output's bitrate is checked.
    pub fn is_constant_bitrate(&self) -> bool {
        match self.format {
            OutputFormat::Mp3 => true,
            OutputFormat::OggVorbis | OutputFormat::Opus | OutputFormat::Aac | OutputFormat::Flac => false,
        }
    }

    /// Whether a second encode with [`EncodePlan::hard_rate_limit`] can bring an overshooting bitrate down.
    pub fn can_limit_rate_harder(&self) -> bool {
        self.format == OutputFormat::OggVorbis && !self.hard_rate_limit
    }

    /// The file extension of the work file (the destination's own extension is the ticket's business).
    pub fn work_extension(&self) -> &'static str {
        match self.format {
            OutputFormat::OggVorbis => "ogg",
            OutputFormat::Opus => "opus",
            OutputFormat::Mp3 => "mp3",
            OutputFormat::Flac => "flac",
            OutputFormat::Aac => "m4a",
        }
    }
}

/// Applies the module's rules to `constraints` for `source`.
pub fn plan_encoding(constraints: &Constraints, source: &SourceInfo) -> EncodePlan {
    let format = constraints.format;
    let wanted_rate = match constraints.sample_rate_hz {
        Some(rate) if rate <= source.sample_rate_hz => rate,
        _ => source.sample_rate_hz,
    };
    let sample_rate_hz = match format {
        OutputFormat::Opus => OPUS_RATE_HZ,
        OutputFormat::Mp3 => largest_at_most(&MP3_RATES_HZ, wanted_rate),
        OutputFormat::Aac => largest_at_most(&AAC_RATES_HZ, wanted_rate),
        OutputFormat::OggVorbis if wanted_rate > VORBIS_MAX_RATE_HZ => {
            if wanted_rate % 44_100 == 0 {
                44_100
            } else {
                VORBIS_MAX_RATE_HZ
            }
        }
        OutputFormat::OggVorbis | OutputFormat::Flac => wanted_rate,
    };
    let channels = match format {
        OutputFormat::Mp3 => source.channels.min(2),
        OutputFormat::OggVorbis | OutputFormat::Opus | OutputFormat::Aac | OutputFormat::Flac => {
            source.channels.min(MAX_CHANNELS)
        }
    };
    let source_kbps = source_bitrate_cap_kbps(source);
    let asked = |default: u32| constraints.bitrate_kbps.unwrap_or(default);
    let wanted = |default: u32| source_kbps.map_or(asked(default), |cap| asked(default).min(cap));
    let bitrate_kbps = match format {
        OutputFormat::OggVorbis => {
            let (min, max) = vorbis_bitrate_range(sample_rate_hz, channels);
            Some(wanted(256).clamp(min, max))
        }
        OutputFormat::Opus => Some(wanted(160).clamp(6, 510.min(256 * channels.max(1)).max(6))),
        OutputFormat::Mp3 => {
            let legal = if sample_rate_hz >= 32_000 { &MP3_MPEG1_KBPS } else { &MP3_MPEG2_KBPS };
            Some(largest_at_most(legal, wanted(320)))
        }
        OutputFormat::Aac => Some(wanted(256).clamp(32, 512.min(256 * channels.max(1)).max(32))),
        OutputFormat::Flac => None,
    };
    let default_kbps = match format {
        OutputFormat::OggVorbis | OutputFormat::Aac => 256,
        OutputFormat::Opus => 160,
        OutputFormat::Mp3 => 320,
        OutputFormat::Flac => 0,
    };
    let capped = match (source_kbps, bitrate_kbps) {
        (Some(source_kbps), Some(_)) if source_kbps < asked(default_kbps) => {
            Some(BitrateCap { asked_kbps: asked(default_kbps), source_kbps })
        }
        _ => None,
    };
    let flac_bits = match format {
        OutputFormat::Flac => Some(if source.bits_per_sample.is_some_and(|bits| bits > 16) { 24 } else { 16 }),
        OutputFormat::OggVorbis | OutputFormat::Opus | OutputFormat::Mp3 | OutputFormat::Aac => None,
    };
    EncodePlan {
        format,
        bitrate_kbps,
        sample_rate_hz,
        channels,
        resample: sample_rate_hz != source.sample_rate_hz,
        flac_bits,
        capped,
        hard_rate_limit: false,
    }
}

/// The total bitrates (kbit/s) libvorbis 1.3 sets up a managed encoder for at `rate_hz` with `channels`.
fn vorbis_bitrate_range(rate_hz: u32, channels: u32) -> (u32, u32) {
    let channels = channels.max(1);
    let per_channel_max = match rate_hz {
        40_000.. => 240,
        26_000..=39_999 => 190,
        20_000..=25_999 => 90,
        15_000..=19_999 => 100,
        11_000..=14_999 => 50,
        _ => 42,
    };
    let max = if channels == 2 && rate_hz >= 40_000 { 500 } else { per_channel_max * channels };
    let min = (32 * channels).min(max);
    (min, max)
}

/// The most kbit/s a lossy target may spend on `source`: its audio bitrate plus the measurement slack; `None` for
/// lossless sources and lossy ones whose bitrate is unknown.
fn source_bitrate_cap_kbps(source: &SourceInfo) -> Option<u32> {
    if is_lossless_codec(&source.codec) {
        return None;
    }
    let bps = source.bit_rate_bps.filter(|bps| *bps > 0)?;
    let kbps = bps.saturating_mul(SOURCE_BITRATE_SLACK_PERCENT).div_ceil(100_000);
    Some(u32::try_from(kbps).unwrap_or(u32::MAX))
}

/// The largest value of the ascending `set` not above `wanted`, else the smallest of the set.
fn largest_at_most(set: &[u32], wanted: u32) -> u32 {
    set.iter().copied().filter(|value| *value <= wanted).max().or_else(|| set.first().copied()).unwrap_or(wanted)
}

/// A part of a source, in source samples: a CUE track. `end_sample` `None` means to the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRange {
    pub start_sample: u64,
    pub end_sample: Option<u64>,
    /// The source's sample rate the positions count in.
    pub sample_rate_hz: u32,
}

impl SampleRange {
    /// Whole seconds ffmpeg may seek the input to before decoding (so track 12 of an image does not decode
    /// tracks 1-11 first): the start rounded down, which keeps the cut sample-exact (ffmpeg's accurate seek drops
    /// the samples before a whole second exactly; `atrim` cuts the rest).
    fn input_seek_secs(&self) -> u64 {
        self.start_sample / u64::from(self.sample_rate_hz.max(1))
    }
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The start of every ffmpeg command that reads a file from a torrent: no stdin, no progress noise, only the `file`
/// protocol, only the whitelisted demuxers, and the demuxer ffprobe chose named explicitly (never guessed from a
/// hostile name). The caller adds input options, then `-i` and the `file:` URL.
fn hardened_input_prefix(allowed_demuxers: &str, input_format: &str, log_level: &str) -> Vec<OsString> {
    os(&[
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        log_level,
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        allowed_demuxers,
        "-f",
        input_format,
    ])
}

/// Tags and cover written by the encoding run itself (FLAC: see `tags::flac_comments`).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedTags<'a> {
    /// Vorbis comments, key and value.
    pub comments: &'a [(String, String)],
    /// The front cover, a JPEG of our own work dir, written as a `PICTURE` block of type "Cover (front)".
    pub cover_jpeg: Option<&'a Path>,
}

/// ffmpeg arguments that encode the first audio stream of `input` (absolute path, read with the demuxer
/// `input_format` that ffprobe chose) into `output` (an absolute path of our own work dir) following `plan`,
/// optionally only `range`, and with `embedded` tags and cover (FLAC only; other muxers get their tags later).
pub fn transcode_args(
    input: &Path,
    input_format: &str,
    range: Option<SampleRange>,
    plan: &EncodePlan,
    output: &Path,
    embedded: Option<EmbeddedTags<'_>>,
) -> Vec<OsString> {
    let embedded = embedded.filter(|_| plan.format == OutputFormat::Flac);
    let mut args = hardened_input_prefix(AUDIO_DEMUXERS, input_format, ENCODE_LOG_LEVEL);
    args.extend(seek_option(range));
    args.extend(os(&["-threads", "1", "-i"]));
    args.push(file_url(input));
    let cover = embedded.and_then(|embedded| embedded.cover_jpeg);
    if let Some(cover) = cover {
        args.extend(os(&["-format_whitelist", "image2", "-f", "image2"]));
        args.extend(os(&IMAGE_INPUT_OPTIONS));
        args.push("-i".into());
        args.push(file_url(cover));
    }
    args.extend(os(&["-map", "0:a:0", "-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn"]));
    match cover {
        Some(_) => args.extend(os(&[
            "-map",
            "1:v:0",
            "-c:v",
            "copy",
            "-disposition:v:0",
            "attached_pic",
            "-metadata:s:v:0",
            "comment=Cover (front)",
        ])),
        None => args.push("-vn".into()),
    }
    for (key, value) in embedded.map_or(&[][..], |embedded| embedded.comments) {
        args.push("-metadata".into());
        args.push(format!("{key}={value}").into());
    }

    let mut filters = range_filters(range);
    if plan.resample {
        filters.push(format!(
            "aresample=resampler=soxr:precision=28:dither_method=triangular:osr={}",
            plan.sample_rate_hz
        ));
    }
    if !filters.is_empty() {
        args.push("-af".into());
        args.push(filters.join(",").into());
    }
    args.push("-ar".into());
    args.push(plan.sample_rate_hz.to_string().into());
    args.push("-ac".into());
    args.push(plan.channels.to_string().into());

    let bitrate = plan.bitrate_kbps.map(|kbps| format!("{kbps}k"));
    match plan.format {
        OutputFormat::OggVorbis => {
            args.extend(os(&["-c:a", "libvorbis"]));
            if let (true, Some(bitrate)) = (plan.hard_rate_limit, &bitrate) {
                args.extend(os(&["-maxrate", bitrate]));
            }
        }
        OutputFormat::Opus => args.extend(os(&["-c:a", "libopus", "-vbr", "constrained"])),
        OutputFormat::Mp3 => args.extend(os(&["-c:a", "libmp3lame", "-abr", "0"])),
        OutputFormat::Aac => args.extend(os(&["-c:a", "aac"])),
        OutputFormat::Flac => {
            args.extend(os(&["-c:a", "flac", "-compression_level", "8"]));
            if plan.flac_bits == Some(24) {
                args.extend(os(&["-sample_fmt", "s32", "-bits_per_raw_sample", "24"]));
            } else {
                args.extend(os(&["-sample_fmt", "s16"]));
            }
        }
    }
    if let Some(bitrate) = bitrate {
        args.push("-b:a".into());
        args.push(bitrate.into());
    }
    let muxer: &[&str] = match plan.format {
        OutputFormat::OggVorbis | OutputFormat::Opus => &["-f", "ogg"],
        OutputFormat::Mp3 => &["-id3v2_version", "0", "-write_xing", "1", "-f", "mp3"],
        OutputFormat::Flac => &["-f", "flac"],
        OutputFormat::Aac => &["-f", "mp4"],
    };
    args.extend(os(muxer));
    args.push("-y".into());
    args.push(file_url(output));
    args
}

/// The input option that seeks to `range`'s whole second (none for a whole file or a start in the first second).
fn seek_option(range: Option<SampleRange>) -> Vec<OsString> {
    match range.map(|range| range.input_seek_secs()) {
        Some(secs) if secs > 0 => vec!["-ss".into(), secs.to_string().into()],
        _ => Vec::new(),
    }
}

/// The filters that cut `range` out of a source (none for a whole file), counting from the input seek point.
fn range_filters(range: Option<SampleRange>) -> Vec<String> {
    let Some(range) = range else {
        return Vec::new();
    };
    let skipped = range.input_seek_secs() * u64::from(range.sample_rate_hz);
    let mut trim = format!("atrim=start_sample={}", range.start_sample - skipped);
    if let Some(end) = range.end_sample {
        trim.push_str(&format!(":end_sample={}", end.saturating_sub(skipped)));
    }
    vec![trim, "asetpts=PTS-STARTPTS".to_string()]
}

/// ffmpeg arguments that decode the first audio stream of `input` (or its `range`, lasting `secs`) and report its
/// silent stretches (`silencedetect` below `SILENCE_THRESHOLD_DB` for at least a second, or a quarter of a short
/// track) on stderr, writing nothing. Used only when a variable-bitrate output came out far below its target, to
/// tell a silent track from a broken encode.
pub fn silence_scan_args(input: &Path, input_format: &str, range: Option<SampleRange>, secs: f64) -> Vec<OsString> {
    let mut args = hardened_input_prefix(AUDIO_DEMUXERS, input_format, ENCODE_LOG_LEVEL);
    args.extend(seek_option(range));
    args.extend(os(&["-threads", "1", "-i"]));
    args.push(file_url(input));
    args.extend(os(&["-map", "0:a:0", "-vn", "-sn", "-dn", "-af"]));
    let mut filters = range_filters(range);
    let min_silence = (secs / 4.0).clamp(0.01, 1.0);
    filters.push(format!("silencedetect=noise={SILENCE_THRESHOLD_DB}dB:duration={min_silence:.3}"));
    args.push(filters.join(",").into());
    args.extend(os(&["-f", "null", "-"]));
    args
}

/// ffmpeg arguments that turn the single image `input` (read with the demuxer `input_format` ffprobe chose) into a
/// baseline JPEG at `output` whose longest side is at most `MAX_IMAGE_SIDE_PX` (smaller images keep their size).
/// Arguments measuring the EBU R128 integrated loudness and true peak of one of our own outputs (in the work dir):
/// ffmpeg's `ebur128` filter, its running integrated value printed with `ametadata`, its summary at the end.
pub fn loudness_scan_args(output: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["-hide_banner", "-nostdin", "-nostats", "-protocol_whitelist", "file", "-i"].map(OsString::from).to_vec();
    args.push(file_url(output));
    args.extend(
        [
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true:metadata=1,ametadata=mode=print:key=lavfi.r128.I",
            "-f",
            "null",
            "-",
        ]
        .map(OsString::from),
    );
    args
}

/// The integrated loudness (LUFS, the last running value) and true peak (dBTP, the summary's) of a
/// [`loudness_scan_args`] run's log; `None` when either is missing (silence has no integrated loudness).
pub fn loudness_from_scan(log: &str) -> Option<(f64, f64)> {
    let lufs: f64 =
        log.lines().filter_map(|line| line.split("lavfi.r128.I=").nth(1)).next_back()?.trim().parse().ok()?;
    let peak_line = log
        .lines()
        .skip_while(|line| !line.contains("True peak:"))
        .find(|line| line.trim_start().starts_with("Peak:"))?;
    let peak: f64 = peak_line.trim_start().trim_start_matches("Peak:").split_whitespace().next()?.parse().ok()?;
    (lufs.is_finite() && peak.is_finite()).then_some((lufs, peak))
}

pub fn image_to_jpeg_args(input: &Path, input_format: &str, output: &Path) -> Vec<OsString> {
    let mut args = hardened_input_prefix(IMAGE_DEMUXERS, input_format, "error");
    if input_format == "image2" {
        // Only image2 knows this option (ffmpeg refuses options no component uses).
        args.extend(os(&IMAGE_INPUT_OPTIONS));
    }
    args.push("-i".into());
    args.push(file_url(input));
    let scale = format!(
        "scale=w=min(iw\\,{MAX_IMAGE_SIDE_PX}):h=min(ih\\,{MAX_IMAGE_SIDE_PX}):force_original_aspect_ratio=decrease"
    );
    args.extend(os(&["-map", "0:v:0", "-frames:v", "1", "-map_metadata", "-1", "-vf"]));
    args.push(scale.into());
    args.extend(os(&["-pix_fmt", "yuvj420p", "-c:v", "mjpeg", "-q:v", "2", "-f", "mjpeg", "-y"]));
    args.push(file_url(output));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(codec: &str, kbps: u64) -> SourceInfo {
        SourceInfo { codec: codec.into(), bit_rate_bps: Some(kbps * 1000), ..source(44_100, 2, None) }
    }

    #[test]
    fn lossy_sources_cap_the_bitrate_and_lossless_ones_do_not() {
        let mp3_192 = lossy("mp3", 191);
        let plan = plan_encoding(&constraints(OutputFormat::OggVorbis, Some(320), None), &mp3_192);
        assert_eq!(plan.bitrate_kbps, Some(197), "191 kbit/s measured + 3 %");
        assert_eq!(plan.capped, Some(BitrateCap { asked_kbps: 320, source_kbps: 197 }));
        let plan = plan_encoding(&constraints(OutputFormat::Mp3, Some(320), None), &mp3_192);
        assert_eq!(plan.bitrate_kbps, Some(192), "a legal MP3 bitrate not above the source's");
        let plan = plan_encoding(&constraints(OutputFormat::Opus, Some(128), None), &mp3_192);
        assert_eq!((plan.bitrate_kbps, plan.capped), (Some(128), None), "asked below the source: nothing to cap");
        let plan = plan_encoding(&constraints(OutputFormat::Aac, None, None), &lossy("aac", 128));
        assert_eq!(plan.capped.map(|cap| cap.asked_kbps), Some(256), "the codec default counts as asked");
        let unknown = SourceInfo { bit_rate_bps: None, ..lossy("vorbis", 0) };
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, Some(320), None), &unknown).capped, None);
        let flac = SourceInfo { bit_rate_bps: Some(900_000), ..source(44_100, 2, Some(16)) };
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, Some(320), None), &flac).bitrate_kbps, Some(320));
        assert!(is_lossless_codec("pcm_s24le") && is_lossless_codec("alac") && is_lossless_codec("wavpack"));
        assert!(!is_lossless_codec("mp3") && !is_lossless_codec("aac") && !is_lossless_codec("opus"));
    }

    #[test]
    fn vorbis_gets_hard_rate_management_only_when_asked() {
        let cd = source(44_100, 2, Some(16));
        let mut plan = plan_encoding(&constraints(OutputFormat::OggVorbis, Some(320), None), &cd);
        let output = Path::new("/w/o.ogg");
        assert!(!transcode_args(Path::new("/s.flac"), "flac", None, &plan, output, None)
            .iter()
            .any(|a| a == "-maxrate"));
        assert!(plan.can_limit_rate_harder());
        plan.hard_rate_limit = true;
        let args = transcode_args(Path::new("/s.flac"), "flac", None, &plan, output, None);
        assert!(args.windows(2).any(|pair| pair[0] == "-maxrate" && pair[1] == "320k"));
        assert!(!plan.can_limit_rate_harder());
        let mp3 = plan_encoding(&constraints(OutputFormat::Mp3, Some(320), None), &cd);
        assert!(mp3.is_constant_bitrate() && !mp3.can_limit_rate_harder());
    }

    fn source(rate: u32, channels: u32, bits: Option<u32>) -> SourceInfo {
        SourceInfo {
            format_name: "flac".into(),
            duration_secs: 10.0,
            codec: "flac".into(),
            sample_rate_hz: rate,
            channels,
            bits_per_sample: bits,
            sample_count: None,
            bit_rate_bps: None,
            has_embedded_picture: false,
        }
    }

    fn constraints(format: OutputFormat, bitrate: Option<u32>, rate: Option<u32>) -> Constraints {
        Constraints { format, bitrate_kbps: bitrate, sample_rate_hz: rate, embed_metadata: true, embed_cover: true }
    }

    #[test]
    fn never_upsamples_and_obeys_codec_rates() {
        let cd = source(44_100, 2, Some(16));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Flac, None, Some(96_000)), &cd).sample_rate_hz, 44_100);
        let plan = plan_encoding(&constraints(OutputFormat::Flac, None, None), &cd);
        assert!(!plan.resample);
        let hires = source(96_000, 2, Some(24));
        let plan = plan_encoding(&constraints(OutputFormat::Flac, None, Some(44_100)), &hires);
        assert_eq!((plan.sample_rate_hz, plan.resample, plan.flac_bits), (44_100, true, Some(24)));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Opus, None, None), &cd).sample_rate_hz, 48_000);
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, None, None), &hires).sample_rate_hz, 48_000);
        assert_eq!(plan_encoding(&constraints(OutputFormat::Aac, None, Some(50_000)), &hires).sample_rate_hz, 48_000);
        assert_eq!(plan_encoding(&constraints(OutputFormat::Aac, None, None), &hires).sample_rate_hz, 96_000);
        assert_eq!(plan_encoding(&constraints(OutputFormat::OggVorbis, None, None), &hires).sample_rate_hz, 48_000);
        let hires_cd = source(88_200, 2, Some(24));
        assert_eq!(plan_encoding(&constraints(OutputFormat::OggVorbis, None, None), &hires_cd).sample_rate_hz, 44_100);
    }

    #[test]
    fn clamps_bitrates_per_codec() {
        let cd = source(44_100, 2, Some(16));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, Some(300), None), &cd).bitrate_kbps, Some(256));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, Some(512), None), &cd).bitrate_kbps, Some(320));
        assert_eq!(plan_encoding(&constraints(OutputFormat::OggVorbis, Some(32), None), &cd).bitrate_kbps, Some(64));
        assert_eq!(plan_encoding(&constraints(OutputFormat::OggVorbis, Some(600), None), &cd).bitrate_kbps, Some(500));
        // libvorbis refuses 192 kbit/s at 22.05 kHz stereo and 320 for mono (measured limits).
        let low_rate = source(22_050, 2, Some(16));
        assert_eq!(
            plan_encoding(&constraints(OutputFormat::OggVorbis, Some(192), None), &low_rate).bitrate_kbps,
            Some(180)
        );
        let mono_cd = source(44_100, 1, Some(16));
        assert_eq!(
            plan_encoding(&constraints(OutputFormat::OggVorbis, Some(320), None), &mono_cd).bitrate_kbps,
            Some(240)
        );
        let surround = source(48_000, 6, Some(16));
        assert_eq!(
            plan_encoding(&constraints(OutputFormat::OggVorbis, Some(128), None), &surround).bitrate_kbps,
            Some(192)
        );
        assert_eq!(plan_encoding(&constraints(OutputFormat::Opus, Some(512), None), &cd).bitrate_kbps, Some(510));
        let mono = source(44_100, 1, Some(16));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Opus, Some(320), None), &mono).bitrate_kbps, Some(256));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Flac, Some(320), None), &cd).bitrate_kbps, None);
    }

    #[test]
    fn mp3_downmixes_multichannel_others_keep_it() {
        let surround = source(48_000, 6, Some(24));
        assert_eq!(plan_encoding(&constraints(OutputFormat::Mp3, None, None), &surround).channels, 2);
        assert_eq!(plan_encoding(&constraints(OutputFormat::Opus, None, None), &surround).channels, 6);
        assert_eq!(plan_encoding(&constraints(OutputFormat::Flac, None, None), &surround).channels, 6);
    }

    #[test]
    fn flac_carries_its_tags_and_cover_in_the_encode() {
        let cd = source(44_100, 2, Some(16));
        let comments = vec![("TITLE".to_string(), "A = B".to_string())];
        let embedded = EmbeddedTags { comments: &comments, cover_jpeg: Some(Path::new("/work/image-front.jpg")) };
        let plan = plan_encoding(&constraints(OutputFormat::Flac, None, None), &cd);
        let args = transcode_args(Path::new("/s.flac"), "flac", None, &plan, Path::new("/w/o.flac"), Some(embedded));
        let text: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let cover_input = text.iter().position(|arg| arg == "file:/work/image-front.jpg").unwrap();
        assert_eq!(text[cover_input - 1], "-i");
        assert!(text.windows(2).any(|pair| pair[0] == "-map" && pair[1] == "1:v:0"));
        assert!(text.windows(2).any(|pair| pair[0] == "-disposition:v:0" && pair[1] == "attached_pic"));
        assert!(text.windows(2).any(|pair| pair[0] == "-metadata" && pair[1] == "TITLE=A = B"));
        assert!(!text.contains(&"-vn".to_string()), "-vn would drop the mapped cover");
        // Other formats ignore it (lofty tags them after the encode).
        let mp3 = plan_encoding(&constraints(OutputFormat::Mp3, None, None), &cd);
        let args = transcode_args(Path::new("/s.flac"), "flac", None, &mp3, Path::new("/w/o.mp3"), Some(embedded));
        assert!(!args.iter().any(|arg| arg == "file:/work/image-front.jpg") && args.iter().any(|arg| arg == "-vn"));
    }

    #[test]
    fn image_tracks_seek_to_their_second_and_trim_the_rest() {
        let plan = plan_encoding(&constraints(OutputFormat::Flac, None, None), &source(44_100, 2, Some(16)));
        let range = SampleRange { start_sample: 110_250, end_sample: Some(200_000), sample_rate_hz: 44_100 };
        let args = transcode_args(Path::new("/i.flac"), "flac", Some(range), &plan, Path::new("/w/o.flac"), None);
        let text: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        let seek = text.iter().position(|arg| arg == "-ss").unwrap();
        assert_eq!(text[seek + 1], "2", "2.5 s rounds down to a whole second");
        assert!(seek < text.iter().position(|arg| arg == "-i").unwrap(), "an input option");
        assert!(
            text.contains(&"atrim=start_sample=22050:end_sample=111800,asetpts=PTS-STARTPTS".to_string()),
            "{text:?}"
        );
        let first = SampleRange { start_sample: 0, end_sample: Some(1_000), sample_rate_hz: 44_100 };
        let args = silence_scan_args(Path::new("/i.flac"), "flac", Some(first), 1.0);
        assert!(!args.iter().any(|arg| arg == "-ss"), "nothing to skip in the first second");
    }

    #[test]
    fn hostile_names_stay_behind_file_urls() {
        let plan = plan_encoding(&constraints(OutputFormat::Mp3, None, None), &source(44_100, 2, None));
        let args =
            transcode_args(Path::new("/in/-i evil|x.flac"), "flac", None, &plan, Path::new("/work/out.mp3"), None);
        let position = args.iter().position(|arg| arg == "file:/in/-i evil|x.flac").unwrap();
        assert_eq!(args[position - 1], "-i");
        assert_eq!(args.last().unwrap(), "file:/work/out.mp3");
        assert!(args.windows(2).any(|pair| pair[0] == "-protocol_whitelist" && pair[1] == "file"));
    }
}

#[cfg(test)]
mod loudness_scan_tests {
    use super::*;

    #[test]
    fn the_last_running_loudness_and_the_summarys_true_peak_are_read() {
        let log =
            "[Parsed_ametadata_1 @ 0x1] frame:0 pts:0 pts_time:0\n[Parsed_ametadata_1 @ 0x1] lavfi.r128.I=-70.000\n\
                   [Parsed_ametadata_1 @ 0x1] lavfi.r128.I=-19.834\n[Parsed_ebur128_0 @ 0x2] Summary:\n\n  \
                   Integrated loudness:\n    I:         -19.8 LUFS\n\n  True peak:\n    Peak:        -0.4 dBFS\n";
        assert_eq!(loudness_from_scan(log), Some((-19.834, -0.4)));
        assert_eq!(loudness_from_scan("lavfi.r128.I=-20.0\n"), None, "no true peak");
        assert_eq!(loudness_from_scan("lavfi.r128.I=-inf\n  True peak:\n    Peak: -0.4 dBFS\n"), None);
    }
}
