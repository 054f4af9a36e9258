//! Which entries of a scan a snapshot keeps, as manifest entries.

use std::collections::{HashMap, HashSet};

use super::fingerprint::ContentDigest;
use super::manifest::{ManifestEntry, StoredKind, check_relative_path};
use super::scan::{EntryKind, ScanEntry, TreeScan};
use crate::error::{Error, Result};

/// What part of a scanned tree a snapshot keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every entry of the scan.
    Whole,
    /// These relative paths (a directory stands for its subtree), with the directories that
    /// lead to them: e.g. `TreeScan::changed_since`, what an install added.
    Paths(Vec<String>),
}

/// The entries of `scan` that `selection` keeps, in scan order.
pub(crate) fn select<'a>(scan: &'a TreeScan, selection: &Selection) -> Result<Vec<&'a ScanEntry>> {
    let Selection::Paths(paths) = selection else {
        return Ok(scan.entries().iter().collect());
    };
    let mut listed: HashSet<&str> = HashSet::new();
    let mut leading: HashSet<&str> = HashSet::new();
    for path in paths {
        check_relative_path(path).map_err(|reason| Error::invalid("selection", reason))?;
        listed.insert(path);
        let mut rest = path.as_str();
        while let Some((parent, _)) = rest.rsplit_once('/') {
            leading.insert(parent);
            rest = parent;
        }
    }
    let chosen: Vec<&ScanEntry> = scan
        .entries()
        .iter()
        .filter(|entry| {
            let path = entry.path.as_str();
            listed.contains(path) || leading.contains(path) || has_listed_ancestor(path, &listed)
        })
        .collect();
    let found: HashSet<&str> = chosen.iter().map(|entry| entry.path.as_str()).collect();
    if let Some(absent) = listed.iter().find(|path| !found.contains(*path)) {
        return Err(Error::invalid(
            "selection",
            format!("{absent:?} is not in the scanned tree"),
        ));
    }
    Ok(chosen)
}

/// Whether a directory that leads to `path` is in `listed`.
fn has_listed_ancestor(path: &str, listed: &HashSet<&str>) -> bool {
    let mut rest = path;
    while let Some((parent, _)) = rest.rsplit_once('/') {
        if listed.contains(parent) {
            return true;
        }
        rest = parent;
    }
    false
}

pub(crate) fn stored(entry: &ScanEntry) -> ManifestEntry {
    let kind = match &entry.kind {
        EntryKind::Dir => StoredKind::Dir,
        EntryKind::File(digest) => StoredKind::File {
            size: entry.size,
            digest: *digest,
        },
        EntryKind::Symlink(target) => StoredKind::Symlink(target.clone()),
    };
    ManifestEntry {
        path: entry.path.clone(),
        kind,
        mode: entry.mode,
        mtime_ns: entry.mtime_ns,
    }
}

pub(crate) fn digests_with_sizes(entries: &[ManifestEntry]) -> HashMap<ContentDigest, u64> {
    entries
        .iter()
        .filter_map(|entry| match entry.kind {
            StoredKind::File { size, digest } => Some((digest, size)),
            _ => None,
        })
        .collect()
}

pub(crate) fn distinct_objects(entries: &[ManifestEntry]) -> Vec<ContentDigest> {
    digests_with_sizes(entries).into_keys().collect()
}
