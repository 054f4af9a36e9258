//! One supervisor task per server: the only thing that changes the server's state.
//!
//! A deploy spawns the server's first process and hands it to [`start`], which starts the task
//! and returns a [`SupervisorHandle`]. The task owns the process, the port and a
//! [`ServerState`]; callers send it `Control` messages through the handle and await the
//! answer, and read the latest [`ServerInfo`] it published (a `watch` channel, so a read never
//! waits for the task).
//!
//! - `state.rs`: the server's state, health status and published snapshot;
//! - `task.rs`: the task itself, its `select!` and every transition;
//! - `gate.rs`: the health gate of a starting process; `ready.rs`: the IPC ready channel it
//!   listens to;
//! - `child.rs`: what the task asks of a process and of what spawns a restart (the seam its unit
//!   tests fill with fakes);
//! - `keeping.rs`: whether the server outlives its runner (`keepServersOnExit`), the strategy a
//!   supervisor is given when it is spawned.
//!
//! # Caveats
//! The port is released only once the process tree is gone, and a stop that arrives while the
//! first process is starting ends the deploy with [`crate::error::Error::DeployInterrupted`]
//! (see `task.rs`).

mod child;
mod gate;
mod keeping;
mod ready;
mod state;
mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::Shared;
use crate::error::Result;
use crate::health::HealthReport;
use crate::logs::LogStore;
use crate::process::SpawnSpec;
use child::{ProcessSpawner, Spawner};

pub use child::{ServerChild, ServerProcess, start_process};
pub use keeping::{Keeping, keeping_for};
pub use state::{HealthStatus, ServerInfo, ServerState};

/// What a caller asks a supervisor.
enum Control {
    /// Take the tree down for good; `by` names who asked (`stop()`, `shutdown()`).
    Stop {
        by: &'static str,
        done: oneshot::Sender<()>,
    },
    /// Check health once and answer.
    CheckHealth {
        reply: oneshot::Sender<HealthReport>,
    },
    /// Stop supervising a kept server and leave it running (`detach()`); a server that is not
    /// running (starting, or in backoff) is stopped instead. Answers whether it was left running.
    Detach { done: oneshot::Sender<bool> },
}

/// A cloneable handle to one server's supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    control: mpsc::UnboundedSender<Control>,
    info: watch::Receiver<ServerInfo>,
}

impl SupervisorHandle {
    /// The server as its supervisor last published it.
    pub fn info(&self) -> ServerInfo {
        self.info.borrow().clone()
    }

    /// Stops the server for good and resolves once no process of it is left and its port is
    /// released. A server that is already down resolves at once.
    pub async fn stop(&self, by: &'static str) {
        let (done, stopped) = oneshot::channel();
        if self.control.send(Control::Stop { by, done }).is_ok() {
            // An error means the task ended (the server went down) before answering: the
            // tree is gone either way.
            let _ = stopped.await;
        }
    }

    /// Lets go of a kept server that runs (it keeps running, unsupervised); stops one that
    /// does not. Resolves whether it was left running.
    pub async fn detach(&self) -> bool {
        let (done, answer) = oneshot::channel();
        if self.control.send(Control::Detach { done }).is_ok() {
            return answer.await.unwrap_or(false);
        }
        false
    }

    /// One health check: `Process is not running` when no process runs.
    pub async fn check_health(&self) -> HealthReport {
        let (reply, answer) = oneshot::channel();
        if self.control.send(Control::CheckHealth { reply }).is_ok()
            && let Ok(report) = answer.await
        {
            return report;
        }
        not_running()
    }
}

fn not_running() -> HealthReport {
    not_running_because(None)
}

/// `Process is not running`, with why the kernel killed it when it did.
fn not_running_because(reason: Option<&str>) -> HealthReport {
    HealthReport {
        healthy: false,
        message: Some(match reason {
            Some(reason) => format!("Process is not running ({reason})"),
            None => "Process is not running".to_owned(),
        }),
    }
}

/// How a supervisor got its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A deploy started it and waits for its first health gate.
    Deploy,
    /// It was adopted from a runner that is gone (`keepServersOnExit`): its health gate
    /// decides whether it is healthy, and never stops it.
    Adopted,
}

/// What [`start`] needs for a server whose first process (`Child`) is already spawned.
pub struct NewServer<Child = ServerProcess> {
    /// The snapshot to start from (state `Starting`).
    pub info: ServerInfo,
    /// How it came to this runner.
    pub origin: Origin,
    /// The command, for restarts (`None`: an adopted server whose command could not be read,
    /// which is not restarted).
    pub spec: Option<SpawnSpec>,
    /// The server's log (kept across restarts).
    pub log: Arc<LogStore>,
    /// Its first process.
    pub child: Child,
    /// How long the first process may take to become healthy.
    pub health_timeout: Duration,
    /// The token in the environment of every process of the server
    /// ([`crate::process::ownership::SERVER_TOKEN_VAR`]).
    pub token: String,
    /// Whether it outlives the runner (the runner's [`Keeping`]).
    pub keeping: Arc<dyn Keeping>,
}

impl<Child> NewServer<Child> {
    /// The same server with its first process changed by `change`.
    fn with_child<Other>(self, change: impl FnOnce(Child) -> Other) -> NewServer<Other> {
        NewServer {
            info: self.info,
            origin: self.origin,
            spec: self.spec,
            log: self.log,
            child: change(self.child),
            health_timeout: self.health_timeout,
            token: self.token,
            keeping: self.keeping,
        }
    }
}

/// What [`start`] returns: the supervisor's handle, its task (to be joined), and a receiver that
/// resolves once the first process is healthy, or with why it never became so.
pub type Supervised = (
    SupervisorHandle,
    JoinHandle<()>,
    oneshot::Receiver<Result<()>>,
);

/// Starts the supervisor task of `server`, whose restarts spawn real processes. Returns its
/// handle, the task (to be joined), and a receiver that resolves once the first process is
/// healthy, or with why it never became so (then the tree is gone and the port released).
pub fn start(shared: Arc<Shared>, server: NewServer) -> Supervised {
    let spawner = Arc::new(ProcessSpawner::new(
        Arc::clone(&shared),
        Arc::clone(&server.keeping),
    ));
    let server = server.with_child(|child| Box::new(child) as Box<dyn ServerChild>);
    supervise(shared, server, spawner)
}

/// [`start`] with a process of any kind, whose restarts `spawner` starts.
fn supervise(
    shared: Arc<Shared>,
    server: NewServer<Box<dyn ServerChild>>,
    spawner: Arc<dyn Spawner>,
) -> Supervised {
    let (control, messages) = mpsc::unbounded_channel();
    let (publish, info) = watch::channel(server.info.clone());
    let (ready, deployed) = oneshot::channel();
    let ready = (server.origin == Origin::Deploy).then_some(ready);
    server.keeping.supervising(&server.token);
    let supervisor = task::Supervisor::new(shared, server, spawner, (publish, messages, ready));
    let task = tokio::spawn(supervisor.run());
    (SupervisorHandle { control, info }, task, deployed)
}
