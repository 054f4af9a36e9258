//! Copying a project tree into a build directory.
//!
//! [`copy_project`] empties the target, walks the source without following any symlink,
//! creates the directories, copies the regular files on a few threads at once, recreates the
//! symlinks that stay inside the project, and finally gives the directories their modes (last,
//! so a read-only directory can still be filled). Names in [`DEFAULT_EXCLUDES`] and the
//! caller's excludes are skipped wherever they appear, as directories or files.
//!
//! # Caveats
//! Ownership, timestamps and extended attributes are not copied; file and directory modes are.
//! Named pipes, sockets and devices are skipped and reported: reading a pipe could block.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Names never copied, at any depth: dependencies, VCS data and build outputs.
pub const DEFAULT_EXCLUDES: [&str; 6] =
    ["node_modules", ".git", ".mastra", "dist", ".next", ".turbo"];

/// The most threads copying files at once.
const MAX_THREADS: usize = 8;

/// Files a thread takes from the shared list at a time.
const BATCH: usize = 32;

/// An entry that was not copied, relative to the project root, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's path relative to the project root.
    pub path: PathBuf,
    /// Why it was skipped, e.g. `it points outside the project (-> ../../etc)`.
    pub reason: String,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Regular files copied.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Symlinks recreated (each relative and resolving inside the project).
    pub symlinks: u64,
    /// Symlinks not copied because they are absolute or lead out of the project, by path.
    pub skipped_symlinks: Vec<Skipped>,
    /// Named pipes, sockets and devices, which are never copied, by path.
    pub skipped_special: Vec<Skipped>,
}

impl CopyReport {
    /// The lines a build log shows for this copy: `copied N files (M bytes)` (with the number
    /// of symlinks when there are any), then one `warning:` line per skipped entry.
    pub fn log_lines(&self) -> Vec<String> {
        let mut summary = format!("copied {} files ({} bytes)", self.files, self.bytes);
        if self.symlinks > 0 {
            summary.push_str(&format!(" and {} symlinks", self.symlinks));
        }
        let mut lines = vec![summary];
        for skipped in &self.skipped_symlinks {
            lines.push(format!(
                "warning: symlink {} not copied: {}",
                skipped.path.display(),
                skipped.reason
            ));
        }
        for skipped in &self.skipped_special {
            lines.push(format!(
                "warning: {} not copied: {}",
                skipped.path.display(),
                skipped.reason
            ));
        }
        lines
    }
}

/// Where `target` really is: canonical when it exists; otherwise the canonical form of its
/// nearest existing ancestor joined with the missing names. A `..` after a missing directory
/// cannot be judged and is refused.
pub fn resolve_target(target: &Path) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(target).map_err(|e| Error::io("resolve copy target", target, &e))?;
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                for name in missing.iter().rev() {
                    resolved.push(name);
                }
                return Ok(resolved);
            }
            Err(error) => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return match existing.components().next_back() {
                        Some(Component::ParentDir) => Err(Error::UnsafeCopyTarget {
                            target: target.to_path_buf(),
                            reason: "it goes up ('..') from a directory that does not exist"
                                .to_owned(),
                        }),
                        _ => Err(Error::io("resolve copy target", target, &error)),
                    };
                };
                missing.push(name.to_os_string());
                existing = parent;
            }
        }
    }
}

/// Copies the tree at `source_dir` into `target_dir`: creates `target_dir` if missing and
/// empties it first, skips [`DEFAULT_EXCLUDES`] and `excludes` (names of directories or files)
/// at every depth, keeps file and directory modes, and keeps a symlink only when it is
/// relative and resolves inside the project; other symlinks, pipes, sockets and devices are
/// reported in the [`CopyReport`] instead of copied. A symlinked directory is copied as a
/// link, never descended into.
///
/// Refuses ([`Error::UnsafeCopyTarget`]) a target that is `/`, the source, inside the source,
/// holding it, or a symlink. Filesystem failures come back as [`Error::Io`] naming the path.
pub fn copy_project(
    source_dir: &Path,
    target_dir: &Path,
    excludes: &[String],
) -> Result<CopyReport> {
    let root = source_dir
        .canonicalize()
        .map_err(|e| Error::io("resolve project path", source_dir, &e))?;
    if !root.is_dir() {
        return Err(Error::io(
            "copy project",
            source_dir,
            &std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    let target = resolve_target(target_dir)?;
    let refuse = |reason: &str| {
        Err(Error::UnsafeCopyTarget {
            target: target_dir.to_path_buf(),
            reason: reason.to_owned(),
        })
    };
    if target.parent().is_none() {
        return refuse("it is the root directory");
    }
    if target == root {
        return refuse("it is the project itself");
    }
    if target.starts_with(&root) {
        return refuse("it is inside the project");
    }
    if root.starts_with(&target) {
        return refuse("it holds the project");
    }
    // Emptying a link's directory would reach wherever the link points; ancestors may be
    // links (as `/tmp` is on some systems), the target itself may not.
    if fs::symlink_metadata(target_dir).is_ok_and(|meta| meta.is_symlink()) {
        return refuse("it is a symlink; give the directory it points to");
    }
    empty_dir(&target)?;

    let skip = |name: &std::ffi::OsStr| {
        DEFAULT_EXCLUDES.iter().any(|e| name == *e) || excludes.iter().any(|e| name == e.as_str())
    };
    let tree = walk(&root, &skip)?;
    let mut report = CopyReport {
        skipped_special: tree.special,
        ..CopyReport::default()
    };
    for (dir, _) in &tree.dirs {
        let to = target.join(dir);
        fs::create_dir(&to).map_err(|e| Error::io("create directory", &to, &e))?;
    }
    let (files, bytes) = copy_files(&root, &target, &tree.files)?;
    report.files = files;
    report.bytes = bytes;
    for link in &tree.links {
        let from = root.join(link);
        let pointee = fs::read_link(&from).map_err(|e| Error::io("read symlink", &from, &e))?;
        match link_verdict(&root, link, &pointee) {
            Ok(()) => {
                let to = target.join(link);
                symlink(&pointee, &to).map_err(|e| Error::io("create symlink", &to, &e))?;
                report.symlinks += 1;
            }
            Err(reason) => report.skipped_symlinks.push(Skipped {
                path: link.clone(),
                reason,
            }),
        }
    }
    report.skipped_symlinks.sort_by(|a, b| a.path.cmp(&b.path));
    report.skipped_special.sort_by(|a, b| a.path.cmp(&b.path));
    // Deepest first, so a directory made read-only no longer needs to be written into.
    for (dir, mode) in tree.dirs.iter().rev() {
        let to = target.join(dir);
        fs::set_permissions(&to, fs::Permissions::from_mode(*mode))
            .map_err(|e| Error::io("set the mode of", &to, &e))?;
    }
    Ok(report)
}

/// Creates `dir` if missing and removes everything in it (symlinks are removed, not followed).
fn empty_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::UnsafeCopyTarget {
                target: dir.to_path_buf(),
                reason: "it exists and is not a directory".to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, &e));
        }
        Err(e) => return Err(Error::io("read", dir, &e)),
    }
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, &e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("read", &path, &e))?
            .is_dir();
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io("remove", &path, &e))?;
    }
    Ok(())
}

/// A source tree as lists of paths relative to its root.
struct Tree {
    /// Directories with their modes, each after its parent.
    dirs: Vec<(PathBuf, u32)>,
    files: Vec<PathBuf>,
    links: Vec<PathBuf>,
    special: Vec<Skipped>,
}

/// Lists the tree under `root` without following symlinks, leaving out names `skip` rejects.
fn walk(root: &Path, skip: &dyn Fn(&std::ffi::OsStr) -> bool) -> Result<Tree> {
    let mut tree = Tree {
        dirs: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
        special: Vec::new(),
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &dir, &e))?;
            let name = entry.file_name();
            if skip(&name) {
                continue;
            }
            let path = relative.join(&name);
            // `DirEntry::file_type` does not follow symlinks.
            let kind = entry
                .file_type()
                .map_err(|e| Error::io("read", root.join(&path), &e))?;
            if kind.is_dir() {
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io("read", root.join(&path), &e))?;
                tree.dirs.push((path.clone(), meta.permissions().mode()));
                pending.push(path);
            } else if kind.is_file() {
                tree.files.push(path);
            } else if kind.is_symlink() {
                tree.links.push(path);
            } else {
                tree.special.push(Skipped {
                    path,
                    reason: "it is not a regular file, directory or symlink".to_owned(),
                });
            }
        }
    }
    Ok(tree)
}

/// Copies `files` from `root` to `target` on up to [`MAX_THREADS`] threads; returns the number
/// of files and bytes. The first failure stops the other threads and is returned.
fn copy_files(root: &Path, target: &Path, files: &[PathBuf]) -> Result<(u64, u64)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
        .min(files.len().div_ceil(BATCH))
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let worker = || {
        let (mut count, mut bytes) = (0u64, 0u64);
        while !failed.load(Ordering::Relaxed) {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= files.len() {
                break;
            }
            for file in &files[start..files.len().min(start + BATCH)] {
                let (from, to) = (root.join(file), target.join(file));
                match fs::copy(&from, &to) {
                    Ok(n) => {
                        count += 1;
                        bytes += n;
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        let mut slot = crate::sync::lock(&first_error);
                        slot.get_or_insert(Error::io("copy file", from, &e));
                        return (count, bytes);
                    }
                }
            }
        }
        (count, bytes)
    };
    let totals = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(worker)).collect();
        let mut totals = worker();
        for handle in handles {
            // A copy thread cannot panic short of a bug in std; count it as nothing copied.
            let (count, bytes) = handle.join().unwrap_or((0, 0));
            totals.0 += count;
            totals.1 += bytes;
        }
        totals
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(error) => Err(error),
        None => Ok(totals),
    }
}

/// Whether the symlink at `link` (relative to `root`) pointing to `pointee` may be copied:
/// only a relative link whose target, resolved by the operating system as far as it exists,
/// lies inside `root`. `Err` says why not.
fn link_verdict(root: &Path, link: &Path, pointee: &Path) -> std::result::Result<(), String> {
    if pointee.is_absolute() {
        return Err(format!(
            "its target is absolute (-> {}); only relative links inside the project are kept",
            pointee.display()
        ));
    }
    let outside = || {
        Err(format!(
            "it points outside the project (-> {})",
            pointee.display()
        ))
    };
    let parent = link.parent().unwrap_or(Path::new(""));
    let full = root.join(parent).join(pointee);
    let components: Vec<Component> = full.components().collect();
    // The longest prefix that exists is resolved by the OS (following every symlink in it);
    // what follows must be plain names, which stay below it.
    for end in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..end].iter().collect();
        if let Ok(real) = prefix.canonicalize() {
            let rest_is_plain = components[end..]
                .iter()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            return if real.starts_with(root) && rest_is_plain {
                Ok(())
            } else {
                outside()
            };
        }
    }
    outside()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_summarise_and_warn() {
        let report = CopyReport {
            files: 3,
            bytes: 120,
            symlinks: 1,
            skipped_symlinks: vec![Skipped {
                path: PathBuf::from("lib/out"),
                reason: "it points outside the project (-> ../../x)".to_owned(),
            }],
            skipped_special: vec![Skipped {
                path: PathBuf::from("pipe"),
                reason: "it is not a regular file, directory or symlink".to_owned(),
            }],
        };
        assert_eq!(
            report.log_lines(),
            [
                "copied 3 files (120 bytes) and 1 symlinks",
                "warning: symlink lib/out not copied: it points outside the project (-> ../../x)",
                "warning: pipe not copied: it is not a regular file, directory or symlink",
            ]
        );
        assert_eq!(
            CopyReport::default().log_lines(),
            ["copied 0 files (0 bytes)"]
        );
    }

    #[test]
    fn targets_resolve_through_missing_directories() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let target = dir.join(format!("missing-{}/a/b", std::process::id()));
        assert_eq!(resolve_target(&target), Ok(target.clone()));
        let up = dir.join(format!("missing-{}/../x", std::process::id()));
        assert_eq!(
            resolve_target(&up).unwrap_err().to_string(),
            format!(
                "Refusing to copy into {}: it goes up ('..') from a directory that does not exist",
                up.display()
            )
        );
    }
}
