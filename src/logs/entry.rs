//! The lines handed out: handles on the chunk that holds them, so handing out or cloning one
//! copies no text (and keeps that chunk's memory alive while it lives). A [`LogEntry`] is one
//! line, as queries return them; a [`LogRun`] is consecutive lines of one chunk, as subscribers
//! receive them.

use std::fmt;
use std::sync::Arc;

use super::chunk::{Chunk, Stream};
use super::time::iso8601_utc;

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
        LogEntry {
            chunk: Arc::new(Chunk::single(id, timestamp_ms, stream, line)),
            index: 0,
        }
    }

    /// Line `index` of `chunk`.
    #[inline]
    pub(super) fn at(chunk: &Arc<Chunk>, index: u32) -> Self {
        LogEntry {
            chunk: Arc::clone(chunk),
            index,
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

/// Consecutive lines of one chunk (same stream and timestamp, consecutive ids), as a
/// subscriber receives them.
#[derive(Debug, Clone)]
pub struct LogRun {
    chunk: Arc<Chunk>,
    start: u32,
    end: u32,
}

impl LogRun {
    /// Every line of `chunk`.
    #[inline]
    pub(super) fn whole(chunk: &Arc<Chunk>) -> Self {
        LogRun {
            chunk: Arc::clone(chunk),
            start: 0,
            // At most one line per byte of a chunk's text, whose offsets are u32.
            end: chunk.len() as u32,
        }
    }

    /// The first `count` lines (fewer than this run has); this run keeps the rest.
    #[inline]
    pub(super) fn split_off_front(&mut self, count: usize) -> LogRun {
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
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// The bytes the first `count` lines are charged against a budget.
    #[inline]
    pub(super) fn cost_of_first(&self, count: usize) -> usize {
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
        (self.start..self.end).map(|index| LogEntry::at(&self.chunk, index))
    }

    /// The lines joined by `\n`, lent from the stored text; `None` when a line holds a `\n`
    /// itself (the text would not split back into the same lines) or the run is empty.
    pub fn joined(&self) -> Option<&str> {
        (!self.chunk.inner_newline && !self.is_empty())
            .then(|| self.chunk.joined(self.start as usize, self.end as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LineFramer, LogLimits, LogStore};

    #[test]
    fn text_form_prefixes_stderr() {
        let store = LogStore::new(LogLimits::with_lines(10));
        store.append_lines(Stream::Stdout, vec!["out"]);
        store.append_lines(Stream::Stderr, vec!["err"]);
        assert_eq!(join_text(&store.all()), "out\n[stderr] err");
        assert_eq!(store.all()[1].text(), "[stderr] err");
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
}
