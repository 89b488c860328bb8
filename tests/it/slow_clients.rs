//! Slow and idle clients against the real binary at systemd's default open-file limit (1024, set with `prlimit`),
//! with the default timeouts: 1,100 idle connections do not lock out `/api/v1/health`; idle, slow-header and
//! slow-body connections are closed by the server (the slow body with a JSON 408) well within 40 s; the log never
//! repeats "Too many open files". Prints the figures the README quotes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::CATALOG_TOKEN;
use crate::support::service_process::{ServiceOptions, ServiceProcess};

const IDLE_CONNECTIONS: usize = 1_100;
const SLOW_HEADER_CLIENTS: usize = 50;
const SLOW_BODY_CLIENTS: usize = 50;
/// The acceptance's mark: after this long no slow client may still hold a connection.
const HELD_AFTER: Duration = Duration::from_secs(40);
/// A slow client sends one byte this often (well under the header and body timeouts, so only a total deadline
/// closes it).
const TRICKLE_EVERY: Duration = Duration::from_secs(2);

/// The test process needs more descriptors than the service: raise its own soft limit to the hard one.
fn raise_own_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limits = getrlimit(Resource::Nofile);
    if let (Some(_), Some(hard)) = (limits.current, limits.maximum) {
        setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }).unwrap();
    }
    let current = getrlimit(Resource::Nofile).current;
    assert!(current.is_none_or(|n| n >= 4096), "the test needs >= 4096 open files (ulimit -n), has {current:?}");
}

/// The service's soft open-file limit, from /proc.
fn open_file_limit_of(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Sockets the service process holds (the listener included).
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| {
                    std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// How a trickling client ended: when the server closed it, and what the server sent first.
struct Trickled {
    closed_after: Option<Duration>,
    answer: String,
}

/// Sends `head` and then `trickle` one byte every `TRICKLE_EVERY`, reading meanwhile; ends when the server closes
/// the connection or at `give_up`.
async fn trickle(port: u16, head: Vec<u8>, trickle: Vec<u8>, give_up: Duration) -> Trickled {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = stream.write_all(&head).await;
    let mut bytes = trickle.into_iter();
    let mut next_byte = tokio::time::interval(TRICKLE_EVERY);
    next_byte.tick().await;
    loop {
        if started.elapsed() >= give_up {
            return Trickled { closed_after: None, answer: String::from_utf8_lossy(&answer).into_owned() };
        }
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    return Trickled {
                        closed_after: Some(started.elapsed()),
                        answer: String::from_utf8_lossy(&answer).into_owned(),
                    }
                }
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            },
            _ = next_byte.tick() => {
                if let Some(byte) = bytes.next() {
                    if stream.write_all(&[byte]).await.is_err() {
                        return Trickled {
                            closed_after: Some(started.elapsed()),
                            answer: String::from_utf8_lossy(&answer).into_owned(),
                        };
                    }
                }
            }
            () = tokio::time::sleep(give_up.saturating_sub(started.elapsed())) => {}
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset) or `deadline` passes; true when closed.
async fn closed_by_server(mut stream: TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_and_health_answers_under_1100_idle_connections_at_1024_files() {
    raise_own_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions { open_file_limit: Some(1024), ..ServiceOptions::in_dir(dir.path()) };
    let service = ServiceProcess::start(dir.path(), &options).await;
    assert_eq!(open_file_limit_of(service.pid()), 1024, "the service must run at 1024 open files");
    let port = service.port;
    let started = Instant::now();

    // Slow bodies first: a request in flight is never closed for room, only by the body timeout.
    let body_head = format!(
        "POST /api/v1/ticket HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CATALOG_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    )
    .into_bytes();
    let slow_bodies: Vec<_> = (0..SLOW_BODY_CLIENTS)
        .map(|_| tokio::spawn(trickle(port, body_head.clone(), vec![b' '; 1000], HELD_AFTER + TRICKLE_EVERY)))
        .collect();

    // 1,100 bare connections: more than the service has descriptors for.
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // Slow headers after the flood: younger than every idle connection, so the ones closed for room are the idle
    // ones and these meet the header timeout.
    let slow_head = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".to_vec();
    let slow_headers: Vec<_> = (0..SLOW_HEADER_CLIENTS)
        .map(|_| tokio::spawn(trickle(port, slow_head.clone(), vec![b'a'; 1000], HELD_AFTER + TRICKLE_EVERY)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Health, while they are all open: every request answers.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        let response = client.get(service.url("/api/v1/health")).send().await.expect("health must answer");
        latencies.push(asked.elapsed());
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();

    // Every idle connection is closed by the server before the mark.
    let deadline = started + HELD_AFTER;
    let idle_closed =
        futures::future::join_all(idle.into_iter().map(|stream| closed_by_server(stream, deadline))).await;
    let idle_held = idle_closed.iter().filter(|closed| !**closed).count();
    let mut header_held = 0;
    for task in slow_headers {
        let ended = task.await.unwrap();
        if ended.closed_after.is_none_or(|after| after > HELD_AFTER) {
            header_held += 1;
        }
    }
    let mut body_held = 0;
    let mut body_answers = Vec::new();
    for task in slow_bodies {
        let ended = task.await.unwrap();
        if ended.closed_after.is_none_or(|after| after > HELD_AFTER) {
            body_held += 1;
        }
        body_answers.push(ended.answer);
    }
    let sockets_left = sockets_of(service.pid());
    println!(
        "slow clients: held after {} s: idle {idle_held}/{IDLE_CONNECTIONS}, slow-header {header_held}/{SLOW_HEADER_CLIENTS}, \
         slow-body {body_held}/{SLOW_BODY_CLIENTS}; service sockets now {sockets_left}; health with \
         {IDLE_CONNECTIONS} idle connections at 1024 files: p50 {:?}, max {:?}",
        HELD_AFTER.as_secs(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    assert_eq!(idle_held, 0, "idle connections still open after {HELD_AFTER:?}");
    assert_eq!(header_held, 0, "slow-header connections still open after {HELD_AFTER:?}");
    assert_eq!(body_held, 0, "slow-body connections still open after {HELD_AFTER:?}");
    for answer in &body_answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "a trickled body is answered 408: {answer:?}");
        assert!(answer.contains("\"error\""), "with the JSON error body: {answer:?}");
    }
    // Left: the listener, tokio's signal socket pair and the health client's kept-alive connection.
    assert!(sockets_left <= 4, "the service still holds {sockets_left} sockets");
    let log = service.log_text();
    assert!(!log.contains("Too many open files"), "the service ran out of descriptors:\n{log}");
    // Still healthy after the flood.
    assert_eq!(client.get(service.url("/api/v1/health")).send().await.unwrap().status(), 200);
}

/// The WebSocket is exempt from the HTTP timeouts but has its own: a client that answers pings stays connected far
/// past the header timeout; one that stays silent is closed with 1008 after two ping intervals.
#[tokio::test]
async fn a_websocket_outlives_the_http_timeouts_but_a_silent_client_is_closed() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        server_toml: "header_read_timeout_secs = 1\nbody_timeout_secs = 1\nwebsocket_ping_secs = 1",
        ..ServiceOptions::in_dir(dir.path())
    };
    let service = ServiceProcess::start(dir.path(), &options).await;
    let url = format!("{}/api/v1/ws?token={CATALOG_TOKEN}", service.base.replace("http://", "ws://"));

    // Answering: reading the stream makes tungstenite answer every ping.
    let (mut answering, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let until = Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    while Instant::now() < until {
        match tokio::time::timeout(until - Instant::now(), answering.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("a WebSocket answering pings was closed after {pings} pings: {other:?}"),
        }
    }
    assert!(pings >= 3, "pinged every second: {pings} pings in 6 s");

    // Silent: never read (so never pong) for 5 s, then see what the server did: a close frame (1008), or, when
    // tungstenite first tries to answer a queued ping, a connection the server already closed.
    let (mut silent, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut ended = None;
    let mut pings_queued = 0;
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(10), silent.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings_queued += 1,
            Some(Ok(Message::Close(frame))) => {
                ended = Some(format!("close {:?}", frame.map(|frame| u16::from(frame.code))));
                break;
            }
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(err)) => {
                ended = Some(format!("error {err}"));
                break;
            }
            None => {
                ended = Some("end of stream".into());
                break;
            }
        }
    }
    let ended = ended.expect("the silent client was still connected 15 s later");
    assert!(
        ended == "close Some(1008)"
            || ended.contains("Broken pipe")
            || ended.contains("reset")
            || ended == "end of stream",
        "closed by the server: {ended}"
    );
    assert!(pings_queued <= 3, "closed after two unanswered pings, not later: {pings_queued} pings");
}
