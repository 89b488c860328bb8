//! The real `downloader2` binary as a child process, for the hardening tests: its own config file (fixed tokens,
//! paused processing unless the test says otherwise, an unused qBittorrent URL so none is started), optionally
//! started through `prlimit` for a given open-file limit, its log written to a file (a piped, unread stderr would
//! block a chatty service), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{ADMIN_TOKEN, CATALOG_TOKEN, UNUSED_QBITTORRENT_URL};

pub const BINARY: &str = env!("CARGO_BIN_EXE_downloader2");

/// What to start.
pub struct ServiceOptions<'a> {
    /// The database file.
    pub database: PathBuf,
    /// Extra TOML lines for `[server]` (e.g. `header_read_timeout_secs = 3`).
    pub server_toml: &'a str,
    /// Whether `[processing] paused = true`.
    pub paused: bool,
    /// Whether to put the fixed test tokens into the config (else `tokens.toml` is used).
    pub with_tokens: bool,
    /// Start through `prlimit --nofile=N:N` (util-linux).
    pub open_file_limit: Option<u64>,
    /// More TOML appended at the end of the file, verbatim (whole sections, e.g. `[notify]`).
    pub extra_toml: &'a str,
    /// Global arguments before `serve` (e.g. `--log-format json`).
    pub global_args: &'a [&'a str],
    /// Environment variables for the child (`RUST_LOG` defaults to `info`).
    pub envs: &'a [(&'a str, &'a str)],
}

impl ServiceOptions<'_> {
    pub fn in_dir(dir: &Path) -> ServiceOptions<'static> {
        ServiceOptions {
            database: dir.join("data/downloader2.db"),
            server_toml: "",
            paused: true,
            with_tokens: true,
            open_file_limit: None,
            extra_toml: "",
            global_args: &[],
            envs: &[],
        }
    }
}

/// A running service.
pub struct ServiceProcess {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub log: PathBuf,
    pub media: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes the config file for `options` into `dir` and returns (its path, the port, the media root).
pub fn write_config(dir: &Path, options: &ServiceOptions<'_>) -> (PathBuf, u16, PathBuf) {
    let port = free_port();
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let tokens = if options.with_tokens {
        format!("auth_token = \"{CATALOG_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {port}\n{tokens}{}\n\n[database]\npath = \"{}\"\n\n[placer]\n\
         allowed_roots = [\"{}\"]\n\n[qbittorrent]\nurl = \"{UNUSED_QBITTORRENT_URL}\"\n\n[processing]\npaused = {}\n\n{}\n",
        options.server_toml,
        options.database.display(),
        media.display(),
        options.paused,
        options.extra_toml,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    (path, port, media)
}

impl ServiceProcess {
    /// Starts the service and waits until `/api/v1/health` answers (any status: a degraded database is still a
    /// running service).
    pub async fn start(dir: &Path, options: &ServiceOptions<'_>) -> ServiceProcess {
        let (config, port, media) = write_config(dir, options);
        let log = dir.join(format!("service-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = match options.open_file_limit {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        command
            .args(options.global_args)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(options.envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("cannot start downloader2 (prlimit comes with util-linux: apt-get install util-linux): {err}")
        });
        let mut service = ServiceProcess { child, base: format!("http://127.0.0.1:{port}"), port, log, media };
        service.wait_answering().await;
        service
    }

    async fn wait_answering(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client.get(self.url("/api/v1/health")).send().await.is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("downloader2 exited early ({status}): {}", self.log_text());
            }
            assert!(Instant::now() < deadline, "downloader2 did not answer: {}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with `token`, expecting success, as JSON.
    pub async fn get_json(&self, client: &reqwest::Client, path: &str, token: &str) -> serde_json::Value {
        let response = client.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
