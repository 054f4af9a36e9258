//! Reading a command from JS arguments, and `spawnCommand` / `runCommand`.
use super::spawned::SpawnedProcess;
use crate::binding::error::{JsFailure, Result, spawn, to_js_error};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Env, FnArgs, FromNapiValue, FunctionRef, PromiseRaw, Unknown};
use napi::sys;
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
pub(super) use crate::process::run::OUTPUT_SETTLE;

/// A callback receiving one output line (stderr lines prefixed `[stderr] `) and its stream.
pub(super) type OutputCallback = FunctionRef<FnArgs<(String, String)>, UnknownReturnValue>;

/// A command as parsed from JS arguments.
pub(super) struct Command {
    pub(super) spec: SpawnSpec,
    pub(super) on_output: Option<OutputCallback>,
    pub(super) timeout: Option<Duration>,
}

/// An argument of a command method, read into `T` by napi when the call starts. A wrong value
/// is kept, not thrown, so that the method reports it as it reports its other failures (a
/// throw for `spawnCommand`, a rejection for `runCommand`), with the message that names it and
/// its `code`; napi's own conversions would throw a message of their own.
pub struct Argument<T>(Result<T>);

/// How one argument is read from its JS value (`undefined` when the caller left it out).
trait ReadArgument: Sized {
    fn read(value: &Unknown<'_>) -> Result<Self>;
}

impl<T: ReadArgument> FromNapiValue for Argument<T> {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: `env` and `value` are the live handles napi passes for this argument.
        let value = unsafe { Unknown::from_napi_value(env, value) }?;
        Ok(Argument(T::read(&value)))
    }
}

/// `command`: the program to run, a non-empty string without NUL.
pub struct Program(String);

impl ReadArgument for Program {
    fn read(value: &Unknown<'_>) -> Result<Self> {
        let program = args::required_string(Some(*value), "command")?;
        if program.is_empty() || program.contains('\0') {
            return Err(invalid("command", "must be a non-empty string without NUL"));
        }
        Ok(Program(program))
    }
}

/// `args`: the program's arguments, an array of strings (none when left out).
pub struct ArgumentList(Vec<String>);

impl ReadArgument for ArgumentList {
    fn read(value: &Unknown<'_>) -> Result<Self> {
        let argv = match args::options(Some(*value), "args")? {
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
        Ok(ArgumentList(argv))
    }
}

/// `options`: `{ cwd?, env?, onOutput?, timeoutMs? }`.
pub struct CommandOptions {
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    on_output: Option<OutputCallback>,
    timeout: Option<Duration>,
}

impl ReadArgument for CommandOptions {
    fn read(value: &Unknown<'_>) -> Result<Self> {
        let options = Some(value);
        let cwd = match args::optional_string(
            args::field(options, "options", "cwd")?.as_ref(),
            "options.cwd",
        )? {
            Some(dir) => PathBuf::from(dir),
            None => args::cwd("options.cwd")?,
        };
        let env = match args::field(options, "options", "env")? {
            Some(vars) => {
                validate::env_vars("options.env", &args::options(Some(vars), "options.env")?)
                    .map_err(to_js_error)?
            }
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
        Ok(CommandOptions {
            cwd,
            env,
            on_output,
            timeout,
        })
    }
}

/// The command of `(command, args?, options?)`; the first wrong argument is the error.
pub(super) fn read_command(
    command: Argument<Program>,
    arguments: Argument<ArgumentList>,
    options: Argument<CommandOptions>,
) -> Result<Command> {
    let Program(program) = command.0?;
    let ArgumentList(argv) = arguments.0?;
    let options = options.0?;
    Ok(Command {
        spec: SpawnSpec {
            program,
            args: argv,
            cwd: options.cwd,
            env: process::env::compose([&options.env]),
        },
        on_output: options.on_output,
        timeout: options.timeout,
    })
}

pub(super) fn invalid(name: &str, reason: &str) -> JsFailure {
    to_js_error(crate::error::Error::invalid(name, reason))
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
        .map_err(|_| invalid("signal", &format!("'{name}' is not a signal name")))
}

/// What `runCommand` resolves.
#[napi(object, use_nullable = true)]
pub struct CommandResult {
    /// The exit code, or `null` when a signal ended the command.
    pub exit_code: Option<i32>,
    /// The output lines (the last 10000, stderr lines prefixed `[stderr] `).
    pub output: Vec<String>,
    /// The signal that ended the command (`'SIGTERM'`, …), or `null` when it exited.
    pub signal: Option<String>,
    /// Whether `options.timeoutMs` ran out, so that the whole tree was killed.
    pub timed_out: bool,
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
    command: Argument<Program>,
    arguments: Argument<ArgumentList>,
    options: Argument<CommandOptions>,
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
    ts_return_type = "Promise<CommandResult>"
)]
pub fn run_command<'env>(
    env: &'env Env,
    command: Argument<Program>,
    arguments: Argument<ArgumentList>,
    options: Argument<CommandOptions>,
) -> napi::Result<PromiseRaw<'env, CommandResult>> {
    let prepared = match read_command(command, arguments, options) {
        Ok(mut command) => {
            let (log, delivery) = output_store(env, command.on_output.take())?;
            Ok((command, log, delivery))
        }
        Err(error) => Err(error),
    };
    spawn(env, async move {
        let (command, log, delivery) = prepared?;
        let end = process::run_command(command.spec, Arc::clone(&log), command.timeout)
            .await
            .map_err(to_js_error)?;
        log.close_subscriptions();
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        Ok(CommandResult {
            exit_code: end.exit.code,
            output: log.all().iter().map(LogEntry::text).collect(),
            signal: end.exit.signal_name(),
            timed_out: end.ending == process::Ending::TimedOut,
        })
    })
}
