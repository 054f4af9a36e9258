//! The supervisor task: the only thing that changes a server's state.
//!
//! Its `select!` covers the child's exit, control messages, the health gate of a starting
//! process, a health check a caller asked for, and the backoff timer of a restart. What the
//! server's [`Keeping`] decides (how a restart spawns, what a restart or the end of the server
//! records, whether `detach()` may leave it running) is asked of it, never of the mode.
//!
//! # Caveats
//! - The port is released only once the process tree is gone (SIGTERM, grace, SIGKILL, reap),
//!   so a restart or another deploy never races the old tree for it.
//! - A stop that arrives while the first process is starting ends the deploy with
//!   [`Error::DeployInterrupted`]; the deploy's caller gets that instead of a health failure.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use super::child::{ServerChild, Spawner};
use super::keeping::Keeping;
use super::state::{ServerInfo, ServerState};
use super::{Control, NewServer, Origin, gate, not_running, not_running_because};
use crate::error::{Error, Result};
use crate::health::{HealthReport, ListenerCheck};
use crate::logs::{LogStore, RUNNER_PREFIX, Stream, join_text};
use crate::process::{self, ExitInfo, SpawnSpec};
use crate::runner::Shared;
use crate::sync::BoxFuture;

/// Output lines quoted when a server fails to start.
const FAILURE_OUTPUT_LINES: usize = 20;

/// How long the output pipes of an exited server may stay open for its last lines.
const LAST_OUTPUT_WAIT: Duration = Duration::from_millis(500);

/// Consecutive restarts without a stable run in between.
struct Streak {
    started: Instant,
    restarts: u32,
}

/// The task's own data: nothing else touches it.
pub(super) struct Supervisor {
    shared: Arc<Shared>,
    keeping: Arc<dyn Keeping>,
    spawner: Arc<dyn Spawner>,
    info: ServerInfo,
    spec: Option<SpawnSpec>,
    log: Arc<LogStore>,
    child: Option<Box<dyn ServerChild>>,
    publish: watch::Sender<ServerInfo>,
    messages: mpsc::UnboundedReceiver<Control>,
    /// The deploy waiting for the first process to become healthy.
    ready: Option<oneshot::Sender<Result<()>>>,
    /// How the server came here; an adopted one's first gate says so in its log.
    origin: Origin,
    health_timeout: Duration,
    token: String,
    streak: Streak,
    /// A `detach()` waiting for the task to let go.
    detaching: Option<oneshot::Sender<bool>>,
    /// Why the kernel killed the last process, when it did (`killed: out of memory (limit
    /// 160 MB)`).
    killed_because: Option<String>,
    /// Crashed with no restart left: its port stays reserved until it is stopped.
    port_reserved: bool,
    /// Why the memory watchdog killed the process, until its exit is handled.
    watchdog_killed: Option<String>,
    /// The watchdog's clock (one tick every [`MEMORY_WATCH_EVERY`], whatever else happens).
    memory_clock: tokio::time::Interval,
    /// The release of its cgroup and private directory once it is down.
    released: Option<tokio::task::JoinHandle<()>>,
}

/// A health check in flight, with the callers waiting for it.
struct PendingCheck {
    check: BoxFuture<'static, HealthReport>,
    replies: Vec<oneshot::Sender<HealthReport>>,
}

/// What woke the task.
enum Event {
    Exited(ExitInfo),
    Message(Option<Control>),
    GateOutcome(Result<()>),
    Checked(HealthReport),
    BackoffOver,
    MemoryTick,
}

impl Supervisor {
    /// The task's data for `server`, whose restarts `spawner` starts; it answers `messages`,
    /// publishes on `publish`, and tells `ready` (when a deploy waits) how the first gate went.
    pub(super) fn new(
        shared: Arc<Shared>,
        server: NewServer<Box<dyn ServerChild>>,
        spawner: Arc<dyn Spawner>,
        channels: (
            watch::Sender<ServerInfo>,
            mpsc::UnboundedReceiver<Control>,
            Option<oneshot::Sender<Result<()>>>,
        ),
    ) -> Self {
        let (publish, messages, ready) = channels;
        Supervisor {
            shared,
            keeping: server.keeping,
            spawner,
            info: server.info,
            spec: server.spec,
            log: server.log,
            child: Some(server.child),
            publish,
            messages,
            ready,
            origin: server.origin,
            health_timeout: server.health_timeout,
            token: server.token,
            streak: Streak {
                started: Instant::now(),
                restarts: 0,
            },
            detaching: None,
            killed_because: None,
            port_reserved: false,
            watchdog_killed: None,
            memory_clock: memory_clock(),
            released: None,
        }
    }

    /// Supervises the server until it is down for good or let go.
    pub(super) async fn run(mut self) {
        let mut gate: Option<BoxFuture<'static, Result<()>>> = Some(self.health_gate());
        let mut pending: Option<PendingCheck> = None;
        let mut stop_by: Option<(&'static str, Vec<oneshot::Sender<()>>)> = None;
        loop {
            if let Some(done) = self.detaching.take() {
                // A stop that was asked for before the detach wins: the server goes down.
                let mut stops = Vec::new();
                while let Ok(message) = self.messages.try_recv() {
                    match message {
                        Control::Stop { done, .. } => stops.push(done),
                        Control::CheckHealth { reply } => {
                            let _ = reply.send(not_running());
                        }
                        Control::Detach { done } => {
                            let _ = done.send(false);
                        }
                    }
                }
                if !stops.is_empty() {
                    let _ = done.send(false);
                    stop_by = Some(("stop()", stops));
                    continue;
                }
                let left_running = self.detach().await;
                let _ = done.send(left_running);
                break;
            }
            if let Some((by, waiting)) = stop_by.take() {
                self.stop(by).await;
                for done in waiting {
                    let _ = done.send(());
                }
                break;
            }
            if matches!(self.info.state, ServerState::Stopped { .. }) {
                if self.port_reserved {
                    self.stay_down().await;
                }
                break;
            }
            let exit = self.child.as_ref().map(|c| c.exit());
            let backoff_until = match self.info.state {
                ServerState::Backoff { until, .. } => Some(until),
                _ => None,
            };
            let exit = async {
                match exit {
                    Some(exit) => exit.await,
                    None => std::future::pending().await,
                }
            };
            let gate_outcome = async {
                match gate.as_mut() {
                    Some(gate) => gate.await,
                    None => std::future::pending().await,
                }
            };
            let checked = async {
                match pending.as_mut() {
                    Some(pending) => (&mut pending.check).await,
                    None => std::future::pending().await,
                }
            };
            let memory_watched = self.child.as_ref().is_some_and(|c| c.is_running())
                && self
                    .shared
                    .isolation
                    .groups
                    .memory_watch(&self.info.id)
                    .is_some();
            let memory_clock = &mut self.memory_clock;
            let memory_tick = async move {
                if memory_watched {
                    memory_clock.tick().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let event = tokio::select! {
                exit = exit => Event::Exited(exit),
                () = memory_tick => Event::MemoryTick,
                message = self.messages.recv() => Event::Message(message),
                outcome = gate_outcome => Event::GateOutcome(outcome),
                report = checked => Event::Checked(report),
                () = sleep_until(backoff_until) => Event::BackoffOver,
            };
            match event {
                Event::Exited(exit) => {
                    gate = None;
                    self.exited(exit).await;
                }
                Event::MemoryTick => self.check_memory().await,
                Event::Message(None) => {
                    // Every handle is gone: nobody can stop the server any more, so stop it now.
                    stop_by = Some(("the runner being dropped", Vec::new()));
                }
                Event::Message(Some(Control::Stop { by, done })) => {
                    let mut waiting = vec![done];
                    // Further stops queued behind this one resolve with it.
                    while let Ok(Control::Stop { done, .. }) = self.messages.try_recv() {
                        waiting.push(done);
                    }
                    stop_by = Some((by, waiting));
                }
                Event::Message(Some(Control::Detach { done })) => {
                    self.detaching = Some(done);
                }
                Event::Message(Some(Control::CheckHealth { reply })) => {
                    if self.child.as_ref().is_none_or(|c| !c.is_running()) {
                        let _ = reply.send(not_running_because(self.killed_because.as_deref()));
                    } else if let Some(pending) = pending.as_mut() {
                        pending.replies.push(reply);
                    } else {
                        pending = Some(PendingCheck {
                            check: self.one_check(),
                            replies: vec![reply],
                        });
                    }
                }
                Event::GateOutcome(outcome) => {
                    gate = None;
                    self.gate_passed_or_failed(outcome).await;
                }
                Event::Checked(report) => {
                    if let Some(done) = pending.take() {
                        self.record_check(&report);
                        for reply in done.replies {
                            let _ = reply.send(report.clone());
                        }
                    }
                }
                Event::BackoffOver => {
                    if self.restart().await {
                        gate = Some(self.health_gate());
                    }
                }
            }
        }
        // Anyone still waiting for a check learns the server is down.
        if let Some(pending) = pending {
            for reply in pending.replies {
                let _ = reply.send(not_running());
            }
        }
    }

    fn set_state(&mut self, state: ServerState) {
        self.info.state = state;
        self.publish.send_replace(self.info.clone());
    }

    fn runner_line(&self, text: String) {
        self.log.append_lines(
            Stream::Stderr,
            std::iter::once(format!("{RUNNER_PREFIX}{text}")),
        );
    }

    /// The health gate of the process that is starting ([`gate::pass`]): a deploy's waits
    /// `health_timeout`, any other the health checker's retries.
    fn health_gate(&self) -> BoxFuture<'static, Result<()>> {
        let health = Arc::clone(&self.shared.health);
        let timeout = if self.ready.is_some() {
            self.health_timeout
        } else {
            self.shared.config.health_check.retry_interval
                * self.shared.config.health_check.max_retries
        };
        let announced = self.child.as_ref().and_then(|c| c.ready_announcements());
        let owner = ListenerCheck {
            port: self.info.port,
            leader: self.info.pid.unwrap_or_default() as i32,
            token: self.token.clone(),
        };
        Box::pin(gate::pass(health, owner, timeout, announced))
    }

    fn one_check(&self) -> BoxFuture<'static, HealthReport> {
        let health = Arc::clone(&self.shared.health);
        let port = self.info.port;
        Box::pin(async move { health.check_loopback(port).await })
    }

    fn record_check(&mut self, report: &HealthReport) {
        let now = SystemTime::now();
        self.info.last_health_check = Some(now);
        if let ServerState::Running { .. } = self.info.state {
            self.set_state(ServerState::Running {
                healthy: report.healthy,
                last_check: now,
            });
        } else {
            self.publish.send_replace(self.info.clone());
        }
    }

    /// The starting process answered its health gate, or did not in time.
    async fn gate_passed_or_failed(&mut self, outcome: Result<()>) {
        let now = SystemTime::now();
        self.info.last_health_check = Some(now);
        match outcome {
            Ok(()) => {
                if self.ready.is_none() {
                    self.runner_line(format!("{}: healthy", self.gate_subject()));
                }
                self.set_state(ServerState::Running {
                    healthy: true,
                    last_check: now,
                });
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Err(error) => match self.ready.take() {
                // A deploy's first process: the deploy fails and nothing is left behind.
                Some(ready) => {
                    let exit = self.kill_tree().await;
                    self.go_down(exit);
                    let _ = ready.send(Err(error));
                }
                // A restarted process keeps running, marked unhealthy, as the original does.
                None => {
                    self.runner_line(format!("{}: not healthy ({error})", self.gate_subject()));
                    self.set_state(ServerState::Running {
                        healthy: false,
                        last_check: now,
                    });
                }
            },
        }
    }

    /// What the log calls a process whose health gate no deploy waits for.
    fn gate_subject(&self) -> &'static str {
        match (self.origin, self.info.restarts) {
            (Origin::Adopted, 0) => "adopted",
            _ => "restarted",
        }
    }

    /// Lets go of a server that runs when its [`Keeping`] lets it outlive the runner; stops
    /// it otherwise. Returns whether it was left running.
    async fn detach(&mut self) -> bool {
        // Running (healthy or not, or adopted and not yet checked), and no deploy waits for it.
        let running = self.keeping.outlives_runner()
            && self.ready.is_none()
            && matches!(
                self.info.state,
                ServerState::Running { .. } | ServerState::Starting { .. }
            )
            && self.child.as_ref().is_some_and(|c| c.is_running());
        if !running {
            self.stop("detach()").await;
            return false;
        }
        if let Some(child) = self.child.take() {
            let pid = child.pid();
            child.let_go();
            self.shared.monitor.forget(pid as i32);
        }
        // Its cgroup stays, for the next runner to adopt with it.
        self.shared.isolation.groups.let_go(&self.info.id);
        self.runner_line(format!(
            "detached: the server keeps running (pid {}, port {}) for the next runner on this buildDir",
            self.info.pid.unwrap_or_default(),
            self.info.port
        ));
        self.shared.ports.release(self.info.port, &self.info.id);
        true
    }

    /// The process exited on its own.
    async fn exited(&mut self, exit: ExitInfo) {
        self.killed_because = self
            .shared
            .isolation
            .groups
            .new_oom_kill(&self.info.id)
            // An OOM kill of another process of the group does not explain this exit (an
            // adopted process's exit is unknown: the kill is the best account of it).
            .filter(|_| exit.signal == Some(nix::libc::SIGKILL) || exit == ExitInfo::unknown())
            .map(|limit_mb| format!("killed: out of memory (limit {limit_mb} MB)"))
            .or_else(|| self.watchdog_killed.take());
        if let Some(ready) = self.ready.take() {
            if let Some(child) = &self.child {
                child.output_closed(LAST_OUTPUT_WAIT).await;
            }
            if let Some(reason) = &self.killed_because {
                self.runner_line(format!("process exited with {exit}: {reason}"));
            }
            let error = Error::ServerExited {
                pid: self.info.pid.unwrap_or_default(),
                exit,
                output: join_text(&self.log.tail(FAILURE_OUTPUT_LINES)),
            };
            let exit = self.kill_tree().await;
            self.go_down(exit);
            let _ = ready.send(Err(error));
            return;
        }
        let not_ours = self.child.as_ref().is_some_and(|c| c.is_adopted());
        let unknown =
            "process exited (its exit status is unknown: it was not started by this runner)";
        self.runner_line(if not_ours && exit == ExitInfo::unknown() {
            match &self.killed_because {
                Some(reason) => format!("{unknown}: {reason}"),
                None => unknown.to_owned(),
            }
        } else if let Some(reason) = &self.killed_because {
            format!("process exited with {exit}: {reason}")
        } else {
            format!("process exited with {exit}")
        });
        tracing::warn!(server = self.info.id, "server process exited with {exit}");
        // Whatever the leader left in its group goes before anything else takes the port.
        self.kill_tree().await;
        self.info.pid = None;
        let Some(policy) = self.shared.config.restart_policy.clone() else {
            self.crashed(Some(exit));
            return;
        };
        if self.streak.started.elapsed() > stable_after(policy.max_backoff) {
            self.streak.restarts = 0;
        }
        if self.streak.restarts >= policy.max_restarts {
            self.runner_line(format!(
                "restart limit reached ({} restarts): the server stays down",
                policy.max_restarts
            ));
            self.crashed(Some(exit));
            return;
        }
        let factor = 2u32.saturating_pow(self.streak.restarts);
        let backoff = policy
            .backoff
            .saturating_mul(factor)
            .min(policy.max_backoff);
        self.streak.restarts += 1;
        self.runner_line(format!(
            "restarting in {} ms (restart {} of {})",
            backoff.as_millis(),
            self.streak.restarts,
            policy.max_restarts
        ));
        self.set_state(ServerState::Backoff {
            until: SystemTime::now() + backoff,
            attempt: self.streak.restarts,
            exit,
        });
    }

    /// Starts the process again on the same port. Returns whether one runs now.
    async fn restart(&mut self) -> bool {
        let Some(spec) = &self.spec else {
            self.runner_line(
                "not restarted: the adopted server's command line could not be read".to_owned(),
            );
            self.crashed(None);
            return false;
        };
        match self.spawner.spawn(spec, &self.log, &self.info.id).await {
            Ok(child) => {
                self.info.pid = Some(child.pid());
                self.info.restarts += 1;
                self.keeping.restarted(&self.info, child.as_ref());
                self.child = Some(child);
                self.streak.started = Instant::now();
                self.set_state(ServerState::Starting {
                    since: SystemTime::now(),
                });
                true
            }
            Err(error) => {
                self.runner_line(format!("restart failed: {error}"));
                self.crashed(None);
                false
            }
        }
    }

    /// Stops for good on a caller's request.
    async fn stop(&mut self, by: &'static str) {
        self.set_state(ServerState::Stopping {
            since: SystemTime::now(),
        });
        let exit = self.kill_tree().await;
        self.runner_line("stopped".to_owned());
        self.go_down(exit);
        // A stop resolves once the server's cgroup and private directory are gone too.
        if let Some(released) = self.released.take() {
            let _ = released.await;
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(Error::DeployInterrupted {
                port: self.info.port,
                by: by.to_owned(),
            }));
        }
    }

    /// Where no cgroup enforces `memoryMb` (PM2's `max_memory_restart`): kills the process
    /// group once the tree's resident memory is over the limit; its exit is then reported as
    /// an out-of-memory kill.
    async fn check_memory(&mut self) {
        let limit_mb = self.shared.isolation.groups.memory_watch(&self.info.id);
        let (Some(limit_mb), Some(child)) = (limit_mb, &self.child) else {
            return;
        };
        let pid = child.pid() as i32;
        let resident = tokio::task::spawn_blocking(move || {
            let pages: u64 = process::procfs::live_tree(pid)
                .iter()
                .map(|p| p.rss_pages)
                .sum();
            pages * process::procfs::page_size()
        })
        .await
        .unwrap_or(0);
        let resident_mb = resident / 1_048_576;
        if resident_mb <= limit_mb || self.watchdog_killed.is_some() {
            return;
        }
        self.runner_line(format!(
            "memory watchdog: {resident_mb} MB resident, over the limit of {limit_mb} MB"
        ));
        self.watchdog_killed = Some(format!("killed: out of memory (limit {limit_mb} MB)"));
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    /// Kills the current process tree, if any, and waits until nothing of it is left.
    async fn kill_tree(&mut self) -> Option<ExitInfo> {
        let child = self.child.take()?;
        let pid = child.pid();
        let grace = self.shared.config.shutdown_timeout;
        let exit = child.kill_tree(grace).await;
        // Processes that left the group (setsid, detached children) still carry the token.
        let mut escaped = process::ownership::kill_token_processes(&self.token, grace).await;
        // Whatever is left in its cgroup (an escapee that dropped the token too).
        escaped += self.shared.isolation.kill_group(&self.info.id).await;
        if escaped > 0 {
            self.runner_line(format!(
                "stopped {escaped} process(es) that had left the server's process group"
            ));
        }
        self.shared.monitor.forget(pid as i32);
        Some(exit)
    }

    /// Down for good: the tree is gone, so the port goes back.
    fn go_down(&mut self, exit: Option<ExitInfo>) {
        self.fall_down(exit);
        self.shared.ports.release(self.info.port, &self.info.id);
    }

    /// Down after a crash with no restart left: the tree is gone, the port stays reserved for
    /// the server until it is stopped (see [`Self::stay_down`]).
    fn crashed(&mut self, exit: Option<ExitInfo>) {
        self.fall_down(exit);
        self.port_reserved = true;
    }

    /// Keeps a crashed server's port from strangers and answers its health checks (with why
    /// the kernel killed it, when it did) until a caller stops it or the runner lets it go;
    /// then the port goes back.
    async fn stay_down(&mut self) {
        while let Some(message) = self.messages.recv().await {
            match message {
                Control::CheckHealth { reply } => {
                    let _ = reply.send(not_running_because(self.killed_because.as_deref()));
                }
                Control::Detach { done } => {
                    let _ = done.send(false);
                    break;
                }
                Control::Stop { done, .. } => {
                    if let Some(released) = self.released.take() {
                        let _ = released.await;
                    }
                    self.shared.ports.release(self.info.port, &self.info.id);
                    let _ = done.send(());
                    return;
                }
            }
        }
        self.shared.ports.release(self.info.port, &self.info.id);
    }

    /// The tree is gone: its cgroup and private directory go, the state is `Stopped`.
    fn fall_down(&mut self, exit: Option<ExitInfo>) {
        self.keeping.gone(&self.info);
        self.info.pid = None;
        let shared = Arc::clone(&self.shared);
        let server_id = self.info.id.clone();
        self.released = Some(tokio::spawn(async move {
            let build_dir = shared.config.build_dir.clone();
            shared.isolation.release(&build_dir, &server_id).await;
        }));
        self.set_state(ServerState::Stopped {
            exit,
            at: SystemTime::now(),
        });
    }
}

/// How often the memory watchdog reads a server's resident memory (where no cgroup limits it).
const MEMORY_WATCH_EVERY: Duration = Duration::from_millis(500);

/// The watchdog's clock: a missed tick is not made up in a burst.
fn memory_clock() -> tokio::time::Interval {
    let mut clock = tokio::time::interval(MEMORY_WATCH_EVERY);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    clock
}

/// Sleeps until `until` (a wall-clock time); forever when `None`.
async fn sleep_until(until: Option<SystemTime>) {
    match until {
        Some(until) => {
            let left = until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// How long a server must run before its restart count starts again from zero: the longest
/// backoff, but at least ten seconds, so that a server crashing in a loop is never mistaken for
/// a stable one.
fn stable_after(max_backoff: Duration) -> Duration {
    max_backoff.max(Duration::from_secs(10))
}
