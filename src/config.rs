//! Configuration: one serde struct per TOML section, every key optional with a default, each overridable by an
//! environment variable `DOWNLOADER2_<SECTION>_<KEY>`. `validate()` rejects values the service cannot run with;
//! `redacted()` is the only form that may be printed or served. Reading the file and the environment happens here
//! and nowhere else.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "DOWNLOADER2_";
/// What secrets are replaced with in `redacted()`.
pub const REDACTED: &str = "<redacted>";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub jackett: JackettConfig,
    pub qbittorrent: QbittorrentConfig,
    pub matcher: MatcherConfig,
    pub converter: ConverterConfig,
    pub processing: ProcessingConfig,
    pub placer: PlacerConfig,
    pub notify: NotifyConfig,
    pub verifier: VerifierConfig,
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Bearer token of the catalog server (create/read/cancel tickets). Empty: generated on first start and kept
    /// in `<data dir>/tokens.toml` (mode 0600).
    pub auth_token: String,
    /// Bearer token of the admin (approve/reject/retry/force-search/config and the web UI). Empty: generated like
    /// `auth_token`.
    pub admin_token: String,
    /// Bearer token that may read `/metrics` only (besides the admin token). Empty: admin token only.
    pub metrics_token: String,
    /// A connection must deliver a request's headers within this many seconds of opening, or of its previous
    /// answer (the keep-alive idle limit); else it is closed. Slow-header and idle clients cannot hold a slot.
    pub header_read_timeout_secs: u64,
    /// A request body must arrive completely within this many seconds once its headers are in (408 otherwise).
    pub body_timeout_secs: u64,
    /// Connections served at once (WebSockets included). Capped further by the open-file limit (leaving room for
    /// the database, qBittorrent and ffmpeg); when full, the connection idle the longest is closed to admit a new
    /// one, so `/api/v1/health` still answers under a flood of idle connections.
    pub max_connections: usize,
    /// The WebSocket pings its client this often; a client silent for two intervals is closed.
    pub websocket_ping_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            auth_token: String::new(),
            admin_token: String::new(),
            metrics_token: String::new(),
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 1024,
            websocket_ping_secs: 30,
        }
    }
}

/// `[database]`: the SQLite file holding every ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Its directory is also the data dir (generated tokens, the managed qBittorrent profile).
    pub path: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { path: PathBuf::from("./data/downloader2.db") }
    }
}

impl DatabaseConfig {
    /// The data directory: where the database lives and generated files go.
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// `[jackett]`: the Torznab indexer proxy (Jackett or Prowlarr).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JackettConfig {
    /// Base URL, e.g. `http://127.0.0.1:9117` (Jackett) or `http://127.0.0.1:9696` (Prowlarr). Empty: searching
    /// is not configured and tickets wait in `failed` (retryable) with that message.
    pub url: String,
    pub api_key: String,
    /// Per request.
    pub timeout_secs: u64,
    /// Indexer ids to query one by one instead of Jackett's `all` aggregate (Prowlarr: the numeric ids).
    pub indexers: Vec<String>,
    /// Searches per minute, shared by every ticket and query variant.
    pub searches_per_minute: u32,
    /// How long a query's results are reused before the indexers are asked again.
    pub cache_ttl_secs: u64,
    /// Hosts (`host` or `host:port`) whose `.torrent` links are fetched even though they resolve to an internal
    /// address. The host and port of `url` always are; any other link must resolve to public addresses only.
    pub allowed_link_hosts: Vec<String>,
    /// Trackers, web seeds and nodes (`host` or `host:port`) kept in what is handed to the torrent client although
    /// they are internal (a private LAN tracker). Any other one on a loopback, private or link-local address is
    /// removed from magnets and `.torrent` files first.
    pub allowed_tracker_hosts: Vec<String>,
}

impl Default for JackettConfig {
    fn default() -> Self {
        JackettConfig {
            url: String::new(),
            api_key: String::new(),
            timeout_secs: 60,
            indexers: Vec::new(),
            searches_per_minute: 10,
            cache_ttl_secs: 600,
            allowed_link_hosts: Vec::new(),
            allowed_tracker_hosts: Vec::new(),
        }
    }
}

/// `[qbittorrent]`: the torrent client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QbittorrentConfig {
    /// WebUI URL of an existing qBittorrent. Empty: downloader2 starts and supervises its own qbittorrent-nox.
    pub url: String,
    pub username: String,
    pub password: String,
    /// Where torrents are saved, one sub-directory per ticket. Empty: `<data dir>/downloads`.
    pub download_path: PathBuf,
    /// Stop seeding at this ratio (-1: no limit).
    pub seed_ratio_limit: f64,
    /// Stop seeding after this many minutes (-1: no limit).
    pub seed_time_limit_mins: i64,
    /// The qbittorrent-nox program for the managed instance (a name on PATH or a path).
    pub nox_path: String,
    /// A download with no progress and no seeds for this long is reported as stalled.
    pub stall_timeout_secs: u64,
    /// Per request to the WebUI.
    pub timeout_secs: u64,
    /// Managed qbittorrent-nox only: keep its peer traffic on 127.0.0.1 with DHT and PeX off (test swarms). Off by
    /// default, because a managed instance must reach real peers to download anything; its WebUI is always
    /// loopback-only, and UPnP and LSD are always off.
    pub managed_loopback_only: bool,
    /// An external qBittorrent that sees the download folder under another path (another container, a NAS): each
    /// entry says that what qBittorrent calls `remote` is `local` here. Paths it reports are translated before
    /// downloader2 reads files; save paths it is sent are translated the other way. Longest prefix wins, whole
    /// path components only. Empty: both sides see the same paths.
    pub path_mappings: Vec<PathMapping>,
}

/// One `[qbittorrent] path_mappings` entry (the *arr "remote path mapping" convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMapping {
    /// The folder as qBittorrent sees it, e.g. `/downloads`.
    pub remote: PathBuf,
    /// The same folder as downloader2 sees it, e.g. `/mnt/nas/downloads`.
    pub local: PathBuf,
}

impl Default for QbittorrentConfig {
    fn default() -> Self {
        QbittorrentConfig {
            url: String::new(),
            username: String::new(),
            password: String::new(),
            download_path: PathBuf::new(),
            seed_ratio_limit: 0.0,
            seed_time_limit_mins: 0,
            nox_path: "qbittorrent-nox".into(),
            stall_timeout_secs: 600,
            timeout_secs: 30,
            managed_loopback_only: false,
            path_mappings: Vec::new(),
        }
    }
}

/// `[matcher]`: choosing the release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherConfig {
    /// `none`, `anthropic`, `openai` or `local`.
    pub llm_provider: String,
    /// Empty: the provider's default small model.
    pub llm_model: String,
    pub api_key: String,
    /// For `local` (and to point `openai`/`anthropic` elsewhere): the server's base URL.
    pub base_url: String,
    /// The best candidate's score must reach this (and have no doubt) to go on without an admin.
    pub auto_approve_threshold: f64,
    /// How many of the deterministic matcher's best candidates the LLM is shown.
    pub llm_max_candidates: usize,
    /// Tokens (input + output) one ticket may spend on the LLM over all its matchings; then it goes on without.
    pub llm_ticket_token_budget: u64,
    /// Per LLM request (each retry has its own).
    pub llm_timeout_secs: u64,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        MatcherConfig {
            llm_provider: "none".into(),
            llm_model: String::new(),
            api_key: String::new(),
            base_url: String::new(),
            auto_approve_threshold: 0.85,
            llm_max_candidates: 5,
            llm_ticket_token_budget: 60_000,
            llm_timeout_secs: 60,
        }
    }
}

/// `[converter]`: ffmpeg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConverterConfig {
    pub ffmpeg_path: String,
    pub ffprobe_path: String,
    /// Work directory, one sub-directory per ticket. Empty: `<data dir>/work`.
    pub temp_dir: PathBuf,
    /// ffmpeg processes at once, over all tickets.
    pub max_parallel_conversions: usize,
}

impl Default for ConverterConfig {
    fn default() -> Self {
        ConverterConfig {
            ffmpeg_path: "ffmpeg".into(),
            ffprobe_path: "ffprobe".into(),
            temp_dir: PathBuf::new(),
            max_parallel_conversions: 2,
        }
    }
}

/// `[processing]`: the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    pub max_parallel_downloads: usize,
    /// The scheduler looks for due work at least this often (it also wakes at once on new work).
    pub check_interval_secs: u64,
    /// Automatic attempts of a retryable failure before the ticket rests in `failed`.
    pub retry_max_attempts: u32,
    pub retry_initial_delay_secs: u64,
    pub retry_max_delay_secs: u64,
    /// A ticket resting in `failed { retryable: true }` is retried automatically (a new round of attempts) once it
    /// has rested this long: an album nobody had yet is searched again daily. 0: only `POST /retry`.
    pub rest_retry_after_secs: u64,
    /// Accept and show tickets but start no work on them (maintenance; the API tests' default).
    pub paused: bool,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            max_parallel_downloads: 3,
            check_interval_secs: 30,
            retry_max_attempts: 5,
            retry_initial_delay_secs: 60,
            retry_max_delay_secs: 3600,
            rest_retry_after_secs: 86_400,
            paused: false,
        }
    }
}

/// `[placer]`: where output may be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacerConfig {
    /// Every ticket destination must resolve inside one of these absolute directories.
    pub allowed_roots: Vec<PathBuf>,
}

impl Default for PlacerConfig {
    fn default() -> Self {
        PlacerConfig { allowed_roots: vec![PathBuf::from("/media")] }
    }
}

/// `[notify]`: the catalog webhook. One signed POST per event, from a persisted outbox, delivered at least once
/// and in commit order (see `crate::notify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where events are POSTed (http or https). Empty: no webhook, no events recorded.
    pub url: String,
    /// Key of the HMAC-SHA256 signature of every body (`X-Downloader2-Signature: sha256=<hex>`). Required with a
    /// `url`, at least `MIN_WEBHOOK_SECRET_LEN` characters.
    pub secret: String,
    /// The states whose entry is reported: any of `completed`, `failed`, `needs_approval`, `cancelled`, `rejected`.
    pub events: Vec<String>,
    /// Per delivery attempt (connect, send, answer).
    pub timeout_secs: u64,
    /// The first retry of a failed delivery waits this long; each further one twice as long, up to
    /// `retry_max_delay_secs`. Retries never stop: an event is kept until the receiver accepts it.
    pub retry_initial_delay_secs: u64,
    pub retry_max_delay_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            url: String::new(),
            secret: String::new(),
            events: crate::models::WEBHOOK_STATES.iter().map(|kind| kind.as_str().to_string()).collect(),
            timeout_secs: 10,
            retry_initial_delay_secs: 1,
            retry_max_delay_secs: 300,
        }
    }
}

impl NotifyConfig {
    /// Whether a webhook is configured.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The states whose entry produces an event: `events` when a `url` is set, else none. Names that are not
    /// webhook states are skipped (`validate` refuses them).
    pub fn event_kinds(&self) -> std::collections::BTreeSet<crate::models::StateKind> {
        if !self.enabled() {
            return std::collections::BTreeSet::new();
        }
        self.events
            .iter()
            .filter_map(|name| crate::models::StateKind::parse(name))
            .filter(|kind| crate::models::WEBHOOK_STATES.contains(kind))
            .collect()
    }
}

/// `[verifier]`: the audio verification between download and conversion (see `crate::verifier` and
/// `processor::verify`): which checks run, their thresholds, and what a suspect or corrupt download does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifierConfig {
    /// Off: downloads go to conversion unverified (no verdicts, no ReplayGain values, no blocklisting).
    pub enabled: bool,
    /// What a release with a `suspect` (lossy transcode claiming lossless) or `corrupt` track does: `fallback` (the
    /// next candidate that would be auto-approved on its own merit, else an admin), `ask` (always an admin), `warn`
    /// (converted anyway; the verdicts are recorded). With `fallback` and `ask` the release's info hash is
    /// blocklisted.
    pub action: String,
    pub check_integrity: bool,
    pub check_transcode: bool,
    pub check_upsampling: bool,
    pub check_padding: bool,
    pub check_duplicates: bool,
    pub check_loudness: bool,
    /// A cut-off below this is band-limited material (an old recording), never called a transcode.
    pub min_lossy_cutoff_hz: f64,
    /// The band above a lossy cut-off may rise at most this far over the quantisation floor.
    pub max_above_cutoff_db: f64,
    /// An encoder's edge falls at least this steeply (dB per kHz).
    pub min_slope_db_per_khz: f64,
    /// A cut-off near the top of the band is a transcode only with a drop at least this deep (dB).
    pub high_cutoff_min_drop_db: f64,
    /// Digital silence inside music at least this long makes a file `corrupt` (zero-filled).
    pub zero_run_secs: f64,
    /// Two fingerprints differing in at most this share of bits are the same audio.
    pub duplicate_max_bit_error: f64,
    /// How many files are decoded at once.
    pub parallelism: usize,
}

/// The actions `[verifier] action` accepts.
pub const VERIFIER_ACTIONS: [&str; 3] = ["fallback", "ask", "warn"];

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            enabled: true,
            action: "fallback".into(),
            check_integrity: true,
            check_transcode: true,
            check_upsampling: true,
            check_padding: true,
            check_duplicates: true,
            check_loudness: true,
            min_lossy_cutoff_hz: 11_000.0,
            max_above_cutoff_db: 6.0,
            min_slope_db_per_khz: 30.0,
            high_cutoff_min_drop_db: 35.0,
            zero_run_secs: 2.0,
            duplicate_max_bit_error: 0.2,
            parallelism: 2,
        }
    }
}

/// The shortest `[notify] secret` accepted.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// A configuration error never fixes itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConfigError::Read { .. }
            | ConfigError::Parse { .. }
            | ConfigError::Env { .. }
            | ConfigError::Invalid { .. } => false,
        }
    }

    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }
}

const SECTIONS: [&str; 10] = [
    "server",
    "database",
    "jackett",
    "qbittorrent",
    "matcher",
    "converter",
    "processing",
    "placer",
    "notify",
    "verifier",
];

/// The shortest bearer token accepted, from the configuration or from `tokens.toml`.
pub const MIN_TOKEN_LEN: usize = 16;

/// The rules every bearer token obeys wherever it comes from (the configuration or `tokens.toml`): at least
/// `MIN_TOKEN_LEN` characters, and no two roles sharing one. Empty tokens are skipped (the caller decides whether
/// empty is allowed). On failure: the name of the offending token and what is wrong.
pub fn check_bearer_tokens<'a>(tokens: &[(&'a str, &str)]) -> Result<(), (&'a str, String)> {
    for (index, (name, token)) in tokens.iter().enumerate() {
        if token.is_empty() {
            continue;
        }
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err((name, format!("must be at least {MIN_TOKEN_LEN} characters")));
        }
        if let Some((other, _)) = tokens[..index].iter().find(|(_, other)| other == token) {
            return Err((name, format!("must differ from {other}")));
        }
    }
    Ok(())
}

/// The smallest `[server] max_connections`: a few for the catalog, the admin page, its WebSocket and health.
pub const MIN_CONNECTIONS: usize = 16;

/// The LLM providers `[matcher] llm_provider` accepts.
pub const LLM_PROVIDERS: [&str; 4] = ["none", "anthropic", "openai", "local"];

impl Config {
    /// Reads the optional TOML file, then applies the process environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_with_env(path, &env)
    }

    /// `load` with an explicit environment (tests).
    pub fn load_with_env(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                text.parse::<toml::Table>().map_err(|err| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: err.message().to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let config = apply_env(table, env, path)?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values the service cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        check_bearer_tokens(&[
            ("server.auth_token", &self.server.auth_token),
            ("server.admin_token", &self.server.admin_token),
            ("server.metrics_token", &self.server.metrics_token),
        ])
        .map_err(|(key, message)| {
            ConfigError::invalid(key, format!("{message} (or leave it empty to have one generated)"))
        })?;
        for (key, value) in [
            ("server.header_read_timeout_secs", self.server.header_read_timeout_secs),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("server.websocket_ping_secs", self.server.websocket_ping_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be >= 1"));
            }
        }
        if self.server.max_connections < MIN_CONNECTIONS {
            return Err(ConfigError::invalid("server.max_connections", format!("must be >= {MIN_CONNECTIONS}")));
        }
        if self.database.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("database.path", "must not be empty"));
        }
        if !self.jackett.url.is_empty() {
            check_http_url("jackett.url", &self.jackett.url)?;
        }
        if self.jackett.timeout_secs == 0 {
            return Err(ConfigError::invalid("jackett.timeout_secs", "must be >= 1"));
        }
        if self.jackett.searches_per_minute == 0 {
            return Err(ConfigError::invalid("jackett.searches_per_minute", "must be >= 1"));
        }
        for (key, entries) in [
            ("jackett.allowed_link_hosts", &self.jackett.allowed_link_hosts),
            ("jackett.allowed_tracker_hosts", &self.jackett.allowed_tracker_hosts),
        ] {
            for entry in entries {
                crate::models::address::HostPattern::parse(entry).map_err(|message| {
                    ConfigError::invalid(key, format!("{message}; write a host or host:port, e.g. tracker.lan:6969"))
                })?;
            }
        }
        if !self.qbittorrent.url.is_empty() {
            check_http_url("qbittorrent.url", &self.qbittorrent.url)?;
        }
        if self.qbittorrent.timeout_secs == 0 {
            return Err(ConfigError::invalid("qbittorrent.timeout_secs", "must be >= 1"));
        }
        if self.qbittorrent.seed_ratio_limit < -1.0 || !self.qbittorrent.seed_ratio_limit.is_finite() {
            return Err(ConfigError::invalid("qbittorrent.seed_ratio_limit", "must be -1 (no limit) or >= 0"));
        }
        if self.qbittorrent.seed_time_limit_mins < -1 {
            return Err(ConfigError::invalid("qbittorrent.seed_time_limit_mins", "must be -1 (no limit) or >= 0"));
        }
        for mapping in &self.qbittorrent.path_mappings {
            for (side, path) in [("remote", &mapping.remote), ("local", &mapping.local)] {
                if !path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                    return Err(ConfigError::invalid(
                        "qbittorrent.path_mappings",
                        format!("{side} = {:?} must be an absolute path without '..'", path.display().to_string()),
                    ));
                }
            }
        }
        if !self.qbittorrent.path_mappings.is_empty() && self.qbittorrent.url.is_empty() {
            return Err(ConfigError::invalid(
                "qbittorrent.path_mappings",
                "only applies to an external qBittorrent ([qbittorrent] url); the managed one sees the same paths",
            ));
        }
        if !LLM_PROVIDERS.contains(&self.matcher.llm_provider.as_str()) {
            return Err(ConfigError::invalid(
                "matcher.llm_provider",
                format!("must be one of {}", LLM_PROVIDERS.join(", ")),
            ));
        }
        if self.matcher.llm_provider == "local" && self.matcher.base_url.is_empty() {
            return Err(ConfigError::invalid("matcher.base_url", "is required when llm_provider = \"local\""));
        }
        if self.matcher.llm_provider == "local" && self.matcher.llm_model.is_empty() {
            return Err(ConfigError::invalid(
                "matcher.llm_model",
                "is required when llm_provider = \"local\" (the model your server serves, e.g. \"gemma4\")",
            ));
        }
        if matches!(self.matcher.llm_provider.as_str(), "anthropic" | "openai") && self.matcher.api_key.is_empty() {
            return Err(ConfigError::invalid(
                "matcher.api_key",
                format!("is required when llm_provider = {:?}", self.matcher.llm_provider),
            ));
        }
        if self.matcher.llm_max_candidates == 0 {
            return Err(ConfigError::invalid("matcher.llm_max_candidates", "must be >= 1"));
        }
        if self.matcher.llm_timeout_secs == 0 {
            return Err(ConfigError::invalid("matcher.llm_timeout_secs", "must be >= 1"));
        }
        if !self.matcher.base_url.is_empty() {
            check_http_url("matcher.base_url", &self.matcher.base_url)?;
        }
        let threshold = self.matcher.auto_approve_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ConfigError::invalid("matcher.auto_approve_threshold", "must be in (0, 1]"));
        }
        if self.converter.max_parallel_conversions == 0 {
            return Err(ConfigError::invalid("converter.max_parallel_conversions", "must be >= 1"));
        }
        if self.processing.max_parallel_downloads == 0 {
            return Err(ConfigError::invalid("processing.max_parallel_downloads", "must be >= 1"));
        }
        if self.processing.check_interval_secs == 0 {
            return Err(ConfigError::invalid("processing.check_interval_secs", "must be >= 1"));
        }
        if self.processing.retry_max_attempts == 0 {
            return Err(ConfigError::invalid("processing.retry_max_attempts", "must be >= 1"));
        }
        if self.processing.retry_initial_delay_secs == 0 {
            return Err(ConfigError::invalid("processing.retry_initial_delay_secs", "must be >= 1"));
        }
        if self.processing.retry_max_delay_secs < self.processing.retry_initial_delay_secs {
            return Err(ConfigError::invalid(
                "processing.retry_max_delay_secs",
                "must be >= processing.retry_initial_delay_secs",
            ));
        }
        if self.placer.allowed_roots.is_empty() {
            return Err(ConfigError::invalid("placer.allowed_roots", "must list at least one directory"));
        }
        for root in &self.placer.allowed_roots {
            if !root.is_absolute() || root.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(ConfigError::invalid(
                    "placer.allowed_roots",
                    format!("{} must be an absolute path without '..'", root.display()),
                ));
            }
        }
        self.validate_notify()?;
        self.validate_verifier()
    }

    /// `[verifier]`: a known action, thresholds in range.
    fn validate_verifier(&self) -> Result<(), ConfigError> {
        let verifier = &self.verifier;
        if !VERIFIER_ACTIONS.contains(&verifier.action.as_str()) {
            return Err(ConfigError::invalid(
                "verifier.action",
                format!("{:?} is not an action; use one of {}", verifier.action, VERIFIER_ACTIONS.join(", ")),
            ));
        }
        if !(0.0..=0.5).contains(&verifier.duplicate_max_bit_error) {
            return Err(ConfigError::invalid("verifier.duplicate_max_bit_error", "must be within 0..0.5"));
        }
        for (key, value) in [
            ("verifier.min_lossy_cutoff_hz", verifier.min_lossy_cutoff_hz),
            ("verifier.max_above_cutoff_db", verifier.max_above_cutoff_db),
            ("verifier.min_slope_db_per_khz", verifier.min_slope_db_per_khz),
            ("verifier.high_cutoff_min_drop_db", verifier.high_cutoff_min_drop_db),
            ("verifier.zero_run_secs", verifier.zero_run_secs),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return Err(ConfigError::invalid(key, "must be a positive number"));
            }
        }
        if verifier.parallelism == 0 {
            return Err(ConfigError::invalid("verifier.parallelism", "must be >= 1"));
        }
        Ok(())
    }

    /// `[notify]`: a webhook URL needs a secret (an unsigned event could be forged by anyone reaching the
    /// receiver), and only the five webhook states may be listed.
    fn validate_notify(&self) -> Result<(), ConfigError> {
        let notify = &self.notify;
        let allowed: Vec<&str> = crate::models::WEBHOOK_STATES.iter().map(|kind| kind.as_str()).collect();
        for name in &notify.events {
            if !allowed.contains(&name.as_str()) {
                return Err(ConfigError::invalid(
                    "notify.events",
                    format!("{name:?} is not a webhook event; use any of {}", allowed.join(", ")),
                ));
            }
        }
        if notify.timeout_secs == 0 {
            return Err(ConfigError::invalid("notify.timeout_secs", "must be >= 1"));
        }
        if notify.retry_initial_delay_secs == 0 {
            return Err(ConfigError::invalid("notify.retry_initial_delay_secs", "must be >= 1"));
        }
        if notify.retry_max_delay_secs < notify.retry_initial_delay_secs {
            return Err(ConfigError::invalid(
                "notify.retry_max_delay_secs",
                "must be >= notify.retry_initial_delay_secs",
            ));
        }
        if !notify.enabled() {
            return Ok(());
        }
        check_http_url("notify.url", &notify.url)?;
        if notify.secret.chars().count() < MIN_WEBHOOK_SECRET_LEN {
            return Err(ConfigError::invalid(
                "notify.secret",
                format!(
                    "must be at least {MIN_WEBHOOK_SECRET_LEN} characters when notify.url is set (the receiver checks \
                     every event's signature with it; e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        if notify.events.is_empty() {
            return Err(ConfigError::invalid(
                "notify.events",
                format!("lists no event while notify.url is set; use any of {}", allowed.join(", ")),
            ));
        }
        Ok(())
    }

    /// A copy safe to print or serve: every secret replaced by `<redacted>` (empty ones stay empty).
    pub fn redacted(&self) -> Config {
        fn hide(secret: &mut String) {
            if !secret.is_empty() {
                *secret = REDACTED.to_string();
            }
        }
        let mut copy = self.clone();
        hide(&mut copy.server.auth_token);
        hide(&mut copy.server.admin_token);
        hide(&mut copy.server.metrics_token);
        hide(&mut copy.jackett.api_key);
        hide(&mut copy.qbittorrent.password);
        hide(&mut copy.matcher.api_key);
        hide(&mut copy.notify.secret);
        copy.notify.url = redact_url_credentials(&copy.notify.url);
        copy
    }

    /// `[converter] temp_dir`, or `<data dir>/work`.
    pub fn work_dir(&self) -> PathBuf {
        if self.converter.temp_dir.as_os_str().is_empty() {
            self.database.data_dir().join("work")
        } else {
            self.converter.temp_dir.clone()
        }
    }

    /// `[qbittorrent] download_path`, or `<data dir>/downloads`.
    pub fn download_dir(&self) -> PathBuf {
        if self.qbittorrent.download_path.as_os_str().is_empty() {
            self.database.data_dir().join("downloads")
        } else {
            self.qbittorrent.download_path.clone()
        }
    }
}

/// `url` with the password of its user info (if any) replaced by `<redacted>`.
fn redact_url_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some(REDACTED)).is_err() {
                return REDACTED.to_string();
            }
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(key, "must be an http:// or https:// URL with a host")),
        Err(err) => Err(ConfigError::invalid(key, format!("not a URL: {err}"))),
    }
}

/// Applies `DOWNLOADER2_<SECTION>_<KEY>` variables over the file's table and deserialises the result.
///
/// A value is taken as TOML when that gives a value of the key's type (numbers, booleans, `["a", "b"]`), else as a
/// string, else (for lists) as a comma-separated list of strings.
fn apply_env(mut table: toml::Table, env: &[(String, String)], path: Option<&Path>) -> Result<Config, ConfigError> {
    let describe_file = || path.map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into());
    let parse = |table: &toml::Table| -> Result<Config, String> {
        Config::deserialize(toml::Value::Table(table.clone())).map_err(|err| err.message().to_string())
    };
    // The file alone must be valid, so that its own errors are reported against it.
    parse(&table).map_err(|message| ConfigError::Parse { path: describe_file(), message })?;

    let mut overrides: Vec<&(String, String)> = env.iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    overrides.sort();
    for (name, raw) in overrides {
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        let mut choices = Vec::new();
        if let Ok(parsed) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(value) = parsed.get("v") {
                choices.push(value.clone());
            }
        }
        choices.push(toml::Value::String(raw.clone()));
        choices.push(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| toml::Value::String(part.to_string()))
                .collect(),
        ));
        let mut first_error: Option<String> = None;
        let mut applied = false;
        for choice in choices {
            let mut attempt = table.clone();
            let section_table =
                attempt.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = section_table.as_table_mut() else {
                return Err(ConfigError::Env { var: name.clone(), message: format!("[{section}] is not a table") });
            };
            section_table.insert(key.to_string(), choice);
            match parse(&attempt) {
                Ok(_) => {
                    table = attempt;
                    applied = true;
                    break;
                }
                Err(message) => {
                    first_error.get_or_insert(message);
                }
            }
        }
        if !applied {
            return Err(ConfigError::Env { var: name.clone(), message: first_error.unwrap_or_default() });
        }
    }
    parse(&table).map_err(|message| ConfigError::Parse { path: describe_file(), message })
}

/// The bearer tokens in force: the configured ones, or those `server::settle_tokens` generated once and kept in
/// the data dir.
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    /// The catalog server's token.
    pub catalog: String,
    pub admin: String,
    /// Empty: only the admin token reads `/metrics`.
    #[serde(default)]
    pub metrics: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::StateKind;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_file_with_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nport = 7000\n[jackett]\napi_key = \"abc\"\n").unwrap();
        let config = Config::load_with_env(
            Some(&path),
            &env(&[
                ("DOWNLOADER2_SERVER_PORT", "9000"),
                ("DOWNLOADER2_JACKETT_API_KEY", "12345"),
                ("DOWNLOADER2_PLACER_ALLOWED_ROOTS", "/music,/media"),
                ("DOWNLOADER2_PROCESSING_RETRY_MAX_ATTEMPTS", "3"),
                ("DOWNLOADER2_QBITTORRENT_SEED_RATIO_LIMIT", "1.5"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.port, 9000);
        assert_eq!(config.jackett.api_key, "12345");
        assert_eq!(config.placer.allowed_roots, vec![PathBuf::from("/music"), PathBuf::from("/media")]);
        assert_eq!(config.processing.retry_max_attempts, 3);
        assert!((config.qbittorrent.seed_ratio_limit - 1.5).abs() < f64::EPSILON);
    }

    #[test]
    fn path_mappings_come_from_the_file_or_the_environment_and_must_be_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[qbittorrent]\nurl = \"http://127.0.0.1:8080/\"\n\
             path_mappings = [{ remote = \"/downloads\", local = \"/mnt/nas/downloads\" }]\n",
        )
        .unwrap();
        let config = Config::load_with_env(Some(&path), &[]).unwrap();
        let expected = PathMapping { remote: "/downloads".into(), local: "/mnt/nas/downloads".into() };
        assert_eq!(config.qbittorrent.path_mappings, vec![expected]);

        let variable =
            "[{ remote = \"/data\", local = \"/srv/data\" }, { remote = \"/data/music\", local = \"/music\" }]";
        let config = Config::load_with_env(
            None,
            &env(&[
                ("DOWNLOADER2_QBITTORRENT_URL", "http://127.0.0.1:8080/"),
                ("DOWNLOADER2_QBITTORRENT_PATH_MAPPINGS", variable),
            ]),
        )
        .unwrap();
        assert_eq!(config.qbittorrent.path_mappings.len(), 2);
        assert_eq!(config.qbittorrent.path_mappings[1].local, PathBuf::from("/music"));

        for bad in ["[{ remote = \"downloads\", local = \"/x\" }]", "[{ remote = \"/d\", local = \"/x/../y\" }]"] {
            let err = Config::load_with_env(
                None,
                &env(&[
                    ("DOWNLOADER2_QBITTORRENT_URL", "http://127.0.0.1:8080/"),
                    ("DOWNLOADER2_QBITTORRENT_PATH_MAPPINGS", bad),
                ]),
            )
            .unwrap_err();
            assert!(err.to_string().contains("qbittorrent.path_mappings"), "{err}");
        }
        let managed =
            Config::load_with_env(None, &env(&[("DOWNLOADER2_QBITTORRENT_PATH_MAPPINGS", variable)])).unwrap_err();
        assert!(managed.to_string().contains("external qBittorrent"), "{managed}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::load_with_env(None, &env(&[("DOWNLOADER2_SERVER_PORT", "nope")])).unwrap_err();
        assert!(err.to_string().contains("DOWNLOADER2_SERVER_PORT"), "{err}");
        let err = Config::load_with_env(None, &env(&[("DOWNLOADER2_MATCHER_LLM_PROVIDER", "gpt")])).unwrap_err();
        assert!(err.to_string().contains("matcher.llm_provider"), "{err}");
        let err = Config::load_with_env(None, &env(&[("DOWNLOADER2_PLACER_ALLOWED_ROOTS", "media")])).unwrap_err();
        assert!(err.to_string().contains("placer.allowed_roots"), "{err}");
    }

    #[test]
    fn unknown_keys_in_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nprot = 7000\n").unwrap();
        let err = Config::load_with_env(Some(&path), &[]).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let example = Config::load_with_env(Some(&path), &[]).unwrap();
        assert_eq!(example, Config::default(), "config.example.toml must show the defaults");
        let text = std::fs::read_to_string(&path).unwrap();
        let documented: toml::Table = text.parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in &defaults {
            let keys = keys.as_table().unwrap();
            for key in keys.keys() {
                assert!(
                    documented.get(section).and_then(|s| s.get(key)).is_some(),
                    "config.example.toml lacks [{section}] {key}"
                );
            }
        }
    }

    #[test]
    fn token_rules_are_length_and_distinctness_wherever_tokens_come_from() {
        let long = "x".repeat(MIN_TOKEN_LEN);
        let other = "y".repeat(MIN_TOKEN_LEN);
        assert!(check_bearer_tokens(&[("a", &long), ("b", &other), ("c", "")]).is_ok());
        let (name, message) = check_bearer_tokens(&[("a", &long), ("b", "short")]).unwrap_err();
        assert_eq!(name, "b");
        assert!(message.contains("16"), "{message}");
        let (name, message) = check_bearer_tokens(&[("a", &long), ("b", &other), ("c", &long)]).unwrap_err();
        assert_eq!((name, message.as_str()), ("c", "must differ from a"));
        let err = Config::load_with_env(
            None,
            &env(&[("DOWNLOADER2_SERVER_AUTH_TOKEN", &long), ("DOWNLOADER2_SERVER_METRICS_TOKEN", &long)]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.metrics_token"), "{err}");
        let err = Config::load_with_env(None, &env(&[("DOWNLOADER2_SERVER_MAX_CONNECTIONS", "3")])).unwrap_err();
        assert!(err.to_string().contains("server.max_connections"), "{err}");
    }

    #[test]
    fn a_webhook_needs_an_http_url_a_secret_and_known_events() {
        let secret = "s".repeat(MIN_WEBHOOK_SECRET_LEN);
        let config = Config::load_with_env(
            None,
            &env(&[
                ("DOWNLOADER2_NOTIFY_URL", "https://catalog.lan:8443/hooks/downloader2"),
                ("DOWNLOADER2_NOTIFY_SECRET", &secret),
                ("DOWNLOADER2_NOTIFY_EVENTS", "completed,failed"),
                ("DOWNLOADER2_NOTIFY_RETRY_MAX_DELAY_SECS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(config.notify.events, ["completed", "failed"]);
        assert_eq!(config.notify.retry_max_delay_secs, 60);
        let kinds: Vec<StateKind> = config.notify.event_kinds().into_iter().collect();
        assert_eq!(kinds, [StateKind::Completed, StateKind::Failed]);
        assert!(Config::default().notify.event_kinds().is_empty(), "no url: no events recorded");

        let refused = |pairs: &[(&str, &str)]| Config::load_with_env(None, &env(pairs)).unwrap_err().to_string();
        for url in ["ftp://catalog.lan/hook", "catalog.lan/hook", "http://"] {
            let err = refused(&[("DOWNLOADER2_NOTIFY_URL", url), ("DOWNLOADER2_NOTIFY_SECRET", &secret)]);
            assert!(err.contains("notify.url"), "{url}: {err}");
        }
        let err = refused(&[("DOWNLOADER2_NOTIFY_URL", "http://127.0.0.1:9/hook")]);
        assert!(err.contains("notify.secret") && err.contains("openssl rand"), "{err}");
        let err =
            refused(&[("DOWNLOADER2_NOTIFY_URL", "http://127.0.0.1:9/hook"), ("DOWNLOADER2_NOTIFY_SECRET", "short")]);
        assert!(err.contains("notify.secret"), "{err}");
        let err = refused(&[("DOWNLOADER2_NOTIFY_EVENTS", "completed,downloading")]);
        assert!(err.contains("notify.events") && err.contains("\"downloading\""), "{err}");
        let err = refused(&[
            ("DOWNLOADER2_NOTIFY_URL", "http://127.0.0.1:9/hook"),
            ("DOWNLOADER2_NOTIFY_SECRET", &secret),
            ("DOWNLOADER2_NOTIFY_EVENTS", "[]"),
        ]);
        assert!(err.contains("notify.events"), "{err}");
        let err = refused(&[
            ("DOWNLOADER2_NOTIFY_RETRY_INITIAL_DELAY_SECS", "10"),
            ("DOWNLOADER2_NOTIFY_RETRY_MAX_DELAY_SECS", "5"),
        ]);
        assert!(err.contains("notify.retry_max_delay_secs"), "{err}");
    }

    #[test]
    fn redaction_hides_every_secret() {
        let mut config = Config::default();
        config.server.auth_token = "catalog-secret-123456".into();
        config.server.admin_token = "admin-secret-1234567".into();
        config.jackett.api_key = "jackett-secret".into();
        config.qbittorrent.password = "qb-secret".into();
        config.matcher.api_key = "llm-secret".into();
        config.notify.secret = "webhook-secret".into();
        config.notify.url = "https://hook-user:hook-password@catalog.lan/hook".into();
        let shown = serde_json::to_string(&config.redacted()).unwrap();
        assert!(shown.contains("https://hook-user:%3Credacted%3E@catalog.lan/hook"), "{shown}");
        for secret in [
            "catalog-secret",
            "admin-secret",
            "jackett-secret",
            "qb-secret",
            "llm-secret",
            "webhook-secret",
            "hook-password",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
}
