//! A bounded, queryable log of one server (or build), with live subscribers.
//!
//! The lines of one append (one read of a pipe, or one call with caller text) are stored
//! together as a chunk: their text back to back with `\n` between, and the offset where each
//! ends. Storing a line therefore costs a copy of its bytes and four bytes of offset, not an
//! allocation; entries handed out are handles on their chunk (see [`LogEntry`]). Chunks live in
//! a ring bounded both by line count and by bytes; the oldest lines go first, and a chunk's
//! memory is freed with its last line, so at most one chunk outlives the bounds. Every line
//! gets an id one higher than the previous one (ids are never reused, so they serve as
//! pagination cursors) and a millisecond timestamp that never goes backwards (a chunk's lines
//! share one), so both are sorted and every query finds its start by binary search: a query
//! costs what it returns.
//!
//! Subscribers each own a bounded queue of runs (a chunk and a range of its lines). Appending
//! pushes one run per new chunk into those queues and wakes their readers; it never waits for a
//! reader and never copies a line. A reader that falls more than its queue's capacity behind
//! (in lines, or in bytes: the store's own byte budget) loses the oldest undelivered lines and
//! is told how many it missed.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::framer::LineFramer;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Bookkeeping bytes charged per line on top of its text, so that a flood of empty lines is
/// bounded by the byte budget too.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// The most text a chunk holds, unless one line alone is longer: the memory that the oldest,
/// partly evicted chunk keeps beyond the store's bounds stays small, and a chunk's offsets and
/// line numbers fit in a `u32` (a block of lines is never longer; see `append_chunk`).
const CHUNK_BYTES: usize = 64 * 1024;

/// The line length a chunk's offsets are first sized for.
const TYPICAL_LINE_BYTES: usize = 16;

/// Lines appended together, sharing one buffer, one timestamp and one stream.
#[derive(Debug)]
struct Chunk {
    /// The id of the first line; the others follow one by one.
    first_id: u64,
    timestamp_ms: u64,
    stream: Stream,
    /// The lines back to back, `\n` between them.
    text: Box<str>,
    /// Where each line but the last ends in `text` (the last ends with it).
    ends: Box<[u32]>,
    /// Whether some line holds a `\n` itself (caller text): then `text` does not split back
    /// into the lines at `\n`.
    inner_newline: bool,
}

impl Chunk {
    fn len(&self) -> usize {
        self.ends.len() + 1
    }

    fn end_id(&self) -> u64 {
        self.first_id + self.len() as u64
    }

    fn start(&self, index: usize) -> usize {
        match index {
            0 => 0,
            _ => self.ends[index - 1] as usize + 1,
        }
    }

    fn end(&self, index: usize) -> usize {
        self.ends
            .get(index)
            .map_or(self.text.len(), |&end| end as usize)
    }

    fn line(&self, index: usize) -> &str {
        &self.text[self.start(index)..self.end(index)]
    }

    /// The text of lines `start..end` (at least one), `\n` between them.
    fn joined(&self, start: usize, end: usize) -> &str {
        &self.text[self.start(start)..self.end(end - 1)]
    }

    /// The bytes lines `start..end` are charged: their text and the overhead of each.
    fn cost(&self, start: usize, end: usize) -> usize {
        if start >= end {
            return 0;
        }
        let count = end - start;
        self.joined(start, end).len() - (count - 1) + count * ENTRY_OVERHEAD_BYTES
    }
}

/// Collects the lines of one append into chunks.
#[derive(Debug)]
struct ChunkBuilder {
    stream: Stream,
    timestamp_ms: u64,
    text: String,
    ends: Vec<u32>,
    lines: usize,
    cost: usize,
    inner_newline: bool,
}

impl ChunkBuilder {
    /// A builder with room for `capacity` bytes of text.
    fn new(stream: Stream, timestamp_ms: u64, capacity: usize) -> Self {
        ChunkBuilder {
            stream,
            timestamp_ms,
            text: String::with_capacity(capacity),
            ends: Vec::with_capacity(capacity / TYPICAL_LINE_BYTES),
            lines: 0,
            cost: 0,
            inner_newline: false,
        }
    }

    /// Whether `text` (a line or a block of them) may join this chunk: it is empty, or stays
    /// within [`CHUNK_BYTES`] with it.
    fn has_room(&self, text: &str) -> bool {
        self.lines == 0 || self.text.len() + 1 + text.len() <= CHUNK_BYTES
    }

    /// Adds one line from a caller, which may hold a `\n`.
    fn push_line(&mut self, line: &str) {
        self.separate();
        self.text.push_str(line);
        self.lines += 1;
        self.cost += line.len() + ENTRY_OVERHEAD_BYTES;
        self.inner_newline |= memchr::memchr(b'\n', line.as_bytes()).is_some();
    }

    /// Adds a framer's block: one or more lines joined by `\n`, none holding one itself.
    fn push_block(&mut self, block: &str) {
        self.separate();
        let base = self.text.len();
        self.text.push_str(block);
        let before = self.ends.len();
        // Fits: with this block the chunk stays within CHUNK_BYTES (`has_room`), or the block
        // is its first, and no block is longer than that.
        self.ends
            .extend(memchr::memchr_iter(b'\n', block.as_bytes()).map(|at| (base + at) as u32));
        let lines = self.ends.len() - before + 1;
        self.lines += lines;
        self.cost += block.len() - (lines - 1) + lines * ENTRY_OVERHEAD_BYTES;
    }

    /// Ends the previous line, if any, with the `\n` between lines.
    fn separate(&mut self) {
        if self.lines > 0 {
            // Fits: a chunk that takes a second line or block stays within CHUNK_BYTES.
            self.ends.push(self.text.len() as u32);
            self.text.push('\n');
        }
    }

    /// The chunk of the lines pushed so far, numbered from `first_id` (its buffers shrunk to
    /// fit); the builder is left empty, with room for `next_capacity` bytes.
    fn seal(&mut self, first_id: u64, next_capacity: usize) -> Chunk {
        let next = ChunkBuilder::new(self.stream, self.timestamp_ms, next_capacity);
        let done = std::mem::replace(self, next);
        Chunk {
            first_id,
            timestamp_ms: done.timestamp_ms,
            stream: done.stream,
            text: done.text.into_boxed_str(),
            ends: done.ends.into_boxed_slice(),
            inner_newline: done.inner_newline,
        }
    }
}

/// One stored line: a handle on the chunk that holds it, so cloning one copies no text (and
/// keeps that chunk's memory alive while it lives).
#[derive(Clone)]
pub struct LogEntry {
    chunk: Arc<Chunk>,
    index: u32,
}

impl LogEntry {
    /// An entry on its own, outside any store (for code that builds entries itself).
    pub fn new(id: u64, timestamp_ms: u64, stream: Stream, line: &str) -> Self {
        let chunk = Chunk {
            first_id: id,
            timestamp_ms,
            stream,
            text: line.into(),
            ends: Box::new([]),
            inner_newline: line.contains('\n'),
        };
        LogEntry {
            chunk: Arc::new(chunk),
            index: 0,
        }
    }

    /// Increases by one per entry of a store; never reused.
    pub fn id(&self) -> u64 {
        self.chunk.first_id + u64::from(self.index)
    }

    /// Milliseconds since the Unix epoch; never smaller than the previous entry's.
    pub fn timestamp_ms(&self) -> u64 {
        self.chunk.timestamp_ms
    }

    /// The pipe the line came from.
    pub fn stream(&self) -> Stream {
        self.chunk.stream
    }

    /// The line, without its terminator.
    pub fn line(&self) -> &str {
        self.chunk.line(self.index as usize)
    }

    /// The line as text queries show it: stderr lines carry a `[stderr] ` prefix.
    pub fn text(&self) -> String {
        match self.stream() {
            Stream::Stdout => self.line().to_owned(),
            Stream::Stderr => format!("[stderr] {}", self.line()),
        }
    }

    /// The timestamp as ISO 8601 in UTC with milliseconds, as JS `Date.toISOString()` writes it.
    pub fn iso_timestamp(&self) -> String {
        iso8601_utc(self.timestamp_ms())
    }
}

impl PartialEq for LogEntry {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
            && self.timestamp_ms() == other.timestamp_ms()
            && self.stream() == other.stream()
            && self.line() == other.line()
    }
}

impl Eq for LogEntry {}

impl fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEntry")
            .field("id", &self.id())
            .field("timestamp_ms", &self.timestamp_ms())
            .field("stream", &self.stream())
            .field("line", &self.line())
            .finish()
    }
}

/// Consecutive lines of one chunk (same stream and timestamp, consecutive ids), as a
/// subscriber receives them.
#[derive(Debug, Clone)]
pub struct LogRun {
    chunk: Arc<Chunk>,
    start: u32,
    end: u32,
}

impl LogRun {
    fn whole(chunk: &Arc<Chunk>) -> Self {
        LogRun {
            chunk: Arc::clone(chunk),
            start: 0,
            // At most one line per byte of a chunk's text, whose offsets are u32.
            end: chunk.len() as u32,
        }
    }

    /// The first `count` lines (fewer than this run has); this run keeps the rest.
    fn split_off_front(&mut self, count: usize) -> LogRun {
        let at = self.start + count as u32;
        let front = LogRun {
            chunk: Arc::clone(&self.chunk),
            start: self.start,
            end: at,
        };
        self.start = at;
        front
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// The bytes the first `count` lines are charged against a budget.
    fn cost_of_first(&self, count: usize) -> usize {
        let start = self.start as usize;
        self.chunk.cost(start, start + count)
    }

    /// Whether the run holds no line (runs handed out never are).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The pipe the lines came from.
    pub fn stream(&self) -> Stream {
        self.chunk.stream
    }

    /// The id of the first line; the others follow one by one.
    pub fn first_id(&self) -> u64 {
        self.chunk.first_id + u64::from(self.start)
    }

    /// The lines, without terminators.
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        (self.start..self.end).map(|index| self.chunk.line(index as usize))
    }

    /// The lines as entries.
    pub fn entries(&self) -> impl Iterator<Item = LogEntry> + '_ {
        (self.start..self.end).map(|index| LogEntry {
            chunk: Arc::clone(&self.chunk),
            index,
        })
    }

    /// The lines joined by `\n`, lent from the stored text; `None` when a line holds a `\n`
    /// itself (the text would not split back into the same lines) or the run is empty.
    pub fn joined(&self) -> Option<&str> {
        (!self.chunk.inner_newline && !self.is_empty())
            .then(|| self.chunk.joined(self.start as usize, self.end as usize))
    }
}

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
            max_line_bytes: super::framer::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// A page of entries, oldest first, as `getPaginated` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The entries of the page, oldest first.
    pub entries: Vec<LogEntry>,
    /// Whether older entries than the first of this page are still stored.
    pub has_more: bool,
}

/// What a subscriber receives at once: how many lines it missed (dropped because it fell
/// behind) and the next lines in order, as runs.
#[derive(Debug, Clone)]
pub struct LogBatch {
    /// Lines dropped from this subscriber's queue since its previous batch.
    pub missed: u64,
    runs: Vec<LogRun>,
}

impl LogBatch {
    /// The line a subscriber is shown in place of entries it missed.
    pub fn missed_marker(missed: u64) -> String {
        format!("[log] {missed} lines skipped: this subscriber fell behind")
    }

    /// The lines, oldest first, in runs that share a chunk.
    pub fn runs(&self) -> &[LogRun] {
        &self.runs
    }

    /// The lines as entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = LogEntry> + '_ {
        self.runs.iter().flat_map(LogRun::entries)
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.runs.iter().map(LogRun::len).sum()
    }

    /// Whether the batch holds no line (it then only reports missed ones).
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[derive(Debug)]
struct Ring {
    chunks: VecDeque<Arc<Chunk>>,
    /// Lines of the front chunk that were evicted already.
    front_evicted: usize,
    /// Lines stored.
    lines: usize,
    bytes: usize,
    next_id: u64,
    last_timestamp_ms: u64,
    subscribers: Vec<Arc<SubscriberQueue>>,
}

impl Ring {
    /// The id of the oldest stored line (the next id when none is).
    fn first_id(&self) -> u64 {
        self.chunks
            .front()
            .map_or(self.next_id, |c| c.first_id + self.front_evicted as u64)
    }

    /// Seals `builder`'s chunk into the ring first if `text` may not join it.
    fn make_room(&mut self, builder: &mut ChunkBuilder, text: &str) {
        if !builder.has_room(text) {
            self.push(builder, CHUNK_BYTES);
        }
    }

    /// Seals `builder`'s lines into a chunk at the end of the ring, leaving the builder room
    /// for `next_capacity` bytes.
    fn push(&mut self, builder: &mut ChunkBuilder, next_capacity: usize) {
        self.lines += builder.lines;
        self.bytes += builder.cost;
        let chunk = builder.seal(self.next_id, next_capacity);
        self.next_id = chunk.end_id();
        self.chunks.push_back(Arc::new(chunk));
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
            out.extend((start..end).map(|index| LogEntry {
                chunk: Arc::clone(chunk),
                // Below the chunk's line count, a u32.
                index: index as u32,
            }));
        }
        out
    }
}

/// A bounded log with live subscribers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LogStore {
    limits: LogLimits,
    framer_cap: LineFramer,
    ring: Mutex<Ring>,
}

impl LogStore {
    /// An empty store with the given limits.
    pub fn new(limits: LogLimits) -> Self {
        LogStore {
            limits,
            framer_cap: LineFramer::new(limits.max_line_bytes),
            ring: Mutex::new(Ring {
                chunks: VecDeque::new(),
                front_evicted: 0,
                lines: 0,
                bytes: 0,
                next_id: 1,
                last_timestamp_ms: 0,
                subscribers: Vec::new(),
            }),
        }
    }

    /// The store's limits.
    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent in a way that
        // matters to readers (every mutation is a push or pop), so a poisoned lock is reused.
        crate::sync::lock(&self.ring)
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
        let ring = &mut *guard;
        let timestamp_ms = now.max(ring.last_timestamp_ms);
        ring.last_timestamp_ms = timestamp_ms;
        let first_new = ring.chunks.len();
        let mut builder = ChunkBuilder::new(stream, timestamp_ms, capacity);
        feed(&mut builder, ring);
        if builder.lines > 0 {
            ring.push(&mut builder, 0);
        }
        if ring.chunks.len() == first_new {
            return None;
        }
        ring.subscribers
            .retain(|queue| queue.offer(ring.chunks.range(first_new..)));
        self.evict(ring);
        Some(ring.next_id - 1)
    }

    /// Drops the oldest lines until both bounds hold.
    fn evict(&self, ring: &mut Ring) {
        ring.evict_lines(ring.lines.saturating_sub(self.limits.max_lines));
        ring.evict_bytes(self.limits.max_bytes, 1);
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.lock().lines
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored entry, oldest first.
    pub fn all(&self) -> Vec<LogEntry> {
        let ring = self.lock();
        ring.entries(0, u64::MAX)
    }

    /// The newest `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogEntry> {
        let ring = self.lock();
        ring.entries(ring.next_id.saturating_sub(n as u64), u64::MAX)
    }

    /// Entries stamped at or after `since_ms` (milliseconds since the epoch), oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<LogEntry> {
        let ring = self.lock();
        let first = ring.chunks.partition_point(|c| c.timestamp_ms < since_ms);
        match ring.chunks.get(first) {
            Some(chunk) => ring.entries(chunk.first_id, u64::MAX),
            None => Vec::new(),
        }
    }

    /// Up to `limit` entries older than the entry `before` (newest when `None`), oldest first.
    pub fn page(&self, limit: usize, before: Option<u64>) -> LogPage {
        let ring = self.lock();
        let first = ring.first_id();
        let end = before.map_or(ring.next_id, |id| id.clamp(first, ring.next_id));
        let start = end.saturating_sub(limit as u64).max(first);
        LogPage {
            entries: ring.entries(start, end),
            has_more: start > first,
        }
    }

    /// Removes every entry (ids keep increasing afterwards) and gives their memory back.
    pub fn clear(&self) {
        let mut ring = self.lock();
        ring.chunks = VecDeque::new();
        ring.front_evicted = 0;
        ring.lines = 0;
        ring.bytes = 0;
    }

    /// The bytes the entries are charged (their text plus a fixed overhead each).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops the oldest entries until at most `max_bytes` are charged, and gives the freed
    /// memory back to the allocator; returns the bytes freed. The newest lines stay readable.
    pub fn shrink_to(&self, max_bytes: usize) -> usize {
        let mut ring = self.lock();
        let before = ring.bytes;
        ring.evict_bytes(max_bytes, 0);
        ring.chunks.shrink_to_fit();
        before - ring.bytes
    }

    /// A live subscription to entries appended from now on. It holds at most `capacity`
    /// undelivered entries, charged at most the store's byte budget (but always the newest
    /// entry); older ones are dropped and counted as missed.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let queue = Arc::new(SubscriberQueue {
            state: Mutex::new(QueueState {
                pending: VecDeque::new(),
                pending_lines: 0,
                pending_bytes: 0,
                missed: 0,
                closed: false,
                unsubscribed: false,
            }),
            capacity: capacity.max(1),
            max_bytes: self.limits.max_bytes,
            wake: Notify::new(),
        });
        self.lock().subscribers.push(Arc::clone(&queue));
        Subscription { queue }
    }

    /// Ends every subscription: readers get what is queued, then `None`.
    pub fn close_subscriptions(&self) {
        let subscribers = std::mem::take(&mut self.lock().subscribers);
        for queue in subscribers {
            queue.close(false);
        }
    }

    /// Live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        let mut ring = self.lock();
        ring.subscribers.retain(|q| !q.is_closed());
        ring.subscribers.len()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close_subscriptions();
    }
}

/// Joins entries as text queries return them: one line each, `\n` between.
pub fn join_text(entries: &[LogEntry]) -> String {
    let mut out = String::with_capacity(entries.iter().map(|e| e.line().len() + 10).sum());
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if entry.stream() == Stream::Stderr {
            out.push_str("[stderr] ");
        }
        out.push_str(entry.line());
    }
    out
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601_utc(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug)]
struct QueueState {
    pending: VecDeque<LogRun>,
    /// Lines in `pending`.
    pending_lines: usize,
    /// The bytes those lines are charged (as the store charges them).
    pending_bytes: usize,
    missed: u64,
    closed: bool,
    /// Closed by its reader (not by the store going away): nothing more is delivered.
    unsubscribed: bool,
}

impl QueueState {
    /// Drops the oldest lines, counting them as missed, until at most `capacity` are left and
    /// they are charged at most `max_bytes` (or only one is left).
    fn drop_oldest(&mut self, capacity: usize, max_bytes: usize) {
        while self.pending_lines > capacity
            || (self.pending_bytes > max_bytes && self.pending_lines > 1)
        {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            let mut count = (self.pending_lines.saturating_sub(capacity)).min(front.len());
            let mut bytes = front.cost_of_first(count);
            while count < front.len().min(self.pending_lines - 1)
                && self.pending_bytes - bytes > max_bytes
            {
                count += 1;
                bytes = front.cost_of_first(count);
            }
            if count == 0 {
                break;
            }
            if count == front.len() {
                self.pending.pop_front();
            } else {
                front.split_off_front(count);
            }
            self.pending_lines -= count;
            self.pending_bytes -= bytes;
            self.missed += count as u64;
        }
    }
}

#[derive(Debug)]
struct SubscriberQueue {
    state: Mutex<QueueState>,
    /// Undelivered lines kept at most.
    capacity: usize,
    /// Bytes the undelivered lines may be charged at most.
    max_bytes: usize,
    wake: Notify,
}

impl SubscriberQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        crate::sync::lock(&self.state)
    }

    /// Queues the lines of new chunks; returns false once the subscription is closed (so the
    /// store drops it).
    fn offer<'a>(&self, chunks: impl Iterator<Item = &'a Arc<Chunk>>) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return false;
        }
        for chunk in chunks {
            let run = LogRun::whole(chunk);
            state.pending_lines += run.len();
            state.pending_bytes += run.cost_of_first(run.len());
            state.pending.push_back(run);
        }
        state.drop_oldest(self.capacity, self.max_bytes);
        drop(guard);
        self.wake.notify_one();
        true
    }

    /// Marks the queue closed. An unsubscribing reader also discards what is queued, so it
    /// receives nothing more; a store that goes away lets its readers drain first.
    fn close(&self, discard_pending: bool) {
        let mut state = self.lock();
        state.closed = true;
        if discard_pending {
            state.unsubscribed = true;
            state.pending.clear();
            state.pending_lines = 0;
            state.pending_bytes = 0;
            state.missed = 0;
        }
        drop(state);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn is_unsubscribed(&self) -> bool {
        self.lock().unsubscribed
    }
}

/// The reading end of a subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    queue: Arc<SubscriberQueue>,
}

impl Subscription {
    /// Waits for the next batch of at most `max` lines (with the count of lines missed before
    /// them). `None` once the subscription is closed and its queue drained.
    pub async fn next_batch(&self, max: usize) -> Option<LogBatch> {
        loop {
            {
                let mut guard = self.queue.lock();
                let state = &mut *guard;
                if state.pending_lines > 0 || state.missed > 0 {
                    let mut room = max.max(1).min(state.pending_lines);
                    state.pending_lines -= room;
                    let mut runs = Vec::new();
                    while room > 0 {
                        let Some(front) = state.pending.front_mut() else {
                            break;
                        };
                        let run = if front.len() <= room {
                            state.pending.pop_front()
                        } else {
                            Some(front.split_off_front(room))
                        };
                        let Some(run) = run else {
                            break;
                        };
                        room -= run.len();
                        state.pending_bytes -= run.cost_of_first(run.len());
                        runs.push(run);
                    }
                    let missed = std::mem::take(&mut state.missed);
                    return Some(LogBatch { missed, runs });
                }
                if state.closed {
                    return None;
                }
            }
            // A notification sent between the check above and this await is stored as a
            // permit by `Notify`, so no wake-up is lost.
            self.queue.wake.notified().await;
        }
    }

    /// Unsubscribes: nothing more is delivered, not even what was queued. Idempotent.
    pub fn close(&self) {
        self.queue.close(true);
    }

    /// A handle that can close this subscription from elsewhere (for example from JS).
    pub fn closer(&self) -> SubscriptionCloser {
        SubscriptionCloser {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close(true);
    }
}

/// Closes a subscription without owning its reading end.
#[derive(Debug, Clone)]
pub struct SubscriptionCloser {
    queue: Arc<SubscriberQueue>,
}

impl SubscriptionCloser {
    /// Unsubscribes: nothing more is delivered, not even what was queued. Idempotent.
    pub fn close(&self) {
        self.queue.close(true);
    }

    /// Whether the subscription has ended (unsubscribed, or its store went away).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Whether its reader unsubscribed (then not even queued entries are to be delivered).
    pub fn is_unsubscribed(&self) -> bool {
        self.queue.is_unsubscribed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line {i}")).collect()
    }

    fn texts(entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.line().to_owned()).collect()
    }

    fn batch_texts(batch: &LogBatch) -> Vec<String> {
        batch.entries().map(|e| e.line().to_owned()).collect()
    }

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
    fn timestamps_never_go_backwards() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        for chunk in 0..50 {
            store.append_lines(Stream::Stdout, vec![format!("{chunk}")]);
        }
        let stamps: Vec<u64> = store.all().iter().map(|e| e.timestamp_ms()).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
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
    fn iso_timestamps_match_javascript() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        // new Date(1795703045123).toISOString()
        assert_eq!(iso8601_utc(1_795_703_045_123), "2026-11-26T14:24:05.123Z");
        // A leap day: new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 999)).toISOString()
        assert_eq!(iso8601_utc(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn text_form_prefixes_stderr() {
        let store = LogStore::new(LogLimits::with_lines(10));
        store.append_lines(Stream::Stdout, vec!["out"]);
        store.append_lines(Stream::Stderr, vec!["err"]);
        assert_eq!(join_text(&store.all()), "out\n[stderr] err");
        assert_eq!(store.all()[1].text(), "[stderr] err");
    }

    #[tokio::test]
    async fn subscribers_get_only_new_lines_in_order() {
        let store = LogStore::new(LogLimits::with_lines(100));
        store.append_lines(Stream::Stdout, vec!["before"]);
        let sub = store.subscribe(100);
        store.append_lines(Stream::Stdout, lines(3));
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.missed, 0);
        assert_eq!(batch_texts(&batch), vec!["line 0", "line 1", "line 2"]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_loses_the_oldest_and_learns_how_many() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        let sub = store.subscribe(4);
        store.append_lines(Stream::Stdout, lines(10));
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(batch.missed, 6);
        assert_eq!(
            batch_texts(&batch),
            vec!["line 6", "line 7", "line 8", "line 9"]
        );
    }

    #[tokio::test]
    async fn batches_respect_their_maximum() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        let sub = store.subscribe(1000);
        store.append_lines(Stream::Stdout, lines(10));
        assert_eq!(sub.next_batch(4).await.unwrap().len(), 4);
        assert_eq!(sub.next_batch(100).await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_reader_waiting_is_woken_by_an_append_from_another_thread() {
        let store = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        let sub = store.subscribe(100);
        let writer = Arc::clone(&store);
        let thread = std::thread::spawn(move || {
            writer.append_lines(Stream::Stderr, vec!["from a thread"]);
        });
        let batch = sub.next_batch(10).await.unwrap();
        assert_eq!(batch.entries().next().unwrap().stream(), Stream::Stderr);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn closing_ends_the_subscription_after_its_queue() {
        let store = LogStore::new(LogLimits::with_lines(100));
        let sub = store.subscribe(100);
        store.append_lines(Stream::Stdout, lines(1));
        let closer = sub.closer();
        closer.close();
        sub.close();
        assert!(closer.is_closed());
        assert!(closer.is_unsubscribed());
        assert!(
            sub.next_batch(10).await.is_none(),
            "unsubscribing discards the queue"
        );
        assert_eq!(store.subscriber_count(), 0);
        store.append_lines(Stream::Stdout, lines(1));
    }

    #[tokio::test]
    async fn closing_the_store_ends_every_subscription_after_its_queue() {
        let store = LogStore::new(LogLimits::with_lines(100));
        let a = store.subscribe(10);
        let b = store.subscribe(10);
        store.append_lines(Stream::Stdout, lines(1));
        store.close_subscriptions();
        assert_eq!(a.next_batch(10).await.unwrap().len(), 1);
        assert!(a.next_batch(1).await.is_none());
        drop(store);
        assert_eq!(b.next_batch(10).await.unwrap().len(), 1);
        assert!(b.next_batch(1).await.is_none());
    }

    /// The bytes charged for `entries` when stored one by one.
    fn charged(entries: &[LogEntry]) -> usize {
        entries
            .iter()
            .map(|e| e.line().len() + ENTRY_OVERHEAD_BYTES)
            .sum()
    }

    #[test]
    fn a_big_append_is_split_into_chunks_and_queries_span_them() {
        let store = LogStore::new(LogLimits::with_lines(100_000));
        let many: Vec<String> = (0..20_000).map(|i| format!("line {i:06}")).collect();
        store.append_lines(Stream::Stdout, &many);
        assert!(
            store.lock().chunks.len() > 1,
            "one chunk per {CHUNK_BYTES} bytes"
        );
        assert_eq!(texts(&store.all()), many);
        let ids: Vec<u64> = store.all().iter().map(|e| e.id()).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        let page = store.page(3, Some(12_000));
        assert_eq!(texts(&page.entries), many[11_996..11_999].to_vec());
        assert_eq!(texts(&store.tail(2)), many[19_998..].to_vec());
        assert_eq!(store.bytes(), charged(&store.all()));
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
        assert_eq!(store.lock().chunks.len(), 2, "the emptied chunk is freed");
        assert_eq!(store.bytes(), charged(&store.all()));
        let freed = store.shrink_to(2 * (ENTRY_OVERHEAD_BYTES + 6));
        assert!(freed > 0);
        assert_eq!(texts(&store.all()), vec!["line 3", "line 0"]);
        assert_eq!(store.bytes(), charged(&store.all()));
    }

    #[test]
    fn framed_chunks_keep_their_lines_with_offsets() {
        let store = LogStore::new(LogLimits::with_lines(100));
        let mut framer = LineFramer::new(1024);
        store.append_chunk(Stream::Stdout, &mut framer, b"a\nbb\n\nccc\r\nd");
        store.append_chunk(Stream::Stdout, &mut framer, b"d\n");
        assert_eq!(texts(&store.all()), vec!["a", "bb", "", "ccc", "dd"]);
        assert_eq!(store.bytes(), charged(&store.all()));
    }

    #[tokio::test]
    async fn runs_lend_joined_text_unless_a_line_holds_a_newline() {
        let store = LogStore::new(LogLimits::with_lines(100));
        let sub = store.subscribe(100);
        let mut framer = LineFramer::new(1024);
        store.append_chunk(Stream::Stdout, &mut framer, b"one\ntwo\nthree\n");
        store.append_lines(Stream::Stdout, vec!["a\nb", "c"]);
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.runs()[0].joined(), Some("one\ntwo\nthree"));
        assert_eq!(batch.runs()[0].first_id(), 1);
        assert_eq!(batch.runs()[1].joined(), None);
        assert_eq!(
            batch.runs()[1].lines().collect::<Vec<_>>(),
            vec!["a\nb", "c"]
        );
    }

    #[tokio::test]
    async fn a_batch_cut_inside_a_run_resumes_where_it_stopped() {
        let store = LogStore::new(LogLimits::with_lines(100));
        let sub = store.subscribe(100);
        store.append_lines(Stream::Stdout, lines(5));
        let first = sub.next_batch(2).await.unwrap();
        let rest = sub.next_batch(100).await.unwrap();
        assert_eq!(first.runs()[0].joined(), Some("line 0\nline 1"));
        assert_eq!(rest.runs()[0].joined(), Some("line 2\nline 3\nline 4"));
        assert_eq!(rest.runs()[0].first_id(), 3);
    }

    #[tokio::test]
    async fn a_subscriber_queue_is_bounded_by_the_stores_bytes_too() {
        let limits = LogLimits {
            max_lines: 1000,
            max_bytes: 3 * (ENTRY_OVERHEAD_BYTES + 6),
            max_line_bytes: 1024,
        };
        let store = LogStore::new(limits);
        let sub = store.subscribe(1000);
        store.append_lines(Stream::Stdout, lines(4));
        store.append_lines(Stream::Stdout, lines(2));
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(batch.missed, 3);
        assert_eq!(batch_texts(&batch), vec!["line 3", "line 0", "line 1"]);
        store.append_lines(Stream::Stdout, vec!["x".repeat(500)]);
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(
            (batch.missed, batch.len()),
            (0, 1),
            "the newest line is kept"
        );
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let store = LogStore::new(LogLimits::with_lines(100));
        drop(store.subscribe(10));
        assert_eq!(store.subscriber_count(), 0);
    }
}
