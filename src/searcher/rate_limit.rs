//! The searches-per-window limit shared by every search of the process (all tickets, all query variants): a
//! sliding window of the last N start times. Waiters are served in arrival order (tokio's fair mutex is held while
//! the head waiter sleeps). Uses tokio's clock, so tests can run it under paused time; it never spins or drops a
//! request, it only delays.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `max_per_window` acquisitions in any `window`.
#[derive(Debug)]
pub struct SearchRateLimiter {
    max_per_window: usize,
    window: Duration,
    starts: Mutex<VecDeque<Instant>>,
    waits: AtomicU64,
}

impl SearchRateLimiter {
    /// `max_per_window` is raised to 1 if 0.
    pub fn new(max_per_window: u32, window: Duration) -> Self {
        let max_per_window = usize::try_from(max_per_window.max(1)).unwrap_or(usize::MAX);
        SearchRateLimiter { max_per_window, window, starts: Mutex::new(VecDeque::new()), waits: AtomicU64::new(0) }
    }

    /// Waits until one more search may start, then records it. Returns whether it had to wait.
    pub async fn acquire(&self) -> bool {
        let mut starts = self.starts.lock().await;
        let mut waited = false;
        loop {
            let now = Instant::now();
            while starts.front().is_some_and(|&start| now.saturating_duration_since(start) >= self.window) {
                starts.pop_front();
            }
            if starts.len() < self.max_per_window {
                starts.push_back(now);
                if waited {
                    self.waits.fetch_add(1, Ordering::Relaxed);
                }
                return waited;
            }
            let Some(&oldest) = starts.front() else { continue };
            if !waited {
                tracing::info!(
                    max = self.max_per_window,
                    window_secs = self.window.as_secs_f64(),
                    "search rate limit reached; waiting for the window to move"
                );
            }
            waited = true;
            tokio::time::sleep_until(oldest + self.window).await;
        }
    }

    /// How many acquisitions so far had to wait (observability and tests).
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_n_plus_first_search_in_a_window_waits() {
        let limiter = Arc::new(SearchRateLimiter::new(3, Duration::from_secs(60)));
        for _ in 0..3 {
            assert!(!limiter.acquire().await, "the first N searches do not wait");
        }
        let fourth = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!fourth.is_finished(), "the fourth search must wait while 3 started in this minute");
        fourth.abort();
        assert_eq!(limiter.waits(), 0);
    }

    #[tokio::test]
    async fn a_waiting_search_proceeds_when_the_window_moves_on() {
        let limiter = SearchRateLimiter::new(1, Duration::from_millis(50));
        assert!(!limiter.acquire().await);
        assert!(limiter.acquire().await, "the second search in the window reports that it waited");
        assert_eq!(limiter.waits(), 1);
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let limiter = Arc::new(SearchRateLimiter::new(1, Duration::from_millis(30)));
        limiter.acquire().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for id in 0..3 {
            let limiter = limiter.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                limiter.acquire().await;
                tx.send(id).unwrap();
            });
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(id) = rx.recv().await {
            order.push(id);
        }
        assert_eq!(order, vec![0, 1, 2]);
    }
}
