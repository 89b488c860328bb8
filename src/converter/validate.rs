//! The checks a converted track must pass, judged per codec, and the reading of what ffmpeg reports about an
//! encode (its final statistics, a silence scan). Pure: it gets the plan, the encoder's report and the file's own
//! headers, and says which check failed and why; spawns nothing and reads no file.
//!
//! What is checked, and why this way:
//! - **codec, sample rate, channels** exactly as planned, **duration** within max(1 s, 0.5 %) of the source part.
//! - **bitrate**, from the audio payload the encoder wrote (not the file size: tags and an embedded cover are not
//!   audio), against the target of lossy formats:
//!   - never *above* the target by more than [`BITRATE_TOLERANCE`] plus a container allowance
//!     ([`CONTAINER_ALLOWANCE_BYTES`] spread over the duration) - for every lossy codec;
//!   - constant-bitrate codecs (MP3 CBR) also never below it by more than the tolerance: LAME in CBR mode writes
//!     exactly the target, so anything else is a broken encode;
//!   - variable-bitrate codecs (Vorbis, Opus, AAC) spend fewer bits where fewer suffice: mono, quiet, simple or
//!     silent material legitimately comes out far below the target (measured with ffmpeg 5.1: libvorbis gives
//!     126 kbit/s for 192 on mono material, about 20 % of the target on a pure tone, 1 % on silence). Their floor
//!     only catches an encode that lost the audio: below [`VBR_FLOOR_FRACTION`] of the target *for the audible
//!     part of the track*. Since that needs a silence scan of the source, the scan only runs when the output is
//!     below the floor for the whole track (rare), see [`needs_silence_scan`].
//! - **tags and cover** read back (see `tags.rs`).
//!
//! A failed check is a converter bug or a resource fault, never a property of the album: the error names the
//! file and the check, and the ticket is retried (see `ConvertError::Validation`).

use super::ffmpeg::EncodePlan;

/// Relative bitrate tolerance of lossy outputs: above the target for every lossy codec, below it for CBR.
pub const BITRATE_TOLERANCE: f64 = 0.15;
/// Container and rounding bytes allowed on top of the audio payload when checking a lossy output's bitrate.
pub const CONTAINER_ALLOWANCE_BYTES: f64 = 16.0 * 1024.0;
/// The floor of a variable-bitrate output, as a fraction of the target, for the audible part of a track. A pure
/// tone, the simplest non-silent material, comes out at about twice this with libvorbis.
pub const VBR_FLOOR_FRACTION: f64 = 0.10;

/// Which property of an output was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Codec,
    SampleRate,
    Channels,
    Duration,
    /// Above the target (every lossy codec).
    BitrateCeiling,
    /// Below a constant-bitrate target.
    ConstantBitrate,
    /// Below the floor of a variable-bitrate codec for the audible part of the track.
    BitrateFloor,
    /// Tags or cover did not read back.
    Tags,
    /// The encoder's own report could not be read.
    EncoderReport,
}

impl Check {
    /// The check's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Check::Codec => "codec",
            Check::SampleRate => "sample rate",
            Check::Channels => "channel count",
            Check::Duration => "duration",
            Check::BitrateCeiling => "bitrate ceiling",
            Check::ConstantBitrate => "constant bitrate",
            Check::BitrateFloor => "bitrate floor",
            Check::Tags => "tags and cover read-back",
            Check::EncoderReport => "encoder report",
        }
    }
}

/// A failed check and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub check: Check,
    pub detail: String,
}

impl Failure {
    fn new(check: Check, detail: String) -> Failure {
        Failure { check, detail }
    }
}

/// What the output's own headers say.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFacts {
    /// Codec as ffprobe names it.
    pub codec: String,
    pub sample_rate_hz: u32,
    pub channels: u32,
    pub duration_secs: f64,
    /// Audio payload bytes the encoder wrote (from its statistics).
    pub audio_bytes: u64,
}

impl OutputFacts {
    /// The payload bitrate in kbit/s.
    pub fn audio_kbps(&self) -> f64 {
        if self.duration_secs > 0.0 {
            self.audio_bytes as f64 * 8.0 / self.duration_secs / 1000.0
        } else {
            0.0
        }
    }
}

/// Allowed duration difference between a source part and its output.
pub fn duration_tolerance_secs(expected_secs: f64) -> f64 {
    (0.005 * expected_secs).max(1.0)
}

/// The container allowance in kbit/s over `duration_secs`.
fn allowance_kbps(duration_secs: f64) -> f64 {
    CONTAINER_ALLOWANCE_BYTES * 8.0 / duration_secs.max(0.001) / 1000.0
}

/// Checks codec, rate, channels, duration and the bitrate rules that need no knowledge of the source's silence.
/// The variable-bitrate floor is the caller's, after [`needs_silence_scan`] and [`check_vbr_floor`].
pub fn check_output(plan: &EncodePlan, facts: &OutputFacts, expected_secs: f64) -> Result<(), Failure> {
    if facts.codec != plan.probe_codec_name() {
        return Err(Failure::new(Check::Codec, format!("{} instead of {}", facts.codec, plan.probe_codec_name())));
    }
    if facts.sample_rate_hz != plan.sample_rate_hz {
        return Err(Failure::new(
            Check::SampleRate,
            format!("{} Hz instead of {} Hz", facts.sample_rate_hz, plan.sample_rate_hz),
        ));
    }
    if facts.channels != plan.channels {
        return Err(Failure::new(Check::Channels, format!("{} instead of {}", facts.channels, plan.channels)));
    }
    if (facts.duration_secs - expected_secs).abs() > duration_tolerance_secs(expected_secs) {
        return Err(Failure::new(
            Check::Duration,
            format!("lasts {:.3} s instead of {expected_secs:.3} s", facts.duration_secs),
        ));
    }
    let Some(target_kbps) = plan.bitrate_kbps else {
        return Ok(());
    };
    let target = f64::from(target_kbps);
    let actual = facts.audio_kbps();
    let ceiling = target * (1.0 + BITRATE_TOLERANCE) + allowance_kbps(facts.duration_secs);
    if actual > ceiling {
        return Err(Failure::new(
            Check::BitrateCeiling,
            format!("average audio bitrate {actual:.0} kbit/s, above the target {target_kbps} kbit/s (+15 %)"),
        ));
    }
    if plan.is_constant_bitrate() && actual < target * (1.0 - BITRATE_TOLERANCE) {
        return Err(Failure::new(
            Check::ConstantBitrate,
            format!("average audio bitrate {actual:.0} kbit/s, constant target {target_kbps} kbit/s (-15 %)"),
        ));
    }
    Ok(())
}

/// Whether a variable-bitrate output is so far below its target that the source's silence must explain it.
pub fn needs_silence_scan(plan: &EncodePlan, facts: &OutputFacts) -> bool {
    match plan.bitrate_kbps {
        Some(target) if !plan.is_constant_bitrate() => facts.audio_kbps() < VBR_FLOOR_FRACTION * f64::from(target),
        _ => false,
    }
}

/// The variable-bitrate floor once the audible seconds of the source part are known.
pub fn check_vbr_floor(plan: &EncodePlan, facts: &OutputFacts, audible_secs: f64) -> Result<(), Failure> {
    let Some(target_kbps) = plan.bitrate_kbps else {
        return Ok(());
    };
    let duration = facts.duration_secs.max(0.001);
    let audible_fraction = (audible_secs / duration).clamp(0.0, 1.0);
    let floor = VBR_FLOOR_FRACTION * f64::from(target_kbps) * audible_fraction;
    let actual = facts.audio_kbps();
    if actual < floor {
        return Err(Failure::new(
            Check::BitrateFloor,
            format!(
                "average audio bitrate {actual:.1} kbit/s for {audible_secs:.1} s of audible source in {duration:.1} s: \
                 below {:.0} % of the target {target_kbps} kbit/s, the audio was lost",
                VBR_FLOOR_FRACTION * 100.0
            ),
        ));
    }
    Ok(())
}

/// The audio payload in bytes from ffmpeg's final statistics line (`audio:1013kB` in ffmpeg 5.x, `audio:1013KiB`
/// from 6.1 on; both are KiB), the last one if several.
pub fn audio_bytes_from_stats(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let rest = &line[line.find(" audio:")? + " audio:".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let unit = &rest[digits.len()..];
        let kib: u64 = digits.parse().ok()?;
        (unit.starts_with("kB") || unit.starts_with("KiB")).then_some(kib * 1024)
    })
}

/// The silent seconds `silencedetect` reported in a scan of `total_secs` of audio: every closed stretch
/// (`silence_duration: x`) plus an open one that runs to the end (`silence_start: x` without its end).
pub fn silent_secs_from_scan(stderr: &str, total_secs: f64) -> f64 {
    let mut silent = 0.0;
    let mut open_start: Option<f64> = None;
    for line in stderr.lines() {
        if let Some(value) = field_after(line, "silence_start:") {
            open_start = Some(value);
        }
        if let Some(value) = field_after(line, "silence_duration:") {
            silent += value;
            open_start = None;
        }
    }
    if let Some(start) = open_start {
        silent += (total_secs - start).max(0.0);
    }
    silent.min(total_secs)
}

fn field_after(line: &str, key: &str) -> Option<f64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e')).collect();
    number.parse().ok().filter(|value: &f64| value.is_finite())
}

/// Lines of a `level+info` ffmpeg log at `error` or worse, for messages (source decoding trouble is logged but
/// does not fail a track: a single damaged MP3 frame is common and harmless).
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("[error]") || line.contains("[fatal]") || line.contains("[panic]"))
        .collect()
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::models::OutputFormat;

    fn plan(format: OutputFormat, kbps: Option<u32>) -> EncodePlan {
        EncodePlan {
            format,
            bitrate_kbps: kbps,
            sample_rate_hz: 44_100,
            channels: 2,
            resample: false,
            flac_bits: None,
            capped: None,
            hard_rate_limit: false,
        }
    }

    fn facts(codec: &str, secs: f64, kbps: f64) -> OutputFacts {
        OutputFacts {
            codec: codec.into(),
            sample_rate_hz: 44_100,
            channels: 2,
            duration_secs: secs,
            audio_bytes: (kbps * 1000.0 / 8.0 * secs) as u64,
        }
    }

    #[test]
    fn vorbis_below_target_passes_and_above_fails() {
        let vorbis = plan(OutputFormat::OggVorbis, Some(192));
        // The mono recording: 126 kbit/s for 192.
        assert_eq!(check_output(&vorbis, &facts("vorbis", 180.0, 126.0), 180.0), Ok(()));
        assert!(!needs_silence_scan(&vorbis, &facts("vorbis", 180.0, 126.0)));
        let over = check_output(&vorbis, &facts("vorbis", 180.0, 240.0), 180.0).unwrap_err();
        assert_eq!(over.check, Check::BitrateCeiling);
        // A pure tone: about 20 % of the target, still above the floor.
        assert!(!needs_silence_scan(&vorbis, &facts("vorbis", 60.0, 39.0)));
    }

    #[test]
    fn mp3_cbr_is_two_sided() {
        let mp3 = plan(OutputFormat::Mp3, Some(320));
        assert_eq!(check_output(&mp3, &facts("mp3", 60.0, 320.0), 60.0), Ok(()));
        assert_eq!(check_output(&mp3, &facts("mp3", 60.0, 200.0), 60.0).unwrap_err().check, Check::ConstantBitrate);
        assert_eq!(check_output(&mp3, &facts("mp3", 60.0, 400.0), 60.0).unwrap_err().check, Check::BitrateCeiling);
        assert!(!needs_silence_scan(&mp3, &facts("mp3", 60.0, 10.0)), "CBR has its own lower bound");
    }

    #[test]
    fn the_vbr_floor_counts_only_audible_seconds() {
        let opus = plan(OutputFormat::Opus, Some(160));
        let silent_output = facts("opus", 300.0, 1.5);
        assert!(needs_silence_scan(&opus, &silent_output));
        assert_eq!(check_vbr_floor(&opus, &silent_output, 0.0), Ok(()), "a silent track");
        assert_eq!(check_vbr_floor(&opus, &silent_output, 5.0), Ok(()), "a hidden track after long silence");
        let lost = check_vbr_floor(&opus, &silent_output, 300.0).unwrap_err();
        assert_eq!(lost.check, Check::BitrateFloor, "loud source, nearly empty output");
    }

    #[test]
    fn properties_are_checked_before_the_bitrate() {
        let aac = plan(OutputFormat::Aac, Some(256));
        assert_eq!(check_output(&aac, &facts("mp3", 10.0, 256.0), 10.0).unwrap_err().check, Check::Codec);
        let mut mono = facts("aac", 10.0, 256.0);
        mono.channels = 1;
        assert_eq!(check_output(&aac, &mono, 10.0).unwrap_err().check, Check::Channels);
        let mut rate = facts("aac", 10.0, 256.0);
        rate.sample_rate_hz = 48_000;
        assert_eq!(check_output(&aac, &rate, 10.0).unwrap_err().check, Check::SampleRate);
        assert_eq!(check_output(&aac, &facts("aac", 12.0, 256.0), 10.0).unwrap_err().check, Check::Duration);
        let flac = plan(OutputFormat::Flac, None);
        assert_eq!(check_output(&flac, &facts("flac", 0.5, 9000.0), 0.5), Ok(()), "FLAC has no bitrate rule");
    }

    #[test]
    fn short_tracks_get_the_container_allowance() {
        let vorbis = plan(OutputFormat::OggVorbis, Some(64));
        // 0.5 s: 16 KiB of allowance dwarfs the target, only an absurd output fails.
        assert_eq!(check_output(&vorbis, &facts("vorbis", 0.5, 200.0), 0.5), Ok(()));
    }

    #[test]
    fn reads_ffmpeg_statistics_of_both_generations() {
        let five = "[info] size=    1023kB time=00:00:59.99 bitrate= 139.7kbits/s speed=31.7x\n\
                    [info] video:0kB audio:1013kB subtitle:0kB other streams:0kB global headers:4kB muxing overhead: 1%";
        assert_eq!(audio_bytes_from_stats(five), Some(1013 * 1024));
        let seven = "[out#0/ogg @ 0x55] [info] video:0KiB audio:12KiB subtitle:0KiB other streams:0KiB";
        assert_eq!(audio_bytes_from_stats(seven), Some(12 * 1024));
        assert_eq!(audio_bytes_from_stats("[error] Conversion failed!"), None);
    }

    #[test]
    fn sums_silent_stretches_including_an_open_one() {
        let scan = "[silencedetect @ 0x1] [info] silence_start: 0\n\
                    [silencedetect @ 0x1] [info] silence_end: 12.5 | silence_duration: 12.5\n\
                    [silencedetect @ 0x1] [info] silence_start: 50.25\n";
        assert!((silent_secs_from_scan(scan, 60.0) - 22.25).abs() < 1e-9);
        assert_eq!(silent_secs_from_scan("", 60.0), 0.0);
        assert_eq!(
            error_lines("[info] ok\n[mp3 @ 0x1] [error] Header missing\n"),
            vec!["[mp3 @ 0x1] [error] Header missing"]
        );
    }
}
