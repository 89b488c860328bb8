//! A catalog's webhook receiver on 127.0.0.1, with switches: accept (200), answer a status (503...) after reading
//! the request, read the request and drop the connection without answering (a lost answer: the sender cannot know
//! it arrived), or be down (the listener closed: connection refused; the same port is bound again when it comes
//! back up). Every request that reached it is recorded with its headers, its exact body bytes and what it was
//! answered. It checks nothing itself: the tests verify signatures independently (`hmac` + `sha2`, Python and
//! openssl from the README).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a short JSON body.
    Accept,
    /// This status (after reading the whole request).
    Status(u16),
    /// Read the whole request, then close the connection without answering.
    Drop,
}

/// One request that reached the receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: Answer,
    pub at: Instant,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("a webhook body that is not JSON ({err})"))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or_default()
    }

    pub fn event_id(&self) -> String {
        self.json()["event_id"].as_str().unwrap_or_default().to_string()
    }

    /// Whether `X-Downloader2-Signature` is `sha256=<hex HMAC-SHA256(secret, body)>`, checked in constant time.
    pub fn signature_is_valid(&self, secret: &str) -> bool {
        let Some(hex_part) = self.header("x-downloader2-signature").strip_prefix("sha256=") else { return false };
        let Ok(claimed) = hex::decode(hex_part) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        mac.verify_slice(&claimed).is_ok()
    }
}

struct Shared {
    /// The answer when no scripted one is queued.
    mode: Mutex<Answer>,
    /// Answers for the next requests, in order, before `mode` applies again.
    script: Mutex<VecDeque<Answer>>,
    deliveries: Mutex<Vec<Delivery>>,
}

pub struct WebhookReceiver {
    pub port: u16,
    shared: Arc<Shared>,
    /// The accept loop while up (dropping it closes the listener and every connection).
    serving: Mutex<Option<JoinHandle<()>>>,
}

/// A port below Linux's ephemeral range (32768-60999 by default): while the receiver is down, no outgoing
/// connection of another test can take it, so it can be bound again.
fn bind_fixed_port(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    socket.listen(128)
}

impl WebhookReceiver {
    /// Starts accepting on a free port of 127.0.0.1.
    pub async fn start() -> WebhookReceiver {
        let (port, listener) = (0..200)
            .find_map(|_| {
                let port = 20_000 + rand::random::<u16>() % 12_000;
                bind_fixed_port(port).ok().map(|listener| (port, listener))
            })
            .expect("no free port between 20000 and 32000 on 127.0.0.1");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Answer::Accept),
            script: Mutex::new(VecDeque::new()),
            deliveries: Mutex::new(Vec::new()),
        });
        let receiver = WebhookReceiver { port, shared, serving: Mutex::new(None) };
        receiver.serve(listener);
        receiver
    }

    /// The URL to configure as `[notify] url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/downloader2", self.port)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *self.serving.lock().unwrap() = Some(task);
    }

    /// Closes the listener and every open connection: connections are refused until `up`.
    pub async fn down(&self) {
        let task = self.serving.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port (no-op when already up), answering with the current mode.
    pub fn up(&self) {
        if self.serving.lock().unwrap().is_some() {
            return;
        }
        let listener =
            bind_fixed_port(self.port).unwrap_or_else(|err| panic!("cannot bind port {} again: {err}", self.port));
        self.serve(listener);
    }

    /// How requests are answered from now on (once the scripted answers are used up).
    pub fn set_mode(&self, answer: Answer) {
        *self.shared.mode.lock().unwrap() = answer;
    }

    /// Answers the next requests with `answers`, in order, then with the mode again.
    pub fn script(&self, answers: &[Answer]) {
        self.shared.script.lock().unwrap().extend(answers.iter().copied());
    }

    /// Every request received so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    /// The requests answered 200.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries().into_iter().filter(|delivery| delivery.answered == Answer::Accept).collect()
    }

    /// Waits until `count` requests were answered 200 (panics after `timeout`, listing what arrived).
    pub async fn wait_accepted(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} webhook deliveries accepted within {timeout:?}; received: {:?}",
                accepted.len(),
                self.deliveries()
                    .iter()
                    .map(|d| (d.answered, String::from_utf8_lossy(&d.body).to_string()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until at least `count` requests arrived, however answered.
    pub async fn wait_received(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.deliveries().len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} webhook requests within {timeout:?}",
                self.deliveries().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(task) = self.serving.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// Reads the whole request, records it, and answers as the switches say.
async fn answer(
    shared: Arc<Shared>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<axum::body::Body>, std::io::Error> {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.to_str().unwrap_or_default().to_string()))
        .collect();
    let body = axum::body::to_bytes(axum::body::Body::new(request.into_body()), 1024 * 1024)
        .await
        .map_err(std::io::Error::other)?
        .to_vec();
    let answered = shared.script.lock().unwrap().pop_front().unwrap_or(*shared.mode.lock().unwrap());
    shared.deliveries.lock().unwrap().push(Delivery { headers, body, answered, at: Instant::now() });
    match answered {
        Answer::Accept => Ok(hyper::Response::new(axum::body::Body::from("{\"ok\":true}"))),
        Answer::Status(status) => {
            let mut response = hyper::Response::new(axum::body::Body::from("receiver unavailable"));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            Ok(response)
        }
        // An error from the service makes hyper close the connection without writing an answer.
        Answer::Drop => Err(std::io::Error::other("answer dropped on purpose")),
    }
}
