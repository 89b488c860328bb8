//! Decoding a file to PCM for the analysis, with symphonia (FLAC, ALAC, WAV/AIFF PCM, MP3, AAC, Vorbis in their
//! usual containers), counting what went wrong on the way: damaged packets, a stream that ends before its header
//! said, and for FLAC the stored MD5 of the audio compared with what was decoded. Formats symphonia cannot read are
//! reported as [`DecodeFailure::Unsupported`] so the caller can hand them to ffmpeg (`ffmpeg_decode`).
//!
//! Runs on the calling thread (call it from a blocking task) and never panics on a damaged file: every error of
//! the demuxer or the decoder is counted or reported.

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_ALAC, CODEC_ID_FLAC, CODEC_ID_MONKEYS_AUDIO, CODEC_ID_TTA, CODEC_ID_WAVPACK,
};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, ReadBytes};
use symphonia::core::meta::MetadataOptions;

use crate::models::verification::Md5Check;

/// What the container and codec say about the audio before any of it is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFacts {
    /// Short codec name (`flac`, `alac`, `pcm_s16le`, `mp3`, `aac`, `vorbis`, ...).
    pub codec: String,
    /// FLAC, ALAC, PCM, WavPack, APE, TTA.
    pub lossless: bool,
    pub sample_rate_hz: u32,
    pub channels: u32,
    /// The bit depth of a lossless stream (16, 24, ...).
    pub bits_per_sample: Option<u32>,
    /// Frames per channel the header promises, when it says.
    pub expected_frames: Option<u64>,
    /// Whether a FLAC header carries an MD5 of the audio (`None` for other formats).
    pub md5_stored: Option<bool>,
}

/// What decoding the whole stream found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodeSummary {
    /// Frames per channel handed to the sink.
    pub frames: u64,
    /// Damaged packets the decoder refused (each skipped).
    pub decode_errors: u64,
    /// The first of those errors, for the reason line.
    pub first_error: Option<String>,
    /// Why reading stopped before the end of the stream, if it did (a truncated file).
    pub stopped_early: Option<String>,
    pub md5: Option<Md5Check>,
    /// Bytes of the file after the point where reading stopped early (a hole in the middle leaves many; a cut
    /// file none).
    pub bytes_unread: u64,
}

/// Receives the decoded audio.
pub trait PcmSink {
    /// Called once, before any samples.
    fn begin(&mut self, facts: &StreamFacts);
    /// Interleaved samples at full 32-bit scale (a 16-bit sample `s` arrives as `s << 16`).
    fn samples(&mut self, interleaved: &[i32]);
}

/// Why a file could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeFailure {
    #[error("cannot open: {0}")]
    Open(String),
    /// Not a container or codec symphonia reads; ffmpeg may.
    #[error("format not readable in-process: {0}")]
    Unsupported(String),
    /// A readable container without a usable audio stream, or a header too damaged to start.
    #[error("no readable audio: {0}")]
    Unreadable(String),
    #[error("cancelled")]
    Cancelled,
}

fn extension_of(path: &Path) -> String {
    path.extension().and_then(|ext| ext.to_str()).unwrap_or_default().to_ascii_lowercase()
}

/// Extensions of the containers this module reads itself.
fn claims_readable_format(path: &Path) -> bool {
    matches!(
        extension_of(path).as_str(),
        "flac" | "wav" | "wave" | "aif" | "aiff" | "mp3" | "m4a" | "mp4" | "ogg" | "oga" | "caf"
    )
}

/// Codecs whose output is bit-exact to what was encoded.
fn is_lossless(params: &AudioCodecParameters, short_name: &str) -> bool {
    let codec = params.codec;
    codec == CODEC_ID_FLAC
        || codec == CODEC_ID_ALAC
        || codec == CODEC_ID_WAVPACK
        || codec == CODEC_ID_MONKEYS_AUDIO
        || codec == CODEC_ID_TTA
        || (short_name.starts_with("pcm_") && !short_name.contains("law"))
}

/// Decodes `path` into `sink`. `cancelled` is polled between packets.
pub fn decode_file(
    path: &Path,
    sink: &mut dyn PcmSink,
    cancelled: &dyn Fn() -> bool,
) -> Result<(StreamFacts, DecodeSummary), DecodeFailure> {
    let file = File::open(path).map_err(|err| DecodeFailure::Open(err.to_string()))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|ext| ext.to_str()) {
        hint.with_extension(extension);
    }
    let mut format = symphonia::default::get_probe()
        .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
        .map_err(|err| match err {
            SymphoniaError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
                DecodeFailure::Open(io.to_string())
            }
            // A file named like a format symphonia reads that it cannot even start on is damaged, not exotic.
            other if claims_readable_format(path) => {
                DecodeFailure::Unreadable(format!("not a readable {} file ({other})", extension_of(path)))
            }
            other => DecodeFailure::Unsupported(other.to_string()),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .cloned()
        .ok_or_else(|| DecodeFailure::Unreadable("no audio stream".into()))?;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err(DecodeFailure::Unreadable("the audio stream has no codec parameters".into()));
    };
    let options = AudioDecoderOptions::default().verify(true);
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &options)
        .map_err(|err| DecodeFailure::Unsupported(err.to_string()))?;
    let short_name = decoder.codec_info().short_name.to_string();
    let lossless = is_lossless(&params, &short_name);
    let sample_rate_hz = params.sample_rate.filter(|rate| *rate > 0);
    let channels = params.channels.as_ref().map(|channels| channels.count()).filter(|count| *count > 0);
    let is_flac = params.codec == CODEC_ID_FLAC;
    let md5_stored = is_flac.then(|| params.verification_check.is_some());
    let mut facts = StreamFacts {
        codec: short_name,
        lossless,
        sample_rate_hz: sample_rate_hz.unwrap_or(0),
        channels: channels.and_then(|count| u32::try_from(count).ok()).unwrap_or(0),
        bits_per_sample: if lossless { params.bits_per_sample } else { None },
        expected_frames: track.num_frames,
        md5_stored,
    };
    let mut summary = DecodeSummary::default();
    let mut begun = false;
    let mut interleaved: Vec<i32> = Vec::new();
    let track_id = track.id;
    loop {
        if cancelled() {
            return Err(DecodeFailure::Cancelled);
        }
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::IoError(err)) => {
                summary.stopped_early = Some(err.to_string());
                break;
            }
            Err(SymphoniaError::ResetRequired) => {
                decoder.reset();
                continue;
            }
            Err(err @ (SymphoniaError::DecodeError(_) | SymphoniaError::LimitError(_))) => {
                // The demuxer lost its footing; it cannot be trusted to find the next packet.
                summary.decode_errors += 1;
                summary.first_error.get_or_insert_with(|| err.to_string());
                summary.stopped_early = Some(err.to_string());
                break;
            }
            Err(err) => {
                summary.stopped_early = Some(err.to_string());
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buffer) => {
                let spec = buffer.spec();
                let rate = spec.rate();
                let count = spec.channels().count();
                if !begun {
                    // Containers do not always say; the first decoded buffer does.
                    if facts.sample_rate_hz == 0 {
                        facts.sample_rate_hz = rate;
                    }
                    if facts.channels == 0 {
                        facts.channels = u32::try_from(count).unwrap_or(0);
                    }
                    if facts.sample_rate_hz == 0 || facts.channels == 0 {
                        return Err(DecodeFailure::Unreadable("no sample rate or channel count".into()));
                    }
                    sink.begin(&facts);
                    begun = true;
                }
                if u32::try_from(count).ok() != Some(facts.channels) || rate != facts.sample_rate_hz {
                    // A stream whose layout changes midway cannot be analysed as one signal.
                    summary.decode_errors += 1;
                    summary.first_error.get_or_insert_with(|| "channel layout or rate changes mid-stream".into());
                    continue;
                }
                buffer.copy_to_vec_interleaved(&mut interleaved);
                summary.frames += buffer.frames() as u64;
                sink.samples(&interleaved);
            }
            Err(SymphoniaError::DecodeError(message)) => {
                summary.decode_errors += 1;
                summary.first_error.get_or_insert_with(|| format!("damaged frame: {message}"));
            }
            Err(SymphoniaError::ResetRequired) => decoder.reset(),
            Err(err) => {
                summary.decode_errors += 1;
                summary.first_error.get_or_insert_with(|| err.to_string());
                summary.stopped_early = Some(err.to_string());
                break;
            }
        }
    }
    if !begun {
        return Err(DecodeFailure::Unreadable(
            summary.first_error.or(summary.stopped_early).unwrap_or_else(|| "the stream holds no audio".into()),
        ));
    }
    if summary.stopped_early.is_some() || facts.expected_frames.is_some_and(|expected| summary.frames < expected) {
        let stream = format.into_inner();
        let position = stream.pos();
        summary.bytes_unread = stream.byte_len().map_or(0, |len| len.saturating_sub(position));
    }
    summary.md5 = Some(match (md5_stored, decoder.finalize().verify_ok) {
        (None, _) => Md5Check::NotApplicable,
        (Some(false), _) => Md5Check::NotStored,
        // A damaged or short stream cannot match; that is reported as such, not as an MD5 mismatch.
        (Some(true), _) if summary.stopped_early.is_some() || summary.decode_errors > 0 => Md5Check::NotApplicable,
        (Some(true), Some(true)) => Md5Check::Match,
        (Some(true), Some(false)) => Md5Check::Mismatch,
        (Some(true), None) => Md5Check::NotApplicable,
    });
    Ok((facts, summary))
}
