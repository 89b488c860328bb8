//! The LLM step's memory: the answer cache (one answer per prompt hash, the first wins; a cached answer costs
//! nothing) and the cost ledger (one row per call: answered, cached or failed, with its tokens), from which a
//! ticket's token budget and the usage figures are read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::store::{to_millis, Store, StoreError};

/// A cached LLM answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLlmAnswer {
    pub answer: serde_json::Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// LLM calls and tokens since the database was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LlmUsageStats {
    /// Answers from the provider.
    pub answered: i64,
    /// Answers served from the cache (no network call).
    pub cached: i64,
    /// Calls that failed (matching went on with the deterministic result).
    pub failed: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Store {
    /// The cached answer for a prompt hash, if any.
    pub async fn llm_cached_answer(&self, key: &str) -> Result<Option<CachedLlmAnswer>, StoreError> {
        let row = sqlx::query("SELECT answer_json, input_tokens, output_tokens FROM llm_answers WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("answer_json")?;
        let answer = serde_json::from_str(&json)
            .map_err(|err| StoreError::Corrupt { id: format!("llm answer {key}"), message: err.to_string() })?;
        let tokens =
            |name: &str| -> Result<u64, StoreError> { Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0)) };
        Ok(Some(CachedLlmAnswer {
            answer,
            input_tokens: tokens("input_tokens")?,
            output_tokens: tokens("output_tokens")?,
        }))
    }

    /// Stores an answer under its prompt hash (the first one wins).
    pub async fn store_llm_answer(
        &self,
        key: &str,
        provider: &str,
        model: &str,
        answer: &CachedLlmAnswer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        self.autocommit(
sqlx::query(
            "INSERT OR IGNORE INTO llm_answers (key, provider, model, answer_json, input_tokens, output_tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(key)
        .bind(provider)
        .bind(model)
        .bind(answer.answer.to_string())
        .bind(i64::try_from(answer.input_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(answer.output_tokens).unwrap_or(i64::MAX))
        .bind(to_millis(now))
        .execute(&self.pool)
        .await,
        )?;
        Ok(())
    }

    /// Records one LLM call in the ledger (`outcome`: answered, cached or failed).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_llm_call(
        &self,
        ticket_id: Option<&str>,
        provider: &str,
        model: &str,
        outcome: &str,
        input_tokens: u64,
        output_tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.storage.before_write()?;
        let _writer = self.writer.lock().await;
        self.autocommit(
            sqlx::query(
                "INSERT INTO llm_calls (at, ticket_id, provider, model, outcome, input_tokens, output_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(to_millis(now))
            .bind(ticket_id)
            .bind(provider)
            .bind(model)
            .bind(outcome)
            .bind(i64::try_from(input_tokens).unwrap_or(i64::MAX))
            .bind(i64::try_from(output_tokens).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await,
        )?;
        Ok(())
    }

    /// Tokens this ticket's LLM calls consumed so far (its budget).
    pub async fn llm_tokens_of_ticket(&self, ticket_id: &str) -> Result<u64, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM llm_calls
             WHERE ticket_id = ?1 AND outcome = 'answered'",
        )
        .bind(ticket_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    pub(super) async fn llm_usage(&self) -> Result<LlmUsageStats, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(outcome = 'answered'), 0) AS answered, COALESCE(SUM(outcome = 'cached'), 0) AS cached,
                    COALESCE(SUM(outcome = 'failed'), 0) AS failed,
                    COALESCE(SUM(CASE WHEN outcome = 'answered' THEN input_tokens ELSE 0 END), 0) AS input_tokens,
                    COALESCE(SUM(CASE WHEN outcome = 'answered' THEN output_tokens ELSE 0 END), 0) AS output_tokens
             FROM llm_calls",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LlmUsageStats {
            answered: row.try_get("answered")?,
            cached: row.try_get("cached")?,
            failed: row.try_get("failed")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db/test.db")).await.unwrap();
        (dir, store)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[tokio::test]
    async fn llm_answers_are_cached_by_key_and_calls_counted() {
        let (_dir, store) = fresh_store().await;
        let now = at(1000);
        assert_eq!(store.llm_cached_answer("k1").await.unwrap(), None);
        let answer =
            CachedLlmAnswer { answer: serde_json::json!({"candidates": []}), input_tokens: 900, output_tokens: 80 };
        store.store_llm_answer("k1", "anthropic", "claude-haiku-5-5", &answer, now).await.unwrap();
        let other = CachedLlmAnswer { answer: serde_json::json!({"candidates": [1]}), ..answer.clone() };
        store.store_llm_answer("k1", "anthropic", "claude-haiku-5-5", &other, now).await.unwrap();
        assert_eq!(store.llm_cached_answer("k1").await.unwrap(), Some(answer), "the first answer wins");

        store.record_llm_call(Some("t1"), "anthropic", "m", "answered", 900, 80, now).await.unwrap();
        store.record_llm_call(Some("t1"), "anthropic", "m", "cached", 900, 80, now).await.unwrap();
        store.record_llm_call(Some("t2"), "anthropic", "m", "failed", 0, 0, now).await.unwrap();
        assert_eq!(store.llm_tokens_of_ticket("t1").await.unwrap(), 980, "cached answers cost nothing");
        let usage = store.stats(now).await.unwrap().llm;
        assert_eq!(usage, LlmUsageStats { answered: 1, cached: 1, failed: 1, input_tokens: 900, output_tokens: 80 });
    }
}
