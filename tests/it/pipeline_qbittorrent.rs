//! The pipeline end to end (the real `downloader2` binary, a Torznab server, a loopback swarm) against each
//! qBittorrent version users run, as an external client the way users have it: 4.5.2 and 5.1.0 with a magnet-only
//! release whose file list must be fetched before choosing; and a 5.1.0 that sees the download folder as
//! `/downloads` (`[qbittorrent] path_mappings`), published behind a reverse proxy under a base path, holding a
//! user's own torrent and category that downloader2 must leave alone across a full run and a restart.

use std::path::Path;
use std::time::Duration;

use downloader2::torrent_client::TorrentClient;
use reqwest::Method;
use serde_json::Value;

use crate::support::pipeline::{
    assert_nothing_left, external_client, files_under, AlbumNames, AlbumStack, EventRecorder, ServiceProcess,
    TorrentClientSetup,
};
use crate::support::qbittorrent_root::{on_every_qbittorrent, QbtVersion};
use crate::support::reverse_proxy::ReverseProxy;
use crate::support::swarm::{raw_get_json, raw_post_form, sha256_file, wait_for, QbittorrentUnderTest};
use crate::support::torznab_server::Release;
use downloader2::models::torrent::listed_kind;

const NAMES: AlbumNames = AlbumNames {
    artist: "Copper Lanterns",
    album: "Night Ferry",
    year: 2017,
    right_title: "Copper Lanterns - Night Ferry (2017) [FLAC 16-48]",
    live_title: "Copper Lanterns - Live in the Harbour (2019) [FLAC]",
    tribute_title: "VA - Night Ferry: A Tribute to Copper Lanterns (2021) [MP3 320]",
};
const TRACKS: &[(&str, f64)] = &[("Boarding", 14.0), ("Open Water", 18.0), ("Landfall", 12.0)];
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);

on_every_qbittorrent!(magnet_only_release_is_fetched_chosen_downloaded_and_delivered);

/// The states of a ticket that went through without an admin.
const UNATTENDED: [&str; 8] =
    ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"];

async fn magnet_only_release_is_fetched_chosen_downloaded_and_delivered(version: QbtVersion) {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let right = fixture.right().clone();
    // The right release is a magnet and nothing else: no file list until qBittorrent fetched its metadata.
    let mut releases = fixture.releases();
    let position = releases.iter().position(|release| release.title == right.name).unwrap();
    let mut magnet_only =
        Release::new(&right.name, "orpheus").size(right.files.iter().map(|f| f.size).sum()).seeders(5, 6);
    magnet_only.magnet = Some(right.magnet.clone());
    magnet_only.infohash = Some(right.info_hash.to_string());
    releases[position] = magnet_only;
    fixture.torznab.set_results(releases);

    let qbt = QbittorrentUnderTest::start_version(version, |_| {}).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("qbt-1")).await;
    let ticket = fixture.ticket("qbt-1", &setup, 44_100);
    service.create(&ticket).await;

    events.wait_for("qbt-1", "completed", STAGE_TIMEOUT).await;
    assert_eq!(events.states_of("qbt-1"), UNATTENDED);
    let shown = service.ticket("qbt-1").await;
    let approved = shown["history"].as_array().unwrap().iter().find(|e| e["to_state"] == "auto_approved").unwrap();
    let chosen = &approved["details"]["selected"]["candidate"];
    assert_eq!(chosen["title"], right.name.as_str(), "the right release was chosen");
    let fetched: Vec<&str> = chosen["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    // The fetched list keeps what the pipeline reads (audio, CUE, images, logs) and counts the rest.
    let seeded: Vec<&str> = right.files.iter().map(|f| f.path.as_str()).collect();
    let kept: Vec<&str> = seeded.iter().copied().filter(|path| listed_kind(path).is_some()).collect();
    assert!(kept.len() < seeded.len(), "the fixture seeds files the bound leaves out: {seeded:?}");
    assert_eq!(fetched.len(), kept.len(), "the file list came from the fetched metadata: {fetched:?}");
    assert!(kept.iter().all(|path| fetched.contains(path)), "{fetched:?} vs {kept:?}");
    assert_eq!(chosen["files_omitted"].as_u64(), Some((seeded.len() - kept.len()) as u64), "{chosen}");
    fixture.assert_delivered(&ticket, 44_100);

    // Neither the metadata fetches nor the download are left in qBittorrent or on disk.
    wait_for("our torrents to be removed", Duration::from_secs(60), || async {
        qbt.client.poll_all().await.unwrap().is_empty().then_some(())
    })
    .await;
    assert_nothing_left(&qbt.download_root(), &setup.data_dir().join("work"), &setup.media_root()).await;
}

/// What a user's own torrent looks like to qBittorrent itself, for before/after comparisons.
async fn users_torrent(qbt: &QbittorrentUnderTest, hash: &str) -> (Value, Value) {
    let info = raw_get_json(&qbt.managed, &format!("torrents/info?hashes={hash}")).await[0].clone();
    let files = raw_get_json(&qbt.managed, &format!("torrents/files?hash={hash}")).await;
    (info, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_qbittorrent_5_1_seeing_downloads_elsewhere_behind_a_base_path_is_shared_politely() {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    // The download folder: here at <tmp>/nas-downloads, for qBittorrent at /downloads (its own root).
    let nas = fixture.dir.path().join("nas-downloads");
    std::fs::create_dir_all(&nas).unwrap();
    let qbt = QbittorrentUnderTest::start_seeing(QbtVersion::V5_1, &[(nas.as_path(), "/downloads")], |_| {}).await;
    let proxy = ReverseProxy::start(qbt.managed.url(), "qbittorrent").await;

    // The user's own things: a category named like ours with its own save path, and a torrent of theirs (the live
    // album, which the ticket's search also finds as a magnet) in their category "music".
    let users = &fixture.swarm.albums[1];
    let users_hash = users.info_hash.to_string();
    raw_post_form(
        &qbt.managed,
        "torrents/createCategory",
        &[("category", "downloader2"), ("savePath", "/downloads/by-category")],
    )
    .await;
    let form = [
        ("urls", users.magnet.as_str()),
        ("savepath", "/downloads/users-own"),
        ("category", "music"),
        ("tags", "mine"),
    ];
    raw_post_form(&qbt.managed, "torrents/add", &form).await;
    wait_for("the user's torrent to complete", STAGE_TIMEOUT, || async {
        let (info, _) = users_torrent(&qbt, &users_hash).await;
        (info["progress"].as_f64() == Some(1.0) && info["state"] != "checkingUP").then_some(())
    })
    .await;
    let (users_before, users_files_before) = users_torrent(&qbt, &users_hash).await;
    assert_eq!(users_before["save_path"], "/downloads/users-own");

    // downloader2 reads the folder at its local path, sends qBittorrent the remote one, through the proxy.
    let mut setup = fixture.setup();
    setup.torrent_client = TorrentClientSetup::External {
        url: proxy.url(),
        username: qbt.managed.username().to_string(),
        password: qbt.managed.password().to_string(),
        download_path: nas.clone(),
    };
    setup.retry_max_attempts = 1;
    setup.qbittorrent_extra_toml =
        format!("path_mappings = [{{ remote = \"/downloads\", local = \"{}\" }}]\n", nas.display());
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;
    let ticket = fixture.ticket("nas-1", &setup, 44_100);
    service.create(&ticket).await;
    events.wait_for("nas-1", "completed", STAGE_TIMEOUT).await;
    assert_eq!(events.states_of("nas-1"), UNATTENDED);
    fixture.assert_delivered(&ticket, 44_100);
    let added = proxy.requests().into_iter().find(|r| r.path == "/api/v2/torrents/add").expect("added via the proxy");
    assert!(added.body.contains("/downloads/nas-1"), "the save path was sent in qBittorrent's form");
    assert!(!added.body.contains(&nas.display().to_string()), "the local path was sent to qBittorrent");
    wait_for("the ticket's torrent and files to be removed", Duration::from_secs(60), || async {
        let ours = qbt.client.poll_all().await.unwrap();
        (ours.is_empty() && files_under(&nas.join("nas-1")).is_empty()).then_some(())
    })
    .await;

    // Restarted without the mapping: the same download completes in qBittorrent, out of this machine's sight, and
    // the ticket fails (retryably) with an error naming both paths and the setting.
    service.stop();
    setup.qbittorrent_extra_toml = String::new();
    let service = ServiceProcess::start(&setup).await;
    service.create(&fixture.ticket("nas-2", &setup, 44_100)).await;
    let failed = service.wait_for_state("nas-2", "failed", STAGE_TIMEOUT).await;
    let state = &failed["state"];
    assert_eq!(state["retryable"], true, "{state}");
    let error = state["error"].as_str().unwrap();
    let local = nas.join("nas-2").display().to_string();
    assert!(error.contains("[qbittorrent] path_mappings"), "the setting is named: {error}");
    assert!(error.contains(&format!("qBittorrent keeps them in {local:?}")), "qBittorrent's path: {error}");
    assert!(error.contains(&format!("read here as {local:?}")), "the local path: {error}");
    assert!(error.contains("01 - Boarding.flac"), "the missing file: {error}");
    assert!(!Path::new(&local).join(&fixture.right().files[0].path).exists());

    // The user's torrent went through the full run, the reaper and a restart untouched.
    let (users_after, users_files_after) = users_torrent(&qbt, &users_hash).await;
    for key in ["category", "tags", "save_path", "ratio_limit", "seeding_time_limit", "progress", "name", "hash"] {
        assert_eq!(users_after[key], users_before[key], "{key} of the user's torrent changed");
    }
    let state = users_after["state"].as_str().unwrap();
    assert!(!state.starts_with("stopped") && !state.starts_with("paused"), "the user's torrent was stopped: {state}");
    assert_eq!(users_files_after, users_files_before, "file priorities of the user's torrent changed");
    for file in &users.files {
        assert_eq!(sha256_file(&nas.join("users-own").join(&file.path)), file.sha256, "{}", file.path);
    }
    let categories = raw_get_json(&qbt.managed, "torrents/categories").await;
    assert_eq!(categories["downloader2"]["savePath"], "/downloads/by-category", "{categories}");

    // And nothing was asked that could have touched it, or the client's settings.
    let requests = proxy.requests();
    assert!(requests.len() > 20, "the service talked through the proxy: {} requests", requests.len());
    for request in &requests {
        let action = request.path.trim_start_matches("/api/v2/");
        assert!(
            !matches!(
                action,
                "app/setPreferences"
                    | "torrents/createCategory"
                    | "torrents/editCategory"
                    | "torrents/removeCategories"
            ),
            "the service called {action} on an external qBittorrent"
        );
        if request.method == Method::POST {
            let named = request.body.to_ascii_lowercase().contains(&users_hash) || request.query.contains(&users_hash);
            assert!(!named, "the service sent {action} naming the user's torrent: {}", request.body);
        }
    }
}
