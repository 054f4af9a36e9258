//! The log utilities of SPEC §2 as JS sees them: `RingBuffer`, `LogCollectorImpl`, and the
//! `create*LogStream` helpers. Storage, framing and subscriptions live in the core's `logs`.
//!
//! Files: `ring.rs` (`RingBuffer`), `collector.rs` (`LogCollectorImpl`), `streams.rs`
//! (`formatLogLine`, `create*LogStream`); this one delivers a store's lines to JS callbacks and
//! pages through a store, for the runner's methods too.

mod collector;
mod ring;
mod streams;

use crate::binding::error::{Result, to_js_error};

use napi::bindgen_prelude::{Env, Function, Unknown};
use serde_json::{Value, json};

use crate::binding::args::{self, LineCallback};
use crate::binding::delivery::{report_callback_error, spawn_delivery};
use crate::logs::store::SubscriptionCloser;
use crate::logs::{LogBatch, LogStore};

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
            to_js_error(crate::error::Error::invalid(
                "before",
                format!("expected a cursor from a previous page (got '{cursor}')"),
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
