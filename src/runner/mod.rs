//! The runner: a thin facade over the owners of what a `LocalProcessRunner` manages. Each
//! owner has its own lock(s) and a small surface; the facade's methods, here and in the files
//! of each verb, compose them:
//!
//! - `servers` (`Servers`): the registry of supervised servers by id, the ports they hold
//!   (`lease`: one `PortLease` per port, given back in one place), and the cache of their
//!   escaped processes;
//! - `deployments` (`Deployments`): which server serves each deployment, routes,
//!   the records a redeploy replaced, drains, and `stop()` counts; any record of a deployment
//!   stands for it (`stop`, `healthCheck`, usage);
//! - [`builds`] ([`Builds`]): `build` as one call (source copy, queue, install,
//!   build), cancel and remove, build directories and `retainBuilds`;
//! - `log_registry`: live and retired server logs, and the log observers;
//! - `calls`: deploys and builds in flight, which `shutdown()` cancels and waits for.
//!
//! The verbs: [`deploy`] (port, spawn, health gate, route; a deploy hands its server to a
//! supervisor, and `start` undoes a failed start), `drain` (a server a redeploy replaced keeps
//! answering until its connections end, then stops, or serves again when the new one exits),
//! [`data`] (each deployment's data directory and the view of its build servers run in),
//! `adoption` (`keepServersOnExit`: [`Runner::adopt_kept_servers`], [`Runner::detach`]).
//! Beside them: [`supervisor`], one task per server that alone owns its state
//! ([`ServerState`]); [`providers`], the source and router traits the binding implements over
//! JS objects; [`kept`], the records of servers that outlive the host.
//!
//! Stopping one server and `shutdown` live here: a stop removes the route, asks the server's
//! supervisor to take the tree down, and resolves once nothing of it is left; `shutdown` does
//! that for every server, cancels every build, and waits for deploys and builds that were in
//! flight.

mod adoption;
pub mod builds;
mod calls;
pub mod data;
pub mod deploy;
mod deployments;
mod drain;
pub mod kept;
mod lease;
mod listeners;
mod log_registry;
pub mod providers;
mod request;
mod servers;
mod start;
pub mod supervisor;

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::builder::{BuilderConfig, ProjectBuilder};
use crate::config::{DefaultSource, RunnerConfig};
use crate::error::{Error, Result};
use crate::health::{HealthChecker, HealthReport};
use crate::isolation::{Isolation, IsolationReport};
use crate::logs::LogStore;
use crate::process::{self, Journal, ResourceMonitor, Usage};

use builds::Builds;
use calls::Calls;
use deployments::Deployments;
use lease::PortLeases;
use log_registry::LogRegistry;
use servers::Servers;

pub use crate::logs::{LogObserver, LogOwner};
pub use crate::sync::BoxFuture;
pub use builds::BuildTicket;
pub use deploy::DeployRequest;
pub use kept::{AdoptionReport, DeadServer};
pub use listeners::{MAX_BATCH_LINES, ServerLogSink};
pub use providers::{LocalCopySource, ProjectSource, RouteRequest, Router, SourceProvider};
pub use request::{DeployTarget, RunOptions};
pub use servers::ESCAPEE_SCAN_EVERY;
pub use supervisor::{HealthStatus, ServerInfo, ServerState, SupervisorHandle};

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
    /// What isolates servers and builds, and why something is off.
    pub isolation: IsolationReport,
    /// The build cache's size and what it served.
    pub build_cache: BuildCacheReport,
}

/// `getStats().buildCache`: the snapshots' size, their bound, and what they served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCacheReport {
    /// The store's figures (zero until the first build opened it).
    pub stats: crate::builder::reuse::CacheStats,
    /// Its bound, in bytes (`buildCache.maxMb`).
    pub max_bytes: u64,
}

/// What the supervisors share with the runner.
pub struct Shared {
    /// The configuration in force.
    pub config: RunnerConfig,
    /// Ports of the range, each leased to one server.
    pub ports: Arc<PortLeases>,
    /// The health checker built from the configuration.
    pub health: Arc<HealthChecker>,
    /// The record of live process groups for the next runner.
    pub journal: Arc<Journal>,
    /// CPU and memory samples.
    pub monitor: ResourceMonitor,
    /// Under `keepServersOnExit`, the records of the servers that outlive the host.
    pub kept: Option<Arc<kept::KeptServers>>,
    /// Whether servers outlive the runner, and what that takes (chosen once, from `kept`).
    pub keeping: Arc<dyn supervisor::Keeping>,
    /// The sandbox and limits of servers and builds.
    pub isolation: Isolation,
}

/// Builds Mastra projects and supervises their servers: a facade over the owners.
pub struct Runner {
    shared: Arc<Shared>,
    leftovers_reaped: OnceCell<()>,
    servers: Arc<Servers>,
    deployments: Deployments,
    builds: Builds,
    logs: LogRegistry,
    calls: Calls,
    /// The server-log listener and the observability storages set so far.
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
        let ports = Arc::new(PortLeases::new(config.port_range));
        let kept = config
            .keep_servers_on_exit
            .then(|| Arc::new(kept::KeptServers::new(&config.build_dir, config.port_range)));
        let keeping = supervisor::keeping_for(kept.as_ref(), &journal, config.log_file_max_bytes);
        let servers = Arc::new(Servers::new(Arc::clone(&ports)));
        let live = Arc::downgrade(&servers);
        // A live server's build keeps its snapshots whatever the cache's bound.
        builder
            .build_cache()
            .set_in_use(Arc::new(move |build_id: &str| {
                live.upgrade().is_some_and(|servers| {
                    servers
                        .live_server_where(|info| info.build_id == build_id)
                        .is_some()
                })
            }));
        Ok(Runner {
            servers,
            deployments: Deployments::default(),
            builds: Builds::new(builder, source),
            logs: LogRegistry::new(config.log_memory_limit),
            calls: Calls::default(),
            listeners: listeners::Listeners::default(),
            leftovers_reaped: OnceCell::new(),
            shared: Arc::new(Shared {
                ports,
                health: Arc::new(HealthChecker::new(config.health_check.clone())?),
                journal,
                monitor: ResourceMonitor::new(),
                kept,
                keeping,
                isolation: Isolation::new(&config.sandbox, &config.build_dir),
                config,
            }),
        })
    }

    /// The configuration the runner works with.
    pub fn config(&self) -> &RunnerConfig {
        &self.shared.config
    }

    /// Copies projects for builds with `source` from now on.
    pub fn set_source(&self, source: Arc<dyn SourceProvider>) {
        self.builds.set_source(source);
    }

    /// Routes deployed servers through `router` from now on.
    pub fn set_router(&self, router: Arc<dyn Router>) {
        self.deployments.set_router(router);
    }

    /// Tells `observer` about every live server's log now, and about each new server's and
    /// build's log from the moment it opens. Replaces an earlier observer of the same `name`.
    pub fn set_log_observer(&self, name: &'static str, observer: Arc<dyn LogObserver>) {
        self.logs.set_observer(name, observer);
    }

    /// Stops telling the observer `name` about new logs.
    pub fn clear_log_observer(&self, name: &'static str) {
        self.logs.clear_observer(name);
    }

    /// Awaits every observer's flush, each bounded by `providerTimeoutMs`.
    async fn flush_log_observers(&self) {
        self.logs
            .flush_observers(self.config().provider_timeout)
            .await;
    }

    /// Kills, once per runner and before any port is handed out, what runners of dead hosts
    /// left alive on the same `buildDir`, then removes the private temporary directories they
    /// left (those no live runner holds).
    pub async fn reap_leftovers(&self) {
        self.leftovers_reaped
            .get_or_init(|| async {
                let build_dir = self.config().build_dir.clone();
                let report = tokio::task::spawn_blocking(move || {
                    let report = process::reap_leftovers(&build_dir);
                    crate::isolation::private_tmp::sweep(&build_dir);
                    report
                })
                .await;
                if let Err(error) = report {
                    tracing::warn!("checking for leftover processes failed: {error}");
                }
            })
            .await;
    }

    /// A snapshot of server `server_id`.
    pub fn server(&self, server_id: &str) -> Option<ServerInfo> {
        self.servers.info(server_id)
    }

    /// The live servers whose deploy finished, with their current health (one per deployment
    /// under `redeploy: 'replace'`).
    pub fn list_servers(&self) -> Vec<ServerInfo> {
        let serving = self.deployments.serving_ids();
        self.servers
            .infos()
            .into_iter()
            .filter(|info| serving.contains(&info.id) && info.is_live())
            .collect()
    }

    /// Stops server `server_id` alone: removes its route (a failing router is reported, not
    /// fatal), takes its tree down, and forgets it; `by` names who asked, for its log.
    async fn stop_by(&self, server_id: &str, by: &'static str) -> Option<ServerInfo> {
        let handle = self.servers.handle(server_id)?;
        let route_id = self.deployments.take_route(server_id);
        let router = self.deployments.router();
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

    /// Drops a server that is down for good from the registry and its deployment, joins its
    /// task, and retires its log.
    async fn forget_server(&self, server_id: &str) {
        let task = self.servers.remove(server_id);
        self.deployments.forget(server_id);
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::warn!(server = server_id, "supervisor task failed: {error}");
        }
        self.logs.retire_server(server_id);
    }

    /// One health check of server `server_id` (`Process is not running` once it is gone); a
    /// record a redeploy replaced is answered for by its deployment's current server.
    pub async fn health_check(&self, server_id: &str) -> HealthReport {
        let answering = self.deployments.answering(server_id);
        match answering.and_then(|id| self.servers.handle(&id)) {
            Some(handle) => handle.check_health().await,
            None => HealthReport {
                healthy: false,
                message: Some("Process is not running".to_owned()),
            },
        }
    }

    /// The log of server `server_id` once it holds every line known of it: for a server just
    /// adopted, what its log file held at adoption (waited for a few seconds at most).
    pub async fn settled_server_log(&self, server_id: &str) -> Option<Arc<LogStore>> {
        self.servers.backlog_read(server_id).await;
        self.server_log(server_id)
    }

    /// The log of server `server_id`, running or among the last stopped ones.
    pub fn server_log(&self, server_id: &str) -> Option<Arc<LogStore>> {
        self.logs.server_log(server_id)
    }

    /// Memory and CPU of server `server_id`'s whole tree, and of its processes that left the
    /// tree (found by its token, looked for at most every [`ESCAPEE_SCAN_EVERY`]); `None` once it
    /// is gone. Read on the blocking pool; a caller that must stay quick tries
    /// [`Self::resource_usage_now`] first.
    pub async fn resource_usage(&self, server_id: &str) -> Option<Usage> {
        let server_id = self.deployments.answering(server_id)?;
        self.servers.resource_usage(&server_id, &self.shared).await
    }

    /// [`Self::resource_usage`] on the calling thread, when that is quick: the server's escapees
    /// were looked for less than [`ESCAPEE_SCAN_EVERY`] ago and the sample reads only the
    /// `stat` and `children` files of a few processes (tens of microseconds, the kind of read
    /// Node's `process.memoryUsage()` does on its JS thread); `None` otherwise.
    pub fn resource_usage_now(&self, server_id: &str) -> Option<Option<Usage>> {
        let Some(server_id) = self.deployments.answering(server_id) else {
            return Some(None);
        };
        self.servers.resource_usage_now(&server_id, &self.shared)
    }

    /// Current counts of processes, ports and restarts; servers that a redeploy replaced and
    /// that still drain are counted apart from the running ones.
    pub fn stats(&self) -> RunnerStats {
        let servers = self.servers.infos();
        let draining = self.deployments.draining_ids();
        let with_process = |drains: bool| {
            servers
                .iter()
                .filter(|s| s.pid.is_some() && draining.contains(&s.id) == drains)
                .count()
        };
        RunnerStats {
            running_processes: with_process(false),
            draining_servers: with_process(true),
            allocated_ports: self.servers.ports().allocated_ports(),
            available_ports: self.servers.ports().available_count(),
            restarts: servers.iter().map(|s| s.restarts).sum(),
            servers,
            build_disk_bytes: self.builds.disk_bytes(),
            data_disk_bytes: self
                .deployments
                .data_disk_bytes()
                .load(std::sync::atomic::Ordering::Relaxed),
            adoption: self.shared.kept.as_ref().map(|_| self.servers.adoption()),
            isolation: self.shared.isolation.report(),
            build_cache: self.builds.cache_report(),
        }
    }

    /// Stops every server at once and cancels every build, including deploys and builds that
    /// were in flight when it was called (copying a source, allocating a port, spawning, waiting
    /// for health); resolves when no process of any is left and every port is released. Calls
    /// made after it start afresh.
    pub async fn shutdown(&self) {
        let generation = self.cancel_calls_in_flight();
        let ids = self.servers.ids();
        let stops = ids.iter().map(|id| self.stop_by(id, "shutdown()"));
        tokio::join!(futures_join_all(stops), self.builds.cancel_all());
        self.flush_log_observers().await;
        generation.wait_idle().await;
        self.logs.free_retired();
        self.deployments.forget_all_replaced();
        tracing::debug!("runner shut down");
    }

    /// Cancels the calls in flight (deploys, builds being prepared) and returns their
    /// generation; later calls belong to a fresh one.
    fn cancel_calls_in_flight(&self) -> Arc<calls::Generation> {
        // While no server can be registered: a deploy registers its server after checking its
        // generation, so each one is either stopped by the caller or stops itself. Drains end
        // too: the caller takes their servers down.
        let generation = self.servers.exclusive(|| {
            self.deployments.cancel_drains();
            self.calls.cancel()
        });
        self.builds.cancel_preparing();
        generation
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
            .field("servers", &self.servers.count())
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
