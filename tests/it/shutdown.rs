//! Shutdown leaves nothing running: the service is started through `downloader2::run` (exactly what `serve` runs)
//! on a runtime of its own, with the scheduler, the reaper, the webhook delivery and the store's group commit all
//! working on a ticket; after the shutdown future resolves and `run` returns, no task is alive on that runtime.
//! The HTTP client runs on another runtime (another thread), so its own connection tasks are not counted.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Builder;
use tokio::sync::oneshot;

use crate::support::app::{sample_ticket, test_config, CATALOG_TOKEN};

/// Tasks alive on the service's runtime (tokio's own count; the service runs inside `block_on`, not as a task).
fn alive(runtime: &tokio::runtime::Handle) -> usize {
    runtime.metrics().num_alive_tasks()
}

#[test]
fn no_task_the_service_spawned_is_alive_after_run_returns() {
    let service = Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let media_root = dir.path().join("media");
    std::fs::create_dir_all(&media_root).unwrap();
    let mut config = test_config(dir.path());
    // Everything that spawns a task runs: the scheduler (and its reaper), the webhook delivery (to a loopback
    // port where nothing listens, so it keeps retrying), the connections.
    config.processing.paused = false;
    config.notify.url = "http://127.0.0.1:9/webhook".into();
    config.notify.secret = "a-webhook-secret-for-the-shutdown-test".into();
    let listener = service.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handle = service.handle().clone();

    let client = std::thread::spawn(move || {
        let runtime = Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let ticket = sample_ticket("shutdown-1", &media_root);
            loop {
                match http.post(format!("{url}/ticket")).bearer_auth(CATALOG_TOKEN).json(&ticket).send().await {
                    Ok(response) => {
                        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
                        break;
                    }
                    Err(err) => {
                        assert!(Instant::now() < deadline, "the service never answered: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            // Wait until the pipeline has worked on the ticket (its history has more than the creation).
            loop {
                let response =
                    http.get(format!("{url}/ticket/shutdown-1")).bearer_auth(CATALOG_TOKEN).send().await.unwrap();
                let body: Value = response.json().await.unwrap();
                let history = body["history"].as_array().map_or(0, Vec::len);
                if history > 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "the scheduler never took the ticket: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // While the service runs, its tasks are alive (scheduler, reaper, webhook, watcher, group commit...).
            let running = alive(&handle);
            assert!(running >= 4, "only {running} tasks alive while serving");
            stop_tx.send(()).unwrap();
            running
        })
    });

    let result = service.block_on(downloader2::run(config, listener, async move {
        let _ = stop_rx.await;
    }));
    result.unwrap();
    let running_before = client.join().unwrap();

    // `run` returned: every task it spawned has ended. (Tasks a library ends in reaction to the close, such as the
    // database pool's maintenance, are woken by it and may need one more poll; nothing may stay.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(service.handle()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(alive(service.handle()), 0, "tasks still alive after run returned (there were {running_before})");
}
