//! What the audio verifier found in a file: the verdict the `verify` command prints, the ticket's API view shows
//! per track, and the completion stats carry. Pure data; the analysis that produces it lives in `verifier`.

use serde::{Deserialize, Serialize};

/// The verifier's judgement of one audio file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Decoded cleanly; for a lossless claim, the spectrum reaches the top of the band (or shows no sign of a
    /// lossy encoder).
    Genuine,
    /// A lossless claim whose spectrum shows a lossy encoder's low-pass shelf: a transcode.
    Suspect,
    /// Decoded cleanly but the material cannot be judged (band-limited, silent, too short).
    Unknown,
    /// Decode errors, a wrong MD5, a truncated or zero-filled file, or no readable audio at all.
    Corrupt,
}

impl Verdict {
    /// The name as the JSON shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Genuine => "genuine",
            Verdict::Suspect => "suspect",
            Verdict::Unknown => "unknown",
            Verdict::Corrupt => "corrupt",
        }
    }
}

/// The result of comparing a FLAC file's stored MD5 of its audio with the decoded audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Md5Check {
    Match,
    Mismatch,
    /// A FLAC file without a stored MD5 (all zero): nothing to compare, never a defect.
    NotStored,
    /// Not a FLAC file, or decoding stopped before the end.
    NotApplicable,
}

/// The spectral evidence of the transcode check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpectrumEvidence {
    /// Where the long-term spectrum of the mid channel falls into the floor, in Hz (the Nyquist frequency when it
    /// never does).
    pub cutoff_hz: f64,
    /// How far the spectrum falls from the music under the cut-off to what is left above it, in dB (a lossy
    /// encoder's shelf: 20-60 dB).
    pub drop_db: f64,
    /// The level of the band above the cut-off relative to the quantisation floor of the file's bit depth, in dB
    /// (an encoder leaves nothing there: about 0 dB; a recording keeps noise there).
    pub above_cutoff_db: f64,
    /// How wide the fall from the music (less 6 dB) to the floor is, in Hz (an encoder's: a few hundred).
    pub transition_hz: f64,
    /// The same cut-off for the side channel (L-R), when the file has one with any content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_cutoff_hz: Option<f64>,
}

/// One run of digital silence inside the audio where music was playing on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZeroRun {
    pub start_secs: f64,
    pub length_secs: f64,
}

/// Everything the verifier found in one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileVerification {
    /// The file as the caller named it (a torrent-relative path in the pipeline, the argument in the command).
    pub path: String,
    pub verdict: Verdict,
    /// One line for people: `lossy source, cut-off 16.1 kHz`, `band-limited material`, `MD5 mismatch`, ...
    pub reason: String,
    /// How sure the verdict is, in [0, 1].
    pub confidence: f64,
    /// The codec as decoded (`flac`, `alac`, `pcm`, `mp3`, ...).
    pub codec: String,
    /// Whether the format claims to be lossless (FLAC, ALAC, WAV/AIFF PCM, APE, WavPack): only those get the
    /// transcode check.
    pub lossless: bool,
    pub sample_rate_hz: u32,
    pub channels: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_sample: Option<u32>,
    pub duration_secs: f64,
    /// The cut-off of the transcode check (see `spectrum`), null when the check did not run.
    pub cutoff_hz: Option<f64>,
    /// A 88.2 kHz or higher file with nothing above ~22-24 kHz: upsampled from CD or DAT rate.
    pub upsampled: bool,
    /// Low bits that are zero in every sample of a lossless file (8 for 16-bit audio padded to 24 bits).
    pub padded_bits: u32,
    /// Another file of the same set whose audio is the same (acoustic fingerprint).
    pub duplicate_of: Option<String>,
    /// EBU R128 integrated loudness, LUFS; null for silence or when the loudness check is off.
    pub loudness_lufs: Option<f64>,
    /// EBU R128 true peak, dBTP.
    pub true_peak_dbtp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum: Option<SpectrumEvidence>,
    /// Errors the decoder reported (each a damaged frame or packet).
    pub decode_errors: u64,
    pub md5: Md5Check,
    /// Audio the header promises but the file does not hold, seconds (0 for a complete file).
    pub missing_secs: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zero_runs: Vec<ZeroRun>,
}

/// ReplayGain 2.0 values of a set of tracks, measured with EBU R128 (reference -18 LUFS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlbumLoudness {
    /// Integrated loudness of all tracks together, LUFS.
    pub loudness_lufs: f64,
    /// The highest true peak of any track, dBTP.
    pub true_peak_dbtp: f64,
}

/// The verdict of one mapped file of a downloaded release, with the catalog tracks it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrackVerification {
    /// The catalog tracks whose audio is in this file (several for a CUE image).
    pub catalog_track_ids: Vec<String>,
    /// Whether a spectrogram picture of this file is served by
    /// `GET /api/v1/ticket/{id}/verification/{release}/{file}/spectrogram.png` (suspect files only).
    #[serde(default)]
    pub spectrogram: bool,
    pub file: FileVerification,
}

/// What the verifier found in one downloaded release of a ticket: its ticket's API view lists every release
/// verified for it, a `needs_approval` with `transcode_suspected` or `corrupt_download` carries the one refused, and
/// the completed ticket's stats carry the one placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseVerification {
    pub info_hash: String,
    pub title: String,
    pub verified_at: chrono::DateTime<chrono::Utc>,
    pub tracks: Vec<TrackVerification>,
    /// ReplayGain 2.0 album values (all mapped files together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album: Option<AlbumLoudness>,
    /// How long the verification took, seconds.
    pub verification_secs: f64,
}

impl ReleaseVerification {
    /// The files judged `suspect`.
    pub fn suspect(&self) -> impl Iterator<Item = &TrackVerification> {
        self.tracks.iter().filter(|track| track.file.verdict == Verdict::Suspect)
    }

    /// The files judged `corrupt`.
    pub fn corrupt(&self) -> impl Iterator<Item = &TrackVerification> {
        self.tracks.iter().filter(|track| track.file.verdict == Verdict::Corrupt)
    }
}
