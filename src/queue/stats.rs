//! The figures of `GET /api/v1/stats` (and the metrics scrape): tickets per state, created/completed/failed in
//! the last hour and day, median time per stage over recent completions, and the LLM usage. Read-only SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::llm_ledger::LlmUsageStats;
use super::store::{to_millis, Store, StoreError};
use crate::models::StateKind;

/// Figures for `GET /api/v1/stats`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreStats {
    pub counts_by_state: BTreeMap<String, i64>,
    pub created_last_hour: i64,
    pub created_last_day: i64,
    pub completed_last_hour: i64,
    pub completed_last_day: i64,
    pub failed_last_hour: i64,
    pub failed_last_day: i64,
    /// Median seconds spent in each state, over the most recently completed tickets.
    pub median_secs_by_stage: BTreeMap<String, f64>,
    /// What the optional LLM second opinion was asked and cost (all zero with `llm_provider = "none"`).
    pub llm: LlmUsageStats,
}

/// How many completed tickets the stage medians look at.
const STATS_COMPLETED_SAMPLE: i64 = 1000;

impl Store {
    /// Figures for the stats endpoint.
    pub async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats, StoreError> {
        let hour_ago = to_millis(now - chrono::Duration::hours(1));
        let day_ago = to_millis(now - chrono::Duration::days(1));
        let mut counts_by_state: BTreeMap<String, i64> =
            StateKind::ALL.iter().map(|kind| (kind.as_str().to_string(), 0)).collect();
        for row in sqlx::query("SELECT state_kind, COUNT(*) AS n FROM tickets GROUP BY state_kind")
            .fetch_all(&self.pool)
            .await?
        {
            counts_by_state.insert(row.try_get("state_kind")?, row.try_get("n")?);
        }
        let created_since = |since: i64| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tickets WHERE created_at >= ?1")
                .bind(since)
                .fetch_one(&self.pool)
        };
        let reached_since = |kind: StateKind, since: i64| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(DISTINCT ticket_id) FROM ticket_events WHERE to_kind = ?1 AND at >= ?2",
            )
            .bind(kind.as_str())
            .bind(since)
            .fetch_one(&self.pool)
        };
        let created_last_hour = created_since(hour_ago).await?;
        let created_last_day = created_since(day_ago).await?;
        let completed_last_hour = reached_since(StateKind::Completed, hour_ago).await?;
        let completed_last_day = reached_since(StateKind::Completed, day_ago).await?;
        let failed_last_hour = reached_since(StateKind::Failed, hour_ago).await?;
        let failed_last_day = reached_since(StateKind::Failed, day_ago).await?;

        let rows = sqlx::query(
            "SELECT e.ticket_id, e.at, e.to_kind FROM ticket_events e
             JOIN (SELECT id FROM tickets WHERE state_kind = 'completed' ORDER BY updated_at DESC LIMIT ?1) c
               ON c.id = e.ticket_id
             ORDER BY e.ticket_id, e.seq",
        )
        .bind(STATS_COMPLETED_SAMPLE)
        .fetch_all(&self.pool)
        .await?;
        let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut previous: Option<(String, i64, String)> = None;
        for row in &rows {
            let ticket_id: String = row.try_get("ticket_id")?;
            let at: i64 = row.try_get("at")?;
            let kind: String = row.try_get("to_kind")?;
            if let Some((prev_id, prev_at, prev_kind)) = previous.take() {
                if prev_id == ticket_id {
                    let secs = Duration::from_millis(u64::try_from(at - prev_at).unwrap_or(0)).as_secs_f64();
                    durations.entry(prev_kind).or_default().push(secs);
                }
            }
            previous = Some((ticket_id, at, kind));
        }
        let median_secs_by_stage = durations
            .into_iter()
            .filter_map(|(kind, mut values)| {
                values.sort_by(f64::total_cmp);
                let mid = values.len() / 2;
                let median = if values.len() % 2 == 1 {
                    *values.get(mid)?
                } else {
                    (values.get(mid - 1)? + values.get(mid)?) / 2.0
                };
                Some((kind, median))
            })
            .collect();
        Ok(StoreStats {
            counts_by_state,
            created_last_hour,
            created_last_day,
            completed_last_hour,
            completed_last_day,
            failed_last_hour,
            failed_last_day,
            median_secs_by_stage,
            llm: self.llm_usage().await?,
        })
    }
}
