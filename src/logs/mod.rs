//! Logs: child output split into lines and kept in bounded, queryable stores with live
//! subscribers. One concern per file:
//!
//! - [`framer`]: bytes of a pipe into lines, long lines cut with a marker;
//! - `chunk`: how the lines of one append are packed together (one buffer, one offset per line);
//! - `entry`: the handles handed out on those lines ([`LogEntry`], [`LogRun`]) and their text
//!   form ([`join_text`]);
//! - `ring`: the bounded chunks, eviction and the queries ([`LogPage`]);
//! - `subscription`: live subscribers and their bounded queues ([`Subscription`], [`LogBatch`]);
//! - `store`: [`LogStore`], which ties them together under one lock ([`LogLimits`]);
//! - `time`: timestamps and their ISO 8601 form ([`iso8601_utc`]);
//! - [`observer`]: who is told when a log opens and closes;
//! - `line_format`: the `[ISO time] prefix line` form of build-log streams ([`LineFormat`]);
//! - [`query`]: what a caller asks of a log (`since` or `tail`, a page) as one value.
//!
//! Appending is on the hot path of log ingestion; the small helpers it calls across these files
//! are `#[inline]`, since daily release builds have several codegen units and no LTO.

mod chunk;
mod entry;
pub mod framer;
mod line_format;
pub mod observer;
pub mod query;
mod ring;
mod store;
mod subscription;
#[cfg(test)]
mod testing;
mod time;

pub use chunk::Stream;
pub use entry::{LogEntry, LogRun, join_text};
pub use framer::LineFramer;
pub use line_format::LineFormat;
pub use observer::{LogObserver, LogOwner};
pub use ring::LogPage;
pub use store::{LogLimits, LogStore};
pub use subscription::{LogBatch, Subscription, SubscriptionCloser};
pub use time::{iso8601_utc, now_ms};

/// Prefix of the runner's own lines in a server's or a build's log.
pub const RUNNER_PREFIX: &str = "[runner] ";
