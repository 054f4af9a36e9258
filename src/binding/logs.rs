//! The log utilities of SPEC §2 as JS sees them: `RingBuffer`, `LogCollectorImpl`, and the
//! `create*LogStream` helpers. Storage, framing and subscriptions live in the core's `logs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use napi::UnknownRef;
use napi::bindgen_prelude::{
    Env, Function, FunctionRef, JsObjectValue, JsValue, Object, ObjectFinalize, Result, Unknown,
};
use napi_derive::napi;
use serde_json::{Value, json};

use super::args::{self, LineCallback};
use super::delivery::{report_callback_error, spawn_delivery};
use crate::logs::store::SubscriptionCloser;
use crate::logs::{LogBatch, LogLimits, LogStore, Stream, join_text, store::iso8601_utc};

/// Lines a `LogCollectorImpl` keeps when no capacity is given.
const DEFAULT_COLLECTOR_LINES: u64 = 10_000;

/// A fixed-capacity list of any JS values: pushing onto a full buffer drops the oldest.
///
/// Node 20 cannot hold a reference to a primitive, so each item is kept inside a one-field
/// holder object and the reference is to that.
#[napi(custom_finalize)]
pub struct RingBuffer {
    items: VecDeque<UnknownRef>,
    capacity: usize,
}

#[napi]
impl RingBuffer {
    /// A buffer holding at most `capacity` items (a positive integer).
    #[napi(constructor, ts_args_type = "capacity: number")]
    pub fn new(capacity: Unknown) -> Result<Self> {
        let capacity = args::integer(&capacity, "capacity", 1, u64::from(u32::MAX))? as usize;
        Ok(RingBuffer {
            items: VecDeque::new(),
            capacity,
        })
    }

    /// Appends `item`; when full, the oldest item is dropped.
    #[napi(ts_args_type = "item: unknown")]
    pub fn push(&mut self, env: Env, item: Unknown) -> Result<()> {
        if self.items.len() == self.capacity
            && let Some(oldest) = self.items.pop_front()
        {
            oldest.unref(&env)?;
        }
        let mut holder = Object::new(&env)?;
        holder.set(HOLDER_FIELD, item)?;
        self.items.push_back(holder.to_unknown().create_ref()?);
        Ok(())
    }

    /// Every item, oldest first.
    #[napi(ts_return_type = "unknown[]")]
    pub fn to_array<'env>(&self, env: &'env Env) -> Result<Vec<Unknown<'env>>> {
        self.items
            .iter()
            .map(|item| held_value(env, item))
            .collect()
    }

    /// The newest `n` items (a non-negative integer), oldest first.
    #[napi(ts_args_type = "n: number", ts_return_type = "unknown[]")]
    pub fn get_tail<'env>(&self, env: &'env Env, n: Unknown) -> Result<Vec<Unknown<'env>>> {
        let n = args::integer(&n, "n", 0, u64::from(u32::MAX))? as usize;
        let start = self.items.len().saturating_sub(n);
        self.items
            .range(start..)
            .map(|item| held_value(env, item))
            .collect()
    }

    /// How many items the buffer holds.
    #[napi]
    pub fn get_size(&self) -> u32 {
        self.items.len() as u32
    }

    /// Removes every item.
    #[napi]
    pub fn clear(&mut self, env: Env) -> Result<()> {
        for item in self.items.drain(..) {
            item.unref(&env)?;
        }
        Ok(())
    }
}

/// The field of a holder object that carries a `RingBuffer` item.
const HOLDER_FIELD: &str = "value";

fn held_value<'env>(env: &'env Env, holder: &UnknownRef) -> Result<Unknown<'env>> {
    // SAFETY: every reference in a RingBuffer points to a holder object made by `push`.
    let holder = unsafe { holder.get_value(env)?.cast::<Object>() }?;
    holder.get_named_property::<Unknown>(HOLDER_FIELD)
}

impl ObjectFinalize for RingBuffer {
    fn finalize(mut self, env: Env) -> Result<()> {
        self.clear(env)
    }
}

/// Reads `limit` (default 100) and `before` (a cursor) and returns the page in the shape of
/// `PaginatedLogsResult`, for every paginated log query.
pub(crate) fn paginate(
    store: &LogStore,
    limit: Option<&Unknown<'_>>,
    before: Option<&Unknown<'_>>,
) -> Result<Value> {
    let limit = args::optional_integer(limit, "limit", 1, u64::from(u32::MAX))?.unwrap_or(100);
    let before = match args::optional_string(before, "before")? {
        None => None,
        Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| {
            napi::Error::from_reason(format!(
                "Invalid before: expected a cursor from a previous page (got '{cursor}')"
            ))
        })?),
    };
    let page = store.page(limit as usize, before);
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.id.to_string(),
                "timestamp": entry.iso_timestamp(),
                "line": &*entry.line,
                "stream": entry.stream.as_str(),
            })
        })
        .collect();
    Ok(json!({
        "oldestCursor": page.entries.first().map(|e| e.id.to_string()),
        "newestCursor": page.entries.last().map(|e| e.id.to_string()),
        "entries": entries,
        "hasMore": page.has_more,
    }))
}

/// Subscribes `callback` to new lines of `store` in text form; returns the unsubscribe
/// function. Used by `LogCollectorImpl.stream` and the runner's `streamLogs`.
pub(crate) fn stream_text<'env>(
    env: &'env Env,
    store: &LogStore,
    callback: LineCallback,
) -> Result<Function<'env, (), ()>> {
    let (closer, _) = deliver_text(env, store, callback, "a log stream callback")?;
    env.create_function_from_closure("unsubscribe", move |_| {
        closer.close();
        Ok(())
    })
}

/// Hands every new line of `store` to `callback` in text form (stderr prefixed), in order,
/// with a `[log] N lines skipped` line where the subscriber fell behind; nothing more once
/// unsubscribed. The handle ends when the subscription closes and its last line was delivered.
pub(crate) fn deliver_text(
    env: &Env,
    store: &LogStore,
    callback: LineCallback,
    what: &'static str,
) -> Result<(SubscriptionCloser, tokio::task::JoinHandle<()>)> {
    let subscription = store.subscribe(store.limits().max_lines);
    let closer = subscription.closer();
    let delivering = closer.clone();
    let handle = spawn_delivery(env, subscription, None, move |env, batch: LogBatch| {
        let Ok(callback) = callback.borrow_back(env) else {
            return;
        };
        let missed = (batch.missed > 0).then(|| LogBatch::missed_marker(batch.missed));
        let lines = missed
            .into_iter()
            .chain(batch.entries.iter().map(|entry| entry.text()));
        for line in lines {
            if delivering.is_unsubscribed() {
                return;
            }
            if let Err(error) = callback.call(line) {
                report_callback_error(what, &error);
            }
        }
    })?;
    Ok((closer, handle))
}

/// Splits text a caller appends into lines (`\n`, with `\r\n` handled).
fn split_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// A bounded in-memory log: lines with timestamps, stream tags and cursors.
#[napi]
pub struct LogCollectorImpl {
    store: Arc<LogStore>,
}

#[napi]
impl LogCollectorImpl {
    /// A collector keeping the newest `maxLines` lines (default 10000), at most 32 MiB of
    /// text, each line at most 64 KiB (longer ones are cut with a marker).
    #[napi(constructor, ts_args_type = "maxLines?: number")]
    pub fn new(max_lines: Option<Unknown>) -> Result<Self> {
        let max_lines =
            args::optional_integer(max_lines.as_ref(), "maxLines", 1, u64::from(u32::MAX))?
                .unwrap_or(DEFAULT_COLLECTOR_LINES);
        Ok(LogCollectorImpl {
            store: Arc::new(LogStore::new(LogLimits::with_lines(max_lines as usize))),
        })
    }

    /// Appends `line` (text with newlines becomes several lines) from `stream` (default `'stdout'`).
    #[napi(ts_args_type = "line: string, stream?: 'stdout' | 'stderr'")]
    pub fn append(&self, line: Unknown, stream: Option<Unknown>) -> Result<()> {
        let text = args::string(&line, "line")?;
        let stream = args::stream(stream.as_ref(), "stream")?;
        self.store.append_lines(stream, split_lines(&text));
        Ok(())
    }

    /// Appends several lines at once from `stream` (default `'stdout'`).
    #[napi(ts_args_type = "lines: string[], stream?: 'stdout' | 'stderr'")]
    pub fn append_multiple(&self, lines: Unknown, stream: Option<Unknown>) -> Result<()> {
        let stream = args::stream(stream.as_ref(), "stream")?;
        let list = match super::json::to_json(&lines, "lines")? {
            Value::Array(items) => items,
            other => {
                return Err(super::to_js_error(crate::error::Error::invalid(
                    "lines",
                    crate::validate::expected("an array of strings", &other),
                )));
            }
        };
        let mut texts = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            let text = crate::validate::string(&format!("lines[{index}]"), item)
                .map_err(super::to_js_error)?;
            texts.extend(split_lines(text));
        }
        self.store.append_lines(stream, texts);
        Ok(())
    }

    /// Every stored line, one per line of text (stderr lines prefixed `[stderr] `).
    #[napi]
    pub fn get_all(&self) -> String {
        join_text(&self.store.all())
    }

    /// The last `n` lines as text.
    #[napi(ts_args_type = "n: number")]
    pub fn get_tail(&self, n: Unknown) -> Result<String> {
        let n = args::integer(&n, "n", 0, u64::from(u32::MAX))?;
        Ok(join_text(&self.store.tail(n as usize)))
    }

    /// Lines stored at or after `since`, as text.
    #[napi(ts_args_type = "since: Date")]
    pub fn get_since(&self, since: Unknown) -> Result<String> {
        let since = args::date_ms(&since, "since")?;
        Ok(join_text(&self.store.since(since)))
    }

    /// Calls `callback` with each new line (text form) until the returned function is called.
    #[napi(
        ts_args_type = "callback: (line: string) => void",
        ts_return_type = "() => void"
    )]
    pub fn stream<'env>(
        &self,
        env: &'env Env,
        callback: Unknown,
    ) -> Result<Function<'env, (), ()>> {
        let callback = args::callback(&callback, "callback")?;
        stream_text(env, &self.store, callback)
    }

    /// Removes every line (cursors keep increasing).
    #[napi]
    pub fn clear(&self) {
        self.store.clear();
    }

    /// How many lines are stored.
    #[napi]
    pub fn get_line_count(&self) -> u32 {
        self.store.len() as u32
    }

    /// Up to `limit` entries (default 100) older than the cursor `before` (newest when absent).
    #[napi(
        ts_args_type = "limit?: number, before?: string",
        ts_return_type = "PaginatedLogsResult"
    )]
    pub fn get_paginated(&self, limit: Option<Unknown>, before: Option<Unknown>) -> Result<Value> {
        paginate(&self.store, limit.as_ref(), before.as_ref())
    }
}

/// Options of `createBuildLogStream`.
struct BuildLogFormat {
    include_timestamp: bool,
    prefix: String,
    buffered: bool,
    flush_interval: Duration,
}

impl BuildLogFormat {
    fn read(options: Option<&Unknown<'_>>) -> Result<Self> {
        let options = match options {
            Some(options) => super::json::to_json(options, "options")?,
            None => Value::Null,
        };
        let field = |name: &str| options.get(name).filter(|v| !v.is_null());
        let flag = |name: &str| -> Result<bool> {
            match field(name) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(napi::Error::from_reason(format!(
                    "Invalid options.{name}: {}",
                    crate::validate::expected("a boolean", other)
                ))),
            }
        };
        let prefix = match field("prefix") {
            None => String::new(),
            Some(value) => crate::validate::string("options.prefix", value)
                .map_err(super::to_js_error)?
                .to_owned(),
        };
        let flush_interval = match field("flushIntervalMs") {
            None => 100,
            Some(value) => crate::validate::integer("options.flushIntervalMs", value, 1, 3_600_000)
                .map_err(super::to_js_error)?,
        };
        if !options.is_null() && !options.is_object() {
            return Err(napi::Error::from_reason(format!(
                "Invalid options: {}",
                crate::validate::expected("an object", &options)
            )));
        }
        Ok(BuildLogFormat {
            include_timestamp: flag("includeTimestamp")?,
            prefix,
            buffered: flag("buffered")?,
            flush_interval: Duration::from_millis(flush_interval),
        })
    }

    fn format(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len() + self.prefix.len() + 27);
        if self.include_timestamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            out.push('[');
            out.push_str(&iso8601_utc(now));
            out.push_str("] ");
        }
        out.push_str(&self.prefix);
        out.push_str(line);
        out
    }
}

/// Wraps `callback` as a build-log sink: each line is optionally stamped
/// (`includeTimestamp`: `[ISO time] `) and prefixed (`prefix`); with `buffered`, lines are
/// collected and handed over at most every `flushIntervalMs` (default 100) instead of at once.
/// An exception thrown by `callback` is reported (see `MASTRA_RUNNER_LOG`) and never reaches
/// the writer.
#[napi(
    ts_args_type = "callback: (line: string) => void, options?: { includeTimestamp?: boolean; prefix?: string; buffered?: boolean; flushIntervalMs?: number }",
    ts_return_type = "(line: string) => void"
)]
pub fn create_build_log_stream<'env>(
    env: &'env Env,
    callback: Unknown,
    options: Option<Unknown>,
) -> Result<Function<'env, String, ()>> {
    let callback: LineCallback = args::callback(&callback, "callback")?;
    let format = BuildLogFormat::read(options.as_ref())?;
    if !format.buffered {
        return env.create_function_from_closure("writeBuildLog", move |ctx| {
            let line: String = ctx.first_arg()?;
            let callback = callback.borrow_back(ctx.env)?;
            if let Err(error) = callback.call(format.format(&line)) {
                report_callback_error("a build log stream callback", &error);
            }
            Ok(())
        });
    }
    let buffer = Arc::new(LogStore::new(LogLimits::with_lines(
        DEFAULT_COLLECTOR_LINES as usize,
    )));
    let subscription = buffer.subscribe(DEFAULT_COLLECTOR_LINES as usize);
    spawn_delivery(
        env,
        subscription,
        Some(format.flush_interval),
        move |env, batch| {
            let Ok(callback) = callback.borrow_back(env) else {
                return;
            };
            let missed = (batch.missed > 0).then(|| LogBatch::missed_marker(batch.missed));
            for line in missed
                .into_iter()
                .chain(batch.entries.iter().map(|e| e.line.to_string()))
            {
                if let Err(error) = callback.call(line) {
                    report_callback_error("a build log stream callback", &error);
                }
            }
        },
    )?;
    env.create_function_from_closure("writeBuildLog", move |ctx| {
        let line: String = ctx.first_arg()?;
        buffer.append_lines(Stream::Stdout, std::iter::once(format.format(&line)));
        Ok(())
    })
}

/// The most callbacks `createMultiLogStream` accepts.
const MAX_FANOUT: usize = 16;

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
    env.create_function_from_closure("writeMultiLog", move |ctx| {
        let line: String = ctx.first_arg()?;
        for callback in &callbacks {
            let callback = callback.borrow_back(ctx.env)?;
            if let Err(error) = callback.call(line.clone()) {
                report_callback_error("a multi log stream callback", &error);
            }
        }
        Ok(())
    })
}

/// A sink that forwards only the lines for which `predicate(line)` is truthy. A predicate that
/// throws drops that line (and is reported).
#[napi(
    ts_args_type = "callback: (line: string) => void, predicate: (line: string) => boolean",
    ts_return_type = "(line: string) => void"
)]
pub fn create_filtered_log_stream<'env>(
    env: &'env Env,
    callback: Unknown,
    predicate: Unknown,
) -> Result<Function<'env, String, ()>> {
    let callback: LineCallback = args::callback(&callback, "callback")?;
    let predicate: FunctionRef<String, Unknown<'static>> = args::callback(&predicate, "predicate")?;
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
    })
}
