//! CUE images (pure): a single lossless image (FLAC/APE/WV/WAV) with a `.cue` sheet beside it holds a whole disc;
//! each catalog track maps to `"<image path>#<track number>"`. File names may themselves contain `#`, so reading a
//! reference back treats an existing path as a path first. Never reads the cue sheet itself (only names are known).

use std::collections::BTreeMap;

use crate::models::TorrentFile;
use crate::release::AudioFormat;

use super::mapping::{disc_from_dir, extension_of, AudioFile};

/// One disc image with a cue sheet beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct CueImage {
    /// The image's path exactly as in the file list.
    pub image_path: String,
    pub size_bytes: u64,
    /// The disc its folder or name announces.
    pub disc: Option<u32>,
}

/// The reference of one track inside an image.
pub fn cue_track_reference(image_path: &str, track_number: u32) -> String {
    format!("{image_path}#{track_number}")
}

/// Splits a mapping value back into `(file path, cue track number)`: a value that is one of `existing_paths` is a
/// plain path (even with `#` in it); otherwise the part after the last `#` is the track number.
pub fn split_track_reference<'a>(value: &'a str, existing_paths: &[&str]) -> (&'a str, Option<u32>) {
    if existing_paths.contains(&value) {
        return (value, None);
    }
    match value.rsplit_once('#') {
        Some((path, number)) => match number.parse::<u32>() {
            Ok(n) if existing_paths.is_empty() || existing_paths.contains(&path) => (path, Some(n)),
            _ => (value, None),
        },
        None => (value, None),
    }
}

/// Lossless images that sit alone in their folder with a `.cue` sheet beside them, ordered by disc then path.
pub fn find_cue_images(files: &[TorrentFile], audio: &[AudioFile]) -> Vec<CueImage> {
    let mut cue_dirs: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        if extension_of(&file.path).eq_ignore_ascii_case("cue") {
            let dir = file.path.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
            *cue_dirs.entry(dir).or_insert(0) += 1;
        }
    }
    let mut audio_per_dir: BTreeMap<&str, usize> = BTreeMap::new();
    for file in audio {
        *audio_per_dir.entry(file.dir.as_str()).or_insert(0) += 1;
    }
    let mut images: Vec<CueImage> = audio
        .iter()
        .filter(|f| {
            matches!(f.format, AudioFormat::Flac | AudioFormat::Ape | AudioFormat::Wavpack | AudioFormat::Wav)
                && cue_dirs.contains_key(&f.dir)
                && audio_per_dir.get(f.dir.as_str()).copied() == Some(1)
        })
        .map(|f| CueImage {
            image_path: f.path.clone(),
            size_bytes: f.size_bytes,
            disc: f.disc.or_else(|| f.dir.rsplit('/').find_map(disc_from_dir)),
        })
        .collect();
    images.sort_by(|a, b| (a.disc, &a.image_path).cmp(&(b.disc, &b.image_path)));
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::mapping::read_audio_files;

    fn tf(path: &str, size: u64) -> TorrentFile {
        TorrentFile { path: path.into(), size_bytes: size }
    }

    #[test]
    fn image_with_cue_is_found() {
        let files = vec![
            tf("Pink Floyd - WYWH/Pink Floyd - Wish You Were Here.flac", 280_000_000),
            tf("Pink Floyd - WYWH/Pink Floyd - Wish You Were Here.cue", 1_200),
            tf("Pink Floyd - WYWH/Pink Floyd - Wish You Were Here.log", 4_000),
            tf("Pink Floyd - WYWH/Covers/front.jpg", 800_000),
        ];
        let audio = read_audio_files(&files, "Pink Floyd");
        let images = find_cue_images(&files, &audio);
        assert_eq!(images.len(), 1);
        assert_eq!(
            cue_track_reference(&images[0].image_path, 3),
            "Pink Floyd - WYWH/Pink Floyd - Wish You Were Here.flac#3"
        );
    }

    #[test]
    fn per_disc_images_are_ordered_by_disc() {
        let files = vec![
            tf("Album/CD2/image.ape", 300_000_000),
            tf("Album/CD2/image.cue", 1_000),
            tf("Album/CD1/image.ape", 300_000_000),
            tf("Album/CD1/image.cue", 1_000),
        ];
        let audio = read_audio_files(&files, "X");
        let images = find_cue_images(&files, &audio);
        assert_eq!(images.iter().map(|i| i.disc).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
    }

    #[test]
    fn split_tracks_with_a_cue_are_not_images() {
        let files = vec![tf("A/01 - One.flac", 30_000_000), tf("A/02 - Two.flac", 30_000_000), tf("A/A.cue", 900)];
        let audio = read_audio_files(&files, "X");
        assert!(find_cue_images(&files, &audio).is_empty());
        let no_cue = vec![tf("A/image.flac", 300_000_000)];
        let audio = read_audio_files(&no_cue, "X");
        assert!(find_cue_images(&no_cue, &audio).is_empty());
    }

    #[test]
    fn references_with_hash_in_names() {
        let paths = ["Album/07 - Neighborhood #1 (Tunnels).flac", "Album/image.flac"];
        assert_eq!(split_track_reference(paths[0], &paths), (paths[0], None));
        assert_eq!(split_track_reference("Album/image.flac#4", &paths), ("Album/image.flac", Some(4)));
        assert_eq!(split_track_reference("Album/x.flac#notanumber", &paths), ("Album/x.flac#notanumber", None));
        assert_eq!(split_track_reference("img #2.flac#11", &[]), ("img #2.flac", Some(11)));
    }
}
