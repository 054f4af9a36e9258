//! `LocalProcessRunner` as JS sees it (SPEC §2): argument reading, entity objects with JS
//! `Date`s, the router provider, and log delivery. Everything else is the core's `Runner`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use napi::bindgen_prelude::ObjectRef;
use napi::bindgen_prelude::{
    Env, FnArgs, Function, FunctionRef, JsObjectValue, JsValue, Object, PromiseRaw, Result,
    ToNapiValue, Unknown,
};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use serde_json::{Value, json};

use super::args;
use super::delivery::{BatchSink, batch_sink, pump, report_callback_error};
use super::json;
use super::logs::{deliver_text, paginate, stream_text};
use super::provider::{AsyncMethod, async_method, call};
use super::to_js_error;
use crate::build::{BuildOptions, BuildOutcome, BuildRequest};
use crate::config::{DefaultSource, RunnerConfig};
use crate::logs::store::SubscriptionCloser;
use crate::logs::{LogBatch, LogStore, join_text};
use crate::runner::{DeployRequest, Runner, ServerInfo};
use crate::subdomain::{self, DeploymentType};
use crate::validate;

/// A server-log listener's callback: `(serverId, line, stream, id)`.
type ServerLogCallback = FunctionRef<FnArgs<(String, String, String, String)>, UnknownReturnValue>;

/// The router provider's methods.
struct Router {
    register_route: AsyncMethod<Value>,
    remove_route: AsyncMethod<Value, UnknownReturnValue>,
}

/// The `setOnServerLog` listener and the subscriptions feeding it.
struct ServerLogListener {
    sink: Arc<BatchSink<(String, LogBatch)>>,
    subscriptions: Vec<SubscriptionCloser>,
}

impl ServerLogListener {
    /// Feeds new lines of one server's log to the listener.
    fn attach(&mut self, server_id: &str, log: &LogStore) {
        let subscription = log.subscribe(log.limits().max_lines);
        self.subscriptions.push(subscription.closer());
        let id = server_id.to_owned();
        pump(Arc::clone(&self.sink), subscription, None, move |batch| {
            (id.clone(), batch)
        });
    }

    fn detach_all(&mut self) {
        for subscription in self.subscriptions.drain(..) {
            subscription.close();
        }
    }
}

/// The source provider's method that copies a project into a build directory.
struct Source {
    get_project_path: AsyncMethod<FnArgs<(Value, String)>>,
}

/// State shared by the runner's methods and their futures.
struct Shared {
    runner: Arc<Runner>,
    source: Mutex<Option<Arc<Source>>>,
    router: Mutex<Option<Arc<Router>>>,
    listener: Mutex<Option<ServerLogListener>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts of processes and ports, as `getStats()` returns them.
#[napi(object)]
pub struct RunnerStats {
    /// Server processes currently alive.
    pub running_processes: u32,
    /// Ports handed out to servers, ascending.
    pub allocated_ports: Vec<u32>,
    /// Ports of `portRange` not handed out.
    pub available_ports: u32,
    /// Restarts made by the restart policy, all servers together.
    pub restarts: u32,
    /// Every server the runner supervises.
    pub servers: Vec<ServerSummary>,
}

/// One supervised server in `getStats()`.
#[napi(object)]
pub struct ServerSummary {
    /// The server's id.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The current process id, while one runs.
    pub process_id: Option<u32>,
    /// The port it listens on.
    pub port: u32,
    /// `'starting'`, `'healthy'`, `'unhealthy'` or `'stopping'`.
    #[napi(ts_type = "'starting' | 'healthy' | 'unhealthy' | 'stopping'")]
    pub health_status: String,
    /// Restarts made by the restart policy.
    pub restarts: u32,
}

/// A health check's outcome.
#[napi(object)]
pub struct ServerHealth {
    /// Whether the server answered with a 2xx status.
    pub healthy: bool,
    /// Why not, when it did not.
    pub message: Option<String>,
}

/// Builds Mastra projects and runs them as supervised local processes.
#[napi]
pub struct LocalProcessRunner {
    shared: Arc<Shared>,
}

fn date(env: &Env, time: SystemTime) -> Result<napi::JsDate<'_>> {
    env.create_date(
        time.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64),
    )
}

/// A server as the `RunningServer` entity of SPEC §2.
fn server_object<'env>(env: &'env Env, info: &ServerInfo) -> Result<Object<'env>> {
    let mut server = Object::new(env)?;
    server.set("id", info.id.as_str())?;
    server.set("deploymentId", info.deployment_id.as_str())?;
    server.set("buildId", info.build_id.as_str())?;
    server.set("processId", info.pid)?;
    server.set("containerId", Option::<String>::None)?;
    server.set("host", info.host.as_str())?;
    server.set("port", u32::from(info.port))?;
    server.set("healthStatus", info.health.as_str())?;
    match info.last_health_check {
        Some(time) => server.set("lastHealthCheck", date(env, time)?)?,
        None => server.set("lastHealthCheck", Option::<String>::None)?,
    }
    server.set("memoryUsageMb", Option::<f64>::None)?;
    server.set("cpuPercent", Option::<f64>::None)?;
    server.set("startedAt", date(env, info.started_at)?)?;
    match info.stopped_at {
        Some(time) => server.set("stoppedAt", date(env, time)?)?,
        None => server.set("stoppedAt", Option::<String>::None)?,
    }
    Ok(server)
}

/// A deployed server on its way to JS as a `RunningServer` object.
pub struct RunningServerValue(ServerInfo);

impl ToNapiValue for RunningServerValue {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        value: Self,
    ) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(env);
        let object = server_object(&env, &value.0)?;
        // SAFETY: `object` was created in this same env just above.
        unsafe { Object::to_napi_value(env.raw(), object) }
    }
}

/// Reads a required string field of an entity argument (`project.id`).
fn entity_field(entity: Option<&Unknown>, name: &str, field: &str) -> Result<Option<String>> {
    let value = args::field(entity, name, field)?;
    args::optional_string(value.as_ref(), &format!("{name}.{field}"))
}

/// Reads `entity.id` and checks it with the SPEC's id rules.
fn entity_id(entity: Option<&Unknown>, name: &str) -> Result<String> {
    if entity.is_none_or(|e| {
        matches!(
            e.get_type(),
            Ok(napi::ValueType::Undefined | napi::ValueType::Null)
        )
    }) {
        return Err(napi::Error::from_reason(format!(
            "Invalid {name}: expected an object, got undefined"
        )));
    }
    let id = entity_field(entity, name, "id")?
        .ok_or_else(|| napi::Error::from_reason(format!("Invalid {name}.id: is required")))?;
    validate::id(&format!("{name}.id"), &id).map_err(to_js_error)?;
    Ok(id)
}

/// The `id` of a `RunningServer` argument.
fn server_id(server: Option<&Unknown>) -> Result<String> {
    let id = entity_field(server, "server", "id")?
        .ok_or_else(|| napi::Error::from_reason("Invalid server.id: is required"))?;
    Ok(id)
}

/// What a deploy reads from its arguments.
struct DeployArgs {
    request: DeployRequest,
    subdomain: String,
}

fn read_deploy_args(
    env: &Env,
    project: Option<&Unknown>,
    deployment: Option<&Unknown>,
    build: Option<&Unknown>,
    options: Option<&Unknown>,
) -> Result<DeployArgs> {
    let project_id = entity_id(project, "project")?;
    let deployment_id = entity_id(deployment, "deployment")?;
    let build_id = entity_id(build, "build")?;
    let slug = entity_field(project, "project", "slug")?.unwrap_or_else(|| project_id.clone());
    let kind = entity_field(deployment, "deployment", "type")?;
    let kind = match kind.as_deref() {
        None => DeploymentType::Production,
        Some(name) => DeploymentType::from_name(name).ok_or_else(|| {
            napi::Error::from_reason(format!(
                "Invalid deployment.type: must be 'production', 'staging' or 'preview' (got '{name}')"
            ))
        })?,
    };
    let branch = entity_field(deployment, "deployment", "branch")?.unwrap_or_default();
    let env_vars = match args::field(options, "options", "envVars")? {
        Some(vars) => {
            validate::env_vars("options.envVars", &json::to_json(&vars, "options.envVars")?)
                .map_err(to_js_error)?
        }
        None => BTreeMap::new(),
    };
    let port = args::optional_port(args::field(options, "options", "port")?, "options.port")?;
    let health_timeout = args::optional_integer(
        args::field(options, "options", "healthCheckTimeoutMs")?.as_ref(),
        "options.healthCheckTimeoutMs",
        1,
        validate::MAX_SAFE_INTEGER,
    )?
    .map(Duration::from_millis);
    let node_process: Object = env.get_global()?.get_named_property("process")?;
    let node: String = node_process.get_named_property("execPath")?;
    Ok(DeployArgs {
        subdomain: subdomain::generate(&slug, kind, &branch),
        request: DeployRequest {
            project_id,
            deployment_id,
            build_id,
            env: env_vars,
            port,
            health_timeout,
            node: PathBuf::from(node),
        },
    })
}

#[napi]
impl LocalProcessRunner {
    /// Validates `config` (every field optional; see `LocalProcessRunnerConfig` for defaults).
    /// Throws an `Error` naming the first field that is wrong. `buildDir` is resolved against
    /// the current working directory now.
    #[napi(constructor, ts_args_type = "config?: LocalProcessRunnerConfig")]
    pub fn new(config: Option<Unknown>) -> Result<Self> {
        let cwd = args::cwd("buildDir")?;
        let config = match config {
            Some(config) => json::to_json(&config, "config")?,
            None => Value::Null,
        };
        let config = RunnerConfig::from_json(&config, &cwd).map_err(to_js_error)?;
        let runner = Runner::new(config).map_err(to_js_error)?;
        Ok(LocalProcessRunner {
            shared: Arc::new(Shared {
                runner: Arc::new(runner),
                source: Mutex::new(None),
                router: Mutex::new(None),
                listener: Mutex::new(None),
            }),
        })
    }

    /// Always `'local'`.
    #[napi(getter, js_name = "type", ts_return_type = "'local'")]
    pub fn kind(&self) -> &'static str {
        "local"
    }

    /// The configuration in force, with every default applied and `buildDir` absolute.
    #[napi(ts_return_type = "ResolvedRunnerConfig")]
    pub fn get_config(&self) -> Value {
        self.shared.runner.config().to_json()
    }

    /// Copies projects into build directories with `source.getProjectPath(source, targetDir)`
    /// (`this` kept); the path it resolves is the directory the build works in.
    #[napi(ts_args_type = "source: ProjectSourceProvider")]
    pub fn set_source(&self, source: Option<Unknown>) -> Result<()> {
        let object = provider_object(source.as_ref(), "source")?;
        let source = Source {
            get_project_path: async_method(&object, "source", "getProjectPath")?,
        };
        *lock(&self.shared.source) = Some(Arc::new(source));
        Ok(())
    }

    /// Builds `build` of `project`: copies the project through the source provider into
    /// `<buildDir>/<build.id>`, installs its dependencies, runs its `build` script and checks
    /// `.mastra/output/index.mjs`. Resolves the same `build` object with `status`,
    /// `startedAt`, `completedAt`, `errorMessage` and `logs` set (other fields untouched).
    /// A failing project is `status: 'failed'`, not a rejection; rejects for bad ids, a missing
    /// source provider (`Project source provider not configured`) or a failing one. Every log
    /// line reaches `onLog` in order before the Promise resolves.
    #[napi(
        ts_args_type = "project: Project, build: Build, options?: BuildOptions, onLog?: (line: string) => void",
        ts_return_type = "Promise<Build>"
    )]
    pub fn build<'env>(
        &self,
        env: &'env Env,
        project: Option<Unknown>,
        build: Option<Unknown>,
        options: Option<Unknown>,
        on_log: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Object<'env>>> {
        let plan = read_build_args(
            env,
            &self.shared,
            project.as_ref(),
            build.as_ref(),
            options.as_ref(),
            on_log.as_ref(),
        );
        // Argument errors reject (like every failure of this method) rather than throw.
        let (plan, delivery) = match plan {
            Ok(mut plan) => match plan.on_log.take() {
                Some(callback) => {
                    match deliver_text(env, &plan.request.log, callback, "a build onLog callback") {
                        Ok((_, delivery)) => (Ok(plan), Some(delivery)),
                        Err(error) => {
                            self.shared.runner.abandon_build(&plan.request.build_id);
                            plan.build_object.unref(env)?;
                            return Err(error);
                        }
                    }
                }
                None => (Ok(plan), None),
            },
            Err(error) => (Err(error), None),
        };
        let shared = Arc::clone(&self.shared);
        env.spawn_future_with_callback(
            async move {
                let BuildPlan {
                    project_id,
                    target,
                    request,
                    build_object,
                    ..
                } = plan?;
                let log = Arc::clone(&request.log);
                let outcome = run_build(&shared, &project_id, target, request).await;
                log.close_subscriptions();
                if let Some(delivery) = delivery {
                    let _ = delivery.await;
                }
                Ok((build_object, outcome))
            },
            move |env, (build_object, outcome)| {
                let mut build = build_object.get_value(env)?;
                build_object.unref(env)?;
                let outcome = outcome?;
                build.set("status", outcome.status.as_str())?;
                let started = outcome.started_at.unwrap_or(outcome.completed_at);
                build.set("startedAt", date(env, started)?)?;
                build.set("completedAt", date(env, outcome.completed_at)?)?;
                build.set("errorMessage", outcome.error_message)?;
                build.set("logs", outcome.logs)?;
                Ok(build)
            },
        )
    }

    /// Cancels a build: one still copying its source, queued or running ends with
    /// `status: 'cancelled'` (a running one has its process tree killed). Resolves once its
    /// processes are gone; unknown or finished builds resolve at once.
    #[napi(ts_args_type = "buildId: string", ts_return_type = "Promise<void>")]
    pub fn cancel_build<'env>(
        &self,
        env: &'env Env,
        build_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let build_id = args::required_string(build_id, "buildId");
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            shared.runner.cancel_build(&build_id?).await;
            Ok(())
        })
    }

    /// Deletes the directory of build `buildId` under `buildDir` (rejects while the build is
    /// queued or running; an unknown build resolves at once).
    #[napi(ts_args_type = "buildId: string", ts_return_type = "Promise<void>")]
    pub fn remove_build<'env>(
        &self,
        env: &'env Env,
        build_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let build_id = args::required_string(build_id, "buildId");
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            shared
                .runner
                .remove_build(&build_id?)
                .await
                .map_err(to_js_error)?;
            Ok(())
        })
    }

    /// Routes deployed servers through `router`: `deploy` registers a route (and fails,
    /// stopping the server, when that fails); `stop` removes it.
    #[napi(ts_args_type = "router: EdgeRouterProvider")]
    pub fn set_router(&self, router: Option<Unknown>) -> Result<()> {
        let object = provider_object(router.as_ref(), "router")?;
        let router = Router {
            register_route: async_method(&object, "router", "registerRoute")?,
            remove_route: async_method(&object, "router", "removeRoute")?,
        };
        *lock(&self.shared.router) = Some(Arc::new(router));
        Ok(())
    }

    /// Calls `callback(serverId, line, stream, id)` for every new line of every server, in
    /// order per server. Replaces an earlier listener. A throwing callback is reported (see
    /// `MASTRA_RUNNER_LOG`) and stays subscribed.
    #[napi(
        ts_args_type = "callback: (serverId: string, line: string, stream: 'stdout' | 'stderr', id?: string) => void"
    )]
    pub fn set_on_server_log(&self, env: Env, callback: Option<Unknown>) -> Result<()> {
        let callback: ServerLogCallback = args::required_callback(callback.as_ref(), "callback")?;
        let sink = batch_sink(&env, move |env, (server_id, batch): (String, LogBatch)| {
            let Ok(callback) = callback.borrow_back(env) else {
                return;
            };
            for entry in batch.entries {
                let args = (
                    server_id.clone(),
                    entry.line.to_string(),
                    entry.stream.as_str().to_owned(),
                    entry.id.to_string(),
                );
                if let Err(error) = callback.call(FnArgs::from(args)) {
                    report_callback_error("the server log listener", &error);
                }
            }
        })?;
        let mut listener = ServerLogListener {
            sink,
            subscriptions: Vec::new(),
        };
        for (id, log) in self.shared.runner.running_server_logs() {
            listener.attach(&id, &log);
        }
        if let Some(mut previous) = lock(&self.shared.listener).replace(listener) {
            previous.detach_all();
        }
        Ok(())
    }

    /// Starts `build`'s output (`.mastra/output/index.mjs` in the directory the build used)
    /// with the host's Node.js on a free port and resolves once its health check passes.
    #[napi(
        ts_args_type = "project: Project, deployment: Deployment, build: Build, options?: RunOptions",
        ts_return_type = "Promise<RunningServer>"
    )]
    pub fn deploy<'env>(
        &self,
        env: &'env Env,
        project: Option<Unknown>,
        deployment: Option<Unknown>,
        build: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, RunningServerValue>> {
        let parsed = read_deploy_args(
            env,
            project.as_ref(),
            deployment.as_ref(),
            build.as_ref(),
            options.as_ref(),
        );
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            let DeployArgs { request, subdomain } = parsed?;
            let project_id = request.project_id.clone();
            let info = shared.runner.deploy(request).await.map_err(to_js_error)?;
            let router = lock(&shared.router).clone();
            if let Some(router) = router {
                let route = json!({
                    "deploymentId": info.deployment_id,
                    "projectId": project_id,
                    "subdomain": subdomain,
                    "targetHost": "127.0.0.1",
                    "targetPort": info.port,
                });
                let limit = shared.runner.config().provider_timeout;
                let registered = call(&router.register_route, route, limit).await;
                let route_id = registered
                    .as_ref()
                    .ok()
                    .and_then(|r| r.get("routeId")?.as_str().map(str::to_owned));
                match (registered, route_id) {
                    (Ok(_), Some(route_id)) => shared.runner.set_route(&info.id, route_id),
                    (result, _) => {
                        shared.runner.stop(&info.id).await;
                        let why = result
                            .err()
                            .unwrap_or_else(|| "it resolved without a routeId".to_owned());
                        return Err(napi::Error::from_reason(format!(
                            "Router failed to register a route for deployment '{}': {why}",
                            info.deployment_id
                        )));
                    }
                }
            }
            if let Some(log) = shared.runner.server_log(&info.id)
                && let Some(listener) = lock(&shared.listener).as_mut()
            {
                listener.attach(&info.id, &log);
            }
            let info = shared.runner.server(&info.id).unwrap_or(info);
            Ok(RunningServerValue(info))
        })
    }

    /// Removes the server's route, stops its whole process tree (SIGTERM, grace, SIGKILL) and
    /// releases its port; resolves when no process of it is left. Unknown or already stopped
    /// servers resolve at once.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<void>"
    )]
    pub fn stop<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let id = server_id(server.as_ref());
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            stop_server(&shared, &id?).await;
            Ok(())
        })
    }

    /// `{ healthy: false, message: 'Process is not running' }` once the process is gone;
    /// otherwise one HTTP check of its endpoint.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<{ healthy: boolean; message?: string }>"
    )]
    pub fn health_check<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ServerHealth>> {
        let id = server_id(server.as_ref());
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            let report = shared.runner.health_check(&id?).await;
            Ok(ServerHealth {
                healthy: report.healthy,
                message: report.message,
            })
        })
    }

    /// The server's log as text, lines joined with newlines (stderr lines prefixed
    /// `[stderr] `): lines since `since` when given (it wins over `tail`), else the last `tail`
    /// lines, else all. `''` for an unknown server.
    #[napi(
        ts_args_type = "server: RunningServer, options?: { tail?: number; since?: Date }",
        ts_return_type = "Promise<string>"
    )]
    pub fn get_logs<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, String>> {
        let read = (|| -> Result<(String, Option<u64>, Option<u64>)> {
            let id = server_id(server.as_ref())?;
            let tail = args::optional_integer(
                args::field(options.as_ref(), "options", "tail")?.as_ref(),
                "options.tail",
                0,
                u64::from(u32::MAX),
            )?;
            let since = match args::field(options.as_ref(), "options", "since")? {
                Some(since) => Some(args::date_ms(&since, "options.since")?),
                None => None,
            };
            Ok((id, tail, since))
        })();
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            let (id, tail, since) = read?;
            let Some(log) = shared.runner.server_log(&id) else {
                return Ok(String::new());
            };
            let entries = match (since, tail) {
                (Some(since), _) => log.since(since),
                (None, Some(tail)) => log.tail(tail as usize),
                (None, None) => log.all(),
            };
            Ok(join_text(&entries))
        })
    }

    /// A page of the server's log entries, oldest first: up to `limit` (default 100) entries
    /// older than the cursor `before` (the newest when absent).
    #[napi(
        ts_args_type = "server: RunningServer, options?: { limit?: number; before?: string }",
        ts_return_type = "Promise<PaginatedLogsResult>"
    )]
    pub fn get_logs_paginated<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let read = (|| -> Result<(String, Option<Arc<LogStore>>, Value)> {
            let id = server_id(server.as_ref())?;
            let log = self.shared.runner.server_log(&id);
            let limit = args::field(options.as_ref(), "options", "limit")?;
            let before = args::field(options.as_ref(), "options", "before")?;
            let empty = LogStore::new(crate::logs::LogLimits::with_lines(1));
            let page = paginate(
                log.as_deref().unwrap_or(&empty),
                limit.as_ref(),
                before.as_ref(),
            )?;
            Ok((id, log, page))
        })();
        env.spawn_future(async move { read.map(|(_, _, page)| page) })
    }

    /// Calls `callback(line)` for every new line of the server (stderr lines prefixed
    /// `[stderr] `) until the returned function is called. Unknown server: never called.
    #[napi(
        ts_args_type = "server: RunningServer, callback: (line: string) => void",
        ts_return_type = "() => void"
    )]
    pub fn stream_logs<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
        callback: Option<Unknown>,
    ) -> Result<Function<'env, (), ()>> {
        let id = server_id(server.as_ref())?;
        let callback = args::required_callback(callback.as_ref(), "callback")?;
        match self.shared.runner.server_log(&id) {
            Some(log) => stream_text(env, &log, callback),
            None => env.create_function_from_closure("unsubscribe", |_| Ok(())),
        }
    }

    /// Memory (RSS, MB) and CPU (% of one core since the previous sample) of the server's
    /// whole process tree, found by server id; `null`s once it is gone.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<{ memoryUsageMb: number | null; cpuPercent: number | null }>"
    )]
    pub fn get_resource_usage<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let id = server_id(server.as_ref());
        let shared = Arc::clone(&self.shared);
        env.spawn_future(async move {
            let usage = shared.runner.resource_usage(&id?).await;
            Ok(super::process::usage_value(usage))
        })
    }

    /// Counts of running server processes, allocated and free ports, and restarts, with a
    /// summary of every supervised server.
    #[napi]
    pub fn get_stats(&self) -> RunnerStats {
        let stats = self.shared.runner.stats();
        RunnerStats {
            running_processes: stats.running_processes as u32,
            allocated_ports: stats.allocated_ports.into_iter().map(u32::from).collect(),
            available_ports: stats.available_ports as u32,
            restarts: stats.restarts,
            servers: stats
                .servers
                .into_iter()
                .map(|s| ServerSummary {
                    id: s.id,
                    deployment_id: s.deployment_id,
                    process_id: s.pid,
                    port: u32::from(s.port),
                    health_status: s.health.as_str().to_owned(),
                    restarts: s.restarts,
                })
                .collect(),
        }
    }

    /// Stops every server (routes removed, trees killed, ports released) and cancels every
    /// build; resolves when no process is left. Drops the router and the log listener.
    #[napi]
    pub async fn shutdown(&self) -> Result<()> {
        let ids: Vec<String> = self
            .shared
            .runner
            .stats()
            .servers
            .into_iter()
            .map(|s| s.id)
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for id in ids {
            let shared = Arc::clone(&self.shared);
            stops.spawn(async move { stop_server(&shared, &id).await });
        }
        while stops.join_next().await.is_some() {}
        self.shared.runner.shutdown().await;
        lock(&self.shared.router).take();
        if let Some(mut listener) = lock(&self.shared.listener).take() {
            listener.detach_all();
        }
        Ok(())
    }
}

/// What `build()` read from its arguments.
struct BuildPlan {
    project_id: String,
    target: BuildTarget,
    request: BuildRequest,
    build_object: ObjectRef,
    on_log: Option<args::LineCallback>,
}

/// Where a build's source comes from.
enum BuildTarget {
    /// The JS source provider, called with this `ProjectSource`.
    Provider(Arc<Source>, Value),
    /// The built-in local copy of this directory (`defaultSource: 'local'`).
    Local(String),
}

fn read_build_args(
    env: &Env,
    shared: &Shared,
    project: Option<&Unknown>,
    build: Option<&Unknown>,
    options: Option<&Unknown>,
    on_log: Option<&Unknown>,
) -> Result<BuildPlan> {
    let project_id = entity_id(project, "project")?;
    let build_id = entity_id(build, "build")?;
    let name = entity_field(project, "project", "name")?.unwrap_or_else(|| project_id.clone());
    let source_type =
        entity_field(project, "project", "sourceType")?.unwrap_or_else(|| "local".to_owned());
    let source_config = args::field(project, "project", "sourceConfig")?;
    let path = entity_field(source_config.as_ref(), "project.sourceConfig", "path")?;
    let target = match lock(&shared.source).clone() {
        Some(source) => BuildTarget::Provider(
            source,
            json!({ "id": project_id, "name": name, "type": source_type, "path": path }),
        ),
        None if shared.runner.config().default_source == Some(DefaultSource::Local) => {
            BuildTarget::Local(path.ok_or_else(|| {
                napi::Error::from_reason(
                    "Invalid project.sourceConfig.path: is required for the local source",
                )
            })?)
        }
        None => {
            return Err(napi::Error::from_reason(
                "Project source provider not configured",
            ));
        }
    };
    let options = BuildOptions::from_json(&args::options(options.cloned(), "options")?, "options")
        .map_err(to_js_error)?;
    let on_log = args::optional_callback(on_log, "onLog")?;
    let build_object = provider_object(build, "build")?.create_ref()?;
    if let Err(error) = shared.runner.register_build(&project_id, &build_id) {
        build_object.unref(env)?;
        return Err(to_js_error(error));
    }
    let mut request = BuildRequest::new(build_id, PathBuf::new()).with_options(options);
    request.log = Arc::new(LogStore::new(crate::logs::LogLimits::with_lines(
        BUILD_LOG_LINES,
    )));
    Ok(BuildPlan {
        project_id,
        target,
        request,
        build_object,
        on_log,
    })
}

/// Lines of a build log kept for `Build.logs` (the newest win).
const BUILD_LOG_LINES: usize = 10_000;

/// Copies the source, then builds; a failing provider becomes the rejection.
async fn run_build(
    shared: &Shared,
    project_id: &str,
    target: BuildTarget,
    mut request: BuildRequest,
) -> Result<BuildOutcome> {
    let runner = &shared.runner;
    let dir = runner
        .begin_build(&request.build_id)
        .await
        .map_err(to_js_error)?;
    let workdir = match target {
        BuildTarget::Provider(source, project) => {
            let limit = request
                .timeout
                .unwrap_or(runner.config().default_build_timeout);
            let target_dir = dir.to_string_lossy().into_owned();
            match call(
                &source.get_project_path,
                FnArgs::from((project.clone(), target_dir)),
                limit,
            )
            .await
            {
                Ok(Value::String(path)) if !path.is_empty() => PathBuf::from(path),
                Ok(other) => {
                    runner.abandon_build(&request.build_id);
                    return Err(napi::Error::from_reason(format!(
                        "Source provider returned {other} instead of the project's path for project '{project_id}'"
                    )));
                }
                Err(why) => {
                    runner.abandon_build(&request.build_id);
                    return Err(napi::Error::from_reason(format!(
                        "Source provider failed for project '{project_id}': {why}"
                    )));
                }
            }
        }
        BuildTarget::Local(path) => match runner.copy_local_source(&path, &dir, &request.log).await
        {
            Ok(workdir) => workdir,
            Err(error) => {
                runner.abandon_build(&request.build_id);
                return Err(to_js_error(error));
            }
        },
    };
    request.workdir = workdir;
    runner.run_build(request).await.map_err(to_js_error)
}

/// Removes the route (a failing router is reported, not fatal: the server stops anyway), then
/// stops the server.
async fn stop_server(shared: &Shared, id: &str) {
    let route = shared.runner.server(id).and_then(|s| s.route_id);
    let router = lock(&shared.router).clone();
    if let (Some(route_id), Some(router)) = (route, router)
        && let Err(why) = call(
            &router.remove_route,
            Value::String(route_id.clone()),
            shared.runner.config().provider_timeout,
        )
        .await
    {
        tracing::warn!("router failed to remove route '{route_id}' of server '{id}': {why}");
    }
    shared.runner.stop(id).await;
}

/// A provider argument: an object (not null, not an array).
fn provider_object<'env>(value: Option<&Unknown<'env>>, name: &str) -> Result<Object<'env>> {
    match value {
        Some(value) if value.get_type()? == napi::ValueType::Object && !value.is_array()? => {
            // SAFETY: the type was just checked.
            unsafe { value.cast::<Object>() }
        }
        _ => Err(napi::Error::from_reason(format!(
            "Invalid {name}: expected an object with its methods"
        ))),
    }
}
