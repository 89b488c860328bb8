//! A real BitTorrent swarm on 127.0.0.1 for tests and benchmarks: an `opentracker` tracker, a seeder (a second
//! qbittorrent-nox 4.5.2 run through the project's own `ManagedQbittorrent`), `.torrent` files made with
//! `mktorrent`, and a qbittorrent-nox under test (4.5.2, or 5.1.0 from the Debian 13 root: `qbittorrent_root.rs`).
//! Everything binds free loopback ports, lives in its own temp dir, and stops on drop. A missing program fails the
//! test with the `apt-get install` line; nothing here ever talks beyond loopback.
//!
//! ```ignore
//! let swarm = Swarm::builder().album("Artist - Album", &[("01 - One.flac", 3 << 20), ("cover.jpg", 200_000)]).build().await;
//! let qbt = QbittorrentUnderTest::start_version(QbtVersion::V5_1, |config| config.stall_timeout_secs = 5).await;
//! let hash = qbt.client.add_torrent(AddSource::Magnet(swarm.albums[0].magnet.clone()), "t1").await?;
//! ```

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use downloader2::config::QbittorrentConfig;
use downloader2::models::InfoHash;
use downloader2::torrent_client::managed::{ManagedOptions, ManagedQbittorrent};
use downloader2::torrent_client::metainfo::torrent_info_hash;
use downloader2::torrent_client::qbittorrent::{AddOptions, QbittorrentClient, StartMode};
use downloader2::torrent_client::AddSource;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::qbittorrent_root::QbtVersion;

/// Finds a program on PATH or fails the test saying which Debian package to install.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("{program} not found on PATH: apt-get install -y {package}"))
}

/// Polls `probe` every 100 ms until it yields a value; panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Every regular file under `root` with a non-zero size, as (relative path, size), sorted.
pub fn non_empty_files(root: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.len() > 0 {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                found.push((rel, meta.len()));
            }
        }
    }
    found.sort();
    found
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// An `opentracker` on 127.0.0.1 serving a whitelist of info hashes (Debian's build only serves whitelisted ones).
pub struct Tracker {
    child: tokio::process::Child,
    pub port: u16,
    _dir: TempDir,
}

impl Tracker {
    /// Starts the tracker on `port` for `hashes` and waits until it accepts connections.
    pub async fn start(port: u16, hashes: &[InfoHash]) -> Tracker {
        let program = require_program("opentracker", "opentracker");
        let dir = tempfile::tempdir().unwrap();
        // opentracker drops privileges: the whitelist and its folder must be world-readable.
        set_mode(dir.path(), 0o755);
        let whitelist = dir.path().join("whitelist");
        let lines: String = hashes.iter().map(|hash| format!("{hash}\n")).collect();
        std::fs::write(&whitelist, lines).unwrap();
        set_mode(&whitelist, 0o644);
        let port_text = port.to_string();
        let child = tokio::process::Command::new(program)
            .args(["-i", "127.0.0.1", "-p", &port_text, "-P", &port_text, "-w"])
            .arg(&whitelist)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn opentracker");
        wait_for("opentracker to listen", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        Tracker { child, port, _dir: dir }
    }

    /// The announce URL torrents carry.
    pub fn announce_url(&self) -> String {
        announce_url(self.port)
    }
}

fn announce_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/announce")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One file of a seeded album.
#[derive(Debug, Clone)]
pub struct SeededFile {
    /// Path inside the torrent, root folder included (as qBittorrent lists it).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// An album made for the swarm: its files on disk, its `.torrent` and magnet.
#[derive(Debug, Clone)]
pub struct Album {
    pub name: String,
    /// The folder holding the album folder (the seeder's save path).
    pub parent_dir: PathBuf,
    pub torrent: Bytes,
    pub info_hash: InfoHash,
    pub magnet: String,
    pub files: Vec<SeededFile>,
}

/// The builder of a swarm: albums first, then `build()` makes the torrents, the tracker and the seeder.
#[derive(Default)]
pub struct SwarmBuilder {
    albums: Vec<(String, Vec<(String, FileContent)>)>,
    piece_length_log2: Option<u8>,
}

/// Where an album file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// Pseudo-random bytes of this size.
    Random(u64),
    /// A copy of this file (real audio and images for pipeline tests).
    CopyOf(PathBuf),
}

impl SwarmBuilder {
    /// An album folder `name` holding `files` (relative name, size in bytes) of pseudo-random content.
    pub fn album(mut self, name: &str, files: &[(&str, u64)]) -> Self {
        self.albums
            .push((name.to_string(), files.iter().map(|(n, s)| (n.to_string(), FileContent::Random(*s))).collect()));
        self
    }

    /// An album folder `name` holding copies of real files (relative name, source path).
    pub fn album_from_files(mut self, name: &str, files: &[(String, PathBuf)]) -> Self {
        self.albums.push((
            name.to_string(),
            files.iter().map(|(n, source)| (n.clone(), FileContent::CopyOf(source.clone()))).collect(),
        ));
        self
    }

    /// mktorrent's piece length as a power of two (default 18 = 256 KiB).
    pub fn piece_length_log2(mut self, log2: u8) -> Self {
        self.piece_length_log2 = Some(log2);
        self
    }

    pub async fn build(self) -> Swarm {
        let mktorrent = require_program("mktorrent", "mktorrent");
        let dir = tempfile::tempdir().unwrap();
        let tracker_port = free_port();
        let content = dir.path().join("content");
        let mut albums = Vec::new();
        for (index, (name, files)) in self.albums.iter().enumerate() {
            let album_dir = content.join(name);
            std::fs::create_dir_all(&album_dir).unwrap();
            let mut seeded = Vec::new();
            for (file_index, (file, content)) in files.iter().enumerate() {
                let path = album_dir.join(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                match content {
                    FileContent::Random(size) => {
                        let seed = u64::try_from(index * 1000 + file_index).unwrap();
                        write_random_file(&path, *size, seed);
                    }
                    FileContent::CopyOf(source) => {
                        std::fs::copy(source, &path).unwrap();
                    }
                }
                let size = std::fs::metadata(&path).unwrap().len();
                seeded.push(SeededFile { path: format!("{name}/{file}"), size, sha256: sha256_file(&path) });
            }
            let torrent_path = dir.path().join(format!("{index}.torrent"));
            let output = tokio::process::Command::new(&mktorrent)
                .arg("-a")
                .arg(announce_url(tracker_port))
                .arg("-l")
                .arg(self.piece_length_log2.unwrap_or(18).to_string())
                .arg("-o")
                .arg(&torrent_path)
                .arg(&album_dir)
                .output()
                .await
                .unwrap();
            assert!(output.status.success(), "mktorrent failed: {}", String::from_utf8_lossy(&output.stderr));
            let torrent = Bytes::from(std::fs::read(&torrent_path).unwrap());
            let info_hash = torrent_info_hash(&torrent).unwrap();
            let magnet = format!(
                "magnet:?xt=urn:btih:{info_hash}&dn={}&tr={}",
                url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>(),
                url::form_urlencoded::byte_serialize(announce_url(tracker_port).as_bytes()).collect::<String>()
            );
            albums.push(Album {
                name: name.clone(),
                parent_dir: content.clone(),
                torrent,
                info_hash,
                magnet,
                files: seeded,
            });
        }
        let hashes: Vec<InfoHash> = albums.iter().map(|album| album.info_hash.clone()).collect();
        let tracker = Tracker::start(tracker_port, &hashes).await;
        let seeder = Seeder::start(dir.path().join("seeder")).await;
        for album in &albums {
            seeder.seed(album).await;
        }
        Swarm { albums, tracker, seeder: Some(seeder), _dir: dir }
    }
}

/// Deterministic pseudo-random content (incompressible, so transfers are real).
fn write_random_file(path: &Path, size: u64, seed: u64) {
    use std::io::Write;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    let mut buffer = vec![0u8; 64 * 1024];
    while left > 0 {
        let chunk = usize::try_from(left.min(64 * 1024)).unwrap();
        rng.fill_bytes(&mut buffer[..chunk]);
        file.write_all(&buffer[..chunk]).unwrap();
        left -= u64::try_from(chunk).unwrap();
    }
    file.flush().unwrap();
}

/// A qbittorrent-nox seeding the swarm's albums.
pub struct Seeder {
    pub managed: ManagedQbittorrent,
    pub client: QbittorrentClient,
}

impl Seeder {
    async fn start(data_dir: PathBuf) -> Seeder {
        let program = QbtVersion::V4_5.program(&data_dir, &[], &[]);
        let (managed, client, _) = start_managed(&program, data_dir, QbittorrentConfig::default()).await;
        Seeder { managed, client }
    }

    /// Seeds `album` from its files (no re-check) and waits until qBittorrent says it is seeding.
    pub async fn seed(&self, album: &Album) {
        let options = AddOptions {
            save_path: album.parent_dir.clone(),
            tags: vec!["seed".into()],
            start: StartMode::Running,
            skip_checking: true,
        };
        let hash = self.client.add_with_options(AddSource::TorrentFile(album.torrent.clone()), &options).await.unwrap();
        assert_eq!(hash, album.info_hash);
        wait_for("the seeder to seed", Duration::from_secs(30), || async {
            let info = self.torrent_info(&hash).await;
            let state = info["state"].as_str().unwrap_or_default().to_string();
            matches!(state.as_str(), "uploading" | "stalledUP" | "forcedUP").then_some(())
        })
        .await;
        // Until its first announce went through, the tracker answers downloaders without it, and they only ask
        // again much later: wait for it, so every test's first contact is prompt.
        wait_for("the seeder's announce to reach the tracker", Duration::from_secs(30), || async {
            let trackers = raw_get_json(&self.managed, &format!("torrents/trackers?hash={hash}")).await;
            let working = trackers.as_array().is_some_and(|list| {
                list.iter().any(|t| t["url"].as_str().is_some_and(|u| u.starts_with("http")) && t["status"] == 2)
            });
            working.then_some(())
        })
        .await;
    }

    /// The seeder's own `torrents/info` entry for a hash (its view, independent of the client under test).
    pub async fn torrent_info(&self, hash: &InfoHash) -> serde_json::Value {
        raw_get_json(&self.managed, &format!("torrents/info?hashes={hash}")).await[0].clone()
    }

    /// 127.0.0.1:<peer port>, for `addPeers` (the fallback when the tracker path is not wanted).
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.managed.peer_port()))
    }
}

/// GET on a managed instance with a fresh login (a second session, independent of the client under test).
pub async fn raw_get_json(managed: &ManagedQbittorrent, path_and_query: &str) -> serde_json::Value {
    let http = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let login = http
        .post(format!("{}api/v2/auth/login", managed.url()))
        .form(&[("username", managed.username()), ("password", managed.password())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.text().await.unwrap(), "Ok.");
    let response = http.get(format!("{}api/v2/{path_and_query}", managed.url())).send().await.unwrap();
    response.json().await.unwrap()
}

/// POST of a form on a managed instance with a fresh login (the way a user acts through the WebUI, independent of
/// the client under test); panics unless qBittorrent answers 2xx. Returns the body.
pub async fn raw_post_form(managed: &ManagedQbittorrent, path: &str, form: &[(&str, &str)]) -> String {
    let http = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let login = http
        .post(format!("{}api/v2/auth/login", managed.url()))
        .form(&[("username", managed.username()), ("password", managed.password())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.text().await.unwrap(), "Ok.");
    let response = http.post(format!("{}api/v2/{path}", managed.url())).form(form).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "POST {path}: HTTP {status} {body}");
    body
}

/// A running swarm: tracker + seeder for `albums`.
pub struct Swarm {
    pub albums: Vec<Album>,
    pub tracker: Tracker,
    seeder: Option<Seeder>,
    _dir: TempDir,
}

impl Swarm {
    pub fn builder() -> SwarmBuilder {
        SwarmBuilder::default()
    }

    pub fn seeder(&self) -> &Seeder {
        self.seeder.as_ref().expect("seeder already stopped")
    }

    /// Stops the seeder (cleanly) and waits until it is gone: the swarm has no source any more.
    pub async fn stop_seeder(&mut self) {
        if let Some(seeder) = self.seeder.take() {
            seeder.managed.shutdown().await;
        }
    }
}

/// Starts a managed, loopback-only qbittorrent-nox (the project's own code) and a client for it.
async fn start_managed(
    program: &str,
    data_dir: PathBuf,
    config: QbittorrentConfig,
) -> (ManagedQbittorrent, QbittorrentClient, QbittorrentConfig) {
    let options = ManagedOptions {
        program: program.to_string(),
        download_root: data_dir.join("downloads"),
        data_dir,
        loopback_only: true,
        max_auth_failures: 5,
        timeout_secs: config.timeout_secs,
    };
    let managed = ManagedQbittorrent::start_with(&options, CancellationToken::new()).await.unwrap();
    let client = managed.client(&config).unwrap();
    // A freshly added seeding torrent must not wait in a queue; no GeoIP lookups (never leave loopback).
    client
        .set_preferences(&serde_json::json!({"queueing_enabled": false, "resolve_peer_countries": false}))
        .await
        .unwrap();
    (managed, client, config)
}

/// The qbittorrent-nox under test, started through `ManagedQbittorrent` on a fresh temp dir, with a real password
/// (LocalHostAuth on: every request of the client logs in).
pub struct QbittorrentUnderTest {
    pub managed: ManagedQbittorrent,
    pub client: Arc<QbittorrentClient>,
    pub config: QbittorrentConfig,
    pub dir: TempDir,
    pub version: QbtVersion,
}

impl QbittorrentUnderTest {
    /// Starts a 4.5.2; `configure` adjusts the `[qbittorrent]` section first (stall timeout, share limits...).
    pub async fn start(configure: impl FnOnce(&mut QbittorrentConfig)) -> QbittorrentUnderTest {
        Self::start_version(QbtVersion::V4_5, configure).await
    }

    /// Starts `version`, seeing its profile and downloads at the same paths as the host.
    pub async fn start_version(
        version: QbtVersion,
        configure: impl FnOnce(&mut QbittorrentConfig),
    ) -> QbittorrentUnderTest {
        Self::start_seeing(version, &[], configure).await
    }

    /// Starts `version` with host folders also visible under other paths (`(host, inside)`, 5.1 only: an
    /// external client in another container that sees the downloads as, say, `/downloads`).
    pub async fn start_seeing(
        version: QbtVersion,
        mounted_at: &[(&Path, &str)],
        configure: impl FnOnce(&mut QbittorrentConfig),
    ) -> QbittorrentUnderTest {
        assert!(mounted_at.is_empty() || version == QbtVersion::V5_1, "only 5.1 runs in its own root");
        let dir = tempfile::tempdir().unwrap();
        let mut config = QbittorrentConfig { managed_loopback_only: true, timeout_secs: 10, ..Default::default() };
        configure(&mut config);
        let program = version.program(dir.path(), &[dir.path()], mounted_at);
        let (managed, client, config) = start_managed(&program, dir.path().to_path_buf(), config).await;
        let webapi = client.webapi_version().await.unwrap();
        let (major, minor, patch) = version.webapi();
        assert_eq!((webapi.0, webapi.1, webapi.2), (major, minor, patch), "{version:?} is not the qBittorrent started");
        QbittorrentUnderTest { managed, client: Arc::new(client), config, dir, version }
    }

    /// Where ticket downloads land.
    pub fn download_root(&self) -> PathBuf {
        self.managed.download_root().to_path_buf()
    }

    /// Limits the download rate (bytes/s; 0 = unlimited), so a test can watch a download in progress.
    pub async fn limit_download_rate(&self, bytes_per_sec: u64) {
        self.client.set_preferences(&serde_json::json!({ "dl_limit": bytes_per_sec })).await.unwrap();
    }
}
