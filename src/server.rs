//! Starting and stopping the service: open the store, settle the bearer tokens (generating them on first start
//! when none are configured, so the service never starts open), start the managed qbittorrent-nox when no
//! `[qbittorrent] url` is configured, serve the router on a given listener until the shutdown future resolves,
//! then stop qbittorrent-nox and close the store. The background tasks (the scheduler, the webhook delivery) are
//! spawned here and stopped through one cancellation token. `main.rs` and the integration tests both go through `run`.
//! How connections are accepted and served (timeouts, the connection cap) is `connections.rs`.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;
use crate::converter::FfmpegConverter;
use crate::processor::webhook::WebhookDeliveryTask;
use crate::processor::{Clients, Scheduler};
use crate::queue::{Store, StoreError};
use crate::searcher::TorznabSearcher;
use crate::torrent_client::{ManagedQbittorrent, QbittorrentClient};
use tokio_util::sync::CancellationToken;

pub mod connections;

use connections::ConnectionLimits;

/// A start-up failure; its message is the one line `serve` prints.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open database {path}: {source}")]
    Database { path: String, source: StoreError },
    #[error("cannot use token file {path}: {message}")]
    Tokens { path: String, message: String },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("cannot start the managed qbittorrent-nox (or set [qbittorrent] url to use an existing qBittorrent): {0}")]
    ManagedTorrentClient(crate::torrent_client::TorrentClientError),
    #[error("cannot set up {stage}: {message}")]
    Stage { stage: &'static str, message: String },
}

/// The bearer tokens in force.
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

/// Name of the generated-token file inside the data dir.
pub const TOKEN_FILE: &str = "tokens.toml";
const GENERATED_TOKEN_LEN: usize = 40;

fn random_token() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(GENERATED_TOKEN_LEN).map(char::from).collect()
}

/// The configured tokens, or for each one left empty a token generated once and kept in `<data dir>/tokens.toml`
/// (mode 0600). Returns the tokens and, when the file was used, its path (to be logged).
///
/// An existing file obeys the configuration's rules (catalog and admin present, at least 16 characters, all
/// different) and must not be readable by group or others: a token file anyone on the machine could read is
/// refused with the `chmod` that fixes it, never used silently.
pub fn settle_tokens(config: &Config) -> Result<(Tokens, Option<PathBuf>), ServeError> {
    let server = &config.server;
    if !server.auth_token.is_empty() && !server.admin_token.is_empty() {
        return Ok((
            Tokens {
                catalog: server.auth_token.clone(),
                admin: server.admin_token.clone(),
                metrics: server.metrics_token.clone(),
            },
            None,
        ));
    }
    let path = config.database.data_dir().join(TOKEN_FILE);
    let token_error = |message: String| ServeError::Tokens { path: path.display().to_string(), message };
    let stored = match read_token_file(&path) {
        Ok(stored) => stored,
        Err(message) => return Err(token_error(message)),
    };
    let stored = match stored {
        Some(tokens) => tokens,
        None => {
            let tokens = Tokens { catalog: random_token(), admin: random_token(), metrics: String::new() };
            write_token_file(&path, &tokens).map_err(|err| token_error(err.to_string()))?;
            tokens
        }
    };
    let pick = |configured: &str, generated: &str| {
        if configured.is_empty() {
            generated.to_string()
        } else {
            configured.to_string()
        }
    };
    let tokens = Tokens {
        catalog: pick(&server.auth_token, &stored.catalog),
        admin: pick(&server.admin_token, &stored.admin),
        metrics: server.metrics_token.clone(),
    };
    // The file's tokens may collide with the one configured token.
    crate::config::check_bearer_tokens(&[
        ("catalog (or server.auth_token)", &tokens.catalog),
        ("admin (or server.admin_token)", &tokens.admin),
        ("server.metrics_token", &tokens.metrics),
    ])
    .map_err(|(name, message)| token_error(format!("{name} {message}")))?;
    Ok((tokens, Some(path)))
}

/// The tokens of an existing `tokens.toml` (None when there is none), checked: private mode, valid TOML, catalog
/// and admin present and obeying the token rules. The error says what is wrong and how to fix it.
fn read_token_file(path: &Path) -> Result<Option<Tokens>, String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "it is readable or writable by group or others (mode {mode:04o}): anyone on this machine may have read \
             the tokens; run `chmod 600 {}` (and replace the tokens if they may have leaked)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| err.to_string())?;
    let tokens: Tokens = toml::from_str(&text).map_err(|err| err.message().to_string())?;
    for (name, token) in [("catalog", &tokens.catalog), ("admin", &tokens.admin)] {
        if token.is_empty() {
            return Err(format!("{name} is empty (delete the file to have new tokens generated)"));
        }
    }
    crate::config::check_bearer_tokens(&[
        ("catalog", &tokens.catalog),
        ("admin", &tokens.admin),
        ("metrics", &tokens.metrics),
    ])
    .map_err(|(name, message)| format!("{name} {message} (or delete the file to have new tokens generated)"))?;
    Ok(Some(tokens))
}

fn write_token_file(path: &Path, tokens: &Tokens) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = toml::to_string(tokens).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(b"# Generated by downloader2 on first start. Keep secret.\n")?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Opens the store and settles the tokens: everything `run` needs before it accepts connections.
pub async fn prepare(config: Config) -> Result<Arc<App>, ServeError> {
    let store = Store::open(&config.database.path)
        .await
        .map_err(|source| ServeError::Database { path: config.database.path.display().to_string(), source })?
        .with_webhook_events(config.notify.event_kinds());
    let (tokens, token_file) = settle_tokens(&config)?;
    if let Some(path) = token_file {
        tracing::info!(path = %path.display(), "bearer tokens not configured: using the generated ones stored in this file");
    }
    let managed = if config.qbittorrent.url.is_empty() {
        let data_dir = config.database.data_dir();
        let managed = ManagedQbittorrent::start(&config.qbittorrent, &data_dir)
            .await
            .map_err(ServeError::ManagedTorrentClient)?;
        Some(managed)
    } else {
        None
    };
    let clients = build_clients(&config, managed.as_ref())?;
    let app = App::new(config, store, tokens, Arc::new(clients));
    *app.managed_qbittorrent.lock().await = managed;
    Ok(Arc::new(app))
}

/// The stage clients: ONE searcher (its rate limit and caches are shared by every ticket), the managed or the
/// configured qBittorrent, and the converter (its slots are the global ffmpeg limit).
fn build_clients(config: &Config, managed: Option<&ManagedQbittorrent>) -> Result<Clients, ServeError> {
    let stage =
        |stage: &'static str| move |err: &dyn std::fmt::Display| ServeError::Stage { stage, message: err.to_string() };
    let searcher = TorznabSearcher::new(&config.jackett).map_err(|err| stage("the searcher")(&err))?;
    let qbittorrent = &config.qbittorrent;
    let torrents = match managed {
        Some(managed) => managed.client(qbittorrent),
        None => QbittorrentClient::new(
            &qbittorrent.url,
            &qbittorrent.username,
            &qbittorrent.password,
            qbittorrent,
            &config.download_dir(),
        ),
    }
    .map_err(|err| stage("the qBittorrent client")(&err))?;
    let llm_options = crate::matcher::llm::http::HttpOptions {
        request_timeout: std::time::Duration::from_secs(config.matcher.llm_timeout_secs.max(1)),
        ..Default::default()
    };
    let llm = crate::matcher::llm::provider_from_config(&config.matcher, llm_options)
        .map_err(|err| stage("the LLM matcher")(&err))?;
    if let Some(provider) = &llm {
        tracing::info!(provider = provider.provider(), model = provider.model(), "LLM second opinion enabled");
    }
    let work_root = config.work_dir();
    let converter =
        FfmpegConverter::new(&config.converter, work_root.clone()).map_err(|err| stage("the converter")(&err))?;
    Ok(Clients {
        searcher: Arc::new(searcher),
        torrents: Arc::new(torrents),
        converter: Arc::new(converter),
        work_root,
        llm,
        torrent_membership: tokio::sync::Mutex::new(()),
    })
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes in-flight requests and closes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = prepare(config).await?;
    serve(app, listener, shutdown).await
}

/// `run` for an already prepared app.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "downloader2 listening");
    }
    let webhook = WebhookDeliveryTask::new(app.store.clone(), &app.config.notify)
        .map_err(|err| ServeError::Stage { stage: "the webhook", message: err.to_string() })?;
    let stop = CancellationToken::new();
    let scheduler = if app.config.processing.paused {
        tracing::warn!("[processing] paused = true: tickets are accepted but no work starts");
        None
    } else {
        let scheduler = Scheduler::new(app.clone());
        Some(tokio::spawn(scheduler.run(stop.child_token())))
    };
    // The webhook is delivered even while processing is paused: cancellations and admin decisions still happen.
    let webhook = webhook.map(|task| tokio::spawn(task.run(stop.child_token())));
    let router = crate::api::router(app.clone());
    let limits = ConnectionLimits::new(&app.config.server, connections::raise_open_file_limit());
    let stop_serving = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop_serving.cancel();
    });
    connections::serve_connections(listener, router, limits, stop.clone()).await;
    stop.cancel();
    if let Some(scheduler) = scheduler {
        if let Err(err) = scheduler.await {
            tracing::error!(error = %err, "scheduler task failed");
        }
    }
    if let Some(webhook) = webhook {
        if let Err(err) = webhook.await {
            tracing::error!(error = %err, "webhook delivery task failed");
        }
    }
    let managed = app.managed_qbittorrent.lock().await.take();
    if let Some(managed) = managed {
        managed.shutdown().await;
    }
    app.store.close().await;
    tracing::info!("downloader2 stopped");
    Ok(())
}

/// Binds the configured address, with a message that says which address failed.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    let address = format!("{}:{}", config.server.host, config.server.port);
    TcpListener::bind(&address).await.map_err(|source| ServeError::Listen { address, source })
}
