//! The v1 info hash of a magnet URI or a `.torrent`, computed by us (qBittorrent < 5.2 never tells it on add).
//!
//! Input is hostile: every parse is bounded (depth, length) and fails with `InvalidSource`, never panics. This file
//! never talks to qBittorrent and never writes anything.

use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::TorrentClientError;
use crate::models::InfoHash;

/// Largest .torrent accepted (qBittorrent itself refuses bodies over 64 MiB; real ones are far smaller).
pub const MAX_TORRENT_BYTES: usize = 32 * 1024 * 1024;
/// Deepest nesting of bencoded lists/dicts accepted.
const MAX_DEPTH: usize = 64;

fn invalid(reason: impl Into<String>) -> TorrentClientError {
    TorrentClientError::InvalidSource { reason: reason.into() }
}

/// The v1 info hash of a magnet (`xt=urn:btih:` with 40 hex or 32 base32 characters).
pub fn magnet_info_hash(magnet: &str) -> Result<InfoHash, TorrentClientError> {
    let url = url::Url::parse(magnet.trim()).map_err(|e| invalid(format!("not a magnet URI ({e})")))?;
    if url.scheme() != "magnet" {
        return Err(invalid(format!("not a magnet URI (scheme {:?})", url.scheme())));
    }
    let mut saw_v2 = false;
    for (key, value) in url.query_pairs() {
        if key != "xt" {
            continue;
        }
        if let Some(hash) = value.strip_prefix("urn:btih:") {
            return hash.parse().map_err(|e| invalid(format!("magnet: {e}")));
        }
        if value.starts_with("urn:btmh:") {
            saw_v2 = true;
        }
    }
    if saw_v2 {
        Err(invalid("magnet has only a v2 (btmh) hash; v2-only torrents are not supported"))
    } else {
        Err(invalid("magnet has no xt=urn:btih: hash"))
    }
}

/// The fields of the info dict this code looks at (serde_bencode ignores the rest).
#[derive(Deserialize)]
struct InfoFields {
    #[serde(default)]
    pieces: Option<serde_bytes::ByteBuf>,
}

/// The v1 info hash of a `.torrent`: SHA-1 of the exact bencoded bytes of its `info` value.
pub fn torrent_info_hash(torrent: &[u8]) -> Result<InfoHash, TorrentClientError> {
    if torrent.len() > MAX_TORRENT_BYTES {
        return Err(invalid(format!("torrent file of {} bytes is larger than {MAX_TORRENT_BYTES}", torrent.len())));
    }
    let info = info_span(torrent)?;
    let fields: InfoFields = serde_bencode::from_bytes(info).map_err(|e| invalid(format!("torrent info dict: {e}")))?;
    if fields.pieces.is_none() {
        return Err(invalid("torrent has no v1 `pieces` (v2-only torrents are not supported)"));
    }
    let digest: [u8; 20] = Sha1::digest(info).into();
    Ok(InfoHash::from_bytes(digest))
}

/// Finds the raw bytes of the top-level `info` value (re-encoding a parsed value could change them).
fn info_span(data: &[u8]) -> Result<&[u8], TorrentClientError> {
    if data.first() != Some(&b'd') {
        return Err(invalid("torrent file is not a bencoded dictionary"));
    }
    let mut pos = 1;
    loop {
        match data.get(pos) {
            Some(b'e') => return Err(invalid("torrent file has no `info` dictionary")),
            Some(_) => {}
            None => return Err(invalid("torrent file is truncated")),
        }
        let (key, after_key) = read_string(data, pos)?;
        let end = skip_value(data, after_key, 0)?;
        if key == b"info" {
            if data.get(after_key) != Some(&b'd') {
                return Err(invalid("torrent `info` is not a dictionary"));
            }
            return data.get(after_key..end).ok_or_else(|| invalid("torrent file is truncated"));
        }
        pos = end;
    }
}

/// Reads a bencoded byte string at `pos`; returns it and the position after it.
fn read_string(data: &[u8], pos: usize) -> Result<(&[u8], usize), TorrentClientError> {
    let colon = data
        .get(pos..)
        .and_then(|rest| rest.iter().take(21).position(|&b| b == b':'))
        .ok_or_else(|| invalid("torrent file: malformed string length"))?;
    let digits = data.get(pos..pos + colon).ok_or_else(|| invalid("torrent file is truncated"))?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid("torrent file: malformed string length"));
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| invalid("torrent file: malformed string length"))?;
    let start = pos + colon + 1;
    let end = start.checked_add(len).ok_or_else(|| invalid("torrent file: string too long"))?;
    let bytes = data.get(start..end).ok_or_else(|| invalid("torrent file is truncated"))?;
    Ok((bytes, end))
}

/// Skips one bencoded value at `pos`; returns the position after it.
fn skip_value(data: &[u8], pos: usize, depth: usize) -> Result<usize, TorrentClientError> {
    if depth > MAX_DEPTH {
        return Err(invalid("torrent file nests too deeply"));
    }
    match data.get(pos) {
        Some(b'i') => {
            let rest = data.get(pos + 1..).ok_or_else(|| invalid("torrent file is truncated"))?;
            let end = rest.iter().position(|&b| b == b'e').ok_or_else(|| invalid("torrent file is truncated"))?;
            Ok(pos + 1 + end + 1)
        }
        Some(b'l') => {
            let mut at = pos + 1;
            while data.get(at) != Some(&b'e') {
                if at >= data.len() {
                    return Err(invalid("torrent file is truncated"));
                }
                at = skip_value(data, at, depth + 1)?;
            }
            Ok(at + 1)
        }
        Some(b'd') => {
            let mut at = pos + 1;
            while data.get(at) != Some(&b'e') {
                if at >= data.len() {
                    return Err(invalid("torrent file is truncated"));
                }
                let (_, after_key) = read_string(data, at)?;
                at = skip_value(data, after_key, depth + 1)?;
            }
            Ok(at + 1)
        }
        Some(b'0'..=b'9') => Ok(read_string(data, pos)?.1),
        Some(_) => Err(invalid("torrent file: unexpected byte in bencoding")),
        None => Err(invalid("torrent file is truncated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnet_hash_hex_and_base32() {
        let hex = magnet_info_hash("magnet:?xt=urn:btih:7ED8995B1926266A80C63065CACB65D6A36398AD&dn=x").unwrap();
        assert_eq!(hex.as_str(), "7ed8995b1926266a80c63065cacb65d6a36398ad");
        let b32 = magnet_info_hash("magnet:?dn=a&xt=urn:btih:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(b32.as_str(), "0".repeat(40));
    }

    #[test]
    fn magnet_without_v1_hash_is_refused() {
        assert!(magnet_info_hash("magnet:?xt=urn:btmh:1220abcd").is_err());
        assert!(magnet_info_hash("http://example.invalid/x.torrent").is_err());
        assert!(magnet_info_hash("magnet:?dn=nothing").is_err());
        assert!(magnet_info_hash("magnet:?xt=urn:btih:123").is_err());
    }

    #[test]
    fn torrent_hash_is_sha1_of_the_raw_info_bytes() {
        // A non-canonical info dict (keys out of order): re-encoding would change it, the raw span must not.
        let info = b"d6:pieces20:aaaaaaaaaaaaaaaaaaaa4:name1:x12:piece lengthi16384e6:lengthi5ee";
        let mut torrent = b"d8:announce4:http4:info".to_vec();
        torrent.extend_from_slice(info);
        torrent.extend_from_slice(b"5:otherli1ei2eee");
        let expected: [u8; 20] = Sha1::digest(info).into();
        assert_eq!(torrent_info_hash(&torrent).unwrap(), InfoHash::from_bytes(expected));
    }

    #[test]
    fn hostile_torrents_fail_cleanly() {
        for bad in [
            &b""[..],
            b"d",
            b"d4:info",
            b"d4:infoi3ee",
            b"d4:infod4:name1:xee",
            b"d99999999999999999999999:x",
            b"le",
            b"d4:infod6:pieces5:abce",
        ] {
            assert!(torrent_info_hash(bad).is_err(), "{bad:?}");
        }
        let deep = format!("d4:info{}{}e", "l".repeat(500), "e".repeat(500));
        assert!(torrent_info_hash(deep.as_bytes()).is_err());
    }
}
