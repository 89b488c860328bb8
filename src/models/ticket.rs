//! The ticket: one album the catalog server wants, exactly as it posts it (field names are the contract), and its
//! validation. Validation names the offending field with a JSON path (`tracks[3].dest_path`) so the catalog can
//! fix its request; it never touches the network and only reads the filesystem to resolve symlinks of destinations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::placer::paths::{check_destination, destination_identity, DestinationError};

/// One album request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ticket {
    /// The catalog's id; also names the ticket's download and work directories, so it is restricted to
    /// `[A-Za-z0-9._-]{1,128}`.
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub ticket_id: String,
    pub created_at: DateTime<Utc>,
    pub search: SearchHints,
    pub tracks: Vec<TicketTrack>,
    #[serde(default)]
    pub images: Vec<TicketImage>,
    pub constraints: Constraints,
    /// Tags to write into every output file (artist, album, year, genre, ...): free-form, values are strings or
    /// numbers.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata_to_embed: BTreeMap<String, serde_json::Value>,
}

/// What the searcher queries for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHints {
    pub artist: String,
    pub album: String,
    #[serde(default)]
    pub year: Option<i32>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub genres: Vec<String>,
}

/// One catalog track and where its converted file must end up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TicketTrack {
    pub catalog_track_id: String,
    #[serde(default = "default_disc_number")]
    pub disc_number: u32,
    pub track_number: u32,
    pub name: String,
    /// The catalog's duration; downloaded audio is checked against it before conversion.
    pub duration_secs: f64,
    pub dest_path: String,
}

fn default_disc_number() -> u32 {
    1
}

/// One image (cover) the catalog wants placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TicketImage {
    pub catalog_image_id: String,
    /// `cover_front`, `cover_back`, or another lower-case word the catalog uses.
    #[serde(rename = "type")]
    pub image_type: ImageType,
    pub dest_path: String,
}

/// The kind of a ticket image. Unknown kinds are kept as they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageType {
    CoverFront,
    CoverBack,
    #[serde(untagged)]
    Other(String),
}

/// The output the catalog wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Constraints {
    pub format: OutputFormat,
    /// Target bitrate for lossy formats (ignored for FLAC). `None`: the converter's default for the format.
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
    /// `None`: keep the source rate (within what the codec supports).
    #[serde(default)]
    pub sample_rate_hz: Option<u32>,
    #[serde(default = "default_true")]
    pub embed_metadata: bool,
    #[serde(default = "default_true")]
    pub embed_cover: bool,
}

fn default_true() -> bool {
    true
}

/// The five output formats the converter produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    OggVorbis,
    Opus,
    Mp3,
    Flac,
    /// AAC in an MP4 container (`.m4a`).
    Aac,
}

impl OutputFormat {
    /// File extensions (lower case, without the dot) a destination of this format may have.
    pub fn allowed_extensions(self) -> &'static [&'static str] {
        match self {
            OutputFormat::OggVorbis => &["ogg", "oga"],
            OutputFormat::Opus => &["opus", "ogg"],
            OutputFormat::Mp3 => &["mp3"],
            OutputFormat::Flac => &["flac"],
            OutputFormat::Aac => &["m4a", "mp4"],
        }
    }

    /// Whether the format is lossy (bitrate applies).
    pub fn is_lossy(self) -> bool {
        match self {
            OutputFormat::OggVorbis | OutputFormat::Opus | OutputFormat::Mp3 | OutputFormat::Aac => true,
            OutputFormat::Flac => false,
        }
    }
}

/// A validation failure: what is wrong, and the JSON path of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TicketValidationError {
    pub field: String,
    pub message: String,
}

impl TicketValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        TicketValidationError { field: field.into(), message: message.into() }
    }
}

/// Lowest and highest bitrate a ticket may ask for, in kbit/s.
pub const BITRATE_RANGE_KBPS: std::ops::RangeInclusive<u32> = 32..=512;
/// Lowest and highest output sample rate a ticket may ask for, in Hz.
pub const SAMPLE_RATE_RANGE_HZ: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Longest accepted ticket id.
pub const MAX_TICKET_ID_LEN: usize = 128;
/// The characters of a ticket id, as the OpenAPI document states them (`.` and `..` alone are refused too).
pub const TICKET_ID_PATTERN: &str = "^[A-Za-z0-9._-]+$";
/// Most tracks one ticket may have (a large box set fits; a hostile body does not).
pub const MAX_TRACKS: usize = 1_000;

impl Ticket {
    /// Checks every rule of the contract; the first violation found is returned with its field path.
    ///
    /// `allowed_roots` are the `[placer] allowed_roots`: every destination must resolve inside one of them.
    pub fn validate(&self, allowed_roots: &[std::path::PathBuf]) -> Result<(), TicketValidationError> {
        validate_ticket_id(&self.ticket_id)?;
        if self.search.artist.trim().is_empty() {
            return Err(TicketValidationError::new("search.artist", "must not be empty"));
        }
        if self.search.album.trim().is_empty() {
            return Err(TicketValidationError::new("search.album", "must not be empty"));
        }
        if let Some(year) = self.search.year {
            if !(1000..=3000).contains(&year) {
                return Err(TicketValidationError::new("search.year", "must be a four-digit year"));
            }
        }
        if self.tracks.is_empty() {
            return Err(TicketValidationError::new("tracks", "at least one track is required"));
        }
        if self.tracks.len() > MAX_TRACKS {
            return Err(TicketValidationError::new("tracks", format!("at most {MAX_TRACKS} tracks")));
        }
        self.validate_constraints()?;

        let mut track_ids = HashSet::new();
        let mut positions = HashSet::new();
        let mut destinations: HashMap<std::path::PathBuf, String> = HashMap::new();
        for (idx, track) in self.tracks.iter().enumerate() {
            let at = |field: &str| format!("tracks[{idx}].{field}");
            if track.catalog_track_id.trim().is_empty() {
                return Err(TicketValidationError::new(at("catalog_track_id"), "must not be empty"));
            }
            if !track_ids.insert(track.catalog_track_id.as_str()) {
                return Err(TicketValidationError::new(
                    at("catalog_track_id"),
                    format!("duplicate catalog_track_id {:?}", track.catalog_track_id),
                ));
            }
            if track.disc_number == 0 {
                return Err(TicketValidationError::new(at("disc_number"), "must be >= 1"));
            }
            if track.track_number == 0 {
                return Err(TicketValidationError::new(at("track_number"), "must be >= 1"));
            }
            if !positions.insert((track.disc_number, track.track_number)) {
                return Err(TicketValidationError::new(
                    at("track_number"),
                    format!("disc {} track {} appears twice", track.disc_number, track.track_number),
                ));
            }
            if track.name.trim().is_empty() {
                return Err(TicketValidationError::new(at("name"), "must not be empty"));
            }
            if !(track.duration_secs.is_finite() && track.duration_secs > 0.0) {
                return Err(TicketValidationError::new(at("duration_secs"), "must be a number > 0"));
            }
            if track.duration_secs > 24.0 * 3600.0 {
                return Err(TicketValidationError::new(at("duration_secs"), "must be under 24 hours"));
            }
            let field = at("dest_path");
            let normalised =
                check_destination(&track.dest_path, allowed_roots).map_err(|err| destination_error(&field, err))?;
            check_extension(&track.dest_path, self.constraints.format.allowed_extensions())
                .map_err(|message| TicketValidationError::new(&field, message))?;
            if let Some(first) = destinations.insert(destination_identity(&normalised), field.clone()) {
                return Err(TicketValidationError::new(field, format!("same destination as {first}")));
            }
        }

        let mut image_ids = HashSet::new();
        for (idx, image) in self.images.iter().enumerate() {
            let at = |field: &str| format!("images[{idx}].{field}");
            if image.catalog_image_id.trim().is_empty() {
                return Err(TicketValidationError::new(at("catalog_image_id"), "must not be empty"));
            }
            if !image_ids.insert(image.catalog_image_id.as_str()) {
                return Err(TicketValidationError::new(at("catalog_image_id"), "duplicate catalog_image_id"));
            }
            if let ImageType::Other(kind) = &image.image_type {
                let valid = !kind.is_empty()
                    && kind.len() <= 64
                    && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(TicketValidationError::new(at("type"), "must be a lower-case word"));
                }
            }
            let field = at("dest_path");
            let normalised =
                check_destination(&image.dest_path, allowed_roots).map_err(|err| destination_error(&field, err))?;
            check_extension(&image.dest_path, &["jpg", "jpeg"])
                .map_err(|message| TicketValidationError::new(&field, message))?;
            if let Some(first) = destinations.insert(destination_identity(&normalised), field.clone()) {
                return Err(TicketValidationError::new(field, format!("same destination as {first}")));
            }
        }
        Ok(())
    }

    fn validate_constraints(&self) -> Result<(), TicketValidationError> {
        let constraints = &self.constraints;
        if let Some(bitrate) = constraints.bitrate_kbps {
            if !BITRATE_RANGE_KBPS.contains(&bitrate) {
                return Err(TicketValidationError::new(
                    "constraints.bitrate_kbps",
                    format!("must be between {} and {}", BITRATE_RANGE_KBPS.start(), BITRATE_RANGE_KBPS.end()),
                ));
            }
        }
        if let Some(rate) = constraints.sample_rate_hz {
            if !SAMPLE_RATE_RANGE_HZ.contains(&rate) {
                return Err(TicketValidationError::new(
                    "constraints.sample_rate_hz",
                    format!("must be between {} and {}", SAMPLE_RATE_RANGE_HZ.start(), SAMPLE_RATE_RANGE_HZ.end()),
                ));
            }
        }
        Ok(())
    }

    /// Total catalog duration of the album.
    pub fn total_duration_secs(&self) -> f64 {
        self.tracks.iter().map(|track| track.duration_secs).sum()
    }
}

fn validate_ticket_id(id: &str) -> Result<(), TicketValidationError> {
    let valid_chars = id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if id.is_empty() || id.len() > MAX_TICKET_ID_LEN || !valid_chars || id == "." || id == ".." {
        return Err(TicketValidationError::new(
            "ticket_id",
            format!("must be 1-{MAX_TICKET_ID_LEN} characters of A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

fn destination_error(field: &str, err: DestinationError) -> TicketValidationError {
    TicketValidationError::new(field, err.to_string())
}

fn check_extension(dest_path: &str, allowed: &[&str]) -> Result<(), String> {
    let extension =
        Path::new(dest_path).extension().and_then(|ext| ext.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if allowed.contains(&extension.as_str()) {
        Ok(())
    } else {
        Err(format!("extension must be one of {allowed:?} for this output, got {extension:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn example() -> Ticket {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ticket.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_readme_example_ticket_is_valid() {
        example().validate(&[PathBuf::from("/media")]).unwrap();
    }

    #[test]
    fn unknown_image_types_are_kept() {
        let image: TicketImage =
            serde_json::from_str(r#"{"catalog_image_id": "i", "type": "booklet_page", "dest_path": "/media/x.jpg"}"#)
                .unwrap();
        assert_eq!(image.image_type, ImageType::Other("booklet_page".into()));
        assert_eq!(serde_json::to_value(&image).unwrap()["type"], "booklet_page");
        let front: TicketImage =
            serde_json::from_str(r#"{"catalog_image_id": "i", "type": "cover_front", "dest_path": "/media/x.jpg"}"#)
                .unwrap();
        assert_eq!(front.image_type, ImageType::CoverFront);
    }

    #[test]
    fn ticket_ids_that_could_name_other_directories_are_refused() {
        for id in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(129)] {
            let mut ticket = example();
            ticket.ticket_id = id.to_string();
            let err = ticket.validate(&[PathBuf::from("/media")]).unwrap_err();
            assert_eq!(err.field, "ticket_id", "{id:?}");
        }
    }

    #[test]
    fn disc_number_defaults_to_one() {
        let track: TicketTrack = serde_json::from_str(
            r#"{"catalog_track_id": "t", "track_number": 1, "name": "n", "duration_secs": 1, "dest_path": "/m/x.ogg"}"#,
        )
        .unwrap();
        assert_eq!(track.disc_number, 1);
    }
}
