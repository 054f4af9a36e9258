//! Reading a command from JS arguments, and `spawnCommand` / `runCommand`.
use super::spawned::SpawnedProcess;
use crate::binding::error::{JsFailure, Result, spawn, to_js_error};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Env, FnArgs, FunctionRef, PromiseRaw, Unknown};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::binding::args;
use crate::binding::delivery::{report_callback_error, spawn_delivery};
use crate::logs::{LogEntry, LogLimits, LogStore};
use crate::process::{self, SpawnSpec};
use crate::validate;

/// Lines of output kept per command.
pub(super) const OUTPUT_LINES: usize = 10_000;

/// How long `close` waits for output pipes held open by descendants after the exit.
pub(super) const OUTPUT_SETTLE: Duration = Duration::from_secs(2);

/// A callback receiving one output line (stderr lines prefixed `[stderr] `) and its stream.
pub(super) type OutputCallback = FunctionRef<FnArgs<(String, String)>, UnknownReturnValue>;

/// A command as parsed from JS arguments.
pub(super) struct Command {
    pub(super) spec: SpawnSpec,
    pub(super) on_output: Option<OutputCallback>,
    pub(super) timeout: Option<Duration>,
}

/// Reads `(command, args?, options?)` with options `{ cwd?, env?, onOutput?, timeoutMs? }`.
pub(super) fn read_command(
    command: Option<Unknown>,
    arguments: Option<Unknown>,
    options: Option<Unknown>,
) -> Result<Command> {
    let program = args::required_string(command, "command")?;
    if program.is_empty() || program.contains('\0') {
        return Err(JsFailure::invalid(
            "command",
            "must be a non-empty string without NUL",
        ));
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
            return Err(JsFailure::invalid(
                "args",
                validate::expected("an array of strings", &other),
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

/// A log store for one command, with its lines forwarded to `on_output` when given; the handle
/// ends once the store's subscriptions are closed and every line reached `on_output`.
pub(super) fn output_store(
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
        for entry in batch.entries() {
            let args = (entry.text(), entry.stream().as_str().to_owned());
            if let Err(error) = callback.call(FnArgs::from(args)) {
                report_callback_error("an onOutput callback", &error);
            }
        }
    })?;
    Ok((log, Some(delivery)))
}

pub(super) fn read_signal(signal: Option<Unknown>) -> Result<Option<Signal>> {
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
        .map_err(|_| JsFailure::invalid("signal", format!("'{name}' is not a signal name")))
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
