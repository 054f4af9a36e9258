//! The runner's log registry: live server logs, the logs of the last stopped servers (still
//! readable, within `logMemoryLimitMb`), and the observers told about each log that opens or
//! closes (builds' logs included).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::logs::{LogObserver, LogOwner, LogStore};
use crate::sync::lock;

/// Logs of this many stopped servers stay readable.
const RETIRED_SERVERS_KEPT: usize = 100;

/// The tail of a stopped server's log that stays readable (its ring shrinks to it).
const STOPPED_LOG_BYTES: usize = 1024 * 1024;

/// Returns memory the allocator keeps after frees to the operating system, so that the host's
/// RSS comes down when logs are dropped (glibc holds freed heap pages otherwise).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Live server logs and the observers told about new ones, under one lock so that an observer
/// set while servers start sees each log exactly once.
#[derive(Default)]
struct Logs {
    observers: BTreeMap<&'static str, Arc<dyn LogObserver>>,
    live: BTreeMap<String, (LogOwner, Arc<LogStore>)>,
    retired: VecDeque<(String, Arc<LogStore>)>,
}

/// Every server log the runner keeps, and the log observers.
pub struct LogRegistry {
    logs: Mutex<Logs>,
    /// `logMemoryLimitMb`: the retired logs go, oldest first, while all logs hold more.
    memory_limit: usize,
}

impl LogRegistry {
    /// An empty registry keeping all logs within `memory_limit` bytes.
    pub fn new(memory_limit: usize) -> Self {
        LogRegistry {
            logs: Mutex::new(Logs::default()),
            memory_limit,
        }
    }

    /// Tells `observer` about every live server's log now and about each log that opens later;
    /// replaces an earlier observer of the same `name`.
    pub fn set_observer(&self, name: &'static str, observer: Arc<dyn LogObserver>) {
        let mut logs = lock(&self.logs);
        for (owner, log) in logs.live.values() {
            observer.log_opened(owner, log);
        }
        logs.observers.insert(name, observer);
    }

    /// Stops telling the observer `name` about new logs.
    pub fn clear_observer(&self, name: &'static str) {
        lock(&self.logs).observers.remove(name);
    }

    /// Tells the observers that a build's log opened.
    pub fn open_build(&self, owner: &LogOwner, log: &Arc<LogStore>) {
        for observer in lock(&self.logs).observers.values() {
            observer.log_opened(owner, log);
        }
    }

    /// Tells the observers that a build's log closed.
    pub fn close_build(&self, owner: &LogOwner) {
        for observer in lock(&self.logs).observers.values() {
            observer.log_closed(owner);
        }
    }

    /// Awaits every observer's flush, each bounded by `limit`.
    pub async fn flush_observers(&self, limit: Duration) {
        let observers: Vec<_> = lock(&self.logs).observers.values().cloned().collect();
        for observer in observers {
            if tokio::time::timeout(limit, observer.flush()).await.is_err() {
                tracing::warn!(
                    "a log observer did not flush within {} ms",
                    limit.as_millis()
                );
            }
        }
    }

    /// Opens the log of a new server and tells the observers.
    pub fn open_server(&self, owner: LogOwner, log: &Arc<LogStore>) {
        let LogOwner::Server { server_id, .. } = &owner else {
            return;
        };
        let mut logs = lock(&self.logs);
        for observer in logs.observers.values() {
            observer.log_opened(&owner, log);
        }
        logs.live
            .insert(server_id.clone(), (owner.clone(), Arc::clone(log)));
    }

    /// Moves a server's log among the retired ones (still readable, no more subscribers),
    /// tells the observers it closed, and keeps all logs within the memory limit.
    pub fn retire_server(&self, server_id: &str) {
        let mut logs = lock(&self.logs);
        let Some((owner, log)) = logs.live.remove(server_id) else {
            return;
        };
        log.close_subscriptions();
        for observer in logs.observers.values() {
            observer.log_closed(&owner);
        }
        // A stopped server keeps the tail of its log; the rest goes back to the allocator.
        log.shrink_to(STOPPED_LOG_BYTES);
        logs.retired.push_back((server_id.to_owned(), log));
        while logs.retired.len() > RETIRED_SERVERS_KEPT {
            logs.retired.pop_front();
        }
        let mut total: usize = logs.live.values().map(|(_, l)| l.bytes()).sum::<usize>()
            + logs.retired.iter().map(|(_, l)| l.bytes()).sum::<usize>();
        let mut evicted = false;
        while total > self.memory_limit {
            let Some((_, oldest)) = logs.retired.pop_front() else {
                break;
            };
            total -= oldest.bytes();
            evicted = true;
        }
        drop(logs);
        if evicted {
            release_freed_memory();
        }
    }

    /// Drops every retained log of stopped servers and gives the memory back to the OS.
    pub fn free_retired(&self) {
        lock(&self.logs).retired.clear();
        release_freed_memory();
    }

    /// The log of server `server_id`, running or among the last stopped ones.
    pub fn server_log(&self, server_id: &str) -> Option<Arc<LogStore>> {
        let logs = lock(&self.logs);
        if let Some((_, log)) = logs.live.get(server_id) {
            return Some(Arc::clone(log));
        }
        logs.retired
            .iter()
            .rev()
            .find(|(id, _)| id == server_id)
            .map(|(_, log)| Arc::clone(log))
    }
}
