//! The LLM second opinion as one call: build the prompt from the deterministic outcome, answer it from the SQLite
//! cache or the provider (within the ticket's token budget), validate the answer, and combine it with the
//! deterministic outcome under the guard rails (`crate::matcher::llm_guard`). Every failure falls back to the deterministic
//! outcome unchanged; the returned [`LlmReport`] says what happened (it goes into the ticket's history).

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::llm::answer::validate_answer;
use crate::llm::prompt::build_request;
use crate::llm::{LlmError, LlmProvider, LlmReply, LlmRequest, TokenUsage};
use crate::matcher::llm_guard::combine;
use crate::matcher::MatchOutcome;
use crate::models::{Ticket, TorrentCandidate};
use crate::queue::{CachedLlmAnswer, Store};

/// What the LLM step did for one matching, for the history and the logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmReport {
    pub provider: String,
    pub model: String,
    /// The answer came from the cache (no network call, no cost).
    pub cached: bool,
    pub usage: TokenUsage,
    /// What the guard rails let the LLM change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Parts of the answer that named unknown candidates, tracks or files (ignored).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
    /// Why the deterministic result was kept as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The LLM step with its provider, its cache and its limits.
#[derive(Clone)]
pub struct LlmRefiner {
    provider: Arc<dyn LlmProvider>,
    /// The cache and the cost ledger; `None` for the `match --llm` command (no database).
    store: Option<Store>,
    max_candidates: usize,
    ticket_token_budget: u64,
}

impl LlmRefiner {
    pub fn new(
        provider: Arc<dyn LlmProvider>,
        store: Option<Store>,
        max_candidates: usize,
        ticket_token_budget: u64,
    ) -> LlmRefiner {
        LlmRefiner { provider, store, max_candidates: max_candidates.max(1), ticket_token_budget }
    }

    /// The step with the limits of `[matcher]` (`llm_max_candidates`, `llm_ticket_token_budget`).
    pub fn from_config(
        provider: Arc<dyn LlmProvider>,
        store: Option<Store>,
        config: &crate::config::MatcherConfig,
    ) -> LlmRefiner {
        LlmRefiner::new(provider, store, config.llm_max_candidates, config.llm_ticket_token_budget)
    }

    /// The deterministic `outcome` for `ticket`, reviewed by the LLM under the guard rails. Never fails: on any
    /// error the outcome comes back unchanged with the reason in the report.
    pub async fn refine(
        &self,
        ticket: &Ticket,
        candidates: &[TorrentCandidate],
        outcome: MatchOutcome,
        threshold: f64,
    ) -> (MatchOutcome, LlmReport) {
        let mut report = LlmReport {
            provider: self.provider.provider().to_string(),
            model: self.provider.model().to_string(),
            ..LlmReport::default()
        };
        if outcome.candidates.is_empty() {
            report.fallback = Some("no candidates to review".into());
            return (outcome, report);
        }
        let (request, keys) = build_request(ticket, &outcome, candidates, self.max_candidates);
        let reply = match self.answer(&ticket.ticket_id, &request, &mut report).await {
            Ok(reply) => reply,
            Err(err) => {
                tracing::warn!(error = %err, "LLM second opinion unavailable: keeping the deterministic result");
                report.fallback = Some(err.to_string());
                return (outcome, report);
            }
        };
        let validated = match validate_answer(&reply.answer, &keys) {
            Ok(validated) => validated,
            Err(err) => {
                tracing::warn!(error = %err, "LLM answer unusable: keeping the deterministic result");
                report.fallback = Some(err.to_string());
                return (outcome, report);
            }
        };
        if !validated.dropped.is_empty() {
            tracing::warn!(dropped = ?validated.dropped, "LLM answer named unknown keys: those parts are ignored");
        }
        report.dropped = validated.dropped.clone();
        let combined = combine(&outcome, &validated, threshold);
        report.changes = combined.notes;
        (combined.outcome, report)
    }

    /// The answer to `request`: from the cache, or from the provider within the ticket's budget (then cached).
    async fn answer(
        &self,
        ticket_id: &str,
        request: &LlmRequest,
        report: &mut LlmReport,
    ) -> Result<LlmReply, LlmError> {
        let key = cache_key(self.provider.provider(), self.provider.model(), request);
        let provider = self.provider.provider();
        let model = self.provider.model();
        let Some(store) = &self.store else {
            let reply = self.provider.complete(request).await?;
            report.usage = reply.usage;
            return Ok(reply);
        };
        let now = Utc::now();
        if let Ok(Some(cached)) = store.llm_cached_answer(&key).await {
            report.cached = true;
            let usage = TokenUsage { input_tokens: cached.input_tokens, output_tokens: cached.output_tokens };
            record(store, ticket_id, provider, model, "cached", usage).await;
            return Ok(LlmReply { answer: cached.answer, usage, model: model.to_string() });
        }
        let spent = store.llm_tokens_of_ticket(ticket_id).await.unwrap_or(0);
        if spent >= self.ticket_token_budget {
            crate::metrics::llm_call("budget_exceeded");
            return Err(LlmError::BudgetExceeded { budget: self.ticket_token_budget });
        }
        match self.provider.complete(request).await {
            Ok(reply) => {
                report.usage = reply.usage;
                record(store, ticket_id, provider, model, "answered", reply.usage).await;
                let cached = CachedLlmAnswer {
                    answer: reply.answer.clone(),
                    input_tokens: reply.usage.input_tokens,
                    output_tokens: reply.usage.output_tokens,
                };
                if let Err(err) = store.store_llm_answer(&key, provider, model, &cached, now).await {
                    tracing::warn!(error = %err, "LLM answer not cached");
                }
                Ok(reply)
            }
            Err(err) => {
                record(store, ticket_id, provider, model, "failed", TokenUsage::default()).await;
                Err(err)
            }
        }
    }
}

async fn record(store: &Store, ticket_id: &str, provider: &str, model: &str, outcome: &'static str, usage: TokenUsage) {
    crate::metrics::llm_call(outcome);
    let result = store
        .record_llm_call(Some(ticket_id), provider, model, outcome, usage.input_tokens, usage.output_tokens, Utc::now())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "LLM call not recorded");
    }
}

/// The cache key: SHA-256 of everything that decides the answer (provider, model, prompts, schema).
pub fn cache_key(provider: &str, model: &str, request: &LlmRequest) -> String {
    let mut hasher = Sha256::new();
    for part in [provider, model, &request.system, &request.user, &request.schema.to_string()] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user: &str) -> LlmRequest {
        LlmRequest {
            system: "s".into(),
            user: user.into(),
            schema: serde_json::json!({"type": "object"}),
            max_output_tokens: 10,
        }
    }

    #[test]
    fn the_cache_key_covers_provider_model_and_prompt_but_not_the_token_limit() {
        let base = cache_key("anthropic", "m", &request("u"));
        assert_eq!(base, cache_key("anthropic", "m", &request("u")));
        assert_ne!(base, cache_key("openai", "m", &request("u")));
        assert_ne!(base, cache_key("anthropic", "m2", &request("u")));
        assert_ne!(base, cache_key("anthropic", "m", &request("u2")));
        let mut more_tokens = request("u");
        more_tokens.max_output_tokens = 99;
        assert_eq!(base, cache_key("anthropic", "m", &more_tokens));
        // Parts are separated: moving a character between fields changes the key.
        assert_ne!(cache_key("ab", "c", &request("u")), cache_key("a", "bc", &request("u")));
    }
}
