//! `LocalProcessRunner` as JS sees it (SPEC §2): each method reads its arguments, makes one
//! call into the core's [`Runner`], and converts the answer. Route policy, the build protocol,
//! timeouts and shutdown are the core's.

mod calls;

use std::sync::Arc;

use napi::bindgen_prelude::{
    Env, Function, FunctionRef, JsValue, Object, PromiseRaw, within_runtime_if_available,
};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use serde_json::Value;

use super::convert::{
    Arg, BuiltBuild, BuiltProject, DeployedDeployment, DeployedProject, EntityId, Json,
    PromisedArg, Required, ServerId, arg_names,
};
use super::convert::{LineCallback, read};
use super::delivery::JsServerLogSink;
use super::entities::{
    PaginatedLogsResult, ResolvedRunnerConfig, ResourceUsage, RunnerStats, RunningServer,
    ServerHealth, update_build,
};
use super::error::{Result, spawn, spawn_then};
use super::logs::{PageRequest, stream_text};
use super::observability::JsFileStorage;
use super::provider::{JsRouter, JsSource};
use crate::config::RunnerConfig;
use crate::logs::query::LogQuery;
use crate::logs::{LogLimits, LogStore, join_text};
use crate::runner::{RunOptions, Runner};
use calls::{BuildArguments, deploy_request};

arg_names! {
    ConfigArg = "config";
    SourceArg = "source";
    RouterArg = "router";
    StorageArg = "storage";
    ProjectArg = "project";
    DeploymentArg = "deployment";
    BuildArg = "build";
    OptionsArg = "options";
    OnLogArg = "onLog";
    BuildIdArg = "buildId";
    DeploymentIdArg = "deploymentId";
    CallbackArg = "callback";
    ServerArg = "server";
}

/// A server-log listener's callback: `(serverId, line, stream, id)`.
type ServerLogCallback = FunctionRef<(String, String, String, String), UnknownReturnValue>;

/// Builds Mastra projects and runs them as supervised local processes.
#[napi]
pub struct LocalProcessRunner {
    runner: Arc<Runner>,
}

#[napi]
impl LocalProcessRunner {
    /// Validates `config` (every field optional; see `LocalProcessRunnerConfig` for defaults).
    /// Throws an `Error` naming the first field that is wrong. `buildDir` is resolved against
    /// the current working directory now. With `keepServersOnExit: true`, adopts the servers
    /// an earlier runner on the same `buildDir` left running (`getStats().adoption` says which).
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "LocalProcessRunnerConfig")] config: Option<Arg<Json, ConfigArg>>,
    ) -> Result<Self> {
        let cwd = read::cwd("buildDir")?;
        let config = config.map_or(Value::Null, |config| config.into_inner().0);
        let runner = Runner::new(RunnerConfig::from_json(&config, &cwd)?)?;
        if runner.config().keep_servers_on_exit {
            within_runtime_if_available(|| runner.adopt_kept_servers());
        }
        Ok(LocalProcessRunner {
            runner: Arc::new(runner),
        })
    }

    /// Always `'local'`.
    #[napi(getter, js_name = "type", ts_return_type = "'local'")]
    pub fn kind(&self) -> &'static str {
        "local"
    }

    /// The configuration in force, with every default applied and `buildDir` absolute.
    #[napi]
    pub fn get_config(&self) -> ResolvedRunnerConfig {
        ResolvedRunnerConfig::from(self.runner.config())
    }

    /// Copies projects into build directories with `source.getProjectPath(source, targetDir)`
    /// (`this` kept); the path it resolves is the directory the build works in.
    #[napi]
    pub fn set_source(
        &self,
        #[napi(ts_arg_type = "ProjectSourceProvider")] source: Arg<JsSource, SourceArg>,
    ) {
        self.runner.set_source(Arc::new(source.into_inner()));
    }

    /// Routes deployed servers through `router`: `deploy` registers a route once the server is
    /// healthy (and fails, stopping the server, when that fails); `stop` removes it first.
    #[napi]
    pub fn set_router(
        &self,
        #[napi(ts_arg_type = "EdgeRouterProvider")] router: Arg<JsRouter, RouterArg>,
    ) {
        self.runner.set_router(Arc::new(router.into_inner()));
    }

    /// Writes every server's and build's log lines to `storage` from now on, as JSONL files
    /// of `log` events (`observability/log/{projectId}/{YYYYMMDDTHHMMSSZ}_{12 hex}.jsonl`,
    /// batched by the `observability` config). A failing or hanging storage never slows a
    /// server: its batches are retried, then counted as dropped in `getStats().observability`.
    /// `write` may return a Promise or, synchronously, anything else (awaited as `await`
    /// would). Called again with another storage, the earlier one is given what it had
    /// pending at once (what it has not taken within `providerTimeoutMs` is counted as
    /// dropped) and nothing later; the counts cover every storage set.
    #[napi]
    pub fn set_observability_storage(
        &self,
        #[napi(ts_arg_type = "FileStorageProvider")] storage: Arg<JsFileStorage, StorageArg>,
    ) -> Result<()> {
        let storage = Arc::new(storage.into_inner());
        within_runtime_if_available(|| self.runner.set_observability_storage(storage))?;
        Ok(())
    }

    /// Builds `build` of `project`: copies the project through the source provider into
    /// `<buildDir>/<build.id>`, installs its dependencies, runs its `build` script and checks
    /// `.mastra/output/index.mjs`. Resolves the same `build` object with `status`,
    /// `startedAt`, `completedAt`, `errorMessage` and `logs` set (other fields untouched).
    /// A failing project is `status: 'failed'`, not a rejection; rejects for bad ids, a missing
    /// source provider (`Project source provider not configured`) or a failing one. Every log
    /// line reaches `onLog` in order before the Promise resolves.
    #[napi(ts_return_type = "Promise<Build>")]
    pub fn build<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "Project")] project: PromisedArg<BuiltProject, ProjectArg>,
        #[napi(ts_arg_type = "Build")] build: PromisedArg<BuiltBuild, BuildArg>,
        #[napi(ts_arg_type = "BuildOptions")] options: Option<PromisedArg<Json, OptionsArg>>,
        #[napi(ts_arg_type = "(line: string) => void")] on_log: Option<
            PromisedArg<LineCallback, OnLogArg>,
        >,
    ) -> napi::Result<PromiseRaw<'env, Object<'env>>> {
        // Argument errors reject (like every failure of this method) rather than throw.
        let call = BuildArguments {
            project: project.into_result(),
            build: build.into_result(),
            options: options.map_or(Ok(Value::Null), |options| {
                options.into_result().map(|options| options.0)
            }),
            on_log: on_log.map(PromisedArg::into_result).transpose(),
        }
        .prepare(env, &self.runner);
        let runner = Arc::clone(&self.runner);
        spawn_then(
            env,
            async move {
                let call = call?;
                let log = Arc::clone(&call.request.log);
                let outcome = runner.build(call.ticket, call.request).await;
                log.close_subscriptions();
                if let Some(delivery) = call.delivery {
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
    #[napi(ts_return_type = "Promise<void>")]
    pub fn cancel_build<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] build_id: PromisedArg<Required<String>, BuildIdArg>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let build_id = build_id.into_result();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.cancel_build(&build_id?.0).await;
            Ok(())
        })
    }

    /// Deletes the directory of build `buildId` under `buildDir` (rejects while the build is
    /// queued or running; an unknown build resolves at once).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn remove_build<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] build_id: PromisedArg<Required<String>, BuildIdArg>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let build_id = build_id.into_result();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.remove_build(&build_id?.0).await?;
            Ok(())
        })
    }

    /// Deletes the data directory of deployment `deploymentId` (`<buildDir>/.data/<id>`: what
    /// its servers wrote relative to their working directory); rejects with
    /// `ERR_DATA_IN_USE` while a server of the deployment runs. Resolves whether there was one.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn remove_deployment_data<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] deployment_id: PromisedArg<
            Required<String>,
            DeploymentIdArg,
        >,
    ) -> napi::Result<PromiseRaw<'env, bool>> {
        let deployment_id = deployment_id.into_result();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            Ok(runner.remove_deployment_data(&deployment_id?.0).await?)
        })
    }

    /// Calls `callback(serverId, line, stream, id)` for every line of every server, from the
    /// first line of a server's first process on (the startup banner, and the output of a
    /// deploy that fails, included), in order per server. Replaces an earlier listener. A
    /// throwing callback is reported (see `MASTRA_RUNNER_LOG`) and stays subscribed.
    #[napi]
    pub fn set_on_server_log(
        &self,
        env: Env,
        #[napi(
            ts_arg_type = "(serverId: string, line: string, stream: 'stdout' | 'stderr', id?: string) => void"
        )]
        callback: Arg<ServerLogCallback, CallbackArg>,
    ) -> Result<()> {
        let callback = callback.borrow_back(&env)?;
        let sink = JsServerLogSink::new(&env, callback.to_unknown())?;
        within_runtime_if_available(|| self.runner.set_server_log_listener(Arc::new(sink)));
        Ok(())
    }

    /// Starts `build`'s output (`.mastra/output/index.mjs` in the directory the build used)
    /// with the host's Node.js on a free port and resolves once its health check passes (and,
    /// with a router, its route is registered).
    #[napi(ts_return_type = "Promise<RunningServer>")]
    pub fn deploy<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "Project")] project: PromisedArg<DeployedProject, ProjectArg>,
        #[napi(ts_arg_type = "Deployment")] deployment: PromisedArg<
            DeployedDeployment,
            DeploymentArg,
        >,
        #[napi(ts_arg_type = "Build")] build: PromisedArg<EntityId, BuildArg>,
        #[napi(ts_arg_type = "RunOptions")] options: Option<PromisedArg<RunOptions, OptionsArg>>,
    ) -> napi::Result<PromiseRaw<'env, RunningServer>> {
        let request = deploy_request(
            env,
            project.into_result(),
            deployment.into_result(),
            build.into_result(),
            options.map(PromisedArg::into_result),
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
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: PromisedArg<ServerId, ServerArg>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let id = server.into_result();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.stop(&id?.0).await;
            Ok(())
        })
    }

    /// `{ healthy: false, message: 'Process is not running' }` once the process is gone;
    /// otherwise one HTTP check of its endpoint. A record a redeploy replaced is answered for
    /// by its deployment's current server, as long as the deployment has one.
    #[napi]
    pub fn health_check<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: PromisedArg<ServerId, ServerArg>,
    ) -> napi::Result<PromiseRaw<'env, ServerHealth>> {
        let id = server.into_result();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            Ok(ServerHealth::from(runner.health_check(&id?.0).await))
        })
    }

    /// The server's log as text, lines joined with newlines (stderr lines prefixed
    /// `[stderr] `): lines since `since` when given (it wins over `tail`), else the last `tail`
    /// lines, else all. `''` for an unknown server.
    #[napi]
    pub fn get_logs<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: PromisedArg<ServerId, ServerArg>,
        #[napi(ts_arg_type = "{ tail?: number; since?: Date }")] options: Option<
            PromisedArg<LogQuery, OptionsArg>,
        >,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let id = server.into_result();
        let query = options.map(PromisedArg::into_result).transpose();
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let (ServerId(id), query) = (id?, query?.unwrap_or_default());
            Ok(match runner.settled_server_log(&id).await {
                Some(log) => join_text(&query.entries(&log)),
                None => String::new(),
            })
        })
    }

    /// A page of the server's log entries, oldest first: up to `limit` (default 100) entries
    /// older than the cursor `before` (the newest when absent).
    #[napi]
    pub fn get_logs_paginated<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: PromisedArg<ServerId, ServerArg>,
        #[napi(ts_arg_type = "{ limit?: number; before?: string }")] options: Option<
            PromisedArg<PageRequest, OptionsArg>,
        >,
    ) -> napi::Result<PromiseRaw<'env, PaginatedLogsResult>> {
        let id = server.into_result();
        let request = options
            .map(PromisedArg::into_result)
            .unwrap_or_else(|| PageRequest::read(None, None));
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let (ServerId(id), request) = (id?, request?);
            let log = runner.settled_server_log(&id).await;
            let empty = LogStore::new(LogLimits::with_lines(1));
            Ok(request.page(log.as_deref().unwrap_or(&empty)))
        })
    }

    /// Calls `callback(line)` for every new line of the server (stderr lines prefixed
    /// `[stderr] `) until the returned function is called. Unknown server: never called.
    #[napi(ts_return_type = "() => void")]
    pub fn stream_logs<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: Arg<ServerId, ServerArg>,
        #[napi(ts_arg_type = "(line: string) => void")] callback: Arg<LineCallback, CallbackArg>,
    ) -> Result<Function<'env, (), ()>> {
        Ok(match self.runner.server_log(&server.0) {
            Some(log) => stream_text(env, &log, callback.into_inner())?,
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
    #[napi]
    pub fn get_resource_usage<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "RunningServer")] server: PromisedArg<ServerId, ServerArg>,
    ) -> napi::Result<PromiseRaw<'env, ResourceUsage>> {
        let id = server.into_result();
        if let Ok(ServerId(id)) = &id
            && let Some(usage) = self.runner.resource_usage_now(id)
        {
            return PromiseRaw::resolve(env, ResourceUsage::from(usage));
        }
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            let usage = runner.resource_usage(&id?.0).await;
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
        RunnerStats::new(self.runner.stats(), self.runner.observability_stats())
    }

    /// With `keepServersOnExit: true`, what a host calls before a planned restart: stops
    /// supervising and leaves every running server running, its record handed over so that the
    /// next runner on the same `buildDir` adopts it (same id, port, logs). Servers still
    /// starting or waiting to restart are stopped, builds and deploys in flight cancelled.
    /// Rejects with `ERR_INVALID_STATE` without `keepServersOnExit`. Drops the log listener.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn detach<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.detach().await?;
            runner.release_listeners().await;
            Ok(())
        })
    }

    /// Stops every server (routes removed, trees killed, ports released) and cancels every
    /// build, including deploys and builds in flight; resolves when no process is left. Drops
    /// the log listener. Calls made afterwards start afresh.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let runner = Arc::clone(&self.runner);
        spawn(env, async move {
            runner.shutdown().await;
            runner.release_listeners().await;
            Ok(())
        })
    }
}
