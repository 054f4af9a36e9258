//! Build reuse (issue 31): fingerprints of a build's inputs and a store of pristine snapshots
//! of what builds left, so a rebuild with unchanged inputs restores instead of rebuilding.
//!
//! - [`fingerprint`]: [`Fingerprint`], one SHA-256 over named, length-prefixed fields;
//! - [`scan`]: [`scan_tree`], every entry of a tree with its files' digests, hashed once per
//!   runner through a [`DigestMemo`]; [`TreeScan::digest`] (a fingerprint field) and
//!   [`TreeScan::changed_since`] (what an install added);
//! - [`store`]: [`BuildCache`], content-addressed objects shared by snapshot manifests, with
//!   a least-recently-used bound; `manifest` (the checked JSON of one snapshot), `restore`
//!   (recreating entries without following a symlink, checked before and verified while
//!   copying), `selection` (what a snapshot keeps), `store_files` (manifests and objects on
//!   disk, the store's lock) and `copy` (reflink or kernel copy, never a hard link).
//!
//! The pipeline calls it from blocking tasks (every call does file I/O):
//!
//! ```text
//! cache = BuildCache::open(<buildDir>/.runner/build-cache, max_bytes)      once per runner
//! source = scan_tree(build_path, &["node_modules", ".git", ...], cache.memo())
//! key = SnapshotKey { kind: Output, project_id, fingerprint: Fingerprint::new("output-v1")
//!           .digest("source", &source.digest()).text("pm", ...).map("env", ...).finish() }
//! if let Some(hit) = cache.lookup(&key) { cache.restore(&hit, build_path)? ... }   // else build
//! before = scan_tree(build_path, &[], memo); install; after = scan_tree(build_path, &[], memo)
//! cache.save(&install_key, build_id, &after, &Selection::Paths(after.changed_since(&before)), in_use)
//! after the build: cache.save(&key, build_id, &scan_tree(build_path, ...)?, &Selection::Whole, in_use)
//! ```

mod copy;
pub mod fingerprint;
mod manifest;
mod parallel;
mod restore;
pub mod scan;
mod selection;
pub mod store;
mod store_files;

pub use fingerprint::{ContentDigest, Fingerprint};
pub use manifest::{MAX_MANIFEST_BYTES, MAX_MANIFEST_ENTRIES, SnapshotInfo, SnapshotKind};
pub use restore::RestoreStats;
pub use scan::{DigestMemo, EntryKind, ScanEntry, SkippedEntry, TreeScan, scan_tree};
pub use selection::Selection;
pub use store::{BuildCache, CacheStats, SnapshotKey};

#[cfg(test)]
mod tests;
