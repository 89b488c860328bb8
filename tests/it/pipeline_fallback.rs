//! The fallback after a stalled download, end to end on the real binary (qbittorrent-nox, a loopback swarm, a
//! Torznab test server; the support of `pipeline_faults.rs`): the next candidate is taken without an admin only
//! when its own verdict would have been auto-approved. Here it has one seeder (a weak swarm, a doubt), so the
//! ticket must wait in `needs_approval` with it recommended, not download it by itself.

use std::time::Duration;

use downloader2::torrent_client::TorrentClient;
use serde_json::json;

use crate::pipeline_faults::{download_progress, entries_to, history, wait_state, Fixture, SECOND_TITLE, TITLE};
use crate::support::pipeline::{EventRecorder, ServiceProcess};
use crate::support::swarm::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stall_with_a_one_seeder_next_candidate_goes_to_an_admin_not_to_auto_approval() {
    // The same album twice: the first well seeded (chosen and auto-approved), the second announced with 1 seeder.
    let fixture = Fixture::new(&[(TITLE, 40), (SECOND_TITLE, 1)], |_| {}).await;
    let first_hash = fixture.swarm.albums[0].info_hash.clone();
    let mut setup = fixture.setup();
    setup.stall_timeout_secs = 8;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, Some("fallback-weak")).await;
    let seeder = &fixture.swarm.seeder().client;
    seeder.set_preferences(&json!({"up_limit": 100_000})).await.unwrap();
    service.create(&fixture.ticket("fallback-weak", &setup)).await;

    wait_state(&events, &service, "fallback-weak", "downloading").await;
    wait_for("some download progress", Duration::from_secs(120), || async {
        download_progress(&service, "fallback-weak").await.filter(|pct| *pct > 0.0).map(|_| ())
    })
    .await;
    // The only seeder drops the chosen torrent: it stalls.
    seeder.remove_torrent(&first_hash, false).await.unwrap();
    seeder.set_preferences(&json!({"up_limit": 0})).await.unwrap();

    wait_state(&events, &service, "fallback-weak", "needs_approval").await;
    assert_eq!(
        events.states_of("fallback-weak"),
        ["pending", "searching", "matching", "auto_approved", "downloading", "needs_approval"],
        "after the stall an admin decides: {}",
        service.log_tail()
    );
    let shown = service.ticket("fallback-weak").await;
    let state = &shown["state"];
    let candidates = state["candidates"].as_array().unwrap();
    assert!(candidates.iter().all(|c| c["candidate"]["title"] != TITLE), "the dead release is not offered again");
    let recommended = &candidates[state["recommended_idx"].as_u64().unwrap() as usize];
    assert_eq!(recommended["candidate"]["title"], SECOND_TITLE, "{state}");
    let doubts: Vec<&str> =
        recommended["doubts"].as_array().unwrap().iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(doubts, ["weak_swarm"], "the typed verdict says why: {recommended}");
    assert_eq!(recommended["doubts"][0]["seeders"], 1);
    assert_eq!(state["reason"]["type"], "low_confidence", "{state}");

    let history = history(&shown);
    let waiting = entries_to(&history, "needs_approval");
    assert_eq!(waiting.len(), 1, "{history:#?}");
    assert_eq!(waiting[0]["from_state"], "downloading");
    assert_eq!(waiting[0]["details"]["fallback_from"], first_hash.to_string(), "the dead torrent is named");
    assert!(waiting[0]["details"]["error"].as_str().unwrap().contains("stalled"), "{}", waiting[0]["details"]);
    assert_eq!(entries_to(&history, "auto_approved").len(), 1, "only the first choice was auto-approved");
}
