//! Judging a lossless file's long-term spectrum: was it made from a lossy file? Pure functions of the spectrum.
//!
//! A lossy encoder (MP3, AAC, Vorbis, Opus) low-passes the audio and codes nothing above: decoded, the spectrum
//! keeps the music's level right up to the cut-off, falls 30-60 dB within a few hundred Hz (a shelf), and above it
//! holds only the rounding noise of the bit depth. A genuine recording that has little top end looks different:
//! its spectrum fades gradually, or it keeps noise (hiss, room, dither) above its last music. So a cut-off alone
//! decides nothing; the verdict needs all three: a cut-off where encoders put theirs, a steep drop, and an empty
//! band above. Anything else is `genuine` (the music reaches the top of the band) or `unknown` (band-limited
//! material that cannot be judged), never `suspect`.

use super::spectrum::LongTermSpectrum;
use crate::models::verification::{SpectrumEvidence, Verdict};

/// The knobs of the transcode and upsampling checks (`[verifier]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumThresholds {
    /// Width of the bands the spectrum is averaged into.
    pub band_hz: f64,
    /// A band "has content" when it is this far above the quantisation floor.
    pub content_db: f64,
    /// The least fall within ~1 kHz around the cut-off that counts as an encoder's shelf.
    pub min_drop_db: f64,
    /// The most the band above the cut-off may rise over the floor and still count as empty.
    pub max_above_db: f64,
    /// Below this a cut-off is band-limited material (an old recording, a telephone), not an encoder's choice.
    pub min_lossy_cutoff_hz: f64,
    /// Above this a cut-off is an anti-alias filter, not an encoder's low-pass.
    pub max_lossy_cutoff_hz: f64,
    /// How much of the 2.5 kHz under the cut-off must have content (an encoder's shelf is broadband; a last
    /// sine tone is not).
    pub min_shelf_fraction: f64,
}

impl Default for SpectrumThresholds {
    fn default() -> Self {
        SpectrumThresholds {
            band_hz: 200.0,
            content_db: 10.0,
            min_drop_db: 20.0,
            max_above_db: 8.0,
            min_lossy_cutoff_hz: 11_000.0,
            max_lossy_cutoff_hz: 20_900.0,
            min_shelf_fraction: 0.8,
        }
    }
}

/// The transcode check's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumJudgement {
    /// `Genuine`, `Suspect` or `Unknown`.
    pub verdict: Verdict,
    pub reason: String,
    pub confidence: f64,
    pub evidence: Option<SpectrumEvidence>,
}

/// One band of the spectrum: its centre and its mean level over the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Band {
    low_hz: f64,
    high_hz: f64,
    over_floor_db: f64,
}

/// Averages `levels_db` (per bin) in power over bands of `band_hz`, from 20 Hz up to `top_hz`, relative to
/// `floor_db`.
fn bands(levels_db: &[f64], bin_hz: f64, band_hz: f64, top_hz: f64, floor_db: f64) -> Vec<Band> {
    let mut bands = Vec::new();
    let mut low_hz = 20.0;
    while low_hz + band_hz <= top_hz + 1e-9 {
        let first = (low_hz / bin_hz).ceil() as usize;
        let last = (((low_hz + band_hz) / bin_hz).floor() as usize).min(levels_db.len().saturating_sub(1));
        if first <= last {
            let power: f64 =
                levels_db[first..=last].iter().map(|db| 10f64.powf(db / 10.0)).sum::<f64>() / (last - first + 1) as f64;
            bands.push(Band { low_hz, high_hz: low_hz + band_hz, over_floor_db: 10.0 * power.log10() - floor_db });
        }
        low_hz += band_hz;
    }
    bands
}

fn mean_over(bands: &[Band], low_hz: f64, high_hz: f64) -> Option<f64> {
    let inside: Vec<f64> = bands
        .iter()
        .filter(|band| band.low_hz >= low_hz - 1e-9 && band.high_hz <= high_hz + 1e-9)
        .map(|band| band.over_floor_db)
        .collect();
    (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
}

/// Where content ends: the highest bin, smoothed over ~50 Hz, still `content_db` over the floor, searched from
/// the top of the last band with content.
fn refine_cutoff(levels_db: &[f64], bin_hz: f64, floor_db: f64, content_db: f64, band: &Band) -> f64 {
    let half = ((25.0 / bin_hz).round() as usize).max(1);
    let last = ((band.high_hz / bin_hz) as usize).min(levels_db.len().saturating_sub(1));
    let first = ((band.low_hz / bin_hz) as usize).saturating_sub(half);
    for bin in (first..=last).rev() {
        let from = bin.saturating_sub(half);
        let to = (bin + half).min(levels_db.len() - 1);
        let power: f64 =
            levels_db[from..=to].iter().map(|db| 10f64.powf(db / 10.0)).sum::<f64>() / (to - from + 1) as f64;
        if 10.0 * power.log10() - floor_db >= content_db {
            return (bin as f64 + 0.5) * bin_hz;
        }
    }
    band.high_hz
}

/// What the cut-off analysis of one channel found.
#[derive(Debug, Clone, PartialEq)]
struct Cutoff {
    cutoff_hz: f64,
    drop_db: f64,
    above_db: f64,
    shelf_fraction: f64,
}

fn find_cutoff(
    levels_db: &[f64],
    bin_hz: f64,
    top_hz: f64,
    floor_db: f64,
    limits: &SpectrumThresholds,
) -> Option<Cutoff> {
    let bands = bands(levels_db, bin_hz, limits.band_hz, top_hz, floor_db);
    let last = bands.iter().rposition(|band| band.over_floor_db >= limits.content_db)?;
    let cutoff_hz = refine_cutoff(levels_db, bin_hz, floor_db, limits.content_db, &bands[last]);
    let below = mean_over(&bands, cutoff_hz - 1000.0, cutoff_hz - 200.0);
    let after = mean_over(&bands, cutoff_hz + 200.0, (cutoff_hz + 1000.0).min(top_hz));
    let drop_db = match (below, after) {
        (Some(below), Some(after)) => below - after,
        _ => 0.0,
    };
    let above_db = bands
        .iter()
        .filter(|band| band.low_hz >= cutoff_hz + 400.0)
        .map(|band| band.over_floor_db)
        .fold(after.unwrap_or(0.0), f64::max);
    let shelf: Vec<&Band> =
        bands.iter().filter(|band| band.low_hz >= cutoff_hz - 2500.0 && band.high_hz <= cutoff_hz - 200.0).collect();
    let shelf_fraction = if shelf.is_empty() {
        0.0
    } else {
        shelf.iter().filter(|band| band.over_floor_db >= limits.content_db).count() as f64 / shelf.len() as f64
    };
    Some(Cutoff { cutoff_hz, drop_db, above_db, shelf_fraction })
}

fn khz(hz: f64) -> String {
    format!("{:.1} kHz", hz / 1000.0)
}

/// Judges a lossless file's spectrum. `bits` is its bit depth (the floor the band above a cut-off is compared
/// with); `stereo` whether the mid/side levels are half-sums of two channels.
pub fn judge_spectrum(
    spectrum: &LongTermSpectrum,
    bits: u32,
    stereo: bool,
    limits: &SpectrumThresholds,
) -> SpectrumJudgement {
    let floor_db = super::spectrum::quantisation_floor_db(bits, stereo);
    let nyquist = f64::from(spectrum.sample_rate_hz) / 2.0;
    // Encoders' cut-offs are all below 24 kHz; a high-rate file is judged on its audible band.
    let top_hz = nyquist.min(24_000.0) - spectrum.bin_hz * 4.0;
    let Some(mid) = find_cutoff(&spectrum.mid_db, spectrum.bin_hz, top_hz, floor_db, limits) else {
        return SpectrumJudgement {
            verdict: Verdict::Unknown,
            reason: "no content above the noise floor (silent or very quiet)".into(),
            confidence: 0.9,
            evidence: None,
        };
    };
    let side = spectrum
        .side_db
        .as_ref()
        .and_then(|side| find_cutoff(side, spectrum.bin_hz, top_hz, floor_db, limits))
        .map(|side| side.cutoff_hz);
    let evidence = Some(SpectrumEvidence {
        cutoff_hz: mid.cutoff_hz.round(),
        drop_db: (mid.drop_db * 10.0).round() / 10.0,
        above_cutoff_db: (mid.above_db * 10.0).round() / 10.0,
        side_cutoff_hz: side.map(f64::round),
    });
    let max_lossy = limits.max_lossy_cutoff_hz.min(nyquist - 1_000.0);
    if mid.cutoff_hz > max_lossy {
        // The higher the band's top rises above the floor, the surer.
        return SpectrumJudgement {
            verdict: Verdict::Genuine,
            reason: format!("full band: content up to {}", khz(mid.cutoff_hz)),
            confidence: 0.9,
            evidence,
        };
    }
    if mid.cutoff_hz < limits.min_lossy_cutoff_hz {
        return SpectrumJudgement {
            verdict: Verdict::Unknown,
            reason: format!("band-limited material: content ends at {}", khz(mid.cutoff_hz)),
            confidence: 0.5,
            evidence,
        };
    }
    let steep = mid.drop_db >= limits.min_drop_db;
    let empty_above = mid.above_db <= limits.max_above_db;
    let shelf = mid.shelf_fraction >= limits.min_shelf_fraction;
    if steep && empty_above && shelf {
        let depth = ((mid.drop_db - limits.min_drop_db) / 30.0).clamp(0.0, 1.0);
        let side_agrees = side.is_some_and(|side| side <= mid.cutoff_hz + 200.0);
        let confidence = (0.6 + 0.3 * depth + if side_agrees { 0.05 } else { 0.0 }).min(0.99);
        return SpectrumJudgement {
            verdict: Verdict::Suspect,
            reason: format!("lossy source, cut-off {}", khz(mid.cutoff_hz)),
            confidence: (confidence * 100.0).round() / 100.0,
            evidence,
        };
    }
    let why = if !steep {
        "fades out gradually"
    } else if !empty_above {
        "noise above it"
    } else {
        "no broadband shelf below it"
    };
    SpectrumJudgement {
        verdict: Verdict::Unknown,
        reason: format!("band-limited material: content ends at {} ({why})", khz(mid.cutoff_hz)),
        confidence: 0.5,
        evidence,
    }
}

/// Whether a file at 88.2 kHz or more carries nothing above the audible band: made from CD- or DAT-rate audio.
/// Genuine high-rate recordings keep at least the converter's noise up there; a resampler leaves a cliff just
/// above 20-22 kHz and, above it, only its own stop-band leakage far under the music.
pub fn is_upsampled(spectrum: &LongTermSpectrum, bits: u32, stereo: bool) -> bool {
    let nyquist = f64::from(spectrum.sample_rate_hz) / 2.0;
    if nyquist < 44_000.0 {
        return false;
    }
    let floor_db = super::spectrum::quantisation_floor_db(bits, stereo);
    let bands = bands(&spectrum.mid_db, spectrum.bin_hz, 500.0, nyquist * 0.95, floor_db);
    let (Some(audible), Some(edge), Some(ultrasonic)) = (
        mean_over(&bands, 1_000.0, 16_000.0),
        mean_over(&bands, 17_000.0, 20_000.0),
        mean_over(&bands, 24_000.0, nyquist * 0.9),
    ) else {
        return false;
    };
    let music = audible >= 30.0;
    let nothing_above = ultrasonic <= 10.0 || (audible - ultrasonic >= 60.0 && edge - ultrasonic >= 30.0);
    music && nothing_above
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 44_100;
    const BINS: usize = 2049;

    /// A spectrum built from a level function of frequency (dB over the 16-bit stereo floor).
    fn spectrum_of(level_over_floor: impl Fn(f64) -> f64) -> LongTermSpectrum {
        let floor = super::super::spectrum::quantisation_floor_db(16, true);
        let bin_hz = f64::from(RATE) / 4096.0;
        let mid_db = (0..BINS).map(|bin| floor + level_over_floor(bin as f64 * bin_hz)).collect();
        LongTermSpectrum { sample_rate_hz: RATE, bin_hz, mid_db, side_db: None, frames: 100 }
    }

    fn judge(level: impl Fn(f64) -> f64) -> SpectrumJudgement {
        judge_spectrum(&spectrum_of(level), 16, true, &SpectrumThresholds::default())
    }

    #[test]
    fn a_shelf_with_nothing_above_is_suspect_with_its_cutoff() {
        let judgement = judge(|hz| if hz < 16_000.0 { 60.0 - hz / 1000.0 } else { 0.0 });
        assert_eq!(judgement.verdict, Verdict::Suspect, "{judgement:?}");
        let cutoff = judgement.evidence.as_ref().unwrap().cutoff_hz;
        assert!((cutoff - 16_000.0).abs() < 60.0, "{cutoff}");
        assert!(judgement.reason.contains("16.0 kHz"), "{}", judgement.reason);
        assert!(judgement.confidence > 0.6);
    }

    #[test]
    fn full_band_is_genuine() {
        let judgement = judge(|hz| 50.0 - hz / 1000.0);
        assert_eq!(judgement.verdict, Verdict::Genuine, "{judgement:?}");
    }

    #[test]
    fn a_gradual_fade_into_the_floor_is_not_suspect() {
        // 6 dB per kHz from 40 dB at 10 kHz: reaches the floor near 16.7 kHz, no cliff.
        let judgement = judge(|hz| if hz < 10_000.0 { 40.0 } else { (40.0 - (hz - 10_000.0) * 0.006).max(0.0) });
        assert_eq!(judgement.verdict, Verdict::Unknown, "{judgement:?}");
        assert!(judgement.reason.contains("gradually"), "{}", judgement.reason);
    }

    #[test]
    fn a_cliff_with_noise_above_is_not_suspect() {
        let judgement = judge(|hz| if hz < 16_000.0 { 50.0 } else { 15.0 });
        assert_ne!(judgement.verdict, Verdict::Suspect, "{judgement:?}");
    }

    #[test]
    fn a_low_cutoff_is_band_limited_material() {
        let judgement = judge(|hz| if hz < 7_000.0 { 50.0 } else { 0.0 });
        assert_eq!(judgement.verdict, Verdict::Unknown, "{judgement:?}");
        assert!(judgement.reason.contains("7.0 kHz"), "{}", judgement.reason);
    }

    #[test]
    fn a_last_tone_is_not_a_shelf() {
        let judgement = judge(|hz| if (hz - 14_000.0).abs() < 30.0 || hz < 5_000.0 { 50.0 } else { 0.0 });
        assert_ne!(judgement.verdict, Verdict::Suspect, "{judgement:?}");
    }

    #[test]
    fn silence_is_unknown() {
        let judgement = judge(|_| 0.0);
        assert_eq!(judgement.verdict, Verdict::Unknown);
        assert!(judgement.evidence.is_none());
    }
}
