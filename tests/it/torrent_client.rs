//! Acceptance tests of the torrent client against a real qbittorrent-nox downloading from a real swarm on
//! 127.0.0.1 (opentracker + a seeding qbittorrent-nox + mktorrent torrents). No mocks; waits are deadlines on
//! conditions; no timing assertions.

use std::collections::BTreeMap;
use std::time::Duration;

use downloader2::config::QbittorrentConfig;
use downloader2::models::InfoHash;
use downloader2::torrent_client::managed::ManagedQbittorrent;
use downloader2::torrent_client::{
    AddSource, QbittorrentClient, TorrentClient, TorrentClientError, TorrentProgress, CATEGORY,
};

use crate::support::swarm::{
    free_port, non_empty_files, raw_get_json, sha256_file, wait_for, Album, QbittorrentUnderTest, Swarm,
};

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(90);

fn album_files() -> Vec<(&'static str, u64)> {
    vec![
        ("01 - Opening.flac", 3 * MIB + 12_345),
        ("02 - Middle.flac", 2 * MIB + 777),
        ("03 - Closing.flac", 3 * MIB + 4_321),
        ("cover.jpg", 150_000),
        ("rip.log", 9_000),
    ]
}

/// Polls progress until complete, returning every fraction observed (transient errors are not tolerated).
async fn progress_until_complete(client: &QbittorrentClient, hash: &InfoHash, within: Duration) -> Vec<f64> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + within;
    loop {
        let progress: TorrentProgress = client.get_progress(hash).await.unwrap();
        seen.push(progress.progress);
        if progress.is_complete {
            return seen;
        }
        assert!(std::time::Instant::now() < deadline, "download not complete after {within:?}: {progress:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that the wanted files are on disk with the seeded bytes, and the others absent or empty.
fn assert_downloaded(root: &std::path::Path, album: &Album, wanted: &[String]) {
    for file in &album.files {
        let path = root.join(&file.path);
        if wanted.contains(&file.path) {
            assert_eq!(sha256_file(&path), file.sha256, "{} differs from the seeded file", file.path);
        } else {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            assert_eq!(size, 0, "{} was not selected but has {size} bytes on disk", file.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_metadata_then_only_selected_files_download_and_match_the_seed() {
    let swarm = Swarm::builder().album("Test Artist - Magnet Album (2024) [FLAC]", &album_files()).build().await;
    let album = &swarm.albums[0];
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let client = &qbt.client;

    // Metadata without the payload: the file list equals what was seeded, and no payload byte is on disk.
    let listed = client.fetch_metadata(&album.magnet, DEADLINE).await.unwrap();
    let listed: BTreeMap<String, u64> = listed.into_iter().map(|f| (f.path, f.size_bytes)).collect();
    let seeded: BTreeMap<String, u64> = album.files.iter().map(|f| (f.path.clone(), f.size)).collect();
    assert_eq!(listed, seeded);
    assert!(non_empty_files(&qbt.download_root()).is_empty(), "fetch_metadata downloaded payload");
    assert!(client.poll_all().await.unwrap().is_empty(), "the metadata torrent was not removed");

    // Add for a ticket: parked until the files are chosen.
    let hash = client.add_torrent(AddSource::Magnet(album.magnet.clone()), "ticket-magnet-1").await.unwrap();
    assert_eq!(hash, album.info_hash);
    let files = wait_for("metadata of the added magnet", DEADLINE, || async {
        let files = client.get_files(&hash).await.unwrap();
        (!files.is_empty()).then_some(files)
    })
    .await;
    let file_list: BTreeMap<String, u64> = files.iter().map(|f| (f.path.clone(), f.size)).collect();
    assert_eq!(file_list, seeded);

    // Slow the transfer so progress can be watched rising.
    qbt.limit_download_rate(3 * MIB).await;
    let wanted: Vec<String> = album
        .files
        .iter()
        .filter(|f| !f.path.ends_with("02 - Middle.flac") && !f.path.ends_with(".log"))
        .map(|f| f.path.clone())
        .collect();
    let unknown = client.set_file_priorities(&hash, &["nope/absent.flac".to_string()]).await.unwrap_err();
    assert!(matches!(unknown, TorrentClientError::UnknownFiles { .. }), "{unknown}");
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    let priorities = client.get_files(&hash).await.unwrap();
    for file in &priorities {
        let expected = if wanted.contains(&file.path) { 1 } else { 0 };
        assert_eq!(file.priority, expected, "{}", file.path);
    }

    let seen = progress_until_complete(client, &hash, DEADLINE).await;
    assert!(seen.windows(2).all(|w| w[1] >= w[0]), "progress went backwards: {seen:?}");
    assert!(seen.iter().any(|p| *p < 1.0), "progress was never seen below 100 %: {seen:?}");
    assert_eq!(seen.last().copied(), Some(1.0));

    let save_path = client.get_progress(&hash).await.unwrap().save_path;
    assert_eq!(save_path, qbt.download_root().join("ticket-magnet-1"));
    assert_downloaded(&save_path, album, &wanted);

    // One request lists our torrent with its ticket.
    let statuses = client.poll_all().await.unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].hash, hash);
    assert_eq!(statuses[0].ticket_ids, vec!["ticket-magnet-1".to_string()]);
    assert!(statuses[0].progress.is_complete);

    // Removal with files leaves nothing on disk, and the torrent is then reported missing.
    client.remove_torrent(&hash, true).await.unwrap();
    wait_for("the files to be deleted", DEADLINE, || async { non_empty_files(&save_path).is_empty().then_some(()) })
        .await;
    let gone = client.get_progress(&hash).await.unwrap_err();
    assert!(matches!(gone, TorrentClientError::TorrentNotFound { .. }), "{gone}");
    assert!(!gone.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torrent_file_add_downloads_every_file_and_session_expiry_is_transparent() {
    let swarm = Swarm::builder().album("Test Artist - File Album (2023) [FLAC]", &album_files()).build().await;
    let album = &swarm.albums[0];
    let qbt = QbittorrentUnderTest::start(|config| {
        config.seed_ratio_limit = 2.5;
        config.seed_time_limit_mins = 90;
    })
    .await;
    let client = &qbt.client;

    let hash = client.add_torrent(AddSource::TorrentFile(album.torrent.clone()), "ticket-file-1").await.unwrap();
    // The hash we computed is the one the independent seeder reports for the same .torrent.
    let seeder_view = swarm.seeder().torrent_info(&hash).await;
    assert_eq!(seeder_view["hash"].as_str(), Some(hash.as_str()));

    // Category, tag and share limits as qBittorrent itself reports them (a separate session).
    let info = raw_get_json(&qbt.managed, &format!("torrents/info?hashes={hash}")).await;
    assert_eq!(info[0]["category"], CATEGORY);
    assert_eq!(info[0]["tags"], "d2-ticket-file-1");
    assert_eq!(info[0]["ratio_limit"].as_f64(), Some(2.5));
    assert_eq!(info[0]["seeding_time_limit"].as_i64(), Some(90));
    // Parked: a .torrent is added stopped until files are chosen.
    assert!(matches!(info[0]["state"].as_str(), Some("pausedDL" | "stoppedDL" | "checkingResumeData")), "{info}");

    // The session ends behind the client's back: the next calls log in again by themselves.
    client.logout().await.unwrap();
    let files = client.get_files(&hash).await.unwrap();
    assert_eq!(files.len(), album.files.len());

    let wanted: Vec<String> = album.files.iter().map(|f| f.path.clone()).collect();
    client.logout().await.unwrap();
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    progress_until_complete(client, &hash, DEADLINE).await;
    let save_path = client.get_progress(&hash).await.unwrap().save_path;
    assert_downloaded(&save_path, album, &wanted);

    client.remove_torrent(&hash, true).await.unwrap();
    wait_for("the files to be deleted", DEADLINE, || async { non_empty_files(&save_path).is_empty().then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_qbittorrent_is_restarted_and_the_download_resumes_to_completion() {
    let swarm = Swarm::builder()
        .album("Test Artist - Resumed Album (2022) [FLAC]", &[("01 - Long.flac", 8 * MIB), ("02 - Long.flac", 8 * MIB)])
        .build()
        .await;
    let album = &swarm.albums[0];
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let client = &qbt.client;

    qbt.limit_download_rate(2 * MIB).await;
    let hash = client.add_torrent(AddSource::TorrentFile(album.torrent.clone()), "ticket-kill-1").await.unwrap();
    let wanted: Vec<String> = album.files.iter().map(|f| f.path.clone()).collect();
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    wait_for("some progress before the kill", DEADLINE, || async {
        let progress = client.get_progress(&hash).await.unwrap();
        (progress.progress > 0.05 && !progress.is_complete).then_some(())
    })
    .await;

    let pid = qbt.managed.pid().expect("qbittorrent-nox runs");
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    wait_for("the supervisor to restart qbittorrent-nox", DEADLINE, || async {
        (qbt.managed.restarts() >= 1 && qbt.managed.pid().is_some_and(|new| new != pid)).then_some(())
    })
    .await;

    // The new process knows nothing of our session: the client logs in again, finds the torrent by hash, and the
    // download completes with the seeded bytes.
    let progress = wait_for("the torrent to be found again", DEADLINE, || async {
        match client.get_progress(&hash).await {
            Ok(progress) => Some(progress),
            Err(error) => {
                assert!(error.is_retryable(), "not a transient error: {error}");
                None
            }
        }
    })
    .await;
    assert_eq!(progress.hash, hash);
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    // The tracker path alone reconnects too, but only after libtorrent's retry delays (tens of seconds): point the
    // restarted client at the seeder directly, the documented fallback.
    client.add_peer(&hash, swarm.seeder().peer_addr()).await.unwrap();
    // libtorrent takes tens of seconds to reconnect to the seeder after the restart: a generous deadline.
    progress_until_complete(client, &hash, 3 * DEADLINE).await;
    assert_downloaded(&progress.save_path, album, &wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_torrent_is_reported_after_the_configured_time() {
    let mut swarm = Swarm::builder()
        .album("Test Artist - Stalled Album (2021) [FLAC]", &[("01 - Big.flac", 16 * MIB), ("02 - Big.flac", 16 * MIB)])
        .build()
        .await;
    let album = swarm.albums[0].clone();
    let qbt = QbittorrentUnderTest::start(|config| config.stall_timeout_secs = 3).await;
    let client = &qbt.client;

    qbt.limit_download_rate(MIB).await;
    let hash = client.add_torrent(AddSource::TorrentFile(album.torrent.clone()), "ticket-stall-1").await.unwrap();
    let wanted: Vec<String> = album.files.iter().map(|f| f.path.clone()).collect();
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    wait_for("the download to start", DEADLINE, || async {
        let progress = client.get_progress(&hash).await.unwrap();
        (progress.progress > 0.0 && progress.connected_seeds > 0).then_some(())
    })
    .await;

    swarm.stop_seeder().await;
    let error = wait_for("the stall to be reported", DEADLINE, || async {
        match client.get_progress(&hash).await {
            Ok(progress) => {
                assert!(!progress.is_complete, "completed although the seeder is gone");
                None
            }
            Err(error) => Some(error),
        }
    })
    .await;
    match &error {
        TorrentClientError::Stalled { hash: stalled, secs } => {
            assert_eq!(stalled, &hash);
            assert!(*secs >= 3, "reported after {secs} s, configured 3 s");
        }
        other => panic!("expected Stalled, got {other}"),
    }
    assert!(error.is_retryable());
    let statuses = client.poll_all().await.unwrap();
    assert!(statuses.iter().any(|s| s.hash == hash && s.stalled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_one_configuration_error_and_never_get_the_ip_banned() {
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let wrong = QbittorrentClient::new(
        qbt.managed.url(),
        qbt.managed.username(),
        "not-the-password",
        &qbt.config,
        &qbt.download_root(),
    )
    .unwrap();
    // More calls than qBittorrent's ban threshold (5 failed logins): each must report the same error.
    for _ in 0..7 {
        let error = wrong.poll_all().await.unwrap_err();
        assert!(matches!(error, TorrentClientError::BadCredentials { .. }), "{error}");
        assert!(error.is_configuration_error());
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("username/password"), "{error}");
        assert!(!error.to_string().contains("not-the-password"), "the password leaked into {error}");
    }
    // Only one login was tried: the right credentials from the same IP are still accepted.
    assert!(qbt.client.poll_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn unreachable_client_is_a_retryable_error() {
    let port = free_port();
    let config = QbittorrentConfig { timeout_secs: 30, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let client = QbittorrentClient::new(&format!("http://127.0.0.1:{port}/"), "u", "p", &config, dir.path()).unwrap();
    let error = client.poll_all().await.unwrap_err();
    assert!(matches!(error, TorrentClientError::Unreachable { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instance_starts_from_nothing_answers_and_stops() {
    crate::support::swarm::require_program("qbittorrent-nox", "qbittorrent-nox");
    let data_dir = tempfile::tempdir().unwrap();
    let config = QbittorrentConfig { managed_loopback_only: true, ..Default::default() };
    let managed = ManagedQbittorrent::start(&config, data_dir.path()).await.unwrap();

    let conf = std::fs::read_to_string(managed.profile_dir().join("qBittorrent/config/qBittorrent.conf")).unwrap();
    assert!(!conf.contains(managed.password()), "the plain password is on disk");
    assert!(managed.url().starts_with("http://127.0.0.1:"));

    let client = managed.client(&config).unwrap();
    let version = client.webapi_version().await.unwrap();
    assert!(version.0 >= 2);
    assert!(client.poll_all().await.unwrap().is_empty());
    let preferences = raw_get_json(&managed, "app/preferences").await;
    assert_eq!(preferences["web_ui_address"], "127.0.0.1");
    assert_eq!(preferences["dht"], false);
    assert_eq!(preferences["upnp"], false);

    let pid = managed.pid().unwrap();
    managed.shutdown().await;
    assert_eq!(managed.pid(), None);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "qbittorrent-nox {pid} still runs");
    let error = client.poll_all().await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}
