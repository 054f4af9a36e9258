//! What a `ProcessManager` keeps per process, and how it reads a process's status.
use crate::binding::entities::js_date;
use crate::binding::error::{JsFailure, Result, rejection};
use std::cell::RefCell;
use std::rc::Rc;

use napi::bindgen_prelude::{
    Either, Env, Function, JsObjectValue, JsValue, Null, Object, ToNapiValue, Unknown,
};
use napi::{UnknownRef, ValueType};
use napi_derive::napi;

use crate::process::{Managed, ProcessHandle, ProcessManager, Tracked};

/// One JS process object a `ProcessManager` tracks, with the log collector it was given.
pub(super) struct JsProcess {
    pub(super) object: UnknownRef,
    pub(super) log_collector: Option<UnknownRef>,
    /// The process's handle when it is a `SpawnedProcess`: then its whole tree is stopped.
    pub(super) handle: Option<ProcessHandle>,
}

impl Managed for JsProcess {
    type Context = Env;
    type Error = JsFailure;

    fn is_running(&self, env: &Env) -> Result<bool> {
        Ok(status(env, self)?.0)
    }
}

/// The core manager over JS process objects, shared with the `exit` listeners that untrack.
pub(super) type Manager = Rc<RefCell<ProcessManager<JsProcess>>>;

/// Releases the JS references a forgotten process holds.
pub(super) fn release(env: &Env, tracked: Tracked<JsProcess>) {
    let mut refs = vec![tracked.process.object];
    refs.extend(tracked.process.log_collector);
    for reference in refs {
        if let Err(error) = reference.unref(env) {
            tracing::debug!("releasing a tracked process failed: {error}");
        }
    }
}

/// Property `name` of a process object, unless it is `undefined` or `null`.
pub(super) fn has_value<'env>(object: &Object<'env>, name: &str) -> Result<Option<Unknown<'env>>> {
    let value: Unknown<'env> = object.get_named_property(name)?;
    Ok(match value.get_type()? {
        ValueType::Undefined | ValueType::Null => None,
        _ => Some(value),
    })
}

/// `(running, exitCode, signal)` of a tracked process: from its handle for a `SpawnedProcess`,
/// otherwise from the `killed`, `exitCode` and `signalCode` properties Node's `ChildProcess`
/// has.
pub(super) fn status(
    env: &Env,
    process: &JsProcess,
) -> Result<(bool, Option<i32>, Option<String>)> {
    if let Some(handle) = &process.handle {
        let exit = handle.exit_info();
        return Ok((
            exit.is_none(),
            exit.and_then(|e| e.code),
            exit.and_then(|e| e.signal_name()),
        ));
    }
    let value = process.object.get_value(env)?;
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
    pub started_at: chrono::DateTime<chrono::Utc>,
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
pub(super) fn or_null<T>(value: Option<T>) -> Either<T, Null> {
    value.map_or(Either::B(Null), Either::A)
}

/// The `TrackedProcess` of one entry.
pub(super) fn tracked_info<'env>(
    env: &'env Env,
    server_id: &str,
    tracked: &Tracked<JsProcess>,
) -> Result<TrackedProcess<'env>> {
    let process = tracked.process.object.get_value(env)?;
    let (running, exit_code, signal) = status(env, &tracked.process)?;
    let log_collector = match &tracked.process.log_collector {
        Some(log) => log.get_value(env)?,
        None => ().into_unknown(env)?,
    };
    // SAFETY: `track` only accepts objects.
    let pid: Unknown = unsafe { process.cast::<Object>() }?.get_named_property("pid")?;
    Ok(TrackedProcess {
        server_id: server_id.to_owned(),
        deployment_id: tracked.deployment_id.clone(),
        process,
        port: tracked.port.map(u32::from),
        log_collector,
        started_at: js_date(tracked.started_at),
        pid,
        running,
        exit_code: or_null(exit_code),
        signal: or_null(signal),
    })
}

/// `Promise.resolve(value)`: a settled Promise for a result known now.
pub(super) fn resolved<'env>(env: &'env Env, value: Unknown<'env>) -> Result<Unknown<'env>> {
    let promise: Function<(), Unknown> = env.get_global()?.get_named_property("Promise")?;
    let resolve: Function<Unknown, Unknown> = promise.get_named_property("resolve")?;
    Ok(resolve.apply(promise, value)?)
}

/// `Promise.reject(error)`.
pub(super) fn rejected<'env>(env: &'env Env, failure: JsFailure) -> Result<Unknown<'env>> {
    let promise: Function<(), Unknown> = env.get_global()?.get_named_property("Promise")?;
    let reject: Function<napi::Error, Unknown> = promise.get_named_property("reject")?;
    Ok(reject.apply(promise, rejection(env, failure))?)
}
