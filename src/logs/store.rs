//! [`LogStore`]: a bounded, queryable log of one server (or build), with live subscribers.
//! It frames and packs appended lines into chunks ([`super::chunk`]), keeps them in a bounded
//! ring that answers queries ([`super::ring`]) and hands each new chunk to its subscribers
//! ([`super::subscription`]), all under one lock.

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};

use super::chunk::{CHUNK_BYTES, ChunkBuilder, Stream};
use super::entry::LogEntry;
use super::framer::{DEFAULT_MAX_LINE_BYTES, LineFramer};
use super::ring::{LogPage, Ring};
use super::subscription::{Subscribers, Subscription};
use super::time::now_ms;

/// How much a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Entries kept (the newest win).
    pub max_lines: usize,
    /// Bytes of text kept, counting a small overhead per entry.
    pub max_bytes: usize,
    /// Longest line kept; longer ones are cut with a marker.
    pub max_line_bytes: usize,
}

impl LogLimits {
    /// The default byte budget of one store: 32 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;

    /// Limits with `max_lines` entries and the default byte and line caps.
    pub fn with_lines(max_lines: usize) -> Self {
        LogLimits {
            max_lines: max_lines.max(1),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// What the store's lock guards. Subscribers are handed new chunks under the same lock as the
/// ring takes them, so every subscriber receives lines in the order of their ids.
#[derive(Debug)]
struct Shared {
    ring: Ring,
    subscribers: Subscribers,
}

/// A bounded log with live subscribers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LogStore {
    limits: LogLimits,
    framer_cap: LineFramer,
    shared: Mutex<Shared>,
}

impl LogStore {
    /// An empty store with the given limits.
    pub fn new(limits: LogLimits) -> Self {
        LogStore {
            limits,
            framer_cap: LineFramer::new(limits.max_line_bytes),
            shared: Mutex::new(Shared {
                ring: Ring::new(),
                subscribers: Subscribers::default(),
            }),
        }
    }

    /// The store's limits.
    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the ring inconsistent in a way that
        // matters to readers (every mutation is a push or pop), so a poisoned lock is reused.
        crate::sync::lock(&self.shared)
    }

    /// Appends lines that are already framed, all with the same stream tag. Lines over the
    /// length cap are cut with a marker. Returns the id of the last entry.
    pub fn append_lines<I, S>(&self, stream: Stream, lines: I) -> Option<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let max_line_bytes = self.limits.max_line_bytes;
        self.append_with(stream, 0, |builder, ring| {
            for line in lines {
                let line = line.as_ref();
                let line = if line.len() > max_line_bytes {
                    Cow::Owned(self.framer_cap.cap_line(line))
                } else {
                    Cow::Borrowed(line)
                };
                ring.make_room(builder, &line);
                builder.push_line(&line);
            }
        })
    }

    /// Frames one chunk of bytes of `stream` (read from a pipe or a file) with `framer`, the
    /// stream's own, and appends the lines it completes, all under one lock, each copied once.
    /// Returns the id of the last entry.
    pub fn append_chunk(
        &self,
        stream: Stream,
        framer: &mut LineFramer,
        bytes: &[u8],
    ) -> Option<u64> {
        let capacity = bytes.len().min(CHUNK_BYTES);
        self.append_with(stream, capacity, |builder, ring| {
            // Pieces of half a chunk keep each block the framer lends that small, and let a
            // chunk take a piece's first line and its block together.
            for piece in bytes.chunks(CHUNK_BYTES / 2) {
                framer.push_lines(piece, |block| {
                    ring.make_room(builder, block);
                    builder.push_block(block);
                });
            }
        })
    }

    /// End of a stream: appends `framer`'s unfinished last line, if any.
    pub fn finish_chunks(&self, stream: Stream, framer: &mut LineFramer) -> Option<u64> {
        self.append_with(stream, 0, |builder, ring| {
            framer.finish(|line| {
                ring.make_room(builder, line);
                builder.push_block(line);
            });
        })
    }

    /// Takes the lock once, lets `feed` add lines to a chunk builder (with room for `capacity`
    /// bytes; `feed` seals full chunks into the ring), stores the rest, hands the new chunks
    /// to subscribers and evicts the oldest lines.
    fn append_with(
        &self,
        stream: Stream,
        capacity: usize,
        feed: impl FnOnce(&mut ChunkBuilder, &mut Ring),
    ) -> Option<u64> {
        let now = now_ms();
        let mut guard = self.lock();
        let Shared { ring, subscribers } = &mut *guard;
        let timestamp_ms = ring.stamp(now);
        let first_new = ring.chunk_count();
        let mut builder = ChunkBuilder::new(stream, timestamp_ms, capacity);
        feed(&mut builder, ring);
        if builder.lines() > 0 {
            ring.push(&mut builder, 0);
        }
        if ring.chunk_count() == first_new {
            return None;
        }
        subscribers.offer(ring.chunks_from(first_new));
        ring.fit(self.limits.max_lines, self.limits.max_bytes);
        Some(ring.last_id())
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.lock().ring.lines()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored entry, oldest first.
    pub fn all(&self) -> Vec<LogEntry> {
        self.lock().ring.all()
    }

    /// The newest `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogEntry> {
        self.lock().ring.tail(n)
    }

    /// Entries stamped at or after `since_ms` (milliseconds since the epoch), oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<LogEntry> {
        self.lock().ring.since(since_ms)
    }

    /// Up to `limit` entries older than the entry `before` (newest when `None`), oldest first.
    pub fn page(&self, limit: usize, before: Option<u64>) -> LogPage {
        self.lock().ring.page(limit, before)
    }

    /// Removes every entry (ids keep increasing afterwards) and gives their memory back.
    pub fn clear(&self) {
        self.lock().ring.clear();
    }

    /// The bytes the entries are charged (their text plus a fixed overhead each).
    pub fn bytes(&self) -> usize {
        self.lock().ring.bytes()
    }

    /// Drops the oldest entries until at most `max_bytes` are charged, and gives the freed
    /// memory back to the allocator; returns the bytes freed. The newest lines stay readable.
    pub fn shrink_to(&self, max_bytes: usize) -> usize {
        self.lock().ring.shrink_to(max_bytes)
    }

    /// A live subscription to entries appended from now on. It holds at most `capacity`
    /// undelivered entries, charged at most the store's byte budget (but always the newest
    /// entry); older ones are dropped and counted as missed.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let subscription = Subscription::new(capacity, self.limits.max_bytes);
        self.lock().subscribers.add(&subscription);
        subscription
    }

    /// Ends every subscription: readers get what is queued, then `None`.
    pub fn close_subscriptions(&self) {
        let subscribers = std::mem::take(&mut self.lock().subscribers);
        subscribers.close_all();
    }

    /// Live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.count()
    }

    /// Chunks stored (for tests of how lines are packed).
    #[cfg(test)]
    pub(super) fn chunk_count(&self) -> usize {
        self.lock().ring.chunk_count()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close_subscriptions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_capped() {
        let limits = LogLimits {
            max_line_bytes: 8,
            ..LogLimits::with_lines(10)
        };
        let store = LogStore::new(limits);
        store.append_lines(Stream::Stdout, vec!["0123456789".to_owned()]);
        assert!(
            store.all()[0]
                .line()
                .starts_with("01234567 … [line truncated")
        );
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        for chunk in 0..50 {
            store.append_lines(Stream::Stdout, vec![format!("{chunk}")]);
        }
        let stamps: Vec<u64> = store.all().iter().map(|e| e.timestamp_ms()).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    }
}
