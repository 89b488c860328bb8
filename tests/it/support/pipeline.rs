//! The whole stack for pipeline tests: the real `downloader2` binary (started, SIGKILLed and restarted like an
//! operator's process), a Torznab test server, a loopback swarm seeding generated FLAC albums (real audio from
//! ffmpeg, a cover, junk files) and decoys, and a WebSocket recorder that keeps every message the service sent.
//! Tests talk to the service only over HTTP and the WebSocket.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use lofty::prelude::*;

use super::app::{ADMIN_TOKEN, CATALOG_TOKEN};
use super::audio;
use super::swarm::{free_port, require_program, wait_for, Album, QbittorrentUnderTest, Swarm};
use super::torznab_server::{Download, Release, TorznabServer};

const BINARY: &str = env!("CARGO_BIN_EXE_downloader2");

/// One generated album: its tracks (name, seconds) and its files (torrent-relative name, file on disk).
#[derive(Debug, Clone)]
pub struct GeneratedAlbum {
    pub folder: String,
    pub tracks: Vec<(String, f64)>,
    pub files: Vec<(String, PathBuf)>,
}

/// Writes a FLAC album (16-bit stereo pink noise at `rate` Hz, `NN - Name.flac`), a `cover.jpg`, and junk
/// (`info.nfo`, `Scans/notes.txt`) into `dir`.
pub fn generate_flac_album(dir: &Path, folder: &str, tracks: &[(&str, f64)], rate: u32) -> GeneratedAlbum {
    require_program("ffmpeg", "ffmpeg");
    let source = dir.join(folder);
    std::fs::create_dir_all(source.join("Scans")).unwrap();
    let mut files = Vec::new();
    for (n, (name, secs)) in tracks.iter().enumerate() {
        let file = format!("{:02} - {name}.flac", n + 1);
        let path = source.join(&file);
        audio::write_flac(&path, *secs, rate, 2);
        files.push((file, path));
    }
    let cover = source.join("cover.jpg");
    audio::write_image(&cover, 600, 600);
    files.push(("cover.jpg".to_string(), cover));
    let nfo = source.join("info.nfo");
    std::fs::write(&nfo, "Ripped with care. Visit our site!\n").unwrap();
    files.push(("info.nfo".to_string(), nfo));
    let notes = source.join("Scans/notes.txt");
    std::fs::write(&notes, "booklet scans to follow\n").unwrap();
    files.push(("Scans/notes.txt".to_string(), notes));
    GeneratedAlbum {
        folder: folder.to_string(),
        tracks: tracks.iter().map(|(name, secs)| (name.to_string(), *secs)).collect(),
        files,
    }
}

/// A ticket for `tracks` with Ogg Vorbis output at `sample_rate_hz`, destinations under `media_root/<id>/`.
pub fn ticket_for(
    id: &str,
    media_root: &Path,
    artist: &str,
    album: &str,
    year: i32,
    tracks: &[(String, f64)],
    sample_rate_hz: u32,
) -> Value {
    let tracks: Vec<Value> = tracks
        .iter()
        .enumerate()
        .map(|(n, (name, secs))| {
            json!({
                "catalog_track_id": format!("{id}-t{}", n + 1),
                "disc_number": 1,
                "track_number": n + 1,
                "name": name,
                "duration_secs": secs,
                "dest_path": media_root.join(format!("{id}/{:02} {name}.ogg", n + 1)),
            })
        })
        .collect();
    json!({
        "ticket_id": id,
        "created_at": "2026-11-25T10:00:00Z",
        "search": {"artist": artist, "album": album, "year": year},
        "tracks": tracks,
        "images": [{"catalog_image_id": format!("{id}-cover"), "type": "cover_front",
                    "dest_path": media_root.join(format!("{id}/cover.jpg"))}],
        "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 192, "sample_rate_hz": sample_rate_hz,
                        "embed_metadata": true, "embed_cover": true},
        "metadata_to_embed": {"artist": artist, "album": album, "year": year, "genre": "Test"}
    })
}

/// Which qBittorrent the service uses.
#[derive(Debug, Clone)]
pub enum TorrentClientSetup {
    /// The service starts and supervises its own qbittorrent-nox (loopback only).
    Managed,
    /// A test-started instance.
    External { url: String, username: String, password: String, download_path: PathBuf },
}

/// The service's configuration for a pipeline test.
#[derive(Debug, Clone)]
pub struct ServiceSetup {
    pub dir: PathBuf,
    pub port: u16,
    pub torznab_url: String,
    pub torznab_api_key: String,
    pub torrent_client: TorrentClientSetup,
    pub auto_approve_threshold: f64,
    pub max_parallel_downloads: usize,
    pub max_parallel_conversions: usize,
    pub stall_timeout_secs: u64,
    pub retry_max_attempts: u32,
    /// `[processing] rest_retry_after_secs`.
    pub rest_retry_after_secs: u64,
    /// `[matcher] llm_provider`, `base_url`, `api_key` (None: `none`).
    pub llm: Option<(String, String, String)>,
    /// `--log-format json` (one JSON object per line, with the spans) instead of text.
    pub json_logs: bool,
    /// `[jackett] allowed_link_hosts`.
    pub allowed_link_hosts: Vec<String>,
    /// `[jackett] allowed_tracker_hosts`: by default the test swarm's tracker host (opentracker on 127.0.0.1),
    /// which the service's default policy would remove from every torrent.
    pub allowed_tracker_hosts: Vec<String>,
    /// `[jackett] timeout_secs` (a link fetch included).
    pub jackett_timeout_secs: u64,
    /// More `[qbittorrent]` lines, verbatim (e.g. `path_mappings = [...]`).
    pub qbittorrent_extra_toml: String,
    /// `[notify]` lines, verbatim (empty: no webhook).
    pub notify_toml: String,
}

impl ServiceSetup {
    /// Defaults for tests: managed qbittorrent-nox, fast retries and checks.
    pub fn new(dir: &Path, torznab_url: &str, torznab_api_key: &str) -> ServiceSetup {
        ServiceSetup {
            dir: dir.to_path_buf(),
            port: free_port(),
            torznab_url: torznab_url.to_string(),
            torznab_api_key: torznab_api_key.to_string(),
            torrent_client: TorrentClientSetup::Managed,
            auto_approve_threshold: 0.85,
            max_parallel_downloads: 3,
            max_parallel_conversions: 2,
            stall_timeout_secs: 20,
            retry_max_attempts: 5,
            rest_retry_after_secs: 86_400,
            llm: None,
            json_logs: false,
            allowed_link_hosts: Vec::new(),
            allowed_tracker_hosts: vec!["127.0.0.1".to_string()],
            jackett_timeout_secs: 10,
            qbittorrent_extra_toml: String::new(),
            notify_toml: String::new(),
        }
    }

    pub fn media_root(&self) -> PathBuf {
        self.dir.join("media")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes `config.toml` and returns its path.
    pub fn write_config(&self) -> PathBuf {
        std::fs::create_dir_all(self.media_root()).unwrap();
        let qbittorrent = match &self.torrent_client {
            TorrentClientSetup::Managed => "url = \"\"\nmanaged_loopback_only = true\n".to_string(),
            TorrentClientSetup::External { url, username, password, download_path } => format!(
                "url = \"{url}\"\nusername = \"{username}\"\npassword = \"{password}\"\ndownload_path = \"{}\"\n",
                download_path.display()
            ),
        };
        let text = format!(
            r#"[server]
host = "127.0.0.1"
port = {port}
auth_token = "{CATALOG_TOKEN}"
admin_token = "{ADMIN_TOKEN}"

[database]
path = "{db}"

[jackett]
url = "{torznab}"
api_key = "{key}"
timeout_secs = {jackett_timeout}
searches_per_minute = 6000
cache_ttl_secs = 600
allowed_link_hosts = {link_hosts}
allowed_tracker_hosts = {tracker_hosts}

[qbittorrent]
{qbittorrent}stall_timeout_secs = {stall}
timeout_secs = 10
{qbittorrent_extra}

[matcher]
auto_approve_threshold = {threshold}
{llm}
[converter]
max_parallel_conversions = {conversions}

[processing]
max_parallel_downloads = {downloads}
check_interval_secs = 1
retry_max_attempts = {attempts}
retry_initial_delay_secs = 1
retry_max_delay_secs = 2
rest_retry_after_secs = {rest}

[placer]
allowed_roots = ["{media}"]

[notify]
{notify}
"#,
            port = self.port,
            db = self.data_dir().join("downloader2.db").display(),
            torznab = self.torznab_url,
            key = self.torznab_api_key,
            jackett_timeout = self.jackett_timeout_secs,
            link_hosts = toml_strings(&self.allowed_link_hosts),
            tracker_hosts = toml_strings(&self.allowed_tracker_hosts),
            stall = self.stall_timeout_secs,
            qbittorrent_extra = self.qbittorrent_extra_toml,
            threshold = self.auto_approve_threshold,
            llm = match &self.llm {
                Some((provider, base_url, api_key)) => format!(
                    "llm_provider = \"{provider}\"\nbase_url = \"{base_url}\"\napi_key = \"{api_key}\"\nllm_timeout_secs = 5\n"
                ),
                None => String::new(),
            },
            conversions = self.max_parallel_conversions,
            downloads = self.max_parallel_downloads,
            attempts = self.retry_max_attempts,
            rest = self.rest_retry_after_secs,
            media = self.media_root().display(),
            notify = self.notify_toml,
        );
        let path = self.dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A TOML array of strings.
fn toml_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The service binary running with a setup's config; its log goes to `<dir>/service-<n>.log`.
pub struct ServiceProcess {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    pub log_path: PathBuf,
}

impl ServiceProcess {
    /// Starts the binary and waits until `/api/v1/health` answers.
    pub async fn start(setup: &ServiceSetup) -> ServiceProcess {
        let config = setup.write_config();
        let run = (1..).find(|n| !setup.dir.join(format!("service-{n}.log")).exists()).unwrap();
        let log_path = setup.dir.join(format!("service-{run}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(BINARY)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--log-format", if setup.json_logs { "json" } else { "text" }])
            .env("RUST_LOG", "info,downloader2=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{}", setup.port);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut service = ServiceProcess { child, base, http, log_path };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("downloader2 exited at start ({status}):\n{}", service.log_tail());
            }
            let health = service.http.get(format!("{}/api/v1/health", service.base)).send().await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return service;
            }
            assert!(Instant::now() < deadline, "downloader2 not healthy within 60 s:\n{}", service.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the service's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// SIGKILL: no clean-up of any kind runs.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "downloader2 did not stop within 60 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.unwrap()
    }

    /// Posts a ticket as the catalog and expects 201.
    pub async fn create(&self, ticket: &Value) {
        let response = self.post("/api/v1/ticket", CATALOG_TOKEN, ticket).await;
        let status = response.status();
        assert_eq!(status, 201, "create: {}", response.text().await.unwrap());
    }

    /// The ticket as `GET /api/v1/ticket/{id}` shows it.
    /// `GET /metrics` (admin token), parsed as Prometheus text.
    pub async fn metrics(&self) -> prometheus_parse::Scrape {
        let response = self.http.get(self.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        super::prometheus::parse(&response.text().await.unwrap())
    }

    pub async fn ticket(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/ticket/{id}")).await
    }

    /// Polls the ticket until its state is `state` (panics with the log tail after `timeout`, or when it reaches
    /// another terminal state or `failed`).
    pub async fn wait_for_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let ticket = self.ticket(id).await;
            let current = ticket["state"]["state"].as_str().unwrap_or_default().to_string();
            if current == state {
                return ticket;
            }
            let stuck = matches!(current.as_str(), "completed" | "rejected" | "cancelled" | "failed");
            assert!(
                !stuck && Instant::now() < deadline,
                "ticket {id} is {current}, expected {state}: {}\n--- service log ---\n{}",
                ticket["state"],
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every WebSocket message the service sent to one connection, in order.
#[derive(Clone, Default)]
pub struct EventRecorder {
    messages: Arc<Mutex<Vec<Value>>>,
    connected: Arc<tokio::sync::Notify>,
}

impl EventRecorder {
    /// Connects to `/api/v1/ws` (token in the query, as a browser would) and records until the connection ends.
    pub async fn connect(service: &ServiceProcess, ticket_filter: Option<&str>) -> EventRecorder {
        let mut url = format!("{}/api/v1/ws?token={ADMIN_TOKEN}", service.base.replace("http://", "ws://"));
        if let Some(id) = ticket_filter {
            url.push_str(&format!("&ticket_id={id}"));
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let recorder = EventRecorder::default();
        let messages = recorder.messages.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        messages.lock().unwrap().push(value);
                    }
                }
            }
        });
        recorder
    }

    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// The `new_state` of every state change of `ticket`, in order.
    pub fn states_of(&self, ticket: &str) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m["type"] == "state_change" && m["ticket_id"] == ticket)
            .map(|m| m["new_state"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until a state change of `ticket` to `state` was received; returns its message.
    pub async fn wait_for(&self, ticket: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .messages()
                .into_iter()
                .find(|m| m["type"] == "state_change" && m["ticket_id"] == ticket && m["new_state"] == state);
            if let Some(message) = found {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no state_change of {ticket} to {state} within {timeout:?}; saw {:?}",
                self.states_of(ticket)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Regular files under `dir` (recursively), as paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The names of a generated album and its two decoys (a live album of the same artist, a tribute).
#[derive(Debug, Clone, Copy)]
pub struct AlbumNames {
    pub artist: &'static str,
    pub album: &'static str,
    pub year: i32,
    pub right_title: &'static str,
    pub live_title: &'static str,
    pub tribute_title: &'static str,
}

/// The right album (real 48 kHz FLAC, a cover, junk files) and two decoys with look-alike file lists, seeded on a
/// loopback swarm, and a Torznab server answering every search with the three releases.
pub struct AlbumStack {
    pub names: AlbumNames,
    pub dir: tempfile::TempDir,
    pub album: GeneratedAlbum,
    pub swarm: Swarm,
    pub torznab: TorznabServer,
}

impl AlbumStack {
    pub async fn new(names: AlbumNames, tracks: &[(&str, f64)]) -> AlbumStack {
        let dir = tempfile::tempdir().unwrap();
        let album = generate_flac_album(&dir.path().join("sources"), names.right_title, tracks, 48_000);
        let live: Vec<(String, u64)> = tracks
            .iter()
            .enumerate()
            .map(|(n, (name, _))| (format!("{:02} - {name} (Live).flac", n + 1), 900_000))
            .collect();
        let tribute: Vec<(String, u64)> = tracks
            .iter()
            .enumerate()
            .map(|(n, (name, _))| (format!("{:02} - Various - {name} (Cover).mp3", n + 1), 700_000))
            .collect();
        let live_refs: Vec<(&str, u64)> = live.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let tribute_refs: Vec<(&str, u64)> = tribute.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let swarm = Swarm::builder()
            .album_from_files(names.right_title, &album.files)
            .album(names.live_title, &live_refs)
            .album(names.tribute_title, &tribute_refs)
            .build()
            .await;
        let torznab = TorznabServer::start().await;
        let stack = AlbumStack { names, dir, album, swarm, torznab };
        stack.torznab.set_results(stack.releases());
        stack
    }

    /// The right album as seeded.
    pub fn right(&self) -> &Album {
        &self.swarm.albums[0]
    }

    /// The right release as a .torrent link, the live decoy as a magnet, the tribute as a .torrent link.
    pub fn releases(&self) -> Vec<Release> {
        let albums = &self.swarm.albums;
        let size = |album: &Album| album.files.iter().map(|file| file.size).sum::<u64>();
        let by_link = |album: &Album| {
            Release::new(&album.name, "orpheus")
                .download(Download::TorrentFile(album.torrent.to_vec()))
                .size(size(album))
                .seeders(5, 6)
        };
        let mut live = Release::new(&albums[1].name, "1337x").size(size(&albums[1])).seeders(9, 9);
        // The swarm's own magnet: its tracker is on loopback.
        live.magnet = Some(albums[1].magnet.clone());
        live.infohash = Some(albums[1].info_hash.to_string());
        vec![live, by_link(&albums[0]), by_link(&albums[2])]
    }

    /// A service setup in this stack's temp dir, searching its Torznab server.
    pub fn setup(&self) -> ServiceSetup {
        ServiceSetup::new(&self.dir.path().join("service"), &self.torznab.url(), &self.torznab.api_key())
    }

    /// A ticket for the right album.
    pub fn ticket(&self, id: &str, setup: &ServiceSetup, sample_rate_hz: u32) -> Value {
        let names = &self.names;
        ticket_for(id, &setup.media_root(), names.artist, names.album, names.year, &self.album.tracks, sample_rate_hz)
    }

    /// Every promised file of `ticket` is at its destination: Ogg Vorbis at the requested rate with the ticket's
    /// tags and the cover embedded, and the cover image placed.
    pub fn assert_delivered(&self, ticket: &Value, sample_rate_hz: u32) {
        let cover_dest = ticket["images"][0]["dest_path"].as_str().unwrap();
        let cover = std::fs::read(cover_dest).unwrap_or_else(|err| panic!("cover {cover_dest} not placed: {err}"));
        assert_eq!(&cover[..2], &[0xFF, 0xD8], "the placed cover is a JPEG");
        for track in ticket["tracks"].as_array().unwrap() {
            let dest = Path::new(track["dest_path"].as_str().unwrap());
            assert!(dest.is_file(), "{} not placed", dest.display());
            let probe = audio::probe(dest);
            let stream = audio::audio_stream(&probe);
            assert_eq!(stream["codec_name"], "vorbis", "{}", dest.display());
            assert_eq!(stream["sample_rate"], sample_rate_hz.to_string(), "{}", dest.display());
            let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
            let expected = track["duration_secs"].as_f64().unwrap();
            assert!(
                (duration - expected).abs() < 1.0,
                "{} lasts {duration} s, the catalog says {expected}",
                dest.display()
            );
            let tagged = lofty::read_from_path(dest).unwrap();
            let tag = tagged.primary_tag().expect("a Vorbis comment block");
            assert_eq!(tag.title().as_deref(), track["name"].as_str());
            assert_eq!(tag.artist().as_deref(), Some(self.names.artist));
            assert_eq!(tag.album().as_deref(), Some(self.names.album));
            assert_eq!(tag.track(), Some(u32::try_from(track["track_number"].as_u64().unwrap()).unwrap()));
            assert_eq!(tag.pictures().len(), 1, "{}: the cover is embedded", dest.display());
        }
    }
}

/// The service's settings for a test-started qbittorrent-nox.
pub fn external_client(qbt: &QbittorrentUnderTest) -> TorrentClientSetup {
    TorrentClientSetup::External {
        url: qbt.managed.url().to_string(),
        username: qbt.managed.username().to_string(),
        password: qbt.managed.password().to_string(),
        download_path: qbt.download_root(),
    }
}

/// Nothing left behind once tickets are done: no torrent data, no work dirs, no temporary names at destinations.
pub async fn assert_nothing_left(downloads: &Path, work: &Path, media: &Path) {
    wait_for("the torrent data to be removed", Duration::from_secs(60), || async {
        files_under(downloads).is_empty().then_some(())
    })
    .await;
    assert_eq!(files_under(work), Vec::<String>::new(), "no work files left");
    let stray: Vec<String> =
        files_under(media).into_iter().filter(|path| path.contains(downloader2::placer::TEMP_PREFIX)).collect();
    assert!(stray.is_empty(), "temporary files at destinations: {stray:?}");
}
