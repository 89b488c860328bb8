//! From Torznab items to `TorrentCandidate`s, and deduplication across indexers and query variants.
//!
//! Pure. An item is kept whenever it can be downloaded somehow (a magnet, an http(s) link, or an info hash);
//! malformed optional fields become `None`. Dedup is by info hash (keeping the best-seeded record and merging
//! what the others know), else by indexer + guid, else by link. It never trusts an indexer's numbers beyond u32/u64
//! ranges, and never invents data.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::models::{InfoHash, TorrentCandidate};

use super::torznab_xml::TorznabItem;

/// The info hash named by a magnet's `xt=urn:btih:` (hex or base32), normalised.
pub fn magnet_info_hash(magnet: &str) -> Option<InfoHash> {
    let url = url::Url::parse(magnet).ok()?;
    if url.scheme() != "magnet" {
        return None;
    }
    url.query_pairs().filter(|(key, _)| key == "xt").find_map(|(_, value)| {
        let lower = value.to_ascii_lowercase();
        lower.strip_prefix("urn:btih:").and_then(|_| value.get(9..)).and_then(|hash| hash.parse().ok())
    })
}

/// A magnet built from an info hash alone (display name only; peers come from DHT or the client's trackers).
pub fn magnet_from_hash(hash: &InfoHash, title: &str) -> String {
    let name: String = url::form_urlencoded::byte_serialize(title.as_bytes()).collect();
    format!("magnet:?xt=urn:btih:{}&dn={name}", hash.as_str())
}

fn is_http(link: &str) -> bool {
    let lower = link.get(..8).unwrap_or(link).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn is_magnet(link: &str) -> bool {
    link.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// RFC 822 (`Sun, 08 Aug 2021 19:21:37 +0000`), tolerating RFC 3339 too.
fn parse_pub_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text.trim())
        .or_else(|_| DateTime::parse_from_rfc3339(text.trim()))
        .ok()
        .map(|date| date.with_timezone(&Utc))
}

/// Whether the item's categories allow it: no category at all, an audio one (3000-3999), or only custom ids.
fn is_audio_or_unknown(categories: &[u32]) -> bool {
    let standard: Vec<u32> = categories.iter().copied().filter(|&c| c < 100_000).collect();
    standard.is_empty() || standard.iter().any(|c| (3000..4000).contains(c))
}

/// Turns one item into a candidate; `None` when it has no title, no way to be downloaded, or is not audio.
/// `endpoint_indexer` names the indexer of a per-indexer endpoint when the item does not.
pub fn candidate_from_item(item: TorznabItem, endpoint_indexer: Option<&str>) -> Option<TorrentCandidate> {
    if item.title.is_empty() || !is_audio_or_unknown(&item.categories) {
        return None;
    }
    let mut magnet_uri = item.magnet_url.filter(|m| is_magnet(m));
    let mut torrent_url = None;
    if let Some(link) = item.link {
        if is_magnet(&link) {
            magnet_uri.get_or_insert(link);
        } else if is_http(&link) {
            torrent_url = Some(link);
        }
    }
    let info_hash = item
        .infohash
        .as_deref()
        .and_then(|h| h.parse::<InfoHash>().ok())
        .or_else(|| magnet_uri.as_deref().and_then(magnet_info_hash));
    if magnet_uri.is_none() && torrent_url.is_none() {
        let hash = info_hash.as_ref()?;
        magnet_uri = Some(magnet_from_hash(hash, &item.title));
    }
    let seeders = item.seeders.unwrap_or(0);
    let leechers = item.peers.map(|peers| peers.saturating_sub(seeders)).unwrap_or(0);
    let details_url = item.comments.filter(|c| is_http(c)).or_else(|| item.guid.clone().filter(|g| is_http(g)));
    let indexer = item.indexer_name.or(item.indexer_id).or_else(|| endpoint_indexer.map(str::to_string));
    Some(TorrentCandidate {
        title: item.title,
        indexer: indexer.unwrap_or_default(),
        magnet_uri,
        info_hash,
        size_bytes: item.size.unwrap_or(0),
        seeders: clamp_u32(seeders),
        leechers: clamp_u32(leechers),
        files: None,
        files_omitted: 0,
        publish_date: item.pub_date.as_deref().and_then(parse_pub_date),
        torrent_url,
        details_url,
        guid: item.guid,
        categories: item.categories,
        grabs: item.grabs,
        download_volume_factor: item.download_volume_factor,
        upload_volume_factor: item.upload_volume_factor,
        minimum_ratio: item.minimum_ratio,
        minimum_seed_time_secs: item.minimum_seed_time_secs,
    })
}

/// The identity used for dedup.
fn dedup_key(candidate: &TorrentCandidate) -> String {
    if let Some(hash) = &candidate.info_hash {
        return format!("hash:{hash}");
    }
    if let Some(guid) = &candidate.guid {
        return format!("guid:{}\u{0}{guid}", candidate.indexer);
    }
    if let Some(link) = candidate.torrent_url.as_ref().or(candidate.magnet_uri.as_ref()) {
        return format!("link:{link}");
    }
    format!("title:{}\u{0}{}", candidate.indexer, candidate.title)
}

/// Candidates merged across indexers and query variants, in first-seen order until sorted.
#[derive(Debug, Default)]
pub struct CandidateSet {
    candidates: Vec<TorrentCandidate>,
    index: HashMap<String, usize>,
}

impl CandidateSet {
    pub fn new() -> Self {
        CandidateSet::default()
    }

    /// Adds one candidate, merging it into an existing record with the same identity.
    pub fn insert(&mut self, candidate: TorrentCandidate) {
        let key = dedup_key(&candidate);
        // A candidate whose hash became known (from its .torrent) may also match an earlier guid-keyed record.
        let alternate = candidate.guid.as_ref().map(|guid| format!("guid:{}\u{0}{guid}", candidate.indexer));
        let existing = self.index.get(&key).or_else(|| alternate.as_ref().and_then(|k| self.index.get(k))).copied();
        match existing.and_then(|at| self.candidates.get_mut(at).map(|kept| (at, kept))) {
            Some((at, kept)) => {
                merge_into(kept, candidate);
                // The merged record may now be known by more keys (a hash learnt from the other record).
                let merged_key = dedup_key(kept);
                self.index.entry(merged_key).or_insert(at);
                self.index.entry(key).or_insert(at);
            }
            None => {
                let at = self.candidates.len();
                if let Some(alternate) = alternate {
                    self.index.entry(alternate).or_insert(at);
                }
                self.index.insert(key, at);
                self.candidates.push(candidate);
            }
        }
    }

    /// How many candidates satisfy `predicate`.
    pub fn count_where(&self, predicate: impl Fn(&TorrentCandidate) -> bool) -> usize {
        self.candidates.iter().filter(|c| predicate(c)).count()
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The candidates, best seeded first (ties: larger first, then title), stable.
    pub fn into_sorted(self) -> Vec<TorrentCandidate> {
        let mut list = self.candidates;
        list.sort_by(|a, b| b.seeders.cmp(&a.seeders).then(b.size_bytes.cmp(&a.size_bytes)));
        list
    }
}

/// Keeps the better-seeded record's own fields and fills what it lacks from the other; file lists are merged
/// (union by path; the .torrent's list is complete, so the longer list wins its sizes).
fn merge_into(kept: &mut TorrentCandidate, other: TorrentCandidate) {
    let (mut best, rest) = if other.seeders > kept.seeders {
        (other, std::mem::replace(kept, TorrentCandidate::with_title(String::new())))
    } else {
        (std::mem::replace(kept, TorrentCandidate::with_title(String::new())), other)
    };
    best.magnet_uri = best.magnet_uri.or(rest.magnet_uri);
    best.info_hash = best.info_hash.or(rest.info_hash);
    best.torrent_url = best.torrent_url.or(rest.torrent_url);
    best.details_url = best.details_url.or(rest.details_url);
    best.guid = best.guid.or(rest.guid);
    best.publish_date = best.publish_date.or(rest.publish_date);
    best.grabs = best.grabs.or(rest.grabs);
    best.download_volume_factor = best.download_volume_factor.or(rest.download_volume_factor);
    best.upload_volume_factor = best.upload_volume_factor.or(rest.upload_volume_factor);
    best.minimum_ratio = best.minimum_ratio.or(rest.minimum_ratio);
    best.minimum_seed_time_secs = best.minimum_seed_time_secs.or(rest.minimum_seed_time_secs);
    if best.size_bytes == 0 {
        best.size_bytes = rest.size_bytes;
    }
    if best.indexer.is_empty() {
        best.indexer = rest.indexer;
    }
    for category in rest.categories {
        if !best.categories.contains(&category) {
            best.categories.push(category);
        }
    }
    // Both lists come from the same torrent (same hash): the longer one and its count of omitted files win.
    best.files_omitted = match (&best.files, &rest.files) {
        (Some(mine), Some(theirs)) if theirs.len() > mine.len() => rest.files_omitted,
        (None, Some(_)) => rest.files_omitted,
        _ => best.files_omitted,
    };
    best.files = match (best.files.take(), rest.files) {
        (Some(mine), Some(theirs)) => {
            let (mut base, extra) = if theirs.len() > mine.len() { (theirs, mine) } else { (mine, theirs) };
            for file in extra {
                if !base.iter().any(|f| f.path == file.path) {
                    base.push(file);
                }
            }
            Some(base)
        }
        (mine, theirs) => mine.or(theirs),
    };
    *kept = best;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::TorrentFile;

    fn item(title: &str) -> TorznabItem {
        TorznabItem { title: title.into(), ..TorznabItem::default() }
    }

    #[test]
    fn magnet_hash_accepts_upper_hex_and_base32() {
        let upper = "magnet:?xt=urn:btih:8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3&dn=x";
        assert_eq!(magnet_info_hash(upper).unwrap().as_str(), "8d0e3b6c1f2a49d7b5e3c9a1f0d2e4b6a8c0e1f3");
        let base32 = format!("magnet:?dn=y&xt=urn:btih:{}", "A".repeat(32));
        assert_eq!(magnet_info_hash(&base32).unwrap().as_str(), "0".repeat(40));
        assert!(magnet_info_hash("magnet:?xt=urn:btih:nothex").is_none());
        assert!(magnet_info_hash("http://x/?xt=urn:btih:8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3").is_none());
    }

    #[test]
    fn leechers_are_peers_minus_seeders_and_never_negative() {
        let mut it = item("a");
        it.link = Some("magnet:?xt=urn:btih:8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3".into());
        it.seeders = Some(61);
        it.peers = Some(64);
        assert_eq!(candidate_from_item(it.clone(), None).unwrap().leechers, 3);
        it.peers = Some(10);
        assert_eq!(candidate_from_item(it, None).unwrap().leechers, 0);
    }

    #[test]
    fn items_without_any_download_way_or_outside_audio_are_dropped() {
        assert!(candidate_from_item(item("no link"), None).is_none());
        let mut hash_only = item("hash only");
        hash_only.infohash = Some("8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3".into());
        let built = candidate_from_item(hash_only, None).unwrap();
        assert!(built.magnet_uri.unwrap().starts_with("magnet:?xt=urn:btih:8d0e3b6c"));
        let mut movie = item("movie");
        movie.link = Some("http://127.0.0.1/dl/x".into());
        movie.categories = vec![2000, 100_004];
        assert!(candidate_from_item(movie, None).is_none());
        let mut custom = item("custom only");
        custom.link = Some("http://127.0.0.1/dl/x".into());
        custom.categories = vec![104_627];
        assert!(candidate_from_item(custom, None).is_some());
    }

    #[test]
    fn a_hash_learnt_through_a_guid_merge_is_found_by_later_duplicates() {
        let hash: InfoHash = "8d0e3b6c1f2a49d7b5e3c9a1f0d2e4b6a8c0e1f3".parse().unwrap();
        let mut link_only = TorrentCandidate::with_title("a");
        link_only.indexer = "orpheus".into();
        link_only.guid = Some("https://o/1".into());
        let mut resolved = link_only.clone();
        resolved.info_hash = Some(hash.clone());
        let mut elsewhere = TorrentCandidate::with_title("b");
        elsewhere.indexer = "tpb".into();
        elsewhere.info_hash = Some(hash);
        let mut set = CandidateSet::new();
        set.insert(link_only);
        set.insert(resolved);
        set.insert(elsewhere);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn dedup_by_hash_keeps_best_seeded_and_merges_files() {
        let hash: InfoHash = "8d0e3b6c1f2a49d7b5e3c9a1f0d2e4b6a8c0e1f3".parse().unwrap();
        let mut low = TorrentCandidate::with_title("low");
        low.info_hash = Some(hash.clone());
        low.seeders = 2;
        low.torrent_url = Some("http://127.0.0.1/dl/a".into());
        low.files = Some(vec![TorrentFile { path: "A/1.flac".into(), size_bytes: 1 }]);
        let mut high = TorrentCandidate::with_title("high");
        high.info_hash = Some(hash);
        high.seeders = 50;
        high.magnet_uri = Some("magnet:?xt=urn:btih:8d0e3b6c1f2a49d7b5e3c9a1f0d2e4b6a8c0e1f3".into());
        let mut set = CandidateSet::new();
        set.insert(low);
        set.insert(high);
        let list = set.into_sorted();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].title, "high");
        assert_eq!(list[0].seeders, 50);
        assert_eq!(list[0].torrent_url.as_deref(), Some("http://127.0.0.1/dl/a"));
        assert_eq!(list[0].files.as_ref().unwrap().len(), 1);
    }
}
