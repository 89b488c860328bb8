//! The LLM client: the optional second opinion over the deterministic matcher (`[matcher] llm_provider` = `none`
//! | `anthropic` | `openai` | `local`), a client like the searcher or the torrent client. This file holds the boundary every part shares: the request and reply of one structured
//! completion, the [`LlmProvider`] trait the provider clients implement, and the one error enum [`LlmError`].
//!
//! Parts: `anthropic.rs` and `openai.rs` (thin reqwest clients for the Messages and Chat Completions endpoints;
//! `local` servers speak the OpenAI dialect), `http.rs` (timeouts, retries with backoff on 429/5xx/529 honouring
//! `retry-after`), `prompt.rs` (the prompt: the ticket plus the top candidates, indexer text fenced, capped and
//! escaped), `answer.rs` (parsing and validating an answer against [`answer_schema`], dropping unknown keys),
//! The guard rails (how the LLM's verdicts may change the deterministic outcome) are pure and live in
//! `crate::matcher::llm_guard`; the step that caches answers and keeps the token budget is
//! `crate::processor::llm_refine`. Nothing here imports the queue, the app or the processor.
//!
//! Nothing here may ever block a ticket: every failure is an `LlmError`, and the caller falls back to the
//! deterministic result.

pub mod answer;
pub mod anthropic;
pub mod http;
pub mod openai;
pub mod prompt;

use std::sync::{Arc, LazyLock};

pub use anthropic::AnthropicProvider;
pub use http::{HttpOptions, LlmHttp};
pub use openai::{ChatDialect, OpenAiProvider};

/// The JSON schema every answer must satisfy: sent to the provider (structured output) and used to validate the
/// answer. The one copy lives next to this file.
pub const ANSWER_SCHEMA_JSON: &str = include_str!("match_result.schema.json");

static ANSWER_SCHEMA: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::from_str(ANSWER_SCHEMA_JSON).unwrap_or(serde_json::Value::Null));

/// The parsed answer schema.
pub fn answer_schema() -> &'static serde_json::Value {
    &ANSWER_SCHEMA
}

/// The schema's name where a provider wants one (`json_schema.name`, the forced tool's name).
pub const ANSWER_SCHEMA_NAME: &str = "match_result";

/// One structured completion: a system prompt, one user message, and the schema the answer must follow.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub system: String,
    pub user: String,
    /// The JSON schema of the answer (normally [`answer_schema`]).
    pub schema: serde_json::Value,
    /// Upper bound of output tokens.
    pub max_output_tokens: u32,
}

/// Tokens a call consumed, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUsage {
    /// Both counts added.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A usable answer: the JSON object the model produced (not yet validated against the ticket), and its cost.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmReply {
    pub answer: serde_json::Value,
    pub usage: TokenUsage,
    /// The model the provider says answered (informational only: aliases resolve to snapshots).
    pub model: String,
}

/// A provider's client.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    /// `anthropic`, `openai` or `local`.
    fn provider(&self) -> &'static str;

    /// The model requests go to.
    fn model(&self) -> &str;

    /// One structured completion, with the client's own timeouts and retries. Never panics on any answer.
    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError>;
}

/// Every way asking an LLM can fail. The matcher then goes on with the deterministic result.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The configuration cannot work (unknown provider, missing key or base URL).
    #[error("LLM configuration: {0}")]
    Configuration(String),
    /// Nothing answered (connection refused, DNS, reset).
    #[error("LLM request to {url} failed: {message}")]
    Network { url: String, message: String },
    /// No answer within the timeout.
    #[error("LLM request to {url} timed out after {secs} s")]
    Timeout { url: String, secs: u64 },
    /// 429 (rate limit) still after the retries; `retry_after_secs` as the server said.
    #[error("LLM provider at {url} is rate limiting (retry after {retry_after_secs:?} s)")]
    RateLimited { url: String, retry_after_secs: Option<u64> },
    /// 5xx or 529 (overloaded) still after the retries.
    #[error("LLM provider at {url} failed with HTTP {status}: {message}")]
    Server { url: String, status: u16, message: String },
    /// A 4xx other than 429: the request or the account is wrong (bad key, unknown model, no quota).
    #[error("LLM provider at {url} rejected the request with HTTP {status}: {message}")]
    Rejected { url: String, status: u16, message: String },
    /// The provider answered but gave no usable answer (refusal, truncated at max tokens, no JSON block).
    #[error("LLM gave no usable answer: {0}")]
    NoAnswer(String),
    /// The answer is not JSON or does not follow the schema.
    #[error("LLM answer is malformed: {0}")]
    Malformed(String),
    /// The per-ticket token budget would be exceeded.
    #[error("LLM token budget of {budget} tokens for this ticket is used up")]
    BudgetExceeded { budget: u64 },
}

impl LlmError {
    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Network { .. }
            | LlmError::Timeout { .. }
            | LlmError::RateLimited { .. }
            | LlmError::Server { .. }
            | LlmError::NoAnswer(_)
            | LlmError::Malformed(_) => true,
            LlmError::Configuration(_) | LlmError::Rejected { .. } | LlmError::BudgetExceeded { .. } => false,
        }
    }
}

/// The provider client `[matcher]` asks for: `none` (or empty) gives `Ok(None)`; `anthropic` and `openai` need
/// `api_key` (and take `base_url` to point elsewhere, `llm_model` to change the default model); `local` needs
/// `base_url` and `llm_model` (`api_key` optional). A `base_url` ending in `/v1` is accepted (the suffix is dropped,
/// since the clients add `/v1/...`). Errors say what to set; they never contain the key.
pub fn provider_from_config(
    config: &crate::config::MatcherConfig,
    options: HttpOptions,
) -> Result<Option<Arc<dyn LlmProvider>>, LlmError> {
    let provider = config.llm_provider.trim().to_ascii_lowercase();
    let api_key = config.api_key.trim();
    let model = config.llm_model.trim();
    let require_key = |name: &str| {
        if api_key.is_empty() {
            Err(LlmError::Configuration(format!(
                "[matcher] llm_provider = \"{name}\" needs [matcher] api_key (or DOWNLOADER2_MATCHER_API_KEY); \
                 set it, or set llm_provider = \"none\""
            )))
        } else {
            Ok(())
        }
    };
    match provider.as_str() {
        "" | "none" => Ok(None),
        "anthropic" => {
            require_key("anthropic")?;
            let base = base_url_or(&config.base_url, anthropic::DEFAULT_BASE_URL)?;
            let model = if model.is_empty() { anthropic::DEFAULT_MODEL } else { model };
            let client = AnthropicProvider::new(LlmHttp::new(options)?, &base, api_key, model);
            Ok(Some(Arc::new(client)))
        }
        "openai" => {
            require_key("openai")?;
            let base = base_url_or(&config.base_url, openai::DEFAULT_BASE_URL)?;
            let model = if model.is_empty() { openai::DEFAULT_MODEL } else { model };
            let client = OpenAiProvider::new(LlmHttp::new(options)?, ChatDialect::OpenAi, &base, api_key, model);
            Ok(Some(Arc::new(client)))
        }
        "local" => {
            if config.base_url.trim().is_empty() {
                return Err(LlmError::Configuration(
                    "[matcher] llm_provider = \"local\" needs [matcher] base_url, the OpenAI-compatible server's \
                     address (e.g. http://127.0.0.1:11434 for Ollama, http://127.0.0.1:8080 for llama-server)"
                        .into(),
                ));
            }
            if model.is_empty() {
                return Err(LlmError::Configuration(
                    "[matcher] llm_provider = \"local\" needs [matcher] llm_model, the model name the server \
                     knows (e.g. the one `ollama list` shows)"
                        .into(),
                ));
            }
            let base = base_url_or(&config.base_url, "")?;
            let client = OpenAiProvider::new(LlmHttp::new(options)?, ChatDialect::Local, &base, api_key, model);
            Ok(Some(Arc::new(client)))
        }
        other => Err(LlmError::Configuration(format!(
            "[matcher] llm_provider = {other:?} is unknown: use none, anthropic, openai or local"
        ))),
    }
}

/// The provider `[matcher]` configures, with the HTTP options it sets (`llm_timeout_secs`): the one LLM set-up the
/// service and `downloader2 match --llm` share. `None` with `llm_provider = "none"`.
pub fn configured_provider(config: &crate::config::MatcherConfig) -> Result<Option<Arc<dyn LlmProvider>>, LlmError> {
    let options = HttpOptions {
        request_timeout: std::time::Duration::from_secs(config.llm_timeout_secs.max(1)),
        ..Default::default()
    };
    provider_from_config(config, options)
}

/// The configured base URL (or `default` when empty), checked to be http(s) with a host, without a trailing `/`
/// or `/v1`, and without credentials, query or fragment.
fn base_url_or(configured: &str, default: &str) -> Result<String, LlmError> {
    let text = if configured.trim().is_empty() { default } else { configured.trim() };
    let bad = |why: &str| LlmError::Configuration(format!("[matcher] base_url {why}: use e.g. http://127.0.0.1:11434"));
    let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be an http:// or https:// address with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not carry credentials, a query or a fragment (put the key in [matcher] api_key)"));
    }
    let mut base = url.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = base.strip_suffix("/v1") {
        base = stripped.to_string();
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MatcherConfig;

    fn config(provider: &str, key: &str, base: &str, model: &str) -> MatcherConfig {
        MatcherConfig {
            llm_provider: provider.into(),
            api_key: key.into(),
            base_url: base.into(),
            llm_model: model.into(),
            ..MatcherConfig::default()
        }
    }

    #[test]
    fn none_gives_no_provider_and_each_provider_its_defaults() {
        assert!(provider_from_config(&config("none", "", "", ""), HttpOptions::default()).unwrap().is_none());
        let anthropic =
            provider_from_config(&config("anthropic", "k-123456", "", ""), HttpOptions::default()).unwrap().unwrap();
        assert_eq!((anthropic.provider(), anthropic.model()), ("anthropic", "claude-haiku-5-5"));
        let openai =
            provider_from_config(&config("OpenAI", "k-123456", "", ""), HttpOptions::default()).unwrap().unwrap();
        assert_eq!((openai.provider(), openai.model()), ("openai", "gpt-6-luna"));
        let local =
            provider_from_config(&config("local", "", "http://127.0.0.1:11434/v1/", "gemma4"), HttpOptions::default())
                .unwrap()
                .unwrap();
        assert_eq!((local.provider(), local.model()), ("local", "gemma4"));
    }

    #[test]
    fn missing_settings_are_configuration_errors_naming_the_fix() {
        let cases = [
            (config("anthropic", "", "", ""), "api_key"),
            (config("openai", " ", "", ""), "api_key"),
            (config("local", "", "", "gemma4"), "base_url"),
            (config("local", "", "http://127.0.0.1:11434", ""), "llm_model"),
            (config("local", "", "ftp://127.0.0.1", "m"), "base_url"),
            (config("openai", "secret-key-42", "http://user:pw@127.0.0.1", ""), "base_url"),
            (config("gemini", "k", "", ""), "unknown"),
        ];
        for (config, needle) in cases {
            let error = provider_from_config(&config, HttpOptions::default()).map(|_| ()).unwrap_err();
            assert!(matches!(error, LlmError::Configuration(_)), "{error}");
            assert!(!error.is_retryable());
            let text = error.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("secret-key-42"), "{text}");
        }
    }

    #[test]
    fn the_answer_schema_parses_and_requires_candidates() {
        let schema = answer_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["candidates"]));
    }
}
