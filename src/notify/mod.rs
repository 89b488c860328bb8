//! The catalog webhook's client: one signed HTTP POST per delivery of a [`WebhookEvent`], and the backoff between
//! failed deliveries. It owns the wire format (the body is the event plus the delivery's `timestamp` and
//! `delivery_attempt`; the headers are in [`signature`]) and the reading of the receiver's answer (2xx = delivered;
//! anything else, a refused connection or a timeout is a failed attempt). It never touches the database and never
//! decides order or retries: the outbox (`queue::outbox`) keeps the events, the delivery task
//! (`processor::webhook`) sends them one at a time in commit order and records the outcome.
//!
//! Redirects are not followed (a 3xx is a failed attempt saying to fix `notify.url`): a POST silently turned into
//! a GET, or sent to another host, would be a lost event. Errors never show the URL's credentials or query.

pub mod signature;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::NotifyConfig;
use crate::models::{WebhookDelivery, WebhookEvent};
pub use signature::{sign, EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Bytes of a refusing receiver's answer kept in the error (enough for "invalid signature"-style messages).
const ANSWER_EXCERPT_BYTES: usize = 300;

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No connection (refused, unreachable, DNS, TLS handshake).
    #[error("cannot connect to the webhook receiver {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the webhook receiver {url} did not answer within {secs} s (notify.timeout_secs)")]
    Timeout { url: String, secs: u64 },
    /// The request was cut off or the answer was unreadable.
    #[error("webhook request to {url} failed: {message}")]
    Request { url: String, message: String },
    /// The receiver answered, but not 2xx.
    #[error("the webhook receiver {url} answered {status}{}: {excerpt:?}", status_hint(*status))]
    Status { url: String, status: u16, excerpt: String },
    /// A redirect, which is not followed.
    #[error("the webhook receiver {url} redirects ({status}) to {location:?}: set notify.url to the final address")]
    Redirect { url: String, status: u16, location: String },
    /// The configuration cannot make a client (a bad URL, no TLS backend).
    #[error("cannot set up the webhook client: {0}")]
    Setup(String),
}

/// What to check for a refusing status.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (does the receiver use the same secret as notify.secret?)",
        404 | 405 => " (is notify.url the receiver's address?)",
        _ => "",
    }
}

impl NotifyError {
    /// Whether the same request may succeed later without anyone changing anything. The delivery task retries
    /// every failure anyway (the event is kept until delivered; a receiver or a setting may be fixed meanwhile).
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Connect { .. } | NotifyError::Timeout { .. } | NotifyError::Request { .. } => true,
            NotifyError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 425 | 429),
            NotifyError::Redirect { .. } | NotifyError::Setup(_) => false,
        }
    }

    /// The `reason` label of `downloader2_webhook_failed_attempts_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            NotifyError::Connect { .. } => "connect",
            NotifyError::Timeout { .. } => "timeout",
            NotifyError::Request { .. } => "request",
            NotifyError::Status { .. } => "status",
            NotifyError::Redirect { .. } => "redirect",
            NotifyError::Setup(_) => "setup",
        }
    }
}

/// The wait before the next attempt after `failed_attempts` failed ones: `initial` doubling up to `max`.
pub fn retry_delay(initial: Duration, max: Duration, failed_attempts: u32) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(31);
    initial.saturating_mul(1_u32 << doublings).min(max)
}

/// The webhook's HTTP client, built once from `[notify]`.
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as errors and logs show it: no credentials, no query.
    shown_url: String,
    secret: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender").field("url", &self.shown_url).finish_non_exhaustive()
    }
}

/// `url` without user info, query and fragment.
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have them (no host), which `notify.url` validation refuses.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

impl WebhookSender {
    /// A sender for `config.url`, signing with `config.secret`.
    pub fn new(config: &NotifyConfig) -> Result<WebhookSender, NotifyError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|err| NotifyError::Setup(format!("notify.url is not a URL: {err}")))?;
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("downloader2/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| NotifyError::Setup(err.to_string()))?;
        Ok(WebhookSender {
            client,
            shown_url: shown_url(&url),
            url,
            secret: config.secret.as_bytes().to_vec(),
            timeout,
        })
    }

    /// The receiver's address as logs may show it.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// The exact bytes POSTed for delivery `attempt` (1, 2, ...) of `event` sent at `now`.
    pub fn body(event: &WebhookEvent, attempt: u32, now: DateTime<Utc>) -> Result<Vec<u8>, NotifyError> {
        let delivery = WebhookDelivery { event, timestamp: now.timestamp(), delivery_attempt: attempt };
        serde_json::to_vec(&delivery).map_err(|err| NotifyError::Setup(format!("cannot encode the event: {err}")))
    }

    /// POSTs delivery `attempt` of `event`, signed; `Ok` once the receiver answered 2xx.
    pub async fn deliver(&self, event: &WebhookEvent, attempt: u32, now: DateTime<Utc>) -> Result<(), NotifyError> {
        let body = WebhookSender::body(event, attempt, now)?;
        let started = Instant::now();
        let result = self.post(event, body, now).await;
        crate::metrics::external_call("webhook", result.is_ok(), started.elapsed());
        result
    }

    async fn post(&self, event: &WebhookEvent, body: Vec<u8>, now: DateTime<Utc>) -> Result<(), NotifyError> {
        let signature = sign(&self.secret, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &event.event_id)
            .header(TIMESTAMP_HEADER, now.timestamp().to_string())
            .header(EVENT_HEADER, event.event.as_str())
            .body(body)
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .chars()
                .take(ANSWER_EXCERPT_BYTES)
                .collect();
            return Err(NotifyError::Redirect { url: self.shown_url.clone(), status: status.as_u16(), location });
        }
        Err(NotifyError::Status {
            url: self.shown_url.clone(),
            status: status.as_u16(),
            excerpt: answer_excerpt(response).await,
        })
    }

    fn transport_error(&self, err: &reqwest::Error) -> NotifyError {
        let url = self.shown_url.clone();
        if err.is_timeout() {
            return NotifyError::Timeout { url, secs: self.timeout.as_secs() };
        }
        let message = error_chain(err);
        if err.is_connect() {
            NotifyError::Connect { url, message }
        } else {
            NotifyError::Request { url, message }
        }
    }
}

/// The first bytes of a refusing answer, as text without control characters (it reaches logs and the admin page).
async fn answer_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(ANSWER_EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// A reqwest error and its causes in one line, without the URL (it may carry credentials).
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(if err.is_body() { "the request body could not be sent".into() } else { "request failed".into() });
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_initial_one_up_to_the_cap() {
        let delays: Vec<u64> = (1..=12)
            .map(|failed| retry_delay(Duration::from_secs(1), Duration::from_secs(300), failed).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(retry_delay(Duration::from_secs(1), Duration::from_secs(300), u32::MAX), Duration::from_secs(300));
        assert_eq!(retry_delay(Duration::from_secs(5), Duration::from_secs(60), 0), Duration::from_secs(5));
    }

    #[test]
    fn shown_urls_carry_no_credentials_or_query() {
        let url = reqwest::Url::parse("https://user:pass@catalog.lan:8443/hook?token=abc#x").unwrap();
        assert_eq!(shown_url(&url), "https://catalog.lan:8443/hook");
    }

    #[test]
    fn refusals_say_what_to_check_and_whether_waiting_helps() {
        let status = |status: u16| NotifyError::Status { url: "http://h/".into(), status, excerpt: "no".into() };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(status(401).to_string().contains("notify.secret"), "{}", status(401));
        assert!(status(404).to_string().contains("notify.url"));
        let redirect = NotifyError::Redirect { url: "http://h/".into(), status: 301, location: "https://h/".into() };
        assert!(!redirect.is_retryable());
        assert!(redirect.to_string().contains("notify.url"));
    }
}
