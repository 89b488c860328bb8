//! `TestApp`: the real service (`downloader2::run`'s code path) on 127.0.0.1:0 with a fresh SQLite file in a temp
//! dir, plus a reqwest client and helpers to build tickets. Stopped deterministically through its shutdown channel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use downloader2::config::Config;
use downloader2::models::{ApprovalReason, ScoredCandidate, TicketState, TorrentCandidate, TrackMapping};
use downloader2::queue::TransitionExtras;
use downloader2::App;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CATALOG_TOKEN: &str = "catalog-token-for-tests-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub struct TestApp {
    pub url: String,
    pub app: Arc<App>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// A config for tests: database and media root inside `dir`, fixed tokens.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.database.path = dir.join("data/downloader2.db");
    config.server.auth_token = CATALOG_TOKEN.into();
    config.server.admin_token = ADMIN_TOKEN.into();
    config.placer.allowed_roots = vec![dir.join("media")];
    // An external qBittorrent URL (never contacted by these API tests) keeps `prepare` from starting a managed
    // qbittorrent-nox for every test.
    config.qbittorrent.url = UNUSED_QBITTORRENT_URL.into();
    // The API tests drive states by hand: no pipeline moves their tickets (the pipeline tests unpause).
    config.processing.paused = true;
    // The test swarm's tracker (opentracker on 127.0.0.1), which the default policy removes from torrents.
    config.jackett.allowed_tracker_hosts = vec!["127.0.0.1".into()];
    config
}

/// Discard port on loopback: nothing listens there.
pub const UNUSED_QBITTORRENT_URL: &str = "http://127.0.0.1:9";

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("media")).unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = downloader2::prepare(config).await.unwrap();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let served = app.clone();
        let handle = tokio::spawn(async move {
            downloader2::server::serve(served, listener, async move {
                let _ = shutdown_rx.await;
            })
            .await
            .unwrap();
        });
        TestApp { url, app, client: reqwest::Client::new(), dir, shutdown: Some(shutdown_tx), handle: Some(handle) }
    }

    pub fn media_root(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.url, path)
    }

    /// POST a JSON body with a token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.api(path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.api(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.delete(self.api(path)).bearer_auth(token).send().await.unwrap()
    }

    /// Posts a ticket with the catalog token and checks it was created.
    pub async fn create(&self, ticket: &Value) {
        let response = self.post("/ticket", CATALOG_TOKEN, ticket).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }
}

/// A valid 12-track ticket whose destinations are under `media_root`.
pub fn sample_ticket(id: &str, media_root: &Path) -> Value {
    let tracks: Vec<Value> = (1..=12)
        .map(|n| {
            json!({
                "catalog_track_id": format!("t{n}"),
                "disc_number": 1,
                "track_number": n,
                "name": format!("Song number {n}"),
                "duration_secs": 180 + n,
                "dest_path": media_root.join(format!("albums/{id}/d1t{n:02}.ogg")),
            })
        })
        .collect();
    json!({
        "ticket_id": id,
        "created_at": "2026-11-24T10:00:00Z",
        "search": {"artist": "Portishead", "album": "Dummy", "year": 1994, "label": "Go! Beat", "genres": ["trip hop"]},
        "tracks": tracks,
        "images": [{"catalog_image_id": "img1", "type": "cover_front",
                    "dest_path": media_root.join(format!("albums/{id}/cover.jpg"))}],
        "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 320, "sample_rate_hz": 44100,
                        "embed_metadata": true, "embed_cover": true},
        "metadata_to_embed": {"artist": "Portishead", "album": "Dummy", "year": 1994, "genre": "Trip Hop"}
    })
}

/// Moves a ticket through the store (the same guarded transitions the pipeline uses).
pub async fn move_to(t: &TestApp, id: &str, state: TicketState) {
    t.app.store.transition(id, None, Utc::now(), TransitionExtras::default(), move |_| Ok(state)).await.unwrap();
}

/// A scored candidate with one mapped track (`t1`).
pub fn candidate(title: &str) -> ScoredCandidate {
    ScoredCandidate {
        candidate: TorrentCandidate::with_title(title),
        score: 0.5,
        reasoning: "test".into(),
        track_mapping: vec![TrackMapping {
            catalog_track_id: "t1".into(),
            torrent_file_path: format!("{title}/01.flac"),
            confidence: 0.9,
        }],
        hard_rejects: vec![],
        doubts: Vec::new(),
    }
}

/// Moves a pending ticket to `needs_approval` with candidates titled `titles`.
pub async fn to_needs_approval(t: &TestApp, id: &str, titles: &[&str], recommended: Option<usize>) {
    move_to(t, id, TicketState::Searching { query: None, started_at: Utc::now() }).await;
    move_to(t, id, TicketState::Matching { candidates_found: titles.len(), started_at: Utc::now() }).await;
    let state = TicketState::NeedsApproval {
        candidates: titles.iter().map(|title| candidate(title)).collect(),
        recommended_idx: recommended,
        confidence: 0.5,
        reason: ApprovalReason::LowConfidence { score: 0.5, threshold: 0.85 },
        waiting_since: Utc::now(),
    };
    move_to(t, id, state).await;
}
