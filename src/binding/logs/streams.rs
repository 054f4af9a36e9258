//! `formatLogLine` and the `create*LogStream` helpers.

use crate::binding::error::Result;
use std::sync::Arc;

use napi::bindgen_prelude::{Env, Function, FunctionRef, JsValue, Unknown};
use napi_derive::napi;

use super::collector::DEFAULT_COLLECTOR_LINES;
use crate::binding::convert::LineCallback;
use crate::binding::convert::{Arg, ArgName, CallbackArg, LineArg, arg_names};
use crate::binding::delivery::{LineDelivery, deliver_lines, report_callback_error};
use crate::logs::{LineFormat, LogLimits, LogStore, Stream};

/// The formatting options of `createBuildLogStream` and `formatLogLine`.
// Only the TypeScript shape: the core's `LineFormat::from_json` reads the value, with the
// package's messages, so Rust never builds one.
#[allow(dead_code)]
#[napi(object, object_to_js = false)]
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

arg_names! {
    ConfigArg = "config";
    PredicateArg = "predicate";
}

/// The format `config` gives, the defaults when left out.
fn line_format(config: Option<Arg<LineFormat, ConfigArg>>) -> LineFormat {
    config.map(Arg::into_inner).unwrap_or_default()
}

/// `line` as a build log writes it: `[ISO time]` (unless `includeTimestamp: false`), then
/// `prefix` if given, then the line, separated by single spaces.
#[napi]
pub fn format_log_line(
    #[napi(ts_arg_type = "string")] line: Arg<String, LineArg>,
    #[napi(ts_arg_type = "BuildLogStreamConfig")] config: Option<Arg<LineFormat, ConfigArg>>,
) -> String {
    line_format(config).format(&line)
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
#[napi(ts_return_type = "(line: string) => void")]
pub fn create_build_log_stream<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "((line: string) => void) | undefined")] callback: Arg<
        Option<LineCallback>,
        CallbackArg,
    >,
    #[napi(ts_arg_type = "BuildLogStreamConfig")] config: Option<Arg<LineFormat, ConfigArg>>,
) -> Result<Function<'env, String, ()>> {
    let format = line_format(config);
    let Some(callback) = callback.into_inner() else {
        return discard(env);
    };
    if !format.buffered {
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
        pause: Some(format.flush_interval),
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

/// The names of `createMultiLogStream`'s callbacks, as its errors say them; it accepts up to 16.
const FAN_OUT_NAMES: [&str; 16] = [
    "callbacks[0]",
    "callbacks[1]",
    "callbacks[2]",
    "callbacks[3]",
    "callbacks[4]",
    "callbacks[5]",
    "callbacks[6]",
    "callbacks[7]",
    "callbacks[8]",
    "callbacks[9]",
    "callbacks[10]",
    "callbacks[11]",
    "callbacks[12]",
    "callbacks[13]",
    "callbacks[14]",
    "callbacks[15]",
];

/// The argument `callbacks[I]` of `createMultiLogStream`.
pub struct FanOutName<const I: usize>;

impl<const I: usize> ArgName for FanOutName<I> {
    const NAME: &'static str = FAN_OUT_NAMES[I];
}

/// Callback `I` of `createMultiLogStream`: `undefined` and `null` are skipped.
type FanOutCallback<const I: usize> = Option<Arg<LineCallback, FanOutName<I>>>;

/// One sink that forwards every line to each callback in turn (up to 16). A callback that
/// throws is reported and the others still receive the line.
#[napi(
    ts_args_type = "...callbacks: Array<(line: string) => void>",
    ts_return_type = "(line: string) => void"
)]
#[allow(clippy::too_many_arguments)]
pub fn create_multi_log_stream<'env>(
    env: &'env Env,
    c0: FanOutCallback<0>,
    c1: FanOutCallback<1>,
    c2: FanOutCallback<2>,
    c3: FanOutCallback<3>,
    c4: FanOutCallback<4>,
    c5: FanOutCallback<5>,
    c6: FanOutCallback<6>,
    c7: FanOutCallback<7>,
    c8: FanOutCallback<8>,
    c9: FanOutCallback<9>,
    c10: FanOutCallback<10>,
    c11: FanOutCallback<11>,
    c12: FanOutCallback<12>,
    c13: FanOutCallback<13>,
    c14: FanOutCallback<14>,
    c15: FanOutCallback<15>,
) -> Result<Function<'env, String, ()>> {
    let callbacks: Vec<LineCallback> = [
        c0.map(Arg::into_inner),
        c1.map(Arg::into_inner),
        c2.map(Arg::into_inner),
        c3.map(Arg::into_inner),
        c4.map(Arg::into_inner),
        c5.map(Arg::into_inner),
        c6.map(Arg::into_inner),
        c7.map(Arg::into_inner),
        c8.map(Arg::into_inner),
        c9.map(Arg::into_inner),
        c10.map(Arg::into_inner),
        c11.map(Arg::into_inner),
        c12.map(Arg::into_inner),
        c13.map(Arg::into_inner),
        c14.map(Arg::into_inner),
        c15.map(Arg::into_inner),
    ]
    .into_iter()
    .flatten()
    .collect();
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
#[napi(ts_return_type = "(line: string) => void")]
pub fn create_filtered_log_stream<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "((line: string) => void) | undefined")] callback: Arg<
        Option<LineCallback>,
        CallbackArg,
    >,
    #[napi(ts_arg_type = "(line: string) => boolean")] predicate: Arg<
        FunctionRef<String, Unknown<'static>>,
        PredicateArg,
    >,
) -> Result<Function<'env, String, ()>> {
    let predicate = predicate.into_inner();
    let Some(callback) = callback.into_inner() else {
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
