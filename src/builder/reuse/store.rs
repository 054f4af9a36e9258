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
//! rename, so writing it twice is harmless). Files are deleted after the index is unlocked,
//! each object under a brief lock of its own, so `stats` and `lookup` never wait for a big
//! removal. A snapshot removed while it is being restored is deleted when its restore ends.
//! A restore checks every object's size before it starts and each copy's content (SHA-256)
//! before it lands. Objects are not synced to disk (a `syncfs` took 0.3 s after writing 460 MB
//! of them): after a crash an object may be short or hold zeros, which those checks catch.
//! Two runners must not share a store: [`BuildCache::open_exclusive`] takes its lock.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::Flock;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::DigestMemo;
use super::copy::{FileStamp, copy_in, create_new};
use super::fingerprint::ContentDigest;
use super::manifest::{
    MAX_MANIFEST_BYTES, MAX_MANIFEST_ENTRIES, Manifest, ManifestEntry, SnapshotInfo, SnapshotKind,
    check_layout, new_snapshot_id, render,
};
use super::parallel::run_indexed;
use super::restore::{RestoreStats, ensure_dir, object_path, restore_entries};
use super::scan::{EntryKind, ScanEntry, TreeScan};
use super::selection::{Selection, digests_with_sizes, distinct_objects, select, stored};
use super::store_files::{
    discard, list_dir, lock_store, make_store_dir, now_ms, present_objects, read_manifest,
    remove_quietly,
};
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
    caps: ManifestCaps,
    _lock: Option<Flock<File>>,
}

/// The most a save may write into one manifest: what a read accepts (lowered by tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ManifestCaps {
    pub(crate) entries: usize,
    pub(crate) bytes: u64,
}

/// Files to delete once the index is unlocked.
#[derive(Debug, Default)]
struct Doomed {
    manifests: Vec<PathBuf>,
    objects: Vec<ContentDigest>,
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
    /// Removed while being restored: deleted when the last restore ends.
    doomed: bool,
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
        Self::open_holding(dir, max_bytes, None)
    }

    /// Like [`Self::open`], but first takes an exclusive lock on `<dir>/lock` (0600), held
    /// for the life of the returned store: `Ok(None)`, with nothing read or changed, when
    /// another store (of this process or another) holds it.
    pub fn open_exclusive(dir: &Path, max_bytes: Option<u64>) -> Result<Option<BuildCache>> {
        create_store(dir)?;
        match lock_store(dir)? {
            Some(held) => Self::open_holding(dir, max_bytes, Some(held)).map(Some),
            None => Ok(None),
        }
    }

    fn open_holding(
        dir: &Path,
        max_bytes: Option<u64>,
        held: Option<Flock<File>>,
    ) -> Result<BuildCache> {
        create_store(dir)?;
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
            caps: ManifestCaps {
                entries: MAX_MANIFEST_ENTRIES,
                bytes: MAX_MANIFEST_BYTES,
            },
            _lock: held,
        };
        let present = present_objects(&dir.join("objects"))?;
        let mut index = Index::default();
        for manifest_path in list_dir(&dir.join("snapshots"))? {
            match read_manifest(&manifest_path) {
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
                            doomed: false,
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

    /// Lowers the manifest caps a save checks (tests).
    #[cfg(test)]
    pub(crate) fn set_manifest_caps(&mut self, caps: ManifestCaps) {
        self.caps = caps;
    }

    /// Takes a snapshot of `selection` of `scan` (scanned just before, with this store's
    /// memo) for `key`, from build `build_id`. Then, when the store is over its bound, drops
    /// the least recently used snapshots except this one and those whose build `in_use` says
    /// a live server runs from (`in_use` is called with the store's lock held: it must not
    /// call the store). Fails, having written nothing, when the snapshot alone would exceed
    /// the bound, its manifest would be too big to read back or a file is sparse; fails when
    /// a file changed since the scan.
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
        let refused = |reason: String| Error::Io {
            action: "save to the build cache".to_owned(),
            path: scan.root().to_path_buf(),
            reason,
        };
        if entries.len() > self.caps.entries {
            return Err(refused(format!(
                "{} entries are more than a snapshot may hold ({})",
                entries.len(),
                self.caps.entries
            )));
        }
        let object_bytes = digests_with_sizes(&entries)
            .values()
            .fold(0, |sum: u64, size| sum.saturating_add(*size));
        if let Some(max_bytes) = self.max_bytes
            && object_bytes > max_bytes
        {
            return Err(refused(format!(
                "the snapshot would exceed the build cache's bound: its files take {object_bytes} \
                 bytes, the bound is {max_bytes}"
            )));
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
        let rendered = render(&manifest);
        if rendered.len() as u64 > self.caps.bytes {
            return Err(refused(format!(
                "its manifest would take {} bytes, more than a snapshot may ({})",
                rendered.len(),
                self.caps.bytes
            )));
        }
        let digests = distinct_objects(&manifest.entries);
        let to_write = self.hold(&chosen);
        let written = self
            .write_objects(scan.root(), &to_write)
            .and_then(|()| self.write_manifest(&info.id, &rendered));
        if let Err(error) = written {
            self.let_go(&digests);
            return Err(error);
        }
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
                manifest_bytes: rendered.len() as u64,
                objects: digests,
                restoring: 0,
                doomed: false,
            },
        );
        let mut doomed = Doomed::default();
        if let Some(max_bytes) = self.max_bytes {
            self.evict(&mut index, max_bytes, &info.id, &in_use, &mut doomed);
        }
        drop(index);
        self.delete(doomed);
        Ok(info)
    }

    /// The newest snapshot for `key`, if any (none counts as a miss).
    pub fn lookup(&self, key: &SnapshotKey<'_>) -> Option<SnapshotInfo> {
        let index = lock(&self.index);
        let found = index
            .snapshots
            .values()
            .filter(|stored| !stored.doomed)
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
            let Some(stored) = index
                .snapshots
                .get_mut(&snapshot.id)
                .filter(|stored| !stored.doomed)
            else {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Err(self.gone(snapshot, "it is no longer in the build cache"));
            };
            stored.restoring += 1;
        }
        let restored = self.read_and_restore(snapshot, into);
        let mut index = lock(&self.index);
        let mut doomed = Doomed::default();
        if let Some(stored) = index.snapshots.get_mut(&snapshot.id) {
            stored.restoring = stored.restoring.saturating_sub(1);
            if stored.doomed && stored.restoring == 0 {
                self.drop_snapshot(&mut index, &snapshot.id, &mut doomed);
            }
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
                self.drop_snapshot(&mut index, &snapshot.id, &mut doomed);
            }
        }
        drop(index);
        self.delete(doomed);
        restored
    }

    /// Drops every snapshot taken from build `build_id`, and the objects only they held (one
    /// being restored goes when its restore ends); returns how many snapshots went.
    pub fn remove_build(&self, build_id: &str) -> usize {
        let mut index = lock(&self.index);
        let ids: Vec<String> = index
            .snapshots
            .values()
            .filter(|stored| stored.info.build_id == build_id && !stored.doomed)
            .map(|stored| stored.info.id.clone())
            .collect();
        let mut doomed = Doomed::default();
        for id in &ids {
            self.drop_snapshot(&mut index, id, &mut doomed);
        }
        drop(index);
        self.delete(doomed);
        ids.len()
    }

    /// The store's size and what it served so far.
    pub fn stats(&self) -> CacheStats {
        let index = lock(&self.index);
        CacheStats {
            bytes: index.bytes(),
            snapshots: index.snapshots.values().filter(|s| !s.doomed).count(),
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
        let (manifest, _) = read_manifest(&path).map_err(|reason| self.gone(snapshot, &reason))?;
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
        let objects = lock(&self.index).release(digests);
        self.delete(Doomed {
            manifests: Vec::new(),
            objects,
        });
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

    /// Writes the rendered manifest of snapshot `id` (temp file, then rename).
    fn write_manifest(&self, id: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_path(id);
        let target = self.manifest_path(id);
        let written = create_new(&tmp)
            .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
            .map_err(|e| Error::io("write", &tmp, &e))
            .and_then(|()| {
                std::fs::rename(&tmp, &target).map_err(|e| Error::io("rename", &tmp, &e))
            });
        if written.is_err() {
            remove_quietly(&tmp);
        }
        written
    }

    fn tmp_path(&self, stem: &str) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{stem}.{:016x}", crate::ids::random_u128() as u64))
    }

    /// Drops LRU snapshots until the store is within `max_bytes` (see [`Self::save`]), adding
    /// their files to `doomed`.
    fn evict(
        &self,
        index: &mut Index,
        max_bytes: u64,
        keep: &str,
        in_use: &dyn Fn(&str) -> bool,
        doomed: &mut Doomed,
    ) {
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
            self.drop_snapshot(index, &id, doomed);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes a snapshot out of the index and adds its manifest and the objects only it held
    /// to `doomed`; one being restored is only marked, for its restore's end to drop.
    fn drop_snapshot(&self, index: &mut Index, id: &str, doomed: &mut Doomed) {
        let Some(stored) = index.snapshots.get_mut(id) else {
            return;
        };
        if stored.restoring > 0 {
            stored.doomed = true;
            return;
        }
        let Some(stored) = index.snapshots.remove(id) else {
            return;
        };
        doomed.manifests.push(self.manifest_path(id));
        doomed.objects.extend(index.release(&stored.objects));
    }

    /// Deletes `doomed`'s files; call it with the index unlocked. Each object is deleted under
    /// a brief lock, and only if no save took it up again since it was let go.
    fn delete(&self, doomed: Doomed) {
        for manifest in &doomed.manifests {
            remove_quietly(manifest);
        }
        let objects = self.dir.join("objects");
        for digest in &doomed.objects {
            let index = lock(&self.index);
            if !index.objects.contains_key(digest) {
                remove_quietly(&object_path(&objects, digest));
            }
        }
    }
}

/// Creates the store's directory (0700) if needed and makes sure it is a directory.
fn create_store(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create", dir, &e))?;
    ensure_dir(dir)
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
