//! Durations from file sizes (pure): MP3 CBR is exact (bytes * 8 / bitrate, minus a small tag); FLAC, V0/V2 and AAC
//! only give ranges, so a candidate's own bytes-per-second is fitted on its confidently named files and each file is
//! checked relative to it, with the format's uncertainty. It never claims more precision than the format allows.

use crate::release::{AudioFormat, VbrPreset};

use super::mapping::AudioFile;

/// A size-derived duration range in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationEstimate {
    pub low_secs: f64,
    pub high_secs: f64,
    /// True when the size determines the duration (CBR, DSD).
    pub exact: bool,
}

/// Typical bitrate range of a format in kbit/s: `(low, high)`.
pub fn bitrate_range_kbps(
    format: AudioFormat,
    bit_depth: Option<u8>,
    sample_rate_hz: Option<u32>,
    vbr: Option<VbrPreset>,
) -> (f64, f64) {
    match format {
        AudioFormat::Flac | AudioFormat::Alac | AudioFormat::Ape | AudioFormat::Wavpack => {
            match (bit_depth, sample_rate_hz) {
                (Some(24), Some(rate)) if rate >= 176_000 => (5000.0, 7800.0),
                (Some(24), Some(rate)) if rate >= 88_000 => (2300.0, 3900.0),
                (Some(24), Some(rate)) if rate >= 48_000 => (1400.0, 2150.0),
                (Some(24), _) => (1300.0, 3900.0),
                _ => (420.0, 1120.0),
            }
        }
        AudioFormat::Wav | AudioFormat::Aiff => (1411.0, 1411.2),
        AudioFormat::Dsd => (5644.8, 5644.8),
        AudioFormat::Mp3 => match vbr {
            Some(VbrPreset::V0) => (226.0, 262.0),
            Some(VbrPreset::V1) => (190.0, 250.0),
            Some(VbrPreset::V2) => (172.0, 205.0),
            None => (96.0, 330.0),
        },
        AudioFormat::Aac => (240.0, 270.0),
        AudioFormat::Ogg | AudioFormat::Opus => (96.0, 500.0),
    }
}

/// The duration a file of `size_bytes` can have: exact for MP3 CBR (`cbr_kbps`) and DSD64, a range otherwise.
pub fn estimate_duration_from_size(
    size_bytes: u64,
    format: AudioFormat,
    cbr_kbps: Option<u32>,
    bit_depth: Option<u8>,
    sample_rate_hz: Option<u32>,
    vbr: Option<VbrPreset>,
) -> DurationEstimate {
    let bits = size_bytes as f64 * 8.0;
    if let (AudioFormat::Mp3, Some(kbps), None) = (format, cbr_kbps, vbr) {
        let kbps = f64::from(kbps.max(8));
        let secs = (size_bytes.saturating_sub(4_096) as f64 * 8.0) / (kbps * 1000.0);
        return DurationEstimate { low_secs: secs, high_secs: secs + 8_192.0 * 8.0 / (kbps * 1000.0), exact: true };
    }
    let (low_kbps, high_kbps) = bitrate_range_kbps(format, bit_depth, sample_rate_hz, vbr);
    DurationEstimate {
        low_secs: bits / (high_kbps * 1000.0),
        high_secs: bits / (low_kbps * 1000.0),
        exact: (high_kbps - low_kbps).abs() < 1.0,
    }
}

/// How a file's size-derived duration compares with the catalog's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DurationCheck {
    /// No estimate possible (unknown bitrate and nothing to fit on).
    Unknown,
    /// `estimated_secs` from the size; `exact` for CBR; `deviation` = estimated / catalog - 1.
    Checked { estimated_secs: f64, deviation: f64, exact: bool, catalog_secs: f64 },
}

impl DurationCheck {
    fn tolerance_secs(catalog_secs: f64) -> f64 {
        4.0 + 0.02 * catalog_secs
    }

    /// Agreement in [0, 1] used as an assignment weight (0.5 when unknown).
    pub fn agreement(&self) -> f64 {
        match *self {
            DurationCheck::Unknown => 0.5,
            DurationCheck::Checked { estimated_secs, deviation, exact: true, catalog_secs } => {
                let _ = deviation;
                let diff = (estimated_secs - catalog_secs).abs();
                1.0 - (diff / (3.0 * Self::tolerance_secs(catalog_secs))).min(1.0)
            }
            DurationCheck::Checked { deviation, exact: false, .. } => 1.0 - (deviation.abs() / 0.5).min(1.0),
        }
    }

    /// Within the format's uncertainty (what any correct file satisfies).
    pub fn is_consistent(&self) -> bool {
        match *self {
            DurationCheck::Unknown => true,
            DurationCheck::Checked { estimated_secs, exact: true, catalog_secs, .. } => {
                (estimated_secs - catalog_secs).abs() <= Self::tolerance_secs(catalog_secs)
            }
            DurationCheck::Checked { deviation, exact: false, .. } => deviation.abs() <= 0.20,
        }
    }

    /// Tight agreement: strong enough to identify a track whose name says nothing.
    pub fn is_tight(&self) -> bool {
        match *self {
            DurationCheck::Unknown => false,
            DurationCheck::Checked { exact: true, .. } => self.is_consistent(),
            DurationCheck::Checked { deviation, exact: false, .. } => deviation.abs() <= 0.12,
        }
    }

    /// The file is much shorter than the catalog track: the track cannot be produced from it (split hidden track,
    /// edit, another recording).
    pub fn is_too_short(&self) -> bool {
        match *self {
            DurationCheck::Unknown => false,
            DurationCheck::Checked { deviation, .. } => deviation < -0.30,
        }
    }

    /// The file is much longer than the catalog track (a hidden track after silence, a long fade).
    pub fn is_too_long(&self) -> bool {
        match *self {
            DurationCheck::Unknown => false,
            DurationCheck::Checked { deviation, .. } => deviation > 0.30,
        }
    }

    /// `(catalog, estimated)` seconds, when checked.
    pub fn seconds(&self) -> Option<(f64, f64)> {
        match *self {
            DurationCheck::Unknown => None,
            DurationCheck::Checked { estimated_secs, catalog_secs, .. } => Some((catalog_secs, estimated_secs)),
        }
    }
}

/// A candidate's size-to-duration model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationModel {
    /// MP3 CBR bitrate named by the release (exact durations).
    pub cbr_kbps: Option<u32>,
    /// Bytes per second fitted on confidently mapped files (VBR and lossless).
    pub bytes_per_sec: Option<f64>,
}

impl DurationModel {
    /// Fits the model: `pairs` are `(size_bytes, catalog_secs)` of confidently mapped non-CBR files.
    pub fn fit(cbr_kbps: Option<u32>, pairs: &[(u64, f64)]) -> DurationModel {
        let mut rates: Vec<f64> = pairs
            .iter()
            .filter(|(size, secs)| *size > 0 && secs.is_finite() && *secs >= 1.0)
            .map(|(size, secs)| *size as f64 / secs)
            .collect();
        rates.sort_by(f64::total_cmp);
        let bytes_per_sec = if rates.len() >= 2 { rates.get(rates.len() / 2).copied() } else { None };
        DurationModel { cbr_kbps, bytes_per_sec }
    }

    /// Compares one file's size-derived duration with `catalog_secs`.
    pub fn check(&self, file: &AudioFile, catalog_secs: f64) -> DurationCheck {
        if !(catalog_secs.is_finite() && catalog_secs > 0.0) || file.size_bytes == 0 {
            return DurationCheck::Unknown;
        }
        if let (AudioFormat::Mp3, Some(kbps)) = (file.format, self.cbr_kbps) {
            let estimate = estimate_duration_from_size(file.size_bytes, file.format, Some(kbps), None, None, None);
            let estimated_secs = estimate.low_secs;
            return DurationCheck::Checked {
                estimated_secs,
                deviation: estimated_secs / catalog_secs - 1.0,
                exact: true,
                catalog_secs,
            };
        }
        match self.bytes_per_sec {
            Some(rate) if rate > 0.0 => {
                let estimated_secs = file.size_bytes as f64 / rate;
                DurationCheck::Checked {
                    estimated_secs,
                    deviation: estimated_secs / catalog_secs - 1.0,
                    exact: false,
                    catalog_secs,
                }
            }
            _ => DurationCheck::Unknown,
        }
    }

    /// The fitted bitrate in kbit/s.
    pub fn fitted_kbps(&self) -> Option<f64> {
        self.bytes_per_sec.map(|rate| rate * 8.0 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, format: AudioFormat) -> AudioFile {
        AudioFile {
            path: "x".into(),
            size_bytes: size,
            format,
            disc: None,
            track: None,
            side: None,
            key: super::super::mapping::TitleKey::empty(),
            informative: true,
            named: true,
            dir: String::new(),
        }
    }

    #[test]
    fn mp3_cbr_is_exact() {
        // 240 s at 320 kbps = 9,600,000 bytes, plus a 5 KB tag.
        let e = estimate_duration_from_size(9_605_000, AudioFormat::Mp3, Some(320), None, None, None);
        assert!(e.exact);
        assert!((e.low_secs - 240.0).abs() < 0.3, "{e:?}");
        let e = estimate_duration_from_size(3_840_000 + 3_000, AudioFormat::Mp3, Some(128), None, None, None);
        assert!((e.low_secs - 240.0).abs() < 0.3, "{e:?}");
    }

    #[test]
    fn flac_gives_a_range() {
        // 30 MB of 16/44.1 FLAC: between 214 s (1120 kbps) and 571 s (420 kbps).
        let e = estimate_duration_from_size(30_000_000, AudioFormat::Flac, None, None, None, None);
        assert!(!e.exact);
        assert!((e.low_secs - 214.3).abs() < 1.0 && (e.high_secs - 571.4).abs() < 1.0, "{e:?}");
        let hi = estimate_duration_from_size(100_000_000, AudioFormat::Flac, None, Some(24), Some(96_000), None);
        assert!(hi.low_secs > 200.0 && hi.high_secs < 350.0, "{hi:?}");
        let v0 = estimate_duration_from_size(7_500_000, AudioFormat::Mp3, None, None, None, Some(VbrPreset::V0));
        assert!(v0.low_secs > 220.0 && v0.high_secs < 270.0, "{v0:?}");
        let zero = estimate_duration_from_size(0, AudioFormat::Flac, None, None, None, None);
        assert_eq!(zero.low_secs, 0.0);
    }

    #[test]
    fn relative_check_for_lossless() {
        let model = DurationModel::fit(None, &[(30_000_000, 300.0), (20_000_000, 200.0), (10_000_000, 100.0)]);
        assert_eq!(model.bytes_per_sec, Some(100_000.0));
        let ok = model.check(&file(21_000_000, AudioFormat::Flac), 200.0);
        assert!(ok.is_consistent() && ok.is_tight());
        let split = model.check(&file(17_000_000, AudioFormat::Flac), 346.0);
        assert!(split.is_too_short() && !split.is_consistent());
        let hidden = model.check(&file(45_000_000, AudioFormat::Flac), 300.0);
        assert!(hidden.is_too_long());
    }

    #[test]
    fn cbr_check_uses_seconds_tolerance() {
        let model = DurationModel::fit(Some(320), &[]);
        let good = model.check(&file(40_000 * 200 + 4_000, AudioFormat::Mp3), 201.0);
        assert!(good.is_consistent() && good.is_tight());
        let bad = model.check(&file(40_000 * 170, AudioFormat::Mp3), 216.0);
        assert!(!bad.is_consistent());
        assert_eq!(model.check(&file(0, AudioFormat::Mp3), 200.0), DurationCheck::Unknown);
        assert_eq!(model.check(&file(100, AudioFormat::Mp3), f64::NAN), DurationCheck::Unknown);
    }

    #[test]
    fn unknown_without_evidence() {
        let model = DurationModel::fit(None, &[(1, 100.0)]);
        assert_eq!(model.check(&file(10, AudioFormat::Flac), 100.0), DurationCheck::Unknown);
        assert_eq!(DurationCheck::Unknown.agreement(), 0.5);
    }
}
