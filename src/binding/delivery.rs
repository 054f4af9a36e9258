//! Moving log batches from core subscriptions to JS callbacks.
//!
//! A [`BatchSink`] is a weak threadsafe function whose callback runs on the JS thread with one
//! batch at a time (so a subscription never keeps Node's event loop alive). [`pump`] starts a
//! tokio task that waits for the next batch of a subscription, hands it to a sink, and waits
//! until JS has run it before taking the next. The producer never waits for JS: while JS is
//! busy, lines queue in the subscription, whose bound turns a far-behind reader into a
//! "lines skipped" marker instead of unbounded memory.
//!
//! On the JS side one script, [`FAN_OUT`], hands a batch's lines to a user's callback one by
//! one, for line subscriptions (`streamLogs`, a build's `onLog`) and for the server-log
//! listener alike.

use std::sync::Arc;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{
    Either, FnArgs, Function, FunctionRef, JsObjectValue, JsValue, Object, Result, Unknown,
};
use napi::threadsafe_function::{ThreadsafeFunction, UnknownReturnValue};

use crate::logs::{LogBatch, LogRun, Stream, Subscription};
use crate::runner::{BoxFuture, MAX_BATCH_LINES, ServerLogSink};

/// JS that hands the lines of a batch to `callback` one by one. A batch is one string of lines
/// joined by `\n` (cut with `indexOf`, which outruns `split` by not building an array), or an
/// array of lines. `deliver(batch)` calls `callback(line)`, leaving out lines of only white
/// space with `skipBlank`; `deliver(batch, runs, serverId)` calls `callback(serverId, line,
/// stream, id)`, where `runs` holds `firstId, count, isStderr` for each run of the lines. A
/// throwing callback is reported and still gets the next line; `unsubscribe` stops delivery at
/// once, even in the middle of a batch, and calls `close` (when given).
const FAN_OUT: &str = r"(function (callback, close, report, skipBlank) {
  let stopped = false
  const reader = (batch) => {
    if (typeof batch !== 'string') {
      let next = 0
      return () => (next < batch.length ? batch[next++] : undefined)
    }
    let start = 0
    return () => {
      if (start > batch.length) return undefined
      let end = batch.indexOf('\n', start)
      if (end === -1) end = batch.length
      const line = batch.slice(start, end)
      start = end + 1
      return line
    }
  }
  return {
    deliver(batch, runs, serverId) {
      const next = reader(batch)
      if (runs === undefined) {
        for (let line = next(); line !== undefined && !stopped; line = next()) {
          if (skipBlank && line.trim() === '') continue
          try { callback(line) } catch (error) { report(error) }
        }
        return
      }
      for (let r = 0; r < runs.length && !stopped; r += 3) {
        const stream = runs[r + 2] === 1 ? 'stderr' : 'stdout'
        for (let k = 0; k < runs[r + 1] && !stopped; k++) {
          try { callback(serverId, next(), stream, String(runs[r] + k)) } catch (error) { report(error) }
        }
      }
    },
    unsubscribe() { stopped = true; if (close) close() },
  }
})";

/// [`FAN_OUT`] once compiled: `(callback, close, report, skipBlank) => { deliver, unsubscribe }`.
type FanOutFactory<'env> = Function<
    'env,
    FnArgs<(
        Unknown<'env>,
        Option<Function<'env, (), ()>>,
        Function<'env, Unknown<'env>, ()>,
        bool,
    )>,
    Object<'env>,
>;

/// [`FAN_OUT`] for one callback: the object with its `deliver` and `unsubscribe`. `what` names
/// the callback in the warnings about what it throws; `close` runs on `unsubscribe`.
pub(crate) fn fan_out<'env>(
    env: &'env Env,
    callback: Unknown<'env>,
    close: Option<Function<'env, (), ()>>,
    what: &'static str,
    skip_blank: bool,
) -> Result<Object<'env>> {
    let factory: FanOutFactory = env.run_script(FAN_OUT)?;
    let report = js_reporter(env, what)?;
    factory.call(FnArgs::from((callback, close, report, skip_blank)))
}

/// Lines for a JS line callback, carried to the JS thread in one crossing.
pub(crate) enum TextBatch {
    /// The lines joined by `\n` (none of them holds one); JS splits them again.
    Joined(String),
    /// The lines one by one, when some line holds a `\n`.
    Lines(Vec<String>),
}

impl TextBatch {
    /// A batch's lines in text form (`[stderr] ` before stderr lines, with `stderr_prefix`),
    /// preceded by a `[log] N lines skipped` line when lines were missed.
    pub(crate) fn new(batch: &LogBatch, stderr_prefix: bool) -> Self {
        let marker = (batch.missed > 0).then(|| LogBatch::missed_marker(batch.missed));
        Self::build(marker, batch.runs(), stderr_prefix)
    }

    /// A batch's lines as stored: no prefix, no marker for missed lines.
    pub(crate) fn raw(batch: &LogBatch) -> Self {
        Self::build(None, batch.runs(), false)
    }

    /// `marker` (if any), then the lines of `runs`. A run whose lines hold no `\n` is copied
    /// as the one slice of stored text it is, unless its lines need a prefix.
    fn build(marker: Option<String>, runs: &[LogRun], stderr_prefix: bool) -> Self {
        let prefix = |run: &LogRun| match run.stream() {
            Stream::Stderr if stderr_prefix => "[stderr] ",
            _ => "",
        };
        let Some(texts) = runs
            .iter()
            .map(LogRun::joined)
            .collect::<Option<Vec<&str>>>()
        else {
            return TextBatch::Lines(
                marker
                    .into_iter()
                    .chain(runs.iter().flat_map(|run| {
                        run.lines()
                            .map(move |line| format!("{}{line}", prefix(run)))
                    }))
                    .collect(),
            );
        };
        let size = runs
            .iter()
            .zip(&texts)
            .map(|(run, text)| text.len() + 1 + prefix(run).len() * run.len())
            .sum::<usize>()
            + marker.as_ref().map_or(0, |m| m.len() + 1);
        let mut joined = String::with_capacity(size);
        let mut first = true;
        let mut separate = |joined: &mut String| {
            if !std::mem::take(&mut first) {
                joined.push('\n');
            }
        };
        if let Some(marker) = &marker {
            separate(&mut joined);
            joined.push_str(marker);
        }
        for (run, text) in runs.iter().zip(texts) {
            let prefix = prefix(run);
            if prefix.is_empty() {
                separate(&mut joined);
                joined.push_str(text);
                continue;
            }
            for line in run.lines() {
                separate(&mut joined);
                joined.push_str(prefix);
                joined.push_str(line);
            }
        }
        TextBatch::Joined(joined)
    }

    /// The value JS receives: the joined string, or the array of lines.
    pub(crate) fn into_js(self) -> napi::Either<String, Vec<String>> {
        match self {
            TextBatch::Joined(text) => napi::Either::A(text),
            TextBatch::Lines(lines) => napi::Either::B(lines),
        }
    }
}

/// One server's batch for the `setOnServerLog` listener: its lines as stored and, for each run
/// of them, three numbers: the first line's id, the run's line count, and 1 for stderr (0 for
/// stdout). Ids are below 2^53, so JS numbers hold them exactly.
pub(crate) struct ServerLogBatch {
    /// The server the lines belong to.
    pub(crate) server_id: String,
    /// The lines.
    pub(crate) text: TextBatch,
    /// `[firstId, count, isStderr]` per run, flattened.
    pub(crate) runs: Vec<f64>,
}

impl ServerLogBatch {
    /// `batch` of server `server_id` (lines it missed are not reported).
    pub(crate) fn new(server_id: &str, batch: &LogBatch) -> Self {
        let runs = batch
            .runs()
            .iter()
            .flat_map(|run| {
                [
                    run.first_id() as f64,
                    run.len() as f64,
                    f64::from(u8::from(run.stream() == Stream::Stderr)),
                ]
            })
            .collect();
        ServerLogBatch {
            server_id: server_id.to_owned(),
            text: TextBatch::raw(batch),
            runs,
        }
    }
}

/// Hands values of type `T` to a callback on the JS thread.
pub(crate) struct BatchSink<T: 'static> {
    tsfn: ThreadsafeFunction<T, (), (), napi::Status, false, true>,
}

impl<T: 'static + Send> BatchSink<T> {
    /// Hands `value` to the sink's callback and waits until JS has run it; false when Node's
    /// environment is gone.
    pub(crate) async fn send(&self, value: T) -> bool {
        self.tsfn.call_async(value).await.is_ok()
    }
}

/// A sink whose `deliver` runs on the JS thread with each value.
pub(crate) fn batch_sink<T, F>(env: &Env, mut deliver: F) -> Result<Arc<BatchSink<T>>>
where
    T: 'static + Send,
    F: FnMut(&Env, T) + 'static,
{
    let target = env.create_function_from_closure::<(), (), _>("deliverLogBatch", |_| Ok(()))?;
    let tsfn = target
        .build_threadsafe_function::<T>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            deliver(&ctx.env, ctx.value);
            Ok(())
        })?;
    Ok(Arc::new(BatchSink { tsfn }))
}

/// What the server-log listener hands [`FAN_OUT`]'s `deliver`: the lines, their runs, the server.
type ServerLogArgs = FnArgs<(Either<String, Vec<String>>, Vec<f64>, String)>;

/// The JS side of the server-log listener: `deliver(batch, runs, serverId)` of [`FAN_OUT`].
type ServerLogDeliver = FunctionRef<ServerLogArgs, ()>;

/// The `setOnServerLog` callback as the warnings about its exceptions name it.
const SERVER_LOG_CALLBACK: &str = "the server log listener";

/// The server-log listener's sink: hands each server's batch to a JS callback
/// `(serverId, line, stream, id)` on the JS thread.
pub(crate) struct JsServerLogSink {
    sink: Arc<BatchSink<ServerLogBatch>>,
}

impl JsServerLogSink {
    /// A sink calling `callback` for every line.
    pub(crate) fn new(env: &Env, callback: Unknown<'_>) -> Result<Self> {
        let fan_out = fan_out(env, callback, None, SERVER_LOG_CALLBACK, false)?;
        let deliver: Function<ServerLogArgs, ()> = fan_out.get_named_property("deliver")?;
        let deliver: ServerLogDeliver = deliver.create_ref()?;
        let sink = batch_sink(env, move |env, batch: ServerLogBatch| {
            let args = (batch.text.into_js(), batch.runs, batch.server_id);
            let delivered = deliver
                .borrow_back(env)
                .and_then(|deliver| deliver.call(FnArgs::from(args)));
            if let Err(error) = delivered {
                report_callback_error(SERVER_LOG_CALLBACK, &error);
            }
        })?;
        Ok(JsServerLogSink { sink })
    }
}

impl ServerLogSink for JsServerLogSink {
    fn deliver(&self, server_id: &str, batch: LogBatch) -> BoxFuture<'_, bool> {
        Box::pin(self.sink.send(ServerLogBatch::new(server_id, &batch)))
    }
}

/// Delivers `subscription`'s batches to `sink`, each wrapped by `wrap`. With `pause`, waits
/// that long after each batch (coalescing what arrives meanwhile). Ends when the subscription
/// closes (after delivering what was queued) or Node's environment goes away; awaiting the
/// returned handle waits for that.
pub(crate) fn pump<T, W>(
    sink: Arc<BatchSink<T>>,
    subscription: Subscription,
    pause: Option<Duration>,
    wrap: W,
) -> tokio::task::JoinHandle<()>
where
    T: 'static + Send,
    W: Fn(LogBatch) -> T + Send + 'static,
{
    napi::bindgen_prelude::spawn(async move {
        while let Some(batch) = subscription.next_batch(MAX_BATCH_LINES).await {
            if !sink.send(wrap(batch)).await {
                break;
            }
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

/// How [`deliver_lines`] hands lines to a line callback.
pub(crate) struct LineDelivery {
    /// The callback, as the warnings about what it throws name it.
    pub(crate) what: &'static str,
    /// Whether stderr lines get `[stderr] ` in front.
    pub(crate) stderr_prefix: bool,
    /// Whether lines of only white space are left out.
    pub(crate) skip_blank: bool,
    /// How long to wait after each batch (coalescing what arrives meanwhile).
    pub(crate) pause: Option<Duration>,
}

/// The JS side of one line subscription: `deliver(batch)` of [`FAN_OUT`].
type LineDeliver = FunctionRef<Either<String, Vec<String>>, ()>;

/// Delivers `subscription`'s lines to `callback` through [`FAN_OUT`]: many lines cross to the
/// JS thread at once (one threadsafe call per batch), preceded by a `[log] N lines skipped`
/// line where the subscriber fell behind. Returns the delivery's handle (see [`pump`]) and the
/// fan-out's `unsubscribe`, which stops delivery at once and calls `close`.
pub(crate) fn deliver_lines<'env>(
    env: &'env Env,
    subscription: Subscription,
    callback: &FunctionRef<String, UnknownReturnValue>,
    close: Option<Function<'env, (), ()>>,
    how: LineDelivery,
) -> Result<(tokio::task::JoinHandle<()>, Function<'env, (), ()>)> {
    let LineDelivery {
        what,
        stderr_prefix,
        skip_blank,
        pause,
    } = how;
    let callback = callback.borrow_back(env)?.to_unknown();
    let fan_out = fan_out(env, callback, close, what, skip_blank)?;
    let deliver: Function<Either<String, Vec<String>>, ()> =
        fan_out.get_named_property("deliver")?;
    let deliver: LineDeliver = deliver.create_ref()?;
    let unsubscribe: Function<'env, (), ()> = fan_out.get_named_property("unsubscribe")?;
    let delivering = subscription.closer();
    let sink = batch_sink(env, move |env, batch: TextBatch| {
        if delivering.is_unsubscribed() {
            return;
        }
        let delivered = deliver
            .borrow_back(env)
            .and_then(|deliver| deliver.call(batch.into_js()));
        if let Err(error) = delivered {
            report_callback_error(what, &error);
        }
    })?;
    let handle = pump(sink, subscription, pause, move |batch| {
        TextBatch::new(&batch, stderr_prefix)
    });
    Ok((handle, unsubscribe))
}

/// Starts delivering `subscription`'s batches to `deliver`, which runs on the JS thread; see
/// [`pump`] for when it ends.
pub(crate) fn spawn_delivery<F>(
    env: &Env,
    subscription: Subscription,
    pause: Option<Duration>,
    deliver: F,
) -> Result<tokio::task::JoinHandle<()>>
where
    F: FnMut(&Env, LogBatch) + 'static,
{
    let sink = batch_sink(env, deliver)?;
    Ok(pump(sink, subscription, pause, |batch| batch))
}

/// A JS function `(error) => void` that reports what a callback of `what` threw, for the JS
/// side of a batched delivery to call.
pub(crate) fn js_reporter<'env>(
    env: &'env Env,
    what: &'static str,
) -> Result<Function<'env, Unknown<'env>, ()>> {
    env.create_function_from_closure::<Unknown, (), _>("reportLogError", move |ctx| {
        let error: Unknown = ctx.first_arg()?;
        let reason = error.coerce_to_string()?.into_utf8()?.into_owned()?;
        report_callback_error(what, &napi::Error::from_reason(reason));
        Ok(())
    })
}

/// Reports an exception thrown by a user's log callback; the subscription stays.
pub(crate) fn report_callback_error(what: &str, error: &napi::Error) {
    tracing::warn!("{what} threw: {}", error.reason);
}
