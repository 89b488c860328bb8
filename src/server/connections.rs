//! Accepting and serving HTTP/1.1 connections so that slow, idle or too many clients cannot take the service down.
//! `axum::serve` arms no timer, so a client that never finishes its headers holds a connection (and a file
//! descriptor) forever; here every connection is served by hyper with a timer and these limits:
//!
//! - **headers**: a request's head must arrive within `[server] header_read_timeout_secs` of the connection
//!   opening or of the previous answer (hyper's header-read timeout, which is also the keep-alive idle limit);
//! - **bodies**: `api::body` gives a body `[server] body_timeout_secs` to arrive (408 otherwise);
//! - **count**: at most `max_connections` are served at once, further capped by the open-file limit (minus
//!   `FD_RESERVE` for the database, qBittorrent and ffmpeg). A new connection that finds every slot taken closes
//!   the one idle the longest (no request in flight), as nginx does with idle keep-alive connections, so a flood of
//!   idle connections cannot lock out `GET /api/v1/health`. Connections with a request in flight, WebSockets
//!   included, are never closed for room;
//! - **stalls**: a connection with no request in flight and no activity for the header timeout plus a grace (an
//!   answer the client never reads) is closed;
//! - **accept errors**: `EMFILE`/`ENFILE` make the loop close idle connections, pause and retry with a backoff,
//!   logging once per minute instead of once per attempt.
//!
//! A WebSocket holds its connection's slot (`api::ConnectionSlot`, a request extension) until it ends; its own ping and
//! close live in `api::ws`. On shutdown every connection is asked to finish its request and close; whatever is
//! still open after `SHUTDOWN_GRACE` is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::ConnectionSlot;

/// File descriptors kept free of connections for everything else the service opens.
pub const FD_RESERVE: u64 = 256;
/// How long the accept loop waits for a slot (after closing an idle connection) before refusing the newcomer.
const ADMISSION_WAIT: Duration = Duration::from_secs(2);
/// A connection idle (no request in flight) this long past the header timeout is closed: hyper's header timer does
/// not run while an answer is being written to a client that does not read.
const STALL_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after an accept error, doubled up to `MAX_ACCEPT_BACKOFF` while errors continue.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Accept errors are logged at most this often (with the count since the last line).
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Idle connections closed when the process runs out of file descriptors.
const EVICT_ON_EMFILE: usize = 16;

/// The limits connections are served with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// Connections served at once (already capped by the open-file limit).
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The configured limits, with `max_connections` capped by `open_files` (the soft `RLIMIT_NOFILE`) minus
    /// `FD_RESERVE`, and never below a handful.
    pub fn new(config: &crate::config::ServerConfig, open_files: Option<u64>) -> ConnectionLimits {
        let by_descriptors = open_files
            .map(|limit| usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX))
            .unwrap_or(usize::MAX);
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            max_connections: config.max_connections.min(by_descriptors).max(crate::config::MIN_CONNECTIONS),
        }
    }
}

/// Raises the soft open-file limit to the hard one (systemd starts services at 1024) and returns the soft limit in
/// force afterwards, or None when it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limits = getrlimit(Resource::Nofile);
    let (Some(current), hard) = (limits.current, limits.maximum) else {
        return None; // unlimited
    };
    let target = hard.unwrap_or(current.max(65_536));
    if target > current {
        let raised = rustix::process::Rlimit { current: Some(target), maximum: hard };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = current, to = target, "raised the open-file limit");
                return Some(target);
            }
            Err(err) => tracing::warn!(error = %err, limit = current, "cannot raise the open-file limit"),
        }
    }
    Some(current)
}

/// The connections being served: the slots (a semaphore) and, for eviction, each connection's activity.
#[derive(Debug)]
struct Registry {
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<u64, Weak<Activity>>>,
    next_id: AtomicU64,
    started: Instant,
}

/// One connection's activity, shared by its task, its requests and a WebSocket it became (through
/// `api::ConnectionSlot`, which keeps this alive and so the slot taken).
#[derive(Debug)]
struct Activity {
    id: u64,
    registry: Weak<Registry>,
    _slot: OwnedSemaphorePermit,
    /// Requests (and WebSockets) in flight on the connection.
    in_flight: Arc<AtomicUsize>,
    /// Milliseconds since `Registry::started` of the last request start or end.
    last_active_ms: AtomicU64,
    /// Cancelled to close the connection for room (only while nothing is in flight).
    evict: CancellationToken,
}

impl Activity {
    fn touch(&self) {
        if let Some(registry) = self.registry.upgrade() {
            self.last_active_ms.store(registry.millis(), Ordering::Release);
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            if let Ok(mut live) = registry.live.lock() {
                live.remove(&self.id);
            }
        }
    }
}

impl Registry {
    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes up to `count` connections with nothing in flight, the longest idle first; returns how many.
    fn evict_idle(&self, count: usize) -> usize {
        let Ok(live) = self.live.lock() else { return 0 };
        let mut idle: Vec<(u64, Arc<Activity>)> = live
            .values()
            .filter_map(Weak::upgrade)
            .filter(|activity| activity.is_idle() && !activity.evict.is_cancelled())
            .map(|activity| (activity.last_active_ms.load(Ordering::Acquire), activity))
            .collect();
        drop(live);
        idle.sort_by_key(|(last_active, _)| *last_active);
        let evicted = idle.iter().take(count).map(|(_, activity)| activity.evict.cancel()).count();
        evicted
    }

    /// A slot for a connection just accepted: a free one, else one freed by closing the longest-idle connection
    /// (waiting up to `ADMISSION_WAIT` for it to close). None when every connection is busy. Called by the accept
    /// loop itself, one newcomer at a time, so a flood waits in the kernel's backlog (costing no descriptor)
    /// instead of in tasks.
    async fn admit(self: &Arc<Self>) -> Option<Arc<Activity>> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.evict_idle(1);
                tokio::time::timeout(ADMISSION_WAIT, self.slots.clone().acquire_owned()).await.ok()?.ok()?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            registry: Arc::downgrade(self),
            _slot: slot,
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_active_ms: AtomicU64::new(self.millis()),
            evict: CancellationToken::new(),
        });
        if let Ok(mut live) = self.live.lock() {
            live.insert(id, Arc::downgrade(&activity));
        }
        Some(activity)
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets connections finish (up to
/// `SHUTDOWN_GRACE`) and returns.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        "serving HTTP"
    );
    let registry = Arc::new(Registry {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        live: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        started: Instant::now(),
    });
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                errors.succeeded();
                let admitted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    admitted = registry.admit() => admitted,
                };
                let Some(activity) = admitted else {
                    tracing::debug!("connection refused: every connection has a request in flight");
                    continue;
                };
                let connection = Connection {
                    registry: registry.clone(),
                    router: router.clone(),
                    limits,
                    shutdown: shutdown.clone(),
                    hard_stop: hard_stop.clone(),
                };
                tracker.spawn(connection.serve(stream, activity));
            }
            Err(err) if is_per_connection_error(&err) => {}
            Err(err) => {
                if is_out_of_descriptors(&err) {
                    registry.evict_idle(EVICT_ON_EMFILE);
                }
                let pause = errors.failed(&err);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(open = tracker.len(), "connections still open after the shutdown grace: closing them");
        hard_stop.cancel();
        tracker.wait().await;
    }
}

/// Errors of one connection that `accept` reports but that say nothing about the listener.
fn is_per_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

/// `EMFILE` (this process) or `ENFILE` (the system) out of file descriptors.
fn is_out_of_descriptors(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
        || code == rustix::io::Errno::NFILE.raw_os_error())
}

/// Accept errors in a row: the backoff and the rate-limited log line.
#[derive(Debug, Default)]
struct AcceptErrors {
    consecutive: u32,
    since_logged: u64,
    last_logged: Option<Instant>,
}

impl AcceptErrors {
    fn succeeded(&mut self) {
        self.consecutive = 0;
    }

    /// Logs (at most once per interval) and returns how long to pause.
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.since_logged += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
            let hint = if is_out_of_descriptors(err) {
                "out of file descriptors: raise LimitNOFILE (systemd) or `ulimit -n`, or lower [server] max_connections"
            } else {
                "pausing before the next accept"
            };
            tracing::error!(error = %err, errors = self.since_logged, "cannot accept connections: {hint}");
            self.since_logged = 0;
            self.last_logged = Some(Instant::now());
        }
        let pause = FIRST_ACCEPT_BACKOFF.saturating_mul(1 << self.consecutive.min(6));
        self.consecutive = self.consecutive.saturating_add(1);
        pause.min(MAX_ACCEPT_BACKOFF)
    }
}

/// What one connection's task needs.
struct Connection {
    registry: Arc<Registry>,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
}

impl Connection {
    async fn serve(self, stream: TcpStream, activity: Arc<Activity>) {
        let _ = stream.set_nodelay(true);
        let place: Arc<dyn std::any::Any + Send + Sync> = activity.clone();
        let slot = ConnectionSlot::new(activity.in_flight.clone(), place, self.shutdown.clone());
        let router = self.router;
        let requests_activity = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = slot.hold();
            requests_activity.touch();
            let activity = requests_activity.clone();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(slot.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                activity.touch();
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout).keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        tokio::pin!(connection);
        let stall_limit = self.limits.header_read_timeout + STALL_GRACE;
        let mut watchdog = tokio::time::interval(Duration::from_secs(1));
        let mut closing = false;
        let mut evict_refused = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                () = activity.evict.cancelled(), if !evict_refused => {
                    if activity.is_idle() {
                        tracing::debug!("idle connection closed to make room");
                        return;
                    }
                    // A request started meanwhile: it is served; the newcomer waits for another slot.
                    evict_refused = true;
                }
                () = self.shutdown.cancelled(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = self.hard_stop.cancelled() => return,
                _ = watchdog.tick() => {
                    let idle_ms = self.registry.millis().saturating_sub(activity.last_active_ms.load(Ordering::Acquire));
                    if activity.is_idle() && Duration::from_millis(idle_ms) > stall_limit
                    {
                        tracing::debug!("stalled idle connection closed");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_up_to_a_second_and_reset_on_success() {
        let mut errors = AcceptErrors::default();
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(is_out_of_descriptors(&emfile));
        assert!(!is_per_connection_error(&emfile));
        let pauses: Vec<Duration> = (0..10).map(|_| errors.failed(&emfile)).collect();
        assert_eq!(pauses[0], FIRST_ACCEPT_BACKOFF);
        assert!(pauses.windows(2).all(|pair| pair[1] >= pair[0]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), MAX_ACCEPT_BACKOFF);
        // One line for the ten errors; the next line would carry the count.
        assert_eq!(errors.since_logged, 9);
        errors.succeeded();
        assert_eq!(errors.failed(&emfile), FIRST_ACCEPT_BACKOFF);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_per_connection_error(&reset) && !is_out_of_descriptors(&reset));
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_for_everything_else() {
        let config = crate::config::ServerConfig::default();
        assert_eq!(ConnectionLimits::new(&config, Some(1024)).max_connections, 1024 - 256);
        assert_eq!(ConnectionLimits::new(&config, Some(65_536)).max_connections, config.max_connections);
        assert_eq!(ConnectionLimits::new(&config, None).max_connections, config.max_connections);
        assert_eq!(ConnectionLimits::new(&config, Some(100)).max_connections, crate::config::MIN_CONNECTIONS);
    }
}
