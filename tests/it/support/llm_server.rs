//! An LLM API test server on 127.0.0.1:0 speaking exactly the shapes in `shared/reference/llm/`: Anthropic's
//! Messages API (`POST /v1/messages`, structured output or forced tool use), OpenAI's Chat Completions and a local
//! OpenAI-compatible server (`POST /v1/chat/completions`). It VALIDATES every request as the reference README's
//! "What a test server should check" says and answers 400 (401, 404) in the provider's own error envelope when a
//! check fails; such requests are recorded with the reason, so a test can assert none came from the client.
//! Valid requests get the next scripted [`Reply`] (an empty script answers 500 "script exhausted").
//!
//! It never talks to anything but its own loopback socket and never decides what a client should do.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The API key the server accepts.
pub const API_KEY: &str = "sk-test-llm-7Hq2Zr9Kx4Lw";

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Anthropic,
    OpenAi,
    /// An OpenAI-compatible local server (Ollama `/v1` envelopes; no auth unless [`LlmServer::require_key`]).
    Local,
}

/// One scripted answer to a valid request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this answer, in the shape the request asked for (Anthropic: text block or tool_use block).
    Answer(Value),
    /// 200; Anthropic: a `thinking` block before the text block; local: a `message.reasoning` string beside the
    /// content; OpenAI: same as `Answer`.
    AnswerAfterThinking(Value),
    /// 429 rate limit with `retry-after` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// 429 that is an account limit: OpenAI `insufficient_quota`, Anthropic `enforced_spend_limit_reached`.
    QuotaExhausted,
    /// Anthropic 529 `overloaded_error`; OpenAI/local 503.
    Overloaded,
    /// 500 (local: Ollama's native plain-string error envelope).
    ServerError,
    /// Waits, then answers.
    Slow { delay: Duration, answer: Value },
    /// 200 whose answer text is this (not JSON).
    MalformedContent(String),
    /// 200 cut at the token limit (`max_tokens` / `length`), truncated JSON.
    Truncated,
    /// 200 refusal (`stop_reason: refusal` / `message.refusal`).
    Refusal,
    /// Any status with this JSON body.
    Raw { status: u16, body: Value },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// When the server received it (its own clock).
    pub at: Instant,
    pub path: String,
    /// Header names lower-case.
    pub headers: HashMap<String, String>,
    /// The body (Null when not JSON).
    pub body: Value,
    /// Why the server refused it, if it did.
    pub rejection: Option<String>,
}

struct Shared {
    flavor: Flavor,
    model: String,
    require_key: bool,
    /// Anthropic only: answer 400 to every `output_config` request, as an API version or gateway that does not
    /// know structured outputs.
    refuse_output_config: bool,
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A running server; stops when dropped.
pub struct LlmServer {
    /// `http://127.0.0.1:PORT` (the clients add `/v1/...`).
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    pub flavor: Flavor,
    /// The only model it serves (others get 404).
    pub model: String,
    /// Local only: require `authorization: Bearer API_KEY` (Anthropic and OpenAI always require the key).
    pub require_key: bool,
    pub refuse_output_config: bool,
}

impl ServerSetup {
    /// The flavor with its default model (`claude-haiku-5-5`, `gpt-6-luna`, `gemma4`).
    pub fn new(flavor: Flavor) -> Self {
        let model = match flavor {
            Flavor::Anthropic => "claude-haiku-5-5",
            Flavor::OpenAi => "gpt-6-luna",
            Flavor::Local => "gemma4",
        };
        ServerSetup { flavor, model: model.into(), require_key: false, refuse_output_config: false }
    }
}

impl LlmServer {
    /// Starts a server with the flavor's defaults.
    pub async fn start(flavor: Flavor) -> LlmServer {
        LlmServer::start_with(ServerSetup::new(flavor)).await
    }

    /// Starts a server as `setup` says.
    pub async fn start_with(setup: ServerSetup) -> LlmServer {
        let shared = Arc::new(Shared {
            flavor: setup.flavor,
            model: setup.model,
            require_key: setup.require_key,
            refuse_output_config: setup.refuse_output_config,
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LlmServer { base_url: format!("http://{addr}"), shared, task }
    }

    /// The API it speaks.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// Queues replies, answered in order to valid requests.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The reasons of every request the server refused.
    pub fn rejections(&self) -> Vec<String> {
        self.requests().into_iter().filter_map(|r| r.rejection).collect()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let header_map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let verdict = match shared.flavor {
        Flavor::Anthropic => validate_anthropic(&shared, &method, uri.path(), &header_map, parsed.as_ref()),
        Flavor::OpenAi | Flavor::Local => validate_chat(&shared, &method, uri.path(), &header_map, parsed.as_ref()),
    };
    let rejection = verdict.as_ref().err().map(|r| r.message.clone());
    shared.requests.lock().unwrap().push(RecordedRequest {
        at,
        path: uri.path().to_string(),
        headers: header_map,
        body: parsed.clone().unwrap_or(Value::Null),
        rejection,
    });
    if let Err(refusal) = verdict {
        return error_response(shared.flavor, refusal.status, refusal.kind, &refusal.message, None);
    }
    let request = parsed.unwrap_or(Value::Null);
    let next = shared.script.lock().unwrap().pop_front();
    let Some(reply) = next else {
        return error_response(shared.flavor, 500, "api_error", "test server script exhausted", None);
    };
    match shared.flavor {
        Flavor::Anthropic => anthropic_reply(reply, &request).await,
        Flavor::OpenAi | Flavor::Local => chat_reply(shared.flavor, reply, &request).await,
    }
}

struct Refusal {
    status: u16,
    kind: &'static str,
    message: String,
}

fn refuse(status: u16, kind: &'static str, message: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal { status, kind, message: message.into() })
}

fn is_json_content_type(headers: &HashMap<String, String>) -> bool {
    headers.get("content-type").is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"))
}

/// Claude 4.7+ models (Haiku 5.5 included) refuse non-default sampling parameters.
fn anthropic_model_refuses_sampling(model: &str) -> bool {
    ["claude-haiku-5", "claude-sonnet-5", "claude-opus-5"].iter().any(|p| model.starts_with(p)) || model.contains("4-7")
}

/// Models that think unless told `thinking: {"type": "disabled"}`.
fn anthropic_model_thinks_by_default(model: &str) -> bool {
    model.starts_with("claude-haiku-5")
}

fn validate_anthropic(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HashMap<String, String>,
    body: Option<&Value>,
) -> Result<(), Refusal> {
    if method != Method::POST || path != "/v1/messages" {
        return refuse(404, "not_found_error", format!("{method} {path} does not exist"));
    }
    let bearer = format!("Bearer {API_KEY}");
    let key_ok = headers.get("x-api-key").map(String::as_str) == Some(API_KEY)
        || headers.get("authorization").map(String::as_str) == Some(bearer.as_str());
    if !key_ok {
        return refuse(401, "authentication_error", "invalid x-api-key");
    }
    let version = headers.get("anthropic-version").map(String::as_str).unwrap_or("");
    if version != "2023-06-01" && version != "2026-10-21" {
        return refuse(400, "invalid_request_error", format!("anthropic-version: {version:?} is not a valid version"));
    }
    if !is_json_content_type(headers) {
        return refuse(400, "invalid_request_error", "content-type must be application/json");
    }
    let Some(body) = body.filter(|b| b.is_object()) else {
        return refuse(400, "invalid_request_error", "the body is not a JSON object");
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return refuse(400, "invalid_request_error", "model: Field required");
    };
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
    if max_tokens == 0 {
        return refuse(400, "invalid_request_error", "max_tokens: Field required");
    }
    let messages = body.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
    if messages == 0 {
        return refuse(400, "invalid_request_error", "messages: Field required");
    }
    if model != shared.model {
        return refuse(404, "not_found_error", format!("model: {model}"));
    }
    let structured = body.pointer("/output_config/format/type").and_then(Value::as_str) == Some("json_schema");
    if structured && !body.pointer("/output_config/format/schema").is_some_and(Value::is_object) {
        return refuse(400, "invalid_request_error", "output_config.format.schema: Field required");
    }
    let tool_choice = body.pointer("/tool_choice/type").and_then(Value::as_str);
    let tools = body.get("tools").and_then(Value::as_array);
    let tool_shape = tool_choice == Some("tool")
        && tools.is_some_and(|tools| {
            let wanted = body.pointer("/tool_choice/name").and_then(Value::as_str);
            tools.iter().all(|t| t.get("input_schema").is_some_and(Value::is_object))
                && tools.iter().any(|t| t.get("name").and_then(Value::as_str) == wanted)
        });
    if !structured && !tool_shape {
        return refuse(
            400,
            "invalid_request_error",
            "the test server needs output_config.format json_schema or tools with a forced tool_choice",
        );
    }
    let sampling: Vec<&str> =
        ["temperature", "top_p", "top_k"].into_iter().filter(|k| body.get(*k).is_some()).collect();
    if version == "2026-10-21" && !sampling.is_empty() {
        return refuse(400, "invalid_request_error", format!("{}: not supported in 2026-10-21", sampling.join(", ")));
    }
    if anthropic_model_refuses_sampling(model) {
        let temperature_set = body.get("temperature").is_some_and(|t| t.as_f64() != Some(1.0));
        if temperature_set || body.get("top_p").is_some() || body.get("top_k").is_some() {
            return refuse(400, "invalid_request_error", format!("sampling parameters are not supported on {model}"));
        }
    }
    let thinking = body.pointer("/thinking/type").and_then(Value::as_str);
    let thinking_on = match thinking {
        Some("enabled") | Some("adaptive") => true,
        Some(_) => false,
        None => anthropic_model_thinks_by_default(model),
    };
    if thinking_on && matches!(tool_choice, Some("tool") | Some("any")) {
        return refuse(400, "invalid_request_error", "Thinking may not be enabled when tool_choice forces tool use.");
    }
    if structured && shared.refuse_output_config {
        return refuse(400, "invalid_request_error", "output_config: Extra inputs are not permitted");
    }
    Ok(())
}

fn validate_chat(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HashMap<String, String>,
    body: Option<&Value>,
) -> Result<(), Refusal> {
    if method != Method::POST || path != "/v1/chat/completions" {
        return refuse(404, "not_found_error", format!("{method} {path} does not exist"));
    }
    let needs_key = shared.flavor == Flavor::OpenAi || shared.require_key;
    if needs_key && headers.get("authorization").map(String::as_str) != Some(format!("Bearer {API_KEY}").as_str()) {
        return refuse(401, "invalid_request_error", "Incorrect API key provided: sk-test-****.");
    }
    if !is_json_content_type(headers) {
        return refuse(400, "invalid_request_error", "content-type must be application/json");
    }
    let Some(body) = body.filter(|b| b.is_object()) else {
        return refuse(400, "invalid_request_error", "We could not parse the JSON body of your request.");
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return refuse(400, "invalid_request_error", "you must provide a model parameter");
    };
    if model != shared.model {
        let message = match shared.flavor {
            Flavor::Local => format!("model \"{model}\" not found, try pulling it first"),
            _ => format!("The model `{model}` does not exist or you do not have access to it."),
        };
        return refuse(404, "not_found_error", message);
    }
    let messages = body.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
    if messages == 0 {
        return refuse(400, "invalid_request_error", "messages: must be a non-empty array");
    }
    if body.pointer("/response_format/type").and_then(Value::as_str) != Some("json_schema") {
        return refuse(400, "invalid_request_error", "response_format.type must be json_schema");
    }
    if body.pointer("/response_format/json_schema/strict") != Some(&Value::Bool(true)) {
        return refuse(400, "invalid_request_error", "response_format.json_schema.strict must be true");
    }
    let name_ok = body.pointer("/response_format/json_schema/name").and_then(Value::as_str).is_some_and(|n| {
        !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !name_ok {
        return refuse(400, "invalid_request_error", "response_format.json_schema.name is missing or invalid");
    }
    if !body.pointer("/response_format/json_schema/schema").is_some_and(Value::is_object) {
        return refuse(400, "invalid_request_error", "response_format.json_schema.schema must be an object");
    }
    if shared.flavor == Flavor::OpenAi && model.starts_with("gpt-6") {
        let effort = body.get("reasoning_effort").and_then(Value::as_str).unwrap_or("medium");
        for key in ["temperature", "top_p"] {
            if body.get(key).is_some() && effort != "none" {
                return refuse(400, "invalid_request_error", format!("Unsupported parameter: '{key}' with reasoning"));
            }
        }
        if body.get("max_tokens").is_some() {
            return refuse(
                400,
                "invalid_request_error",
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' \
                 instead.",
            );
        }
    }
    Ok(())
}

fn error_response(flavor: Flavor, status: u16, kind: &str, message: &str, retry_after: Option<u64>) -> Response {
    let body = match flavor {
        Flavor::Anthropic => json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_011CVtestserver0000000000",
        }),
        Flavor::OpenAi | Flavor::Local => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
    };
    json_response(status, body, retry_after)
}

fn json_response(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", "application/json")], body.to_string()).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

const TRUNCATED_TEXT: &str =
    r#"{"candidates":[{"key":"C1","verdict":"exact","score":0.97,"track_mapping":[{"track_id":"#;

async fn anthropic_reply(reply: Reply, request: &Value) -> Response {
    let model = request.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let tool_name = request.pointer("/tool_choice/name").and_then(Value::as_str).map(str::to_string);
    let usage = json!({"input_tokens": 2718, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 561, "service_tier": "standard"});
    let message = |content: Value, stop_reason: &str| {
        json!({"id": "msg_01Q7rLcTzK9vVbX3mH2nWd5E", "type": "message", "role": "assistant", "model": model,
               "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": usage})
    };
    let answer_content = |answer: &Value| match &tool_name {
        Some(name) => (
            json!([{"type": "tool_use", "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "name": name, "input": answer}]),
            "tool_use",
        ),
        None => (json!([{"type": "text", "text": answer.to_string()}]), "end_turn"),
    };
    match reply {
        Reply::Answer(answer) => {
            let (content, stop) = answer_content(&answer);
            json_response(200, message(content, stop), None)
        }
        Reply::AnswerAfterThinking(answer) => {
            let (content, stop) = answer_content(&answer);
            let mut blocks = vec![json!({"type": "thinking", "thinking": "", "signature": "EuYBCkgIDRABGAIqQJ3n"})];
            blocks.extend(content.as_array().cloned().unwrap_or_default());
            json_response(200, message(Value::Array(blocks), stop), None)
        }
        Reply::Slow { delay, answer } => {
            tokio::time::sleep(delay).await;
            let (content, stop) = answer_content(&answer);
            json_response(200, message(content, stop), None)
        }
        Reply::RateLimited { retry_after_secs } => error_response(
            Flavor::Anthropic,
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50,000 input tokens per minute.",
            Some(retry_after_secs),
        ),
        Reply::QuotaExhausted => json_response(
            429,
            json!({"type": "error", "error": {"type": "rate_limit_error",
                   "message": "You have reached your specified workspace API usage limits.",
                   "details": {"error_code": "enforced_spend_limit_reached"}},
                   "request_id": "req_011CVtestserver0000000001"}),
            None,
        ),
        Reply::Overloaded => error_response(Flavor::Anthropic, 529, "overloaded_error", "Overloaded", None),
        Reply::ServerError => error_response(Flavor::Anthropic, 500, "api_error", "Internal server error", None),
        Reply::MalformedContent(text) => {
            json_response(200, message(json!([{"type": "text", "text": text}]), "end_turn"), None)
        }
        Reply::Truncated => {
            json_response(200, message(json!([{"type": "text", "text": TRUNCATED_TEXT}]), "max_tokens"), None)
        }
        Reply::Refusal => {
            let mut body = message(json!([]), "refusal");
            body["stop_details"] = json!({"type": "refusal", "category": "cyber",
                "explanation": "This request was declined because it could enable cyber harm."});
            json_response(200, body, None)
        }
        Reply::Raw { status, body } => json_response(status, body, None),
    }
}

async fn chat_reply(flavor: Flavor, reply: Reply, request: &Value) -> Response {
    let model = request.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let completion = |content: Value, refusal: Value, finish: &str, reasoning: Option<&str>| {
        let mut message = json!({"role": "assistant", "content": content});
        if flavor == Flavor::OpenAi {
            message["refusal"] = refusal;
            message["annotations"] = json!([]);
        } else if !refusal.is_null() {
            message["refusal"] = refusal;
        }
        if let Some(reasoning) = reasoning {
            message["reasoning"] = json!(reasoning);
        }
        let fingerprint = if flavor == Flavor::Local { json!("fp_ollama") } else { Value::Null };
        json!({"id": "chatcmpl-CfB8nXq1L2mZr7Yd0tUa9KsVwJ3pH", "object": "chat.completion", "created": 1795428907,
               "model": model, "system_fingerprint": fingerprint,
               "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
               "usage": {"prompt_tokens": 2395, "completion_tokens": 561, "total_tokens": 2956}})
    };
    match reply {
        Reply::Answer(answer) => {
            json_response(200, completion(json!(answer.to_string()), Value::Null, "stop", None), None)
        }
        Reply::AnswerAfterThinking(answer) => {
            let reasoning = (flavor == Flavor::Local).then_some("The C1 file list matches every track.");
            json_response(200, completion(json!(answer.to_string()), Value::Null, "stop", reasoning), None)
        }
        Reply::Slow { delay, answer } => {
            tokio::time::sleep(delay).await;
            json_response(200, completion(json!(answer.to_string()), Value::Null, "stop", None), None)
        }
        Reply::RateLimited { retry_after_secs } => json_response(
            429,
            json!({"error": {"message": "Rate limit reached for gpt-6-luna on tokens per min (TPM).",
                   "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}),
            Some(retry_after_secs),
        ),
        Reply::QuotaExhausted => json_response(
            429,
            json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                   "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            None,
        ),
        Reply::Overloaded => json_response(
            503,
            json!({"error": {"message": "The engine is currently overloaded, please try again later",
                   "type": "server_error", "param": null, "code": null}}),
            None,
        ),
        Reply::ServerError => match flavor {
            Flavor::Local => json_response(500, json!({"error": "the model failed to generate a response"}), None),
            _ => json_response(
                500,
                json!({"error": {"message": "The server had an error while processing your request.",
                       "type": "server_error", "param": null, "code": null}}),
                None,
            ),
        },
        Reply::MalformedContent(text) => json_response(200, completion(json!(text), Value::Null, "stop", None), None),
        Reply::Truncated => json_response(200, completion(json!(TRUNCATED_TEXT), Value::Null, "length", None), None),
        Reply::Refusal => json_response(
            200,
            completion(Value::Null, json!("I'm sorry, but I can't help with that request."), "stop", None),
            None,
        ),
        Reply::Raw { status, body } => json_response(status, body, None),
    }
}
