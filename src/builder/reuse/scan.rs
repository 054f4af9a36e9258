//! Scanning a tree: every entry's path, kind, mode, size, modification time, and the SHA-256
//! of every file's content.
//!
//! [`scan_tree`] walks without following a symlink, skips the excluded names at any depth,
//! and lists (never keeps) named pipes, sockets, devices and names that are not UTF-8. Files
//! are hashed on up to two threads, through a [`DigestMemo`] so that a file hashed once (say
//! by the install snapshot) is not read again (by the output snapshot) while unchanged.
//!
//! # Caveats
//! A file is "unchanged" for the memo while its device, inode, size, modification time and
//! change time are; the change time cannot be set back by a process, so a rewrite that keeps
//! the modification time is still seen. A file written while it is read fails the scan.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::copy::{FileStamp, nanos, open_regular};
use super::fingerprint::{ContentDigest, FieldHasher, digest_reader};
use super::parallel::run_indexed;
use crate::error::{Error, Result};
use crate::sync::lock;

/// The deepest a scanned tree may go below its root.
pub const MAX_DEPTH: usize = 64;

/// The most entries one scan accepts.
pub const MAX_SCAN_ENTRIES: usize = 2_000_000;

/// The most files the memo remembers before it starts over.
const MEMO_CAPACITY: usize = 1_000_000;

/// The read buffer of each hashing thread.
const READ_BUFFER: usize = 256 * 1024;

/// What an entry is, with what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file and the SHA-256 of its content.
    File(ContentDigest),
    /// A symbolic link and its target, as written (never followed).
    Symlink(String),
}

/// One entry of a scanned tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// The path relative to the root, `/`-separated, without a leading `/`.
    pub path: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// The permission bits (`0o777` mask).
    pub mode: u32,
    /// The size in bytes (files) or as the file system reports it.
    pub size: u64,
    /// The modification time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// The version of the file seen (for files: what a copy checks it still has).
    pub(crate) stamp: FileStamp,
}

/// An entry a scan did not keep, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The path relative to the root (lossy for a name that is not UTF-8).
    pub path: String,
    /// Why, e.g. `a named pipe, socket or device`.
    pub reason: String,
}

/// A scanned tree: its entries sorted by path, and what was skipped.
#[derive(Debug, Clone)]
pub struct TreeScan {
    root: PathBuf,
    entries: Vec<ScanEntry>,
    skipped: Vec<SkippedEntry>,
}

impl TreeScan {
    /// The directory that was scanned.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entries, sorted by path (a directory before what it holds).
    pub fn entries(&self) -> &[ScanEntry] {
        &self.entries
    }

    /// The entries not kept: special files and names that are not UTF-8.
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }

    /// The total size of the files.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|entry| matches!(entry.kind, EntryKind::File(_)))
            .map(|entry| entry.size)
            .sum()
    }

    /// A stable digest of the tree: paths, kinds, modes, file sizes and contents, symlink
    /// targets and the skipped paths. Modification times are left out, so touching a file
    /// does not change it.
    pub fn digest(&self) -> ContentDigest {
        let mut hasher = FieldHasher::new("mastra-runner-tree-v1");
        hasher.number(self.entries.len() as u64);
        for entry in &self.entries {
            hasher.bytes(entry.path.as_bytes());
            match &entry.kind {
                EntryKind::Dir => {
                    hasher.tag(b'd');
                    hasher.number(u64::from(entry.mode));
                }
                EntryKind::File(digest) => {
                    hasher.tag(b'f');
                    hasher.number(u64::from(entry.mode));
                    hasher.number(entry.size);
                    hasher.bytes(&digest.0);
                }
                EntryKind::Symlink(target) => {
                    hasher.tag(b'l');
                    hasher.bytes(target.as_bytes());
                }
            }
        }
        hasher.number(self.skipped.len() as u64);
        for skipped in &self.skipped {
            hasher.bytes(skipped.path.as_bytes());
        }
        hasher.finish()
    }

    /// The paths this scan has that `earlier` did not, or has with another kind, content,
    /// mode, size or (files and symlinks) modification time: what happened in between, e.g.
    /// what an install added. Inside a new directory only the directory is listed (it stands
    /// for its subtree); a directory that only gained or lost entries is not listed.
    pub fn changed_since(&self, earlier: &TreeScan) -> Vec<String> {
        let before: HashMap<&str, &ScanEntry> = earlier
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry))
            .collect();
        let mut changed: Vec<String> = Vec::new();
        let mut new_dir: Option<&str> = None;
        for entry in &self.entries {
            if new_dir.is_some_and(|dir| is_under(&entry.path, dir)) {
                continue;
            }
            let differs = match before.get(entry.path.as_str()) {
                None => true,
                Some(old) => match (&old.kind, &entry.kind) {
                    (EntryKind::Dir, EntryKind::Dir) => false,
                    (old_kind, kind) => {
                        old_kind != kind
                            || old.mode != entry.mode
                            || old.size != entry.size
                            || old.mtime_ns != entry.mtime_ns
                    }
                },
            };
            if differs {
                if entry.kind == EntryKind::Dir {
                    new_dir = Some(entry.path.as_str());
                }
                changed.push(entry.path.clone());
            }
        }
        changed
    }
}

/// Whether `path` lies strictly inside the directory `dir` (both relative, `/`-separated).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The digests of files already hashed, by file version, so an unchanged file is hashed once
/// per runner. Holds at most a million files, then starts over.
#[derive(Debug, Default)]
pub struct DigestMemo {
    digests: Mutex<HashMap<FileStamp, ContentDigest>>,
}

impl DigestMemo {
    /// An empty memo.
    pub fn new() -> Self {
        DigestMemo::default()
    }

    /// How many files it remembers.
    pub fn len(&self) -> usize {
        lock(&self.digests).len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, stamp: &FileStamp) -> Option<ContentDigest> {
        lock(&self.digests).get(stamp).copied()
    }

    fn insert_all(&self, found: impl Iterator<Item = (FileStamp, ContentDigest)>) {
        let mut digests = lock(&self.digests);
        for (stamp, digest) in found {
            if digests.len() >= MEMO_CAPACITY {
                digests.clear();
            }
            digests.insert(stamp, digest);
        }
    }
}

/// Scans the directory `root` (see the module doc). Names in `exclude` are skipped wherever
/// they appear. Fails on a root that is not a directory, a tree deeper than [`MAX_DEPTH`] or
/// larger than [`MAX_SCAN_ENTRIES`], an unreadable entry, or a file that changes while read.
pub fn scan_tree(root: &Path, exclude: &[&str], memo: &DigestMemo) -> Result<TreeScan> {
    let root_meta = std::fs::symlink_metadata(root).map_err(|e| Error::io("scan", root, &e))?;
    if !root_meta.is_dir() {
        return Err(scan_error(root, "it is not a directory"));
    }
    let mut walk = Walk {
        root,
        exclude,
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    walk.directory(root, "", 0)?;
    let Walk {
        mut entries,
        mut skipped,
        ..
    } = walk;
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    skipped.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    hash_files(root, &mut entries, memo)?;
    Ok(TreeScan {
        root: root.to_path_buf(),
        entries,
        skipped,
    })
}

fn scan_error(path: &Path, reason: &str) -> Error {
    Error::Io {
        action: "scan".to_owned(),
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// The state of one walk: entries found so far, files not yet hashed.
struct Walk<'a> {
    root: &'a Path,
    exclude: &'a [&'a str],
    entries: Vec<ScanEntry>,
    skipped: Vec<SkippedEntry>,
}

impl Walk<'_> {
    fn directory(&mut self, dir: &Path, relative: &str, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(scan_error(
                dir,
                &format!("the tree is deeper than {MAX_DEPTH} levels"),
            ));
        }
        let listing = std::fs::read_dir(dir).map_err(|e| Error::io("scan", dir, &e))?;
        for item in listing {
            let item = item.map_err(|e| Error::io("scan", dir, &e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                self.skipped.push(SkippedEntry {
                    path: join(relative, &name.to_string_lossy()),
                    reason: "its name is not UTF-8".to_owned(),
                });
                continue;
            };
            if self.exclude.contains(&name) {
                continue;
            }
            let path = join(relative, name);
            let absolute = item.path();
            let meta = item
                .metadata()
                .map_err(|e| Error::io("scan", &absolute, &e))?;
            if self.entries.len() >= MAX_SCAN_ENTRIES {
                return Err(scan_error(
                    self.root,
                    &format!("the tree has more than {MAX_SCAN_ENTRIES} entries"),
                ));
            }
            let file_type = meta.file_type();
            let kind = if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File(ContentDigest([0; 32]))
            } else if file_type.is_symlink() {
                let target =
                    std::fs::read_link(&absolute).map_err(|e| Error::io("scan", &absolute, &e))?;
                match target.into_os_string().into_string() {
                    Ok(target) => EntryKind::Symlink(target),
                    Err(_) => {
                        self.skipped.push(SkippedEntry {
                            path,
                            reason: "its target is not UTF-8".to_owned(),
                        });
                        continue;
                    }
                }
            } else {
                self.skipped.push(SkippedEntry {
                    path,
                    reason: "a named pipe, socket or device".to_owned(),
                });
                continue;
            };
            let is_dir = kind == EntryKind::Dir;
            self.entries.push(entry(path.clone(), kind, &meta));
            if is_dir {
                self.directory(&absolute, &path, depth + 1)?;
            }
        }
        Ok(())
    }
}

fn join(relative: &str, name: &str) -> String {
    if relative.is_empty() {
        name.to_owned()
    } else {
        format!("{relative}/{name}")
    }
}

fn entry(path: String, kind: EntryKind, meta: &Metadata) -> ScanEntry {
    ScanEntry {
        path,
        kind,
        mode: meta.mode() & 0o777,
        size: meta.size(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        stamp: FileStamp::of(meta),
    }
}

/// Fills in every file's digest: from the memo, else by reading it (on two threads for many
/// files), then remembers the new ones.
fn hash_files(root: &Path, entries: &mut [ScanEntry], memo: &DigestMemo) -> Result<()> {
    let mut pending: Vec<usize> = Vec::new();
    for (index, entry) in entries.iter_mut().enumerate() {
        if let EntryKind::File(digest) = &mut entry.kind {
            match memo.get(&entry.stamp) {
                Some(known) => *digest = known,
                None => pending.push(index),
            }
        }
    }
    let results = run_indexed(
        pending.len(),
        || vec![0u8; READ_BUFFER],
        |buffer, slot| hash_file(root, &entries[pending[slot]], buffer),
    );
    let mut learned = Vec::with_capacity(results.len());
    for (&index, result) in pending.iter().zip(results) {
        let (digest, meta) = result
            .ok_or_else(|| Error::internal("hashing files", "a hashing thread panicked"))??;
        let entry = &mut entries[index];
        *entry = self::entry(
            std::mem::take(&mut entry.path),
            EntryKind::File(digest),
            &meta,
        );
        learned.push((entry.stamp, digest));
    }
    memo.insert_all(learned.into_iter());
    Ok(())
}

/// Reads one file and returns its digest and the open file's metadata. The file must be a
/// regular file still, and must not change while read.
fn hash_file(
    root: &Path,
    entry: &ScanEntry,
    buffer: &mut [u8],
) -> Result<(ContentDigest, Metadata)> {
    let path = root.join(&entry.path);
    let (mut file, meta) = open_regular(&path).map_err(|e| Error::io("scan", &path, &e))?;
    let (digest, read) =
        digest_reader(&mut file, buffer).map_err(|e| Error::io("scan", &path, &e))?;
    let after = file.metadata().map_err(|e| Error::io("scan", &path, &e))?;
    let stamp = FileStamp::of(&meta);
    if read != meta.size() || FileStamp::of(&after) != stamp {
        return Err(scan_error(&path, "the file changed while it was read"));
    }
    Ok((digest, meta))
}
