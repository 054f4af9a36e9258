//! Processes as JS sees them: `spawnCommand`, `runCommand`, `ProcessManager`,
//! `getProcessResourceUsage` and `cleanupResourceMonitor` (SPEC §2), all over the core's one
//! spawner and one tree killer.
//!
//! `spawnCommand` returns its process at once, shaped like Node's `ChildProcess` where the
//! TypeScript package relies on it (`pid`, `exitCode`, `killed`, `kill()`, and `on` / `once` /
//! `off` for `exit`, `close` and `error`). The fork runs on the core's spawner thread while the
//! JS thread waits for its pid (about a millisecond). Events reach JS through a weak
//! threadsafe function, so a spawned process never keeps Node alive by itself; `close` is
//! emitted after the last output line reached `onOutput`.

use super::error::{JsFailure, Result, rejection, spawn, to_js_error};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use napi::bindgen_prelude::{
    ClassInstance, Either, Env, FnArgs, FromNapiValue, Function, FunctionRef, JavaScriptClassExt,
    JsObjectValue, JsValue, Null, Object, ObjectFinalize, PromiseRaw, This, ToNapiValue, Unknown,
};
use napi::threadsafe_function::UnknownReturnValue;
use napi::{UnknownRef, ValueType};
use napi_derive::napi;
use nix::sys::signal::Signal;
use serde_json::Value;

use super::args;
use super::delivery::{BatchSink, batch_sink, report_callback_error, spawn_delivery};
use crate::logs::{LogEntry, LogLimits, LogStore, join_text};
use crate::process::{self, ProcessHandle, ResourceMonitor, SpawnSpec};
use crate::validate;

/// Grace period between SIGTERM and SIGKILL when none is configured.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Lines of output kept per command.
const OUTPUT_LINES: usize = 10_000;

/// How long `close` waits for output pipes held open by descendants after the exit.
const OUTPUT_SETTLE: Duration = Duration::from_secs(2);

/// A callback receiving one output line (stderr lines prefixed `[stderr] `) and its stream.
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

fn invalid(name: &str, reason: &str) -> JsFailure {
    to_js_error(crate::error::Error::invalid(name, reason))
}

/// A log store for one command, with its lines forwarded to `on_output` when given; the handle
/// ends once the store's subscriptions are closed and every line reached `on_output`.
fn output_store(
    env: &Env,
    on_output: Option<OutputCallback>,
) -> Result<(Arc<LogStore>, Option<tokio::task::JoinHandle<()>>)> {
    let log = Arc::new(LogStore::new(LogLimits::with_lines(OUTPUT_LINES)));
    let Some(callback) = on_output else {
        return Ok((log, None));
    };
    let subscription = log.subscribe(OUTPUT_LINES);
    let delivery = spawn_delivery(env, subscription, None, move |env, batch| {
        let Ok(callback) = callback.borrow_back(env) else {
            return;
        };
        for entry in batch.entries {
            let args = (entry.text(), entry.stream.as_str().to_owned());
            if let Err(error) = callback.call(FnArgs::from(args)) {
                report_callback_error("an onOutput callback", &error);
            }
        }
    })?;
    Ok((log, Some(delivery)))
}

/// What a spawned process tells its listeners.
enum ProcessEvent {
    /// It exited (`code`) or a signal ended it (`signal`).
    Exit {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// It exited and its output is closed and delivered.
    Close {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// It could not be started.
    Error(crate::error::Error),
}

/// The events `on` / `once` / `off` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventName {
    Exit,
    Close,
    Error,
}

impl EventName {
    fn read(argument: Option<&Unknown<'_>>) -> Result<Self> {
        let name = args::required_string(argument.copied(), "event")?;
        match name.as_str() {
            "exit" => Ok(EventName::Exit),
            "close" => Ok(EventName::Close),
            "error" => Ok(EventName::Error),
            other => Err(invalid(
                "event",
                &format!("must be 'exit', 'close' or 'error' (got '{other}')"),
            )),
        }
    }
}

/// A listener of `exit` / `close`, called with `(code, signal)`.
type ExitListener = FunctionRef<FnArgs<(Option<i32>, Option<String>)>, UnknownReturnValue>;

/// A listener of `error`, called with an `Error`.
type ErrorListener = FunctionRef<napi::Error, UnknownReturnValue>;

/// One registered listener; `active` turns false when it is removed or has fired once.
struct Listener {
    event: EventName,
    callback: Either<ExitListener, ErrorListener>,
    once: bool,
    active: Cell<bool>,
}

impl Listener {
    fn is(&self, env: &Env, function: &Unknown<'_>) -> bool {
        let same = match &self.callback {
            Either::A(callback) => callback
                .borrow_back(env)
                .and_then(|f| env.strict_equals(f, *function)),
            Either::B(callback) => callback
                .borrow_back(env)
                .and_then(|f| env.strict_equals(f, *function)),
        };
        same.unwrap_or(false)
    }
}

type Listeners = Rc<RefCell<Vec<Rc<Listener>>>>;

/// Calls the listeners of `event` in registration order (a listener added meanwhile waits for
/// the next event). An `error` nobody listens to is reported instead of thrown.
fn emit(env: &Env, listeners: &Listeners, event: ProcessEvent) {
    let name = match &event {
        ProcessEvent::Exit { .. } => EventName::Exit,
        ProcessEvent::Close { .. } => EventName::Close,
        ProcessEvent::Error(_) => EventName::Error,
    };
    let chosen: Vec<Rc<Listener>> = listeners
        .borrow()
        .iter()
        .filter(|l| l.event == name && l.active.get())
        .cloned()
        .collect();
    if let ProcessEvent::Error(error) = &event
        && chosen.is_empty()
    {
        tracing::warn!("a spawned process failed and nobody listens to 'error': {error}");
    }
    for listener in chosen {
        if !listener.active.get() {
            continue;
        }
        if listener.once {
            listener.active.set(false);
            listeners.borrow_mut().retain(|l| !Rc::ptr_eq(l, &listener));
        }
        let called = match (&listener.callback, &event) {
            (
                Either::A(callback),
                ProcessEvent::Exit { code, signal } | ProcessEvent::Close { code, signal },
            ) => callback
                .borrow_back(env)
                .and_then(|f| f.call(FnArgs::from((*code, signal.clone()))))
                .map(drop),
            (Either::B(callback), ProcessEvent::Error(error)) => callback
                .borrow_back(env)
                .and_then(|f| f.call(rejection(env, to_js_error(error.clone()))))
                .map(drop),
            _ => Ok(()),
        };
        if let Err(error) = called {
            report_callback_error("a process event listener", &error);
        }
    }
}

/// A started command, shaped like Node's `ChildProcess` where the TypeScript package uses it:
/// its pid, its exit, its output, events, and a kill that reaches its whole tree.
#[napi]
pub struct SpawnedProcess {
    handle: Option<ProcessHandle>,
    listeners: Listeners,
    killed: Cell<bool>,
}

#[napi]
impl SpawnedProcess {
    /// The process id (also the id of its process group); `undefined` when it could not be
    /// started (its `error` event says why).
    #[napi(getter, ts_return_type = "number | undefined")]
    pub fn pid(&self) -> Either<u32, ()> {
        match &self.handle {
            Some(handle) => Either::A(handle.pid()),
            None => Either::B(()),
        }
    }

    /// Whether the process is still running.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.handle.as_ref().is_some_and(ProcessHandle::is_running)
    }

    /// Whether `kill()` was called.
    #[napi(getter)]
    pub fn killed(&self) -> bool {
        self.killed.get()
    }

    /// The exit code once it exited by itself; `null` while running or when a signal ended it.
    #[napi(getter)]
    pub fn exit_code(&self) -> Option<i32> {
        self.handle
            .as_ref()
            .and_then(ProcessHandle::exit_info)
            .and_then(|e| e.code)
    }

    /// The terminating signal's name once a signal ended it; `null` otherwise.
    #[napi(getter)]
    pub fn signal(&self) -> Option<String> {
        self.handle
            .as_ref()
            .and_then(ProcessHandle::exit_info)
            .and_then(|e| e.signal_name())
    }

    /// The same as `signal`, under the name Node's `ChildProcess` uses.
    #[napi(getter)]
    pub fn signal_code(&self) -> Option<String> {
        self.signal()
    }

    /// Adds `listener` for `'exit'` / `'close'` (called with `(code, signal)`, one of them
    /// `null`) or `'error'` (called with an `Error` when the process could not be started).
    /// `close` comes after `exit`, once every output line reached `onOutput`.
    #[napi(
        ts_args_type = "event: 'exit' | 'close', listener: (code: number | null, signal: string | null) => void",
        ts_return_type = "this"
    )]
    pub fn on<'env>(
        &self,
        this: This<'env>,
        event: Option<Unknown>,
        listener: Option<Unknown>,
    ) -> Result<Object<'env>> {
        self.listen(event, listener, false)?;
        Ok(this.object)
    }

    /// Like `on`, for the next event only.
    #[napi(
        ts_args_type = "event: 'exit' | 'close', listener: (code: number | null, signal: string | null) => void",
        ts_return_type = "this"
    )]
    pub fn once<'env>(
        &self,
        this: This<'env>,
        event: Option<Unknown>,
        listener: Option<Unknown>,
    ) -> Result<Object<'env>> {
        self.listen(event, listener, true)?;
        Ok(this.object)
    }

    /// Removes the most recently added registration of `listener` for `event`.
    #[napi(
        ts_args_type = "event: 'exit' | 'close' | 'error', listener: (...args: any[]) => void",
        ts_return_type = "this"
    )]
    pub fn off<'env>(
        &self,
        env: &Env,
        this: This<'env>,
        event: Option<Unknown>,
        listener: Option<Unknown>,
    ) -> Result<Object<'env>> {
        let event = EventName::read(event.as_ref())?;
        let listener = args::required_callback::<(), ()>(listener.as_ref(), "listener")
            .and(listener.ok_or_else(|| invalid("listener", "is required")))?;
        let mut listeners = self.listeners.borrow_mut();
        if let Some(index) = listeners
            .iter()
            .rposition(|l| l.event == event && l.is(env, &listener))
        {
            listeners.remove(index).active.set(false);
        }
        Ok(this.object)
    }

    /// Resolves when the process has exited and been reaped: `{ exitCode, signal }` (the
    /// exit code, or the name of the signal that ended it; the other is `null`).
    #[napi(ts_return_type = "Promise<{ exitCode: number | null; signal: string | null }>")]
    pub fn wait<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        let handle = self.handle.clone();
        spawn(env, async move {
            let Some(handle) = handle else {
                return Ok(serde_json::json!({ "exitCode": null, "signal": null }));
            };
            let info = handle.wait().await;
            Ok(serde_json::json!({ "exitCode": info.code, "signal": info.signal_name() }))
        })
    }

    /// Without `signal`: stops the whole tree (SIGTERM, 10 s grace, SIGKILL) and resolves when
    /// nothing of it is left. With `signal` (`'SIGTERM'`, `'SIGINT'`, `'SIGKILL'`, …): sends
    /// just that signal to the process group. Throws for an unknown signal name; the Promise
    /// itself never rejects.
    #[napi(ts_args_type = "signal?: string", ts_return_type = "Promise<void>")]
    pub fn kill<'env>(
        &self,
        env: &'env Env,
        signal: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let signal = read_signal(signal)?;
        let handle = self.handle.clone();
        if handle.is_some() {
            self.killed.set(true);
        }
        spawn(env, async move {
            match (handle, signal) {
                (None, _) => {}
                (Some(handle), Some(signal)) => {
                    if let Err(error) = handle.signal_group(signal) {
                        tracing::debug!("{error}");
                    }
                }
                (Some(handle), None) => {
                    handle.kill_tree(DEFAULT_GRACE).await;
                }
            }
            Ok(())
        })
    }

    /// Everything the process wrote so far (the last 10000 lines; stderr lines prefixed).
    #[napi]
    pub fn get_output(&self) -> String {
        self.handle
            .as_ref()
            .map(|h| join_text(&h.log().all()))
            .unwrap_or_default()
    }
}

impl SpawnedProcess {
    fn listen(&self, event: Option<Unknown>, listener: Option<Unknown>, once: bool) -> Result<()> {
        let event = EventName::read(event.as_ref())?;
        let callback = match event {
            EventName::Exit | EventName::Close => {
                Either::A(args::required_callback(listener.as_ref(), "listener")?)
            }
            EventName::Error => Either::B(args::required_callback(listener.as_ref(), "listener")?),
        };
        self.listeners.borrow_mut().push(Rc::new(Listener {
            event,
            callback,
            once,
            active: Cell::new(true),
        }));
        Ok(())
    }

    /// Starts `command` now and returns it. A start failure becomes its `error` event when
    /// `failure_as_event`, else the returned error.
    fn start(env: &Env, command: Command, failure_as_event: bool) -> Result<Self> {
        let listeners: Listeners = Rc::default();
        let emitting = Rc::clone(&listeners);
        let events: Arc<BatchSink<ProcessEvent>> =
            batch_sink(env, move |env, event| emit(env, &emitting, event))?;
        let (log, delivery) = output_store(env, command.on_output)?;
        let started =
            napi::bindgen_prelude::block_on(process::spawn(command.spec, Arc::clone(&log), None));
        let handle = match started {
            Ok(handle) => handle,
            Err(error) if !failure_as_event => return Err(to_js_error(error)),
            Err(error) => {
                napi::bindgen_prelude::spawn(async move {
                    events.send(ProcessEvent::Error(error)).await;
                });
                return Ok(SpawnedProcess {
                    handle: None,
                    listeners,
                    killed: Cell::new(false),
                });
            }
        };
        let watched = handle.clone();
        napi::bindgen_prelude::spawn(async move {
            let exit = watched.wait().await;
            let (code, signal) = (exit.code, exit.signal_name());
            let exit_event = ProcessEvent::Exit {
                code,
                signal: signal.clone(),
            };
            if !events.send(exit_event).await {
                return;
            }
            watched.wait_output_closed(OUTPUT_SETTLE).await;
            log.close_subscriptions();
            if let Some(delivery) = delivery {
                let _ = delivery.await;
            }
            events.send(ProcessEvent::Close { code, signal }).await;
        });
        Ok(SpawnedProcess {
            handle: Some(handle),
            listeners,
            killed: Cell::new(false),
        })
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
/// with the host allow-list of variables plus `options.env`, in its own process group, and
/// returns it at once. `options.onOutput(line, stream)` receives each output line (stderr
/// lines prefixed `[stderr] `). Throws for bad arguments; a command that cannot start (not
/// found, a bad directory) gives a process without a pid whose `error` event names it.
#[napi(
    ts_args_type = "command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
    ts_return_type = "SpawnedProcess"
)]
pub fn spawn_command(
    env: &Env,
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> Result<SpawnedProcess> {
    SpawnedProcess::start(env, read_command(command, arguments, options)?, true)
}

/// Runs `command` to completion (see `spawnCommand` for the options; `options.timeoutMs`
/// kills the whole tree when it runs out) and resolves `{ exitCode, signal, output, timedOut }`:
/// the exit code or the terminating signal (the other `null`), the output lines (the last
/// 10000, stderr lines prefixed `[stderr] `), and whether the timeout ran out. Rejects when the
/// command cannot start.
#[napi(
    ts_args_type = "command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void; timeoutMs?: number }",
    ts_return_type = "Promise<{ exitCode: number | null; signal: string | null; output: string[]; timedOut: boolean }>"
)]
pub fn run_command<'env>(
    env: &'env Env,
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> napi::Result<PromiseRaw<'env, Value>> {
    let prepared = match read_command(command, arguments, options) {
        Ok(mut command) => {
            let (log, delivery) = output_store(env, command.on_output.take())?;
            Ok((command, log, delivery))
        }
        Err(error) => Err(error),
    };
    spawn(env, async move {
        let (command, log, delivery) = prepared?;
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
        handle.wait_output_closed(OUTPUT_SETTLE).await;
        log.close_subscriptions();
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        let output: Vec<String> = log.all().iter().map(LogEntry::text).collect();
        Ok(serde_json::json!({
            "exitCode": exit.code,
            "signal": exit.signal_name(),
            "output": output,
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
) -> napi::Result<PromiseRaw<'env, Value>> {
    let pid = args::options(pid, "pid").and_then(|value| {
        validate::integer("pid", &value, 1, i32::MAX as u64).map_err(to_js_error)
    });
    spawn(env, async move {
        let pid = pid? as i32;
        tokio::task::spawn_blocking(move || usage_value(MONITOR.sample(pid)))
            .await
            .map_err(|e| to_js_error(crate::error::Error::internal("sampling a process tree", e)))
    })
}

/// Forgets every previous sample of `getProcessResourceUsage`.
#[napi]
pub fn cleanup_resource_monitor() {
    MONITOR.clear();
}

/// One process a `ProcessManager` tracks, with what `track` was given.
struct Tracked {
    deployment_id: String,
    port: Option<u16>,
    started_at: SystemTime,
    process: UnknownRef,
    log_collector: Option<UnknownRef>,
    /// The process's handle when it is a `SpawnedProcess`: then its whole tree is stopped.
    handle: Option<ProcessHandle>,
    /// Tells this registration from a later one under the same server id.
    generation: u64,
}

type TrackedMap = Rc<RefCell<BTreeMap<String, Tracked>>>;

/// Releases the JS references a removed entry holds.
fn release(env: &Env, tracked: Tracked) {
    let mut refs = vec![tracked.process];
    refs.extend(tracked.log_collector);
    for reference in refs {
        if let Err(error) = reference.unref(env) {
            tracing::debug!("releasing a tracked process failed: {error}");
        }
    }
}

/// Property `name` of a process object, unless it is `undefined` or `null`.
fn has_value<'env>(object: &Object<'env>, name: &str) -> Result<Option<Unknown<'env>>> {
    let value: Unknown<'env> = object.get_named_property(name)?;
    Ok(match value.get_type()? {
        ValueType::Undefined | ValueType::Null => None,
        _ => Some(value),
    })
}

/// `(running, exitCode, signal)` of a tracked process: from its handle for a `SpawnedProcess`,
/// otherwise from the `killed`, `exitCode` and `signalCode` properties Node's `ChildProcess`
/// has.
fn status(env: &Env, tracked: &Tracked) -> Result<(bool, Option<i32>, Option<String>)> {
    if let Some(handle) = &tracked.handle {
        let exit = handle.exit_info();
        return Ok((
            exit.is_none(),
            exit.and_then(|e| e.code),
            exit.and_then(|e| e.signal_name()),
        ));
    }
    let value = tracked.process.get_value(env)?;
    // SAFETY: `track` only accepts objects.
    let object = unsafe { value.cast::<Object>() }?;
    let killed = match has_value(&object, "killed")? {
        Some(flag) => flag.coerce_to_bool()?,
        None => false,
    };
    let code = match has_value(&object, "exitCode")? {
        Some(code) if code.get_type()? == ValueType::Number => {
            // SAFETY: the type was just checked.
            Some(unsafe { code.cast::<f64>() }? as i32)
        }
        _ => None,
    };
    let signal = match has_value(&object, "signalCode")? {
        Some(signal) if signal.get_type()? == ValueType::String => {
            // SAFETY: the type was just checked.
            Some(unsafe { signal.cast::<String>() }?)
        }
        _ => None,
    };
    Ok((!killed && code.is_none() && signal.is_none(), code, signal))
}

/// A process a `ProcessManager` tracks: what `track` was given (the TypeScript package's
/// `TrackedProcess`) and how it is doing.
#[napi(object, object_from_js = false)]
pub struct TrackedProcess<'env> {
    /// The id it is tracked under.
    pub server_id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The process object given to `track` (or started by `start`).
    #[napi(
        ts_type = "SpawnedProcess | { pid?: number; killed?: boolean; exitCode?: number | null }"
    )]
    pub process: Unknown<'env>,
    /// The port given to `track`.
    pub port: Option<u32>,
    /// The log collector given to `track`.
    #[napi(ts_type = "LogCollectorImpl | object | undefined")]
    pub log_collector: Unknown<'env>,
    /// When it started being tracked.
    pub started_at: napi::JsDate<'env>,
    /// The process's pid (`undefined` when it has none).
    #[napi(ts_type = "number | undefined")]
    pub pid: Unknown<'env>,
    /// Whether it is running.
    pub running: bool,
    /// Its exit code once it exited by itself, else `null`.
    #[napi(ts_type = "number | null")]
    pub exit_code: Either<i32, Null>,
    /// The signal that ended it, else `null`.
    #[napi(ts_type = "string | null")]
    pub signal: Either<String, Null>,
}

/// `Some` as the value, `None` as JS `null`.
fn or_null<T>(value: Option<T>) -> Either<T, Null> {
    value.map_or(Either::B(Null), Either::A)
}

/// The `TrackedProcess` of one entry.
fn tracked_info<'env>(
    env: &'env Env,
    server_id: &str,
    tracked: &Tracked,
) -> Result<TrackedProcess<'env>> {
    let process = tracked.process.get_value(env)?;
    let (running, exit_code, signal) = status(env, tracked)?;
    let log_collector = match &tracked.log_collector {
        Some(log) => log.get_value(env)?,
        None => ().into_unknown(env)?,
    };
    let started_ms = tracked
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    // SAFETY: `track` only accepts objects.
    let pid: Unknown = unsafe { process.cast::<Object>() }?.get_named_property("pid")?;
    Ok(TrackedProcess {
        server_id: server_id.to_owned(),
        deployment_id: tracked.deployment_id.clone(),
        process,
        port: tracked.port.map(u32::from),
        log_collector,
        started_at: env.create_date(started_ms)?,
        pid,
        running,
        exit_code: or_null(exit_code),
        signal: or_null(signal),
    })
}

/// `Promise.resolve(value)`: a settled Promise for a result known now.
fn resolved<'env>(env: &'env Env, value: Unknown<'env>) -> Result<Unknown<'env>> {
    let promise: Function<(), Unknown> = env.get_global()?.get_named_property("Promise")?;
    let resolve: Function<Unknown, Unknown> = promise.get_named_property("resolve")?;
    Ok(resolve.apply(promise, value)?)
}

/// `Promise.reject(error)`.
fn rejected<'env>(env: &'env Env, failure: JsFailure) -> Result<Unknown<'env>> {
    let promise: Function<(), Unknown> = env.get_global()?.get_named_property("Promise")?;
    let reject: Function<napi::Error, Unknown> = promise.get_named_property("reject")?;
    Ok(reject.apply(promise, rejection(env, failure))?)
}

/// Server processes by server id: track (or start), look up, and stop them.
///
/// A tracked process leaves the manager when its `exit` event fires. Stopping a
/// `SpawnedProcess` stops its whole tree (SIGTERM, `shutdownTimeoutMs`, SIGKILL); any other
/// process object (a Node `ChildProcess`) gets its own `kill('SIGTERM')`. The manager never
/// signals a pid it did not start.
#[napi(custom_finalize)]
pub struct ProcessManager {
    tracked: TrackedMap,
    generations: Cell<u64>,
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
            tracked: Rc::default(),
            generations: Cell::new(0),
            grace,
        })
    }

    /// Tracks `process` (from `spawnCommand`, or any object shaped like Node's `ChildProcess`)
    /// as `serverId` of `deploymentId`, listening on `port`, with its `logCollector`; it is
    /// forgotten when its `exit` event fires. Throws when a running process is already
    /// tracked as `serverId`.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, process: SpawnedProcess | { pid?: number; killed?: boolean; exitCode?: number | null; on(event: 'exit', listener: (...args: any[]) => void): unknown; kill?(signal?: string): unknown }, port?: number, logCollector?: object"
    )]
    pub fn track(
        &self,
        env: &Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        process: Option<Unknown>,
        port: Option<Unknown>,
        log_collector: Option<Unknown>,
    ) -> Result<()> {
        let server_id = args::required_string(server_id, "serverId")?;
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        let object = args::object(process.as_ref(), "process")?;
        let port = args::optional_port(port, "port")?;
        let log_collector = match log_collector {
            Some(log) if !matches!(log.get_type()?, ValueType::Undefined | ValueType::Null) => {
                args::object(Some(&log), "logCollector")?;
                Some(log.create_ref()?)
            }
            _ => None,
        };
        self.insert(env, server_id, deployment_id, object, port, log_collector)
    }

    /// Starts `command` for `serverId` (see `spawnCommand` for the options) and tracks it.
    /// Rejects when a process for `serverId` is already running or the command cannot start.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
        ts_return_type = "Promise<TrackedProcess>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        command: Option<Unknown>,
        arguments: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        match self.start_now(env, server_id, deployment_id, command, arguments, options) {
            Ok(info) => resolved(env, info.into_unknown(env)?),
            Err(error) => rejected(env, error),
        }
    }

    /// The process tracked as `serverId`, or `undefined`.
    #[napi(
        ts_args_type = "serverId: string",
        ts_return_type = "TrackedProcess | undefined"
    )]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        let server_id = args::required_string(server_id, "serverId")?;
        let tracked = self.tracked.borrow();
        Ok(match tracked.get(&server_id) {
            Some(entry) => Either::A(tracked_info(env, &server_id, entry)?),
            None => Either::B(()),
        })
    }

    /// The newest process serving `deploymentId`, or `undefined`.
    #[napi(
        ts_args_type = "deploymentId: string",
        ts_return_type = "TrackedProcess | undefined"
    )]
    pub fn get_by_deployment_id<'env>(
        &self,
        env: &'env Env,
        deployment_id: Option<Unknown>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        let tracked = self.tracked.borrow();
        let newest = tracked
            .iter()
            .filter(|(_, entry)| entry.deployment_id == deployment_id)
            .max_by_key(|(_, entry)| entry.generation);
        Ok(match newest {
            Some((server_id, entry)) => Either::A(tracked_info(env, server_id, entry)?),
            None => Either::B(()),
        })
    }

    /// Every tracked process.
    #[napi(ts_return_type = "TrackedProcess[]")]
    pub fn get_all<'env>(&self, env: &'env Env) -> Result<Vec<TrackedProcess<'env>>> {
        self.tracked
            .borrow()
            .iter()
            .map(|(server_id, entry)| tracked_info(env, server_id, entry))
            .collect()
    }

    /// Whether the process of `serverId` is running (for a `ChildProcess`-like object: not
    /// `killed` and without an `exitCode`).
    #[napi(ts_args_type = "serverId: string")]
    pub fn is_running(&self, env: &Env, server_id: Option<Unknown>) -> Result<bool> {
        let server_id = args::required_string(server_id, "serverId")?;
        match self.tracked.borrow().get(&server_id) {
            Some(entry) => Ok(status(env, entry)?.0),
            None => Ok(false),
        }
    }

    /// How many tracked processes are running.
    #[napi]
    pub fn get_running_count(&self, env: &Env) -> Result<u32> {
        let mut count = 0;
        for entry in self.tracked.borrow().values() {
            if status(env, entry)?.0 {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Everything the `SpawnedProcess` of `serverId` wrote (last 10000 lines); `''` otherwise.
    #[napi(ts_args_type = "serverId: string")]
    pub fn get_output(&self, server_id: Option<Unknown>) -> Result<String> {
        let server_id = args::required_string(server_id, "serverId")?;
        Ok(self
            .tracked
            .borrow()
            .get(&server_id)
            .and_then(|entry| entry.handle.as_ref())
            .map(|handle| join_text(&handle.log().all()))
            .unwrap_or_default())
    }

    /// Forgets the process of `serverId` and stops it; resolves when nothing of a
    /// `SpawnedProcess`'s tree is left. Unknown ids resolve at once.
    #[napi(ts_args_type = "serverId: string", ts_return_type = "Promise<void>")]
    pub fn kill<'env>(&self, env: &'env Env, server_id: Option<Unknown>) -> Result<Unknown<'env>> {
        let server_id = match args::required_string(server_id, "serverId") {
            Ok(id) => id,
            Err(error) => return rejected(env, error),
        };
        let removed = self.tracked.borrow_mut().remove(&server_id);
        self.stop(env, removed.into_iter().collect())
    }

    /// Forgets and stops every tracked process at once; resolves when nothing of any
    /// `SpawnedProcess`'s tree is left.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill_all<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let removed: Vec<Tracked> = std::mem::take(&mut *self.tracked.borrow_mut())
            .into_values()
            .collect();
        self.stop(env, removed)
    }
}

impl ProcessManager {
    fn start_now<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        command: Option<Unknown>,
        arguments: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<TrackedProcess<'env>> {
        let server_id = args::required_string(server_id, "serverId")?;
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        self.check_free(env, &server_id)?;
        let command = read_command(command, arguments, options)?;
        let spawned = SpawnedProcess::start(env, command, false)?;
        let instance = spawned.into_instance(env)?;
        let object = instance.as_object(env);
        self.insert(env, server_id.clone(), deployment_id, object, None, None)?;
        let tracked = self.tracked.borrow();
        match tracked.get(&server_id) {
            Some(entry) => tracked_info(env, &server_id, entry),
            None => Err(invalid("serverId", "its process exited at once")),
        }
    }

    /// A running process already tracked as `server_id` is an error.
    fn check_free(&self, env: &Env, server_id: &str) -> Result<()> {
        if let Some(entry) = self.tracked.borrow().get(server_id)
            && status(env, entry)?.0
        {
            return Err(invalid(
                "serverId",
                &format!("a process for server '{server_id}' is already running"),
            ));
        }
        Ok(())
    }

    fn insert(
        &self,
        env: &Env,
        server_id: String,
        deployment_id: String,
        object: Object,
        port: Option<u16>,
        log_collector: Option<UnknownRef>,
    ) -> Result<()> {
        self.check_free(env, &server_id)?;
        let handle = if SpawnedProcess::instance_of(env, &object)? {
            // SAFETY: `object` was just checked to be a SpawnedProcess instance.
            let instance = unsafe {
                ClassInstance::<SpawnedProcess>::from_napi_value(env.raw(), object.raw())
            }?;
            instance.handle.clone()
        } else {
            None
        };
        let generation = self.generations.get() + 1;
        self.generations.set(generation);
        let on: Unknown = object.get_named_property("on")?;
        if on.get_type()? == ValueType::Function {
            let tracked = Rc::clone(&self.tracked);
            let id = server_id.clone();
            let untrack = env.create_function_from_closure::<(), (), _>("untrack", move |ctx| {
                let mut map = tracked.borrow_mut();
                if map.get(&id).is_some_and(|e| e.generation == generation)
                    && let Some(entry) = map.remove(&id)
                {
                    drop(map);
                    release(ctx.env, entry);
                }
                Ok(())
            })?;
            // SAFETY: the type was just checked.
            let on = unsafe { on.cast::<ProcessOn>() }?;
            on.apply(object, FnArgs::from(("exit".to_owned(), untrack)))?;
        }
        let entry = Tracked {
            deployment_id,
            port,
            started_at: SystemTime::now(),
            process: object.to_unknown().create_ref()?,
            log_collector,
            handle,
            generation,
        };
        if let Some(previous) = self.tracked.borrow_mut().insert(server_id, entry) {
            release(env, previous);
        }
        Ok(())
    }

    /// Stops `removed` (already forgotten): whole trees for `SpawnedProcess`es, `kill('SIGTERM')`
    /// for other objects. The Promise resolves when every tree is gone.
    fn stop<'env>(&self, env: &'env Env, removed: Vec<Tracked>) -> Result<Unknown<'env>> {
        let mut trees = Vec::new();
        for entry in removed {
            match &entry.handle {
                Some(handle) => trees.push(handle.clone()),
                None => {
                    let value = entry.process.get_value(env)?;
                    // SAFETY: `track` only accepts objects.
                    let object = unsafe { value.cast::<Object>() }?;
                    let kill: Unknown = object.get_named_property("kill")?;
                    if kill.get_type()? == ValueType::Function {
                        // SAFETY: the type was just checked.
                        let kill = unsafe { kill.cast::<Function<String, Unknown>>() }?;
                        if let Err(error) = kill.apply(object, "SIGTERM".to_owned()) {
                            report_callback_error("a tracked process's kill()", &error);
                        }
                    }
                }
            }
            release(env, entry);
        }
        let grace = self.grace;
        let promise = spawn(env, async move {
            let mut kills = tokio::task::JoinSet::new();
            for handle in trees {
                kills.spawn(async move { handle.kill_tree(grace).await });
            }
            while kills.join_next().await.is_some() {}
            Ok(())
        })?;
        Ok(promise.to_unknown())
    }
}

impl ObjectFinalize for ProcessManager {
    fn finalize(self, env: Env) -> napi::Result<()> {
        for (_, entry) in std::mem::take(&mut *self.tracked.borrow_mut()) {
            release(&env, entry);
        }
        Ok(())
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
