//! File copies that share nothing writable: a reflink (`FICLONE`) where the file system has
//! it, else the kernel's `copy_file_range` (through `std::io::copy`), else plain reads and
//! writes. Never a hard link, so writing into a copy never changes the original.
//!
//! Every open here refuses a symlink at the last component (`O_NOFOLLOW`) and never blocks on
//! a FIFO (`O_NONBLOCK`); a file to read is checked to be a regular file after it is open.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

use super::fingerprint::{ContentDigest, digest_reader};
use crate::error::{Error, Result};

/// A file bigger than this with under half of it on disk is sparse, and not snapshotted.
const SPARSE_THRESHOLD: u64 = 1 << 20;

/// What identifies one version of a file: where it lives (device, inode) and what a write to
/// it changes (size, modification and change times; the change time cannot be set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileStamp {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of the file `meta` describes.
    pub(crate) fn of(meta: &Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Seconds and nanoseconds as nanoseconds since the epoch (saturating far from it).
pub(crate) fn nanos(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(nanoseconds)
}

/// Opens `path` for reading: no symlink followed, no FIFO waited on, and only a regular file
/// accepted. Returns the file with its metadata.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Opens the directory `path` without following a symlink there.
pub(crate) fn open_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).bits())
        .open(path)
}

/// Creates the new file `path` (0600) for writing and reading back; fails if anything, a symlink included, is
/// already there.
pub(crate) fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
}

/// Copies all of `source` (`size` bytes) into the empty file `target` and returns how many
/// bytes the target holds: by reflink when the file system shares extents, else by
/// `copy_file_range` or reads and writes. At most `size + 1` bytes are copied, so a source
/// that grew is seen as a wrong count, never copied without end.
pub(crate) fn clone_or_copy(source: &File, target: &File, size: u64) -> std::io::Result<u64> {
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the
    // source descriptor as its argument and reads nothing else from this process.
    let cloned =
        unsafe { nix::libc::ioctl(target.as_raw_fd(), nix::libc::FICLONE, source.as_raw_fd()) };
    if cloned == 0 {
        return Ok(target.metadata()?.len());
    }
    let mut reader = source.take(size + 1);
    let mut writer = target;
    std::io::copy(&mut reader, &mut writer)
}

/// Like [`clone_or_copy`] into `target` (open for reading too), then reads `target` back
/// through `buffer` and returns its SHA-256 with its size: the digest is of what the copy
/// holds, whichever way it was made (a kernel copy and one read back cost less than hashing
/// in a user-space copy).
pub(crate) fn clone_or_copy_hashed(
    source: &File,
    target: &File,
    size: u64,
    buffer: &mut [u8],
) -> std::io::Result<(u64, ContentDigest)> {
    clone_or_copy(source, target, size)?;
    let mut reader = target;
    reader.seek(SeekFrom::Start(0))?;
    let (digest, held) = digest_reader(&mut reader.take(size + 1), buffer)?;
    Ok((held, digest))
}

/// Copies the file at `source` into the new file `tmp` (read-only), checking the source is
/// still the version scanned (`stamp`) before and after. A sparse file is refused: its copies
/// would fill the disk with what it only claims to hold.
pub(crate) fn copy_in(source: &Path, stamp: FileStamp, tmp: &Path) -> Result<()> {
    let changed = || Error::Io {
        action: "save to the build cache".to_owned(),
        path: source.to_path_buf(),
        reason: "the file changed since it was scanned".to_owned(),
    };
    let (file, meta) = open_regular(source).map_err(|e| Error::io("open", source, &e))?;
    if FileStamp::of(&meta) != stamp {
        return Err(changed());
    }
    let allocated = meta.blocks().saturating_mul(512);
    if meta.size() > SPARSE_THRESHOLD && allocated < meta.size() / 2 {
        return Err(Error::Io {
            action: "save to the build cache".to_owned(),
            path: source.to_path_buf(),
            reason: format!(
                "a sparse file ({} bytes, {allocated} on disk) is not snapshotted",
                meta.size()
            ),
        });
    }
    let copy = create_new(tmp).map_err(|e| Error::io("create", tmp, &e))?;
    let copied =
        clone_or_copy(&file, &copy, stamp.size).map_err(|e| Error::io("copy", source, &e))?;
    let after = file
        .metadata()
        .map_err(|e| Error::io("inspect", source, &e))?;
    if copied != stamp.size || FileStamp::of(&after) != stamp {
        return Err(changed());
    }
    copy.set_permissions(std::fs::Permissions::from_mode(0o444))
        .map_err(|e| Error::io("set the mode of", tmp, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    #[test]
    fn a_copy_is_independent_of_its_source() {
        let dir = temp_dir("reuse-copy", "independent");
        std::fs::write(dir.join("a"), b"original").expect("write");
        let (source, meta) = open_regular(&dir.join("a")).expect("open");
        let target = create_new(&dir.join("b")).expect("create");
        assert_eq!(
            clone_or_copy(&source, &target, meta.len()).expect("copy"),
            8
        );
        std::fs::write(dir.join("b"), b"changed!").expect("write the copy");
        assert_eq!(std::fs::read(dir.join("a")).expect("read"), b"original");
        assert!(
            create_new(&dir.join("b")).is_err(),
            "create_new replaced a file"
        );
    }

    #[test]
    fn opens_refuse_symlinks_and_fifos() {
        let dir = temp_dir("reuse-copy", "refuse");
        std::fs::write(dir.join("file"), b"x").expect("write");
        std::os::unix::fs::symlink("file", dir.join("link")).expect("symlink");
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(open_regular(&dir.join("link")).is_err());
        assert!(open_regular(&dir.join("fifo")).is_err());
        assert!(create_new(&dir.join("link")).is_err());
        assert!(open_regular(&dir.join("file")).is_ok());
    }
}
