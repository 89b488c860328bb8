//! The pipeline end to end with real components: the `downloader2` binary, qbittorrent-nox (managed by the
//! service, or test-started), a loopback swarm seeding a generated FLAC album and decoys, and a Torznab server
//! answering Jackett's XML with magnets and .torrent links. Tickets are posted and decided over HTTP only, and
//! every state is observed over the WebSocket.

use std::path::Path;
use std::time::Duration;

use downloader2::torrent_client::TorrentClient;
use serde_json::json;

use crate::support::app::ADMIN_TOKEN;
use crate::support::pipeline::{
    assert_nothing_left, external_client, files_under, AlbumNames, AlbumStack, EventRecorder, ServiceProcess,
};
use crate::support::prometheus::{histogram_count, value};
use crate::support::swarm::{wait_for, QbittorrentUnderTest};
use crate::support::webhook_receiver::WebhookReceiver;

const NAMES: AlbumNames = AlbumNames {
    artist: "Glass Harbor",
    album: "Tidal Lines",
    year: 2019,
    right_title: RIGHT_TITLE,
    live_title: "Glass Harbor - Live at the Pier (2021) [FLAC]",
    tribute_title: "VA - A Tribute to Glass Harbor: Tidal Lines Revisited (2020) [MP3 320]",
};
const RIGHT_TITLE: &str = "Glass Harbor - Tidal Lines (2019) [FLAC 16-48]";
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);
const WEBHOOK_SECRET: &str = "e2e-webhook-secret-0123456789";

const TRACKS: &[(&str, f64)] = &[("Morning Fog", 24.0), ("Salt Wind", 31.0), ("Lighthouse Keeper", 27.0)];

/// Waits until `ticket` needs approval, then approves the candidate titled `title` (by its index) as the admin.
async fn approve_by_title(service: &ServiceProcess, events: &EventRecorder, ticket: &str, title: &str) {
    let waiting = events.wait_for(ticket, "needs_approval", STAGE_TIMEOUT).await;
    // The WebSocket counts the candidates; the list is in the ticket view.
    let shown = service.ticket(ticket).await;
    let candidates = shown["state"]["candidates"].as_array().unwrap();
    assert_eq!(waiting["details"]["candidate_count"].as_u64(), Some(candidates.len() as u64));
    let idx = candidates
        .iter()
        .position(|c| c["candidate"]["title"] == title)
        .unwrap_or_else(|| panic!("{title} is not among the candidates of {ticket}"));
    let path = format!("/api/v1/ticket/{ticket}/approve");
    let response = service.post(&path, ADMIN_TOKEN, &json!({"candidate_idx": idx})).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posted_ticket_flows_from_pending_to_completed_with_real_components() {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let mut setup = fixture.setup();
    setup.json_logs = true;
    // The catalog's webhook receiver: told when the album is done.
    let receiver = WebhookReceiver::start().await;
    setup.notify_toml = format!("url = \"{}\"\nsecret = \"{WEBHOOK_SECRET}\"\n", receiver.url());
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("e2e-1")).await;
    // The source is 48 kHz: the catalog's 44.1 kHz means a real resampling.
    let ticket = fixture.ticket("e2e-1", &setup, 44_100);
    service.create(&ticket).await;

    events.wait_for("e2e-1", "completed", STAGE_TIMEOUT).await;
    assert_eq!(
        events.states_of("e2e-1"),
        ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing", "completed"],
        "every state, in order, over the WebSocket"
    );
    let progress: Vec<f64> = events
        .messages()
        .iter()
        .filter(|m| m["type"] == "progress" && m["ticket_id"] == "e2e-1")
        .map(|m| m["progress_pct"].as_f64().unwrap())
        .collect();
    assert!(!progress.is_empty(), "download/conversion progress is streamed");
    assert!(progress.iter().all(|pct| (0.0..=100.0).contains(pct)), "{progress:?}");

    let shown = service.ticket("e2e-1").await;
    let history = shown["history"].as_array().unwrap();
    let approved = history.iter().find(|event| event["to_state"] == "auto_approved").unwrap();
    assert_eq!(approved["details"]["selected"]["candidate"]["title"], RIGHT_TITLE, "the right release was chosen");
    let mapping = approved["details"]["selected"]["track_mapping"].as_array().unwrap();
    for (n, (name, _)) in TRACKS.iter().enumerate() {
        let expected = format!("{RIGHT_TITLE}/{:02} - {name}.flac", n + 1);
        let mapped = mapping.iter().find(|m| m["catalog_track_id"] == format!("e2e-1-t{}", n + 1)).unwrap();
        assert_eq!(mapped["torrent_file_path"], expected.as_str());
    }
    let stats = &shown["state"]["stats"];
    let wanted_bytes: u64 = fixture
        .right()
        .files
        .iter()
        .filter(|file| file.path.ends_with(".flac") || file.path.ends_with("cover.jpg"))
        .map(|file| file.size)
        .sum();
    // qBittorrent counts whole pieces: unwanted files sharing a piece with a wanted one come along.
    let piece_slack = 2 * 256 * 1024;
    let downloaded = stats["download_bytes"].as_u64().unwrap();
    assert!(
        (wanted_bytes..=wanted_bytes + piece_slack).contains(&downloaded),
        "only the needed files were downloaded: {downloaded} bytes for {wanted_bytes} wanted"
    );
    assert_eq!(stats["placed_files"].as_array().unwrap().len(), TRACKS.len() + 1);
    assert_eq!(stats["missing_track_ids"], json!([]));
    assert!(stats["final_size_bytes"].as_u64().unwrap() > 0);
    fixture.assert_delivered(&ticket, 44_100);
    // One signed webhook event, `completed`, carrying the stats GET /ticket shows and naming the last history entry.
    let posted = receiver.wait_accepted(1, Duration::from_secs(60)).await;
    assert_eq!(receiver.deliveries().len(), 1, "one event, delivered at the first attempt");
    assert!(posted[0].signature_is_valid(WEBHOOK_SECRET));
    let event = posted[0].json();
    assert_eq!((event["ticket_id"].as_str(), event["event"].as_str()), (Some("e2e-1"), Some("completed")));
    assert_eq!(&event["stats"], stats);
    assert_eq!(event["history_seq"], history.last().unwrap()["seq"]);
    let llm = &service.get_json("/api/v1/stats").await["llm"];
    assert_eq!(llm, &json!({"answered": 0, "cached": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0}));

    // The service process handled this one ticket: its metrics say exactly what happened (once it has seen the
    // webhook receiver's answer).
    let metrics = wait_for("the webhook outbox to be empty", Duration::from_secs(60), || async {
        let metrics = service.metrics().await;
        (value(&metrics, "downloader2_webhook_pending", &[]) == 0.0).then_some(metrics)
    })
    .await;
    let states = events.states_of("e2e-1");
    for pair in states.windows(2) {
        let labels = [("from", pair[0].as_str()), ("to", pair[1].as_str())];
        assert_eq!(value(&metrics, "downloader2_transitions_total", &labels), 1.0, "{pair:?} counted once");
    }
    for stage in ["pending", "searching", "matching", "auto_approved", "downloading", "converting", "placing"] {
        let runs = histogram_count(&metrics, "downloader2_stage_duration_seconds", &[("stage", stage)]);
        assert!(runs >= 1.0, "a stage run in {stage} is timed ({runs})");
    }
    assert_eq!(value(&metrics, "downloader2_downloaded_bytes_total", &[]), downloaded as f64);
    assert_eq!(value(&metrics, "downloader2_written_bytes_total", &[]), stats["final_size_bytes"].as_f64().unwrap());
    assert_eq!(value(&metrics, "downloader2_tickets", &[("state", "completed")]), 1.0);
    // No ffprobe: FLAC sources and a small JPEG cover are read in-process (issue 14's speed budget).
    for (system, at_least) in [("torznab", 1.0), ("qbittorrent", 1.0), ("ffmpeg", TRACKS.len() as f64)] {
        let ok = value(&metrics, "downloader2_external_calls_total", &[("system", system), ("outcome", "ok")]);
        assert!(ok >= at_least, "{system}: {ok} successful calls counted, expected at least {at_least}");
        let timed = histogram_count(&metrics, "downloader2_external_call_seconds", &[("system", system)]);
        assert!(timed >= ok, "{system}: every call timed ({timed} < {ok})");
    }
    for class in ["search", "download", "convert", "place"] {
        assert_eq!(value(&metrics, "downloader2_active_tasks", &[("class", class)]), 0.0, "{class} idle at the end");
    }
    assert_eq!(value(&metrics, "downloader2_webhook_delivered_total", &[]), 1.0);

    assert_ticket_work_logs_carry_the_ticket_id(&service.log_path, "e2e-1");

    let data = setup.data_dir();
    assert_nothing_left(&data.join("downloads"), &data.join("work"), &setup.media_root()).await;
}

/// Every JSON log line of the stages' code, and every line that names the ticket at all, is inside a span carrying
/// `ticket_id` (or has the field itself, or `ticket_ids` for a shared torrent), so searching the log for the id
/// finds the whole story of a ticket.
fn assert_ticket_work_logs_carry_the_ticket_id(log: &Path, ticket: &str) {
    const STAGE_TARGETS: &[&str] = &[
        "downloader2::processor::search",
        "downloader2::processor::matching",
        "downloader2::processor::download",
        "downloader2::processor::convert",
        "downloader2::processor::place",
        "downloader2::converter",
        "downloader2::placer",
        "downloader2::matcher",
    ];
    let text = std::fs::read_to_string(log).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let target = entry["target"].as_str().unwrap_or_default();
        let names_ticket = line.contains(ticket);
        if !names_ticket && !STAGE_TARGETS.iter().any(|prefix| target.starts_with(prefix)) {
            continue;
        }
        checked += 1;
        let in_span =
            entry["spans"].as_array().is_some_and(|spans| spans.iter().any(|span| span["ticket_id"] == ticket));
        // A torrent several tickets shared names them all.
        let shared = entry["fields"]["ticket_ids"].as_str().is_some_and(|ids| ids.contains(&format!("{ticket:?}")));
        if !(in_span || shared || entry["fields"]["ticket_id"] == ticket) {
            missing.push(line.to_string());
        }
    }
    assert!(checked > 10, "only {checked} log lines of ticket work found in {}", log.display());
    assert!(
        missing.is_empty(),
        "{} of {checked} log lines of ticket work lack the ticket id:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_approves_rejects_and_cancels_over_the_api() {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    // Nothing is sure enough: every ticket waits for the admin.
    setup.auto_approve_threshold = 1.0;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;

    // Approve the right release by its index.
    let ticket = fixture.ticket("approve-1", &setup, 44_100);
    service.create(&ticket).await;
    approve_by_title(&service, &events, "approve-1", RIGHT_TITLE).await;
    let notice = events.messages().into_iter().find(|m| m["type"] == "needs_approval" && m["ticket_id"] == "approve-1");
    assert!(
        notice.is_some_and(|m| m["candidate_count"].as_u64().is_some_and(|n| n > 0) && m.get("candidates").is_none())
    );
    events.wait_for("approve-1", "completed", STAGE_TIMEOUT).await;
    let states = events.states_of("approve-1");
    assert_eq!(states[states.len() - 5..], ["approved", "downloading", "converting", "placing", "completed"]);
    fixture.assert_delivered(&ticket, 44_100);

    // Reject another.
    service.create(&fixture.ticket("reject-1", &setup, 44_100)).await;
    events.wait_for("reject-1", "needs_approval", STAGE_TIMEOUT).await;
    let response =
        service.post("/api/v1/ticket/reject-1/reject", ADMIN_TOKEN, &json!({"reason": "wrong pressing"})).await;
    assert_eq!(response.status(), 200);
    let rejected = events.wait_for("reject-1", "rejected", Duration::from_secs(10)).await;
    assert_eq!(rejected["details"]["reason"], "wrong pressing");

    // Cancel one while it downloads: its torrent and files disappear.
    wait_for("the first ticket's torrent to be removed", Duration::from_secs(60), || async {
        qbt.client.poll_all().await.unwrap().is_empty().then_some(())
    })
    .await;
    qbt.limit_download_rate(64 * 1024).await;
    service.create(&fixture.ticket("cancel-1", &setup, 44_100)).await;
    approve_by_title(&service, &events, "cancel-1", RIGHT_TITLE).await;
    events.wait_for("cancel-1", "downloading", STAGE_TIMEOUT).await;
    wait_for("some payload on disk", Duration::from_secs(60), || async {
        (!files_under(&qbt.download_root()).is_empty()).then_some(())
    })
    .await;
    let response = service
        .http
        .delete(service.url("/api/v1/ticket/cancel-1"))
        .bearer_auth(crate::support::app::CATALOG_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for("the cancelled ticket's torrent to be removed", Duration::from_secs(10), || async {
        qbt.client.poll_all().await.unwrap().is_empty().then_some(())
    })
    .await;
    wait_for("its files to be removed", Duration::from_secs(10), || async {
        files_under(&qbt.download_root()).is_empty().then_some(())
    })
    .await;
    assert_eq!(service.ticket("cancel-1").await["state"]["state"], "cancelled");
    assert!(!Path::new(ticket["tracks"][0]["dest_path"].as_str().unwrap().replace("approve-1", "cancel-1").as_str())
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audio_that_does_not_fit_the_ticket_goes_back_to_the_admin_with_the_torrent_kept() {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    setup.auto_approve_threshold = 1.0;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("mismatch-1")).await;
    // The catalog's second track is 9 s longer than the release's: within what sizes can tell for FLAC (the matcher
    // still maps the file), beyond what the ffprobe check before encoding accepts (max(5 s, 3 %)).
    let mut ticket = fixture.ticket("mismatch-1", &setup, 44_100);
    let catalog_secs = TRACKS[1].1 + 9.0;
    ticket["tracks"][1]["duration_secs"] = json!(catalog_secs);
    service.create(&ticket).await;
    approve_by_title(&service, &events, "mismatch-1", RIGHT_TITLE).await;

    // Downloaded, probed before any encoding, and handed back.
    let deadline = std::time::Instant::now() + STAGE_TIMEOUT;
    while events.states_of("mismatch-1").iter().filter(|state| *state == "needs_approval").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ticket did not come back to the admin: {:?}\n{}\n{}",
            events.states_of("mismatch-1"),
            service.ticket("mismatch-1").await["state"],
            service.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states = events.states_of("mismatch-1");
    assert_eq!(states[states.len() - 4..], ["approved", "downloading", "converting", "needs_approval"]);
    let shown = service.ticket("mismatch-1").await;
    let reason = &shown["state"]["reason"];
    assert_eq!(reason["type"], "duration_mismatch", "{reason}");
    assert_eq!(reason["expected_secs"].as_f64().unwrap(), catalog_secs);
    assert!((reason["found_secs"].as_f64().unwrap() - TRACKS[1].1).abs() < 0.5, "{reason}");
    assert!(!shown["state"]["candidates"].as_array().unwrap().is_empty(), "the admin can choose again");
    let torrents = qbt.client.poll_all().await.unwrap();
    assert_eq!(torrents.len(), 1, "the downloaded torrent is kept for the admin's decision");
    assert_eq!(torrents[0].hash, fixture.right().info_hash);
    for track in ticket["tracks"].as_array().unwrap() {
        assert!(!Path::new(track["dest_path"].as_str().unwrap()).exists(), "nothing placed");
    }
    assert_eq!(files_under(&setup.data_dir().join("work")), Vec::<String>::new(), "no encoding happened");

    // Rejecting it frees the torrent.
    let response =
        service.post("/api/v1/ticket/mismatch-1/reject", ADMIN_TOKEN, &json!({"reason": "durations differ"})).await;
    assert_eq!(response.status(), 200);
    wait_for("the torrent to be removed after the rejection", Duration::from_secs(30), || async {
        qbt.client.poll_all().await.unwrap().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_llm_second_opinion_is_recorded_and_an_llm_outage_never_blocks_a_ticket() {
    use crate::support::llm_server::{Flavor, LlmServer, Reply, API_KEY};
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    // The LLM answers nothing but 500s until told otherwise.
    let llm = LlmServer::start(Flavor::Anthropic).await;
    let mut setup = fixture.setup();
    setup.llm = Some(("anthropic".into(), llm.base_url.clone(), API_KEY.into()));
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;

    service.create(&fixture.ticket("llm-down", &setup, 44_100)).await;
    events.wait_for("llm-down", "completed", STAGE_TIMEOUT).await;
    let history = service.ticket("llm-down").await["history"].clone();
    let decided = history.as_array().unwrap().iter().find(|e| e["to_state"] == "auto_approved").unwrap().clone();
    let report = &decided["details"]["llm"];
    assert_eq!(report["provider"], "anthropic");
    assert!(report["fallback"].as_str().is_some_and(|why| why.contains("500")), "the outage is recorded: {report}");
    assert!(!llm.requests().is_empty(), "the LLM was asked");
    assert!(llm.rejections().is_empty(), "every request was valid: {:?}", llm.rejections());

    // Back up: its answer (no verdict to change anything) is used and its cost recorded.
    llm.push([Reply::Answer(json!({"candidates": []}))]);
    service.create(&fixture.ticket("llm-up", &setup, 44_100)).await;
    events.wait_for("llm-up", "completed", STAGE_TIMEOUT).await;
    let history = service.ticket("llm-up").await["history"].clone();
    let decided = history.as_array().unwrap().iter().find(|e| e["to_state"] == "auto_approved").unwrap().clone();
    let report = &decided["details"]["llm"];
    assert!(report.get("fallback").is_none(), "{report}");
    assert!(report["usage"]["input_tokens"].as_u64().unwrap() > 0, "token usage in the history: {report}");
    let stats = service.get_json("/api/v1/stats").await;
    let usage = &stats["llm"];
    assert_eq!(usage["answered"], 1, "{usage}");
    assert!(usage["failed"].as_i64().unwrap() >= 1, "{usage}");
    assert_eq!(usage["input_tokens"], report["usage"]["input_tokens"], "{usage}");
}
