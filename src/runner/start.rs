//! The start guard: what one attempt to start a server has done so far (a port leased, its log
//! opened, its kept record written, its process spawned, its supervisor started, the server
//! registered), undone in reverse when the attempt fails.
//!
//! A failed attempt awaits [`StartGuard::undo`], which takes the tree down (kills the spawned
//! process, stops the supervisor, or forgets the registered server) and then drops the guard;
//! the drop undoes the rest at once: the kept record goes, the port lease ends, the log
//! retires. A guard dropped without `undo` or [`StartGuard::commit`] (a deploy future dropped
//! mid-way) does the same, the tree's end then left to a background task.
//!
//! # Caveats
//! Once a supervisor owns the server, its port and kept record are the supervisor's: the
//! guard parks the lease in [`super::lease::PortLeases`] before the supervisor starts (it gives
//! the port back when the tree is gone), and no longer removes the record.

use std::sync::Arc;

use super::kept::KeptRecord;
use super::lease::PortLease;
use super::servers::ServerEntry;
use super::supervisor::{Keeping, SupervisorHandle};
use super::{LogOwner, Runner};
use crate::error::Result;
use crate::isolation::Isolation;
use crate::logs::LogStore;
use crate::process::ProcessHandle;

/// Who stops a server whose deploy was dropped before it finished.
const ABANDONED_BY: &str = "an abandoned deploy";

/// One attempt to start a server, undone unless committed.
pub struct StartGuard<'a> {
    runner: &'a Runner,
    server_id: String,
    port: u16,
    /// Ours until a supervisor owns the server.
    lease: Option<PortLease>,
    log_open: bool,
    /// The runner's strategy for servers that outlive it.
    keeping: Arc<dyn Keeping>,
    kept_recorded: bool,
    /// Spawned, not yet owned by a supervisor.
    child: Option<ProcessHandle>,
    /// Started, not yet registered.
    supervisor: Option<SupervisorHandle>,
    registered: bool,
    committed: bool,
}

impl<'a> StartGuard<'a> {
    /// An attempt to start server `server_id` on the port of `lease`.
    pub fn new(runner: &'a Runner, server_id: String, lease: PortLease) -> Self {
        StartGuard {
            runner,
            server_id,
            port: lease.port(),
            lease: Some(lease),
            log_open: false,
            keeping: Arc::clone(&runner.shared.keeping),
            kept_recorded: false,
            child: None,
            supervisor: None,
            registered: false,
            committed: false,
        }
    }

    /// The id of the server being started.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens the server's log (retired on undo).
    pub fn open_log(&mut self, owner: LogOwner, log: &Arc<LogStore>) {
        self.runner.logs.open_server(owner, log);
        self.log_open = true;
    }

    /// Tells the runner's [`Keeping`] strategy the server is about to start (what it writes
    /// is taken back on undo).
    pub fn starting(&mut self, record: KeptRecord) -> Result<()> {
        self.kept_recorded = self.keeping.starting(record)?;
        Ok(())
    }

    /// The server's process runs (its tree is killed on undo); the strategy is told, and may
    /// refuse (the deploy then fails and is undone).
    pub fn spawned(&mut self, child: &ProcessHandle) -> Result<()> {
        self.child = Some(child.clone());
        self.keeping
            .spawned(&self.server_id, child.pid(), child.start_ticks())
    }

    /// A supervisor is about to own the server: the port lease is parked for it, and its
    /// process and kept record are its own from now on.
    pub fn hand_to_supervisor(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.runner.servers.ports().hold(lease, &self.server_id);
        }
        self.child = None;
        self.kept_recorded = false;
    }

    /// The supervisor `handle` owns the server (it is stopped on undo).
    pub fn supervised(&mut self, handle: &SupervisorHandle) {
        self.supervisor = Some(handle.clone());
    }

    /// Registers the server as `entry` with its deployment (`deployment_id`, deploy `order`),
    /// unless `cancelled` says so (checked under the registry's lock); returns whether it did.
    pub fn register(
        &mut self,
        entry: ServerEntry,
        deployment_id: &str,
        order: u64,
        cancelled: impl FnOnce() -> bool,
    ) -> bool {
        let runner = self.runner;
        let server_id = &self.server_id;
        self.registered = runner.servers.register(server_id, entry, || {
            let admitted = !cancelled();
            if admitted {
                runner.deployments.enroll(server_id, deployment_id, order);
            }
            admitted
        });
        if self.registered {
            self.supervisor = None;
        }
        self.registered
    }

    /// The server started: nothing is undone.
    pub fn commit(mut self) {
        self.committed = true;
    }

    /// Takes down what the attempt started (awaiting it), then undoes the rest.
    pub async fn undo(mut self) {
        if self.registered {
            self.registered = false;
            self.log_open = false;
            self.runner.forget_server(&self.server_id).await;
        } else if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop("shutdown()").await;
        } else if let Some(child) = self.child.take() {
            child.kill_tree(self.runner.config().shutdown_timeout).await;
        }
        let isolation = &self.runner.shared.isolation;
        isolation.remove_group(&self.server_id).await;
        isolation
            .remove_private_tmp_later(&self.runner.config().build_dir, &self.server_id)
            .await;
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current().ok();
        if self.registered {
            // Dropped mid-way: the registry forgets it now, its supervisor stops it meanwhile.
            if let Some(handle) = self.runner.servers.handle(&self.server_id) {
                self.supervisor = Some(handle);
            }
            self.runner.servers.remove(&self.server_id);
            self.runner.deployments.forget(&self.server_id);
        }
        if let (Some(supervisor), Some(runtime)) = (self.supervisor.take(), &runtime) {
            runtime.spawn(async move { supervisor.stop(ABANDONED_BY).await });
        }
        // A spawned tree still holds the port and needs its kept record until it is gone: the
        // lease and the record go after the kill, not before.
        let lease = self.lease.take();
        let abandoned = self
            .kept_recorded
            .then(|| (Arc::clone(&self.keeping), self.server_id.clone()));
        let groups = Arc::clone(&self.runner.shared.isolation.groups);
        let build_dir = self.runner.config().build_dir.clone();
        let server_id = self.server_id.clone();
        let forget = move || {
            if let Some((keeping, server_id)) = abandoned {
                keeping.abandoned(&server_id);
            }
            // What is left in its cgroup goes before its port does.
            groups.remove(&server_id);
            drop(lease);
            Isolation::remove_private_tmp(&build_dir, &server_id);
        };
        match (self.child.take(), &runtime) {
            (Some(child), Some(runtime)) => {
                let grace = self.runner.config().shutdown_timeout;
                runtime.spawn(async move {
                    child.kill_tree(grace).await;
                    forget();
                });
            }
            _ => forget(),
        }
        if self.log_open {
            self.runner.logs.retire_server(&self.server_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunnerConfig;
    use crate::logs::LogLimits;
    use crate::process::SpawnSpec;

    fn runner(name: &str) -> Runner {
        let build_dir = crate::test_support::temp_dir("start-guard", name);
        let base = 45_000 + (std::process::id() % 300) as u16 * 12;
        let offset = match name {
            "dropped" => 0,
            "undone" => 4,
            _ => 8,
        };
        let config = serde_json::json!({
            "buildDir": build_dir,
            "portRange": { "start": base + offset, "end": base + offset + 3 },
        });
        let config = RunnerConfig::from_json(&config, std::path::Path::new("/")).expect("config");
        Runner::new(config).expect("runner")
    }

    fn server_log(server_id: &str) -> (LogOwner, Arc<LogStore>) {
        let owner = LogOwner::Server {
            server_id: server_id.to_owned(),
            deployment_id: "dep-1".to_owned(),
            project_id: "project-1".to_owned(),
        };
        (owner, Arc::new(LogStore::new(LogLimits::with_lines(100))))
    }

    #[test]
    fn a_start_dropped_uncommitted_gives_its_port_back_once_and_retires_its_log() {
        let runner = runner("dropped");
        let lease = runner.servers.ports().lease(None).expect("a port");
        let port = lease.port();
        let mut start = StartGuard::new(&runner, "server-1".to_owned(), lease);
        let (owner, log) = server_log("server-1");
        start.open_log(owner, &log);
        assert_eq!(runner.stats().allocated_ports, vec![port]);
        drop(start);
        assert!(runner.stats().allocated_ports.is_empty());
        assert!(
            runner.server_log("server-1").is_some(),
            "retired, still readable"
        );
        // The port's next holder keeps it: nothing of the first start gives it back again.
        let next = runner
            .servers
            .ports()
            .lease(Some(port))
            .expect("the port again");
        runner.servers.ports().release(port, "server-1");
        assert_eq!(runner.stats().allocated_ports, vec![port]);
        drop(next);
    }

    #[tokio::test]
    async fn a_failed_start_kills_what_it_spawned_then_gives_the_port_back() {
        let runner = runner("undone");
        let lease = runner.servers.ports().lease(None).expect("a port");
        let port = lease.port();
        let mut start = StartGuard::new(&runner, "server-2".to_owned(), lease);
        let spec = SpawnSpec {
            program: "sleep".to_owned(),
            args: vec!["30".to_owned()],
            cwd: std::env::temp_dir(),
            env: Default::default(),
            confinement: Default::default(),
        };
        let (_, log) = server_log("server-2");
        let child = crate::process::spawn(spec, log, None).await.expect("spawn");
        start
            .spawned(&child)
            .expect("the journal recorded the group");
        start.undo().await;
        assert!(!child.is_running(), "the spawned tree is gone");
        assert!(runner.stats().allocated_ports.is_empty());
        let next = runner
            .servers
            .ports()
            .lease(Some(port))
            .expect("the port again");
        assert_eq!(next.port(), port);
    }

    #[test]
    fn a_committed_start_leaves_its_port_to_the_supervisor() {
        let runner = runner("committed");
        let lease = runner.servers.ports().lease(None).expect("a port");
        let port = lease.port();
        let mut start = StartGuard::new(&runner, "server-3".to_owned(), lease);
        start.hand_to_supervisor();
        start.commit();
        assert_eq!(runner.stats().allocated_ports, vec![port]);
        // The supervisor's "the tree is gone", twice: the port goes back once.
        runner.servers.ports().release(port, "server-3");
        assert!(runner.stats().allocated_ports.is_empty());
        runner.servers.ports().release(port, "server-3");
        assert_eq!(runner.stats().available_ports, 4);
    }
}
