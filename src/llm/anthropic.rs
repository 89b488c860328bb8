//! The Anthropic Messages API client (`POST {base}/v1/messages`): one structured completion per call.
//!
//! Shapes:
//! - Primary: `anthropic-version: 2026-10-21`, the answer constrained by `output_config.format` (json_schema),
//!   `thinking: {"type": "disabled"}`, no sampling parameters (that version removes them). The answer is the text
//!   of the content block of type `text` (a `thinking` block may precede it); only `stop_reason == "end_turn"` is
//!   accepted.
//! - Fallback (older API versions, gateways or models without `output_config`): forced tool use,
//!   `anthropic-version: 2023-06-01`, `tools` with the schema as `input_schema`, `tool_choice: {"type": "tool"}`,
//!   thinking disabled (a forced tool is refused while thinking is on) and still no sampling parameters (Claude 4.7+
//!   models refuse non-default ones). The answer is the `input` of the `tool_use` block; only
//!   `stop_reason == "tool_use"` is accepted.
//!
//! When the fallback is used: the first request goes in the primary shape. If the server answers 400 with an error
//! that names `output_config` or `anthropic-version` (it does not know the structured-output shape or the
//! version), the same request is sent at once in the tool shape, and the client remembers it: every later request
//! goes straight to the tool shape. Any other error is returned as is.
//!
//! `max_tokens`, `refusal` and `model_context_window_exceeded` mean no usable answer ([`LlmError::NoAnswer`]).
//! The returned `model` is never compared with the requested one. The API key travels in `x-api-key` only and
//! never appears in an error.

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::http::{secret_header, LlmHttp};
use super::{LlmError, LlmProvider, LlmReply, LlmRequest, TokenUsage, ANSWER_SCHEMA_NAME};

/// Where requests go unless `[matcher] base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model used when `[matcher] llm_model` is empty.
pub const DEFAULT_MODEL: &str = "claude-haiku-5-5";
/// The API version of the structured-output shape.
pub const STRUCTURED_API_VERSION: &str = "2026-10-21";
/// The API version of the forced-tool fallback.
pub const TOOL_API_VERSION: &str = "2023-06-01";

/// A client of the Anthropic Messages API. Its `Debug` output leaves the key out.
pub struct AnthropicProvider {
    http: LlmHttp,
    /// `{base}/v1/messages`.
    url: String,
    api_key: String,
    model: String,
    /// Set once the server refused the structured shape: every later request uses forced tool use.
    use_tool_shape: AtomicBool,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("use_tool_shape", &self.use_tool_shape)
            .finish_non_exhaustive()
    }
}

/// Which request shape a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Structured,
    Tool,
}

impl AnthropicProvider {
    /// A client for `base_url` (without `/v1`), the given key and model.
    pub fn new(http: LlmHttp, base_url: &str, api_key: &str, model: &str) -> Self {
        AnthropicProvider {
            http,
            url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
            model: model.to_string(),
            use_tool_shape: AtomicBool::new(false),
        }
    }

    /// Whether the client has fallen back to forced tool use.
    pub fn uses_tool_fallback(&self) -> bool {
        self.use_tool_shape.load(Ordering::Relaxed)
    }

    fn headers(&self, shape: Shape) -> Result<HeaderMap, LlmError> {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), secret_header(&self.api_key)?);
        let version = match shape {
            Shape::Structured => STRUCTURED_API_VERSION,
            Shape::Tool => TOOL_API_VERSION,
        };
        headers.insert(HeaderName::from_static("anthropic-version"), HeaderValue::from_static(version));
        Ok(headers)
    }

    fn body(&self, request: &LlmRequest, shape: Shape) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": request.max_output_tokens,
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
            "thinking": {"type": "disabled"},
        });
        match shape {
            Shape::Structured => {
                body["output_config"] = json!({"format": {"type": "json_schema", "schema": request.schema}});
            }
            Shape::Tool => {
                body["tools"] = json!([{
                    "name": ANSWER_SCHEMA_NAME,
                    "description": "Record the match verdict, score and track mapping for every candidate key. \
                                    Call exactly once.",
                    "input_schema": request.schema,
                    "strict": true,
                }]);
                body["tool_choice"] =
                    json!({"type": "tool", "name": ANSWER_SCHEMA_NAME, "disable_parallel_tool_use": true});
            }
        }
        body
    }

    async fn send(&self, request: &LlmRequest, shape: Shape) -> Result<LlmReply, LlmError> {
        let headers = self.headers(shape)?;
        let body = self.body(request, shape);
        let reply = self.http.post_json(&self.url, &headers, &body, Some(&self.api_key)).await?;
        parse_reply(&reply, shape)
    }
}

/// A 400 saying the server does not know the structured-output shape or its API version.
fn refuses_structured_shape(error: &LlmError) -> bool {
    match error {
        LlmError::Rejected { status: 400, message, .. } => {
            message.contains("output_config") || message.contains("anthropic-version")
        }
        _ => false,
    }
}

#[async_trait::async_trait]
impl LlmProvider for AnthropicProvider {
    fn provider(&self) -> &'static str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        if self.uses_tool_fallback() {
            return self.send(request, Shape::Tool).await;
        }
        match self.send(request, Shape::Structured).await {
            Err(error) if refuses_structured_shape(&error) => {
                tracing::info!(url = %self.url, model = %self.model, error = %error,
                    "Anthropic refused output_config: falling back to forced tool use from now on");
                self.use_tool_shape.store(true, Ordering::Relaxed);
                self.send(request, Shape::Tool).await
            }
            other => other,
        }
    }
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_details: Option<serde_json::Value>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: u64,
}

fn parse_reply(body: &serde_json::Value, shape: Shape) -> Result<LlmReply, LlmError> {
    let response = MessagesResponse::deserialize(body)
        .map_err(|e| LlmError::Malformed(format!("the Messages API reply does not have the expected shape: {e}")))?;
    let expected = match shape {
        Shape::Structured => "end_turn",
        Shape::Tool => "tool_use",
    };
    let stop_reason = response.stop_reason.as_deref().unwrap_or("(none)");
    if stop_reason != expected {
        let why = match stop_reason {
            "max_tokens" => "the answer was cut at max_tokens".to_string(),
            "refusal" => {
                let category = response
                    .stop_details
                    .as_ref()
                    .and_then(|d| d.get("category"))
                    .and_then(|c| c.as_str())
                    .unwrap_or("unspecified");
                format!("the model refused (category {category})")
            }
            "model_context_window_exceeded" => "the prompt exceeds the model's context window".to_string(),
            other => format!("stop_reason {other:?} where {expected:?} was expected"),
        };
        return Err(LlmError::NoAnswer(why));
    }
    let answer = match shape {
        Shape::Structured => {
            let text = response
                .content
                .iter()
                .find(|block| block.kind == "text")
                .and_then(|block| block.text.as_deref())
                .ok_or_else(|| LlmError::NoAnswer("the reply has no text block".into()))?;
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| LlmError::Malformed(format!("the text block is not JSON: {e}")))?
        }
        Shape::Tool => response
            .content
            .iter()
            .find(|block| block.kind == "tool_use" && block.name.as_deref() == Some(ANSWER_SCHEMA_NAME))
            .and_then(|block| block.input.clone())
            .ok_or_else(|| LlmError::NoAnswer(format!("the reply has no tool_use block for {ANSWER_SCHEMA_NAME}")))?,
    };
    if !answer.is_object() {
        return Err(LlmError::Malformed("the answer is JSON but not an object".into()));
    }
    let usage = response.usage.unwrap_or_default();
    let input_tokens = usage
        .input_tokens
        .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0))
        .saturating_add(usage.cache_read_input_tokens.unwrap_or(0));
    Ok(LlmReply {
        answer,
        usage: TokenUsage { input_tokens, output_tokens: usage.output_tokens },
        model: response.model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thinking_block_before_the_text_is_skipped() {
        let body = json!({
            "model": "claude-haiku-5-5",
            "content": [{"type": "thinking", "thinking": "", "signature": "x"}, {"type": "text", "text": "{\"candidates\":[]}"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 3}
        });
        let reply = parse_reply(&body, Shape::Structured).unwrap();
        assert_eq!(reply.answer, json!({"candidates": []}));
        assert_eq!(reply.usage, TokenUsage { input_tokens: 15, output_tokens: 3 });
    }

    #[test]
    fn stop_reasons_other_than_the_expected_one_give_no_answer() {
        for reason in ["max_tokens", "refusal", "model_context_window_exceeded", "pause_turn"] {
            let body = json!({"content": [{"type": "text", "text": "{}"}], "stop_reason": reason});
            assert!(matches!(parse_reply(&body, Shape::Structured), Err(LlmError::NoAnswer(_))), "{reason}");
        }
        let tool = json!({"content": [{"type": "text", "text": "{}"}], "stop_reason": "end_turn"});
        assert!(matches!(parse_reply(&tool, Shape::Tool), Err(LlmError::NoAnswer(_))));
    }

    #[test]
    fn non_object_answers_and_odd_shapes_are_malformed() {
        let array = json!({"content": [{"type": "text", "text": "[1]"}], "stop_reason": "end_turn"});
        assert!(matches!(parse_reply(&array, Shape::Structured), Err(LlmError::Malformed(_))));
        let odd = json!({"content": "text", "stop_reason": "end_turn"});
        assert!(matches!(parse_reply(&odd, Shape::Structured), Err(LlmError::Malformed(_))));
    }
}
