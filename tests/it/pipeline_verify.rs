//! The audio verification step end to end, on the real `downloader2` binary with qbittorrent-nox, a loopback swarm
//! and a Torznab test server: a "FLAC" release that is an MP3 transcode (generated FLAC -> LAME 128 kbit/s -> FLAC)
//! is downloaded, found `suspect` before conversion and blocklisted; the ticket falls back to the genuine release
//! and completes with the verdicts in its stats. With only the fake available, the ticket waits in
//! `needs_approval` with reason `transcode_suspected` and its evidence, the spectrograms are served to the admin
//! only and shown on the admin page (headless Chromium), and the admin clears the blocklist entry from the page.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::pipeline_faults::{entries_to, history, wait_state, SECOND_TITLE, TITLE};
use crate::support::app::{ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::audio;
use crate::support::browser::Browser;
use crate::support::pipeline::{
    generate_flac_album, ticket_for, EventRecorder, GeneratedAlbum, ServiceProcess, ServiceSetup,
};
use crate::support::swarm::{Album, Swarm};
use crate::support::torznab_server::{Download, Release, TorznabServer};

const ARTIST: &str = "Marrow Lane";
const ALBUM: &str = "Paper Satellites";
const YEAR: i32 = 2017;
const TRACKS: &[(&str, f64)] = &[("Static Bloom", 14.0), ("Kite Wire", 17.0), ("Orbit Song", 12.0)];
const RATE: u32 = 44_100;

/// The genuine album and its MP3-transcoded twin (same names, same layout), each seeded as its own torrent.
struct TranscodeFixture {
    dir: tempfile::TempDir,
    genuine: GeneratedAlbum,
    swarm: Swarm,
    torznab: TorznabServer,
}

/// `album`'s files with every FLAC replaced by FLAC -> MP3 128 kbit/s (LAME, its 17 kHz low-pass) -> FLAC.
fn transcoded_copy(album: &GeneratedAlbum, dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    album
        .files
        .iter()
        .enumerate()
        .map(|(n, (name, path))| {
            if !name.ends_with(".flac") {
                return (name.clone(), path.clone());
            }
            let mp3 = dir.join(format!("{n}.mp3"));
            let fake = dir.join(format!("{n}.flac"));
            let (source, mp3_name, fake_name) = (path.to_str().unwrap(), mp3.to_str().unwrap(), fake.to_str().unwrap());
            audio::ffmpeg(&["-i", source, "-c:a", "libmp3lame", "-b:a", "128k", mp3_name]);
            audio::ffmpeg(&["-i", mp3_name, "-c:a", "flac", "-sample_fmt", "s16", fake_name]);
            (name.clone(), fake)
        })
        .collect()
}

impl TranscodeFixture {
    /// The fake as `TITLE` (40 seeders, so it is chosen first) and, with `with_genuine`, the genuine album as
    /// `SECOND_TITLE` (6 seeders).
    async fn new(with_genuine: bool) -> TranscodeFixture {
        let dir = tempfile::tempdir().unwrap();
        let genuine = generate_flac_album(&dir.path().join("sources"), TITLE, TRACKS, RATE);
        let fake = transcoded_copy(&genuine, &dir.path().join("fake"));
        let mut builder = Swarm::builder().album_from_files(TITLE, &fake);
        let mut seeders = vec![40];
        if with_genuine {
            builder = builder.album_from_files(SECOND_TITLE, &genuine.files);
            seeders.push(6);
        }
        let swarm = builder.build().await;
        let torznab = TorznabServer::start().await;
        let size = |album: &Album| album.files.iter().map(|file| file.size).sum::<u64>();
        let listed = swarm
            .albums
            .iter()
            .zip(seeders)
            .map(|(seeded, seeders)| {
                Release::new(&seeded.name, "orpheus")
                    .download(Download::TorrentFile(seeded.torrent.to_vec()))
                    .size(size(seeded))
                    .seeders(seeders, seeders + 1)
            })
            .collect();
        torznab.set_results(listed);
        TranscodeFixture { dir, genuine, swarm, torznab }
    }

    fn setup(&self) -> ServiceSetup {
        ServiceSetup::new(&self.dir.path().join("service"), &self.torznab.url(), &self.torznab.api_key())
    }

    fn ticket(&self, id: &str, setup: &ServiceSetup) -> Value {
        ticket_for(id, &setup.media_root(), ARTIST, ALBUM, YEAR, &self.genuine.tracks, RATE)
    }
}

/// The suspect files of a `transcode_suspected` verification, each with its evidence.
fn assert_suspect_evidence(verification: &Value) {
    let tracks = verification["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), TRACKS.len(), "every mapped file verified: {verification}");
    for track in tracks {
        let file = &track["file"];
        assert_eq!(file["verdict"], "suspect", "{track}");
        let cutoff = file["cutoff_hz"].as_f64().unwrap();
        assert!((14_000.0..19_000.0).contains(&cutoff), "LAME 128k cuts near 16-17 kHz, found {cutoff}: {track}");
        assert!(file["confidence"].as_f64().unwrap() > 0.5, "{track}");
        assert!(file["reason"].as_str().unwrap().contains("lossy"), "{track}");
        assert!(file["loudness_lufs"].as_f64().is_some(), "loudness measured: {track}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transcoded_flac_release_is_refused_and_the_ticket_completes_from_the_genuine_one() {
    let fixture = TranscodeFixture::new(true).await;
    let fake_hash = fixture.swarm.albums[0].info_hash.to_string();
    let genuine_hash = fixture.swarm.albums[1].info_hash.to_string();
    let setup = fixture.setup();
    let service = ServiceProcess::start(&setup).await;
    let id = "verify-fallback";
    let events = EventRecorder::connect(&service, Some(id)).await;
    let ticket = fixture.ticket(id, &setup);
    service.create(&ticket).await;

    wait_state(&events, &service, id, "completed").await;
    assert_eq!(
        events.states_of(id),
        [
            "pending",
            "searching",
            "matching",
            "auto_approved",
            "downloading",
            "converting",
            "auto_approved",
            "downloading",
            "converting",
            "placing",
            "completed"
        ],
        "refused at conversion, then the next candidate: {}",
        service.log_tail()
    );
    let shown = service.ticket(id).await;
    let first_history = history(&shown);
    let approvals = entries_to(&first_history, "auto_approved");
    assert_eq!(approvals[0]["details"]["selected"]["candidate"]["title"], TITLE, "the fake is chosen first");
    let fallback = approvals[1];
    assert_eq!(fallback["from_state"], "converting");
    assert_eq!(fallback["details"]["refused"], fake_hash.as_str());
    let error = fallback["details"]["error"].as_str().unwrap();
    assert!(error.contains("lossy transcode"), "the fallback says why: {error}");
    assert_eq!(fallback["details"]["selected"]["candidate"]["info_hash"], genuine_hash.as_str());

    // Both releases' verdicts are in the ticket's view; the completed stats carry the placed (genuine) one.
    let verifications = shown["verifications"].as_array().unwrap();
    assert_eq!(verifications.len(), 2, "{verifications:#?}");
    assert_eq!(verifications[0]["info_hash"], fake_hash.as_str());
    assert_suspect_evidence(&verifications[0]);
    let stats = &shown["state"]["stats"]["verification"];
    assert_eq!(stats["info_hash"], genuine_hash.as_str(), "{stats}");
    for track in stats["tracks"].as_array().unwrap() {
        assert_eq!(track["file"]["verdict"], "genuine", "{track}");
    }
    assert!(stats["album"]["loudness_lufs"].as_f64().is_some(), "album loudness: {stats}");

    let blocklist = service.get_json("/api/v1/blocklist").await;
    let entries = blocklist["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{blocklist}");
    assert_eq!(entries[0]["info_hash"], fake_hash.as_str());
    assert_eq!(entries[0]["reason"], "transcode_suspected");
    assert_eq!(entries[0]["ticket_id"], id);
    for track in ticket["tracks"].as_array().unwrap() {
        assert!(Path::new(track["dest_path"].as_str().unwrap()).is_file(), "{track}");
    }

    // A second ticket for the same album never even downloads the blocklisted release.
    let second = "verify-second";
    let events = EventRecorder::connect(&service, Some(second)).await;
    let mut ticket = fixture.ticket(second, &setup);
    for track in ticket["tracks"].as_array_mut().unwrap() {
        let dest = track["dest_path"].as_str().unwrap().replace(id, second);
        track["dest_path"] = Value::String(dest);
    }
    ticket["images"][0]["dest_path"] =
        Value::String(ticket["images"][0]["dest_path"].as_str().unwrap().replace(id, second));
    service.create(&ticket).await;
    wait_state(&events, &service, second, "completed").await;
    let shown = service.ticket(second).await;
    let second_history = history(&shown);
    let downloads = entries_to(&second_history, "downloading");
    assert_eq!(downloads.len(), 1, "{second_history:#?}");
    assert_eq!(downloads[0]["details"]["torrent_hash"], genuine_hash.as_str());
    let matched = entries_to(&second_history, "auto_approved")[0];
    assert_eq!(matched["details"]["blocklisted_candidates"], 1, "{matched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_only_the_transcode_available_the_ticket_waits_for_an_admin_with_the_evidence() {
    let fixture = TranscodeFixture::new(false).await;
    let fake_hash = fixture.swarm.albums[0].info_hash.to_string();
    let setup = fixture.setup();
    let service = ServiceProcess::start(&setup).await;
    let id = "verify-ask";
    let events = EventRecorder::connect(&service, Some(id)).await;
    let ticket = fixture.ticket(id, &setup);
    service.create(&ticket).await;

    wait_state(&events, &service, id, "needs_approval").await;
    let shown = service.ticket(id).await;
    let state = &shown["state"];
    assert_eq!(state["reason"]["type"], "transcode_suspected", "{state}");
    let verification = &state["reason"]["verification"];
    assert_eq!(verification["info_hash"], fake_hash.as_str());
    assert_eq!(verification["title"], TITLE);
    assert_suspect_evidence(verification);
    assert!(
        state["candidates"].as_array().unwrap().iter().all(|c| c["candidate"]["info_hash"] != fake_hash.as_str()),
        "the refused release is not offered again: {state}"
    );
    for track in ticket["tracks"].as_array().unwrap() {
        assert!(!Path::new(track["dest_path"].as_str().unwrap()).exists(), "nothing placed: {track}");
    }

    let blocklist = service.get_json("/api/v1/blocklist").await;
    assert_eq!(blocklist["entries"][0]["info_hash"], fake_hash.as_str(), "{blocklist}");
    let http = reqwest::Client::new();

    // The spectrograms: admin-only PNGs of every suspect file.
    let tracks = shown["verifications"][0]["tracks"].as_array().unwrap();
    assert!(tracks.iter().all(|track| track["spectrogram"] == true), "{tracks:#?}");
    let picture = format!("/api/v1/ticket/{id}/verification/0/0/spectrogram.png");
    let answer = http.get(service.url(&picture)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "image/png");
    let png = answer.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let catalog = http.get(service.url(&picture)).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(catalog.status(), 403, "admin only");
    let missing = format!("/api/v1/ticket/{id}/verification/0/9/spectrogram.png");
    assert_eq!(http.get(service.url(&missing)).bearer_auth(ADMIN_TOKEN).send().await.unwrap().status(), 404);

    // The admin page shows the verdicts and the spectrograms, and clears the blocklist entry.
    let browser = Browser::start().await;
    browser.client.goto(&service.url(&format!("/#/ticket/{id}"))).await.unwrap();
    browser.element("#token").await.send_keys(&format!("{ADMIN_TOKEN}\u{E007}")).await.unwrap();
    browser
        .wait_until(
            "the spectrograms to load",
            "[...document.querySelectorAll('#verification figure img')].length === 3 && \
             [...document.querySelectorAll('#verification figure img')].every(img => img.complete && img.naturalWidth > 0)",
        )
        .await;
    let reason = browser.text_of("#approval-reason").await;
    assert!(reason.contains("lossy transcode") && reason.contains(TITLE), "{reason}");
    let suspect_rows =
        browser.eval("return document.querySelectorAll('#verification-0 tr[data-verdict=suspect]').length;").await;
    assert_eq!(suspect_rows, 3);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify-ui");
    std::fs::create_dir_all(&shot).unwrap();
    std::fs::write(shot.join("ticket.png"), browser.client.screenshot().await.unwrap()).unwrap();
    browser.client.goto(&service.url("/#/")).await.unwrap();
    let remove = format!("#blocklist button[data-remove='{fake_hash}']");
    browser.element(&remove).await.click().await.unwrap();
    browser
        .wait_until(
            "the button to ask for confirmation",
            &format!("document.querySelector({remove:?})?.classList.contains('armed')"),
        )
        .await;
    browser.element(&remove).await.click().await.unwrap();
    browser.wait_until("the blocklist to empty", "document.querySelector('#blocklist')?.hidden === true").await;
    browser.close().await;
    let blocklist = service.get_json("/api/v1/blocklist").await;
    assert!(blocklist["entries"].as_array().unwrap().is_empty(), "removed from the page: {blocklist}");

    // Over the API: the catalog's token may not see it; bad and unknown hashes are refused.
    let catalog = http.get(service.url("/api/v1/blocklist")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(catalog.status(), 403);
    let bad = http.delete(service.url("/api/v1/blocklist/nothex")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let path = format!("/api/v1/blocklist/{fake_hash}");
    let again = http.delete(service.url(&path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(again.status(), 404, "already removed");
}
