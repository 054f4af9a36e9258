//! What a caller asks of a stored log: the lines since a time or the last few ([`LogQuery`]),
//! or one page older than a cursor ([`PageQuery`]). The choice between the options, and their
//! defaults, are made here so that every surface answers the same way.

use super::{LogEntry, LogPage, LogStore};
use crate::error::{Error, Result};

/// Entries a page holds when the caller does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// A read of a log as text: `since` (milliseconds since the epoch) wins over `tail` (the newest
/// so many lines); with neither, every stored line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Entries stamped at or after this time.
    pub since_ms: Option<u64>,
    /// The newest this many entries.
    pub tail: Option<usize>,
}

impl LogQuery {
    /// The entries of `log` the query selects, oldest first.
    pub fn entries(&self, log: &LogStore) -> Vec<LogEntry> {
        match (self.since_ms, self.tail) {
            (Some(since), _) => log.since(since),
            (None, Some(tail)) => log.tail(tail),
            (None, None) => log.all(),
        }
    }
}

/// A paginated read: up to `limit` entries older than the cursor `before` (an entry id of an
/// earlier page; the newest entries when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    limit: usize,
    before: Option<u64>,
}

impl PageQuery {
    /// A query of `limit` entries ([`DEFAULT_PAGE_LIMIT`] when `None`) before the cursor
    /// `before`; a cursor that is not one of ours is refused, naming argument `before`.
    pub fn new(limit: Option<usize>, before: Option<&str>) -> Result<Self> {
        let before = match before {
            None => None,
            Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| {
                Error::invalid(
                    "before",
                    format!("expected a cursor from a previous page (got '{cursor}')"),
                )
            })?),
        };
        Ok(PageQuery {
            limit: limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            before,
        })
    }

    /// The page of `log`.
    pub fn page(&self, log: &LogStore) -> LogPage {
        log.page(self.limit, self.before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogLimits, Stream};

    fn store(lines: usize) -> LogStore {
        let log = LogStore::new(LogLimits::with_lines(1_000));
        log.append_lines(Stream::Stdout, (0..lines).map(|i| format!("line {i}")));
        log
    }

    fn texts(entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.line().to_owned()).collect()
    }

    #[test]
    fn since_wins_over_tail_and_neither_reads_everything() {
        let log = store(5);
        let all = LogQuery::default().entries(&log);
        assert_eq!(all.len(), 5);
        let tail = LogQuery {
            since_ms: None,
            tail: Some(2),
        };
        assert_eq!(texts(&tail.entries(&log)), ["line 3", "line 4"]);
        let since = LogQuery {
            since_ms: Some(0),
            tail: Some(2),
        };
        assert_eq!(since.entries(&log).len(), 5);
    }

    #[test]
    fn a_page_defaults_to_a_hundred_entries_and_refuses_foreign_cursors() {
        let log = store(150);
        let page = PageQuery::new(None, None).expect("no cursor").page(&log);
        assert_eq!(page.entries.len(), DEFAULT_PAGE_LIMIT);
        assert!(page.has_more);
        let error = PageQuery::new(Some(1), Some("x")).expect_err("not a cursor");
        assert_eq!(
            error.to_string(),
            "Invalid before: expected a cursor from a previous page (got 'x')"
        );
    }
}
