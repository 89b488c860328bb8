//! Torrent-side data: a search result (`TorrentCandidate`), its files, and the validated `InfoHash` newtype.
//! Everything here may come from an indexer or a .torrent and is untrusted: deserialisation validates, never panics.

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
    /// `None` when the indexer gave no file list (the matcher can then only judge the title).
    #[serde(default)]
    pub files: Option<Vec<TorrentFile>>,
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

    #[test]
    fn info_hash_rejects_garbage() {
        assert!("xyz".parse::<InfoHash>().is_err());
        assert!("g".repeat(40).parse::<InfoHash>().is_err());
        assert!(serde_json::from_str::<InfoHash>("\"1234\"").is_err());
    }
}
