//! How lines are packed: the lines of one append are stored together as a chunk, their text
//! back to back with `\n` between and the offset where each ends. Storing a line therefore
//! costs a copy of its bytes and four bytes of offset, not an allocation. A chunk's lines share
//! one timestamp and one stream, and their ids follow one by one from the chunk's first.

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
pub(super) const ENTRY_OVERHEAD_BYTES: usize = 64;

/// The most text a chunk holds, unless one line alone is longer: the memory that the oldest,
/// partly evicted chunk keeps beyond the store's bounds stays small, and a chunk's offsets and
/// line numbers fit in a `u32` (a block of lines is never longer; see `LogStore::append_chunk`).
pub(super) const CHUNK_BYTES: usize = 64 * 1024;

/// The line length a chunk's offsets are first sized for.
const TYPICAL_LINE_BYTES: usize = 16;

/// Lines appended together, sharing one buffer, one timestamp and one stream.
#[derive(Debug)]
pub(super) struct Chunk {
    /// The id of the first line; the others follow one by one.
    pub(super) first_id: u64,
    pub(super) timestamp_ms: u64,
    pub(super) stream: Stream,
    /// The lines back to back, `\n` between them.
    text: Box<str>,
    /// Where each line but the last ends in `text` (the last ends with it).
    ends: Box<[u32]>,
    /// Whether some line holds a `\n` itself (caller text): then `text` does not split back
    /// into the lines at `\n`.
    pub(super) inner_newline: bool,
}

impl Chunk {
    /// A chunk of one line.
    pub(super) fn single(id: u64, timestamp_ms: u64, stream: Stream, line: &str) -> Self {
        Chunk {
            first_id: id,
            timestamp_ms,
            stream,
            text: line.into(),
            ends: Box::new([]),
            inner_newline: line.contains('\n'),
        }
    }

    /// Number of lines (always at least one).
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.ends.len() + 1
    }

    /// The id after the last line's.
    #[inline]
    pub(super) fn end_id(&self) -> u64 {
        self.first_id + self.len() as u64
    }

    #[inline]
    fn start(&self, index: usize) -> usize {
        match index {
            0 => 0,
            _ => self.ends[index - 1] as usize + 1,
        }
    }

    #[inline]
    fn end(&self, index: usize) -> usize {
        self.ends
            .get(index)
            .map_or(self.text.len(), |&end| end as usize)
    }

    /// The text of line `index`.
    #[inline]
    pub(super) fn line(&self, index: usize) -> &str {
        &self.text[self.start(index)..self.end(index)]
    }

    /// The text of lines `start..end` (at least one), `\n` between them.
    #[inline]
    pub(super) fn joined(&self, start: usize, end: usize) -> &str {
        &self.text[self.start(start)..self.end(end - 1)]
    }

    /// The bytes lines `start..end` are charged: their text and the overhead of each.
    #[inline]
    pub(super) fn cost(&self, start: usize, end: usize) -> usize {
        if start >= end {
            return 0;
        }
        let count = end - start;
        self.joined(start, end).len() - (count - 1) + count * ENTRY_OVERHEAD_BYTES
    }
}

/// Collects the lines of one append into chunks.
#[derive(Debug)]
pub(super) struct ChunkBuilder {
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
    pub(super) fn new(stream: Stream, timestamp_ms: u64, capacity: usize) -> Self {
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

    /// Lines pushed since the last seal.
    #[inline]
    pub(super) fn lines(&self) -> usize {
        self.lines
    }

    /// The bytes those lines are charged: their text and the overhead of each.
    #[inline]
    pub(super) fn cost(&self) -> usize {
        self.cost
    }

    /// Whether `text` (a line or a block of them) may join this chunk: it is empty, or stays
    /// within [`CHUNK_BYTES`] with it.
    #[inline]
    pub(super) fn has_room(&self, text: &str) -> bool {
        self.lines == 0 || self.text.len() + 1 + text.len() <= CHUNK_BYTES
    }

    /// Adds one line from a caller, which may hold a `\n`.
    #[inline]
    pub(super) fn push_line(&mut self, line: &str) {
        self.separate();
        self.text.push_str(line);
        self.lines += 1;
        self.cost += line.len() + ENTRY_OVERHEAD_BYTES;
        self.inner_newline |= memchr::memchr(b'\n', line.as_bytes()).is_some();
    }

    /// Adds a framer's block: one or more lines joined by `\n`, none holding one itself.
    #[inline]
    pub(super) fn push_block(&mut self, block: &str) {
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
    #[inline]
    fn separate(&mut self) {
        if self.lines > 0 {
            // Fits: a chunk that takes a second line or block stays within CHUNK_BYTES.
            self.ends.push(self.text.len() as u32);
            self.text.push('\n');
        }
    }

    /// The chunk of the lines pushed so far, numbered from `first_id` (its buffers shrunk to
    /// fit); the builder is left empty, with room for `next_capacity` bytes.
    pub(super) fn seal(&mut self, first_id: u64, next_capacity: usize) -> Chunk {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testing::{charged, texts};
    use crate::logs::{LineFramer, LogLimits, LogStore};

    #[test]
    fn a_big_append_is_split_into_chunks_and_queries_span_them() {
        let store = LogStore::new(LogLimits::with_lines(100_000));
        let many: Vec<String> = (0..20_000).map(|i| format!("line {i:06}")).collect();
        store.append_lines(Stream::Stdout, &many);
        assert!(store.chunk_count() > 1, "one chunk per {CHUNK_BYTES} bytes");
        assert_eq!(texts(&store.all()), many);
        let ids: Vec<u64> = store.all().iter().map(|e| e.id()).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
        let page = store.page(3, Some(12_000));
        assert_eq!(texts(&page.entries), many[11_996..11_999].to_vec());
        assert_eq!(texts(&store.tail(2)), many[19_998..].to_vec());
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
}
