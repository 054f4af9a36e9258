//! Moving log batches from a core subscription to JS callbacks.
//!
//! A tokio task waits for the next batch and hands it to the JS thread through a weak
//! threadsafe function (so a subscription never keeps Node's event loop alive), then waits until
//! JS has run it before taking the next batch. The producer never waits for JS: while JS is
//! busy, lines queue in the subscription, whose bound turns a far-behind reader into a
//! "lines skipped" marker instead of unbounded memory.

use std::time::Duration;

use napi::Env;
use napi::bindgen_prelude::Result;

use crate::logs::{LogBatch, Subscription};

/// The most entries handed to JS in one crossing.
const MAX_BATCH: usize = 4096;

/// Starts delivering `subscription`'s batches to `deliver`, which runs on the JS thread.
/// With `pause`, waits that long after each delivered batch (coalescing what arrives meanwhile).
/// The task ends when the subscription closes (after delivering what was queued) or Node's
/// environment goes away; awaiting the returned handle waits for that.
pub(crate) fn spawn_delivery<F>(
    env: &Env,
    subscription: Subscription,
    pause: Option<Duration>,
    mut deliver: F,
) -> Result<tokio::task::JoinHandle<()>>
where
    F: FnMut(&Env, LogBatch) + 'static,
{
    let target = env.create_function_from_closure::<(), (), _>("deliverLogBatch", |_| Ok(()))?;
    let tsfn = target
        .build_threadsafe_function::<LogBatch>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            deliver(&ctx.env, ctx.value);
            Ok(())
        })?;
    Ok(napi::bindgen_prelude::spawn(async move {
        while let Some(batch) = subscription.next_batch(MAX_BATCH).await {
            if tsfn.call_async(batch).await.is_err() {
                break;
            }
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    }))
}

/// Reports an exception thrown by a user's log callback; the subscription stays.
pub(crate) fn report_callback_error(what: &str, error: &napi::Error) {
    tracing::warn!("{what} threw: {}", error.reason);
}
