//! The catalog webhook against a test receiver on loopback (`support::webhook_receiver`): every configured event
//! posted, signed (checked with `hmac` + `sha2`, and with the README's Python and openssl snippets run as written),
//! carrying its id, timestamp, state and (for `completed`) the stats that `GET /ticket` shows; a lost answer sent
//! again with the same event id; a receiver down for a minute (connections refused, then 503) getting every event
//! afterwards in commit order, with the failures visible in `/metrics`, `GET /api/v1/webhook` and the admin page's
//! header in a real Chromium; and the real binary SIGKILLed while cancellations commit and the receiver refuses
//! them, then restarted: every committed event is delivered, none for a transition that did not commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use downloader2::config::Config;
use downloader2::models::{CompletionStats, StateKind, TicketState};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Connection;

use crate::support::app::{move_to, sample_ticket, to_needs_approval, TestApp, ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::browser::Browser;
use crate::support::prometheus::{parse, value};
use crate::support::service_process::{ServiceOptions, ServiceProcess};
use crate::support::swarm::{require_program, wait_for};
use crate::support::webhook_receiver::{Answer, Delivery, WebhookReceiver};

const SECRET: &str = "webhook-secret-for-tests-0123456789";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The WebDriver key code of Enter.
const ENTER: &str = "\u{E007}";

fn notify_config(config: &mut Config, receiver: &WebhookReceiver) {
    config.notify.url = receiver.url();
    config.notify.secret = SECRET.into();
    config.notify.retry_initial_delay_secs = 1;
    config.notify.retry_max_delay_secs = 2;
}

/// The `[notify]` section for the binary.
fn notify_toml(receiver: &WebhookReceiver, max_delay_secs: u64) -> String {
    format!(
        "[notify]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_initial_delay_secs = 1\nretry_max_delay_secs = {max_delay_secs}\n",
        receiver.url()
    )
}

fn at_of(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// What every delivery must be, whatever it was answered: signed with the secret (and not with another key), the
/// headers agreeing with the body, sent recently, as JSON.
fn assert_well_formed(delivery: &Delivery) {
    assert!(delivery.signature_is_valid(SECRET), "signature does not verify: {:?}", delivery.headers);
    assert!(!delivery.signature_is_valid("another-secret-0123456789"), "a signature any key verifies");
    let body = delivery.json();
    assert_eq!(delivery.header("x-downloader2-event-id"), body["event_id"].as_str().unwrap());
    assert_eq!(delivery.header("x-downloader2-timestamp"), body["timestamp"].as_i64().unwrap().to_string());
    assert_eq!(delivery.header("x-downloader2-event"), body["event"].as_str().unwrap());
    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(body["event"], body["state"]);
    let sent = body["timestamp"].as_i64().unwrap();
    assert!((Utc::now().timestamp() - sent).abs() < 600, "the timestamp is when the delivery was sent: {sent}");
    assert!(uuid::Uuid::parse_str(body["event_id"].as_str().unwrap()).is_ok(), "{body}");
}

/// The first accepted delivery of each event, in the order they were accepted.
fn accepted_in_order(receiver: &WebhookReceiver) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    receiver.accepted().iter().map(Delivery::json).filter(|body| seen.insert(body["event_id"].to_string())).collect()
}

/// Every delivery of one event says the same thing but its timestamp and attempt number, which never goes back
/// (a number repeats only when the process died before it recorded the failed attempt).
fn assert_redeliveries_agree(deliveries: &[Delivery]) {
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for delivery in deliveries {
        by_id.entry(delivery.event_id()).or_default().push(delivery.json());
    }
    for (id, bodies) in by_id {
        let strip = |body: &Value| {
            let mut body = body.clone();
            let object = body.as_object_mut().unwrap();
            object.remove("timestamp");
            object.remove("delivery_attempt");
            body
        };
        for pair in bodies.windows(2) {
            assert_eq!(strip(&pair[0]), strip(&pair[1]), "two deliveries of {id} differ");
            assert!(
                pair[1]["delivery_attempt"].as_u64() >= pair[0]["delivery_attempt"].as_u64(),
                "attempt numbers of {id}: {} then {}",
                pair[0]["delivery_attempt"],
                pair[1]["delivery_attempt"]
            );
        }
    }
}

/// The history entry an event names must be the transition it reports.
fn assert_matches_history(event: &Value, history: &[Value]) {
    let entry = history
        .iter()
        .find(|entry| entry["seq"] == event["history_seq"])
        .unwrap_or_else(|| panic!("event {event} names no history entry: {history:#?}"));
    assert_eq!(entry["to_state"], event["state"], "{event}");
    assert_eq!(entry["from_state"], event["previous_state"], "{event}");
    assert_eq!(at_of(&entry["at"]), at_of(&event["occurred_at"]), "{event}");
}

/// Runs the README's Python snippet, as written, on `cases` (raw body, signature header): one output line each,
/// `event <id>`, `duplicate` or `error <message>`. The seen-id set is shared by the cases, in order.
fn run_readme_python(cases: &[(Vec<u8>, String)], dir: &Path) -> Vec<String> {
    let python = require_program("python3", "python3");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let snippet = readme_block(&readme, "<!-- webhook-verify-python -->", "```python");
    let harness = r#"
import base64, json, os, sys
seen = set()
for case in json.load(open(sys.argv[1])):
    try:
        event = verify_webhook(os.environ["WEBHOOK_SECRET"].encode(), base64.b64decode(case["body"]),
                               {"X-Downloader2-Signature": case["signature"]}, seen)
        print("duplicate" if event is None else "event " + event["event_id"])
    except ValueError as err:
        print("error " + str(err))
"#;
    let script = dir.join("verify.py");
    std::fs::write(&script, format!("{snippet}\n{harness}")).unwrap();
    use base64::Engine;
    let cases: Vec<Value> = cases
        .iter()
        .map(|(body, signature)| {
            json!({"body": base64::engine::general_purpose::STANDARD.encode(body), "signature": signature})
        })
        .collect();
    let input = dir.join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let output = Command::new(python).arg(&script).arg(&input).env("WEBHOOK_SECRET", SECRET).output().unwrap();
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect()
}

/// Runs the README's shell snippet, as written, with `body` saved as `body.json`: (exit success, output).
fn run_readme_shell(body: &[u8], signature: &str, dir: &Path) -> (bool, String) {
    require_program("openssl", "openssl");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let snippet = readme_block(&readme, "<!-- webhook-verify-shell -->", "```sh");
    std::fs::write(dir.join("body.json"), body).unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(snippet)
        .current_dir(dir)
        .env("WEBHOOK_SECRET", SECRET)
        .env("SIGNATURE", signature)
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The code block that follows `marker` in the README (it must open with `fence`).
fn readme_block<'a>(readme: &'a str, marker: &str, fence: &str) -> &'a str {
    let after = &readme[readme.find(marker).unwrap_or_else(|| panic!("README lacks {marker}")) + marker.len()..];
    let after = after.trim_start();
    assert!(after.starts_with(fence), "{marker} is not followed by a {fence} block");
    let code = &after[fence.len()..];
    &code[..code.find("\n```").unwrap()]
}

/// A signature made here, independently of the service.
fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_event_is_posted_signed_with_its_id_timestamp_and_state() {
    let receiver = WebhookReceiver::start().await;
    // The first answer is lost on the way: the sender cannot know the event arrived and must send it again.
    receiver.script(&[Answer::Drop]);
    let t = TestApp::start_with(|config| notify_config(config, &receiver)).await;
    for id in ["wh-cancel", "wh-reject", "wh-fail", "wh-approve", "wh-done"] {
        t.create(&sample_ticket(id, &t.media_root())).await;
    }
    assert_eq!(t.delete("/ticket/wh-cancel", CATALOG_TOKEN).await.status(), 200);
    to_needs_approval(&t, "wh-reject", &["Portishead - Dummy (1994) [MP3]", "Portishead - Dummy [FLAC]"], Some(1))
        .await;
    let rejected = t.post("/ticket/wh-reject/reject", ADMIN_TOKEN, &json!({"reason": "none of these"})).await;
    assert_eq!(rejected.status(), 200);
    let failed = TicketState::Failed {
        failed_at_state: StateKind::Searching,
        error: "every indexer answered 500".into(),
        retryable: true,
        retry_count: 5,
        failed_at: Utc::now(),
    };
    move_to(&t, "wh-fail", failed).await;
    to_needs_approval(&t, "wh-approve", &["Portishead - Dummy [FLAC]"], Some(0)).await;
    assert_eq!(t.post("/ticket/wh-approve/approve", ADMIN_TOKEN, &json!({})).await.status(), 200);
    let stats = CompletionStats {
        download_bytes: 301_234_567,
        download_duration_secs: 81.5,
        conversion_duration_secs: 40.25,
        final_size_bytes: 98_765_432,
        placed_files: vec![t.media_root().join("albums/wh-done/d1t01.ogg").display().to_string()],
        skipped_files: vec![],
        missing_track_ids: vec!["t12".into()],
        missing_image_ids: vec![],
        verification: None,
    };
    to_needs_approval(&t, "wh-done", &["Portishead - Dummy [FLAC]"], Some(0)).await;
    assert_eq!(t.post("/ticket/wh-done/approve", ADMIN_TOKEN, &json!({})).await.status(), 200);
    let now = Utc::now();
    for state in [
        TicketState::Downloading {
            torrent_hash: "ab".repeat(20),
            progress_pct: 0.0,
            download_speed_bps: 0,
            eta_secs: None,
            started_at: now,
        },
        TicketState::Converting {
            current_track_idx: 0,
            total_tracks: 1,
            current_track_name: "x".into(),
            started_at: now,
        },
        TicketState::Placing { files_placed: 0, total_files: 1, started_at: now },
        TicketState::Completed { completed_at: now, stats },
    ] {
        move_to(&t, "wh-done", state).await;
    }

    let expected = [
        ("wh-cancel", "cancelled"),
        ("wh-reject", "needs_approval"),
        ("wh-reject", "rejected"),
        ("wh-fail", "failed"),
        ("wh-approve", "needs_approval"),
        ("wh-done", "needs_approval"),
        ("wh-done", "completed"),
    ];
    receiver.wait_accepted(expected.len(), DELIVERY_TIMEOUT).await;
    let deliveries = receiver.deliveries();
    for delivery in &deliveries {
        assert_well_formed(delivery);
    }
    // The lost answer: the same event again, with the same id, as its second attempt.
    assert_eq!(deliveries[0].answered, Answer::Drop);
    assert_eq!(deliveries[1].answered, Answer::Accept);
    assert_eq!(deliveries[0].event_id(), deliveries[1].event_id());
    assert_eq!(
        (deliveries[0].json()["delivery_attempt"].as_u64(), deliveries[1].json()["delivery_attempt"].as_u64()),
        (Some(1), Some(2))
    );
    assert_redeliveries_agree(&deliveries);

    // One event per configured state entered, in commit order; none for pending, searching, approved...
    let events = accepted_in_order(&receiver);
    let reported: Vec<(&str, &str)> =
        events.iter().map(|e| (e["ticket_id"].as_str().unwrap(), e["event"].as_str().unwrap())).collect();
    assert_eq!(reported, expected);
    assert_eq!(receiver.accepted().len(), expected.len(), "each event accepted once");
    for event in &events {
        let shown: Value = t
            .get(&format!("/ticket/{}", event["ticket_id"].as_str().unwrap()), CATALOG_TOKEN)
            .await
            .json()
            .await
            .unwrap();
        assert_matches_history(event, shown["history"].as_array().unwrap());
        match event["event"].as_str().unwrap() {
            "completed" => assert_eq!(event["stats"], shown["state"]["stats"], "the stats GET /ticket shows"),
            "failed" => {
                assert_eq!(event["details"]["error"], "every indexer answered 500");
                assert_eq!(event["details"]["retryable"], true);
                assert_eq!(event["details"]["failed_at_state"], "searching");
            }
            "rejected" => assert_eq!(event["details"]["reason"], "none of these"),
            "needs_approval" if event["ticket_id"] == "wh-reject" => {
                assert_eq!(event["details"]["candidate_count"], 2);
                assert_eq!(event["details"]["recommended_title"], "Portishead - Dummy [FLAC]");
            }
            _ => {}
        }
        if event["event"] != "completed" {
            assert!(event.get("stats").is_none(), "stats only for completed: {event}");
        }
    }

    // The README's receiver recipes accept what the service sent, and refuse a forgery and a replay.
    let dir = tempfile::tempdir().unwrap();
    let first = &deliveries[0];
    let redelivery = &deliveries[1];
    let signature = |delivery: &Delivery| delivery.header("x-downloader2-signature").to_string();
    let mut forged = first.body.clone();
    let position = forged.windows(9).position(|window| window == b"wh-cancel").unwrap();
    forged[position + 3] = b'C';
    let mut old = first.json();
    old["timestamp"] = json!(Utc::now().timestamp() - 3600);
    let old = serde_json::to_vec(&old).unwrap();
    let outputs = run_readme_python(
        &[
            (first.body.clone(), signature(first)),
            (redelivery.body.clone(), signature(redelivery)),
            (forged.clone(), signature(first)),
            (old.clone(), sign(&old)),
        ],
        dir.path(),
    );
    assert_eq!(
        outputs,
        [
            format!("event {}", first.event_id()),
            "duplicate".to_string(),
            "error bad signature".to_string(),
            "error stale timestamp: a replayed request".to_string()
        ]
    );
    assert_eq!(
        run_readme_shell(&redelivery.body, &signature(redelivery), dir.path()),
        (true, "signature valid".into())
    );
    assert_eq!(run_readme_shell(&forged, &signature(first), dir.path()), (false, "signature INVALID".into()));

    let status = wait_for("the outbox to be empty", DELIVERY_TIMEOUT, || async {
        let status: Value = t.get("/webhook", ADMIN_TOKEN).await.json().await.unwrap();
        (status["pending"] == 0).then_some(status)
    })
    .await;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["url"], receiver.url());
    assert_eq!(status["pending"], 0);
    assert_eq!(status["head"], Value::Null);
    assert_eq!(t.get("/webhook", CATALOG_TOKEN).await.status(), 403);
    let config: Value = t.get("/config", ADMIN_TOKEN).await.json().await.unwrap();
    assert_eq!(config["notify"]["secret"], "<redacted>");
    t.stop().await;
}

/// `GET /metrics` of the binary, parsed.
async fn scrape(http: &reqwest::Client, service: &ServiceProcess) -> prometheus_parse::Scrape {
    let response = http.get(service.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    parse(&response.text().await.unwrap())
}

/// `/metrics` once the outbox is empty: the service has seen the receiver's last answer and recorded it (the
/// receiver records a request before its answer reaches the service).
async fn emptied_outbox(http: &reqwest::Client, service: &ServiceProcess) -> prometheus_parse::Scrape {
    wait_for("the outbox to be empty", DELIVERY_TIMEOUT, || async {
        let metrics = scrape(http, service).await;
        (value(&metrics, "downloader2_webhook_pending", &[]) == 0.0).then_some(metrics)
    })
    .await
}

async fn webhook_status(http: &reqwest::Client, service: &ServiceProcess) -> Value {
    service.get_json(http, "/api/v1/webhook", ADMIN_TOKEN).await
}

async fn create(http: &reqwest::Client, service: &ServiceProcess, id: &str) {
    let response = http
        .post(service.url("/api/v1/ticket"))
        .bearer_auth(CATALOG_TOKEN)
        .json(&sample_ticket(id, &service.media))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

async fn cancel(http: &reqwest::Client, base: &str, id: &str) -> reqwest::Result<reqwest::StatusCode> {
    let response = http.delete(format!("{base}/api/v1/ticket/{id}")).bearer_auth(CATALOG_TOKEN).send().await?;
    Ok(response.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_down_for_a_minute_then_up_gets_every_event_in_commit_order() {
    let receiver = WebhookReceiver::start().await;
    receiver.down().await;
    let down_since = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let notify = notify_toml(&receiver, 4);
    let options = ServiceOptions { extra_toml: &notify, ..ServiceOptions::in_dir(dir.path()) };
    let service = ServiceProcess::start(dir.path(), &options).await;
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..12).map(|n| format!("down-{n:02}")).collect();
    for id in &ids {
        create(&http, &service, id).await;
    }

    // Connections refused: the first six cancellations commit (the pipeline does not wait for the receiver).
    for id in &ids[..6] {
        assert_eq!(cancel(&http, &service.base, id).await.unwrap(), 200);
    }
    let status = wait_for("a refused delivery to be recorded", DELIVERY_TIMEOUT, || async {
        let status = webhook_status(&http, &service).await;
        (status["head"]["attempts"].as_u64() >= Some(2)).then_some(status)
    })
    .await;
    assert_eq!(status["pending"], 6);
    assert_eq!(status["head"]["ticket_id"], ids[0].as_str(), "the first event is the one tried");
    let error = status["head"]["last_error"].as_str().unwrap();
    assert!(error.contains("cannot connect to the webhook receiver") && error.contains(&receiver.url()), "{error}");
    let metrics = scrape(&http, &service).await;
    assert!(value(&metrics, "downloader2_webhook_failed_attempts_total", &[("reason", "connect")]) >= 2.0);
    assert_eq!(value(&metrics, "downloader2_webhook_pending", &[]), 6.0);
    assert!(value(&metrics, "downloader2_webhook_oldest_pending_age_seconds", &[]) > 0.0);

    // Up again but answering 503: six more cancellations meanwhile.
    receiver.set_mode(Answer::Status(503));
    receiver.up();
    for id in &ids[6..] {
        assert_eq!(cancel(&http, &service.base, id).await.unwrap(), 200);
    }
    receiver.wait_received(2, DELIVERY_TIMEOUT).await;

    // The admin page says so in its header.
    let browser = Browser::start().await;
    browser.client.goto(&service.url("/")).await.unwrap();
    browser.element("#token").await.send_keys(&format!("{ADMIN_TOKEN}{ENTER}")).await.unwrap();
    let shown = browser
        .wait_until(
            "the header to show the failing webhook",
            "(t => t.startsWith('webhook: 12 pending, last error: ') && t.includes('answered 503') && t)\
             (document.querySelector('#webhook:not([hidden])')?.textContent ?? '')",
        )
        .await;
    println!("admin page header: {shown}");

    // A minute down in all, then up: every event arrives. The first answer after the outage is lost on the way.
    let minute = Duration::from_secs(60).saturating_sub(down_since.elapsed());
    tokio::time::sleep(minute).await;
    receiver.script(&[Answer::Drop]);
    receiver.set_mode(Answer::Accept);
    let up_at = Instant::now();
    let accepted = receiver.wait_accepted(ids.len(), DELIVERY_TIMEOUT).await;
    println!(
        "receiver down (refusing, then 503) for {:.0} s; once up, the first event was accepted after {:.1} s (the \
         backoff's wait, then the lost answer's retry), all 12 within {:.1} s",
        up_at.duration_since(down_since).as_secs_f64(),
        accepted[0].at.duration_since(up_at).as_secs_f64(),
        accepted.last().unwrap().at.duration_since(up_at).as_secs_f64()
    );

    let deliveries = receiver.deliveries();
    for delivery in &deliveries {
        assert_well_formed(delivery);
    }
    assert_redeliveries_agree(&deliveries);
    // In order: while the receiver refused, only the first event was ever tried (nothing overtook it), and it is
    // the one whose answer was lost and that was then sent again.
    let first_id = deliveries[0].event_id();
    let refused: Vec<&Delivery> = deliveries.iter().filter(|d| d.answered == Answer::Status(503)).collect();
    assert!(refused.len() >= 2);
    assert!(refused.iter().all(|d| d.event_id() == first_id), "an event overtook the one being retried");
    let dropped: Vec<&Delivery> = deliveries.iter().filter(|d| d.answered == Answer::Drop).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].event_id(), first_id);
    let events = accepted_in_order(&receiver);
    assert_eq!(events[0]["event_id"], first_id.as_str(), "the retried event is accepted first");
    let order: Vec<&str> = events.iter().map(|e| e["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>(), "commit order");
    assert_eq!(receiver.accepted().len(), ids.len(), "each event accepted exactly once");
    let attempts: Vec<u64> = refused.iter().map(|d| d.json()["delivery_attempt"].as_u64().unwrap()).collect();
    println!("503 answers: {}, to attempts {attempts:?}", refused.len());

    // The counters tell the same story as the receiver (once the service has seen the last answer).
    let metrics = emptied_outbox(&http, &service).await;
    assert_eq!(value(&metrics, "downloader2_webhook_delivered_total", &[]), ids.len() as f64);
    assert_eq!(
        value(&metrics, "downloader2_webhook_failed_attempts_total", &[("reason", "status")]),
        refused.len() as f64
    );
    assert_eq!(value(&metrics, "downloader2_webhook_failed_attempts_total", &[("reason", "request")]), 1.0);
    assert_eq!(value(&metrics, "downloader2_webhook_pending", &[]), 0.0);
    assert_eq!(value(&metrics, "downloader2_webhook_oldest_pending_age_seconds", &[]), 0.0);
    let status = webhook_status(&http, &service).await;
    assert_eq!((status["pending"].as_i64(), &status["head"]), (Some(0), &Value::Null));
    browser
        .wait_until("the header to drop the webhook line", "document.querySelector('#webhook')?.hidden === true")
        .await;
    browser.close().await;
}

/// The committed cancellations and the outbox, read from the SQLite file (no process writes it any more).
async fn read_database(db: &Path) -> (BTreeSet<String>, Vec<(String, String, i64)>) {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let cancelled: Vec<String> = sqlx::query_scalar("SELECT id FROM tickets WHERE state_kind = 'cancelled'")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    let outbox: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT ticket_id, event_id, history_seq FROM webhook_outbox ORDER BY seq")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    connection.close().await.unwrap();
    (cancelled.into_iter().collect(), outbox)
}

/// Tickets cancelled at once around the SIGKILL, and the answers awaited before it.
const TICKETS_AT_KILL: usize = 150;
const KILL_AFTER_ANSWERS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_committed_before_a_sigkill_are_delivered_after_the_restart_and_no_others() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(Answer::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let notify = notify_toml(&receiver, 2);
    let options = ServiceOptions { extra_toml: &notify, ..ServiceOptions::in_dir(dir.path()) };
    let mut service = ServiceProcess::start(dir.path(), &options).await;
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..TICKETS_AT_KILL).map(|n| format!("kill-{n:03}")).collect();
    for id in &ids {
        create(&http, &service, id).await;
    }

    // All cancellations at once; the process is SIGKILLed as soon as a few have been answered, with the others in
    // flight (some committed but not answered yet, some not committed).
    let answered = Arc::new(AtomicUsize::new(0));
    let kill_now = Arc::new(tokio::sync::Notify::new());
    let confirmed = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut calls = Vec::new();
    for id in ids.clone() {
        let (http, base) = (http.clone(), service.base.clone());
        let (answered, kill_now, confirmed) = (answered.clone(), kill_now.clone(), confirmed.clone());
        calls.push(tokio::spawn(async move {
            if let Ok(status) = cancel(&http, &base, &id).await {
                assert_eq!(status, 200);
                confirmed.lock().unwrap().insert(id);
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ANSWERS {
                    kill_now.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(DELIVERY_TIMEOUT, kill_now.notified()).await.expect("cancellations answered");
    service.kill();
    for call in calls {
        call.await.unwrap();
    }
    let confirmed = confirmed.lock().unwrap().clone();
    let (cancelled, outbox) = read_database(&dir.path().join("data/downloader2.db")).await;
    println!(
        "at the SIGKILL: {} cancellations answered, {} committed, {} not committed; {} events in the outbox; {} \
         delivery attempts refused",
        confirmed.len(),
        cancelled.len(),
        ids.len() - cancelled.len(),
        outbox.len(),
        receiver.deliveries().len()
    );
    assert!(confirmed.is_subset(&cancelled), "an answered cancellation is committed");
    let outbox_tickets: BTreeSet<String> = outbox.iter().map(|(ticket, _, _)| ticket.clone()).collect();
    assert_eq!(outbox_tickets, cancelled, "one event per committed cancellation, kept across the kill undelivered");
    assert_eq!(outbox.len(), cancelled.len());

    // Restarted, with the receiver accepting: every committed event arrives, with the id it had before the kill.
    receiver.set_mode(Answer::Accept);
    let service = ServiceProcess::start(dir.path(), &options).await;
    receiver.wait_accepted(outbox.len(), DELIVERY_TIMEOUT).await;
    let deliveries = receiver.deliveries();
    for delivery in &deliveries {
        assert_well_formed(delivery);
    }
    assert_redeliveries_agree(&deliveries);
    let events = accepted_in_order(&receiver);
    let delivered: Vec<(String, String, i64)> = events
        .iter()
        .map(|e| {
            (
                e["ticket_id"].as_str().unwrap().to_string(),
                e["event_id"].as_str().unwrap().to_string(),
                e["history_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(delivered, outbox, "every committed event, in commit order, with its id from before the kill");
    assert_eq!(receiver.accepted().len(), outbox.len(), "each accepted once");

    // Nothing for a transition that did not commit: every request the receiver ever saw (refused before the kill,
    // accepted after) names a cancellation in its ticket's history; tickets whose cancellation did not commit are
    // still pending and were never named.
    let outbox_ids: BTreeSet<&str> = outbox.iter().map(|(_, id, _)| id.as_str()).collect();
    for delivery in &deliveries {
        assert!(outbox_ids.contains(delivery.event_id().as_str()), "an event no committed transition wrote");
    }
    for id in &ids {
        let shown = service.get_json(&http, &format!("/api/v1/ticket/{id}"), CATALOG_TOKEN).await;
        let history = shown["history"].as_array().unwrap();
        let entries = history.iter().filter(|entry| entry["to_state"] == "cancelled").count();
        let named: Vec<Value> = events.iter().filter(|e| e["ticket_id"] == id.as_str()).cloned().collect();
        if cancelled.contains(id) {
            assert_eq!((entries, named.len()), (1, 1), "{id}: one cancellation, one event");
            assert_matches_history(&named[0], history);
        } else {
            assert_eq!(shown["state"]["state"], "pending", "{id}");
            assert_eq!((entries, named.len()), (0, 0), "{id}: not cancelled, never reported");
            assert!(deliveries.iter().all(|d| d.json()["ticket_id"] != id.as_str()));
        }
    }
    let metrics = emptied_outbox(&http, &service).await;
    assert_eq!(value(&metrics, "downloader2_webhook_delivered_total", &[]), outbox.len() as f64);
}
