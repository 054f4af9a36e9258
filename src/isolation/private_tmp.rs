//! The private temporary directories of sandboxes: `<buildDir>/.tmp/<name>`, one per sandboxed
//! server or build, its `TMPDIR` and `HOME`.
//!
//! A directory is held, for as long as a runner of this process uses it, by a shared `flock` on
//! the directory itself. A runner that starts sweeps what hosts killed without warning left
//! behind: an entry nobody holds (an exclusive lock is granted), older than a minute (a runner of
//! another process may just have made it), goes. Kept servers stay held: the runner that
//! adopts one holds its directory again, and a live runner holds its own.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::sync::lock;

/// The directory under `buildDir` holding each sandbox's private temporary directory.
pub const PRIVATE_TMP_DIR: &str = ".tmp";

/// How old an entry nobody holds must be before a sweep removes it.
const SWEEP_AFTER: Duration = Duration::from_secs(60);

/// The most entries one sweep looks at.
const MAX_SWEPT: usize = 100_000;

/// The directories this process holds, by path.
static HELD: Mutex<Option<HashMap<PathBuf, Flock<File>>>> = Mutex::new(None);

/// Makes (or keeps) the private temporary directory `name` under `build_dir` (0700, in a 0700
/// parent) and holds it until [`remove`].
pub fn make(build_dir: &Path, name: &str) -> io::Result<PathBuf> {
    let all = build_dir.join(PRIVATE_TMP_DIR);
    let dir = all.join(name);
    for path in [&all, &dir] {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(path)?.is_dir() {
                    return Err(io::Error::other(format!(
                        "{} is not a directory",
                        path.display()
                    )));
                }
            }
            Err(error) => return Err(error),
        }
    }
    let mut held = lock(&HELD);
    let held = held.get_or_insert_with(HashMap::new);
    if !held.contains_key(&dir) {
        let flock = Flock::lock(open_dir(&dir)?, FlockArg::LockSharedNonblock)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        held.insert(dir.clone(), flock);
    }
    Ok(dir)
}

/// Lets go of the private temporary directory `name` under `build_dir` and removes it, if any.
pub fn remove(build_dir: &Path, name: &str) {
    let dir = build_dir.join(PRIVATE_TMP_DIR).join(name);
    if let Err(error) = fs::remove_dir_all(&dir)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {error}", dir.display());
    }
    if let Some(held) = lock(&HELD).as_mut() {
        held.remove(&dir);
    }
}

/// Removes the entries of `<build_dir>/.tmp` that no runner holds and that are older than a
/// minute; returns how many went.
pub fn sweep(build_dir: &Path) -> usize {
    let all = build_dir.join(PRIVATE_TMP_DIR);
    let Ok(entries) = fs::read_dir(&all) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.take(MAX_SWEPT).flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age >= SWEEP_AFTER);
        if !meta.is_dir() || !old {
            continue;
        }
        let Ok(dir) = open_dir(&path) else {
            continue;
        };
        // Granted only when no runner, of this process or another, holds it.
        let Ok(_unheld) = Flock::lock(dir, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        match fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!("cannot remove {}: {error}", path.display()),
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} private temporary director{} that ended runners left in {}",
            if removed == 1 { "y" } else { "ies" },
            all.display()
        );
    }
    removed
}

/// Opens directory `path` itself (not a link to one) for a lock.
fn open_dir(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("private-tmp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Backdates `path` so a sweep considers it.
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(3_600);
        File::open(path)
            .and_then(|f| f.set_modified(old))
            .expect("backdate");
    }

    #[test]
    fn a_sweep_removes_only_old_entries_nobody_holds() {
        let build_dir = scratch("sweep");
        let held = make(&build_dir, "server-held").expect("held dir");
        fs::write(held.join("file"), "x").expect("write");
        age(&held);
        let all = build_dir.join(PRIVATE_TMP_DIR);
        let orphan = all.join("server-orphan");
        let young = all.join("build-young");
        fs::create_dir_all(orphan.join("nested")).expect("orphan");
        fs::create_dir_all(&young).expect("young");
        age(&orphan);

        assert_eq!(sweep(&build_dir), 1);
        assert!(held.join("file").exists(), "a held directory stays");
        assert!(young.exists(), "a directory made a moment ago stays");
        assert!(!orphan.exists(), "an old directory nobody holds goes");

        remove(&build_dir, "server-held");
        assert!(!held.exists());
        let _ = fs::remove_dir_all(&build_dir);
    }

    #[test]
    fn a_link_in_the_directory_is_neither_followed_nor_made_a_directory() {
        let build_dir = scratch("link");
        let target = build_dir.join("target");
        fs::create_dir_all(target.join("keep")).expect("target");
        fs::create_dir_all(build_dir.join(PRIVATE_TMP_DIR)).expect("tmp");
        std::os::unix::fs::symlink(&target, build_dir.join(PRIVATE_TMP_DIR).join("link"))
            .expect("link");
        assert!(make(&build_dir, "link").is_err());
        sweep(&build_dir);
        assert!(
            target.join("keep").exists(),
            "a sweep does not follow links"
        );
        let _ = fs::remove_dir_all(&build_dir);
    }
}
