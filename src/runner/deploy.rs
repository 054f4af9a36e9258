//! Deploy: from a finished build to a healthy, routed server.
//!
//! The order matters at each step: the port is allocated before the process starts and goes
//! back only once its tree is gone; the server's log is opened (and a `setOnServerLog` listener
//! attached) before the process starts, so no line is missed; the server is registered under the
//! runner's servers lock after checking that `shutdown()` has not begun, so every server is
//! either stopped by `shutdown()` or stops itself; the route is registered only once the server
//! is healthy, and a router that fails stops the server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::kept::KeptRecord;
use super::supervisor::{self, NewServer, ServerInfo, ServerState, SupervisorHandle};
use super::{LogOwner, RouteRequest, Runner, ServerEntry, interrupted};
use crate::config::RedeployMode;
use crate::error::{Error, Result};
use crate::logs::{LogLimits, LogStore};
use crate::process::{self, SpawnSpec};
use crate::sync::lock;
use crate::validate;

/// How long a server a redeploy replaced keeps serving after the new server took its traffic
/// (the new route is registered, the old one removed): a client or proxy that looked the old
/// address up just before the switch still gets its answer.
pub const REPLACED_SERVER_DRAIN: Duration = Duration::from_millis(250);

/// What a deploy needs.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The project's id.
    pub project_id: String,
    /// The deployment's id.
    pub deployment_id: String,
    /// The build to run.
    pub build_id: String,
    /// The deployment's DNS label, for the router.
    pub subdomain: String,
    /// Extra variables for the server (`RunOptions.envVars`).
    pub env: BTreeMap<String, String>,
    /// Preferred port (`RunOptions.port`).
    pub port: Option<u16>,
    /// Overall time to wait for health (`RunOptions.healthCheckTimeoutMs`).
    pub health_timeout: Option<Duration>,
    /// The Node.js binary that runs the server (the host's `process.execPath`).
    pub node: PathBuf,
}

impl Runner {
    /// Starts build `request.build_id` as a server, resolves once it is healthy and (with a
    /// router) routed. On any failure nothing is left running and the port is released.
    pub async fn deploy(&self, request: DeployRequest) -> Result<ServerInfo> {
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
        let call = self.begin_call();
        let order = self.deploy_order.fetch_add(1, Ordering::SeqCst);
        self.reap_leftovers().await;
        // Another program that takes the allocated port (it answered the health check, or the
        // server died of EADDRINUSE) costs one more attempt on the next free port.
        let (server_id, handle, port) =
            match self.start_server(&request, &output_dir, &call, order).await {
                Err(error) if lost_port_race(&error) => {
                    tracing::warn!("{error}; trying another port");
                    match self.start_server(&request, &output_dir, &call, order).await {
                        Err(Error::NoFreePort { .. }) => return Err(error),
                        outcome => outcome?,
                    }
                }
                outcome => outcome?,
            };
        let replaced = match self.claim_deployment(&server_id, &request.deployment_id, order) {
            Some(replaced) => replaced,
            None => {
                self.stop_by(&server_id, "a later deploy").await;
                return Err(Error::DeploySuperseded {
                    deployment_id: request.deployment_id.clone(),
                    port,
                });
            }
        };
        let route_id = self.route(&server_id, &request).await?;
        for old in replaced {
            self.retire_replaced(&old, &request.deployment_id, route_id.as_deref())
                .await;
        }
        if let Some(kept) = &self.shared.kept {
            kept.update(&server_id, |record| {
                record.deployed = true;
                record.route_id = route_id.clone();
            });
        }
        self.file_build(&request.deployment_id, &request.build_id);
        self.prune_builds(&request.deployment_id).await;
        Ok(handle.info())
    }

    /// One attempt of a deploy: a port, the process, its supervisor, and its health gate.
    /// Resolves the healthy server's id, handle and port; on failure nothing is left running.
    async fn start_server(
        &self,
        request: &DeployRequest,
        output_dir: &std::path::Path,
        call: &super::InFlight,
        order: u64,
    ) -> Result<(String, SupervisorHandle, u16)> {
        let port = self.allocate_port(request.port).await?;
        if call.cancelled() {
            self.shared.ports.release(port);
            return Err(interrupted(port));
        }
        let server_id = new_server_id(&request.deployment_id);
        let token = process::ownership::new_server_token(&server_id);
        let spec = SpawnSpec {
            program: request.node.to_string_lossy().into_owned(),
            args: vec!["index.mjs".to_owned()],
            cwd: output_dir.to_path_buf(),
            env: self.server_env(request, port, &token),
        };
        let log = Arc::new(LogStore::new(LogLimits::with_lines(
            self.config().log_retention_lines as usize,
        )));
        self.open_server_log(
            LogOwner::Server {
                server_id: server_id.clone(),
                deployment_id: request.deployment_id.clone(),
                project_id: request.project_id.clone(),
            },
            &log,
        );
        let now = SystemTime::now();
        // A kept server is recorded before it starts (with its token, pid 0): were the host to
        // die right after the spawn, the next runner still finds it by the token and kills it.
        if let Some(kept) = &self.shared.kept {
            let record = KeptRecord {
                server_id: server_id.clone(),
                deployment_id: request.deployment_id.clone(),
                project_id: request.project_id.clone(),
                build_id: request.build_id.clone(),
                port,
                pid: 0,
                start_ticks: 0,
                token: token.clone(),
                log_file: kept.log_file(&server_id),
                command: std::iter::once(spec.program.clone())
                    .chain(spec.args.iter().cloned())
                    .collect(),
                cwd: spec.cwd.clone(),
                started_at: now,
                restarts: 0,
                route_id: None,
                deployed: false,
                owner: None,
            };
            if let Err(error) = kept.record(record) {
                self.shared.ports.release(port);
                self.retire_server_log(&server_id);
                return Err(Error::io(
                    "record the kept server (so a later runner can adopt it) in",
                    kept.record_path(&server_id),
                    &error,
                ));
            }
        }
        let spawned = supervisor::start_process(&self.shared, &spec, &log, &server_id).await;
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                if let Some(kept) = &self.shared.kept {
                    kept.remove(&server_id);
                }
                self.shared.ports.release(port);
                self.retire_server_log(&server_id);
                return Err(error);
            }
        };
        if let Some(kept) = &self.shared.kept {
            let (pid, ticks) = (child.handle.pid(), child.handle.start_ticks());
            kept.update(&server_id, |record| {
                record.pid = pid;
                record.start_ticks = ticks;
            });
        }
        // A server whose group is not recorded could not be reaped by the next runner after a
        // crash of the host: such a deploy fails (a full disk, say) rather than run unrecorded
        // (a kept server was recorded above).
        let unrecorded = match self.shared.kept {
            Some(_) => None,
            None => self.shared.journal.take_write_error(),
        };
        if let Some(error) = unrecorded {
            child.handle.kill_tree(self.config().shutdown_timeout).await;
            self.shared.ports.release(port);
            self.retire_server_log(&server_id);
            return Err(error);
        }
        let info = ServerInfo {
            id: server_id.clone(),
            deployment_id: request.deployment_id.clone(),
            project_id: request.project_id.clone(),
            build_id: request.build_id.clone(),
            pid: Some(child.handle.pid()),
            host: "127.0.0.1".to_owned(),
            port,
            state: ServerState::Starting { since: now },
            last_health_check: None,
            started_at: now,
            restarts: 0,
            token: token.clone(),
        };
        let health_timeout = request.health_timeout.unwrap_or(
            self.config().health_check.retry_interval * self.config().health_check.max_retries,
        );
        let (handle, task, ready) = supervisor::start(
            Arc::clone(&self.shared),
            NewServer {
                info,
                origin: supervisor::Origin::Deploy,
                spec: Some(spec),
                log: Arc::clone(&log),
                child,
                health_timeout,
                token,
            },
        );
        let registered = {
            let mut servers = lock(&self.servers);
            let registered = !call.cancelled();
            if registered {
                servers.insert(
                    server_id.clone(),
                    ServerEntry {
                        handle: handle.clone(),
                        task: Some(task),
                        route_id: None,
                        deploy_order: order,
                        serving: false,
                    },
                );
            }
            registered
        };
        if !registered {
            handle.stop("shutdown()").await;
            self.retire_server_log(&server_id);
            return Err(interrupted(port));
        }
        let healthy = ready.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "waiting for the server's health",
                "the supervisor ended without an answer",
            ))
        });
        if let Err(error) = healthy {
            self.forget_server(&server_id).await;
            return Err(error);
        }
        Ok((server_id, handle, port))
    }

    /// Marks a healthy server as the one serving its deployment. Under `redeploy: 'replace'`
    /// returns the deployment's other servers of earlier deploys (to be stopped once the route
    /// points at the new one), or `None` when a later deploy already serves it (this one lost).
    fn claim_deployment(
        &self,
        server_id: &str,
        deployment_id: &str,
        order: u64,
    ) -> Option<Vec<String>> {
        let mut servers = lock(&self.servers);
        let mut replaced = Vec::new();
        if self.config().redeploy == RedeployMode::Replace {
            for (id, entry) in servers.iter() {
                if id == server_id || entry.handle.info().deployment_id != deployment_id {
                    continue;
                }
                if entry.deploy_order > order && entry.serving {
                    return None;
                }
                if entry.deploy_order < order {
                    replaced.push(id.clone());
                }
            }
        }
        if let Some(entry) = servers.get_mut(server_id) {
            entry.serving = true;
        }
        Some(replaced)
    }

    /// Takes down a server a redeploy replaced: its route first (unless the router reused the
    /// same route for the new server), then, after [`REPLACED_SERVER_DRAIN`], its tree; its id
    /// stays a stale record of the deployment.
    async fn retire_replaced(&self, old: &str, deployment_id: &str, new_route: Option<&str>) {
        if let Some(entry) = lock(&self.servers).get_mut(old)
            && entry.route_id.as_deref() == new_route
        {
            entry.route_id = None;
        }
        lock(&self.replaced).record(old, deployment_id);
        if let Some(server) = self.server(old) {
            self.log_replacement(old, &server);
        }
        self.stop_after_drain(old, "a redeploy", REPLACED_SERVER_DRAIN)
            .await;
    }

    fn log_replacement(&self, old: &str, server: &ServerInfo) {
        if let Some(log) = self.server_log(old) {
            log.append_lines(
                crate::logs::Stream::Stderr,
                std::iter::once(format!(
                    "{}replaced by a newer deploy of deployment '{}'",
                    crate::build::RUNNER_PREFIX,
                    server.deployment_id
                )),
            );
        }
    }

    /// Registers the route of a healthy server and returns its id; a failing router stops
    /// it.
    async fn route(&self, server_id: &str, request: &DeployRequest) -> Result<Option<String>> {
        let Some(router) = lock(&self.router).clone() else {
            return Ok(None);
        };
        let Some(port) = self.server(server_id).map(|s| s.port) else {
            return Ok(None);
        };
        let route = RouteRequest {
            deployment_id: request.deployment_id.clone(),
            project_id: request.project_id.clone(),
            subdomain: request.subdomain.clone(),
            target_host: "127.0.0.1".to_owned(),
            target_port: port,
        };
        let limit = self.config().provider_timeout;
        let registered = tokio::time::timeout(limit, router.register_route(&route))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())));
        match registered {
            Ok(route_id) => {
                if let Some(entry) = lock(&self.servers).get_mut(server_id) {
                    entry.route_id = Some(route_id.clone());
                }
                Ok(Some(route_id))
            }
            Err(reason) => {
                self.stop(server_id).await;
                Err(Error::RouteRegistrationFailed {
                    deployment_id: request.deployment_id.clone(),
                    reason,
                })
            }
        }
    }

    async fn allocate_port(&self, preferred: Option<u16>) -> Result<u16> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.ports.allocate(preferred))
            .await
            .map_err(|e| Error::internal("allocating a port", e))?
    }

    /// The SPEC's server environment: allow-list, `globalEnvVars`, `envVars`, then the
    /// runner's own keys.
    fn server_env(
        &self,
        request: &DeployRequest,
        port: u16,
        token: &str,
    ) -> BTreeMap<String, String> {
        let own = BTreeMap::from([
            (
                process::ownership::SERVER_TOKEN_VAR.to_owned(),
                token.to_owned(),
            ),
            ("NODE_ENV".to_owned(), "production".to_owned()),
            ("PORT".to_owned(), port.to_string()),
            (
                "MASTRA_DEPLOYMENT_ID".to_owned(),
                request.deployment_id.clone(),
            ),
            ("MASTRA_PROJECT_ID".to_owned(), request.project_id.clone()),
        ]);
        process::env::compose([&self.config().global_env_vars, &request.env, &own])
    }
}

/// Whether a deploy attempt failed because another program holds its port.
fn lost_port_race(error: &Error) -> bool {
    match error {
        Error::ForeignListener { .. } => true,
        Error::ServerExited { output, .. } => output.contains("EADDRINUSE"),
        _ => false,
    }
}

/// A server id unique within this host: the deployment id, a time stamp and a sequence number.
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
