//! Tags and embedded covers of converted files, written and read back with `lofty` for every output format (ID3v2
//! for MP3, Vorbis comments for FLAC/Ogg Vorbis/Opus — the cover as a FLAC `PICTURE` block or an Ogg
//! `METADATA_BLOCK_PICTURE` comment — and iTunes `ilst` atoms for M4A). Only ever touches files of our own work
//! dir; must never hand-write a container.
//!
//! FLAC outputs get their tags and cover from the encoding ffmpeg run instead (see [`flac_comments`]): lofty
//! rewrites a whole FLAC file to add a cover, which costs several percent of a FLAC encode; for the other formats the
//! rewrite is a fraction of a percent of the encode and lofty writes them.
//!
//! `metadata_to_embed` keys are matched case-insensitively: `artist`, `album`, `album_artist`/`albumartist`,
//! `year`/`date` (written as the recording date), `genre`, `label`/`publisher`, `composer`, `comment`,
//! `copyright`, `catalog_number`, `conductor`, `lyricist`, and the ReplayGain 2.0 keys of [`ReplayGain`]
//! (`replaygain_track_gain`, ...; Opus's `R128_*` are free-form Vorbis comments). Other keys are written as free-form fields where the
//! format allows them (Vorbis comments); ID3v2 and MP4 silently drop them. Arrays are joined with "; ".

use std::path::Path;

use lofty::config::WriteOptions;
use lofty::picture::{MimeType, Picture, PictureType};
use lofty::prelude::*;
use lofty::tag::{ItemValue, Tag, TagItem};

/// Everything written into one output file.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackTags {
    pub title: String,
    pub track_number: u32,
    pub track_total: u32,
    pub disc_number: u32,
    pub disc_total: u32,
    /// (key as the ticket spelled it, value) from `metadata_to_embed`.
    pub album_fields: Vec<(String, String)>,
}

/// ReplayGain 2.0 values of one track: EBU R128 integrated loudness and true peak of the track and of its album.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayGain {
    pub track_lufs: f64,
    pub track_peak_dbtp: f64,
    pub album_lufs: Option<f64>,
    pub album_peak_dbtp: Option<f64>,
}

/// ReplayGain 2.0's reference loudness (LUFS).
pub const REPLAYGAIN_REFERENCE_LUFS: f64 = -18.0;
/// The reference of Opus's `R128_*_GAIN` tags (RFC 7845: EBU R128, -23 LUFS).
pub const R128_REFERENCE_LUFS: f64 = -23.0;

impl ReplayGain {
    /// The tags for `format`, as `(key, value)` pairs `item_key_for` knows: `REPLAYGAIN_TRACK_GAIN` ("-3.21 dB"),
    /// `REPLAYGAIN_TRACK_PEAK` (linear, "0.988553") and the album pair; for Opus `R128_TRACK_GAIN` and
    /// `R128_ALBUM_GAIN` (Q7.8 fixed point, relative to -23 LUFS) instead, as RFC 7845 asks.
    pub fn fields(&self, format: crate::models::OutputFormat) -> Vec<(String, String)> {
        let decibels = |lufs: f64| format!("{:.2} dB", REPLAYGAIN_REFERENCE_LUFS - lufs);
        let linear = |dbtp: f64| format!("{:.6}", 10f64.powf(dbtp / 20.0));
        let q78 = |lufs: f64| {
            let steps = ((R128_REFERENCE_LUFS - lufs) * 256.0).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX));
            format!("{steps:.0}")
        };
        let mut fields = Vec::new();
        if format == crate::models::OutputFormat::Opus {
            fields.push(("r128_track_gain".to_string(), q78(self.track_lufs)));
            if let Some(album) = self.album_lufs {
                fields.push(("r128_album_gain".to_string(), q78(album)));
            }
            return fields;
        }
        fields.push(("replaygain_track_gain".to_string(), decibels(self.track_lufs)));
        fields.push(("replaygain_track_peak".to_string(), linear(self.track_peak_dbtp)));
        if let (Some(album), Some(peak)) = (self.album_lufs, self.album_peak_dbtp) {
            fields.push(("replaygain_album_gain".to_string(), decibels(album)));
            fields.push(("replaygain_album_peak".to_string(), linear(peak)));
        }
        fields
    }
}

/// Whether `key` is one of the keys [`ReplayGain::fields`] writes.
pub fn is_replaygain_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("replaygain_") || key.starts_with("r128_")
}

/// Why tagging failed.
#[derive(Debug, thiserror::Error)]
pub enum TagWriteError {
    #[error("lofty cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("lofty cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("tags read back from {path} differ: {message}")]
    ReadBack { path: String, message: String },
}

/// The lofty key of a `metadata_to_embed` key.
pub fn item_key_for(key: &str) -> ItemKey {
    match key.to_ascii_lowercase().as_str() {
        "artist" => ItemKey::TrackArtist,
        "album" => ItemKey::AlbumTitle,
        "album_artist" | "albumartist" => ItemKey::AlbumArtist,
        "year" | "date" => ItemKey::RecordingDate,
        "genre" => ItemKey::Genre,
        "label" | "publisher" => ItemKey::Label,
        "composer" => ItemKey::Composer,
        "comment" => ItemKey::Comment,
        "copyright" => ItemKey::CopyrightMessage,
        "catalog_number" => ItemKey::CatalogNumber,
        "conductor" => ItemKey::Conductor,
        "lyricist" => ItemKey::Lyricist,
        "replaygain_track_gain" => ItemKey::ReplayGainTrackGain,
        "replaygain_track_peak" => ItemKey::ReplayGainTrackPeak,
        "replaygain_album_gain" => ItemKey::ReplayGainAlbumGain,
        "replaygain_album_peak" => ItemKey::ReplayGainAlbumPeak,
        _ => ItemKey::Unknown(key.to_ascii_uppercase()),
    }
}

/// The text of a `metadata_to_embed` value (strings, numbers, booleans, arrays of those).
pub fn value_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        serde_json::Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(value_text).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        serde_json::Value::Null | serde_json::Value::Object(_) => None,
    }
}

/// The Vorbis comments of a FLAC track as ffmpeg is to write them (`-metadata KEY=value`, the keys lofty reads
/// back as the same items), or `None` when ffmpeg would not write them faithfully: it renames `COMMENT` to
/// `DESCRIPTION`, so a ticket with a comment is tagged by lofty after the encode.
pub fn flac_comments(tags: &TrackTags) -> Option<Vec<(String, String)>> {
    let mut comments = vec![
        ("TITLE".to_string(), tags.title.clone()),
        ("TRACKNUMBER".to_string(), tags.track_number.to_string()),
        ("TRACKTOTAL".to_string(), tags.track_total.to_string()),
        ("DISCNUMBER".to_string(), tags.disc_number.to_string()),
        ("DISCTOTAL".to_string(), tags.disc_total.to_string()),
    ];
    for (key, value) in &tags.album_fields {
        let item_key = item_key_for(key);
        if item_key == ItemKey::Comment {
            return None;
        }
        let name = item_key.map_key(lofty::tag::TagType::VorbisComments, true)?;
        if name.eq_ignore_ascii_case("comment") || name.is_empty() || name.contains('=') {
            return None;
        }
        comments.push((name.to_string(), value.clone()));
    }
    Some(comments)
}

/// Replaces every tag of `path` with `tags` (when given) and `cover_jpeg` as the front cover (when given).
pub fn write_tags(path: &Path, tags: Option<&TrackTags>, cover_jpeg: Option<&[u8]>) -> Result<(), TagWriteError> {
    let shown = path.display().to_string();
    let tagged = lofty::read_from_path(path)
        .map_err(|err| TagWriteError::Read { path: shown.clone(), message: err.to_string() })?;
    let mut tag = Tag::new(tagged.primary_tag_type());
    if let Some(tags) = tags {
        tag.set_title(tags.title.clone());
        tag.set_track(tags.track_number);
        tag.set_track_total(tags.track_total);
        tag.set_disk(tags.disc_number);
        tag.set_disk_total(tags.disc_total);
        let vorbis = tag.tag_type() == lofty::tag::TagType::VorbisComments;
        for (key, value) in &tags.album_fields {
            match item_key_for(key) {
                // `insert_text` refuses keys without a mapping; Vorbis comments take any (spec-checked) key.
                unknown @ ItemKey::Unknown(_) if vorbis => {
                    tag.insert_unchecked(TagItem::new(unknown, ItemValue::Text(value.clone())));
                }
                known => {
                    tag.insert_text(known, value.clone());
                }
            }
        }
    }
    if let Some(jpeg) = cover_jpeg {
        tag.push_picture(Picture::new_unchecked(PictureType::CoverFront, Some(MimeType::Jpeg), None, jpeg.to_vec()));
    }
    tag.save_to_path(path, WriteOptions::default())
        .map_err(|err| TagWriteError::Write { path: shown, message: err.to_string() })
}

/// Checks that the tags of `tagged` (the file at `path`, read back after writing) hold the title, track/disc
/// numbers, the album fields and the cover that were written.
pub fn verify_tags(
    tagged: &lofty::file::TaggedFile,
    path: &Path,
    tags: Option<&TrackTags>,
    cover_jpeg: Option<&[u8]>,
) -> Result<(), TagWriteError> {
    let shown = path.display().to_string();
    let read_back = |message: String| TagWriteError::ReadBack { path: shown.clone(), message };
    let Some(tag) = tagged.primary_tag() else {
        return if tags.is_none() && cover_jpeg.is_none() { Ok(()) } else { Err(read_back("no tag found".into())) };
    };
    if let Some(tags) = tags {
        if tag.title().as_deref() != Some(tags.title.as_str()) {
            return Err(read_back(format!("title {:?} instead of {:?}", tag.title(), tags.title)));
        }
        if tag.track() != Some(tags.track_number) || tag.disk() != Some(tags.disc_number) {
            return Err(read_back(format!("track {:?} disc {:?}", tag.track(), tag.disk())));
        }
        for (key, value) in &tags.album_fields {
            let item_key = item_key_for(key);
            // Free-form keys only survive in Vorbis comments (see the module doc).
            let kept = tag.get_string(&item_key).is_some() || matches!(item_key, ItemKey::Unknown(_));
            if !kept {
                return Err(read_back(format!("{key} ({value:?}) missing")));
            }
        }
    }
    if let Some(jpeg) = cover_jpeg {
        // MP4 `covr` atoms carry no picture type: there the data alone identifies the cover.
        let typed = tag.tag_type() != lofty::tag::TagType::Mp4Ilst;
        let found = tag
            .pictures()
            .iter()
            .any(|picture| picture.data() == jpeg && (!typed || picture.pic_type() == PictureType::CoverFront));
        if !found {
            return Err(read_back("front cover missing".into()));
        }
    }
    Ok(())
}

/// The first embedded picture of an audio file (front cover preferred), as (data, is JPEG).
pub fn read_embedded_picture(path: &Path) -> Option<(Vec<u8>, bool)> {
    let tagged = lofty::read_from_path(path).ok()?;
    let pictures: Vec<&Picture> = tagged.tags().iter().flat_map(|tag| tag.pictures().iter()).collect();
    let picture =
        pictures.iter().find(|picture| picture.pic_type() == PictureType::CoverFront).or_else(|| pictures.first())?;
    Some((picture.data().to_vec(), picture.mime_type() == Some(&MimeType::Jpeg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_known_keys_and_keeps_unknown_ones() {
        assert_eq!(item_key_for("Artist"), ItemKey::TrackArtist);
        assert_eq!(item_key_for("year"), ItemKey::RecordingDate);
        assert_eq!(item_key_for("mood"), ItemKey::Unknown("MOOD".into()));
    }

    #[test]
    fn renders_values() {
        assert_eq!(value_text(&serde_json::json!(1999)).as_deref(), Some("1999"));
        assert_eq!(value_text(&serde_json::json!(["Rock", "Pop"])).as_deref(), Some("Rock; Pop"));
        assert_eq!(value_text(&serde_json::json!(null)), None);
    }
}

#[cfg(test)]
mod replaygain_tests {
    use super::*;
    use crate::models::OutputFormat;

    #[test]
    fn replaygain_2_values_are_relative_to_minus_18_lufs_and_opus_gets_r128_q7_8_relative_to_minus_23() {
        let gain =
            ReplayGain { track_lufs: -9.5, track_peak_dbtp: -0.3, album_lufs: Some(-10.0), album_peak_dbtp: Some(0.0) };
        let fields = gain.fields(OutputFormat::Mp3);
        assert_eq!(
            fields,
            [
                ("replaygain_track_gain".to_string(), "-8.50 dB".to_string()),
                ("replaygain_track_peak".to_string(), "0.966051".to_string()),
                ("replaygain_album_gain".to_string(), "-8.00 dB".to_string()),
                ("replaygain_album_peak".to_string(), "1.000000".to_string()),
            ]
        );
        // -23 - (-9.5) = -13.5 dB = -3456 / 256.
        assert_eq!(
            gain.fields(OutputFormat::Opus),
            [
                ("r128_track_gain".to_string(), "-3456".to_string()),
                ("r128_album_gain".to_string(), "-3328".to_string())
            ]
        );
        assert_eq!(item_key_for("replaygain_track_gain"), ItemKey::ReplayGainTrackGain);
    }
}
