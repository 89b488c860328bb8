//! The LLM provider clients (`llm`) against wire-level test servers on 127.0.0.1 that validate every
//! request like the real APIs: parsing of each provider's answer shapes, retries with `retry-after`, the error
//! mapping (timeouts, malformed answers, truncation, refusals, account limits), and that the API key never shows.

use std::sync::Arc;
use std::time::Duration;

use downloader2::config::MatcherConfig;
use downloader2::llm::{
    answer_schema, provider_from_config, AnthropicProvider, ChatDialect, HttpOptions, LlmError, LlmHttp, LlmProvider,
    LlmRequest, OpenAiProvider, TokenUsage,
};
use serde_json::{json, Value};

use crate::support::llm_server::{Flavor, LlmServer, Reply, ServerSetup, API_KEY};

/// Short waits so retries do not slow the suite; the protocol rules stay the same.
fn fast_options() -> HttpOptions {
    HttpOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(30),
    }
}

fn config_for(server: &LlmServer, provider: &str, model: &str, key: &str) -> MatcherConfig {
    MatcherConfig {
        llm_provider: provider.into(),
        llm_model: model.into(),
        api_key: key.into(),
        base_url: server.base_url.clone(),
        ..MatcherConfig::default()
    }
}

fn provider_with(server: &LlmServer, options: HttpOptions) -> Arc<dyn LlmProvider> {
    let config = match server.flavor() {
        Flavor::Anthropic => config_for(server, "anthropic", "", API_KEY),
        Flavor::OpenAi => config_for(server, "openai", "", API_KEY),
        Flavor::Local => config_for(server, "local", "gemma4", ""),
    };
    provider_from_config(&config, options).unwrap().expect("a provider")
}

fn provider(server: &LlmServer) -> Arc<dyn LlmProvider> {
    provider_with(server, fast_options())
}

fn request() -> LlmRequest {
    LlmRequest {
        system: "You match torrent releases to one album.".into(),
        user: "<ticket>{}</ticket>\n<candidates>[]</candidates>".into(),
        schema: answer_schema().clone(),
        max_output_tokens: 2048,
    }
}

fn answer() -> Value {
    json!({"candidates": [
        {"key": "C1", "verdict": "exact", "score": 0.97,
         "track_mapping": [{"track_id": "t1", "file": "F01"}, {"track_id": "t2", "file": null}],
         "reasoning": "Both tracks present."},
        {"key": "C2", "verdict": "wrong_release", "score": 0.03, "track_mapping": [], "reasoning": "A live album."}
    ]})
}

fn assert_no_rejections(server: &LlmServer) {
    assert_eq!(server.rejections(), Vec::<String>::new(), "the client sent a request the API would refuse");
}

#[tokio::test]
async fn anthropic_structured_answer_is_parsed() {
    let server = LlmServer::start(Flavor::Anthropic).await;
    server.push([Reply::Answer(answer())]);
    let reply = provider(&server).complete(&request()).await.unwrap();
    assert_eq!(reply.answer, answer());
    assert_eq!(reply.usage, TokenUsage { input_tokens: 2718, output_tokens: 561 });
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.headers["anthropic-version"], "2026-10-21");
    assert_eq!(sent.headers["x-api-key"], API_KEY);
    assert_eq!(sent.body["model"], "claude-haiku-5-5");
    assert_eq!(sent.body["output_config"]["format"]["type"], "json_schema");
    assert_eq!(&sent.body["output_config"]["format"]["schema"], answer_schema());
    assert_eq!(sent.body["thinking"], json!({"type": "disabled"}));
    for key in ["temperature", "top_p", "top_k", "tools", "tool_choice"] {
        assert!(sent.body.get(key).is_none(), "{key} sent");
    }
    assert_eq!(sent.body["system"], request().system);
    assert_eq!(sent.body["messages"], json!([{"role": "user", "content": request().user}]));
    assert_no_rejections(&server);
}

#[tokio::test]
async fn anthropic_text_block_is_found_after_a_thinking_block() {
    let server = LlmServer::start(Flavor::Anthropic).await;
    server.push([Reply::AnswerAfterThinking(answer())]);
    let reply = provider(&server).complete(&request()).await.unwrap();
    assert_eq!(reply.answer, answer());
    assert_no_rejections(&server);
}

#[tokio::test]
async fn anthropic_falls_back_to_forced_tool_use_once_and_remembers() {
    let server =
        LlmServer::start_with(ServerSetup { refuse_output_config: true, ..ServerSetup::new(Flavor::Anthropic) }).await;
    server.push([Reply::Answer(answer()), Reply::AnswerAfterThinking(answer())]);
    let client = provider(&server);
    assert_eq!(client.complete(&request()).await.unwrap().answer, answer());
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one structured try, one tool-shape request");
    assert!(requests[0].body.get("output_config").is_some());
    assert!(requests[0].rejection.as_deref().unwrap().contains("output_config"));
    let tool = &requests[1];
    assert_eq!(tool.rejection, None);
    assert_eq!(tool.headers["anthropic-version"], "2023-06-01");
    assert_eq!(tool.body["tool_choice"]["type"], "tool");
    assert_eq!(&tool.body["tools"][0]["input_schema"], answer_schema());
    assert_eq!(tool.body["tool_choice"]["name"], tool.body["tools"][0]["name"]);
    assert!(tool.body.get("output_config").is_none());

    // The next call goes straight to the tool shape (a thinking block before the tool_use block is skipped).
    assert_eq!(client.complete(&request()).await.unwrap().answer, answer());
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[2].body.get("tools").is_some() && requests[2].rejection.is_none());
}

#[tokio::test]
async fn openai_answer_is_parsed_from_the_content_string() {
    let server = LlmServer::start(Flavor::OpenAi).await;
    server.push([Reply::Answer(answer())]);
    let reply = provider(&server).complete(&request()).await.unwrap();
    assert_eq!(reply.answer, answer());
    assert_eq!(reply.usage, TokenUsage { input_tokens: 2395, output_tokens: 561 });
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], format!("Bearer {API_KEY}"));
    assert_eq!(sent.body["model"], "gpt-6-luna");
    assert_eq!(sent.body["response_format"]["json_schema"]["name"], "match_result");
    assert_eq!(sent.body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(sent.body["reasoning_effort"], "low");
    assert_eq!(sent.body["max_completion_tokens"], 2048);
    assert!(sent.body.get("temperature").is_none() && sent.body.get("max_tokens").is_none());
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_no_rejections(&server);
}

#[tokio::test]
async fn local_answer_is_parsed_without_auth_and_with_reasoning_beside_it() {
    let server = LlmServer::start(Flavor::Local).await;
    server.push([Reply::AnswerAfterThinking(answer())]);
    let client = provider(&server);
    assert_eq!(client.provider(), "local");
    let reply = client.complete(&request()).await.unwrap();
    assert_eq!(reply.answer, answer());
    let sent = &server.requests()[0];
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.body["model"], "gemma4");
    assert_eq!(sent.body["max_tokens"], 2048);
    assert_eq!(sent.body["temperature"], 0);
    assert!(sent.body["seed"].is_u64());
    assert!(sent.body.get("max_completion_tokens").is_none());
    assert_no_rejections(&server);
}

#[tokio::test]
async fn local_with_a_key_sends_it_as_bearer() {
    let server = LlmServer::start_with(ServerSetup { require_key: true, ..ServerSetup::new(Flavor::Local) }).await;
    server.push([Reply::Answer(answer())]);
    let config = MatcherConfig {
        base_url: format!("{}/v1/", server.base_url),
        ..config_for(&server, "local", "gemma4", API_KEY)
    };
    let client = provider_from_config(&config, fast_options()).unwrap().unwrap();
    assert_eq!(client.complete(&request()).await.unwrap().answer, answer());
    assert_no_rejections(&server);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    for flavor in [Flavor::Anthropic, Flavor::OpenAi] {
        let server = LlmServer::start(flavor).await;
        server.push([Reply::RateLimited { retry_after_secs: 1 }, Reply::Answer(answer())]);
        let reply = provider(&server).complete(&request()).await.unwrap();
        assert_eq!(reply.answer, answer());
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let gap = requests[1].at.duration_since(requests[0].at);
        assert!(gap >= Duration::from_secs(1), "{flavor:?}: retried after {gap:?}, before retry-after: 1");
        assert_no_rejections(&server);
    }
}

#[tokio::test]
async fn rate_limit_after_every_attempt_is_rate_limited_and_a_long_retry_after_is_not_waited_for() {
    let server = LlmServer::start(Flavor::OpenAi).await;
    server.push([
        Reply::RateLimited { retry_after_secs: 0 },
        Reply::RateLimited { retry_after_secs: 0 },
        Reply::RateLimited { retry_after_secs: 0 },
    ]);
    let error = provider(&server).complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::RateLimited { retry_after_secs: Some(0), .. }), "{error}");
    assert!(error.is_retryable());
    assert_eq!(server.requests().len(), 3);

    let server = LlmServer::start(Flavor::Anthropic).await;
    server.push([Reply::RateLimited { retry_after_secs: 120 }, Reply::Answer(answer())]);
    let error = provider(&server).complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::RateLimited { retry_after_secs: Some(120), .. }), "{error}");
    assert_eq!(server.requests().len(), 1, "a retry-after beyond the cap ends the loop at once");
}

#[tokio::test]
async fn overload_and_server_errors_are_retried_then_reported() {
    let server = LlmServer::start(Flavor::Anthropic).await;
    server.push([Reply::Overloaded, Reply::ServerError, Reply::Overloaded]);
    let error = provider(&server).complete(&request()).await.unwrap_err();
    match &error {
        LlmError::Server { status, message, .. } => {
            assert_eq!(*status, 529);
            assert!(message.contains("overloaded_error"), "{message}");
        }
        other => panic!("expected Server, got {other:?}"),
    }
    assert!(error.is_retryable());
    assert_eq!(server.requests().len(), 3);

    let server = LlmServer::start(Flavor::Anthropic).await;
    server.push([Reply::Overloaded, Reply::Answer(answer())]);
    assert_eq!(provider(&server).complete(&request()).await.unwrap().answer, answer());
    assert_eq!(server.requests().len(), 2);

    // Ollama's native plain-string error envelope is read leniently.
    let server = LlmServer::start(Flavor::Local).await;
    server.push([Reply::ServerError, Reply::ServerError, Reply::ServerError]);
    let error = provider(&server).complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Server { status: 500, .. }), "{error}");
    assert!(error.to_string().contains("the model failed to generate a response"), "{error}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_without_retry() {
    let server = LlmServer::start(Flavor::OpenAi).await;
    server.push([Reply::Slow { delay: Duration::from_secs(30), answer: answer() }, Reply::Answer(answer())]);
    let options = HttpOptions { request_timeout: Duration::from_millis(300), ..fast_options() };
    let error = provider_with(&server, options).complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Timeout { .. }), "{error}");
    assert!(error.is_retryable());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn content_that_is_not_json_is_malformed() {
    for flavor in [Flavor::Anthropic, Flavor::OpenAi, Flavor::Local] {
        let server = LlmServer::start(flavor).await;
        server.push([Reply::MalformedContent("Here is my analysis: C1 looks right.".into())]);
        let error = provider(&server).complete(&request()).await.unwrap_err();
        assert!(matches!(error, LlmError::Malformed(_)), "{flavor:?}: {error}");
        assert_eq!(server.requests().len(), 1, "{flavor:?}: a malformed answer is not retried by the client");
    }
}

#[tokio::test]
async fn truncation_and_refusal_give_no_answer() {
    for flavor in [Flavor::Anthropic, Flavor::OpenAi, Flavor::Local] {
        for reply in [Reply::Truncated, Reply::Refusal] {
            let server = LlmServer::start(flavor).await;
            server.push([reply.clone()]);
            let error = provider(&server).complete(&request()).await.unwrap_err();
            assert!(matches!(error, LlmError::NoAnswer(_)), "{flavor:?} {reply:?}: {error}");
            assert_no_rejections(&server);
        }
    }
}

#[tokio::test]
async fn an_exhausted_quota_is_rejected_without_retry() {
    for flavor in [Flavor::OpenAi, Flavor::Anthropic] {
        let server = LlmServer::start(flavor).await;
        server.push([Reply::QuotaExhausted, Reply::Answer(answer())]);
        let error = provider(&server).complete(&request()).await.unwrap_err();
        assert!(matches!(error, LlmError::Rejected { status: 429, .. }), "{flavor:?}: {error}");
        assert!(!error.is_retryable());
        assert_eq!(server.requests().len(), 1, "{flavor:?}: an account limit is not retried");
    }
}

#[tokio::test]
async fn the_servers_refuse_what_the_real_apis_refuse() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let anthropic = LlmServer::start(Flavor::Anthropic).await;
    let url = format!("{}/v1/messages", anthropic.base_url);
    let base = json!({"model": "claude-haiku-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}],
                      "thinking": {"type": "disabled"},
                      "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}});
    let with = |extra: Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        ("2026-10-21", with(json!({"temperature": 0})), 400),
        ("2023-06-01", with(json!({"temperature": 0})), 400),
        ("2025-01-01", base.clone(), 400),
        (
            "2023-06-01",
            with(json!({"thinking": null, "output_config": null,
                        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                        "tool_choice": {"type": "tool", "name": "t"}})),
            400,
        ),
        ("2026-10-21", with(json!({"output_config": null})), 400),
        ("2026-10-21", with(json!({"model": "claude-nonexistent"})), 404),
    ];
    for (version, body, status) in cases {
        let response = http
            .post(&url)
            .header("x-api-key", API_KEY)
            .header("anthropic-version", version)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{version} {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error", "{error}");
    }
    let response = http.post(&url).header("anthropic-version", "2026-10-21").json(&base).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let openai = LlmServer::start(Flavor::OpenAi).await;
    let url = format!("{}/v1/chat/completions", openai.base_url);
    let good = json!({"model": "gpt-6-luna", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "m", "strict": true, "schema": {}}}});
    for extra in
        [json!({"temperature": 0}), json!({"max_tokens": 5}), json!({"response_format": {"type": "json_object"}})]
    {
        let mut body = good.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = http.post(&url).bearer_auth(API_KEY).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
        assert!(response.json::<Value>().await.unwrap()["error"]["message"].is_string());
    }
    assert_eq!(openai.rejections().len(), 3);
    assert_eq!(anthropic.rejections().len(), 7);
}

#[tokio::test]
async fn a_model_the_server_does_not_know_is_rejected_with_its_message() {
    let server = LlmServer::start(Flavor::Local).await;
    let config = config_for(&server, "local", "llama9", "");
    let client = provider_from_config(&config, fast_options()).unwrap().unwrap();
    let error = client.complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Rejected { status: 404, .. }), "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("try pulling it first"), "{error}");
    assert_eq!(server.requests().len(), 1);
}

/// The `Debug` text of the concrete client for this server and key.
fn concrete_debug(server: &LlmServer, key: &str) -> String {
    let http = LlmHttp::new(fast_options()).unwrap();
    match server.flavor() {
        Flavor::Anthropic => format!("{:?}", AnthropicProvider::new(http, &server.base_url, key, "claude-haiku-5-5")),
        Flavor::OpenAi | Flavor::Local => {
            format!("{:?}", OpenAiProvider::new(http, ChatDialect::OpenAi, &server.base_url, key, "gpt-6-luna"))
        }
    }
}

#[tokio::test]
async fn the_api_key_never_appears_in_errors() {
    // A server that echoes the key back (as some proxies do) and a wrong key the server refuses.
    for flavor in [Flavor::Anthropic, Flavor::OpenAi] {
        let server = LlmServer::start(flavor).await;
        server.push([Reply::Raw {
            status: 401,
            body: json!({"error": {"type": "authentication_error", "message": format!("invalid key {API_KEY}")}}),
        }]);
        let client = provider(&server);
        let error = client.complete(&request()).await.unwrap_err();
        assert!(matches!(error, LlmError::Rejected { status: 401, .. }), "{error}");
        let texts = [error.to_string(), format!("{error:?}"), concrete_debug(&server, API_KEY)];
        for text in texts {
            assert!(!text.contains(API_KEY), "{flavor:?}: key leaked in {text}");
        }

        let wrong = "sk-wrong-key-1f2e3d4c5b6a";
        let name = if flavor == Flavor::Anthropic { "anthropic" } else { "openai" };
        let client = provider_from_config(&config_for(&server, name, "", wrong), fast_options()).unwrap().unwrap();
        let error = client.complete(&request()).await.unwrap_err();
        assert!(matches!(error, LlmError::Rejected { status: 401, .. }), "{error}");
        assert!(!format!("{error} {error:?} {}", concrete_debug(&server, wrong)).contains(wrong));
    }

    // Nothing listening: a network error, retried, without the key.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let config = MatcherConfig {
        llm_provider: "openai".into(),
        api_key: API_KEY.into(),
        base_url: format!("http://{addr}"),
        ..MatcherConfig::default()
    };
    let error = provider_from_config(&config, fast_options()).unwrap().unwrap().complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Network { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(!format!("{error} {error:?}").contains(API_KEY));
}
