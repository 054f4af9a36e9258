//! Recreating a snapshot's entries under a directory.
//!
//! Entries come in manifest order (a directory before what it holds; [`super::manifest`]
//! checked that every parent is a directory entry). Each directory is made sure to be a real
//! directory (whatever else is there is removed, a symlink included, never followed) and each
//! symlink replaces what is at its path; then the files, which only need their directories,
//! are copied on up to two threads, each replacing what is at its path. Files are created with `O_EXCL` and
//! `O_NOFOLLOW` and filled by reflink or copy from the object, never linked to it. Directories
//! are created 0700 and get their own modes and times last, so a read-only one can be filled.
//!
//! # Caveats
//! Paths are walked by name, so the directory restored into must not be changed by anyone
//! else meanwhile (a build directory before its build runs is not).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::ContentDigest;
use super::copy::{clone_or_copy, create_new, open_dir, open_regular};
use super::manifest::{ManifestEntry, StoredKind};
use super::parallel::run_indexed;
use crate::error::{Error, Result};

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Files recreated.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Directories made sure of.
    pub dirs: u64,
    /// Symlinks recreated.
    pub symlinks: u64,
}

/// Recreates `entries` under `into` from the objects in `objects`.
pub(crate) fn restore_entries(
    objects: &Path,
    entries: &[ManifestEntry],
    into: &Path,
) -> Result<RestoreStats> {
    std::fs::create_dir_all(into).map_err(|e| Error::io("create", into, &e))?;
    open_dir(into).map_err(|e| Error::io("open", into, &e))?;
    let mut stats = RestoreStats::default();
    let mut dirs: Vec<(PathBuf, &ManifestEntry)> = Vec::new();
    let mut files: Vec<(PathBuf, &ManifestEntry, u64, &ContentDigest)> = Vec::new();
    for entry in entries {
        let target = into.join(&entry.path);
        match &entry.kind {
            StoredKind::Dir => {
                ensure_dir(&target)?;
                dirs.push((target, entry));
                stats.dirs += 1;
            }
            StoredKind::File { size, digest } => {
                stats.files += 1;
                stats.bytes += size;
                files.push((target, entry, *size, digest));
            }
            StoredKind::Symlink(link) => {
                remove_existing(&target)?;
                std::os::unix::fs::symlink(link, &target)
                    .map_err(|e| Error::io("create symlink", &target, &e))?;
                set_times(None, &target, entry.mtime_ns)?;
                stats.symlinks += 1;
            }
        }
    }
    let copied = run_indexed(
        files.len(),
        || (),
        |(), index| {
            let (target, entry, size, digest) = &files[index];
            restore_file(&object_path(objects, digest), *size, target, entry)
        },
    );
    for result in copied {
        result.ok_or_else(|| Error::internal("restoring files", "a copying thread panicked"))??;
    }
    for (target, entry) in dirs.iter().rev() {
        let dir = open_dir(target).map_err(|e| Error::io("open", target, &e))?;
        dir.set_permissions(std::fs::Permissions::from_mode(entry.mode))
            .map_err(|e| Error::io("set the mode of", target, &e))?;
        set_times(Some(&dir), target, entry.mtime_ns)?;
    }
    Ok(stats)
}

/// `objects/<2 hex>/<62 hex>`.
pub(crate) fn object_path(objects: &Path, digest: &ContentDigest) -> PathBuf {
    let hex = digest.hex();
    objects.join(&hex[..2]).join(&hex[2..])
}

/// Makes `path` a real directory, writable by its owner while the restore fills it: kept if it
/// is one, else whatever is there is removed and a directory (0700) made.
pub(crate) fn ensure_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let dir = open_dir(path).map_err(|e| Error::io("open", path, &e))?;
            dir.set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("set the mode of", path, &e))
        }
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| Error::io("remove", path, &e))?;
            make_dir(path)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => make_dir(path),
        Err(error) => Err(Error::io("inspect", path, &error)),
    }
}

fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("create", path, &e))
}

/// Removes whatever is at `path` (a directory with its content; a symlink itself, never what
/// it points to); nothing there is fine.
fn remove_existing(path: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => Err(error),
    };
    removed.map_err(|e| Error::io("remove", path, &e))
}

/// Copies the object into a new file at `target` (replacing what is there), checking the object has the size the
/// manifest says, then gives the file its mode and modification time.
fn restore_file(object: &Path, size: u64, target: &Path, entry: &ManifestEntry) -> Result<()> {
    let missing = |reason: String| Error::Io {
        action: "restore from the build cache".to_owned(),
        path: object.to_path_buf(),
        reason,
    };
    let (source, meta) = open_regular(object)
        .map_err(|e| missing(format!("the object for {} is unusable: {e}", entry.path)))?;
    if meta.len() != size {
        return Err(missing(format!(
            "the object for {} holds {} bytes, the snapshot says {size}",
            entry.path,
            meta.len()
        )));
    }
    let file = match create_new(target) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            remove_existing(target)?;
            create_new(target)
        }
        created => created,
    }
    .map_err(|e| Error::io("create", target, &e))?;
    let copied =
        clone_or_copy(&source, &file, size).map_err(|e| Error::io("copy into", target, &e))?;
    if copied != size {
        return Err(missing(format!(
            "copied {copied} bytes of {}, the snapshot says {size}",
            entry.path
        )));
    }
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| Error::io("set the mode of", target, &e))?;
    set_times(Some(&file), target, entry.mtime_ns)
}

/// Sets the access and modification times of the open `file`, or of `path` itself (never a
/// symlink's target) when there is no open file.
fn set_times(file: Option<&File>, path: &Path, mtime_ns: i64) -> Result<()> {
    let time = TimeSpec::new(
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000),
    );
    let result = match file {
        Some(file) => nix::sys::stat::futimens(file, &time, &time),
        None => utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &time,
            &time,
            UtimensatFlags::NoFollowSymlink,
        ),
    };
    result.map_err(|errno| Error::io("set the time of", path, &std::io::Error::from(errno)))
}
