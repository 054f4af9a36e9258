//! The runner: the one object that owns everything a `LocalProcessRunner` manages — ports,
//! server processes and their logs, health, restarts, and the record of process groups that
//! lets the next runner clean up after a host that died.
//!
//! # Deploy, supervise, stop
//! `deploy` allocates a port, starts `node .mastra/output/index.mjs` in the build's directory
//! and waits for health while watching the process: an exit during the wait fails the deploy
//! at once with the exit status and the last output lines. A supervisor task per server then
//! notices an exit the moment it happens, marks the server unhealthy and, with a restart
//! policy, starts it again on the same port after a backoff. `stop` kills the whole tree and
//! releases the port only once nothing of it is left.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OnceCell;

use crate::build::{BuildOutcome, BuildRequest, BuildStatus, BuilderConfig, ProjectBuilder};
use crate::config::RunnerConfig;
use crate::error::{Error, Result};
use crate::health::{HealthChecker, HealthReport};
use crate::logs::{LogLimits, LogStore, Stream, join_text};
use crate::ports::PortAllocator;
use crate::process::{
    self, ExitInfo, Journal, ProcessHandle, ProcessManager, ResourceMonitor, SpawnSpec, Usage,
};
use crate::source::LocalSource;
use crate::validate;

/// Logs of this many stopped servers stay readable.
const RETIRED_SERVERS_KEPT: usize = 100;

/// Output lines quoted when a server fails to start.
const FAILURE_OUTPUT_LINES: usize = 20;

/// Where a server stands, as `RunningServer.healthStatus` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Started, not yet answering its health check.
    Starting,
    /// Answered its last health check.
    Healthy,
    /// Exited, or failed its last health check.
    Unhealthy,
    /// Being stopped.
    Stopping,
}

impl HealthStatus {
    /// The name JS sees.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Stopping => "stopping",
        }
    }
}

/// What a deploy needs.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The project's id.
    pub project_id: String,
    /// The deployment's id.
    pub deployment_id: String,
    /// The build to run.
    pub build_id: String,
    /// Extra variables for the server (`RunOptions.envVars`).
    pub env: BTreeMap<String, String>,
    /// Preferred port (`RunOptions.port`).
    pub port: Option<u16>,
    /// Overall time to wait for health (`RunOptions.healthCheckTimeoutMs`).
    pub health_timeout: Option<Duration>,
    /// The Node.js binary that runs the server (the host's `process.execPath`).
    pub node: PathBuf,
}

/// A snapshot of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// The server's id.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// The build it runs.
    pub build_id: String,
    /// The current process id, while one runs.
    pub pid: Option<u32>,
    /// Always `127.0.0.1`.
    pub host: String,
    /// The port it listens on.
    pub port: u16,
    /// Its health.
    pub health: HealthStatus,
    /// When its health was last checked.
    pub last_health_check: Option<SystemTime>,
    /// When it was deployed.
    pub started_at: SystemTime,
    /// When it stopped, once it has.
    pub stopped_at: Option<SystemTime>,
    /// Restarts made by the restart policy.
    pub restarts: u32,
    /// The router's id for its route, when one was registered.
    pub route_id: Option<String>,
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
    /// Restarts made by the restart policy, all servers together.
    pub restarts: u32,
    /// Every server the runner supervises.
    pub servers: Vec<ServerInfo>,
}

#[derive(Debug)]
struct Server {
    info: ServerInfo,
    spec: SpawnSpec,
    log: Arc<LogStore>,
    handle: ProcessHandle,
    /// Set once `stop` (or shutdown) took over; the supervisor then leaves the server alone.
    stopping: bool,
    /// Held while a restart starts a new process and while `stop` kills, so that a restart
    /// never starts a process after `stop` has looked for the one to kill.
    lifecycle: Arc<tokio::sync::Mutex<()>>,
}

/// Builds Mastra projects and supervises their servers.
#[derive(Debug)]
pub struct Runner {
    config: RunnerConfig,
    ports: PortAllocator,
    health: HealthChecker,
    processes: ProcessManager,
    monitor: ResourceMonitor,
    journal: Arc<Journal>,
    leftovers_reaped: OnceCell<()>,
    servers: Mutex<BTreeMap<String, Server>>,
    retired: Mutex<VecDeque<(String, Arc<LogStore>)>>,
    build_dirs: Mutex<HashMap<String, PathBuf>>,
    builder: ProjectBuilder,
    /// Builds between `begin_build` and the builder's queue (their source is being copied),
    /// with whether a cancel arrived meanwhile.
    preparing: Mutex<HashMap<String, bool>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        Ok(Runner {
            ports: PortAllocator::new(config.port_range),
            health: HealthChecker::new(config.health_check.clone())?,
            processes: ProcessManager::new(),
            monitor: ResourceMonitor::new(),
            journal,
            leftovers_reaped: OnceCell::new(),
            servers: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(VecDeque::new()),
            build_dirs: Mutex::new(HashMap::new()),
            builder,
            preparing: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// The configuration the runner works with.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// The health checker built from the configuration.
    pub fn health_checker(&self) -> &HealthChecker {
        &self.health
    }

    /// Kills, once per runner and before any port is handed out, what runners of dead hosts
    /// left alive on the same `buildDir`.
    pub async fn reap_leftovers(&self) {
        self.leftovers_reaped
            .get_or_init(|| async {
                let build_dir = self.config.build_dir.clone();
                let report =
                    tokio::task::spawn_blocking(move || process::reap_leftovers(&build_dir)).await;
                if let Err(error) = report {
                    tracing::warn!("checking for leftover processes failed: {error}");
                }
            })
            .await;
    }

    /// Announces build `build_id` the moment `build()` is called: checks the ids (before
    /// anything touches the disk) and makes the build known, so that `cancel_build` reaches it
    /// from then on. Pair with [`Runner::begin_build`], then [`Runner::run_build`] or
    /// [`Runner::abandon_build`].
    pub fn register_build(&self, project_id: &str, build_id: &str) -> Result<()> {
        validate::id("project.id", project_id)?;
        validate::id("build.id", build_id)?;
        let mut preparing = lock(&self.preparing);
        if preparing.contains_key(build_id) || self.builder.is_active(build_id) {
            return Err(Error::BuildInProgress {
                build_id: build_id.to_owned(),
            });
        }
        preparing.insert(build_id.to_owned(), false);
        Ok(())
    }

    /// Prepares a registered build: reaps what dead runners left, and empties
    /// `<buildDir>/<build_id>` for the source to be copied in. Returns that directory.
    pub async fn begin_build(&self, build_id: &str) -> Result<PathBuf> {
        self.reap_leftovers().await;
        match self.builder.clean_build_dir(build_id).await {
            Ok(dir) => Ok(dir),
            Err(error) => {
                lock(&self.preparing).remove(build_id);
                Err(error)
            }
        }
    }

    /// Copies a local project (the default source) into `target` and writes what was copied,
    /// and what was skipped, into `log`. The project's parent directory is the base path.
    pub async fn copy_local_source(
        &self,
        project_path: &str,
        target: &Path,
        log: &LogStore,
    ) -> Result<PathBuf> {
        let project = PathBuf::from(project_path);
        let base = project.parent().map(Path::to_path_buf).ok_or_else(|| {
            Error::invalid(
                "project.sourceConfig.path",
                format!("'{project_path}' has no parent directory"),
            )
        })?;
        let target = target.to_path_buf();
        let copied = tokio::task::spawn_blocking(move || {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            let source = LocalSource::new(&[base], &[], &cwd)?;
            let report = source.copy_to(&project, &target)?;
            Ok::<_, Error>((target, report))
        })
        .await
        .map_err(|e| {
            Error::invalid(
                "project.sourceConfig.path",
                format!("the copy did not complete: {e}"),
            )
        })??;
        runner_lines(log, copied.1.log_lines());
        Ok(copied.0)
    }

    /// Runs build `request` (queued behind at most `maxConcurrentBuilds` others) in the
    /// directory the source provider returned, and remembers that directory for deploy. A
    /// cancel that arrived while the source was copied ends it `cancelled` at once.
    pub async fn run_build(&self, request: BuildRequest) -> Result<BuildOutcome> {
        let build_id = request.build_id.clone();
        let cancelled_early = lock(&self.preparing)
            .get(&build_id)
            .copied()
            .unwrap_or(false);
        if cancelled_early {
            lock(&self.preparing).remove(&build_id);
            let log = Arc::clone(&request.log);
            runner_lines(
                &log,
                vec!["Build cancelled while its source was copied: it never started".to_owned()],
            );
            return Ok(BuildOutcome {
                build_id: request.build_id,
                status: BuildStatus::Cancelled,
                error_message: Some("Build cancelled while its source was copied".to_owned()),
                started_at: None,
                completed_at: SystemTime::now(),
                package_manager: None,
                workdir: request.workdir,
                logs: join_text(&log.all()),
            });
        }
        lock(&self.build_dirs).insert(build_id.clone(), request.workdir.clone());
        let build = self.builder.build(request);
        tokio::pin!(build);
        // The first poll registers the build with the builder (before its first await), so
        // from then on `cancel_build` reaches it there. A cancel that came in between is
        // passed on now.
        let first = std::future::poll_fn(|cx| Poll::Ready(build.as_mut().poll(cx))).await;
        let cancelled = lock(&self.preparing).remove(&build_id).unwrap_or(false);
        if let Poll::Ready(outcome) = first {
            return outcome;
        }
        if cancelled {
            self.builder.cancel(&build_id).await;
        }
        build.await
    }

    /// Ends a build that could not start (its source provider failed).
    pub fn abandon_build(&self, build_id: &str) {
        lock(&self.preparing).remove(build_id);
    }

    /// Cancels a build: one whose source is still being copied ends `cancelled` when the copy
    /// is done; a queued one never starts; a running one has its tree killed. Resolves once its
    /// processes are gone. Unknown or finished builds: a no-op.
    pub async fn cancel_build(&self, build_id: &str) {
        if let Some(cancelled) = lock(&self.preparing).get_mut(build_id) {
            *cancelled = true;
        }
        self.builder.cancel(build_id).await;
    }

    /// Deletes build `build_id`'s directory (refused while the build is queued or running).
    /// Returns whether there was one.
    pub async fn remove_build(&self, build_id: &str) -> Result<bool> {
        validate::id("build.id", build_id)?;
        if lock(&self.preparing).contains_key(build_id) {
            return Err(Error::BuildInProgress {
                build_id: build_id.to_owned(),
            });
        }
        let removed = self.builder.remove_build_dir(build_id).await?;
        lock(&self.build_dirs).remove(build_id);
        Ok(removed)
    }

    /// The directory build `build_id` worked in (by default `<buildDir>/<build_id>`).
    pub fn build_workdir(&self, build_id: &str) -> PathBuf {
        lock(&self.build_dirs)
            .get(build_id)
            .cloned()
            .unwrap_or_else(|| self.config.build_dir.join(build_id))
    }

    /// Starts build `request.build_id` as a server and resolves once it is healthy.
    pub async fn deploy(self: &Arc<Self>, request: DeployRequest) -> Result<ServerInfo> {
        validate::id("project.id", &request.project_id)?;
        validate::id("deployment.id", &request.deployment_id)?;
        validate::id("build.id", &request.build_id)?;
        let output_dir = self
            .build_workdir(&request.build_id)
            .join(".mastra")
            .join("output");
        let entry = output_dir.join("index.mjs");
        if !entry.is_file() {
            return Err(Error::BuildOutputMissing {
                build_id: request.build_id.clone(),
                path: entry,
            });
        }
        self.reap_leftovers().await;
        let port = self.allocate_port(request.port).await?;
        let server_id = new_server_id(&request.deployment_id);
        let spec = SpawnSpec {
            program: request.node.to_string_lossy().into_owned(),
            args: vec!["index.mjs".to_owned()],
            cwd: output_dir,
            env: self.server_env(&request, port),
        };
        let log = Arc::new(LogStore::new(LogLimits::with_lines(
            self.config.log_retention_lines as usize,
        )));
        let started = self
            .start_process(&server_id, &request.deployment_id, spec.clone(), &log)
            .await;
        let process = match started {
            Ok(process) => process,
            Err(error) => {
                self.ports.release(port);
                return Err(error);
            }
        };
        let timeout = request.health_timeout.unwrap_or(
            self.config.health_check.retry_interval * self.config.health_check.max_retries,
        );
        if let Err(error) = self
            .wait_until_healthy(&process.handle, &log, port, timeout)
            .await
        {
            self.processes
                .kill(&server_id, self.config.shutdown_timeout)
                .await;
            self.ports.release(port);
            self.retire(&server_id, log);
            return Err(error);
        }
        let info = ServerInfo {
            id: server_id.clone(),
            deployment_id: request.deployment_id,
            project_id: request.project_id,
            build_id: request.build_id,
            pid: Some(process.handle.pid()),
            host: "127.0.0.1".to_owned(),
            port,
            health: HealthStatus::Healthy,
            last_health_check: Some(SystemTime::now()),
            started_at: SystemTime::now(),
            stopped_at: None,
            restarts: 0,
            route_id: None,
        };
        lock(&self.servers).insert(
            server_id.clone(),
            Server {
                info: info.clone(),
                spec,
                log,
                handle: process.handle.clone(),
                stopping: false,
                lifecycle: Arc::new(tokio::sync::Mutex::new(())),
            },
        );
        let runner = Arc::clone(self);
        tokio::spawn(async move { runner.supervise(server_id, process.handle).await });
        Ok(info)
    }

    /// Starts a server's process, tracked by server id and recorded in the journal.
    async fn start_process(
        &self,
        server_id: &str,
        deployment_id: &str,
        spec: SpawnSpec,
        log: &Arc<LogStore>,
    ) -> Result<process::ManagedProcess> {
        self.processes
            .start(
                server_id,
                deployment_id,
                spec,
                Arc::clone(log),
                Some(Arc::clone(&self.journal)),
            )
            .await
    }

    async fn allocate_port(self: &Arc<Self>, preferred: Option<u16>) -> Result<u16> {
        let runner = Arc::clone(self);
        tokio::task::spawn_blocking(move || runner.ports.allocate(preferred))
            .await
            .map_err(|e| Error::invalid("port", format!("port allocation did not complete: {e}")))?
    }

    /// The SPEC's server environment: allow-list, `globalEnvVars`, `envVars`, then the
    /// runner's own keys.
    fn server_env(&self, request: &DeployRequest, port: u16) -> BTreeMap<String, String> {
        let own = BTreeMap::from([
            ("NODE_ENV".to_owned(), "production".to_owned()),
            ("PORT".to_owned(), port.to_string()),
            (
                "MASTRA_DEPLOYMENT_ID".to_owned(),
                request.deployment_id.clone(),
            ),
            ("MASTRA_PROJECT_ID".to_owned(), request.project_id.clone()),
        ]);
        process::env::compose([&self.config.global_env_vars, &request.env, &own])
    }

    /// Waits for the server on `port` to answer its health check while watching its process:
    /// an exit fails at once, quoting the exit status and the last output lines.
    async fn wait_until_healthy(
        &self,
        handle: &ProcessHandle,
        log: &LogStore,
        port: u16,
        timeout: Duration,
    ) -> Result<()> {
        tokio::select! {
            healthy = self.health.wait_until_healthy_loopback(port, timeout) => healthy,
            exit = handle.wait() => {
                handle.wait_output_closed(Duration::from_millis(500)).await;
                Err(Error::ServerExited {
                    pid: handle.pid(),
                    exit,
                    output: join_text(&log.tail(FAILURE_OUTPUT_LINES)),
                })
            }
        }
    }

    /// Watches one server: notices its exits, restarts it under the restart policy, and
    /// releases its port once it is down for good.
    async fn supervise(self: Arc<Self>, server_id: String, mut handle: ProcessHandle) {
        let mut streak_started = Instant::now();
        let mut consecutive_restarts = 0u32;
        loop {
            let exit = handle.wait().await;
            let Some(log) = self.mark_exited(&server_id, exit) else {
                return;
            };
            let policy = self.config.restart_policy.clone();
            let Some(policy) = policy else {
                self.release_when_gone(&server_id, &handle).await;
                return;
            };
            if streak_started.elapsed() > stable_after(policy.max_backoff) {
                consecutive_restarts = 0;
            }
            if consecutive_restarts >= policy.max_restarts {
                runner_line(
                    &log,
                    format!(
                        "restart limit reached ({} restarts): the server stays down",
                        policy.max_restarts
                    ),
                );
                self.release_when_gone(&server_id, &handle).await;
                return;
            }
            let factor = 2u32.saturating_pow(consecutive_restarts);
            let backoff = policy
                .backoff
                .saturating_mul(factor)
                .min(policy.max_backoff);
            runner_line(
                &log,
                format!(
                    "restarting in {} ms (restart {} of {})",
                    backoff.as_millis(),
                    consecutive_restarts + 1,
                    policy.max_restarts
                ),
            );
            // The old tree must be gone before a new one takes its port.
            handle.kill_tree(self.config.shutdown_timeout).await;
            tokio::time::sleep(backoff).await;
            consecutive_restarts += 1;
            match self.restart(&server_id).await {
                Some(next) => {
                    handle = next;
                    streak_started = Instant::now();
                }
                None => return,
            }
        }
    }

    /// Records an exit; returns the server's log unless `stop` has taken over.
    fn mark_exited(&self, server_id: &str, exit: ExitInfo) -> Option<Arc<LogStore>> {
        let mut servers = lock(&self.servers);
        let server = servers.get_mut(server_id)?;
        if server.stopping {
            return None;
        }
        server.info.health = HealthStatus::Unhealthy;
        server.info.pid = None;
        runner_line(&server.log, format!("process exited with {exit}"));
        tracing::warn!(server = server_id, "server process exited with {exit}");
        Some(Arc::clone(&server.log))
    }

    /// Starts a server again with the same command on the same port; `None` when it was
    /// stopped meanwhile or could not start (then its port is released).
    async fn restart(&self, server_id: &str) -> Option<ProcessHandle> {
        let (spec, log, deployment_id, lifecycle) = {
            let servers = lock(&self.servers);
            let server = servers.get(server_id).filter(|s| !s.stopping)?;
            (
                server.spec.clone(),
                Arc::clone(&server.log),
                server.info.deployment_id.clone(),
                Arc::clone(&server.lifecycle),
            )
        };
        let starting = lifecycle.lock().await;
        if lock(&self.servers)
            .get(server_id)
            .is_none_or(|s| s.stopping)
        {
            return None;
        }
        let started = self
            .start_process(server_id, &deployment_id, spec, &log)
            .await;
        let process = match started {
            Ok(process) => process,
            Err(error) => {
                runner_line(&log, format!("restart failed: {error}"));
                self.give_up(server_id);
                return None;
            }
        };
        let port = {
            let mut servers = lock(&self.servers);
            let server = servers.get_mut(server_id)?;
            server.handle = process.handle.clone();
            server.info.pid = Some(process.handle.pid());
            server.info.health = HealthStatus::Starting;
            server.info.restarts += 1;
            server.info.port
        };
        drop(starting);
        let timeout =
            self.config.health_check.retry_interval * self.config.health_check.max_retries;
        let healthy = self.health.wait_until_healthy_loopback(port, timeout);
        let outcome = tokio::select! {
            result = healthy => result.is_ok(),
            _ = process.handle.wait() => false,
        };
        if let Some(server) = lock(&self.servers)
            .get_mut(server_id)
            .filter(|s| s.info.health == HealthStatus::Starting)
        {
            server.info.health = if outcome {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            };
            server.info.last_health_check = Some(SystemTime::now());
        }
        runner_line(
            &log,
            if outcome {
                "restarted: healthy".to_owned()
            } else {
                "restarted: not healthy".to_owned()
            },
        );
        Some(process.handle)
    }

    /// The server is down for good: its port goes back once its tree is gone.
    async fn release_when_gone(&self, server_id: &str, handle: &ProcessHandle) {
        handle.kill_tree(self.config.shutdown_timeout).await;
        self.give_up(server_id);
    }

    fn give_up(&self, server_id: &str) {
        let mut servers = lock(&self.servers);
        if let Some(server) = servers.get_mut(server_id).filter(|s| !s.stopping) {
            server.info.health = HealthStatus::Unhealthy;
            server.info.pid = None;
            self.ports.release(server.info.port);
        }
    }

    /// Remembers the route a router registered for `server_id`.
    pub fn set_route(&self, server_id: &str, route_id: String) {
        if let Some(server) = lock(&self.servers).get_mut(server_id) {
            server.info.route_id = Some(route_id);
        }
    }

    /// A snapshot of server `server_id`.
    pub fn server(&self, server_id: &str) -> Option<ServerInfo> {
        lock(&self.servers).get(server_id).map(|s| s.info.clone())
    }

    /// Stops server `server_id`: the whole tree (SIGTERM, grace, SIGKILL), then its port.
    /// Resolves when no process of it is left. Unknown or stopped servers: a no-op. Returns
    /// the server as it was, with its route id, so the caller can remove the route.
    pub async fn stop(&self, server_id: &str) -> Option<ServerInfo> {
        let (info, lifecycle) = {
            let mut servers = lock(&self.servers);
            let server = servers.get_mut(server_id)?;
            server.stopping = true;
            server.info.health = HealthStatus::Stopping;
            (server.info.clone(), Arc::clone(&server.lifecycle))
        };
        // Waits for a restart that is starting a process right now, so that process is the one
        // found and killed below.
        let _stopping = lifecycle.lock().await;
        self.processes
            .kill(server_id, self.config.shutdown_timeout)
            .await;
        let handle = lock(&self.servers).get(server_id).map(|s| s.handle.clone());
        if let Some(handle) = handle {
            // The process the server runs now, should a restart have replaced it.
            handle.kill_tree(self.config.shutdown_timeout).await;
        }
        self.ports.release(info.port);
        self.monitor.forget(info.pid.map_or(0, |p| p as i32));
        let removed = lock(&self.servers).remove(server_id);
        if let Some(server) = removed {
            runner_line(&server.log, "stopped".to_owned());
            self.retire(server_id, server.log);
        }
        Some(ServerInfo {
            health: HealthStatus::Unhealthy,
            pid: None,
            stopped_at: Some(SystemTime::now()),
            ..info
        })
    }

    fn retire(&self, server_id: &str, log: Arc<LogStore>) {
        log.close_subscriptions();
        let mut retired = lock(&self.retired);
        retired.push_back((server_id.to_owned(), log));
        while retired.len() > RETIRED_SERVERS_KEPT {
            retired.pop_front();
        }
    }

    /// One health check of server `server_id` (`Process is not running` once it is gone).
    pub async fn health_check(&self, server_id: &str) -> HealthReport {
        let target = lock(&self.servers)
            .get(server_id)
            .filter(|s| s.handle.is_running())
            .map(|s| s.info.port);
        let Some(port) = target else {
            return HealthReport {
                healthy: false,
                message: Some("Process is not running".to_owned()),
            };
        };
        let report = self.health.check_loopback(port).await;
        if let Some(server) = lock(&self.servers).get_mut(server_id) {
            server.info.last_health_check = Some(SystemTime::now());
            if matches!(
                server.info.health,
                HealthStatus::Healthy | HealthStatus::Unhealthy
            ) {
                server.info.health = if report.healthy {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                };
            }
        }
        report
    }

    /// The log of server `server_id`, running or among the last stopped ones.
    pub fn server_log(&self, server_id: &str) -> Option<Arc<LogStore>> {
        if let Some(server) = lock(&self.servers).get(server_id) {
            return Some(Arc::clone(&server.log));
        }
        lock(&self.retired)
            .iter()
            .rev()
            .find(|(id, _)| id == server_id)
            .map(|(_, log)| Arc::clone(log))
    }

    /// The logs of every running server, for a listener that wants all of them.
    pub fn running_server_logs(&self) -> Vec<(String, Arc<LogStore>)> {
        lock(&self.servers)
            .iter()
            .map(|(id, s)| (id.clone(), Arc::clone(&s.log)))
            .collect()
    }

    /// Memory and CPU of server `server_id`'s whole tree; `None` once it is gone.
    pub async fn resource_usage(self: &Arc<Self>, server_id: &str) -> Option<Usage> {
        let pid = lock(&self.servers)
            .get(server_id)
            .filter(|s| s.handle.is_running())
            .map(|s| s.handle.pid() as i32)?;
        let runner = Arc::clone(self);
        tokio::task::spawn_blocking(move || runner.monitor.sample(pid))
            .await
            .ok()
            .flatten()
    }

    /// Current counts of processes, ports and restarts.
    pub fn stats(&self) -> RunnerStats {
        let servers: Vec<ServerInfo> = lock(&self.servers)
            .values()
            .map(|s| s.info.clone())
            .collect();
        RunnerStats {
            running_processes: self.processes.running_count(),
            allocated_ports: self.ports.allocated_ports(),
            available_ports: self.ports.available_count(),
            restarts: servers.iter().map(|s| s.restarts).sum(),
            servers,
        }
    }

    /// Stops every server at once; resolves when no process of any is left and every port is
    /// released.
    pub async fn shutdown(self: &Arc<Self>) {
        let ids: Vec<String> = lock(&self.servers).keys().cloned().collect();
        let mut stops = tokio::task::JoinSet::new();
        for id in ids {
            let runner = Arc::clone(self);
            stops.spawn(async move { runner.stop(&id).await });
        }
        while stops.join_next().await.is_some() {}
        for cancelled in lock(&self.preparing).values_mut() {
            *cancelled = true;
        }
        self.builder.cancel_all().await;
        self.processes.kill_all(self.config.shutdown_timeout).await;
        tracing::debug!("runner shut down");
    }
}

/// How long a server must run before its restart count starts again from zero: the longest
/// backoff, but at least ten seconds, so that a server crashing in a loop is never mistaken for
/// a stable one.
fn stable_after(max_backoff: Duration) -> Duration {
    max_backoff.max(Duration::from_secs(10))
}

/// Writes lines of the runner's own into a log.
fn runner_lines(log: &LogStore, lines: Vec<String>) {
    log.append_lines(
        Stream::Stdout,
        lines.into_iter().map(|l| format!("[runner] {l}")),
    );
}

/// Writes a line of the runner's own into a server's log.
fn runner_line(log: &LogStore, text: String) {
    log.append_lines(Stream::Stderr, std::iter::once(format!("[runner] {text}")));
}

/// A server id unique within this host: the deployment id and a sequence number.
fn new_server_id(deployment_id: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{deployment_id}-{stamp:x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
