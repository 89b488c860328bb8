//! A Torznab test server on 127.0.0.1:0 speaking exactly the shapes in `shared/reference/torznab/`: Jackett's
//! aggregate (`/api/v2.0/indexers/all/results/torznab/api`) and per-indexer endpoints, Prowlarr's per-indexer
//! `/{id}/api`, `t=caps`, the `/dl/{indexer}/` proxy (a real `.torrent`, a 302 to a magnet, an empty 404) and
//! Prowlarr's `/{id}/download` (301 to a magnet), error documents with HTTP 200, 400 indexer failures, 429 with
//! `Retry-After`, slow answers and 500s. Every request is logged so tests can assert the exact queries sent.
//!
//! It never talks to anything but its own loopback socket and never decides what a client should do.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The API key the server accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "u3bq4t1m0e9v2y8k7w5r6p1s0n3c4x2z";

/// What `music-search` an indexer's caps advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MusicCaps {
    /// Gazelle-like: `q,album,artist,label,year,genre`.
    Full,
    /// Most Cardigann definitions: `q` only.
    QOnly,
    /// `music-search available="no"`: `t=music` answers error 201.
    Unavailable,
}

/// What a download link answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Download {
    /// 200 `application/x-bittorrent` with these bytes.
    TorrentFile(Vec<u8>),
    /// Jackett: 302, Prowlarr: 301, `Location:` this magnet.
    RedirectToMagnet(String),
    /// Jackett: 302, Prowlarr: 301, `Location:` this URL as written (another host, `file:///etc/passwd`, ...).
    Redirect(String),
    /// Empty 404 (dead link at the tracker).
    Dead,
    /// 200 with arbitrary bytes (an HTML page instead of a torrent).
    Body(Vec<u8>),
}

/// One release an indexer returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub title: String,
    pub indexer_id: String,
    pub indexer_name: String,
    pub privacy: String,
    pub details: Option<String>,
    pub pub_date: String,
    pub size: u64,
    pub files: Option<u64>,
    pub grabs: Option<u64>,
    pub categories: Vec<u32>,
    pub seeders: u64,
    pub peers: u64,
    /// Site magnet (`link` = `guid` = the magnet on Jackett when there is no download).
    pub magnet: Option<String>,
    pub infohash: Option<String>,
    /// When set, `link` is a proxy URL answering this.
    pub download: Option<Download>,
    /// When set, `link` is this URL verbatim (an uploader's link to anywhere), instead of the proxy or magnet.
    pub link: Option<String>,
    pub minimum_ratio: Option<f64>,
    pub minimum_seed_time: Option<u64>,
    pub download_volume_factor: f64,
    pub upload_volume_factor: f64,
}

impl Release {
    /// A public release on `indexer_id` with 10 seeders / 12 peers, 300 MB, category 3040.
    pub fn new(title: &str, indexer_id: &str) -> Self {
        Release {
            title: title.into(),
            indexer_id: indexer_id.into(),
            indexer_name: indexer_id.into(),
            privacy: "public".into(),
            details: Some(format!("https://tracker.invalid/{indexer_id}/{}", title.len())),
            pub_date: "Sun, 08 Aug 2021 19:21:37 +0000".into(),
            size: 300_000_000,
            files: None,
            grabs: None,
            categories: vec![3040],
            seeders: 10,
            peers: 12,
            magnet: None,
            infohash: None,
            download: None,
            link: None,
            minimum_ratio: None,
            minimum_seed_time: None,
            download_volume_factor: 0.0,
            upload_volume_factor: 1.0,
        }
    }
    pub fn indexer_name(mut self, name: &str) -> Self {
        self.indexer_name = name.into();
        self
    }
    /// A site magnet for `hash` (as the site writes it, e.g. upper case), with the `infohash` and `magneturl` attrs.
    pub fn magnet(mut self, hash: &str) -> Self {
        let dn: String = url::form_urlencoded::byte_serialize(self.title.as_bytes()).collect();
        self.magnet =
            Some(format!("magnet:?xt=urn:btih:{hash}&dn={dn}&tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337%2Fannounce"));
        self.infohash = Some(hash.into());
        self
    }
    pub fn download(mut self, download: Download) -> Self {
        self.download = Some(download);
        self
    }
    /// The item's `link` is `url`, verbatim.
    pub fn link(mut self, url: &str) -> Self {
        self.link = Some(url.into());
        self
    }
    pub fn seeders(mut self, seeders: u64, peers: u64) -> Self {
        self.seeders = seeders;
        self.peers = peers;
        self
    }
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }
    pub fn categories(mut self, categories: &[u32]) -> Self {
        self.categories = categories.to_vec();
        self
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
    /// A Torznab API request (Jackett or Prowlarr), caps or search.
    pub fn is_torznab(&self) -> bool {
        self.path.contains("/results/torznab") || self.path.ends_with("/api")
    }
    /// A Torznab search (not `t=caps`).
    pub fn is_search(&self) -> bool {
        self.is_torznab() && self.param("t") != Some("caps")
    }
    pub fn is_caps(&self) -> bool {
        self.is_torznab() && self.param("t") == Some("caps")
    }
    pub fn is_download(&self) -> bool {
        self.path.starts_with("/dl/") || self.path.ends_with("/download")
    }
}

/// A fault applied to the next Torznab search request(s) (caps requests are not affected).
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    Status(u16),
    Slow(Duration),
}

#[derive(Debug)]
struct Indexer {
    id: String,
    music: MusicCaps,
}

#[derive(Debug)]
struct ServerState {
    api_key: String,
    indexers: Vec<Indexer>,
    releases: Vec<Release>,
    by_query: HashMap<String, Vec<Release>>,
    raw_feed: Option<String>,
    /// (indexer id, title) -> what its download link answers.
    downloads: HashMap<(String, String), Download>,
    faults: VecDeque<Fault>,
    failing_indexers: HashSet<String>,
    requests: Vec<RecordedRequest>,
}

/// The running server; stops when dropped.
pub struct TorznabServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TorznabServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<ServerState>>;

impl TorznabServer {
    /// Starts on 127.0.0.1:0 with indexers `orpheus` (full music caps), `1337x` (q only) and `3` (Prowlarr,
    /// q only), no results, and [`DEFAULT_API_KEY`].
    pub async fn start() -> TorznabServer {
        let state = Arc::new(Mutex::new(ServerState {
            api_key: DEFAULT_API_KEY.into(),
            indexers: vec![
                Indexer { id: "orpheus".into(), music: MusicCaps::Full },
                Indexer { id: "1337x".into(), music: MusicCaps::QOnly },
                Indexer { id: "3".into(), music: MusicCaps::QOnly },
            ],
            releases: Vec::new(),
            by_query: HashMap::new(),
            raw_feed: None,
            downloads: HashMap::new(),
            faults: VecDeque::new(),
            failing_indexers: HashSet::new(),
            requests: Vec::new(),
        }));
        let router = Router::new()
            .route("/api/v2.0/indexers/{id}/results/torznab/api", get(jackett_torznab))
            .route("/api/v2.0/indexers/{id}/results/torznab/", get(jackett_torznab))
            .route("/dl/{id}/", get(jackett_download))
            .route("/{id}/api", get(prowlarr_torznab))
            .route("/{id}/download", get(prowlarr_download))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        TorznabServer { addr, state, task }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut ServerState) -> T) -> T {
        let mut state = self.state.lock().unwrap();
        f(&mut state)
    }

    /// Base URL (`http://127.0.0.1:PORT`), what `[jackett] url` is set to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key the server accepts.
    pub fn api_key(&self) -> String {
        self.with_state(|s| s.api_key.clone())
    }

    /// Changes the accepted key.
    pub fn set_api_key(&self, key: &str) {
        self.with_state(|s| s.api_key = key.into());
    }

    /// Adds or replaces an indexer and its music caps.
    pub fn set_indexer(&self, id: &str, music: MusicCaps) {
        self.with_state(|s| {
            s.indexers.retain(|i| i.id != id);
            s.indexers.push(Indexer { id: id.into(), music });
        });
    }

    /// The releases every search returns (filtered per indexer on per-indexer endpoints).
    pub fn set_results(&self, releases: Vec<Release>) {
        self.with_state(|s| {
            register_downloads(s, &releases);
            s.releases = releases;
        });
    }

    /// Releases for searches whose `q` is exactly `q` (others get `set_results`' list).
    pub fn set_results_for_query(&self, q: &str, releases: Vec<Release>) {
        self.with_state(|s| {
            register_downloads(s, &releases);
            s.by_query.insert(q.into(), releases);
        });
    }

    /// Serves this feed verbatim to aggregate searches, after pointing its `http://127.0.0.1:9117/` links and
    /// the reference key at this server (the reference files' host and key).
    pub fn set_raw_results(&self, xml: &str) {
        let base = format!("{}/", self.url());
        self.with_state(|s| {
            s.raw_feed = Some(xml.replace("http://127.0.0.1:9117/", &base).replace(DEFAULT_API_KEY, &s.api_key));
        });
    }

    /// What the download link of `title` on `indexer_id` answers (for raw feeds).
    pub fn set_download(&self, indexer_id: &str, title: &str, download: Download) {
        self.with_state(|s| {
            s.downloads.insert((indexer_id.into(), title.into()), download);
        });
    }

    /// The next `n` searches answer `status` (400: Jackett's code-900 indexer failure; 429: code 900 with
    /// `Retry-After: 1`; 5xx: an empty body).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.with_state(|s| s.faults.extend(std::iter::repeat_n(Fault::Status(status), n)));
    }

    /// The next `n` searches answer after `delay`.
    pub fn slow_next(&self, n: usize, delay: Duration) {
        self.with_state(|s| s.faults.extend(std::iter::repeat_n(Fault::Slow(delay), n)));
    }

    /// Makes an indexer throw: 400 code 900 on its own endpoint; silently absent from the aggregate.
    pub fn fail_indexer(&self, id: &str) {
        self.with_state(|s| {
            s.failing_indexers.insert(id.into());
        });
    }

    /// The Jackett `/dl/` link of `title` on `indexer_id` (what a download registered with [`Self::set_download`]
    /// answers at).
    pub fn download_link(&self, indexer_id: &str, title: &str) -> String {
        let base = format!("{}/", self.url());
        self.with_state(|s| jackett_proxy_link(&base, &s.api_key, indexer_id, title))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// Only the Torznab searches (no caps, no downloads).
    pub fn searches(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(RecordedRequest::is_search).collect()
    }
}

fn register_downloads(state: &mut ServerState, releases: &[Release]) {
    for release in releases {
        if let Some(download) = &release.download {
            state.downloads.insert((release.indexer_id.clone(), release.title.clone()), download.clone());
        } else if let Some(magnet) = &release.magnet {
            // Prowlarr proxies even magnets.
            state
                .downloads
                .entry((release.indexer_id.clone(), release.title.clone()))
                .or_insert_with(|| Download::RedirectToMagnet(magnet.clone()));
        }
    }
}

fn record(state: &Shared, uri: &Uri, query: &[(String, String)]) {
    state.lock().unwrap().requests.push(RecordedRequest { path: uri.path().to_string(), query: query.to_vec() });
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn xml_response(status: StatusCode, content_type: &str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type.to_string())], body).into_response()
}

fn error_document(code: u32, description: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error code=\"{code}\" description=\"{}\" />",
        esc(description).replace('\n', "&#xA;")
    )
}

fn indexer_failure(id: &str) -> String {
    error_document(
        900,
        &format!(
            "Jackett.Common.IndexerException: Exception ({id}): System.Exception: Login Failed\n   at Jackett.Common.Indexers.BaseIndexer.ResultsForQuery(TorznabQuery query, Boolean isMetaIndexer) in ./Jackett.Common/Indexers/BaseIndexer.cs:line 378"
        ),
    )
}

/// Takes the next fault, if any, for a search request.
async fn apply_fault(state: &Shared, id: &str) -> Option<Response> {
    let fault = state.lock().unwrap().faults.pop_front();
    match fault {
        None => None,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            None
        }
        Some(Fault::Status(400)) => {
            Some(xml_response(StatusCode::BAD_REQUEST, "application/xml; charset=utf-8", indexer_failure(id)))
        }
        Some(Fault::Status(429)) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "application/xml; charset=utf-8"), (header::RETRY_AFTER, "1")],
                error_document(
                    900,
                    &format!("Exception ({id}): Request to {id} was rate limited. Retry after: 1 seconds."),
                ),
            )
                .into_response(),
        ),
        Some(Fault::Status(status)) => {
            Some(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response())
        }
    }
}

fn caps_document(music: &[MusicCaps], limits: u32) -> String {
    let full = music.contains(&MusicCaps::Full);
    let available = music.iter().any(|m| *m != MusicCaps::Unavailable);
    let params = if full { "q,album,artist,label,year,genre" } else { "q" };
    let yes_no = if available { "yes" } else { "no" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<caps>
  <server title="Jackett" />
  <limits default="{limits}" max="{limits}" />
  <searching>
    <search available="yes" supportedParams="q" searchEngine="raw" />
    <tv-search available="yes" supportedParams="q,season,ep" searchEngine="raw" />
    <movie-search available="yes" supportedParams="q" searchEngine="raw" />
    <music-search available="{yes_no}" supportedParams="{params}" searchEngine="raw" />
    <audio-search available="{yes_no}" supportedParams="{params}" searchEngine="raw" />
    <book-search available="yes" supportedParams="q" searchEngine="raw" />
  </searching>
  <categories>
    <category id="2000" name="Movies">
      <subcat id="2040" name="Movies/HD" />
    </category>
    <category id="3000" name="Audio">
      <subcat id="3010" name="Audio/MP3" />
      <subcat id="3020" name="Audio/Video" />
      <subcat id="3030" name="Audio/Audiobook" />
      <subcat id="3040" name="Audio/Lossless" />
      <subcat id="3050" name="Audio/Other" />
    </category>
    <category id="8000" name="Other">
      <subcat id="8010" name="Other/Misc" />
    </category>
  </categories>
</caps>"#
    )
}

fn releases_for(state: &ServerState, q: Option<&str>) -> Vec<Release> {
    q.and_then(|q| state.by_query.get(q)).cloned().unwrap_or_else(|| state.releases.clone())
}

/// Jackett's `/dl/` proxy link of a release.
fn jackett_proxy_link(base: &str, api_key: &str, indexer_id: &str, title: &str) -> String {
    let path: String =
        url::form_urlencoded::byte_serialize(format!("Q2ZESjh{}", title.len() * 7919 + indexer_id.len()).as_bytes())
            .collect();
    let file: String = url::form_urlencoded::byte_serialize(title.as_bytes()).collect();
    format!("{base}dl/{indexer_id}/?jackett_apikey={api_key}&path={path}&file={file}")
}

fn jackett_item(base: &str, api_key: &str, release: &Release) -> String {
    let proxy =
        release.download.as_ref().map(|_| jackett_proxy_link(base, api_key, &release.indexer_id, &release.title));
    let link = release.link.clone().or(proxy).or_else(|| release.magnet.clone()).unwrap_or_default();
    let guid =
        if release.download.is_some() { release.details.clone().unwrap_or_else(|| link.clone()) } else { link.clone() };
    let mut xml = String::with_capacity(2048);
    xml.push_str("    <item>\n");
    xml.push_str(&format!("      <title>{}</title>\n", esc(&release.title)));
    xml.push_str(&format!("      <guid>{}</guid>\n", esc(&guid)));
    xml.push_str(&format!(
        "      <jackettindexer id=\"{}\">{}</jackettindexer>\n",
        esc(&release.indexer_id),
        esc(&release.indexer_name)
    ));
    xml.push_str(&format!("      <type>{}</type>\n", esc(&release.privacy)));
    if let Some(details) = &release.details {
        xml.push_str(&format!("      <comments>{}</comments>\n", esc(details)));
    }
    xml.push_str(&format!("      <pubDate>{}</pubDate>\n", esc(&release.pub_date)));
    xml.push_str(&format!("      <size>{}</size>\n", release.size));
    if let Some(files) = release.files {
        xml.push_str(&format!("      <files>{files}</files>\n"));
    }
    if let Some(grabs) = release.grabs {
        xml.push_str(&format!("      <grabs>{grabs}</grabs>\n"));
    }
    xml.push_str("      <description />\n");
    xml.push_str(&format!("      <link>{}</link>\n", esc(&link)));
    for category in &release.categories {
        xml.push_str(&format!("      <category>{category}</category>\n"));
    }
    xml.push_str(&format!(
        "      <enclosure url=\"{}\" length=\"{}\" type=\"application/x-bittorrent\" />\n",
        esc(&link),
        release.size
    ));
    for category in &release.categories {
        xml.push_str(&format!("      <torznab:attr name=\"category\" value=\"{category}\" />\n"));
    }
    let mut attr = |name: &str, value: String| {
        xml.push_str(&format!("      <torznab:attr name=\"{name}\" value=\"{}\" />\n", esc(&value)));
    };
    attr("seeders", release.seeders.to_string());
    attr("peers", release.peers.to_string());
    if release.download.is_none() {
        if let Some(hash) = &release.infohash {
            attr("infohash", hash.clone());
        }
        if let Some(magnet) = &release.magnet {
            attr("magneturl", magnet.clone());
        }
    }
    if let Some(ratio) = release.minimum_ratio {
        attr("minimumratio", ratio.to_string());
    }
    if let Some(seconds) = release.minimum_seed_time {
        attr("minimumseedtime", seconds.to_string());
    }
    attr("downloadvolumefactor", release.download_volume_factor.to_string());
    attr("uploadvolumefactor", release.upload_volume_factor.to_string());
    xml.push_str("    </item>\n");
    xml
}

fn jackett_feed(base: &str, api_key: &str, title: &str, releases: &[Release]) -> String {
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:torznab="http://torznab.com/schemas/2015/feed">
  <channel>
    <atom:link href="{base}" rel="self" type="application/rss+xml" />
    <title>{title}</title>
    <description>This feed includes all configured trackers</description>
    <link>http://127.0.0.1/</link>
    <language>en-US</language>
    <category>search</category>
"#
    );
    for release in releases {
        xml.push_str(&jackett_item(base, api_key, release));
    }
    xml.push_str("  </channel>\n</rss>\n");
    xml
}

/// Jackett's Torznab endpoint, aggregate (`all`) or one indexer.
async fn jackett_torznab(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    record(&state, &uri, &query);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
    let base = format!("http://{host}/");
    let t = param(&query, "t").unwrap_or("search").to_string();
    let (api_key, music) = {
        let s = state.lock().unwrap();
        let music: Option<Vec<MusicCaps>> = if id == "all" {
            Some(s.indexers.iter().filter(|i| !i.id.bytes().all(|b| b.is_ascii_digit())).map(|i| i.music).collect())
        } else {
            s.indexers.iter().find(|i| i.id == id).map(|i| vec![i.music])
        };
        (s.api_key.clone(), music)
    };
    if param(&query, "apikey") != Some(api_key.as_str()) {
        return xml_response(StatusCode::OK, "application/xml", error_document(100, "Invalid API Key"));
    }
    let Some(music) = music else {
        return xml_response(StatusCode::OK, "application/xml", error_document(201, "Indexer is not configured"));
    };
    let rss = "application/rss+xml; charset=utf-8";
    if t == "caps" {
        let limits = if id == "all" { 1000 } else { 100 };
        return xml_response(StatusCode::OK, rss, caps_document(&music, limits));
    }
    if let Some(fault) = apply_fault(&state, &id).await {
        return fault;
    }
    if t == "music" && !music.iter().any(|m| *m != MusicCaps::Unavailable) {
        return xml_response(
            StatusCode::OK,
            "application/xml",
            error_document(
                201,
                &format!("{id} does not support the requested query. Please check the capabilities (t=caps) and make sure the search mode and parameters are supported."),
            ),
        );
    }
    let s = state.lock().unwrap();
    if id != "all" && s.failing_indexers.contains(&id) {
        return xml_response(StatusCode::BAD_REQUEST, "application/xml; charset=utf-8", indexer_failure(&id));
    }
    if id == "all" {
        if let Some(raw) = &s.raw_feed {
            return xml_response(StatusCode::OK, rss, raw.clone());
        }
    }
    let mut releases: Vec<Release> = releases_for(&s, param(&query, "q"))
        .into_iter()
        .filter(|r| if id == "all" { !s.failing_indexers.contains(&r.indexer_id) } else { r.indexer_id == id })
        .collect();
    if id == "all" {
        // The aggregate orders by seeders x size.
        releases.sort_by(|a, b| {
            (u128::from(b.seeders) * u128::from(b.size)).cmp(&(u128::from(a.seeders) * u128::from(a.size)))
        });
    }
    let title = if id == "all" { "AggregateSearch".to_string() } else { id.clone() };
    xml_response(StatusCode::OK, rss, jackett_feed(&base, &api_key, &title, &releases))
}

fn download_answer(download: Option<Download>, redirect: StatusCode) -> Response {
    match download {
        Some(Download::TorrentFile(bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/x-bittorrent".to_string()),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"release.torrent\"".to_string()),
            ],
            bytes,
        )
            .into_response(),
        Some(Download::RedirectToMagnet(target) | Download::Redirect(target)) => {
            (redirect, [(header::LOCATION, target)]).into_response()
        }
        Some(Download::Body(bytes)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html".to_string())], bytes).into_response()
        }
        Some(Download::Dead) | None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Jackett's `/dl/{indexer}/?jackett_apikey=K&path=P&file=TITLE`.
async fn jackett_download(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    uri: Uri,
) -> Response {
    record(&state, &uri, &query);
    let s = state.lock().unwrap();
    if param(&query, "jackett_apikey") != Some(s.api_key.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let title = param(&query, "file").unwrap_or_default().to_string();
    download_answer(s.downloads.get(&(id, title)).cloned(), StatusCode::FOUND)
}

fn prowlarr_item(base: &str, api_key: &str, release: &Release) -> String {
    let file: String = url::form_urlencoded::byte_serialize(release.title.as_bytes()).collect();
    let link = format!(
        "{base}{}/download?apikey={api_key}&link=Q2ZESjhIUGRq{}&file={file}",
        release.indexer_id,
        release.title.len()
    );
    let guid = release.details.clone().unwrap_or_else(|| link.clone());
    let mut xml = String::with_capacity(2048);
    xml.push_str("    <item>\n");
    xml.push_str(&format!("      <title>{}</title>\n", esc(&release.title)));
    xml.push_str(&format!("      <description>{}</description>\n", esc(&release.title)));
    xml.push_str(&format!("      <guid>{}</guid>\n", esc(&guid)));
    xml.push_str(&format!(
        "      <prowlarrindexer id=\"{}\" type=\"{}\">{}</prowlarrindexer>\n",
        esc(&release.indexer_id),
        esc(&release.privacy),
        esc(&release.indexer_name)
    ));
    if let Some(details) = &release.details {
        xml.push_str(&format!("      <comments>{}</comments>\n", esc(details)));
    }
    xml.push_str(&format!("      <pubDate>{}</pubDate>\n", esc(&release.pub_date)));
    xml.push_str(&format!("      <size>{}</size>\n", release.size));
    xml.push_str(&format!("      <link>{}</link>\n", esc(&link)));
    for category in &release.categories {
        xml.push_str(&format!("      <category>{category}</category>\n"));
    }
    xml.push_str(&format!(
        "      <enclosure url=\"{}\" length=\"{}\" type=\"application/x-bittorrent\" />\n",
        esc(&link),
        release.size
    ));
    for category in &release.categories {
        xml.push_str(&format!("      <torznab:attr name=\"category\" value=\"{category}\" />\n"));
    }
    let mut attr = |name: &str, value: String| {
        xml.push_str(&format!("      <torznab:attr name=\"{name}\" value=\"{}\" />\n", esc(&value)));
    };
    attr("genre", String::new());
    attr("seeders", release.seeders.to_string());
    if let Some(files) = release.files {
        attr("files", files.to_string());
    }
    if let Some(grabs) = release.grabs {
        attr("grabs", grabs.to_string());
    }
    attr("peers", release.peers.to_string());
    if let Some(hash) = &release.infohash {
        attr("infohash", hash.clone());
    }
    attr("downloadvolumefactor", release.download_volume_factor.to_string());
    attr("uploadvolumefactor", release.upload_volume_factor.to_string());
    xml.push_str("    </item>\n");
    xml
}

/// Prowlarr's `/{id}/api?apikey=K&t=...` (wrong key: 401; no aggregate).
async fn prowlarr_torznab(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    record(&state, &uri, &query);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
    let base = format!("http://{host}/");
    let (api_key, music) = {
        let s = state.lock().unwrap();
        (s.api_key.clone(), s.indexers.iter().find(|i| i.id == id).map(|i| i.music))
    };
    if param(&query, "apikey") != Some(api_key.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(music) = music else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rss = "application/rss+xml; charset=utf-8";
    if param(&query, "t") == Some("caps") {
        return xml_response(StatusCode::OK, rss, caps_document(&[music], 100));
    }
    if let Some(fault) = apply_fault(&state, &id).await {
        return fault;
    }
    let s = state.lock().unwrap();
    if s.failing_indexers.contains(&id) {
        return xml_response(StatusCode::TOO_MANY_REQUESTS, rss, error_document(429, "Indexer is disabled till later"));
    }
    let releases: Vec<Release> =
        releases_for(&s, param(&query, "q")).into_iter().filter(|r| r.indexer_id == id).collect();
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="1.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:torznab="http://torznab.com/schemas/2015/feed">
  <channel>
    <atom:link rel="self" type="application/rss+xml" />
    <title>Prowlarr</title>
"#,
    );
    for release in &releases {
        xml.push_str(&prowlarr_item(&base, &api_key, release));
    }
    xml.push_str("  </channel>\n</rss>\n");
    xml_response(StatusCode::OK, rss, xml)
}

/// Prowlarr's `/{id}/download?apikey=K&link=..&file=TITLE` (magnets: 301).
async fn prowlarr_download(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    uri: Uri,
) -> Response {
    record(&state, &uri, &query);
    let s = state.lock().unwrap();
    if param(&query, "apikey") != Some(s.api_key.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let title = param(&query, "file").unwrap_or_default().to_string();
    download_answer(s.downloads.get(&(id, title)).cloned(), StatusCode::MOVED_PERMANENTLY)
}
