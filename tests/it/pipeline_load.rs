//! Load on the whole pipeline with real components: a loopback swarm seeding a few short generated FLAC albums, a
//! Torznab server listing all of them (every ticket sees the other albums as wrong-artist candidates), a
//! test-started qbittorrent-nox, and the real `downloader2` binary. Hundreds of tickets are posted at once, spread
//! over the albums (tickets of one album share one info hash), and carried to a terminal state. Meanwhile one task
//! samples `GET /api/v1/health`, another watches qBittorrent's torrent list. Afterwards the concurrency limits are
//! checked from the tickets' own event logs (`GET /api/v1/ticket/{id}` -> `history`).
//!
//! The scenario ([`run_load`]) is shared with `benches/pipeline_load.rs`, which prints the figures; the test asserts
//! only outcomes and limits, never time. Talks to 127.0.0.1 only; everything stops on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use downloader2::processor::scheduler::{PLACE_SLOTS, SEARCH_SLOTS};
use downloader2::torrent_client::TorrentClient;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::audio;
use crate::support::pipeline::{
    files_under, generate_flac_album, ticket_for, GeneratedAlbum, ServiceProcess, ServiceSetup, TorrentClientSetup,
};
use crate::support::swarm::{wait_for, QbittorrentUnderTest, Swarm};
use crate::support::torznab_server::{Download, Release, TorznabServer};

/// The albums tickets ask for: (artist, album, year, track names). Distinct artists, so every other album's release
/// is a wrong-artist candidate for a ticket.
const CATALOG: &[(&str, &str, i32, [&str; 2])] = &[
    ("Copper Lantern", "Northern Static", 2015, ["Ember Road", "Quiet Engines"]),
    ("Velvet Orchard", "Paper Satellites", 2018, ["Glass Rivers", "Midnight Ferry"]),
    ("Hollow Meridian", "Salt and Cinder", 2012, ["Iron Bloom", "Harbor Lights"]),
    ("Marble Finch", "Evening Cartography", 2021, ["Lantern Field", "Slow Comet"]),
];
/// The states that are the end of a ticket's road.
const TERMINAL: &[&str] = &["completed", "rejected", "failed", "cancelled"];
/// Source and output sample rate (no resampling: the load is on the pipeline, not on ffmpeg's resampler).
const SAMPLE_RATE_HZ: u32 = 44_100;
/// How often `/health` is asked.
pub const HEALTH_PERIOD: Duration = Duration::from_millis(50);

/// The shape of one load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub tickets: usize,
    pub albums: usize,
    pub track_secs: f64,
    pub max_parallel_downloads: usize,
    pub max_parallel_conversions: usize,
    /// How long every ticket may take to become terminal, all together.
    pub deadline: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            tickets: 200,
            albums: 4,
            track_secs: 5.0,
            max_parallel_downloads: 3,
            max_parallel_conversions: 2,
            deadline: Duration::from_secs(900),
        }
    }
}

/// One seeded album and what tickets ask for.
pub struct LoadAlbum {
    pub artist: &'static str,
    pub album: &'static str,
    pub year: i32,
    pub title: String,
    pub generated: GeneratedAlbum,
}

/// The running stack; everything stops when it is dropped (service first).
pub struct LoadStack {
    pub service: ServiceProcess,
    pub setup: ServiceSetup,
    pub qbt: QbittorrentUnderTest,
    pub torznab: TorznabServer,
    pub swarm: Swarm,
    pub albums: Vec<LoadAlbum>,
    _dir: tempfile::TempDir,
}

/// `GET /health` as seen from a client while the load runs.
#[derive(Debug, Default, Clone)]
pub struct HealthSamples {
    /// Round-trip of every answered request, in order.
    pub latencies: Vec<Duration>,
    /// Requests that failed or answered something else than 200 (status or error text).
    pub failures: Vec<String>,
}

impl HealthSamples {
    /// The `q`-quantile (0..=1) of the latencies (nearest rank).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    /// `samples=N p50=.. p99=.. max=..` in milliseconds.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "samples={} failures={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            self.latencies.len(),
            self.failures.len(),
            ms(self.quantile(0.50)),
            ms(self.quantile(0.99)),
            ms(self.max())
        )
    }
}

/// What the torrent watcher saw in qBittorrent's list while the load ran.
#[derive(Debug, Default, Clone)]
pub struct TorrentWatch {
    pub snapshots: usize,
    /// Snapshots listing one info hash twice.
    pub duplicate_hashes: Vec<String>,
    /// Hashes that belong to no seeded album.
    pub unknown_hashes: BTreeSet<String>,
    pub max_torrents: usize,
    /// The most tickets tagged on one torrent at once.
    pub max_tickets_per_torrent: usize,
    pub poll_errors: usize,
}

/// The pseudo-state of a ticket waiting for a scheduled retry (it holds no slot meanwhile).
pub const RETRY_WAIT: &str = "waiting for a retry";

/// One ticket's transitions: (at, from, to), oldest first; history notes of a scheduled retry read as a move to
/// [`RETRY_WAIT`], and the `resumed` note as the move back.
#[derive(Debug, Clone)]
pub struct TicketLog {
    pub id: String,
    pub state: Value,
    pub events: Vec<(DateTime<Utc>, Option<String>, String)>,
}

/// The outcome of [`run_load`].
pub struct LoadReport {
    /// From the first ticket posted to the last one terminal.
    pub wall: Duration,
    pub health: HealthSamples,
    pub torrents: TorrentWatch,
    pub logs: Vec<TicketLog>,
    /// Ticket id -> the album index it asked for.
    pub album_of: BTreeMap<String, usize>,
    /// The distinct `q` values the searcher sent.
    pub queries: BTreeSet<String>,
    /// The tickets posted (JSON as posted).
    pub posted: Vec<Value>,
}

impl LoadStack {
    /// Generates the albums, seeds them, starts the Torznab server, qbittorrent-nox and the service.
    pub async fn start(options: &LoadOptions) -> LoadStack {
        assert!((1..=CATALOG.len()).contains(&options.albums), "1..={} albums", CATALOG.len());
        let dir = tempfile::tempdir().unwrap();
        let mut albums = Vec::new();
        for (artist, album, year, names) in &CATALOG[..options.albums] {
            let title = format!("{artist} - {album} ({year}) [FLAC]");
            let tracks: Vec<(&str, f64)> = names.iter().map(|name| (*name, options.track_secs)).collect();
            let generated = generate_flac_album(&dir.path().join("sources"), &title, &tracks, SAMPLE_RATE_HZ);
            albums.push(LoadAlbum { artist, album, year: *year, title, generated });
        }
        let mut builder = Swarm::builder();
        for album in &albums {
            builder = builder.album_from_files(&album.title, &album.generated.files);
        }
        let swarm = builder.build().await;
        let torznab = TorznabServer::start().await;
        // Every search lists every album: half as .torrent links, half as magnets (fetched through qBittorrent).
        let releases: Vec<Release> = swarm
            .albums
            .iter()
            .enumerate()
            .map(|(n, seeded)| {
                let size = seeded.files.iter().map(|file| file.size).sum::<u64>();
                if n % 2 == 0 {
                    Release::new(&seeded.name, "orpheus")
                        .download(Download::TorrentFile(seeded.torrent.to_vec()))
                        .size(size)
                        .seeders(5, 6)
                } else {
                    let mut release = Release::new(&seeded.name, "1337x").size(size).seeders(7, 8);
                    release.magnet = Some(seeded.magnet.clone());
                    release.infohash = Some(seeded.info_hash.to_string());
                    release
                }
            })
            .collect();
        torznab.set_results(releases);
        let qbt = QbittorrentUnderTest::start(|_| {}).await;
        let mut setup = ServiceSetup::new(&dir.path().join("service"), &torznab.url(), &torznab.api_key());
        setup.torrent_client = TorrentClientSetup::External {
            url: qbt.managed.url().to_string(),
            username: qbt.managed.username().to_string(),
            password: qbt.managed.password().to_string(),
            download_path: qbt.download_root(),
        };
        setup.max_parallel_downloads = options.max_parallel_downloads;
        setup.max_parallel_conversions = options.max_parallel_conversions;
        let service = ServiceProcess::start(&setup).await;
        LoadStack { service, setup, qbt, torznab, swarm, albums, _dir: dir }
    }

    /// The ticket `id` for album `n`, with destinations of its own.
    pub fn ticket(&self, id: &str, n: usize) -> Value {
        let album = &self.albums[n];
        ticket_for(
            id,
            &self.setup.media_root(),
            album.artist,
            album.album,
            album.year,
            &album.generated.tracks,
            SAMPLE_RATE_HZ,
        )
    }

    /// Counts by state (`GET /api/v1/stats`).
    pub async fn counts_by_state(&self) -> BTreeMap<String, i64> {
        let stats = self.service.get_json("/api/v1/stats").await;
        let counts = stats["counts_by_state"].as_object().cloned().unwrap_or_default();
        counts.into_iter().map(|(state, n)| (state, n.as_i64().unwrap_or(0))).collect()
    }

    /// Every ticket's state and history.
    pub async fn ticket_logs(&self, ids: &[String]) -> Vec<TicketLog> {
        futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let view = self.service.ticket(&id).await;
                let events = view["history"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{id}: no history in {view}"))
                    .iter()
                    .map(|event| {
                        let at: DateTime<Utc> = serde_json::from_value(event["at"].clone()).unwrap();
                        let from = event["from_state"].as_str().map(str::to_string);
                        // A scheduled retry gives the slot back until the ticket is resumed (its `resumed` note
                        // is an event back into the state): the sweep must not count the wait.
                        let to = if event["details"]["retry"].is_object() {
                            RETRY_WAIT.to_string()
                        } else {
                            event["to_state"].as_str().unwrap().to_string()
                        };
                        (at, from, to)
                    })
                    .collect();
                TicketLog { id, state: view["state"].clone(), events }
            })
            .buffered(8)
            .collect()
            .await
    }
}

/// Samples `/api/v1/health` every [`HEALTH_PERIOD`] until `stop`.
fn sample_health(base: String, stop: CancellationToken) -> tokio::task::JoinHandle<HealthSamples> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let url = format!("{base}/api/v1/health");
        let mut samples = HealthSamples::default();
        let mut tick = tokio::time::interval(HEALTH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            match http.get(&url).send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await;
                    let elapsed = started.elapsed();
                    match body {
                        Ok(_) if status == 200 => samples.latencies.push(elapsed),
                        Ok(text) => samples.failures.push(format!("{status}: {text}")),
                        Err(err) => samples.failures.push(format!("{status}: body: {err}")),
                    }
                }
                Err(err) => samples.failures.push(err.to_string()),
            }
        }
        samples
    })
}

/// Polls qBittorrent's torrent list until `stop`, recording duplicates, strangers and sharing.
fn watch_torrents(
    client: Arc<downloader2::torrent_client::qbittorrent::QbittorrentClient>,
    known: BTreeSet<String>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<TorrentWatch> {
    tokio::spawn(async move {
        let mut watch = TorrentWatch::default();
        loop {
            match client.poll_all().await {
                Ok(torrents) => {
                    watch.snapshots += 1;
                    let hashes: Vec<String> = torrents.iter().map(|t| t.hash.to_string()).collect();
                    let distinct: BTreeSet<&String> = hashes.iter().collect();
                    if distinct.len() != hashes.len() {
                        watch.duplicate_hashes.push(hashes.join(","));
                    }
                    watch.unknown_hashes.extend(hashes.iter().filter(|hash| !known.contains(*hash)).cloned());
                    watch.max_torrents = watch.max_torrents.max(torrents.len());
                    let most = torrents.iter().map(|t| t.ticket_ids.len()).max().unwrap_or(0);
                    watch.max_tickets_per_torrent = watch.max_tickets_per_torrent.max(most);
                }
                Err(_) => watch.poll_errors += 1,
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        watch
    })
}

/// Posts `options.tickets` tickets at once (album `n % albums`), waits until none is left working (terminal, or
/// waiting for an admin), and collects the figures and every ticket's history.
pub async fn run_load(stack: &LoadStack, options: &LoadOptions) -> LoadReport {
    let stop = CancellationToken::new();
    let health = sample_health(stack.service.base.clone(), stop.clone());
    let known: BTreeSet<String> = stack.swarm.albums.iter().map(|album| album.info_hash.to_string()).collect();
    let torrents = watch_torrents(stack.qbt.client.clone(), known, stop.clone());

    let mut album_of = BTreeMap::new();
    let posted: Vec<Value> = (0..options.tickets)
        .map(|n| {
            let id = format!("load-{n:03}");
            album_of.insert(id.clone(), n % stack.albums.len());
            stack.ticket(&id, n % stack.albums.len())
        })
        .collect();
    let started = Instant::now();
    futures::future::join_all(posted.iter().map(|ticket| stack.service.create(ticket))).await;

    let deadline = Instant::now() + options.deadline;
    loop {
        let counts = stack.counts_by_state().await;
        let settled: i64 = counts
            .iter()
            .filter(|(state, _)| TERMINAL.contains(&state.as_str()) || state.as_str() == "needs_approval")
            .map(|(_, n)| n)
            .sum();
        if usize::try_from(settled).unwrap() >= options.tickets {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tickets still working after {:?}: {counts:?}\n--- service log ---\n{}",
            options.deadline,
            stack.service.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = started.elapsed();
    stop.cancel();
    let health = health.await.unwrap();
    let torrents = torrents.await.unwrap();
    let ids: Vec<String> = album_of.keys().cloned().collect();
    let logs = stack.ticket_logs(&ids).await;
    let queries = stack.torznab.searches().iter().filter_map(|r| r.param("q").map(str::to_string)).collect();
    LoadReport { wall, health, torrents, logs, album_of, queries, posted }
}

/// The largest number of tickets at once in any of `states`, from the event logs, with one instant (ms since the
/// epoch) where it was reached and the tickets in those states then. A ticket is in a state from the event that
/// entered it until the next event; at equal timestamps exits count before entries (a slot handed over within one
/// millisecond is not an overlap: the scheduler frees a slot only after the transition that left it is written).
pub fn peak_concurrency(logs: &[TicketLog], states: &[&str]) -> (usize, i64, Vec<String>) {
    // (at ms, +1 entry / -1 exit, ticket)
    let mut edges: Vec<(i64, i32, &str)> = Vec::new();
    for log in logs {
        for (n, (at, _, to)) in log.events.iter().enumerate() {
            if !states.contains(&to.as_str()) {
                continue;
            }
            edges.push((at.timestamp_millis(), 1, &log.id));
            if let Some((left, _, _)) = log.events.get(n + 1) {
                edges.push((left.timestamp_millis(), -1, &log.id));
            }
        }
    }
    edges.sort_by_key(|(at, delta, _)| (*at, *delta));
    let mut inside: BTreeSet<&str> = BTreeSet::new();
    let mut peak = (0, 0, Vec::new());
    for (at, delta, id) in edges {
        if delta > 0 {
            inside.insert(id);
        } else {
            inside.remove(id);
        }
        if inside.len() > peak.0 {
            peak = (inside.len(), at, inside.iter().map(|id| id.to_string()).collect());
        }
    }
    peak
}

/// The service log's lines naming any of `needles` (ANSI colours stripped), at most `max` of them, for failure
/// messages that show what happened to the tickets concerned rather than only the log's tail.
pub fn log_lines_about(stack: &LoadStack, needles: &[String], max: usize) -> String {
    let text = std::fs::read_to_string(&stack.service.log_path).unwrap_or_default();
    let plain = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap().replace_all(&text, "").into_owned();
    let lines: Vec<&str> =
        plain.lines().filter(|line| needles.iter().any(|needle| line.contains(needle.as_str()))).collect();
    lines[lines.len().saturating_sub(max)..].join("\n")
}

/// The states a ticket went through, in order.
fn path_of(log: &TicketLog) -> Vec<&str> {
    log.events.iter().map(|(_, _, to)| to.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tickets_at_once_all_finish_within_the_limits_while_health_answers() {
    let options = LoadOptions::default();
    let stack = LoadStack::start(&options).await;
    let began = Instant::now();
    let report = run_load(&stack, &options).await;
    println!(
        "load: {} tickets over {} albums terminal in {:.1} s; health {}; torrents: max {} at once, up to {} tickets \
         on one, {} snapshots; queries sent: {:?}",
        options.tickets,
        options.albums,
        report.wall.as_secs_f64(),
        report.health.summary(),
        report.torrents.max_torrents,
        report.torrents.max_tickets_per_torrent,
        report.torrents.snapshots,
        report.queries
    );

    // The limits, from the event log (checked before completion, so one run shows both kinds of failure).
    let limits: [(&[&str], usize); 4] = [
        (&["downloading"], options.max_parallel_downloads),
        (&["converting"], options.max_parallel_conversions),
        (&["searching", "matching"], SEARCH_SLOTS),
        (&["placing"], PLACE_SLOTS),
    ];
    let mut over_limit = Vec::new();
    for (states, limit) in limits {
        let (peak, at, tickets) = peak_concurrency(&report.logs, states);
        println!("peak in {states:?}: {peak} (limit {limit})");
        assert!(peak >= 1, "no ticket was ever in {states:?}");
        if peak > limit {
            let at = DateTime::<Utc>::from_timestamp_millis(at).unwrap_or_default();
            let paths: Vec<String> = report
                .logs
                .iter()
                .filter(|log| tickets.contains(&log.id))
                .map(|log| {
                    let events: Vec<String> =
                        log.events.iter().map(|(at, _, to)| format!("{} {to}", at.format("%H:%M:%S%.3f"))).collect();
                    format!("  {}: {}", log.id, events.join(", "))
                })
                .collect();
            over_limit
                .push(format!("{peak} tickets in {states:?} at once (limit {limit}) at {at}:\n{}", paths.join("\n")));
        }
    }
    assert!(over_limit.is_empty(), "concurrency limits exceeded:\n{}", over_limit.join("\n"));

    // Every ticket completed.
    let stuck: Vec<&TicketLog> = report.logs.iter().filter(|log| log.state["state"] != "completed").collect();
    let described: Vec<String> = stuck
        .iter()
        .map(|log| {
            let state = &log.state;
            let why = state["error"].as_str().map_or_else(|| format!("{:?}", state["reason"]), str::to_string);
            format!("{}: {} ({why}); path {:?}", log.id, state["state"], path_of(log))
        })
        .collect();
    let mut needles: Vec<String> = stuck.iter().map(|log| format!("ticket_id={}", log.id)).collect();
    needles.push("WARN".into());
    needles.push("ERROR".into());
    assert!(
        stuck.is_empty(),
        "{} of {} tickets did not complete:\n{}\n--- service log lines about them, warnings and errors ---\n{}",
        stuck.len(),
        options.tickets,
        described.join("\n"),
        log_lines_about(&stack, &needles, 120)
    );
    for log in &report.logs {
        let path = path_of(log);
        for stage in ["searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"] {
            assert!(path.contains(&stage), "{} never went through {stage}: {path:?}", log.id);
        }
    }

    // The right album reached each ticket's own destinations (one full check per album, presence for all).
    let mut probed = BTreeSet::new();
    for ticket in &report.posted {
        let id = ticket["ticket_id"].as_str().unwrap();
        for track in ticket["tracks"].as_array().unwrap() {
            let dest = Path::new(track["dest_path"].as_str().unwrap());
            assert!(dest.is_file(), "{id}: {} not placed", dest.display());
            if probed.insert(report.album_of[id]) {
                let probe = audio::probe(dest);
                assert_eq!(audio::audio_stream(&probe)["codec_name"], "vorbis", "{}", dest.display());
                let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
                assert!((duration - options.track_secs).abs() < 1.0, "{}: {duration} s", dest.display());
            }
        }
        assert!(Path::new(ticket["images"][0]["dest_path"].as_str().unwrap()).is_file(), "{id}: cover not placed");
    }
    for log in &report.logs {
        let chosen = stack.service.ticket(&log.id).await;
        let approved = chosen["history"].as_array().unwrap().iter().find(|e| e["to_state"] == "auto_approved");
        let title = approved.map(|e| e["details"]["selected"]["candidate"]["title"].clone()).unwrap_or_default();
        assert_eq!(title, stack.albums[report.album_of[&log.id]].title.as_str(), "{}: the right release", log.id);
    }

    // qBittorrent held one torrent per info hash, only the seeded albums'.
    let watch = &report.torrents;
    assert!(watch.snapshots > 0, "the torrent list was never read ({} errors)", watch.poll_errors);
    assert!(watch.duplicate_hashes.is_empty(), "one hash listed twice: {:?}", watch.duplicate_hashes);
    assert!(watch.unknown_hashes.is_empty(), "torrents of no seeded album: {:?}", watch.unknown_hashes);
    assert!(watch.max_torrents <= options.albums, "{} torrents for {} albums", watch.max_torrents, options.albums);

    // Health answered throughout (its latency is a benchmark figure, not asserted here).
    assert!(!report.health.latencies.is_empty(), "no health answer while the load ran");
    assert!(report.health.failures.is_empty(), "health failed: {:?}", report.health.failures);

    // Nothing left behind.
    wait_for("every torrent to be removed", Duration::from_secs(60), || async {
        stack.qbt.client.poll_all().await.unwrap().is_empty().then_some(())
    })
    .await;
    let work = stack.setup.data_dir().join("work");
    wait_for("every work dir to be removed", Duration::from_secs(30), || async {
        files_under(&work).is_empty().then_some(())
    })
    .await;
    println!("test total (setup included): {:.1} s", began.elapsed().as_secs_f64());
}
