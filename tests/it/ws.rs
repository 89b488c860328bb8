//! The WebSocket event stream: authentication, contract message shapes, the ticket filter, and a slow client that
//! lags (told how many it missed) without blocking publishers.

use std::time::Duration;

use chrono::Utc;
use downloader2::events::TicketEvent;
use downloader2::models::{ApprovalReason, ScoredCandidate, TicketState, TorrentCandidate};
use downloader2::queue::TransitionExtras;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{sample_ticket, TestApp, CATALOG_TOKEN};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(t: &TestApp, query: &str) -> Socket {
    let url = format!("{}/api/v1/ws?{query}", t.url.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("no WebSocket message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn transition_and_publish(t: &TestApp, id: &str, state: TicketState) {
    let done =
        t.app.store.transition(id, None, Utc::now(), TransitionExtras::default(), move |_| Ok(state)).await.unwrap();
    t.app.publish_transition(&done);
}

#[tokio::test]
async fn streams_contract_messages_for_the_filtered_ticket() {
    let t = TestApp::start().await;
    let mut socket = connect(&t, &format!("token={CATALOG_TOKEN}&ticket_id=ws-1")).await;
    t.create(&sample_ticket("ws-other", &t.media_root())).await;
    t.create(&sample_ticket("ws-1", &t.media_root())).await;
    let created = next_json(&mut socket).await;
    assert_eq!(created["type"], "state_change");
    assert_eq!(created["ticket_id"], "ws-1", "the filter hides other tickets");
    assert_eq!(created["new_state"], "pending");

    transition_and_publish(&t, "ws-1", TicketState::Searching { query: None, started_at: Utc::now() }).await;
    transition_and_publish(&t, "ws-1", TicketState::Matching { candidates_found: 1, started_at: Utc::now() }).await;
    let candidate = ScoredCandidate {
        candidate: TorrentCandidate::with_title("Portishead - Dummy [FLAC]"),
        score: 0.6,
        reasoning: "r".into(),
        track_mapping: vec![],
        hard_rejects: vec![],
        doubts: Vec::new(),
    };
    transition_and_publish(
        &t,
        "ws-1",
        TicketState::NeedsApproval {
            candidates: vec![candidate],
            recommended_idx: Some(0),
            confidence: 0.6,
            reason: ApprovalReason::NoExactMatch {},
            waiting_since: Utc::now(),
        },
    )
    .await;
    let searching = next_json(&mut socket).await;
    assert_eq!(
        (searching["old_state"].as_str(), searching["new_state"].as_str()),
        (Some("pending"), Some("searching"))
    );
    let matching = next_json(&mut socket).await;
    assert_eq!(matching["new_state"], "matching");
    let change = next_json(&mut socket).await;
    assert_eq!(change["type"], "state_change");
    assert_eq!(change["new_state"], "needs_approval");
    assert_eq!(change["details"]["state"], "needs_approval");
    // States and counts, never the candidate list (it is behind GET /ticket/{id}).
    assert_eq!(change["details"]["candidate_count"], 1);
    assert_eq!(change["details"]["recommended_title"], "Portishead - Dummy [FLAC]");
    assert!(change["details"].get("candidates").is_none(), "{change}");
    let approval = next_json(&mut socket).await;
    assert_eq!(approval["type"], "needs_approval");
    assert_eq!(approval["candidate_count"], 1);
    assert_eq!(approval["recommended_idx"], 0);
    assert_eq!(approval["recommended_title"], "Portishead - Dummy [FLAC]");
    assert_eq!(approval["reason"]["type"], "no_exact_match");
    assert!(approval.get("candidates").is_none(), "{approval}");

    t.app.bus.publish(TicketEvent::Progress { ticket_id: "ws-1".into(), progress_pct: 42.5 });
    let progress = next_json(&mut socket).await;
    assert_eq!(progress, serde_json::json!({"type": "progress", "ticket_id": "ws-1", "progress_pct": 42.5}));

    // Through the API: a cancel arrives as a state change.
    assert_eq!(t.delete("/ticket/ws-1", CATALOG_TOKEN).await.status(), 200);
    let cancelled = next_json(&mut socket).await;
    assert_eq!(cancelled["new_state"], "cancelled");
    socket.close(None).await.unwrap();
    t.stop().await;
}

#[tokio::test]
async fn upgrade_requires_a_token() {
    let t = TestApp::start().await;
    let url = format!("{}/api/v1/ws", t.url.replace("http://", "ws://"));
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected an HTTP 401, got {other:?}"),
    }
    // The header works too.
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}/api/v1/ws",
        t.url.replace("http://", "ws://")
    ))
    .unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {CATALOG_TOKEN}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    t.create(&sample_ticket("ws-h", &t.media_root())).await;
    assert_eq!(next_json(&mut socket).await["ticket_id"], "ws-h");
    t.stop().await;
}

#[tokio::test]
async fn a_slow_client_lags_without_blocking_publishers() {
    let t = TestApp::start().await;
    let mut slow = connect(&t, &format!("token={CATALOG_TOKEN}")).await;
    // The publisher never waits, whatever the reader does: publish far more than the bus and the socket buffers
    // hold (about 40 MB of events) while the client reads nothing.
    let big = "x".repeat(10_000);
    for n in 0..4000 {
        t.app.bus.publish(TicketEvent::Progress { ticket_id: format!("{big}-{n}"), progress_pct: 1.0 });
    }
    // Meanwhile the API still answers.
    assert_eq!(t.client.get(t.api("/health")).send().await.unwrap().status(), 200);
    // Now read: somewhere in the stream the server says how many events this client missed.
    let mut lagged = None;
    for _ in 0..5000 {
        let message = next_json(&mut slow).await;
        if message["type"] == "lagged" {
            lagged = message["missed"].as_u64();
            break;
        }
    }
    let missed = lagged.expect("a lagged message");
    assert!(missed > 0);
    // And the stream goes on after it.
    t.app.bus.publish(TicketEvent::Progress { ticket_id: "after".into(), progress_pct: 2.0 });
    loop {
        let message = next_json(&mut slow).await;
        if message["ticket_id"] == "after" {
            break;
        }
    }
    t.stop().await;
}
