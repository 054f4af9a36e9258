//! `keepServersOnExit` on the runner: adopting the kept servers an earlier runner left, and
//! `detach()`, which leaves this runner's kept servers running for the next one.
//!
//! An adopted server is supervised like any other (stop, health, logs, usage, the restart
//! policy): its supervisor starts with [`Origin::Adopted`], its port is reserved, its log is
//! read from what its log file retained, and its environment (for restarts) is read from
//! `/proc`, so no variable of it is ever written to disk. A restart runs the Node binary the
//! server's process runs on the build's `index.mjs`: nothing of the command comes from the
//! record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::data;
use super::kept::{self, AdoptionReport, KeptRecord};
use super::servers::ServerEntry;
use super::supervisor::{self, NewServer, Origin, ServerInfo, ServerProcess, ServerState};
use super::{LogOwner, Runner};
use crate::error::{Error, Result};
use crate::isolation::{Isolation, ServerPlaces};
use crate::logs::{LogLimits, LogStore, Stream};
use crate::process::{self, SpawnSpec, adopt::Orphan, procfs};

/// Variables of a server's environment that belong to one process's IPC channel, not to the
/// server: a restart sets them again when it opens a channel.
const CHANNEL_VARS: [&str; 2] = ["NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"];

impl Runner {
    /// Under `keepServersOnExit`, takes over the kept servers on `buildDir` that no live runner
    /// supervises and that still run, and reports those that died meanwhile (a warning each).
    /// Must be called from within the tokio runtime; reads small files and `/proc` only. Does
    /// nothing without `keepServersOnExit`, and adopts nothing when another runner on the same
    /// `buildDir` is adopting at the same moment (the report says so).
    pub fn adopt_kept_servers(&self) -> AdoptionReport {
        let Some(kept) = self.shared.kept.clone() else {
            return AdoptionReport::default();
        };
        let kept::Claim {
            claimed,
            mut dead,
            unusable,
            mut report,
        } = kept.claim();
        if let Some(why) = &report.not_adopted {
            tracing::warn!("adopted no kept server: {why}");
        }
        for record in claimed {
            if !self.adopt(&record) {
                kept.forget(&record.server_id);
                report.adopted.retain(|id| *id != record.server_id);
                report
                    .died
                    .push(kept.dead_server(&record, "it stopped while it was being adopted"));
                dead.push(record);
            }
        }
        if !dead.is_empty() || !unusable.is_empty() {
            // Killing leftovers reads every process's environment: not on Node's thread.
            tokio::task::spawn_blocking(move || kept.clean_up(&dead, &unusable));
        }
        self.servers.set_adoption(report.clone());
        report
    }

    /// Starts supervising one claimed server; false when its process is gone already.
    fn adopt(&self, record: &KeptRecord) -> bool {
        let log = Arc::new(LogStore::new(LogLimits::with_lines(
            self.config().log_retention_lines as usize,
        )));
        let Some(kept) = &self.shared.kept else {
            return false;
        };
        let log_file = kept.log_file(&record.server_id);
        let orphan = Orphan {
            pid: record.pid,
            start_ticks: record.start_ticks,
            started_at: record.started_at,
            log_file: log_file.clone(),
            max_log_bytes: self.config().log_file_max_bytes,
        };
        self.logs.open_server(
            LogOwner::Server {
                server_id: record.server_id.clone(),
                deployment_id: record.deployment_id.clone(),
                project_id: record.project_id.clone(),
            },
            &log,
        );
        log.append_lines(
            Stream::Stderr,
            std::iter::once(format!(
                "{}adopted by a new runner (pid {}, port {}); its output follows, from {}",
                crate::logs::RUNNER_PREFIX,
                record.pid,
                record.port,
                log_file.display()
            )),
        );
        let Some((handle, backlog_read)) = process::adopt::adopt(&orphan, Arc::clone(&log)) else {
            self.logs.retire_server(&record.server_id);
            return false;
        };
        self.servers
            .ports()
            .hold_adopted(record.port, &record.server_id);
        // Its cgroup, when it has one, counts, limits and ends it as before the restart of the
        // host; without one, the watchdog its last runner ran watches it here too.
        let build_dir = &self.config().build_dir;
        if build_dir
            .join(crate::isolation::PRIVATE_TMP_DIR)
            .join(&record.server_id)
            .is_dir()
        {
            // Its sandbox's directory, held again so that no starting runner sweeps it away.
            let _ = Isolation::private_tmp(build_dir, &record.server_id);
        }
        let groups = &self.shared.isolation.groups;
        if !groups.adopt(&record.server_id)
            && let Some(memory_mb) = record.watched_memory_mb
        {
            groups.watch_memory(&record.server_id, memory_mb);
        }
        let info = ServerInfo {
            id: record.server_id.clone(),
            deployment_id: record.deployment_id.clone(),
            project_id: record.project_id.clone(),
            build_id: record.build_id.clone(),
            pid: Some(record.pid),
            host: "127.0.0.1".to_owned(),
            port: record.port,
            state: ServerState::Starting {
                since: SystemTime::now(),
            },
            last_health_check: None,
            started_at: record.started_at,
            restarts: record.restarts,
            token: record.token.clone(),
        };
        let (handle, task, _no_deploy_waits) = supervisor::start(
            Arc::clone(&self.shared),
            NewServer {
                info,
                origin: Origin::Adopted,
                spec: command_of(record, self.config(), &self.shared.isolation),
                log,
                child: ServerProcess::adopted(handle),
                health_timeout: self.config().health_check.retry_interval
                    * self.config().health_check.max_retries,
                token: record.token.clone(),
                keeping: Arc::clone(&self.shared.keeping),
            },
        );
        let order = self.deployments.next_order();
        let entry = ServerEntry::new(handle, task, Some(backlog_read));
        self.servers.register(&record.server_id, entry, || {
            self.deployments.enroll_adopted(
                &record.server_id,
                &record.deployment_id,
                order,
                record.route_id.clone(),
            );
            true
        });
        self.builds.file(&record.deployment_id, &record.build_id);
        true
    }

    /// Lets go of every server (`keepServersOnExit` only): the running ones keep running,
    /// unsupervised, with their records handed over (no owner), so the next runner on this
    /// `buildDir` adopts them even while this host still runs; servers that are starting or
    /// waiting to restart are stopped, builds and deploys in flight are cancelled, and log
    /// observers are flushed. The runner can be used afresh afterwards.
    pub async fn detach(&self) -> Result<()> {
        let Some(kept) = self.shared.kept.clone() else {
            return Err(Error::InvalidState {
                call: "detach()".to_owned(),
                reason: "it needs keepServersOnExit: true (without it every server dies with the host); use shutdown()".to_owned(),
            });
        };
        let generation = self.cancel_calls_in_flight();
        let ids = self.servers.ids();
        let lets_go = ids.iter().map(|id| self.detach_one(id));
        tokio::join!(super::futures_join_all(lets_go), self.builds.cancel_all());
        kept.let_go();
        self.flush_log_observers().await;
        generation.wait_idle().await;
        tracing::debug!("runner detached");
        Ok(())
    }

    async fn detach_one(&self, server_id: &str) {
        let Some(handle) = self.servers.handle(server_id) else {
            return;
        };
        if self.deployments.draining_ids().contains(server_id) {
            // A replaced server would be adopted as its deployment's: it stops here instead.
            self.stop_by(server_id, "detach()").await;
            return;
        }
        if handle.detach().await {
            self.forget_server(server_id).await;
            return;
        }
        // Its supervisor stopped it (it was not running, or a deploy still waited for it):
        // the route goes and the runner forgets it, as after stop().
        self.stop_by(server_id, "detach()").await;
    }
}

/// The program a sandboxed server runs, as the kernel has it: the executable of the sandbox's
/// program process, the grandchild of `init` (the process the runner started), through the
/// namespace's pid 1 between them.
fn sandboxed_program(init: i32) -> Option<std::path::PathBuf> {
    let tree = procfs::live_tree(init);
    let namespace_init = tree.iter().find(|p| p.ppid == init)?.pid;
    let program = tree.iter().find(|p| p.ppid == namespace_init)?.pid;
    std::fs::read_link(format!("/proc/{program}/exe")).ok()
}

/// The command of an adopted server, for restarts: the Node binary its process runs (read from
/// `/proc/<pid>/exe`; for a sandboxed server, whose process is the sandbox's init, that of the
/// program inside) on `index.mjs` in its deployment's data directory (derived from the deployment id,
/// never read from the record), once that `index.mjs` is checked to be a file of build
/// `<buildId>` (links resolved); its environment from `/proc` (never written to disk); its
/// cgroup, and for a sandboxed server a sandbox built anew. `None` (not restarted) when any of
/// that fails: a sandboxed server is never restarted unconfined.
fn command_of(
    record: &KeptRecord,
    config: &crate::config::RunnerConfig,
    isolation: &Isolation,
) -> Option<SpawnSpec> {
    let build_dir = &config.build_dir;
    let data_dir = data::data_dir(build_dir, &record.deployment_id);
    let cwd = data::working_dir(&data_dir);
    let build = std::fs::canonicalize(build_dir.join(&record.build_id)).ok()?;
    let entry = std::fs::canonicalize(cwd.join("index.mjs")).ok();
    if !entry.is_some_and(|entry| entry.starts_with(&build) && entry.is_file()) {
        tracing::warn!(
            "kept server '{}' will not be restarted: {} is not build '{}''s output",
            record.server_id,
            cwd.join("index.mjs").display(),
            record.build_id
        );
        return None;
    }
    // The program the identified process runs, as the kernel has it (not the record).
    let exe = std::fs::read_link(format!("/proc/{}/exe", record.pid)).ok()?;
    let sandboxed = exe
        .to_string_lossy()
        .starts_with(&format!("/memfd:{}", crate::isolation::sandbox::INIT_NAME));
    let program = if sandboxed {
        sandboxed_program(record.pid as i32)?
    } else {
        exe
    };
    if program.to_string_lossy().ends_with(" (deleted)") {
        return None;
    }
    let sandbox = if sandboxed {
        let private_tmp = Isolation::private_tmp(build_dir, &record.server_id).ok()?;
        let sandbox = isolation.server_sandbox_now(&ServerPlaces {
            node: &program,
            build_copy: &build,
            data_dir: &data_dir,
            private_tmp: &private_tmp,
            port: record.port,
            port_range: (config.port_range.start, config.port_range.end),
        })?;
        Some(Arc::new(sandbox))
    } else {
        None
    };
    let env: BTreeMap<String, String> = procfs::environ(record.pid as i32)?
        .into_iter()
        .filter(|(key, _)| !CHANNEL_VARS.contains(&key.as_str()))
        .collect();
    Some(SpawnSpec {
        program: program.to_string_lossy().into_owned(),
        args: vec!["index.mjs".to_owned()],
        cwd,
        env,
        confinement: process::Confinement {
            sandbox,
            cgroup: isolation.groups.join_paths(&record.server_id),
        },
    })
}
