//! The foundation's HTTP API against a real SQLite file and the real router: create/read/list/cancel, the admin
//! commands, every illegal transition, authentication per route class, validation per rule, bad input, persistence
//! across a SIGKILL of the real binary, and concurrent approvals.

use std::time::Duration;

use chrono::Utc;
use downloader2::models::{StateKind, TicketState};
use serde_json::{json, Value};

use crate::support::app::{move_to, sample_ticket, to_needs_approval, TestApp, ADMIN_TOKEN, CATALOG_TOKEN};

async fn to_failed(t: &TestApp, id: &str) {
    move_to(
        t,
        id,
        TicketState::Failed {
            failed_at_state: StateKind::Pending,
            error: "indexer down".into(),
            retryable: true,
            retry_count: 5,
            failed_at: Utc::now(),
        },
    )
    .await;
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

#[tokio::test]
async fn create_duplicate_and_conflicting_create() {
    let t = TestApp::start().await;
    let ticket = sample_ticket("album-1", &t.media_root());
    let (status, body) = json_of(t.post("/ticket", CATALOG_TOKEN, &ticket).await).await;
    assert_eq!(status, 201);
    assert_eq!(body["ticket_id"], "album-1");
    assert_eq!(body["state"]["state"], "pending");

    let (status, body) = json_of(t.post("/ticket", CATALOG_TOKEN, &ticket).await).await;
    assert_eq!(status, 200, "same body again is idempotent");
    assert_eq!(body["ticket_id"], "album-1");

    let mut other = ticket.clone();
    other["search"]["album"] = json!("Third");
    let (status, body) = json_of(t.post("/ticket", CATALOG_TOKEN, &other).await).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("different body"));

    let history = t.app.store.get_history("album-1").await.unwrap();
    assert_eq!(history.len(), 1, "the duplicate posts wrote nothing");
    t.stop().await;
}

#[tokio::test]
async fn get_returns_ticket_state_and_history_oldest_first() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("album-2", &t.media_root())).await;
    to_needs_approval(&t, "album-2", &["A", "B", "C"], Some(0)).await;
    let (status, body) = json_of(t.get("/ticket/album-2", CATALOG_TOKEN).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["ticket"]["search"]["artist"], "Portishead");
    assert_eq!(body["ticket"]["tracks"].as_array().unwrap().len(), 12);
    assert_eq!(body["state"]["state"], "needs_approval");
    assert_eq!(body["state"]["reason"]["type"], "low_confidence");
    let kinds: Vec<&str> =
        body["history"].as_array().unwrap().iter().map(|e| e["to_state"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pending", "searching", "matching", "needs_approval"]);
    let seqs: Vec<i64> = body["history"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    let (status, body) = json_of(t.get("/ticket/nope", CATALOG_TOKEN).await).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("not found"));
    t.stop().await;
}

#[tokio::test]
async fn list_filters_by_state_and_pages_newest_first() {
    let t = TestApp::start().await;
    for n in 0..7 {
        t.create(&sample_ticket(&format!("list-{n}"), &t.media_root())).await;
        // Distinct creation instants so "newest first" is well defined.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for n in [1, 3, 5] {
        move_to(&t, &format!("list-{n}"), TicketState::Searching { query: None, started_at: Utc::now() }).await;
    }
    let (status, body) = json_of(t.get("/tickets?state=pending&limit=2&offset=0", CATALOG_TOKEN).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 4);
    let ids: Vec<&str> = body["tickets"].as_array().unwrap().iter().map(|s| s["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["list-6", "list-4"]);
    let (_, body) = json_of(t.get("/tickets?state=pending&limit=2&offset=2", CATALOG_TOKEN).await).await;
    let ids: Vec<&str> = body["tickets"].as_array().unwrap().iter().map(|s| s["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["list-2", "list-0"]);
    let (_, body) = json_of(t.get("/tickets?state=searching", CATALOG_TOKEN).await).await;
    assert_eq!(body["total"], 3);
    assert_eq!(body["tickets"][0]["state"], "searching");
    assert_eq!(body["tickets"][0]["track_count"], 12);
    let (_, body) = json_of(t.get("/tickets", CATALOG_TOKEN).await).await;
    assert_eq!(body["total"], 7);
    assert_eq!(body["tickets"].as_array().unwrap().len(), 7);

    let (status, _) = json_of(t.get("/tickets?limit=501", CATALOG_TOKEN).await).await;
    assert_eq!(status, 400);
    let (status, body) = json_of(t.get("/tickets?state=bogus", CATALOG_TOKEN).await).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("needs_approval"), "lists the valid states: {body}");
    t.stop().await;
}

#[tokio::test]
async fn cancel_then_cancel_again_conflicts_with_current_state() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("cancel-1", &t.media_root())).await;
    let (status, body) = json_of(t.delete("/ticket/cancel-1", CATALOG_TOKEN).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"]["state"], "cancelled");
    let (status, body) = json_of(t.delete("/ticket/cancel-1", CATALOG_TOKEN).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["current_state"]["state"], "cancelled");
    let (status, _) = json_of(t.delete("/ticket/missing", CATALOG_TOKEN).await).await;
    assert_eq!(status, 404);
    t.stop().await;
}

#[tokio::test]
async fn approve_with_index_default_and_out_of_range() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("ap-1", &t.media_root())).await;
    to_needs_approval(&t, "ap-1", &["A", "B", "C"], Some(0)).await;
    let response = t
        .client
        .post(t.api("/ticket/ap-1/approve"))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Actor", "alice")
        .json(&json!({"candidate_idx": 7}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "candidate_idx");

    let response = t
        .client
        .post(t.api("/ticket/ap-1/approve"))
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Actor", "alice")
        .json(&json!({"candidate_idx": 1}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "approved");
    assert_eq!(body["state"]["selected"]["candidate"]["title"], "B");
    assert_eq!(body["state"]["approved_by"], "alice");

    // Without a body: the recommended candidate, actor "admin".
    t.create(&sample_ticket("ap-2", &t.media_root())).await;
    to_needs_approval(&t, "ap-2", &["A", "B", "C"], Some(2)).await;
    let response = t.client.post(t.api("/ticket/ap-2/approve")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["selected"]["candidate"]["title"], "C");
    assert_eq!(body["state"]["approved_by"], "admin");

    // No recommendation and no index: the admin must choose.
    t.create(&sample_ticket("ap-3", &t.media_root())).await;
    to_needs_approval(&t, "ap-3", &["A", "B", "C"], None).await;
    let (status, body) = json_of(t.post("/ticket/ap-3/approve", ADMIN_TOKEN, &json!({})).await).await;
    assert_eq!(status, 422, "{body}");
    t.stop().await;
}

#[tokio::test]
async fn reject_records_reason_and_actor() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("rj-1", &t.media_root())).await;
    to_needs_approval(&t, "rj-1", &["A", "B", "C"], Some(0)).await;
    let (status, body) =
        json_of(t.post("/ticket/rj-1/reject", ADMIN_TOKEN, &json!({"reason": "all live"})).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "rejected");
    assert_eq!(body["state"]["reason"], "all live");
    assert_eq!(body["state"]["rejected_by"], "admin");
    let history = t.app.store.get_history("rj-1").await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.to_state, StateKind::Rejected);
    assert_eq!(last.details["actor"], "admin");
    t.stop().await;
}

#[tokio::test]
async fn retry_failed_and_force_search_with_query() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("rt-1", &t.media_root())).await;
    to_failed(&t, "rt-1").await;
    let (status, body) = json_of(t.post("/ticket/rt-1/retry", ADMIN_TOKEN, &json!({})).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "pending");
    assert_eq!(body["attempts"], 0);

    let (status, body) =
        json_of(t.post("/ticket/rt-1/force-search", ADMIN_TOKEN, &json!({"query": "portishead dummy flac"})).await)
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "searching");
    assert_eq!(body["state"]["query"], "portishead dummy flac");

    t.create(&sample_ticket("fs-2", &t.media_root())).await;
    to_needs_approval(&t, "fs-2", &["A", "B", "C"], Some(0)).await;
    let (status, body) = json_of(t.post("/ticket/fs-2/force-search", ADMIN_TOKEN, &json!({})).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "searching");
    assert!(body["state"].get("query").is_none());

    t.create(&sample_ticket("fs-3", &t.media_root())).await;
    to_failed(&t, "fs-3").await;
    let (status, _) = json_of(t.post("/ticket/fs-3/force-search", ADMIN_TOKEN, &json!({})).await).await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test]
async fn every_illegal_command_answers_409_with_the_current_state() {
    let t = TestApp::start().await;
    // One ticket per starting state the commands can meet.
    t.create(&sample_ticket("il-pending", &t.media_root())).await;
    t.create(&sample_ticket("il-searching", &t.media_root())).await;
    move_to(&t, "il-searching", TicketState::Searching { query: None, started_at: Utc::now() }).await;
    t.create(&sample_ticket("il-approved", &t.media_root())).await;
    to_needs_approval(&t, "il-approved", &["A", "B", "C"], Some(0)).await;
    assert_eq!(t.post("/ticket/il-approved/approve", ADMIN_TOKEN, &json!({})).await.status(), 200);
    t.create(&sample_ticket("il-rejected", &t.media_root())).await;
    to_needs_approval(&t, "il-rejected", &["A", "B", "C"], Some(0)).await;
    assert_eq!(t.post("/ticket/il-rejected/reject", ADMIN_TOKEN, &json!({})).await.status(), 200);
    t.create(&sample_ticket("il-cancelled", &t.media_root())).await;
    assert_eq!(t.delete("/ticket/il-cancelled", CATALOG_TOKEN).await.status(), 200);

    let cases: &[(&str, &str, &str)] = &[
        ("approve", "il-pending", "pending"),
        ("approve", "il-searching", "searching"),
        ("approve", "il-approved", "approved"),
        ("approve", "il-rejected", "rejected"),
        ("approve", "il-cancelled", "cancelled"),
        ("reject", "il-pending", "pending"),
        ("reject", "il-approved", "approved"),
        ("reject", "il-cancelled", "cancelled"),
        ("retry", "il-pending", "pending"),
        ("retry", "il-searching", "searching"),
        ("retry", "il-rejected", "rejected"),
        ("force-search", "il-searching", "searching"),
        ("force-search", "il-approved", "approved"),
        ("force-search", "il-rejected", "rejected"),
        ("force-search", "il-cancelled", "cancelled"),
    ];
    for (command, id, state) in cases {
        let (status, body) = json_of(t.post(&format!("/ticket/{id}/{command}"), ADMIN_TOKEN, &json!({})).await).await;
        assert_eq!(status, 409, "{command} on {state}: {body}");
        assert_eq!(body["current_state"]["state"], *state, "{command} on {state}");
    }
    for id in ["il-rejected", "il-cancelled"] {
        let (status, body) = json_of(t.delete(&format!("/ticket/{id}"), CATALOG_TOKEN).await).await;
        assert_eq!(status, 409, "cancel of terminal {id}");
        assert!(body["current_state"]["state"].is_string());
    }
    for (command, _, _) in cases {
        let (status, _) = json_of(t.post(&format!("/ticket/missing/{command}"), ADMIN_TOKEN, &json!({})).await).await;
        assert_eq!(status, 404, "{command} on an unknown ticket");
    }
    t.stop().await;
}

#[tokio::test]
async fn auth_per_route_class() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("auth-1", &t.media_root())).await;
    to_needs_approval(&t, "auth-1", &["A", "B", "C"], Some(0)).await;
    let ticket = sample_ticket("auth-2", &t.media_root());

    // (method, path, body, class)
    let routes: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("POST", "/ticket".into(), Some(ticket.clone()), "catalog"),
        ("GET", "/ticket/auth-1".into(), None, "catalog"),
        ("GET", "/tickets".into(), None, "catalog"),
        ("GET", "/stats".into(), None, "catalog"),
        ("GET", "/config".into(), None, "admin"),
        ("POST", "/ticket/auth-1/force-search".into(), Some(json!({})), "admin"),
        ("POST", "/ticket/auth-1/reject".into(), Some(json!({})), "admin"),
        ("POST", "/ticket/auth-1/retry".into(), Some(json!({})), "admin"),
        ("POST", "/ticket/auth-1/approve".into(), Some(json!({})), "admin"),
        ("DELETE", "/ticket/auth-1".into(), None, "catalog"),
    ];
    let send = |method: &str, path: &str, body: &Option<Value>, token: Option<&str>| {
        let mut request = match method {
            "POST" => t.client.post(t.api(path)),
            "DELETE" => t.client.delete(t.api(path)),
            _ => t.client.get(t.api(path)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for (method, path, body, class) in &routes {
        assert_eq!(send(method, path, body, None).await.unwrap().status(), 401, "{method} {path} without token");
        let wrong = send(method, path, body, Some("wrong-token-wrong-token")).await.unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let as_catalog = send(method, path, body, Some(CATALOG_TOKEN)).await.unwrap().status();
        if *class == "admin" {
            assert_eq!(as_catalog, 403, "{method} {path} with the catalog token");
        } else {
            assert!(as_catalog.is_success(), "{method} {path} with the catalog token: {as_catalog}");
        }
    }
    // The admin token is accepted everywhere (the admin UI reads tickets too). A fresh needs_approval ticket for
    // the admin commands, in an order that keeps each legal.
    t.create(&sample_ticket("auth-3", &t.media_root())).await;
    to_needs_approval(&t, "auth-3", &["A", "B", "C"], Some(0)).await;
    for (method, path) in [
        ("GET", "/config"),
        ("GET", "/stats"),
        ("GET", "/tickets"),
        ("GET", "/ticket/auth-3"),
        ("POST", "/ticket/auth-3/force-search"),
    ] {
        let status = send(method, path, &Some(json!({})), Some(ADMIN_TOKEN)).await.unwrap().status();
        assert_eq!(status, 200, "{method} {path} with the admin token");
    }
    let health = t.client.get(t.api("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (_, body) = json_of(health).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert!(body["version"].is_string());
    // A token in the query string is refused outside the WebSocket upgrade (it would land in access logs); a
    // lower-case scheme is fine.
    let status = t.client.get(t.api("/tickets?token=") + CATALOG_TOKEN).send().await.unwrap().status();
    assert_eq!(status, 401);
    let status = t
        .client
        .get(t.api("/tickets"))
        .header("authorization", format!("bearer {CATALOG_TOKEN}"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test]
async fn config_is_redacted_and_openapi_lists_every_route() {
    let t = TestApp::start_with(|config| {
        config.jackett.api_key = "jackett-api-key-secret".into();
        config.qbittorrent.password = "qbittorrent-secret".into();
    })
    .await;
    let response = t.get("/config", ADMIN_TOKEN).await;
    let text = response.text().await.unwrap();
    for secret in ["jackett-api-key-secret", "qbittorrent-secret", ADMIN_TOKEN, CATALOG_TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked in /config: {text}");
    }
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["jackett"]["api_key"], "<redacted>");
    assert_eq!(config["server"]["port"], 8080);

    let (status, doc) = json_of(t.client.get(t.api("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/ticket",
        "/api/v1/ticket/{id}",
        "/api/v1/tickets",
        "/api/v1/ticket/{id}/approve",
        "/api/v1/ticket/{id}/reject",
        "/api/v1/ticket/{id}/retry",
        "/api/v1/ticket/{id}/force-search",
        "/api/v1/health",
        "/api/v1/stats",
        "/api/v1/config",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(paths["/api/v1/ticket/{id}"].get("delete").is_some());
    assert!(doc["components"]["schemas"].get("Ticket").is_some());
    t.stop().await;
}

#[tokio::test]
async fn stats_count_states_and_recent_activity() {
    let t = TestApp::start().await;
    for n in 0..3 {
        t.create(&sample_ticket(&format!("st-{n}"), &t.media_root())).await;
    }
    to_failed(&t, "st-0").await;
    let (status, body) = json_of(t.get("/stats", CATALOG_TOKEN).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["counts_by_state"]["pending"], 2);
    assert_eq!(body["counts_by_state"]["failed"], 1);
    assert_eq!(body["counts_by_state"]["completed"], 0);
    assert_eq!(body["created_last_hour"], 3);
    assert_eq!(body["failed_last_day"], 1);
    t.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_approvals_let_exactly_one_through() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("race-1", &t.media_root())).await;
    to_needs_approval(&t, "race-1", &["A", "B", "C"], Some(0)).await;
    let mut calls = Vec::new();
    for n in 0..50 {
        let client = t.client.clone();
        let url = t.api("/ticket/race-1/approve");
        calls.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .header("X-Actor", format!("admin-{n}"))
                .json(&json!({"candidate_idx": n % 3}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 49, "{statuses:?}");
    let history = t.app.store.get_history("race-1").await.unwrap();
    assert_eq!(history.iter().filter(|e| e.to_state == StateKind::Approved).count(), 1);
    t.stop().await;
}

#[tokio::test]
async fn the_admin_page_is_served_without_a_token_under_a_strict_content_security_policy() {
    let t = TestApp::start().await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let response = t.client.get(format!("{}{path}", t.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{path}: {policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!response.text().await.unwrap().is_empty());
    }
    t.stop().await;
}

#[tokio::test]
async fn a_ticket_waiting_for_approval_carries_a_review_of_each_candidate() {
    let t = TestApp::start().await;
    t.create(&sample_ticket("rv-1", &t.media_root())).await;
    to_needs_approval(&t, "rv-1", &["A", "B"], Some(0)).await;
    let shown: Value = t.get("/ticket/rv-1", CATALOG_TOKEN).await.json().await.unwrap();
    let review = shown["review"].as_array().expect("a review for needs_approval");
    assert_eq!(review.len(), 2, "one per candidate, in order");
    let ticket_tracks = shown["ticket"]["tracks"].as_array().unwrap();
    for candidate_review in review {
        let rows = candidate_review["tracks"].as_array().unwrap();
        assert_eq!(rows.len(), ticket_tracks.len(), "one row per ticket track");
        for (row, track) in rows.iter().zip(ticket_tracks) {
            assert_eq!(row["catalog_track_id"], track["catalog_track_id"]);
            assert_eq!(row["expected_secs"], track["duration_secs"]);
            let mapped = row["catalog_track_id"] == "t1";
            assert_eq!(row["duration"], if mapped { "unknown" } else { "unmapped" }, "{row}");
        }
    }
    // Other states have none.
    assert_eq!(t.post("/ticket/rv-1/approve", ADMIN_TOKEN, &json!({})).await.status(), 200);
    let shown: Value = t.get("/ticket/rv-1", CATALOG_TOKEN).await.json().await.unwrap();
    assert!(shown.get("review").is_none());
    t.stop().await;
}
