//! The servers registry: each supervised server's handle and task by id, the ports they hold
//! ([`PortLeases`]), what `getResourceUsage` found of their escaped processes, and what the
//! adoption of kept servers found. Which server serves which deployment is not here but in
//! [`super::deployments::Deployments`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::kept::AdoptionReport;
use super::lease::PortLeases;
use super::supervisor::{ServerInfo, SupervisorHandle};
use crate::process::{self, Usage};
use crate::sync::lock;

/// How long the processes found by a server's token are reused by `resource_usage` before the
/// (costly: every process's environment) scan runs again.
pub const ESCAPEE_SCAN_EVERY: Duration = Duration::from_secs(5);

/// The longest `getLogs` of a server just adopted waits for what its log file held.
const BACKLOG_READ_WAIT: Duration = Duration::from_secs(5);

/// When a server's token was last scanned for, and the processes found.
type EscapeeScan = (Instant, Vec<i32>);

/// One supervised server, as the registry keeps it.
pub struct ServerEntry {
    handle: SupervisorHandle,
    task: Option<JoinHandle<()>>,
    /// An adopted server's log file is being read into its log: becomes `true` once what the
    /// file held at adoption is in it.
    backlog_read: Option<watch::Receiver<bool>>,
}

impl ServerEntry {
    /// A server whose supervisor runs `task`; `backlog_read` for an adopted one.
    pub fn new(
        handle: SupervisorHandle,
        task: JoinHandle<()>,
        backlog_read: Option<watch::Receiver<bool>>,
    ) -> Self {
        ServerEntry {
            handle,
            task: Some(task),
            backlog_read,
        }
    }
}

/// Every server the runner supervises.
pub struct Servers {
    entries: Mutex<BTreeMap<String, ServerEntry>>,
    ports: Arc<PortLeases>,
    /// Per server: when its token was last scanned for, and the processes found.
    escapees: Arc<Mutex<HashMap<String, EscapeeScan>>>,
    /// What the adoption of kept servers found.
    adoption: Mutex<AdoptionReport>,
}

impl Servers {
    /// An empty registry over `ports`.
    pub fn new(ports: Arc<PortLeases>) -> Self {
        Servers {
            entries: Mutex::new(BTreeMap::new()),
            ports,
            escapees: Arc::new(Mutex::new(HashMap::new())),
            adoption: Mutex::new(AdoptionReport::default()),
        }
    }

    /// The ports servers hold (the supervisors reach them through [`Shared`]).
    pub fn ports(&self) -> &Arc<PortLeases> {
        &self.ports
    }

    /// A snapshot of server `server_id`.
    pub fn info(&self, server_id: &str) -> Option<ServerInfo> {
        lock(&self.entries).get(server_id).map(|s| s.handle.info())
    }

    /// The supervisor of server `server_id`.
    pub fn handle(&self, server_id: &str) -> Option<SupervisorHandle> {
        lock(&self.entries).get(server_id).map(|s| s.handle.clone())
    }

    /// Snapshots of every server, in id order.
    pub fn infos(&self) -> Vec<ServerInfo> {
        lock(&self.entries)
            .values()
            .map(|s| s.handle.info())
            .collect()
    }

    /// The ids of every server.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.entries).keys().cloned().collect()
    }

    /// The ids of the servers not down for good.
    pub fn live_ids(&self) -> HashSet<String> {
        self.infos()
            .into_iter()
            .filter(ServerInfo::is_live)
            .map(|info| info.id)
            .collect()
    }

    /// A live server (not down for good) for which `matches` holds.
    pub fn live_server_where(&self, matches: impl Fn(&ServerInfo) -> bool) -> Option<String> {
        lock(&self.entries)
            .values()
            .map(|entry| entry.handle.info())
            .find(|info| info.is_live() && matches(info))
            .map(|info| info.id)
    }

    /// Adds `entry` as `server_id` when `admit` (run under the registry's lock) agrees; returns
    /// whether it did. See [`Self::exclusive`] for what that lock orders.
    pub fn register(
        &self,
        server_id: &str,
        entry: ServerEntry,
        admit: impl FnOnce() -> bool,
    ) -> bool {
        let mut entries = lock(&self.entries);
        let admitted = admit();
        if admitted {
            entries.insert(server_id.to_owned(), entry);
        }
        admitted
    }

    /// Runs `cancel` while no server can be registered: a deploy registers its server after
    /// checking (under the same lock) that its call was not cancelled, so each server is
    /// either among those a `shutdown()` that cancels calls here then stops, or stops itself.
    pub fn exclusive<R>(&self, cancel: impl FnOnce() -> R) -> R {
        let _entries = lock(&self.entries);
        cancel()
    }

    /// Drops server `server_id` from the registry (and its escapee scan); returns its task, to
    /// be joined, when there was one.
    pub fn remove(&self, server_id: &str) -> Option<JoinHandle<()>> {
        lock(&self.escapees).remove(server_id);
        lock(&self.entries)
            .remove(server_id)
            .and_then(|mut entry| entry.task.take())
    }

    /// Waits (up to `BACKLOG_READ_WAIT`) until an adopted server's log holds what its log file
    /// held at adoption; returns at once for any other server.
    pub async fn backlog_read(&self, server_id: &str) {
        let backlog = lock(&self.entries)
            .get(server_id)
            .and_then(|entry| entry.backlog_read.clone());
        if let Some(mut read) = backlog {
            let _ = tokio::time::timeout(BACKLOG_READ_WAIT, read.wait_for(|done| *done)).await;
        }
    }

    /// How many servers are registered.
    pub fn count(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Records what the adoption of kept servers found.
    pub fn set_adoption(&self, report: AdoptionReport) {
        *lock(&self.adoption) = report;
    }

    /// What the adoption of kept servers found.
    pub fn adoption(&self) -> AdoptionReport {
        lock(&self.adoption).clone()
    }

    /// Memory and CPU of server `server_id`'s whole tree and of its processes that left the
    /// tree (found by its token, looked for at most every [`ESCAPEE_SCAN_EVERY`]), read on the
    /// blocking pool; `None` once it is gone.
    pub async fn resource_usage(&self, server_id: &str, shared: &Arc<Shared>) -> Option<Usage> {
        let info = self.info(server_id)?;
        let pid = info.pid? as i32;
        if let Some(usage) = group_usage(shared, server_id) {
            return Some(usage);
        }
        let known = self.known_escapees(server_id);
        let shared = Arc::clone(shared);
        let escapees = Arc::clone(&self.escapees);
        let id = server_id.to_owned();
        // A large tree, or the look for escapees (every process's environment), may block.
        tokio::task::spawn_blocking(move || {
            let others = known.unwrap_or_else(|| {
                let found = process::ownership::processes_with_token(&info.token);
                lock(&escapees).insert(id, (Instant::now(), found.clone()));
                found
            });
            shared.monitor.sample_with(pid, &others)
        })
        .await
        .ok()
        .flatten()
    }

    /// [`Self::resource_usage`] on the calling thread when it is quick (see
    /// [`super::Runner::resource_usage_now`]); `None` otherwise.
    pub fn resource_usage_now(&self, server_id: &str, shared: &Shared) -> Option<Option<Usage>> {
        let Some(info) = self.info(server_id) else {
            return Some(None);
        };
        let Some(pid) = info.pid else {
            return Some(None);
        };
        if let Some(usage) = group_usage(shared, server_id) {
            return Some(Some(usage));
        }
        let others = self.known_escapees(server_id)?;
        shared.monitor.quick_sample_with(pid as i32, &others)
    }

    /// The processes of server `server_id` that left its tree, if looked for recently.
    fn known_escapees(&self, server_id: &str) -> Option<Vec<i32>> {
        lock(&self.escapees)
            .get(server_id)
            .filter(|(at, _)| at.elapsed() < ESCAPEE_SCAN_EVERY)
            .map(|(_, pids)| pids.clone())
    }
}

/// Server `server_id`'s usage as its cgroup counts it (every process, escapees included: a few
/// small reads), when it has a cgroup that counts CPU time.
fn group_usage(shared: &Shared, server_id: &str) -> Option<Usage> {
    let usage = shared.isolation.groups.usage(server_id)?;
    Some(Usage {
        memory_mb: usage.memory_mb,
        cpu_percent: usage.cpu_percent,
        processes: usage.processes,
    })
}
