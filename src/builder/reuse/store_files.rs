//! The store's files on disk: reading manifests, listing objects, removing what is not needed,
//! and the lock that keeps one runner per store.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::copy::open_regular;
use super::fingerprint::ContentDigest;
use super::manifest::{MAX_MANIFEST_BYTES, Manifest, is_snapshot_id, parse};
use crate::error::{Error, Result};

/// Takes the exclusive lock of the store in `dir` (`<dir>/lock`, 0600, never through a
/// symlink); `None` when another holder has it.
pub(crate) fn lock_store(dir: &Path) -> Result<Option<Flock<File>>> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&path)
        .map_err(|e| Error::io("open", &path, &e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(held)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(Error::io("lock", &path, &std::io::Error::from(errno))),
    }
}

/// Reads and checks the manifest at `path`; returns it with its size on disk.
pub(crate) fn read_manifest(path: &Path) -> Result<(Manifest, u64), String> {
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

/// The object files present in `objects`, by digest; anything else there is removed.
pub(crate) fn present_objects(objects: &Path) -> Result<HashMap<ContentDigest, PathBuf>> {
    let mut present = HashMap::new();
    for fanout in list_dir(objects)? {
        let prefix = file_name(&fanout);
        let is_fanout =
            prefix.len() == 2 && std::fs::symlink_metadata(&fanout).is_ok_and(|meta| meta.is_dir());
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

/// Creates the store directory `path` (0700) unless it is there; a non-directory there is an
/// error (`open` removed any at start).
pub(crate) fn make_store_dir(path: &Path) -> Result<()> {
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

/// The paths of the entries of `dir`.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
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
pub(crate) fn discard(path: &Path, reason: &str) {
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
pub(crate) fn remove_quietly(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("build cache: cannot remove {}: {error}", path.display());
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
