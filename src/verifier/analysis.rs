//! One pass over a file's decoded audio feeding every measurement at once: the long-term spectrum (transcode and
//! upsampling checks), EBU R128 loudness and true peak (ebur128), the acoustic fingerprint of the first two
//! minutes (a Rust port of Chromaprint), runs of digital silence with the level on both sides (zero-filled
//! downloads), and the low bits no sample ever sets (padding). Pure computation on the samples it is handed.

use ebur128::{EbuR128, Mode};
use rusty_chromaprint::{Configuration, Fingerprinter};

use super::decode::{PcmSink, StreamFacts};
use super::spectrum::{LongTermSpectrum, SpectrumAccumulator};
use crate::models::verification::ZeroRun;

/// Only the start of a track is fingerprinted (as AcoustID does): enough to tell two tracks apart.
pub const FINGERPRINT_SECS: u64 = 120;
/// The level on both sides of a silent run, averaged over this long, decides whether music was playing.
const EDGE_SECS: f64 = 0.05;
/// Full scale of the 32-bit samples the decoder hands over.
const FULL_SCALE: f32 = 2_147_483_648.0;

/// Which measurements to take (each costs time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurements {
    pub spectrum: bool,
    pub loudness: bool,
    pub fingerprint: bool,
}

/// What one pass measured.
pub struct Measured {
    pub spectrum: Option<LongTermSpectrum>,
    /// The loudness meter, kept whole so a set of tracks can be measured together (album gain).
    pub loudness: Option<EbuR128>,
    pub fingerprint: Vec<u32>,
    /// Interior runs of exact digital zero at least `min_zero_run_secs` long, with the level (dBFS) just before
    /// and just after.
    pub zero_runs: Vec<SilentRun>,
    /// Bitwise OR of every sample (full 32-bit scale): its trailing zeros are bits no sample uses.
    pub used_bits: u32,
    /// Frames per channel measured.
    pub frames: u64,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("spectrum_frames", &self.spectrum.as_ref().map(|spectrum| spectrum.frames))
            .field("fingerprint_len", &self.fingerprint.len())
            .field("zero_runs", &self.zero_runs)
            .field("used_bits", &self.used_bits)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// A run of digital silence found while decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentRun {
    pub run: ZeroRun,
    /// RMS level of the audio just before the run, dBFS.
    pub level_before_db: f64,
    /// RMS level just after, dBFS (`None` when the file ends with the run).
    pub level_after_db: Option<f64>,
    /// Whether the run starts at the first sample.
    pub at_start: bool,
}

/// The streaming analyser; hand it to `decode_file`, then call [`FileAnalyzer::finish`].
pub struct FileAnalyzer {
    wanted: Measurements,
    min_zero_run_secs: f64,
    channels: usize,
    sample_rate_hz: u32,
    spectrum: Option<SpectrumAccumulator>,
    loudness: Option<EbuR128>,
    fingerprinter: Option<Fingerprinter>,
    fingerprint_frames_left: u64,
    mid: Vec<f32>,
    side: Vec<f32>,
    pcm16: Vec<i16>,
    used_bits: u32,
    frames: u64,
    silence: SilenceTracker,
}

impl FileAnalyzer {
    pub fn new(wanted: Measurements, min_zero_run_secs: f64) -> Self {
        FileAnalyzer {
            wanted,
            min_zero_run_secs,
            channels: 0,
            sample_rate_hz: 0,
            spectrum: None,
            loudness: None,
            fingerprinter: None,
            fingerprint_frames_left: 0,
            mid: Vec::new(),
            side: Vec::new(),
            pcm16: Vec::new(),
            used_bits: 0,
            frames: 0,
            silence: SilenceTracker::default(),
        }
    }

    pub fn finish(mut self) -> Measured {
        let zero_runs = self.silence.finish(self.frames, self.sample_rate_hz);
        let fingerprint = match self.fingerprinter.as_mut() {
            Some(fingerprinter) => {
                fingerprinter.finish();
                fingerprinter.fingerprint().to_vec()
            }
            None => Vec::new(),
        };
        Measured {
            spectrum: self.spectrum.and_then(SpectrumAccumulator::finish),
            loudness: self.loudness,
            fingerprint,
            zero_runs: zero_runs.into_iter().filter(|run| run.run.length_secs >= self.min_zero_run_secs).collect(),
            used_bits: self.used_bits,
            frames: self.frames,
        }
    }
}

impl PcmSink for FileAnalyzer {
    fn begin(&mut self, facts: &StreamFacts) {
        self.channels = usize::try_from(facts.channels).unwrap_or(1).max(1);
        self.sample_rate_hz = facts.sample_rate_hz;
        if self.wanted.spectrum {
            self.spectrum = Some(SpectrumAccumulator::new(facts.sample_rate_hz, self.channels >= 2));
        }
        if self.wanted.loudness {
            // A meter that cannot be built (more than 64 channels, an absurd rate) simply measures nothing.
            self.loudness =
                EbuR128::new(facts.channels, facts.sample_rate_hz, Mode::I | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK).ok();
        }
        if self.wanted.fingerprint {
            let mut fingerprinter = Fingerprinter::new(&Configuration::preset_test2());
            if fingerprinter.start(facts.sample_rate_hz, facts.channels).is_ok() {
                self.fingerprinter = Some(fingerprinter);
                self.fingerprint_frames_left = FINGERPRINT_SECS * u64::from(facts.sample_rate_hz);
            }
        }
        self.silence.edge_frames = super::to_count(EDGE_SECS * f64::from(facts.sample_rate_hz)).max(1);
    }

    fn samples(&mut self, interleaved: &[i32]) {
        let channels = self.channels;
        let frames = interleaved.len() / channels;
        if frames == 0 {
            return;
        }
        let interleaved = &interleaved[..frames * channels];
        let mut used = 0u32;
        for sample in interleaved {
            used |= *sample as u32;
        }
        self.used_bits |= used;
        self.silence.push(interleaved, channels, self.frames);
        if let Some(spectrum) = self.spectrum.as_mut() {
            self.mid.clear();
            self.side.clear();
            if channels >= 2 {
                for frame in interleaved.chunks_exact(channels) {
                    let left = frame[0] as f32 / FULL_SCALE;
                    let right = frame[1] as f32 / FULL_SCALE;
                    self.mid.push((left + right) * 0.5);
                    self.side.push((left - right) * 0.5);
                }
            } else {
                self.mid.extend(interleaved.iter().map(|sample| *sample as f32 / FULL_SCALE));
            }
            spectrum.push(&self.mid, &self.side);
        }
        if let Some(meter) = self.loudness.as_mut() {
            if meter.add_frames_i32(interleaved).is_err() {
                self.loudness = None;
            }
        }
        if self.fingerprint_frames_left > 0 {
            if let Some(fingerprinter) = self.fingerprinter.as_mut() {
                let take = usize::try_from(self.fingerprint_frames_left.min(frames as u64)).unwrap_or(frames);
                self.pcm16.clear();
                // The top 16 bits of a full-scale 32-bit sample always fit an i16.
                self.pcm16.extend(
                    interleaved[..take * channels].iter().map(|sample| i16::try_from(sample >> 16).unwrap_or(0)),
                );
                fingerprinter.consume(&self.pcm16);
                self.fingerprint_frames_left -= take as u64;
            }
        }
        self.frames += frames as u64;
    }
}

/// Finds runs of frames whose every channel is exactly zero, and the RMS level around them.
#[derive(Debug, Default)]
struct SilenceTracker {
    edge_frames: u64,
    /// Mean square (full scale 1.0) of the last `edge_frames` frames, as an exponential average.
    recent_power: f64,
    run_start: Option<u64>,
    /// A finished run waiting for the level after it.
    closing: Option<(SilentRun, f64, u64)>,
    runs: Vec<SilentRun>,
    level_before_run: f64,
}

fn power_db(power: f64) -> f64 {
    10.0 * power.max(1e-20).log10()
}

impl SilenceTracker {
    fn push(&mut self, interleaved: &[i32], channels: usize, first_frame: u64) {
        let alpha = 1.0 / self.edge_frames.max(1) as f64;
        for (offset, frame) in interleaved.chunks_exact(channels).enumerate() {
            let index = first_frame + offset as u64;
            let silent = frame.iter().all(|sample| *sample == 0);
            let power = if silent {
                0.0
            } else {
                let first = f64::from(frame[0]) / f64::from(FULL_SCALE);
                first * first
            };
            if let Some((_, sum, count)) = self.closing.as_mut() {
                *sum += power;
                *count += 1;
                if *count >= self.edge_frames {
                    self.flush_closing();
                }
            }
            match (silent, self.run_start) {
                (true, None) => {
                    self.run_start = Some(index);
                    self.level_before_run = self.recent_power;
                }
                (false, Some(start)) => {
                    self.run_start = None;
                    self.flush_closing();
                    let run = SilentRun {
                        run: ZeroRun { start_secs: start as f64, length_secs: (index - start) as f64 },
                        level_before_db: power_db(self.level_before_run),
                        level_after_db: None,
                        at_start: start == 0,
                    };
                    self.closing = Some((run, power, 1));
                }
                _ => {}
            }
            self.recent_power += (power - self.recent_power) * alpha;
        }
    }

    fn flush_closing(&mut self) {
        if let Some((mut run, sum, count)) = self.closing.take() {
            run.level_after_db = Some(power_db(sum / count.max(1) as f64));
            self.runs.push(run);
        }
    }

    /// The runs with frame counts turned into seconds.
    fn finish(mut self, total_frames: u64, sample_rate_hz: u32) -> Vec<SilentRun> {
        self.flush_closing();
        if let Some(start) = self.run_start.take() {
            self.runs.push(SilentRun {
                run: ZeroRun { start_secs: start as f64, length_secs: total_frames.saturating_sub(start) as f64 },
                level_before_db: power_db(self.level_before_run),
                level_after_db: None,
                at_start: start == 0,
            });
        }
        let rate = f64::from(sample_rate_hz.max(1));
        for run in &mut self.runs {
            run.run.start_secs /= rate;
            run.run.length_secs /= rate;
        }
        self.runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(channels: u32) -> StreamFacts {
        StreamFacts {
            codec: "pcm_s16le".into(),
            lossless: true,
            sample_rate_hz: 1000,
            channels,
            bits_per_sample: Some(16),
            expected_frames: None,
            md5_stored: None,
        }
    }

    #[test]
    fn finds_an_interior_silent_run_with_music_on_both_sides() {
        let wanted = Measurements { spectrum: false, loudness: false, fingerprint: false };
        let mut analyzer = FileAnalyzer::new(wanted, 1.0);
        analyzer.begin(&facts(2));
        let loud = |frames: usize| -> Vec<i32> {
            (0..frames * 2).map(|idx| if idx % 4 < 2 { 1 << 29 } else { -(1 << 29) }).collect()
        };
        // 0.5 s silence at the start, 2 s music, 1.5 s zero, 1 s music, 0.2 s zero (too short).
        analyzer.samples(&vec![0; 500 * 2]);
        analyzer.samples(&loud(2000));
        analyzer.samples(&vec![0; 1500 * 2]);
        analyzer.samples(&loud(1000));
        analyzer.samples(&vec![0; 200 * 2]);
        let measured = analyzer.finish();
        assert_eq!(measured.frames, 5200);
        assert_eq!(measured.zero_runs.len(), 1, "{:?}", measured.zero_runs);
        let run = &measured.zero_runs[0];
        assert!((run.run.start_secs - 2.5).abs() < 1e-9 && (run.run.length_secs - 1.5).abs() < 1e-9, "{run:?}");
        // Quarter scale: -12 dBFS on both sides.
        assert!(
            (run.level_before_db + 12.04).abs() < 0.1 && (run.level_after_db.unwrap() + 12.04).abs() < 0.1,
            "{run:?}"
        );
        assert!(!run.at_start);
        // 1 << 29 and its negation set bit 29 and up: 29 low bits unused.
        assert_eq!(measured.used_bits.trailing_zeros(), 29);
    }
}
