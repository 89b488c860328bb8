//! The Torznab searcher against the wire-level test server (`support::torznab_server`): parsing of every field,
//! link resolution (real `.torrent` files made by `mktorrent`, hashes checked by an independent Python
//! computation), caps-based mode selection, the exact fallback sequence, dedup, retries, timeouts, errors, the
//! rate limit and the result cache. Everything runs on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use downloader2::config::JackettConfig;
use downloader2::models::{Ticket, TorrentCandidate, TorrentFile};
use downloader2::searcher::{SearchError, Searcher, TorrentSource, TorznabSearcher};

use crate::support::torznab_server::{Download, MusicCaps, Release, TorznabServer};

fn config(server: &TorznabServer, indexers: &[&str]) -> JackettConfig {
    JackettConfig {
        url: server.url(),
        api_key: server.api_key(),
        timeout_secs: 5,
        indexers: indexers.iter().map(|i| i.to_string()).collect(),
        searches_per_minute: 1000,
        cache_ttl_secs: 600,
        allowed_link_hosts: Vec::new(),
        // The trackers of the fixtures: kept, and (being listed) never looked up in DNS.
        allowed_tracker_hosts: FIXTURE_TRACKER_HOSTS.iter().map(|host| host.to_string()).collect(),
    }
}

/// Every tracker host the fixtures name: mktorrent's, and those of the reference feed's magnets.
const FIXTURE_TRACKER_HOSTS: [&str; 11] = [
    "127.0.0.1",
    "open.demonii.com",
    "open.stealth.si",
    "tracker.corpscorp.online",
    "tracker.opentrackr.org",
    "tracker.qu.ax",
    "tracker.srv00.com",
    "tracker.theoks.net",
    "tracker.torrent.eu.org",
    "vito-tracker.duckdns.org",
    "vito-tracker.space",
];

fn ticket(artist: &str, album: &str, year: Option<i32>) -> Ticket {
    serde_json::from_value(serde_json::json!({
        "ticket_id": "t-1",
        "created_at": "2026-11-24T12:00:00Z",
        "search": {"artist": artist, "album": album, "year": year},
        "tracks": [{"catalog_track_id": "1", "track_number": 1, "name": "One", "duration_secs": 200.0,
                    "dest_path": "/srv/music/one.flac"}],
        "constraints": {"format": "flac"}
    }))
    .expect("ticket JSON")
}

/// A real `.torrent` made by mktorrent from generated files; returns its bytes and path.
fn make_torrent(dir: &Path, name: &str, files: &[(&str, usize)]) -> (Vec<u8>, PathBuf) {
    let root = dir.join(name);
    for (index, (path, size)) in files.iter().enumerate() {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let content: Vec<u8> = (0..*size).map(|i| u8::try_from((i * 31 + index * 7) % 251).unwrap()).collect();
        std::fs::write(&file, content).unwrap();
    }
    let out = dir.join(format!("{name}.torrent"));
    let status = Command::new("mktorrent")
        .args(["-a", "http://127.0.0.1:6969/announce", "-l", "15", "-o"])
        .arg(&out)
        .arg(&root)
        .output()
        .unwrap_or_else(|err| panic!("mktorrent could not run ({err}): apt-get install mktorrent"));
    assert!(status.status.success(), "mktorrent failed: {}", String::from_utf8_lossy(&status.stderr));
    (std::fs::read(&out).unwrap(), out)
}

/// The v1 info hash computed independently: Python's hashlib over the info dict's raw bytes.
fn reference_info_hash(torrent: &Path) -> String {
    let script = r#"
import sys, hashlib
data = open(sys.argv[1], 'rb').read()
def skip(i):
    c = data[i:i+1]
    if c == b'i':
        return data.index(b'e', i) + 1
    if c in (b'l', b'd'):
        i += 1
        while data[i:i+1] != b'e':
            i = skip(i)
        return i + 1
    colon = data.index(b':', i)
    return colon + 1 + int(data[i:colon])
i = 1
while data[i:i+1] != b'e':
    colon = data.index(b':', i)
    n = int(data[i:colon])
    key = data[colon+1:colon+1+n]
    start = colon + 1 + n
    end = skip(start)
    if key == b'info':
        print(hashlib.sha1(data[start:end]).hexdigest())
        break
    i = end
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(torrent)
        .output()
        .unwrap_or_else(|err| panic!("python3 could not run ({err}): apt-get install python3"));
    assert!(output.status.success(), "python3: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn reference_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/torznab").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("reference file {} missing ({err}): shared/ must sit beside the repo", path.display())
    })
}

fn by_title<'a>(candidates: &'a [TorrentCandidate], title: &str) -> &'a TorrentCandidate {
    candidates.iter().find(|c| c.title == title).unwrap_or_else(|| panic!("no candidate {title:?} in {candidates:#?}"))
}

const ORPHEUS_TITLE: &str = "Portishead - Dummy [1994] [Album] FLAC / Lossless / Log (100%) / Cue / CD";
const X1337_TITLE: &str = "Portishead   Dummy (1994) [FLAC 24bit Vinyl Rip]";
const RUTRACKER_TITLE: &str = "Portishead - Dummy - 1994, FLAC (tracks+.cue), lossless";
const X1337_MAGNET: &str = "magnet:?xt=urn:btih:5C1D3A7E9F0B2C4D6E8F1A3B5C7D9E0F2A4B6C8D&dn=Portishead+-+Dummy+(1994)+%5BFLAC+24bit+Vinyl+Rip%5D&tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337%2Fannounce";

#[tokio::test]
async fn reference_feed_every_field_is_parsed_and_links_are_resolved() {
    let server = TorznabServer::start().await;
    server.set_raw_results(&reference_file("jackett-torznab-music-results.xml"));
    let dir = tempfile::tempdir().unwrap();
    let (orpheus_bytes, orpheus_path) = make_torrent(
        dir.path(),
        "Portishead - Dummy (1994) [FLAC]",
        &[("01 - Mysterons.flac", 40_000), ("02 - Sour Times.flac", 50_000), ("Scans/front.jpg", 3_000)],
    );
    let (rutracker_bytes, rutracker_path) = make_torrent(
        dir.path(),
        "Dummy",
        &[("CD/Portishead - Dummy.flac", 70_000), ("CD/Portishead - Dummy.cue", 900)],
    );
    server.set_download("orpheus", ORPHEUS_TITLE, Download::TorrentFile(orpheus_bytes.clone()));
    server.set_download("1337x", X1337_TITLE, Download::RedirectToMagnet(X1337_MAGNET.into()));
    server.set_download("rutracker", RUTRACKER_TITLE, Download::TorrentFile(rutracker_bytes));

    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found = searcher.search(&ticket("Portishead", "Dummy", Some(1994)), None).await.unwrap();
    assert_eq!(found.len(), 6, "{found:#?}");

    // Orpheus: link-only; info hash and file list come from the .torrent.
    let orpheus = by_title(&found, ORPHEUS_TITLE);
    assert_eq!(orpheus.indexer, "Orpheus");
    assert_eq!(orpheus.size_bytes, 304_612_351);
    assert_eq!((orpheus.seeders, orpheus.leechers), (214, 2));
    assert_eq!(orpheus.grabs, Some(1875));
    assert_eq!(orpheus.categories, vec![3000, 100_001]);
    assert_eq!(orpheus.guid.as_deref(), Some("https://orpheus.network/torrents.php?torrentid=1584301"));
    assert_eq!(orpheus.details_url.as_deref(), Some("https://orpheus.network/torrents.php?torrentid=1584301"));
    assert_eq!(orpheus.publish_date.unwrap().to_rfc3339(), "2021-08-08T19:21:37+00:00");
    assert_eq!((orpheus.download_volume_factor, orpheus.upload_volume_factor), (Some(1.0), Some(1.0)));
    assert!(orpheus.magnet_uri.is_none());
    assert!(orpheus.torrent_url.as_deref().unwrap().starts_with(&format!("{}/dl/orpheus/", server.url())));
    assert_eq!(orpheus.info_hash.as_ref().unwrap().as_str(), reference_info_hash(&orpheus_path));
    let name = "Portishead - Dummy (1994) [FLAC]";
    let mut files = orpheus.files.clone().unwrap();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(
        files,
        vec![
            TorrentFile { path: format!("{name}/01 - Mysterons.flac"), size_bytes: 40_000 },
            TorrentFile { path: format!("{name}/02 - Sour Times.flac"), size_bytes: 50_000 },
            TorrentFile { path: format!("{name}/Scans/front.jpg"), size_bytes: 3_000 },
        ]
    );

    // The Pirate Bay: magnet-only, upper-case hash normalised, leechers = peers - seeders, freeleech.
    let tpb = by_title(&found, "Portishead - Dummy (1994) [FLAC]");
    assert_eq!(tpb.indexer, "The Pirate Bay");
    assert_eq!(tpb.info_hash.as_ref().unwrap().as_str(), "8d0e3b6c1f2a49d7b5e3c9a1f0d2e4b6a8c0e1f3");
    assert!(tpb.magnet_uri.as_deref().unwrap().starts_with("magnet:?xt=urn:btih:8D0E3B6C"));
    assert!(tpb.torrent_url.is_none() && tpb.files.is_none());
    assert_eq!((tpb.seeders, tpb.leechers, tpb.size_bytes), (61, 3, 339_213_614));
    assert_eq!(tpb.download_volume_factor, Some(0.0));
    assert_eq!(tpb.categories, vec![3040, 100_104]);
    assert_eq!(tpb.details_url.as_deref(), Some("https://thepiratebay.org/description.php?id=31337514"));

    // 1337x: the /dl/ link answers 302 -> magnet, which gives magnet and hash.
    let x1337 = by_title(&found, X1337_TITLE);
    assert_eq!(x1337.magnet_uri.as_deref(), Some(X1337_MAGNET));
    assert_eq!(x1337.info_hash.as_ref().unwrap().as_str(), "5c1d3a7e9f0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d");
    assert_eq!((x1337.seeders, x1337.leechers), (12, 3));

    // RuTracker: H&R rules, single .torrent.
    let rutracker = by_title(&found, RUTRACKER_TITLE);
    assert_eq!(rutracker.minimum_ratio, Some(1.0));
    assert_eq!(rutracker.minimum_seed_time_secs, Some(0));
    assert_eq!(rutracker.grabs, Some(4210));
    assert_eq!(rutracker.info_hash.as_ref().unwrap().as_str(), reference_info_hash(&rutracker_path));
    assert_eq!(rutracker.files.as_ref().unwrap().len(), 2);

    // LimeTorrents: lower-case site hash, custom category id, empty description.
    let lime = by_title(&found, "Portishead - Dummy (1994) [MP3 320]");
    assert_eq!(lime.info_hash.as_ref().unwrap().as_str(), "f47c2d9a1be5036c8d4e2a9b7f1c0e6d5a3b8c91");
    assert_eq!(lime.categories, vec![3000, 104_627]);
    assert_eq!(by_title(&found, "Portishead - Roseland NYC Live (1998) [FLAC]").files, None);

    // Best seeded first.
    let seeders: Vec<u32> = found.iter().map(|c| c.seeders).collect();
    assert!(seeders.windows(2).all(|w| w[0] >= w[1]), "{seeders:?}");

    // Five strong results on the first query: no fallback. The aggregate's caps list artist/album/year.
    let searches = server.searches();
    assert_eq!(searches.len(), 1);
    let first = &searches[0];
    assert_eq!(first.path, "/api/v2.0/indexers/all/results/torznab/api");
    assert_eq!(first.param("t"), Some("music"));
    assert_eq!(first.param("q"), Some("Portishead Dummy"));
    assert_eq!(first.param("artist"), Some("Portishead"));
    assert_eq!(first.param("album"), Some("Dummy"));
    assert_eq!(first.param("year"), Some("1994"));
    assert_eq!(first.param("cat"), Some("3000,3010,3020,3030,3040,3050"));
    assert_eq!(first.param("apikey"), Some(server.api_key().as_str()));

    // The torrent client gets the cached .torrent bytes, or the magnet.
    assert_eq!(searcher.torrent_source(orpheus).await.unwrap(), TorrentSource::TorrentFile(orpheus_bytes.into()));
    assert_eq!(searcher.torrent_source(tpb).await.unwrap(), TorrentSource::Magnet(tpb.magnet_uri.clone().unwrap()));
}

#[tokio::test]
async fn torrent_source_fetches_the_link_again_when_not_cached() {
    let server = TorznabServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bytes, path) = make_torrent(dir.path(), "Album", &[("01.flac", 20_000)]);
    server.set_results(vec![
        Release::new("Artist - Album (2001) FLAC", "orpheus").download(Download::TorrentFile(bytes.clone()))
    ]);
    let first = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found = first.search(&ticket("Artist", "Album", None), None).await.unwrap();
    assert_eq!(found[0].info_hash.as_ref().unwrap().as_str(), reference_info_hash(&path));
    // A fresh searcher (a restart) has no cache: the bytes are fetched through the link again.
    let downloads_before = server.requests().iter().filter(|r| r.is_download()).count();
    let fresh = TorznabSearcher::new(&config(&server, &[])).unwrap();
    assert_eq!(fresh.torrent_source(&found[0]).await.unwrap(), TorrentSource::TorrentFile(bytes.into()));
    assert_eq!(server.requests().iter().filter(|r| r.is_download()).count(), downloads_before + 1);
    // A candidate with nothing to download from is a typed, non-retryable error.
    let err = fresh.torrent_source(&TorrentCandidate::with_title("nothing")).await.unwrap_err();
    assert!(matches!(err, SearchError::NoDownloadLink { .. }) && !err.is_retryable());
}

#[tokio::test]
async fn caps_choose_the_search_mode_per_indexer_and_prowlarr_uses_its_own_path() {
    let server = TorznabServer::start().await;
    server.set_indexer("nomusic", MusicCaps::Unavailable);
    let searcher = TorznabSearcher::new(&config(&server, &["orpheus", "1337x", "nomusic", "3"])).unwrap();
    searcher.search(&ticket("Portishead", "Dummy", Some(1994)), Some("Portishead Dummy")).await.unwrap();
    let caps: Vec<String> = server.requests().iter().filter(|r| r.is_caps()).map(|r| r.path.clone()).collect();
    assert_eq!(
        caps,
        vec![
            "/api/v2.0/indexers/orpheus/results/torznab/api",
            "/api/v2.0/indexers/1337x/results/torznab/api",
            "/api/v2.0/indexers/nomusic/results/torznab/api",
            "/3/api",
        ]
    );
    let sent: Vec<(String, Option<String>, Option<String>)> = server
        .searches()
        .iter()
        .map(|r| (r.path.clone(), r.param("t").map(String::from), r.param("q").map(String::from)))
        .collect();
    let s = |p: &str, t: &str| (p.to_string(), Some(t.to_string()), Some("Portishead Dummy".to_string()));
    assert_eq!(
        sent,
        vec![
            s("/api/v2.0/indexers/orpheus/results/torznab/api", "music"),
            s("/api/v2.0/indexers/1337x/results/torznab/api", "music"),
            s("/api/v2.0/indexers/nomusic/results/torznab/api", "search"),
            s("/3/api", "music"),
        ]
    );
    // A q-only music mode never gets artist/album parameters.
    assert!(server.searches().iter().all(|r| r.param("artist").is_none()));

    // Ticket search: artist/album/year only where caps list them; elsewhere the year goes into q.
    let searcher = TorznabSearcher::new(&config(&server, &["orpheus", "1337x"])).unwrap();
    let before = server.searches().len();
    searcher.search(&ticket("Massive Attack", "Mezzanine", Some(1998)), None).await.unwrap();
    let searches = server.searches();
    let orpheus = &searches[before];
    assert_eq!(
        (orpheus.param("q"), orpheus.param("artist"), orpheus.param("album"), orpheus.param("year")),
        (Some("Massive Attack Mezzanine"), Some("Massive Attack"), Some("Mezzanine"), Some("1998"))
    );
    let x1337 = &searches[before + 1];
    assert_eq!((x1337.param("q"), x1337.param("year")), (Some("Massive Attack Mezzanine 1998"), None));
}

#[tokio::test]
async fn fallback_queries_are_sent_in_the_documented_order_when_nothing_is_found() {
    let server = TorznabServer::start().await;
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found =
        searcher.search(&ticket("The Mötley Crüe", "Dr. Feelgood Extended Edition", Some(1989)), None).await.unwrap();
    assert!(found.is_empty());
    let sent: Vec<(String, Option<String>)> = server
        .searches()
        .iter()
        .map(|r| (r.param("q").unwrap().to_string(), r.param("year").map(String::from)))
        .collect();
    let q = |text: &str, year: Option<&str>| (text.to_string(), year.map(String::from));
    assert_eq!(
        sent,
        vec![
            q("The Mötley Crüe Dr. Feelgood Extended Edition", Some("1989")),
            q("The Mötley Crüe Dr. Feelgood Extended Edition", None),
            q("The Motley Crue Dr. Feelgood Extended Edition", None),
            q("Motley Crue Dr. Feelgood Extended Edition", None),
            q("Dr. Feelgood Extended Edition", None),
            q("The Motley Crue", None),
        ]
    );
}

fn strong_releases(count: usize) -> Vec<Release> {
    (0..count)
        .map(|i| {
            Release::new(&format!("Motley Crue - Dr. Feelgood Extended Edition [{i}] FLAC"), "1337x")
                .magnet(&format!("{:040X}", i + 1))
        })
        .collect()
}

#[tokio::test]
async fn fallbacks_stop_once_enough_strong_results_are_found() {
    let server = TorznabServer::start().await;
    server.set_results_for_query("The Motley Crue Dr. Feelgood Extended Edition", strong_releases(5));
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found =
        searcher.search(&ticket("The Mötley Crüe", "Dr. Feelgood Extended Edition", Some(1989)), None).await.unwrap();
    assert_eq!(found.len(), 5);
    let qs: Vec<String> = server.searches().iter().map(|r| r.param("q").unwrap().to_string()).collect();
    assert_eq!(qs.len(), 3, "stops after the folded variant: {qs:?}");
    assert_eq!(qs[2], "The Motley Crue Dr. Feelgood Extended Edition");
}

#[tokio::test]
async fn duplicates_across_indexers_and_variants_merge_into_the_best_seeded_record() {
    let server = TorznabServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bytes, path) = make_torrent(dir.path(), "Blue Lines", &[("01 Safe from Harm.flac", 30_000)]);
    let hash = reference_info_hash(&path);
    server.set_results(vec![
        // Private tracker: only a .torrent link, few seeders.
        Release::new("Massive Attack - Blue Lines [1991] FLAC", "orpheus")
            .download(Download::TorrentFile(bytes))
            .size(31_000)
            .seeders(4, 5),
        // Prowlarr: magnet-only behind /3/download (301), same hash, many seeders.
        Release::new("Massive Attack - Blue Lines (1991) [FLAC]", "3")
            .indexer_name("The Pirate Bay")
            .magnet(&hash.to_uppercase())
            .seeders(90, 99),
    ]);
    let searcher = TorznabSearcher::new(&config(&server, &["orpheus", "3"])).unwrap();
    // Titles lack nothing, but only 1 strong result: every variant runs and returns the same two releases.
    let found = searcher.search(&ticket("Massive Attack", "Blue Lines", Some(1991)), None).await.unwrap();
    assert!(server.searches().len() >= 4, "several variants on two indexers");
    assert_eq!(found.len(), 1, "{found:#?}");
    let merged = &found[0];
    assert_eq!(merged.info_hash.as_ref().unwrap().as_str(), hash);
    assert_eq!(merged.seeders, 90);
    assert_eq!(merged.indexer, "The Pirate Bay");
    assert!(merged.magnet_uri.as_deref().unwrap().starts_with("magnet:?xt=urn:btih:"));
    assert_eq!(merged.files.as_ref().unwrap()[0].path, "Blue Lines/01 Safe from Harm.flac");
    assert!(merged.torrent_url.is_some());
}

#[tokio::test]
async fn a_dead_or_bad_link_drops_only_its_own_result() {
    let server = TorznabServer::start().await;
    server.set_results(vec![
        Release::new("Air - Moon Safari (dead link)", "1337x").download(Download::Dead).seeders(50, 50),
        Release::new("Air - Moon Safari (html page)", "1337x")
            .download(Download::Body(b"<html>Cloudflare</html>".to_vec()))
            .seeders(40, 40),
        Release::new("Air - Moon Safari (magnet)", "1337x").magnet("8D0E3B6C1F2A49D7B5E3C9A1F0D2E4B6A8C0E1F3"),
        Release::new("Air - Moon Safari (movie)", "1337x").magnet(&"A".repeat(40)).categories(&[2040]),
    ]);
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found = searcher.search(&ticket("Air", "Moon Safari", None), Some("Air Moon Safari")).await.unwrap();
    let titles: Vec<&str> = found.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, vec!["Air - Moon Safari (magnet)"]);
}

#[tokio::test]
async fn slow_answers_time_out_are_retried_and_finally_reported() {
    let server = TorznabServer::start().await;
    server.set_results(strong_releases(1));
    let mut cfg = config(&server, &[]);
    cfg.timeout_secs = 1;
    let searcher = TorznabSearcher::new(&cfg).unwrap();
    server.slow_next(1, Duration::from_secs(3));
    let found = searcher.search(&ticket("x", "y", None), Some("first")).await.unwrap();
    assert_eq!(found.len(), 1, "the retry after the timeout succeeded");
    assert_eq!(server.searches().len(), 2);

    server.slow_next(3, Duration::from_secs(3));
    let err = searcher.search(&ticket("x", "y", None), Some("second")).await.unwrap_err();
    assert!(matches!(err, SearchError::Timeout { timeout_secs: 1, .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(server.searches().len(), 5, "three attempts for the second search");
}

#[tokio::test]
async fn server_errors_are_retried_and_a_persistent_one_is_retryable() {
    let server = TorznabServer::start().await;
    server.set_results(strong_releases(2));
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    server.fail_next(2, 500);
    assert_eq!(searcher.search(&ticket("x", "y", None), Some("one")).await.unwrap().len(), 2);
    assert_eq!(server.searches().len(), 3);

    server.fail_next(3, 503);
    let err = searcher.search(&ticket("x", "y", None), Some("two")).await.unwrap_err();
    assert!(matches!(err, SearchError::HttpStatus { status: 503, .. }), "{err:?}");
    assert!(err.is_retryable());

    // 429 + Retry-After: waited for, then retried.
    server.fail_next(1, 429);
    assert_eq!(searcher.search(&ticket("x", "y", None), Some("three")).await.unwrap().len(), 2);
    let last_two: Vec<String> =
        server.searches().iter().rev().take(2).map(|r| r.param("q").unwrap().to_string()).collect();
    assert_eq!(last_two, vec!["three", "three"]);
}

/// Collects log lines written while a future runs.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_bad_api_key_is_a_configuration_error_that_never_shows_the_key() {
    use tracing::instrument::WithSubscriber;

    let server = TorznabServer::start().await;
    server.set_results(vec![Release::new("Air - Talkie Walkie", "1337x").download(Download::Dead)]);
    let sink = LogSink::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let sink = sink.clone();
            move || sink.clone()
        })
        .finish();
    let secret = "wrong-key-0123456789";
    let outcome = async {
        // Jackett: HTTP 200 + <error code="100">.
        let mut cfg = config(&server, &[]);
        cfg.api_key = secret.into();
        let jackett = TorznabSearcher::new(&cfg).unwrap().search(&ticket("Air", "Talkie Walkie", None), None).await;
        // Prowlarr: HTTP 401.
        let mut cfg = config(&server, &["3"]);
        cfg.api_key = secret.into();
        let prowlarr = TorznabSearcher::new(&cfg).unwrap().search(&ticket("Air", "Talkie Walkie", None), None).await;
        // A good key with a dead /dl/ link logs that link (which carries the server's key).
        let good = TorznabSearcher::new(&config(&server, &[])).unwrap();
        good.search(&ticket("Air", "Talkie Walkie", None), None).await.unwrap();
        (jackett, prowlarr)
    }
    .with_subscriber(subscriber)
    .await;
    for result in [outcome.0, outcome.1] {
        let err = result.unwrap_err();
        assert!(matches!(err, SearchError::Configuration(_)), "{err:?}");
        assert!(!err.is_retryable());
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("api_key"), "the message names the fix: {shown}");
        assert!(!shown.contains(secret), "{shown}");
    }
    // One caps request each, no search after the key was refused.
    let refused: Vec<_> = server.requests().into_iter().filter(|r| r.param("apikey") == Some(secret)).collect();
    assert_eq!(refused.len(), 2, "one caps request per bad-key searcher, no search after the refusal");
    assert!(refused.iter().all(|r| r.is_caps()), "{refused:?}");
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Torznab request"), "debug logs were captured: {logs}");
    assert!(!logs.contains(secret), "{logs}");
    assert!(!logs.contains(&server.api_key()), "{logs}");
}

#[tokio::test]
async fn a_failing_indexer_is_skipped_and_the_others_answer() {
    let server = TorznabServer::start().await;
    server.set_indexer("rutracker", MusicCaps::QOnly);
    server.fail_indexer("rutracker");
    server.set_results(vec![
        Release::new("Portishead - Dummy [FLAC]", "1337x").magnet(&"1".repeat(40)),
        Release::new("Portishead - Dummy [rutracker]", "rutracker").magnet(&"2".repeat(40)),
    ]);
    let per_indexer = TorznabSearcher::new(&config(&server, &["rutracker", "1337x"])).unwrap();
    let found = per_indexer.search(&ticket("Portishead", "Dummy", None), Some("Portishead Dummy")).await.unwrap();
    assert_eq!(found.iter().map(|c| c.title.as_str()).collect::<Vec<_>>(), vec!["Portishead - Dummy [FLAC]"]);
    // The aggregate drops the failing member silently (HTTP 200, partial).
    let aggregate = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let found = aggregate.search(&ticket("Portishead", "Dummy", None), Some("Portishead Dummy")).await.unwrap();
    assert_eq!(found.len(), 1);
    // When every indexer fails, the error comes back typed and retryable.
    server.fail_indexer("1337x");
    let only_failing = TorznabSearcher::new(&config(&server, &["rutracker", "1337x"])).unwrap();
    let err = only_failing.search(&ticket("a", "b", None), Some("zzz")).await.unwrap_err();
    assert!(matches!(err, SearchError::Indexer { code: 900, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_search_beyond_the_rate_limit_waits_for_the_window() {
    let server = TorznabServer::start().await;
    let searcher =
        TorznabSearcher::new(&config(&server, &[])).unwrap().with_rate_limit_window(2, Duration::from_secs(4));
    for q in ["first", "second"] {
        searcher.search(&ticket("a", "b", None), Some(q)).await.unwrap();
    }
    assert_eq!(searcher.rate_limit_waits(), 0);
    searcher.search(&ticket("a", "b", None), Some("third")).await.unwrap();
    assert_eq!(searcher.rate_limit_waits(), 1, "the third search in the window waited");
    let qs: Vec<String> = server.searches().iter().map(|r| r.param("q").unwrap().to_string()).collect();
    assert_eq!(qs, vec!["first", "second", "third"]);
}

#[tokio::test]
async fn a_repeated_search_is_answered_from_the_cache() {
    let server = TorznabServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = make_torrent(dir.path(), "Dummy", &[("01.flac", 10_000)]);
    server.set_results(vec![Release::new("Portishead - Dummy", "orpheus").download(Download::TorrentFile(bytes))]);
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let first = searcher.search(&ticket("Portishead", "Dummy", None), None).await.unwrap();
    let requests = server.requests().len();
    // Even a key the server would now refuse does not matter: nothing is asked.
    server.set_api_key("rotated-key-after-the-first-search");
    let second = searcher.search(&ticket("portishead", "DUMMY", None), None).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(server.requests().len(), requests, "no request at all: caps, searches and links are cached");
}

#[tokio::test]
async fn an_empty_answer_is_not_cached_so_a_retry_asks_again() {
    let server = TorznabServer::start().await;
    let searcher = TorznabSearcher::new(&config(&server, &[])).unwrap();
    let nothing = searcher.search(&ticket("Portishead", "Dummy", None), None).await.unwrap();
    assert!(nothing.is_empty());
    let searches = server.searches().len();
    // The album appears at the indexer: the next search asks again and finds it.
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = make_torrent(dir.path(), "Dummy", &[("01.flac", 10_000)]);
    server.set_results(vec![Release::new("Portishead - Dummy", "orpheus").download(Download::TorrentFile(bytes))]);
    let found = searcher.search(&ticket("Portishead", "Dummy", None), None).await.unwrap();
    assert!(server.searches().len() > searches, "the indexer was asked again");
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn an_empty_url_is_a_clear_not_configured_error() {
    let searcher = TorznabSearcher::new(&JackettConfig::default()).unwrap();
    let err = searcher.search(&ticket("a", "b", None), None).await.unwrap_err();
    assert!(matches!(err, SearchError::NotConfigured));
    assert!(err.to_string().contains("[jackett] url"), "{err}");
    let bad = JackettConfig { url: "ftp://127.0.0.1".into(), ..JackettConfig::default() };
    assert!(matches!(TorznabSearcher::new(&bad), Err(SearchError::Configuration(_))));
}

#[tokio::test]
async fn an_unreachable_indexer_is_a_retryable_network_error() {
    // A loopback port with nothing listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = JackettConfig {
        url: format!("http://127.0.0.1:{port}"),
        api_key: "secret-key-never-shown".into(),
        timeout_secs: 2,
        ..JackettConfig::default()
    };
    let searcher = TorznabSearcher::new(&cfg).unwrap();
    let err = searcher.search(&ticket("Portishead", "Dummy", Some(1994)), None).await.unwrap_err();
    assert!(matches!(err, SearchError::Network { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("secret-key-never-shown"));
}
