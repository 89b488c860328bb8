//! The Chat Completions client (`POST {base}/v1/chat/completions`) for two dialects:
//! - `openai`: `authorization: Bearer`, `response_format` json_schema strict, `max_completion_tokens`,
//!   `reasoning_effort: "low"`, `store: false`, no sampling parameters (GPT-6 refuses them with reasoning on).
//! - `local` (Ollama, llama.cpp, vLLM, LM Studio): the same endpoint at the configured base URL, auth only when an
//!   API key is set, `max_tokens`, `temperature: 0`, a fixed `seed`, `stream: false`.
//!
//! Only `finish_reason == "stop"` with `message.refusal == null` is an answer; `content` is a JSON string. The
//! returned `model` is never compared with the requested one. The key never appears in an error.

use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde::Deserialize;
use serde_json::json;

use super::http::{secret_header, LlmHttp};
use super::{LlmError, LlmProvider, LlmReply, LlmRequest, TokenUsage, ANSWER_SCHEMA_NAME};

/// Where `openai` requests go unless `[matcher] base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";
/// The `openai` model used when `[matcher] llm_model` is empty.
pub const DEFAULT_MODEL: &str = "gpt-6-luna";
/// The seed sent to local servers (same prompt, same answer where the server supports it).
pub const LOCAL_SEED: u64 = 7;

/// Which server family speaks the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatDialect {
    /// api.openai.com.
    OpenAi,
    /// An OpenAI-compatible server on the user's machine or network.
    Local,
}

/// A Chat Completions client. Its `Debug` output leaves the key out.
pub struct OpenAiProvider {
    http: LlmHttp,
    dialect: ChatDialect,
    /// `{base}/v1/chat/completions`.
    url: String,
    /// Empty: no `authorization` header (local only).
    api_key: String,
    model: String,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("dialect", &self.dialect)
            .field("url", &self.url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A client for `base_url` (without `/v1`). `api_key` may be empty for [`ChatDialect::Local`].
    pub fn new(http: LlmHttp, dialect: ChatDialect, base_url: &str, api_key: &str, model: &str) -> Self {
        OpenAiProvider {
            http,
            dialect,
            url: format!("{}/v1/chat/completions", base_url.trim_end_matches('/')),
            api_key: api_key.to_string(),
            model: model.to_string(),
        }
    }

    fn body(&self, request: &LlmRequest) -> serde_json::Value {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": ANSWER_SCHEMA_NAME, "strict": true, "schema": request.schema},
            },
        });
        match self.dialect {
            ChatDialect::OpenAi => {
                body["reasoning_effort"] = json!("low");
                body["max_completion_tokens"] = json!(request.max_output_tokens);
                body["store"] = json!(false);
            }
            ChatDialect::Local => {
                body["temperature"] = json!(0);
                body["seed"] = json!(LOCAL_SEED);
                body["max_tokens"] = json!(request.max_output_tokens);
                body["stream"] = json!(false);
            }
        }
        body
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiProvider {
    fn provider(&self) -> &'static str {
        match self.dialect {
            ChatDialect::OpenAi => "openai",
            ChatDialect::Local => "local",
        }
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmReply, LlmError> {
        let mut headers = HeaderMap::new();
        if !self.api_key.is_empty() {
            headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {}", self.api_key))?);
        }
        let secret = (!self.api_key.is_empty()).then_some(self.api_key.as_str());
        let reply = self.http.post_json(&self.url, &headers, &self.body(request), secret).await?;
        parse_reply(&reply)
    }
}

#[derive(Debug, Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

fn parse_reply(body: &serde_json::Value) -> Result<LlmReply, LlmError> {
    let completion = ChatCompletion::deserialize(body).map_err(|e| {
        LlmError::Malformed(format!("the Chat Completions reply does not have the expected shape: {e}"))
    })?;
    let choice = completion.choices.first().ok_or_else(|| LlmError::NoAnswer("the reply has no choices".into()))?;
    let message = choice.message.as_ref().ok_or_else(|| LlmError::NoAnswer("the choice has no message".into()))?;
    if let Some(refusal) = &message.refusal {
        let excerpt: String = refusal.chars().take(200).collect();
        return Err(LlmError::NoAnswer(format!("the model refused: {excerpt}")));
    }
    match choice.finish_reason.as_deref() {
        Some("stop") => {}
        Some("length") => return Err(LlmError::NoAnswer("the answer was cut at the token limit".into())),
        Some("content_filter") => return Err(LlmError::NoAnswer("the provider's content filter stopped it".into())),
        other => return Err(LlmError::NoAnswer(format!("finish_reason {other:?} where \"stop\" was expected"))),
    }
    let content = message.content.as_deref().ok_or_else(|| LlmError::NoAnswer("the message has no content".into()))?;
    let answer: serde_json::Value = serde_json::from_str(content)
        .map_err(|e| LlmError::Malformed(format!("the message content is not JSON: {e}")))?;
    if !answer.is_object() {
        return Err(LlmError::Malformed("the answer is JSON but not an object".into()));
    }
    let usage = completion.usage.unwrap_or_default();
    Ok(LlmReply {
        answer,
        usage: TokenUsage { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens },
        model: completion.model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(content: &str, finish: &str, refusal: serde_json::Value) -> serde_json::Value {
        json!({
            "model": "gpt-6-luna",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
        })
    }

    #[test]
    fn a_stopped_answer_is_parsed_with_its_usage() {
        let reply = parse_reply(&completion("{\"candidates\":[]}", "stop", serde_json::Value::Null)).unwrap();
        assert_eq!(reply.answer, json!({"candidates": []}));
        assert_eq!(reply.usage, TokenUsage { input_tokens: 20, output_tokens: 4 });
        assert_eq!(reply.model, "gpt-6-luna");
    }

    #[test]
    fn truncation_refusal_and_filters_give_no_answer() {
        for (finish, refusal) in [
            ("length", serde_json::Value::Null),
            ("content_filter", serde_json::Value::Null),
            ("stop", json!("I can't help with that.")),
            ("tool_calls", serde_json::Value::Null),
        ] {
            let result = parse_reply(&completion("{}", finish, refusal));
            assert!(matches!(result, Err(LlmError::NoAnswer(_))), "{finish}");
        }
        assert!(matches!(parse_reply(&json!({"choices": []})), Err(LlmError::NoAnswer(_))));
    }

    #[test]
    fn content_that_is_not_a_json_object_is_malformed() {
        for content in ["Sure! Here is the JSON", "[1, 2]", "{\"candidates\": ["] {
            let result = parse_reply(&completion(content, "stop", serde_json::Value::Null));
            assert!(matches!(result, Err(LlmError::Malformed(_))), "{content}");
        }
    }
}
