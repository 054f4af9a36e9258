//! A bounded, queryable log of one server (or build), with live subscribers.
//!
//! Entries live in a ring bounded both by count and by bytes; the oldest go first. Every entry
//! gets an id one higher than the previous one (ids are never reused, so they serve as
//! pagination cursors) and a millisecond timestamp that never goes backwards, so both are sorted
//! and every query finds its start by binary search: a query costs what it returns.
//!
//! Subscribers each own a bounded queue. Appending pushes into those queues and wakes their
//! readers; it never waits for a reader. A reader that falls more than its queue's capacity
//! behind loses the oldest undelivered entries and is told how many it missed.

use std::collections::VecDeque;
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

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Increases by one per entry of a store; never reused.
    pub id: u64,
    /// Milliseconds since the Unix epoch; never smaller than the previous entry's.
    pub timestamp_ms: u64,
    /// The pipe the line came from.
    pub stream: Stream,
    /// The line, without its terminator.
    pub line: Arc<str>,
}

impl LogEntry {
    /// The line as text queries show it: stderr lines carry a `[stderr] ` prefix.
    pub fn text(&self) -> String {
        match self.stream {
            Stream::Stdout => self.line.to_string(),
            Stream::Stderr => format!("[stderr] {}", self.line),
        }
    }

    /// The timestamp as ISO 8601 in UTC with milliseconds, as JS `Date.toISOString()` writes it.
    pub fn iso_timestamp(&self) -> String {
        iso8601_utc(self.timestamp_ms)
    }

    /// Bytes this entry counts against the store's budget.
    fn cost(&self) -> usize {
        self.line.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// Bookkeeping bytes charged per entry on top of its text, so that a flood of empty lines is
/// bounded by the byte budget too.
const ENTRY_OVERHEAD_BYTES: usize = 64;

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

/// What a subscriber receives at once: entries it missed (dropped because it fell behind)
/// and the next entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// Entries dropped from this subscriber's queue since its previous batch.
    pub missed: u64,
    /// The entries, oldest first.
    pub entries: Vec<LogEntry>,
}

impl LogBatch {
    /// The line a subscriber is shown in place of entries it missed.
    pub fn missed_marker(missed: u64) -> String {
        format!("[log] {missed} lines skipped: this subscriber fell behind")
    }
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    next_id: u64,
    last_timestamp_ms: u64,
    subscribers: Vec<Arc<SubscriberQueue>>,
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
                entries: VecDeque::new(),
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

    /// Appends lines that are already framed (no `\n` inside), all with the same stream tag.
    /// Lines over the length cap are cut with a marker. Returns the id of the last entry.
    pub fn append_lines<I, S>(&self, stream: Stream, lines: I) -> Option<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.append_with(stream, true, |add| {
            for line in lines {
                add(line.as_ref());
            }
        })
    }

    /// Frames one chunk read from a pipe with `framer` and appends the lines it completes, all
    /// under one lock and without copying a line twice. Returns the id of the last entry.
    pub fn append_chunk(
        &self,
        stream: Stream,
        framer: &mut LineFramer,
        bytes: &[u8],
    ) -> Option<u64> {
        self.append_with(stream, false, |add| framer.push(bytes, add))
    }

    /// End of a pipe: appends `framer`'s unfinished last line, if any.
    pub fn finish_chunks(&self, stream: Stream, framer: &mut LineFramer) -> Option<u64> {
        self.append_with(stream, false, |add| framer.finish(add))
    }

    /// Takes the lock once, lets `feed` add lines (capped to the length limit with `cap`; a
    /// framer's lines are capped already), then hands the new entries to subscribers and
    /// evicts the oldest.
    fn append_with(
        &self,
        stream: Stream,
        cap: bool,
        feed: impl FnOnce(&mut dyn FnMut(&str)),
    ) -> Option<u64> {
        let now = now_ms();
        let mut guard = self.lock();
        let ring = &mut *guard;
        let timestamp_ms = now.max(ring.last_timestamp_ms);
        ring.last_timestamp_ms = timestamp_ms;
        let first_new = ring.entries.len();
        let max_line_bytes = self.limits.max_line_bytes;
        feed(&mut |line: &str| {
            let line: Arc<str> = if cap && line.len() > max_line_bytes {
                Arc::from(self.framer_cap.cap_line(line))
            } else {
                Arc::from(line)
            };
            let entry = LogEntry {
                id: ring.next_id,
                timestamp_ms,
                stream,
                line,
            };
            ring.next_id += 1;
            ring.bytes += entry.cost();
            ring.entries.push_back(entry);
        });
        let added = ring.entries.len() - first_new;
        if added == 0 {
            return None;
        }
        if !ring.subscribers.is_empty() {
            let (front, back) = ring.entries.as_slices();
            let new_entries: Vec<&LogEntry> = if first_new >= front.len() {
                back[first_new - front.len()..].iter().collect()
            } else {
                front[first_new..].iter().chain(back).collect()
            };
            ring.subscribers.retain(|queue| queue.offer(&new_entries));
        }
        self.evict(ring);
        Some(ring.next_id - 1)
    }

    /// Drops the oldest entries until both bounds hold.
    fn evict(&self, ring: &mut Ring) {
        while ring.entries.len() > self.limits.max_lines
            || (ring.bytes > self.limits.max_bytes && ring.entries.len() > 1)
        {
            match ring.entries.pop_front() {
                Some(old) => ring.bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored entry, oldest first.
    pub fn all(&self) -> Vec<LogEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// The newest `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogEntry> {
        let ring = self.lock();
        let start = ring.entries.len().saturating_sub(n);
        ring.entries.range(start..).cloned().collect()
    }

    /// Entries stamped at or after `since_ms` (milliseconds since the epoch), oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<LogEntry> {
        let ring = self.lock();
        let start = ring.entries.partition_point(|e| e.timestamp_ms < since_ms);
        ring.entries.range(start..).cloned().collect()
    }

    /// Up to `limit` entries older than the entry `before` (newest when `None`), oldest first.
    pub fn page(&self, limit: usize, before: Option<u64>) -> LogPage {
        let ring = self.lock();
        let end = match before {
            Some(id) => ring.entries.partition_point(|e| e.id < id),
            None => ring.entries.len(),
        };
        let start = end.saturating_sub(limit);
        LogPage {
            entries: ring.entries.range(start..end).cloned().collect(),
            has_more: start > 0,
        }
    }

    /// Removes every entry (ids keep increasing afterwards) and gives their memory back.
    pub fn clear(&self) {
        let mut ring = self.lock();
        ring.entries = VecDeque::new();
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
        while ring.bytes > max_bytes {
            match ring.entries.pop_front() {
                Some(old) => ring.bytes -= old.cost(),
                None => break,
            }
        }
        ring.entries.shrink_to_fit();
        before - ring.bytes
    }

    /// A live subscription to entries appended from now on. It holds at most `capacity`
    /// undelivered entries; older ones are dropped and counted as missed.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let queue = Arc::new(SubscriberQueue {
            state: Mutex::new(QueueState {
                pending: VecDeque::new(),
                missed: 0,
                closed: false,
                unsubscribed: false,
            }),
            capacity: capacity.max(1),
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
    let mut out = String::with_capacity(entries.iter().map(|e| e.line.len() + 10).sum());
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if entry.stream == Stream::Stderr {
            out.push_str("[stderr] ");
        }
        out.push_str(&entry.line);
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
    pending: VecDeque<LogEntry>,
    missed: u64,
    closed: bool,
    /// Closed by its reader (not by the store going away): nothing more is delivered.
    unsubscribed: bool,
}

#[derive(Debug)]
struct SubscriberQueue {
    state: Mutex<QueueState>,
    capacity: usize,
    wake: Notify,
}

impl SubscriberQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        crate::sync::lock(&self.state)
    }

    /// Queues new entries; returns false once the subscription is closed (so the store drops it).
    fn offer(&self, entries: &[&LogEntry]) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.pending.extend(entries.iter().map(|e| (*e).clone()));
        let overflow = state.pending.len().saturating_sub(self.capacity);
        if overflow > 0 {
            state.pending.drain(..overflow);
            state.missed += overflow as u64;
        }
        drop(state);
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
    /// Waits for the next batch of at most `max` entries (with the count of entries missed
    /// before them). `None` once the subscription is closed and its queue drained.
    pub async fn next_batch(&self, max: usize) -> Option<LogBatch> {
        loop {
            {
                let mut state = self.queue.lock();
                if !state.pending.is_empty() || state.missed > 0 {
                    let take = state.pending.len().min(max.max(1));
                    let entries = state.pending.drain(..take).collect();
                    let missed = std::mem::take(&mut state.missed);
                    return Some(LogBatch { missed, entries });
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
        entries.iter().map(|e| e.line.to_string()).collect()
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
        assert_eq!(store.all()[0].line.as_ref(), "0000000090");
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
                .line
                .starts_with("01234567 … [line truncated")
        );
    }

    #[test]
    fn ids_increase_by_one_and_survive_eviction_and_clear() {
        let store = LogStore::new(LogLimits::with_lines(2));
        assert_eq!(store.append_lines(Stream::Stdout, lines(3)), Some(3));
        let ids: Vec<u64> = store.all().iter().map(|e| e.id).collect();
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
        let stamp = store.all()[0].timestamp_ms;
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
        let stamps: Vec<u64> = store.all().iter().map(|e| e.timestamp_ms).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn pages_walk_backwards_from_the_newest() {
        let store = LogStore::new(LogLimits::with_lines(100));
        store.append_lines(Stream::Stdout, lines(5)); // ids 1..=5
        let newest = store.page(2, None);
        assert_eq!(texts(&newest.entries), vec!["line 3", "line 4"]);
        assert!(newest.has_more);
        let older = store.page(2, Some(newest.entries[0].id));
        assert_eq!(texts(&older.entries), vec!["line 1", "line 2"]);
        assert!(older.has_more);
        let oldest = store.page(2, Some(older.entries[0].id));
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
        assert_eq!(texts(&batch.entries), vec!["line 0", "line 1", "line 2"]);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_loses_the_oldest_and_learns_how_many() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        let sub = store.subscribe(4);
        store.append_lines(Stream::Stdout, lines(10));
        let batch = sub.next_batch(100).await.unwrap();
        assert_eq!(batch.missed, 6);
        assert_eq!(
            texts(&batch.entries),
            vec!["line 6", "line 7", "line 8", "line 9"]
        );
    }

    #[tokio::test]
    async fn batches_respect_their_maximum() {
        let store = LogStore::new(LogLimits::with_lines(1000));
        let sub = store.subscribe(1000);
        store.append_lines(Stream::Stdout, lines(10));
        assert_eq!(sub.next_batch(4).await.unwrap().entries.len(), 4);
        assert_eq!(sub.next_batch(100).await.unwrap().entries.len(), 6);
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
        assert_eq!(batch.entries[0].stream, Stream::Stderr);
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
        assert_eq!(a.next_batch(10).await.unwrap().entries.len(), 1);
        assert!(a.next_batch(1).await.is_none());
        drop(store);
        assert_eq!(b.next_batch(10).await.unwrap().entries.len(), 1);
        assert!(b.next_batch(1).await.is_none());
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let store = LogStore::new(LogLimits::with_lines(100));
        drop(store.subscribe(10));
        assert_eq!(store.subscriber_count(), 0);
    }
}
