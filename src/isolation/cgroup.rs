//! A cgroup per server: the kernel counts and limits every process a server starts, `setsid`
//! escapees included, and ends them all at once.
//!
//! [`Cgroups::detect`] finds where this runner may create groups: below the host process's own
//! group, in a directory `mastra-runner/`, in cgroup v2 when the host's group has the memory and
//! pids controllers to hand down, else in the v1 hierarchies when memory and pids are writable.
//! [`Cgroups::create`] makes a group with its [`Limits`]; a child joins it before `exec` through
//! [`JoinPaths::join_self`]; [`Cgroup::kill_all`] and [`Cgroup::remove`] end it.
//!
//! Every call is synchronous filesystem work: callers run it off the async threads. Everything
//! read from cgroupfs and `/proc` is untrusted: reads are capped and parses tolerate garbage.
//!
//! # Caveats
//! - Without `cgroup.kill` (v2 before Linux 5.14) or a freezer (v1), [`Cgroup::kill_all`] reads
//!   the group's pids and signals them: a process that exits between the read and the signal may
//!   have its pid reused by an unrelated process. The freezer closes that race on v1 (frozen
//!   processes neither exit nor fork); `cgroup.kill` has none.
//! - The kernel may still list an exiting process for a moment after SIGKILL, so removing a
//!   group retries briefly while `rmdir` says busy.

mod files;
mod hierarchies;
mod v1;
mod v2;

use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use files::{child_dir_names, make_dir, subtree_deepest_first, subtree_pids};
pub use hierarchies::{Hierarchies, Mounted};

/// The directory below the host's own group that holds the runner's groups.
pub const RUNNER_DIR: &str = "mastra-runner";
/// The cpu quota period, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel takes, in microseconds.
const MIN_CPU_QUOTA_US: u64 = 1_000;
/// How many times [`Cgroup::kill_all`] reads and signals before it gives up, and the pause
/// between rounds.
const KILL_ROUNDS: usize = 200;
const KILL_PAUSE: Duration = Duration::from_millis(5);
/// How long [`Cgroup::remove`] retries a busy `rmdir` (200 × 5 ms).
const REMOVE_ATTEMPTS: usize = 200;
const MAX_NAME_LEN: usize = 100;

/// Which cgroup interface a runner's groups use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// `cgroup-v1` or `cgroup-v2`, as `getStats().isolation` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "cgroup-v1",
            CgroupVersion::V2 => "cgroup-v2",
        }
    }
}

/// The limits of one group; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Memory (swap included where the kernel accounts it), in bytes; past it the kernel
    /// OOM-kills a process of the group.
    pub memory_bytes: Option<u64>,
    /// CPU time, in CPUs (0.5 is half of one); a quota per 100 ms period.
    pub cpus: Option<f64>,
    /// Processes and threads; past it `fork` fails inside the group.
    pub pids: Option<u64>,
}

/// Which limits this host can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enforced {
    /// `memoryMb`.
    pub memory: bool,
    /// `pids`.
    pub pids: bool,
    /// `cpus` (the cpu controller may be missing where memory and pids are there).
    pub cpus: bool,
}

/// A group's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Memory close to the resident set: anonymous plus mapped file pages, in bytes.
    pub memory_bytes: u64,
    /// CPU time of every process the group has had, in nanoseconds; `None` on v1 without a
    /// cpuacct hierarchy.
    pub cpu_time_ns: Option<u64>,
    /// Processes now in the group.
    pub processes: u64,
}

/// A group's directories (or the `mastra-runner` directories above the groups).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Dirs {
    V2 { dir: PathBuf, cpu: bool },
    V1(v1::Dirs),
}

impl Dirs {
    fn child(&self, name: &str) -> Dirs {
        match self {
            Dirs::V2 { dir, cpu } => Dirs::V2 {
                dir: dir.join(name),
                cpu: *cpu,
            },
            Dirs::V1(dirs) => Dirs::V1(dirs.child(name)),
        }
    }

    /// Every distinct directory, the one listing the processes first.
    fn all(&self) -> Vec<&Path> {
        match self {
            Dirs::V2 { dir, .. } => vec![dir],
            Dirs::V1(dirs) => dirs.all(),
        }
    }

    /// The directory whose `cgroup.procs` lists the group's processes.
    fn procs_dir(&self) -> &Path {
        match self {
            Dirs::V2 { dir, .. } => dir,
            Dirs::V1(dirs) => &dirs.memory,
        }
    }
}

/// Where this runner creates its groups: `mastra-runner/` below the host's own group.
#[derive(Clone, Debug)]
pub struct Cgroups {
    base: Dirs,
}

impl Cgroups {
    /// Finds a place to create groups on this host: v2 when the host's own v2 group lets it
    /// create children with memory and pids (moving the host into the leaf
    /// `<own>/mastra-runner/host` when the "no internal processes" rule requires it to enable
    /// controllers), else v1 when the memory and pids hierarchies are writable below the host's
    /// own groups. The error explains why neither.
    pub fn detect() -> Result<Cgroups, String> {
        Cgroups::detect_at(&Hierarchies::of_this_process()?)
    }

    /// [`Cgroups::detect`] with the hierarchies given (tests lay out a temporary directory like
    /// cgroupfs).
    pub fn detect_at(hierarchies: &Hierarchies) -> Result<Cgroups, String> {
        let v2 = match &hierarchies.v2 {
            Some(place) => v2::detect(place),
            None => Err("no cgroup v2 hierarchy".to_string()),
        };
        let v2_reason = match v2 {
            Ok((dir, cpu)) => {
                return Ok(Cgroups {
                    base: Dirs::V2 { dir, cpu },
                });
            }
            Err(reason) => reason,
        };
        match v1::detect(&hierarchies.v1) {
            Ok(dirs) => Ok(Cgroups {
                base: Dirs::V1(dirs),
            }),
            Err(v1_reason) => Err(format!("no writable cgroup: {v2_reason}; {v1_reason}")),
        }
    }

    /// The interface the groups use.
    pub fn version(&self) -> CgroupVersion {
        match self.base {
            Dirs::V2 { .. } => CgroupVersion::V2,
            Dirs::V1(_) => CgroupVersion::V1,
        }
    }

    /// Which limits this host can enforce.
    pub fn enforced(&self) -> Enforced {
        let cpus = match &self.base {
            Dirs::V2 { cpu, .. } => *cpu,
            Dirs::V1(dirs) => dirs.cpu.is_some(),
        };
        Enforced {
            memory: true,
            pids: true,
            cpus,
        }
    }

    /// Creates the group `name` (letters, digits, `.`, `_`, `-`; 1 to 100 characters; not
    /// starting with `.`; not `host`), or reuses it, with `limits` written over whatever it had.
    /// On failure, the directories this call created are removed again.
    pub fn create(&self, name: &str, limits: &Limits) -> io::Result<Cgroup> {
        validate_name(name)?;
        if limits
            .cpus
            .is_some_and(|cpus| !(cpus.is_finite() && cpus > 0.0))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the cpus limit must be a positive number",
            ));
        }
        let dirs = self.base.child(name);
        let mut created = Vec::new();
        let made = dirs.all().into_iter().try_for_each(|dir| {
            if make_dir(dir).map_err(|error| with_path(error, dir))? {
                created.push(dir.to_path_buf());
            }
            Ok(())
        });
        let written = made.and_then(|()| match &dirs {
            Dirs::V2 { dir, cpu } => v2::write_limits(dir, limits, *cpu),
            Dirs::V1(v1_dirs) => v1::write_limits(v1_dirs, limits),
        });
        if let Err(error) = written {
            for dir in created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(io::Error::new(
                error.kind(),
                format!("cannot set up cgroup {name}: {error}"),
            ));
        }
        Ok(Cgroup {
            name: name.to_string(),
            dirs,
            limits: *limits,
        })
    }

    /// Opens an existing group by name (a kept server's, after the host restarted), with the
    /// limits its files show; `None` when it is absent or the name is not a group name.
    pub fn open(&self, name: &str) -> Option<Cgroup> {
        validate_name(name).ok()?;
        let dirs = match self.base.child(name) {
            Dirs::V1(dirs) => Dirs::V1(dirs.existing()),
            v2 => v2,
        };
        if !dirs.all().iter().all(|dir| dir.is_dir()) {
            return None;
        }
        let limits = match &dirs {
            Dirs::V2 { dir, .. } => v2::read_limits(dir),
            Dirs::V1(v1_dirs) => v1::read_limits(v1_dirs),
        };
        Some(Cgroup {
            name: name.to_string(),
            dirs,
            limits,
        })
    }

    /// Removes the groups below `mastra-runner/` that hold no process and are not in `keep`
    /// (leftovers of dead hosts); returns how many were removed.
    pub fn remove_empty_except(&self, keep: &[&str]) -> usize {
        self.remove_empty(keep, Duration::ZERO)
    }

    /// [`Self::remove_empty_except`] for groups made at least `min_age` ago, so that a group
    /// another live runner has just made, and whose process has not joined yet, stays.
    pub fn remove_stale(&self, min_age: Duration) -> usize {
        self.remove_empty(&[], min_age)
    }

    fn remove_empty(&self, keep: &[&str], min_age: Duration) -> usize {
        let old_enough = |dir: &Path| {
            std::fs::metadata(dir)
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|made| made.elapsed().ok())
                .is_some_and(|age| age >= min_age)
        };
        let names: BTreeSet<String> = self
            .base
            .all()
            .into_iter()
            .flat_map(child_dir_names)
            .collect();
        names
            .into_iter()
            .filter(|name| validate_name(name).is_ok() && !keep.contains(&name.as_str()))
            .filter(|name| {
                let dirs = self.base.child(name);
                if dirs
                    .all()
                    .into_iter()
                    .any(|dir| !old_enough(dir) || !subtree_pids(dir).is_empty())
                {
                    return false;
                }
                // Every directory is tried, deepest first; `rmdir` refuses one that gained a
                // process since.
                let failures = dirs
                    .all()
                    .into_iter()
                    .flat_map(subtree_deepest_first)
                    .filter(|dir| std::fs::remove_dir(dir).is_err())
                    .count();
                failures == 0
            })
            .count()
    }
}

/// One group of processes (a server's), with its limits.
#[derive(Clone, Debug)]
pub struct Cgroup {
    name: String,
    dirs: Dirs,
    limits: Limits,
}

impl Cgroup {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a child writes to join the group, prepared before `fork`.
    pub fn join_paths(&self) -> JoinPaths {
        let procs = self
            .dirs
            .all()
            .into_iter()
            .filter_map(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect();
        JoinPaths { procs }
    }

    /// The processes in the group and its subgroups (at most 100 000).
    pub fn pids(&self) -> Vec<i32> {
        subtree_pids(self.dirs.procs_dir())
    }

    /// SIGKILLs every process in the group until it is empty (v2: `cgroup.kill` when the kernel
    /// has it; v1: frozen first when the freezer hierarchy is there; else rounds of reading and
    /// signalling, bounded); returns how many processes were signalled.
    pub fn kill_all(&self) -> usize {
        let mut signalled = HashSet::new();
        let freezer = match &self.dirs {
            Dirs::V1(dirs) => dirs
                .freezer
                .as_deref()
                .filter(|freezer| v1::freeze(freezer)),
            Dirs::V2 { .. } => None,
        };
        for round in 0..KILL_ROUNDS {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            let at_once = match &self.dirs {
                Dirs::V2 { dir, .. } => v2::kill(dir),
                Dirs::V1(_) => false,
            };
            for pid in pids {
                if at_once || kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    signalled.insert(pid);
                }
            }
            // Frozen processes act on SIGKILL once thawed; they could not fork in between.
            if let (0, Some(freezer)) = (round, freezer) {
                v1::thaw(freezer);
            }
            std::thread::sleep(KILL_PAUSE);
        }
        if let Some(freezer) = freezer {
            v1::thaw(freezer);
        }
        signalled.len()
    }

    /// The group's counters.
    pub fn usage(&self) -> io::Result<CgroupUsage> {
        match &self.dirs {
            Dirs::V2 { dir, .. } => v2::usage(dir),
            Dirs::V1(dirs) => v1::usage(dirs),
        }
    }

    /// How many times the kernel OOM-killed a process of the group.
    pub fn oom_kills(&self) -> u64 {
        match &self.dirs {
            Dirs::V2 { dir, .. } => v2::oom_kills(dir),
            Dirs::V1(dirs) => v1::oom_kills(dirs),
        }
    }

    /// How many times a fork failed at the pids limit (`pids.events` `max`).
    pub fn pids_max_hits(&self) -> u64 {
        let dir = match &self.dirs {
            Dirs::V2 { dir, .. } => dir,
            Dirs::V1(dirs) => &dirs.pids,
        };
        files::read_keyed(&dir.join("pids.events"), "max").unwrap_or(0)
    }

    /// The limits as written (or, for an opened group, as its files showed them).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Kills what is left, then removes the group's directories (subgroups first), retrying
    /// briefly while the kernel still lists exiting processes.
    pub fn remove(&self) -> io::Result<()> {
        self.kill_all();
        let mut first_error = None;
        for dir in self.dirs.all().into_iter().flat_map(subtree_deepest_first) {
            if let Err(error) = remove_dir_when_idle(&dir) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The `cgroup.procs` files a child writes to join a group.
#[derive(Clone, Debug)]
pub struct JoinPaths {
    procs: Vec<CString>,
}

impl JoinPaths {
    /// In a forked child before `exec`: moves the calling process into the group by writing `0`
    /// to each `cgroup.procs`. Async-signal-safe: `open`, `write` and `close` only, no allocation,
    /// no lock.
    pub fn join_self(&self) -> io::Result<()> {
        for path in &self.procs {
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is open; the buffer is one static byte.
            let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            let failed = (written != 1).then(io::Error::last_os_error);
            // SAFETY: `fd` was opened above and is closed once.
            unsafe { libc::close(fd) };
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Checks a group name: 1 to 100 of `[A-Za-z0-9._-]`, not starting with `.`, and not the v2
/// host leaf's name.
fn validate_name(name: &str) -> io::Result<()> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name != v2::HOST_LEAF
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid cgroup name {name:?}"),
        ))
    }
}

/// The quota per [`CPU_PERIOD_US`] for `cpus` CPUs, at least the kernel's minimum.
fn cpu_quota_us(cpus: Option<f64>) -> Option<u64> {
    cpus.map(|cpus| ((cpus * CPU_PERIOD_US as f64).round() as u64).max(MIN_CPU_QUOTA_US))
}

/// A limit as v2 and `pids.max` write it: the number, or `max`.
fn limit_or_max(limit: Option<u64>) -> String {
    limit.map_or("max".to_string(), |value| value.to_string())
}

/// A limit file's value: a number, or `None` for `max` or anything unreadable.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `error` with the path it happened at.
fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// `rmdir` of a group directory, retried while the kernel says busy (exiting processes still
/// listed); a directory already gone is fine.
fn remove_dir_when_idle(dir: &Path) -> io::Result<()> {
    for _ in 0..REMOVE_ATTEMPTS {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::ResourceBusy => {
                std::thread::sleep(KILL_PAUSE)
            }
            Err(error) => return Err(with_path(error, dir)),
        }
    }
    Err(with_path(io::Error::from(io::ErrorKind::ResourceBusy), dir))
}

#[cfg(test)]
mod tests;
