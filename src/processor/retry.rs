//! What happens after a stage fails: the persisted retry policy (DESIGN.md section 3). Pure: the scheduler asks
//! `plan_failure` and writes the answer; nothing sleeps in memory across a stage.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::ProcessingConfig;

/// The decision for a failed stage.
#[derive(Debug, Clone, PartialEq)]
pub enum FailurePlan {
    /// Try the stage again at this time (the ticket stays in its state, `attempts` incremented).
    RetryAt { attempt: u32, at: DateTime<Utc> },
    /// Automatic attempts are used up: rest in `failed { retryable: true }` until `POST /retry`.
    Rest { attempts: u32 },
    /// Trying again cannot help: `failed { retryable: false }`.
    Fatal,
}

/// Delay before automatic attempt number `attempt` (1-based): the initial delay doubling each time, capped.
pub fn retry_delay(attempt: u32, config: &ProcessingConfig) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let delay = config.retry_initial_delay_secs.saturating_mul(1u64 << doublings);
    Duration::from_secs(delay.min(config.retry_max_delay_secs))
}

/// Decides what a failure leads to, given how many automatic attempts were already made.
pub fn plan_failure(
    retryable: bool,
    attempts_so_far: u32,
    config: &ProcessingConfig,
    now: DateTime<Utc>,
) -> FailurePlan {
    if !retryable {
        return FailurePlan::Fatal;
    }
    let attempt = attempts_so_far.saturating_add(1);
    if attempt > config.retry_max_attempts {
        return FailurePlan::Rest { attempts: attempts_so_far };
    }
    let delay = chrono::Duration::from_std(retry_delay(attempt, config)).unwrap_or(chrono::Duration::MAX);
    FailurePlan::RetryAt { attempt, at: now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProcessingConfig {
        ProcessingConfig {
            retry_max_attempts: 5,
            retry_initial_delay_secs: 60,
            retry_max_delay_secs: 600,
            ..ProcessingConfig::default()
        }
    }

    #[test]
    fn delays_double_from_the_initial_delay_up_to_the_cap() {
        let secs: Vec<u64> = (1..=6).map(|n| retry_delay(n, &config()).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 600, 600]);
        assert_eq!(retry_delay(u32::MAX, &config()).as_secs(), 600, "no overflow");
    }

    #[test]
    fn retryable_failures_retry_then_rest_and_others_are_fatal() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            plan_failure(true, 0, &config(), now),
            FailurePlan::RetryAt { attempt: 1, at: now + chrono::Duration::seconds(60) }
        );
        assert_eq!(
            plan_failure(true, 4, &config(), now),
            FailurePlan::RetryAt { attempt: 5, at: now + chrono::Duration::seconds(600) }
        );
        assert_eq!(plan_failure(true, 5, &config(), now), FailurePlan::Rest { attempts: 5 });
        assert_eq!(plan_failure(false, 0, &config(), now), FailurePlan::Fatal);
    }
}
