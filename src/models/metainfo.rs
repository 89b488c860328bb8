//! Torrent metainfo shared by the searcher and the torrent client: the v1 info hash and file list of `.torrent`
//! bytes (BEP 3) and the v1 info hash of a magnet URI. One parser, so both stages agree on every hash.
//!
//! The info hash is the SHA-1 of the info dictionary's bytes EXACTLY as they appear in the file (re-encoding a
//! decoded structure could reorder keys or drop fields and change the hash), so the raw span of the `info` value is
//! located first, then decoded with `serde_bencode`. Pure; bytes are hostile: counts, depths and lengths are capped,
//! pad files (BEP 47) skipped, and nothing here panics or touches the filesystem.
//!
//! Also the places a torrent or magnet tells its client to connect to (trackers, web seeds, DHT nodes, peers:
//! [`torrent_sources`], [`magnet_sources`]) and their removal ([`strip_torrent_sources`], [`strip_magnet_sources`]),
//! so that the searcher can keep the torrent client from calling internal addresses an indexer named. Those keys
//! live outside the info dictionary, whose bytes are copied untouched: the info hash never changes.

use serde::Deserialize;
use serde_bytes::ByteBuf;
use sha1::{Digest, Sha1};

use crate::models::torrent::{listed_kind, FileListBound};
use crate::models::{InfoHash, TorrentFile};

/// Largest `.torrent` accepted (also the download cap for `/dl/` links).
pub const MAX_TORRENT_BYTES: usize = 10 * 1024 * 1024;
const MAX_PATH_COMPONENTS: usize = 64;
const MAX_PATH_BYTES: usize = 4096;
const MAX_NESTING: usize = 64;

/// What a `.torrent` tells before any download.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTorrent {
    pub info_hash: InfoHash,
    /// The `name` of the info dict (the top folder of a multi-file torrent).
    pub name: String,
    /// Paths joined with `/` under `name` (multi-file), or `name` alone (single file); pad files skipped; only
    /// the files worth keeping, within the caps of [`FileListBound`].
    pub files: Vec<TorrentFile>,
    /// Files (pad files excluded) not in `files`.
    pub files_omitted: u64,
    pub total_size: u64,
}

/// Why bytes are not a usable v1 `.torrent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TorrentFileError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, TorrentFileError> {
    Err(TorrentFileError(message.into()))
}

/// The v1 info hash of a magnet (`xt=urn:btih:` with 40 hex or 32 base32 characters).
pub fn magnet_info_hash(magnet: &str) -> Result<InfoHash, TorrentFileError> {
    let url = url::Url::parse(magnet.trim()).map_err(|e| TorrentFileError(format!("not a magnet URI ({e})")))?;
    if url.scheme() != "magnet" {
        return fail(format!("not a magnet URI (scheme {:?})", url.scheme()));
    }
    let mut saw_v2 = false;
    for (key, value) in url.query_pairs() {
        if key != "xt" {
            continue;
        }
        if let Some(hash) = value.strip_prefix("urn:btih:") {
            return hash.parse().map_err(|e| TorrentFileError(format!("magnet: {e}")));
        }
        if value.starts_with("urn:btmh:") {
            saw_v2 = true;
        }
    }
    if saw_v2 {
        fail("magnet has only a v2 (btmh) hash; v2-only torrents are not supported")
    } else {
        fail("magnet has no xt=urn:btih: hash")
    }
}

/// Parses a `.torrent`: info hash (v1) and the bounded file list. The `files` list is read one entry at a time
/// (every entry is validated, only the kept ones are held), so a 10 MB torrent of 100,000 files costs no more
/// memory than its bytes and the kept list.
pub fn parse_torrent(bytes: &[u8]) -> Result<ParsedTorrent, TorrentFileError> {
    if bytes.len() > MAX_TORRENT_BYTES {
        return fail(format!("{} bytes exceeds the {MAX_TORRENT_BYTES}-byte cap", bytes.len()));
    }
    let (start, end) = find_info_span(bytes)?;
    let info_bytes = bytes.get(start..end).ok_or_else(|| TorrentFileError("info span out of range".into()))?;
    let digest: [u8; 20] = Sha1::digest(info_bytes).into();
    let info: InfoDict = serde_bencode::from_bytes(info_bytes)
        .map_err(|err| TorrentFileError(format!("info dictionary does not decode: {err}")))?;
    if info.pieces.is_none() {
        return fail("info dictionary has no v1 `pieces` (BitTorrent v2-only torrents are not supported)");
    }
    let name = component_text(info.name_utf8.as_ref().unwrap_or(&info.name));
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return fail(format!("unsafe torrent name {:?}", name.chars().take(80).collect::<String>()));
    }
    let mut bound = FileListBound::new();
    let mut total_size: u64 = 0;
    match (info.files.is_some(), info.length) {
        (true, _) => {
            let (list_start, _) =
                dict_value_span(info_bytes, b"files")?.ok_or_else(|| TorrentFileError("`files` not found".into()))?;
            if info_bytes.get(list_start) != Some(&b'l') {
                return fail("`files` is not a list");
            }
            let mut listed = 0u64;
            let mut at = list_start + 1;
            while info_bytes.get(at) != Some(&b'e') {
                let entry_end = skip_value(info_bytes, at, 2)?;
                let entry: FileEntry = serde_bencode::from_bytes(info_bytes.get(at..entry_end).unwrap_or_default())
                    .map_err(|err| TorrentFileError(format!("file entry does not decode: {err}")))?;
                at = entry_end;
                let size = u64::try_from(entry.length).map_err(|_| TorrentFileError("negative file length".into()))?;
                total_size = total_size.saturating_add(size);
                let components = entry.path_utf8.as_ref().unwrap_or(&entry.path);
                if is_pad_file(entry.attr.as_ref().map(|a| a.as_slice()), components) {
                    continue;
                }
                listed += 1;
                let path_len = check_path(&name, components)?;
                let kind = components.last().and_then(|last| listed_kind(&String::from_utf8_lossy(last)));
                if bound.would_keep(path_len, kind) {
                    bound.offer(TorrentFile { path: join_path(&name, components), size_bytes: size });
                } else {
                    bound.skip();
                }
            }
            if listed == 0 {
                return fail("multi-file torrent lists no file");
            }
        }
        (false, Some(length)) => {
            let size = u64::try_from(length).map_err(|_| TorrentFileError("negative length".into()))?;
            total_size = size;
            bound.offer(TorrentFile { path: name.clone(), size_bytes: size });
        }
        (false, None) => return fail("info dictionary has neither `length` nor `files`"),
    }
    let (files, files_omitted) = bound.finish();
    Ok(ParsedTorrent { info_hash: InfoHash::from_bytes(digest), name, files, files_omitted, total_size })
}

#[derive(Deserialize)]
struct InfoDict {
    #[serde(default)]
    name: ByteBuf,
    #[serde(default, rename = "name.utf-8")]
    name_utf8: Option<ByteBuf>,
    #[serde(default)]
    length: Option<i64>,
    /// Read entry by entry afterwards (see `parse_torrent`); here only its presence.
    #[serde(default)]
    files: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pieces: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct FileEntry {
    length: i64,
    #[serde(default)]
    path: Vec<ByteBuf>,
    #[serde(default, rename = "path.utf-8")]
    path_utf8: Option<Vec<ByteBuf>>,
    #[serde(default)]
    attr: Option<ByteBuf>,
}

fn component_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// BEP 47 pad files (`attr` contains `p`), and the `.pad/N` / `_____padding_file_` path conventions.
fn is_pad_file(attr: Option<&[u8]>, components: &[ByteBuf]) -> bool {
    if attr.is_some_and(|a| a.contains(&b'p')) {
        return true;
    }
    match components.first() {
        Some(first) if components.len() == 2 && first.as_slice() == b".pad" => true,
        _ => components.last().is_some_and(|last| last.starts_with(b"_____padding_file_")),
    }
}

/// Checks every component of a file's path (no empty, `.`, `..`, `/` or NUL; not too many, not too long) and
/// returns the length of the joined path `name/a/b`.
fn check_path(name: &str, components: &[ByteBuf]) -> Result<usize, TorrentFileError> {
    if components.is_empty() || components.len() > MAX_PATH_COMPONENTS {
        return fail(format!("file path with {} components", components.len()));
    }
    let mut length = name.len();
    for component in components {
        let text = String::from_utf8_lossy(component);
        if text.is_empty() || text == "." || text == ".." || text.contains(['/', '\0']) {
            return fail(format!("unsafe path component {:?}", text.chars().take(80).collect::<String>()));
        }
        length += 1 + text.len();
        if length > MAX_PATH_BYTES {
            return fail("file path too long");
        }
    }
    Ok(length)
}

/// `name/a/b` (components already checked by [`check_path`]).
fn join_path(name: &str, components: &[ByteBuf]) -> String {
    let mut path = String::from(name);
    for component in components {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(component));
    }
    path
}

/// The byte range of `key`'s value in the dictionary `bytes` (which starts with `d`), if present.
fn dict_value_span(bytes: &[u8], key: &[u8]) -> Result<Option<(usize, usize)>, TorrentFileError> {
    let mut pos = 1;
    loop {
        match bytes.get(pos) {
            Some(b'e') => return Ok(None),
            Some(_) => {
                let (found, after_key) = read_string(bytes, pos)?;
                let value_end = skip_value(bytes, after_key, 2)?;
                if found == key {
                    return Ok(Some((after_key, value_end)));
                }
                pos = value_end;
            }
            None => return fail("truncated dictionary"),
        }
    }
}

/// Finds the byte range of the top-level `info` value.
fn find_info_span(bytes: &[u8]) -> Result<(usize, usize), TorrentFileError> {
    if bytes.first() != Some(&b'd') {
        return fail("not a bencoded dictionary");
    }
    let mut pos = 1;
    let mut info = None;
    loop {
        match bytes.get(pos) {
            Some(b'e') => break,
            Some(_) => {
                let (key, after_key) = read_string(bytes, pos)?;
                let value_end = skip_value(bytes, after_key, 1)?;
                if key == b"info" && info.is_none() {
                    info = Some((after_key, value_end));
                }
                pos = value_end;
            }
            None => return fail("truncated top-level dictionary"),
        }
    }
    match info {
        Some((start, end)) if bytes.get(start) == Some(&b'd') => Ok((start, end)),
        Some(_) => fail("`info` is not a dictionary"),
        None => fail("no `info` dictionary"),
    }
}

/// Reads a byte string at `pos`; returns it and the position after it.
fn read_string(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), TorrentFileError> {
    let colon = bytes
        .get(pos..)
        .and_then(|rest| rest.iter().take(20).position(|&b| b == b':'))
        .ok_or_else(|| TorrentFileError(format!("bad string length at byte {pos}")))?;
    let digits = bytes.get(pos..pos + colon).unwrap_or_default();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return fail(format!("bad string length at byte {pos}"));
    }
    let length: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| TorrentFileError(format!("bad string length at byte {pos}")))?;
    let start = pos + colon + 1;
    let end = start.checked_add(length).filter(|&end| end <= bytes.len());
    match end {
        Some(end) => Ok((bytes.get(start..end).unwrap_or_default(), end)),
        None => fail(format!("string at byte {pos} runs past the end")),
    }
}

/// Skips one bencoded value at `pos`; returns the position after it.
fn skip_value(bytes: &[u8], pos: usize, depth: usize) -> Result<usize, TorrentFileError> {
    if depth > MAX_NESTING {
        return fail("nesting too deep");
    }
    match bytes.get(pos) {
        Some(b'i') => {
            let rest = bytes.get(pos + 1..).unwrap_or_default();
            let end =
                rest.iter().take(32).position(|&b| b == b'e').ok_or_else(|| TorrentFileError("bad integer".into()))?;
            Ok(pos + 1 + end + 1)
        }
        Some(b'l') => {
            let mut at = pos + 1;
            while bytes.get(at) != Some(&b'e') {
                if at >= bytes.len() {
                    return fail("truncated list");
                }
                at = skip_value(bytes, at, depth + 1)?;
            }
            Ok(at + 1)
        }
        Some(b'd') => {
            let mut at = pos + 1;
            while bytes.get(at) != Some(&b'e') {
                if at >= bytes.len() {
                    return fail("truncated dictionary");
                }
                let (_, after_key) = read_string(bytes, at)?;
                at = skip_value(bytes, after_key, depth + 1)?;
            }
            Ok(at + 1)
        }
        Some(b'0'..=b'9') => read_string(bytes, pos).map(|(_, end)| end),
        Some(other) => fail(format!("unexpected byte {other:#04x} at {pos}")),
        None => fail("truncated value"),
    }
}

/// What a torrent or magnet source makes the client connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// An announce URL (`announce`, `announce-list`, magnet `tr=`).
    Tracker,
    /// An HTTP(S) source of the payload (`url-list`, `httpseeds`, magnet `ws=`, `as=`, `xs=`).
    WebSeed,
    /// A `host:port` contacted directly: a DHT bootstrap node (`nodes`) or a peer (magnet `x.pe=`).
    Endpoint,
}

impl SourceKind {
    /// How the kind is named in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Tracker => "tracker",
            SourceKind::WebSeed => "web seed",
            SourceKind::Endpoint => "node or peer",
        }
    }
}

/// A torrent or magnet with some sources removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped<T> {
    pub value: T,
    /// What was removed (a malformed value is listed as its key).
    pub removed: Vec<(SourceKind, String)>,
}

/// Every tracker, web seed and node a `.torrent` names outside its info dictionary, in file order. `nodes` entries
/// are given as `host:port` (`[v6]:port`).
pub fn torrent_sources(bytes: &[u8]) -> Result<Vec<(SourceKind, String)>, TorrentFileError> {
    let mut found = Vec::new();
    for (key, value) in top_level_entries(bytes)? {
        // A value of an unexpected shape is skipped here ([`strip_torrent_sources`] removes it).
        if let Some(kind) = source_key_kind(key) {
            if let Ok((Some(decoded), _)) = filter_source_value(key, value, kind, &|_, _| true) {
                collect_source_strings(key, &decoded, kind, &mut found);
            }
        }
    }
    Ok(found)
}

/// The `.torrent` without the sources `keep` refuses; other keys (and the info dictionary) are copied byte for
/// byte, so the info hash is unchanged. A source key whose value has an unexpected shape is removed whole.
pub fn strip_torrent_sources(
    bytes: &[u8],
    keep: impl Fn(SourceKind, &str) -> bool,
) -> Result<Stripped<Vec<u8>>, TorrentFileError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.push(b'd');
    let mut removed = Vec::new();
    for (key, value) in top_level_entries(bytes)? {
        let key_text = String::from_utf8_lossy(key).into_owned();
        let Some(kind) = source_key_kind(key) else {
            write_bencode_bytes(&mut out, key);
            out.extend_from_slice(value);
            continue;
        };
        let (kept, changed) = match filter_source_value(key, value, kind, &keep) {
            Ok(result) => result,
            Err(_) => {
                removed.push((kind, key_text));
                continue;
            }
        };
        if changed {
            let mut still = Vec::new();
            if let Some(kept_value) = &kept {
                collect_source_strings(key, kept_value, kind, &mut still);
            }
            let still: std::collections::HashSet<(SourceKind, String)> = still.into_iter().collect();
            let mut all = Vec::new();
            if let Ok((Some(original), _)) = filter_source_value(key, value, kind, &|_, _| true) {
                collect_source_strings(key, &original, kind, &mut all);
            }
            removed.extend(all.into_iter().filter(|source| !still.contains(source)));
        }
        match kept {
            Some(_) if !changed => {
                write_bencode_bytes(&mut out, key);
                out.extend_from_slice(value);
            }
            Some(kept_value) => {
                let encoded = serde_bencode::to_bytes(&kept_value)
                    .map_err(|err| TorrentFileError(format!("cannot encode {key_text}: {err}")))?;
                write_bencode_bytes(&mut out, key);
                out.extend_from_slice(&encoded);
            }
            None => {}
        }
    }
    out.push(b'e');
    Ok(Stripped { value: out, removed })
}

/// Every source of a magnet URI: `tr` (and `tr.N`), `ws`, `as`, `xs` and `x.pe`, decoded, in URI order.
pub fn magnet_sources(magnet: &str) -> Vec<(SourceKind, String)> {
    magnet_pairs(magnet).filter_map(|(_, key, value)| magnet_key_kind(&key).map(|kind| (kind, value))).collect()
}

/// The magnet without the sources `keep` refuses; every other parameter is kept exactly as written.
pub fn strip_magnet_sources(magnet: &str, keep: impl Fn(SourceKind, &str) -> bool) -> Stripped<String> {
    let Some((head, _)) = magnet.split_once('?') else {
        return Stripped { value: magnet.to_string(), removed: Vec::new() };
    };
    let mut kept_pairs: Vec<&str> = Vec::new();
    let mut removed = Vec::new();
    for (raw, key, value) in magnet_pairs(magnet) {
        match magnet_key_kind(&key) {
            Some(kind) if !keep(kind, &value) => removed.push((kind, value)),
            _ => kept_pairs.push(raw),
        }
    }
    Stripped { value: format!("{head}?{}", kept_pairs.join("&")), removed }
}

/// (raw pair, decoded key, decoded value) of each `&`-separated query parameter of a magnet.
fn magnet_pairs(magnet: &str) -> impl Iterator<Item = (&str, String, String)> {
    let query = magnet.split_once('?').map_or("", |(_, query)| query);
    query.split('&').filter(|raw| !raw.is_empty()).map(|raw| {
        let (key, value) = url::form_urlencoded::parse(raw.as_bytes()).next().unwrap_or_default();
        (raw, key.into_owned(), value.into_owned())
    })
}

fn magnet_key_kind(key: &str) -> Option<SourceKind> {
    let base = key.split_once('.').filter(|(name, n)| *name == "tr" && n.bytes().all(|b| b.is_ascii_digit()));
    match key {
        "tr" => Some(SourceKind::Tracker),
        _ if base.is_some() => Some(SourceKind::Tracker),
        "ws" | "as" | "xs" => Some(SourceKind::WebSeed),
        "x.pe" => Some(SourceKind::Endpoint),
        _ => None,
    }
}

fn source_key_kind(key: &[u8]) -> Option<SourceKind> {
    match key {
        b"announce" | b"announce-list" => Some(SourceKind::Tracker),
        b"url-list" | b"httpseeds" => Some(SourceKind::WebSeed),
        b"nodes" => Some(SourceKind::Endpoint),
        _ => None,
    }
}

/// One top-level entry: its key and its value's raw bytes.
type RawEntry<'a> = (&'a [u8], &'a [u8]);

/// The top-level dictionary's entries.
fn top_level_entries(bytes: &[u8]) -> Result<Vec<RawEntry<'_>>, TorrentFileError> {
    if bytes.len() > MAX_TORRENT_BYTES {
        return fail(format!("{} bytes exceeds the {MAX_TORRENT_BYTES}-byte cap", bytes.len()));
    }
    if bytes.first() != Some(&b'd') {
        return fail("not a bencoded dictionary");
    }
    let mut entries = Vec::new();
    let mut pos = 1;
    loop {
        match bytes.get(pos) {
            Some(b'e') => return Ok(entries),
            Some(_) => {
                let (key, after_key) = read_string(bytes, pos)?;
                let value_end = skip_value(bytes, after_key, 1)?;
                entries.push((key, bytes.get(after_key..value_end).unwrap_or_default()));
                pos = value_end;
            }
            None => return fail("truncated top-level dictionary"),
        }
    }
}

fn write_bencode_bytes(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(text);
}

type Bencode = serde_bencode::value::Value;

fn bencode_text(value: &Bencode) -> Option<String> {
    match value {
        Bencode::Bytes(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
        _ => None,
    }
}

/// A `nodes` entry (`[host, port]`) as `host:port`.
fn node_text(value: &Bencode) -> Option<String> {
    let Bencode::List(pair) = value else { return None };
    let (Some(host), Some(Bencode::Int(port))) = (pair.first().and_then(bencode_text), pair.get(1)) else {
        return None;
    };
    let port = u16::try_from(*port).ok()?;
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// Decodes one source value and keeps what `keep` accepts: `(None, _)` when nothing is left, `changed` when
/// something was removed. An unexpected shape is an error.
fn filter_source_value(
    key: &[u8],
    raw: &[u8],
    kind: SourceKind,
    keep: &dyn Fn(SourceKind, &str) -> bool,
) -> Result<(Option<Bencode>, bool), TorrentFileError> {
    let value: Bencode =
        serde_bencode::from_bytes(raw).map_err(|err| TorrentFileError(format!("undecodable source value: {err}")))?;
    let shape = || TorrentFileError(format!("unexpected shape of {}", String::from_utf8_lossy(key)));
    let accepts = |item: &Bencode| -> Result<bool, TorrentFileError> {
        let text = bencode_text(item).ok_or_else(shape)?;
        Ok(keep(kind, &text))
    };
    match (key, value) {
        (b"announce", value) => Ok(if accepts(&value)? { (Some(value), false) } else { (None, true) }),
        (b"url-list", value @ Bencode::Bytes(_)) => {
            // An empty string means "no web seed" in some writers.
            let empty = matches!(&value, Bencode::Bytes(b) if b.is_empty());
            Ok(if empty || accepts(&value)? { (Some(value), false) } else { (None, true) })
        }
        (b"announce-list", Bencode::List(tiers)) => {
            let mut changed = false;
            let mut kept_tiers = Vec::new();
            for tier in tiers {
                let Bencode::List(urls) = tier else { return Err(shape()) };
                let before = urls.len();
                let mut kept_urls = Vec::new();
                for url in urls {
                    if accepts(&url)? {
                        kept_urls.push(url);
                    }
                }
                changed |= kept_urls.len() != before;
                if kept_urls.is_empty() {
                    changed = true;
                } else {
                    kept_tiers.push(Bencode::List(kept_urls));
                }
            }
            Ok(if kept_tiers.is_empty() { (None, true) } else { (Some(Bencode::List(kept_tiers)), changed) })
        }
        (b"url-list" | b"httpseeds", Bencode::List(urls)) => {
            let before = urls.len();
            let mut kept = Vec::new();
            for url in urls {
                if accepts(&url)? {
                    kept.push(url);
                }
            }
            let changed = kept.len() != before;
            Ok(if kept.is_empty() { (None, before > 0) } else { (Some(Bencode::List(kept)), changed) })
        }
        (b"nodes", Bencode::List(nodes)) => {
            let before = nodes.len();
            let mut kept = Vec::new();
            for node in nodes {
                let text = node_text(&node).ok_or_else(shape)?;
                if keep(kind, &text) {
                    kept.push(node);
                }
            }
            let changed = kept.len() != before;
            Ok(if kept.is_empty() { (None, before > 0) } else { (Some(Bencode::List(kept)), changed) })
        }
        _ => Err(shape()),
    }
}

fn collect_source_strings(key: &[u8], value: &Bencode, kind: SourceKind, out: &mut Vec<(SourceKind, String)>) {
    match value {
        Bencode::Bytes(_) => out.extend(bencode_text(value).filter(|t| !t.is_empty()).map(|t| (kind, t))),
        Bencode::List(items) if key == b"nodes" => out.extend(items.iter().filter_map(node_text).map(|t| (kind, t))),
        Bencode::List(items) => {
            for item in items {
                collect_source_strings(key, item, kind, out);
            }
        }
        Bencode::Int(_) | Bencode::Dict(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-written bencode (keys deliberately NOT sorted inside info, as some creators write them): the hash
    /// must be over these exact bytes.
    fn multi_file_torrent() -> (Vec<u8>, Vec<u8>) {
        let info = b"d4:name5:Album5:filesld6:lengthi100e4:pathl4:CD 19:01 a.flaceed4:attr1:p6:lengthi7e4:pathl4:.pad1:7eed6:lengthi50e4:pathl4:CD 19:02 b.flaceee12:piece lengthi16384e6:pieces0:e";
        let mut torrent = b"d8:announce9:http://x/4:info".to_vec();
        torrent.extend_from_slice(info);
        torrent.extend_from_slice(b"e");
        (torrent, info.to_vec())
    }

    #[test]
    fn hash_is_over_the_raw_info_bytes_and_pad_files_are_skipped() {
        let (torrent, info) = multi_file_torrent();
        let parsed = parse_torrent(&torrent).unwrap();
        let expected: [u8; 20] = Sha1::digest(&info).into();
        assert_eq!(parsed.info_hash, InfoHash::from_bytes(expected));
        assert_eq!(
            parsed.files,
            vec![
                TorrentFile { path: "Album/CD 1/01 a.flac".into(), size_bytes: 100 },
                TorrentFile { path: "Album/CD 1/02 b.flac".into(), size_bytes: 50 },
            ]
        );
        assert_eq!(parsed.total_size, 157);
    }

    #[test]
    fn single_file_uses_the_name() {
        let torrent = b"d4:infod6:lengthi42e4:name8:song.mp312:piece lengthi16384e6:pieces0:ee";
        let parsed = parse_torrent(torrent).unwrap();
        assert_eq!(parsed.files, vec![TorrentFile { path: "song.mp3".into(), size_bytes: 42 }]);
    }

    #[test]
    fn hostile_torrents_are_rejected_without_panic() {
        let cases: Vec<&[u8]> = vec![
            b"",
            b"d",
            b"de",
            b"<html>",
            b"d4:infoi3ee",
            b"d4:infod6:lengthi-5e4:name1:a6:pieces0:ee",
            b"d4:infod5:filesld6:lengthi1e4:pathl2:..eee4:name1:a6:pieces0:ee",
            b"d4:infod6:lengthi1e4:name2:..6:pieces0:ee",
            b"d4:infod6:lengthi1e4:name1:aee",
            b"d4:info99999999999999999999:x",
            b"d4:infod6:lengthi1e4:name1:a6:pieces5:abce",
        ];
        for case in cases {
            assert!(parse_torrent(case).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
        let deep: Vec<u8> = std::iter::repeat_n(b'l', 10_000).collect();
        let mut nested = b"d4:info".to_vec();
        nested.extend(deep);
        assert!(parse_torrent(&nested).is_err());
    }

    fn bstr(text: &str) -> String {
        format!("{}:{text}", text.len())
    }

    #[test]
    fn stripping_sources_keeps_the_info_dictionary_and_every_other_key() {
        let info = "d6:lengthi42e4:name8:song.mp312:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
        let torrent = format!(
            "d{}{}{}ll{}{}el{}ee{}{}{}{}{}ll{}i6881eel{}i6881eel{}i1eee{}l{}{}ee",
            bstr("announce"),
            bstr("http://127.0.0.1:6969/announce"),
            bstr("announce-list"),
            bstr("http://127.0.0.1:6969/announce"),
            bstr("udp://tracker.example.org:1337/announce"),
            bstr("http://localhost/announce"),
            bstr("comment"),
            bstr("kept as it was"),
            bstr("info"),
            info,
            bstr("nodes"),
            bstr("127.0.0.1"),
            bstr("router.example.org"),
            bstr("::1"),
            bstr("url-list"),
            bstr("http://127.0.0.1:8080/seed/"),
            bstr("https://seed.example.org/files/"),
        );
        let internal = |_: SourceKind, text: &str| {
            !text.contains("127.0.0.1") && !text.contains("localhost") && !text.contains("::1")
        };
        let before = parse_torrent(torrent.as_bytes()).unwrap();
        let stripped = strip_torrent_sources(torrent.as_bytes(), internal).unwrap();
        let after = parse_torrent(&stripped.value).unwrap();
        assert_eq!(after.info_hash, before.info_hash, "the info dictionary is untouched");
        let expected_info_hash: [u8; 20] = Sha1::digest(info.as_bytes()).into();
        assert_eq!(after.info_hash, InfoHash::from_bytes(expected_info_hash));
        assert_eq!(
            torrent_sources(&stripped.value).unwrap(),
            vec![
                (SourceKind::Tracker, "udp://tracker.example.org:1337/announce".to_string()),
                (SourceKind::Endpoint, "router.example.org:6881".to_string()),
                (SourceKind::WebSeed, "https://seed.example.org/files/".to_string()),
            ]
        );
        let removed: Vec<&str> = stripped.removed.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            removed,
            [
                "http://127.0.0.1:6969/announce",
                "http://127.0.0.1:6969/announce",
                "http://localhost/announce",
                "127.0.0.1:6881",
                "[::1]:1",
                "http://127.0.0.1:8080/seed/"
            ]
        );
        let text = String::from_utf8_lossy(&stripped.value);
        assert!(text.contains("7:comment14:kept as it was"), "{text}");
        assert!(!text.contains("8:announce"), "the internal announce key is gone: {text}");
        // Keeping everything changes nothing.
        assert_eq!(strip_torrent_sources(torrent.as_bytes(), |_, _| true).unwrap().value, torrent.as_bytes());
    }

    #[test]
    fn a_malformed_source_key_is_removed_whole() {
        let torrent = format!("d{}i3e{}d6:lengthi1e4:name1:a6:pieces0:ee", bstr("announce"), bstr("info"));
        let stripped = strip_torrent_sources(torrent.as_bytes(), |_, _| true).unwrap();
        assert_eq!(stripped.removed, vec![(SourceKind::Tracker, "announce".to_string())]);
        assert_eq!(
            parse_torrent(&stripped.value).unwrap().info_hash,
            parse_torrent(torrent.as_bytes()).unwrap().info_hash
        );
    }

    #[test]
    fn magnet_sources_are_stripped_and_the_rest_kept_as_written() {
        let magnet = "magnet:?xt=urn:btih:7ED8995B1926266A80C63065CACB65D6A36398AD&dn=A+b%20c\
            &tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp%3A%2F%2Ftracker.example.org%3A1337\
            &tr.1=http://localhost/a&ws=http%3A%2F%2F10.0.0.2%2Fseed&x.pe=192.168.1.4:6881&xs=https://example.org/t";
        let sources = magnet_sources(magnet);
        assert_eq!(sources.len(), 6);
        assert_eq!(sources[0], (SourceKind::Tracker, "http://127.0.0.1:6969/announce".to_string()));
        assert_eq!(sources[3], (SourceKind::WebSeed, "http://10.0.0.2/seed".to_string()));
        assert_eq!(sources[4], (SourceKind::Endpoint, "192.168.1.4:6881".to_string()));
        let keep = |_: SourceKind, text: &str| text.contains("example.org");
        let stripped = strip_magnet_sources(magnet, keep);
        assert_eq!(
            stripped.value,
            "magnet:?xt=urn:btih:7ED8995B1926266A80C63065CACB65D6A36398AD&dn=A+b%20c\
             &tr=udp%3A%2F%2Ftracker.example.org%3A1337&xs=https://example.org/t"
        );
        assert_eq!(stripped.removed.len(), 4);
        assert_eq!(magnet_info_hash(&stripped.value).unwrap(), magnet_info_hash(magnet).unwrap());
    }

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
}
