//! The log observers a host sets on a runner and the runner keeps: the one server-log listener
//! (`setOnServerLog`) and the observability persister (`setObservabilityStorage`).
//!
//! Both sit among the runner's log observers under a name of their own, so setting one again
//! replaces it. A replaced or cleared listener stops at once: its subscriptions close when the
//! runner lets go of it. A replaced persister hands over what it had pending, within
//! `providerTimeoutMs` ([`PersisterSlot`]).
//!
//! # Caveats
//! The listener's deliveries run on the current tokio runtime: a listener set outside one is
//! told about no log until a log opens inside one.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::Runner;
use crate::error::Result;
use crate::logs::SubscriptionCloser;
use crate::logs::{LogBatch, LogObserver, LogOwner, LogStore};
use crate::observability::{FileStorage, ObservabilityStats, Persister, PersisterSlot};
use crate::sync::{BoxFuture, lock};

/// The most log entries handed to a receiver in one batch: as many as a subscriber's queue
/// holds by default (`maxLogLines`), so that one batch can empty it.
pub const MAX_BATCH_LINES: usize = 16 * 1024;

/// The name the server-log listener is kept under among the runner's log observers.
const SERVER_LOG_LISTENER: &str = "setOnServerLog";

/// The name the observability persister is kept under among the runner's log observers.
const PERSISTER: &str = "observabilityStorage";

/// Where the server-log listener's batches go (a JS callback, in the binding).
pub trait ServerLogSink: Send + Sync + 'static {
    /// Hands over `batch` of server `server_id` and resolves once it was taken; `false` when
    /// the receiver is gone and wants no more.
    fn deliver(&self, server_id: &str, batch: LogBatch) -> BoxFuture<'_, bool>;
}

/// The persisters set so far; a field of the runner.
#[derive(Default)]
pub(crate) struct Listeners {
    persisters: PersisterSlot,
}

/// The server-log listener as a log observer: every line of every server from its first one
/// on, in order per server, in batches.
struct ServerLogFeed {
    sink: Arc<dyn ServerLogSink>,
    subscriptions: Mutex<Vec<SubscriptionCloser>>,
}

impl LogObserver for ServerLogFeed {
    fn log_opened(&self, owner: &LogOwner, log: &Arc<LogStore>) {
        let LogOwner::Server { server_id, .. } = owner else {
            return;
        };
        let Ok(runtime) = Handle::try_current() else {
            tracing::warn!(
                "the server log listener was set outside a runtime; {server_id} skipped"
            );
            return;
        };
        let subscription = log.subscribe(log.limits().max_lines);
        {
            let mut subscriptions = lock(&self.subscriptions);
            subscriptions.retain(|s| !s.is_closed());
            subscriptions.push(subscription.closer());
        }
        let sink = Arc::clone(&self.sink);
        let server_id = server_id.clone();
        runtime.spawn(async move {
            while let Some(batch) = subscription.next_batch(MAX_BATCH_LINES).await {
                if !sink.deliver(&server_id, batch).await {
                    break;
                }
            }
        });
    }
}

impl Drop for ServerLogFeed {
    /// A replaced or cleared listener gets no more lines.
    fn drop(&mut self) {
        for subscription in lock(&self.subscriptions).drain(..) {
            subscription.close();
        }
    }
}

impl Runner {
    /// Hands every line of every server to `sink` from now on, from the first line of each
    /// live or new server on, in order per server. Replaces an earlier listener, which gets
    /// nothing more.
    pub fn set_server_log_listener(&self, sink: Arc<dyn ServerLogSink>) {
        let feed = ServerLogFeed {
            sink,
            subscriptions: Mutex::new(Vec::new()),
        };
        self.set_log_observer(SERVER_LOG_LISTENER, Arc::new(feed));
    }

    /// Writes every server's and build's log lines to `storage` from now on. A storage set
    /// earlier gets what it had pending at once (within `providerTimeoutMs`, the rest counted
    /// as dropped) and nothing later. An error only outside a tokio runtime.
    pub fn set_observability_storage(&self, storage: Arc<dyn FileStorage>) -> Result<()> {
        let config = self.config();
        let persister = Arc::new(Persister::new(
            storage,
            config.observability,
            config.provider_timeout,
        )?);
        // The new one subscribes before the old one stops reading: no line falls between.
        self.set_log_observer(PERSISTER, Arc::clone(&persister) as _);
        self.listeners
            .persisters
            .replace(persister, config.provider_timeout)
    }

    /// Counts of the observability storages' events; `None` until one was set.
    pub fn observability_stats(&self) -> Option<ObservabilityStats> {
        self.listeners.persisters.stats()
    }

    /// What `detach` and `shutdown` do last: drops the server-log listener (no more lines reach
    /// it) and resolves once every replaced storage got (or gave up on) what it had pending.
    pub fn release_listeners(&self) -> impl Future<Output = ()> + Send + 'static {
        self.clear_log_observer(SERVER_LOG_LISTENER);
        let persisters = self.listeners.persisters.clone();
        async move { persisters.settled().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunnerConfig;
    use crate::logs::{LogLimits, Stream};
    use std::time::Duration;

    /// A sink that keeps the lines it is given.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl ServerLogSink for Lines {
        fn deliver(&self, server_id: &str, batch: LogBatch) -> BoxFuture<'_, bool> {
            let lines: Vec<String> = batch
                .entries()
                .map(|e| format!("{server_id}: {}", e.line()))
                .collect();
            lock(&self.0).extend(lines);
            Box::pin(std::future::ready(true))
        }
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_listener_gets_no_more_lines() {
        let dir = crate::test_support::temp_dir("listeners", "replaced");
        let config = RunnerConfig::from_json(&serde_json::Value::Null, &dir).expect("defaults");
        let runner = Runner::new(config).expect("a runner");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        let owner = LogOwner::Server {
            server_id: "srv".into(),
            deployment_id: "dep".into(),
            project_id: "proj".into(),
        };
        let (first, second) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        runner.set_server_log_listener(Arc::clone(&first) as _);
        runner.logs.open_server(owner, &log);
        log.append_lines(Stream::Stdout, ["one"]);
        until("the first line", || lock(&first.0).len() == 1).await;

        runner.set_server_log_listener(Arc::clone(&second) as _);
        log.append_lines(Stream::Stdout, ["two"]);
        until("the second listener", || lock(&second.0).len() == 1).await;
        assert_eq!(log.subscriber_count(), 1, "the first one unsubscribed");
        runner.release_listeners().await;
        assert_eq!(log.subscriber_count(), 0, "released");
        assert_eq!(*lock(&first.0), ["srv: one"]);
        assert_eq!(*lock(&second.0), ["srv: two"], "lines from when it was set");
    }
}
