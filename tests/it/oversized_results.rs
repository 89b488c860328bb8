//! Oversized but legal indexer results, on the real binary: six legal `.torrent` files of ~9 MB with 20,000 files
//! each (long names; audio, images and junk mixed), served by the Torznab test server for one ticket that goes
//! to `needs_approval`. What the service keeps and shows must stay bounded: its peak RSS, the size of
//! `GET /ticket/{id}`, the database's growth, and every WebSocket message; the whole kept lists are behind the
//! admin route, with an honest count of the files left out. The figures are printed for the README.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::app::{CATALOG_TOKEN, UNUSED_QBITTORRENT_URL};
use crate::support::pipeline::{ticket_for, EventRecorder, ServiceProcess, ServiceSetup, TorrentClientSetup};
use crate::support::torrent_file::TorrentSpec;
use crate::support::torznab_server::{Download, Release, TorznabServer};

const TORRENTS: usize = 6;
const FILES_PER_TORRENT: usize = 20_000;
/// The aims of the acceptance line: bounds on behaviour (sizes), not timings.
const MAX_RSS_BYTES: u64 = 128 * 1024 * 1024;
const MAX_GET_BYTES: usize = 2 * 1024 * 1024;
const MAX_DB_GROWTH_BYTES: u64 = 16 * 1024 * 1024;
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// A legal torrent of `FILES_PER_TORRENT` files with long names: three quarters FLAC, scans, and junk.
fn huge_torrent(n: usize) -> TorrentSpec {
    let long = |what: &str, i: usize| format!("{what} {i:05} {}lorem ipsum ", "lorem ipsum dolor sit amet ".repeat(4));
    let files: Vec<(String, u64)> = (0..FILES_PER_TORRENT)
        .map(|i| {
            let folder = format!("{}/{}", long("Disc folder", i / 500), long("Sub folder", i / 50));
            let name = match i % 50 {
                0 => format!("{} scan.jpg", long("Booklet", i)),
                k if k % 4 == 1 => format!("{} notes.txt", long("Notes", i)),
                _ => format!("{:02} - {}.flac", i % 99 + 1, long("Track", i)),
            };
            (format!("{folder}/{name}"), 1_000_000 + i as u64)
        })
        .collect();
    TorrentSpec::new(&format!("Glass Harbor - Tidal Lines - Complete Archive {n}"), files)
}

/// VmHWM (peak) and VmRSS of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The database file with its WAL and shared-memory files.
fn database_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|meta| meta.len())
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_huge_legal_torrents_keep_memory_views_and_database_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let torznab = TorznabServer::start().await;
    let specs: Vec<TorrentSpec> = (0..TORRENTS).map(huge_torrent).collect();
    let mut releases = Vec::new();
    for (n, spec) in specs.iter().enumerate() {
        let bytes = spec.to_bytes();
        assert!((8_500_000..10_000_000).contains(&bytes.len()), "torrent {n} is {} bytes", bytes.len());
        let mut release = Release::new(&format!("Glass Harbor - Tidal Lines (2019) [FLAC] archive {n}"), "orpheus")
            .download(Download::TorrentFile(bytes))
            .size(20_000_000_000)
            .seeders(1, 1);
        // Its own details page (the guid): six uploads, not one.
        release.details = Some(format!("https://tracker.invalid/orpheus/archive-{n}"));
        releases.push(release);
    }
    torznab.set_results(releases);

    let mut setup = ServiceSetup::new(dir.path(), &torznab.url(), &torznab.api_key());
    // Six 9 MB .torrent files fetched and parsed by a debug build on a loaded 2-core machine: give the link fetches
    // time (this test bounds sizes, not speed).
    setup.jackett_timeout_secs = 60;
    setup.torrent_client = TorrentClientSetup::External {
        url: UNUSED_QBITTORRENT_URL.into(),
        username: "admin".into(),
        password: "unused".into(),
        download_path: dir.path().join("downloads"),
    };
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;
    let db = setup.data_dir().join("downloader2.db");
    let (_, rss_idle) = memory_of(service.pid());
    let db_before = database_bytes(&db);

    let tracks = vec![("Morning Fog".to_string(), 30.0), ("Salt Wind".to_string(), 30.0)];
    let ticket = ticket_for("huge-1", &setup.media_root(), "Glass Harbor", "Tidal Lines", 2019, &tracks, 44_100);
    service.create(&ticket).await;
    events.wait_for("huge-1", "needs_approval", Duration::from_secs(180)).await;

    // The ticket view.
    let response =
        service.http.get(service.url("/api/v1/ticket/huge-1")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let view: Value = serde_json::from_slice(&body).unwrap();
    let candidates = view["state"]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), TORRENTS, "every release is a candidate");
    for candidate in candidates {
        let listed = candidate["candidate"]["files"].as_array().unwrap().len();
        let mapped = candidate["track_mapping"].as_array().unwrap().len();
        assert!(listed <= mapped + 50, "shown: {listed} files for {mapped} mapped");
        let omitted = candidate["candidate"]["files_omitted"].as_u64().unwrap();
        assert_eq!(listed as u64 + omitted, FILES_PER_TORRENT as u64, "every file is shown or counted");
    }
    for event in view["history"].as_array().unwrap() {
        assert!(event["details"].get("candidates").is_none(), "the history counts candidates: {}", event["details"]);
    }
    let needs = view["history"].as_array().unwrap().iter().find(|e| e["to_state"] == "needs_approval").unwrap();
    assert_eq!(needs["details"]["candidate_count"], TORRENTS);

    // The whole kept list of a candidate, page by page, behind the admin route.
    let hash_of = |title: &str| {
        let n: usize = title.rsplit(' ').next().unwrap().parse().unwrap();
        specs[n].info_hash()
    };
    let first = &candidates[0]["candidate"];
    assert_eq!(first["info_hash"], hash_of(first["title"].as_str().unwrap()), "the real info hash");
    let path = "/api/v1/ticket/huge-1/candidates/0/files";
    let refused = service.http.get(service.url(path)).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    assert_eq!(refused.status(), 403, "the full lists are the admin's");
    let page = service.get_json(&format!("{path}?offset=0&limit=1000")).await;
    let total = page["total"].as_u64().unwrap();
    let omitted = page["files_omitted"].as_u64().unwrap();
    assert_eq!(total + omitted, FILES_PER_TORRENT as u64, "kept + omitted = every file of the torrent");
    assert!(total > 50 && total <= 1_100, "the kept list is bounded: {total}");
    let next = service.get_json(&format!("{path}?offset=100&limit=10")).await;
    assert_eq!(next["files"][0], page["files"][100], "pages follow each other");
    let kept: Vec<&str> = page["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(kept.iter().all(|p| p.ends_with(".flac") || p.ends_with(".jpg")), "only audio and images are kept");
    assert!(kept.iter().any(|p| p.ends_with(".jpg")), "images are kept for the cover");

    // The figures.
    let (rss_peak, rss_now) = memory_of(service.pid());
    let db_growth = database_bytes(&db).saturating_sub(db_before);
    let messages = events.messages();
    let largest_ws = messages.iter().map(|m| serde_json::to_string(m).unwrap().len()).max().unwrap_or(0);
    eprintln!(
        "six {FILES_PER_TORRENT}-file torrents: RSS idle {:.1} MiB, peak (VmHWM) {:.1} MiB, now {:.1} MiB; \
         GET /ticket {:.1} KiB; database growth {:.2} MiB; {} WebSocket messages, largest {} bytes; \
         candidate 0 keeps {total} files, {omitted} omitted",
        mib(rss_idle),
        mib(rss_peak),
        mib(rss_now),
        body.len() as f64 / 1024.0,
        mib(db_growth),
        messages.len(),
        largest_ws
    );
    assert!(rss_peak < MAX_RSS_BYTES, "peak RSS {:.1} MiB", mib(rss_peak));
    assert!(body.len() < MAX_GET_BYTES, "GET /ticket answered {} bytes", body.len());
    assert!(db_growth < MAX_DB_GROWTH_BYTES, "the database grew {:.1} MiB", mib(db_growth));
    assert!(largest_ws < MAX_WS_MESSAGE_BYTES, "a WebSocket message of {largest_ws} bytes");
    for message in messages.iter().filter(|m| m["new_state"] == "needs_approval" || m["type"] == "needs_approval") {
        assert!(message.get("candidates").is_none() && message["details"].get("candidates").is_none(), "{message}");
    }
}

/// Every file the pipeline reads survives the bound: the audio formats the release parser knows, CUE sheets, and
/// every image the placer may choose (probed with a wide list of extensions, so a format added to either later
/// fails here until the bound keeps it too).
#[test]
fn the_bound_keeps_every_kind_of_file_the_pipeline_reads() {
    use downloader2::models::torrent::{bound_file_list, listed_kind};
    use downloader2::models::{ImageType, TorrentFile};
    use downloader2::placer::images::choose_image_file;
    use downloader2::searcher::release::AudioFormat;

    let probes = [
        "flac", "FLAC", "mp3", "m4a", "aac", "mp4", "m4b", "ogg", "oga", "opus", "wav", "ape", "wv", "aiff", "aif",
        "dsf", "dff", "wma", "alac", "mka", "tta", "mpc", "ac3", "dts", "cue", "jpg", "JPEG", "jpeg", "png", "webp",
        "bmp", "gif", "tif", "tiff", "heic", "svg", "log", "nfo", "txt", "m3u", "sfv", "md5", "pdf", "mkv",
    ];
    for extension in probes {
        let path = format!("Album/cover.{extension}");
        let file = TorrentFile { path: path.clone(), size_bytes: 10 };
        let read_as_audio = AudioFormat::from_extension(extension).is_some();
        let read_as_image = choose_image_file(std::slice::from_ref(&file), &ImageType::CoverFront).is_some();
        let read_as_cue = extension.eq_ignore_ascii_case("cue");
        if read_as_audio || read_as_image || read_as_cue {
            let (kept, omitted) = bound_file_list(vec![file]);
            assert_eq!((kept.len(), omitted), (1, 0), "{path} is read by the pipeline but not kept");
            assert!(listed_kind(&path).is_some());
        }
    }
    let (kept, omitted) = bound_file_list(vec![TorrentFile { path: "Album/info.nfo".into(), size_bytes: 1 }]);
    assert_eq!((kept.len(), omitted), (0, 1), "junk is counted, not kept");
}

/// A search that finds more releases than a ticket keeps returns the best-seeded ones only.
#[tokio::test]
async fn a_search_keeps_the_best_seeded_candidates_only() {
    use downloader2::config::JackettConfig;
    use downloader2::searcher::torznab::MAX_CANDIDATES_PER_TICKET;
    use downloader2::searcher::{Searcher, TorznabSearcher};

    let server = TorznabServer::start().await;
    let releases: Vec<Release> = (0..120u64)
        .map(|n| {
            let title = format!("Glass Harbor - Tidal Lines (2019) [FLAC] upload {n}");
            Release::new(&title, "1337x").magnet(&format!("{:040x}", n + 1)).seeders(n, n + 1)
        })
        .collect();
    server.set_results(releases);
    let config = JackettConfig {
        url: server.url(),
        api_key: server.api_key(),
        timeout_secs: 5,
        searches_per_minute: 1000,
        ..JackettConfig::default()
    };
    let searcher = TorznabSearcher::new(&config).unwrap();
    let ticket: downloader2::models::Ticket = serde_json::from_value(serde_json::json!({
        "ticket_id": "many-1", "created_at": "2026-11-24T12:00:00Z",
        "search": {"artist": "Glass Harbor", "album": "Tidal Lines", "year": 2019},
        "tracks": [{"catalog_track_id": "1", "track_number": 1, "name": "Morning Fog", "duration_secs": 30.0,
                    "dest_path": "/srv/music/one.flac"}],
        "constraints": {"format": "flac"}
    }))
    .unwrap();
    let found = searcher.search(&ticket, None).await.unwrap();
    assert_eq!(found.len(), MAX_CANDIDATES_PER_TICKET);
    let seeders: Vec<u32> = found.iter().map(|c| c.seeders).collect();
    assert_eq!(seeders.first(), Some(&119), "the best seeded is kept");
    assert!(seeders.iter().all(|s| *s >= 70), "only the best seeded are kept: {seeders:?}");
}
