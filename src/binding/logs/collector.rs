//! `LogCollectorImpl`: a bounded log fed from JS, with synchronous listeners.

use crate::binding::error::{Result, to_js_error};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Env, Function, Unknown};
use napi_derive::napi;
use serde_json::Value;

use super::PageRequest;
use crate::binding::args::{self, LineCallback};
use crate::binding::convert::{Arg, DateMs, Int, arg_names};

arg_names! {
    MaxLinesArg = "maxLines";
    SinceArg = "since";
}
use crate::binding::delivery::report_callback_error;
use crate::binding::entities::PaginatedLogsResult;
use crate::logs::{LogBatch, LogEntry, LogLimits, LogStore, Stream, join_text};

/// Lines a `LogCollectorImpl` keeps when no capacity is given.
pub(super) const DEFAULT_COLLECTOR_LINES: u64 = 10_000;

/// Splits text a caller appends into lines (`\n`, with `\r\n` handled).
pub(super) fn split_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// One `LogCollectorImpl.stream` subscriber; `active` turns false when it unsubscribes.
pub(super) struct Listener {
    pub(super) callback: LineCallback,
    pub(super) active: Cell<bool>,
}

/// The subscribers of one collector, called in subscription order.
pub(super) type Listeners = Rc<RefCell<Vec<Rc<Listener>>>>;

/// A bounded in-memory log: lines with timestamps, stream tags and cursors.
///
/// Lines are appended from JS, so `stream` subscribers are called on the JS thread, during the
/// `append` that added the line: every line reaches every subscriber that was subscribed
/// when it was appended, before `append` returns.
#[napi]
pub struct LogCollectorImpl {
    pub(super) store: Arc<LogStore>,
    pub(super) listeners: Listeners,
}

#[napi]
impl LogCollectorImpl {
    /// A collector keeping the newest `maxLines` lines (default 10000), at most 32 MiB of
    /// text, each line at most 64 KiB (longer ones are cut with a marker).
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "number")] max_lines: Option<
            Arg<Int<1, { u32::MAX as u64 }>, MaxLinesArg>,
        >,
    ) -> Result<Self> {
        let max_lines = max_lines.map_or(DEFAULT_COLLECTOR_LINES, |lines| lines.into_inner().0);
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
        let list = match crate::binding::json::to_json(&lines, "lines")? {
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
    #[napi]
    pub fn get_since(
        &self,
        #[napi(ts_arg_type = "Date")] since: Arg<DateMs, SinceArg>,
    ) -> Result<String> {
        Ok(join_text(&self.store.since(since.into_inner().0)))
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
    pub fn get_paginated(
        &self,
        limit: Option<Unknown>,
        before: Option<Unknown>,
    ) -> Result<PaginatedLogsResult> {
        Ok(PageRequest::read(limit.as_ref(), before.as_ref())?.page(&self.store))
    }
}
