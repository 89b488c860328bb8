//! Requests to internal addresses, on the real binary: indexer results whose links (or redirects) point at a
//! canary on another loopback port or host, in every spelling (`localhost`, `0x7f000001`, `127.1`, `2130706433`,
//! credentials, the userinfo trick, one and two redirect hops), and torrents whose trackers, web seeds and peers
//! point at it. The canary must see no connection at all, neither from the service nor from the real
//! qbittorrent-nox it drives, while a host the configuration allows is reached (the positive control that shows
//! the canary would have been called), and the torrent keeps its info hash.
//!
//! Everything listens on 127.0.0.0/8; the "internal" targets are loopback canaries.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{ADMIN_TOKEN, UNUSED_QBITTORRENT_URL};
use crate::support::canary::Canary;
use crate::support::pipeline::{external_client, ticket_for, ServiceProcess, ServiceSetup, TorrentClientSetup};
use crate::support::swarm::{raw_get_json, wait_for, QbittorrentUnderTest};
use crate::support::torrent_file::{bytes, list_of, TorrentSpec};
use crate::support::torznab_server::{Download, Release, TorznabServer};

const ARTIST: &str = "Glass Harbor";
const ALBUM: &str = "Tidal Lines";
const TIMEOUT: Duration = Duration::from_secs(90);

fn tracks() -> Vec<(String, f64)> {
    vec![("Morning Fog".to_string(), 30.0), ("Salt Wind".to_string(), 30.0)]
}

fn album_torrent(name: &str) -> TorrentSpec {
    TorrentSpec::new(
        name,
        vec![("01 - Morning Fog.flac".to_string(), 5_000_000), ("02 - Salt Wind.flac".to_string(), 5_000_000)],
    )
}

fn title(what: &str) -> String {
    format!("{ARTIST} - {ALBUM} (2019) [FLAC] {what}")
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

#[tokio::test]
async fn indexer_links_to_internal_addresses_are_never_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let torznab = TorznabServer::start().await;
    let internal = Canary::start("127.0.0.1", album_torrent("From the canary").to_bytes()).await;
    let allowed = Canary::start("127.0.0.2", album_torrent("From the allowed host").to_bytes()).await;
    let (p, indexer_port) = (internal.port(), port_of(&torznab.url()));

    let spellings = [
        format!("http://127.0.0.1:{p}/a.torrent"),
        format!("http://localhost:{p}/b.torrent"),
        format!("http://0x7f000001:{p}/c.torrent"),
        format!("http://127.1:{p}/d.torrent"),
        format!("http://2130706433:{p}/e.torrent"),
        format!("http://user:pass@127.0.0.1:{p}/f.torrent"),
        format!("http://127.0.0.1:{indexer_port}@127.0.0.1:{p}/g.torrent"),
    ];
    let mut releases = vec![Release::new(&title("from the indexer"), "orpheus")
        .download(Download::TorrentFile(album_torrent("Indexer").to_bytes()))
        .seeders(1, 1)];
    for (n, link) in spellings.iter().enumerate() {
        releases.push(Release::new(&title(&format!("spelling {n}")), "orpheus").link(link).seeders(1, 1));
    }
    // The indexer's own link redirects to the canary, directly or through a second hop on the indexer.
    releases.push(
        Release::new(&title("redirected"), "orpheus")
            .download(Download::Redirect(format!("http://127.0.0.1:{p}/redirected.torrent")))
            .seeders(1, 1),
    );
    torznab.set_download("orpheus", "second hop", Download::Redirect(format!("http://localhost:{p}/hop.torrent")));
    releases.push(
        Release::new(&title("two hops"), "orpheus")
            .download(Download::Redirect(torznab.download_link("orpheus", "second hop")))
            .seeders(1, 1),
    );
    let file_title = title("to a file");
    releases.push(
        Release::new(&file_title, "orpheus").download(Download::Redirect("file:///etc/passwd".into())).seeders(1, 1),
    );
    // The positive control: a host the configuration allows is fetched.
    releases.push(
        Release::new(&title("allowed host"), "orpheus")
            .link(&format!("http://127.0.0.2:{}/allowed.torrent", allowed.port()))
            .seeders(1, 1),
    );
    torznab.set_results(releases);

    let mut setup = ServiceSetup::new(dir.path(), &torznab.url(), &torznab.api_key());
    setup.torrent_client = TorrentClientSetup::External {
        url: UNUSED_QBITTORRENT_URL.into(),
        username: "admin".into(),
        password: "unused".into(),
        download_path: dir.path().join("downloads"),
    };
    setup.allowed_link_hosts = vec![format!("127.0.0.2:{}", allowed.port())];
    let service = ServiceProcess::start(&setup).await;
    let ticket = ticket_for("links-1", &setup.media_root(), ARTIST, ALBUM, 2019, &tracks(), 44_100);
    service.create(&ticket).await;
    let shown = service.wait_for_state("links-1", "needs_approval", TIMEOUT).await;

    assert_eq!(internal.connections(), 0, "internal URLs requested: {:?}", internal.seen());
    assert!(allowed.connections() >= 1, "the allowed host was fetched (the canary would have seen a request)");
    let mut titles: Vec<String> = shown["state"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["candidate"]["title"].as_str().unwrap().to_string())
        .collect();
    titles.sort();
    assert_eq!(titles, [title("allowed host"), title("from the indexer")], "the refused links are dropped");
    // A redirect to file:// is a permanent refusal: its link was asked once, however many queries ran.
    let asked = torznab.requests().iter().filter(|r| r.is_download() && r.param("file") == Some(&file_title)).count();
    assert_eq!(asked, 1, "the file:// link is not retried");
    let log = std::fs::read_to_string(&service.log_path).unwrap();
    assert!(log.contains("scheme is never fetched"), "the refusal is logged: {}", service.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trackers_web_seeds_and_peers_on_internal_addresses_never_reach_the_torrent_client() {
    let dir = tempfile::tempdir().unwrap();
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    let internal = Canary::start("127.0.0.1", Vec::new()).await;
    let allowed = Canary::start("127.0.0.2", Vec::new()).await;
    let p = internal.port();
    let internal_tracker = format!("http://127.0.0.1:{p}/announce");
    let allowed_tracker = format!("http://127.0.0.2:{}/announce", allowed.port());

    // A .torrent naming the canary as tracker (announce and announce-list), web seed and DHT node.
    let with_sources = album_torrent("Tidal Lines [internal sources]")
        .with("announce", bytes(&internal_tracker))
        .with(
            "announce-list",
            serde_bencode::value::Value::List(vec![
                list_of(&[&allowed_tracker]),
                list_of(&[&internal_tracker]),
                list_of(&[&format!("http://localhost:{p}/announce")]),
            ]),
        )
        .with("url-list", list_of(&[&format!("http://127.0.0.1:{p}/seed/")]))
        .with(
            "nodes",
            serde_bencode::value::Value::List(vec![serde_bencode::value::Value::List(vec![
                bytes("127.0.0.1"),
                serde_bencode::value::Value::Int(i64::from(p)),
            ])]),
        );
    let torrent_hash = with_sources.info_hash();
    // A magnet naming it as tracker, web seed and peer (no seeders: never fetched for its file list while matching).
    let magnet_hash = album_torrent("Tidal Lines [magnet]").info_hash();
    let enc = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let magnet = format!(
        "magnet:?xt=urn:btih:{magnet_hash}&dn=Tidal+Lines&tr={}&tr={}&ws={}&x.pe=127.0.0.1:{p}",
        enc(&allowed_tracker),
        enc(&internal_tracker),
        enc(&format!("http://127.0.0.1:{p}/seed/"))
    );
    let torrent_title = title("torrent");
    let magnet_title = title("magnet");
    let mut magnet_release = Release::new(&magnet_title, "1337x").seeders(0, 0);
    magnet_release.magnet = Some(magnet);
    magnet_release.infohash = Some(magnet_hash.clone());
    let torznab = TorznabServer::start().await;
    torznab.set_results(vec![
        Release::new(&torrent_title, "orpheus").download(Download::TorrentFile(with_sources.to_bytes())).seeders(1, 1),
        magnet_release,
    ]);

    let mut setup = ServiceSetup::new(dir.path(), &torznab.url(), &torznab.api_key());
    setup.torrent_client = external_client(&qbt);
    // Only the second loopback host is a "LAN tracker"; 127.0.0.1 is internal like any other.
    setup.allowed_tracker_hosts = vec!["127.0.0.2".into()];
    setup.stall_timeout_secs = 600;
    let service = ServiceProcess::start(&setup).await;

    for (ticket_id, chosen, hash) in
        [("sources-1", &torrent_title, &torrent_hash), ("sources-2", &magnet_title, &magnet_hash)]
    {
        let ticket = ticket_for(ticket_id, &setup.media_root(), ARTIST, ALBUM, 2019, &tracks(), 44_100);
        service.create(&ticket).await;
        let shown = service.wait_for_state(ticket_id, "needs_approval", TIMEOUT).await;
        let candidates = shown["state"]["candidates"].as_array().unwrap();
        let idx = candidates.iter().position(|c| c["candidate"]["title"] == chosen.as_str()).unwrap();
        let response = service
            .post(&format!("/api/v1/ticket/{ticket_id}/approve"), ADMIN_TOKEN, &json!({"candidate_idx": idx}))
            .await;
        assert_eq!(response.status(), 200);

        // The client has the torrent under the hash the test computed (stripping never touches the info
        // dictionary), with the allowed tracker and nothing on the canary.
        let trackers: Vec<Value> = wait_for("the torrent's trackers in qBittorrent", TIMEOUT, || async {
            // 404 (not JSON) until the approved torrent has been added.
            let urls = known_torrent_list(&qbt, &format!("torrents/trackers?hash={hash}")).await?;
            urls.iter().any(|t| t["url"] == allowed_tracker.as_str()).then_some(urls)
        })
        .await;
        for tracker in &trackers {
            let url = tracker["url"].as_str().unwrap_or_default();
            assert!(!url.contains(&format!(":{p}")), "{ticket_id}: internal tracker handed to the client: {url}");
        }
        let seeds = raw_get_json(&qbt.managed, &format!("torrents/webseeds?hash={hash}")).await;
        assert_eq!(seeds, json!([]), "{ticket_id}: no web seed reaches the client");
    }

    // The client does call the trackers it is given: the allowed one was announced to...
    wait_for("an announce to the allowed tracker", TIMEOUT, || async {
        allowed.seen().iter().any(|line| line.contains("/announce")).then_some(())
    })
    .await;
    // ... and the canary, tracker, web seed and peer of both torrents, saw nothing.
    assert_eq!(internal.connections(), 0, "internal URLs requested: {:?}", internal.seen());
}

/// A list the WebUI answers about one torrent, or `None` while qBittorrent does not know the torrent yet (404).
async fn known_torrent_list(qbt: &QbittorrentUnderTest, path_and_query: &str) -> Option<Vec<Value>> {
    let http = reqwest::Client::builder().cookie_store(true).no_proxy().build().unwrap();
    let managed = &qbt.managed;
    let login = http
        .post(format!("{}api/v2/auth/login", managed.url()))
        .form(&[("username", managed.username()), ("password", managed.password())])
        .send()
        .await
        .unwrap();
    assert_eq!(login.text().await.unwrap(), "Ok.");
    let response = http.get(format!("{}api/v2/{path_and_query}", managed.url())).send().await.unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(response.status().is_success(), "{path_and_query}: {}", response.status());
    response.json::<Value>().await.unwrap().as_array().cloned()
}
