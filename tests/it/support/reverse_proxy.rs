//! A tiny reverse proxy on 127.0.0.1 that publishes a qBittorrent WebUI under a base path
//! (`http://127.0.0.1:PORT/qbittorrent/`) the way the shortest nginx configuration does
//! (`location /qbittorrent/ { proxy_pass http://127.0.0.1:8080/; }`): the path prefix is stripped and `Host` is
//! rewritten to the upstream's (so qBittorrent's Host-header validation passes), with no `X-Forwarded-Host`, so
//! qBittorrent compares any `Origin`/`Referer` with its own address; cookies, bodies (multipart uploads included)
//! and statuses pass through. It records every request it forwards, so a test can say what a client did and did
//! not ask qBittorrent.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One forwarded request.
#[derive(Debug, Clone)]
pub struct ForwardedRequest {
    pub method: Method,
    /// Path below the base path, e.g. `/api/v2/torrents/add`.
    pub path: String,
    pub query: String,
    /// The body as text (lossy: a .torrent part is binary).
    pub body: String,
}

struct Upstream {
    base: String,
    host: String,
    prefix: String,
    http: reqwest::Client,
    log: Mutex<Vec<ForwardedRequest>>,
}

/// The running proxy; stops on drop.
pub struct ReverseProxy {
    addr: SocketAddr,
    upstream: Arc<Upstream>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReverseProxy {
    /// Publishes `upstream` (`http://127.0.0.1:PORT/`) under `/<prefix>/`.
    pub async fn start(upstream: &str, prefix: &str) -> ReverseProxy {
        let url = url::Url::parse(upstream).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"), "loopback only");
        let host = format!("127.0.0.1:{}", url.port().unwrap());
        let upstream = Arc::new(Upstream {
            base: format!("http://{host}"),
            host,
            prefix: format!("/{}", prefix.trim_matches('/')),
            http: reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            log: Mutex::new(Vec::new()),
        });
        let router = Router::new().fallback(forward).with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        ReverseProxy { addr, upstream, task }
    }

    /// The published URL, `http://127.0.0.1:PORT/<prefix>/`.
    pub fn url(&self) -> String {
        format!("http://{}{}/", self.addr, self.upstream.prefix)
    }

    /// Every request forwarded so far, in order.
    pub fn requests(&self) -> Vec<ForwardedRequest> {
        self.upstream.log.lock().unwrap().clone()
    }
}

/// Headers that belong to one hop only.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade" | "te" | "trailer"
    )
}

async fn forward(
    State(upstream): State<Arc<Upstream>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = uri.path().strip_prefix(&upstream.prefix).filter(|rest| rest.starts_with('/')) else {
        return (StatusCode::NOT_FOUND, "not under the base path").into_response();
    };
    let query = uri.query().unwrap_or_default().to_string();
    upstream.log.lock().unwrap().push(ForwardedRequest {
        method: method.clone(),
        path: path.to_string(),
        query: query.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let target =
        if query.is_empty() { format!("{}{path}", upstream.base) } else { format!("{}{path}?{query}", upstream.base) };
    let mut request = upstream.http.request(method, target).body(body);
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    request = request.header("host", HeaderValue::from_str(&upstream.host).unwrap());
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}
