//! Live subscribers. Each owns a bounded queue of runs (a chunk and a range of its lines).
//! Appending pushes one run per new chunk into those queues and wakes their readers; it never
//! waits for a reader and never copies a line. A reader that falls more than its queue's
//! capacity behind (in lines, or in bytes: the store's own byte budget) loses the oldest
//! undelivered lines and is told how many it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::chunk::Chunk;
use super::entry::{LogEntry, LogRun};

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

/// A store's live subscribers, in the order they subscribed.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    queues: Vec<Arc<SubscriberQueue>>,
}

impl Subscribers {
    /// Adds `subscription` to those that receive new chunks.
    pub(super) fn add(&mut self, subscription: &Subscription) {
        self.queues.push(Arc::clone(&subscription.queue));
    }

    /// Queues the lines of new chunks for every subscriber, and forgets the closed ones.
    pub(super) fn offer<'a>(&mut self, chunks: impl Iterator<Item = &'a Arc<Chunk>> + Clone) {
        self.queues.retain(|queue| queue.offer(chunks.clone()));
    }

    /// Ends every subscription: readers get what is queued, then `None`.
    pub(super) fn close_all(self) {
        for queue in self.queues {
            queue.close(false);
        }
    }

    /// Live subscriptions (the closed ones are forgotten).
    pub(super) fn count(&mut self) -> usize {
        self.queues.retain(|q| !q.is_closed());
        self.queues.len()
    }
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
    /// A subscription holding at most `capacity` undelivered lines (at least one), charged at
    /// most `max_bytes` (but always the newest line); it receives what [`Subscribers::offer`]
    /// hands it once added there.
    pub(super) fn new(capacity: usize, max_bytes: usize) -> Self {
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
            max_bytes,
            wake: Notify::new(),
        });
        Subscription { queue }
    }

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
    use crate::logs::chunk::ENTRY_OVERHEAD_BYTES;
    use crate::logs::testing::lines;
    use crate::logs::{LogLimits, LogStore, Stream};

    fn batch_texts(batch: &LogBatch) -> Vec<String> {
        batch.entries().map(|e| e.line().to_owned()).collect()
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
