//! Reading processes from Linux's `/proc`: state, parent, group, CPU ticks, start time, memory.
//!
//! # Caveats
//! PID 1 on these machines does not reap orphans, so a killed grandchild may stay a zombie
//! (`Z`) forever. Zombies hold no resources and run no code: everything here counts them as
//! gone. `kill(pid, 0)` cannot tell a zombie from a live process, which is why liveness is read
//! from `/proc/<pid>/stat` instead.

use std::fs;

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
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
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
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// Live (non-zombie) members of process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.is_alive())
        .collect()
}

/// `root` and all its live descendants (by parent links), root first.
pub fn live_tree(root: i32) -> Vec<ProcStat> {
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
        assert!(ticks_per_second() > 0);
        assert!(page_size() >= 4096);
        assert!(uptime_seconds().unwrap() > 0.0);
    }
}
