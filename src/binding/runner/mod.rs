//! `LocalProcessRunner` as JS sees it (SPEC §2): each method reads its arguments, makes one
//! call into the core's [`Runner`], and converts the answer. Route policy, the build protocol,
//! timeouts and shutdown are the core's.

mod calls;

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{
    Either, Env, FnArgs, Function, FunctionRef, Object, PromiseRaw, Unknown,
    within_runtime_if_available,
};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use serde_json::Value;

use super::args;
use super::delivery::{ServerLogBatch, batch_sink, js_reporter, report_callback_error};
use super::entities::{
    PaginatedLogsResult, ResourceUsage, RunnerStats, RunningServer, ServerHealth, update_build,
};
use super::error::{Result, spawn, spawn_then};
use super::json;
use super::logs::{PageRequest, deliver_text, stream_text};
use super::observability::ObservabilitySlot;
use super::provider::{JsRouter, JsSource, ServerLogListener, provider_object};
use crate::config::RunnerConfig;
use crate::logs::{LogLimits, LogStore, join_text};
use crate::runner::Runner;
use crate::sync::lock;
use calls::{read_build_call, read_deploy_request, server_id};

/// The name `setOnServerLog`'s listener is kept under among the runner's log observers.
const SERVER_LOG_LISTENER: &str = "setOnServerLog";

/// The `setOnServerLog` callback as the warnings about its exceptions name it.
const SERVER_LOG_CALLBACK_NAME: &str = "the server log listener";

/// A server-log listener's callback: `(serverId, line, stream, id)`.
type ServerLogCallback = FunctionRef<FnArgs<(String, String, String, String)>, UnknownReturnValue>;

/// JS that hands one server's batch to a `setOnServerLog` callback line by line: `batch` is
/// one string of lines joined by `\n` (cut with `indexOf`), or an array of lines; `runs` holds
/// `firstId, count, isStderr` for each run of them. A throwing callback is reported and still
/// gets the next line.
const SERVER_LOG_FAN_OUT: &str = r"(function (callback, report) {
  return function deliver(serverId, batch, runs) {
    const joined = typeof batch === 'string'
    let start = 0
    let next = 0
    for (let r = 0; r < runs.length; r += 3) {
      const first = runs[r]
      const stream = runs[r + 2] === 1 ? 'stderr' : 'stdout'
      for (let k = 0; k < runs[r + 1]; k++) {
        let line
        if (joined) {
          const end = batch.indexOf('\n', start)
          line = end === -1 ? batch.slice(start) : batch.slice(start, end)
          start = end + 1
        } else {
          line = batch[next++]
        }
        try { callback(serverId, line, stream, String(first + k)) } catch (error) { report(error) }
      }
    }
  }
})";

/// The JS side of the server-log listener: `(serverId, batch, runs) => void`.
type ServerLogDeliver = FunctionRef<FnArgs<(String, Either<String, Vec<String>>, Vec<f64>)>, ()>;

/// [`SERVER_LOG_FAN_OUT`] once compiled: `(callback, report) => deliver`.
type ServerLogFanOut<'env> = Function<
    'env,
    FnArgs<(
        Function<'env, FnArgs<(String, String, String, String)>, UnknownReturnValue>,
        Function<'env, Unknown<'env>, ()>,
    )>,
    Function<'env, FnArgs<(String, Either<String, Vec<String>>, Vec<f64>)>, ()>,
>;

/// Builds Mastra projects and runs them as supervised local processes.
#[napi]
pub struct LocalProcessRunner {
    runner: Arc<Runner>,
    listener: Arc<Mutex<Option<Arc<ServerLogListener>>>>,
    observability: ObservabilitySlot,
}

#[napi]
impl LocalProcessRunner {
    /// Validates `config` (every field optional; see `LocalProcessRunnerConfig` for defaults).
    /// Throws an `Error` naming the first field that is wrong. `buildDir` is resolved against
    /// the current working directory now. With `keepServersOnExit: true`, adopts the servers
    /// an earlier runner on the same `buildDir` left running (`getStats().adoption` says which).
    #[napi(constructor, ts_args_type = "config?: LocalProcessRunnerConfig")]
    pub fn new(config: Option<Unknown>) -> Result<Self> {
        let cwd = args::cwd("buildDir")?;
        let config = match config {
            Some(config) => json::to_json(&config, "config")?,
            None => Value::Null,
        };
        let runner = Runner::new(RunnerConfig::from_json(&config, &cwd)?)?;
        if runner.config().keep_servers_on_exit {
            within_runtime_if_available(|| runner.adopt_kept_servers());
        }
        Ok(LocalProcessRunner {
            runner: Arc::new(runner),
            listener: Arc::new(Mutex::new(None)),
            observability: ObservabilitySlot::default(),
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
        self.runner.config().to_json()
    }

    /// Copies projects into build directories with `source.getProjectPath(source, targetDir)`
    /// (`this` kept); the path it resolves is the directory the build works in.
    #[napi(ts_args_type = "source: ProjectSourceProvider")]
    pub fn set_source(&self, source: Option<Unknown>) -> Result<()> {
        let object = provider_object(source.as_ref(), "source")?;
        self.runner.set_source(Arc::new(JsSource::new(&object)?));
        Ok(())
    }

    /// Routes deployed servers through `router`: `deploy` registers a route once the server is
    /// healthy (and fails, stopping the server, when that fails); `stop` removes it first.
    #[napi(ts_args_type = "router: EdgeRouterProvider")]
    pub fn set_router(&self, router: Option<Unknown>) -> Result<()> {
        let object = provider_object(router.as_ref(), "router")?;
        self.runner.set_router(Arc::new(JsRouter::new(&object)?));
        Ok(())
    }

    /// Writes every server's and build's log lines to `storage` from now on, as JSONL files
    /// of `log` events (`observability/log/{projectId}/{YYYYMMDDTHHMMSSZ}_{12 hex}.jsonl`,
    /// batched by the `observability` config). A failing or hanging storage never slows a
    /// server: its batches are retried, then counted as dropped in `getStats().observability`.
    /// `write` may return a Promise or, synchronously, anything else (awaited as `await`
    /// would). Called again with another storage, the earlier one is given what it had
    /// pending at once (what it has not taken within `providerTimeoutMs` is counted as
    /// dropped) and nothing later; the counts cover every storage set.
    #[napi(ts_args_type = "storage: FileStorageProvider")]
    pub fn set_observability_storage(&self, storage: Option<Unknown>) -> Result<()> {
        let object = provider_object(storage.as_ref(), "storage")?;
        self.observability.set(&self.runner, &object)
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
    ) -> napi::Result<PromiseRaw<'env, Object<'env>>> {
        // Argument errors reject (like every failure of this method) rather than throw.
        let prepared = args::optional_callback(on_log.as_ref(), "onLog").and_then(|on_log| {
            let call = read_build_call(
                &self.runner,
                project.as_ref(),
                build.as_ref(),
                options.as_ref(),
            )?;
            let delivery = match on_log {
                Some(callback) => Some(
                    deliver_text(env, &call.request.log, callback, "a build onLog callback")?.1,
                ),
                None => None,
            };
            Ok((call, delivery))
        });
        let runner = Arc::clone(&self.runner);
        spawn_then(
            env,
            async move {
                let (call, delivery) = prepared?;
                let log = Arc::clone(&call.request.log);
                let outcome = runner.build(call.ticket, call.request).await;
                log.close_subscriptions();
                if let Some(delivery) = delivery {
                    let _ = delivery.await;
                }
                Ok((call.build_object, outcome))
            },
            move |env, (build_object, outcome)| {
                let mut build = build_object.get_value(env)?;
                build_object.unref(env)?;
                update_build(&mut build, outcome?)?;
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
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let build_id = args::required_string(build_id, "buildId");
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.cancel_build(&build_id?).await;
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
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let build_id = args::required_string(build_id, "buildId");
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.remove_build(&build_id?).await?;
            Ok(())
        })
    }

    /// Deletes the data directory of deployment `deploymentId` (`<buildDir>/.data/<id>`: what
    /// its servers wrote relative to their working directory); rejects with
    /// `ERR_DATA_IN_USE` while a server of the deployment runs. Resolves whether there was one.
    #[napi(
        ts_args_type = "deploymentId: string",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn remove_deployment_data<'env>(
        &self,
        env: &'env Env,
        deployment_id: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, bool>> {
        let deployment_id = args::required_string(deployment_id, "deploymentId");
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            Ok(runner.remove_deployment_data(&deployment_id?).await?)
        })
    }

    /// Calls `callback(serverId, line, stream, id)` for every line of every server, from the
    /// first line of a server's first process on (the startup banner, and the output of a
    /// deploy that fails, included), in order per server. Replaces an earlier listener. A
    /// throwing callback is reported (see `MASTRA_RUNNER_LOG`) and stays subscribed.
    #[napi(
        ts_args_type = "callback: (serverId: string, line: string, stream: 'stdout' | 'stderr', id?: string) => void"
    )]
    pub fn set_on_server_log(&self, env: Env, callback: Option<Unknown>) -> Result<()> {
        let callback: ServerLogCallback = args::required_callback(callback.as_ref(), "callback")?;
        let report = js_reporter(&env, SERVER_LOG_CALLBACK_NAME)?;
        let factory: ServerLogFanOut = env.run_script(SERVER_LOG_FAN_OUT)?;
        let deliver = factory.call(FnArgs::from((callback.borrow_back(&env)?, report)))?;
        let deliver: ServerLogDeliver = deliver.create_ref()?;
        let sink = batch_sink(&env, move |env, batch: ServerLogBatch| {
            let args = (batch.server_id, batch.text.into_js(), batch.runs);
            let delivered = deliver
                .borrow_back(env)
                .and_then(|deliver| deliver.call(FnArgs::from(args)));
            if let Err(error) = delivered {
                report_callback_error(SERVER_LOG_CALLBACK_NAME, &error);
            }
        })?;
        let listener = Arc::new(ServerLogListener::new(sink));
        if let Some(previous) = lock(&self.listener).replace(Arc::clone(&listener)) {
            previous.detach_all();
        }
        self.runner.set_log_observer(SERVER_LOG_LISTENER, listener);
        Ok(())
    }

    /// Starts `build`'s output (`.mastra/output/index.mjs` in the directory the build used)
    /// with the host's Node.js on a free port and resolves once its health check passes (and,
    /// with a router, its route is registered).
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
    ) -> napi::Result<PromiseRaw<'env, RunningServer>> {
        let request = read_deploy_request(
            env,
            project.as_ref(),
            deployment.as_ref(),
            build.as_ref(),
            options.as_ref(),
        );
        // The deploy takes its place among the calls now, on the JS thread, in call order.
        let deploying = request.map(|request| self.runner.deploy(request));
        spawn(
            env,
            async move { Ok(RunningServer::from(deploying?.await?)) },
        )
    }

    /// Removes the server's route, stops its whole process tree (SIGTERM, grace, SIGKILL) and
    /// releases its port; resolves when no process of it is left. Unknown or already stopped
    /// servers resolve at once. Under `redeploy: 'replace'` a server stands for its deployment:
    /// stopping any record of it (current, replaced by a redeploy, or still draining) stops
    /// every server of the deployment, including one a deploy in flight is starting (that
    /// deploy rejects), so nothing of it runs afterwards (what MastraAdmin's `stopDeployment()`
    /// means, whichever record its storage holds); each record's own logs stay readable.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<void>"
    )]
    pub fn stop<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let id = server_id(server.as_ref());
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.stop(&id?).await;
            Ok(())
        })
    }

    /// `{ healthy: false, message: 'Process is not running' }` once the process is gone;
    /// otherwise one HTTP check of its endpoint. A record a redeploy replaced is answered for
    /// by its deployment's current server, as long as the deployment has one.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<{ healthy: boolean; message?: string }>"
    )]
    pub fn health_check<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ServerHealth>> {
        let id = server_id(server.as_ref());
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            Ok(ServerHealth::from(runner.health_check(&id?).await))
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
    ) -> napi::Result<PromiseRaw<'env, String>> {
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
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let (id, tail, since) = read?;
            let Some(log) = runner.settled_server_log(&id).await else {
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
    ) -> napi::Result<PromiseRaw<'env, PaginatedLogsResult>> {
        let request = (|| -> Result<(String, PageRequest)> {
            let id = server_id(server.as_ref())?;
            let limit = args::field(options.as_ref(), "options", "limit")?;
            let before = args::field(options.as_ref(), "options", "before")?;
            Ok((id, PageRequest::read(limit.as_ref(), before.as_ref())?))
        })();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let (id, request) = request?;
            let log = runner.settled_server_log(&id).await;
            let empty = LogStore::new(LogLimits::with_lines(1));
            Ok(request.page(log.as_deref().unwrap_or(&empty)))
        })
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
        Ok(match self.runner.server_log(&id) {
            Some(log) => stream_text(env, &log, callback)?,
            None => env.create_function_from_closure("unsubscribe", |_| Ok(()))?,
        })
    }

    /// Memory (RSS, MB) and CPU (% of one core since the previous sample) of the server's
    /// whole process tree, found by server id (a record a redeploy replaced: its deployment's
    /// current server); `null`s once it is gone. Usually read on this
    /// thread, the Promise settled at once: the `stat` and `children` files of the server's
    /// processes (tens of microseconds, as `process.memoryUsage()` reads `/proc`). Off this
    /// thread: a tree of more than 64 processes, and the look for processes that left the tree
    /// (every process's environment), which the first call and then a call every 5 s at most
    /// make.
    #[napi(
        ts_args_type = "server: RunningServer",
        ts_return_type = "Promise<ResourceUsage>"
    )]
    pub fn get_resource_usage<'env>(
        &self,
        env: &'env Env,
        server: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ResourceUsage>> {
        let id = server_id(server.as_ref());
        if let Ok(id) = &id
            && let Some(usage) = self.runner.resource_usage_now(id)
        {
            return PromiseRaw::resolve(env, ResourceUsage::from(usage));
        }
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let usage = runner.resource_usage(&id?).await;
            Ok(ResourceUsage::from(usage))
        })
    }

    /// The live servers whose deploy finished, with their current health: one per deployment
    /// under `redeploy: 'replace'`.
    #[napi]
    pub fn list_servers(&self) -> Vec<RunningServer> {
        self.runner
            .list_servers()
            .into_iter()
            .map(RunningServer::from)
            .collect()
    }

    /// Counts of running server processes, allocated and free ports, and restarts, with a
    /// summary of every supervised server.
    #[napi]
    pub fn get_stats(&self) -> RunnerStats {
        RunnerStats {
            observability: self.observability.stats(),
            ..RunnerStats::from(self.runner.stats())
        }
    }

    /// With `keepServersOnExit: true`, what a host calls before a planned restart: stops
    /// supervising and leaves every running server running, its record handed over so that the
    /// next runner on the same `buildDir` adopts it (same id, port, logs). Servers still
    /// starting or waiting to restart are stopped, builds and deploys in flight cancelled.
    /// Rejects with `ERR_INVALID_STATE` without `keepServersOnExit`. Drops the log listener.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn detach<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let runner = Arc::clone(&self.runner);
        let listener = Arc::clone(&self.listener);
        let replaced_storages = self.observability.settled();
        spawn(env, async move {
            runner.detach().await?;
            drop_listener(&runner, &listener);
            replaced_storages.await;
            Ok(())
        })
    }

    /// Stops every server (routes removed, trees killed, ports released) and cancels every
    /// build, including deploys and builds in flight; resolves when no process is left. Drops
    /// the log listener. Calls made afterwards start afresh.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let runner = Arc::clone(&self.runner);
        let listener = Arc::clone(&self.listener);
        let replaced_storages = self.observability.settled();
        spawn(env, async move {
            runner.shutdown().await;
            drop_listener(&runner, &listener);
            replaced_storages.await;
            Ok(())
        })
    }
}

/// Stops `setOnServerLog`'s listener: no more lines reach it.
fn drop_listener(runner: &Runner, listener: &Mutex<Option<Arc<ServerLogListener>>>) {
    runner.clear_log_observer(SERVER_LOG_LISTENER);
    if let Some(listener) = lock(listener).take() {
        listener.detach_all();
    }
}
