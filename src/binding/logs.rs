//! The log utilities of SPEC §2 as JS sees them: `RingBuffer`, `LogCollectorImpl`, and the
//! `create*LogStream` helpers. Storage, framing and subscriptions live in the core's `logs`.

use super::error::{JsFailure, Result, to_js_error};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::UnknownRef;
use napi::bindgen_prelude::{
    Env, Function, FunctionRef, JsObjectValue, JsValue, Object, ObjectFinalize, Unknown,
};
use napi_derive::napi;
use serde_json::{Value, json};

use super::args::{self, LineCallback};
use super::delivery::{report_callback_error, spawn_delivery};
use crate::logs::store::SubscriptionCloser;
use crate::logs::{LogBatch, LogEntry, LogLimits, LogStore, Stream, join_text, store::iso8601_utc};

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
            .map(|item| Ok(held_value(env, item)?))
            .collect()
    }

    /// The newest `n` items (a non-negative integer), oldest first.
    #[napi(ts_args_type = "n: number", ts_return_type = "unknown[]")]
    pub fn get_tail<'env>(&self, env: &'env Env, n: Unknown) -> Result<Vec<Unknown<'env>>> {
        let n = args::integer(&n, "n", 0, u64::from(u32::MAX))? as usize;
        let start = self.items.len().saturating_sub(n);
        self.items
            .range(start..)
            .map(|item| Ok(held_value(env, item)?))
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

fn held_value<'env>(env: &'env Env, holder: &UnknownRef) -> napi::Result<Unknown<'env>> {
    // SAFETY: every reference in a RingBuffer points to a holder object made by `push`.
    let holder = unsafe { holder.get_value(env)?.cast::<Object>() }?;
    holder.get_named_property::<Unknown>(HOLDER_FIELD)
}

impl ObjectFinalize for RingBuffer {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        self.clear(env)
            .map_err(|failure| napi::Error::from_reason(failure.message))
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
            invalid(
                "before",
                format!("expected a cursor from a previous page (got '{cursor}')"),
            )
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
    Ok(env.create_function_from_closure("unsubscribe", move |_| {
        closer.close();
        Ok(())
    })?)
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

/// One `LogCollectorImpl.stream` subscriber; `active` turns false when it unsubscribes.
struct Listener {
    callback: LineCallback,
    active: Cell<bool>,
}

/// The subscribers of one collector, called in subscription order.
type Listeners = Rc<RefCell<Vec<Rc<Listener>>>>;

/// A bounded in-memory log: lines with timestamps, stream tags and cursors.
///
/// Lines are appended from JS, so `stream` subscribers are called on the JS thread, during the
/// `append` that added the line: every line reaches every subscriber that was subscribed
/// when it was appended, before `append` returns.
#[napi]
pub struct LogCollectorImpl {
    store: Arc<LogStore>,
    listeners: Listeners,
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
            listeners: Rc::default(),
        })
    }
}

impl LogCollectorImpl {
    /// Stores `lines` and hands them, in text form, to every subscriber. Lines the store
    /// dropped at once (one call appending more than it keeps) are announced by a marker.
    fn add(&self, env: &Env, stream: Stream, lines: Vec<String>) {
        let count = lines.len();
        if self.store.append_lines(stream, lines).is_none() {
            return;
        }
        let subscribers: Vec<Rc<Listener>> = self.listeners.borrow().clone();
        if subscribers.is_empty() {
            return;
        }
        let kept = self.store.tail(count);
        let dropped = (count - kept.len()) as u64;
        let texts: Vec<String> = (dropped > 0)
            .then(|| LogBatch::missed_marker(dropped))
            .into_iter()
            .chain(kept.iter().map(LogEntry::text))
            .collect();
        for line in &texts {
            for listener in subscribers.iter().filter(|l| l.active.get()) {
                let called = listener
                    .callback
                    .borrow_back(env)
                    .and_then(|callback| callback.call(line.clone()));
                if let Err(error) = called {
                    report_callback_error("a log stream callback", &error);
                }
            }
        }
    }
}

#[napi]
impl LogCollectorImpl {
    /// Appends `line` (text with newlines becomes several lines) from `stream` (default `'stdout'`).
    #[napi(ts_args_type = "line: string, stream?: 'stdout' | 'stderr'")]
    pub fn append(&self, env: Env, line: Unknown, stream: Option<Unknown>) -> Result<()> {
        let text = args::string(&line, "line")?;
        let stream = args::stream(stream.as_ref(), "stream")?;
        self.add(&env, stream, split_lines(&text).collect());
        Ok(())
    }

    /// Appends several lines at once from `stream` (default `'stdout'`).
    #[napi(ts_args_type = "lines: string[], stream?: 'stdout' | 'stderr'")]
    pub fn append_multiple(&self, env: Env, lines: Unknown, stream: Option<Unknown>) -> Result<()> {
        let stream = args::stream(stream.as_ref(), "stream")?;
        let list = match super::json::to_json(&lines, "lines")? {
            Value::Array(items) => items,
            other => {
                return Err(to_js_error(crate::error::Error::invalid(
                    "lines",
                    crate::validate::expected("an array of strings", &other),
                )));
            }
        };
        let mut texts = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            let text =
                crate::validate::string(&format!("lines[{index}]"), item).map_err(to_js_error)?;
            texts.extend(split_lines(text));
        }
        self.add(&env, stream, texts);
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

    /// Calls `callback` with each line appended from now on (text form), during the `append`
    /// that adds it, until the returned function is called. A callback that throws is
    /// reported (see `MASTRA_RUNNER_LOG`) and stays subscribed; the other subscribers and the
    /// appender are unaffected.
    #[napi(
        ts_args_type = "callback: (line: string) => void",
        ts_return_type = "() => void"
    )]
    pub fn stream<'env>(
        &self,
        env: &'env Env,
        callback: Unknown,
    ) -> Result<Function<'env, (), ()>> {
        let listener = Rc::new(Listener {
            callback: args::callback(&callback, "callback")?,
            active: Cell::new(true),
        });
        self.listeners.borrow_mut().push(Rc::clone(&listener));
        let listeners = Rc::clone(&self.listeners);
        Ok(env.create_function_from_closure("unsubscribe", move |_| {
            listener.active.set(false);
            listeners
                .borrow_mut()
                .retain(|other| !Rc::ptr_eq(other, &listener));
            Ok(())
        })?)
    }

    /// Removes every line (cursors keep increasing); subscribers stay.
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

/// How long a buffered build log stream collects lines by default, in ms.
const DEFAULT_FLUSH_MS: u64 = 100;

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
            Some(options) => super::json::to_json(options, name)?,
            None => Value::Null,
        };
        if !options.is_null() && !options.is_object() {
            return Err(invalid(
                name,
                crate::validate::expected("an object", &options),
            ));
        }
        let field = |field: &str| options.get(field).filter(|v| !v.is_null());
        let flag = |field: &str, default: bool| -> Result<bool> {
            match options.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(invalid(
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

fn invalid(name: &str, reason: String) -> JsFailure {
    to_js_error(crate::error::Error::invalid(name, reason))
}

/// `line` as a build log writes it: `[ISO time]` (unless `includeTimestamp: false`), then
/// `prefix` if given, then the line, separated by single spaces.
#[napi(ts_args_type = "line: string, config?: BuildLogStreamConfig")]
pub fn format_log_line(line: Unknown, config: Option<Unknown>) -> Result<String> {
    let line = args::string(&line, "line")?;
    Ok(BuildLogStreamConfig::read(config.as_ref(), "config")?.format(&line))
}

/// A function that does nothing with the line it is given (the sink for a missing callback).
fn discard<'env>(env: &'env Env) -> Result<Function<'env, String, ()>> {
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
    spawn_delivery(
        env,
        subscription,
        Some(format.flush_interval()),
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
    Ok(
        env.create_function_from_closure("writeBuildLog", move |ctx| {
            let line: String = ctx.first_arg()?;
            buffer.append_lines(Stream::Stdout, std::iter::once(format.format(&line)));
            Ok(())
        })?,
    )
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
