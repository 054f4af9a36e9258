//! Whether a server outlives its runner: the strategy a supervisor is given when it is spawned.
//!
//! A runner chooses one for all its servers when it is made ([`keeping_for`], kept in its
//! `Shared`): by default they die with the host
//! ([`DiesWithHost`]); under `keepServersOnExit` they are kept for the next runner
//! ([`KeptForNextRunner`], which keeps their records in [`KeptServers`] up to date). The supervisor asks the strategy how to
//! spawn a process, tells it of restarts and of the server going down for good, and asks it
//! whether `detach()` may leave a running server running; it never asks which mode is on.
//! A trait rather than a flag for that reason: each mode's rules live in one `impl`, and a
//! third (say, servers handed to a system service manager) would not touch the task.

use std::sync::Arc;

use super::child::ServerChild;
use super::state::ServerInfo;
use crate::error::{Error, Result};
use crate::process::{self, journal::Journal};
use crate::runner::kept::{KeptRecord, KeptServers};

/// What becomes of a server beyond its supervisor.
pub trait Keeping: Send + Sync {
    /// How each process of server `server_id` is spawned.
    fn lifetime(&self, server_id: &str) -> process::Lifetime;
    /// A supervisor took the server whose processes carry `token` (before its task runs).
    fn supervising(&self, token: &str);
    /// The restart policy started `child` as the server's process (`server.restarts` counts it).
    fn restarted(&self, server: &ServerInfo, child: &dyn ServerChild);
    /// The server is down for good: its tree is gone.
    fn gone(&self, server: &ServerInfo);
    /// Whether `detach()` leaves a running server running; otherwise it stops it.
    fn outlives_runner(&self) -> bool;
    /// A deploy is about to spawn the server described by `record` (pid 0). Returns whether
    /// something was written that [`Keeping::abandoned`] must take back.
    fn starting(&self, record: KeptRecord) -> Result<bool>;
    /// A start that did not finish: what [`Keeping::starting`] wrote goes.
    fn abandoned(&self, server_id: &str);
    /// The deploy spawned the server's first process. An error fails the deploy: the server
    /// could not be made findable after a crash of the host.
    fn spawned(&self, server_id: &str, pid: u32, start_ticks: u64) -> Result<()>;
    /// The deploy finished: the server serves its deployment, routed under `route_id`.
    fn deployed(&self, server_id: &str, route_id: Option<String>);
    /// A redeploy replaced the server: it drains.
    fn drain_began(&self, server_id: &str);
    /// The server that replaced it exited: it serves again, routed under `route_id`.
    fn served_again(&self, server_id: &str, route_id: Option<String>);
}

/// The default: the server dies with the host. Its token is known to the exit hook (which kills
/// what carries it) and its process groups are recorded in the journal for the next runner to
/// reap.
pub struct DiesWithHost {
    journal: Arc<Journal>,
}

impl Keeping for DiesWithHost {
    fn lifetime(&self, _server_id: &str) -> process::Lifetime {
        process::Lifetime::WithHost(Some(Arc::clone(&self.journal)))
    }

    fn supervising(&self, token: &str) {
        process::registry::register_token(token);
    }

    fn restarted(&self, _server: &ServerInfo, _child: &dyn ServerChild) {}

    fn gone(&self, server: &ServerInfo) {
        process::registry::unregister_token(&server.token);
    }

    fn outlives_runner(&self) -> bool {
        false
    }

    fn starting(&self, _record: KeptRecord) -> Result<bool> {
        Ok(false)
    }

    fn abandoned(&self, _server_id: &str) {}

    /// A group the journal could not record could not be reaped by the next runner after a
    /// crash of the host: the deploy fails (a full disk, say) rather than run unrecorded.
    fn spawned(&self, _server_id: &str, _pid: u32, _start_ticks: u64) -> Result<()> {
        match self.journal.take_write_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn deployed(&self, _server_id: &str, _route_id: Option<String>) {}

    fn drain_began(&self, _server_id: &str) {}

    fn served_again(&self, _server_id: &str, _route_id: Option<String>) {}
}

/// `keepServersOnExit`: the server outlives the host in a session of its own, its output in its
/// log file; its record follows its restarts and goes with it, and `detach()` lets a running
/// one go for the next runner on the same `buildDir` to adopt.
pub struct KeptForNextRunner {
    records: Arc<KeptServers>,
    /// `logFileMaxMb` in bytes.
    max_log_bytes: u64,
}

impl Keeping for KeptForNextRunner {
    fn lifetime(&self, server_id: &str) -> process::Lifetime {
        process::Lifetime::Kept {
            log_file: self.records.log_file(server_id),
            max_log_bytes: self.max_log_bytes,
        }
    }

    /// Nothing of the host tracks a kept server: it must survive the host's exit hook.
    fn supervising(&self, _token: &str) {}

    fn restarted(&self, server: &ServerInfo, child: &dyn ServerChild) {
        let (pid, start_ticks, restarts) = (child.pid(), child.start_ticks(), server.restarts);
        self.records.update(&server.id, |record| {
            record.pid = pid;
            record.start_ticks = start_ticks;
            record.restarts = restarts;
        });
    }

    fn gone(&self, server: &ServerInfo) {
        self.records.remove(&server.id);
    }

    fn outlives_runner(&self) -> bool {
        true
    }

    /// The record is written before the spawn (with the token, pid 0): were the host to die
    /// right after it, the next runner still finds the server by its token and kills it.
    fn starting(&self, record: KeptRecord) -> Result<bool> {
        let server_id = record.server_id.clone();
        self.records.record(record).map_err(|error| {
            Error::io(
                "record the kept server (so a later runner can adopt it) in",
                self.records.record_path(&server_id),
                &error,
            )
        })?;
        Ok(true)
    }

    fn abandoned(&self, server_id: &str) {
        self.records.remove(server_id);
    }

    fn spawned(&self, server_id: &str, pid: u32, start_ticks: u64) -> Result<()> {
        self.records.update(server_id, |record| {
            record.pid = pid;
            record.start_ticks = start_ticks;
        });
        Ok(())
    }

    fn deployed(&self, server_id: &str, route_id: Option<String>) {
        self.records.update(server_id, |record| {
            record.deployed = true;
            record.route_id = route_id;
        });
    }

    /// A host that dies during the drain leaves the next runner the routed server, and this
    /// one to stop.
    fn drain_began(&self, server_id: &str) {
        self.records
            .update(server_id, |record| record.draining = true);
    }

    fn served_again(&self, server_id: &str, route_id: Option<String>) {
        self.records.update(server_id, |record| {
            record.draining = false;
            record.route_id = route_id;
        });
    }
}

/// A runner's strategy, chosen once when it is made: kept for the next runner when it keeps
/// `records` (`keepServersOnExit`, each server's log file at most `max_log_bytes`), dying with
/// the host (recorded in `journal`) otherwise.
pub fn keeping_for(
    records: Option<&Arc<KeptServers>>,
    journal: &Arc<Journal>,
    max_log_bytes: u64,
) -> Arc<dyn Keeping> {
    match records {
        Some(records) => Arc::new(KeptForNextRunner {
            records: Arc::clone(records),
            max_log_bytes,
        }),
        None => Arc::new(DiesWithHost {
            journal: Arc::clone(journal),
        }),
    }
}
