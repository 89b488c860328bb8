//! `QbittorrentClient`: the `TorrentClient` over qBittorrent's WebUI API v2, for 4.5.x and 5.x.
//!
//! Owns the HTTP session (login, SID cookie jar, one re-login on 403, a refused login latched so the IP never gets
//! banned by retries), the version dialect (`pause`/`resume` vs `stop`/`start`, `paused` vs `stopped`), the mapping
//! of our v1 info hashes to qBittorrent's ids (hybrid torrents), the translation of save paths through
//! `[qbittorrent] path_mappings` (stages only ever see local paths), and stall detection.
//!
//! An external qBittorrent is shared with its user: only torrents in the `downloader2` category are ever looked up
//! for changes, tagged, started, stopped or removed (a user's own torrent with the same hash is reported, never
//! adopted); categories and global preferences are never written by the service (`set_preferences` and
//! `shutdown_application` exist for test harnesses and the managed instance only).
//! It never spawns processes, never writes or deletes downloaded files itself (qBittorrent does, through
//! `torrents/delete`; it only checks that a finished download is visible here), and never logs the password.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use url::Url;

use super::metainfo::{magnet_info_hash, torrent_info_hash};
use super::path_mapping::{join_torrent_path, PathMap};
use super::{
    ticket_tag, validate_ticket_id, AddSource, ClientFile, TorrentClient, TorrentClientError, TorrentProgress,
    TorrentState, TorrentStatus, CATEGORY,
};
use crate::config::QbittorrentConfig;
use crate::models::{InfoHash, TorrentFile};

/// Tag of the short-lived torrents `fetch_metadata` adds (not a ticket tag: those start with `d2-`).
const METADATA_TAG: &str = "downloader2-metadata";
/// What qBittorrent appends to files it has not finished (option "Append .!qB extension to incomplete files").
const INCOMPLETE_EXTENSION: &str = ".!qB";
/// qBittorrent's "infinite" ETA.
const MAX_ETA: i64 = 8_640_000;
/// How long an accepted add may take to show up in `torrents/info` (libtorrent adds asynchronously).
const APPEAR_DEADLINE: Duration = Duration::from_secs(15);
/// Interval of the short polls inside one call (add, metadata, removal).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// After qBittorrent came back (a restart, an outage, a new session), no torrent is reported stalled for this long.
/// A client restarted after a kill -9 may receive nothing for minutes: its peers still hold the dead process's uTP
/// connections and refuse the new ones from the same address until libtorrent's `peer_timeout` (120 s) closes them,
/// then the client waits for its next retry (`min_reconnect_time`, 60 s). Measured on loopback: about 125 s with
/// 5.1.0, about 60 s with 4.5.2.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(300);

/// How a torrent starts once added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Downloads at once.
    Running,
    /// Runs until the metadata is known, then stops by itself (magnets; `stopCondition=MetadataReceived`).
    StopAfterMetadata,
    /// Added stopped (`paused` 4.x / `stopped` 5.x). A magnet added so never fetches its metadata.
    Stopped,
}

/// Low-level options of `torrents/add` (the trait's `add_torrent` fills them from the ticket and the config;
/// test harnesses use them directly, e.g. to seed with `skip_checking`).
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Absolute directory the torrent's root goes into (local form; sent through `path_mappings`).
    pub save_path: PathBuf,
    /// Tags besides the category, which is always [`CATEGORY`]: this client only ever manages torrents in it.
    pub tags: Vec<String>,
    pub start: StartMode,
    /// Trust the data already at `save_path` (seeding what we made).
    pub skip_checking: bool,
}

/// The WebAPI version (`app/webapiVersion`), which decides the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WebApiVersion(pub u32, pub u32, pub u32);

impl WebApiVersion {
    /// Parses `2.8.19` (missing parts are 0).
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.trim().split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(WebApiVersion(major, minor, patch))
    }

    /// qBittorrent 5.0+ (WebAPI 2.11): `torrents/stop|start`, `stopped`, `stoppedUP|DL`.
    pub fn uses_stop_start(self) -> bool {
        self >= WebApiVersion(2, 11, 0)
    }
}

/// A login refusal, latched so it is reported again without asking qBittorrent (which would ban us).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    BadCredentials,
    Banned,
}

#[derive(Debug, Default)]
struct Session {
    logged_in: bool,
    version: Option<WebApiVersion>,
    refused: Option<Refusal>,
}

/// When a torrent last made progress (or had a seed), for stall detection.
#[derive(Debug, Clone, Copy)]
struct ProgressWatch {
    completed: u64,
    since: Instant,
}

/// A qBittorrent reached over its WebUI API v2. Cheap to share (`Arc`); all methods take `&self`.
pub struct QbittorrentClient {
    http: reqwest::Client,
    /// Base URL ending in `/` (may carry a reverse-proxy path prefix).
    base: Url,
    /// The base URL for messages (never holds credentials).
    display_url: String,
    username: String,
    password: String,
    download_root: PathBuf,
    seed_ratio_limit: f64,
    seed_time_limit_mins: i64,
    stall_timeout: Duration,
    timeout_secs: u64,
    session: tokio::sync::Mutex<Session>,
    /// Bumped at every login, so concurrent 403s cause one re-login, not one each.
    generation: AtomicU64,
    /// `[qbittorrent] path_mappings`: save paths are sent in qBittorrent's form and read back in ours.
    paths: PathMap,
    /// Our v1 hash -> qBittorrent's id, when they differ (hybrid torrents).
    ids: Mutex<HashMap<InfoHash, String>>,
    watches: Mutex<HashMap<InfoHash, ProgressWatch>>,
    /// Set when a request could not reach qBittorrent; the next answer means it came back (maybe restarted).
    outage_seen: AtomicBool,
    /// Whether the first `poll_all` already removed the metadata torrents an earlier run abandoned.
    swept_abandoned: AtomicBool,
    /// When qBittorrent last came back: stall clocks wait [`RECONNECT_GRACE`] from then.
    reconnected_at: Mutex<Option<Instant>>,
    /// [`RECONNECT_GRACE`] (a field so unit tests can shorten it).
    reconnect_grace: Duration,
    /// One metadata fetch per hash at a time (two tickets' matchings often fetch the same magnet).
    metadata_fetches: Mutex<HashMap<InfoHash, Arc<tokio::sync::Mutex<()>>>>,
    /// File lists already fetched (an info dict never changes), bounded by [`METADATA_CACHE_ENTRIES`].
    metadata_cache: Mutex<HashMap<InfoHash, Vec<TorrentFile>>>,
}

/// How many fetched file lists are remembered.
const METADATA_CACHE_ENTRIES: usize = 1024;

/// The subset of `torrents/info` this client reads (missing keys take defaults: versions differ).
#[derive(Debug, Clone, Deserialize)]
struct InfoJson {
    #[serde(default)]
    hash: String,
    #[serde(default)]
    infohash_v1: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    progress: f64,
    #[serde(default)]
    dlspeed: i64,
    #[serde(default)]
    eta: i64,
    #[serde(default)]
    amount_left: i64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    completed: i64,
    #[serde(default)]
    num_seeds: i64,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    seeding_time: i64,
    #[serde(default)]
    save_path: String,
    #[serde(default)]
    category: String,
}

#[derive(Debug, Clone, Deserialize)]
struct FileJson {
    index: i64,
    name: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    progress: f64,
    #[serde(default)]
    priority: i64,
}

/// An answer qBittorrent gave with a status the caller must interpret (2xx, 404, 409, 415).
struct Reply {
    status: StatusCode,
    body: String,
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl QbittorrentClient {
    /// A client for the WebUI at `url` (e.g. `http://127.0.0.1:8080/`); nothing is sent until the first call.
    /// Torrents are saved under `download_root/<ticket id>`.
    pub fn new(
        url: &str,
        username: &str,
        password: &str,
        config: &QbittorrentConfig,
        download_root: &Path,
    ) -> Result<Self, TorrentClientError> {
        let mut base = Url::parse(url.trim()).map_err(|e| TorrentClientError::InvalidSource {
            reason: format!("[qbittorrent] url {url:?} is not a URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(TorrentClientError::InvalidSource {
                reason: format!("[qbittorrent] url {url:?} must be http(s)://host[:port]/"),
            });
        }
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        // No Origin/Referer: qBittorrent's CSRF check lets such requests pass, while a Referer of our own base URL
        // would be refused behind a reverse proxy that rewrites the Host header (qBittorrent's own nginx recipe).
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .no_proxy()
            .build()
            .map_err(|e| TorrentClientError::Unreachable { url: base.to_string(), reason: e.to_string() })?;
        Ok(QbittorrentClient {
            http,
            display_url: base.to_string(),
            base,
            username: username.to_string(),
            password: password.to_string(),
            download_root: download_root.to_path_buf(),
            seed_ratio_limit: config.seed_ratio_limit,
            seed_time_limit_mins: config.seed_time_limit_mins,
            stall_timeout: Duration::from_secs(config.stall_timeout_secs),
            timeout_secs: config.timeout_secs.max(1),
            session: tokio::sync::Mutex::new(Session::default()),
            generation: AtomicU64::new(0),
            paths: PathMap::new(&config.path_mappings),
            ids: Mutex::new(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            outage_seen: AtomicBool::new(false),
            reconnected_at: Mutex::new(None),
            reconnect_grace: RECONNECT_GRACE,
            metadata_fetches: Mutex::new(HashMap::new()),
            metadata_cache: Mutex::new(HashMap::new()),
            swept_abandoned: AtomicBool::new(false),
        })
    }

    /// The WebUI base URL (without credentials).
    pub fn url(&self) -> &str {
        &self.display_url
    }

    /// Where ticket downloads go (`<root>/<ticket id>`).
    pub fn download_root(&self) -> &Path {
        &self.download_root
    }

    fn endpoint(&self, path: &str) -> Result<Url, TorrentClientError> {
        self.base.join(&format!("api/v2/{path}")).map_err(|e| TorrentClientError::UnexpectedResponse {
            url: self.display_url.clone(),
            reason: format!("cannot build the URL of {path}: {e}"),
        })
    }

    fn transport_error(&self, endpoint: &str, error: reqwest::Error) -> TorrentClientError {
        self.outage_seen.store(true, Ordering::SeqCst);
        let url = format!("{}api/v2/{endpoint}", self.display_url);
        if error.is_timeout() {
            TorrentClientError::Timeout { url, secs: self.timeout_secs }
        } else {
            let error = error.without_url();
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(inner) = source {
                reason.push_str(": ");
                reason.push_str(&inner.to_string());
                source = inner.source();
            }
            TorrentClientError::Unreachable { url, reason }
        }
    }

    fn refusal_error(&self, refusal: Refusal) -> TorrentClientError {
        match refusal {
            Refusal::BadCredentials => {
                TorrentClientError::BadCredentials { url: self.display_url.clone(), username: self.username.clone() }
            }
            Refusal::Banned => TorrentClientError::Banned { url: self.display_url.clone() },
        }
    }

    /// Logs in (the caller holds the session lock). A refusal is latched and never asked again.
    async fn login_locked(&self, session: &mut Session) -> Result<(), TorrentClientError> {
        if let Some(refusal) = session.refused {
            return Err(self.refusal_error(refusal));
        }
        let url = self.endpoint("auth/login")?;
        let response = self
            .http
            .post(url)
            .form(&[("username", self.username.as_str()), ("password", self.password.as_str())])
            .send()
            .await
            .map_err(|e| self.transport_error("auth/login", e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.transport_error("auth/login", e))?;
        let refusal = if status.is_success() && body.trim() != "Fails." {
            None
        } else if status.is_success() || status == StatusCode::UNAUTHORIZED {
            Some(Refusal::BadCredentials)
        } else if status == StatusCode::FORBIDDEN {
            Some(Refusal::Banned)
        } else if status.is_server_error() {
            return Err(TorrentClientError::Server {
                url: format!("{}api/v2/auth/login", self.display_url),
                status: status.as_u16(),
                body: tail(&body),
            });
        } else {
            return Err(TorrentClientError::Rejected {
                url: format!("{}api/v2/auth/login", self.display_url),
                status: status.as_u16(),
                body: tail(&body),
            });
        };
        if let Some(refusal) = refusal {
            session.refused = Some(refusal);
            session.logged_in = false;
            let error = self.refusal_error(refusal);
            tracing::error!(url = %self.display_url, "{error}");
            return Err(error);
        }
        session.logged_in = true;
        self.generation.fetch_add(1, Ordering::SeqCst);
        if session.version.is_none() {
            let version_url = self.endpoint("app/webapiVersion")?;
            let response =
                self.http.get(version_url).send().await.map_err(|e| self.transport_error("app/webapiVersion", e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| self.transport_error("app/webapiVersion", e))?;
            let version = WebApiVersion::parse(&text).filter(|_| status.is_success()).ok_or_else(|| {
                TorrentClientError::UnexpectedResponse {
                    url: format!("{}api/v2/app/webapiVersion", self.display_url),
                    reason: format!("HTTP {status}, body {:?} is not a WebAPI version", tail(&text)),
                }
            })?;
            tracing::info!(url = %self.display_url, webapi = %text.trim(), "connected to qBittorrent");
            session.version = Some(version);
        }
        Ok(())
    }

    /// Makes sure a session exists; returns the login generation the caller's request runs under.
    async fn ensure_session(&self) -> Result<(u64, WebApiVersion), TorrentClientError> {
        let mut session = self.session.lock().await;
        if !session.logged_in {
            self.login_locked(&mut session).await?;
        }
        let version = session.version.unwrap_or(WebApiVersion(2, 0, 0));
        Ok((self.generation.load(Ordering::SeqCst), version))
    }

    /// Logs in again after a 403, unless another request already did since `seen_generation`.
    async fn relogin(&self, seen_generation: u64) -> Result<(), TorrentClientError> {
        let mut session = self.session.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen_generation && session.logged_in {
            return Ok(());
        }
        session.logged_in = false;
        tracing::info!(url = %self.display_url, "qBittorrent session expired (403): logging in again");
        // A new session usually means a restarted client: its peers reconnect from scratch.
        self.note_reconnect();
        self.login_locked(&mut session).await
    }

    /// qBittorrent came back (restarted, or reachable again): every stall clock starts again, and none may report
    /// a stall within [`RECONNECT_GRACE`], rather than counting the reconnection as a stall.
    fn note_reconnect(&self) {
        if let Ok(mut watches) = self.watches.lock() {
            watches.clear();
        }
        if let Ok(mut at) = self.reconnected_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// The WebAPI version (logs in when needed).
    pub async fn webapi_version(&self) -> Result<WebApiVersion, TorrentClientError> {
        Ok(self.ensure_session().await?.1)
    }

    /// Ends the session (`auth/logout`); the next call logs in again.
    pub async fn logout(&self) -> Result<(), TorrentClientError> {
        self.call("auth/logout", |http, url| http.post(url).form(&[("_", "")])).await?;
        Ok(())
    }

    /// Sends one request with the session, re-logging in once on 403. Returns 2xx/404/409/415 answers; maps the rest.
    async fn call<F>(&self, endpoint: &str, build: F) -> Result<Reply, TorrentClientError>
    where
        F: Fn(&reqwest::Client, Url) -> RequestBuilder,
    {
        let started = std::time::Instant::now();
        let reply = self.call_unmeasured(endpoint, build).await;
        crate::metrics::external_call("qbittorrent", reply.is_ok(), started.elapsed());
        reply
    }

    async fn call_unmeasured<F>(&self, endpoint: &str, build: F) -> Result<Reply, TorrentClientError>
    where
        F: Fn(&reqwest::Client, Url) -> RequestBuilder,
    {
        let url = self.endpoint(endpoint)?;
        let (generation, _) = self.ensure_session().await?;
        let mut reply = self.send_once(endpoint, build(&self.http, url.clone())).await?;
        if reply.status == StatusCode::FORBIDDEN {
            self.relogin(generation).await?;
            reply = self.send_once(endpoint, build(&self.http, url)).await?;
            if reply.status == StatusCode::FORBIDDEN {
                return Err(TorrentClientError::Forbidden {
                    url: format!("{}api/v2/{endpoint}", self.display_url),
                    body: tail(&reply.body),
                });
            }
        }
        let status = reply.status;
        if status.is_success()
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::CONFLICT
            || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
        {
            Ok(reply)
        } else if status.is_server_error() {
            Err(TorrentClientError::Server {
                url: format!("{}api/v2/{endpoint}", self.display_url),
                status: status.as_u16(),
                body: tail(&reply.body),
            })
        } else {
            Err(TorrentClientError::Rejected {
                url: format!("{}api/v2/{endpoint}", self.display_url),
                status: status.as_u16(),
                body: tail(&reply.body),
            })
        }
    }

    async fn send_once(&self, endpoint: &str, request: RequestBuilder) -> Result<Reply, TorrentClientError> {
        let response = request.send().await.map_err(|e| self.transport_error(endpoint, e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.transport_error(endpoint, e))?;
        if self.outage_seen.swap(false, Ordering::SeqCst) {
            tracing::info!(url = %self.display_url, "qBittorrent answers again");
            self.note_reconnect();
        }
        Ok(Reply { status, body })
    }

    fn parse_json<T: serde::de::DeserializeOwned>(&self, endpoint: &str, body: &str) -> Result<T, TorrentClientError> {
        serde_json::from_str(body).map_err(|e| TorrentClientError::UnexpectedResponse {
            url: format!("{}api/v2/{endpoint}", self.display_url),
            reason: format!("{e} in {:?}", tail(body)),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>, TorrentClientError> {
        let reply = self.call(endpoint, |http, url| http.get(url).query(query)).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(TorrentClientError::Rejected {
                url: format!("{}api/v2/{endpoint}", self.display_url),
                status: reply.status.as_u16(),
                body: tail(&reply.body),
            });
        }
        self.parse_json(endpoint, &reply.body).map(Some)
    }

    /// POSTs a form; 2xx is success, 404 (unknown hash or endpoint) and 409 are returned for the caller.
    async fn post_form(&self, endpoint: &str, form: &[(&str, &str)]) -> Result<Reply, TorrentClientError> {
        self.call(endpoint, |http, url| http.post(url).form(form)).await
    }

    /// Sets preferences (`app/setPreferences`, a JSON object of 4.5/5.x keys); unknown keys are silently ignored.
    /// Never called by the service: an external qBittorrent's preferences belong to its user (test harnesses
    /// configure the instances they start with it).
    pub async fn set_preferences(&self, preferences: &serde_json::Value) -> Result<(), TorrentClientError> {
        let json = preferences.to_string();
        let reply = self.post_form("app/setPreferences", &[("json", json.as_str())]).await?;
        self.expect_success("app/setPreferences", reply)
    }

    /// Connects a torrent to a peer directly (`torrents/addPeers`): the fallback when trackers give nothing.
    pub async fn add_peer(&self, hash: &InfoHash, peer: std::net::SocketAddr) -> Result<(), TorrentClientError> {
        let id = self.require_id(hash).await?;
        let peer = peer.to_string();
        let reply = self.post_form("torrents/addPeers", &[("hashes", id.as_str()), ("peers", peer.as_str())]).await?;
        self.expect_success("torrents/addPeers", reply)
    }

    /// Asks qBittorrent to exit (`app/shutdown`).
    pub async fn shutdown_application(&self) -> Result<(), TorrentClientError> {
        let reply = self.post_form("app/shutdown", &[("_", "")]).await?;
        self.expect_success("app/shutdown", reply)
    }

    fn expect_success(&self, endpoint: &str, reply: Reply) -> Result<(), TorrentClientError> {
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(TorrentClientError::Rejected {
                url: format!("{}api/v2/{endpoint}", self.display_url),
                status: reply.status.as_u16(),
                body: tail(&reply.body),
            })
        }
    }

    /// Adds a torrent with explicit options and waits until qBittorrent lists it. Returns its v1 hash.
    pub async fn add_with_options(
        &self,
        source: AddSource,
        options: &AddOptions,
    ) -> Result<InfoHash, TorrentClientError> {
        let hash = match &source {
            AddSource::Magnet(magnet) => magnet_info_hash(magnet)?,
            AddSource::TorrentFile(bytes) => torrent_info_hash(bytes)?,
        };
        // qBittorrent's own name for the folder (`[qbittorrent] path_mappings`).
        let remote_save_path = self.paths.to_remote(&options.save_path);
        let save_path = remote_save_path.to_str().ok_or_else(|| TorrentClientError::InvalidSource {
            reason: format!("save path {} is not UTF-8", remote_save_path.display()),
        })?;
        // A user's own torrent with this hash is never adopted: adding it again would merge our trackers into it,
        // and tagging it would hand it to our clean-up.
        if let Some(foreign) = self.foreign_torrent(&hash, false).await? {
            return Err(self.foreign_error(&hash, &foreign));
        }
        let (paused, stop_condition) = match options.start {
            StartMode::Running => ("false", "None"),
            StartMode::StopAfterMetadata => ("false", "MetadataReceived"),
            StartMode::Stopped => ("true", "None"),
        };
        let tags = options.tags.join(",");
        let skip_checking = if options.skip_checking { "true" } else { "false" };
        let build_form = || {
            let mut form = Form::new()
                .text("savepath", save_path.to_string())
                .text("category", CATEGORY)
                .text("tags", tags.clone())
                .text("autoTMM", "false")
                .text("paused", paused)
                .text("stopped", paused)
                .text("stopCondition", stop_condition)
                .text("skip_checking", skip_checking);
            match &source {
                AddSource::Magnet(magnet) => form = form.text("urls", magnet.trim().to_string()),
                AddSource::TorrentFile(bytes) => {
                    // Each part needs a distinct filename: qBittorrent keys uploads by it.
                    let part = Part::bytes(bytes.to_vec()).file_name(format!("{hash}.torrent"));
                    form = form.part("torrents", part);
                }
            }
            form
        };
        let reply = self.call("torrents/add", |http, url| http.post(url).multipart(build_form())).await?;
        let accepted = match reply.status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                return Err(TorrentClientError::InvalidSource {
                    reason: format!("qBittorrent refused the torrent {hash}: {}", tail(&reply.body)),
                })
            }
            StatusCode::CONFLICT => false,
            status if status.is_success() => reply.body.trim() != "Fails.",
            _ => false,
        };
        let deadline = Instant::now() + APPEAR_DEADLINE;
        let mut looked_for_foreign = false;
        loop {
            if let Some(info) = self.find_torrent(&hash).await? {
                if !accepted && !options.tags.is_empty() {
                    // Already there (another ticket, or an earlier attempt): share it, marked with our tag too.
                    let reply = self
                        .post_form("torrents/addTags", &[("hashes", info.hash.as_str()), ("tags", tags.as_str())])
                        .await?;
                    self.expect_success("torrents/addTags", reply)?;
                }
                return Ok(hash);
            }
            if !accepted && !looked_for_foreign {
                // Refused and not ours: a user's own hybrid torrent (listed under its v2 id) is the likely reason.
                looked_for_foreign = true;
                if let Some(foreign) = self.foreign_torrent(&hash, true).await? {
                    return Err(self.foreign_error(&hash, &foreign));
                }
            }
            if Instant::now() >= deadline {
                return Err(TorrentClientError::AddFailed {
                    hash,
                    reason: format!(
                        "torrents/add answered HTTP {} {:?}, not listed after {} s",
                        reply.status.as_u16(),
                        tail(&reply.body),
                        APPEAR_DEADLINE.as_secs()
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Finds one of OUR torrents (category `downloader2`) by our v1 hash: by id first, then among our category by
    /// `infohash_v1` (hybrids). A torrent with this hash outside our category is the user's: `None`.
    async fn find_torrent(&self, hash: &InfoHash) -> Result<Option<InfoJson>, TorrentClientError> {
        let cached = self.cached_id(hash);
        let id = cached.clone().unwrap_or_else(|| hash.as_str().to_string());
        let direct: Vec<InfoJson> =
            self.get_json("torrents/info", &[("hashes", id.as_str())]).await?.unwrap_or_default();
        if let Some(info) = direct.into_iter().next() {
            if info.category == CATEGORY {
                return Ok(Some(info));
            }
            if cached.is_some() {
                self.forget(hash);
            }
            return Ok(None);
        }
        let ours: Vec<InfoJson> = self.get_json("torrents/info", &[("category", CATEGORY)]).await?.unwrap_or_default();
        let found = ours.into_iter().find(|info| {
            info.infohash_v1.eq_ignore_ascii_case(hash.as_str()) || info.hash.eq_ignore_ascii_case(hash.as_str())
        });
        if let Some(info) = &found {
            self.remember_id(hash, &info.hash);
        } else if cached.is_some() {
            self.forget(hash);
        }
        Ok(found)
    }

    /// A torrent with our v1 hash OUTSIDE our category (a user's own), by id; with `scan_all`, also among every
    /// torrent by `infohash_v1` (a hybrid is listed under its v2 id; one request for the whole list, so only on the
    /// rare paths that need it).
    async fn foreign_torrent(&self, hash: &InfoHash, scan_all: bool) -> Result<Option<InfoJson>, TorrentClientError> {
        let direct: Vec<InfoJson> =
            self.get_json("torrents/info", &[("hashes", hash.as_str())]).await?.unwrap_or_default();
        if let Some(info) = direct.into_iter().find(|info| info.category != CATEGORY) {
            return Ok(Some(info));
        }
        if !scan_all {
            return Ok(None);
        }
        let every: Vec<InfoJson> = self.get_json("torrents/info", &[]).await?.unwrap_or_default();
        Ok(every
            .into_iter()
            .find(|info| info.category != CATEGORY && info.infohash_v1.eq_ignore_ascii_case(hash.as_str())))
    }

    fn foreign_error(&self, hash: &InfoHash, foreign: &InfoJson) -> TorrentClientError {
        TorrentClientError::ForeignTorrent {
            hash: hash.clone(),
            name: foreign.name.clone(),
            category: foreign.category.clone(),
        }
    }

    fn cached_id(&self, hash: &InfoHash) -> Option<String> {
        self.ids.lock().ok().and_then(|ids| ids.get(hash).cloned())
    }

    fn remember_id(&self, hash: &InfoHash, id: &str) {
        if !id.eq_ignore_ascii_case(hash.as_str()) {
            if let Ok(mut ids) = self.ids.lock() {
                ids.insert(hash.clone(), id.to_ascii_lowercase());
            }
        }
    }

    fn forget(&self, hash: &InfoHash) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.remove(hash);
        }
        if let Ok(mut watches) = self.watches.lock() {
            watches.remove(hash);
        }
    }

    async fn require_id(&self, hash: &InfoHash) -> Result<String, TorrentClientError> {
        match self.find_torrent(hash).await? {
            Some(info) => Ok(info.hash),
            None => Err(TorrentClientError::TorrentNotFound { hash: hash.clone() }),
        }
    }

    /// Starts (resumes) a torrent, in the dialect of the connected version.
    pub async fn start_torrent(&self, hash: &InfoHash) -> Result<(), TorrentClientError> {
        let id = self.require_id(hash).await?;
        let version = self.webapi_version().await?;
        let endpoint = if version.uses_stop_start() { "torrents/start" } else { "torrents/resume" };
        let reply = self.post_form(endpoint, &[("hashes", id.as_str())]).await?;
        self.expect_success(endpoint, reply)
    }

    /// Stops (pauses) a torrent, in the dialect of the connected version.
    pub async fn stop_torrent(&self, hash: &InfoHash) -> Result<(), TorrentClientError> {
        let id = self.require_id(hash).await?;
        let version = self.webapi_version().await?;
        let endpoint = if version.uses_stop_start() { "torrents/stop" } else { "torrents/pause" };
        let reply = self.post_form(endpoint, &[("hashes", id.as_str())]).await?;
        self.expect_success(endpoint, reply)
    }

    async fn set_share_limits(&self, id: &str) -> Result<(), TorrentClientError> {
        let ratio = format!("{}", self.seed_ratio_limit);
        let minutes = self.seed_time_limit_mins.to_string();
        let form = [
            ("hashes", id),
            ("ratioLimit", ratio.as_str()),
            ("seedingTimeLimit", minutes.as_str()),
            ("inactiveSeedingTimeLimit", "-2"),
            ("shareLimitAction", "Default"),
        ];
        let reply = self.post_form("torrents/setShareLimits", &form).await?;
        self.expect_success("torrents/setShareLimits", reply)
    }

    async fn files_by_id(&self, hash: &InfoHash, id: &str) -> Result<Vec<ClientFile>, TorrentClientError> {
        let files: Vec<FileJson> = self
            .get_json("torrents/files", &[("hash", id)])
            .await?
            .ok_or_else(|| TorrentClientError::TorrentNotFound { hash: hash.clone() })?;
        Ok(files
            .into_iter()
            .map(|file| ClientFile {
                index: non_negative(file.index),
                path: file.name,
                size: non_negative(file.size),
                progress: file.progress.clamp(0.0, 1.0),
                priority: u8::try_from(file.priority.clamp(0, 7)).unwrap_or(0),
            })
            .collect())
    }

    /// Turns `torrents/info` into progress, updating the stall watch. Returns the stall duration when stalled.
    fn progress_of(&self, hash: &InfoHash, info: &InfoJson) -> (TorrentProgress, Option<Duration>) {
        let state = TorrentState::from_qbittorrent(&info.state);
        let amount_left = non_negative(info.amount_left);
        let is_complete = amount_left == 0 && info.size > 0 && state.is_upload_side();
        let connected_seeds = non_negative(info.num_seeds);
        let completed = non_negative(info.completed);
        let eta = (info.eta > 0 && info.eta < MAX_ETA && state.is_active_download())
            .then(|| Duration::from_secs(non_negative(info.eta)));
        let stalled_for = self.observe(hash, completed, connected_seeds, state.is_active_download());
        let progress = TorrentProgress {
            hash: hash.clone(),
            progress: info.progress.clamp(0.0, 1.0),
            download_speed: non_negative(info.dlspeed),
            eta,
            state,
            amount_left,
            size: non_negative(info.size),
            connected_seeds,
            is_complete,
            save_path: self.paths.to_local(Path::new(&info.save_path)),
        };
        (progress, stalled_for)
    }

    /// Records an observation; returns how long the torrent has been stalled once that reaches the timeout (never
    /// within [`RECONNECT_GRACE`] of qBittorrent coming back).
    fn observe(&self, hash: &InfoHash, completed: u64, seeds: u64, active: bool) -> Option<Duration> {
        let now = Instant::now();
        let reconnecting = self
            .reconnected_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| now.saturating_duration_since(at) < self.reconnect_grace);
        let mut watches = self.watches.lock().ok()?;
        let watch = watches.entry(hash.clone()).or_insert(ProgressWatch { completed, since: now });
        if !active || seeds > 0 || completed != watch.completed {
            *watch = ProgressWatch { completed, since: now };
            return None;
        }
        let quiet = now.saturating_duration_since(watch.since);
        (quiet >= self.stall_timeout && !reconnecting).then_some(quiet)
    }

    /// Checks that every wanted file of a complete torrent is where downloader2 will read it (the local form of
    /// qBittorrent's save path). A missing one means qBittorrent sees the folder under another path than this
    /// machine: [`TorrentClientError::DownloadNotVisible`] names both paths and `path_mappings`. Returns false
    /// while a file still carries qBittorrent's incomplete-file extension (visible, just not renamed yet).
    async fn check_visible(&self, hash: &InfoHash, info: &InfoJson, local: &Path) -> Result<bool, TorrentClientError> {
        let files = self.files_by_id(hash, &info.hash).await?;
        match visibility(local, &files).await {
            Visibility::Visible => Ok(true),
            Visibility::Renaming => Ok(false),
            Visibility::Missing(path) => Err(TorrentClientError::DownloadNotVisible {
                hash: hash.clone(),
                remote_path: info.save_path.clone(),
                local_path: local.display().to_string(),
                missing: path.display().to_string(),
            }),
        }
    }

    async fn wait_until_gone(&self, hash: &InfoHash, deadline: Instant) -> Result<(), TorrentClientError> {
        while self.find_torrent(hash).await?.is_some() && Instant::now() < deadline {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }
}

/// Whether the wanted files of a torrent are on this machine.
#[derive(Debug, PartialEq, Eq)]
enum Visibility {
    Visible,
    /// A wanted file is there under qBittorrent's incomplete-file name only.
    Renaming,
    /// This wanted file is not there at all.
    Missing(PathBuf),
}

/// Looks for every wanted (priority > 0), non-empty file under `local`. Unsafe torrent paths are not looked at.
async fn visibility(local: &Path, files: &[ClientFile]) -> Visibility {
    for file in files.iter().filter(|file| file.priority > 0 && file.size > 0) {
        let Some(path) = join_torrent_path(local, &file.path) else { continue };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            continue;
        }
        let mut incomplete = path.clone().into_os_string();
        incomplete.push(INCOMPLETE_EXTENSION);
        if tokio::fs::try_exists(&incomplete).await.unwrap_or(false) {
            return Visibility::Renaming;
        }
        return Visibility::Missing(path);
    }
    Visibility::Visible
}

/// The last 300 characters of a body, for error messages.
fn tail(body: &str) -> String {
    let trimmed = body.trim();
    let count = trimmed.chars().count();
    trimmed.chars().skip(count.saturating_sub(300)).collect()
}

impl QbittorrentClient {
    /// Adds the magnet as a temporary, metadata-only torrent (unless it is already there), waits for its file list,
    /// and removes it again - unless a ticket tagged it for download meanwhile: then only our tag goes.
    async fn fetch_metadata_now(
        &self,
        magnet: &str,
        hash: &InfoHash,
        timeout: Duration,
    ) -> Result<Vec<TorrentFile>, TorrentClientError> {
        let deadline = Instant::now() + timeout;
        let existed = self.find_torrent(hash).await?.is_some();
        if !existed {
            if let Some(foreign) = self.foreign_torrent(hash, false).await? {
                // The user has it: read its file list, change nothing.
                let files = self.files_by_id(hash, &foreign.hash).await?;
                if files.is_empty() {
                    return Err(self.foreign_error(hash, &foreign));
                }
                return Ok(files.iter().map(ClientFile::to_torrent_file).collect());
            }
            let options = AddOptions {
                save_path: self.download_root.join(".metadata").join(hash.as_str()),
                tags: vec![METADATA_TAG.to_string()],
                start: StartMode::StopAfterMetadata,
                skip_checking: false,
            };
            self.add_with_options(AddSource::Magnet(magnet.to_string()), &options).await?;
        }
        let outcome = loop {
            match self.get_files(hash).await {
                Ok(files) if !files.is_empty() => break Ok(files),
                Ok(_) => {}
                Err(error) => break Err(error),
            }
            if Instant::now() >= deadline {
                break Err(TorrentClientError::MetadataTimeout { hash: hash.clone(), secs: timeout.as_secs() });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        if !existed {
            let adopted = self.find_torrent(hash).await?.is_some_and(|info| !ticket_ids_of(&info.tags).is_empty());
            if adopted {
                let reply =
                    self.post_form("torrents/removeTags", &[("hashes", hash.as_str()), ("tags", METADATA_TAG)]).await?;
                self.expect_success("torrents/removeTags", reply)?;
            } else {
                self.remove_torrent(hash, true).await?;
                self.wait_until_gone(hash, Instant::now() + APPEAR_DEADLINE).await?;
            }
        }
        outcome.map(|files| files.iter().map(ClientFile::to_torrent_file).collect())
    }
}

impl QbittorrentClient {
    /// Removes the metadata-only torrents an earlier run abandoned (killed during `fetch_metadata`): in our
    /// category, tagged [`METADATA_TAG`], no ticket tag, not being fetched by this process. Failures are logged;
    /// the next run tries again.
    async fn remove_abandoned_metadata_fetches(&self, ours: &[InfoJson]) {
        for info in ours {
            let is_metadata_fetch = info.tags.split(',').any(|tag| tag.trim() == METADATA_TAG);
            if !is_metadata_fetch || !ticket_ids_of(&info.tags).is_empty() {
                continue;
            }
            let raw = if info.infohash_v1.is_empty() { info.hash.as_str() } else { info.infohash_v1.as_str() };
            let in_flight = match raw.parse::<InfoHash>() {
                Ok(hash) => self.metadata_fetches.lock().map_or(true, |fetches| fetches.contains_key(&hash)),
                Err(_) => false,
            };
            if in_flight {
                continue;
            }
            let removed = self
                .post_form("torrents/delete", &[("hashes", info.hash.as_str()), ("deleteFiles", "true")])
                .await
                .and_then(|reply| self.expect_success("torrents/delete", reply));
            match removed {
                Ok(()) => {
                    tracing::info!(hash = %info.hash, name = %info.name, "removed a metadata fetch an earlier run abandoned")
                }
                Err(error) => tracing::warn!(hash = %info.hash, "cannot remove an abandoned metadata fetch: {error}"),
            }
        }
    }
}

fn poisoned(what: &str) -> TorrentClientError {
    TorrentClientError::UnexpectedResponse { url: String::new(), reason: format!("internal lock poisoned: {what}") }
}

fn ticket_ids_of(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter_map(|tag| tag.strip_prefix("d2-"))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

#[async_trait::async_trait]
impl TorrentClient for QbittorrentClient {
    async fn add_torrent(&self, source: AddSource, ticket_id: &str) -> Result<InfoHash, TorrentClientError> {
        validate_ticket_id(ticket_id)?;
        let start = match source {
            AddSource::Magnet(_) => StartMode::StopAfterMetadata,
            AddSource::TorrentFile(_) => StartMode::Stopped,
        };
        let options = AddOptions {
            save_path: self.download_root.join(ticket_id),
            tags: vec![ticket_tag(ticket_id)],
            start,
            skip_checking: false,
        };
        let hash = self.add_with_options(source, &options).await?;
        let id = self.require_id(&hash).await?;
        self.set_share_limits(&id).await?;
        Ok(hash)
    }

    async fn fetch_metadata(&self, magnet: &str, timeout: Duration) -> Result<Vec<TorrentFile>, TorrentClientError> {
        let hash = magnet_info_hash(magnet)?;
        let gate = {
            let mut fetches = self.metadata_fetches.lock().map_err(|_| poisoned("metadata fetches"))?;
            fetches.entry(hash.clone()).or_default().clone()
        };
        let _one_at_a_time = gate.lock().await;
        let cached = self.metadata_cache.lock().ok().and_then(|cache| cache.get(&hash).cloned());
        if let Some(files) = cached {
            return Ok(files);
        }
        let outcome = self.fetch_metadata_now(magnet, &hash, timeout).await;
        if let (Ok(files), Ok(mut cache)) = (&outcome, self.metadata_cache.lock()) {
            if cache.len() >= METADATA_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(hash.clone(), files.clone());
        }
        if let Ok(mut fetches) = self.metadata_fetches.lock() {
            if fetches.get(&hash).is_some_and(|gate| Arc::strong_count(gate) <= 2) {
                fetches.remove(&hash);
            }
        }
        outcome
    }

    async fn get_progress(&self, hash: &InfoHash) -> Result<TorrentProgress, TorrentClientError> {
        let info =
            self.find_torrent(hash).await?.ok_or_else(|| TorrentClientError::TorrentNotFound { hash: hash.clone() })?;
        let (progress, stalled_for) = self.progress_of(hash, &info);
        if let Some(quiet) = stalled_for {
            return Err(TorrentClientError::Stalled { hash: hash.clone(), secs: quiet.as_secs() });
        }
        if progress.is_complete && !self.check_visible(hash, &info, &progress.save_path).await? {
            // Complete, but qBittorrent is still renaming `<file>.!qB`: not done for a reader yet.
            return Ok(TorrentProgress { is_complete: false, ..progress });
        }
        Ok(progress)
    }

    async fn get_files(&self, hash: &InfoHash) -> Result<Vec<ClientFile>, TorrentClientError> {
        let id = self.require_id(hash).await?;
        self.files_by_id(hash, &id).await
    }

    async fn set_file_priorities(&self, hash: &InfoHash, wanted_paths: &[String]) -> Result<(), TorrentClientError> {
        let id = self.require_id(hash).await?;
        let files = self.files_by_id(hash, &id).await?;
        if files.is_empty() {
            return Err(TorrentClientError::MetadataNotReady { hash: hash.clone() });
        }
        let unknown: Vec<String> =
            wanted_paths.iter().filter(|path| !files.iter().any(|file| &file.path == *path)).cloned().collect();
        if !unknown.is_empty() {
            return Err(TorrentClientError::UnknownFiles { hash: hash.clone(), paths: unknown });
        }
        let (wanted, unwanted): (Vec<&ClientFile>, Vec<&ClientFile>) =
            files.iter().partition(|file| wanted_paths.contains(&file.path));
        for (group, priority) in [(unwanted, "0"), (wanted, "1")] {
            if group.is_empty() {
                continue;
            }
            let ids = group.iter().map(|file| file.index.to_string()).collect::<Vec<_>>().join("|");
            let reply = self
                .post_form("torrents/filePrio", &[("hash", id.as_str()), ("id", ids.as_str()), ("priority", priority)])
                .await?;
            match reply.status {
                StatusCode::CONFLICT => return Err(TorrentClientError::MetadataNotReady { hash: hash.clone() }),
                StatusCode::NOT_FOUND => return Err(TorrentClientError::TorrentNotFound { hash: hash.clone() }),
                _ => self.expect_success("torrents/filePrio", reply)?,
            }
        }
        self.start_torrent(hash).await
    }

    async fn remove_torrent(&self, hash: &InfoHash, delete_files: bool) -> Result<(), TorrentClientError> {
        let Some(info) = self.find_torrent(hash).await? else {
            return Ok(());
        };
        let delete = if delete_files { "true" } else { "false" };
        let reply =
            self.post_form("torrents/delete", &[("hashes", info.hash.as_str()), ("deleteFiles", delete)]).await?;
        self.expect_success("torrents/delete", reply)?;
        self.forget(hash);
        Ok(())
    }

    async fn poll_all(&self) -> Result<Vec<TorrentStatus>, TorrentClientError> {
        let infos: Vec<InfoJson> = self.get_json("torrents/info", &[("category", CATEGORY)]).await?.unwrap_or_default();
        if !self.swept_abandoned.swap(true, Ordering::SeqCst) {
            self.remove_abandoned_metadata_fetches(&infos).await;
        }
        let mut statuses = Vec::with_capacity(infos.len());
        for info in infos {
            let raw = if info.infohash_v1.is_empty() { info.hash.as_str() } else { info.infohash_v1.as_str() };
            let Ok(hash) = raw.parse::<InfoHash>() else {
                tracing::warn!(hash = %info.hash, "skipping a torrent without a v1 info hash");
                continue;
            };
            self.remember_id(&hash, &info.hash);
            let (progress, stalled_for) = self.progress_of(&hash, &info);
            let share_limit_reached = progress.state == TorrentState::StoppedComplete;
            statuses.push(TorrentStatus {
                ticket_ids: ticket_ids_of(&info.tags),
                name: info.name.clone(),
                ratio: info.ratio,
                seeding_time_secs: non_negative(info.seeding_time),
                stalled: stalled_for.is_some(),
                share_limit_reached,
                hash,
                progress,
            });
        }
        Ok(statuses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webapi_versions_pick_the_dialect() {
        assert!(!WebApiVersion::parse("2.8.19").unwrap().uses_stop_start());
        assert!(!WebApiVersion::parse("2.9.3").unwrap().uses_stop_start());
        assert!(WebApiVersion::parse("2.11.2").unwrap().uses_stop_start());
        assert!(WebApiVersion::parse("2.15.1\n").unwrap().uses_stop_start());
        assert!(WebApiVersion::parse("v4.5.2").is_none());
    }

    #[test]
    fn ticket_ids_come_from_our_tags_only() {
        assert_eq!(ticket_ids_of("d2-a1, other, d2-b_2"), vec!["a1".to_string(), "b_2".to_string()]);
        assert!(ticket_ids_of("downloader2-metadata").is_empty());
        assert!(ticket_ids_of("").is_empty());
    }

    #[test]
    fn stall_needs_quiet_time_without_seeds() {
        let config = QbittorrentConfig { stall_timeout_secs: 0, ..QbittorrentConfig::default() };
        let client = QbittorrentClient::new("http://127.0.0.1:9/", "u", "p", &config, Path::new("/tmp")).unwrap();
        let hash: InfoHash = "0".repeat(40).parse().unwrap();
        assert!(client.observe(&hash, 10, 0, true).is_some(), "no progress, no seeds, timeout 0");
        assert!(client.observe(&hash, 10, 1, true).is_none(), "a seed is connected");
        assert!(client.observe(&hash, 11, 0, false).is_none(), "stopped torrents do not stall");
    }

    #[test]
    fn no_stall_is_reported_while_a_restarted_client_reconnects() {
        let config = QbittorrentConfig { stall_timeout_secs: 0, ..QbittorrentConfig::default() };
        let mut client = QbittorrentClient::new("http://127.0.0.1:9/", "u", "p", &config, Path::new("/tmp")).unwrap();
        let hash: InfoHash = "0".repeat(40).parse().unwrap();
        assert!(client.observe(&hash, 10, 0, true).is_some());
        client.note_reconnect();
        assert!(client.observe(&hash, 10, 0, true).is_none(), "within the grace after a reconnect");
        assert!(client.observe(&hash, 10, 0, true).is_none(), "still within the grace");
        client.reconnect_grace = Duration::ZERO;
        assert!(client.observe(&hash, 10, 0, true).is_some(), "after the grace the stall clock counts again");
    }

    #[tokio::test]
    async fn wanted_files_must_exist_locally_and_renaming_ones_are_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = |path: &str, priority: u8, size: u64| ClientFile {
            index: 0,
            path: path.into(),
            size,
            progress: 1.0,
            priority,
        };
        std::fs::create_dir_all(dir.path().join("A")).unwrap();
        std::fs::write(dir.path().join("A/01.flac"), b"x").unwrap();
        let present = [file("A/01.flac", 1, 1), file("A/skipped.log", 0, 5), file("A/empty.txt", 1, 0)];
        assert_eq!(visibility(dir.path(), &present).await, Visibility::Visible);
        std::fs::write(dir.path().join("A/02.flac.!qB"), b"x").unwrap();
        let renaming = [file("A/01.flac", 1, 1), file("A/02.flac", 1, 1)];
        assert_eq!(visibility(dir.path(), &renaming).await, Visibility::Renaming);
        let missing = [file("A/01.flac", 1, 1), file("A/03.flac", 6, 1)];
        assert_eq!(visibility(dir.path(), &missing).await, Visibility::Missing(dir.path().join("A/03.flac")));
        let elsewhere = [file("A/01.flac", 1, 1)];
        assert_eq!(
            visibility(&dir.path().join("not-mounted"), &elsewhere).await,
            Visibility::Missing(dir.path().join("not-mounted/A/01.flac"))
        );
    }

    #[test]
    fn save_paths_are_reported_in_the_local_form() {
        let config = QbittorrentConfig {
            path_mappings: vec![crate::config::PathMapping {
                remote: "/downloads".into(),
                local: "/mnt/nas/downloads".into(),
            }],
            ..QbittorrentConfig::default()
        };
        let client = QbittorrentClient::new("http://127.0.0.1:9/", "u", "p", &config, Path::new("/tmp")).unwrap();
        let hash: InfoHash = "0".repeat(40).parse().unwrap();
        let info: InfoJson = serde_json::from_value(serde_json::json!({
            "hash": hash.as_str(), "state": "stalledUP", "size": 10, "amount_left": 0, "progress": 1.0,
            "save_path": "/downloads/t1", "category": "downloader2"
        }))
        .unwrap();
        let (progress, _) = client.progress_of(&hash, &info);
        assert!(progress.is_complete);
        assert_eq!(progress.save_path, PathBuf::from("/mnt/nas/downloads/t1"));
    }

    #[test]
    fn base_url_keeps_a_proxy_prefix_and_drops_credentials() {
        let config = QbittorrentConfig::default();
        let client =
            QbittorrentClient::new("http://user:pw@127.0.0.1:8080/qbt", "u", "p", &config, Path::new("/tmp")).unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:8080/qbt/");
        assert_eq!(client.endpoint("auth/login").unwrap().as_str(), "http://127.0.0.1:8080/qbt/api/v2/auth/login");
    }
}
