//! Which torrent files a chosen candidate needs (pure name logic over the torrent's file list): every file its
//! mapping uses (for a track inside a CUE image, the image and the cue sheets beside it) and, for each image the
//! ticket asks for, the picture that will become it. The download stage downloads exactly these; the converter and
//! the placer pick the same pictures through [`choose_image_file`]. Never opens a file, never trusts a name beyond
//! comparing it.
//!
//! Picture rules: `cover_front` takes an image named `cover`, `front` or `folder` (in that order, exact stem first,
//! then stems containing the word, never one that also says `back`), else the largest image of the torrent not
//! named `back` (the converter falls back further to art embedded in the audio). `cover_back` takes a stem
//! containing `back`. Any other kind takes a stem containing its word (`booklet`, `disc`, ...). Images are `.jpg
//! .jpeg .png .webp .bmp .gif .tif .tiff` files.

use std::collections::BTreeSet;

use crate::models::{ImageType, ScoredCandidate, TorrentFile};

use super::cue::split_track_reference;
use super::mapping::extension_of;

/// The torrent files `selected` needs, given the torrent's real file list `files` and the kinds of the ticket's
/// images, sorted: every mapped file the torrent has (a CUE image with every `.cue` sheet in its folder) and the
/// chosen picture of each image kind. Mapped paths the torrent does not have are left out (the converter reports
/// those tracks).
pub fn wanted_files(selected: &ScoredCandidate, files: &[TorrentFile], images: &[ImageType]) -> Vec<String> {
    let listed: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for path in mapped_files(selected, &listed) {
        if !listed.contains(&path) {
            continue;
        }
        wanted.insert(path.to_string());
        if is_cue_image_reference(selected, path) {
            wanted.extend(cue_sheets_beside(path, &listed).into_iter().map(str::to_string));
        }
    }
    for kind in images {
        if let Some(path) = choose_image_file(files, kind) {
            wanted.insert(path.to_string());
        }
    }
    wanted.into_iter().collect()
}

/// The file part of every mapping value of `selected` (`<image>#<n>` -> `<image>`), `listed` being the torrent's
/// paths (a listed path containing `#` is a path, not a reference).
pub fn mapped_files<'a>(selected: &'a ScoredCandidate, listed: &[&str]) -> BTreeSet<&'a str> {
    selected.track_mapping.iter().map(|mapping| split_track_reference(&mapping.torrent_file_path, listed).0).collect()
}

/// Whether some mapping of `selected` points at a track inside `image`.
fn is_cue_image_reference(selected: &ScoredCandidate, image: &str) -> bool {
    selected.track_mapping.iter().any(|mapping| {
        mapping
            .torrent_file_path
            .strip_prefix(image)
            .and_then(|rest| rest.strip_prefix('#'))
            .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The `.cue` files in the folder of `image` (any of them may be its sheet; the converter picks one).
fn cue_sheets_beside<'a>(image: &str, listed: &[&'a str]) -> Vec<&'a str> {
    let folder = parent_of(image);
    listed
        .iter()
        .copied()
        .filter(|path| parent_of(path) == folder && extension_of(path).eq_ignore_ascii_case("cue"))
        .collect()
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];
const FRONT_WORDS: [&str; 3] = ["cover", "front", "folder"];

/// The lower-cased stem and whether the file is an image.
fn image_stem(path: &str) -> Option<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let (stem, extension) = base.rsplit_once('.')?;
    IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()).then(|| stem.to_lowercase())
}

/// The torrent-relative path of the best picture of `kind` among `files`, if any (rules in the module doc).
pub fn choose_image_file<'a>(files: &'a [TorrentFile], kind: &ImageType) -> Option<&'a str> {
    let images: Vec<(&TorrentFile, String)> =
        files.iter().filter_map(|file| image_stem(&file.path).map(|stem| (file, stem))).collect();
    let largest_with = |matches: &dyn Fn(&str) -> bool| {
        images.iter().filter(|(_, stem)| matches(stem)).max_by_key(|(file, _)| file.size_bytes).map(|(file, _)| file)
    };
    let chosen = match kind {
        ImageType::CoverFront => FRONT_WORDS
            .iter()
            .find_map(|word| largest_with(&|stem: &str| stem == *word))
            .or_else(|| {
                FRONT_WORDS
                    .iter()
                    .find_map(|word| largest_with(&|stem: &str| stem.contains(word) && !stem.contains("back")))
            })
            .or_else(|| largest_with(&|stem: &str| !stem.contains("back"))),
        ImageType::CoverBack => largest_with(&|stem: &str| stem.contains("back")),
        ImageType::Other(word) => largest_with(&|stem: &str| stem.contains(word.as_str())),
    };
    chosen.map(|file| file.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{TorrentCandidate, TrackMapping};

    fn file(path: &str, size_bytes: u64) -> TorrentFile {
        TorrentFile { path: path.into(), size_bytes }
    }

    fn mapped(id: &str, path: &str) -> TrackMapping {
        TrackMapping { catalog_track_id: id.into(), torrent_file_path: path.into(), confidence: 0.9 }
    }

    fn selected(mapping: Vec<TrackMapping>) -> ScoredCandidate {
        ScoredCandidate {
            candidate: TorrentCandidate::with_title("A - B"),
            score: 0.9,
            reasoning: String::new(),
            track_mapping: mapping,
            hard_rejects: Vec::new(),
            doubts: Vec::new(),
        }
    }

    #[test]
    fn wants_mapped_audio_cue_images_with_their_sheets_and_the_cover_only() {
        let files = [
            file("A - B/01 One.flac", 1000),
            file("A - B/CD2/B.flac", 1001),
            file("A - B/CD2/B.cue", 1002),
            file("A - B/CD2/B (alt).CUE", 1003),
            file("A - B/cover.jpg", 1004),
            file("A - B/back.jpg", 1005),
            file("A - B/info.nfo", 1006),
            file("A - B/02 Two (demo).flac", 1007),
            file("A - B/A.cue", 1008),
        ];
        let chosen = selected(vec![
            mapped("a", "A - B/01 One.flac"),
            mapped("b", "A - B/CD2/B.flac#2"),
            mapped("c", "gone.flac"),
        ]);
        let wanted = wanted_files(&chosen, &files, &[ImageType::CoverFront]);
        assert_eq!(
            wanted,
            ["A - B/01 One.flac", "A - B/CD2/B (alt).CUE", "A - B/CD2/B.cue", "A - B/CD2/B.flac", "A - B/cover.jpg"],
            "a sheet beside a plain track file is not wanted; one beside a mapped image is"
        );
        assert_eq!(wanted_files(&chosen, &files, &[]).len(), 4);
    }

    #[test]
    fn a_mapping_outside_the_torrent_wants_nothing() {
        let files = [file("X/01.flac", 1)];
        assert!(wanted_files(&selected(vec![mapped("a", "../../etc/passwd")]), &files, &[]).is_empty());
        assert!(wanted_files(&selected(vec![mapped("a", "X/01.flac#1")]), &[file("X/02.flac", 1)], &[]).is_empty());
    }

    #[test]
    fn a_file_name_with_a_hash_is_a_file() {
        let files = [file("A/07 - Neighborhood #1.flac", 10), file("A/Neighborhood.cue", 1)];
        let chosen = selected(vec![mapped("a", "A/07 - Neighborhood #1.flac")]);
        assert_eq!(wanted_files(&chosen, &files, &[]), ["A/07 - Neighborhood #1.flac"]);
        let listed: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(mapped_files(&chosen, &listed).into_iter().collect::<Vec<_>>(), ["A/07 - Neighborhood #1.flac"]);
    }

    #[test]
    fn front_prefers_names_then_size() {
        let files = vec![
            file("Album/scan_big.png", 9_000_000),
            file("Album/Folder.jpg", 100),
            file("Album/Cover Back.jpg", 500),
            file("Album/01.flac", 30_000_000),
        ];
        assert_eq!(choose_image_file(&files, &ImageType::CoverFront), Some("Album/Folder.jpg"));
        assert_eq!(choose_image_file(&files, &ImageType::CoverBack), Some("Album/Cover Back.jpg"));
        assert_eq!(choose_image_file(&files, &ImageType::Other("booklet".into())), None);
        let only_scans = vec![file("a/scan1.jpg", 10), file("a/scan2.jpg", 20), file("a/notes.nfo", 99)];
        assert_eq!(choose_image_file(&only_scans, &ImageType::CoverFront), Some("a/scan2.jpg"));
        assert_eq!(choose_image_file(&[file("a/01.flac", 1)], &ImageType::CoverFront), None);
        assert_eq!(choose_image_file(&[file("a/Back.png", 1)], &ImageType::CoverFront), None);
    }
}
