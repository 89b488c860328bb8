//! The torrent client's view of metainfo: the hashes it must know itself (never guessed from qBittorrent's list),
//! computed by the crate's one parser (`models::metainfo`), its errors reported as `InvalidSource`.

use super::TorrentClientError;
use crate::models::metainfo;
use crate::models::InfoHash;

fn invalid(err: metainfo::TorrentFileError) -> TorrentClientError {
    TorrentClientError::InvalidSource { reason: err.0 }
}

/// The v1 info hash of a magnet (`xt=urn:btih:` with 40 hex or 32 base32 characters).
pub fn magnet_info_hash(magnet: &str) -> Result<InfoHash, TorrentClientError> {
    metainfo::magnet_info_hash(magnet).map_err(invalid)
}

/// The v1 info hash of a `.torrent`: SHA-1 of the exact bencoded bytes of its `info` value.
pub fn torrent_info_hash(torrent: &[u8]) -> Result<InfoHash, TorrentClientError> {
    metainfo::parse_torrent(torrent).map(|parsed| parsed.info_hash).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_failures_are_invalid_sources() {
        assert!(matches!(torrent_info_hash(b"d4:infoi3ee"), Err(TorrentClientError::InvalidSource { .. })));
        assert!(matches!(magnet_info_hash("magnet:?dn=x"), Err(TorrentClientError::InvalidSource { .. })));
        let hash = magnet_info_hash("magnet:?xt=urn:btih:7ED8995B1926266A80C63065CACB65D6A36398AD").unwrap();
        assert_eq!(hash.as_str(), "7ed8995b1926266a80c63065cacb65d6a36398ad");
    }
}
