//! `ManagedQbittorrent`: a qbittorrent-nox that downloader2 runs itself when `[qbittorrent] url` is empty.
//!
//! Owns the private profile (`<data dir>/qbittorrent/`), the `qBittorrent.conf` written before every start (WebUI
//! on a free 127.0.0.1 port, generated credentials stored only as a PBKDF2 hash, legal notice accepted, no UPnP/LSD,
//! resume data saved every minute so a crash loses little),
//! the child process, and a supervisor task that restarts it when it dies and stops it on `shutdown()` or when the
//! cancellation token fires. It never talks to torrents (that is `QbittorrentClient`) and never kills any process
//! but its own child (or one a killed predecessor left running on the same profile). Spawning and signals go
//! through `crate::process`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::qbittorrent::QbittorrentClient;
use super::TorrentClientError;
use crate::config::QbittorrentConfig;
use crate::process::{send_stop_signal, spawn_long_lived, StopSignal};

/// The WebUI user of a managed instance.
pub const MANAGED_USERNAME: &str = "downloader2";
/// How long a fresh qbittorrent-nox may take to answer on its WebUI port.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for a clean exit after `app/shutdown` before killing the child.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Restart back-off bounds.
const RESTART_DELAY_MIN: Duration = Duration::from_millis(250);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);

/// What a managed instance is started with (derived from the config by [`ManagedQbittorrent::start`]; test
/// harnesses build it directly).
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// The qbittorrent-nox program (a name on PATH or a path).
    pub program: String,
    /// Parent of the private profile: qBittorrent keeps everything under `<data_dir>/qbittorrent/`.
    pub data_dir: PathBuf,
    /// Default save path of the instance.
    pub download_root: PathBuf,
    /// Peers on 127.0.0.1 only, DHT and PeX off (test swarms).
    pub loopback_only: bool,
    /// Failed logins before qBittorrent bans an IP (`WebUI\MaxAuthenticationFailCount`).
    pub max_auth_failures: u32,
    /// Per WebUI request, for the client used to shut it down.
    pub timeout_secs: u64,
}

/// Everything needed to (re)spawn the same instance.
#[derive(Debug, Clone)]
struct Launch {
    program: String,
    profile_dir: PathBuf,
    log_path: PathBuf,
    webui_port: u16,
    url: String,
    username: String,
    password: String,
    download_root: PathBuf,
    timeout_secs: u64,
}

/// Shared between the handle and the supervisor task.
#[derive(Debug, Default)]
struct Supervision {
    /// Pid of the running child (0 when none).
    pid: AtomicU64,
    /// Restarts after an unexpected exit.
    restarts: AtomicU64,
}

/// A supervised qbittorrent-nox child. Dropping it cancels the supervisor (the child dies with the runtime at the
/// latest: `kill_on_drop`); `shutdown().await` stops it cleanly and waits.
pub struct ManagedQbittorrent {
    launch: Launch,
    peer_port: u16,
    supervision: Arc<Supervision>,
    cancel: CancellationToken,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ManagedQbittorrent {
    /// Starts the managed instance for the service: profile under `data_dir`, downloads in
    /// `[qbittorrent] download_path` (or `<data_dir>/downloads`). Waits until the WebUI answers.
    pub async fn start(config: &QbittorrentConfig, data_dir: &Path) -> Result<Self, TorrentClientError> {
        let download_root = if config.download_path.as_os_str().is_empty() {
            data_dir.join("downloads")
        } else {
            config.download_path.clone()
        };
        let options = ManagedOptions {
            program: config.nox_path.clone(),
            data_dir: data_dir.to_path_buf(),
            download_root,
            loopback_only: config.managed_loopback_only,
            max_auth_failures: 5,
            timeout_secs: config.timeout_secs,
        };
        Self::start_with(&options, CancellationToken::new()).await
    }

    /// Starts an instance with explicit options; it stops when `cancel` fires (e.g. the service's token).
    pub async fn start_with(options: &ManagedOptions, cancel: CancellationToken) -> Result<Self, TorrentClientError> {
        let profile_dir = absolute(&options.data_dir.join("qbittorrent"))?;
        let download_root = absolute(&options.download_root)?;
        let config_dir = profile_dir.join("qBittorrent").join("config");
        for dir in [&config_dir, &download_root] {
            std::fs::create_dir_all(dir)
                .map_err(|source| TorrentClientError::Profile { path: dir.display().to_string(), source })?;
        }
        stop_stale_instance(&profile_dir).await;
        let webui_port = free_port()?;
        let peer_port = free_port()?;
        let password: String = rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let conf = render_config(&ConfigValues {
            webui_port,
            peer_port,
            username: MANAGED_USERNAME,
            password_pbkdf2: &password_pbkdf2(&password, &salt),
            download_root: &download_root,
            loopback_only: options.loopback_only,
            max_auth_failures: options.max_auth_failures,
        });
        let conf_path = config_dir.join("qBittorrent.conf");
        write_private(&conf_path, &conf)?;
        let launch = Launch {
            program: options.program.clone(),
            log_path: profile_dir.join("qbittorrent-nox.out"),
            profile_dir,
            webui_port,
            url: format!("http://127.0.0.1:{webui_port}/"),
            username: MANAGED_USERNAME.to_string(),
            password,
            download_root,
            timeout_secs: options.timeout_secs.max(1),
        };
        let child = spawn_ready(&launch).await?;
        let supervision = Arc::new(Supervision::default());
        supervision.pid.store(u64::from(child.id().unwrap_or(0)), Ordering::SeqCst);
        tracing::info!(url = %launch.url, profile = %launch.profile_dir.display(), "managed qbittorrent-nox started");
        // Owned here (below `app`'s task spawner) and joined by `shutdown`.
        let supervisor = supervise(child, launch.clone(), Arc::clone(&supervision), cancel.clone());
        let task = tokio::spawn(supervisor.instrument(tracing::info_span!("task", name = "qbittorrent.supervisor")));
        Ok(ManagedQbittorrent { launch, peer_port, supervision, cancel, task: tokio::sync::Mutex::new(Some(task)) })
    }

    /// The WebUI base URL (`http://127.0.0.1:<port>/`).
    pub fn url(&self) -> &str {
        &self.launch.url
    }

    /// The generated WebUI user.
    pub fn username(&self) -> &str {
        &self.launch.username
    }

    /// The generated WebUI password (never logged; only its PBKDF2 hash is on disk).
    pub fn password(&self) -> &str {
        &self.launch.password
    }

    /// The port qBittorrent listens on for peers (127.0.0.1 when loopback-only).
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The WebUI port.
    pub fn webui_port(&self) -> u16 {
        self.launch.webui_port
    }

    /// The private profile directory.
    pub fn profile_dir(&self) -> &Path {
        &self.launch.profile_dir
    }

    /// The default save path.
    pub fn download_root(&self) -> &Path {
        &self.launch.download_root
    }

    /// Pid of the running child, if one runs.
    pub fn pid(&self) -> Option<u32> {
        u32::try_from(self.supervision.pid.load(Ordering::SeqCst)).ok().filter(|pid| *pid != 0)
    }

    /// How often the supervisor restarted the child after it died.
    pub fn restarts(&self) -> u64 {
        self.supervision.restarts.load(Ordering::SeqCst)
    }

    /// A client for this instance (torrents saved under `download_root/<ticket id>`).
    pub fn client(&self, config: &QbittorrentConfig) -> Result<QbittorrentClient, TorrentClientError> {
        QbittorrentClient::new(self.url(), self.username(), self.password(), config, &self.launch.download_root)
    }

    /// Stops the instance cleanly (`app/shutdown`, then a kill after a deadline) and waits for the supervisor.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::warn!("qbittorrent-nox supervisor ended abnormally: {error}");
            }
        }
    }
}

impl Drop for ManagedQbittorrent {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs until cancelled: waits on the child, restarts it with back-off when it exits on its own.
async fn supervise(mut child: Child, launch: Launch, supervision: Arc<Supervision>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                stop_child(&mut child, &launch).await;
                supervision.pid.store(0, Ordering::SeqCst);
                return;
            }
            status = child.wait() => {
                supervision.pid.store(0, Ordering::SeqCst);
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(
                    status = %status,
                    log_tail = %log_tail(&launch.log_path),
                    "managed qbittorrent-nox exited unexpectedly; restarting"
                );
                let mut delay = RESTART_DELAY_MIN;
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    match spawn_ready(&launch).await {
                        Ok(new_child) => {
                            child = new_child;
                            supervision.pid.store(u64::from(child.id().unwrap_or(0)), Ordering::SeqCst);
                            supervision.restarts.fetch_add(1, Ordering::SeqCst);
                            tracing::info!(url = %launch.url, "managed qbittorrent-nox restarted");
                            break;
                        }
                        Err(error) => {
                            tracing::error!("restarting qbittorrent-nox failed: {error}");
                            delay = (delay * 2).min(RESTART_DELAY_MAX);
                        }
                    }
                }
            }
        }
    }
}

/// Asks qBittorrent to exit (so it saves resume data), then kills the child if it is still there after a deadline.
async fn stop_child(child: &mut Child, launch: &Launch) {
    let config = QbittorrentConfig { timeout_secs: launch.timeout_secs.min(5), ..QbittorrentConfig::default() };
    let asked =
        match QbittorrentClient::new(&launch.url, &launch.username, &launch.password, &config, &launch.download_root) {
            Ok(client) => client.shutdown_application().await,
            Err(error) => Err(error),
        };
    if let Err(error) = &asked {
        tracing::warn!("app/shutdown failed ({error}); killing qbittorrent-nox");
    } else if let Ok(Ok(status)) = tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
        tracing::info!(%status, "managed qbittorrent-nox stopped");
        return;
    }
    if let Err(error) = child.kill().await {
        tracing::warn!("killing qbittorrent-nox failed: {error}");
    }
}

/// Spawns qbittorrent-nox and waits until its WebUI answers HTTP.
/// Stops a qbittorrent-nox still running on this profile: the orphan of a service that was killed (SIGKILL, power
/// loss of the parent only) before it could stop its child. Two instances on one profile would fight over its
/// files, and the new one's WebUI credentials would not be the orphan's. Linux `/proc` scan; the signals go through
/// `crate::process::send_stop_signal`.
async fn stop_stale_instance(profile_dir: &Path) {
    let wanted = format!("--profile={}", profile_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let stale: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes()).then_some(pid)
        })
        .filter(|pid| *pid != std::process::id())
        .collect();
    for pid in stale {
        tracing::warn!(pid, profile = %profile_dir.display(), "stopping a qbittorrent-nox left running on our profile");
        for (signal, wait) in
            [(StopSignal::Terminate, Duration::from_secs(10)), (StopSignal::Kill, Duration::from_secs(5))]
        {
            if let Err(error) = send_stop_signal(pid, signal) {
                tracing::debug!(pid, ?signal, %error, "signal not delivered (the process may be gone)");
            }
            let deadline = std::time::Instant::now() + wait;
            while process_running(pid) && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !process_running(pid) {
                break;
            }
        }
    }
}

/// Alive and not a zombie.
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

async fn spawn_ready(launch: &Launch) -> Result<Child, TorrentClientError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log_path)
        .map_err(|source| TorrentClientError::Profile { path: launch.log_path.display().to_string(), source })?;
    let log_err = log
        .try_clone()
        .map_err(|source| TorrentClientError::Profile { path: launch.log_path.display().to_string(), source })?;
    let args = [OsString::from(format!("--profile={}", launch.profile_dir.display()))];
    let mut child = spawn_long_lived(&launch.program, &args, Stdio::from(log), Stdio::from(log_err)).map_err(
        |error| match error.kind() {
            std::io::ErrorKind::NotFound => TorrentClientError::NoxNotFound { program: launch.program.clone() },
            _ => TorrentClientError::NoxStartFailed {
                program: launch.program.clone(),
                reason: error.to_string(),
                log_tail: String::new(),
            },
        },
    )?;
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().map_err(|e| {
        TorrentClientError::NoxStartFailed {
            program: launch.program.clone(),
            reason: e.to_string(),
            log_tail: String::new(),
        }
    })?;
    let version_url = format!("{}api/v2/app/webapiVersion", launch.url);
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(TorrentClientError::NoxStartFailed {
                program: launch.program.clone(),
                reason: format!("exited with {status}"),
                log_tail: log_tail(&launch.log_path),
            });
        }
        // Any HTTP answer (403 without a session) means the WebUI is up.
        if probe.get(&version_url).send().await.is_ok() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(TorrentClientError::NoxStartFailed {
                program: launch.program.clone(),
                reason: format!(
                    "the WebUI on 127.0.0.1:{} did not answer within {} s",
                    launch.webui_port,
                    START_DEADLINE.as_secs()
                ),
                log_tail: log_tail(&launch.log_path),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port free on 127.0.0.1 right now (the OS picks it).
fn free_port() -> Result<u16, TorrentClientError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| TorrentClientError::Profile { path: "127.0.0.1:0".into(), source })
}

fn absolute(path: &Path) -> Result<PathBuf, TorrentClientError> {
    std::path::absolute(path).map_err(|source| TorrentClientError::Profile { path: path.display().to_string(), source })
}

fn write_private(path: &Path, text: &str) -> Result<(), TorrentClientError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()).map(|()| file))
        .map_err(|source| TorrentClientError::Profile { path: path.display().to_string(), source })?;
    file.flush().map_err(|source| TorrentClientError::Profile { path: path.display().to_string(), source })
}

/// The last 2000 characters of the child's output.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default();
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(2000)).collect::<String>().trim().to_string()
}

/// qBittorrent's password hash: PBKDF2-HMAC-SHA512, 100 000 iterations, 64-byte key, as `base64(salt):base64(key)`.
pub fn password_pbkdf2(password: &str, salt: &[u8]) -> String {
    let mut key = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, 100_000, &mut key);
    let engine = base64::engine::general_purpose::STANDARD;
    format!("{}:{}", engine.encode(salt), engine.encode(key))
}

struct ConfigValues<'a> {
    webui_port: u16,
    peer_port: u16,
    username: &'a str,
    password_pbkdf2: &'a str,
    download_root: &'a Path,
    loopback_only: bool,
    max_auth_failures: u32,
}

/// A QSettings string value, quoted (a bare comma would make it a list).
fn ini_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_config(values: &ConfigValues<'_>) -> String {
    let save_path = ini_string(&values.download_root.display().to_string());
    let peer_discovery = if values.loopback_only { "false" } else { "true" };
    let mut interface = String::new();
    if values.loopback_only {
        interface.push_str("Session\\Interface=lo\nSession\\InterfaceName=lo\nSession\\InterfaceAddress=127.0.0.1\n");
    }
    format!(
        "[LegalNotice]\nAccepted=true\n\n\
         [Network]\nPortForwardingEnabled=false\n\n\
         [BitTorrent]\n\
         Session\\Port={peer_port}\n\
         {interface}\
         Session\\DHTEnabled={peer_discovery}\n\
         Session\\PeXEnabled={peer_discovery}\n\
         Session\\LSDEnabled=false\n\
         Session\\MultiConnectionsPerIp={loopback}\n\
         Session\\QueueingSystemEnabled=false\n\
         Session\\DefaultSavePath={save_path}\n\
         Session\\TempPathEnabled=false\n\
         Session\\AddTorrentPaused=false\n\
         Session\\AddTorrentStopped=false\n\
         Session\\MaxRatioAction=0\n\
         Session\\SaveResumeDataInterval=1\n\n\
         [Preferences]\n\
         Connection\\ResolvePeerCountries=false\n\
         Connection\\UPnP=false\n\
         Downloads\\SavePath={save_path}\n\
         General\\PreventFromSuspendWhenDownloading=false\n\
         WebUI\\Enabled=true\n\
         WebUI\\Address=127.0.0.1\n\
         WebUI\\Port={webui_port}\n\
         WebUI\\UseUPnP=false\n\
         WebUI\\LocalHostAuth=true\n\
         WebUI\\CSRFProtection=true\n\
         WebUI\\HostHeaderValidation=true\n\
         WebUI\\Username={username}\n\
         WebUI\\Password_PBKDF2=\"@ByteArray({password})\"\n\
         WebUI\\MaxAuthenticationFailCount={max_fail}\n",
        peer_port = values.peer_port,
        webui_port = values.webui_port,
        loopback = if values.loopback_only { "true" } else { "false" },
        username = values.username,
        password = values.password_pbkdf2,
        max_fail = values.max_auth_failures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_qbittorrents_own_default_hash() {
        // qBittorrent 4.5.2's built-in hash of `adminadmin` (protocols.md §3.2).
        let engine = base64::engine::general_purpose::STANDARD;
        let salt = engine.decode("ARQ77eY1NUZaQsuDHbIMCA==").unwrap();
        assert_eq!(
            password_pbkdf2("adminadmin", &salt),
            "ARQ77eY1NUZaQsuDHbIMCA==:0WMRkYTUWVT9wVvdDtHAjU9b3b7uB8NR1Gur2hmQCvCDpm39Q+PsJRJPaCU51dEiz+dTzh8qbPsL8WkFljQYFQ=="
        );
    }

    #[test]
    fn config_is_loopback_only_when_asked_and_never_holds_the_password() {
        let text = render_config(&ConfigValues {
            webui_port: 1234,
            peer_port: 5678,
            username: "downloader2",
            password_pbkdf2: "c2FsdA==:a2V5",
            download_root: Path::new("/data/a,b"),
            loopback_only: true,
            max_auth_failures: 5,
        });
        assert!(text.contains("WebUI\\Address=127.0.0.1\n"));
        assert!(text.contains("WebUI\\Port=1234\n"));
        assert!(text.contains("Session\\InterfaceAddress=127.0.0.1\n"));
        assert!(text.contains("Session\\DHTEnabled=false\n"));
        assert!(text.contains("Session\\DefaultSavePath=\"/data/a,b\"\n"));
        assert!(text.contains("WebUI\\Password_PBKDF2=\"@ByteArray(c2FsdA==:a2V5)\"\n"));
        assert!(text.contains("[LegalNotice]\nAccepted=true"));
    }
}
