//! The bounded store's lines and its queries. Chunks live in a ring bounded both by line count
//! and by bytes; the oldest lines go first, and a chunk's memory is freed with its last line,
//! so at most one chunk outlives the bounds. Every line gets an id one higher than the previous
//! one (ids are never reused, so they serve as pagination cursors) and a millisecond timestamp
//! that never goes backwards (a chunk's lines share one), so both are sorted and every query
//! finds its start by binary search: a query costs what it returns.

use std::collections::VecDeque;
use std::sync::Arc;

use super::chunk::{CHUNK_BYTES, Chunk, ChunkBuilder};
use super::entry::LogEntry;

/// A page of entries, oldest first, as `getPaginated` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The entries of the page, oldest first.
    pub entries: Vec<LogEntry>,
    /// Whether older entries than the first of this page are still stored.
    pub has_more: bool,
}

/// The stored chunks, oldest first, with the count and charged bytes of the lines still kept.
#[derive(Debug)]
pub(super) struct Ring {
    chunks: VecDeque<Arc<Chunk>>,
    /// Lines of the front chunk that were evicted already.
    front_evicted: usize,
    /// Lines stored.
    lines: usize,
    bytes: usize,
    next_id: u64,
    last_timestamp_ms: u64,
}

impl Ring {
    /// An empty ring whose first line gets id 1.
    pub(super) fn new() -> Self {
        Ring {
            chunks: VecDeque::new(),
            front_evicted: 0,
            lines: 0,
            bytes: 0,
            next_id: 1,
            last_timestamp_ms: 0,
        }
    }

    /// Lines stored.
    pub(super) fn lines(&self) -> usize {
        self.lines
    }

    /// The bytes the stored lines are charged (their text plus a fixed overhead each).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The id of the newest line ever stored (0 before the first).
    pub(super) fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The timestamp of lines stored at `now_ms`: never smaller than the previous one.
    pub(super) fn stamp(&mut self, now_ms: u64) -> u64 {
        let timestamp_ms = now_ms.max(self.last_timestamp_ms);
        self.last_timestamp_ms = timestamp_ms;
        timestamp_ms
    }

    /// Chunks stored.
    pub(super) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The chunks from the `index`th stored on, oldest first.
    pub(super) fn chunks_from(&self, index: usize) -> impl Iterator<Item = &Arc<Chunk>> + Clone {
        self.chunks.range(index..)
    }

    /// The id of the oldest stored line (the next id when none is).
    fn first_id(&self) -> u64 {
        self.chunks
            .front()
            .map_or(self.next_id, |c| c.first_id + self.front_evicted as u64)
    }

    /// Seals `builder`'s chunk into the ring first if `text` may not join it.
    #[inline]
    pub(super) fn make_room(&mut self, builder: &mut ChunkBuilder, text: &str) {
        if !builder.has_room(text) {
            self.push(builder, CHUNK_BYTES);
        }
    }

    /// Seals `builder`'s lines into a chunk at the end of the ring, leaving the builder room
    /// for `next_capacity` bytes.
    pub(super) fn push(&mut self, builder: &mut ChunkBuilder, next_capacity: usize) {
        self.lines += builder.lines();
        self.bytes += builder.cost();
        let chunk = builder.seal(self.next_id, next_capacity);
        self.next_id = chunk.end_id();
        self.chunks.push_back(Arc::new(chunk));
    }

    /// Drops the oldest lines until at most `max_lines` are stored and they are charged at
    /// most `max_bytes` (but always keeps the newest line).
    pub(super) fn fit(&mut self, max_lines: usize, max_bytes: usize) {
        self.evict_lines(self.lines.saturating_sub(max_lines));
        self.evict_bytes(max_bytes, 1);
    }

    /// Drops the oldest `count` lines (all when fewer are stored).
    fn evict_lines(&mut self, mut count: usize) {
        while count > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let len = front.len();
            let take = count.min(len - self.front_evicted);
            self.bytes -= front.cost(self.front_evicted, self.front_evicted + take);
            self.lines -= take;
            self.front_evicted += take;
            count -= take;
            if self.front_evicted == len {
                self.chunks.pop_front();
                self.front_evicted = 0;
            }
        }
    }

    /// Drops the oldest lines until at most `max_bytes` are charged, keeping at least `keep`.
    fn evict_bytes(&mut self, max_bytes: usize, keep: usize) {
        while self.bytes > max_bytes && self.lines > keep {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let mut excess = self.bytes - max_bytes;
            let mut count = 0;
            let mut index = self.front_evicted;
            while excess > 0 && index < front.len() && count < self.lines - keep {
                excess = excess.saturating_sub(front.cost(index, index + 1));
                index += 1;
                count += 1;
            }
            if count == 0 {
                break;
            }
            self.evict_lines(count);
        }
    }

    /// Drops the oldest lines until at most `max_bytes` are charged, and gives the freed
    /// memory back to the allocator; returns the bytes freed.
    pub(super) fn shrink_to(&mut self, max_bytes: usize) -> usize {
        let before = self.bytes;
        self.evict_bytes(max_bytes, 0);
        self.chunks.shrink_to_fit();
        before - self.bytes
    }

    /// Removes every line (ids keep increasing afterwards) and gives their memory back.
    pub(super) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.front_evicted = 0;
        self.lines = 0;
        self.bytes = 0;
    }

    /// The stored entries with ids in `from..to`, oldest first.
    fn entries(&self, from: u64, to: u64) -> Vec<LogEntry> {
        let from = from.max(self.first_id());
        let to = to.min(self.next_id);
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        let first = self.chunks.partition_point(|c| c.end_id() <= from);
        for chunk in self.chunks.range(first..) {
            if chunk.first_id >= to {
                break;
            }
            let start = from.max(chunk.first_id) - chunk.first_id;
            let end = to.min(chunk.end_id()) - chunk.first_id;
            // Below the chunk's line count, a u32.
            out.extend((start..end).map(|index| LogEntry::at(chunk, index as u32)));
        }
        out
    }

    /// Every stored entry, oldest first.
    pub(super) fn all(&self) -> Vec<LogEntry> {
        self.entries(0, u64::MAX)
    }

    /// The newest `n` entries, oldest first.
    pub(super) fn tail(&self, n: usize) -> Vec<LogEntry> {
        self.entries(self.next_id.saturating_sub(n as u64), u64::MAX)
    }

    /// Entries stamped at or after `since_ms`, oldest first.
    pub(super) fn since(&self, since_ms: u64) -> Vec<LogEntry> {
        let first = self.chunks.partition_point(|c| c.timestamp_ms < since_ms);
        match self.chunks.get(first) {
            Some(chunk) => self.entries(chunk.first_id, u64::MAX),
            None => Vec::new(),
        }
    }

    /// Up to `limit` entries older than the entry `before` (newest when `None`), oldest first.
    pub(super) fn page(&self, limit: usize, before: Option<u64>) -> LogPage {
        let first = self.first_id();
        let end = before.map_or(self.next_id, |id| id.clamp(first, self.next_id));
        let start = end.saturating_sub(limit as u64).max(first);
        LogPage {
            entries: self.entries(start, end),
            has_more: start > first,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::logs::chunk::ENTRY_OVERHEAD_BYTES;
    use crate::logs::testing::{charged, lines, texts};
    use crate::logs::{LogLimits, LogStore, Stream};

    #[test]
    fn keeps_the_newest_lines_within_the_line_bound() {
        let store = LogStore::new(LogLimits::with_lines(3));
        store.append_lines(Stream::Stdout, lines(5));
        assert_eq!(texts(&store.all()), vec!["line 2", "line 3", "line 4"]);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn keeps_within_the_byte_bound() {
        let limits = LogLimits {
            max_lines: 1000,
            max_bytes: 10 * (ENTRY_OVERHEAD_BYTES + 10),
            max_line_bytes: 1024,
        };
        let store = LogStore::new(limits);
        store.append_lines(Stream::Stdout, (0..100).map(|i| format!("{i:010}")));
        assert_eq!(store.len(), 10);
        assert_eq!(store.all()[0].line(), "0000000090");
    }

    #[test]
    fn a_single_line_bigger_than_the_byte_budget_is_still_kept() {
        let limits = LogLimits {
            max_lines: 10,
            max_bytes: 8,
            max_line_bytes: 1024,
        };
        let store = LogStore::new(limits);
        store.append_lines(Stream::Stdout, vec!["a long line".to_owned()]);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn ids_increase_by_one_and_survive_eviction_and_clear() {
        let store = LogStore::new(LogLimits::with_lines(2));
        assert_eq!(store.append_lines(Stream::Stdout, lines(3)), Some(3));
        let ids: Vec<u64> = store.all().iter().map(|e| e.id()).collect();
        assert_eq!(ids, vec![2, 3]);
        store.clear();
        assert!(store.is_empty());
        assert_eq!(store.append_lines(Stream::Stderr, lines(1)), Some(4));
        assert_eq!(
            store.append_lines(Stream::Stderr, Vec::<String>::new()),
            None
        );
    }

    #[test]
    fn tail_and_all() {
        let store = LogStore::new(LogLimits::with_lines(100));
        store.append_lines(Stream::Stdout, lines(5));
        assert_eq!(texts(&store.tail(2)), vec!["line 3", "line 4"]);
        assert_eq!(store.tail(50).len(), 5);
        assert!(store.tail(0).is_empty());
    }

    #[test]
    fn since_finds_entries_at_or_after_a_time() {
        let store = LogStore::new(LogLimits::with_lines(100));
        store.append_lines(Stream::Stdout, lines(3));
        let stamp = store.all()[0].timestamp_ms();
        assert_eq!(store.since(stamp).len(), 3);
        assert!(store.since(stamp + 60_000).is_empty());
        assert_eq!(store.since(0).len(), 3);
    }

    #[test]
    fn pages_walk_backwards_from_the_newest() {
        let store = LogStore::new(LogLimits::with_lines(100));
        store.append_lines(Stream::Stdout, lines(5)); // ids 1..=5
        let newest = store.page(2, None);
        assert_eq!(texts(&newest.entries), vec!["line 3", "line 4"]);
        assert!(newest.has_more);
        let older = store.page(2, Some(newest.entries[0].id()));
        assert_eq!(texts(&older.entries), vec!["line 1", "line 2"]);
        assert!(older.has_more);
        let oldest = store.page(2, Some(older.entries[0].id()));
        assert_eq!(texts(&oldest.entries), vec!["line 0"]);
        assert!(!oldest.has_more);
        let past_the_start = store.page(2, Some(1));
        assert!(past_the_start.entries.is_empty());
        assert!(!past_the_start.has_more);
        let exact = store.page(5, None);
        assert_eq!(exact.entries.len(), 5);
        assert!(!exact.has_more);
        assert!(store.page(0, None).entries.is_empty());
    }

    #[test]
    fn a_cursor_that_was_evicted_gives_an_empty_page() {
        let store = LogStore::new(LogLimits::with_lines(2));
        store.append_lines(Stream::Stdout, lines(5)); // keeps ids 4, 5
        let page = store.page(10, Some(2));
        assert!(page.entries.is_empty());
        assert!(!page.has_more);
        let beyond = store.page(10, Some(99));
        assert_eq!(beyond.entries.len(), 2);
    }

    #[test]
    fn evicting_part_of_a_chunk_keeps_the_rest_readable_and_accounted() {
        let store = LogStore::new(LogLimits::with_lines(5));
        store.append_lines(Stream::Stdout, lines(3));
        store.append_lines(Stream::Stderr, lines(4));
        assert_eq!(
            texts(&store.all()),
            vec!["line 2", "line 0", "line 1", "line 2", "line 3"]
        );
        assert_eq!(store.all()[0].stream(), Stream::Stdout);
        assert_eq!(store.all()[0].id(), 3);
        assert_eq!(store.bytes(), charged(&store.all()));
        store.append_lines(Stream::Stdout, lines(1));
        assert_eq!(store.chunk_count(), 2, "the emptied chunk is freed");
        assert_eq!(store.bytes(), charged(&store.all()));
        let freed = store.shrink_to(2 * (ENTRY_OVERHEAD_BYTES + 6));
        assert!(freed > 0);
        assert_eq!(texts(&store.all()), vec!["line 3", "line 0"]);
        assert_eq!(store.bytes(), charged(&store.all()));
    }
}
