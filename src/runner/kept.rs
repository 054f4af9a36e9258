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
//! it is killed, it is reported, and its files are removed.
//!
//! # Records are untrusted
//! Every deployed server runs as the host's user with its working directory inside `buildDir`,
//! so it can write here. A record is therefore read as data from an untrusted writer
//! ([`read_record`]): at most [`MAX_RECORD_BYTES`], opened without following a link, every id
//! checked like a caller's id and the server id equal to the file's name, the token tied to that
//! id, the port inside `portRange`; its log file is always `<serverId>.log` beside it (never a
//! path from the file) and its command is never read (a restart runs the host's Node on the
//! build's `index.mjs`). Of records that claim one port, route or deployment, none is adopted. A
//! process is signalled only when it carries the record's token and started no earlier than the
//! recorded process ([`ownership::kill_token_processes_now`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::isolation::settings::{MAX_MEMORY_MB, MIN_MEMORY_MB};
use crate::process::{self, journal::JOURNAL_DIR, ownership, procfs};
use crate::sync::lock;

/// The directory under `<buildDir>/.runner` holding kept servers' records and log files.
const KEPT_DIR: &str = "kept";

/// The lock file a runner holds while it claims records.
const LOCK_FILE: &str = "kept.lock";

/// The record format's version.
const VERSION: u64 = 1;

/// The largest record file read; a record is a few hundred bytes.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The most record files one claim reads.
const MAX_RECORDS: usize = 4096;

/// The longest token or route id accepted from a record.
const MAX_FIELD_CHARS: usize = 256;

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
    /// The token in the environment of each of its processes (`<serverId>-<random hex>`).
    pub token: String,
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
    /// A redeploy replaced it and it was draining: a later runner stops it instead of
    /// adopting it (the deployment's routed server is the other one).
    pub draining: bool,
    /// The memory limit an RSS watchdog enforces (no cgroup could hold it), in MB; the
    /// runner that adopts the server watches it too.
    pub watched_memory_mb: Option<u64>,
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
            "startedAtMs": millis_since_epoch(self.started_at),
            "restarts": self.restarts,
            "routeId": self.route_id,
            "deployed": self.deployed,
            "owner": self.owner,
            "draining": self.draining,
            "watchedMemoryMb": self.watched_memory_mb,
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
            started_at: UNIX_EPOCH + Duration::from_millis(number("startedAtMs")?),
            restarts: u32::try_from(number("restarts")?).ok()?,
            route_id: text("routeId"),
            deployed: value.get("deployed")?.as_bool()?,
            owner: text("owner"),
            draining: value
                .get("draining")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            watched_memory_mb: match value.get("watchedMemoryMb") {
                None | Some(Value::Null) => None,
                Some(limit) => Some(limit.as_u64()?),
            },
        })
    }

    /// Checks what [`KeptRecord::from_json`] cannot: the ids are ids (the server's is the
    /// record file's name `file_stem`), the token is this server's, the route id is short text,
    /// the port lies in `ports`, and the pid is a process that can lead a group.
    fn validate(&self, file_stem: &str, ports: crate::ports::PortRange) -> Result<(), String> {
        for (name, value) in [
            ("serverId", &self.server_id),
            ("deploymentId", &self.deployment_id),
            ("projectId", &self.project_id),
            ("buildId", &self.build_id),
        ] {
            crate::validate::id(name, value).map_err(|error| error.to_string())?;
        }
        if self.server_id != file_stem {
            return Err(format!(
                "it names server '{}' but is the record of '{file_stem}'",
                self.server_id
            ));
        }
        let token_is_its_own = self
            .token
            .strip_prefix(&format!("{}-", self.server_id))
            .is_some_and(|rest| !rest.is_empty())
            && self.token.len() <= MAX_FIELD_CHARS
            && self.token.bytes().all(|b| b.is_ascii_graphic());
        if !token_is_its_own {
            return Err("its token is not one this runner gives that server".to_owned());
        }
        if let Some(route) = &self.route_id
            && (route.is_empty()
                || route.chars().count() > MAX_FIELD_CHARS
                || route.chars().any(char::is_control))
        {
            return Err("its route id is not a route id".to_owned());
        }
        if let Some(limit) = self.watched_memory_mb
            && !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&limit)
        {
            return Err(format!(
                "its memory limit {limit} MB is outside {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB"
            ));
        }
        if self.port < ports.start || self.port > ports.end {
            return Err(format!(
                "its port {} is outside portRange {}-{}",
                self.port, ports.start, ports.end
            ));
        }
        let pid_is_plausible = match self.pid {
            0 => !self.deployed,
            pid => pid > 1 && i32::try_from(pid).is_ok() && self.start_ticks > 0,
        };
        if !pid_is_plausible {
            return Err(format!(
                "pid {} with start time {} cannot be a server's",
                self.pid, self.start_ticks
            ));
        }
        Ok(())
    }
}

/// Reads and checks the record at `path` (a file of `dir`): at most [`MAX_RECORD_BYTES`],
/// opened without following a link and only when it is a regular file.
pub fn read_record(path: &Path, ports: crate::ports::PortRange) -> Result<KeptRecord, String> {
    let file_stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .ok_or("its file name is not text")?;
    let text = crate::process::read_private_file(path, MAX_RECORD_BYTES)
        .map_err(|error| error.to_string())?;
    let value: Value =
        serde_json::from_slice(&text).map_err(|error| format!("not JSON: {error}"))?;
    let record = KeptRecord::from_json(&value).ok_or("not a record of this version")?;
    record.validate(file_stem, ports)?;
    Ok(record)
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
    /// Record files that were not adopted because they cannot be trusted (malformed, or
    /// claiming what another record claims), each with why; nothing they name was signalled.
    pub refused: Vec<String>,
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
    ports: crate::ports::PortRange,
    owner: String,
    number: u64,
    records: Mutex<BTreeMap<String, KeptRecord>>,
}

impl KeptServers {
    /// The kept servers of a runner on `build_dir` whose servers listen on `ports`. The runner
    /// counts as alive (its records are not claimed by others) until this is dropped or
    /// [`KeptServers::let_go`] is called.
    pub fn new(build_dir: &Path, ports: crate::ports::PortRange) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        lock(&LIVE_RUNNERS).insert(number);
        KeptServers {
            dir: build_dir.join(JOURNAL_DIR).join(KEPT_DIR),
            ports,
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
        self.remove_files(server_id);
    }

    /// Removes server `server_id`'s record and log file (both named by the runner from the id).
    fn remove_files(&self, server_id: &str) {
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
        process::state_files::create_private_dir(&self.dir)?;
        let path = self.record_path(&record.server_id);
        let temporary = path.with_extension("json.tmp");
        process::state_files::write_private_file(
            &temporary,
            record.to_json().to_string().as_bytes(),
        )?;
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
        let mut records = Vec::new();
        for path in self.record_files() {
            match read_record(&path, self.ports) {
                Ok(record) => records.push(record),
                Err(why) => {
                    // Nothing it names is touched: only the file itself goes, later.
                    tracing::warn!("kept-server record {} refused: {why}", path.display());
                    claim
                        .report
                        .refused
                        .push(format!("{}: {why}", path.display()));
                    claim.unusable.push(path);
                }
            }
        }
        let conflicts = conflicts(&records);
        for record in records {
            if let Some(why) = conflicts.get(&record.server_id) {
                tracing::warn!(
                    "kept-server record of '{}' refused: {why}",
                    record.server_id
                );
                claim.report.refused.push(format!(
                    "{}: {why}",
                    self.record_path(&record.server_id).display()
                ));
                continue;
            }
            self.claim_one(record, &mut claim);
        }
        claim
    }

    /// Sorts one valid record, free of conflicts, into `claim`.
    fn claim_one(&self, record: KeptRecord, claim: &mut Claim) {
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
            return;
        }
        let reason = match (record.deployed, identify(&record)) {
            (_, Identity::NotOurs(why)) => {
                // The recorded pid and start time name a live process that is not that
                // server's leader: the record does not describe it, so it is not touched.
                let path = self.record_path(&record.server_id);
                tracing::warn!(
                    "kept-server record {} names process {}, which {why}: record removed",
                    path.display(),
                    record.pid
                );
                claim.report.refused.push(format!(
                    "{}: process {} {why}",
                    path.display(),
                    record.pid
                ));
                claim.unusable.push(path);
                return;
            }
            (false, _) => Some("its host ended before its deploy finished"),
            (true, Identity::Gone) => Some("it stopped while no runner supervised it"),
            (true, Identity::Same) if record.draining => {
                Some("a redeploy had replaced it and it was draining when its host ended")
            }
            (true, Identity::Same) => None,
        };
        if let Some(reason) = reason {
            claim.report.died.push(self.dead_server(&record, reason));
            claim.dead.push(record);
            return;
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

    fn record_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .take(MAX_RECORDS)
            .collect();
        paths.sort();
        paths
    }

    /// Kills what is left of dead servers' processes and removes their files. Only processes
    /// positively identified as a server's are signalled: they carry its token and started no
    /// earlier than its recorded process. Reads every process's environment once, however
    /// many records: call it off Node's main thread.
    pub fn clean_up(&self, records: &[KeptRecord], unusable: &[PathBuf]) {
        for path in unusable {
            remove_files(path, Path::new(""));
        }
        let tokens: Vec<(&str, u64)> = records
            .iter()
            .map(|record| (record.token.as_str(), record.start_ticks))
            .collect();
        let killed = ownership::kill_token_processes_now(&tokens);
        if !killed.is_empty() {
            tracing::warn!("killed what was left of kept servers that died: {killed:?}");
        }
        for record in records {
            self.remove_files(&record.server_id);
        }
    }

    /// Reports a recorded server that is not running any more (with a warning line), saying
    /// when its log ended.
    pub fn dead_server(&self, record: &KeptRecord, reason: &str) -> DeadServer {
        let log_ended_at = fs::symlink_metadata(self.log_file(&record.server_id))
            .and_then(|m| m.modified())
            .ok();
        let ended = log_ended_at.map_or_else(
            || "unknown".to_owned(),
            |at| crate::logs::iso8601_utc(millis_since_epoch(at)),
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
}

/// What [`KeptServers::claim`] found.
#[derive(Debug, Default)]
pub struct Claim {
    /// Records now owned by this runner, of servers that still run.
    pub claimed: Vec<KeptRecord>,
    /// Records of servers that died, for [`KeptServers::clean_up`].
    pub dead: Vec<KeptRecord>,
    /// Record files that cannot be trusted, to be removed (by [`KeptServers::clean_up`]).
    pub unusable: Vec<PathBuf>,
    /// The report for `getStats().adoption`.
    pub report: AdoptionReport,
}

/// Why records must not be adopted because another record claims the same port, route or
/// deployment (a draining server shares its deployment with the one that replaced it), by
/// server id. Which of them is genuine cannot be told from the files, so none is adopted.
fn conflicts(records: &[KeptRecord]) -> BTreeMap<String, String> {
    let mut claims: BTreeMap<(&str, String), Vec<&str>> = BTreeMap::new();
    for record in records {
        let mut claim = |what: &'static str, value: String| {
            claims
                .entry((what, value))
                .or_default()
                .push(&record.server_id);
        };
        claim("port", record.port.to_string());
        if let Some(route) = &record.route_id {
            claim("route", route.clone());
        }
        if !record.draining {
            claim("deployment", record.deployment_id.clone());
        }
    }
    let mut refused = BTreeMap::new();
    for ((what, value), ids) in claims.into_iter().filter(|(_, ids)| ids.len() > 1) {
        for id in &ids {
            refused.entry((*id).to_owned()).or_insert_with(|| {
                format!(
                    "{what} {value} is claimed by {} records ({})",
                    ids.len(),
                    ids.join(", ")
                )
            });
        }
    }
    refused
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
    /// The same pid and start time (so not a reused pid), leading its own process group, and
    /// the server's token in its environment.
    Same,
    /// No live process has that pid and start time.
    Gone,
    /// The pid and start time match a process that is not the server's leader; says why.
    NotOurs(&'static str),
}

fn identify(record: &KeptRecord) -> Identity {
    let Some(stat) = procfs::read_stat(record.pid as i32).filter(|stat| {
        record.pid != 0 && stat.is_alive() && stat.start_ticks == record.start_ticks
    }) else {
        return Identity::Gone;
    };
    if stat.pgrp != stat.pid {
        return Identity::NotOurs("does not lead its process group");
    }
    match procfs::environ(stat.pid) {
        Some(env) if env.get(ownership::SERVER_TOKEN_VAR) == Some(&record.token) => Identity::Same,
        Some(_) => Identity::NotOurs("carries another token"),
        None => Identity::NotOurs("has an environment this runner cannot read"),
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
            pid: 1234,
            start_ticks: 7,
            token: format!("{server_id}-{:032x}", 7),
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
            restarts: 2,
            route_id: Some("r".to_owned()),
            deployed: true,
            owner: Some("1-2/3".to_owned()),
            draining: false,
            watched_memory_mb: None,
        }
    }

    const PORTS: crate::ports::PortRange = crate::ports::PortRange {
        start: 4111,
        end: 4200,
    };

    /// A fresh directory for record files.
    fn records_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kept-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// Why `value`, written as `<file_stem>.json`, is refused.
    fn refusal(file_stem: &str, value: &Value) -> String {
        let dir = records_dir(&format!("refuse-{file_stem}"));
        let path = dir.join(format!("{file_stem}.json"));
        fs::write(&path, value.to_string()).expect("write");
        read_record(&path, PORTS).expect_err("refused")
    }

    #[test]
    fn records_that_no_runner_writes_are_refused() {
        // K06: an id that leaves the state directory.
        let mut escape = record("s").to_json();
        escape["serverId"] = json!("../../x/config");
        assert!(
            refusal("s", &escape).contains("path separator"),
            "{}",
            refusal("s", &escape)
        );
        // A record under another server's name.
        assert!(refusal("other", &record("s").to_json()).contains("record of 'other'"));
        // K07: another server's token.
        let mut token = record("s").to_json();
        token["token"] = json!(format!("victim-{:032x}", 1));
        assert!(refusal("s", &token).contains("token"));
        // K12: a port outside the range.
        let mut port = record("s").to_json();
        port["port"] = json!(80);
        assert!(refusal("s", &port).contains("outside portRange"));
        // K04b: no start time, so nothing could be identified by it.
        let mut ticks = record("s").to_json();
        ticks["startTicks"] = json!(0);
        assert!(refusal("s", &ticks).contains("cannot be a server's"));
        let mut init = record("s").to_json();
        init["pid"] = json!(1);
        assert!(refusal("s", &init).contains("cannot be a server's"));
        // A memory limit the watchdog could not honour (or would kill everything at).
        for forged in [json!(1), json!(u64::MAX), json!("100")] {
            let mut memory = record("s").to_json();
            memory["watchedMemoryMb"] = forged.clone();
            assert!(
                refusal("s", &memory).contains("memory limit")
                    || refusal("s", &memory).contains("not a record"),
                "{forged}: {}",
                refusal("s", &memory)
            );
        }
        // K17: a huge record is not read.
        let dir = records_dir("huge");
        let huge = dir.join("s.json");
        fs::write(&huge, vec![b' '; (MAX_RECORD_BYTES + 1) as usize]).expect("write");
        assert!(
            read_record(&huge, PORTS)
                .expect_err("refused")
                .contains("more than")
        );
        // A link planted as a record is not followed.
        let target = dir.join("target");
        fs::write(&target, record("s").to_json().to_string()).expect("write");
        let link = dir.join("t.json");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(read_record(&link, PORTS).is_err());
        // What a runner writes reads back.
        let path = dir.join("s.json");
        fs::write(&path, record("s").to_json().to_string()).expect("write");
        assert_eq!(read_record(&path, PORTS), Ok(record("s")));
    }

    #[test]
    fn records_claiming_one_port_route_or_deployment_are_none_adopted() {
        // K13: two records on one port; K14: one route; K15: one deployment.
        let mut same_port = vec![record("a"), record("b")];
        same_port[1].deployment_id = "other".to_owned();
        same_port[1].route_id = None;
        let refused = conflicts(&same_port);
        assert!(refused["a"].starts_with("port 4111"), "{refused:?}");
        assert!(refused.contains_key("b"));
        let mut same_route = vec![record("a"), record("b")];
        same_route[1].port = 4112;
        same_route[1].deployment_id = "other".to_owned();
        assert!(conflicts(&same_route)["b"].starts_with("route r"));
        let mut same_deployment = vec![record("a"), record("b")];
        same_deployment[1].port = 4112;
        same_deployment[1].route_id = None;
        assert!(conflicts(&same_deployment)["a"].starts_with("deployment d"));
        // K21: a draining server shares its deployment with the one that replaced it.
        same_deployment[0].draining = true;
        same_deployment[0].route_id = None;
        assert!(conflicts(&same_deployment).is_empty());
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let written = record("s");
        assert_eq!(KeptRecord::from_json(&written.to_json()), Some(written));
        let watched = KeptRecord {
            watched_memory_mb: Some(160),
            ..record("s")
        };
        assert_eq!(KeptRecord::from_json(&watched.to_json()), Some(watched));
        let mut other_version = record("s").to_json();
        other_version["version"] = json!(2);
        assert_eq!(KeptRecord::from_json(&other_version), None);
    }

    #[test]
    fn a_runner_of_this_host_is_alive_until_dropped() {
        let dir = std::env::temp_dir().join(format!("kept-owner-{}", std::process::id()));
        let kept = KeptServers::new(&dir, PORTS);
        let owner = kept.owner.clone();
        assert!(owner_is_alive(&owner));
        drop(kept);
        assert!(!owner_is_alive(&owner));
        assert!(!owner_is_alive("not an owner"));
    }
}
