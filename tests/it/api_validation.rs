//! Ticket validation (one test per rule, each answered 422 with the field path) and hostile request bodies
//! (400/413/415/404/405 as JSON, never a 500).

use serde_json::{json, Value};

use crate::support::app::{sample_ticket, TestApp, CATALOG_TOKEN};

async fn expect_422(t: &TestApp, ticket: &Value, field: &str) {
    let response = t.post("/ticket", CATALOG_TOKEN, ticket).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 422, "expected 422 for {field}: {body}");
    assert_eq!(body["field"], field, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn one_test_per_validation_rule() {
    let t = TestApp::start().await;
    let root = t.media_root();
    let base = sample_ticket("v-1", &root);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut ticket = base.clone();
        edit(&mut ticket);
        ticket
    };

    // Required fields.
    expect_422(&t, &with(&|v| drop(v.as_object_mut().unwrap().remove("search"))), "").await;
    expect_422(&t, &with(&|v| drop(v["tracks"][2].as_object_mut().unwrap().remove("name"))), "tracks[2]").await;
    expect_422(&t, &with(&|v| v["tracks"][0]["duration_secs"] = json!("long")), "tracks[0].duration_secs").await;
    expect_422(&t, &with(&|v| v["search"]["artist"] = json!("  ")), "search.artist").await;
    expect_422(&t, &with(&|v| v["ticket_id"] = json!("../etc")), "ticket_id").await;
    // At least one track.
    expect_422(&t, &with(&|v| v["tracks"] = json!([])), "tracks").await;
    // Unique catalog_track_ids.
    expect_422(&t, &with(&|v| v["tracks"][3]["catalog_track_id"] = json!("t1")), "tracks[3].catalog_track_id").await;
    // Unique (disc, track).
    expect_422(&t, &with(&|v| v["tracks"][4]["track_number"] = json!(1)), "tracks[4].track_number").await;
    // Durations > 0.
    expect_422(&t, &with(&|v| v["tracks"][5]["duration_secs"] = json!(0)), "tracks[5].duration_secs").await;
    expect_422(&t, &with(&|v| v["tracks"][5]["duration_secs"] = json!(-3.5)), "tracks[5].duration_secs").await;
    // Destinations: absolute, inside a root, no '..', no NUL, no duplicates, extension fits the format.
    expect_422(&t, &with(&|v| v["tracks"][6]["dest_path"] = json!("albums/x.ogg")), "tracks[6].dest_path").await;
    expect_422(&t, &with(&|v| v["tracks"][6]["dest_path"] = json!("/media/../etc/passwd")), "tracks[6].dest_path")
        .await;
    let traversal = format!("{}/../../etc/x.ogg", root.display());
    expect_422(&t, &with(&|v| v["tracks"][6]["dest_path"] = json!(traversal)), "tracks[6].dest_path").await;
    expect_422(&t, &with(&|v| v["tracks"][6]["dest_path"] = json!("/etc/cron.d/x.ogg")), "tracks[6].dest_path").await;
    let nul = format!("{}/a\u{0}b.ogg", root.display());
    expect_422(&t, &with(&|v| v["tracks"][6]["dest_path"] = json!(nul)), "tracks[6].dest_path").await;
    let first = base["tracks"][0]["dest_path"].clone();
    expect_422(&t, &with(&|v| v["tracks"][7]["dest_path"] = first.clone()), "tracks[7].dest_path").await;
    expect_422(&t, &with(&|v| v["images"][0]["dest_path"] = first.clone()), "images[0].dest_path").await;
    let mp3 = format!("{}/a/x.mp3", root.display());
    expect_422(&t, &with(&|v| v["tracks"][8]["dest_path"] = json!(mp3)), "tracks[8].dest_path").await;
    let png = format!("{}/a/cover.png", root.display());
    expect_422(&t, &with(&|v| v["images"][0]["dest_path"] = json!(png)), "images[0].dest_path").await;
    // Formats, bitrate and sample rate.
    expect_422(&t, &with(&|v| v["constraints"]["format"] = json!("wma")), "constraints.format").await;
    expect_422(&t, &with(&|v| v["constraints"]["bitrate_kbps"] = json!(5000)), "constraints.bitrate_kbps").await;
    expect_422(&t, &with(&|v| v["constraints"]["sample_rate_hz"] = json!(1000)), "constraints.sample_rate_hz").await;
    expect_422(&t, &with(&|v| v["constraints"]["sample_rate_hz"] = json!(768000)), "constraints.sample_rate_hz").await;

    // The untouched ticket is accepted, with unknown fields ignored.
    let mut ok = base.clone();
    ok["some_future_field"] = json!({"x": 1});
    t.create(&ok).await;
    t.stop().await;
}

#[tokio::test]
async fn every_format_accepts_its_extensions() {
    let t = TestApp::start().await;
    for (n, (format, ext)) in
        [("ogg_vorbis", "ogg"), ("opus", "opus"), ("mp3", "mp3"), ("flac", "flac"), ("aac", "m4a")].iter().enumerate()
    {
        let id = format!("fmt-{n}");
        let mut ticket = sample_ticket(&id, &t.media_root());
        ticket["constraints"]["format"] = json!(format);
        for track in ticket["tracks"].as_array_mut().unwrap() {
            let path = track["dest_path"].as_str().unwrap().replace(".ogg", &format!(".{ext}"));
            track["dest_path"] = json!(path);
        }
        t.create(&ticket).await;
    }
    t.stop().await;
}

#[tokio::test]
async fn symlink_inside_a_root_pointing_outside_is_refused() {
    let t = TestApp::start().await;
    let outside = t.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, t.media_root().join("escape")).unwrap();
    let mut ticket = sample_ticket("sym-1", &t.media_root());
    ticket["tracks"][0]["dest_path"] = json!(t.media_root().join("escape/album/01.ogg"));
    expect_422(&t, &ticket, "tracks[0].dest_path").await;
    // A symlink that stays inside the root is fine.
    std::fs::create_dir_all(t.media_root().join("real")).unwrap();
    std::os::unix::fs::symlink(t.media_root().join("real"), t.media_root().join("alias")).unwrap();
    ticket["tracks"][0]["dest_path"] = json!(t.media_root().join("alias/album/01.ogg"));
    t.create(&ticket).await;
    t.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_json_errors_never_500() {
    let t = TestApp::start().await;
    let url = t.api("/ticket");
    let post_raw = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut request = t.client.post(&url).bearer_auth(CATALOG_TOKEN).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let check = |status: u16, body: &str, expected: u16, what: &str| {
        assert_eq!(status, expected, "{what}: {body}");
        let parsed: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
        assert!(parsed["error"].is_string(), "{what}: {body}");
    };

    let response = post_raw(b"{\"ticket_id\": ".to_vec(), Some("application/json")).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 400, "truncated JSON");
    let response = post_raw(b"\xff\xfe\x00garbage".to_vec(), Some("application/json")).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 400, "binary garbage");
    let response = post_raw(b"{}".to_vec(), Some("text/plain")).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 415, "text/plain");
    let response = post_raw(b"{}".to_vec(), None).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 415, "no content type");
    let mut big = b"{\"pad\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    big.extend(b"\"}");
    let response = post_raw(big, Some("application/json")).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 413, "2 MiB body");

    let response = t.client.get(format!("{}/api/v1/nope", t.url)).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 404, "unknown route");
    let response = t.client.put(t.api("/ticket")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 405, "PUT /ticket");

    // A batch of odd but well-formed JSON documents: each is a 4xx, none a 5xx.
    let odd: Vec<Value> = vec![
        json!(null),
        json!([]),
        json!("ticket"),
        json!(12),
        json!({"ticket_id": 5}),
        json!({"ticket_id": "x", "tracks": "many"}),
        json!({"ticket_id": "x".repeat(10_000)}),
        json!({"tracks": [{"duration_secs": 1e308}]}),
        json!({"ticket_id": "\u{202e}\u{0}", "created_at": "yesterday"}),
    ];
    for body in odd {
        let response = t.post("/ticket", CATALOG_TOKEN, &body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!((400..500).contains(&status), "{body}: {status} {text}");
    }
    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    let response = post_raw(deep.into_bytes(), Some("application/json")).await.unwrap();
    check(response.status().as_u16(), &response.text().await.unwrap(), 400, "deeply nested JSON");
    // Huge numbers in the approve body, malformed admin bodies.
    let mut ticket = sample_ticket("odd-1", &t.media_root());
    ticket["tracks"][0]["track_number"] = json!(u64::MAX);
    let response = t.post("/ticket", CATALOG_TOKEN, &ticket).await;
    assert_eq!(response.status(), 422);
    let response = t
        .client
        .post(t.api("/ticket/odd-1/approve"))
        .bearer_auth(crate::support::app::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"candidate_idx\": -1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // The service still answers.
    assert_eq!(t.client.get(t.api("/health")).send().await.unwrap().status(), 200);
    t.stop().await;
}
