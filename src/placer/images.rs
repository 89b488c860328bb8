//! Which torrent file becomes which ticket image. Pure name logic over the torrent's file list; the JPEG conversion
//! itself is an ffmpeg run of the converter. Must never open a file or trust a name beyond comparing it.
//!
//! Rules: `cover_front` takes an image named `cover`, `front` or `folder` (in that order, exact stem first, then
//! stems containing the word, never one that also says `back`), else the largest image of the torrent not named
//! `back` (the converter falls back further to art embedded in the audio). `cover_back` takes a stem containing `back`. Any
//! other kind takes a stem containing its word (`booklet`, `disc`, ...). Images are `.jpg .jpeg .png .webp .bmp
//! .gif .tif .tiff` files.

use crate::models::{ImageType, TorrentFile};

const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];
const FRONT_WORDS: [&str; 3] = ["cover", "front", "folder"];

/// The lower-cased stem and whether the file is an image.
fn image_stem(path: &str) -> Option<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let (stem, extension) = base.rsplit_once('.')?;
    IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()).then(|| stem.to_lowercase())
}

/// The torrent-relative path of the best image of `kind` among `files`, if any.
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

    fn file(path: &str, size_bytes: u64) -> TorrentFile {
        TorrentFile { path: path.into(), size_bytes }
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
