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
use super::to_index;
use crate::models::verification::{SpectrumEvidence, Verdict};

/// The knobs of the transcode and upsampling checks (`[verifier]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumThresholds {
    /// Width of the bands the spectrum is averaged into.
    pub band_hz: f64,
    /// A band "has content" when it is this far above the floor; the cut-off is where the last such band ends.
    pub content_db: f64,
    /// The music just under a lossy cut-off (the shelf: the median of the 2 kHz below it) is at least this far
    /// above the floor; weaker material is not judged.
    pub min_shelf_db: f64,
    /// The band above the cut-off (its mean power) may rise at most this far over the floor and still be empty.
    pub max_above_db: f64,
    /// An encoder's edge: the fall from the shelf (less 6 dB) to the floor (plus 3 dB) is at least this steep, in
    /// dB per kHz ...
    pub min_slope_db_per_khz: f64,
    /// ... or the last 300 Hz before the floor still stand this far above it (a last cliff after a step).
    pub min_edge_db: f64,
    /// Below this a cut-off is band-limited material (an old recording, a telephone), not an encoder's choice.
    pub min_lossy_cutoff_hz: f64,
    /// A cut-off closer than this to the top of the band (the Nyquist frequency, at most 24 kHz) is an anti-alias
    /// filter, not an encoder's low-pass (20.95 kHz at 44.1 kHz).
    pub anti_alias_guard_hz: f64,
    /// Closer than this to the top of the band (20.3 kHz at 44.1 kHz) natural roll-offs and 320 kbit/s encoders
    /// meet: a cut-off there is a transcode only with a deep drop ...
    pub high_cutoff_guard_hz: f64,
    /// ... of at least this many dB from the shelf to the floor.
    pub high_cutoff_min_drop_db: f64,
    /// How much of the shelf must have content (an encoder's shelf is broadband; a last sine tone is not).
    pub min_shelf_fraction: f64,
    /// A cliff: the spectrum falls at least this far across 100 Hz (250 Hz windows either side) and never rises
    /// again above it; an encoder that keeps a thinned-out band above its low-pass leaves one.
    pub min_cliff_db: f64,
}

impl Default for SpectrumThresholds {
    fn default() -> Self {
        SpectrumThresholds {
            band_hz: 200.0,
            content_db: 10.0,
            min_shelf_db: 15.0,
            max_above_db: 6.0,
            min_slope_db_per_khz: 30.0,
            min_edge_db: 13.0,
            min_lossy_cutoff_hz: 11_000.0,
            anti_alias_guard_hz: 1_100.0,
            high_cutoff_guard_hz: 1_750.0,
            min_cliff_db: 15.0,
            high_cutoff_min_drop_db: 35.0,
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

/// One band of the spectrum and its mean level over the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Band {
    low_hz: f64,
    high_hz: f64,
    over_floor_db: f64,
}

fn power_mean_db(levels_db: &[f64]) -> f64 {
    let power: f64 = levels_db.iter().map(|db| 10f64.powf(db / 10.0)).sum::<f64>() / levels_db.len().max(1) as f64;
    10.0 * power.max(1e-30).log10()
}

/// Averages `levels_db` (per bin) in power over bands of `band_hz`, from 20 Hz up to `top_hz`, relative to
/// `floor_db`.
fn bands(levels_db: &[f64], bin_hz: f64, band_hz: f64, top_hz: f64, floor_db: f64) -> Vec<Band> {
    let mut bands = Vec::new();
    let mut low_hz = 20.0;
    while low_hz + band_hz <= top_hz + 1e-9 {
        let first = to_index((low_hz / bin_hz).ceil());
        let last = to_index(((low_hz + band_hz) / bin_hz).floor()).min(levels_db.len().saturating_sub(1));
        if first <= last {
            let level = power_mean_db(&levels_db[first..=last]);
            bands.push(Band { low_hz, high_hz: low_hz + band_hz, over_floor_db: level - floor_db });
        }
        low_hz += band_hz;
    }
    bands
}

fn in_range(bands: &[Band], low_hz: f64, high_hz: f64) -> Vec<f64> {
    bands
        .iter()
        .filter(|band| band.low_hz >= low_hz - 1e-9 && band.high_hz <= high_hz + 1e-9)
        .map(|band| band.over_floor_db)
        .collect()
}

fn mean_over(bands: &[Band], low_hz: f64, high_hz: f64) -> Option<f64> {
    let inside = in_range(bands, low_hz, high_hz);
    (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
}

/// Per-bin levels over the floor, smoothed in power over about 100 Hz, up to `top_hz`.
fn smoothed_levels(levels_db: &[f64], bin_hz: f64, top_hz: f64, floor_db: f64) -> Vec<f64> {
    let half = to_index((50.0 / bin_hz).round()).max(1);
    let last = to_index(top_hz / bin_hz).min(levels_db.len().saturating_sub(1));
    let power: Vec<f64> = levels_db[..=last].iter().map(|db| 10f64.powf(db / 10.0)).collect();
    (0..=last)
        .map(|bin| {
            let from = bin.saturating_sub(half);
            let to = (bin + half).min(last);
            let mean = power[from..=to].iter().sum::<f64>() / (to - from + 1) as f64;
            10.0 * mean.max(1e-30).log10() - floor_db
        })
        .collect()
}

/// What the cut-off analysis of one channel found (levels in dB over the floor).
#[derive(Debug, Clone, PartialEq)]
struct Cutoff {
    /// Where the last band with content ends.
    cutoff_hz: f64,
    /// Median level of the 2 kHz under the cut-off.
    shelf_db: f64,
    shelf_fraction: f64,
    /// Mean power of everything above the cut-off (0 when nothing is left above it).
    above_db: f64,
    /// From the shelf less 6 dB to the floor (the above level plus 3 dB).
    transition_hz: f64,
    /// How far above the floor the spectrum stands 300 Hz before it reaches the floor.
    edge_db: f64,
    /// The steepest step down in the lossy range after which nothing rises again.
    cliff: Option<Cliff>,
}

/// A step down in the spectrum (levels over the floor).
#[derive(Debug, Clone, PartialEq)]
struct Cliff {
    cliff_hz: f64,
    step_db: f64,
    before_db: f64,
    after_db: f64,
    /// How much of the 2 kHz under it has content.
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
    let smoothed = smoothed_levels(levels_db, bin_hz, top_hz, floor_db);
    let top_bin = smoothed.len().saturating_sub(1);
    let band_top_bin = to_index(bands[last].high_hz / bin_hz).min(top_bin);
    let cutoff_bin = (0..=band_top_bin).rev().find(|bin| smoothed[*bin] >= limits.content_db).unwrap_or(band_top_bin);
    let cutoff_hz = (cutoff_bin as f64 + 0.5) * bin_hz;
    let mut shelf = in_range(&bands, cutoff_hz - 2000.0, cutoff_hz - 300.0);
    let shelf_fraction = if shelf.is_empty() {
        0.0
    } else {
        shelf.iter().filter(|level| **level >= limits.content_db).count() as f64 / shelf.len() as f64
    };
    shelf.sort_by(f64::total_cmp);
    let shelf_db = shelf.get(shelf.len() / 2).copied().unwrap_or(0.0);
    let above_levels: Vec<f64> =
        bands.iter().filter(|band| band.low_hz >= cutoff_hz + 400.0).map(|band| band.over_floor_db).collect();
    let above_db = if above_levels.is_empty() {
        let tail: Vec<f64> = smoothed[cutoff_bin.min(top_bin)..].to_vec();
        tail.iter().copied().fold(f64::INFINITY, f64::min).max(0.0)
    } else {
        power_mean_db(&above_levels).max(0.0)
    };
    let knee_bin = (0..=cutoff_bin).rev().find(|bin| smoothed[*bin] >= shelf_db - 6.0).unwrap_or(cutoff_bin);
    let floor_bin = (knee_bin..=top_bin).find(|bin| smoothed[*bin] <= above_db + 3.0).unwrap_or(top_bin);
    let transition_hz = (floor_bin - knee_bin) as f64 * bin_hz;
    let cliff = find_cliff(&smoothed, bin_hz, limits.min_lossy_cutoff_hz, top_hz).map(
        |(cliff_hz, step_db, before_db, after_db)| {
            let shelf: Vec<f64> = in_range(&bands, cliff_hz - 2000.0, cliff_hz - 300.0);
            let broad =
                shelf.iter().filter(|level| **level >= limits.content_db).count() as f64 / shelf.len().max(1) as f64;
            Cliff { cliff_hz, step_db, before_db, after_db, shelf_fraction: broad }
        },
    );
    let edge_bin = floor_bin.saturating_sub(to_index(300.0 / bin_hz));
    let edge_db = smoothed[edge_bin] - above_db;
    Some(Cutoff { cutoff_hz, shelf_db, shelf_fraction, above_db, transition_hz, edge_db, cliff })
}

/// The steepest step down in `[low_hz, high_hz]` after which the spectrum never rises again: (frequency, step in
/// dB, level before, level after). Levels are the smoothed per-bin levels over the floor.
fn find_cliff(smoothed: &[f64], bin_hz: f64, low_hz: f64, high_hz: f64) -> Option<(f64, f64, f64, f64)> {
    let window = to_index((250.0 / bin_hz).round()).max(1);
    let gap = to_index((50.0 / bin_hz).round()).max(1);
    let mean = |from: usize, to: usize| -> f64 {
        let slice = &smoothed[from..to.min(smoothed.len())];
        power_mean_db(slice)
    };
    let first = to_index(low_hz / bin_hz).max(window + gap);
    let last = to_index(high_hz / bin_hz).min(smoothed.len().saturating_sub(window + gap + 1));
    // The highest level at or above each bin: "never rises again" in one lookup.
    let mut ceiling = vec![f64::NEG_INFINITY; smoothed.len() + 1];
    for bin in (0..smoothed.len()).rev() {
        ceiling[bin] = ceiling[bin + 1].max(smoothed[bin]);
    }
    let mut best: Option<(f64, f64, f64, f64)> = None;
    for bin in first..=last {
        let before = mean(bin - gap - window, bin - gap);
        let after = mean(bin + gap, bin + gap + window);
        let step = before - after;
        if step <= best.map_or(0.0, |best| best.1) || ceiling[bin + gap + window] > after + 4.0 {
            continue;
        }
        best = Some(((bin as f64 + 0.5) * bin_hz, step, before, after));
    }
    best
}

fn khz(hz: f64) -> String {
    format!("{:.1} kHz", hz / 1000.0)
}

/// The floor the spectrum is measured against: the rounding noise of the bits in use, for a mid channel made of
/// two channels with independent noise (3 dB lower) unless the side channel is empty (both channels the same).
/// Above 16 bits that floor is far under anything real: the 16-bit floor, or the quietest kilohertz above 10 kHz
/// (plus a margin) when that is higher, stands in for it.
fn floor_for(spectrum: &LongTermSpectrum, bits: u32, top_hz: f64) -> f64 {
    let mono_floor = super::spectrum::quantisation_floor_db(bits, false);
    let independent_channels = spectrum.side_db.as_ref().is_some_and(|side| {
        let first = to_index(1000.0 / spectrum.bin_hz);
        let last = to_index(10_000.0 / spectrum.bin_hz).min(side.len().saturating_sub(1));
        first < last && power_mean_db(&side[first..last]) >= mono_floor - 10.0
    });
    let floor = super::spectrum::quantisation_floor_db(bits, independent_channels);
    if bits <= 16 {
        return floor;
    }
    // The quietest kilohertz above 10 kHz, and a margin for how much a decoder's leakage wanders from band to band.
    let mut quiet: Vec<f64> = bands(&spectrum.mid_db, spectrum.bin_hz, 200.0, top_hz, 0.0)
        .iter()
        .filter(|band| band.low_hz >= 10_000.0)
        .map(|band| band.over_floor_db)
        .collect();
    quiet.sort_by(f64::total_cmp);
    quiet.truncate(5);
    // What lies under the 16-bit floor is no music anyone mastered: a decoder's leakage, a converter's noise.
    let sixteen_bits = super::spectrum::quantisation_floor_db(16, independent_channels);
    if quiet.is_empty() {
        sixteen_bits
    } else {
        sixteen_bits.max(power_mean_db(&quiet) + 6.0)
    }
}

/// Judges a lossless file's spectrum. `bits` is the bit depth in use (the floor the band above a cut-off is
/// compared with).
pub fn judge_spectrum(spectrum: &LongTermSpectrum, bits: u32, limits: &SpectrumThresholds) -> SpectrumJudgement {
    let nyquist = f64::from(spectrum.sample_rate_hz) / 2.0;
    // Encoders' cut-offs are all below 24 kHz; a high-rate file is judged on its audible band.
    let top_hz = nyquist.min(24_000.0) - spectrum.bin_hz * 4.0;
    let floor_db = floor_for(spectrum, bits, top_hz);
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
    let drop_db = mid.shelf_db - mid.above_db;
    let evidence = Some(SpectrumEvidence {
        cutoff_hz: mid.cutoff_hz.round(),
        drop_db: (drop_db * 10.0).round() / 10.0,
        above_cutoff_db: (mid.above_db * 10.0).round() / 10.0,
        transition_hz: mid.transition_hz.round(),
        side_cutoff_hz: side.map(f64::round),
    });
    let band_top = nyquist.min(24_000.0);
    let max_lossy = band_top - limits.anti_alias_guard_hz;
    let high_cutoff = band_top - limits.high_cutoff_guard_hz;
    // A cliff inside the band: the encoder's low-pass with a thinned-out band left above it, which ends in an
    // empty top of the band (a recording's noise would go on to the top).
    let empties = mid.cutoff_hz <= max_lossy && mid.above_db <= limits.max_above_db;
    let cliff_suspect = mid.cliff.as_ref().filter(|cliff| {
        empties
            && cliff.cliff_hz <= max_lossy
            && cliff.step_db >= limits.min_cliff_db
            && cliff.before_db >= limits.min_shelf_db
            && cliff.shelf_fraction >= limits.min_shelf_fraction
            && (cliff.cliff_hz <= high_cutoff || cliff.step_db >= limits.high_cutoff_min_drop_db)
    });
    if let Some(cliff) = cliff_suspect.filter(|cliff| cliff.cliff_hz + 300.0 < mid.cutoff_hz) {
        let depth = ((cliff.step_db - limits.min_cliff_db) / 30.0).clamp(0.0, 1.0);
        return SpectrumJudgement {
            verdict: Verdict::Suspect,
            reason: format!("lossy source, cut-off {}", khz(cliff.cliff_hz)),
            confidence: ((0.6 + 0.3 * depth) * 100.0).round() / 100.0,
            evidence: Some(SpectrumEvidence {
                cutoff_hz: cliff.cliff_hz.round(),
                drop_db: ((cliff.before_db - mid.above_db) * 10.0).round() / 10.0,
                above_cutoff_db: (cliff.after_db * 10.0).round() / 10.0,
                transition_hz: 100.0,
                side_cutoff_hz: side.map(f64::round),
            }),
        };
    }
    if mid.cutoff_hz > max_lossy {
        return SpectrumJudgement {
            verdict: Verdict::Genuine,
            reason: format!("full band: content up to {}", khz(mid.cutoff_hz)),
            confidence: if mid.cutoff_hz >= nyquist - 500.0 { 0.9 } else { 0.8 },
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
    let slope = (mid.shelf_db - 6.0 - (mid.above_db + 3.0)) / (mid.transition_hz.max(1.0) / 1000.0);
    let empty_above = mid.above_db <= limits.max_above_db;
    let shelf = mid.shelf_db >= limits.min_shelf_db && mid.shelf_fraction >= limits.min_shelf_fraction;
    let steep = slope >= limits.min_slope_db_per_khz || mid.edge_db >= limits.min_edge_db;
    let deep_enough = mid.cutoff_hz <= high_cutoff || drop_db >= limits.high_cutoff_min_drop_db;
    if (empty_above && shelf && steep && deep_enough) || cliff_suspect.is_some() {
        let depth = ((drop_db - limits.min_shelf_db) / 30.0).clamp(0.0, 1.0);
        let side_agrees = side.is_some_and(|side| side <= mid.cutoff_hz + 200.0);
        let confidence = (0.6 + 0.3 * depth + if side_agrees { 0.05 } else { 0.0 }).min(0.99);
        return SpectrumJudgement {
            verdict: Verdict::Suspect,
            reason: format!("lossy source, cut-off {}", khz(mid.cutoff_hz)),
            confidence: (confidence * 100.0).round() / 100.0,
            evidence,
        };
    }
    let why = if !shelf {
        "too little content under it to judge"
    } else if !empty_above {
        "noise above it"
    } else if !steep {
        "fades out gradually"
    } else {
        "a shallow natural roll-off near the top of the band"
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
        let floor = super::super::spectrum::quantisation_floor_db(16, false);
        let bin_hz = f64::from(RATE) / 4096.0;
        let mid_db = (0..BINS).map(|bin| floor + level_over_floor(bin as f64 * bin_hz)).collect();
        LongTermSpectrum { sample_rate_hz: RATE, bin_hz, mid_db, side_db: None, frames: 100 }
    }

    fn judge(level: impl Fn(f64) -> f64) -> SpectrumJudgement {
        judge_spectrum(&spectrum_of(level), 16, &SpectrumThresholds::default())
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
    fn a_cliff_before_a_thinned_band_that_empties_is_suspect() {
        // 30 dB of music, a 17 dB step at 17.1 kHz, a thinned band fading out, nothing from 19.5 kHz.
        let judgement = judge(|hz| match hz {
            hz if hz < 17_100.0 => 30.0,
            hz if hz < 19_500.0 => 13.0 - (hz - 17_100.0) / 200.0,
            _ => 0.0,
        });
        assert_eq!(judgement.verdict, Verdict::Suspect, "{judgement:?}");
        assert!(judgement.reason.contains("17.1 kHz"), "{}", judgement.reason);
    }

    #[test]
    fn a_natural_roll_off_near_the_top_of_the_band_is_not_suspect() {
        // 22 dB of music falling 20 dB per kHz from 20.2 kHz: an anti-alias filter, not an encoder.
        let judgement = judge(|hz| if hz < 20_200.0 { 22.0 } else { (22.0 - (hz - 20_200.0) * 0.02).max(0.0) });
        assert_ne!(judgement.verdict, Verdict::Suspect, "{judgement:?}");
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
