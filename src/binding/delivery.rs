//! Moving log batches from core subscriptions to JS callbacks.
//!
//! A [`BatchSink`] is a weak threadsafe function whose callback runs on the JS thread with one
//! batch at a time (so a subscription never keeps Node's event loop alive). [`pump`] starts a
//! tokio task that waits for the next batch of a subscription, hands it to a sink, and waits
//! until JS has run it before taking the next. The producer never waits for JS: while JS is
//! busy, lines queue in the subscription, whose bound turns a far-behind reader into a
//! "lines skipped" marker instead of unbounded memory.

use std::sync::Arc;
use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::{Function, JsValue, Result, Unknown};
use napi::threadsafe_function::ThreadsafeFunction;

use crate::logs::{LogBatch, LogRun, Stream, Subscription};

/// The most entries handed to JS in one crossing: as many as a subscriber's queue holds by
/// default (`maxLogLines`), so that one crossing can empty it.
const MAX_BATCH: usize = 16 * 1024;

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
        while let Some(batch) = subscription.next_batch(MAX_BATCH).await {
            if !sink.send(wrap(batch)).await {
                break;
            }
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    })
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
