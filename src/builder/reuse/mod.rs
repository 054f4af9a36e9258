//! Build reuse (issue 31): fingerprints of a build's inputs and a store of pristine snapshots
//! of what builds left, so a rebuild with unchanged inputs restores instead of rebuilding.
//!
//! - [`fingerprint`]: [`Fingerprint`], one SHA-256 over named, length-prefixed fields;
//! - [`scan`]: [`scan_tree`], every entry of a tree with its files' digests, hashed once per
//!   runner through a [`DigestMemo`]; [`TreeScan::digest`] (a fingerprint field) and
//!   [`TreeScan::changed_since`] (what an install added);
//! - [`store`]: [`BuildCache`], content-addressed objects shared by snapshot manifests, with
//!   a least-recently-used bound; `manifest` (the checked JSON of one snapshot), `restore`
//!   (recreating entries without following a symlink), `selection` (what a snapshot keeps) and `copy` (reflink or kernel copy,
//!   never a hard link).
//!
//! The pipeline calls it from blocking tasks: scan the copied source (with excludes) for the
//! fingerprints, [`BuildCache::lookup`] then [`BuildCache::restore`], or build and
//! [`BuildCache::save`] a scan of the result.

mod copy;
pub mod fingerprint;
mod manifest;
mod parallel;
mod restore;
pub mod scan;
mod selection;
pub mod store;

pub use fingerprint::{ContentDigest, Fingerprint};
pub use manifest::{MAX_MANIFEST_BYTES, MAX_MANIFEST_ENTRIES, SnapshotInfo, SnapshotKind};
pub use restore::RestoreStats;
pub use scan::{DigestMemo, EntryKind, ScanEntry, SkippedEntry, TreeScan, scan_tree};
pub use selection::Selection;
pub use store::{BuildCache, CacheStats, SnapshotKey};

#[cfg(test)]
mod tests;
