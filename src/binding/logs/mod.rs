//! The log utilities of SPEC §2 as JS sees them: `RingBuffer`, `LogCollectorImpl`, and the
//! `create*LogStream` helpers. Storage, framing and subscriptions live in the core's `logs`.
//!
//! Files: `ring.rs` (`RingBuffer`), `collector.rs` (`LogCollectorImpl`), `streams.rs`
//! (`formatLogLine`, `create*LogStream`); this one delivers a store's lines to JS callbacks and
//! pages through a store, for the runner's methods too.

mod collector;
mod ring;
mod streams;

use napi::bindgen_prelude::{Env, Function, Unknown};

use crate::binding::convert::{LineCallback, read};
use crate::binding::delivery::{LineDelivery, deliver_lines};
use crate::binding::entities::PaginatedLogsResult;
use crate::binding::error::Result;
use crate::logs::LogStore;
use crate::logs::SubscriptionCloser;
use crate::logs::query::PageQuery;

/// A paginated log query read from `limit` and `before` arguments (the core's [`PageQuery`]).
pub struct PageRequest(PageQuery);

impl PageRequest {
    /// Reads `limit` (an integer from 1) and `before` (a cursor of an earlier page).
    pub(crate) fn read(limit: Option<&Unknown<'_>>, before: Option<&Unknown<'_>>) -> Result<Self> {
        let limit = read::optional_integer(limit, "limit", 1, u64::from(u32::MAX))?;
        let before = read::optional_string(before, "before")?;
        PageRequest::new(limit, before.as_deref())
    }

    /// `limit` entries (default 100) older than the cursor `before` (text of an earlier page's
    /// cursor).
    pub(crate) fn new(limit: Option<u64>, before: Option<&str>) -> Result<Self> {
        let query = PageQuery::new(limit.map(|limit| limit as usize), before)?;
        Ok(PageRequest(query))
    }

    /// The page of `store`, in the shape of `PaginatedLogsResult`.
    pub(crate) fn page(&self, store: &LogStore) -> PaginatedLogsResult {
        PaginatedLogsResult::from(self.0.page(store))
    }
}

/// Subscribes `callback` to new lines of `store` in text form; returns the unsubscribe
/// function. Used by `LogCollectorImpl.stream` and the runner's `streamLogs`.
pub(crate) fn stream_text<'env>(
    env: &'env Env,
    store: &LogStore,
    callback: LineCallback,
) -> Result<Function<'env, (), ()>> {
    let (_, _, unsubscribe) = subscribe_text(env, store, callback, "a log stream callback", false)?;
    Ok(unsubscribe)
}

/// Hands every new line of `store` to `callback` in text form (stderr prefixed), in order,
/// with a `[log] N lines skipped` line where the subscriber fell behind; nothing more once
/// unsubscribed. Blank lines (package managers print some between steps) are left out, as a
/// build's `onLog` gets them. The handle ends when the subscription closes and its last line
/// was delivered.
pub(crate) fn deliver_text(
    env: &Env,
    store: &LogStore,
    callback: LineCallback,
    what: &'static str,
) -> Result<(SubscriptionCloser, tokio::task::JoinHandle<()>)> {
    let (closer, handle, _) = subscribe_text(env, store, callback, what, true)?;
    Ok((closer, handle))
}

/// The fewest undelivered lines a JS line subscriber may fall behind before it loses the
/// oldest: enough to ride out the JS thread being descheduled for a few tens of milliseconds
/// during a flood of ten million lines per second. A queued line costs four bytes beside the
/// text it shares with the store, and the queue is bounded by the store's byte budget too, so
/// a flood of long lines cannot make it pin more than that.
const MIN_QUEUE_LINES: usize = 256 * 1024;

/// [`deliver_text`], also returning the JS unsubscribe function.
fn subscribe_text<'env>(
    env: &'env Env,
    store: &LogStore,
    callback: LineCallback,
    what: &'static str,
    skip_blank: bool,
) -> Result<(
    SubscriptionCloser,
    tokio::task::JoinHandle<()>,
    Function<'env, (), ()>,
)> {
    let subscription = store.subscribe(store.limits().max_lines.max(MIN_QUEUE_LINES));
    let closer = subscription.closer();
    let closing = closer.clone();
    let close = env.create_function_from_closure::<(), (), _>("closeLogStream", move |_| {
        closing.close();
        Ok(())
    })?;
    let how = LineDelivery {
        what,
        stderr_prefix: true,
        skip_blank,
        pause: None,
    };
    let (handle, unsubscribe) = deliver_lines(env, subscription, &callback, Some(close), how)?;
    Ok((closer, handle, unsubscribe))
}
