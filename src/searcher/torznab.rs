//! The Torznab client: Jackett's aggregate and per-indexer endpoints and Prowlarr's per-indexer endpoints.
//!
//! Owns every HTTP request of search: capabilities (`t=caps`, read once per endpoint and cached), the searches of
//! each query variant (rate limited, cached per normalised query, retried on 5xx/timeouts/429 with backoff), and
//! link resolution (`/dl/` or Prowlarr `/download` links fetched with redirects OFF: a `.torrent` body gives the
//! info hash and file list, a 3xx to `magnet:` gives the magnet). Keeps the fetched `.torrent` bytes in a bounded
//! in-memory cache for the torrent client, and hands the client magnets and `.torrent` files without trackers, web
//! seeds and nodes on internal addresses ([`super::host_policy`]).
//!
//! It must never log or return a URL carrying the API key (see [`redact_url`]), never follow a redirect blindly
//! (every hop passes the [`LinkPolicy`]), never read an unbounded body, and never fail a whole search because one
//! result or one indexer misbehaved.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use url::Url;

use crate::config::JackettConfig;
use crate::models::{InfoHash, Ticket, TorrentCandidate};

use super::candidates::{candidate_from_item, magnet_from_hash, magnet_info_hash, CandidateSet};
use super::host_policy::{source_host_for_log, LinkPolicy, LinkRoute, LinkVerdict, PublicOnlyResolver, SourcePolicy};
use super::query::{build_query_variants, custom_query_variant, is_strong_title, QueryVariant, ENOUGH_STRONG_RESULTS};
use super::rate_limit::SearchRateLimiter;
use super::torznab_xml::{parse_document, Capabilities, SearchMode, TorznabDocument};
use super::{SearchError, Searcher, TorrentSource};
use crate::models::metainfo::{
    magnet_sources, parse_torrent, strip_magnet_sources, strip_torrent_sources, ParsedTorrent, SourceKind,
    MAX_TORRENT_BYTES,
};

/// Attempts per request (the first plus retries) for 5xx, timeouts, network errors and short 429s.
const MAX_ATTEMPTS: u32 = 3;
/// First retry delay; doubles per attempt.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(300);
/// A 429 asking to wait longer than this is returned as `RateLimited` instead of waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Largest Torznab document read.
const MAX_XML_BYTES: usize = 32 * 1024 * 1024;
/// Links (`/dl/`) resolved per query, best seeded first; the rest keep only their link.
const MAX_LINKS_RESOLVED_PER_QUERY: usize = 20;
/// Links resolved at the same time.
const LINK_RESOLUTION_CONCURRENCY: usize = 4;
/// Redirect hops followed by hand for an http(s) `Location` (a `magnet:` one ends the chain).
const MAX_REDIRECT_HOPS: usize = 3;
/// Cached `.torrent` files (count and total bytes).
const TORRENT_CACHE_MAX_ENTRIES: usize = 256;
const TORRENT_CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Cached query results.
const RESULT_CACHE_MAX_ENTRIES: usize = 512;
/// Approximate bytes of cached query results (file lists included).
const RESULT_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Candidates one search returns (best seeded first): what a ticket keeps in its work and the matcher scores.
pub const MAX_CANDIDATES_PER_TICKET: usize = 50;
/// Audio: the parent category (Jackett expands it to its children).
const AUDIO_CATEGORY: u32 = 3000;
/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 4] = ["apikey", "jackett_apikey", "passkey", "api_key"];

/// The URL as it may be logged or shown: secret query parameters removed.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_username("").ok();
    shown.set_password(None).ok();
    if url.query().is_some() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| !SECRET_PARAMS.iter().any(|secret| key.eq_ignore_ascii_case(secret)))
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        if kept.is_empty() {
            shown.set_query(None);
        } else {
            shown.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    shown.to_string()
}

/// A link string as it may be logged (unparseable links are shown as their scheme only).
fn redact_link(link: &str) -> String {
    Url::parse(link).map(|url| redact_url(&url)).unwrap_or_else(|_| "<unparseable link>".into())
}

/// Query results kept for `cache_ttl_secs`, bounded in entries and bytes.
#[derive(Default)]
struct ResultCache {
    entries: HashMap<String, (Instant, Vec<TorrentCandidate>, usize)>,
}

impl ResultCache {
    fn bytes(&self) -> usize {
        self.entries.values().map(|(_, _, size)| size).sum()
    }
}

/// Roughly what a candidate holds in memory: its texts and its file list.
fn approximate_size(candidate: &TorrentCandidate) -> usize {
    let texts = [&candidate.magnet_uri, &candidate.torrent_url, &candidate.details_url, &candidate.guid]
        .iter()
        .map(|text| text.as_ref().map_or(0, String::len))
        .sum::<usize>();
    let files = candidate.files.as_ref().map_or(0, |files| files.iter().map(|f| f.path.len() + 48).sum());
    256 + candidate.title.len() + candidate.indexer.len() + texts + files
}

/// Which server speaks at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointKind {
    /// Jackett's `all`: failing member indexers are dropped by Jackett itself.
    JackettAggregate,
    JackettIndexer,
    ProwlarrIndexer,
}

/// One Torznab API URL (without the API key).
#[derive(Debug, Clone)]
struct Endpoint {
    /// Indexer id (`all`, `1337x`, `3`).
    label: String,
    kind: EndpointKind,
    url: Url,
}

/// What a link resolved to.
#[derive(Debug, Clone)]
enum ResolvedLink {
    Torrent { bytes: Bytes, parsed: Arc<ParsedTorrent> },
    Magnet(String),
}

#[derive(Default)]
struct TorrentCache {
    by_hash: HashMap<InfoHash, (Bytes, Arc<ParsedTorrent>)>,
    /// Link -> what it resolved to (a magnet or a hash in `by_hash`).
    by_link: HashMap<String, LinkTarget>,
    order: VecDeque<InfoHash>,
    total_bytes: usize,
}

#[derive(Clone)]
enum LinkTarget {
    Torrent(InfoHash),
    Magnet(String),
    /// The host policy refused the link or one of its redirects (permanent: never asked again).
    Refused {
        shown: String,
        reason: String,
    },
}

impl TorrentCache {
    fn insert(&mut self, link: Option<&str>, bytes: Bytes, parsed: Arc<ParsedTorrent>) {
        let hash = parsed.info_hash.clone();
        if let Some(link) = link {
            self.by_link.insert(link.to_string(), LinkTarget::Torrent(hash.clone()));
        }
        if self.by_hash.contains_key(&hash) {
            return;
        }
        self.total_bytes = self.total_bytes.saturating_add(bytes.len());
        self.by_hash.insert(hash.clone(), (bytes, parsed));
        self.order.push_back(hash);
        while self.order.len() > TORRENT_CACHE_MAX_ENTRIES || self.total_bytes > TORRENT_CACHE_MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((old_bytes, _)) = self.by_hash.remove(&oldest) {
                self.total_bytes = self.total_bytes.saturating_sub(old_bytes.len());
            }
            self.by_link.retain(|_, target| !matches!(target, LinkTarget::Torrent(h) if *h == oldest));
        }
    }

    /// Remembers what a link gave that is not a `.torrent` (a magnet, or a refusal).
    fn insert_other(&mut self, link: &str, target: LinkTarget) {
        if self.by_link.len() >= TORRENT_CACHE_MAX_ENTRIES * 4 {
            self.by_link.retain(|_, target| matches!(target, LinkTarget::Torrent(_)));
        }
        self.by_link.insert(link.to_string(), target);
    }

    fn lookup_link(&self, link: &str) -> Option<Result<ResolvedLink, SearchError>> {
        match self.by_link.get(link)? {
            LinkTarget::Magnet(magnet) => Some(Ok(ResolvedLink::Magnet(magnet.clone()))),
            LinkTarget::Refused { shown, reason } => {
                Some(Err(SearchError::LinkRefused { url: shown.clone(), reason: reason.clone() }))
            }
            LinkTarget::Torrent(hash) => self
                .by_hash
                .get(hash)
                .map(|(bytes, parsed)| Ok(ResolvedLink::Torrent { bytes: bytes.clone(), parsed: parsed.clone() })),
        }
    }
}

/// The Torznab implementation of [`Searcher`], shared by every ticket (hold it in an `Arc`).
pub struct TorznabSearcher {
    /// `None` when `[jackett] url` is empty: every search answers `NotConfigured`.
    endpoints: Option<Vec<Endpoint>>,
    api_key: String,
    timeout_secs: u64,
    /// The indexer's API and trusted links.
    http: reqwest::Client,
    /// Links on other hosts: resolves names to public addresses only.
    public_http: reqwest::Client,
    link_policy: LinkPolicy,
    source_policy: SourcePolicy,
    limiter: SearchRateLimiter,
    cache_ttl: Duration,
    result_cache: Mutex<ResultCache>,
    caps: Mutex<HashMap<String, Arc<Capabilities>>>,
    torrents: Mutex<TorrentCache>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TorznabSearcher {
    /// Builds the client from `[jackett]`. An empty `url` gives a searcher that answers `NotConfigured`.
    pub fn new(config: &JackettConfig) -> Result<Self, SearchError> {
        let timeout_secs = config.timeout_secs.max(1);
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(timeout_secs))
                .connect_timeout(Duration::from_secs(timeout_secs.min(10)))
                .user_agent(concat!("downloader2/", env!("CARGO_PKG_VERSION")))
        };
        let built = |result: reqwest::Result<reqwest::Client>| {
            result.map_err(|err| SearchError::Configuration(format!("cannot build the HTTP client: {err}")))
        };
        let http = built(builder().build())?;
        // No proxy: a proxy would resolve the name itself, past the public-only resolver.
        let public_http = built(builder().no_proxy().dns_resolver(Arc::new(PublicOnlyResolver)).build())?;
        let endpoints = if config.url.trim().is_empty() {
            None
        } else {
            Some(build_endpoints(config.url.trim(), &config.indexers)?)
        };
        let indexer_url = endpoints.as_ref().and_then(|list| list.first()).map(|endpoint| &endpoint.url);
        let link_policy =
            LinkPolicy::new(indexer_url, &config.allowed_link_hosts).map_err(SearchError::Configuration)?;
        let source_policy = SourcePolicy::new(&config.allowed_tracker_hosts).map_err(SearchError::Configuration)?;
        Ok(TorznabSearcher {
            endpoints,
            api_key: config.api_key.clone(),
            timeout_secs,
            http,
            public_http,
            link_policy,
            source_policy,
            limiter: SearchRateLimiter::new(config.searches_per_minute, Duration::from_secs(60)),
            cache_ttl: Duration::from_secs(config.cache_ttl_secs),
            result_cache: Mutex::new(ResultCache::default()),
            caps: Mutex::new(HashMap::new()),
            torrents: Mutex::new(TorrentCache::default()),
        })
    }

    /// Replaces the rate limit's one-minute window (tests use a short one; `searches_per_minute` searches are
    /// then allowed per `window`).
    pub fn with_rate_limit_window(mut self, searches: u32, window: Duration) -> Self {
        self.limiter = SearchRateLimiter::new(searches, window);
        self
    }

    /// How many searches had to wait for the rate limit so far.
    pub fn rate_limit_waits(&self) -> u64 {
        self.limiter.waits()
    }

    fn api_url(&self, endpoint: &Endpoint, params: &[(&str, String)]) -> Url {
        let mut url = endpoint.url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("apikey", &self.api_key);
            for (key, value) in params {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// One Torznab GET with retries; answers the parsed document (results or caps) or a typed error.
    async fn torznab_get(
        &self,
        endpoint: &Endpoint,
        params: &[(&str, String)],
    ) -> Result<TorznabDocument, SearchError> {
        let url = self.api_url(endpoint, params);
        let shown = redact_url(&url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let outcome = self.torznab_get_once(&url, &shown).await;
            crate::metrics::external_call("torznab", outcome.is_ok(), started.elapsed());
            let delay = match &outcome {
                Ok(_) => return outcome,
                Err(SearchError::RateLimited { retry_after_secs, .. }) => {
                    let wait = Duration::from_secs(*retry_after_secs);
                    (wait <= MAX_RETRY_AFTER).then_some(wait)
                }
                Err(SearchError::Timeout { .. } | SearchError::Network { .. }) => Some(backoff(attempt)),
                Err(SearchError::HttpStatus { status, .. }) if *status >= 500 => Some(backoff(attempt)),
                Err(_) => None,
            };
            match delay {
                Some(delay) if attempt < MAX_ATTEMPTS => {
                    if let Err(err) = &outcome {
                        tracing::warn!(url = %shown, attempt, error = %err, "Torznab request failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
                _ => return outcome,
            }
        }
    }

    async fn torznab_get_once(&self, url: &Url, shown: &str) -> Result<TorznabDocument, SearchError> {
        tracing::debug!(url = %shown, "Torznab request");
        let response = self.http.get(url.clone()).send().await.map_err(|err| self.transport_error(err, shown))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_capped(response, MAX_XML_BYTES, shown, self).await?;
        let text = String::from_utf8_lossy(&body);
        let document = parse_document(&text);
        match (status, document) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => Err(SearchError::Configuration(format!(
                "{shown} refused the API key (HTTP {}): check [jackett] api_key",
                status.as_u16()
            ))),
            (_, Ok(TorznabDocument::Error { code: 100, description })) => Err(SearchError::Configuration(format!(
                "{shown} refused the API key (Torznab error 100: {description}): check [jackett] api_key"
            ))),
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                Err(SearchError::RateLimited { url: shown.to_string(), retry_after_secs: retry_after.unwrap_or(60) })
            }
            (_, Ok(TorznabDocument::Error { code, description })) => {
                Err(SearchError::Indexer { url: shown.to_string(), code, description: first_line(&description) })
            }
            (status, _) if !status.is_success() => {
                Err(SearchError::HttpStatus { url: shown.to_string(), status: status.as_u16() })
            }
            (_, Ok(document)) => Ok(document),
            (_, Err(err)) => Err(SearchError::InvalidResponse { url: shown.to_string(), message: err.0 }),
        }
    }

    fn transport_error(&self, err: reqwest::Error, shown: &str) -> SearchError {
        if err.is_timeout() {
            SearchError::Timeout { url: shown.to_string(), timeout_secs: self.timeout_secs }
        } else {
            SearchError::Network { url: shown.to_string(), message: error_chain(&err.without_url()) }
        }
    }

    /// The endpoint's capabilities, fetched once. An unreachable endpoint is an error (it is skipped); an answer
    /// that is not caps falls back to plain `t=search` (not cached).
    async fn capabilities(&self, endpoint: &Endpoint) -> Result<Arc<Capabilities>, SearchError> {
        if let Some(caps) = lock(&self.caps).get(&endpoint.label) {
            return Ok(caps.clone());
        }
        match self.torznab_get(endpoint, &[("t", "caps".to_string())]).await {
            Ok(TorznabDocument::Caps(caps)) => {
                let caps = Arc::new(caps);
                lock(&self.caps).insert(endpoint.label.clone(), caps.clone());
                Ok(caps)
            }
            Err(err) if err.is_configuration() || is_unreachable(&err) => Err(err),
            Ok(_) => {
                tracing::warn!(indexer = %endpoint.label, "t=caps answered a results feed; assuming plain search");
                Ok(Arc::new(fallback_caps()))
            }
            Err(err) => {
                tracing::warn!(indexer = %endpoint.label, error = %err, "t=caps failed; assuming plain search");
                Ok(Arc::new(fallback_caps()))
            }
        }
    }

    /// One variant on one endpoint: cached, rate limited, links resolved.
    async fn search_endpoint(
        &self,
        endpoint: &Endpoint,
        variant: &QueryVariant,
    ) -> Result<Vec<TorrentCandidate>, SearchError> {
        let caps = self.capabilities(endpoint).await?;
        let music = caps.music_search.available;
        let mut params = search_params(variant, &caps, music);
        let key = cache_key(&endpoint.label, &params);
        if let Some(hit) = self.cached_results(&key) {
            tracing::debug!(indexer = %endpoint.label, q = %variant.q, "search answered from the result cache");
            return Ok(hit);
        }
        self.limiter.acquire().await;
        let mut outcome = self.torznab_get(endpoint, &params).await;
        if music && matches!(&outcome, Err(SearchError::Indexer { code: 200..=203, .. })) {
            tracing::info!(indexer = %endpoint.label, "t=music refused; falling back to t=search");
            params = search_params(variant, &caps, false);
            self.limiter.acquire().await;
            outcome = self.torznab_get(endpoint, &params).await;
        }
        let items = match outcome? {
            TorznabDocument::Results(items) => items,
            TorznabDocument::Caps(_) | TorznabDocument::Error { .. } => {
                return Err(SearchError::InvalidResponse {
                    url: redact_url(&self.api_url(endpoint, &params)),
                    message: "expected a results feed".into(),
                })
            }
        };
        let item_count = items.len();
        // The aggregate's label `all` names no indexer; a per-indexer endpoint names the one it asked.
        let endpoint_indexer = (endpoint.kind != EndpointKind::JackettAggregate).then_some(endpoint.label.as_str());
        let candidates: Vec<TorrentCandidate> =
            items.into_iter().filter_map(|item| candidate_from_item(item, endpoint_indexer)).collect();
        let candidates = self.resolve_links(candidates).await;
        tracing::info!(
            indexer = %endpoint.label, q = %variant.q, items = item_count, candidates = candidates.len(),
            "Torznab search done"
        );
        self.store_results(key, &candidates);
        Ok(candidates)
    }

    fn cached_results(&self, key: &str) -> Option<Vec<TorrentCandidate>> {
        if self.cache_ttl.is_zero() {
            return None;
        }
        let cache = lock(&self.result_cache);
        let (stored_at, list, _) = cache.entries.get(key)?;
        (stored_at.elapsed() < self.cache_ttl).then(|| list.clone())
    }

    fn store_results(&self, key: String, candidates: &[TorrentCandidate]) {
        // An empty answer means "not there yet": the retry that follows must ask the indexer again.
        if self.cache_ttl.is_zero() || candidates.is_empty() {
            return;
        }
        let size: usize = candidates.iter().map(approximate_size).sum();
        if size > RESULT_CACHE_MAX_BYTES / 4 {
            return;
        }
        let mut cache = lock(&self.result_cache);
        let ttl = self.cache_ttl;
        if cache.entries.len() >= RESULT_CACHE_MAX_ENTRIES || cache.bytes() + size > RESULT_CACHE_MAX_BYTES {
            cache.entries.retain(|_, (stored_at, _, _)| stored_at.elapsed() < ttl);
        }
        while cache.entries.len() >= RESULT_CACHE_MAX_ENTRIES || cache.bytes() + size > RESULT_CACHE_MAX_BYTES {
            let oldest = cache.entries.iter().min_by_key(|(_, (at, _, _))| *at).map(|(k, _)| k.clone());
            match oldest {
                Some(oldest) => {
                    cache.entries.remove(&oldest);
                }
                None => break,
            }
        }
        cache.entries.insert(key, (Instant::now(), candidates.to_vec(), size));
    }

    /// Resolves the http links of the best-seeded candidates; a bad link only affects its own result.
    async fn resolve_links(&self, candidates: Vec<TorrentCandidate>) -> Vec<TorrentCandidate> {
        let mut order: Vec<usize> =
            (0..candidates.len()).filter(|&i| candidates.get(i).is_some_and(|c| c.torrent_url.is_some())).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(candidates.get(i).map(|c| c.seeders).unwrap_or(0)));
        order.truncate(MAX_LINKS_RESOLVED_PER_QUERY);
        let mut slots: Vec<Option<TorrentCandidate>> = candidates.into_iter().map(Some).collect();
        let jobs: Vec<(usize, TorrentCandidate)> =
            order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take).map(|c| (i, c))).collect();
        let resolved: Vec<(usize, Option<TorrentCandidate>)> = futures::stream::iter(jobs)
            .map(|(i, candidate)| async move { (i, self.enrich_from_link(candidate).await) })
            .buffer_unordered(LINK_RESOLUTION_CONCURRENCY)
            .collect()
            .await;
        for (i, candidate) in resolved {
            if let Some(slot) = slots.get_mut(i) {
                *slot = candidate;
            }
        }
        slots.into_iter().flatten().collect()
    }

    /// Fills hash/files/magnet from the candidate's link; `None` drops a candidate whose only link is dead or bad.
    async fn enrich_from_link(&self, mut candidate: TorrentCandidate) -> Option<TorrentCandidate> {
        let link = candidate.torrent_url.clone()?;
        match self.resolve_link(&link, 1).await {
            Ok(ResolvedLink::Torrent { parsed, .. }) => {
                if candidate.info_hash.as_ref().is_some_and(|known| *known != parsed.info_hash) {
                    tracing::warn!(
                        link = %redact_link(&link), title = %candidate.title,
                        "the .torrent's info hash differs from the indexer's; result dropped"
                    );
                    return None;
                }
                tracing::debug!(
                    title = %candidate.title, name = %parsed.name, info_hash = %parsed.info_hash,
                    files = parsed.files.len(), omitted = parsed.files_omitted, "release's .torrent read"
                );
                candidate.info_hash = Some(parsed.info_hash.clone());
                candidate.files = Some(parsed.files.clone());
                candidate.files_omitted = parsed.files_omitted;
                if candidate.size_bytes == 0 {
                    candidate.size_bytes = parsed.total_size;
                }
                Some(candidate)
            }
            Ok(ResolvedLink::Magnet(magnet)) => {
                let hash = magnet_info_hash(&magnet);
                if let (Some(known), Some(found)) = (&candidate.info_hash, &hash) {
                    if known != found {
                        tracing::warn!(title = %candidate.title, "the link's magnet names another info hash; result dropped");
                        return None;
                    }
                }
                candidate.info_hash = candidate.info_hash.or(hash);
                candidate.magnet_uri = Some(magnet);
                Some(candidate)
            }
            Err(err) => {
                let can_download_otherwise = candidate.magnet_uri.is_some() || candidate.info_hash.is_some();
                let transient = err.is_retryable() && !matches!(err, SearchError::HttpStatus { status: 404, .. });
                tracing::warn!(title = %candidate.title, error = %err, "could not resolve the result's link");
                (can_download_otherwise || transient).then_some(candidate)
            }
        }
    }

    /// GETs a `.torrent` link with redirects off: a `.torrent` body or a redirect to a magnet.
    async fn resolve_link(&self, link: &str, attempts: u32) -> Result<ResolvedLink, SearchError> {
        if let Some(known) = lock(&self.torrents).lookup_link(link) {
            return known;
        }
        let mut attempt = 0;
        let resolved = loop {
            attempt += 1;
            let started = std::time::Instant::now();
            let outcome = self.resolve_link_once(link).await;
            crate::metrics::external_call("torznab", outcome.is_ok(), started.elapsed());
            let retry = match &outcome {
                Err(SearchError::Timeout { .. } | SearchError::Network { .. }) => true,
                Err(SearchError::HttpStatus { status, .. }) => *status >= 500,
                _ => false,
            };
            if let Err(SearchError::LinkRefused { url, reason }) = &outcome {
                let refusal = LinkTarget::Refused { shown: url.clone(), reason: reason.clone() };
                lock(&self.torrents).insert_other(link, refusal);
            }
            if !retry || attempt >= attempts {
                break outcome?;
            }
            tokio::time::sleep(backoff(attempt)).await;
        };
        let mut cache = lock(&self.torrents);
        match &resolved {
            ResolvedLink::Torrent { bytes, parsed } => cache.insert(Some(link), bytes.clone(), parsed.clone()),
            ResolvedLink::Magnet(magnet) => cache.insert_other(link, LinkTarget::Magnet(magnet.clone())),
        }
        Ok(resolved)
    }

    async fn resolve_link_once(&self, link: &str) -> Result<ResolvedLink, SearchError> {
        let mut url = Url::parse(link).map_err(|err| SearchError::InvalidResponse {
            url: redact_link(link),
            message: format!("unparseable link: {err}"),
        })?;
        for _ in 0..=MAX_REDIRECT_HOPS {
            let shown = redact_url(&url);
            // Every hop is checked: a trusted link may redirect anywhere.
            let client = match self.link_policy.check(&url).await {
                Ok(LinkRoute::Trusted) => &self.http,
                Ok(LinkRoute::PublicOnly) => &self.public_http,
                Err(LinkVerdict::Refused(reason)) => return Err(SearchError::LinkRefused { url: shown, reason }),
                Err(LinkVerdict::Unresolved(message)) => return Err(SearchError::Network { url: shown, message }),
            };
            let response = client.get(url.clone()).send().await.map_err(|err| self.transport_error(err, &shown))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string();
                if location.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("magnet:")) {
                    return Ok(ResolvedLink::Magnet(location));
                }
                url = url.join(&location).map_err(|_| SearchError::InvalidResponse {
                    url: shown.clone(),
                    message: "redirect without a usable Location".into(),
                })?;
                continue;
            }
            if !status.is_success() {
                return Err(SearchError::HttpStatus { url: shown, status: status.as_u16() });
            }
            let body = read_capped(response, MAX_TORRENT_BYTES, &shown, self).await?;
            if body.starts_with(b"magnet:") {
                let magnet = String::from_utf8_lossy(&body).trim().to_string();
                return Ok(ResolvedLink::Magnet(magnet));
            }
            let parsed =
                parse_torrent(&body).map_err(|err| SearchError::BadTorrent { url: shown.clone(), message: err.0 })?;
            return Ok(ResolvedLink::Torrent { bytes: Bytes::from(body), parsed: Arc::new(parsed) });
        }
        Err(SearchError::InvalidResponse {
            url: redact_link(link),
            message: format!("more than {MAX_REDIRECT_HOPS} redirects"),
        })
    }
}

#[async_trait::async_trait]
impl Searcher for TorznabSearcher {
    async fn search(&self, ticket: &Ticket, custom_query: Option<&str>) -> Result<Vec<TorrentCandidate>, SearchError> {
        let endpoints = self.endpoints.as_ref().ok_or(SearchError::NotConfigured)?;
        let variants: Vec<QueryVariant> = match custom_query {
            Some(text) => custom_query_variant(text).into_iter().collect(),
            None => build_query_variants(&ticket.search),
        };
        let mut found = CandidateSet::new();
        let mut answered = 0usize;
        let mut last_error = None;
        // Endpoints that were unreachable for one variant are not asked again in this search.
        let mut unreachable: Vec<&str> = Vec::new();
        for variant in &variants {
            for endpoint in endpoints {
                if unreachable.contains(&endpoint.label.as_str()) {
                    continue;
                }
                match self.search_endpoint(endpoint, variant).await {
                    Ok(list) => {
                        answered += 1;
                        for candidate in list {
                            found.insert(candidate);
                        }
                    }
                    Err(err) if err.is_configuration() => return Err(err),
                    Err(err) => {
                        if is_unreachable(&err) {
                            unreachable.push(endpoint.label.as_str());
                        }
                        tracing::warn!(
                            ticket = %ticket.ticket_id, indexer = %endpoint.label, q = %variant.q, error = %err,
                            "indexer skipped for this query"
                        );
                        last_error = Some(err);
                    }
                }
            }
            let strong = found.count_where(|c| c.seeders > 0 && is_strong_title(&c.title, &ticket.search));
            if strong >= ENOUGH_STRONG_RESULTS {
                tracing::debug!(ticket = %ticket.ticket_id, strong, "enough strong results; no more fallbacks");
                break;
            }
        }
        match last_error {
            Some(err) if answered == 0 => Err(err),
            _ => {
                let mut list = found.into_sorted();
                if list.len() > MAX_CANDIDATES_PER_TICKET {
                    tracing::info!(
                        ticket = %ticket.ticket_id, found = list.len(), kept = MAX_CANDIDATES_PER_TICKET,
                        "only the best-seeded candidates are kept"
                    );
                    list.truncate(MAX_CANDIDATES_PER_TICKET);
                }
                Ok(list)
            }
        }
    }

    async fn torrent_source(&self, candidate: &TorrentCandidate) -> Result<TorrentSource, SearchError> {
        let source = self.source_as_indexed(candidate).await?;
        Ok(self.without_internal_sources(source).await)
    }
}

impl TorznabSearcher {
    /// The candidate's magnet or `.torrent` bytes as the indexer gave them.
    async fn source_as_indexed(&self, candidate: &TorrentCandidate) -> Result<TorrentSource, SearchError> {
        if let Some(hash) = &candidate.info_hash {
            if let Some((bytes, _)) = lock(&self.torrents).by_hash.get(hash) {
                return Ok(TorrentSource::TorrentFile(bytes.clone()));
            }
        }
        if let Some(magnet) = &candidate.magnet_uri {
            return Ok(TorrentSource::Magnet(magnet.clone()));
        }
        if let Some(link) = &candidate.torrent_url {
            return match self.resolve_link(link, MAX_ATTEMPTS).await? {
                ResolvedLink::Torrent { bytes, parsed } => {
                    if candidate.info_hash.as_ref().is_some_and(|known| *known != parsed.info_hash) {
                        return Err(SearchError::BadTorrent {
                            url: redact_link(link),
                            message: format!(
                                "info hash {} differs from the candidate's {}",
                                parsed.info_hash,
                                candidate.info_hash.as_ref().map(InfoHash::as_str).unwrap_or_default()
                            ),
                        });
                    }
                    Ok(TorrentSource::TorrentFile(bytes))
                }
                ResolvedLink::Magnet(magnet) => Ok(TorrentSource::Magnet(magnet)),
            };
        }
        if let Some(hash) = &candidate.info_hash {
            return Ok(TorrentSource::Magnet(magnet_from_hash(hash, &candidate.title)));
        }
        Err(SearchError::NoDownloadLink { title: candidate.title.clone() })
    }

    /// `source` without the trackers, web seeds and nodes the torrent client must not contact (the
    /// [`SourcePolicy`]); a `.torrent`'s info dictionary, so its hash, is unchanged.
    async fn without_internal_sources(&self, source: TorrentSource) -> TorrentSource {
        match source {
            TorrentSource::Magnet(magnet) => {
                let sources = magnet_sources(&magnet);
                if sources.is_empty() {
                    return TorrentSource::Magnet(magnet);
                }
                let verdicts = self.source_policy.verdicts(&sources).await;
                let stripped = strip_magnet_sources(&magnet, |kind, text| allowed(&verdicts, kind, text));
                log_removed_sources(&stripped.removed);
                TorrentSource::Magnet(stripped.value)
            }
            TorrentSource::TorrentFile(bytes) => {
                let sources = crate::models::metainfo::torrent_sources(&bytes).unwrap_or_default();
                let verdicts = self.source_policy.verdicts(&sources).await;
                match strip_torrent_sources(&bytes, |kind, text| allowed(&verdicts, kind, text)) {
                    Ok(stripped) if stripped.removed.is_empty() => TorrentSource::TorrentFile(bytes),
                    Ok(stripped) => {
                        log_removed_sources(&stripped.removed);
                        TorrentSource::TorrentFile(Bytes::from(stripped.value))
                    }
                    // Not a dictionary at all: the client refuses it as it would have anyway.
                    Err(_) => TorrentSource::TorrentFile(bytes),
                }
            }
        }
    }
}

fn allowed(verdicts: &HashMap<(SourceKind, String), bool>, kind: SourceKind, text: &str) -> bool {
    verdicts.get(&(kind, text.to_string())).copied().unwrap_or(false)
}

fn log_removed_sources(removed: &[(SourceKind, String)]) {
    if removed.is_empty() {
        return;
    }
    let hosts: Vec<String> =
        removed.iter().map(|(kind, text)| format!("{} {}", kind.as_str(), source_host_for_log(text))).collect();
    tracing::info!(
        removed = removed.len(), sources = %hosts.join(", "),
        "sources on internal or unresolvable hosts removed before the torrent reaches the client \
         (list a LAN tracker in [jackett] allowed_tracker_hosts to keep it)"
    );
}

/// Errors that mean the endpoint cannot answer now (after this request's own retries).
fn is_unreachable(err: &SearchError) -> bool {
    matches!(err, SearchError::Network { .. } | SearchError::Timeout { .. } | SearchError::RateLimited { .. })
        || matches!(err, SearchError::HttpStatus { status, .. } if *status >= 500 || *status == 429)
}

fn backoff(attempt: u32) -> Duration {
    RETRY_BASE_DELAY.saturating_mul(1u32 << attempt.saturating_sub(1).min(6))
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    line.chars().take(500).collect()
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Reads a body up to `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    shown: &str,
    searcher: &TorznabSearcher,
) -> Result<Vec<u8>, SearchError> {
    let too_large =
        || SearchError::TooLarge { url: shown.to_string(), limit_bytes: u64::try_from(limit).unwrap_or(u64::MAX) };
    if response.content_length().is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    // Sized once when the length is announced (a growing buffer could hold twice the body).
    let announced = response.content_length().and_then(|len| usize::try_from(len).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(announced.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(|err| searcher.transport_error(err, shown))? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // Cached `.torrent` bytes keep their buffer: no slack beyond a quarter.
    if body.capacity() > body.len() + body.len() / 4 {
        body.shrink_to_fit();
    }
    Ok(body)
}

/// Caps assumed when `t=caps` failed: plain `t=search` with `q`.
fn fallback_caps() -> Capabilities {
    Capabilities {
        search: SearchMode { available: true, supported_params: vec!["q".into()] },
        music_search: SearchMode::default(),
        categories: Vec::new(),
    }
}

/// The query parameters of one search (without the API key), in a fixed order.
fn search_params(variant: &QueryVariant, caps: &Capabilities, music: bool) -> Vec<(&'static str, String)> {
    let mode = &caps.music_search;
    let year_param = music && mode.supports("year");
    let mut q = variant.q.clone();
    if let (Some(year), false) = (variant.year, year_param) {
        q = format!("{q} {year}");
    }
    let mut params: Vec<(&'static str, String)> = vec![("t", if music { "music" } else { "search" }.to_string())];
    params.push(("q", q));
    if music {
        if let (Some(artist), true) = (&variant.artist, mode.supports("artist")) {
            params.push(("artist", artist.clone()));
        }
        if let (Some(album), true) = (&variant.album, mode.supports("album")) {
            params.push(("album", album.clone()));
        }
        if let (Some(year), true) = (variant.year, year_param) {
            params.push(("year", year.to_string()));
        }
    }
    params.push(("cat", audio_categories(caps)));
    params
}

/// `3000` plus the audio subcategories the endpoint lists, comma separated.
fn audio_categories(caps: &Capabilities) -> String {
    let mut ids = vec![AUDIO_CATEGORY];
    ids.extend(caps.categories.iter().copied().filter(|c| (3001..4000).contains(c)));
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn cache_key(label: &str, params: &[(&str, String)]) -> String {
    let mut key = String::from(label);
    for (name, value) in params {
        key.push('\u{0}');
        key.push_str(name);
        key.push('=');
        if matches!(*name, "q" | "artist" | "album") {
            // Case and spacing only: diacritics stay, since indexers treat "Mötley" and "Motley" differently.
            key.push_str(&value.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase());
        } else {
            key.push_str(value);
        }
    }
    key
}

/// Jackett's `all` when no indexer is listed; else one endpoint per indexer (numeric ids are Prowlarr's).
fn build_endpoints(base: &str, indexers: &[String]) -> Result<Vec<Endpoint>, SearchError> {
    let mut base_url = Url::parse(base)
        .map_err(|err| SearchError::Configuration(format!("[jackett] url {base:?} is not a URL: {err}")))?;
    if base_url.scheme() != "http" && base_url.scheme() != "https" {
        return Err(SearchError::Configuration(format!("[jackett] url must be http(s), got {:?}", base_url.scheme())));
    }
    if base_url.query().is_some() {
        return Err(SearchError::Configuration(
            "[jackett] url must be the base URL without a query (put the key in api_key)".into(),
        ));
    }
    if !base_url.path().ends_with('/') {
        let path = format!("{}/", base_url.path());
        base_url.set_path(&path);
    }
    let join = |relative: &str| {
        base_url
            .join(relative)
            .map_err(|err| SearchError::Configuration(format!("cannot build the Torznab URL {relative:?}: {err}")))
    };
    let listed: Vec<&str> = indexers.iter().map(|i| i.trim()).filter(|i| !i.is_empty()).collect();
    if listed.is_empty() {
        return Ok(vec![Endpoint {
            label: "all".into(),
            kind: EndpointKind::JackettAggregate,
            url: join("api/v2.0/indexers/all/results/torznab/api")?,
        }]);
    }
    listed
        .into_iter()
        .map(|id| {
            let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            if id.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Endpoint {
                    label: id.into(),
                    kind: EndpointKind::ProwlarrIndexer,
                    url: join(&format!("{encoded}/api"))?,
                })
            } else {
                let kind = if id == "all" { EndpointKind::JackettAggregate } else { EndpointKind::JackettIndexer };
                Ok(Endpoint {
                    label: id.into(),
                    kind,
                    url: join(&format!("api/v2.0/indexers/{encoded}/results/torznab/api"))?,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_every_key_parameter() {
        let url = Url::parse("http://u:p@127.0.0.1:9117/dl/x/?jackett_apikey=SECRET1&path=abc&file=t").unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("SECRET1") && !shown.contains("u:p"));
        assert!(shown.contains("path=abc"));
        let api = Url::parse("http://127.0.0.1:9696/3/api?apikey=SECRET2&t=music").unwrap();
        assert_eq!(redact_url(&api), "http://127.0.0.1:9696/3/api?t=music");
    }

    #[test]
    fn endpoints_for_jackett_all_jackett_ids_and_prowlarr_ids() {
        let all = build_endpoints("http://127.0.0.1:9117", &[]).unwrap();
        assert_eq!(all[0].url.as_str(), "http://127.0.0.1:9117/api/v2.0/indexers/all/results/torznab/api");
        let mixed = build_endpoints("http://127.0.0.1:8000/jackett", &["1337x".into(), "3".into()]).unwrap();
        assert_eq!(mixed[0].url.as_str(), "http://127.0.0.1:8000/jackett/api/v2.0/indexers/1337x/results/torznab/api");
        assert_eq!(mixed[0].kind, EndpointKind::JackettIndexer);
        assert_eq!(mixed[1].url.as_str(), "http://127.0.0.1:8000/jackett/3/api");
        assert_eq!(mixed[1].kind, EndpointKind::ProwlarrIndexer);
        assert!(build_endpoints("ftp://x", &[]).is_err());
        assert!(build_endpoints("not a url", &[]).is_err());
    }

    #[test]
    fn music_params_only_where_caps_list_them() {
        let variant = QueryVariant {
            kind: super::super::query::VariantKind::ArtistAlbumYear,
            q: "Portishead Dummy".into(),
            artist: Some("Portishead".into()),
            album: Some("Dummy".into()),
            year: Some(1994),
        };
        let full = Capabilities {
            search: SearchMode { available: true, supported_params: vec!["q".into()] },
            music_search: SearchMode {
                available: true,
                supported_params: ["q", "album", "artist", "year"].map(String::from).to_vec(),
            },
            categories: vec![3000, 3010, 3040, 100_023],
        };
        let params = search_params(&variant, &full, true);
        let expected: Vec<(&str, String)> = vec![
            ("t", "music".into()),
            ("q", "Portishead Dummy".into()),
            ("artist", "Portishead".into()),
            ("album", "Dummy".into()),
            ("year", "1994".into()),
            ("cat", "3000,3010,3040".into()),
        ];
        assert_eq!(params, expected);
        let q_only = search_params(&variant, &fallback_caps(), false);
        assert_eq!(q_only, vec![("t", "search".into()), ("q", "Portishead Dummy 1994".into()), ("cat", "3000".into())]);
    }
}
