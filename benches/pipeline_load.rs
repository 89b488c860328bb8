//! Load benchmark of the whole pipeline with real components (the scenario of `tests/it/pipeline_load.rs`): many
//! tickets posted at once over a few short seeded albums, carried to a terminal state by the real binary, while
//! `GET /api/v1/health` is sampled every 50 ms. Prints the health latency (p50, p99, max, samples), the wall time
//! and tickets per minute, and the peak concurrency per stage class from the event logs. Exits 1 when the max
//! health latency reaches the acceptance threshold (50 ms), 2 when not every ticket completed, 3 when a
//! concurrency limit was exceeded.
//!
//! `cargo bench --bench pipeline_load` (env `LOAD_TICKETS`, default 200). Talks to 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

// Its test function (and the imports only it uses) are compiled out here.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/pipeline_load.rs"]
mod pipeline_load;

use std::time::{Duration, Instant};

use downloader2::processor::scheduler::{PLACE_SLOTS, SEARCH_SLOTS};
use pipeline_load::{log_lines_about, peak_concurrency, run_load, LoadOptions, LoadStack};

/// The acceptance line: `/health` answers in less than this while the load runs.
const HEALTH_THRESHOLD: Duration = Duration::from_millis(50);

fn main() {
    let tickets = std::env::var("LOAD_TICKETS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let code = runtime.block_on(bench(tickets));
    drop(runtime);
    std::process::exit(code);
}

async fn bench(tickets: usize) -> i32 {
    let options = LoadOptions { tickets, ..LoadOptions::default() };
    let setup = Instant::now();
    let stack = LoadStack::start(&options).await;
    println!(
        "stack ready in {:.1} s ({} albums, {} s tracks)",
        setup.elapsed().as_secs_f64(),
        options.albums,
        options.track_secs
    );
    let report = run_load(&stack, &options).await;
    let completed = report.logs.iter().filter(|log| log.state["state"] == "completed").count();
    let minutes = report.wall.as_secs_f64() / 60.0;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "tickets: {} posted, {completed} completed, wall {:.1} s, {:.1} tickets/min",
        options.tickets,
        report.wall.as_secs_f64(),
        completed as f64 / minutes
    );
    println!(
        "health: samples {} failures {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms (threshold {} ms)",
        report.health.latencies.len(),
        report.health.failures.len(),
        ms(report.health.quantile(0.50)),
        ms(report.health.quantile(0.99)),
        ms(report.health.max()),
        HEALTH_THRESHOLD.as_millis()
    );
    let slow = report.health.latencies.iter().filter(|latency| **latency >= HEALTH_THRESHOLD).count();
    println!("health answers >= {} ms: {slow}", HEALTH_THRESHOLD.as_millis());
    let limits = [
        (&["searching", "matching"][..], SEARCH_SLOTS),
        (&["downloading"], options.max_parallel_downloads),
        (&["converting"], options.max_parallel_conversions),
        (&["placing"], PLACE_SLOTS),
    ];
    let mut over_limit = false;
    for (states, limit) in limits {
        let (peak, at, tickets) = peak_concurrency(&report.logs, states);
        println!("peak tickets in {states:?}: {peak} (limit {limit})");
        if peak > limit {
            over_limit = true;
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at).unwrap_or_default();
            println!("  over the limit at {at}: {tickets:?}");
            for log in report.logs.iter().filter(|log| tickets.contains(&log.id)) {
                let events: Vec<String> =
                    log.events.iter().map(|(at, _, to)| format!("{} {to}", at.format("%H:%M:%S%.3f"))).collect();
                println!("  {}: {}", log.id, events.join(", "));
            }
            let needles: Vec<String> = tickets.iter().map(|id| format!("ticket_id={id}}}")).collect();
            println!("{}", log_lines_about(&stack, &needles, 80));
        }
    }
    println!(
        "torrents: up to {} at once, up to {} tickets sharing one",
        report.torrents.max_torrents, report.torrents.max_tickets_per_torrent
    );
    for log in report.logs.iter().filter(|log| log.state["state"] != "completed") {
        println!("not completed: {} {}", log.id, log.state);
    }
    if completed != options.tickets {
        eprintln!("FAIL: {} of {} tickets did not complete", options.tickets - completed, options.tickets);
        return 2;
    }
    if over_limit {
        eprintln!("FAIL: a concurrency limit was exceeded (event log above)");
        return 3;
    }
    if report.health.max() >= HEALTH_THRESHOLD {
        eprintln!("FAIL: max health latency {:.1} ms >= {} ms", ms(report.health.max()), HEALTH_THRESHOLD.as_millis());
        return 1;
    }
    0
}
