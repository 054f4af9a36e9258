//! Whether a server outlives its runner: the strategy a supervisor is given when it is spawned.
//!
//! A runner chooses one for all its servers ([`keeping_of`]): by default they die with the host
//! ([`DiesWithHost`]); under `keepServersOnExit` they are kept for the next runner
//! ([`KeptForNextRunner`], which keeps their records in [`KeptServers`] up to date). The supervisor asks the strategy how to
//! spawn a process, tells it of restarts and of the server going down for good, and asks it
//! whether `detach()` may leave a running server running; it never asks which mode is on.
//! A trait rather than a flag for that reason: each mode's rules live in one `impl`, and a
//! third (say, servers handed to a system service manager) would not touch the task.

use std::sync::Arc;

use super::child::ServerChild;
use super::state::ServerInfo;
use crate::process::{self, journal::Journal};
use crate::runner::Shared;
use crate::runner::kept::KeptServers;

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
}

/// The strategy of the runner that `shared` belongs to: kept for the next runner under
/// `keepServersOnExit`, dying with the host otherwise.
pub fn keeping_of(shared: &Shared) -> Arc<dyn Keeping> {
    match &shared.kept {
        Some(records) => Arc::new(KeptForNextRunner {
            records: Arc::clone(records),
            max_log_bytes: shared.config.log_file_max_bytes,
        }),
        None => Arc::new(DiesWithHost {
            journal: Arc::clone(&shared.journal),
        }),
    }
}
