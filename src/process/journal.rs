//! The on-disk record of the process groups a runner started, so that the next runner on the
//! same `buildDir` can kill what survived a host that died without cleaning up.
//!
//! Each runner writes its own file, `<buildDir>/.runner/processes-<hostPid>-<n>.json`, holding
//! the host's pid and start time and each live group's leader pid and start time. A new runner
//! reads the other files: a file whose host is still alive belongs to a live runner and is left
//! alone; otherwise the live members of every recorded group that carry the dead host's id are
//! SIGKILLed and the file removed.
//!
//! # Caveats
//! Journals are untrusted input ([`reap_leftovers`] says how they are bounded). A process is
//! recognised by its group id, a start time no earlier than the recorded leader's, and the dead
//! host's id in its environment (every child carries [`super::watchdog::HOST_VAR`]), so neither
//! a reused pid nor a group that a forged journal names is ever hit.

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
        super::state_files::create_private_dir(dir)?;
        let host = std::process::id() as i32;
        let record = json!({
            "hostPid": host,
            "hostStartTicks": procfs::read_stat(host).map_or(0, |s| s.start_ticks),
            "groups": groups.iter().map(|(pgid, ticks)| json!({ "pgid": pgid, "startTicks": ticks })).collect::<Vec<_>>(),
        });
        let temporary = self.path.with_extension("json.tmp");
        super::state_files::write_private_file(&temporary, record.to_string().as_bytes())?;
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

/// The largest journal file read; a runner's own holds one short entry per live group.
const MAX_JOURNAL_BYTES: u64 = 1024 * 1024;

/// The most groups read from one journal.
const MAX_GROUPS: usize = 4096;

/// The most journal files read by one reap.
const MAX_JOURNALS: usize = 1024;

/// The highest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX: i64 = 4 * 1024 * 1024;

/// A journal of a runner whose host is dead, as read from its file.
struct DeadHostJournal {
    /// `<hostPid>-<hostStartTicks>`: what that host's children carry in
    /// [`super::watchdog::HOST_VAR`].
    host_id: String,
    /// Recorded groups: leader pid and the leader's start time.
    groups: Vec<(i32, u64)>,
}

/// Kills what runners of dead hosts on `build_dir` left alive and removes their records.
///
/// A journal file is data from an untrusted writer (any server or build could write there): it
/// is read only when it is a regular file of at most `MAX_JOURNAL_BYTES`, at most
/// `MAX_GROUPS` of its groups count, and a group id outside 2..=`PID_MAX`, this host's own
/// pid or process group is ignored. A process is killed only when it is positively identified as
/// a child of that dead host: a live member of a recorded group, started no earlier than the
/// group's leader, whose environment carries the dead host's id. `/proc` is scanned once,
/// whatever the journals hold.
pub fn reap_leftovers(build_dir: &Path) -> Leftovers {
    let mut report = Leftovers::default();
    let Ok(entries) = fs::read_dir(build_dir.join(JOURNAL_DIR)) else {
        return report;
    };
    let mut journals = Vec::new();
    for entry in entries.flatten().take(MAX_JOURNALS) {
        let path = entry.path();
        let is_journal = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("processes-") && name.ends_with(".json"));
        if !is_journal {
            continue;
        }
        match read_journal(&path) {
            Ok(Some(journal)) => journals.push(journal),
            Ok(None) => {
                tracing::debug!(record = %path.display(), "leftover record of a live runner: kept");
                continue;
            }
            Err(why) => tracing::warn!("process journal {} ignored: {why}", path.display()),
        }
        if fs::remove_file(&path).is_ok() {
            report.records_removed += 1;
        }
    }
    if journals.iter().all(|journal| journal.groups.is_empty()) {
        return report;
    }
    let processes = procfs::all_processes();
    for journal in &journals {
        let needle = format!("{}={}", super::watchdog::HOST_VAR, journal.host_id);
        for (pgid, leader_ticks) in &journal.groups {
            for member in processes
                .iter()
                .filter(|p| p.pgrp == *pgid && p.is_alive() && p.start_ticks >= *leader_ticks)
            {
                if procfs::environ_has(member.pid, |entry| entry == needle.as_bytes())
                    && kill(Pid::from_raw(member.pid), Signal::SIGKILL).is_ok()
                {
                    report.killed.push(member.pid);
                }
            }
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

/// Reads the journal at `path`: `None` when its host is alive (the file is a live runner's),
/// an error when it cannot be trusted enough to act on.
fn read_journal(path: &Path) -> Result<Option<DeadHostJournal>, String> {
    let text = super::read_private_file(path, MAX_JOURNAL_BYTES).map_err(|e| e.to_string())?;
    let record: Value = serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}"))?;
    let host = record["hostPid"]
        .as_i64()
        .filter(|pid| (2..=PID_MAX).contains(pid))
        .ok_or("its hostPid is not a pid")? as i32;
    let host_ticks = record["hostStartTicks"]
        .as_u64()
        .filter(|ticks| *ticks > 0)
        .ok_or("its hostStartTicks is not a start time")?;
    let me = std::process::id() as i32;
    let host_alive = host == me
        || procfs::read_stat(host).is_some_and(|s| s.is_alive() && s.start_ticks == host_ticks);
    if host_alive {
        return Ok(None);
    }
    let own_group = nix::unistd::getpgrp().as_raw();
    let groups = record["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .take(MAX_GROUPS)
                .filter_map(|group| {
                    let pgid = group["pgid"]
                        .as_i64()
                        .filter(|p| (2..=PID_MAX).contains(p))?;
                    let ticks = group["startTicks"].as_u64().filter(|t| *t > 0)?;
                    let pgid = pgid as i32;
                    (pgid != me && pgid != own_group).then_some((pgid, ticks))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(DeadHostJournal {
        host_id: format!("{host}-{host_ticks}"),
        groups,
    }))
}
