//! `LogCollectorImpl`: a bounded log fed from JS, with synchronous listeners.

use crate::binding::error::Result;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Env, Function};
use napi_derive::napi;

use super::PageRequest;
use crate::binding::convert::LineCallback;
use crate::binding::convert::{
    Arg, CallbackArg, DateMs, Int, LineArg, PromisedArg, StringList, arg_names,
};
use crate::binding::delivery::report_callback_error;
use crate::binding::entities::PaginatedLogsResult;
use crate::logs::{LogBatch, LogEntry, LogLimits, LogStore, Stream, join_text};

arg_names! {
    MaxLinesArg = "maxLines";
    SinceArg = "since";
    LinesArg = "lines";
    StreamArg = "stream";
    CountArg = "n";
    LimitArg = "limit";
    BeforeArg = "before";
}

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
    #[napi]
    pub fn append(
        &self,
        env: Env,
        #[napi(ts_arg_type = "string")] line: Arg<String, LineArg>,
        #[napi(ts_arg_type = "'stdout' | 'stderr'")] stream: Option<Arg<Stream, StreamArg>>,
    ) -> Result<()> {
        let stream = stream.map_or(Stream::Stdout, Arg::into_inner);
        self.add(&env, stream, split_lines(&line).collect());
        Ok(())
    }

    /// Appends several lines at once from `stream` (default `'stdout'`).
    #[napi]
    pub fn append_multiple(
        &self,
        env: Env,
        #[napi(ts_arg_type = "string[]")] lines: PromisedArg<StringList, LinesArg>,
        #[napi(ts_arg_type = "'stdout' | 'stderr'")] stream: Option<Arg<Stream, StreamArg>>,
    ) -> Result<()> {
        // `stream` is checked before `lines`, as it always was.
        let stream = stream.map_or(Stream::Stdout, Arg::into_inner);
        let StringList(lines) = lines.into_result()?;
        let texts = lines.iter().flat_map(|text| split_lines(text)).collect();
        self.add(&env, stream, texts);
        Ok(())
    }

    /// Every stored line, one per line of text (stderr lines prefixed `[stderr] `).
    #[napi]
    pub fn get_all(&self) -> String {
        join_text(&self.store.all())
    }

    /// The last `n` lines as text.
    #[napi]
    pub fn get_tail(
        &self,
        #[napi(ts_arg_type = "number")] n: Arg<Int<0, { u32::MAX as u64 }>, CountArg>,
    ) -> String {
        join_text(&self.store.tail(n.0 as usize))
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
    #[napi(ts_return_type = "() => void")]
    pub fn stream<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "(line: string) => void")] callback: Arg<LineCallback, CallbackArg>,
    ) -> Result<Function<'env, (), ()>> {
        let listener = Rc::new(Listener {
            callback: callback.into_inner(),
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
    #[napi]
    pub fn get_paginated(
        &self,
        #[napi(ts_arg_type = "number")] limit: Option<Arg<Int<1, { u32::MAX as u64 }>, LimitArg>>,
        #[napi(ts_arg_type = "string")] before: Option<Arg<String, BeforeArg>>,
    ) -> Result<PaginatedLogsResult> {
        let limit = limit.map(|limit| limit.0);
        let before = before.map(Arg::into_inner);
        Ok(PageRequest::new(limit, before.as_deref())?.page(&self.store))
    }
}
