//! The request loop every LLM provider client shares: one reqwest client (rustls, no proxy taken from the
//! environment, no redirects), a per-request timeout, request-level retries with exponential backoff and jitter on
//! 408/409/429/5xx/529 and on connection failures, `retry-after` honoured on 429/529, lenient parsing of the error
//! bodies of every provider family, and the mapping of all of it to [`LlmError`].
//!
//! Decisions:
//! - A timeout is NOT retried here: the provider may still be working (and billing) on it, and three timeouts in a
//!   row would hold a ticket for minutes. It becomes [`LlmError::Timeout`] (retryable by the caller).
//! - A `retry-after` longer than [`HttpOptions::max_retry_after`] is not waited for: the loop gives up at once with
//!   [`LlmError::RateLimited`] carrying the server's value (waiting less would only earn another 429).
//! - A 429 whose error says `insufficient_quota` (OpenAI) or `enforced_spend_limit_reached` (Anthropic) is an
//!   account problem, never retried: [`LlmError::Rejected`].
//! - Response bodies are read up to [`MAX_RESPONSE_BYTES`]; error messages are cut to [`MAX_ERROR_MESSAGE_CHARS`].
//!
//! It must never log or return the API key: headers carrying it are marked sensitive, and every message taken from
//! a server is scrubbed of the key before it is put into an error.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;

use super::LlmError;

/// The largest response body read from a provider (a structured answer is a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The longest server error message kept in an [`LlmError`].
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// Timeouts and retries of the request loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The whole of one request, connect to last body byte.
    pub request_timeout: Duration,
    /// Establishing the connection.
    pub connect_timeout: Duration,
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles per attempt (plus up to 25 % jitter).
    pub initial_backoff: Duration,
    /// The longest backoff wait.
    pub max_backoff: Duration,
    /// The longest `retry-after` the loop waits for; a longer one ends the loop with `RateLimited`.
    pub max_retry_after: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            request_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// A reqwest client and the options of its request loop.
#[derive(Debug, Clone)]
pub struct LlmHttp {
    client: reqwest::Client,
    options: HttpOptions,
}

/// What one attempt came to.
enum AttemptOutcome {
    Done(Result<serde_json::Value, LlmError>),
    /// Worth another attempt after `wait` (None: the backoff), else this error.
    Retry {
        error: LlmError,
        wait: Option<Duration>,
    },
}

impl LlmHttp {
    /// Builds the client: rustls, no proxy from the environment, no redirects, the options' timeouts.
    pub fn new(options: HttpOptions) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("downloader2/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Configuration(format!("cannot build the HTTP client: {e}")))?;
        Ok(LlmHttp { client, options })
    }

    /// The options in force.
    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// POSTs `body` as JSON to `url` with `headers`, retrying as the module says, and returns the 200 body parsed
    /// as JSON. `secret` (the API key) is scrubbed from every message that goes into an error.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &serde_json::Value,
        secret: Option<&str>,
    ) -> Result<serde_json::Value, LlmError> {
        let attempts = self.options.max_attempts.max(1);
        let mut attempt: u32 = 1;
        loop {
            let started = std::time::Instant::now();
            let outcome = self.attempt(url, headers, body, secret).await;
            crate::metrics::external_call("llm", matches!(outcome, AttemptOutcome::Done(Ok(_))), started.elapsed());
            match outcome {
                AttemptOutcome::Done(result) => return result,
                AttemptOutcome::Retry { error, wait } => {
                    if attempt >= attempts {
                        return Err(error);
                    }
                    let wait = wait.unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(url, attempt, wait_ms = wait.as_millis(), error = %error, "LLM request retried");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// The backoff before attempt `attempt + 1`: initial * 2^(attempt-1), capped, plus up to 25 % jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self.options.initial_backoff.saturating_mul(factor).min(self.options.max_backoff);
        let jitter_ms = u64::try_from(base.as_millis() / 4).unwrap_or(0);
        let jitter = if jitter_ms > 0 { rand::thread_rng().gen_range(0..=jitter_ms) } else { 0 };
        base.saturating_add(Duration::from_millis(jitter))
    }

    async fn attempt(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &serde_json::Value,
        secret: Option<&str>,
    ) -> AttemptOutcome {
        let mut request_headers = headers.clone();
        request_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sent = self
            .client
            .post(url)
            .headers(request_headers)
            .timeout(self.options.request_timeout)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return self.transport_failure(url, e, secret),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match read_capped(response).await {
            Ok(bytes) => bytes,
            Err(e) => return self.transport_failure(url, e, secret),
        };
        if status == StatusCode::OK {
            return AttemptOutcome::Done(
                serde_json::from_slice(&bytes)
                    .map_err(|e| LlmError::Malformed(format!("the HTTP 200 body from {url} is not JSON: {e}"))),
            );
        }
        let detail = ErrorDetail::parse(&bytes);
        let message = scrub(&detail.message(status), secret);
        let code = status.as_u16();
        if status == StatusCode::TOO_MANY_REQUESTS {
            if detail.is_account_limit() {
                return AttemptOutcome::Done(Err(LlmError::Rejected {
                    url: url.into(),
                    status: code,
                    message: format!("{message} (an account limit, not a rate limit: check the plan and billing)"),
                }));
            }
            let error = LlmError::RateLimited { url: url.into(), retry_after_secs: retry_after.map(|d| d.as_secs()) };
            return match retry_after {
                Some(wait) if wait > self.options.max_retry_after => AttemptOutcome::Done(Err(error)),
                wait => AttemptOutcome::Retry { error, wait },
            };
        }
        let error_is_server = status.is_server_error();
        if error_is_server || code == 408 || code == 409 {
            let error = if error_is_server {
                LlmError::Server { url: url.into(), status: code, message }
            } else {
                LlmError::Rejected { url: url.into(), status: code, message }
            };
            return match retry_after {
                Some(wait) if code == 529 || code == 503 => {
                    if wait > self.options.max_retry_after {
                        AttemptOutcome::Done(Err(error))
                    } else {
                        AttemptOutcome::Retry { error, wait: Some(wait) }
                    }
                }
                _ => AttemptOutcome::Retry { error, wait: None },
            };
        }
        let message = if status.is_redirection() {
            format!("{message} (redirects are not followed: set [matcher] base_url to the final address)")
        } else {
            message
        };
        AttemptOutcome::Done(Err(LlmError::Rejected { url: url.into(), status: code, message }))
    }

    fn transport_failure(&self, url: &str, error: reqwest::Error, secret: Option<&str>) -> AttemptOutcome {
        if error.is_timeout() {
            return AttemptOutcome::Done(Err(LlmError::Timeout {
                url: url.into(),
                secs: self.options.request_timeout.as_secs(),
            }));
        }
        let message = scrub(&error_chain(&error.without_url()), secret);
        let error = LlmError::Network { url: url.into(), message };
        AttemptOutcome::Retry { error, wait: None }
    }
}

/// `retry-after-ms` (OpenAI) or `retry-after` in whole seconds; an HTTP date is ignored (the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if (0.0..86_400_000.0).contains(&ms) {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    text("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs)
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(bytes)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Replaces every occurrence of the secret (when it is long enough to be one) and cuts the text.
pub(crate) fn scrub(text: &str, secret: Option<&str>) -> String {
    let cleaned = match secret {
        Some(secret) if secret.len() >= 4 => text.replace(secret, "[REDACTED]"),
        _ => text.to_string(),
    };
    if cleaned.chars().count() > MAX_ERROR_MESSAGE_CHARS {
        let mut cut: String = cleaned.chars().take(MAX_ERROR_MESSAGE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        cleaned
    }
}

/// What an error body says, read leniently: `{"error": {...}}` with a string, integer or null `code`
/// (OpenAI, Anthropic, Ollama `/v1`, llama.cpp, vLLM), `{"error": "text"}` (Ollama native, LM Studio), the fields
/// at the top level (vLLM before 0.10.1), or no JSON at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `error.type` (Anthropic `rate_limit_error`, OpenAI `insufficient_quota`, vLLM `BadRequestError`).
    pub kind: Option<String>,
    /// `error.code` as text (integers written out).
    pub code: Option<String>,
    pub message: Option<String>,
    /// Anthropic's `error.details.error_code` (e.g. `enforced_spend_limit_reached`).
    pub detail_code: Option<String>,
}

impl ErrorDetail {
    /// Reads an error body; never fails (a non-JSON body becomes the message).
    pub fn parse(bytes: &[u8]) -> ErrorDetail {
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(_) => {
                let text = String::from_utf8_lossy(bytes).trim().to_string();
                return ErrorDetail { message: (!text.is_empty()).then_some(text), ..ErrorDetail::default() };
            }
        };
        let as_text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match value.get("error") {
            Some(serde_json::Value::String(message)) => {
                ErrorDetail { message: Some(message.clone()), ..ErrorDetail::default() }
            }
            Some(error @ serde_json::Value::Object(_)) => ErrorDetail {
                kind: as_text(error.get("type")),
                code: as_text(error.get("code")),
                message: as_text(error.get("message")),
                detail_code: as_text(error.get("details").and_then(|d| d.get("error_code"))),
            },
            _ => ErrorDetail {
                kind: as_text(value.get("type")).filter(|t| t != "error"),
                code: as_text(value.get("code")),
                message: as_text(value.get("message")).or_else(|| as_text(value.get("detail"))),
                detail_code: None,
            },
        }
    }

    /// An account limit that waiting does not lift.
    pub fn is_account_limit(&self) -> bool {
        let says = |v: &Option<String>, what: &str| v.as_deref() == Some(what);
        says(&self.code, "insufficient_quota")
            || says(&self.kind, "insufficient_quota")
            || says(&self.detail_code, "enforced_spend_limit_reached")
    }

    /// `type (code): message`, with what is known.
    pub fn message(&self, status: StatusCode) -> String {
        let mut out = String::new();
        if let Some(kind) = &self.kind {
            out.push_str(kind);
        }
        if let Some(code) = self.code.as_ref().filter(|c| Some(*c) != self.kind.as_ref()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("({code})"));
        }
        if let Some(message) = &self.message {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(message);
        }
        if out.is_empty() {
            out = status.canonical_reason().unwrap_or("no error message").to_string();
        }
        out
    }
}

/// A header value holding a secret: marked sensitive so it never shows in debug output.
pub fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        LlmError::Configuration(
            "[matcher] api_key contains characters that cannot go into an HTTP header (check for a line break)".into(),
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_family_are_read() {
        let anthropic =
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"r"}"#;
        let d = ErrorDetail::parse(anthropic);
        assert_eq!(d.kind.as_deref(), Some("rate_limit_error"));
        assert_eq!(d.message.as_deref(), Some("slow down"));

        let quota =
            br#"{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(ErrorDetail::parse(quota).is_account_limit());

        let llamacpp = br#"{"error":{"code":400,"message":"bad grammar","type":"invalid_request_error"}}"#;
        let d = ErrorDetail::parse(llamacpp);
        assert_eq!(d.code.as_deref(), Some("400"));
        assert_eq!(d.message(StatusCode::BAD_REQUEST), "invalid_request_error (400): bad grammar");

        let lmstudio = br#"{"error":"'response_format.type' must be 'json_schema' or 'text'"}"#;
        let d = ErrorDetail::parse(lmstudio);
        assert_eq!(d.message.as_deref(), Some("'response_format.type' must be 'json_schema' or 'text'"));
        assert_eq!(d.kind, None);

        let vllm_legacy =
            br#"{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}"#;
        let d = ErrorDetail::parse(vllm_legacy);
        assert_eq!((d.kind.as_deref(), d.code.as_deref()), (Some("BadRequestError"), Some("400")));
        assert_eq!(d.message.as_deref(), Some("too long"));

        let spend = br#"{"type":"error","error":{"type":"rate_limit_error","message":"m","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert!(ErrorDetail::parse(spend).is_account_limit());

        let html = b"<html>Bad Gateway</html>";
        assert_eq!(ErrorDetail::parse(html).message.as_deref(), Some("<html>Bad Gateway</html>"));
        assert_eq!(ErrorDetail::parse(b"").message(StatusCode::BAD_GATEWAY), "Bad Gateway");
    }

    #[test]
    fn scrub_removes_the_key_and_cuts_long_text() {
        let text = format!("invalid key sk-test-1234 given; {}", "x".repeat(1000));
        let cleaned = scrub(&text, Some("sk-test-1234"));
        assert!(!cleaned.contains("sk-test-1234"));
        assert!(cleaned.starts_with("invalid key [REDACTED] given"));
        assert_eq!(cleaned.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("12"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
        headers.insert("retry-after-ms", HeaderValue::from_static("402"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(402)));
        let mut date = HeaderMap::new();
        date.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(retry_after(&date), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let http = LlmHttp::new(HttpOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..HttpOptions::default()
        })
        .unwrap();
        let first = http.backoff(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let second = http.backoff(2);
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(250));
        let capped = http.backoff(10);
        assert!(capped >= Duration::from_millis(300) && capped <= Duration::from_millis(375));
    }
}
