//! CPU and memory of a process and all its descendants, read from `/proc`.
//!
//! CPU % is the CPU time the tree used since the previous sample of the same root (the first
//! sample: since the root started), divided by the wall time between them; 100 % is one core.
//! A sample reads `/proc` for the tree's own processes only: each one's `stat`, and its
//! threads' `children` lists to find the next generation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::procfs;

/// Memory and CPU of a process tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Resident memory of the whole tree, in MiB.
    pub memory_mb: f64,
    /// CPU use of the whole tree since the previous sample, in percent of one core.
    pub cpu_percent: f64,
    /// Processes in the tree.
    pub processes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    root_start_ticks: u64,
    cpu_ticks: u64,
    at: Instant,
}

/// The most processes a quick sample reads (see [`ResourceMonitor::quick_sample_with`]).
pub const QUICK_SAMPLE_PROCESSES: usize = 64;

/// `root`'s tree, then the processes of `others`' trees not already in it; `None` as soon as
/// `tree_of` gives up on one of them.
fn combined_tree(
    root: i32,
    others: &[i32],
    mut tree_of: impl FnMut(i32) -> Option<Vec<procfs::ProcStat>>,
) -> Option<Vec<procfs::ProcStat>> {
    let mut tree = tree_of(root)?;
    let mut seen: std::collections::HashSet<i32> = tree.iter().map(|p| p.pid).collect();
    for other in others {
        if seen.contains(other) {
            continue;
        }
        for process in tree_of(*other)? {
            if seen.insert(process.pid) {
                tree.push(process);
            }
        }
    }
    Some(tree)
}

/// Remembers the previous sample of each root so that CPU % covers the time between samples.
#[derive(Debug, Default)]
pub struct ResourceMonitor {
    history: Mutex<HashMap<i32, Sample>>,
}

impl ResourceMonitor {
    /// An empty monitor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples `root` and its descendants; `None` when `root` is gone (or a zombie).
    pub fn sample(&self, root: i32) -> Option<Usage> {
        self.sample_with(root, &[])
    }

    /// Like [`sample`](Self::sample), also counting `others` and their descendants (processes
    /// of the same server that left `root`'s tree); each process is counted once.
    pub fn sample_with(&self, root: i32, others: &[i32]) -> Option<Usage> {
        let tree = combined_tree(root, others, |pid| Some(procfs::live_tree(pid)))?;
        self.usage_of(root, &tree)
    }

    /// [`sample`](Self::sample) when it is quick enough for a thread that must not block: see
    /// [`quick_sample_with`](Self::quick_sample_with).
    pub fn quick_sample(&self, root: i32) -> Option<Option<Usage>> {
        self.quick_sample_with(root, &[])
    }

    /// [`sample_with`](Self::sample_with) when it reads only the `stat` and `children` files of
    /// at most [`QUICK_SAMPLE_PROCESSES`] processes (tens of microseconds); `None`, with nothing
    /// recorded, for a larger tree or a kernel without `children` files.
    pub fn quick_sample_with(&self, root: i32, others: &[i32]) -> Option<Option<Usage>> {
        let limit = QUICK_SAMPLE_PROCESSES;
        let tree = combined_tree(root, others, |pid| procfs::small_live_tree(pid, limit))?;
        if tree.len() > limit {
            return None;
        }
        Some(self.usage_of(root, &tree))
    }

    /// The usage of `tree` (`root`'s first), remembered for `root`'s next sample.
    fn usage_of(&self, root: i32, tree: &[procfs::ProcStat]) -> Option<Usage> {
        let root_stat = tree.first()?;
        let now = Instant::now();
        let ticks: u64 = tree.iter().map(|p| p.utime + p.stime).sum();
        let per_second = procfs::ticks_per_second() as f64;
        let memory_bytes: u64 = tree.iter().map(|p| p.rss_pages).sum::<u64>() * procfs::page_size();

        let mut history = crate::sync::lock(&self.history);
        let previous = history
            .get(&root)
            .filter(|s| s.root_start_ticks == root_stat.start_ticks)
            .copied();
        let cpu_percent = match previous {
            Some(before) => {
                let wall = now.duration_since(before.at).as_secs_f64();
                let used = ticks.saturating_sub(before.cpu_ticks) as f64 / per_second;
                if wall > 0.0 { used / wall * 100.0 } else { 0.0 }
            }
            None => {
                let uptime = procfs::uptime_seconds().unwrap_or(0.0);
                let alive = uptime - root_stat.start_ticks as f64 / per_second;
                if alive > 0.0 {
                    ticks as f64 / per_second / alive * 100.0
                } else {
                    0.0
                }
            }
        };
        history.insert(
            root,
            Sample {
                root_start_ticks: root_stat.start_ticks,
                cpu_ticks: ticks,
                at: now,
            },
        );
        Some(Usage {
            memory_mb: memory_bytes as f64 / (1024.0 * 1024.0),
            cpu_percent: (cpu_percent * 10.0).round() / 10.0,
            processes: tree.len(),
        })
    }

    /// Forgets the previous sample of `root`.
    pub fn forget(&self, root: i32) {
        crate::sync::lock(&self.history).remove(&root);
    }

    /// Forgets every previous sample.
    pub fn clear(&self) {
        crate::sync::lock(&self.history).clear();
    }
}
