//! Logs: child output split into lines ([`framer`]) and kept in bounded, queryable stores with
//! live subscribers ([`store`]).

pub mod framer;
pub mod observer;
pub mod query;
pub mod store;

pub use framer::LineFramer;
pub use observer::{LogObserver, LogOwner};
pub use store::{
    LogBatch, LogEntry, LogLimits, LogPage, LogRun, LogStore, Stream, Subscription, join_text,
};

/// Prefix of the runner's own lines in a server's or a build's log.
pub const RUNNER_PREFIX: &str = "[runner] ";
