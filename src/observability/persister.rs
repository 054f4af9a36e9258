//! The log observer that writes lines to a [`FileStorage`] as JSONL batches.
//!
//! One reader task per log moves its lines, as serialized events, into the pending batch of
//! its project; a batch is closed when it holds `batchSize` events or `maxFileSize` bytes,
//! when `flushIntervalMs` passed since its first event, when a log of its project closes, or on
//! [`LogObserver::flush`]. One writer task writes closed batches in order, one at a time, each
//! attempt bounded by `providerTimeoutMs`, retrying with backoff before it gives up on one.
//! While a batch is being written and a full one waits behind it, new events of that project
//! join the waiting one (up to `maxFileSize`): a storage slower than the lines gets fewer,
//! larger files rather than a backlog of small ones.
//!
//! A persister whose storage is replaced [retires](Persister::retire): it stops reading,
//! writes what it holds, and after a time limit counts what is left as dropped, so that no
//! event ever leaves without being counted written or dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::event::{EventTemplate, Ids, level};
use super::{FileStorage, ObservabilitySettings, ObservabilityStats};
use crate::error::{Error, Result};
use crate::logs::{LogBatch, LogEntry, LogStore, Subscription, now_ms};
use crate::logs::{LogObserver, LogOwner};
use crate::sync::BoxFuture;
use crate::sync::lock;

/// Entries a log's subscription holds for its reader before it skips (and counts) some.
const SUBSCRIPTION_CAPACITY: usize = 262_144;
/// Entries a reader takes from its subscription at once.
const READ_BATCH: usize = 4_096;
/// Events held at most (batching, queued or being written); beyond, new ones are dropped.
const MAX_PENDING_EVENTS: u64 = 2_000_000;
/// Memory held at most by pending events, estimated as [`EVENT_MEMORY`] plus the line.
const MAX_PENDING_BYTES: u64 = 128 * 1024 * 1024;
/// Bytes one pending event costs on top of its line (the entry, its template, its level,
/// the line's allocation).
const EVENT_MEMORY: u64 = 96;
/// Attempts to write one file before its events count as dropped.
const WRITE_ATTEMPTS: u32 = 3;
/// Pause before the first retry; doubled for each next one.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Writes every line of the logs it observes to a file storage. See the module docs.
pub struct Persister {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn FileStorage>,
    settings: ObservabilitySettings,
    write_timeout: Duration,
    runtime: Handle,
    ids: Ids,
    max_pending_bytes: u64,
    max_pending_events: u64,
    state: Mutex<State>,
    /// Wakes the writer (a stored permit, so no wake-up is lost).
    wake: Arc<Notify>,
    /// Wakes `flush()` callers when a batch is done or a reader finished.
    changed: Notify,
    warned_failure: AtomicBool,
    warned_drop: AtomicBool,
}

/// One line on its way to a file: serialized only when its batch is written, so that a
/// pending event costs little more than its line.
struct Pending {
    entry: LogEntry,
    level: &'static str,
    template: Arc<EventTemplate>,
}

/// A project's events on their way to one file.
struct Batch {
    project_id: String,
    events: Vec<Pending>,
    /// Bytes of the file's JSONL.
    size: usize,
    /// Memory the events count against [`MAX_PENDING_BYTES`].
    memory: u64,
    /// When the batch must be written at the latest.
    due: Instant,
}

impl Batch {
    /// The file's content: one JSON line per event, each ending with `\n`.
    fn content(&self, ids: &Ids) -> String {
        let mut content = String::with_capacity(self.size);
        for event in &self.events {
            content.push_str(
                &event
                    .template
                    .line(&event.entry, event.level, &ids.event_id()),
            );
            content.push('\n');
        }
        content
    }
}

/// A reader's end as the persister sees it (changed under the state lock).
#[derive(Default)]
struct Reader {
    closing: AtomicBool,
    finished: AtomicBool,
    notify: Notify,
}

#[derive(Default)]
struct State {
    open: BTreeMap<String, Batch>,
    ready: VecDeque<Batch>,
    /// Batches handed to the writer so far, and batches it finished (written or dropped).
    queued: u64,
    done: u64,
    pending_events: u64,
    pending_bytes: u64,
    written: u64,
    dropped: u64,
    readers: BTreeMap<String, Arc<Reader>>,
    /// Readers told to finish that have not finished yet.
    draining: usize,
    /// A batch is being written.
    writing: bool,
    /// A retiring persister ran out of time: nothing more is taken, written or retried.
    abandoned: bool,
}

impl State {
    /// The batch waiting behind the one being written, when it is `project_id`'s and has room
    /// for `bytes` more: while the storage is slower than lines arrive, files grow up to
    /// `maxFileSize` instead of the backlog growing by one file per `batchSize` events.
    fn backlog_of(
        &mut self,
        project_id: &str,
        bytes: u64,
        max_file_size: usize,
    ) -> Option<&mut Batch> {
        if !self.writing || self.open.contains_key(project_id) {
            return None;
        }
        self.ready.back_mut().filter(|batch| {
            batch.project_id == project_id && (batch.size as u64) + bytes <= max_file_size as u64
        })
    }

    /// Hands `project_id`'s open batch to the writer.
    fn close_batch(&mut self, project_id: &str) -> bool {
        match self.open.remove(project_id) {
            Some(batch) => {
                self.ready.push_back(batch);
                self.queued += 1;
                true
            }
            None => false,
        }
    }
}

impl Persister {
    /// A persister writing to `storage` with `settings`; each write attempt may take up to
    /// `write_timeout`. Must be called within a tokio runtime, whose tasks it uses.
    pub fn new(
        storage: Arc<dyn FileStorage>,
        settings: ObservabilitySettings,
        write_timeout: Duration,
    ) -> Result<Self> {
        let limits = (
            MAX_PENDING_EVENTS.max(2 * settings.batch_size as u64),
            MAX_PENDING_BYTES.max(4 * settings.max_file_size as u64),
        );
        Self::with_limits(storage, settings, write_timeout, limits)
    }

    /// [`Persister::new`] holding at most `limits.0` pending events and `limits.1` bytes.
    fn with_limits(
        storage: Arc<dyn FileStorage>,
        settings: ObservabilitySettings,
        write_timeout: Duration,
        limits: (u64, u64),
    ) -> Result<Self> {
        let runtime = Handle::try_current()
            .map_err(|error| Error::internal("setting the observability storage", error))?;
        let inner = Arc::new(Inner {
            storage,
            settings,
            write_timeout,
            runtime,
            ids: Ids::default(),
            max_pending_events: limits.0,
            max_pending_bytes: limits.1,
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
            changed: Notify::new(),
            warned_failure: AtomicBool::new(false),
            warned_drop: AtomicBool::new(false),
        });
        inner.runtime.spawn(write_batches(
            Arc::downgrade(&inner),
            Arc::clone(&inner.wake),
        ));
        Ok(Persister { inner })
    }

    /// Current counts of written, pending and dropped events.
    pub fn stats(&self) -> ObservabilityStats {
        let state = lock(&self.inner.state);
        ObservabilityStats {
            written: state.written,
            pending: state.pending_events,
            dropped: state.dropped,
        }
    }

    /// Hands over to a newer storage: stops reading the logs (taking what they hold now),
    /// writes everything pending to this storage at once, and resolves once all of it was
    /// written or dropped. What is not written within `limit` is counted as dropped: a write
    /// attempt then in progress ends as its storage answers (within the write timeout) and
    /// is not retried.
    pub async fn retire(&self, limit: Duration) {
        self.detach();
        if tokio::time::timeout(limit, self.inner.flush())
            .await
            .is_err()
        {
            self.inner.abandon(limit);
            self.inner.settled().await;
        }
    }

    /// Stops reading the logs it observes (a replaced storage): what they hold now is still
    /// written, nothing later.
    pub fn detach(&self) {
        let mut state = lock(&self.inner.state);
        let readers: Vec<_> = std::mem::take(&mut state.readers).into_values().collect();
        for reader in readers {
            begin_closing(&mut state, &reader);
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Tells `reader` to finish once it has taken what its subscription holds.
fn begin_closing(state: &mut State, reader: &Reader) {
    if !reader.closing.swap(true, Ordering::SeqCst) && !reader.finished.load(Ordering::SeqCst) {
        state.draining += 1;
    }
    reader.notify.notify_one();
}

/// A stable key for a log's owner.
fn owner_key(owner: &LogOwner) -> String {
    match owner {
        LogOwner::Server { server_id, .. } => format!("server:{server_id}"),
        LogOwner::Build { build_id, .. } => format!("build:{build_id}"),
    }
}

impl LogObserver for Persister {
    fn log_opened(&self, owner: &LogOwner, log: &Arc<LogStore>) {
        let subscription = log.subscribe(SUBSCRIPTION_CAPACITY);
        let reader = Arc::new(Reader::default());
        let key = owner_key(owner);
        {
            let mut state = lock(&self.inner.state);
            if let Some(previous) = state.readers.insert(key.clone(), Arc::clone(&reader)) {
                begin_closing(&mut state, &previous);
            }
        }
        let template = Arc::new(EventTemplate::new(owner));
        let inner = Arc::clone(&self.inner);
        self.inner
            .runtime
            .spawn(read_log(inner, key, template, subscription, reader));
    }

    fn log_closed(&self, owner: &LogOwner) {
        let mut state = lock(&self.inner.state);
        if let Some(reader) = state.readers.remove(&owner_key(owner)) {
            begin_closing(&mut state, &reader);
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.flush())
    }
}

/// Moves one log's lines into pending batches until it closes, then closes its project's
/// batch.
async fn read_log(
    inner: Arc<Inner>,
    key: String,
    template: Arc<EventTemplate>,
    subscription: Subscription,
    reader: Arc<Reader>,
) {
    loop {
        tokio::select! {
            batch = subscription.next_batch(READ_BATCH) => match batch {
                Some(batch) => inner.ingest(&template, batch),
                None => break,
            },
            () = closing(&reader) => {
                // Take what was logged before the close, without waiting for more.
                while let Ok(Some(batch)) =
                    tokio::time::timeout(Duration::ZERO, subscription.next_batch(READ_BATCH)).await
                {
                    inner.ingest(&template, batch);
                }
                break;
            }
        }
    }
    drop(subscription);
    let mut state = lock(&inner.state);
    if !reader.finished.swap(true, Ordering::SeqCst) && reader.closing.load(Ordering::SeqCst) {
        state.draining -= 1;
    }
    if state
        .readers
        .get(&key)
        .is_some_and(|r| Arc::ptr_eq(r, &reader))
    {
        state.readers.remove(&key);
    }
    if state.close_batch(&template.project_id) {
        inner.wake.notify_one();
    }
    drop(state);
    inner.changed.notify_waiters();
}

/// Resolves once `reader` was told to finish.
async fn closing(reader: &Reader) {
    while !reader.closing.load(Ordering::SeqCst) {
        reader.notify.notified().await;
    }
}

impl Inner {
    /// Adds a subscription's batch to its project's pending events.
    fn ingest(&self, template: &Arc<EventTemplate>, batch: LogBatch) {
        let events: Vec<(Pending, usize)> = batch
            .entries()
            .map(|entry| {
                let level = level(entry.stream(), entry.line());
                let size = template.line_len(&entry, level) + 1;
                let event = Pending {
                    entry,
                    level,
                    template: Arc::clone(template),
                };
                (event, size)
            })
            .collect();
        let mut dropped = batch.missed;
        let mut wake = false;
        let now = Instant::now();
        let mut state = lock(&self.state);
        for (event, size) in events {
            let memory = EVENT_MEMORY + event.entry.line().len() as u64;
            if state.abandoned
                || state.pending_events >= self.max_pending_events
                || state.pending_bytes + memory > self.max_pending_bytes
            {
                dropped += 1;
                continue;
            }
            state.pending_events += 1;
            state.pending_bytes += memory;
            if let Some(behind) = state.backlog_of(
                &template.project_id,
                size as u64,
                self.settings.max_file_size,
            ) {
                behind.events.push(event);
                behind.size += size;
                behind.memory += memory;
                continue;
            }
            let batch = state
                .open
                .entry(template.project_id.clone())
                .or_insert_with(|| {
                    wake = true;
                    Batch {
                        project_id: template.project_id.clone(),
                        events: Vec::new(),
                        size: 0,
                        memory: 0,
                        due: now + self.settings.flush_interval,
                    }
                });
            batch.events.push(event);
            batch.size += size;
            batch.memory += memory;
            if batch.events.len() >= self.settings.batch_size
                || batch.size >= self.settings.max_file_size
            {
                state.close_batch(&template.project_id);
                wake = true;
            }
        }
        state.dropped += dropped;
        drop(state);
        if dropped > 0 && !self.warned_drop.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "observability: dropped {dropped} log events (the storage is behind or failing); getStats().observability counts every drop"
            );
        }
        if wake {
            self.wake.notify_one();
        }
    }

    /// Closes every pending batch and resolves once those (and the lines of logs that were
    /// closing) are written or dropped. Lines of a live log that its reader has not taken yet
    /// go with that log's next batch.
    async fn flush(&self) {
        let mut target = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if target.is_none() && state.draining == 0 {
                    let projects: Vec<String> = state.open.keys().cloned().collect();
                    for project in projects {
                        state.close_batch(&project);
                    }
                    target = Some(state.queued);
                    self.wake.notify_one();
                }
                if target.is_some_and(|target| state.done >= target) {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Gives up, for a retiring persister out of time, on every event not yet handed to the
    /// storage (counted as dropped) and on retrying the write in progress.
    fn abandon(&self, waited: Duration) {
        let mut state = lock(&self.state);
        state.abandoned = true;
        let open: Vec<Batch> = std::mem::take(&mut state.open).into_values().collect();
        let ready: Vec<Batch> = state.ready.drain(..).collect();
        state.done += ready.len() as u64;
        let mut given_up = 0;
        for batch in open.iter().chain(&ready) {
            let events = batch.events.len() as u64;
            state.pending_events -= events;
            state.pending_bytes -= batch.memory;
            given_up += events;
        }
        state.dropped += given_up;
        drop(state);
        self.changed.notify_waiters();
        if given_up > 0 {
            tracing::warn!(
                "observability: a replaced storage did not take its last {given_up} log events within {} ms; they are counted in getStats().observability.dropped",
                waited.as_millis()
            );
        }
    }

    /// Resolves once no event is pending and no reader is still taking lines.
    async fn settled(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = lock(&self.state);
                if state.pending_events == 0 && state.draining == 0 {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Writes `batch` to a new file, retrying with backoff (unless the persister was
    /// abandoned meanwhile); whether it was written.
    async fn write(&self, batch: &Batch) -> bool {
        let path = self.ids.file_path(&batch.project_id, now_ms());
        let content = batch.content(&self.ids);
        let mut backoff = RETRY_BACKOFF;
        for attempt in 1..=WRITE_ATTEMPTS {
            if attempt > 1 && lock(&self.state).abandoned {
                break;
            }
            let result = tokio::time::timeout(
                self.write_timeout,
                self.storage.write(&path, content.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} ms",
                    self.write_timeout.as_millis()
                ))
            });
            match result {
                Ok(()) => return true,
                Err(why) => {
                    if !self.warned_failure.swap(true, Ordering::SeqCst) {
                        tracing::warn!(
                            "observability storage failed to write '{path}' (attempt {attempt} of {WRITE_ATTEMPTS}): {why}; further failures are counted in getStats().observability.dropped"
                        );
                    }
                    if attempt < WRITE_ATTEMPTS {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        false
    }
}

/// The writer: closes batches that are due and writes ready ones in order. Ends once the
/// persister is gone.
async fn write_batches(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next_due = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let batch = {
                let mut state = lock(&inner.state);
                let now = Instant::now();
                let due: Vec<String> = state
                    .open
                    .values()
                    .filter(|batch| batch.due <= now)
                    .map(|batch| batch.project_id.clone())
                    .collect();
                for project in due {
                    state.close_batch(&project);
                }
                let batch = state.ready.pop_front();
                state.writing = batch.is_some();
                batch
            };
            match batch {
                Some(batch) => {
                    let written = inner.write(&batch).await;
                    let mut state = lock(&inner.state);
                    state.writing = false;
                    let events = batch.events.len() as u64;
                    state.pending_events -= events;
                    state.pending_bytes -= batch.memory;
                    if written {
                        state.written += events;
                    } else {
                        state.dropped += events;
                    }
                    state.done += 1;
                    drop(state);
                    inner.changed.notify_waiters();
                    continue;
                }
                None => lock(&inner.state).open.values().map(|b| b.due).min(),
            }
        };
        match next_due {
            Some(due) => {
                let _ = tokio::time::timeout_at(due, wake.notified()).await;
            }
            None => wake.notified().await,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunnerConfig;
    use crate::logs::{LogLimits, Stream};
    use std::path::Path;
    use std::sync::atomic::AtomicU32;

    /// What an in-memory storage does with a write.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Accept,
        /// Rejects the first `n` writes, then accepts.
        RejectFirst(u32),
        Hang,
        /// Accepts after this long.
        Slow(Duration),
    }

    struct Memory {
        mode: Mode,
        calls: AtomicU32,
        files: Mutex<Vec<(String, String)>>,
    }

    impl Memory {
        fn new(mode: Mode) -> Arc<Self> {
            Arc::new(Memory {
                mode,
                calls: AtomicU32::new(0),
                files: Mutex::new(Vec::new()),
            })
        }

        fn files(&self) -> Vec<(String, String)> {
            lock(&self.files).clone()
        }

        /// Every event written, in file order.
        fn events(&self) -> Vec<serde_json::Value> {
            self.files()
                .iter()
                .flat_map(|(_, content)| {
                    assert!(content.ends_with('\n'));
                    content
                        .lines()
                        .map(|line| serde_json::from_str(line).expect("a JSON line"))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }

    impl FileStorage for Memory {
        fn write<'a>(
            &'a self,
            path: &'a str,
            content: String,
        ) -> BoxFuture<'a, std::result::Result<(), String>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match self.mode {
                    Mode::Hang => std::future::pending().await,
                    Mode::Slow(pause) => {
                        tokio::time::sleep(pause).await;
                        lock(&self.files).push((path.to_owned(), content));
                        Ok(())
                    }
                    Mode::RejectFirst(n) if call < n => Err(format!("disk full ({call})")),
                    _ => {
                        lock(&self.files).push((path.to_owned(), content));
                        Ok(())
                    }
                }
            })
        }
    }

    fn server() -> LogOwner {
        LogOwner::Server {
            server_id: "srv-1".into(),
            deployment_id: "dep-1".into(),
            project_id: "proj-1".into(),
        }
    }

    fn settings(batch_size: usize, flush_ms: u64) -> ObservabilitySettings {
        ObservabilitySettings {
            batch_size,
            flush_interval: Duration::from_millis(flush_ms),
            max_file_size: 10 * 1024 * 1024,
        }
    }

    fn lines(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("line {i}")).collect()
    }

    /// Waits up to 10 s for `condition`.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_batches_are_written_in_order_and_flush_writes_the_rest() {
        let storage = Memory::new(Mode::Accept);
        let persister =
            Persister::new(storage.clone(), settings(3, 60_000), Duration::from_secs(5))
                .expect("a runtime");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        persister.log_opened(&server(), &log);
        log.append_lines(Stream::Stdout, lines(0, 4));
        until("a full file", || storage.files().len() == 1).await;
        log.append_lines(Stream::Stderr, vec!["oops".to_owned()]);
        log.append_lines(Stream::Stdout, vec![r#"{"level":40,"msg":"w"}"#.to_owned()]);
        until("two full files", || storage.files().len() == 2).await;
        log.append_lines(Stream::Stdout, lines(4, 5));
        until("one pending", || persister.stats().pending == 1).await;
        assert_eq!(storage.files().len(), 2);
        persister.flush().await;
        let files = storage.files();
        assert_eq!(files.len(), 3);
        for (path, _) in &files {
            assert!(path.starts_with("observability/log/proj-1/"), "{path}");
            assert!(path.ends_with(".jsonl"), "{path}");
        }
        let events = storage.events();
        let messages: Vec<&str> = events
            .iter()
            .map(|e| e["data"]["message"].as_str().expect("a message"))
            .collect();
        assert_eq!(
            messages,
            [
                "line 0",
                "line 1",
                "line 2",
                "line 3",
                "oops",
                r#"{"level":40,"msg":"w"}"#,
                "line 4"
            ]
        );
        let levels: Vec<&str> = events
            .iter()
            .map(|e| e["data"]["level"].as_str().expect("a level"))
            .collect();
        assert_eq!(
            levels,
            ["info", "info", "info", "info", "error", "warn", "info"]
        );
        assert_eq!(events[4]["data"]["attributes"]["stream"], "stderr");
        assert_eq!(
            persister.stats(),
            ObservabilityStats {
                written: 7,
                pending: 0,
                dropped: 0
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_written_when_its_interval_ends_or_it_reaches_the_file_size() {
        let storage = Memory::new(Mode::Accept);
        let persister = Persister::new(storage.clone(), settings(100, 100), Duration::from_secs(5))
            .expect("a runtime");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        persister.log_opened(&server(), &log);
        let started = Instant::now();
        log.append_lines(Stream::Stdout, lines(0, 2));
        until("the interval's file", || storage.files().len() == 1).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(storage.events().len(), 2);

        let small = Memory::new(Mode::Accept);
        let persister = Persister::new(
            small.clone(),
            ObservabilitySettings {
                max_file_size: 1,
                ..settings(100, 60_000)
            },
            Duration::from_secs(5),
        )
        .expect("a runtime");
        persister.log_opened(&server(), &log);
        log.append_lines(Stream::Stdout, lines(0, 3));
        until("one file per event", || small.files().len() == 3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_log_is_written_at_once_and_builds_are_tagged() {
        let storage = Memory::new(Mode::Accept);
        let persister = Persister::new(
            storage.clone(),
            settings(100, 60_000),
            Duration::from_secs(5),
        )
        .expect("a runtime");
        let build = LogOwner::Build {
            build_id: "b-1".into(),
            project_id: "proj-2".into(),
        };
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        persister.log_opened(&build, &log);
        log.append_lines(Stream::Stdout, lines(0, 5));
        persister.log_closed(&build);
        until("the closed log's file", || storage.files().len() == 1).await;
        let events = storage.events();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["data"]["attributes"]["source"], "build");
        assert_eq!(events[0]["data"]["attributes"]["buildId"], "b-1");
        assert!(
            storage.files()[0]
                .0
                .starts_with("observability/log/proj-2/")
        );
        log.append_lines(Stream::Stdout, lines(5, 6));
        persister.flush().await;
        assert_eq!(
            storage.events().len(),
            5,
            "lines after the close are not read"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_writes_are_retried_then_dropped() {
        let flaky = Memory::new(Mode::RejectFirst(2));
        let persister = Persister::new(flaky.clone(), settings(2, 60_000), Duration::from_secs(5))
            .expect("a runtime");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        persister.log_opened(&server(), &log);
        log.append_lines(Stream::Stdout, lines(0, 2));
        until("the events taken", || persister.stats().pending == 2).await;
        persister.flush().await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        let files = flaky.files();
        assert_eq!(files.len(), 1);
        assert_eq!(persister.stats().written, 2);

        let failing = Memory::new(Mode::RejectFirst(u32::MAX));
        let persister =
            Persister::new(failing.clone(), settings(2, 60_000), Duration::from_secs(5))
                .expect("a runtime");
        persister.log_opened(&server(), &log);
        log.append_lines(Stream::Stdout, lines(0, 3));
        until("the events taken", || persister.stats().pending == 3).await;
        persister.flush().await;
        assert_eq!(failing.calls.load(Ordering::SeqCst), 2 * WRITE_ATTEMPTS);
        assert_eq!(
            persister.stats(),
            ObservabilityStats {
                written: 0,
                pending: 0,
                dropped: 3
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_storage_gets_larger_files_instead_of_a_backlog() {
        let storage = Memory::new(Mode::Slow(Duration::from_millis(300)));
        let persister =
            Persister::new(storage.clone(), settings(2, 60_000), Duration::from_secs(5))
                .expect("a runtime");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        persister.log_opened(&server(), &log);
        log.append_lines(Stream::Stdout, lines(0, 2));
        until("the first write", || {
            storage.calls.load(Ordering::SeqCst) == 1
        })
        .await;
        log.append_lines(Stream::Stdout, lines(2, 4));
        until("a full batch waiting", || persister.stats().pending == 4).await;
        log.append_lines(Stream::Stdout, lines(4, 7));
        until("the backlog taken", || persister.stats().pending == 7).await;
        persister.flush().await;
        let sizes: Vec<usize> = storage
            .files()
            .iter()
            .map(|(_, content)| content.lines().count())
            .collect();
        assert_eq!(sizes, [2, 5]);
        let messages: Vec<String> = storage
            .events()
            .iter()
            .map(|e| e["data"]["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(messages, lines(0, 7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_storage_bounds_what_is_held_and_never_blocks_the_log() {
        let storage = Memory::new(Mode::Hang);
        let limit = 10_000;
        let persister = Persister::with_limits(
            storage.clone(),
            settings(100, 60_000),
            Duration::from_millis(50),
            (limit, MAX_PENDING_BYTES),
        )
        .expect("a runtime");
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100_000)));
        persister.log_opened(&server(), &log);
        let total = 50_000u64;
        let started = Instant::now();
        for chunk in 0..50 {
            log.append_lines(Stream::Stdout, lines(chunk * 1_000, chunk * 1_000 + 1_000));
            tokio::task::yield_now().await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "appending waited"
        );
        assert_eq!(log.len(), total as usize);
        until("every event accounted for", || {
            let stats = persister.stats();
            stats.pending + stats.dropped == total
        })
        .await;
        let stats = persister.stats();
        assert!(stats.pending <= limit, "{stats:?}");
        assert!(stats.dropped >= total - limit, "{stats:?}");
        assert_eq!(stats.written, 0);
        // The first batch is given up on after every attempt timed out.
        until("a dropped batch", || {
            storage.calls.load(Ordering::SeqCst) > WRITE_ATTEMPTS
        })
        .await;
        assert!(persister.stats().dropped > stats.dropped);
    }

    #[test]
    fn the_config_names_each_wrong_field() {
        let parse = |value: serde_json::Value| RunnerConfig::from_json(&value, Path::new("/srv"));
        let config = parse(serde_json::json!({
            "observability": { "batchSize": 7, "flushIntervalMs": 250, "maxFileSize": 4096 }
        }))
        .expect("a valid config");
        assert_eq!(
            config.observability,
            ObservabilitySettings {
                batch_size: 7,
                flush_interval: Duration::from_millis(250),
                max_file_size: 4096
            }
        );
        assert_eq!(
            parse(serde_json::Value::Null)
                .expect("defaults")
                .observability,
            ObservabilitySettings::default()
        );
        for (input, field) in [
            (serde_json::json!({ "observability": 5 }), "observability"),
            (
                serde_json::json!({ "observability": { "batchSize": 0 } }),
                "observability.batchSize",
            ),
            (
                serde_json::json!({ "observability": { "flushIntervalMs": "soon" } }),
                "observability.flushIntervalMs",
            ),
            (
                serde_json::json!({ "observability": { "maxFileSize": -1 } }),
                "observability.maxFileSize",
            ),
        ] {
            let message = parse(input).expect_err("invalid").to_string();
            assert!(
                message.starts_with(&format!("Invalid {field}:")),
                "{message}"
            );
        }
    }
}
