//! The optional LLM second opinion over the deterministic matcher (`[matcher] llm_provider` = `none` | `anthropic`
//! | `openai` | `local`). This file holds the boundary every part shares: the request and reply of one structured
//! completion, the [`LlmProvider`] trait the provider clients implement, and the one error enum [`LlmError`].
//!
//! Parts: `anthropic.rs` and `openai.rs` (thin reqwest clients for the Messages and Chat Completions endpoints;
//! `local` servers speak the OpenAI dialect), `http.rs` (timeouts, retries with backoff on 429/5xx/529 honouring
//! `retry-after`), `prompt.rs` (the prompt: the ticket plus the top candidates, indexer text fenced, capped and
//! escaped), `answer.rs` (parsing and validating an answer against [`answer_schema`], dropping unknown keys),
//! `combine.rs` (the guard rails: how the LLM's verdicts may change the deterministic outcome).
//!
//! Nothing here may ever block a ticket: every failure is an `LlmError`, and the caller falls back to the
//! deterministic result.

pub mod answer;
pub mod combine;
pub mod prompt;

use std::sync::LazyLock;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_schema_parses_and_requires_candidates() {
        let schema = answer_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["candidates"]));
    }
}
