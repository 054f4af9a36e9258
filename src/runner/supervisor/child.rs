//! The seam between a supervisor and its server's process: what the task asks of a process
//! ([`ServerChild`]) and of whatever starts one for a restart ([`Spawner`]). The real ones are
//! [`ServerProcess`] over a [`ProcessHandle`] and [`ProcessSpawner`]; the supervisor's unit
//! tests give fakes that exit when told, so every state transition is tested without a process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::keeping::Keeping;
use super::ready::ReadySignal;
use crate::config::RunnerConfig;
use crate::error::Result;
use crate::logs::LogStore;
use crate::process::{self, ExitInfo, ProcessHandle, SpawnSpec};
use crate::runner::Shared;
use crate::sync::BoxFuture;

/// A process of a server, as its supervisor drives it.
pub trait ServerChild: Send + Sync {
    /// Its process id (also its process group's).
    fn pid(&self) -> u32;
    /// When it started, in clock ticks after boot (with the pid, it names the process).
    fn start_ticks(&self) -> u64;
    /// Whether it still runs.
    fn is_running(&self) -> bool;
    /// Resolves with how it ended, once it has.
    fn exit(&self) -> BoxFuture<'static, ExitInfo>;
    /// Waits at most `limit` for its output to end, so its last lines are in the log.
    fn output_closed(&self, limit: Duration) -> BoxFuture<'static, ()>;
    /// Bumped at each `server-ready` it sends, when it has an IPC channel.
    fn ready_announcements(&self) -> Option<watch::Receiver<u64>>;
    /// Started by another runner and adopted: its exit status cannot be read.
    fn is_adopted(&self) -> bool;
    /// Takes its tree down (SIGTERM, `grace`, SIGKILL, reap) and resolves with how it ended.
    /// The SIGTERM goes out before the future is first polled.
    fn kill_tree(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ExitInfo>;
    /// Leaves it running, unsupervised (a kept server's `detach()`).
    fn let_go(self: Box<Self>);
}

/// Starts a process of a server: a restart's.
pub trait Spawner: Send + Sync {
    /// Starts `spec` as a process of server `server_id`, its output into `log`.
    fn spawn<'a>(
        &'a self,
        spec: &'a SpawnSpec,
        log: &'a Arc<LogStore>,
        server_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn ServerChild>>>;
}

/// A running process of a server, with its readiness channel when it has one.
pub struct ServerProcess {
    /// The process.
    pub handle: ProcessHandle,
    signal: Option<ReadySignal>,
    /// Started by another runner: its exit status cannot be read.
    adopted: bool,
}

impl ServerProcess {
    /// A process another runner started, taken over by this one.
    pub fn adopted(handle: ProcessHandle) -> Self {
        ServerProcess {
            handle,
            signal: None,
            adopted: true,
        }
    }

    /// Stops reading its IPC channel.
    fn close_channel(&self) {
        if let Some(signal) = &self.signal {
            signal.close();
        }
    }
}

impl ServerChild for ServerProcess {
    fn pid(&self) -> u32 {
        self.handle.pid()
    }

    fn start_ticks(&self) -> u64 {
        self.handle.start_ticks()
    }

    fn is_running(&self) -> bool {
        self.handle.is_running()
    }

    fn exit(&self) -> BoxFuture<'static, ExitInfo> {
        let handle = self.handle.clone();
        Box::pin(async move { handle.wait().await })
    }

    fn output_closed(&self, limit: Duration) -> BoxFuture<'static, ()> {
        let handle = self.handle.clone();
        Box::pin(async move {
            handle.wait_output_closed(limit).await;
        })
    }

    fn ready_announcements(&self) -> Option<watch::Receiver<u64>> {
        self.signal.as_ref().map(|s| s.announced.clone())
    }

    fn is_adopted(&self) -> bool {
        self.adopted
    }

    fn kill_tree(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ExitInfo> {
        self.close_channel();
        Box::pin(self.handle.kill_tree(grace))
    }

    fn let_go(self: Box<Self>) {
        self.close_channel();
        self.handle.let_go();
    }
}

/// Starts a process of server `server_id`: with a Node IPC channel when
/// `healthCheck.readySignal` is on, and as its runner's [`Keeping`] says (under
/// `keepServersOnExit`, a process that outlives the host, its output in its log file).
pub async fn start_process(
    shared: &Shared,
    spec: &SpawnSpec,
    log: &Arc<LogStore>,
    server_id: &str,
) -> Result<ServerProcess> {
    spawn_server_process(
        &shared.config,
        shared.keeping.as_ref(),
        spec,
        log,
        server_id,
    )
    .await
}

async fn spawn_server_process(
    config: &RunnerConfig,
    keeping: &dyn Keeping,
    spec: &SpawnSpec,
    log: &Arc<LogStore>,
    server_id: &str,
) -> Result<ServerProcess> {
    let (handle, channel) = process::spawn_with(
        spec.clone(),
        Arc::clone(log),
        keeping.lifetime(server_id),
        config.ready_signal,
    )
    .await?;
    Ok(ServerProcess {
        handle,
        signal: channel.map(ReadySignal::listen),
        adopted: false,
    })
}

/// The real [`Spawner`]: [`start_process`] under the server's [`Keeping`].
pub struct ProcessSpawner {
    shared: Arc<Shared>,
    keeping: Arc<dyn Keeping>,
}

impl ProcessSpawner {
    /// Spawns processes with `shared`'s configuration under `keeping`.
    pub fn new(shared: Arc<Shared>, keeping: Arc<dyn Keeping>) -> Self {
        ProcessSpawner { shared, keeping }
    }
}

impl Spawner for ProcessSpawner {
    fn spawn<'a>(
        &'a self,
        spec: &'a SpawnSpec,
        log: &'a Arc<LogStore>,
        server_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn ServerChild>>> {
        Box::pin(async move {
            let child = spawn_server_process(
                &self.shared.config,
                self.keeping.as_ref(),
                spec,
                log,
                server_id,
            )
            .await?;
            Ok(Box::new(child) as Box<dyn ServerChild>)
        })
    }
}
