//! Acceptance tests of the torrent client against a real qbittorrent-nox downloading from a real swarm on
//! 127.0.0.1 (opentracker + a seeding qbittorrent-nox + mktorrent torrents). Every test that talks to qBittorrent
//! runs against both 4.5.2 and 5.1.0 (`<test>::qbittorrent_4_5`, `<test>::qbittorrent_5_1`), logging in with a
//! real password. No mocks; waits are deadlines on conditions; no timing assertions.

use std::collections::BTreeMap;
use std::time::Duration;

use downloader2::config::QbittorrentConfig;
use downloader2::models::InfoHash;
use downloader2::torrent_client::managed::ManagedQbittorrent;
use downloader2::torrent_client::{
    AddSource, QbittorrentClient, TorrentClient, TorrentClientError, TorrentProgress, TorrentState, CATEGORY,
};

use crate::support::qbittorrent_root::{on_every_qbittorrent, QbtVersion};
use crate::support::swarm::{
    free_port, non_empty_files, raw_get_json, raw_post_form, sha256_file, wait_for, Album, QbittorrentUnderTest, Swarm,
};

on_every_qbittorrent!(
    magnet_metadata_then_only_selected_files_download_and_match_the_seed,
    torrent_file_add_share_limits_stop_start_and_session_expiry,
    killed_mid_download_it_completes_with_no_stall_reported_while_it_reconnects,
    stalled_torrent_is_reported_after_the_configured_time,
    wrong_credentials_are_one_configuration_error_and_never_get_the_ip_banned,
    managed_instance_starts_from_nothing_answers_and_stops,
    a_users_own_torrent_outside_our_category_is_never_touched,
);

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

async fn magnet_metadata_then_only_selected_files_download_and_match_the_seed(version: QbtVersion) {
    let swarm = Swarm::builder().album("Test Artist - Magnet Album (2024) [FLAC]", &album_files()).build().await;
    let album = &swarm.albums[0];
    let qbt = QbittorrentUnderTest::start_version(version, |_| {}).await;
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

    // A metadata fetch abandoned by a killed run (as the WebUI shows one) is removed by the next run's first poll.
    let leftover_dir = qbt.download_root().join(".metadata").join(hash.as_str());
    let leftover_path = leftover_dir.display().to_string();
    let form = [
        ("urls", album.magnet.as_str()),
        ("savepath", &leftover_path),
        ("category", CATEGORY),
        ("tags", "downloader2-metadata"),
        ("stopCondition", "MetadataReceived"),
    ];
    raw_post_form(&qbt.managed, "torrents/add", &form).await;
    let info_path = format!("torrents/info?hashes={hash}");
    wait_for("the leftover to be listed", DEADLINE, || async {
        raw_get_json(&qbt.managed, &info_path).await.as_array().is_some_and(|list| !list.is_empty()).then_some(())
    })
    .await;
    let next_run = qbt.managed.client(&qbt.config).unwrap();
    next_run.poll_all().await.unwrap();
    wait_for("the abandoned metadata fetch to be removed", DEADLINE, || async {
        raw_get_json(&qbt.managed, &info_path).await.as_array().is_some_and(|list| list.is_empty()).then_some(())
    })
    .await;
}

async fn torrent_file_add_share_limits_stop_start_and_session_expiry(version: QbtVersion) {
    let swarm = Swarm::builder().album("Test Artist - File Album (2023) [FLAC]", &album_files()).build().await;
    let album = &swarm.albums[0];
    let qbt = QbittorrentUnderTest::start_version(version, |config| {
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
    // Parked: a .torrent is added stopped until files are chosen (each version names it in its own dialect).
    let state = wait_for("the added torrent to settle", DEADLINE, || async {
        let info = raw_get_json(&qbt.managed, &format!("torrents/info?hashes={hash}")).await;
        let state = info[0]["state"].as_str().unwrap_or_default().to_string();
        (state != "checkingResumeData").then_some(state)
    })
    .await;
    assert_eq!(state, stopped_states(version).0);
    assert_eq!(client.get_progress(&hash).await.unwrap().state, TorrentState::StoppedIncomplete);

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

    // Stopped and started again, in the version's dialect (`pause`/`resume` or `stop`/`start`). (Done complete:
    // stopped half-way, libtorrent takes a minute to get data from the same seeder again.)
    client.stop_torrent(&hash).await.unwrap();
    let stopped = wait_for("the torrent to stop", DEADLINE, || async {
        let progress = client.get_progress(&hash).await.unwrap();
        (progress.state == TorrentState::StoppedComplete).then_some(progress)
    })
    .await;
    assert!(stopped.is_complete, "{stopped:?}");
    let info = raw_get_json(&qbt.managed, &format!("torrents/info?hashes={hash}")).await;
    assert_eq!(info[0]["state"], stopped_states(version).1);
    client.start_torrent(&hash).await.unwrap();
    wait_for("the torrent to run again", DEADLINE, || async {
        let progress = client.get_progress(&hash).await.unwrap();
        (progress.state == TorrentState::Seeding).then_some(())
    })
    .await;

    client.remove_torrent(&hash, true).await.unwrap();
    wait_for("the files to be deleted", DEADLINE, || async { non_empty_files(&save_path).is_empty().then_some(()) })
        .await;
}

/// qBittorrent's own names of a stopped torrent, incomplete and complete (4.x `paused...`, 5.x `stopped...`).
fn stopped_states(version: QbtVersion) -> (&'static str, &'static str) {
    match version {
        QbtVersion::V4_5 => ("pausedDL", "pausedUP"),
        QbtVersion::V5_1 => ("stoppedDL", "stoppedUP"),
    }
}

async fn killed_mid_download_it_completes_with_no_stall_reported_while_it_reconnects(version: QbtVersion) {
    let swarm = Swarm::builder()
        .album("Test Artist - Resumed Album (2022) [FLAC]", &[("01 - Long.flac", 8 * MIB), ("02 - Long.flac", 8 * MIB)])
        .build()
        .await;
    let album = &swarm.albums[0];
    // A stall clock far shorter than the reconnection after a kill -9 (the seeder keeps the killed peer's uTP
    // connection and refuses the new one from the same address until it times out: one to two minutes).
    let qbt = QbittorrentUnderTest::start_version(version, |config| config.stall_timeout_secs = 3).await;
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
    // download completes with the seeded bytes - through the tracker alone, and without a single Stalled on the
    // way although nothing arrives for far longer than the stall timeout (`progress_until_complete` fails on any
    // error).
    let progress = wait_for("the torrent to be found again", DEADLINE, || async {
        match client.get_progress(&hash).await {
            Ok(progress) => Some(progress),
            Err(error) => {
                assert!(error.is_retryable(), "not a transient error: {error}");
                assert!(!matches!(error, TorrentClientError::Stalled { .. }), "{error}");
                None
            }
        }
    })
    .await;
    assert_eq!(progress.hash, hash);
    client.set_file_priorities(&hash, &wanted).await.unwrap();
    progress_until_complete(client, &hash, 3 * DEADLINE).await;
    assert_downloaded(&progress.save_path, album, &wanted);
}

async fn stalled_torrent_is_reported_after_the_configured_time(version: QbtVersion) {
    let mut swarm = Swarm::builder()
        .album("Test Artist - Stalled Album (2021) [FLAC]", &[("01 - Big.flac", 16 * MIB), ("02 - Big.flac", 16 * MIB)])
        .build()
        .await;
    let album = swarm.albums[0].clone();
    let qbt = QbittorrentUnderTest::start_version(version, |config| config.stall_timeout_secs = 3).await;
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

async fn wrong_credentials_are_one_configuration_error_and_never_get_the_ip_banned(version: QbtVersion) {
    let qbt = QbittorrentUnderTest::start_version(version, |_| {}).await;
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

/// What the service does with no `[qbittorrent] url`, with `nox_path` pointing at each version.
async fn managed_instance_starts_from_nothing_answers_and_stops(version: QbtVersion) {
    let data_dir = tempfile::tempdir().unwrap();
    let nox_path = version.program(data_dir.path(), &[data_dir.path()], &[]);
    let config = QbittorrentConfig { managed_loopback_only: true, nox_path, ..Default::default() };
    let managed = ManagedQbittorrent::start(&config, data_dir.path()).await.unwrap();

    let conf = std::fs::read_to_string(managed.profile_dir().join("qBittorrent/config/qBittorrent.conf")).unwrap();
    assert!(!conf.contains(managed.password()), "the plain password is on disk");
    assert!(managed.url().starts_with("http://127.0.0.1:"));

    let client = managed.client(&config).unwrap();
    let webapi = client.webapi_version().await.unwrap();
    assert_eq!((webapi.0, webapi.1, webapi.2), version.webapi());
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

/// A user's own torrent (added by hand through the WebUI, in their own category) with the very hash a ticket
/// chooses: downloader2 may read its file list, but never re-adds, tags, starts, stops or removes it.
async fn a_users_own_torrent_outside_our_category_is_never_touched(version: QbtVersion) {
    let swarm = Swarm::builder()
        .album("User Artist - Their Album (2020) [FLAC]", &[("01 - Mine.flac", 2 * MIB), ("02 - Mine.flac", MIB)])
        .build()
        .await;
    let album = &swarm.albums[0];
    let hash = album.info_hash.clone();
    let qbt = QbittorrentUnderTest::start_version(version, |_| {}).await;
    let client = &qbt.client;
    let user_dir = qbt.dir.path().join("users-own-downloads");
    let user_path = user_dir.display().to_string();
    let form = [("urls", album.magnet.as_str()), ("savepath", &user_path), ("category", "music"), ("tags", "mine")];
    raw_post_form(&qbt.managed, "torrents/add", &form).await;
    let info_path = format!("torrents/info?hashes={hash}");
    wait_for("the user's torrent to complete", DEADLINE, || async {
        let info = raw_get_json(&qbt.managed, &info_path).await;
        (info[0]["progress"].as_f64() == Some(1.0) && info[0]["state"] != "checkingUP").then_some(())
    })
    .await;
    let before = raw_get_json(&qbt.managed, &info_path).await[0].clone();
    let files_before = raw_get_json(&qbt.managed, &format!("torrents/files?hash={hash}")).await;

    // Its file list may be read (nothing is added for that)...
    let listed = client.fetch_metadata(&album.magnet, DEADLINE).await.unwrap();
    let listed: BTreeMap<String, u64> = listed.into_iter().map(|f| (f.path, f.size_bytes)).collect();
    let seeded: BTreeMap<String, u64> = album.files.iter().map(|f| (f.path.clone(), f.size)).collect();
    assert_eq!(listed, seeded);
    // ...but a ticket choosing it is told why it cannot have it, by magnet and by .torrent.
    for source in [AddSource::Magnet(album.magnet.clone()), AddSource::TorrentFile(album.torrent.clone())] {
        let error = client.add_torrent(source, "ticket-wants-the-users").await.unwrap_err();
        assert!(matches!(error, TorrentClientError::ForeignTorrent { .. }), "{error}");
        assert!(error.to_string().contains("\"music\""), "{error}");
    }
    // Every other call acts as if it were not there.
    assert!(client.poll_all().await.unwrap().is_empty());
    let missing = client.get_progress(&hash).await.unwrap_err();
    assert!(matches!(missing, TorrentClientError::TorrentNotFound { .. }), "{missing}");
    let missing = client.set_file_priorities(&hash, &[]).await.unwrap_err();
    assert!(matches!(missing, TorrentClientError::TorrentNotFound { .. }), "{missing}");
    let missing = client.stop_torrent(&hash).await.unwrap_err();
    assert!(matches!(missing, TorrentClientError::TorrentNotFound { .. }), "{missing}");
    client.remove_torrent(&hash, true).await.unwrap();

    let after = raw_get_json(&qbt.managed, &info_path).await[0].clone();
    for key in ["category", "tags", "save_path", "ratio_limit", "seeding_time_limit", "progress", "name"] {
        assert_eq!(after[key], before[key], "{key} of the user's torrent changed");
    }
    let state = after["state"].as_str().unwrap();
    assert!(!state.starts_with("paused") && !state.starts_with("stopped"), "the user's torrent was stopped: {state}");
    let files_after = raw_get_json(&qbt.managed, &format!("torrents/files?hash={hash}")).await;
    assert_eq!(files_after, files_before, "file priorities of the user's torrent changed");
    assert_downloaded(&user_dir, album, &album.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
}
