//! Benchmark of the torrent client against a real qbittorrent-nox and a loopback swarm: time to metadata for a
//! magnet and time to download a 50 MB album, through `QbittorrentClient` and, for comparison, through `curl`
//! against the same qbittorrent-nox. Prints figures (median of a few runs); asserts nothing about speed.
//! Talks to 127.0.0.1 only. `BENCH_QBITTORRENT=5.1` measures qbittorrent-nox 5.1.0 (the Debian 13 root that
//! `scripts/install-deps.sh --for-tests` builds) instead of 4.5.2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

#[path = "../tests/it/support/qbittorrent_root.rs"]
mod qbittorrent_root;
#[path = "../tests/it/support/swarm.rs"]
mod swarm;

use std::time::{Duration, Instant};

use downloader2::models::InfoHash;
use downloader2::torrent_client::{AddSource, TorrentClient};
use qbittorrent_root::QbtVersion;
use swarm::{non_empty_files, require_program, wait_for, QbittorrentUnderTest, Swarm};

const RUNS: usize = 3;
const MB: u64 = 1_000_000;
const DEADLINE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);

/// `curl` against the WebUI with its own cookie jar (the way a shell script would drive qBittorrent).
struct Curl {
    base: String,
    jar: std::path::PathBuf,
}

impl Curl {
    async fn run(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--noproxy", "*", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn login(&self, username: &str, password: &str) {
        let url = format!("{}api/v2/auth/login", self.base);
        let user = format!("username={username}");
        let pass = format!("password={password}");
        assert_eq!(self.run(&["--data-urlencode", &user, "--data-urlencode", &pass, &url]).await, "Ok.");
    }

    async fn add_magnet(&self, magnet: &str, save_path: &str, stop_after_metadata: bool) {
        let url = format!("{}api/v2/torrents/add", self.base);
        let urls = format!("urls={magnet}");
        let save = format!("savepath={save_path}");
        let stop = format!("stopCondition={}", if stop_after_metadata { "MetadataReceived" } else { "None" });
        let answer = self
            .run(&[
                "-F",
                &urls,
                "-F",
                &save,
                "-F",
                "category=bench-curl",
                "-F",
                "paused=false",
                "-F",
                "stopped=false",
                "-F",
                &stop,
                &url,
            ])
            .await;
        assert_eq!(answer, "Ok.");
    }

    async fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let url = format!("{}api/v2/{path_and_query}", self.base);
        serde_json::from_str(&self.run(&[&url]).await).unwrap()
    }

    async fn delete(&self, hash: &InfoHash) {
        let url = format!("{}api/v2/torrents/delete", self.base);
        let hashes = format!("hashes={hash}");
        self.run(&["-d", &hashes, "-d", "deleteFiles=true", &url]).await;
        wait_for("curl's torrent to be removed", DEADLINE, || async {
            let list = self.get_json(&format!("torrents/info?hashes={hash}")).await;
            list.as_array().is_some_and(Vec::is_empty).then_some(())
        })
        .await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    require_program("curl", "curl");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let tracks: Vec<(String, u64)> = (1..=10).map(|n| (format!("{n:02} - Track {n}.flac"), 5 * MB)).collect();
    let files: Vec<(&str, u64)> = tracks.iter().map(|(name, size)| (name.as_str(), *size)).collect();
    let swarm = Swarm::builder().album("Bench Artist - Fifty Megabytes (2024) [FLAC]", &files).build().await;
    let album = &swarm.albums[0];
    let version = match std::env::var("BENCH_QBITTORRENT").as_deref() {
        Ok("5.1") => QbtVersion::V5_1,
        Ok("4.5") | Err(_) => QbtVersion::V4_5,
        Ok(other) => panic!("BENCH_QBITTORRENT={other:?}: use 4.5 or 5.1"),
    };
    let qbt = QbittorrentUnderTest::start_version(version, |_| {}).await;
    let client = &qbt.client;
    let curl = Curl { base: qbt.managed.url().to_string(), jar: qbt.dir.path().join("curl-cookies.txt") };
    curl.login(qbt.managed.username(), qbt.managed.password()).await;
    let wanted: Vec<String> = album.files.iter().map(|f| f.path.clone()).collect();
    let total: u64 = album.files.iter().map(|f| f.size).sum();

    let (mut ours_meta, mut curl_meta, mut ours_dl, mut curl_dl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Metadata, ours (includes removing the temporary torrent again).
        let start = Instant::now();
        let listed = client.fetch_metadata(&album.magnet, DEADLINE).await.unwrap();
        ours_meta.push(start.elapsed());
        assert_eq!(listed.len(), album.files.len());

        // Metadata, curl: add stopped-after-metadata, poll the file list.
        let save = qbt.download_root().join(format!("curl-meta-{run}"));
        let start = Instant::now();
        curl.add_magnet(&album.magnet, &save.display().to_string(), true).await;
        let query = format!("torrents/files?hash={}", album.info_hash);
        loop {
            let list = curl.get_json(&query).await;
            if list.as_array().is_some_and(|files| !files.is_empty()) {
                break;
            }
            assert!(start.elapsed() < DEADLINE);
            tokio::time::sleep(POLL).await;
        }
        curl_meta.push(start.elapsed());
        curl.delete(&album.info_hash).await;

        // Download, ours: add, wait for the file list, select all, poll until complete.
        let ticket = format!("bench-{run}");
        let start = Instant::now();
        let hash = client.add_torrent(AddSource::Magnet(album.magnet.clone()), &ticket).await.unwrap();
        loop {
            match client.set_file_priorities(&hash, &wanted).await {
                Ok(()) => break,
                Err(error) if error.is_retryable() => tokio::time::sleep(POLL).await,
                Err(error) => panic!("{error}"),
            }
        }
        while !client.get_progress(&hash).await.unwrap().is_complete {
            assert!(start.elapsed() < DEADLINE);
            tokio::time::sleep(POLL).await;
        }
        ours_dl.push(start.elapsed());
        client.remove_torrent(&hash, true).await.unwrap();
        let dir = qbt.download_root().join(&ticket);
        wait_for("our files to be deleted", DEADLINE, || async { non_empty_files(&dir).is_empty().then_some(()) })
            .await;

        // Download, curl: add running, poll torrents/info until complete.
        let save = qbt.download_root().join(format!("curl-dl-{run}"));
        let start = Instant::now();
        curl.add_magnet(&album.magnet, &save.display().to_string(), false).await;
        let query = format!("torrents/info?hashes={}", album.info_hash);
        loop {
            let list = curl.get_json(&query).await;
            let done = list[0]["amount_left"].as_i64() == Some(0)
                && list[0]["size"].as_i64().is_some_and(|size| size > 0)
                && matches!(
                    list[0]["state"].as_str(),
                    Some("uploading" | "stalledUP" | "pausedUP" | "stoppedUP" | "queuedUP" | "forcedUP")
                );
            if done {
                break;
            }
            assert!(start.elapsed() < DEADLINE);
            tokio::time::sleep(POLL).await;
        }
        curl_dl.push(start.elapsed());
        curl.delete(&album.info_hash).await;
    }

    let mb = total as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "torrent_client benchmark: qbittorrent-nox {version:?} on 127.0.0.1, opentracker + qbittorrent-nox seeder, \
         {RUNS} runs, medians"
    );
    println!(
        "  time to metadata (magnet)      downloader2: {:>8.3} s   curl: {:>8.3} s",
        median(ours_meta.clone()).as_secs_f64(),
        median(curl_meta.clone()).as_secs_f64()
    );
    let (ours, theirs) = (median(ours_dl.clone()), median(curl_dl.clone()));
    println!(
        "  download {mb:.0} MB album (magnet)  downloader2: {:>8.3} s ({:.1} MB/s)   curl: {:>8.3} s ({:.1} MB/s)",
        ours.as_secs_f64(),
        rate(ours),
        theirs.as_secs_f64(),
        rate(theirs)
    );
    println!("  all runs: metadata ours {ours_meta:?} curl {curl_meta:?}; download ours {ours_dl:?} curl {curl_dl:?}");
}
