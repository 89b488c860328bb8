//! A canary: a TCP server on a loopback address that counts every connection made to it and records the first
//! line of what it was sent (an HTTP request line, a BitTorrent handshake). It stands for an internal service a
//! hostile indexer result points at; a test asserts it was never contacted. It answers HTTP requests with a
//! usable body (a `.torrent`, or a tracker's empty peer list for `/announce`), so a service that did call it would
//! happily go on.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The running canary; stops when dropped.
pub struct Canary {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canary {
    /// Listens on `ip` (a loopback address: `127.0.0.1`, `127.0.0.2`, ...), port chosen by the system. HTTP
    /// requests for anything but `/announce...` get `torrent` as a `.torrent` body.
    pub async fn start(ip: &str, torrent: Vec<u8>) -> Canary {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap_or_else(|err| panic!("bind {ip}:0: {err}"));
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback(), "a canary lives on loopback only");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let connections: Arc<AtomicUsize> = Arc::default();
        let counter = connections.clone();
        let torrent = Arc::new(torrent);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let record = record.clone();
                let torrent = torrent.clone();
                tokio::spawn(async move {
                    let mut head = vec![0u8; 8192];
                    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head)).await;
                    let n = read.ok().and_then(Result::ok).unwrap_or(0);
                    let text = String::from_utf8_lossy(&head[..n]).to_string();
                    let first_line = text.lines().next().unwrap_or("<no data>").to_string();
                    record.lock().unwrap().push(first_line.clone());
                    if first_line.starts_with("GET ") || first_line.starts_with("HEAD ") {
                        let body: Vec<u8> = if first_line.contains("/announce") {
                            b"d8:intervali1800e5:peers0:e".to_vec()
                        } else {
                            torrent.to_vec()
                        };
                        let mut answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/x-bittorrent\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        answer.extend_from_slice(&body);
                        let _ = stream.write_all(&answer).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Canary { addr, connections, seen, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://IP:PORT` (IPv4).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far (counted at once, before anything is read).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The first line of every connection so far (recorded once read, or after 2 s of silence).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}
