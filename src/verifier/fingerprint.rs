//! Comparing acoustic fingerprints (Chromaprint's, computed in `analysis`): two tracks are the same audio when
//! their fingerprints agree bit for bit but for the noise a lossy pass adds. Pure functions.

/// Fingerprint items per second of audio (Chromaprint's default configuration: 4096-sample frames with a third
/// of overlap at 11,025 Hz).
pub const ITEMS_PER_SEC: f64 = 11_025.0 / (4096.0 / 3.0);
/// The largest misalignment searched: 3 s (a different encoder delay or a trimmed lead-in).
const MAX_SHIFT_ITEMS: usize = 24;
/// Fewer overlapping items than this (about 4 s) compare nothing meaningful.
const MIN_OVERLAP_ITEMS: usize = 32;

/// The share of differing bits between two fingerprints at their best alignment (0 = identical, about 0.5 for
/// unrelated audio); `None` when they are too short to compare.
pub fn bit_error_rate(first: &[u32], second: &[u32]) -> Option<f64> {
    let mut best: Option<f64> = None;
    for shift in 0..=MAX_SHIFT_ITEMS {
        for (a, b) in [(first, second), (second, first)] {
            if shift >= a.len() {
                continue;
            }
            let a = &a[shift..];
            let overlap = a.len().min(b.len());
            if overlap < MIN_OVERLAP_ITEMS {
                continue;
            }
            let differing: u64 = a.iter().zip(b).map(|(x, y)| u64::from((x ^ y).count_ones())).sum();
            let rate = differing as f64 / (overlap as f64 * 32.0);
            best = Some(best.map_or(rate, |best: f64| best.min(rate)));
        }
    }
    best
}

/// Whether a fingerprint carries information: silence and constant tones give the same item again and again.
pub fn is_informative(fingerprint: &[u32]) -> bool {
    if fingerprint.len() < MIN_OVERLAP_ITEMS {
        return false;
    }
    let mut distinct: Vec<u32> = fingerprint.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() * 4 >= fingerprint.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u32) -> Vec<u32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state
            })
            .collect()
    }

    #[test]
    fn identical_shifted_noisy_and_unrelated_fingerprints() {
        let original = pseudo_random(400, 3);
        assert_eq!(bit_error_rate(&original, &original), Some(0.0));
        // The same audio starting 1 s later.
        assert_eq!(bit_error_rate(&original[8..], &original), Some(0.0));
        // A lossy pass: one bit in eight items flipped.
        let noisy: Vec<u32> =
            original.iter().enumerate().map(|(idx, item)| if idx % 8 == 0 { item ^ 1 } else { *item }).collect();
        assert!(bit_error_rate(&original, &noisy).unwrap() < 0.01);
        let unrelated = pseudo_random(400, 99);
        let rate = bit_error_rate(&original, &unrelated).unwrap();
        assert!(rate > 0.4, "{rate}");
        assert_eq!(bit_error_rate(&original[..10], &unrelated), None);
        assert!(is_informative(&original));
        assert!(!is_informative(&[7; 400]));
    }
}
