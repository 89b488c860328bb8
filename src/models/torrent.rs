//! Torrent-side data: a search result (`TorrentCandidate`), its files, and the validated `InfoHash` newtype.
//! Everything here may come from an indexer or a .torrent and is untrusted: deserialisation validates, never panics.
//!
//! Anyone who uploads to a public tracker controls a torrent's file list, so what is kept of it is bounded where it
//! is read ([`FileListBound`]): only the files the matcher, converter and placer use (audio, CUE sheets, images,
//! rip logs), at most [`MAX_LISTED_FILES`] of them and [`MAX_LISTED_PATH_BYTES`] of paths, with a count of the rest
//! (`files_omitted`). What the admin is shown of a candidate is trimmed further ([`TorrentCandidate::trimmed`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BitTorrent v1 info hash, always stored as 40 lower-case hex characters.
///
/// Accepts 40 hex digits in any case or the 32-character base32 form magnets may carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(String);

/// Why a string is not an info hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a v1 info hash (40 hex or 32 base32 characters): {0:?}")]
pub struct InvalidInfoHash(pub String);

impl InfoHash {
    /// Builds the hash from the 20 raw bytes of a SHA-1 digest.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        InfoHash(hex::encode(bytes))
    }

    /// The 40 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InfoHash {
    type Err = InvalidInfoHash;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        if trimmed.len() == 40 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(InfoHash(trimmed.to_ascii_lowercase()));
        }
        if trimmed.len() == 32 {
            if let Some(bytes) = decode_base32(trimmed) {
                return Ok(InfoHash(hex::encode(bytes)));
            }
        }
        Err(InvalidInfoHash(raw.chars().take(80).collect()))
    }
}

/// RFC 4648 base32 (no padding) of exactly 20 bytes, as used by old magnet links.
fn decode_base32(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    let mut written = 0usize;
    for ch in text.bytes() {
        let value = match ch.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            let byte = u8::try_from((buffer >> bits) & 0xff).ok()?;
            *out.get_mut(written)? = byte;
            written += 1;
        }
    }
    (written == 20).then_some(out)
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for InfoHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for InfoHash {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("BitTorrent v1 info hash, 40 lower-case hex characters"))
            .into()
    }
}
impl utoipa::ToSchema for InfoHash {}

/// One file inside a torrent, as listed by the indexer, the .torrent, or qBittorrent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TorrentFile {
    /// Path inside the torrent, `/`-separated, exactly as the source gave it (untrusted: never join it to a
    /// filesystem path without the placer's sanitising).
    pub path: String,
    pub size_bytes: u64,
}

/// Most audio files and CUE sheets kept in a candidate's file list (a ticket has at most 1,000 tracks).
pub const MAX_LISTED_FILES: usize = 1_000;
/// Most bytes of audio and CUE paths kept in a candidate's file list.
pub const MAX_LISTED_PATH_BYTES: usize = 128 * 1024;
/// Most images and rip logs kept in a candidate's file list (and bytes of their paths).
pub const MAX_LISTED_EXTRAS: usize = 100;
pub const MAX_LISTED_EXTRA_PATH_BYTES: usize = 16 * 1024;

/// Extensions of the audio files the matcher maps (a superset of the release parser's audio formats).
const AUDIO_EXTENSIONS: [&str; 15] =
    ["flac", "mp3", "m4a", "aac", "mp4", "ogg", "oga", "opus", "wav", "ape", "wv", "aiff", "aif", "dsf", "dff"];
/// Extensions of the other files worth keeping: images (covers), rip logs.
const EXTRA_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "log"];

/// What a listed file is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedKind {
    /// Audio or a CUE sheet: what tracks are mapped to.
    Audio,
    /// An image or a rip log.
    Extra,
}

/// The kind of a torrent file by its extension (case-insensitive); `None` for files nothing uses (NFO, text,
/// video, archives, ...).
pub fn listed_kind(path: &str) -> Option<ListedKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = name.rsplit_once('.')?;
    if extension.len() > 4 {
        return None;
    }
    let lower = extension.to_ascii_lowercase();
    if AUDIO_EXTENSIONS.contains(&lower.as_str()) || lower == "cue" {
        Some(ListedKind::Audio)
    } else if EXTRA_EXTENSIONS.contains(&lower.as_str()) {
        Some(ListedKind::Extra)
    } else {
        None
    }
}

/// Builds a bounded file list from a torrent's files, in their order: keeps what [`listed_kind`] names, within
/// the caps per kind, and counts everything else. Memory stays bounded however many files are offered.
#[derive(Debug, Default)]
pub struct FileListBound {
    kept: Vec<TorrentFile>,
    audio: usize,
    audio_bytes: usize,
    extras: usize,
    extra_bytes: usize,
    omitted: u64,
}

impl FileListBound {
    pub fn new() -> Self {
        FileListBound::default()
    }

    /// Whether a file of `path` would be kept now (so a caller can avoid building it otherwise).
    pub fn would_keep(&self, path_len: usize, kind: Option<ListedKind>) -> bool {
        match kind {
            Some(ListedKind::Audio) => {
                self.audio < MAX_LISTED_FILES && self.audio_bytes.saturating_add(path_len) <= MAX_LISTED_PATH_BYTES
            }
            Some(ListedKind::Extra) => {
                self.extras < MAX_LISTED_EXTRAS
                    && self.extra_bytes.saturating_add(path_len) <= MAX_LISTED_EXTRA_PATH_BYTES
            }
            None => false,
        }
    }

    /// Offers one file: kept or counted.
    pub fn offer(&mut self, file: TorrentFile) {
        let kind = listed_kind(&file.path);
        if !self.would_keep(file.path.len(), kind) {
            self.omitted = self.omitted.saturating_add(1);
            return;
        }
        match kind {
            Some(ListedKind::Audio) => {
                self.audio += 1;
                self.audio_bytes += file.path.len();
            }
            Some(ListedKind::Extra) => {
                self.extras += 1;
                self.extra_bytes += file.path.len();
            }
            None => {}
        }
        self.kept.push(file);
    }

    /// Counts a file that was not offered (the caller decided with [`Self::would_keep`]).
    pub fn skip(&mut self) {
        self.omitted = self.omitted.saturating_add(1);
    }

    /// The kept files and how many were left out.
    pub fn finish(self) -> (Vec<TorrentFile>, u64) {
        (self.kept, self.omitted)
    }
}

/// A whole file list bounded at once (see [`FileListBound`]).
pub fn bound_file_list(files: impl IntoIterator<Item = TorrentFile>) -> (Vec<TorrentFile>, u64) {
    let mut bound = FileListBound::new();
    for file in files {
        bound.offer(file);
    }
    bound.finish()
}

/// Most files of a candidate shown to an admin besides the ones mapped to tracks (in `needs_approval`, the
/// history, the WebSocket); the whole kept list is behind the admin route `.../candidates/{idx}/files`.
pub const MAX_SHOWN_OTHER_FILES: usize = 50;

/// One search result: a release that may hold the ticket's album.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TorrentCandidate {
    pub title: String,
    #[serde(default)]
    pub indexer: String,
    #[serde(default)]
    pub magnet_uri: Option<String>,
    #[serde(default)]
    pub info_hash: Option<InfoHash>,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub seeders: u32,
    #[serde(default)]
    pub leechers: u32,
    /// `None` when the indexer gave no file list (the matcher can then only judge the title). Bounded: see
    /// [`FileListBound`].
    #[serde(default)]
    pub files: Option<Vec<TorrentFile>>,
    /// Files of the torrent not in `files`: of no use (not audio, CUE, image or log), beyond the caps, or trimmed
    /// from what an admin is shown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_omitted: u64,
    #[serde(default)]
    pub publish_date: Option<DateTime<Utc>>,
    /// The indexer's `.torrent` link (often Jackett's `/dl/` proxy), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torrent_url: Option<String>,
    /// The indexer's details page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// Torznab `guid`: identifies the result within its indexer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// Torznab category ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grabs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_volume_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_volume_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_seed_time_secs: Option<u64>,
}

impl TorrentCandidate {
    /// A candidate with only a title; the other fields at their defaults (tests and the `match` command).
    pub fn with_title(title: impl Into<String>) -> Self {
        TorrentCandidate {
            title: title.into(),
            indexer: String::new(),
            magnet_uri: None,
            info_hash: None,
            size_bytes: 0,
            seeders: 0,
            leechers: 0,
            files: None,
            files_omitted: 0,
            publish_date: None,
            torrent_url: None,
            details_url: None,
            guid: None,
            categories: Vec::new(),
            grabs: None,
            download_volume_factor: None,
            upload_volume_factor: None,
            minimum_ratio: None,
            minimum_seed_time_secs: None,
        }
    }

    /// The candidate as an admin is shown it: of its file list, the files in `keep` (those mapped to tracks), and
    /// up to [`MAX_SHOWN_OTHER_FILES`] others in list order; the rest is added to `files_omitted`.
    pub fn trimmed(mut self, keep: &std::collections::HashSet<&str>) -> TorrentCandidate {
        if let Some(files) = self.files.take() {
            let mut others = 0usize;
            let mut dropped = 0u64;
            let kept: Vec<TorrentFile> = files
                .into_iter()
                .filter(|file| {
                    if keep.contains(file.path.as_str()) {
                        return true;
                    }
                    others += 1;
                    if others <= MAX_SHOWN_OTHER_FILES {
                        true
                    } else {
                        dropped += 1;
                        false
                    }
                })
                .collect();
            self.files_omitted = self.files_omitted.saturating_add(dropped);
            self.files = Some(kept);
        }
        self
    }

    /// Whether `other` is the same release (same info hash, else the same indexer, title and links): how a
    /// trimmed candidate is found again among the search results.
    pub fn same_release(&self, other: &TorrentCandidate) -> bool {
        match (&self.info_hash, &other.info_hash) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => {
                self.title == other.title
                    && self.indexer == other.indexer
                    && self.torrent_url == other.torrent_url
                    && self.magnet_uri == other.magnet_uri
            }
        }
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hash_normalises_hex_case() {
        let hash: InfoHash = "D83C635F19470115552520E152369549F9706F34".parse().unwrap();
        assert_eq!(hash.as_str(), "d83c635f19470115552520e152369549f9706f34");
    }

    #[test]
    fn info_hash_accepts_base32() {
        // 20 zero bytes in base32 are 32 'A's.
        let hash: InfoHash = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
        assert_eq!(hash.as_str(), "0".repeat(40));
    }

    fn file(path: &str) -> TorrentFile {
        TorrentFile { path: path.into(), size_bytes: 1 }
    }

    #[test]
    fn only_useful_files_are_kept_within_the_caps_and_the_rest_counted() {
        let mut files = vec![file("A/info.nfo"), file("A/cover.JPG"), file("A/sample.mkv"), file("A/rip.log")];
        files.extend((0..1_500).map(|n| file(&format!("A/{n:04} - Track.flac"))));
        files.push(file("A/album.cue"));
        files.extend((0..300).map(|n| file(&format!("A/Scans/{n:03}.png"))));
        let (kept, omitted) = bound_file_list(files.clone());
        let audio = kept.iter().filter(|f| listed_kind(&f.path) == Some(ListedKind::Audio)).count();
        let extras = kept.iter().filter(|f| listed_kind(&f.path) == Some(ListedKind::Extra)).count();
        assert_eq!(audio, MAX_LISTED_FILES);
        assert_eq!(extras, MAX_LISTED_EXTRAS);
        assert_eq!(kept.len() as u64 + omitted, files.len() as u64, "every file is kept or counted");
        assert_eq!(kept[0].path, "A/cover.JPG", "the order is kept");
        assert!(kept.iter().all(|f| !f.path.ends_with(".nfo") && !f.path.ends_with(".mkv")));
        // Long names: the byte budget bounds the list before the count does.
        let long: Vec<TorrentFile> = (0..1_000).map(|n| file(&format!("{}/{n}.flac", "x".repeat(400)))).collect();
        let (kept, omitted) = bound_file_list(long);
        assert!(kept.iter().map(|f| f.path.len()).sum::<usize>() <= MAX_LISTED_PATH_BYTES);
        assert!(kept.len() < 400 && omitted > 600, "{} kept", kept.len());
    }

    #[test]
    fn a_trimmed_candidate_keeps_mapped_files_and_counts_the_rest() {
        let mut candidate = TorrentCandidate::with_title("t");
        candidate.files = Some((0..200).map(|n| file(&format!("A/{n:03}.flac"))).collect());
        candidate.files_omitted = 7;
        let keep: std::collections::HashSet<&str> = ["A/150.flac", "A/199.flac"].into_iter().collect();
        let trimmed = candidate.trimmed(&keep);
        let files = trimmed.files.as_ref().unwrap();
        assert_eq!(files.len(), MAX_SHOWN_OTHER_FILES + 2);
        assert!(files.iter().any(|f| f.path == "A/150.flac") && files.iter().any(|f| f.path == "A/199.flac"));
        assert_eq!(trimmed.files_omitted, 7 + 200 - 52);
        let json = serde_json::to_value(&trimmed).unwrap();
        assert_eq!(json["files_omitted"], 155);
        assert!(serde_json::to_value(TorrentCandidate::with_title("t")).unwrap().get("files_omitted").is_none());
    }

    #[test]
    fn info_hash_rejects_garbage() {
        assert!("xyz".parse::<InfoHash>().is_err());
        assert!("g".repeat(40).parse::<InfoHash>().is_err());
        assert!(serde_json::from_str::<InfoHash>("\"1234\"").is_err());
    }
}
