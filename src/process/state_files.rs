//! The runner's state files under `<buildDir>/.runner/` (kept-server records and logs, process
//! journals), opened as files an untrusted writer may have planted: every server and build runs
//! as the host's user with its working directory inside `buildDir`.
//!
//! Reads and writes never follow a symbolic link (`O_NOFOLLOW`), never block on a FIFO
//! (`O_NONBLOCK`), and take only regular files with one link (a hard link to another file of the
//! same user would make a write land there); reads are bounded in size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The flags every state file is opened with.
const SAFE_FLAGS: i32 = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC;

/// Creates `dir` and its parents, each new one with mode 0700, and makes `dir` itself 0700 (a
/// state directory is the runner's alone).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let metadata = fs::symlink_metadata(dir)?;
    if !metadata.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Checks that `file` (opened from `path`) is a regular file with a single link.
fn check_plain(file: &File, path: &Path) -> io::Result<fs::Metadata> {
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if metadata.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} has {} hard links (a state file has one)",
            path.display(),
            metadata.nlink()
        )));
    }
    Ok(metadata)
}

/// The content of the state file `path`, when it is a regular file of at most `max_bytes`.
pub fn read_private_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_FLAGS)
        .open(path)?;
    let size = check_plain(&file, path)?.len();
    if size > max_bytes {
        return Err(io::Error::other(format!(
            "{} holds {size} bytes, more than the {max_bytes} a state file may",
            path.display()
        )));
    }
    let mut content = Vec::with_capacity(size as usize);
    file.take(max_bytes + 1).read_to_end(&mut content)?;
    if content.len() as u64 > max_bytes {
        return Err(io::Error::other(format!(
            "{} grew past {max_bytes} bytes while it was read",
            path.display()
        )));
    }
    Ok(content)
}

/// Opens the state file `path` for `options` (which say read, write or append), refusing a
/// link, a FIFO, a device or a file with other hard links.
pub fn open_private_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options.custom_flags(SAFE_FLAGS).mode(0o600).open(path)?;
    check_plain(&file, path)?;
    Ok(file)
}

/// Writes `content` into a new state file at `path` (mode 0600): whatever was planted under that
/// name before (a link, a FIFO) is removed, never written through. A partial file (a full disk)
/// is removed again.
pub fn write_private_file(path: &Path, content: &[u8]) -> io::Result<()> {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        return Err(error);
    }
    let written = open_private_file(path, OpenOptions::new().write(true).create_new(true))
        .and_then(|mut file| io::Write::write_all(&mut file, content));
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Opens the state file `path` to append to it, creating it (mode 0600) when it is missing;
/// something else planted under its name (a link, a FIFO, a hard link) is removed first, so the
/// file written is always the runner's own.
pub fn open_private_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let append = || {
        open_private_file(
            path,
            OpenOptions::new().create(true).append(true).read(false),
        )
    };
    match append() {
        Ok(file) => Ok(file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(error),
        Err(planted) => {
            tracing::warn!(
                "{} was not the runner's log file ({planted}): replaced",
                path.display()
            );
            fs::remove_file(path)?;
            open_private_file(path, OpenOptions::new().create_new(true).append(true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("state-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_private_dir(&dir).expect("dir");
        dir
    }

    #[test]
    fn reads_are_bounded_and_never_follow_a_link() {
        let dir = dir("read");
        let small = dir.join("small.json");
        fs::write(&small, b"{}").expect("write");
        assert_eq!(read_private_file(&small, 10).expect("read"), b"{}");
        let big = dir.join("big.json");
        fs::write(&big, vec![b' '; 11]).expect("write");
        assert!(read_private_file(&big, 10).is_err());
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&small, &link).expect("symlink");
        assert!(read_private_file(&link, 10).is_err());
        let hard = dir.join("hard.json");
        fs::hard_link(&small, &hard).expect("hard link");
        assert!(read_private_file(&hard, 10).is_err());
        let fifo = dir.join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(
            read_private_file(&fifo, 10).is_err(),
            "a FIFO neither blocks nor reads"
        );
        assert_eq!(
            fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_log_planted_as_a_link_is_replaced_and_its_target_untouched() {
        let dir = dir("log");
        let victim = dir.join("victim");
        fs::write(&victim, b"secret\n").expect("write");
        let log = dir.join("server.log");
        std::os::unix::fs::symlink(&victim, &log).expect("symlink");
        io::Write::write_all(&mut open_private_log(&log).expect("open"), b"line\n").expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"secret\n");
        assert_eq!(fs::read(&log).expect("log"), b"line\n");
        assert!(!fs::symlink_metadata(&log).expect("meta").is_symlink());
    }
}
