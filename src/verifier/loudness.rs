//! EBU R128 loudness as ReplayGain 2.0 values: the gain that brings a track (or an album, all its tracks measured
//! together) to -18 LUFS, and the true peak. Pure arithmetic over the meters `analysis` filled.

use ebur128::EbuR128;

/// ReplayGain 2.0's reference level.
pub const REFERENCE_LUFS: f64 = -18.0;
/// Opus's `R128_*_GAIN` tags are relative to -23 LUFS (RFC 7845).
pub const OPUS_REFERENCE_LUFS: f64 = -23.0;

/// Integrated loudness in LUFS; `None` for silence (the gate lets nothing through).
pub fn integrated_lufs(meter: &EbuR128) -> Option<f64> {
    meter.loudness_global().ok().filter(|lufs| lufs.is_finite())
}

/// The highest true peak over all channels, dBTP; `None` for digital silence.
pub fn true_peak_dbtp(meter: &EbuR128) -> Option<f64> {
    let peak = (0..meter.channels()).filter_map(|channel| meter.true_peak(channel).ok()).fold(0.0f64, f64::max);
    (peak > 0.0).then(|| 20.0 * peak.log10())
}

/// The integrated loudness of several tracks played one after the other (album gain), LUFS.
pub fn album_lufs<'a>(meters: impl IntoIterator<Item = &'a EbuR128>) -> Option<f64> {
    EbuR128::loudness_global_multiple(meters.into_iter()).ok().filter(|lufs| lufs.is_finite())
}

/// ReplayGain 2.0 gain in dB for a loudness.
pub fn replaygain_db(loudness_lufs: f64) -> f64 {
    REFERENCE_LUFS - loudness_lufs
}

/// Opus `R128_TRACK_GAIN`/`R128_ALBUM_GAIN`: Q7.8 fixed point dB relative to -23 LUFS, clamped to an i16.
pub fn opus_r128_gain(loudness_lufs: f64) -> i16 {
    let q78 = ((OPUS_REFERENCE_LUFS - loudness_lufs) * 256.0).round();
    // Clamped to the i16 range first: nothing is truncated.
    #[allow(clippy::cast_possible_truncation)]
    let gain = q78.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
    gain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_follow_the_references() {
        assert!((replaygain_db(-9.0) - (-9.0)).abs() < 1e-12);
        assert_eq!(opus_r128_gain(-23.0), 0);
        assert_eq!(opus_r128_gain(-13.0), -2560);
        assert_eq!(opus_r128_gain(-500.0), i16::MAX);
    }

    #[test]
    fn a_full_scale_sine_reads_about_minus_three_lufs() {
        let rate = 48_000u32;
        let mut meter = EbuR128::new(1, rate, ebur128::Mode::I | ebur128::Mode::TRUE_PEAK).unwrap();
        let tone: Vec<f32> = (0..rate as usize * 3)
            .map(|idx| (2.0 * std::f32::consts::PI * 997.0 * idx as f32 / rate as f32).sin())
            .collect();
        meter.add_frames_f32(&tone).unwrap();
        let lufs = integrated_lufs(&meter).unwrap();
        assert!((lufs - (-3.01)).abs() < 0.1, "{lufs}");
        assert!(true_peak_dbtp(&meter).unwrap().abs() < 0.2);
        let silent = EbuR128::new(1, rate, ebur128::Mode::I | ebur128::Mode::TRUE_PEAK).unwrap();
        assert_eq!(integrated_lufs(&silent), None);
        assert_eq!(true_peak_dbtp(&silent), None);
    }
}
