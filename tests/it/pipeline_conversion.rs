//! Conversion through the whole pipeline on the real `downloader2` binary (loopback swarm, the managed
//! qbittorrent-nox, a Torznab test server):
//! - the failing album: a correct FLAC of a mono recording (both channels identical), asked as Ogg Vorbis
//!   at 192, 256 and 320 kbit/s by three tickets sharing one torrent, completes for each, and a completed ticket
//!   leaves nothing under the download dir (no files, no empty `<ticket id>/` folder);
//! - a SIGKILLed service in `converting` leaves no ffmpeg/ffprobe child alive one second later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::app::ADMIN_TOKEN;
use crate::support::audio;
use crate::support::corpus::Corpus;
use crate::support::pipeline::{external_client, ticket_for, EventRecorder, ServiceProcess, ServiceSetup};
use crate::support::swarm::{require_program, QbittorrentUnderTest, Swarm};
use crate::support::torznab_server::{Download, Release, TorznabServer};

const STAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// One release seeded on a loopback swarm and offered by a Torznab test server.
struct OneRelease {
    dir: tempfile::TempDir,
    /// Seeds while the test runs.
    _swarm: Swarm,
    torznab: TorznabServer,
    title: String,
    tracks: Vec<(String, f64)>,
}

impl OneRelease {
    /// Seeds `title` holding `files` (torrent-relative name, file) whose first `tracks.len()` are the tracks, offered
    /// as a .torrent link. With `decoy`, a live album of random bytes is seeded too and offered as a magnet, as real
    /// indexers do (the matcher then fetches its metadata into the download dir).
    async fn seed(
        dir: tempfile::TempDir,
        title: &str,
        tracks: Vec<(String, f64)>,
        files: Vec<(String, PathBuf)>,
        decoy: Option<&str>,
    ) -> Self {
        let mut builder = Swarm::builder().album_from_files(title, &files);
        let decoy_files: Vec<(String, u64)> = tracks
            .iter()
            .enumerate()
            .map(|(n, (name, _))| (format!("{:02} - {name} (Live).flac", n + 1), 700_000))
            .collect();
        if let Some(decoy) = decoy {
            let refs: Vec<(&str, u64)> = decoy_files.iter().map(|(name, size)| (name.as_str(), *size)).collect();
            builder = builder.album(decoy, &refs);
        }
        let swarm = builder.build().await;
        let torznab = TorznabServer::start().await;
        let size = |album: &crate::support::swarm::Album| album.files.iter().map(|file| file.size).sum::<u64>();
        let album = &swarm.albums[0];
        let mut releases = vec![Release::new(title, "orpheus")
            .download(Download::TorrentFile(album.torrent.to_vec()))
            .size(size(album))
            .seeders(5, 6)];
        if let (Some(decoy), Some(album)) = (decoy, swarm.albums.get(1)) {
            let mut live = Release::new(decoy, "1337x").size(size(album)).seeders(9, 9);
            live.magnet = Some(album.magnet.clone());
            live.infohash = Some(album.info_hash.to_string());
            releases.insert(0, live);
        }
        torznab.set_results(releases);
        OneRelease { dir, _swarm: swarm, torznab, title: title.to_string(), tracks }
    }

    fn setup(&self) -> ServiceSetup {
        ServiceSetup::new(&self.dir.path().join("service"), &self.torznab.url(), &self.torznab.api_key())
    }
}

/// Approves the offered release if the matcher asked an admin (sizes of unusual audio may lower its confidence);
/// either way the ticket must reach `downloading`.
async fn approve_if_asked(service: &ServiceProcess, events: &EventRecorder, id: &str, title: &str) {
    let deadline = Instant::now() + STAGE_TIMEOUT;
    loop {
        let states = events.states_of(id);
        if states.iter().any(|state| state == "downloading" || state == "converting") {
            return;
        }
        if states.last().map(String::as_str) == Some("needs_approval") {
            let shown = service.ticket(id).await;
            let candidates = shown["state"]["candidates"].as_array().cloned().unwrap_or_default();
            let idx = candidates
                .iter()
                .position(|c| c["candidate"]["title"] == title)
                .unwrap_or_else(|| panic!("{title} is not among the candidates of {id}: {}", shown["state"]));
            let response = service
                .post(&format!("/api/v1/ticket/{id}/approve"), ADMIN_TOKEN, &json!({"candidate_idx": idx}))
                .await;
            assert_eq!(response.status(), 200);
            return;
        }
        assert!(Instant::now() < deadline, "{id} never got to downloading: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every entry under `dir` (files and directories), relative.
fn entries_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A mono recording: `count` tracks cut from the corpus music, folded to one channel and written twice (left =
/// right), 16-bit FLAC, plus a cover.
/// An album's tracks (name, seconds) and files (torrent-relative name, file on disk).
type AlbumParts = (Vec<(String, f64)>, Vec<(String, PathBuf)>);

fn mono_album(dir: &Path, count: usize, secs: f64) -> AlbumParts {
    let corpus = Corpus::get();
    let music = corpus.source("music").path.clone();
    std::fs::create_dir_all(dir).unwrap();
    let names = ["Dust Road", "Low Lantern", "Quarry Song", "Paper Moon Blues"];
    let mut tracks = Vec::new();
    let mut files = Vec::new();
    for (n, name) in names.iter().take(count).enumerate() {
        let file = format!("{:02} - {name}.flac", n + 1);
        let path = dir.join(&file);
        let start = format!("{}", n as f64 * 35.0);
        audio::ffmpeg(&[
            "-ss",
            &start,
            "-t",
            &secs.to_string(),
            "-i",
            music.to_str().unwrap(),
            "-af",
            "pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0+0.5*c1",
            "-c:a",
            "flac",
            "-sample_fmt",
            "s16",
            path.to_str().unwrap(),
        ]);
        tracks.push((name.to_string(), secs));
        files.push((file, path));
    }
    let cover = dir.join("cover.jpg");
    std::fs::copy(&corpus.cover, &cover).unwrap();
    files.push(("cover.jpg".to_string(), cover));
    (tracks, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mono_recording_completes_as_vorbis_at_192_256_and_320_and_leaves_no_download_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (tracks, files) = mono_album(&dir.path().join("sources"), 3, 40.0);
    let title = "Harbour Mono - Dust Records (1958) [FLAC]";
    let decoy = "Harbour Mono - Live at the Pier (1961) [FLAC]";
    let release = OneRelease::seed(dir, title, tracks, files, Some(decoy)).await;
    let setup = release.setup();
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;

    let mut tickets = Vec::new();
    for kbps in [192, 256, 320] {
        let id = format!("mono-{kbps}");
        let mut ticket =
            ticket_for(&id, &setup.media_root(), "Harbour Mono", "Dust Records", 1958, &release.tracks, 44_100);
        ticket["constraints"]["bitrate_kbps"] = json!(kbps);
        service.create(&ticket).await;
        tickets.push((id, kbps, ticket));
    }
    for (id, _, _) in &tickets {
        approve_if_asked(&service, &events, id, &release.title).await;
    }
    for (id, kbps, ticket) in &tickets {
        let shown = service.wait_for_state(id, "completed", STAGE_TIMEOUT).await;
        let history = shown["history"].as_array().unwrap();
        assert!(history.iter().all(|event| event["to_state"] != "failed"), "{id} never failed: {history:#?}");
        for track in ticket["tracks"].as_array().unwrap() {
            let dest = Path::new(track["dest_path"].as_str().unwrap());
            let probe = audio::probe(dest);
            let stream = audio::audio_stream(&probe);
            assert_eq!(stream["codec_name"], "vorbis", "{}", dest.display());
            assert_eq!(stream["channels"], 2, "{}", dest.display());
            assert_eq!(stream["sample_rate"], "44100", "{}", dest.display());
            let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
            assert!((duration - 40.0).abs() < 0.2, "{} lasts {duration}", dest.display());
            let actual = audio::audio_payload_kbps(dest);
            eprintln!("{}: {actual:.0} kbit/s for {kbps}", dest.display());
            assert!(actual <= f64::from(*kbps) * 1.15, "{}: {actual:.0} kbit/s for {kbps}", dest.display());
            let tagged = lofty::read_from_path(dest).unwrap();
            let tag = lofty::file::TaggedFileExt::primary_tag(&tagged).expect("a Vorbis comment block");
            assert_eq!(lofty::tag::Accessor::title(tag).as_deref(), track["name"].as_str());
            assert_eq!(tag.pictures().len(), 1, "{}: the cover is embedded", dest.display());
        }
    }

    // The torrent goes once no ticket needs it, and with it the ticket's folder under the download dir.
    let downloads = setup.data_dir().join("downloads");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !entries_under(&downloads).is_empty() {
        assert!(Instant::now() < deadline, "left under the download dir: {:?}", entries_under(&downloads));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(entries_under(&setup.data_dir().join("work")), Vec::<String>::new(), "no work dir left");
}

/// Live ffmpeg/ffprobe processes whose command line mentions `marker` (a path unique to the test), as
/// (pid, parent pid). Zombies count as dead: PID 1 of a container may never reap them.
fn converter_processes(marker: &str) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let after_name = stat.rsplit_once(')')?.1.trim_start();
            let mut fields = after_name.split_whitespace();
            let state = fields.next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).ok()?).into_owned();
            let ours = matches!(comm.trim(), "ffmpeg" | "ffprobe") && cmdline.contains(marker);
            (ours && state != "Z").then_some((pid, ppid))
        })
        .collect()
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_service_leaves_no_ffmpeg_running() {
    require_program("ffmpeg", "ffmpeg");
    // Three 10-minute tones (small as FLAC, seconds of encoding each): the kill lands in an encode.
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let names = ["Long Drone", "Longer Drone", "Longest Drone"];
    let mut tracks = Vec::new();
    let mut files = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let file = format!("{:02} - {name}.flac", n + 1);
        let path = sources.join(&file);
        let tone = format!("sine=f={}:d=600:r=44100", 220 + 110 * n);
        audio::ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &tone,
            "-af",
            "pan=stereo|c0=c0|c1=c0",
            "-c:a",
            "flac",
            "-sample_fmt",
            "s16",
            path.to_str().unwrap(),
        ]);
        tracks.push((name.to_string(), 600.0));
        files.push((file, path));
    }
    let title = "Drone Choir - Long Form (2019) [FLAC]";
    let release = OneRelease::seed(dir, title, tracks, files, None).await;
    // A test-started qBittorrent: the SIGKILL must not orphan a managed one.
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let mut setup = release.setup();
    setup.torrent_client = external_client(&qbt);
    let marker = setup.dir.display().to_string();
    let mut service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("drone-1")).await;
    let ticket = ticket_for("drone-1", &setup.media_root(), "Drone Choir", "Long Form", 2019, &release.tracks, 44_100);
    service.create(&ticket).await;
    approve_if_asked(&service, &events, "drone-1", &release.title).await;
    events.wait_for("drone-1", "converting", STAGE_TIMEOUT).await;

    // The service's own ffmpeg/ffprobe children, seen before the kill.
    let service_pid = service.pid();
    let deadline = Instant::now() + Duration::from_secs(120);
    let children = loop {
        let children: Vec<u32> = converter_processes(&marker)
            .into_iter()
            .filter(|(_, ppid)| *ppid == service_pid)
            .map(|(pid, _)| pid)
            .collect();
        if !children.is_empty() {
            break children;
        }
        assert!(Instant::now() < deadline, "no ffmpeg child of the service seen while converting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    service.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alive: Vec<u32> = children.iter().copied().filter(|pid| is_alive(*pid)).collect();
    let strays = converter_processes(&marker);
    // Clean up before asserting, so a failure leaves nothing running either.
    for (pid, _) in &strays {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(alive.is_empty(), "children {children:?} of the killed service still alive a second later: {alive:?}");
    assert!(strays.is_empty(), "ffmpeg/ffprobe processes of this test still alive: {strays:?}");
    eprintln!("killed the service with {} converter children; none outlived it", children.len());
}
