//! Splitting a child's output bytes into lines.
//!
//! Reads from a pipe end wherever the kernel chooses, so a line (or a multi-byte character) may
//! arrive in pieces. The framer keeps the unfinished tail between reads, ends lines at `\n`
//! (dropping a `\r` before it), replaces invalid UTF-8 instead of failing, and caps the length of
//! one line: past the cap, the line is emitted at once, cut at a character boundary with a
//! visible marker, and the rest of it is dropped up to the next newline. Memory held is therefore
//! at most the cap, whatever the child writes.

/// The default cap on one line's length, in bytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Appended to a line that was cut at the cap.
pub fn truncation_marker(max_line_bytes: usize) -> String {
    format!(" … [line truncated: longer than {max_line_bytes} bytes]")
}

/// Turns a stream of byte chunks into lines.
#[derive(Debug)]
pub struct LineFramer {
    pending: Vec<u8>,
    max_line_bytes: usize,
    /// True while the rest of an over-long line is being dropped.
    skipping: bool,
}

impl LineFramer {
    /// A framer that cuts lines longer than `max_line_bytes` (at least 1).
    pub fn new(max_line_bytes: usize) -> Self {
        LineFramer {
            pending: Vec::new(),
            max_line_bytes: max_line_bytes.max(1),
            skipping: false,
        }
    }

    /// Feeds one chunk; `emit` receives every line the chunk completes, in order.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        self.push_lines(bytes, |block| block.split('\n').for_each(&mut emit));
    }

    /// Feeds one chunk; `emit` receives the lines the chunk completes, in order, in blocks:
    /// each block is one or more whole lines joined by `\n` (no line holds one). The lines
    /// between the chunk's first and last newline are lent as one block straight from the
    /// chunk, without looking at each line, when that stretch is valid UTF-8, holds no `\r`
    /// and is no longer than the cap (so no line in it can be); otherwise, and for the line
    /// the chunk ends and the one it starts, line by line.
    pub fn push_lines(&mut self, bytes: &[u8], mut emit: impl FnMut(&str)) {
        let Some(first) = memchr::memchr(b'\n', bytes) else {
            self.push_each(bytes, &mut emit);
            return;
        };
        // The line in progress (pending, or being dropped) ends at the first newline.
        self.push_each(&bytes[..=first], &mut emit);
        let rest = &bytes[first + 1..];
        let Some(last) = memchr::memrchr(b'\n', rest) else {
            self.push_each(rest, &mut emit);
            return;
        };
        match self.whole_lines(&rest[..last]) {
            Some(block) => emit(block),
            None => self.push_each(&rest[..=last], &mut emit),
        }
        self.push_each(&rest[last + 1..], &mut emit);
    }

    /// `lines` (complete lines joined by `\n`) as text when they need no change: valid UTF-8,
    /// no `\r` to strip, and no line over the cap.
    fn whole_lines<'a>(&self, lines: &'a [u8]) -> Option<&'a str> {
        if lines.len() > self.max_line_bytes || memchr::memchr(b'\r', lines).is_some() {
            return None;
        }
        std::str::from_utf8(lines).ok()
    }

    /// Frames `bytes` one line at a time, emitting each line it completes.
    fn push_each(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str)) {
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            let (segment, rest, ends_line) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.skipping {
                self.skipping = !ends_line;
                continue;
            }
            let room = self.max_line_bytes - self.pending.len();
            if ends_line {
                if segment.len() > room {
                    // The cap counts the line's raw bytes, a `\r` before the `\n` included, so
                    // that where reads happen to split the line never changes the result.
                    self.pending.extend_from_slice(&segment[..room]);
                    emit(&self.cut_pending());
                } else if self.pending.is_empty() {
                    emit(&line_from(strip_cr(segment)));
                } else {
                    self.pending.extend_from_slice(segment);
                    emit(&line_from(strip_cr(&self.pending)));
                    self.pending.clear();
                }
                continue;
            }
            if segment.len() <= room {
                self.pending.extend_from_slice(segment);
            } else {
                self.pending.extend_from_slice(&segment[..room]);
                emit(&self.cut_pending());
                self.skipping = true;
            }
        }
    }

    /// End of the stream: emits the unfinished last line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            emit(&line_from(strip_cr(&self.pending)));
            self.pending.clear();
        }
        self.skipping = false;
    }

    /// Caps one already-framed line (text from a caller rather than a pipe) the same way.
    pub fn cap_line(&self, line: &str) -> String {
        if line.len() <= self.max_line_bytes {
            return line.to_owned();
        }
        let mut cut = self.max_line_bytes;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}{}", &line[..cut], truncation_marker(self.max_line_bytes))
    }

    /// Emits the capped pending bytes with the marker, cut where no character is split.
    fn cut_pending(&mut self) -> String {
        let cut = complete_prefix_len(&self.pending);
        let mut line = line_from(&self.pending[..cut]).into_owned();
        line.push_str(&truncation_marker(self.max_line_bytes));
        self.pending.clear();
        line
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The bytes as text: borrowed when valid UTF-8, with replacement characters otherwise.
fn line_from(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The length of `bytes` without a UTF-8 sequence left incomplete at its end by a cut.
fn complete_prefix_len(bytes: &[u8]) -> usize {
    // Walk back over at most three continuation bytes (0b10xxxxxx) to the sequence's lead byte.
    let mut lead = bytes.len();
    while lead > 0 && bytes.len() - lead < 3 && bytes[lead - 1] & 0b1100_0000 == 0b1000_0000 {
        lead -= 1;
    }
    let Some(&first) = lead.checked_sub(1).and_then(|i| bytes.get(i)) else {
        return bytes.len();
    };
    let expected = match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return bytes.len(),
    };
    if bytes.len() - (lead - 1) < expected {
        lead - 1
    } else {
        bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut framer = LineFramer::new(max);
        let mut lines = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |l| lines.push(l.to_owned()));
        }
        framer.finish(|l| lines.push(l.to_owned()));
        lines
    }

    #[test]
    fn splits_on_newlines_and_strips_crlf() {
        assert_eq!(frame(&[b"a\nb\r\n\nc"], 100), vec!["a", "b", "", "c"]);
    }

    #[test]
    fn joins_lines_across_chunks() {
        assert_eq!(
            frame(&[b"hel", b"lo\nwor", b"ld\n"], 100),
            vec!["hello", "world"]
        );
    }

    #[test]
    fn no_newline_at_eof_still_gives_the_last_line() {
        assert_eq!(frame(&[b"one\ntwo"], 100), vec!["one", "two"]);
        assert!(frame(&[b""], 100).is_empty());
        assert_eq!(frame(&[b"x\n"], 100), vec!["x"]);
    }

    #[test]
    fn a_multibyte_character_split_at_every_byte_survives() {
        let text = "añ€😀z\n";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(frame(&[a, b], 100), vec!["añ€😀z"], "split at {split}");
        }
        // Three-way splits too.
        for i in 0..bytes.len() {
            for j in i..bytes.len() {
                let lines = frame(&[&bytes[..i], &bytes[i..j], &bytes[j..]], 100);
                assert_eq!(lines, vec!["añ€😀z"], "splits at {i}, {j}");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            frame(&[b"ok \xff\xfe end\n"], 100),
            vec!["ok \u{fffd}\u{fffd} end"]
        );
    }

    #[test]
    fn a_huge_line_is_cut_with_a_marker_and_the_rest_dropped() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\nnext\n");
        let lines = frame(&[&input[..300], &input[300..]], 64);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            format!("{}{}", "x".repeat(64), truncation_marker(64))
        );
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn cutting_never_splits_a_character() {
        let input = "€".repeat(30); // 90 bytes; a cap of 64 falls inside a character
        let lines = frame(&[input.as_bytes(), b"\n"], 64);
        assert_eq!(
            lines[0],
            format!("{}{}", "€".repeat(21), truncation_marker(64))
        );
    }

    #[test]
    fn output_without_newlines_stays_bounded() {
        let mut framer = LineFramer::new(1024);
        let chunk = vec![b'y'; 4096];
        let mut emitted = 0;
        for _ in 0..1000 {
            framer.push(&chunk, |_| emitted += 1);
            assert!(framer.pending.len() <= 1024);
        }
        assert_eq!(emitted, 1, "one cut line, the rest dropped until a newline");
        framer.push(b"\nafter\n", |_| emitted += 1);
        assert_eq!(emitted, 2);
    }

    #[test]
    fn a_long_line_inside_one_read_is_cut_too() {
        let lines = frame(&[b"0123456789\nok\n"], 4);
        assert_eq!(
            lines,
            vec![format!("0123{}", truncation_marker(4)), "ok".to_owned()]
        );
    }

    #[test]
    fn a_line_exactly_at_the_cap_is_kept_whole() {
        let line = "z".repeat(64);
        assert_eq!(frame(&[line.as_bytes(), b"\n"], 64), vec![line.clone()]);
    }

    #[test]
    fn cap_line_limits_caller_text() {
        let framer = LineFramer::new(4);
        assert_eq!(framer.cap_line("abcd"), "abcd");
        assert_eq!(
            framer.cap_line("aé€"),
            format!("aé{}", truncation_marker(4))
        );
    }
}
