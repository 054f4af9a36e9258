//! Processes tracked by server id, for the runner and for the `ProcessManager` JS export.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::handle::ProcessHandle;
use super::journal::Journal;
use super::spawn::{SpawnSpec, spawn};
use crate::error::{Error, Result};
use crate::logs::LogStore;

/// One tracked process.
#[derive(Debug, Clone)]
pub struct ManagedProcess {
    /// The id the process is tracked under (a server id).
    pub server_id: String,
    /// The deployment the process serves.
    pub deployment_id: String,
    /// The process itself.
    pub handle: ProcessHandle,
}

/// Processes by server id. Stopping goes through the one tree killer.
#[derive(Debug, Default)]
pub struct ProcessManager {
    processes: Mutex<BTreeMap<String, ManagedProcess>>,
    /// Server ids whose process is being spawned: reserved before the spawn is awaited, so two
    /// starts of one id cannot both pass the check.
    starting: Mutex<BTreeSet<String>>,
}

/// A reserved server id, given back when the start ends (also when it is cancelled).
struct Reservation<'a> {
    starting: &'a Mutex<BTreeSet<String>>,
    server_id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        crate::sync::lock(self.starting).remove(&self.server_id);
    }
}

impl ProcessManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    fn processes(&self) -> MutexGuard<'_, BTreeMap<String, ManagedProcess>> {
        crate::sync::lock(&self.processes)
    }

    /// Starts `spec` and tracks it as `server_id`. A server id that is tracked and still
    /// running is an error; a finished one is replaced.
    pub async fn start(
        &self,
        server_id: &str,
        deployment_id: &str,
        spec: SpawnSpec,
        log: Arc<LogStore>,
        journal: Option<Arc<Journal>>,
    ) -> Result<ManagedProcess> {
        let _reservation = self.reserve(server_id)?;
        let handle = spawn(spec, log, journal).await?;
        let managed = ManagedProcess {
            server_id: server_id.to_owned(),
            deployment_id: deployment_id.to_owned(),
            handle,
        };
        self.processes()
            .insert(server_id.to_owned(), managed.clone());
        Ok(managed)
    }

    /// Reserves `server_id` for a start; an id that is starting or running is an error.
    fn reserve(&self, server_id: &str) -> Result<Reservation<'_>> {
        let mut starting = crate::sync::lock(&self.starting);
        if starting.contains(server_id) || self.is_running(server_id) {
            return Err(Error::invalid(
                "serverId",
                format!("a process for server '{server_id}' is already running"),
            ));
        }
        starting.insert(server_id.to_owned());
        Ok(Reservation {
            starting: &self.starting,
            server_id: server_id.to_owned(),
        })
    }

    /// The process tracked as `server_id`.
    pub fn get(&self, server_id: &str) -> Option<ManagedProcess> {
        self.processes().get(server_id).cloned()
    }

    /// The most recently started process serving `deployment_id`.
    pub fn get_by_deployment(&self, deployment_id: &str) -> Option<ManagedProcess> {
        self.processes()
            .values()
            .filter(|p| p.deployment_id == deployment_id)
            .max_by_key(|p| p.handle.started_at())
            .cloned()
    }

    /// Every tracked process, by server id.
    pub fn all(&self) -> Vec<ManagedProcess> {
        self.processes().values().cloned().collect()
    }

    /// Whether the process tracked as `server_id` is running.
    pub fn is_running(&self, server_id: &str) -> bool {
        self.processes()
            .get(server_id)
            .is_some_and(|p| p.handle.is_running())
    }

    /// How many tracked processes are running.
    pub fn running_count(&self) -> usize {
        self.processes()
            .values()
            .filter(|p| p.handle.is_running())
            .count()
    }

    /// Stops the tree of `server_id` (SIGTERM, `grace`, SIGKILL) and stops tracking it.
    /// Unknown ids are a no-op. Returns whether a process was tracked.
    pub async fn kill(&self, server_id: &str, grace: Duration) -> bool {
        let Some(process) = self.get(server_id) else {
            return false;
        };
        process.handle.kill_tree(grace).await;
        let mut processes = self.processes();
        if processes
            .get(server_id)
            .is_some_and(|p| p.handle.pid() == process.handle.pid())
        {
            processes.remove(server_id);
        }
        true
    }

    /// Stops every tracked tree at once (each with `grace`); resolves when all are gone.
    pub async fn kill_all(&self, grace: Duration) {
        let processes = self.all();
        let mut kills = tokio::task::JoinSet::new();
        for process in &processes {
            let handle = process.handle.clone();
            kills.spawn(async move { handle.kill_tree(grace).await });
        }
        while kills.join_next().await.is_some() {}
        let mut tracked = self.processes();
        for process in processes {
            if tracked
                .get(&process.server_id)
                .is_some_and(|p| p.handle.pid() == process.handle.pid())
            {
                tracked.remove(&process.server_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogLimits;

    fn sleeper() -> SpawnSpec {
        SpawnSpec {
            program: "sleep".to_owned(),
            args: vec!["30".to_owned()],
            cwd: std::env::temp_dir(),
            env: crate::process::env::compose([]),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_starts_of_one_id_cannot_both_pass() {
        let manager = ProcessManager::new();
        let log = || Arc::new(LogStore::new(LogLimits::with_lines(10)));
        let (first, second) = tokio::join!(
            manager.start("server", "dep", sleeper(), log(), None),
            manager.start("server", "dep", sleeper(), log(), None),
        );
        assert_eq!(
            usize::from(first.is_ok()) + usize::from(second.is_ok()),
            1,
            "{first:?} {second:?}"
        );
        let refused = first.as_ref().err().or(second.as_ref().err());
        assert!(
            refused.is_some_and(|e| e.to_string().contains("is already running")),
            "{refused:?}"
        );
        assert_eq!(manager.running_count(), 1);
        manager.kill_all(Duration::ZERO).await;
        assert_eq!(manager.running_count(), 0);
        // The reservation is given back: the id can be started again.
        let again = manager.start("server", "dep", sleeper(), log(), None).await;
        assert!(again.is_ok());
        manager.kill_all(Duration::ZERO).await;
    }
}
