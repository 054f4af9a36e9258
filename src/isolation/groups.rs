//! The runner's cgroups: one per server (named by its id) and one per build run, found once,
//! created with their limits, read for usage and OOM kills, ended with their processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::cgroup::{self, Cgroup, Cgroups, JoinPaths};
use super::settings::Limits;
use crate::sync::lock;

/// One group and what was last read of it.
#[derive(Debug)]
struct Group {
    cgroup: Cgroup,
    /// CPU time and when it was read, for the next CPU %.
    last_cpu: (u64, Instant),
    /// OOM kills already reported.
    oom_seen: u64,
}

/// A group's counters as `getResourceUsage` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupUsage {
    /// Memory close to the resident set of every process, in MiB.
    pub memory_mb: f64,
    /// CPU use since the previous sample (the first: since the group was made), in percent of
    /// one core.
    pub cpu_percent: f64,
    /// Processes in the group.
    pub processes: usize,
}

/// Where this runner's groups live (found on first use) and the groups it made.
#[derive(Debug, Default)]
pub struct Groups {
    place: OnceLock<Result<Cgroups, String>>,
    groups: Mutex<HashMap<String, Group>>,
    /// Where no cgroup can be made: the memory limit in MB of each server an RSS watchdog
    /// enforces instead.
    watched: Mutex<HashMap<String, u64>>,
}

/// How old an empty group must be before a new runner removes it as a leftover.
const STALE_GROUP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The variable that keeps the runner from making cgroups when it is `off` (a host whose
/// cgroups must not be touched; limits other than memory are then not enforced).
pub const CGROUPS_VAR: &str = "MASTRA_RUNNER_CGROUPS";

impl Groups {
    /// Where groups are made, or why none can be: found once (reads `/proc/self` and the
    /// cgroup mounts; on cgroup v2 it may move the host into a leaf group of its own).
    pub fn place(&self) -> &Result<Cgroups, String> {
        self.place.get_or_init(|| {
            if std::env::var(CGROUPS_VAR).is_ok_and(|v| v == "off") {
                return Err(format!("turned off by {CGROUPS_VAR}=off"));
            }
            let place = Cgroups::detect()?;
            // A directory another user made (a runner of root's before this one) may be
            // there and not writable: only a group made and removed proves the place.
            let probe = format!("probe-{}", std::process::id());
            let made = place
                .create(&probe, &cgroup::Limits::default())
                .map_err(|e| format!("cannot create a cgroup: {e}"))?;
            made.remove()
                .map_err(|e| format!("cannot remove a cgroup: {e}"))?;
            // Groups a host killed without warning left behind (empty, and older than any
            // group a live runner is about to fill).
            let removed = place.remove_stale(STALE_GROUP_AGE);
            if removed > 0 {
                tracing::debug!("removed {removed} empty cgroups of earlier runners");
            }
            Ok(place)
        })
    }

    /// Has an RSS watchdog enforce `memory_mb` for server `name` (where no cgroup can be made).
    pub fn watch_memory(&self, name: &str, memory_mb: u64) {
        lock(&self.watched).insert(name.to_owned(), memory_mb);
    }

    /// The memory limit an RSS watchdog enforces for server `name`, if any.
    pub fn memory_watch(&self, name: &str) -> Option<u64> {
        lock(&self.watched).get(name).copied()
    }

    /// Makes group `name` with `limits` (blocking file-system work) and returns what a child
    /// writes to join it; `Ok(None)` where no group can be made.
    pub fn create(&self, name: &str, limits: &Limits) -> std::io::Result<Option<Arc<JoinPaths>>> {
        let Ok(place) = self.place() else {
            return Ok(None);
        };
        let cgroup = place.create(name, &kernel_limits(limits))?;
        let join = Arc::new(cgroup.join_paths());
        lock(&self.groups).insert(
            name.to_owned(),
            Group {
                cgroup,
                last_cpu: (0, Instant::now()),
                oom_seen: 0,
            },
        );
        Ok(Some(join))
    }

    /// Takes over the existing group `name` (a kept server adopted from an earlier runner).
    pub fn adopt(&self, name: &str) -> bool {
        let Some(cgroup) = self.place().as_ref().ok().and_then(|p| p.open(name)) else {
            return false;
        };
        let cpu = cgroup.usage().ok().and_then(|u| u.cpu_time_ns).unwrap_or(0);
        let oom_seen = cgroup.oom_kills();
        lock(&self.groups).insert(
            name.to_owned(),
            Group {
                cgroup,
                last_cpu: (cpu, Instant::now()),
                oom_seen,
            },
        );
        true
    }

    /// What a new process of group `name` writes to join it (a restart's), if there is one.
    pub fn join_paths(&self, name: &str) -> Option<Arc<JoinPaths>> {
        lock(&self.groups)
            .get(name)
            .map(|g| Arc::new(g.cgroup.join_paths()))
    }

    fn cgroup(&self, name: &str) -> Option<Cgroup> {
        lock(&self.groups).get(name).map(|g| g.cgroup.clone())
    }

    /// Memory, CPU and processes of group `name`; `None` without such a group or where the
    /// kernel does not count CPU time per group.
    pub fn usage(&self, name: &str) -> Option<GroupUsage> {
        let cgroup = self.cgroup(name)?;
        let usage = cgroup.usage().ok()?;
        let cpu = usage.cpu_time_ns?;
        let now = Instant::now();
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(name)?;
        let (last, at) = group.last_cpu;
        group.last_cpu = (cpu, now);
        let wall = now.duration_since(at).as_nanos().max(1) as f64;
        Some(GroupUsage {
            memory_mb: usage.memory_bytes as f64 / 1_048_576.0,
            cpu_percent: (cpu.saturating_sub(last) as f64 / wall * 100.0).max(0.0),
            processes: usize::try_from(usage.processes).unwrap_or(usize::MAX),
        })
    }

    /// The memory limit of group `name` in MB when the kernel killed one of its processes for
    /// memory since the last call.
    pub fn new_oom_kill(&self, name: &str) -> Option<u64> {
        let cgroup = self.cgroup(name)?;
        let kills = cgroup.oom_kills();
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(name)?;
        if kills <= group.oom_seen {
            return None;
        }
        group.oom_seen = kills;
        Some(cgroup.limits().memory_bytes.map_or(0, |b| b / 1_048_576))
    }

    /// SIGKILLs every process of group `name`; how many there were.
    pub fn kill_all(&self, name: &str) -> usize {
        self.cgroup(name).map_or(0, |c| c.kill_all())
    }

    /// Ends group `name`: its processes killed, its directories removed.
    pub fn remove(&self, name: &str) {
        lock(&self.watched).remove(name);
        let Some(group) = lock(&self.groups).remove(name) else {
            return;
        };
        if let Err(error) = group.cgroup.remove() {
            tracing::warn!("cannot remove cgroup {name}: {error}");
        }
    }

    /// Forgets group `name` and leaves it as it is (a kept server's, for the next runner).
    pub fn let_go(&self, name: &str) {
        lock(&self.groups).remove(name);
    }
}

/// The kernel's units for `limits`.
fn kernel_limits(limits: &Limits) -> cgroup::Limits {
    cgroup::Limits {
        memory_bytes: limits.memory_mb.map(|mb| mb.saturating_mul(1_048_576)),
        cpus: limits.milli_cpus.map(|m| m as f64 / 1000.0),
        pids: limits.pids,
    }
}
