//! `GET /metrics` against the real service: who may read it (admin or metrics token; 401 without a token, 403 with
//! the catalog's), and that the body parses as Prometheus text whose transition counter and tickets-by-state gauge
//! follow an approve/reject/cancel flow driven by hand (processing is paused).

use serde_json::json;

use crate::support::app::{sample_ticket, to_needs_approval, TestApp, ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::prometheus::{self, value};

const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

/// GETs `/metrics` with `token` (none: no header).
async fn get_metrics(t: &TestApp, token: Option<&str>) -> reqwest::Response {
    let request = t.client.get(format!("{}/metrics", t.url));
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap()
}

async fn scrape(t: &TestApp, token: &str) -> prometheus_parse::Scrape {
    let response = get_metrics(t, Some(token)).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    prometheus::parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_need_the_admin_or_metrics_token_and_follow_transitions() {
    let t = TestApp::start_with(|config| config.server.metrics_token = METRICS_TOKEN.into()).await;

    assert_eq!(get_metrics(&t, None).await.status(), 401);
    assert_eq!(get_metrics(&t, Some("not-a-token")).await.status(), 401);
    assert_eq!(get_metrics(&t, Some(CATALOG_TOKEN)).await.status(), 403);
    // The metrics token reads nothing else.
    assert_eq!(t.get("/tickets", METRICS_TOKEN).await.status(), 403);

    let before = scrape(&t, ADMIN_TOKEN).await;
    for id in ["m-approve", "m-reject", "m-cancel", "m-wait"] {
        t.create(&sample_ticket(id, &t.media_root())).await;
    }
    to_needs_approval(&t, "m-approve", &["A", "B"], Some(0)).await;
    to_needs_approval(&t, "m-reject", &["A", "B"], Some(0)).await;
    assert_eq!(t.post("/ticket/m-approve/approve", ADMIN_TOKEN, &json!({})).await.status(), 200);
    assert_eq!(t.post("/ticket/m-reject/reject", ADMIN_TOKEN, &json!({"reason": "live"})).await.status(), 200);
    assert_eq!(t.delete("/ticket/m-cancel", CATALOG_TOKEN).await.status(), 200);

    let after = scrape(&t, METRICS_TOKEN).await;
    // The counters are process-wide (other tests run services in this process too): they moved at least by ours.
    for (from, to) in [("needs_approval", "approved"), ("needs_approval", "rejected"), ("pending", "cancelled")] {
        let labels = [("from", from), ("to", to)];
        let moved = value(&after, "downloader2_transitions_total", &labels)
            - value(&before, "downloader2_transitions_total", &labels);
        assert!(moved >= 1.0, "{from} -> {to} counted: moved by {moved}");
    }
    // The gauges are this service's store, read at the scrape.
    let tickets = |state: &str| value(&after, "downloader2_tickets", &[("state", state)]);
    assert_eq!(tickets("approved"), 1.0);
    assert_eq!(tickets("rejected"), 1.0);
    assert_eq!(tickets("cancelled"), 1.0);
    assert_eq!(tickets("pending"), 1.0);
    assert_eq!(tickets("needs_approval"), 0.0);
    assert_eq!(value(&before, "downloader2_tickets", &[("state", "pending")]), 0.0);
    assert_eq!(value(&after, "downloader2_queue_depth", &[]), 2.0, "the pending and the approved ticket wait");
    t.stop().await;
}
