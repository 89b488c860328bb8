//! The long-term spectrum of a file: Hann-windowed FFTs (realfft) over the whole decoded audio, half-overlapping,
//! averaged in power, for the mid channel ((L+R)/2) and the side channel ((L-R)/2). Pure computation on samples
//! it is handed; it never reads a file.
//!
//! Levels are normalised so that white noise of variance s² reads s² in every bin: the quantisation floor of a
//! bit depth is then a known number ([`quantisation_floor_db`]) to compare the top of the band with.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// FFT length for a sample rate: about 10.8 Hz per bin at 44.1/48 kHz and the same resolution at higher rates.
pub fn fft_len_for(sample_rate_hz: u32) -> usize {
    match sample_rate_hz {
        0..=50_000 => 4096,
        50_001..=100_000 => 8192,
        _ => 16384,
    }
}

/// The level, in dB relative to full scale, of the rounding noise of `bits`-bit samples in one bin of a mid or side
/// channel (`stereo`) or of the only channel.
pub fn quantisation_floor_db(bits: u32, stereo: bool) -> f64 {
    let step = 2f64.powi(1 - i32::try_from(bits.clamp(2, 32)).unwrap_or(16));
    let variance = step * step / 12.0;
    // Mid and side are half-sums: the noise of the two channels adds in power and is halved in amplitude.
    let variance = if stereo { variance / 2.0 } else { variance };
    10.0 * variance.log10()
}

/// Accumulates the averaged power spectra of a stream of mid/side samples.
pub struct SpectrumAccumulator {
    sample_rate_hz: u32,
    fft_len: usize,
    hop: usize,
    plan: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    window_power: f64,
    with_side: bool,
    pending_mid: Vec<f32>,
    pending_side: Vec<f32>,
    input: Vec<f32>,
    output: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    mid_power: Vec<f64>,
    side_power: Vec<f64>,
    frames: u64,
}

impl std::fmt::Debug for SpectrumAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectrumAccumulator")
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("fft_len", &self.fft_len)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl SpectrumAccumulator {
    /// An accumulator for audio at `sample_rate_hz`; `with_side` for files with two or more channels.
    pub fn new(sample_rate_hz: u32, with_side: bool) -> Self {
        let fft_len = fft_len_for(sample_rate_hz);
        let plan = RealFftPlanner::<f32>::new().plan_fft_forward(fft_len);
        let window: Vec<f32> = (0..fft_len)
            .map(|idx| {
                let phase = 2.0 * std::f64::consts::PI * idx as f64 / fft_len as f64;
                crate::verifier::to_f32(0.5 - 0.5 * phase.cos())
            })
            .collect();
        let window_power = window.iter().map(|w| f64::from(*w) * f64::from(*w)).sum();
        let input = plan.make_input_vec();
        let output = plan.make_output_vec();
        let scratch = plan.make_scratch_vec();
        let bins = output.len();
        SpectrumAccumulator {
            sample_rate_hz,
            fft_len,
            hop: fft_len / 2,
            plan,
            window,
            window_power,
            with_side,
            pending_mid: Vec::with_capacity(fft_len * 2),
            pending_side: Vec::with_capacity(if with_side { fft_len * 2 } else { 0 }),
            input,
            output,
            scratch,
            mid_power: vec![0.0; bins],
            side_power: vec![0.0; if with_side { bins } else { 0 }],
            frames: 0,
        }
    }

    /// Adds samples; `side` is ignored (and may be empty) without a side channel.
    pub fn push(&mut self, mid: &[f32], side: &[f32]) {
        self.pending_mid.extend_from_slice(mid);
        if self.with_side {
            self.pending_side.extend_from_slice(side);
        }
        let mut start = 0;
        while self.pending_mid.len() - start >= self.fft_len {
            self.transform_mid(start);
            if self.with_side {
                self.transform_side(start);
            }
            self.frames += 1;
            start += self.hop;
        }
        if start > 0 {
            self.pending_mid.drain(..start);
            if self.with_side {
                self.pending_side.drain(..start.min(self.pending_side.len()));
            }
        }
    }

    fn transform_mid(&mut self, start: usize) {
        let frame = &self.pending_mid[start..start + self.fft_len];
        transform_into(
            frame,
            &self.window,
            &*self.plan,
            &mut self.input,
            &mut self.output,
            &mut self.scratch,
            &mut self.mid_power,
        );
    }

    fn transform_side(&mut self, start: usize) {
        let end = (start + self.fft_len).min(self.pending_side.len());
        let frame = &self.pending_side[start.min(end)..end];
        transform_into(
            frame,
            &self.window,
            &*self.plan,
            &mut self.input,
            &mut self.output,
            &mut self.scratch,
            &mut self.side_power,
        );
    }

    /// The averaged spectra; `None` when the audio was shorter than one FFT frame.
    pub fn finish(self) -> Option<LongTermSpectrum> {
        if self.frames == 0 {
            return None;
        }
        let scale = 1.0 / (self.frames as f64 * self.window_power);
        let to_db =
            |power: &[f64]| -> Vec<f64> { power.iter().map(|p| 10.0 * (p * scale).max(1e-30).log10()).collect() };
        let side_db = if self.with_side { Some(to_db(&self.side_power)) } else { None };
        Some(LongTermSpectrum {
            sample_rate_hz: self.sample_rate_hz,
            bin_hz: f64::from(self.sample_rate_hz) / self.fft_len as f64,
            mid_db: to_db(&self.mid_power),
            side_db,
            frames: self.frames,
        })
    }
}

fn transform_into(
    frame: &[f32],
    window: &[f32],
    plan: &dyn RealToComplex<f32>,
    input: &mut [f32],
    output: &mut [Complex<f32>],
    scratch: &mut [Complex<f32>],
    power: &mut [f64],
) {
    for ((slot, sample), weight) in input.iter_mut().zip(frame.iter().chain(std::iter::repeat(&0.0))).zip(window) {
        *slot = sample * weight;
    }
    if plan.process_with_scratch(input, output, scratch).is_err() {
        return;
    }
    for (sum, value) in power.iter_mut().zip(output.iter()) {
        *sum += f64::from(value.norm_sqr());
    }
}

/// Averaged power spectra of a whole file, in dB relative to full scale per bin.
#[derive(Debug, Clone, PartialEq)]
pub struct LongTermSpectrum {
    pub sample_rate_hz: u32,
    /// Width of one bin.
    pub bin_hz: f64,
    pub mid_db: Vec<f64>,
    /// `None` for mono files.
    pub side_db: Option<Vec<f64>>,
    /// How many FFT frames were averaged.
    pub frames: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, amplitude: f32, seed: u64) -> Vec<f32> {
        // xorshift: deterministic white noise in [-amplitude, amplitude).
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                crate::verifier::to_f32((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
            })
            .collect()
    }

    #[test]
    fn white_noise_reads_its_variance_in_every_bin() {
        let amplitude = 0.1f32;
        let samples = noise(44_100 * 4, amplitude, 7);
        let mut accumulator = SpectrumAccumulator::new(44_100, false);
        accumulator.push(&samples, &[]);
        let spectrum = accumulator.finish().unwrap();
        // Uniform noise in [-a, a): variance a²/3.
        let expected = 10.0 * (f64::from(amplitude).powi(2) / 3.0).log10();
        let inner = &spectrum.mid_db[10..spectrum.mid_db.len() - 10];
        let mean = inner.iter().sum::<f64>() / inner.len() as f64;
        assert!((mean - expected).abs() < 0.3, "mean {mean:.2} dB, expected {expected:.2} dB");
        assert!(spectrum.side_db.is_none());
    }

    #[test]
    fn a_tone_lands_in_its_bin_and_pushing_in_pieces_changes_nothing() {
        let rate = 48_000u32;
        let tone: Vec<f32> = (0..rate as usize * 2)
            .map(|idx| (2.0 * std::f32::consts::PI * 1000.0 * idx as f32 / rate as f32).sin())
            .collect();
        let mut whole = SpectrumAccumulator::new(rate, true);
        whole.push(&tone, &tone);
        let mut pieces = SpectrumAccumulator::new(rate, true);
        for (mid, side) in tone.chunks(1000).zip(tone.chunks(1000)) {
            pieces.push(mid, side);
        }
        let whole = whole.finish().unwrap();
        let pieces = pieces.finish().unwrap();
        assert_eq!(whole.frames, pieces.frames);
        for (a, b) in whole.mid_db.iter().zip(&pieces.mid_db) {
            assert!((a - b).abs() < 1e-6);
        }
        let peak = whole.mid_db.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!((peak as f64 * whole.bin_hz - 1000.0).abs() < whole.bin_hz);
    }

    #[test]
    fn floor_of_sixteen_bits() {
        assert!((quantisation_floor_db(16, false) - (-101.1)).abs() < 0.1);
        assert!((quantisation_floor_db(16, true) - (-104.1)).abs() < 0.1);
        assert!(quantisation_floor_db(24, false) < -148.0);
    }
}
