//! [`Tasks`]: the one place the service starts its background tasks (the scheduler, the reaper, the webhook
//! delivery, work-dir clean-ups, the shutdown watcher). Every task gets a name, a `task` tracing span carrying it,
//! and a child of one cancellation token; `shutdown` cancels that token and waits until every task has ended, so
//! when `serve` returns nothing the service spawned is still running.
//!
//! Two tasks live below `app` and are owned where they are started, each joined by its owner's stop: the store's
//! group-commit task (`Store::close`) and the managed qbittorrent-nox's supervisor (`ManagedQbittorrent::shutdown`);
//! `serve` calls both after [`Tasks::shutdown`]. Ticket tasks are the scheduler's own (a `JoinSet` it drains
//! before it returns).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The service's background tasks.
#[derive(Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// The parent of every task's token; cancelled by [`Tasks::shutdown`].
    stop: CancellationToken,
    /// The names of the tasks still running, by spawn number.
    running: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    next: AtomicU64,
}

/// Removes a task's name from the running list when the task ends (also when it panics or is aborted).
struct Running {
    running: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.id);
        }
    }
}

impl Tasks {
    /// No tasks yet.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Starts `task` under `name`: it receives a child of the service's stop token and must end soon after that
    /// token is cancelled.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut running) = self.running.lock() {
            running.insert(id, name);
        }
        let guard = Running { running: Arc::clone(&self.running), id };
        let future = task(self.stop.child_token());
        self.tracker.spawn(
            async move {
                let _guard = guard;
                future.await;
            }
            .instrument(tracing::info_span!("task", name)),
        );
    }

    /// The names of the tasks that have not ended yet (one entry per task).
    pub fn running(&self) -> Vec<&'static str> {
        self.running.lock().map(|running| running.values().copied().collect()).unwrap_or_default()
    }

    /// Whether `shutdown` has been called.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Cancels every task's token and returns once all tasks (also those spawned meanwhile) have ended.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn shutdown_cancels_every_task_and_waits_for_it() {
        let tasks = Tasks::new();
        let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
        for name in ["first", "second"] {
            let ended = ended_tx.clone();
            tasks.spawn(name, move |stop| async move {
                stop.cancelled().await;
                // Finishing takes a moment after the cancel: shutdown must wait for it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = ended.send(name);
            });
        }
        tasks.spawn("short", |_| async {});
        drop(ended_tx);
        tokio::task::yield_now().await;
        let mut running = tasks.running();
        running.sort_unstable();
        assert!(running.contains(&"first") && running.contains(&"second"), "{running:?}");

        tasks.shutdown().await;
        assert!(tasks.running().is_empty(), "{:?}", tasks.running());
        let mut ended = Vec::new();
        while let Some(name) = ended_rx.recv().await {
            ended.push(name);
        }
        ended.sort_unstable();
        assert_eq!(ended, ["first", "second"]);
        assert!(tasks.is_stopping());
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_the_running_list() {
        let tasks = Tasks::new();
        tasks.spawn("doomed", |_| async { panic!("boom") });
        tasks.shutdown().await;
        assert!(tasks.running().is_empty());
    }
}
