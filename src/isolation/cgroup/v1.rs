//! cgroup v1: a group is one directory in each controller's hierarchy (memory and pids always,
//! cpu, cpuacct and freezer when this host has them writable), all with the same name.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{
    keyed_value, make_dir, read_keyed, read_number, read_text, subtree_pids, write_text,
};
use super::hierarchies::Mounted;
use super::{
    CPU_PERIOD_US, CgroupUsage, Limits, RUNNER_DIR, cpu_quota_us, limit_or_max, parse_limit,
};

/// `memory.limit_in_bytes` shows "no limit" as a huge page-aligned number; anything from here up
/// means no limit.
const UNLIMITED_MEMORY: u64 = 1 << 62;
/// How long a freeze may take before the kill goes ahead unfrozen.
const FREEZE_POLLS: usize = 100;
const FREEZE_POLL: Duration = Duration::from_millis(2);

/// A group's directories, one per hierarchy (or the `mastra-runner` directories above them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    /// In the memory hierarchy: limit, usage, OOM kills, and the list of processes.
    pub memory: PathBuf,
    /// In the pids hierarchy.
    pub pids: PathBuf,
    /// In the cpu hierarchy (the quota), when writable.
    pub cpu: Option<PathBuf>,
    /// In the cpuacct hierarchy (cpu time), when writable; the cpu one when co-mounted.
    pub cpuacct: Option<PathBuf>,
    /// In the freezer hierarchy (a race-free kill), when writable.
    pub freezer: Option<PathBuf>,
}

impl Dirs {
    /// The directories of the child group `name`.
    pub fn child(&self, name: &str) -> Dirs {
        Dirs {
            memory: self.memory.join(name),
            pids: self.pids.join(name),
            cpu: self.cpu.as_ref().map(|dir| dir.join(name)),
            cpuacct: self.cpuacct.as_ref().map(|dir| dir.join(name)),
            freezer: self.freezer.as_ref().map(|dir| dir.join(name)),
        }
    }

    /// Every distinct directory, memory first (co-mounted hierarchies share one).
    pub fn all(&self) -> Vec<&Path> {
        let mut all: Vec<&Path> = vec![&self.memory, &self.pids];
        for dir in [&self.cpu, &self.cpuacct, &self.freezer]
            .into_iter()
            .flatten()
        {
            if !all.contains(&dir.as_path()) {
                all.push(dir);
            }
        }
        all
    }

    /// The same group with the optional directories that do not exist left out (a group opened
    /// after the host restarted may predate a hierarchy).
    pub fn existing(self) -> Dirs {
        let keep = |dir: Option<PathBuf>| dir.filter(|dir| dir.is_dir());
        Dirs {
            cpu: keep(self.cpu),
            cpuacct: keep(self.cpuacct),
            freezer: keep(self.freezer),
            ..self
        }
    }
}

/// Creates `mastra-runner` below the host's own group in each hierarchy; memory and pids must
/// be writable, the others are used when they are.
pub fn detect(hierarchies: &BTreeMap<String, Mounted>) -> Result<Dirs, String> {
    let base = |controller: &str| {
        let place = hierarchies
            .get(controller)
            .ok_or(format!("no cgroup v1 {controller} hierarchy"))?;
        let dir = place.own_dir().join(RUNNER_DIR);
        make_dir(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        Ok::<PathBuf, String>(dir)
    };
    Ok(Dirs {
        memory: base("memory")?,
        pids: base("pids")?,
        cpu: base("cpu").ok(),
        cpuacct: base("cpuacct").ok(),
        freezer: base("freezer").ok(),
    })
}

/// Writes a group's limits: `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, the
/// same, so swap does not dodge it), `pids.max`, and the cpu quota when the cpu hierarchy is
/// there. The swap+memory limit may never be below the memory limit, so it is lifted first.
pub fn write_limits(dirs: &Dirs, limits: &Limits) -> io::Result<()> {
    let memory = limits
        .memory_bytes
        .map_or("-1".to_string(), |bytes| bytes.to_string());
    let with_swap = dirs.memory.join("memory.memsw.limit_in_bytes");
    let has_swap = with_swap.exists();
    if has_swap {
        write_text(&with_swap, "-1")?;
    }
    write_text(&dirs.memory.join("memory.limit_in_bytes"), &memory)?;
    if has_swap {
        write_text(&with_swap, &memory)?;
    }
    write_text(&dirs.pids.join("pids.max"), &limit_or_max(limits.pids))?;
    if let Some(cpu) = &dirs.cpu {
        let quota = cpu_quota_us(limits.cpus).map_or("-1".to_string(), |quota| quota.to_string());
        write_text(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
        write_text(&cpu.join("cpu.cfs_quota_us"), &quota)?;
    }
    Ok(())
}

/// The limits a group's files show.
pub fn read_limits(dirs: &Dirs) -> Limits {
    let cpus = dirs.cpu.as_ref().and_then(|cpu| {
        let quota = read_number(&cpu.join("cpu.cfs_quota_us"))?;
        let period = read_number(&cpu.join("cpu.cfs_period_us")).filter(|period| *period > 0)?;
        Some(quota as f64 / period as f64)
    });
    Limits {
        memory_bytes: read_number(&dirs.memory.join("memory.limit_in_bytes"))
            .filter(|bytes| *bytes < UNLIMITED_MEMORY),
        cpus,
        pids: parse_limit(&read_text(&dirs.pids.join("pids.max")).unwrap_or_default()),
    }
}

/// Memory (resident and mapped file pages, subgroups included), cpu time (when the cpuacct
/// hierarchy is there) and processes of a group.
pub fn usage(dirs: &Dirs) -> io::Result<CgroupUsage> {
    let stat = read_text(&dirs.memory.join("memory.stat"))?;
    let memory = keyed_value(&stat, "total_rss")
        .unwrap_or(0)
        .saturating_add(keyed_value(&stat, "total_mapped_file").unwrap_or(0));
    Ok(CgroupUsage {
        memory_bytes: memory,
        cpu_time_ns: dirs
            .cpuacct
            .as_ref()
            .and_then(|dir| read_number(&dir.join("cpuacct.usage"))),
        processes: subtree_pids(&dirs.memory).len() as u64,
    })
}

/// OOM kills in the group (`memory.oom_control`, Linux 4.13+).
pub fn oom_kills(dirs: &Dirs) -> u64 {
    read_keyed(&dirs.memory.join("memory.oom_control"), "oom_kill").unwrap_or(0)
}

/// Freezes the group so none of its processes can fork or exit while it is being killed; true
/// once frozen. Gives up (and thaws) after a bounded wait: a task stuck in the kernel may keep
/// it `FREEZING`.
pub fn freeze(freezer: &Path) -> bool {
    let state = freezer.join("freezer.state");
    if write_text(&state, "FROZEN").is_err() {
        return false;
    }
    for _ in 0..FREEZE_POLLS {
        if read_text(&state).is_ok_and(|now| now.trim() == "FROZEN") {
            return true;
        }
        std::thread::sleep(FREEZE_POLL);
    }
    thaw(freezer);
    false
}

/// Lets a frozen group run again (its killed processes then die).
pub fn thaw(freezer: &Path) {
    let _ = write_text(&freezer.join("freezer.state"), "THAWED");
}
