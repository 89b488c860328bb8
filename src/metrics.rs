//! The service's Prometheus metrics: their names, the one-line helpers the stages call, the process-wide recorder
//! (installed once, never twice, never panicking when another recorder is already there) and the text rendering
//! behind `GET /metrics`. It owns no state of its own besides the recorder and must never block or fail a caller:
//! a metric that cannot be recorded is simply lost.
//!
//! Every metric (all names start with `downloader2_`):
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `downloader2_tickets` | gauge | `state` | tickets in each state (refreshed from the store on every scrape) |
//! | `downloader2_queue_depth` | gauge | — | tickets waiting for a slot (`pending`, `auto_approved`, `approved`; refreshed on scrape) |
//! | `downloader2_transitions_total` | counter | `from`, `to` | committed state transitions |
//! | `downloader2_stage_duration_seconds` | histogram | `stage` | time one stage run took (the state it ran in) |
//! | `downloader2_stage_errors_total` | counter | `stage` | stage runs that failed (retried later or failed for good) |
//! | `downloader2_llm_calls_total` | counter | `outcome` | LLM second opinions: `answered`, `cached`, `failed`, `budget_exceeded` |
//! | `downloader2_active_tasks` | gauge | `class` | tickets being worked on per stage class (`search`, `download`, `convert`, `place`) |
//! | `downloader2_downloaded_bytes_total` | counter | — | bytes of finished downloads (at `downloading` → `converting`) |
//! | `downloader2_written_bytes_total` | counter | — | bytes of the files placed (at `completed`) |
//! | `downloader2_external_calls_total` | counter | `system`, `outcome` | calls to `torznab`, `qbittorrent`, `llm`, `ffmpeg`, `ffprobe`, `webhook`: `ok` or `error` |
//! | `downloader2_external_call_seconds` | histogram | `system` | how long each of those calls took |
//! | `downloader2_webhook_delivered_total` | counter | — | webhook events the receiver accepted (2xx) |
//! | `downloader2_webhook_failed_attempts_total` | counter | `reason` | failed webhook deliveries: `connect`, `timeout`, `request`, `status`, `redirect`, `setup` (each is retried) |
//! | `downloader2_webhook_pending` | gauge | — | webhook events waiting in the outbox (refreshed on every scrape) |
//! | `downloader2_webhook_oldest_pending_age_seconds` | gauge | — | age of the oldest of them, 0 when none (refreshed on every scrape) |
//!
//! The recorder is process-wide (several services in one test process share it): counters add up over all of them.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::models::{StateKind, TicketState, TicketWork};
use crate::processor::scheduler::StageClass;

/// Tickets per state (gauge, label `state`).
pub const TICKETS: &str = "downloader2_tickets";
/// Tickets waiting for a slot (gauge).
pub const QUEUE_DEPTH: &str = "downloader2_queue_depth";
/// Committed transitions (counter, labels `from`, `to`).
pub const TRANSITIONS: &str = "downloader2_transitions_total";
/// Seconds per stage run (histogram, label `stage`).
pub const STAGE_DURATION: &str = "downloader2_stage_duration_seconds";
/// Failed stage runs (counter, label `stage`).
pub const STAGE_ERRORS: &str = "downloader2_stage_errors_total";
/// LLM second opinions (counter, label `outcome`).
pub const LLM_CALLS: &str = "downloader2_llm_calls_total";
/// Tickets being worked on (gauge, label `class`).
pub const ACTIVE_TASKS: &str = "downloader2_active_tasks";
/// Bytes of finished downloads (counter).
pub const DOWNLOADED_BYTES: &str = "downloader2_downloaded_bytes_total";
/// Bytes of placed files (counter).
pub const WRITTEN_BYTES: &str = "downloader2_written_bytes_total";

/// Calls to external systems (counter, labels `system`, `outcome`).
pub const EXTERNAL_CALLS: &str = "downloader2_external_calls_total";
/// Seconds per external call (histogram, label `system`).
pub const EXTERNAL_CALL_SECONDS: &str = "downloader2_external_call_seconds";

/// Webhook events delivered (counter).
pub const WEBHOOK_DELIVERED: &str = "downloader2_webhook_delivered_total";
/// Failed webhook deliveries (counter, label `reason`).
pub const WEBHOOK_FAILED_ATTEMPTS: &str = "downloader2_webhook_failed_attempts_total";
/// Webhook events waiting (gauge).
pub const WEBHOOK_PENDING: &str = "downloader2_webhook_pending";
/// Age of the oldest waiting webhook event, seconds (gauge).
pub const WEBHOOK_OLDEST_PENDING_AGE: &str = "downloader2_webhook_oldest_pending_age_seconds";

/// Bucket bounds of the external-call histogram, in seconds (an API call takes milliseconds, an ffmpeg run minutes).
const EXTERNAL_CALL_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0];

/// Bucket bounds of the stage-duration histogram, in seconds (a search takes seconds, a download hours).
const STAGE_DURATION_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 24.0 * 3600.0];

/// The states whose tickets wait for a slot (what `downloader2_queue_depth` counts).
const WAITING: [StateKind; 3] = [StateKind::Pending, StateKind::AutoApproved, StateKind::Approved];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on the first call and returns its handle (later calls return the same one).
/// If another recorder was installed first, the handle renders this module's metrics as empty and a warning is
/// logged; nothing panics.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = builder();
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(err) => {
                tracing::warn!(error = %err, "metrics recorder not installed (another one is): /metrics stays empty");
                self::builder().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [(STAGE_DURATION, STAGE_DURATION_BUCKETS), (EXTERNAL_CALL_SECONDS, EXTERNAL_CALL_BUCKETS)] {
        builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets) {
            Ok(builder) => builder,
            // Only an empty bucket list is refused; the constants are not empty.
            Err(err) => {
                tracing::warn!(error = %err, metric = name, "histogram buckets refused: rendered as a summary");
                PrometheusBuilder::new()
            }
        };
    }
    builder
}

fn describe() {
    describe_gauge!(TICKETS, "Tickets in each state.");
    describe_gauge!(QUEUE_DEPTH, "Tickets waiting for a slot (pending, auto_approved, approved).");
    describe_counter!(TRANSITIONS, "Committed ticket state transitions.");
    describe_histogram!(STAGE_DURATION, Unit::Seconds, "Time one stage run took.");
    describe_counter!(STAGE_ERRORS, "Stage runs that failed.");
    describe_counter!(LLM_CALLS, "LLM second opinions by outcome.");
    describe_gauge!(ACTIVE_TASKS, "Tickets being worked on per stage class.");
    describe_counter!(DOWNLOADED_BYTES, Unit::Bytes, "Bytes of finished downloads.");
    describe_counter!(WRITTEN_BYTES, Unit::Bytes, "Bytes of the files placed.");
    describe_counter!(EXTERNAL_CALLS, "Calls to external systems (torznab, qbittorrent, llm, ffmpeg, ffprobe).");
    describe_histogram!(EXTERNAL_CALL_SECONDS, Unit::Seconds, "Time one call to an external system took.");
    describe_counter!(WEBHOOK_DELIVERED, "Webhook events the receiver accepted.");
    describe_counter!(WEBHOOK_FAILED_ATTEMPTS, "Failed webhook deliveries (each is retried).");
    describe_gauge!(WEBHOOK_PENDING, "Webhook events waiting for delivery.");
    describe_gauge!(WEBHOOK_OLDEST_PENDING_AGE, Unit::Seconds, "Age of the oldest webhook event waiting, 0 when none.");
}

/// Sets the store-derived gauges from `counts_by_state` (as `Store::stats` returns it) and renders every metric in
/// the Prometheus text format.
pub fn render(handle: &PrometheusHandle, counts_by_state: &BTreeMap<String, i64>) -> String {
    set_ticket_counts(counts_by_state);
    handle.render()
}

/// Sets `downloader2_tickets` and `downloader2_queue_depth` from the store's counts.
pub fn set_ticket_counts(counts_by_state: &BTreeMap<String, i64>) {
    let mut waiting = 0_i64;
    for (state, count) in counts_by_state {
        gauge!(TICKETS, "state" => state.clone()).set(as_f64(*count));
        if WAITING.iter().any(|kind| kind.as_str() == state) {
            waiting = waiting.saturating_add(*count);
        }
    }
    gauge!(QUEUE_DEPTH).set(as_f64(waiting));
}

/// Counts a committed transition, and the bytes written when it completes a ticket.
pub fn transition(from: StateKind, to: &TicketState) {
    counter!(TRANSITIONS, "from" => from.as_str(), "to" => to.kind().as_str()).increment(1);
    if let TicketState::Completed { stats, .. } = to {
        counter!(WRITTEN_BYTES).increment(stats.final_size_bytes);
    }
}

/// Records how long a stage run in state `stage` took.
pub fn stage_duration(stage: StateKind, took: Duration) {
    histogram!(STAGE_DURATION, "stage" => stage.as_str()).record(took.as_secs_f64());
}

/// Counts a failed stage run in state `stage`.
pub fn stage_error(stage: StateKind) {
    counter!(STAGE_ERRORS, "stage" => stage.as_str()).increment(1);
}

/// Counts one call to an external system (`torznab`, `qbittorrent`, `llm`, `ffmpeg`, `ffprobe`) and its time.
pub fn external_call(system: &'static str, ok: bool, took: Duration) {
    counter!(EXTERNAL_CALLS, "system" => system, "outcome" => if ok { "ok" } else { "error" }).increment(1);
    histogram!(EXTERNAL_CALL_SECONDS, "system" => system).record(took.as_secs_f64());
}

/// Counts a webhook event the receiver accepted.
pub fn webhook_delivered() {
    counter!(WEBHOOK_DELIVERED).increment(1);
}

/// Counts a failed webhook delivery (`reason`: see `NotifyError::reason`).
pub fn webhook_failed_attempt(reason: &'static str) {
    counter!(WEBHOOK_FAILED_ATTEMPTS, "reason" => reason).increment(1);
}

/// Sets the webhook backlog gauges: events waiting and the age of the oldest (zero when none).
pub fn set_webhook_backlog(pending: i64, oldest_age: Duration) {
    gauge!(WEBHOOK_PENDING).set(as_f64(pending));
    gauge!(WEBHOOK_OLDEST_PENDING_AGE).set(oldest_age.as_secs_f64());
}

/// Counts an LLM second opinion (`answered`, `cached`, `failed`, `budget_exceeded`).
pub fn llm_call(outcome: &'static str) {
    counter!(LLM_CALLS, "outcome" => outcome).increment(1);
}

/// The bytes a stage result finishes downloading: `Some` when it moves a ticket from `downloading` to `converting`.
pub fn finished_download(from: StateKind, next: &TicketState, work: &TicketWork) -> Option<u64> {
    (from == StateKind::Downloading && next.kind() == StateKind::Converting).then_some(work.download_bytes)
}

/// Counts the bytes of a finished download (see [`finished_download`]).
pub fn downloaded(bytes: Option<u64>) {
    if let Some(bytes) = bytes {
        counter!(DOWNLOADED_BYTES).increment(bytes);
    }
}

/// One ticket being worked on in a stage class: `downloader2_active_tasks{class}` is one higher while it lives.
#[derive(Debug)]
pub struct ActiveTask {
    class: &'static str,
}

impl ActiveTask {
    /// Starts counting a ticket worked on in `class`.
    pub fn start(class: StageClass) -> ActiveTask {
        let class = class_label(class);
        gauge!(ACTIVE_TASKS, "class" => class).increment(1.0);
        ActiveTask { class }
    }
}

impl Drop for ActiveTask {
    fn drop(&mut self) {
        gauge!(ACTIVE_TASKS, "class" => self.class).decrement(1.0);
    }
}

/// The `class` label of a stage class.
pub fn class_label(class: StageClass) -> &'static str {
    match class {
        StageClass::Search => "search",
        StageClass::Download => "download",
        StageClass::Convert => "convert",
        StageClass::Place => "place",
    }
}

/// A count as a gauge value (exact below 2^53, the nearest `f64` above).
fn as_f64(count: i64) -> f64 {
    // Both halves always fit their types; the fallbacks are unreachable.
    let high = i32::try_from(count >> 32).unwrap_or(0);
    let low = u32::try_from(count & 0xFFFF_FFFF).unwrap_or(0);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::CompletionStats;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).unwrap()
    }

    fn value_of(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name && labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .and_then(|sample| match sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => Some(value),
                _ => None,
            })
    }

    #[test]
    fn the_helpers_render_as_parseable_prometheus_text() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let counts: BTreeMap<String, i64> =
                [("pending".to_string(), 3), ("approved".to_string(), 2), ("completed".to_string(), 5)].into();
            set_ticket_counts(&counts);
            transition(StateKind::Failed, &TicketState::Pending {});
            transition(StateKind::Failed, &TicketState::Pending {});
            let stats = CompletionStats { final_size_bytes: 1234, ..CompletionStats::default() };
            transition(StateKind::Placing, &TicketState::Completed { completed_at: chrono::Utc::now(), stats });
            stage_duration(StateKind::Searching, Duration::from_millis(200));
            stage_error(StateKind::Downloading);
            llm_call("cached");
            let busy = ActiveTask::start(StageClass::Convert);
            let done = ActiveTask::start(StageClass::Convert);
            drop(done);
            downloaded(Some(777));
            downloaded(None);
            webhook_delivered();
            webhook_failed_attempt("connect");
            webhook_failed_attempt("connect");
            set_webhook_backlog(4, Duration::from_secs(90));
            let scrape = parse(&handle.render());
            assert_eq!(value_of(&scrape, TICKETS, &[("state", "pending")]), Some(3.0));
            assert_eq!(value_of(&scrape, TICKETS, &[("state", "completed")]), Some(5.0));
            assert_eq!(value_of(&scrape, QUEUE_DEPTH, &[]), Some(5.0), "pending + approved wait for a slot");
            assert_eq!(value_of(&scrape, TRANSITIONS, &[("from", "failed"), ("to", "pending")]), Some(2.0));
            assert_eq!(value_of(&scrape, TRANSITIONS, &[("from", "placing"), ("to", "completed")]), Some(1.0));
            assert_eq!(value_of(&scrape, WRITTEN_BYTES, &[]), Some(1234.0));
            assert_eq!(value_of(&scrape, DOWNLOADED_BYTES, &[]), Some(777.0));
            assert_eq!(value_of(&scrape, STAGE_ERRORS, &[("stage", "downloading")]), Some(1.0));
            assert_eq!(value_of(&scrape, LLM_CALLS, &[("outcome", "cached")]), Some(1.0));
            assert_eq!(value_of(&scrape, ACTIVE_TASKS, &[("class", "convert")]), Some(1.0));
            assert_eq!(value_of(&scrape, WEBHOOK_DELIVERED, &[]), Some(1.0));
            assert_eq!(value_of(&scrape, WEBHOOK_FAILED_ATTEMPTS, &[("reason", "connect")]), Some(2.0));
            assert_eq!(value_of(&scrape, WEBHOOK_PENDING, &[]), Some(4.0));
            assert_eq!(value_of(&scrape, WEBHOOK_OLDEST_PENDING_AGE, &[]), Some(90.0));
            let histogram = scrape
                .samples
                .iter()
                .find(|sample| sample.metric == STAGE_DURATION && sample.labels.get("stage") == Some("searching"))
                .unwrap();
            match &histogram.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    let le_one = buckets.iter().find(|bucket| bucket.less_than == 1.0).unwrap();
                    assert_eq!(le_one.count, 1.0, "0.2 s falls in the 1 s bucket");
                    let le_tenth = buckets.iter().find(|bucket| bucket.less_than == 0.1).unwrap();
                    assert_eq!(le_tenth.count, 0.0);
                }
                other => panic!("stage durations render as a histogram, got {other:?}"),
            }
            drop(busy);
        });
    }

    #[test]
    fn a_finished_download_is_only_the_move_from_downloading_to_converting() {
        let work = TicketWork { download_bytes: 42, ..TicketWork::default() };
        let converting = TicketState::Converting {
            current_track_idx: 0,
            total_tracks: 1,
            current_track_name: String::new(),
            started_at: chrono::Utc::now(),
        };
        assert_eq!(finished_download(StateKind::Downloading, &converting, &work), Some(42));
        assert_eq!(finished_download(StateKind::Failed, &converting, &work), None, "a retry resumes: no new bytes");
    }

    #[test]
    fn counts_convert_to_gauge_values() {
        assert_eq!(as_f64(7), 7.0);
        assert_eq!(as_f64(-1), -1.0);
        assert_eq!(as_f64(-5_000_000_000), -5_000_000_000.0);
        assert_eq!(as_f64(1 << 40), 2f64.powi(40));
    }

    #[test]
    fn installing_twice_returns_the_same_handle() {
        assert!(std::ptr::eq(install(), install()));
    }
}
