//! Logs: child output split into lines ([`framer`]) and kept in bounded, queryable stores with
//! live subscribers ([`store`]).

pub mod framer;
pub mod store;

pub use framer::LineFramer;
pub use store::{
    LogBatch, LogEntry, LogLimits, LogPage, LogRun, LogStore, Stream, Subscription, join_text,
};
