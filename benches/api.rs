//! Foundation benchmark (prints figures; never a pass/fail): against the real `downloader2` binary on loopback,
//! 1. POST /ticket throughput with 32 concurrent clients (12-track tickets), next to raw sqlx inserts of the same
//!    rows with the same connection settings (WAL, synchronous=FULL, BEGIN IMMEDIATE) in the same run;
//! 2. GET /tickets?state=...&limit=50 latency with 100,000 tickets in the database;
//! 3. the server's RSS idle and its peak after the 100,000 tickets and the list load.
//!
//! Run: `cargo bench --bench api`. Sizes: BENCH_POSTS (default 3000),
//! BENCH_TICKETS (default 100000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use downloader2::models::Ticket;
use downloader2::queue::store::connect_options;
use serde_json::{json, Value};
use sqlx::sqlite::SqlitePoolOptions;

const CATALOG_TOKEN: &str = "bench-catalog-token-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const CLIENTS: usize = 32;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ticket_json(id: &str, media: &Path) -> Value {
    let tracks: Vec<Value> = (1..=12)
        .map(|n| {
            json!({"catalog_track_id": format!("t{n}"), "disc_number": 1, "track_number": n,
                   "name": format!("Song number {n}"), "duration_secs": 180 + n,
                   "dest_path": media.join(format!("albums/{id}/d1t{n:02}.ogg"))})
        })
        .collect();
    json!({"ticket_id": id, "created_at": "2026-11-24T10:00:00Z",
           "search": {"artist": format!("Artist {id}"), "album": "Some Album", "year": 1994, "genres": ["rock"]},
           "tracks": tracks,
           "images": [{"catalog_image_id": "img1", "type": "cover_front",
                       "dest_path": media.join(format!("albums/{id}/cover.jpg"))}],
           "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 320, "sample_rate_hz": 44100,
                           "embed_metadata": true, "embed_cover": true},
           "metadata_to_embed": {"artist": "Artist", "album": "Some Album", "year": 1994}})
}

/// The binary cargo built for this benchmark (with the bench profile, i.e. optimised).
fn release_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_downloader2"))
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(binary: &Path, dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .env("DOWNLOADER2_SERVER_PORT", port.to_string())
            .env("DOWNLOADER2_SERVER_AUTH_TOKEN", CATALOG_TOKEN)
            .env("DOWNLOADER2_SERVER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DOWNLOADER2_DATABASE_PATH", dir.join("downloader2.db"))
            .env("DOWNLOADER2_PLACER_ALLOWED_ROOTS", dir.join("media"))
            // An external client URL (never contacted here) so no managed qbittorrent-nox is started.
            .env("DOWNLOADER2_QBITTORRENT_URL", "http://127.0.0.1:9")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/api/v1/health", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start");
    }

    /// (current RSS, peak RSS) in MiB from /proc.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> f64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            kb / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_throughput(client: &reqwest::Client, base: &str, media: &Path, total: usize) -> f64 {
    let bodies: Arc<Vec<Value>> = Arc::new((0..total).map(|n| ticket_json(&format!("post-{n}"), media)).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), format!("{base}/api/v1/ticket"));
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(n) else { break };
                let r = client.post(&url).bearer_auth(CATALOG_TOKEN).json(body).send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// The same rows the service writes for a new ticket, inserted straight through sqlx.
async fn raw_insert_throughput(dir: &Path, media: &Path, total: usize) -> f64 {
    let path = dir.join("raw.db");
    // Create the schema with the service's own migrations, then insert with a plain pool.
    downloader2::queue::Store::open(&path).await.unwrap().close().await;
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(connect_options(&path)).await.unwrap();
    let rows: Arc<Vec<(String, String)>> = Arc::new(
        (0..total)
            .map(|n| {
                let id = format!("raw-{n}");
                let ticket: Ticket = serde_json::from_value(ticket_json(&id, media)).unwrap();
                (id, serde_json::to_string(&ticket).unwrap())
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (pool, rows, next) = (pool.clone(), rows.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((id, ticket_json)) = rows.get(n) else { break };
                let now = chrono::Utc::now().timestamp_millis();
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                sqlx::query(
                    "INSERT INTO tickets (id, ticket_json, search_text, state_json, state_kind, version, priority,
                                          attempts, next_attempt_at, created_at, updated_at)
                     VALUES (?1, ?2, 'artist some album', '{\"state\":\"pending\"}', 'pending', 0, 0, 0, ?3, ?3, ?3)",
                )
                .bind(id)
                .bind(ticket_json)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO ticket_events (ticket_id, seq, at, from_kind, to_kind, details)
                     VALUES (?1, 1, ?2, NULL, 'pending', '{\"state\":\"pending\"}')",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    rate
}

/// Fills the database to `target` tickets with the service's row shape, spread over several states.
async fn prefill(db: &Path, media: &Path, target: usize) {
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(connect_options(db)).await.unwrap();
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets").fetch_one(&pool).await.unwrap();
    let kinds = ["pending", "completed", "completed", "completed", "needs_approval", "failed", "downloading"];
    let template: Ticket = serde_json::from_value(ticket_json("fill", media)).unwrap();
    let base_time = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let mut n = usize::try_from(existing).unwrap();
    while n < target {
        let mut tx = pool.begin().await.unwrap();
        for _ in 0..5000.min(target - n) {
            let id = format!("fill-{n}");
            let mut ticket = template.clone();
            ticket.ticket_id = id.clone();
            let kind = kinds[n % kinds.len()];
            let state = format!("{{\"state\":\"{kind}\"}}");
            let at = base_time + i64::try_from(n).unwrap();
            sqlx::query(
                "INSERT INTO tickets (id, ticket_json, search_text, state_json, state_kind, version, priority,
                                      attempts, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, 'artist some album', ?3, ?4, 1, 0, 0, NULL, ?5, ?5)",
            )
            .bind(&id)
            .bind(serde_json::to_string(&ticket).unwrap())
            .bind(&state)
            .bind(kind)
            .bind(at)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO ticket_events (ticket_id, seq, at, from_kind, to_kind, details)
                 VALUES (?1, 1, ?2, NULL, ?3, ?4)",
            )
            .bind(&id)
            .bind(at)
            .bind(kind)
            .bind(&state)
            .execute(&mut *tx)
            .await
            .unwrap();
            n += 1;
        }
        tx.commit().await.unwrap();
    }
    pool.close().await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let posts = env_number("BENCH_POSTS", 3000);
    let tickets = env_number("BENCH_TICKETS", 100_000);
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().unwrap();

    let server = Server::start(&binary, dir.path());
    server.wait_healthy(&client).await;
    let (idle_rss, idle_peak) = server.rss_mib();
    println!("server idle: RSS {idle_rss:.1} MiB (peak {idle_peak:.1} MiB)");

    let api_rate = post_throughput(&client, &server.base, &media, posts).await;
    let raw_dir = tempfile::tempdir().unwrap();
    let raw_rate = raw_insert_throughput(raw_dir.path(), &media, posts).await;
    println!(
        "POST /ticket, {posts} 12-track tickets, {CLIENTS} clients: {api_rate:.0} tickets/s; raw sqlx inserts of \
         the same rows: {raw_rate:.0} tickets/s; ratio {:.2}",
        api_rate / raw_rate
    );
    server.stop();

    prefill(&dir.path().join("downloader2.db"), &media, tickets).await;
    let server = Server::start(&binary, dir.path());
    server.wait_healthy(&client).await;
    let mut samples = Vec::new();
    for round in 0..600 {
        let state = ["pending", "completed", "needs_approval"][round % 3];
        let offset = (round * 50) % 5000;
        let url = format!("{}/api/v1/tickets?state={state}&limit=50&offset={offset}", server.base);
        let started = Instant::now();
        let r = client.get(&url).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body["tickets"].as_array().unwrap().len(), 50);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "GET /tickets?state=...&limit=50 with {tickets} tickets: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms ({} requests)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99),
        samples.len()
    );
    let (rss, peak) = server.rss_mib();
    println!("server after {tickets} tickets and the list load: RSS {rss:.1} MiB (peak {peak:.1} MiB)");
    server.stop();
}
