//! Processes as JS sees them: `spawnCommand`, `runCommand`, `ProcessManager`,
//! `getProcessResourceUsage` and `cleanupResourceMonitor` (SPEC §2), all over the core's one
//! spawner and one tree killer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, UNIX_EPOCH};

use napi::bindgen_prelude::{
    Env, FnArgs, Function, FunctionRef, JsObjectValue, Object, PromiseRaw, Result, Unknown,
};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use nix::sys::signal::Signal;
use serde_json::Value;

use super::args;
use super::delivery::{report_callback_error, spawn_delivery};
use super::to_js_error;
use crate::logs::{LogLimits, LogStore, join_text};
use crate::process::{self, ExitInfo, ManagedProcess, ProcessHandle, ResourceMonitor, SpawnSpec};
use crate::validate;

/// Grace period between SIGTERM and SIGKILL when none is configured.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Lines of output kept per command.
const OUTPUT_LINES: usize = 10_000;

/// A callback receiving one output line and its stream tag.
type OutputCallback = FunctionRef<FnArgs<(String, String)>, UnknownReturnValue>;

/// A command as parsed from JS arguments.
struct Command {
    spec: SpawnSpec,
    on_output: Option<OutputCallback>,
    timeout: Option<Duration>,
}

/// Reads `(command, args?, options?)` with options `{ cwd?, env?, onOutput?, timeoutMs? }`.
fn read_command(
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> Result<Command> {
    let program = args::required_string(command, "command")?;
    if program.is_empty() || program.contains('\0') {
        return Err(invalid("command", "must be a non-empty string without NUL"));
    }
    let argv = match args::options(arguments, "args")? {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                validate::string(&format!("args[{i}]"), item)
                    .map(str::to_owned)
                    .map_err(to_js_error)
            })
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(invalid(
                "args",
                &validate::expected("an array of strings", &other),
            ));
        }
    };
    let options = options.as_ref();
    let cwd = match args::optional_string(
        args::field(options, "options", "cwd")?.as_ref(),
        "options.cwd",
    )? {
        Some(dir) => PathBuf::from(dir),
        None => args::cwd("options.cwd")?,
    };
    let env = match args::field(options, "options", "env")? {
        Some(vars) => validate::env_vars("options.env", &args::options(Some(vars), "options.env")?)
            .map_err(to_js_error)?,
        None => BTreeMap::new(),
    };
    let on_output = match args::field(options, "options", "onOutput")? {
        Some(callback) => Some(args::callback(&callback, "options.onOutput")?),
        None => None,
    };
    let timeout = args::optional_integer(
        args::field(options, "options", "timeoutMs")?.as_ref(),
        "options.timeoutMs",
        1,
        validate::MAX_SAFE_INTEGER,
    )?
    .map(Duration::from_millis);
    Ok(Command {
        spec: SpawnSpec {
            program,
            args: argv,
            cwd,
            env: process::env::compose([&env]),
        },
        on_output,
        timeout,
    })
}

fn invalid(name: &str, reason: &str) -> napi::Error {
    to_js_error(crate::error::Error::invalid(name, reason))
}

/// A parsed command and the log its output goes to. Argument errors are kept (not thrown) so
/// that the returned Promise rejects with them.
fn prepare(env: &Env, command: Result<Command>) -> Result<Result<(Command, Arc<LogStore>)>> {
    match command {
        Ok(mut command) => {
            let log = output_store(env, command.on_output.take())?;
            Ok(Ok((command, log)))
        }
        Err(error) => Ok(Err(error)),
    }
}

/// A log store for one command, with its lines forwarded to `on_output` when given.
fn output_store(env: &Env, on_output: Option<OutputCallback>) -> Result<Arc<LogStore>> {
    let log = Arc::new(LogStore::new(LogLimits::with_lines(OUTPUT_LINES)));
    if let Some(callback) = on_output {
        let subscription = log.subscribe(OUTPUT_LINES);
        spawn_delivery(env, subscription, None, move |env, batch| {
            let Ok(callback) = callback.borrow_back(env) else {
                return;
            };
            for entry in batch.entries {
                let args = (entry.line.to_string(), entry.stream.as_str().to_owned());
                if let Err(error) = callback.call(FnArgs::from(args)) {
                    report_callback_error("an onOutput callback", &error);
                }
            }
        })?;
    }
    Ok(log)
}

/// How a command ended, as JS reads it: `{ exitCode, signal }`, one of them `null`.
fn exit_value(info: ExitInfo) -> Value {
    serde_json::json!({ "exitCode": info.code, "signal": info.signal_name() })
}

/// A started command: its pid, its exit, its output, and a kill that reaches its whole tree.
#[napi]
pub struct SpawnedProcess {
    handle: ProcessHandle,
}

#[napi]
impl SpawnedProcess {
    /// The process id (also the id of its process group).
    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.handle.pid()
    }

    /// Whether the process is still running.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.handle.is_running()
    }

    /// The exit code once it exited by itself; `null` while running or when a signal ended it.
    #[napi(getter)]
    pub fn exit_code(&self) -> Option<i32> {
        self.handle.exit_info().and_then(|e| e.code)
    }

    /// The terminating signal's name once a signal ended it; `null` otherwise.
    #[napi(getter)]
    pub fn signal(&self) -> Option<String> {
        self.handle.exit_info().and_then(|e| e.signal_name())
    }

    /// Resolves when the process has exited and been reaped: `{ exitCode, signal }` (the
    /// exit code, or the name of the signal that ended it; the other is `null`).
    #[napi(ts_return_type = "Promise<{ exitCode: number | null; signal: string | null }>")]
    pub async fn wait(&self) -> Result<Value> {
        Ok(exit_value(self.handle.wait().await))
    }

    /// Without `signal`: stops the whole tree (SIGTERM, 10 s grace, SIGKILL) and resolves when
    /// nothing of it is left. With `signal` (`'SIGTERM'`, `'SIGINT'`, `'SIGKILL'`, …): sends
    /// just that signal to the process group.
    #[napi(ts_args_type = "signal?: string", ts_return_type = "Promise<void>")]
    pub fn kill<'env>(
        &self,
        env: &'env Env,
        signal: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let signal = read_signal(signal);
        let handle = self.handle.clone();
        env.spawn_future(async move {
            match signal? {
                Some(signal) => handle.signal_group(signal).map_err(to_js_error),
                None => {
                    handle.kill_tree(DEFAULT_GRACE).await;
                    Ok(())
                }
            }
        })
    }

    /// Everything the process wrote so far (the last 10000 lines; stderr lines prefixed).
    #[napi]
    pub fn get_output(&self) -> String {
        join_text(&self.handle.log().all())
    }
}

fn read_signal(signal: Option<Unknown>) -> Result<Option<Signal>> {
    let Some(name) = args::optional_string(signal.as_ref(), "signal")? else {
        return Ok(None);
    };
    let full = if name.starts_with("SIG") {
        name.clone()
    } else {
        format!("SIG{name}")
    };
    full.parse::<Signal>()
        .map(Some)
        .map_err(|_| invalid("signal", &format!("'{name}' is not a signal name")))
}

/// Starts `command` with `args` (no shell) in `options.cwd` (default: the current directory)
/// with the host allow-list of variables plus `options.env`, in its own process group.
/// `options.onOutput(line, stream)` receives each output line. Rejects with an `Error` naming
/// the command or directory when it cannot start.
#[napi(
    ts_args_type = "command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
    ts_return_type = "Promise<SpawnedProcess>"
)]
pub fn spawn_command<'env>(
    env: &'env Env,
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> Result<PromiseRaw<'env, SpawnedProcess>> {
    let prepared = prepare(env, read_command(command, arguments, options))?;
    env.spawn_future(async move {
        let (command, log) = prepared?;
        let handle = process::spawn(command.spec, log, None)
            .await
            .map_err(to_js_error)?;
        Ok(SpawnedProcess { handle })
    })
}

/// Runs `command` to completion (see `spawnCommand` for the options; `options.timeoutMs`
/// kills the whole tree when it runs out) and resolves `{ exitCode, signal, output, timedOut }`:
/// the exit code or the terminating signal (the other `null`), the output (last 10000 lines,
/// stderr lines prefixed `[stderr] `), and whether the timeout ran out.
#[napi(
    ts_args_type = "command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void; timeoutMs?: number }",
    ts_return_type = "Promise<{ exitCode: number | null; signal: string | null; output: string; timedOut: boolean }>"
)]
pub fn run_command<'env>(
    env: &'env Env,
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> Result<PromiseRaw<'env, Value>> {
    let prepared = prepare(env, read_command(command, arguments, options))?;
    env.spawn_future(async move {
        let (command, log) = prepared?;
        let handle = process::spawn(command.spec, Arc::clone(&log), None)
            .await
            .map_err(to_js_error)?;
        let (exit, timed_out) = match command.timeout {
            Some(limit) => match tokio::time::timeout(limit, handle.wait()).await {
                Ok(exit) => (exit, false),
                Err(_) => (handle.kill_tree(Duration::from_secs(2)).await, true),
            },
            None => (handle.wait().await, false),
        };
        handle.wait_output_closed(Duration::from_secs(2)).await;
        Ok(serde_json::json!({
            "exitCode": exit.code,
            "signal": exit.signal_name(),
            "output": join_text(&log.all()),
            "timedOut": timed_out,
        }))
    })
}

/// The monitor behind `getProcessResourceUsage`.
static MONITOR: LazyLock<ResourceMonitor> = LazyLock::new(ResourceMonitor::new);

/// Memory and CPU of a tree as JS reads it: `{ memoryUsageMb, cpuPercent }`, both `null` when
/// the process is gone.
pub(crate) fn usage_value(usage: Option<process::Usage>) -> Value {
    serde_json::json!({
        "memoryUsageMb": usage.map(|u| (u.memory_mb * 10.0).round() / 10.0),
        "cpuPercent": usage.map(|u| u.cpu_percent),
    })
}

/// Memory (RSS) and CPU of process `pid` and all its descendants, from `/proc`.
#[napi(
    ts_args_type = "pid: number",
    ts_return_type = "Promise<{ memoryUsageMb: number | null; cpuPercent: number | null }>"
)]
pub fn get_process_resource_usage<'env>(
    env: &'env Env,
    pid: Option<Unknown>,
) -> Result<PromiseRaw<'env, Value>> {
    let pid = args::options(pid, "pid")
        .map_err(napi::Error::from)
        .and_then(|value| {
            validate::integer("pid", &value, 1, i32::MAX as u64).map_err(to_js_error)
        });
    env.spawn_future(async move {
        let pid = pid? as i32;
        tokio::task::spawn_blocking(move || usage_value(MONITOR.sample(pid)))
            .await
            .map_err(|e| napi::Error::from_reason(format!("Resource sample did not complete: {e}")))
    })
}

/// Forgets every previous sample of `getProcessResourceUsage`.
#[napi]
pub fn cleanup_resource_monitor() {
    MONITOR.clear();
}

/// A process tracked by `ProcessManager`, as plain data.
fn process_info<'env>(env: &'env Env, process: &ManagedProcess) -> Result<Object<'env>> {
    let mut info = Object::new(env)?;
    let exit = process.handle.exit_info();
    info.set("serverId", process.server_id.as_str())?;
    info.set("deploymentId", process.deployment_id.as_str())?;
    info.set("pid", process.handle.pid())?;
    info.set("running", exit.is_none())?;
    info.set("exitCode", exit.and_then(|e| e.code))?;
    info.set("signal", exit.and_then(|e| e.signal_name()))?;
    let started_ms = process
        .handle
        .started_at()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    info.set("startedAt", env.create_date(started_ms)?)?;
    Ok(info)
}

/// Server processes by server id: start, look up, and stop whole process trees.
#[napi]
pub struct ProcessManager {
    inner: Arc<process::ProcessManager>,
    grace: Duration,
}

#[napi]
impl ProcessManager {
    /// A manager whose `kill` gives each tree `shutdownTimeoutMs` (default 10000) between
    /// SIGTERM and SIGKILL.
    #[napi(constructor, ts_args_type = "options?: { shutdownTimeoutMs?: number }")]
    pub fn new(options: Option<Unknown>) -> Result<Self> {
        let grace = args::optional_integer(
            args::field(options.as_ref(), "options", "shutdownTimeoutMs")?.as_ref(),
            "options.shutdownTimeoutMs",
            0,
            validate::MAX_SAFE_INTEGER,
        )?
        .map_or(DEFAULT_GRACE, Duration::from_millis);
        Ok(ProcessManager {
            inner: Arc::new(process::ProcessManager::new()),
            grace,
        })
    }

    /// Starts `command` for `serverId` (see `spawnCommand` for the options). Rejects when a
    /// process for `serverId` is already running.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
        ts_return_type = "Promise<ProcessInfo>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        command: Option<Unknown>,
        arguments: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ManagedInfo>> {
        let ids = args::required_string(server_id, "serverId")
            .and_then(|s| Ok((s, args::required_string(deployment_id, "deploymentId")?)));
        let prepared = prepare(env, read_command(command, arguments, options))?;
        let manager = Arc::clone(&self.inner);
        env.spawn_future(async move {
            let (server_id, deployment_id) = ids?;
            let (command, log) = prepared?;
            let process = manager
                .start(&server_id, &deployment_id, command.spec, log, None)
                .await
                .map_err(to_js_error)?;
            Ok(ManagedInfo(process))
        })
    }

    /// The process of `serverId`, or `null`.
    #[napi(
        ts_args_type = "serverId: string",
        ts_return_type = "ProcessInfo | null"
    )]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
    ) -> Result<Option<Object<'env>>> {
        let server_id = args::required_string(server_id, "serverId")?;
        self.inner
            .get(&server_id)
            .map(|p| process_info(env, &p))
            .transpose()
    }

    /// The newest process serving `deploymentId`, or `null`.
    #[napi(
        ts_args_type = "deploymentId: string",
        ts_return_type = "ProcessInfo | null"
    )]
    pub fn get_by_deployment_id<'env>(
        &self,
        env: &'env Env,
        deployment_id: Option<Unknown>,
    ) -> Result<Option<Object<'env>>> {
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        self.inner
            .get_by_deployment(&deployment_id)
            .map(|p| process_info(env, &p))
            .transpose()
    }

    /// Every tracked process.
    #[napi(ts_return_type = "ProcessInfo[]")]
    pub fn get_all<'env>(&self, env: &'env Env) -> Result<Vec<Object<'env>>> {
        self.inner
            .all()
            .iter()
            .map(|p| process_info(env, p))
            .collect()
    }

    /// Whether the process of `serverId` is running.
    #[napi(ts_args_type = "serverId: string")]
    pub fn is_running(&self, server_id: Option<Unknown>) -> Result<bool> {
        Ok(self
            .inner
            .is_running(&args::required_string(server_id, "serverId")?))
    }

    /// How many tracked processes are running.
    #[napi]
    pub fn get_running_count(&self) -> u32 {
        self.inner.running_count() as u32
    }

    /// Everything the process of `serverId` wrote (last 10000 lines); `''` when unknown.
    #[napi(ts_args_type = "serverId: string")]
    pub fn get_output(&self, server_id: Option<Unknown>) -> Result<String> {
        let server_id = args::required_string(server_id, "serverId")?;
        Ok(self
            .inner
            .get(&server_id)
            .map(|p| join_text(&p.handle.log().all()))
            .unwrap_or_default())
    }

    /// Stops the tree of `serverId` (SIGTERM, grace, SIGKILL) and forgets it; resolves when
    /// nothing of it is left. Unknown ids resolve at once.
    #[napi(ts_args_type = "serverId: string", ts_return_type = "Promise<void>")]
    pub fn kill<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let server_id = args::required_string(server_id, "serverId");
        let manager = Arc::clone(&self.inner);
        let grace = self.grace;
        env.spawn_future(async move {
            manager.kill(&server_id?, grace).await;
            Ok(())
        })
    }

    /// Stops every tracked tree at once; resolves when nothing of any is left.
    #[napi]
    pub async fn kill_all(&self) -> Result<()> {
        self.inner.kill_all(self.grace).await;
        Ok(())
    }
}

/// A started process on its way to JS as a `ProcessInfo` object.
pub struct ManagedInfo(ManagedProcess);

impl napi::bindgen_prelude::ToNapiValue for ManagedInfo {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        value: Self,
    ) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(env);
        let info = process_info(&env, &value.0)?;
        // SAFETY: `info` was created in this same env just above.
        unsafe { Object::to_napi_value(env.raw(), info) }
    }
}

/// Node's `process.on(event, listener)`.
type ProcessOn<'env> = Function<'env, FnArgs<(String, Function<'env, (), ()>)>, Unknown<'env>>;

/// Registers `process.on('exit')` so that a normal exit of Node (`process.exit()`, the end of
/// the event loop) SIGKILLs every process group the runner still has: an exit handler must be
/// synchronous, so there is no grace period then.
pub(crate) fn install_exit_hook(env: &Env) -> Result<()> {
    let global = env.get_global()?;
    let node_process: Object = global.get_named_property("process")?;
    let on: ProcessOn = node_process.get_named_property("on")?;
    let hook = env.create_function_from_closure::<(), (), _>("killRunnerProcesses", |_| {
        let killed = process::registry::kill_all_now();
        if killed > 0 {
            tracing::debug!("killed {killed} process groups at exit");
        }
        Ok(())
    })?;
    on.apply(node_process, FnArgs::from(("exit".to_owned(), hook)))?;
    Ok(())
}
