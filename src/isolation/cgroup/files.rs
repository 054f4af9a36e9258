//! Reading and writing cgroupfs control files. Their content is untrusted input: every read is
//! capped, every parse tolerates garbage, and a file is never created (a control file exists as
//! soon as its group's directory does).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The most read from one control file.
const MAX_CONTROL_FILE: u64 = 64 * 1024;
/// The most read from a `cgroup.procs` file: 100 000 pids of up to seven digits, one a line.
const MAX_PROCS_FILE: u64 = 800 * 1024;
/// The most pids taken from a group (its own and its subgroups' `cgroup.procs`).
pub const MAX_PIDS: usize = 100_000;
/// How deep and how many subgroup directories a walk visits (a tenant may create subgroups
/// where it was delegated some).
const MAX_DEPTH: usize = 8;
const MAX_DIRS: usize = 1_000;

/// The text of a control file, at most `cap` bytes of it, invalid UTF-8 replaced.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.take(cap).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The text of a control file, at most 64 KiB of it.
pub fn read_text(path: &Path) -> io::Result<String> {
    read_capped(path, MAX_CONTROL_FILE)
}

/// Writes `text` to an existing control file in one `write`, as cgroupfs takes one value a write
/// (truncating, as a shell's `>` does: cgroupfs ignores it, a laid-out test directory needs it).
/// The error names the file and keeps the kind.
pub fn write_text(path: &Path, text: &str) -> io::Result<()> {
    write_raw(path, text)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

/// [`write_text`] with the OS error as the kernel gave it (its `errno` readable).
pub fn write_raw(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    let written = file.write(text.as_bytes())?;
    if written == text.len() {
        Ok(())
    } else {
        Err(io::Error::other("short write"))
    }
}

/// The number after `key` on its line of a `key value` file (`memory.stat`, `memory.events`,
/// `pids.events`, `cpu.stat`, `memory.oom_control`).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        if name == key {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// [`keyed_value`] of a file, `None` when it cannot be read.
pub fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed_value(&read_text(path).ok()?, key)
}

/// A file holding one number (`cpuacct.usage`, `memory.limit_in_bytes`), `None` when it cannot be
/// read or parsed; `max` and negative values are `None` too (no limit).
pub fn read_number(path: &Path) -> Option<u64> {
    read_text(path).ok()?.trim().parse().ok()
}

/// Pids of a `cgroup.procs` text, positive ones only, at most `limit`.
pub fn parse_pids(text: &str, limit: usize) -> Vec<i32> {
    text.lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
        .take(limit)
        .collect()
}

/// Pids in `dir` and its subgroups, at most [`MAX_PIDS`].
pub fn subtree_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for group in subtree_deepest_first(dir) {
        let Ok(text) = read_capped(&group.join("cgroup.procs"), MAX_PROCS_FILE) else {
            continue;
        };
        pids.extend(parse_pids(&text, MAX_PIDS - pids.len()));
        if pids.len() >= MAX_PIDS {
            break;
        }
    }
    pids
}

/// `dir` and the directories below it (subgroups), the deepest first so they can be removed in
/// that order; bounded in depth and count; symbolic links are not followed. Empty when `dir`
/// does not exist.
pub fn subtree_deepest_first(dir: &Path) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    let mut found = vec![(dir.to_path_buf(), 0)];
    let mut next = 0;
    while next < found.len() && found.len() < MAX_DIRS {
        let (parent, depth) = found[next].clone();
        next += 1;
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten().take(MAX_DIRS) {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) && found.len() < MAX_DIRS {
                found.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
    found.into_iter().map(|(path, _)| path).collect()
}

/// Creates a group directory; `Ok(true)` when it was created, `Ok(false)` when it already was one.
pub fn make_dir(path: &Path) -> io::Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Names of the directories directly in `dir` (at most [`MAX_DIRS`]), empty when unreadable.
pub fn child_dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(MAX_DIRS)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}
