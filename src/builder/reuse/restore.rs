//! Recreating a snapshot's entries under a directory.
//!
//! Entries come in manifest order (a directory before what it holds; [`super::manifest`]
//! checked that every parent is a directory entry). Each directory is made sure to be a real
//! directory (whatever else is there is removed, a symlink included, never followed) and each
//! symlink replaces what is at its path; then the files, which only need their directories,
//! are copied on up to two threads. Directories are created 0700 and get their own modes and
//! times last, so a read-only one can be filled.
//!
//! Nothing under the target directory changes before every object needed is checked to be a
//! regular file of the size the manifest says. Each file is written to a temp file beside it
//! (`.restore-<random>`, created with `O_EXCL` and `O_NOFOLLOW`), filled by reflink or copy
//! from the object (never linked to it), read back and hashed, and renamed over its path only
//! when complete and matching the manifest's digest: a path holds its old content or its
//! restored one, never a part. A temp file is removed when its file fails.
//!
//! # Caveats
//! Paths are walked by name, so the directory restored into must not be changed by anyone
//! else meanwhile (a build directory before its build runs is not).

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::ContentDigest;
use super::copy::{clone_or_copy_hashed, create_new, open_dir, open_regular};
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

/// The read buffer of each copying thread.
const COPY_BUFFER_BYTES: usize = 256 << 10;

/// Recreates `entries` under `into` from the objects in `objects`.
pub(crate) fn restore_entries(
    objects: &Path,
    entries: &[ManifestEntry],
    into: &Path,
) -> Result<RestoreStats> {
    check_objects(objects, entries)?;
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
        || vec![0u8; COPY_BUFFER_BYTES],
        |buffer, index| {
            let (target, entry, size, digest) = &files[index];
            let object = object_path(objects, digest);
            restore_file(&object, (*size, digest), target, entry, buffer)
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

/// Checks, before anything is restored, that every object `entries` need is a regular file
/// of the size they say; the error names the first that is not.
fn check_objects(objects: &Path, entries: &[ManifestEntry]) -> Result<()> {
    let mut checked = HashSet::new();
    for entry in entries {
        let StoredKind::File { size, digest } = &entry.kind else {
            continue;
        };
        if !checked.insert(digest) {
            continue;
        }
        let object = object_path(objects, digest);
        let problem = match std::fs::symlink_metadata(&object) {
            Ok(meta) if !meta.is_file() => "is unusable: not a regular file".to_owned(),
            Ok(meta) if meta.len() != *size => {
                format!("holds {} bytes, the snapshot says {size}", meta.len())
            }
            Ok(_) => continue,
            Err(error) => format!("is unusable: {error}"),
        };
        return Err(unusable(
            &object,
            format!("the object for {} {problem}", entry.path),
        ));
    }
    Ok(())
}

fn unusable(object: &Path, reason: String) -> Error {
    Error::Io {
        action: "restore from the build cache".to_owned(),
        path: object.to_path_buf(),
        reason,
    }
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

/// Copies the object (`size` bytes of content `digest`, as the manifest says) into a temp
/// file beside `target`, gives it the entry's mode and modification time, and renames it over
/// `target` (whatever is there) only when its content matches; the temp file is removed on
/// failure.
fn restore_file(
    object: &Path,
    (size, digest): (u64, &ContentDigest),
    target: &Path,
    entry: &ManifestEntry,
    buffer: &mut [u8],
) -> Result<()> {
    let (source, meta) = open_regular(object).map_err(|e| {
        unusable(
            object,
            format!("the object for {} is unusable: {e}", entry.path),
        )
    })?;
    if meta.len() != size {
        return Err(unusable(
            object,
            format!(
                "the object for {} holds {} bytes, the snapshot says {size}",
                entry.path,
                meta.len()
            ),
        ));
    }
    let tmp = temp_beside(target);
    let file = create_new(&tmp).map_err(|e| Error::io("create", &tmp, &e))?;
    let filled = fill(&source, &file, object, (size, digest), &tmp, entry, buffer)
        .and_then(|()| replace_with(&tmp, target));
    if filled.is_err()
        && let Err(error) = std::fs::remove_file(&tmp)
    {
        tracing::warn!("cannot remove {}: {error}", tmp.display());
    }
    filled
}

/// Fills the temp file `tmp` (open as `file`) from the object `source`, checking its size and
/// digest, and gives it the entry's mode and time.
fn fill(
    source: &File,
    file: &File,
    object: &Path,
    (size, digest): (u64, &ContentDigest),
    tmp: &Path,
    entry: &ManifestEntry,
    buffer: &mut [u8],
) -> Result<()> {
    let (copied, found) = clone_or_copy_hashed(source, file, size, buffer)
        .map_err(|e| Error::io("copy into", tmp, &e))?;
    if copied != size {
        return Err(unusable(
            object,
            format!(
                "copied {copied} bytes of {}, the snapshot says {size}",
                entry.path
            ),
        ));
    }
    if found != *digest {
        return Err(unusable(
            object,
            format!(
                "the object for {} does not hold the content the snapshot names",
                entry.path
            ),
        ));
    }
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| Error::io("set the mode of", tmp, &e))?;
    set_times(Some(file), tmp, entry.mtime_ns)
}

/// A new name in `target`'s directory for the file that will replace it.
fn temp_beside(target: &Path) -> PathBuf {
    target.with_file_name(format!(".restore-{:032x}", crate::ids::random_u128()))
}

/// Renames `tmp` over `target`; a directory at `target` is removed first (a rename replaces a
/// file or symlink, never following it, but not a directory).
fn replace_with(tmp: &Path, target: &Path) -> Result<()> {
    if std::fs::symlink_metadata(target).is_ok_and(|meta| meta.is_dir()) {
        remove_existing(target)?;
    }
    std::fs::rename(tmp, target).map_err(|e| Error::io("rename", tmp, &e))
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
