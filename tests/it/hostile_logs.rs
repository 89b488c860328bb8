//! Forged log lines: a release title and a torrent name carrying a newline, a timestamp and `ERROR` go through a
//! real search of the real binary, in text and in JSON logs. No line of the service log may start with the forged
//! text; it must show escaped on the line that logged it. The text log, written to a file, carries no ANSI colour
//! codes, and the escape character in a torrent name shows as `\u{1b}`.

use std::time::Duration;

use serde_json::Value;

use crate::support::app::UNUSED_QBITTORRENT_URL;
use crate::support::pipeline::{ticket_for, ServiceProcess, ServiceSetup, TorrentClientSetup};
use crate::support::torrent_file::TorrentSpec;
use crate::support::torznab_server::{Download, Release, TorznabServer};

const FORGED: &str = "2026-01-01T00:00:00Z ERROR forged";
const TITLE: &str = "Glass Harbor - Tidal Lines (2019) [FLAC]\n2026-01-01T00:00:00Z ERROR forged by a title";
const NAME: &str = "Tidal Lines\n2026-01-01T00:00:00Z ERROR forged by a torrent name\r\u{1b}[31m";

/// Searches once with the hostile release and returns the service's whole log.
async fn log_of_a_hostile_search(json_logs: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let torznab = TorznabServer::start().await;
    let files = vec![
        ("01 - Morning Fog.flac".to_string(), 9_000_000),
        ("02 - Salt Wind\n2026-01-01T00:00:00Z ERROR forged by a file name.flac".to_string(), 9_000_000),
    ];
    let torrent = TorrentSpec::new(NAME, files);
    // One seeder: never auto-approved (a weak swarm), so the ticket stops in needs_approval.
    torznab.set_results(vec![Release::new(TITLE, "orpheus")
        .download(Download::TorrentFile(torrent.to_bytes()))
        .size(18_000_000)
        .seeders(1, 1)]);
    let mut setup = ServiceSetup::new(dir.path(), &torznab.url(), &torznab.api_key());
    setup.json_logs = json_logs;
    setup.torrent_client = TorrentClientSetup::External {
        url: UNUSED_QBITTORRENT_URL.into(),
        username: "admin".into(),
        password: "unused".into(),
        download_path: dir.path().join("downloads"),
    };
    let service = ServiceProcess::start(&setup).await;
    let tracks = vec![("Morning Fog".to_string(), 30.0), ("Salt Wind".to_string(), 30.0)];
    let ticket = ticket_for("forged-1", &setup.media_root(), "Glass Harbor", "Tidal Lines", 2019, &tracks, 44_100);
    service.create(&ticket).await;
    let shown = service.wait_for_state("forged-1", "needs_approval", Duration::from_secs(60)).await;
    assert_eq!(shown["state"]["candidates"][0]["candidate"]["title"], TITLE, "the title is kept as sent");
    drop(service);
    std::fs::read_to_string(setup.dir.join("service-1.log")).unwrap()
}

fn forged_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.trim_start().starts_with(FORGED)).collect()
}

#[tokio::test]
async fn titles_and_torrent_names_cannot_forge_text_log_lines() {
    let log = log_of_a_hostile_search(false).await;
    assert_eq!(forged_lines(&log), Vec::<&str>::new(), "forged lines in the text log");
    // Where the title and the name were logged, they show escaped on the same line.
    let escaped_title = "Tidal Lines (2019) [FLAC]\\n2026-01-01T00:00:00Z ERROR forged by a title";
    let escaped_name = "Tidal Lines\\n2026-01-01T00:00:00Z ERROR forged by a torrent name\\r\\u{1b}[31m";
    assert!(log.lines().any(|line| line.contains(escaped_title)), "the title, escaped:\n{log}");
    assert!(log.lines().any(|line| line.contains(escaped_name)), "the torrent name, escaped:\n{log}");
    // Every mention of the forged text is inside an escaped value.
    let mentions = log.matches("ERROR forged").count();
    let escaped_mentions = log.matches(&format!("\\n{FORGED}")).count();
    assert!(mentions > 0 && mentions == escaped_mentions, "{mentions} mentions, {escaped_mentions} escaped:\n{log}");
    assert!(!log.contains('\u{1b}'), "no escape character (no colours in a file, the name's ESC escaped)");
    assert!(!log.contains('\r'), "no carriage return");
}

#[tokio::test]
async fn titles_and_torrent_names_cannot_forge_json_log_lines() {
    let log = log_of_a_hostile_search(true).await;
    assert_eq!(forged_lines(&log), Vec::<&str>::new(), "forged lines in the JSON log");
    let mut values = Vec::new();
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not one JSON object ({err}): {line}"));
        values.push(value);
    }
    // The hostile text is there, intact once decoded: escaped by JSON, not dropped.
    let strings: Vec<String> = values.iter().flat_map(all_strings).collect();
    assert!(strings.iter().any(|s| s.contains("forged by a title") && s.contains(TITLE)), "the title is logged");
    assert!(strings.iter().any(|s| s.contains(NAME)), "the torrent name is logged");
}

/// Every string inside a JSON value.
fn all_strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(all_strings).collect(),
        Value::Object(map) => map.values().flat_map(all_strings).collect(),
        _ => Vec::new(),
    }
}
