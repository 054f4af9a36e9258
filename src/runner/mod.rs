//! The runner: the one object that owns what a `LocalProcessRunner` manages — builds, servers,
//! ports, logs, and the record of process groups that lets the next runner clean up after a host
//! that died.
//!
//! - [`builds`]: `build` as one call (source copy, queue, install, build), cancel and remove;
//! - [`deploy`]: port, spawn, health gate, route — a deploy hands its server to a supervisor;
//! - `drain`: a server a redeploy replaced keeps answering until its connections end, then
//!   stops (or serves again when the new one exits);
//! - `deployments`: any record of a deployment stands for it (`stop`, `healthCheck`, usage);
//! - [`data`]: each deployment's data directory and the view of its build servers run in;
//! - [`supervisor`]: one task per server that alone owns its state ([`ServerState`]);
//! - [`providers`]: the source and router traits the binding implements over JS objects;
//! - [`kept`]: under `keepServersOnExit`, the records of servers that outlive the host, which
//!   the next runner adopts ([`Runner::adopt_kept_servers`]) and [`Runner::detach`] hands over.
//!
//! Stopping one server and `shutdown` live here: a stop removes the route, asks the server's
//! supervisor to take the tree down, and resolves once nothing of it is left; `shutdown` does
//! that for every server, cancels every build, and waits for deploys and builds that were in
//! flight.

mod adoption;
pub mod builds;
pub mod data;
pub mod deploy;
mod deployments;
mod drain;
pub mod kept;
mod listeners;
pub mod providers;
mod request;
pub mod supervisor;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::lock;

use tokio::sync::{Notify, OnceCell};
use tokio::task::JoinHandle;

use crate::builder::{BuilderConfig, ProjectBuilder};
use crate::config::{DefaultSource, RunnerConfig};
use crate::error::{Error, Result};
use crate::health::{HealthChecker, HealthReport};
use crate::logs::LogStore;
use crate::ports::PortAllocator;
use crate::process::{self, Journal, ResourceMonitor, Usage};

pub use crate::logs::{LogObserver, LogOwner};
pub use crate::sync::BoxFuture;
pub use builds::BuildTicket;
pub use deploy::DeployRequest;
pub use kept::{AdoptionReport, DeadServer};
pub use listeners::{MAX_BATCH_LINES, ServerLogSink};
pub use providers::{LocalCopySource, ProjectSource, RouteRequest, Router, SourceProvider};
pub use request::{DeployTarget, RunOptions};
pub use supervisor::{HealthStatus, ServerInfo, ServerState, SupervisorHandle};

/// How long the processes found by a server's token are reused by `resource_usage` before the
/// (costly: every process's environment) scan runs again.
pub const ESCAPEE_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// When a server's token was last scanned for, and the processes found.
type EscapeeScan = (std::time::Instant, Vec<i32>);

/// The longest `getLogs` of a server just adopted waits for what its log file held.
const BACKLOG_READ_WAIT: Duration = Duration::from_secs(5);

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

/// Counts a caller can poll cheaply.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerStats {
    /// Server processes currently alive.
    pub running_processes: usize,
    /// Ports handed out to servers, ascending.
    pub allocated_ports: Vec<u16>,
    /// Ports of the range not handed out.
    pub available_ports: usize,
    /// Servers a redeploy replaced that still answer requests until their drain ends (not
    /// among `running_processes`).
    pub draining_servers: usize,
    /// Restarts made by the restart policy, all servers together.
    pub restarts: u32,
    /// Every server the runner supervises.
    pub servers: Vec<ServerInfo>,
    /// Bytes the build directories take (measured after each build, deploy and removal).
    pub build_disk_bytes: u64,
    /// Bytes the deployments' data directories take (measured with them).
    pub data_disk_bytes: u64,
    /// What the runner found of an earlier runner's kept servers; `None` without
    /// `keepServersOnExit`.
    pub adoption: Option<AdoptionReport>,
}

/// What the supervisors share with the runner.
pub struct Shared {
    /// The configuration in force.
    pub config: RunnerConfig,
    /// Ports of the range.
    pub ports: PortAllocator,
    /// The health checker built from the configuration.
    pub health: Arc<HealthChecker>,
    /// The record of live process groups for the next runner.
    pub journal: Arc<Journal>,
    /// CPU and memory samples.
    pub monitor: ResourceMonitor,
    /// Under `keepServersOnExit`, the records of the servers that outlive the host.
    pub kept: Option<Arc<kept::KeptServers>>,
}

/// One supervised server, as the runner keeps it.
struct ServerEntry {
    handle: SupervisorHandle,
    task: Option<JoinHandle<()>>,
    route_id: Option<String>,
    /// The order of the `deploy()` call that started it (later calls have higher numbers).
    deploy_order: u64,
    /// Its deploy finished: it serves its deployment (under `'replace'`, the one that does).
    serving: bool,
    /// A redeploy replaced it and it still answers the requests that reach it until its
    /// drain ends ([`deploy::Drain`]).
    draining: Option<Arc<drain::Drain>>,
    /// An adopted server's log file is being read into its log: becomes `true` once what the
    /// file held at adoption is in it.
    backlog_read: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ServerEntry {
    /// A server this runner is starting, not yet serving.
    fn new(handle: SupervisorHandle, task: JoinHandle<()>, deploy_order: u64) -> Self {
        ServerEntry {
            handle,
            task: Some(task),
            route_id: None,
            deploy_order,
            serving: false,
            draining: None,
            backlog_read: None,
        }
    }
}

/// Calls in flight (deploys, builds) of one generation; `shutdown` cancels a generation and
/// waits for its calls to end, and later calls belong to a fresh one.
#[derive(Default)]
struct Generation {
    cancelled: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
}

/// A call in flight; ends its generation's count when dropped.
struct InFlight {
    generation: Arc<Generation>,
}

impl InFlight {
    fn cancelled(&self) -> bool {
        self.generation.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.generation.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.generation.idle.notify_waiters();
        }
    }
}

/// Live server logs and the observers told about new ones, under one lock so that an observer
/// set while servers start sees each log exactly once.
#[derive(Default)]
struct LogRegistry {
    observers: BTreeMap<&'static str, Arc<dyn LogObserver>>,
    live: BTreeMap<String, (LogOwner, Arc<LogStore>)>,
    retired: VecDeque<(String, Arc<LogStore>)>,
}

/// Builds Mastra projects and supervises their servers.
pub struct Runner {
    shared: Arc<Shared>,
    leftovers_reaped: OnceCell<()>,
    servers: Mutex<BTreeMap<String, ServerEntry>>,
    /// Servers a redeploy replaced, and the deployment each served: such a stale record
    /// answers `stop`, `healthCheck` and `getResourceUsage` for its deployment's current
    /// server, as long as the deployment has a server.
    replaced: Mutex<HashMap<String, String>>,
    /// Per deployment, how many times `stop()` took it down: a deploy that began before a stop
    /// of its deployment never serves (a stop wins over a pending start).
    deployment_stops: Mutex<HashMap<String, u64>>,
    deploy_order: std::sync::atomic::AtomicU64,
    generation: Mutex<Arc<Generation>>,
    logs: Mutex<LogRegistry>,
    source: Mutex<Option<Arc<dyn SourceProvider>>>,
    router: Mutex<Option<Arc<dyn Router>>>,
    builder: ProjectBuilder,
    /// Builds between `build()` and the builder's queue (their source is being copied), with
    /// whether a cancel arrived meanwhile.
    preparing: Arc<Mutex<HashMap<String, bool>>>,
    build_dirs: Mutex<HashMap<String, std::path::PathBuf>>,
    /// The builds of each deployment, oldest first, for `retainBuilds`.
    deployment_builds: Mutex<HashMap<String, Vec<String>>>,
    /// Bytes under `buildDir` (the deployments' data included), measured after each build
    /// and removal.
    build_disk_bytes: Arc<AtomicU64>,
    /// Bytes of every deployment's data (`<buildDir>/.data`), measured after each deploy and
    /// removal of data.
    data_disk_bytes: Arc<AtomicU64>,
    /// Per server: when its token was last scanned for, and the processes found.
    escapees: Arc<Mutex<HashMap<String, EscapeeScan>>>,
    /// What [`Runner::adopt_kept_servers`] found.
    adoption: Mutex<AdoptionReport>,
    /// The observability storages set so far.
    listeners: listeners::Listeners,
}

impl Runner {
    /// A runner with a validated configuration. Nothing touches the disk yet.
    pub fn new(config: RunnerConfig) -> Result<Self> {
        tracing::debug!(build_dir = %config.build_dir.display(), "runner created");
        let journal = Arc::new(Journal::new(&config.build_dir));
        let builder = ProjectBuilder::new(BuilderConfig {
            journal: Some(Arc::clone(&journal)),
            ..BuilderConfig::from_runner_config(&config)
        });
        let source: Option<Arc<dyn SourceProvider>> = match config.default_source {
            Some(DefaultSource::Local) => Some(Arc::new(LocalCopySource)),
            None => None,
        };
        Ok(Runner {
            shared: Arc::new(Shared {
                ports: PortAllocator::new(config.port_range),
                health: Arc::new(HealthChecker::new(config.health_check.clone())?),
                journal,
                monitor: ResourceMonitor::new(),
                kept: config.keep_servers_on_exit.then(|| {
                    Arc::new(kept::KeptServers::new(&config.build_dir, config.port_range))
                }),
                config,
            }),
            leftovers_reaped: OnceCell::new(),
            servers: Mutex::new(BTreeMap::new()),
            replaced: Mutex::new(HashMap::new()),
            deployment_stops: Mutex::new(HashMap::new()),
            deploy_order: std::sync::atomic::AtomicU64::new(0),
            generation: Mutex::new(Arc::new(Generation::default())),
            logs: Mutex::new(LogRegistry::default()),
            source: Mutex::new(source),
            router: Mutex::new(None),
            builder,
            preparing: Arc::new(Mutex::new(HashMap::new())),
            build_dirs: Mutex::new(HashMap::new()),
            deployment_builds: Mutex::new(HashMap::new()),
            build_disk_bytes: Arc::new(AtomicU64::new(0)),
            data_disk_bytes: Arc::new(AtomicU64::new(0)),
            escapees: Arc::new(Mutex::new(HashMap::new())),
            adoption: Mutex::new(AdoptionReport::default()),
            listeners: listeners::Listeners::default(),
        })
    }

    /// The configuration the runner works with.
    pub fn config(&self) -> &RunnerConfig {
        &self.shared.config
    }

    /// Copies projects for builds with `source` from now on.
    pub fn set_source(&self, source: Arc<dyn SourceProvider>) {
        *lock(&self.source) = Some(source);
    }

    /// Routes deployed servers through `router` from now on.
    pub fn set_router(&self, router: Arc<dyn Router>) {
        *lock(&self.router) = Some(router);
    }

    /// Tells `observer` about every live server's log now, and about each new server's and
    /// build's log from the moment it opens. Replaces an earlier observer of the same `name`.
    pub fn set_log_observer(&self, name: &'static str, observer: Arc<dyn LogObserver>) {
        let mut logs = lock(&self.logs);
        for (owner, log) in logs.live.values() {
            observer.log_opened(owner, log);
        }
        logs.observers.insert(name, observer);
    }

    /// Stops telling the observer `name` about new logs.
    pub fn clear_log_observer(&self, name: &'static str) {
        lock(&self.logs).observers.remove(name);
    }

    /// Tells the observers that a build's log opened.
    fn open_build_log(&self, owner: &LogOwner, log: &Arc<LogStore>) {
        for observer in lock(&self.logs).observers.values() {
            observer.log_opened(owner, log);
        }
    }

    /// Tells the observers that a build's log closed.
    fn close_build_log(&self, owner: &LogOwner) {
        for observer in lock(&self.logs).observers.values() {
            observer.log_closed(owner);
        }
    }

    /// Awaits every observer's flush, each bounded by `providerTimeoutMs`.
    async fn flush_log_observers(&self) {
        let observers: Vec<_> = lock(&self.logs).observers.values().cloned().collect();
        let limit = self.config().provider_timeout;
        for observer in observers {
            if tokio::time::timeout(limit, observer.flush()).await.is_err() {
                tracing::warn!(
                    "a log observer did not flush within {} ms",
                    limit.as_millis()
                );
            }
        }
    }

    /// Kills, once per runner and before any port is handed out, what runners of dead hosts
    /// left alive on the same `buildDir`.
    pub async fn reap_leftovers(&self) {
        self.leftovers_reaped
            .get_or_init(|| async {
                let build_dir = self.config().build_dir.clone();
                let report =
                    tokio::task::spawn_blocking(move || process::reap_leftovers(&build_dir)).await;
                if let Err(error) = report {
                    tracing::warn!("checking for leftover processes failed: {error}");
                }
            })
            .await;
    }

    /// Counts a call in flight, so that `shutdown` can cancel it and wait for it.
    fn begin_call(&self) -> InFlight {
        let generation = Arc::clone(&lock(&self.generation));
        generation.active.fetch_add(1, Ordering::SeqCst);
        InFlight { generation }
    }

    /// Opens the log of a new server and tells the observers.
    fn open_server_log(&self, owner: LogOwner, log: &Arc<LogStore>) {
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
    /// tells the observers it closed, and keeps all logs within `logMemoryLimitMb`.
    fn retire_server_log(&self, server_id: &str) {
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
        let limit = self.config().log_memory_limit;
        let mut total: usize = logs.live.values().map(|(_, l)| l.bytes()).sum::<usize>()
            + logs.retired.iter().map(|(_, l)| l.bytes()).sum::<usize>();
        let mut evicted = false;
        while total > limit {
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
    fn free_retired_logs(&self) {
        lock(&self.logs).retired.clear();
        release_freed_memory();
    }

    /// A snapshot of server `server_id`.
    pub fn server(&self, server_id: &str) -> Option<ServerInfo> {
        lock(&self.servers).get(server_id).map(|s| s.handle.info())
    }

    fn handle(&self, server_id: &str) -> Option<SupervisorHandle> {
        lock(&self.servers).get(server_id).map(|s| s.handle.clone())
    }

    /// The live servers whose deploy finished, with their current health (one per deployment
    /// under `redeploy: 'replace'`).
    pub fn list_servers(&self) -> Vec<ServerInfo> {
        lock(&self.servers)
            .values()
            .filter(|entry| entry.serving)
            .map(|entry| entry.handle.info())
            .filter(ServerInfo::is_live)
            .collect()
    }

    /// Stops server `server_id` alone: removes its route (a failing router is reported, not
    /// fatal), takes its tree down, and forgets it; `by` names who asked, for its log.
    async fn stop_by(&self, server_id: &str, by: &'static str) -> Option<ServerInfo> {
        let (handle, route_id) = {
            let mut servers = lock(&self.servers);
            let entry = servers.get_mut(server_id)?;
            (entry.handle.clone(), entry.route_id.take())
        };
        let router = lock(&self.router).clone();
        if let (Some(route_id), Some(router)) = (route_id, router) {
            let removal = tokio::time::timeout(
                self.config().provider_timeout,
                router.remove_route(&route_id),
            )
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} ms",
                    self.config().provider_timeout.as_millis()
                ))
            });
            if let Err(why) = removal {
                tracing::warn!(
                    "router failed to remove route '{route_id}' of server '{server_id}': {why}"
                );
            }
        }
        handle.stop(by).await;
        self.forget_server(server_id).await;
        Some(handle.info())
    }

    /// Drops a server that is down for good from the live set and joins its task. Once its
    /// deployment has no server left, the records a redeploy replaced stop answering for it.
    async fn forget_server(&self, server_id: &str) {
        lock(&self.escapees).remove(server_id);
        let task = {
            let mut servers = lock(&self.servers);
            let entry = servers.remove(server_id);
            if let Some(entry) = &entry {
                let deployment_id = entry.handle.info().deployment_id;
                if !servers
                    .values()
                    .any(|other| other.handle.info().deployment_id == deployment_id)
                {
                    lock(&self.replaced).retain(|_, deployment| *deployment != deployment_id);
                }
            }
            entry.and_then(|mut entry| entry.task.take())
        };
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::warn!(server = server_id, "supervisor task failed: {error}");
        }
        self.retire_server_log(server_id);
    }

    /// One health check of server `server_id` (`Process is not running` once it is gone); a
    /// record a redeploy replaced is answered for by its deployment's current server.
    pub async fn health_check(&self, server_id: &str) -> HealthReport {
        let answering = self.answering_server(server_id);
        match answering.and_then(|id| self.handle(&id)) {
            Some(handle) => handle.check_health().await,
            None => HealthReport {
                healthy: false,
                message: Some("Process is not running".to_owned()),
            },
        }
    }

    /// The log of server `server_id` once it holds every line known of it: for a server just
    /// adopted, what its log file held at adoption (waited for up to `BACKLOG_READ_WAIT`).
    pub async fn settled_server_log(&self, server_id: &str) -> Option<Arc<LogStore>> {
        let backlog = lock(&self.servers)
            .get(server_id)
            .and_then(|entry| entry.backlog_read.clone());
        if let Some(mut read) = backlog {
            let _ = tokio::time::timeout(BACKLOG_READ_WAIT, read.wait_for(|done| *done)).await;
        }
        self.server_log(server_id)
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

    /// Memory and CPU of server `server_id`'s whole tree, and of its processes that left the
    /// tree (found by its token, looked for at most every [`ESCAPEE_SCAN_EVERY`]); `None` once it
    /// is gone. Read on the blocking pool; a caller that must stay quick tries
    /// [`Self::resource_usage_now`] first.
    pub async fn resource_usage(&self, server_id: &str) -> Option<Usage> {
        let server_id = &self.answering_server(server_id)?;
        let info = self.server(server_id)?;
        let pid = info.pid? as i32;
        let known = self.known_escapees(server_id);
        let shared = Arc::clone(&self.shared);
        let escapees = Arc::clone(&self.escapees);
        let id = server_id.to_owned();
        // A large tree, or the look for escapees (every process's environment), may block.
        tokio::task::spawn_blocking(move || {
            let others = known.unwrap_or_else(|| {
                let found = process::ownership::processes_with_token(&info.token);
                lock(&escapees).insert(id, (std::time::Instant::now(), found.clone()));
                found
            });
            shared.monitor.sample_with(pid, &others)
        })
        .await
        .ok()
        .flatten()
    }

    /// [`Self::resource_usage`] on the calling thread, when that is quick: the server's escapees
    /// were looked for less than [`ESCAPEE_SCAN_EVERY`] ago and the sample reads only the
    /// `stat` and `children` files of a few processes (tens of microseconds, the kind of read
    /// Node's `process.memoryUsage()` does on its JS thread); `None` otherwise.
    pub fn resource_usage_now(&self, server_id: &str) -> Option<Option<Usage>> {
        let Some(server_id) = self.answering_server(server_id) else {
            return Some(None);
        };
        let server_id = &server_id;
        let Some(info) = self.server(server_id) else {
            return Some(None);
        };
        let Some(pid) = info.pid else {
            return Some(None);
        };
        let others = self.known_escapees(server_id)?;
        self.shared.monitor.quick_sample_with(pid as i32, &others)
    }

    /// The processes of server `server_id` that left its tree, if looked for recently.
    fn known_escapees(&self, server_id: &str) -> Option<Vec<i32>> {
        lock(&self.escapees)
            .get(server_id)
            .filter(|(at, _)| at.elapsed() < ESCAPEE_SCAN_EVERY)
            .map(|(_, pids)| pids.clone())
    }

    /// Current counts of processes, ports and restarts; servers that a redeploy replaced and
    /// that still drain are counted apart from the running ones.
    pub fn stats(&self) -> RunnerStats {
        let (servers, draining): (Vec<ServerInfo>, Vec<bool>) = lock(&self.servers)
            .values()
            .map(|s| (s.handle.info(), s.draining.is_some()))
            .unzip();
        let with_process = |drains: bool| {
            servers
                .iter()
                .zip(&draining)
                .filter(|(s, d)| s.pid.is_some() && **d == drains)
                .count()
        };
        RunnerStats {
            running_processes: with_process(false),
            draining_servers: with_process(true),
            allocated_ports: self.shared.ports.allocated_ports(),
            available_ports: self.shared.ports.available_count(),
            restarts: servers.iter().map(|s| s.restarts).sum(),
            servers,
            build_disk_bytes: self.build_disk_bytes.load(Ordering::Relaxed),
            data_disk_bytes: self.data_disk_bytes.load(Ordering::Relaxed),
            adoption: self
                .shared
                .kept
                .as_ref()
                .map(|_| lock(&self.adoption).clone()),
        }
    }

    /// Stops every server at once and cancels every build, including deploys and builds that
    /// were in flight when it was called (copying a source, allocating a port, spawning, waiting
    /// for health); resolves when no process of any is left and every port is released. Calls
    /// made after it start afresh.
    pub async fn shutdown(&self) {
        let generation = self.cancel_calls_in_flight();
        let ids: Vec<String> = lock(&self.servers).keys().cloned().collect();
        let stops = ids.iter().map(|id| self.stop_by(id, "shutdown()"));
        let cancels = self.builder.cancel_all();
        tokio::join!(futures_join_all(stops), cancels);
        self.flush_log_observers().await;
        Self::wait_idle(&generation).await;
        self.free_retired_logs();
        lock(&self.replaced).clear();
        tracing::debug!("runner shut down");
    }

    /// Cancels the calls in flight (deploys, builds being prepared) and returns their
    /// generation; later calls belong to a fresh one.
    fn cancel_calls_in_flight(&self) -> Arc<Generation> {
        let generation = {
            // Under the servers lock: a deploy registers its server under the same lock after
            // checking its generation, so each one is either stopped by the caller or stops
            // itself. Drains end too: the caller takes their servers down.
            let servers = lock(&self.servers);
            for drain in servers.values().filter_map(|entry| entry.draining.as_ref()) {
                drain.cancel();
            }
            let mut current = lock(&self.generation);
            let old = std::mem::take(&mut *current);
            old.cancelled.store(true, Ordering::SeqCst);
            old
        };
        for cancelled in lock(&self.preparing).values_mut() {
            *cancelled = true;
        }
        generation
    }

    /// Waits until every call of `generation` has ended.
    async fn wait_idle(generation: &Generation) {
        loop {
            let idle = generation.idle.notified();
            if generation.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
    }
}

/// Awaits every future of `futures` concurrently and returns their outputs in order.
async fn futures_collect<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Awaits every future of `futures` concurrently.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) {
    futures_collect(futures).await;
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("build_dir", &self.config().build_dir)
            .field("servers", &lock(&self.servers).len())
            .finish_non_exhaustive()
    }
}

/// The error of a deploy that `shutdown()` cancelled before its server was registered.
fn interrupted(port: u16) -> Error {
    Error::DeployInterrupted {
        port,
        by: "shutdown()".to_owned(),
    }
}
