//! CUE sheets: parsing (with the `cuna` crate), finding the sheet of an audio image, and turning a track number into
//! an exact sample range of the image. Pure; reads no file itself (the caller hands over the bytes). Must never
//! panic on a hostile sheet (the parser runs under `catch_unwind`, every position is checked) and never trust a
//! `FILE` name from the sheet as a path.
//!
//! Boundaries: a track spans from its `INDEX 01` to the next track's `INDEX 01` in the same `FILE` (or the end of
//! the file). A pre-gap (`INDEX 00` .. `INDEX 01`, or a `PREGAP` command, which is silence not in the file) thus
//! stays at the end of the previous track, the usual "gaps appended to the previous track" layout; audio before
//! track 1's `INDEX 01` (a hidden track) is not part of any track. One CD frame is 1/75 s, so a position in frames
//! is `frames * sample_rate / 75` samples (an integer for 44.1, 48, 88.2 and 96 kHz).

use std::panic::AssertUnwindSafe;

use super::ffmpeg::SampleRange;

/// Frames per second of CUE positions (`MM:SS:FF`).
pub const CUE_FRAMES_PER_SECOND: u64 = 75;
/// Largest CUE sheet accepted (a real one is a few KiB).
pub const MAX_CUE_BYTES: usize = 1024 * 1024;

/// One track of a sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CueTrack {
    pub number: u32,
    pub title: Option<String>,
    /// Position of `INDEX 01`, in CD frames from the start of its file.
    pub start_frames: u64,
}

/// One `FILE` of a sheet with its tracks, in sheet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CueFile {
    /// The name as the sheet spells it: only compared with real file names, never used as a path.
    pub name: String,
    pub tracks: Vec<CueTrack>,
}

/// A parsed sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CueSheet {
    pub files: Vec<CueFile>,
}

/// Why a sheet cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CueSheetError {
    #[error("CUE sheet is larger than {MAX_CUE_BYTES} bytes")]
    TooLarge,
    #[error("CUE sheet does not parse: {0}")]
    Syntax(String),
    #[error("CUE sheet has no FILE with tracks")]
    NoTracks,
    #[error("track {0} is not in the CUE sheet")]
    NoSuchTrack(u32),
    #[error("track {0} has no INDEX 01")]
    NoStartIndex(u32),
    #[error("track {number} starts at or after the next track (INDEX 01 out of order)")]
    OutOfOrder { number: u32 },
}

/// Decodes a sheet: UTF-8 (with or without BOM), else Latin-1 (common for sheets written by old rippers).
pub fn decode_cue_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|byte| char::from(*byte)).collect(),
    }
}

/// Parses a sheet's bytes.
pub fn parse_cue_sheet(bytes: &[u8]) -> Result<CueSheet, CueSheetError> {
    if bytes.len() > MAX_CUE_BYTES {
        return Err(CueSheetError::TooLarge);
    }
    let text = decode_cue_text(bytes);
    let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| cuna::Cuna::new(&text)))
        .map_err(|_| CueSheetError::Syntax("parser gave up on malformed input".into()))?
        .map_err(|err| CueSheetError::Syntax(err.to_string()))?;
    let mut files = Vec::new();
    for disc in &parsed.files {
        let mut tracks = Vec::new();
        for track in &disc.tracks {
            let number = u32::from(track.id());
            let start = track.index.iter().find(|index| index.id() == 1).map(|index| {
                let time = index.begin_time();
                u64::from(time.total_seconds()) * CUE_FRAMES_PER_SECOND + u64::from(time.frames())
            });
            let Some(start_frames) = start else {
                return Err(CueSheetError::NoStartIndex(number));
            };
            tracks.push(CueTrack { number, title: track.title.first().cloned(), start_frames });
        }
        if !tracks.is_empty() {
            files.push(CueFile { name: disc.name.clone(), tracks });
        }
    }
    if files.is_empty() {
        return Err(CueSheetError::NoTracks);
    }
    Ok(CueSheet { files })
}

impl CueSheet {
    /// The `FILE` holding track `number` and the track's sample range in it at `sample_rate_hz`.
    pub fn track_range(&self, number: u32, sample_rate_hz: u32) -> Result<(&CueFile, SampleRange), CueSheetError> {
        for file in &self.files {
            let Some(position) = file.tracks.iter().position(|track| track.number == number) else {
                continue;
            };
            let start = file.tracks[position].start_frames;
            let end = file.tracks.get(position + 1).map(|next| next.start_frames);
            if end.is_some_and(|end| end <= start) {
                return Err(CueSheetError::OutOfOrder { number });
            }
            let to_samples = |frames: u64| frames * u64::from(sample_rate_hz) / CUE_FRAMES_PER_SECOND;
            let range =
                SampleRange { start_sample: to_samples(start), end_sample: end.map(to_samples), sample_rate_hz };
            return Ok((file, range));
        }
        Err(CueSheetError::NoSuchTrack(number))
    }
}

/// Splits a mapping path of the form `<image path>#<track number>` (track number 1..=99). A path whose part after
/// the last `#` is not such a number is not an image reference.
pub fn split_image_reference(mapping_path: &str) -> Option<(&str, u32)> {
    let (image, number) = mapping_path.rsplit_once('#')?;
    if image.is_empty() || number.is_empty() || number.len() > 2 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u32 = number.parse().ok()?;
    (1..=99).contains(&number).then_some((image, number))
}

/// The stem of a `/`-separated name, lower-cased ("Disc 1/Album.FLAC" -> "album").
fn lower_stem(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    stem.to_lowercase()
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The candidate sheets for `image` (torrent-relative) among the torrent's `files`, best first: `.cue` files in
/// the same directory whose stem equals the image's (`Album.flac` -> `Album.cue` or `Album.flac.cue`), then any
/// other `.cue` there.
pub fn cue_candidates<'a>(image: &str, files: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let dir = parent_of(image);
    let image_base = image.rsplit('/').next().unwrap_or(image).to_lowercase();
    let image_stem = lower_stem(image);
    let mut same_stem = Vec::new();
    let mut others = Vec::new();
    for file in files {
        if parent_of(file) != dir || !file.to_lowercase().ends_with(".cue") {
            continue;
        }
        let stem = lower_stem(file);
        if stem == image_stem || stem == image_base {
            same_stem.push(file);
        } else {
            others.push(file);
        }
    }
    same_stem.extend(others);
    same_stem
}

/// Whether a sheet's `FILE` name refers to the image file `image` (by stem, since sheets often name the `.wav`
/// that was later compressed to `.flac`).
pub fn file_refers_to(cue_file_name: &str, image: &str) -> bool {
    lower_stem(cue_file_name) == lower_stem(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = "REM GENRE Rock\nPERFORMER \"Band\"\nTITLE \"Album\"\nFILE \"Album.wav\" WAVE\n  TRACK 01 AUDIO\n    TITLE \"One\"\n    INDEX 01 00:00:00\n  TRACK 02 AUDIO\n    TITLE \"Two\"\n    INDEX 00 00:03:10\n    INDEX 01 00:04:00\n  TRACK 03 AUDIO\n    INDEX 01 01:00:74\n";

    #[test]
    fn track_ranges_follow_index_01() {
        let sheet = parse_cue_sheet(SHEET.as_bytes()).unwrap();
        let (file, range) = sheet.track_range(1, 44_100).unwrap();
        assert_eq!(file.name, "Album.wav");
        assert_eq!(range, SampleRange { start_sample: 0, end_sample: Some(4 * 75 * 588), sample_rate_hz: 44_100 });
        let (_, range) = sheet.track_range(2, 44_100).unwrap();
        assert_eq!(range.start_sample, 4 * 75 * 588);
        assert_eq!(range.end_sample, Some((60 * 75 + 74) * 588));
        let (_, range) = sheet.track_range(3, 48_000).unwrap();
        assert_eq!(range, SampleRange { start_sample: (60 * 75 + 74) * 640, end_sample: None, sample_rate_hz: 48_000 });
        assert_eq!(sheet.track_range(4, 44_100).unwrap_err(), CueSheetError::NoSuchTrack(4));
        assert_eq!(sheet.files[0].tracks[1].title.as_deref(), Some("Two"));
    }

    #[test]
    fn hostile_sheets_fail_cleanly() {
        assert!(parse_cue_sheet(b"\xff\xfe garbage\nTRACK x").is_err());
        assert!(parse_cue_sheet(b"FILE \"a.wav\" WAVE\n TRACK 01 AUDIO\n INDEX 01 99999999999999:00:00\n").is_err());
        let backwards =
            "FILE \"a.wav\" WAVE\n TRACK 01 AUDIO\n INDEX 01 00:10:00\n TRACK 02 AUDIO\n INDEX 01 00:05:00\n";
        let sheet = parse_cue_sheet(backwards.as_bytes()).unwrap();
        assert_eq!(sheet.track_range(1, 44_100).unwrap_err(), CueSheetError::OutOfOrder { number: 1 });
        assert!(parse_cue_sheet(&vec![b' '; MAX_CUE_BYTES + 1]).is_err());
    }

    #[test]
    fn splits_references_and_finds_sheets() {
        assert_eq!(split_image_reference("CD1/Album.flac#3"), Some(("CD1/Album.flac", 3)));
        assert_eq!(split_image_reference("CD1/#1 hit.flac"), None);
        assert_eq!(split_image_reference("a.flac#100"), None);
        assert_eq!(split_image_reference("#3"), None);
        let files = ["CD1/Album.flac", "CD1/other.cue", "CD1/Album.cue", "CD2/Album.cue"];
        assert_eq!(cue_candidates("CD1/Album.flac", files), vec!["CD1/Album.cue", "CD1/other.cue"]);
        assert!(file_refers_to("Album.wav", "CD1/album.flac"));
        assert_eq!(decode_cue_text(b"TITLE \"Caf\xe9\""), "TITLE \"Caf\u{e9}\"");
    }
}
