//! The disk under the database, against the real binary: a full filesystem (a small tmpfs, filled) makes POST answer
//! 503 saying the disk is full and health `degraded` with that reason; once space returns, writes recover within
//! seconds and every following write succeeds (no pooled connection left mid-transaction), with no "non-zero
//! transaction depth" in the log and the warnings rate-limited. A database file deleted or replaced while running
//! refuses writes (no 201 that would vanish) and degrades health. Prints the recovery figure the README quotes.
//!
//! Mounting a tmpfs needs root (the test machine and CI run as root); the mount is undone by a drop guard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::{sample_ticket, CATALOG_TOKEN};
use crate::support::service_process::{ServiceOptions, ServiceProcess};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount a tmpfs at {} (the test must run as root)", path.display());
        Tmpfs { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        if let Err(err) = file.write_all(&chunk) {
            assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
            break;
        }
    }
    // Single bytes, so not even a page is left.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn post(client: &reqwest::Client, service: &ServiceProcess, id: &str) -> (u16, Value) {
    let ticket = sample_ticket(id, &service.media);
    let response =
        client.post(service.url("/api/v1/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn health(client: &reqwest::Client, service: &ServiceProcess) -> (u16, Value) {
    let response = client.get(service.url("/api/v1/health")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_full_disk_answers_503_saying_so_degrades_health_and_writes_recover_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&dir.path().join("db"), "6m");
    // Unpaused, without an indexer: the scheduler keeps writing (tickets move to failed, retryable) meanwhile.
    let options = ServiceOptions {
        database: tmpfs.path.join("downloader2.db"),
        paused: false,
        ..ServiceOptions::in_dir(dir.path())
    };
    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    for n in 0..5 {
        assert_eq!(post(&client, &service, &format!("before-{n}")).await.0, 201);
    }

    let filler = fill(&tmpfs.path);
    let full_since = Instant::now();
    let mut refused = None;
    for n in 0..3000 {
        let (status, body) = post(&client, &service, &format!("while-full-{n}")).await;
        match status {
            201 => continue,
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a full disk never refused a write");
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("disk") && error.contains("full"), "the answer says the disk is full: {error}");
    let (status, body) = health(&client, &service).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert!(body["database"].as_str().unwrap().contains("full"), "health names the reason: {body}");
    // A while full, with the scheduler and health polls running: the log must not flood.
    for _ in 0..20 {
        let _ = post(&client, &service, "still-full").await;
        let _ = health(&client, &service).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let full_for = full_since.elapsed();

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut n = 0;
    let recovered_after = loop {
        n += 1;
        let (status, _) = post(&client, &service, &format!("after-{n}")).await;
        if status == 201 {
            break freed.elapsed();
        }
        assert!(freed.elapsed() < Duration::from_secs(60), "writes did not recover within 60 s (last {status})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every write from now on succeeds: no connection of the pool was left mid-transaction.
    for m in 0..40 {
        let (status, body) = post(&client, &service, &format!("after-ok-{m}")).await;
        assert_eq!(status, 201, "write {m} after recovery failed: {body}");
    }
    let healthy_after = loop {
        let (status, body) = health(&client, &service).await;
        if status == 200 {
            assert_eq!(body["status"], "ok");
            break freed.elapsed();
        }
        assert!(freed.elapsed() < Duration::from_secs(60), "health still degraded: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = service.get_json(&client, "/api/v1/tickets?limit=500", CATALOG_TOKEN).await;
    assert!(list["total"].as_i64().unwrap() >= 45, "{}", list["total"]);

    service.kill();
    let log = service.log_text();
    assert!(!log.contains("non-zero transaction depth"), "a connection was reused mid-transaction:\n{log}");
    // Lines about the disk (the tickets' own "searching is not configured" warnings are not counted).
    let noisy = log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .filter(|line| line.contains("full") || line.contains("503") || line.contains("database writes"))
        .count();
    println!(
        "full disk: writes recovered {recovered_after:?} after space returned, health ok after {healthy_after:?}; \
         {noisy} warning/error lines about it over {full_for:?} full"
    );
    assert!(noisy <= 10, "warnings about the disk are not rate-limited: {noisy} lines\n{log}");
    drop(tmpfs);
}

#[tokio::test]
async fn a_database_file_deleted_or_replaced_while_running_refuses_writes_and_degrades_health() {
    let client = reqwest::Client::new();
    for replace in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = ServiceOptions::in_dir(dir.path());
        let database = options.database.clone();
        let service = ServiceProcess::start(dir.path(), &options).await;
        assert_eq!(post(&client, &service, "kept").await.0, 201);
        let what = if replace {
            let copy = dir.path().join("copy.db");
            std::fs::copy(&database, &copy).unwrap();
            std::fs::rename(&copy, &database).unwrap();
            "replaced"
        } else {
            std::fs::remove_file(&database).unwrap();
            "deleted"
        };
        let (status, body) = post(&client, &service, "would-vanish").await;
        assert_eq!(status, 503, "no write is acknowledged into a {what} database file: {body}");
        assert!(body["error"].as_str().unwrap().contains(what), "the answer says the file was {what}: {body}");
        let (status, body) = health(&client, &service).await;
        assert_eq!(status, 503);
        assert_eq!(body["status"], "degraded");
        assert!(body["database"].as_str().unwrap().contains(what), "{body}");
    }
}
