//! Crash recovery of the pipeline with real components: the `downloader2` binary is SIGKILLed while a ticket is in
//! `searching`, `downloading`, `converting` and `placing`, and restarted with the same config. Each kill is proven
//! (the SQLite file read right after the kill shows the state, and the history's transition out of it is dated
//! after the kill); the ticket must then complete exactly once, with no duplicate torrent in qBittorrent, no stray
//! temporary or work file, and the right files at its destinations. A managed qbittorrent-nox orphaned by a kill
//! must be stopped by the restarted service. Everything talks to loopback only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use downloader2::torrent_client::TorrentClient;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::support::pipeline::{
    assert_nothing_left, external_client, files_under, AlbumNames, AlbumStack, EventRecorder, ServiceProcess,
    ServiceSetup,
};
use crate::support::swarm::{wait_for, QbittorrentUnderTest};

const NAMES: AlbumNames = AlbumNames {
    artist: "Ember Coast",
    album: "Night Ferries",
    year: 2017,
    right_title: RIGHT_TITLE,
    live_title: "Ember Coast - Live in Harbour Hall (2020) [FLAC]",
    tribute_title: "VA - A Tribute to Ember Coast: Night Ferries Revisited (2021) [MP3 320]",
};
const RIGHT_TITLE: &str = "Ember Coast - Night Ferries (2017) [FLAC 16-48]";
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);
/// Output sample rate (the source is 48 kHz: a real resampling).
const RATE_HZ: u32 = 44_100;

/// Several tracks of 20-30 s: conversion takes a few seconds, placement writes a dozen fsynced files.
const TRACKS: &[(&str, f64)] = &[
    ("Harbour Lights", 22.0),
    ("Undertow", 26.0),
    ("Paper Compass", 21.0),
    ("Foghorn Choir", 28.0),
    ("Last Crossing", 24.0),
    ("Driftwood", 20.0),
];

/// One SIGKILL: the wall-clock instants around it and the state the SQLite file held right after it.
#[derive(Debug, Clone)]
struct Kill {
    state: String,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
}

/// SIGKILLs the service and proves the ticket was in `state` when it died: the SQLite file, read right after the
/// kill (no process writes it any more), holds that state.
async fn kill_in(service: &mut ServiceProcess, setup: &ServiceSetup, id: &str, state: &'static str) -> Kill {
    let before = Utc::now();
    service.kill();
    let after = Utc::now();
    let stored = stored_state_kind(&setup.data_dir().join("downloader2.db"), id).await;
    assert_eq!(
        stored,
        state,
        "the kill was meant to land in {state}, the database says {stored}:\n{}",
        service.log_tail()
    );
    Kill { state: state.to_string(), before, after }
}

/// The ticket's `state_kind` column as the SQLite file holds it (the WAL of the dead process is replayed on open).
async fn stored_state_kind(db: &Path, id: &str) -> String {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let kind: String = sqlx::query_scalar("SELECT state_kind FROM tickets WHERE id = ?1")
        .bind(id)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    kind
}

/// Waits (polling every 2 ms, so the kill follows the event closely) for a state change of `id` to `state`.
async fn wait_event_closely(events: &EventRecorder, id: &str, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = events
            .messages()
            .iter()
            .any(|m| m["type"] == "state_change" && m["ticket_id"] == id && m["new_state"] == state);
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no state_change of {id} to {state} within {timeout:?}; saw {:?}",
            events.states_of(id)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn event_at(event: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(event["at"].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// The history proves the kill interrupted `kill.state`: the ticket entered it before the kill, and the transition
/// out of it was written after the kill (by the restarted process).
fn assert_kill_interrupted(history: &[Value], kill: &Kill) {
    let entered = history
        .iter()
        .rposition(|event| event["to_state"] == kill.state && event_at(event) <= kill.before)
        .unwrap_or_else(|| panic!("no entry into {} before the kill at {}: {history:#?}", kill.state, kill.before));
    let left = history
        .get(entered + 1)
        .unwrap_or_else(|| panic!("the ticket never left {} after the kill: {history:#?}", kill.state));
    assert!(
        event_at(left) >= kill.after,
        "the ticket left {} at {} (to {}), before the kill ended at {}: the kill did not interrupt it",
        kill.state,
        left["at"],
        left["to_state"],
        kill.after
    );
}

/// Exactly one `completed` entry: the ticket was completed once, whatever the kills. And no detour: every kill
/// resumed the interrupted state in place, so the history is the uninterrupted path, each state entered once (no
/// `failed`, no retry through another state, no second download).
fn assert_completed_once(history: &[Value]) {
    let completions = history.iter().filter(|event| event["to_state"] == "completed").count();
    assert_eq!(completions, 1, "completed {completions} times: {history:#?}");
    let path: Vec<&str> = history.iter().map(|event| event["to_state"].as_str().unwrap()).collect();
    assert_eq!(
        path,
        ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"],
        "each state once, in order"
    );
}

/// Lists the test-started client's torrents and fails on two entries with the same hash. Returns the hashes.
async fn unique_torrents(qbt: &QbittorrentUnderTest) -> Vec<String> {
    let hashes: Vec<String> = qbt.client.poll_all().await.unwrap().iter().map(|s| s.hash.to_string()).collect();
    let mut distinct = hashes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), hashes.len(), "duplicate torrents in qBittorrent: {hashes:?}");
    hashes
}

/// The completed ticket's record: the right release, every track mapped, every destination accounted for once.
fn assert_completion_record(shown: &Value, id: &str) {
    let history = shown["history"].as_array().unwrap();
    let approved = history.iter().rev().find(|event| event["to_state"] == "auto_approved").unwrap();
    assert_eq!(approved["details"]["selected"]["candidate"]["title"], RIGHT_TITLE, "the right release was chosen");
    let mapping = approved["details"]["selected"]["track_mapping"].as_array().unwrap();
    for (n, (name, _)) in TRACKS.iter().enumerate() {
        let expected = format!("{RIGHT_TITLE}/{:02} - {name}.flac", n + 1);
        let mapped = mapping.iter().find(|m| m["catalog_track_id"] == format!("{id}-t{}", n + 1)).unwrap();
        assert_eq!(mapped["torrent_file_path"], expected.as_str());
    }
    let stats = &shown["state"]["stats"];
    let placed = stats["placed_files"].as_array().unwrap().len();
    let skipped = stats["skipped_files"].as_array().map_or(0, Vec::len);
    // A placement interrupted by a kill leaves some destinations already identical: they count as skipped.
    assert_eq!(placed + skipped, TRACKS.len() + 1, "every track and the cover, each once: {stats}");
    assert_eq!(stats["missing_track_ids"], json!([]));
    assert!(stats["final_size_bytes"].as_u64().unwrap() > 0);
}

/// Waits until the ticket downloads and has received some payload (the API shows progress above 0).
async fn wait_for_download_progress(service: &ServiceProcess, id: &str) {
    wait_for("the download to make some progress", STAGE_TIMEOUT, || async {
        let shown = service.ticket(id).await;
        let state = &shown["state"];
        assert_ne!(state["state"], "converting", "the throttled download finished before the kill");
        (state["state"] == "downloading" && state["progress_pct"].as_f64().is_some_and(|pct| pct > 0.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticket_killed_in_searching_downloading_converting_and_placing_completes_once() {
    let id = "crash-1";
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    let ticket = fixture.ticket(id, &setup, RATE_HZ);
    let mut kills = Vec::new();
    // The download is throttled from the start, so it is still running when the service is killed in it.
    qbt.limit_download_rate(96 * 1024).await;

    // 1. searching: the first indexer request hangs.
    fixture.torznab.slow_next(1, Duration::from_secs(15));
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some(id)).await;
    service.create(&ticket).await;
    wait_event_closely(&events, id, "searching", STAGE_TIMEOUT).await;
    kills.push(kill_in(&mut service, &setup, id, "searching").await);
    assert_eq!(unique_torrents(&qbt).await, Vec::<String>::new(), "nothing added while searching");

    // 2. downloading: some payload received, the torrent still incomplete.
    let mut service = ServiceProcess::start(&setup).await;
    wait_for_download_progress(&service, id).await;
    assert_eq!(unique_torrents(&qbt).await, [fixture.right().info_hash.to_string()]);
    kills.push(kill_in(&mut service, &setup, id, "downloading").await);

    // 3. converting: the restarted service follows the same torrent (not a second one) to its end.
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some(id)).await;
    assert_eq!(unique_torrents(&qbt).await, [fixture.right().info_hash.to_string()], "re-attached, not re-added");
    qbt.limit_download_rate(0).await;
    wait_event_closely(&events, id, "converting", STAGE_TIMEOUT).await;
    kills.push(kill_in(&mut service, &setup, id, "converting").await);
    assert_eq!(unique_torrents(&qbt).await, [fixture.right().info_hash.to_string()]);

    // 4. placing.
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some(id)).await;
    wait_event_closely(&events, id, "placing", STAGE_TIMEOUT).await;
    kills.push(kill_in(&mut service, &setup, id, "placing").await);
    assert!(unique_torrents(&qbt).await.len() <= 1);
    let at_kill = files_under(&setup.media_root());
    let temporary = at_kill.iter().filter(|path| path.contains(downloader2::placer::TEMP_PREFIX)).count();
    eprintln!(
        "placing killed with {} of {} destinations written, {temporary} temporary names",
        at_kill.len() - temporary,
        TRACKS.len() + 1
    );

    // The last run finishes the ticket.
    let service = ServiceProcess::start(&setup).await;
    service.wait_for_state(id, "completed", STAGE_TIMEOUT).await;
    let shown = service.ticket(id).await;
    let history = shown["history"].as_array().unwrap();
    for kill in &kills {
        assert_kill_interrupted(history, kill);
    }
    assert_completed_once(history);
    assert_completion_record(&shown, id);
    fixture.assert_delivered(&ticket, RATE_HZ);
    wait_for("the finished torrent to be removed", Duration::from_secs(60), || async {
        unique_torrents(&qbt).await.is_empty().then_some(())
    })
    .await;
    let data = setup.data_dir();
    assert_nothing_left(&qbt.download_root(), &data.join("work"), &setup.media_root()).await;
    print_timings(history, &service);
}

/// Prints how long each state lasted in the final history (for the report; nothing is asserted on it).
fn print_timings(history: &[Value], service: &ServiceProcess) {
    for pair in history.windows(2) {
        let lasted = event_at(&pair[1]) - event_at(&pair[0]);
        eprintln!("{} -> {}: {} ms", pair[0]["to_state"], pair[1]["to_state"], lasted.num_milliseconds());
    }
    eprintln!("service log: {}", service.log_path.display());
}

/// The pids of live processes whose command line holds `--profile=<profile>` (the managed qbittorrent-nox).
fn processes_on_profile(profile: &Path) -> Vec<u32> {
    let wanted = format!("--profile={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z');
            (!zombie && cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes())).then_some(pid)
        })
        .collect()
}

/// Kills (by pid) any qbittorrent-nox still running on the test's profile when the test ends, so a failing test
/// leaves no orphan behind. Declared before the service, so it runs after the service stopped.
struct OrphanGuard(PathBuf);

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        for pid in processes_on_profile(&self.0) {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_service_stops_its_orphaned_qbittorrent_and_finishes_the_download() {
    let id = "crash-managed-1";
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let setup = fixture.setup();
    let profile = setup.data_dir().join("qbittorrent");
    let _orphans = OrphanGuard(profile.clone());
    let ticket = fixture.ticket(id, &setup, RATE_HZ);
    // The seeder uploads slowly, so the download is still running when the service is killed.
    let seeder = &fixture.swarm.seeder().client;
    seeder.set_preferences(&json!({"up_limit": 96 * 1024})).await.unwrap();

    let mut service = ServiceProcess::start(&setup).await;
    let managed = processes_on_profile(&profile);
    assert_eq!(managed.len(), 1, "one managed qbittorrent-nox on {}: {managed:?}", profile.display());
    service.create(&ticket).await;
    wait_for_download_progress(&service, id).await;
    let kill = kill_in(&mut service, &setup, id, "downloading").await;
    // SIGKILL runs no clean-up: the managed qbittorrent-nox is now an orphan, still running.
    assert_eq!(processes_on_profile(&profile), managed, "the managed qbittorrent-nox outlives a SIGKILL");

    let mut service = ServiceProcess::start(&setup).await;
    wait_for("the orphan to be stopped", Duration::from_secs(30), || async {
        (!processes_on_profile(&profile).contains(&managed[0])).then_some(())
    })
    .await;
    let running = processes_on_profile(&profile);
    assert_eq!(running.len(), 1, "exactly one qbittorrent-nox on the profile after the restart: {running:?}");
    seeder.set_preferences(&json!({"up_limit": 0})).await.unwrap();

    service.wait_for_state(id, "completed", STAGE_TIMEOUT).await;
    let shown = service.ticket(id).await;
    let history = shown["history"].as_array().unwrap();
    assert_kill_interrupted(history, &kill);
    // One `downloading` entry in the path: the download was resumed, not started again.
    assert_completed_once(history);
    assert_completion_record(&shown, id);
    fixture.assert_delivered(&ticket, RATE_HZ);
    let data = setup.data_dir();
    assert_nothing_left(&data.join("downloads"), &data.join("work"), &setup.media_root()).await;
    print_timings(history, &service);

    service.stop();
    wait_for("the managed qbittorrent-nox to stop with the service", Duration::from_secs(30), || async {
        processes_on_profile(&profile).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tickets_sharing_a_torrent_survive_a_kill_in_converting() {
    let ids = ["crash-pair-a", "crash-pair-b"];
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    let tickets: Vec<Value> = ids.iter().map(|id| fixture.ticket(id, &setup, RATE_HZ)).collect();
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;
    for ticket in &tickets {
        service.create(ticket).await;
    }
    wait_event_closely(&events, ids[0], "converting", STAGE_TIMEOUT).await;
    let first = kill_in(&mut service, &setup, ids[0], "converting").await;
    // The other ticket is wherever it was; its kill is proven the same way if it was in a working state.
    let other_state = stored_state_kind(&setup.data_dir().join("downloader2.db"), ids[1]).await;
    eprintln!("second ticket was {other_state} at the kill");
    let other = Kill { state: other_state, ..first.clone() };
    // Both tickets chose the same release: one torrent, never two.
    assert_eq!(unique_torrents(&qbt).await, [fixture.right().info_hash.to_string()]);

    let service = ServiceProcess::start(&setup).await;
    for id in ids {
        service.wait_for_state(id, "completed", STAGE_TIMEOUT).await;
        assert!(unique_torrents(&qbt).await.len() <= 1);
    }
    for (id, ticket) in ids.iter().zip(&tickets) {
        let shown = service.ticket(id).await;
        let history = shown["history"].as_array().unwrap();
        assert_completed_once(history);
        assert_completion_record(&shown, id);
        fixture.assert_delivered(ticket, RATE_HZ);
    }
    let first_history = service.ticket(ids[0]).await["history"].as_array().unwrap().clone();
    assert_kill_interrupted(&first_history, &first);
    let working = ["searching", "matching", "auto_approved", "downloading", "converting", "placing"];
    if working.contains(&other.state.as_str()) {
        let other_history = service.ticket(ids[1]).await["history"].as_array().unwrap().clone();
        assert_kill_interrupted(&other_history, &other);
    }
    wait_for("the shared torrent to be removed", Duration::from_secs(60), || async {
        unique_torrents(&qbt).await.is_empty().then_some(())
    })
    .await;
    let data = setup.data_dir();
    assert_nothing_left(&qbt.download_root(), &data.join("work"), &setup.media_root()).await;
}
