//! Persisting server and build logs for MastraAdmin's observability ingestion.
//!
//! `setObservabilityStorage(storage)` hands the runner a file storage ([`FileStorage`], a JS
//! `FileStorageProvider` in the binding). From then on a [`Persister`] — a log observer of the
//! runner — turns every line of every server and build into one JSONL `log` event
//! ([`event`]), batches them per project, and writes each batch to a new file
//! `observability/log/{projectId}/{YYYYMMDDTHHMMSSZ}_{12 hex}.jsonl`, the layout of
//! `@mastra/observability-writer`.
//!
//! A storage that fails or hangs never slows a server or its log: lines are copied out of the
//! log's subscription into bounded pending batches, a failed write is retried a few times with
//! backoff and then counted as dropped, and lines beyond the pending bound are dropped and
//! counted too ([`ObservabilityStats`]).
//!
//! A later `setObservabilityStorage` replaces the persister ([`PersisterSlot`]): the replaced
//! one writes what it holds to its own storage, within `providerTimeoutMs`, and counts the rest
//! as dropped; the counts cover every storage set so far.

pub mod event;
mod persister;
mod slot;

use std::ops::Add;
use std::time::Duration;

pub use persister::Persister;
pub use slot::PersisterSlot;

use crate::sync::BoxFuture;

/// A place files are written to: MastraAdmin's `FileStorageProvider` (only `write` is used).
pub trait FileStorage: Send + Sync {
    /// Writes `content` to the file at `path` (relative to the storage's root), creating
    /// directories as needed. The error says why it failed.
    fn write<'a>(
        &'a self,
        path: &'a str,
        content: String,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// When batches are written (the `observability` field of the runner config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservabilitySettings {
    /// A file is written once this many events of a project are pending.
    pub batch_size: usize,
    /// … or this long after the first of them arrived.
    pub flush_interval: Duration,
    /// … or once they reach this many bytes of JSONL.
    pub max_file_size: usize,
}

impl Default for ObservabilitySettings {
    /// 100 events, 5 s, 10 MiB.
    fn default() -> Self {
        ObservabilitySettings {
            batch_size: 100,
            flush_interval: Duration::from_millis(5_000),
            max_file_size: 10 * 1024 * 1024,
        }
    }
}

/// Event counts of a [`Persister`], as `getStats().observability` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObservabilityStats {
    /// Events in files the storage accepted.
    pub written: u64,
    /// Events waiting to be written (batching, queued, or being written or retried).
    pub pending: u64,
    /// Events given up on: their write failed every attempt, or they arrived while the
    /// pending bound was full, or the log's subscription skipped them.
    pub dropped: u64,
}

impl Add for ObservabilityStats {
    type Output = ObservabilityStats;

    /// The counts of two persisters together.
    fn add(self, other: ObservabilityStats) -> ObservabilityStats {
        ObservabilityStats {
            written: self.written + other.written,
            pending: self.pending + other.pending,
            dropped: self.dropped + other.dropped,
        }
    }
}
