//! Servers that outlive their host (`keepServersOnExit`): their records on disk, and how a new
//! runner claims the ones no live runner supervises.
//!
//! Each kept server has a record, `<buildDir>/.runner/kept/<serverId>.json` (mode 0600), and a
//! log file beside it, `<serverId>.log`. The record names the server (ids, port, token, log
//! file, start time), its process (pid and start ticks, which is also its process group and
//! session), its route, and the runner supervising it (`owner`: the host's pid and start ticks
//! and the runner's number in that host; none once `detach()` let go of it).
//!
//! A new runner claims records under an exclusive `flock` of `.runner/kept.lock`, taken without
//! waiting: of two runners starting at once one claims, the other claims nothing and says so.
//! A record whose owner still runs is left alone; a record whose process is still the recorded
//! one (pid, start ticks, and its token in its environment) is claimed (its owner becomes this
//! runner); any other record is of a server that died while no host watched: whatever is left of
//! its group is killed, it is reported, and its files are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::process::{self, journal::JOURNAL_DIR, ownership, procfs};
use crate::sync::lock;

/// The directory under `<buildDir>/.runner` holding kept servers' records and log files.
const KEPT_DIR: &str = "kept";

/// The lock file a runner holds while it claims records.
const LOCK_FILE: &str = "kept.lock";

/// The record format's version.
const VERSION: u64 = 1;

/// Runners of this host that are alive, by number (records name their owner by it).
static LIVE_RUNNERS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// One kept server, as its record on disk has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRecord {
    /// `RunningServer.id`.
    pub server_id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// Its project.
    pub project_id: String,
    /// The build it runs.
    pub build_id: String,
    /// The port it listens on.
    pub port: u16,
    /// Its current process (also its group's and session's id); 0 while it is being spawned.
    pub pid: u32,
    /// That process's start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// The token in the environment of each of its processes.
    pub token: String,
    /// The file its output is appended to.
    pub log_file: PathBuf,
    /// Its program and arguments, for restarts (read from here, not from `/proc`, where a
    /// process may rewrite its title).
    pub command: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// When it was deployed.
    pub started_at: SystemTime,
    /// Restarts the restart policy made.
    pub restarts: u32,
    /// The route the router gave it, if any.
    pub route_id: Option<String>,
    /// Whether its deploy finished (a server whose host died during its deploy is not kept).
    pub deployed: bool,
    /// The runner supervising it; `None` once a runner let go of it with `detach()`.
    pub owner: Option<String>,
}

impl KeptRecord {
    fn to_json(&self) -> Value {
        json!({
            "version": VERSION,
            "serverId": self.server_id,
            "deploymentId": self.deployment_id,
            "projectId": self.project_id,
            "buildId": self.build_id,
            "port": self.port,
            "pid": self.pid,
            "pgid": self.pid,
            "startTicks": self.start_ticks,
            "token": self.token,
            "logFile": self.log_file.to_string_lossy(),
            "command": self.command,
            "cwd": self.cwd.to_string_lossy(),
            "startedAtMs": millis_since_epoch(self.started_at),
            "restarts": self.restarts,
            "routeId": self.route_id,
            "deployed": self.deployed,
            "owner": self.owner,
        })
    }

    fn from_json(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_owned);
        let number = |key: &str| value.get(key)?.as_u64();
        if number("version")? != VERSION {
            return None;
        }
        Some(KeptRecord {
            server_id: text("serverId")?,
            deployment_id: text("deploymentId")?,
            project_id: text("projectId")?,
            build_id: text("buildId")?,
            port: u16::try_from(number("port")?).ok()?,
            pid: u32::try_from(number("pid")?).ok()?,
            start_ticks: number("startTicks")?,
            token: text("token")?,
            log_file: PathBuf::from(text("logFile")?),
            command: value
                .get("command")?
                .as_array()?
                .iter()
                .map(|arg| arg.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()?,
            cwd: PathBuf::from(text("cwd")?),
            started_at: UNIX_EPOCH + Duration::from_millis(number("startedAtMs")?),
            restarts: u32::try_from(number("restarts")?).ok()?,
            route_id: text("routeId"),
            deployed: value.get("deployed")?.as_bool()?,
            owner: text("owner"),
        })
    }
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A recorded server that was not running any more when a runner looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadServer {
    /// Its id.
    pub server_id: String,
    /// The deployment it served.
    pub deployment_id: String,
    /// Its port (free now).
    pub port: u16,
    /// When its log file was last written: about when it died.
    pub log_ended_at: Option<SystemTime>,
    /// Why it was not adopted.
    pub reason: String,
}

/// What a runner found when it looked for kept servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptionReport {
    /// Servers now supervised by this runner, by id.
    pub adopted: Vec<String>,
    /// Recorded servers that died meanwhile.
    pub died: Vec<DeadServer>,
    /// Servers left to the live runner that supervises them, by id.
    pub left_to_other_runner: Vec<String>,
    /// Why this runner adopted nothing at all, when it did not look (another runner was
    /// claiming at that moment) or could not.
    pub not_adopted: Option<String>,
}

/// The records of this runner's kept servers, and its identity as their owner.
#[derive(Debug)]
pub struct KeptServers {
    dir: PathBuf,
    owner: String,
    number: u64,
    records: Mutex<BTreeMap<String, KeptRecord>>,
}

impl KeptServers {
    /// The kept servers of a runner on `build_dir`. The runner counts as alive (its records
    /// are not claimed by others) until this is dropped or [`KeptServers::let_go`] is called.
    pub fn new(build_dir: &Path) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        lock(&LIVE_RUNNERS).insert(number);
        KeptServers {
            dir: build_dir.join(JOURNAL_DIR).join(KEPT_DIR),
            owner: format!("{}/{number}", process::watchdog::host_id()),
            number,
            records: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where server `server_id`'s output goes.
    pub fn log_file(&self, server_id: &str) -> PathBuf {
        self.dir.join(format!("{server_id}.log"))
    }

    /// Where server `server_id`'s record is.
    pub fn record_path(&self, server_id: &str) -> PathBuf {
        self.dir.join(format!("{server_id}.json"))
    }

    /// Records a server this runner supervises (owned by it); nothing is kept when the record
    /// cannot be written.
    pub fn record(&self, mut record: KeptRecord) -> io::Result<()> {
        record.owner = Some(self.owner.clone());
        self.write(&record)?;
        lock(&self.records).insert(record.server_id.clone(), record);
        Ok(())
    }

    /// Changes the record of `server_id` (a restart's new process, its route, its deploy
    /// finishing) and writes it.
    pub fn update(&self, server_id: &str, change: impl FnOnce(&mut KeptRecord)) {
        let mut records = lock(&self.records);
        let Some(record) = records.get_mut(server_id) else {
            return;
        };
        change(record);
        if let Err(error) = self.write(record) {
            tracing::warn!("cannot update the record of kept server '{server_id}': {error}");
        }
    }

    /// Stops keeping a record in memory (its files stay, for [`KeptServers::clean_up`]).
    pub fn forget(&self, server_id: &str) {
        lock(&self.records).remove(server_id);
    }

    /// Forgets a server that is down for good: its record and its log file go.
    pub fn remove(&self, server_id: &str) {
        lock(&self.records).remove(server_id);
        remove_files(&self.record_path(server_id), &self.log_file(server_id));
    }

    /// Lets go of every server this runner supervises (`detach()`): their records lose their
    /// owner, so the next runner claims them even while this host still runs.
    pub fn let_go(&self) {
        let mut records = lock(&self.records);
        for record in records.values_mut() {
            record.owner = None;
            if let Err(error) = self.write(record) {
                tracing::warn!(
                    "cannot hand over kept server '{}': {error}",
                    record.server_id
                );
            }
        }
        records.clear();
    }

    fn write(&self, record: &KeptRecord) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.record_path(&record.server_id);
        let temporary = path.with_extension("json.tmp");
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                io::Write::write_all(&mut file, record.to_json().to_string().as_bytes())
            });
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        fs::rename(&temporary, &path)
    }

    /// Claims every record that no live runner supervises and whose process still runs, and
    /// reports the servers that died (their records come back in [`Claim::dead`], for
    /// [`KeptServers::clean_up`]). Reads small files and each recorded process's `/proc` entry
    /// only, and never waits for another runner.
    pub fn claim(&self) -> Claim {
        let mut claim = Claim::default();
        if let Err(error) = fs::create_dir_all(&self.dir) {
            claim.report.not_adopted = Some(format!("cannot use {}: {error}", self.dir.display()));
            return claim;
        }
        let lock_path = self.dir.with_file_name(LOCK_FILE);
        let held = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|error| format!("cannot open {}: {error}", lock_path.display()))
            .and_then(|file| {
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
                    |(_, errno)| match errno {
                        nix::errno::Errno::EWOULDBLOCK => format!(
                            "another runner is adopting the servers of this buildDir right now ({})",
                            lock_path.display()
                        ),
                        other => format!("cannot lock {}: {}", lock_path.display(), other.desc()),
                    },
                )
            });
        let _held = match held {
            Ok(held) => held,
            Err(why) => {
                claim.report.not_adopted = Some(why);
                return claim;
            }
        };
        for path in self.record_files() {
            let Some(record) = fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|value| KeptRecord::from_json(&value))
            else {
                tracing::warn!("unreadable kept-server record {}: skipped", path.display());
                continue;
            };
            if let Some(owner) = record.owner.as_deref().filter(|o| owner_is_alive(o)) {
                tracing::debug!(
                    server = record.server_id,
                    owner,
                    "kept server supervised by a live runner"
                );
                claim
                    .report
                    .left_to_other_runner
                    .push(record.server_id.clone());
                continue;
            }
            let reason = match (record.deployed, identify(&record)) {
                (_, Identity::NotOurs) => {
                    // The recorded pid and start time are this process's, yet it carries
                    // another token: the record does not describe it, so it is not touched.
                    tracing::warn!(
                        "kept-server record {} names process {}, which is not that server: record removed",
                        path.display(),
                        record.pid
                    );
                    remove_files(&path, Path::new(""));
                    continue;
                }
                (false, _) => Some("its host ended before its deploy finished"),
                (true, Identity::Gone) => Some("it stopped while no runner supervised it"),
                (true, Identity::Same) => None,
            };
            if let Some(reason) = reason {
                claim.report.died.push(dead_server(&record, reason));
                claim.dead.push(record);
                continue;
            }
            let server_id = record.server_id.clone();
            match self.record(record) {
                Ok(()) => {
                    if let Some(record) = lock(&self.records).get(&server_id) {
                        claim.claimed.push(record.clone());
                    }
                    claim.report.adopted.push(server_id);
                }
                Err(error) => tracing::warn!("cannot claim kept server '{server_id}': {error}"),
            }
        }
        claim
    }

    fn record_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
    }

    /// Kills what is left of a dead server's processes (its group, when it had a process, and
    /// every process carrying its token) and removes its files. Reads every process's
    /// environment: call it off Node's main thread.
    pub fn clean_up(&self, record: &KeptRecord) {
        let mut killed = if record.pid == 0 {
            Vec::new()
        } else {
            process::journal::kill_recorded_group(record.pid as i32, record.start_ticks)
        };
        killed.extend(ownership::kill_token_processes_now(&record.token));
        if !killed.is_empty() {
            tracing::warn!(
                "killed what was left of kept server '{}': {killed:?}",
                record.server_id
            );
        }
        remove_files(&self.record_path(&record.server_id), &record.log_file);
    }
}

/// What [`KeptServers::claim`] found.
#[derive(Debug, Default)]
pub struct Claim {
    /// Records now owned by this runner, of servers that still run.
    pub claimed: Vec<KeptRecord>,
    /// Records of servers that died, for [`KeptServers::clean_up`].
    pub dead: Vec<KeptRecord>,
    /// The report for `getStats().adoption`.
    pub report: AdoptionReport,
}

/// Reports a recorded server that is not running any more (with a warning line), saying when
/// its log ended.
pub fn dead_server(record: &KeptRecord, reason: &str) -> DeadServer {
    let log_ended_at = fs::metadata(&record.log_file)
        .and_then(|m| m.modified())
        .ok();
    let ended = log_ended_at.map_or_else(
        || "unknown".to_owned(),
        |at| crate::logs::store::iso8601_utc(millis_since_epoch(at)),
    );
    tracing::warn!(
        "kept server '{}' (deployment '{}', port {}) was not adopted: {reason}; its log ended at {ended}",
        record.server_id,
        record.deployment_id,
        record.port,
    );
    DeadServer {
        server_id: record.server_id.clone(),
        deployment_id: record.deployment_id.clone(),
        port: record.port,
        log_ended_at,
        reason: reason.to_owned(),
    }
}

impl Drop for KeptServers {
    fn drop(&mut self) {
        lock(&LIVE_RUNNERS).remove(&self.number);
    }
}

fn remove_files(record: &Path, log_file: &Path) {
    for path in [record, log_file]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
    {
        if let Err(error) = fs::remove_file(path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {error}", path.display());
        }
    }
}

/// Whether the runner named `owner` (`<hostPid>-<hostTicks>/<n>`) still runs.
fn owner_is_alive(owner: &str) -> bool {
    let Some((host, number)) = owner.split_once('/') else {
        return false;
    };
    if host == process::watchdog::host_id() {
        return number
            .parse::<u64>()
            .is_ok_and(|n| lock(&LIVE_RUNNERS).contains(&n));
    }
    let Some((pid, ticks)) = host.split_once('-') else {
        return false;
    };
    match (pid.parse::<u32>(), ticks.parse::<u64>()) {
        (Ok(pid), Ok(ticks)) => process::adopt::is_same_process(pid, ticks),
        _ => false,
    }
}

/// Whether a record's process still runs.
enum Identity {
    /// The same pid and start time (so not a reused pid), and the server's token in its
    /// environment, or an environment that cannot be read.
    Same,
    /// No live process has that pid and start time.
    Gone,
    /// The pid and start time match, but the process carries another token.
    NotOurs,
}

fn identify(record: &KeptRecord) -> Identity {
    if record.pid == 0 || !process::adopt::is_same_process(record.pid, record.start_ticks) {
        return Identity::Gone;
    }
    match procfs::environ(record.pid as i32) {
        Some(env) if env.get(ownership::SERVER_TOKEN_VAR) != Some(&record.token) => {
            Identity::NotOurs
        }
        _ => Identity::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server_id: &str) -> KeptRecord {
        KeptRecord {
            server_id: server_id.to_owned(),
            deployment_id: "d".to_owned(),
            project_id: "p".to_owned(),
            build_id: "b".to_owned(),
            port: 4111,
            pid: 1,
            start_ticks: 7,
            token: "t".to_owned(),
            log_file: PathBuf::from("/x/s.log"),
            command: vec!["node".to_owned(), "index.mjs".to_owned()],
            cwd: PathBuf::from("/x"),
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            restarts: 2,
            route_id: Some("r".to_owned()),
            deployed: true,
            owner: Some("1-2/3".to_owned()),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let written = record("s");
        assert_eq!(KeptRecord::from_json(&written.to_json()), Some(written));
        let mut other_version = record("s").to_json();
        other_version["version"] = json!(2);
        assert_eq!(KeptRecord::from_json(&other_version), None);
    }

    #[test]
    fn a_runner_of_this_host_is_alive_until_dropped() {
        let dir = std::env::temp_dir().join(format!("kept-owner-{}", std::process::id()));
        let kept = KeptServers::new(&dir);
        let owner = kept.owner.clone();
        assert!(owner_is_alive(&owner));
        drop(kept);
        assert!(!owner_is_alive(&owner));
        assert!(!owner_is_alive("not an owner"));
    }
}
