//! Deploy: from a finished build to a healthy, routed server.
//!
//! The order matters at each step: the port is allocated before the process starts and goes
//! back only once its tree is gone; the server's log is opened (and a `setOnServerLog` listener
//! attached) before the process starts, so no line is missed; the server is registered under the
//! runner's servers lock after checking that `shutdown()` has not begun, so every server is
//! either stopped by `shutdown()` or stops itself; the route is registered only once the server
//! is healthy, and a router that fails stops the server. The servers it replaces then drain
//! (`drain`); its working directory is its deployment's data view ([`super::data`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::calls::InFlight;
use super::data;
use super::deployments::Claim;
use super::kept::KeptRecord;
use super::lease::PortLease;
use super::servers::ServerEntry;
use super::start::StartGuard;
use super::supervisor::{self, NewServer, ServerInfo, ServerState, SupervisorHandle};
use super::{LogOwner, RouteRequest, Router, Runner, interrupted};
use crate::error::{Error, Result};
use crate::isolation::{Isolation, Limits, PRIVATE_TMP_DIR, ServerPlaces};
use crate::logs::{LogLimits, LogStore};
use crate::process::{self, SpawnSpec};
use crate::validate;

/// The variables that carry `tracesEndpoint` to a server: the name Mastra's cloud exporter read
/// first, and the one newer versions read.
const TRACES_VARS: [&str; 2] = [
    "MASTRA_CLOUD_AI_TRACES_ENDPOINT",
    "MASTRA_CLOUD_TRACES_ENDPOINT",
];

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
    /// The server's own limits over the configuration's (`RunOptions.limits`).
    pub limits: Limits,
    /// The Node.js binary that runs the server (the host's `process.execPath`).
    pub node: PathBuf,
}

impl Runner {
    /// Starts build `request.build_id` as a server, resolves once it is healthy and (with a
    /// router) routed. On any failure nothing is left running and the port is released.
    ///
    /// Under `redeploy: 'replace'` the deployment's earlier servers drain in the background
    /// (`drain`): they keep answering until their connections end, at most
    /// `redeployDrainMs`, then stop.
    ///
    /// Concurrent deploys of one deployment are ordered by call: the order is taken when this
    /// is called, not when the returned future first runs, so the latest call serves the
    /// deployment whichever server becomes healthy first.
    pub fn deploy(
        self: &Arc<Self>,
        request: DeployRequest,
    ) -> impl std::future::Future<Output = Result<ServerInfo>> + Send + 'static {
        let call = self.calls.begin();
        let stops_before = self.deployments.stops_of(&request.deployment_id);
        let order = self.deployments.next_order();
        let runner = Arc::clone(self);
        async move {
            runner
                .deploy_in_order(request, call, stops_before, order)
                .await
        }
    }

    /// [`Runner::deploy`] with its place among the calls taken.
    async fn deploy_in_order(
        self: &Arc<Self>,
        request: DeployRequest,
        call: InFlight,
        stops_before: u64,
        order: u64,
    ) -> Result<ServerInfo> {
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
        let working_dir = self
            .point_data_at(&request.deployment_id, &output_dir)
            .await?;
        self.reap_leftovers().await;
        let started = match self
            .start_server(&request, &working_dir, &call, order)
            .await
        {
            // Another program that takes the allocated port (it answered the health check, or
            // the server died of EADDRINUSE) costs one more attempt on the next free port.
            Err(error) if lost_port_race(&error) => {
                tracing::warn!("{error}; trying another port");
                match self
                    .start_server(&request, &working_dir, &call, order)
                    .await
                {
                    Err(Error::NoFreePort { .. }) => Err(error),
                    outcome => outcome,
                }
            }
            outcome => outcome,
        };
        let (server_id, handle, port) = match started {
            Ok(started) => started,
            Err(error) => {
                // The data view points at this build: back to the build that serves, if any.
                self.point_data_at_current(&request.deployment_id).await;
                return Err(error);
            }
        };
        let claim = self.deployments.claim(
            &server_id,
            &request.deployment_id,
            order,
            stops_before,
            self.config().redeploy,
        );
        let replaced = match claim {
            Claim::Serves(replaced) => replaced,
            Claim::Superseded => {
                self.stop_by(&server_id, "a later deploy").await;
                return Err(Error::DeploySuperseded {
                    deployment_id: request.deployment_id.clone(),
                    port,
                });
            }
            Claim::Stopped => {
                self.stop_by(&server_id, STOPPED_BY).await;
                return Err(stopped_meanwhile(port));
            }
        };
        let route_id = self.route(&server_id, &request).await?;
        for old in replaced {
            self.begin_drain(
                &old,
                &server_id,
                &request.deployment_id,
                route_id.as_deref(),
            );
        }
        self.shared.keeping.deployed(&server_id, route_id.clone());
        self.builds.file(&request.deployment_id, &request.build_id);
        self.prune_builds(&request.deployment_id).await;
        self.measure_data_disk();
        Ok(handle.info())
    }

    /// One attempt of a deploy: a port, the process, its supervisor, and its health gate.
    /// Resolves the healthy server's id, handle and port; on failure nothing is left running
    /// (the [`StartGuard`] undoes what was done).
    async fn start_server(
        &self,
        request: &DeployRequest,
        output_dir: &std::path::Path,
        call: &InFlight,
        order: u64,
    ) -> Result<(String, SupervisorHandle, u16)> {
        let lease = self.lease_port(request.port).await?;
        let mut start = StartGuard::new(self, crate::ids::uuid_v4(), lease);
        match self
            .start_steps(&mut start, request, output_dir, call, order)
            .await
        {
            Ok(started) => {
                start.commit();
                Ok(started)
            }
            Err(error) => {
                start.undo().await;
                Err(error)
            }
        }
    }

    /// The steps of [`Self::start_server`], each recorded in `start`.
    async fn start_steps(
        &self,
        start: &mut StartGuard<'_>,
        request: &DeployRequest,
        output_dir: &std::path::Path,
        call: &InFlight,
        order: u64,
    ) -> Result<(String, SupervisorHandle, u16)> {
        let port = start.port();
        if call.cancelled() {
            return Err(interrupted(port));
        }
        let server_id = start.server_id().to_owned();
        let token = process::ownership::new_server_token(&server_id);
        let confinement = self.server_confinement(request, &server_id, port).await?;
        let mut env = self.server_env(request, port, &token);
        if let Some(tmp) = confinement.private_tmp {
            // The host's home is out of a sandbox's reach; a caller's own choice stands.
            for key in ["TMPDIR", "HOME"] {
                if !request.env.contains_key(key)
                    && !self.config().global_env_vars.contains_key(key)
                {
                    env.insert(key.to_owned(), tmp.clone());
                }
            }
        }
        let node = match confinement.spawn.sandbox {
            // Run by its real path, which the sandbox can see.
            Some(_) => crate::isolation::sandbox::real_program(&request.node)
                .unwrap_or_else(|| request.node.clone()),
            None => request.node.clone(),
        };
        let spec = SpawnSpec {
            program: node.to_string_lossy().into_owned(),
            args: vec!["index.mjs".to_owned()],
            cwd: output_dir.to_path_buf(),
            env,
            confinement: confinement.spawn,
        };
        let log = Arc::new(LogStore::new(LogLimits::with_lines(
            self.config().log_retention_lines as usize,
        )));
        start.open_log(
            LogOwner::Server {
                server_id: server_id.clone(),
                deployment_id: request.deployment_id.clone(),
                project_id: request.project_id.clone(),
            },
            &log,
        );
        let now = SystemTime::now();
        start.starting(KeptRecord {
            server_id: server_id.clone(),
            deployment_id: request.deployment_id.clone(),
            project_id: request.project_id.clone(),
            build_id: request.build_id.clone(),
            port,
            pid: 0,
            start_ticks: 0,
            token: token.clone(),
            started_at: now,
            restarts: 0,
            route_id: None,
            deployed: false,
            owner: None,
            draining: false,
            watched_memory_mb: self.shared.isolation.groups.memory_watch(&server_id),
        })?;
        let child = supervisor::start_process(&self.shared, &spec, &log, &server_id).await?;
        start.spawned(&child.handle)?;
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
        start.hand_to_supervisor();
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
                keeping: Arc::clone(&self.shared.keeping),
            },
        );
        start.supervised(&handle);
        let entry = ServerEntry::new(handle.clone(), task, None);
        if !start.register(entry, &request.deployment_id, order, || call.cancelled()) {
            return Err(interrupted(port));
        }
        let healthy = ready.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "waiting for the server's health",
                "the supervisor ended without an answer",
            ))
        });
        healthy?;
        Ok((server_id, handle, port))
    }

    /// What confines server `server_id` on `port`: its cgroup with its limits (where cgroups
    /// can be made) and its sandbox, with its private temporary directory made here (when
    /// spawns are sandboxed).
    async fn server_confinement(
        &self,
        request: &DeployRequest,
        server_id: &str,
        port: u16,
    ) -> Result<ServerConfinement> {
        let isolation = &self.shared.isolation;
        let limits = self.config().limits.overridden_by(&request.limits);
        let cgroup = isolation
            .create_group(server_id, limits)
            .await
            .map_err(|e| Error::internal("creating the server's cgroup", e))?;
        if let (None, Some(memory_mb)) = (&cgroup, limits.memory_mb) {
            isolation.groups.watch_memory(server_id, memory_mb);
        }
        let mut confinement = ServerConfinement {
            spawn: process::Confinement {
                sandbox: None,
                cgroup,
            },
            private_tmp: None,
        };
        if !isolation.sandboxing().await {
            return Ok(confinement);
        }
        let build_dir = &self.config().build_dir;
        let build_copy = crate::builder::layout::build_path(build_dir, &request.build_id)?;
        let data_dir = data::data_dir(build_dir, &request.deployment_id);
        let tmp = Isolation::private_tmp(build_dir, server_id)
            .map_err(|e| Error::io("create", build_dir.join(PRIVATE_TMP_DIR), &e))?;
        let sandbox = isolation
            .server_sandbox(&ServerPlaces {
                node: &request.node,
                build_copy: &build_copy,
                data_dir: &data_dir,
                private_tmp: &tmp,
                port,
                port_range: (self.config().port_range.start, self.config().port_range.end),
            })
            .await;
        if let Some(sandbox) = sandbox {
            confinement.private_tmp = Some(tmp.to_string_lossy().into_owned());
            confinement.spawn.sandbox = Some(Arc::new(sandbox));
        }
        Ok(confinement)
    }

    /// Appends a runner line to server `server_id`'s log.
    pub(super) fn note_in_log(&self, server_id: &str, line: String) {
        if let Some(log) = self.server_log(server_id) {
            log.append_lines(
                crate::logs::Stream::Stderr,
                std::iter::once(format!("{}{line}", crate::logs::RUNNER_PREFIX)),
            );
        }
    }

    /// Points deployment `request.deployment_id`'s route at a healthy server and returns the
    /// route's id: a router that can look routes up and update them has the deployment's
    /// existing route moved (one route per deployment, as MastraAdmin's `LocalEdgeRouter`
    /// requires), any other router gets a new route registered. A failing router stops the
    /// server; a `stop()` of the deployment meanwhile removes the route again.
    async fn route(&self, server_id: &str, request: &DeployRequest) -> Result<Option<String>> {
        let Some(router) = self.deployments.router() else {
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
        let routed = tokio::time::timeout(limit, upsert_route(router.as_ref(), &route))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", limit.as_millis())));
        match routed {
            Ok(route_id) => {
                if !self.deployments.set_route(server_id, &route_id) {
                    // Stopped while the router answered: its route must not outlive it.
                    if let Err(why) = router.remove_route(&route_id).await {
                        tracing::warn!("router failed to remove route '{route_id}': {why}");
                    }
                    return Err(stopped_meanwhile(port));
                }
                Ok(Some(route_id))
            }
            Err(reason) => {
                self.stop_by(server_id, "a failed route registration").await;
                Err(Error::RouteRegistrationFailed {
                    deployment_id: request.deployment_id.clone(),
                    reason,
                })
            }
        }
    }

    /// A lease of a free port of the range (`preferred` when it is free). When every port is
    /// taken and servers that a redeploy replaced still drain, the oldest of them stops early
    /// to free its port: a drain never makes a deploy fail.
    async fn lease_port(&self, preferred: Option<u16>) -> Result<PortLease> {
        loop {
            let ports = Arc::clone(self.servers.ports());
            let leased = tokio::task::spawn_blocking(move || ports.lease(preferred))
                .await
                .map_err(|e| Error::internal("allocating a port", e))?;
            match leased {
                Err(Error::NoFreePort { .. }) => {
                    let Some(oldest) = self.deployments.take_oldest_drain() else {
                        return leased;
                    };
                    self.note_in_log(
                        &oldest,
                        "every port of the range is taken: this replaced server stops before its drain ends".to_owned(),
                    );
                    self.stop_by(&oldest, "a deploy that needs its port").await;
                }
                outcome => return outcome,
            }
        }
    }

    /// The SPEC's server environment: allow-list, `globalEnvVars`, `envVars`, then the
    /// runner's own keys (with `tracesEndpoint`, the endpoint and the deployment's token).
    fn server_env(
        &self,
        request: &DeployRequest,
        port: u16,
        token: &str,
    ) -> BTreeMap<String, String> {
        let mut own = BTreeMap::from([
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
            (
                "MASTRA_DATA_DIR".to_owned(),
                data::data_dir(&self.config().build_dir, &request.deployment_id)
                    .to_string_lossy()
                    .into_owned(),
            ),
        ]);
        // Spans reach the admin's publish endpoint, which takes the token as the deployment.
        if let Some(endpoint) = &self.config().traces_endpoint {
            own.extend(TRACES_VARS.map(|name| (name.to_owned(), endpoint.clone())));
            own.insert(
                "MASTRA_CLOUD_ACCESS_TOKEN".to_owned(),
                request.deployment_id.clone(),
            );
        }
        process::env::compose([&self.config().global_env_vars, &request.env, &own])
    }
}

/// A server's confinement and the private temporary directory it gets as `TMPDIR` and `HOME`.
#[derive(Default)]
struct ServerConfinement {
    spawn: process::Confinement,
    private_tmp: Option<String>,
}

/// Who stopped a deploy's server when `stop()` of its deployment came first.
const STOPPED_BY: &str = "stop() of its deployment";

/// The error of a deploy whose deployment `stop()` took down while it was in flight.
fn stopped_meanwhile(port: u16) -> Error {
    Error::DeployInterrupted {
        port,
        by: STOPPED_BY.to_owned(),
    }
}

/// Points `route.deployment_id`'s route at `route`'s target: moves the deployment's route when
/// the router can, registers one otherwise. Resolves the route's id.
async fn upsert_route(
    router: &dyn Router,
    route: &RouteRequest,
) -> std::result::Result<String, String> {
    if router.can_update()
        && let Some(route_id) = router.get_route(&route.deployment_id).await?
    {
        router
            .update_route(&route_id, &route.target_host, route.target_port)
            .await?;
        return Ok(route_id);
    }
    router.register_route(route).await
}

/// Whether a deploy attempt failed because another program holds its port.
fn lost_port_race(error: &Error) -> bool {
    match error {
        Error::ForeignListener { .. } => true,
        Error::ServerExited { output, .. } => output.contains("EADDRINUSE"),
        _ => false,
    }
}
