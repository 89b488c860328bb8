//! Parsing of Torznab documents as Jackett and Prowlarr write them: a results feed (`<rss>`), capabilities
//! (`<caps>`), or an error (`<error code=".." description=".."/>`, which Jackett sends with HTTP 200 too).
//!
//! Pure and hostile-input safe: a streaming quick-xml reader, every count and text length capped, numbers parsed
//! leniently (a malformed attribute becomes `None`, it never drops the item). It never does I/O.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// At most this many items are read from one feed (Jackett's aggregate caps itself at 1000).
pub const MAX_ITEMS: usize = 2000;
/// Text fields longer than this (in bytes) are cut at a character boundary.
const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Categories kept per item.
const MAX_CATEGORIES: usize = 32;

/// One `<item>` exactly as the feed gave it, fields parsed but not interpreted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorznabItem {
    pub title: String,
    pub guid: Option<String>,
    /// Display name of the indexer (`jackettindexer` / `prowlarrindexer` text).
    pub indexer_name: Option<String>,
    /// The indexer's id attribute (`orpheus`, `3`, ...).
    pub indexer_id: Option<String>,
    /// `comments`: the details page.
    pub comments: Option<String>,
    /// `pubDate` as sent (RFC 822).
    pub pub_date: Option<String>,
    pub size: Option<u64>,
    /// Number of files (element on Jackett, attr on Prowlarr).
    pub files: Option<u64>,
    pub grabs: Option<u64>,
    /// `link` element, else the `enclosure` url.
    pub link: Option<String>,
    /// Category ids from `<category>` elements and `category` attrs, deduplicated, in order.
    pub categories: Vec<u32>,
    pub seeders: Option<u64>,
    /// Torznab `peers` = seeders + leechers.
    pub peers: Option<u64>,
    pub infohash: Option<String>,
    pub magnet_url: Option<String>,
    pub download_volume_factor: Option<f64>,
    pub upload_volume_factor: Option<f64>,
    pub minimum_ratio: Option<f64>,
    pub minimum_seed_time_secs: Option<u64>,
}

/// One search mode of `t=caps` (`<music-search available="yes" supportedParams="q,artist"/>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchMode {
    pub available: bool,
    /// Lower-case parameter names.
    pub supported_params: Vec<String>,
}

impl SearchMode {
    /// Whether `param` (lower case) is listed.
    pub fn supports(&self, param: &str) -> bool {
        self.available && self.supported_params.iter().any(|p| p == param)
    }
}

/// What `t=caps` says about an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub search: SearchMode,
    pub music_search: SearchMode,
    /// Every category id listed (parents, subcats, custom ids).
    pub categories: Vec<u32>,
}

/// The three kinds of document a Torznab endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum TorznabDocument {
    Results(Vec<TorznabItem>),
    Caps(Capabilities),
    Error { code: u32, description: String },
}

/// Why a body is not a Torznab document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TorznabXmlError(pub String);

/// Parses any Torznab answer, deciding by its root element.
pub fn parse_document(xml: &str) -> Result<TorznabDocument, TorznabXmlError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => return parse_rooted(&mut reader, &start, false),
            Ok(Event::Empty(start)) => return parse_rooted(&mut reader, &start, true),
            Ok(Event::Eof) => return Err(TorznabXmlError("empty document".into())),
            Ok(Event::Text(text)) if text.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_)) => {}
            Ok(other) => return Err(TorznabXmlError(format!("unexpected content before the root: {other:?}"))),
            Err(err) => return Err(xml_error(&reader, err)),
        }
    }
}

fn xml_error(reader: &Reader<&[u8]>, err: quick_xml::Error) -> TorznabXmlError {
    TorznabXmlError(format!("malformed XML at byte {}: {err}", reader.buffer_position()))
}

fn parse_rooted(
    reader: &mut Reader<&[u8]>,
    root: &BytesStart<'_>,
    empty: bool,
) -> Result<TorznabDocument, TorznabXmlError> {
    match root.local_name().as_ref() {
        b"error" => {
            let code = attr(root, b"code").and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            let description = attr(root, b"description").unwrap_or_default();
            Ok(TorznabDocument::Error { code, description: cap_text(description) })
        }
        b"rss" if !empty => parse_feed(reader).map(TorznabDocument::Results),
        b"rss" => Ok(TorznabDocument::Results(Vec::new())),
        b"caps" if !empty => parse_caps(reader).map(TorznabDocument::Caps),
        b"caps" => Ok(TorznabDocument::Caps(Capabilities::default())),
        other => Err(TorznabXmlError(format!(
            "root element <{}> is none of rss, caps, error",
            String::from_utf8_lossy(other).chars().take(40).collect::<String>()
        ))),
    }
}

/// The value of attribute `name` (local name), unescaped.
fn attr(start: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    start
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn cap_text(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_string())
    }
}

/// Lenient unsigned parse: `"214"`, `" 214 "`, `"214.0"`; negatives and garbage give `None`.
fn parse_u64(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(value) = text.parse::<u64>() {
        return Some(value);
    }
    let float: f64 = text.parse().ok()?;
    if float.is_finite() && (0.0..1.8e19).contains(&float) {
        // Checked conversion of a finite, non-negative, in-range float: no truncation beyond the fraction.
        format!("{:.0}", float.floor()).parse().ok()
    } else {
        None
    }
}

fn parse_f64(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn push_category(categories: &mut Vec<u32>, text: &str) {
    if let Ok(id) = text.trim().parse::<u32>() {
        if categories.len() < MAX_CATEGORIES && !categories.contains(&id) {
            categories.push(id);
        }
    }
}

/// Which text element of an item is open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemField {
    Title,
    Guid,
    Indexer,
    Comments,
    PubDate,
    Size,
    Files,
    Grabs,
    Link,
    Category,
    Ignored,
}

fn item_field(local: &[u8]) -> ItemField {
    match local {
        b"title" => ItemField::Title,
        b"guid" => ItemField::Guid,
        b"jackettindexer" | b"prowlarrindexer" | b"indexer" => ItemField::Indexer,
        b"comments" => ItemField::Comments,
        b"pubDate" => ItemField::PubDate,
        b"size" => ItemField::Size,
        b"files" => ItemField::Files,
        b"grabs" => ItemField::Grabs,
        b"link" => ItemField::Link,
        b"category" => ItemField::Category,
        _ => ItemField::Ignored,
    }
}

fn apply_attr(item: &mut TorznabItem, name: &str, value: String) {
    match name {
        "category" => push_category(&mut item.categories, &value),
        "seeders" => item.seeders = parse_u64(&value),
        "peers" => item.peers = parse_u64(&value),
        "infohash" => item.infohash = non_empty(value),
        "magneturl" => item.magnet_url = non_empty(cap_text(value)),
        "files" => item.files = parse_u64(&value).or(item.files),
        "grabs" => item.grabs = parse_u64(&value).or(item.grabs),
        "size" => item.size = item.size.or(parse_u64(&value)),
        "downloadvolumefactor" => item.download_volume_factor = parse_f64(&value),
        "uploadvolumefactor" => item.upload_volume_factor = parse_f64(&value),
        "minimumratio" => item.minimum_ratio = parse_f64(&value),
        "minimumseedtime" => item.minimum_seed_time_secs = parse_u64(&value),
        _ => {}
    }
}

fn apply_text(item: &mut TorznabItem, field: ItemField, text: String) {
    match field {
        ItemField::Title => item.title = cap_text(text.trim().to_string()),
        ItemField::Guid => item.guid = non_empty(cap_text(text)),
        ItemField::Indexer => item.indexer_name = non_empty(cap_text(text)),
        ItemField::Comments => item.comments = non_empty(cap_text(text)),
        ItemField::PubDate => item.pub_date = non_empty(cap_text(text)),
        ItemField::Size => item.size = parse_u64(&text).or(item.size),
        ItemField::Files => item.files = parse_u64(&text),
        ItemField::Grabs => item.grabs = parse_u64(&text),
        ItemField::Link => {
            if let Some(link) = non_empty(cap_text(text)) {
                item.link = Some(link);
            }
        }
        ItemField::Category => push_category(&mut item.categories, &text),
        ItemField::Ignored => {}
    }
}

/// Reads `<channel>` items until the end of the document.
fn parse_feed(reader: &mut Reader<&[u8]>) -> Result<Vec<TorznabItem>, TorznabXmlError> {
    let mut items = Vec::new();
    let mut current: Option<TorznabItem> = None;
    // The open child of the current item and its accumulated text; depth counts elements inside the item.
    let mut field: Option<ItemField> = None;
    let mut text = String::new();
    let mut depth_in_item = 0usize;
    let mut enclosure: Option<String> = None;
    loop {
        let event = reader.read_event().map_err(|err| xml_error(reader, err))?;
        match event {
            Event::Start(start) => {
                if let Some(item) = current.as_mut() {
                    depth_in_item += 1;
                    if depth_in_item == 1 {
                        let local = start.local_name();
                        let kind = item_field(local.as_ref());
                        if kind == ItemField::Indexer {
                            item.indexer_id = attr(&start, b"id").and_then(non_empty);
                        }
                        field = Some(kind);
                        text.clear();
                    }
                } else if start.local_name().as_ref() == b"item" {
                    current = Some(TorznabItem::default());
                    enclosure = None;
                    depth_in_item = 0;
                }
            }
            Event::Empty(start) => {
                if let Some(item) = current.as_mut() {
                    if depth_in_item == 0 {
                        match start.local_name().as_ref() {
                            b"attr" => {
                                if let (Some(name), Some(value)) = (attr(&start, b"name"), attr(&start, b"value")) {
                                    apply_attr(item, name.trim(), value);
                                }
                            }
                            b"enclosure" => enclosure = attr(&start, b"url").and_then(non_empty),
                            b"jackettindexer" | b"prowlarrindexer" => {
                                item.indexer_id = attr(&start, b"id").and_then(non_empty);
                            }
                            _ => {}
                        }
                    }
                }
            }
            Event::Text(chunk) => {
                if field.is_some() && depth_in_item == 1 && text.len() <= MAX_TEXT_BYTES {
                    let unescaped = chunk.unescape().map_err(|err| xml_error(reader, err))?;
                    text.push_str(&unescaped);
                }
            }
            Event::CData(chunk) => {
                if field.is_some() && depth_in_item == 1 && text.len() <= MAX_TEXT_BYTES {
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
            }
            Event::End(end) => {
                if let Some(item) = current.as_mut() {
                    if depth_in_item == 0 {
                        // </item>
                        if end.local_name().as_ref() == b"item" {
                            if let Some(mut done) = current.take() {
                                if done.link.is_none() {
                                    done.link = enclosure.take();
                                }
                                if items.len() < MAX_ITEMS {
                                    items.push(done);
                                }
                            }
                        }
                    } else {
                        if depth_in_item == 1 {
                            if let Some(kind) = field.take() {
                                apply_text(item, kind, std::mem::take(&mut text));
                            }
                        }
                        depth_in_item -= 1;
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    Ok(items)
}

fn parse_mode(start: &BytesStart<'_>) -> SearchMode {
    SearchMode {
        available: attr(start, b"available").is_some_and(|a| a.trim().eq_ignore_ascii_case("yes")),
        supported_params: attr(start, b"supportedParams")
            .map(|p| p.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).take(32).collect())
            .unwrap_or_default(),
    }
}

fn parse_caps(reader: &mut Reader<&[u8]>) -> Result<Capabilities, TorznabXmlError> {
    let mut caps = Capabilities::default();
    loop {
        let event = reader.read_event().map_err(|err| xml_error(reader, err))?;
        match event {
            Event::Start(start) | Event::Empty(start) => match start.local_name().as_ref() {
                b"search" => caps.search = parse_mode(&start),
                b"music-search" => caps.music_search = parse_mode(&start),
                b"audio-search" if caps.music_search == SearchMode::default() => {
                    caps.music_search = parse_mode(&start);
                }
                b"category" | b"subcat" => {
                    if let Some(id) = attr(&start, b"id").and_then(|id| id.trim().parse::<u32>().ok()) {
                        if caps.categories.len() < 4096 && !caps.categories.contains(&id) {
                            caps.categories.push(id);
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JACKETT_ITEM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:torznab="http://torznab.com/schemas/2015/feed">
  <channel>
    <atom:link href="http://127.0.0.1:9117/" rel="self" type="application/rss+xml" />
    <title>AggregateSearch</title>
    <item>
      <title>Portishead - Dummy [1994] FLAC</title>
      <guid>https://example.invalid/t?id=1</guid>
      <jackettindexer id="orpheus">Orpheus</jackettindexer>
      <type>private</type>
      <comments>https://example.invalid/t?id=1</comments>
      <pubDate>Sun, 08 Aug 2021 19:21:37 +0000</pubDate>
      <size>304612351</size>
      <files>14</files>
      <grabs>1875</grabs>
      <description>Tags: a&lt;br&gt;
b</description>
      <link>http://127.0.0.1:9117/dl/orpheus/?jackett_apikey=k&amp;path=p&amp;file=f</link>
      <category>3000</category>
      <category>100001</category>
      <enclosure url="http://127.0.0.1:9117/dl/orpheus/?jackett_apikey=k&amp;path=p&amp;file=f" length="304612351" type="application/x-bittorrent" />
      <torznab:attr name="category" value="3000" />
      <torznab:attr name="category" value="100001" />
      <torznab:attr name="seeders" value="214" />
      <torznab:attr name="peers" value="216" />
      <torznab:attr name="minimumratio" value="1.5" />
      <torznab:attr name="minimumseedtime" value="172800" />
      <torznab:attr name="downloadvolumefactor" value="0" />
      <torznab:attr name="uploadvolumefactor" value="1" />
    </item>
    <item>
      <title>No link</title>
      <size>oops</size>
      <torznab:attr name="seeders" value="-3" />
      <enclosure url="magnet:?xt=urn:btih:AAAA" type="application/x-bittorrent" />
    </item>
  </channel>
</rss>"#;

    #[test]
    fn parses_every_jackett_field() {
        let TorznabDocument::Results(items) = parse_document(JACKETT_ITEM).unwrap() else { panic!("not results") };
        assert_eq!(items.len(), 2);
        let item = &items[0];
        assert_eq!(item.title, "Portishead - Dummy [1994] FLAC");
        assert_eq!(item.guid.as_deref(), Some("https://example.invalid/t?id=1"));
        assert_eq!(item.indexer_id.as_deref(), Some("orpheus"));
        assert_eq!(item.indexer_name.as_deref(), Some("Orpheus"));
        assert_eq!(item.comments.as_deref(), Some("https://example.invalid/t?id=1"));
        assert_eq!(item.pub_date.as_deref(), Some("Sun, 08 Aug 2021 19:21:37 +0000"));
        assert_eq!(item.size, Some(304_612_351));
        assert_eq!(item.files, Some(14));
        assert_eq!(item.grabs, Some(1875));
        assert_eq!(item.link.as_deref(), Some("http://127.0.0.1:9117/dl/orpheus/?jackett_apikey=k&path=p&file=f"));
        assert_eq!(item.categories, vec![3000, 100001]);
        assert_eq!(item.seeders, Some(214));
        assert_eq!(item.peers, Some(216));
        assert_eq!(item.minimum_ratio, Some(1.5));
        assert_eq!(item.minimum_seed_time_secs, Some(172_800));
        assert_eq!(item.download_volume_factor, Some(0.0));
        assert_eq!(item.upload_volume_factor, Some(1.0));
        // Malformed numbers become None; the enclosure stands in for a missing link.
        let bad = &items[1];
        assert_eq!(bad.size, None);
        assert_eq!(bad.seeders, None);
        assert_eq!(bad.link.as_deref(), Some("magnet:?xt=urn:btih:AAAA"));
    }

    #[test]
    fn error_document_with_escaped_newlines() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error code=\"900\" description=\"a&#xA; ---&gt; b\" />";
        assert_eq!(
            parse_document(xml).unwrap(),
            TorznabDocument::Error { code: 900, description: "a\n ---> b".into() }
        );
    }

    #[test]
    fn caps_modes_and_categories() {
        let xml = r#"<caps><server title="Jackett" /><limits default="100" max="100" /><searching>
            <search available="yes" supportedParams="q" searchEngine="raw" />
            <music-search available="yes" supportedParams="q,album,artist,label,year,genre" />
            <audio-search available="no" supportedParams="q" />
            </searching><categories><category id="3000" name="Audio"><subcat id="3010" name="Audio/MP3" />
            </category><category id="100023" name="Music/Lossless" /></categories></caps>"#;
        let TorznabDocument::Caps(caps) = parse_document(xml).unwrap() else { panic!("not caps") };
        assert!(caps.search.supports("q"));
        assert!(caps.music_search.supports("artist") && caps.music_search.supports("year"));
        assert!(!caps.music_search.supports("track"));
        assert_eq!(caps.categories, vec![3000, 3010, 100023]);
    }

    fn reference(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/torznab").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!("reference file {} missing ({err}): shared/ must sit beside the repo", path.display())
        })
    }

    #[test]
    fn reference_prowlarr_feed() {
        let TorznabDocument::Results(items) = parse_document(&reference("prowlarr-torznab-music-results.xml")).unwrap()
        else {
            panic!("not results")
        };
        assert_eq!(items.len(), 2);
        let first = &items[0];
        assert_eq!(first.title, "Portishead - Dummy (1994) [FLAC]");
        assert_eq!((first.indexer_id.as_deref(), first.indexer_name.as_deref()), (Some("3"), Some("The Pirate Bay")));
        assert_eq!((first.files, first.seeders, first.peers), (Some(14), Some(61), Some(64)));
        assert_eq!(first.infohash.as_deref(), Some("8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3"));
        assert_eq!(first.magnet_url, None);
        assert!(first.link.as_deref().unwrap().starts_with("http://127.0.0.1:9696/3/download?apikey="));
        assert_eq!(first.categories, vec![3040, 100_104]);
    }

    #[test]
    fn reference_caps_and_errors() {
        let TorznabDocument::Caps(one) = parse_document(&reference("jackett-torznab-caps.xml")).unwrap() else {
            panic!("not caps")
        };
        assert!(one.music_search.available && one.music_search.supported_params == vec!["q".to_string()]);
        assert!(one.categories.contains(&3040) && one.categories.iter().any(|&c| c >= 100_000));
        let TorznabDocument::Caps(all) = parse_document(&reference("jackett-torznab-caps-all.xml")).unwrap() else {
            panic!("not caps")
        };
        assert!(all.music_search.supports("artist") && all.music_search.supports("album"));
        assert!(all.music_search.supports("year"));
        assert_eq!(
            parse_document(&reference("jackett-torznab-error.xml")).unwrap(),
            TorznabDocument::Error { code: 100, description: "Invalid API Key".into() }
        );
        let TorznabDocument::Error { code, description } =
            parse_document(&reference("jackett-torznab-error-indexer-failure.xml")).unwrap()
        else {
            panic!("not an error")
        };
        assert_eq!(code, 900);
        assert!(description.starts_with("Jackett.Common.IndexerException: Exception (rutracker)"));
        assert!(description.contains("\n ---> System.Exception"));
        assert!(matches!(
            parse_document(&reference("jackett-torznab-error-unsupported-query.xml")).unwrap(),
            TorznabDocument::Error { code: 201, .. }
        ));
        assert_eq!(
            parse_document(&reference("jackett-torznab-music-results-empty.xml")).unwrap(),
            TorznabDocument::Results(Vec::new())
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        for xml in ["", "<", "<rss><channel><item><title>x", "<html><body>502</body></html>", "\u{0}\u{1}", "<rss/>"] {
            let _ = parse_document(xml);
        }
        assert!(parse_document("<html></html>").is_err());
        assert_eq!(parse_document("<rss/>").unwrap(), TorznabDocument::Results(Vec::new()));
    }
}
