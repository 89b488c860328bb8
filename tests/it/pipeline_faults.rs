//! The pipeline under faults, end to end with real components (the `downloader2` binary, qbittorrent-nox, a
//! loopback swarm, ffmpeg) and a Torznab test server: an indexer answering 500s then recovering, the managed
//! qbittorrent-nox killed mid-download, the only seeder of the chosen release vanishing, and a corrupt file in the
//! torrent (refused by the audio verifier before conversion). Tickets are posted over HTTP; states are observed
//! over the WebSocket and the ticket's history.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use downloader2::torrent_client::TorrentClient;
use lofty::prelude::*;
use serde_json::{json, Value};

use crate::support::audio;
use crate::support::pipeline::{
    generate_flac_album, ticket_for, EventRecorder, GeneratedAlbum, ServiceProcess, ServiceSetup,
};
use crate::support::swarm::{wait_for, Album, Swarm};
use crate::support::torznab_server::{Download, Release, TorznabServer};

const ARTIST: &str = "Marrow Lane";
const ALBUM: &str = "Paper Satellites";
const YEAR: i32 = 2017;
pub(crate) const TITLE: &str = "Marrow Lane - Paper Satellites (2017) [FLAC 16-44]";
/// The same files in another torrent (another folder name, so another info hash).
pub(crate) const SECOND_TITLE: &str = "Marrow Lane - Paper Satellites (2017) [FLAC]";
const TRACKS: &[(&str, f64)] = &[("Static Bloom", 14.0), ("Kite Wire", 17.0), ("Orbit Song", 12.0)];
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);
/// The catalog's sample rate (the sources are 44.1 kHz too: no resampling needed for these tests).
const RATE: u32 = 44_100;

/// A generated album, its swarm (one torrent per title, all from the same files) and a Torznab server listing
/// every torrent as a .torrent link with the given seeder counts.
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
    album: GeneratedAlbum,
    pub(crate) swarm: Swarm,
    torznab: TorznabServer,
}

impl Fixture {
    /// `releases`: (torrent title, seeders announced by the indexer). `prepare` may alter the generated files
    /// before they are seeded.
    pub(crate) async fn new(releases: &[(&str, u64)], prepare: impl FnOnce(&GeneratedAlbum)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let album = generate_flac_album(&dir.path().join("sources"), TITLE, TRACKS, RATE);
        prepare(&album);
        let mut builder = Swarm::builder();
        for (title, _) in releases {
            builder = builder.album_from_files(title, &album.files);
        }
        let swarm = builder.build().await;
        let torznab = TorznabServer::start().await;
        let fixture = Fixture { dir, album, swarm, torznab };
        fixture.list(releases);
        fixture
    }

    /// Makes the indexer answer every search with the seeded torrents (`releases` as given to `new`).
    fn list(&self, releases: &[(&str, u64)]) {
        let size = |album: &Album| album.files.iter().map(|file| file.size).sum::<u64>();
        let listed = self
            .swarm
            .albums
            .iter()
            .zip(releases)
            .map(|(seeded, (_, seeders))| {
                Release::new(&seeded.name, "orpheus")
                    .download(Download::TorrentFile(seeded.torrent.to_vec()))
                    .size(size(seeded))
                    .seeders(*seeders, *seeders + 1)
            })
            .collect();
        self.torznab.set_results(listed);
    }

    pub(crate) fn setup(&self) -> ServiceSetup {
        ServiceSetup::new(&self.dir.path().join("service"), &self.torznab.url(), &self.torznab.api_key())
    }

    pub(crate) fn ticket(&self, id: &str, setup: &ServiceSetup) -> Value {
        ticket_for(id, &setup.media_root(), ARTIST, ALBUM, YEAR, &self.album.tracks, RATE)
    }
}

/// The ticket's history as `GET /api/v1/ticket/{id}` shows it.
pub(crate) fn history(shown: &Value) -> Vec<Value> {
    shown["history"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn entries_to<'a>(history: &'a [Value], state: &str) -> Vec<&'a Value> {
    history.iter().filter(|event| event["to_state"] == state && event["from_state"] != state).collect()
}

fn time_of(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap_or_default().parse().unwrap_or_else(|err| panic!("not a time: {value}: {err}"))
}

/// Every track is at its destination as Ogg Vorbis of the catalog's length and title.
fn assert_tracks_delivered(ticket: &Value) {
    for track in ticket["tracks"].as_array().unwrap() {
        let dest = Path::new(track["dest_path"].as_str().unwrap());
        assert!(dest.is_file(), "{} not placed", dest.display());
        let probe = audio::probe(dest);
        assert_eq!(audio::audio_stream(&probe)["codec_name"], "vorbis", "{}", dest.display());
        let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
        let expected = track["duration_secs"].as_f64().unwrap();
        assert!((duration - expected).abs() < 1.0, "{} lasts {duration} s, expected {expected}", dest.display());
        let tagged = lofty::read_from_path(dest).unwrap();
        assert_eq!(tagged.primary_tag().and_then(|tag| tag.title()).as_deref(), track["name"].as_str());
    }
}

/// The pid of a running process one of whose arguments is exactly `wanted` (not a zombie).
fn find_process_with_arg(wanted: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let zombie = stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z');
        (!zombie && cmdline.split(|b| *b == 0).any(|arg| arg == wanted.as_bytes())).then_some(pid)
    })
}

/// States a ticket does not leave without a human.
const DEAD_ENDS: [&str; 5] = ["needs_approval", "failed", "completed", "rejected", "cancelled"];

/// Waits for a state change of `id` to `state` over the WebSocket; on timeout, panics with the states seen and
/// the service log's tail.
pub(crate) async fn wait_state(events: &EventRecorder, service: &ServiceProcess, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + STAGE_TIMEOUT;
    loop {
        let found = events
            .messages()
            .into_iter()
            .find(|m| m["type"] == "state_change" && m["ticket_id"] == id && m["new_state"] == state);
        if let Some(message) = found {
            return message;
        }
        let states = events.states_of(id);
        let dead_end = states.iter().any(|seen| seen != state && DEAD_ENDS.contains(&seen.as_str()));
        assert!(
            !dead_end && std::time::Instant::now() < deadline,
            "no state_change of {id} to {state} (within {STAGE_TIMEOUT:?}); saw {:?}\n--- service log ---\n{}",
            events.states_of(id),
            service.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ticket's current download progress (percent), when it is downloading.
pub(crate) async fn download_progress(service: &ServiceProcess, id: &str) -> Option<f64> {
    let shown = service.ticket(id).await;
    let state = &shown["state"];
    (state["state"] == "downloading").then(|| state["progress_pct"].as_f64().unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexer_errors_are_retried_with_growing_delays_then_the_ticket_completes() {
    let fixture = Fixture::new(&[(TITLE, 12)], |_| {}).await;
    let setup = fixture.setup();
    // The searcher tries each request 3 times in-process before the stage fails: 9 failures make the search stage
    // itself fail (and get rescheduled) several times before the indexer recovers.
    let failures = 9;
    fixture.torznab.fail_next(failures, 500);
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("faults-500")).await;
    service.create(&fixture.ticket("faults-500", &setup)).await;

    wait_state(&events, &service, "faults-500", "completed").await;
    assert_eq!(
        events.states_of("faults-500"),
        ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"],
        "retries happen inside `searching`: no extra state changes"
    );
    let searches = fixture.torznab.searches();
    assert!(searches.len() > failures, "every failure was asked and then a search answered: {}", searches.len());

    let shown = service.ticket("faults-500").await;
    let history = history(&shown);
    let notes: Vec<&Value> =
        history.iter().filter(|event| event["from_state"] == "searching" && event["to_state"] == "searching").collect();
    let retries: Vec<&Value> = notes.iter().copied().filter(|event| event["details"]["retry"].is_object()).collect();
    let resumes: Vec<&Value> = notes.iter().copied().filter(|event| event["details"]["resumed"].is_object()).collect();
    assert_eq!(resumes.len(), retries.len(), "each retry's wait ends with a `resumed` note: {notes:#?}");
    assert_eq!(notes.len(), retries.len() + resumes.len(), "no other note: {notes:#?}");
    for (retry, resumed) in retries.iter().zip(&resumes) {
        assert!(resumed["seq"].as_i64() > retry["seq"].as_i64(), "resumed after its retry was scheduled");
        assert!(time_of(&resumed["at"]) >= time_of(&retry["details"]["retry"]["retry_at"]), "not before it was due");
    }
    assert!(retries.len() >= 2, "the search stage failed and was rescheduled more than once: {history:#?}");
    let mut delays = Vec::new();
    let mut previous_retry_at: Option<DateTime<Utc>> = None;
    for (n, event) in retries.iter().enumerate() {
        let retry = &event["details"]["retry"];
        assert_eq!(retry["attempt"], n + 1, "attempts count up from 1: {retry}");
        let error = retry["error"].as_str().unwrap();
        assert!(error.contains("500"), "the recorded error names the HTTP status: {error}");
        let at = time_of(&event["at"]);
        let retry_at = time_of(&retry["retry_at"]);
        if let Some(due) = previous_retry_at {
            assert!(at >= due, "attempt {} ran at {at}, before its retry time {due}", n + 1);
        }
        previous_retry_at = Some(retry_at);
        delays.push((retry_at - at).num_milliseconds());
    }
    // retry_initial_delay_secs = 1 doubling, capped by retry_max_delay_secs = 2 (the recorded times are kept to
    // the millisecond, so allow one).
    for (n, delay) in delays.iter().enumerate() {
        let expected: i64 = 1000 * (1i64 << n.min(1));
        assert!((delay - expected).abs() <= 1, "delay before retry {} is {delay} ms, expected {expected}", n + 1);
    }
    assert!(delays[1] > delays[0], "the delay grows: {delays:?}");
    let last_retry_seq = retries.last().unwrap()["seq"].as_i64().unwrap();
    let matching = entries_to(&history, "matching");
    assert_eq!(matching.len(), 1);
    assert!(matching[0]["seq"].as_i64().unwrap() > last_retry_seq, "the search succeeded after the last retry");
    assert!(history.iter().all(|event| event["to_state"] != "failed"), "never failed: {history:#?}");
    assert_tracks_delivered(&fixture.ticket("faults-500", &setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_album_no_indexer_has_rests_in_failed_then_is_searched_again_by_itself_and_completes() {
    let fixture = Fixture::new(&[(TITLE, 12)], |_| {}).await;
    fixture.torznab.set_results(Vec::new());
    let mut setup = fixture.setup();
    setup.retry_max_attempts = 1;
    let rest_secs = 4;
    setup.rest_retry_after_secs = rest_secs;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("faults-rest")).await;
    service.create(&fixture.ticket("faults-rest", &setup)).await;

    // Nothing found, twice (one automatic retry): the ticket rests.
    let failed = wait_state(&events, &service, "faults-rest", "failed").await;
    assert_eq!(failed["details"]["retryable"], true, "{failed}");
    assert!(failed["details"]["error"].as_str().unwrap().contains("no search results"), "{failed}");
    // The album appears at the indexer; nobody touches the ticket.
    fixture.list(&[(TITLE, 12)]);
    events.wait_for("faults-rest", "completed", STAGE_TIMEOUT).await;

    let history = history(&service.ticket("faults-rest").await);
    let rested = entries_to(&history, "failed");
    assert_eq!(rested.len(), 1, "{history:#?}");
    let woken = history.iter().find(|event| event["from_state"] == "failed").expect("a move out of failed");
    assert_eq!(woken["details"]["actor"], "scheduler", "retried by the scheduler, not by an admin");
    let rested_for = time_of(&woken["at"]) - time_of(&rested[0]["at"]);
    assert!(rested_for.num_milliseconds() >= 1000 * i64::try_from(rest_secs).unwrap(), "rested only {rested_for}");
    assert_tracks_delivered(&fixture.ticket("faults-rest", &setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_managed_qbittorrent_is_restarted_and_the_download_resumes() {
    let fixture = Fixture::new(&[(TITLE, 12)], |_| {}).await;
    let mut setup = fixture.setup();
    // The only seeder still holds the killed instance's uTP connection (no FIN on SIGKILL) and refuses the new
    // one from the same address; libtorrent then waits its `min_reconnect_time` (60 s) before trying that peer
    // again. The stall timeout must outlast that (the production default is 600 s).
    setup.stall_timeout_secs = 180;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("faults-kill")).await;
    let seeder = &fixture.swarm.seeder().client;
    seeder.set_preferences(&json!({"up_limit": 100_000})).await.unwrap();
    service.create(&fixture.ticket("faults-kill", &setup)).await;

    wait_state(&events, &service, "faults-kill", "downloading").await;
    wait_for("some download progress", Duration::from_secs(120), || async {
        download_progress(&service, "faults-kill").await.filter(|pct| *pct > 0.0).map(|_| ())
    })
    .await;
    let profile_arg = format!("--profile={}", setup.data_dir().join("qbittorrent").display());
    let first = find_process_with_arg(&profile_arg)
        .unwrap_or_else(|| panic!("no qbittorrent-nox with {profile_arg} running:\n{}", service.log_tail()));
    let killed = std::process::Command::new("kill").args(["-KILL", &first.to_string()]).status().unwrap();
    assert!(killed.success(), "kill -9 {first}");
    let second = wait_for("the service to restart qbittorrent-nox", Duration::from_secs(60), || async {
        find_process_with_arg(&profile_arg).filter(|pid| *pid != first)
    })
    .await;
    assert_ne!(second, first);
    seeder.set_preferences(&json!({"up_limit": 0})).await.unwrap();

    wait_state(&events, &service, "faults-kill", "completed").await;
    assert_eq!(
        events.states_of("faults-kill"),
        ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"],
        "the download resumed in place: {}",
        service.log_tail()
    );
    let history = history(&service.ticket("faults-kill").await);
    assert_eq!(entries_to(&history, "downloading").len(), 1, "one download: {history:#?}");
    assert!(history.iter().all(|event| event["details"].get("fallback_from").is_none()), "no fallback");
    assert!(history.iter().all(|event| event["to_state"] != "failed"), "no failure");
    assert_eq!(find_process_with_arg(&profile_arg), Some(second), "the restarted instance is still the one running");
    assert_tracks_delivered(&fixture.ticket("faults-kill", &setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vanished_only_seeder_stalls_the_download_and_the_next_candidate_completes_it() {
    // The same album twice: the first announced with more seeders, so it is chosen first.
    let fixture = Fixture::new(&[(TITLE, 40), (SECOND_TITLE, 6)], |_| {}).await;
    let first_hash = fixture.swarm.albums[0].info_hash.clone();
    let second_hash = fixture.swarm.albums[1].info_hash.clone();
    let mut setup = fixture.setup();
    setup.stall_timeout_secs = 8;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("faults-stall")).await;
    let seeder = &fixture.swarm.seeder().client;
    seeder.set_preferences(&json!({"up_limit": 100_000})).await.unwrap();
    service.create(&fixture.ticket("faults-stall", &setup)).await;

    let approved = wait_state(&events, &service, "faults-stall", "auto_approved").await;
    let shown = service.ticket("faults-stall").await;
    let first_choice = entries_to(&history(&shown), "auto_approved")[0]["details"]["selected"]["candidate"].clone();
    assert_eq!(first_choice["title"], TITLE, "the better-seeded release is chosen first: {approved}");
    wait_state(&events, &service, "faults-stall", "downloading").await;
    wait_for("some download progress", Duration::from_secs(120), || async {
        download_progress(&service, "faults-stall").await.filter(|pct| *pct > 0.0).map(|_| ())
    })
    .await;
    // The only seeder drops the chosen torrent: nobody has its data any more.
    seeder.remove_torrent(&first_hash, false).await.unwrap();
    seeder.set_preferences(&json!({"up_limit": 0})).await.unwrap();

    wait_state(&events, &service, "faults-stall", "completed").await;
    assert_eq!(
        events.states_of("faults-stall"),
        [
            "pending",
            "searching",
            "matching",
            "auto_approved",
            "downloading",
            "auto_approved",
            "downloading",
            "converting",
            "placing",
            "completed"
        ],
        "stalled, then the next candidate: {}",
        service.log_tail()
    );
    let history = history(&service.ticket("faults-stall").await);
    let approvals = entries_to(&history, "auto_approved");
    let fallback = approvals[1];
    assert_eq!(fallback["from_state"], "downloading");
    assert_eq!(fallback["details"]["fallback_from"], first_hash.to_string(), "the dead torrent is named");
    let reason = fallback["details"]["error"].as_str().unwrap();
    assert!(reason.contains("stalled"), "the fallback says why: {reason}");
    let chosen = &fallback["details"]["selected"]["candidate"];
    assert_eq!(chosen["title"], SECOND_TITLE);
    assert_eq!(chosen["info_hash"], second_hash.to_string());
    let downloads = entries_to(&history, "downloading");
    assert_eq!(downloads.len(), 2);
    assert_eq!(downloads[1]["details"]["torrent_hash"], second_hash.to_string(), "completed from the second torrent");
    assert!(history.iter().all(|event| event["to_state"] != "failed"), "no failure: {history:#?}");
    assert_tracks_delivered(&fixture.ticket("faults-stall", &setup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_file_in_the_torrent_is_refused_naming_the_file() {
    // Same name and size as the real track, but garbage from the first byte: no FLAC header at all.
    assert_corrupt_track_refused("faults-corrupt", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flac_with_garbage_frames_is_refused_naming_the_file() {
    // The FLAC header, STREAMINFO and tags survive (the first 8 KiB), the audio frames after them are garbage: the
    // file probes as a FLAC of the right length, and only decoding shows it is broken.
    assert_corrupt_track_refused("faults-frames", 8 * 1024).await;
}

/// Deterministic bytes that are not audio.
fn garbage(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_be_bytes()[4]
        })
        .collect()
}

/// Seeds the album with track 2 overwritten by garbage from byte `keep` on (same size), and expects the audio
/// verifier to refuse the release before conversion: the ticket waits in `needs_approval` with reason
/// `corrupt_download` naming that file (and only it), the release is blocklisted, nothing is placed.
async fn assert_corrupt_track_refused(id: &str, keep: usize) {
    let corrupt_name = format!("02 - {}.flac", TRACKS[1].0);
    let fixture = Fixture::new(&[(TITLE, 12)], |album| {
        let (_, path) = album.files.iter().find(|(name, _)| *name == corrupt_name).unwrap();
        let mut bytes = std::fs::read(path).unwrap();
        let tail = garbage(bytes.len() - keep);
        bytes[keep..].copy_from_slice(&tail);
        std::fs::write(path, bytes).unwrap();
    })
    .await;
    let hash = fixture.swarm.albums[0].info_hash.to_string();
    let setup = fixture.setup();
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some(id)).await;
    let ticket = fixture.ticket(id, &setup);
    service.create(&ticket).await;

    wait_state(&events, &service, id, "needs_approval").await;
    let shown = service.ticket(id).await;
    let state = &shown["state"];
    assert_eq!(state["reason"]["type"], "corrupt_download", "{state}");
    let verification = &state["reason"]["verification"];
    assert_eq!(verification["info_hash"], hash.as_str(), "{verification}");
    let tracks = verification["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), TRACKS.len(), "every mapped file verified: {verification}");
    for track in tracks {
        let path = track["file"]["path"].as_str().unwrap();
        let verdict = track["file"]["verdict"].as_str().unwrap();
        if path.ends_with(&corrupt_name) {
            assert_eq!(verdict, "corrupt", "{track}");
            assert!(!track["file"]["reason"].as_str().unwrap().is_empty(), "{track}");
        } else {
            assert_ne!(verdict, "corrupt", "only the damaged file is blamed: {track}");
        }
    }
    let history = history(&shown);
    let refusal = entries_to(&history, "needs_approval")[0];
    assert_eq!(refusal["from_state"], "converting", "{refusal}");
    let error = refusal["details"]["error"].as_str().unwrap();
    assert!(error.contains(&corrupt_name), "the refusal names the corrupt file {corrupt_name:?}: {error}");
    let blocklist = service.get_json("/api/v1/blocklist").await;
    let entries = blocklist["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|entry| entry["info_hash"] == hash.as_str() && entry["reason"] == "corrupt_download"),
        "the release is blocklisted: {blocklist}"
    );
    assert!(history.iter().all(|event| event["to_state"] != "failed"), "no failure: {history:#?}");
    for track in ticket["tracks"].as_array().unwrap() {
        let dest = Path::new(track["dest_path"].as_str().unwrap());
        assert!(!dest.exists(), "nothing placed for a refused release: {}", dest.display());
    }
}
