//! `formatLogLine` and the `create*LogStream` helpers.

use crate::binding::error::{JsFailure, Result, to_js_error};
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Env, Function, FunctionRef, JsValue, Unknown};
use napi_derive::napi;
use serde_json::Value;

use super::collector::DEFAULT_COLLECTOR_LINES;
use crate::binding::args::{self, LineCallback};
use crate::binding::delivery::{LineDelivery, deliver_lines, report_callback_error};
use crate::logs::{LogLimits, LogStore, Stream, store::iso8601_utc};

/// How long a buffered build log stream collects lines by default, in ms.
pub(super) const DEFAULT_FLUSH_MS: u64 = 100;

/// The formatting options of `createBuildLogStream` and `formatLogLine`.
#[napi(object)]
pub struct BuildLogStreamConfig {
    /// Start each line with `[ISO time]` (default `true`).
    pub include_timestamp: Option<bool>,
    /// Text put between the timestamp and the line, e.g. a step name (default none).
    pub prefix: Option<String>,
    /// Collect lines and hand them over at most every `flushIntervalMs` (default `false`).
    pub buffered: Option<bool>,
    /// How long a buffered stream collects lines, in ms (default 100).
    pub flush_interval_ms: Option<f64>,
}

impl BuildLogStreamConfig {
    /// Reads and checks argument `name`; a wrong field is an `Error` naming it.
    fn read(options: Option<&Unknown<'_>>, name: &str) -> Result<Self> {
        let options = match options {
            Some(options) => crate::binding::json::to_json(options, name)?,
            None => Value::Null,
        };
        if !options.is_null() && !options.is_object() {
            return Err(JsFailure::invalid(
                name,
                crate::validate::expected("an object", &options),
            ));
        }
        let field = |field: &str| options.get(field).filter(|v| !v.is_null());
        let flag = |field: &str, default: bool| -> Result<bool> {
            match options.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(JsFailure::invalid(
                    &format!("{name}.{field}"),
                    crate::validate::expected("a boolean", other),
                )),
            }
        };
        let prefix = match field("prefix") {
            None => String::new(),
            Some(value) => crate::validate::string(&format!("{name}.prefix"), value)
                .map_err(to_js_error)?
                .to_owned(),
        };
        let flush_interval = match field("flushIntervalMs") {
            None => DEFAULT_FLUSH_MS,
            Some(value) => {
                crate::validate::integer(&format!("{name}.flushIntervalMs"), value, 1, 3_600_000)
                    .map_err(to_js_error)?
            }
        };
        Ok(BuildLogStreamConfig {
            include_timestamp: Some(flag("includeTimestamp", true)?),
            prefix: Some(prefix),
            buffered: Some(flag("buffered", false)?),
            flush_interval_ms: Some(flush_interval as f64),
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_millis(
            self.flush_interval_ms
                .map_or(DEFAULT_FLUSH_MS, |ms| ms as u64),
        )
    }

    /// `[ISO time] prefix line`, the parts present joined by single spaces.
    fn format(&self, line: &str) -> String {
        let prefix = self.prefix.as_deref().unwrap_or_default();
        let mut out = String::with_capacity(line.len() + prefix.len() + 28);
        if self.include_timestamp != Some(false) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            out.push('[');
            out.push_str(&iso8601_utc(now));
            out.push_str("] ");
        }
        if !prefix.is_empty() {
            out.push_str(prefix);
            out.push(' ');
        }
        out.push_str(line);
        out
    }
}

/// `line` as a build log writes it: `[ISO time]` (unless `includeTimestamp: false`), then
/// `prefix` if given, then the line, separated by single spaces.
#[napi(ts_args_type = "line: string, config?: BuildLogStreamConfig")]
pub fn format_log_line(line: Unknown, config: Option<Unknown>) -> Result<String> {
    let line = args::string(&line, "line")?;
    Ok(BuildLogStreamConfig::read(config.as_ref(), "config")?.format(&line))
}

/// A function that does nothing with the line it is given (the sink for a missing callback).
pub(super) fn discard<'env>(env: &'env Env) -> Result<Function<'env, String, ()>> {
    Ok(env.create_function_from_closure("discardLog", |_| Ok(()))?)
}

/// Wraps `callback` as a build-log sink: each line is formatted as by `formatLogLine`
/// (`[ISO time] prefix line`); with `buffered`, lines are collected and handed over, one call
/// per line, at most every `flushIntervalMs` (default 100) instead of at once. Without a
/// callback the sink discards what it is given. An exception thrown by `callback` is reported
/// (see `MASTRA_RUNNER_LOG`) and never reaches the writer.
#[napi(
    ts_args_type = "callback: ((line: string) => void) | undefined, config?: BuildLogStreamConfig",
    ts_return_type = "(line: string) => void"
)]
pub fn create_build_log_stream<'env>(
    env: &'env Env,
    callback: Option<Unknown>,
    config: Option<Unknown>,
) -> Result<Function<'env, String, ()>> {
    let callback: Option<LineCallback> = args::optional_callback(callback.as_ref(), "callback")?;
    let format = BuildLogStreamConfig::read(config.as_ref(), "config")?;
    let Some(callback) = callback else {
        return discard(env);
    };
    if format.buffered != Some(true) {
        return Ok(
            env.create_function_from_closure("writeBuildLog", move |ctx| {
                let line: String = ctx.first_arg()?;
                let callback = callback.borrow_back(ctx.env)?;
                if let Err(error) = callback.call(format.format(&line)) {
                    report_callback_error("a build log stream callback", &error);
                }
                Ok(())
            })?,
        );
    }
    let buffer = Arc::new(LogStore::new(LogLimits::with_lines(
        DEFAULT_COLLECTOR_LINES as usize,
    )));
    let subscription = buffer.subscribe(DEFAULT_COLLECTOR_LINES as usize);
    let how = LineDelivery {
        what: "a build log stream callback",
        stderr_prefix: false,
        skip_blank: false,
        pause: Some(format.flush_interval()),
    };
    deliver_lines(env, subscription, &callback, None, how)?;
    Ok(
        env.create_function_from_closure("writeBuildLog", move |ctx| {
            let line: String = ctx.first_arg()?;
            buffer.append_lines(Stream::Stdout, std::iter::once(format.format(&line)));
            Ok(())
        })?,
    )
}

/// The most callbacks `createMultiLogStream` accepts.
pub(super) const MAX_FANOUT: usize = 16;

/// One sink that forwards every line to each callback in turn (up to 16). A callback that
/// throws is reported and the others still receive the line.
#[napi(
    ts_args_type = "...callbacks: Array<(line: string) => void>",
    ts_return_type = "(line: string) => void"
)]
#[allow(clippy::too_many_arguments)]
pub fn create_multi_log_stream<'env>(
    env: &'env Env,
    c0: Option<Unknown>,
    c1: Option<Unknown>,
    c2: Option<Unknown>,
    c3: Option<Unknown>,
    c4: Option<Unknown>,
    c5: Option<Unknown>,
    c6: Option<Unknown>,
    c7: Option<Unknown>,
    c8: Option<Unknown>,
    c9: Option<Unknown>,
    c10: Option<Unknown>,
    c11: Option<Unknown>,
    c12: Option<Unknown>,
    c13: Option<Unknown>,
    c14: Option<Unknown>,
    c15: Option<Unknown>,
) -> Result<Function<'env, String, ()>> {
    let given = [
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
    ];
    debug_assert_eq!(given.len(), MAX_FANOUT);
    let mut callbacks: Vec<LineCallback> = Vec::new();
    for (index, callback) in given.iter().enumerate() {
        if let Some(callback) = callback {
            callbacks.push(args::callback(callback, &format!("callbacks[{index}]"))?);
        }
    }
    Ok(
        env.create_function_from_closure("writeMultiLog", move |ctx| {
            let line: String = ctx.first_arg()?;
            for callback in &callbacks {
                let callback = callback.borrow_back(ctx.env)?;
                if let Err(error) = callback.call(line.clone()) {
                    report_callback_error("a multi log stream callback", &error);
                }
            }
            Ok(())
        })?,
    )
}

/// A sink that forwards only the lines for which `predicate(line)` is truthy (without a
/// callback, it discards every line). A predicate that throws drops that line (and is
/// reported).
#[napi(
    ts_args_type = "callback: ((line: string) => void) | undefined, predicate: (line: string) => boolean",
    ts_return_type = "(line: string) => void"
)]
pub fn create_filtered_log_stream<'env>(
    env: &'env Env,
    callback: Option<Unknown>,
    predicate: Unknown,
) -> Result<Function<'env, String, ()>> {
    let callback: Option<LineCallback> = args::optional_callback(callback.as_ref(), "callback")?;
    let predicate: FunctionRef<String, Unknown<'static>> = args::callback(&predicate, "predicate")?;
    let Some(callback) = callback else {
        return discard(env);
    };
    Ok(
        env.create_function_from_closure("writeFilteredLog", move |ctx| {
            let line: String = ctx.first_arg()?;
            let keep = predicate
                .borrow_back(ctx.env)?
                .call(line.clone())
                .and_then(|verdict| verdict.coerce_to_bool());
            match keep {
                Ok(true) => {
                    if let Err(error) = callback.borrow_back(ctx.env)?.call(line) {
                        report_callback_error("a filtered log stream callback", &error);
                    }
                }
                Ok(false) => {}
                Err(error) => report_callback_error("a log stream predicate", &error),
            }
            Ok(())
        })?,
    )
}
