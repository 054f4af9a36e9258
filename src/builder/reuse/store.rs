//! The snapshot store: content-addressed objects shared by the manifests of every snapshot.
//!
//! ```text
//! <dir>/                    (0700; the runner gives <buildDir>/.runner/build-cache)
//!   objects/<2 hex>/<62 hex> one read-only file per distinct content (SHA-256)
//!   snapshots/<id>.json      one manifest per snapshot (see `manifest`); its mtime = last use
//!   tmp/                     files being written, renamed into place when complete
//! ```
//!
//! [`BuildCache`] keeps an index of the manifests (read and checked by [`BuildCache::open`];
//! a bad one is removed with a warning) and of the objects with how many snapshots (and saves
//! in progress) hold each. An object is deleted when nothing holds it any more.
//!
//! Hits and misses are counted by the store itself: [`BuildCache::lookup`] finding nothing is
//! a miss, [`BuildCache::restore`] succeeding is a hit of its snapshot's kind, failing a miss.
//!
//! # Caveats
//! Methods block on file I/O: call them from `spawn_blocking`. Two saves may run at once (the
//! index is locked only between file operations, and an object is written by temp file and
//! rename, so writing it twice is harmless). Objects are not synced to disk: after a crash an
//! object may be short, which a restore detects (it checks sizes) and reports as an error.
//! Objects' content is not re-hashed on restore: the store's directory is the runner's own.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::DigestMemo;
use super::copy::{FileStamp, copy_in, create_new, open_regular};
use super::fingerprint::ContentDigest;
use super::manifest::{
    MAX_MANIFEST_BYTES, Manifest, ManifestEntry, SnapshotInfo, SnapshotKind, check_layout,
    is_snapshot_id, new_snapshot_id, parse, render,
};
use super::parallel::run_indexed;
use super::restore::{RestoreStats, ensure_dir, object_path, restore_entries};
use super::scan::{EntryKind, ScanEntry, TreeScan};
use super::selection::{Selection, digests_with_sizes, distinct_objects, select, stored};
use crate::error::{Error, Result};
use crate::sync::lock;
use crate::validate;

/// Which snapshot a build looks for: its kind, project and fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotKey<'a> {
    /// Output or install.
    pub kind: SnapshotKind,
    /// The project built.
    pub project_id: &'a str,
    /// The fingerprint of the inputs (64 lowercase hex digits, from `Fingerprint::finish`).
    pub fingerprint: &'a str,
}

/// The store's size and what it served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of the distinct objects and the manifests.
    pub bytes: u64,
    /// Snapshots kept.
    pub snapshots: usize,
    /// Distinct objects kept.
    pub objects: usize,
    /// Output snapshots restored.
    pub output_hits: u64,
    /// Install snapshots restored.
    pub install_hits: u64,
    /// Lookups that found nothing, and restores that failed.
    pub misses: u64,
    /// Snapshots removed to keep the store under its bound.
    pub evictions: u64,
}

/// The build cache: snapshots of build trees in a directory of the runner's (see the module
/// doc).
#[derive(Debug)]
pub struct BuildCache {
    dir: PathBuf,
    max_bytes: Option<u64>,
    memo: DigestMemo,
    index: Mutex<Index>,
    output_hits: AtomicU64,
    install_hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct Index {
    snapshots: HashMap<String, Stored>,
    objects: HashMap<ContentDigest, ObjectRef>,
}

#[derive(Debug)]
struct Stored {
    info: SnapshotInfo,
    manifest_bytes: u64,
    objects: Vec<ContentDigest>,
    restoring: usize,
}

#[derive(Debug, Clone, Copy)]
struct ObjectRef {
    size: u64,
    holders: usize,
    written: bool,
}

impl Index {
    fn bytes(&self) -> u64 {
        let objects = self.objects.values().map(|object| object.size);
        let manifests = self.snapshots.values().map(|s| s.manifest_bytes);
        objects.chain(manifests).fold(0, u64::saturating_add)
    }

    /// Lets go of one hold on each of `digests`; returns the objects nothing holds any more
    /// (now out of the index) for the caller to delete.
    fn release(&mut self, digests: &[ContentDigest]) -> Vec<ContentDigest> {
        let mut unheld = Vec::new();
        for digest in digests {
            if let Some(object) = self.objects.get_mut(digest) {
                object.holders = object.holders.saturating_sub(1);
                if object.holders == 0 {
                    self.objects.remove(digest);
                    unheld.push(*digest);
                }
            }
        }
        unheld
    }
}

impl BuildCache {
    /// Opens (creating) the store in `dir`, reading and checking the manifests there; a bad
    /// manifest, an object no manifest holds and leftovers of interrupted saves are removed.
    /// `max_bytes` bounds the store after each save (`None`: unbounded).
    pub fn open(dir: &Path, max_bytes: Option<u64>) -> Result<BuildCache> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create", dir, &e))?;
        ensure_dir(dir)?;
        let tmp = dir.join("tmp");
        if std::fs::symlink_metadata(&tmp).is_ok_and(|meta| meta.is_dir()) {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, &e))?;
        }
        for name in ["objects", "snapshots", "tmp"] {
            ensure_dir(&dir.join(name))?;
        }
        let cache = BuildCache {
            dir: dir.to_path_buf(),
            max_bytes,
            memo: DigestMemo::new(),
            index: Mutex::new(Index::default()),
            output_hits: AtomicU64::new(0),
            install_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        };
        let present = cache.present_objects()?;
        let mut index = Index::default();
        for manifest_path in list_dir(&dir.join("snapshots"))? {
            match cache.read_manifest(&manifest_path) {
                Ok((manifest, manifest_bytes)) => {
                    let digests = distinct_objects(&manifest.entries);
                    if let Some(absent) = digests.iter().find(|d| !present.contains_key(d)) {
                        discard(&manifest_path, &format!("its object {absent} is missing"));
                        continue;
                    }
                    for (digest, size) in &digests_with_sizes(&manifest.entries) {
                        let object = index.objects.entry(*digest).or_insert(ObjectRef {
                            size: *size,
                            holders: 0,
                            written: true,
                        });
                        object.holders += 1;
                    }
                    index.snapshots.insert(
                        manifest.info.id.clone(),
                        Stored {
                            info: manifest.info,
                            manifest_bytes,
                            objects: digests,
                            restoring: 0,
                        },
                    );
                }
                Err(reason) => discard(&manifest_path, &reason),
            }
        }
        for (digest, path) in present {
            if !index.objects.contains_key(&digest) {
                remove_quietly(&path);
            }
        }
        *lock(&cache.index) = index;
        Ok(cache)
    }

    /// The digest memo of this runner: pass it to `scan_tree` so files are hashed once.
    pub fn memo(&self) -> &DigestMemo {
        &self.memo
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes a snapshot of `selection` of `scan` (scanned just before, with this store's
    /// memo) for `key`, from build `build_id`. Then, when the store is over its bound, drops
    /// the least recently used snapshots except this one and those whose build `in_use` says
    /// a live server runs from (`in_use` is called with the store's lock held: it must not
    /// call the store). Fails when a file changed since the scan.
    pub fn save(
        &self,
        key: &SnapshotKey<'_>,
        build_id: &str,
        scan: &TreeScan,
        selection: &Selection,
        in_use: impl Fn(&str) -> bool,
    ) -> Result<SnapshotInfo> {
        check_key(key)?;
        validate::id("buildId", build_id)?;
        let chosen = select(scan, selection)?;
        let entries: Vec<ManifestEntry> = chosen.iter().map(|entry| stored(entry)).collect();
        check_layout(&entries).map_err(|reason| Error::invalid("selection", reason))?;
        let digests = distinct_objects(&entries);
        let to_write = self.hold(&chosen);
        let written = self.write_objects(scan.root(), &to_write);
        if let Err(error) = written {
            self.let_go(&digests);
            return Err(error);
        }
        let now = now_ms();
        let info = SnapshotInfo {
            id: new_snapshot_id(now),
            kind: key.kind,
            project_id: key.project_id.to_owned(),
            fingerprint: key.fingerprint.to_owned(),
            build_id: build_id.to_owned(),
            created_ms: now,
            last_used_ms: now,
            file_bytes: chosen
                .iter()
                .filter(|entry| matches!(entry.kind, EntryKind::File(_)))
                .map(|entry| entry.size)
                .sum(),
            entries: entries.len(),
        };
        let manifest = Manifest {
            info: info.clone(),
            entries,
        };
        let manifest_bytes = match self.write_manifest(&manifest) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.let_go(&digests);
                return Err(error);
            }
        };
        let mut index = lock(&self.index);
        for (digest, _) in &to_write {
            if let Some(object) = index.objects.get_mut(digest) {
                object.written = true;
            }
        }
        index.snapshots.insert(
            info.id.clone(),
            Stored {
                info: info.clone(),
                manifest_bytes,
                objects: digests,
                restoring: 0,
            },
        );
        if let Some(max_bytes) = self.max_bytes {
            self.evict(&mut index, max_bytes, &info.id, &in_use);
        }
        Ok(info)
    }

    /// The newest snapshot for `key`, if any (none counts as a miss).
    pub fn lookup(&self, key: &SnapshotKey<'_>) -> Option<SnapshotInfo> {
        let index = lock(&self.index);
        let found = index
            .snapshots
            .values()
            .map(|stored| &stored.info)
            .filter(|info| {
                info.kind == key.kind
                    && info.project_id == key.project_id
                    && info.fingerprint == key.fingerprint
            })
            .max_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)))
            .cloned();
        if found.is_none() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Recreates the snapshot's entries under `into` (replacing what is at their paths) as
    /// copies that share nothing writable with the store, and marks the snapshot used. A
    /// snapshot that cannot be restored (a manifest or object missing, short or changed) is
    /// dropped, and the error says why: the caller then builds from scratch.
    pub fn restore(&self, snapshot: &SnapshotInfo, into: &Path) -> Result<RestoreStats> {
        {
            let mut index = lock(&self.index);
            let Some(stored) = index.snapshots.get_mut(&snapshot.id) else {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Err(self.gone(snapshot, "it is no longer in the build cache"));
            };
            stored.restoring += 1;
        }
        let restored = self.read_and_restore(snapshot, into);
        let mut index = lock(&self.index);
        if let Some(stored) = index.snapshots.get_mut(&snapshot.id) {
            stored.restoring = stored.restoring.saturating_sub(1);
        }
        match &restored {
            Ok(_) => {
                let counter = match snapshot.kind {
                    SnapshotKind::Output => &self.output_hits,
                    SnapshotKind::Install => &self.install_hits,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                if let Some(stored) = index.snapshots.get_mut(&snapshot.id) {
                    stored.info.last_used_ms = now;
                }
                let manifest = self.manifest_path(&snapshot.id);
                let touched = utimensat(
                    nix::fcntl::AT_FDCWD,
                    &manifest,
                    &TimeSpec::UTIME_NOW,
                    &TimeSpec::UTIME_NOW,
                    UtimensatFlags::NoFollowSymlink,
                );
                if let Err(errno) = touched {
                    tracing::warn!("cannot mark {} used: {errno}", manifest.display());
                }
            }
            Err(_) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.drop_snapshot(&mut index, &snapshot.id);
            }
        }
        restored
    }

    /// Drops every snapshot taken from build `build_id`, and the objects only they held;
    /// returns how many snapshots went.
    pub fn remove_build(&self, build_id: &str) -> usize {
        let mut index = lock(&self.index);
        let ids: Vec<String> = index
            .snapshots
            .values()
            .filter(|stored| stored.info.build_id == build_id)
            .map(|stored| stored.info.id.clone())
            .collect();
        for id in &ids {
            self.drop_snapshot(&mut index, id);
        }
        ids.len()
    }

    /// The store's size and what it served so far.
    pub fn stats(&self) -> CacheStats {
        let index = lock(&self.index);
        CacheStats {
            bytes: index.bytes(),
            snapshots: index.snapshots.len(),
            objects: index.objects.len(),
            output_hits: self.output_hits.load(Ordering::Relaxed),
            install_hits: self.install_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Reads the manifest again (it is untrusted like any file), checks it is the snapshot
    /// asked for, and recreates its entries.
    fn read_and_restore(&self, snapshot: &SnapshotInfo, into: &Path) -> Result<RestoreStats> {
        let path = self.manifest_path(&snapshot.id);
        let (manifest, _) = self
            .read_manifest(&path)
            .map_err(|reason| self.gone(snapshot, &reason))?;
        let same = manifest.info.kind == snapshot.kind
            && manifest.info.project_id == snapshot.project_id
            && manifest.info.fingerprint == snapshot.fingerprint
            && manifest.info.build_id == snapshot.build_id;
        if !same {
            return Err(self.gone(snapshot, "its manifest names another snapshot"));
        }
        restore_entries(&self.dir.join("objects"), &manifest.entries, into)
    }

    fn gone(&self, snapshot: &SnapshotInfo, reason: &str) -> Error {
        Error::Io {
            action: "restore from the build cache".to_owned(),
            path: self.manifest_path(&snapshot.id),
            reason: format!("snapshot {}: {reason}", snapshot.id),
        }
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join("snapshots").join(format!("{id}.json"))
    }

    /// Holds every object of `chosen` for a save in progress; returns those to write (not yet
    /// in the store), each with the entry to copy it from.
    fn hold<'a>(&self, chosen: &[&'a ScanEntry]) -> Vec<(ContentDigest, &'a ScanEntry)> {
        let mut index = lock(&self.index);
        let mut seen = HashSet::new();
        let mut to_write = Vec::new();
        for entry in chosen {
            let EntryKind::File(digest) = entry.kind else {
                continue;
            };
            if !seen.insert(digest) {
                continue;
            }
            let object = index.objects.entry(digest).or_insert(ObjectRef {
                size: entry.size,
                holders: 0,
                written: false,
            });
            object.holders += 1;
            if !object.written {
                to_write.push((digest, *entry));
            }
        }
        to_write
    }

    /// Gives back a failed save's holds.
    fn let_go(&self, digests: &[ContentDigest]) {
        let mut index = lock(&self.index);
        for digest in index.release(digests) {
            remove_quietly(&object_path(&self.dir.join("objects"), &digest));
        }
    }

    /// Copies the files of `to_write` into the store (on up to two threads).
    fn write_objects(&self, root: &Path, to_write: &[(ContentDigest, &ScanEntry)]) -> Result<()> {
        let objects = self.dir.join("objects");
        let written = run_indexed(to_write.len(), HashSet::new, |fanouts, index| {
            let (digest, entry) = to_write[index];
            self.write_object(
                &root.join(&entry.path),
                entry.stamp,
                &objects,
                &digest,
                fanouts,
            )
        });
        for result in written {
            result
                .ok_or_else(|| Error::internal("saving files", "a copying thread panicked"))??;
        }
        Ok(())
    }

    /// Copies `source` (still at `stamp`) into a temp file, then renames it to its object path;
    /// `fanouts` are the object directories this thread already made sure of.
    fn write_object(
        &self,
        source: &Path,
        stamp: FileStamp,
        objects: &Path,
        digest: &ContentDigest,
        fanouts: &mut HashSet<PathBuf>,
    ) -> Result<()> {
        let target = object_path(objects, digest);
        let tmp = self.tmp_path(&digest.hex());
        let written = copy_in(source, stamp, &tmp).and_then(|()| {
            if let Some(fanout) = target.parent()
                && !fanouts.contains(fanout)
            {
                make_store_dir(fanout)?;
                fanouts.insert(fanout.to_path_buf());
            }
            std::fs::rename(&tmp, &target).map_err(|e| Error::io("rename", &tmp, &e))
        });
        if written.is_err() {
            remove_quietly(&tmp);
        }
        written
    }

    /// Writes the manifest (temp file, then rename); returns its size.
    fn write_manifest(&self, manifest: &Manifest) -> Result<u64> {
        let bytes = render(manifest);
        let tmp = self.tmp_path(&manifest.info.id);
        let target = self.manifest_path(&manifest.info.id);
        let written = create_new(&tmp)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
            .map_err(|e| Error::io("write", &tmp, &e))
            .and_then(|()| {
                std::fs::rename(&tmp, &target).map_err(|e| Error::io("rename", &tmp, &e))
            });
        if written.is_err() {
            remove_quietly(&tmp);
        }
        written.map(|()| bytes.len() as u64)
    }

    fn tmp_path(&self, stem: &str) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{stem}.{:016x}", crate::ids::random_u128() as u64))
    }

    /// Reads and checks the manifest at `path`; returns it with its size on disk.
    fn read_manifest(&self, path: &Path) -> Result<(Manifest, u64), String> {
        let id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".json"))
            .filter(|id| is_snapshot_id(id))
            .ok_or("its name is not <snapshot id>.json")?;
        let (file, meta) = open_regular(path).map_err(|e| format!("cannot open it: {e}"))?;
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(format!("larger than {} MB", MAX_MANIFEST_BYTES >> 20));
        }
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        let last_used_ms = meta
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_millis() as u64);
        let manifest = parse(&bytes, id, last_used_ms)?;
        Ok((manifest, bytes.len() as u64))
    }

    /// The object files present, by digest; anything else under `objects/` is removed.
    fn present_objects(&self) -> Result<HashMap<ContentDigest, PathBuf>> {
        let objects = self.dir.join("objects");
        let mut present = HashMap::new();
        for fanout in list_dir(&objects)? {
            let prefix = file_name(&fanout);
            let is_fanout = prefix.len() == 2
                && std::fs::symlink_metadata(&fanout).is_ok_and(|meta| meta.is_dir());
            if !is_fanout {
                discard(&fanout, "not an object directory");
                continue;
            }
            for object in list_dir(&fanout)? {
                let digest = ContentDigest::from_hex(&format!("{prefix}{}", file_name(&object)));
                let regular = std::fs::symlink_metadata(&object).is_ok_and(|meta| meta.is_file());
                match digest {
                    Some(digest) if regular => {
                        present.insert(digest, object);
                    }
                    _ => discard(&object, "not an object"),
                }
            }
        }
        Ok(present)
    }

    /// Drops LRU snapshots until the store is within `max_bytes` (see [`Self::save`]).
    fn evict(&self, index: &mut Index, max_bytes: u64, keep: &str, in_use: &dyn Fn(&str) -> bool) {
        let mut candidates: Vec<(u64, String)> = index
            .snapshots
            .values()
            .filter(|s| s.info.id != keep && s.restoring == 0 && !in_use(&s.info.build_id))
            .map(|s| (s.info.last_used_ms, s.info.id.clone()))
            .collect();
        candidates.sort();
        for (_, id) in candidates {
            if index.bytes() <= max_bytes {
                break;
            }
            self.drop_snapshot(index, &id);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes a snapshot's manifest and the objects only it held.
    fn drop_snapshot(&self, index: &mut Index, id: &str) {
        let Some(stored) = index.snapshots.remove(id) else {
            return;
        };
        remove_quietly(&self.manifest_path(id));
        let objects = self.dir.join("objects");
        for digest in index.release(&stored.objects) {
            remove_quietly(&object_path(&objects, &digest));
        }
    }
}

fn check_key(key: &SnapshotKey<'_>) -> Result<()> {
    validate::id("projectId", key.project_id)?;
    if ContentDigest::from_hex(key.fingerprint).is_none() {
        return Err(Error::invalid(
            "fingerprint",
            "must be 64 lowercase hex digits",
        ));
    }
    Ok(())
}

/// Creates the store directory `path` (0700) unless it is there; a non-directory there is an
/// error (`open` removed any at start).
fn make_store_dir(path: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) {
                Ok(())
            } else {
                Err(Error::io("create", path, &error))
            }
        }
        Err(error) => Err(Error::io("create", path, &error)),
    }
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, &e))?;
    listing
        .map(|item| {
            item.map(|item| item.path())
                .map_err(|e| Error::io("list", dir, &e))
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes a bad store file with a warning saying why.
fn discard(path: &Path, reason: &str) {
    tracing::warn!("build cache: removing {}: {reason}", path.display());
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    if let Err(error) = removed {
        tracing::warn!("build cache: cannot remove {}: {error}", path.display());
    }
}

/// Removes a store file that is no longer needed; one already gone is fine.
fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("build cache: cannot remove {}: {error}", path.display());
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
