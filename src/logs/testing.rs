//! Helpers shared by the logs' unit tests.

use super::LogEntry;
use super::chunk::ENTRY_OVERHEAD_BYTES;

/// `n` lines `line 0`, `line 1`, ….
pub(super) fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

/// The lines of `entries`.
pub(super) fn texts(entries: &[LogEntry]) -> Vec<String> {
    entries.iter().map(|e| e.line().to_owned()).collect()
}

/// The bytes charged for `entries` when stored one by one.
pub(super) fn charged(entries: &[LogEntry]) -> usize {
    entries
        .iter()
        .map(|e| e.line().len() + ENTRY_OVERHEAD_BYTES)
        .sum()
}
