//! The on-disk record of the process groups a runner started, so that the next runner on the
//! same `buildDir` can kill what survived a host that died without cleaning up.
//!
//! Each runner writes its own file, `<buildDir>/.runner/processes-<hostPid>-<n>.json`, holding
//! the host's pid and start time and each live group's leader pid and start time. A new runner
//! reads the other files: a file whose host is still alive belongs to a live runner and is left
//! alone; otherwise every recorded group that still has live members is SIGKILLed and the file
//! removed.
//!
//! # Caveats
//! A group is recognised by its id and its leader's start time (`/proc/<pid>/stat`), so a
//! reused pid is never hit. When the leader itself is gone (the parent-death signal killed it),
//! the members still carrying its group id are killed if they started after the leader did;
//! Linux does not hand out a pid that is still some group's id, so those are the orphans.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::procfs;

/// The directory under `buildDir` holding the runners' records.
pub const JOURNAL_DIR: &str = ".runner";

/// One runner's record of its live process groups.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    groups: Mutex<BTreeMap<i32, u64>>,
    /// Why the last write failed, until [`Journal::take_write_error`] reads it.
    write_error: Mutex<Option<std::io::Error>>,
}

impl Journal {
    /// A journal for a runner on `build_dir`; nothing is written until a group is added.
    pub fn new(build_dir: &Path) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "processes-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Journal {
            path: build_dir.join(JOURNAL_DIR).join(name),
            groups: Mutex::new(BTreeMap::new()),
            write_error: Mutex::new(None),
        }
    }

    fn groups(&self) -> MutexGuard<'_, BTreeMap<i32, u64>> {
        crate::sync::lock(&self.groups)
    }

    /// Records a new group (its leader's pid and start ticks).
    pub fn add(&self, pgid: i32, start_ticks: u64) {
        let mut groups = self.groups();
        groups.insert(pgid, start_ticks);
        self.write(&groups);
    }

    /// Forgets a group that has no live member left.
    pub fn remove(&self, pgid: i32) {
        let mut groups = self.groups();
        if groups.remove(&pgid).is_some() {
            self.write(&groups);
        }
    }

    fn write(&self, groups: &BTreeMap<i32, u64>) {
        if let Err(error) = self.try_write(groups) {
            tracing::warn!(
                "cannot record process groups in {}: {error}",
                self.path.display()
            );
            *crate::sync::lock(&self.write_error) = Some(error);
        }
    }

    /// Why the last write of the record failed (a full disk, say), once; `None` when it did
    /// not. A caller that needs its group recorded (a server the next runner must be able to
    /// reap) checks it right after starting one.
    pub fn take_write_error(&self) -> Option<crate::error::Error> {
        let error = crate::sync::lock(&self.write_error).take()?;
        Some(crate::error::Error::io(
            "record the process group (so a later runner can clean up) in",
            &self.path,
            &error,
        ))
    }

    fn try_write(&self, groups: &BTreeMap<i32, u64>) -> std::io::Result<()> {
        if groups.is_empty() {
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let host = std::process::id() as i32;
        let record = json!({
            "hostPid": host,
            "hostStartTicks": procfs::read_stat(host).map_or(0, |s| s.start_ticks),
            "groups": groups.iter().map(|(pgid, ticks)| json!({ "pgid": pgid, "startTicks": ticks })).collect::<Vec<_>>(),
        });
        let temporary = self.path.with_extension("json.tmp");
        if let Err(error) = fs::write(&temporary, record.to_string()) {
            // A partial file (a full disk) must not stay behind.
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        fs::rename(&temporary, &self.path)
    }
}

/// What a sweep of leftovers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes that were still alive and got SIGKILL.
    pub killed: Vec<i32>,
    /// Record files of dead hosts that were removed.
    pub records_removed: usize,
}

/// Kills what runners of dead hosts on `build_dir` left alive and removes their records.
pub fn reap_leftovers(build_dir: &Path) -> Leftovers {
    let mut report = Leftovers::default();
    let Ok(entries) = fs::read_dir(build_dir.join(JOURNAL_DIR)) else {
        return report;
    };
    let me = std::process::id() as i32;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(record) = fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        else {
            continue;
        };
        let host = record["hostPid"].as_i64().unwrap_or(0) as i32;
        let host_ticks = record["hostStartTicks"].as_u64().unwrap_or(0);
        let host_alive = host == me
            || procfs::read_stat(host).is_some_and(|s| s.is_alive() && s.start_ticks == host_ticks);
        if host_alive {
            tracing::debug!(record = %path.display(), host, "leftover record of a live runner: kept");
            continue;
        }
        let groups = record["groups"].as_array().cloned().unwrap_or_default();
        for group in groups {
            let (Some(pgid), Some(ticks)) = (group["pgid"].as_i64(), group["startTicks"].as_u64())
            else {
                continue;
            };
            report
                .killed
                .extend(kill_recorded_group(pgid as i32, ticks));
        }
        if fs::remove_file(&path).is_ok() {
            report.records_removed += 1;
        }
    }
    if !report.killed.is_empty() {
        tracing::warn!(
            "killed {} processes left behind by a runner that died: {:?}",
            report.killed.len(),
            report.killed
        );
    }
    report
}

/// SIGKILLs the live members of a recorded group that are provably ours.
pub(crate) fn kill_recorded_group(pgid: i32, leader_ticks: u64) -> Vec<i32> {
    let leader = procfs::read_stat(pgid);
    let leader_is_ours = leader.is_some_and(|l| l.start_ticks == leader_ticks);
    if leader.is_some() && !leader_is_ours {
        // The pid now belongs to another process, so the recorded group is long gone.
        return Vec::new();
    }
    let members: Vec<i32> = procfs::live_group_members(pgid)
        .into_iter()
        .filter(|member| member.start_ticks >= leader_ticks)
        .map(|member| member.pid)
        .collect();
    for pid in &members {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    members
}
