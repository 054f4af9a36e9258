//! Reading processes from Linux's `/proc`: state, parent, group, CPU ticks, start time, memory.
//!
//! # Caveats
//! PID 1 on these machines does not reap orphans, so a killed grandchild may stay a zombie
//! (`Z`) forever. Zombies hold no resources and run no code: everything here counts them as
//! gone. `kill(pid, 0)` cannot tell a zombie from a live process, which is why liveness is read
//! from `/proc/<pid>/stat` instead.

use std::fs;
use std::io::Read;

/// The fields of `/proc/<pid>/stat` the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// One-letter state (`R`, `S`, `D`, `Z`, …).
    pub state: char,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// CPU time in user mode, in clock ticks.
    pub utime: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime: u64,
    /// Start time after boot, in clock ticks (with the pid, identifies a process uniquely).
    pub start_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// Whether the process still runs code (not a zombie, not dead).
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name may hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let pid = text.split_once(' ')?.0.parse().ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5) (state); field N is at index N - 3.
    let number = |index: usize| fields.get(index)?.parse::<i64>().ok();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: number(1)? as i32,
        pgrp: number(2)? as i32,
        utime: number(11)? as u64,
        stime: number(12)? as u64,
        start_ticks: number(19)? as u64,
        rss_pages: number(21)?.max(0) as u64,
    })
}

/// The stat of one process, if it exists.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    read_stat_with(&mut ProcText::new(), pid)
}

fn read_stat_with(text: &mut ProcText, pid: i32) -> Option<ProcStat> {
    parse_stat(&text.read(&format!("/proc/{pid}/stat"))?)
}

/// Reads small `/proc` files into one reused buffer: an open, reads until the end, a close.
/// (`fs::read_to_string` also asks for the size, which procfs does not know, and then reads in
/// growing steps: several system calls more per file, and a tree walk reads many files.)
struct ProcText {
    buffer: Vec<u8>,
}

impl ProcText {
    /// Enough for a `stat` or a `children` list in one read.
    const STEP: usize = 4096;

    fn new() -> Self {
        Self {
            buffer: vec![0; Self::STEP],
        }
    }

    /// The text of `path`; `None` when it cannot be read (the process is gone). Bytes that are
    /// not UTF-8 (a `comm` the kernel cut inside a character) become U+FFFD.
    fn read(&mut self, path: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut file = fs::File::open(path).ok()?;
        let mut filled = 0;
        loop {
            if filled == self.buffer.len() {
                self.buffer.resize(filled + Self::STEP, 0);
            }
            match file.read(&mut self.buffer[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(String::from_utf8_lossy(&self.buffer[..filled]))
    }
}

/// Whether an entry (`NAME=value`, as bytes) of the environment `pid` was started with
/// satisfies `wanted`; false when it cannot be read.
pub fn environ_has(pid: i32, wanted: impl FnMut(&[u8]) -> bool) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(wanted))
}

/// The environment `pid` was started with (`/proc/<pid>/environ`), if it can be read.
pub fn environ(pid: i32) -> Option<std::collections::BTreeMap<String, String>> {
    let bytes = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        bytes
            .split(|byte| *byte == 0)
            .filter_map(|entry| {
                let (key, value) = std::str::from_utf8(entry).ok()?.split_once('=')?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect(),
    )
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|stat| stat.is_alive())
}

/// Every process currently listed in `/proc`.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut text = ProcText::new();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| read_stat_with(&mut text, pid))
        .collect()
}

/// Live (non-zombie) members of process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.is_alive())
        .collect()
}

/// Whether process group `pgid` has no live member. `kill(-pgid, 0)` failing with `ESRCH`
/// says so at once; a group that still answers may hold only zombies (which count as gone, see
/// the caveats), and then a scan of `/proc` decides.
pub fn group_is_empty(pgid: i32) -> bool {
    if pgid <= 0 {
        return true;
    }
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None) {
        Err(nix::errno::Errno::ESRCH) => true,
        _ => live_group_members(pgid).is_empty(),
    }
}

/// `root` and all its live descendants (by parent links), root first. Walks the tree through
/// `/proc/<pid>/task/<tid>/children`, reading only the tree's own processes; where the kernel
/// has no such file, scans every process instead.
pub fn live_tree(root: i32) -> Vec<ProcStat> {
    if children_files_exist() {
        walk_tree(root, usize::MAX).unwrap_or_default()
    } else {
        scan_tree(root)
    }
}

/// [`live_tree`] when it is quick: walked through the `children` files and at most `limit`
/// processes; `None` on a kernel without those files or for a larger tree.
pub fn small_live_tree(root: i32, limit: usize) -> Option<Vec<ProcStat>> {
    if !children_files_exist() {
        return None;
    }
    walk_tree(root, limit)
}

/// Whether this kernel has `/proc/<pid>/task/<tid>/children` (`CONFIG_PROC_CHILDREN`).
fn children_files_exist() -> bool {
    static EXIST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EXIST.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
}

/// The walk behind [`live_tree`]; `None` once it finds more than `limit` processes.
fn walk_tree(root: i32, limit: usize) -> Option<Vec<ProcStat>> {
    let mut text = ProcText::new();
    let mut tree = Vec::new();
    let mut threads = Vec::new();
    let mut queue = vec![root];
    let mut next = 0;
    while let Some(&pid) = queue.get(next) {
        next += 1;
        let Some((stat, thread_count)) = read_stat_and_threads(&mut text, pid) else {
            continue;
        };
        // A zombie runs nothing and has no children left (they were reparented).
        if !stat.is_alive() {
            continue;
        }
        if tree.len() == limit {
            return None;
        }
        tree.push(stat);
        threads.clear();
        if thread_count <= 1 {
            threads.push(pid);
        } else if let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) {
            threads
                .extend(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()));
        }
        for &tid in &threads {
            if let Some(children) = text.read(&format!("/proc/{pid}/task/{tid}/children")) {
                queue.extend(
                    children
                        .split_ascii_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    Some(tree)
}

/// The stat of one process and its thread count (field 20 of proc(5)).
fn read_stat_and_threads(reader: &mut ProcText, pid: i32) -> Option<(ProcStat, u64)> {
    let text = reader.read(&format!("/proc/{pid}/stat"))?;
    let stat = parse_stat(&text)?;
    let threads = text[text.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .nth(17)?
        .parse()
        .ok()?;
    Some((stat, threads))
}

fn scan_tree(root: i32) -> Vec<ProcStat> {
    let processes = all_processes();
    let Some(root_stat) = processes.iter().find(|p| p.pid == root && p.is_alive()) else {
        return Vec::new();
    };
    let mut tree = vec![*root_stat];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next].pid;
        tree.extend(
            processes
                .iter()
                .filter(|p| p.ppid == parent && p.is_alive()),
        );
        next += 1;
    }
    tree
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), 100 when it cannot be read.
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map_or(100, |t| t as u64)
}

/// Bytes per memory page, 4096 when it cannot be read.
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .map_or(4096, |p| p as u64)
}

/// Seconds since boot, from `/proc/uptime`.
pub fn uptime_seconds() -> Option<f64> {
    fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let text = "1234 (my (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5555 1000000 250 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 1234);
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 1234);
        assert_eq!(stat.utime, 7);
        assert_eq!(stat.stime, 3);
        assert_eq!(stat.start_ticks, 5555);
        assert_eq!(stat.rss_pages, 250);
        assert!(stat.is_alive());
    }

    #[test]
    fn zombies_are_not_alive() {
        let text = "9 (z) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10 0 0";
        assert!(!parse_stat(text).unwrap().is_alive());
    }

    #[test]
    fn the_walk_finds_what_the_scan_finds() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        // Wait (bounded) for both grandchildren to appear.
        for _ in 0..500 {
            if scan_tree(root).len() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut walked: Vec<i32> = walk_tree(root, usize::MAX)
            .unwrap()
            .iter()
            .map(|p| p.pid)
            .collect();
        let mut scanned: Vec<i32> = scan_tree(root).iter().map(|p| p.pid).collect();
        assert_eq!(walked[0], root);
        walked.sort_unstable();
        scanned.sort_unstable();
        assert_eq!(walked, scanned);
        assert_eq!(walked.len(), 3);
        // A bounded walk gives up on a tree larger than its bound.
        assert_eq!(walk_tree(root, 2), None);
        assert_eq!(walk_tree(root, 3).map(|tree| tree.len()), Some(3));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(root),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        assert_eq!(walk_tree(root, usize::MAX), Some(Vec::new()));
        assert_eq!(walk_tree(i32::MAX, usize::MAX), Some(Vec::new()));
    }

    #[test]
    fn a_file_longer_than_one_read_step_is_read_whole() {
        let path = std::env::temp_dir().join(format!("procfs-text-{}", std::process::id()));
        let content: String = (0..3 * ProcText::STEP + 17)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        fs::write(&path, &content).unwrap();
        let mut text = ProcText::new();
        assert_eq!(
            text.read(path.to_str().unwrap()).as_deref(),
            Some(content.as_str())
        );
        // The same buffer, reused for a short file, holds only that file's text.
        assert!(
            text.read("/proc/self/stat")
                .unwrap()
                .starts_with(&format!("{} (", std::process::id()))
        );
        assert_eq!(text.read("/proc/no-such-file"), None);
        // A name cut inside a character still parses (U+FFFD in its place).
        fs::write(
            &path,
            b"77 (caf\xc3) S 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 9 0 3",
        )
        .unwrap();
        let stat = parse_stat(&text.read(path.to_str().unwrap()).unwrap()).unwrap();
        assert_eq!((stat.pid, stat.utime, stat.start_ticks), (77, 5, 9));
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(is_alive(me));
        assert!(live_tree(me).iter().any(|p| p.pid == me));
        assert_eq!(live_tree(me)[0].pid, me);
        assert!(!group_is_empty(nix::unistd::getpgrp().as_raw()));
        assert!(ticks_per_second() > 0);
        assert!(page_size() >= 4096);
        assert!(uptime_seconds().unwrap() > 0.0);
    }
}
