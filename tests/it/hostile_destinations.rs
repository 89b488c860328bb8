//! Destinations no filesystem can hold, posted to the real binary: a name over 255 bytes, a path over 4,095 bytes,
//! newlines and other control characters, and two tracks that are one file through a symlink inside the root.
//! Each is refused at `POST` with 422 naming the field, and nothing is created; the same ticket with sane
//! destinations (a name of exactly 255 bytes included) is accepted.

use serde_json::{json, Value};

use crate::support::app::{sample_ticket, CATALOG_TOKEN, UNUSED_QBITTORRENT_URL};
use crate::support::pipeline::{ServiceProcess, ServiceSetup, TorrentClientSetup};

/// The real binary with no indexer and no torrent client behind it: only the API is exercised.
async fn api_only_service(dir: &std::path::Path) -> (ServiceSetup, ServiceProcess) {
    let mut setup = ServiceSetup::new(dir, "", "");
    setup.torrent_client = TorrentClientSetup::External {
        url: UNUSED_QBITTORRENT_URL.into(),
        username: "admin".into(),
        password: "unused".into(),
        download_path: dir.join("downloads"),
    };
    let service = ServiceProcess::start(&setup).await;
    (setup, service)
}

async fn post(service: &ServiceProcess, ticket: &Value) -> (u16, Value) {
    let response = service.post("/api/v1/ticket", CATALOG_TOKEN, ticket).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn destinations_no_filesystem_can_hold_are_refused_at_post_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (setup, service) = api_only_service(dir.path()).await;
    let media = setup.media_root();
    let album = media.join("albums/dest-1");
    let base = sample_ticket("dest-1", &media);

    let long_name = format!("{}/{}.ogg", album.display(), "n".repeat(252));
    let mut deep = album.display().to_string();
    while deep.len() <= 4100 {
        deep.push('/');
        deep.push_str(&"d".repeat(200));
    }
    deep.push_str("/x.ogg");
    // Two bytes per character: 128 of them make a 256-byte name.
    let wide_name = format!("{}/{}.ogg", album.display(), "é".repeat(128));
    let hostile: Vec<(&str, String)> = vec![
        ("a 256-byte file name", long_name),
        ("a 256-byte name in UTF-8", wide_name),
        ("a path over 4,095 bytes", deep),
        ("a newline", format!("{}/04 a\n2026-01-01T00:00:00Z ERROR x.ogg", album.display())),
        ("a carriage return", format!("{}/04\r.ogg", album.display())),
        ("an escape sequence", format!("{}/04 \u{1b}[31mred.ogg", album.display())),
        ("a tab", format!("{}/04\tb.ogg", album.display())),
        ("a C1 control character", format!("{}/04 \u{85}.ogg", album.display())),
    ];
    for (what, dest) in &hostile {
        let mut ticket = base.clone();
        ticket["tracks"][3]["dest_path"] = json!(dest);
        let (status, body) = post(&service, &ticket).await;
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(body["field"], "tracks[3].dest_path", "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: the error says why: {body}");
    }
    // The same limits for images.
    let mut ticket = base.clone();
    ticket["images"][0]["dest_path"] = json!(format!("{}/{}.jpg", album.display(), "c".repeat(300)));
    let (status, body) = post(&service, &ticket).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("images[0].dest_path")), "{body}");

    // Two spellings of one file: `alias` is a symlink to `real` inside the root.
    std::fs::create_dir_all(media.join("real")).unwrap();
    std::os::unix::fs::symlink(media.join("real"), media.join("alias")).unwrap();
    let mut twins = base.clone();
    twins["tracks"][0]["dest_path"] = json!(media.join("real/same.ogg"));
    twins["tracks"][3]["dest_path"] = json!(media.join("alias/same.ogg"));
    let (status, body) = post(&service, &twins).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "tracks[3].dest_path", "{body}");
    assert!(body["error"].as_str().unwrap().contains("tracks[0].dest_path"), "names the other track: {body}");

    // Nothing was created by the refused posts.
    let response = service.http.get(service.url("/api/v1/ticket/dest-1")).bearer_auth(CATALOG_TOKEN).send().await;
    assert_eq!(response.unwrap().status(), 404);

    // The same ticket with destinations that fit (a name of exactly 255 bytes, a symlinked folder used once) is
    // accepted.
    let mut fits = base.clone();
    fits["tracks"][3]["dest_path"] = json!(format!("{}/{}.ogg", album.display(), "n".repeat(251)));
    fits["tracks"][0]["dest_path"] = json!(media.join("alias/first.ogg"));
    let (status, body) = post(&service, &fits).await;
    assert_eq!(status, 201, "{body}");
}
