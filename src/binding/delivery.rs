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
use napi::bindgen_prelude::Result;
use napi::threadsafe_function::ThreadsafeFunction;

use crate::logs::{LogBatch, Stream, Subscription};

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
    /// preceded by a `[log] N lines skipped` line when entries were missed.
    pub(crate) fn new(batch: &LogBatch, stderr_prefix: bool) -> Self {
        let marker = (batch.missed > 0).then(|| LogBatch::missed_marker(batch.missed));
        let prefix = |stream: Stream| match stream {
            Stream::Stderr if stderr_prefix => "[stderr] ",
            _ => "",
        };
        let size = batch
            .entries
            .iter()
            .map(|e| e.line.len() + 1 + prefix(e.stream).len())
            .sum::<usize>()
            + marker.as_ref().map_or(0, |m| m.len() + 1);
        let mut joined = String::with_capacity(size);
        if let Some(marker) = &marker {
            joined.push_str(marker);
        }
        for (index, entry) in batch.entries.iter().enumerate() {
            if entry.line.contains('\n') {
                return TextBatch::Lines(
                    marker
                        .into_iter()
                        .chain(
                            batch
                                .entries
                                .iter()
                                .map(|e| format!("{}{}", prefix(e.stream), e.line)),
                        )
                        .collect(),
                );
            }
            if index > 0 || marker.is_some() {
                joined.push('\n');
            }
            joined.push_str(prefix(entry.stream));
            joined.push_str(&entry.line);
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

/// Reports an exception thrown by a user's log callback; the subscription stays.
pub(crate) fn report_callback_error(what: &str, error: &napi::Error) {
    tracing::warn!("{what} threw: {}", error.reason);
}
