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

use crate::binding::convert::read;
use crate::binding::convert::{Arg, FromArg, PromisedArg, arg_names};
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

arg_names! {
    CommandArg = "command";
    ArgsArg = "args";
    OptionsArg = "options";
}

/// `command`: the program to run, a non-empty string without NUL.
pub struct Program(String);

impl FromArg for Program {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let program = read::required_string(Some(*value), name)?;
        if program.is_empty() || program.contains('\0') {
            return Err(JsFailure::invalid(
                name,
                "must be a non-empty string without NUL",
            ));
        }
        Ok(Program(program))
    }
}

/// `args`: the program's arguments, an array of strings (none when left out).
#[derive(Default)]
pub struct ArgumentList(Vec<String>);

impl FromArg for ArgumentList {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let argv = match read::options(Some(*value), name)? {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    validate::string(&format!("{name}[{i}]"), item)
                        .map(str::to_owned)
                        .map_err(to_js_error)
                })
                .collect::<Result<Vec<_>>>()?,
            other => {
                return Err(JsFailure::invalid(
                    name,
                    validate::expected("an array of strings", &other),
                ));
            }
        };
        Ok(ArgumentList(argv))
    }
}

/// `options`: `{ cwd?, env?, onOutput?, timeoutMs? }`.
#[derive(Default)]
pub struct CommandOptions {
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    on_output: Option<OutputCallback>,
    timeout: Option<Duration>,
}

impl FromArg for CommandOptions {
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let field = |field: &str| read::field(Some(value), name, field);
        let cwd = read::optional_string(field("cwd")?.as_ref(), &format!("{name}.cwd"))?
            .map(PathBuf::from);
        let env_name = format!("{name}.env");
        let env = match field("env")? {
            Some(vars) => validate::env_vars(&env_name, &read::options(Some(vars), &env_name)?)
                .map_err(to_js_error)?,
            None => BTreeMap::new(),
        };
        let on_output = match field("onOutput")? {
            Some(callback) => Some(read::callback(&callback, &format!("{name}.onOutput"))?),
            None => None,
        };
        let timeout = read::optional_integer(
            field("timeoutMs")?.as_ref(),
            &format!("{name}.timeoutMs"),
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

/// The command of `(command, args?, options?)`; without `options.cwd` it runs in the host's
/// working directory.
pub(super) fn read_command(
    Program(program): Program,
    arguments: Option<ArgumentList>,
    options: Option<CommandOptions>,
) -> Result<Command> {
    let ArgumentList(argv) = arguments.unwrap_or_default();
    let options = options.unwrap_or_default();
    let cwd = match options.cwd {
        Some(dir) => dir,
        None => read::cwd("options.cwd")?,
    };
    Ok(Command {
        spec: SpawnSpec {
            program,
            args: argv,
            cwd,
            env: process::env::compose([&options.env]),
            confinement: Default::default(),
        },
        on_output: options.on_output,
        timeout: options.timeout,
    })
}

/// [`read_command`] for a Promise-returning method: the first wrong argument is the failure
/// its Promise rejects with.
pub(super) fn read_promised_command(
    command: PromisedArg<Program, CommandArg>,
    arguments: Option<PromisedArg<ArgumentList, ArgsArg>>,
    options: Option<PromisedArg<CommandOptions, OptionsArg>>,
) -> Result<Command> {
    let program = command.into_result()?;
    let arguments = arguments.map(PromisedArg::into_result).transpose()?;
    let options = options.map(PromisedArg::into_result).transpose()?;
    read_command(program, arguments, options)
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
    let Some(name) = read::optional_string(signal.as_ref(), "signal")? else {
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
#[napi(ts_return_type = "SpawnedProcess")]
pub fn spawn_command(
    env: &Env,
    #[napi(ts_arg_type = "string")] command: Arg<Program, CommandArg>,
    #[napi(ts_arg_type = "string[]")] args: Option<Arg<ArgumentList, ArgsArg>>,
    #[napi(
        ts_arg_type = "{ cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }"
    )]
    options: Option<Arg<CommandOptions, OptionsArg>>,
) -> Result<SpawnedProcess> {
    let command = read_command(
        command.into_inner(),
        args.map(Arg::into_inner),
        options.map(Arg::into_inner),
    )?;
    SpawnedProcess::start(env, command, true)
}

/// Runs `command` to completion (see `spawnCommand` for the options; `options.timeoutMs`
/// kills the whole tree when it runs out) and resolves `{ exitCode, signal, output, timedOut }`:
/// the exit code or the terminating signal (the other `null`), the output lines (the last
/// 10000, stderr lines prefixed `[stderr] `), and whether the timeout ran out. Rejects when the
/// command cannot start.
#[napi(ts_return_type = "Promise<CommandResult>")]
pub fn run_command<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "string")] command: PromisedArg<Program, CommandArg>,
    #[napi(ts_arg_type = "string[]")] args: Option<PromisedArg<ArgumentList, ArgsArg>>,
    #[napi(
        ts_arg_type = "{ cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void; timeoutMs?: number }"
    )]
    options: Option<PromisedArg<CommandOptions, OptionsArg>>,
) -> napi::Result<PromiseRaw<'env, CommandResult>> {
    let prepared = read_promised_command(command, args, options).and_then(|mut command| {
        let (log, delivery) = output_store(env, command.on_output.take())?;
        Ok((command, log, delivery))
    });
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
