//! The persister a runner's logs go to, and the ones it replaced while they finish.
//!
//! `setObservabilityStorage` may be called again with another storage. The new persister takes
//! every line from then on; the one it replaces [retires](Persister::retire) on a task of its
//! own: it writes what it had pending to its own storage, bounded by `providerTimeoutMs`, and
//! counts what it could not write as dropped. [`PersisterSlot::stats`] adds up every persister
//! set so far, so `written + pending + dropped` accounts for every line taken.
//!
//! # Caveats
//! Around the swap a line may reach both storages: the new persister subscribes to the live
//! logs before the old one stops reading them, so that no line falls between the two.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::{ObservabilityStats, Persister};
use crate::error::{Error, Result};
use crate::sync::lock;

/// The current persister, the replaced ones still handing over, and the counts of those done.
#[derive(Clone, Default)]
pub struct PersisterSlot {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<SlotState>,
    /// Wakes [`PersisterSlot::settled`] when a replaced persister finished.
    retired_one: Notify,
}

#[derive(Default)]
struct SlotState {
    current: Option<Arc<Persister>>,
    /// Replaced persisters still writing what they had.
    retiring: Vec<Arc<Persister>>,
    /// The final counts of replaced persisters that finished.
    retired: ObservabilityStats,
}

impl PersisterSlot {
    /// Makes `persister` the current one (the caller has made it the runner's log observer in
    /// place of the previous one). The previous one retires on a task of the current tokio
    /// runtime, within `handover_limit`; an error only when there is no runtime.
    pub fn replace(&self, persister: Arc<Persister>, handover_limit: Duration) -> Result<()> {
        let runtime = Handle::try_current()
            .map_err(|error| Error::internal("replacing the observability storage", error))?;
        let previous = {
            let mut state = lock(&self.shared.state);
            let previous = state.current.replace(persister);
            if let Some(previous) = &previous {
                state.retiring.push(Arc::clone(previous));
            }
            previous
        };
        if let Some(previous) = previous {
            let shared = Arc::clone(&self.shared);
            runtime.spawn(async move {
                previous.retire(handover_limit).await;
                let mut state = lock(&shared.state);
                state.retiring.retain(|p| !Arc::ptr_eq(p, &previous));
                // Counted once: out of `retiring` and into `retired` under one lock.
                state.retired = state.retired + previous.stats();
                drop(state);
                shared.retired_one.notify_waiters();
            });
        }
        Ok(())
    }

    /// Counts of every persister set so far (the current one, those handing over and those
    /// done); `None` until one was set.
    pub fn stats(&self) -> Option<ObservabilityStats> {
        let state = lock(&self.shared.state);
        let current = state.current.as_ref()?.stats();
        Some(
            state
                .retiring
                .iter()
                .fold(current + state.retired, |sum, p| sum + p.stats()),
        )
    }

    /// Resolves once every replaced persister finished handing over.
    pub async fn settled(&self) {
        loop {
            let retired = self.shared.retired_one.notified();
            tokio::pin!(retired);
            retired.as_mut().enable();
            if lock(&self.shared.state).retiring.is_empty() {
                return;
            }
            retired.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogLimits, LogStore, Stream};
    use crate::logs::{LogObserver, LogOwner};
    use crate::observability::{FileStorage, ObservabilitySettings};
    use crate::sync::BoxFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A storage that keeps what it is given, or never answers.
    struct Memory {
        hang: bool,
        calls: AtomicU32,
        lines: Mutex<Vec<String>>,
    }

    impl Memory {
        fn new(hang: bool) -> Arc<Self> {
            Arc::new(Memory {
                hang,
                calls: AtomicU32::new(0),
                lines: Mutex::new(Vec::new()),
            })
        }

        /// The `message` of every event written.
        fn messages(&self) -> Vec<String> {
            lock(&self.lines)
                .iter()
                .map(|line| {
                    let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
                    event["data"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        }
    }

    impl FileStorage for Memory {
        fn write<'a>(
            &'a self,
            _path: &'a str,
            content: String,
        ) -> BoxFuture<'a, std::result::Result<(), String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if self.hang {
                    std::future::pending::<()>().await;
                }
                lock(&self.lines).extend(content.lines().map(str::to_owned));
                Ok(())
            })
        }
    }

    fn owner() -> LogOwner {
        LogOwner::Server {
            server_id: "srv-1".into(),
            deployment_id: "dep-1".into(),
            project_id: "proj-1".into(),
        }
    }

    /// A persister that writes only when told to (or on a swap).
    fn persister(storage: Arc<Memory>, write_timeout: Duration) -> Arc<Persister> {
        let settings = ObservabilitySettings {
            batch_size: 100_000,
            flush_interval: Duration::from_secs(600),
            max_file_size: 10 * 1024 * 1024,
        };
        Arc::new(Persister::new(storage, settings, write_timeout).expect("a runtime"))
    }

    /// Waits up to 10 s for `condition`.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn lines(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("line {i}")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_persister_writes_what_it_held_and_every_event_is_counted() {
        let slot = PersisterSlot::default();
        assert_eq!(slot.stats(), None);
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        let (first, second) = (Memory::new(false), Memory::new(false));
        let old = persister(Arc::clone(&first), Duration::from_secs(5));
        old.log_opened(&owner(), &log);
        slot.replace(Arc::clone(&old), Duration::from_secs(5))
            .expect("a runtime");
        log.append_lines(Stream::Stdout, lines(0, 3));
        until("three pending", || {
            slot.stats().is_some_and(|s| s.pending == 3)
        })
        .await;

        let new = persister(Arc::clone(&second), Duration::from_secs(5));
        new.log_opened(&owner(), &log);
        slot.replace(Arc::clone(&new), Duration::from_secs(5))
            .expect("a runtime");
        drop(old);
        slot.settled().await;
        assert_eq!(first.messages(), lines(0, 3));
        log.append_lines(Stream::Stdout, lines(3, 5));
        until("two more pending", || {
            slot.stats().is_some_and(|s| s.pending == 2)
        })
        .await;
        new.flush().await;
        assert_eq!(second.messages(), lines(3, 5));
        assert_eq!(
            first.messages(),
            lines(0, 3),
            "nothing later reaches the old one"
        );
        assert_eq!(
            slot.stats(),
            Some(ObservabilityStats {
                written: 5,
                pending: 0,
                dropped: 0
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_persister_whose_storage_hangs_counts_its_events_dropped_in_time() {
        let slot = PersisterSlot::default();
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        let hanging = Memory::new(true);
        let limit = Duration::from_millis(200);
        let old = persister(Arc::clone(&hanging), limit);
        old.log_opened(&owner(), &log);
        slot.replace(old, limit).expect("a runtime");
        log.append_lines(Stream::Stdout, lines(0, 4));
        until("four pending", || {
            slot.stats().is_some_and(|s| s.pending == 4)
        })
        .await;

        let started = tokio::time::Instant::now();
        slot.replace(persister(Memory::new(false), limit), limit)
            .expect("a runtime");
        slot.settled().await;
        assert!(started.elapsed() < 3 * limit, "{:?}", started.elapsed());
        assert_eq!(
            hanging.calls.load(Ordering::SeqCst),
            1,
            "no retry after the limit"
        );
        assert_eq!(
            slot.stats(),
            Some(ObservabilityStats {
                written: 0,
                pending: 0,
                dropped: 4
            })
        );
    }
}
