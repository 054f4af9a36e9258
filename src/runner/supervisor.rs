//! One supervisor task per server: the only thing that changes the server's state.
//!
//! A deploy spawns the server's first process and hands it to [`start`], which starts the task
//! and returns a [`SupervisorHandle`]. The task owns the process, the port and a
//! [`ServerState`]; callers send it [`Control`] messages through the handle and await the
//! answer, and read the latest [`ServerInfo`] it published (a `watch` channel, so a read never
//! waits for the task).
//!
//! The task's `select!` covers the child's exit, control messages, the health gate of a
//! starting process, a health check a caller asked for, and the backoff timer of a restart.
//!
//! # Caveats
//! - The port is released only once the process tree is gone (SIGTERM, grace, SIGKILL, reap),
//!   so a restart or another deploy never races the old tree for it.
//! - A stop that arrives while the first process is starting ends the deploy with
//!   [`Error::DeployInterrupted`]; the deploy's caller gets that instead of a health failure.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::Shared;
use crate::error::{Error, Result};
use crate::health::HealthReport;
use crate::logs::RUNNER_PREFIX;
use crate::logs::{LogStore, Stream, join_text};
use crate::process::{self, ExitInfo, ProcessHandle, SpawnSpec};
use crate::sync::BoxFuture;

/// Output lines quoted when a server fails to start.
const FAILURE_OUTPUT_LINES: usize = 20;

/// How long the output pipes of an exited server may stay open for its last lines.
const LAST_OUTPUT_WAIT: Duration = Duration::from_millis(500);

/// Where a server stands. Only its supervisor task changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// A process was started and has not yet answered its health check.
    Starting {
        /// When this process was started.
        since: SystemTime,
    },
    /// The process is running; `healthy` is the outcome of its last check.
    Running {
        /// Whether the last health check passed.
        healthy: bool,
        /// When it was last checked.
        last_check: SystemTime,
    },
    /// The process exited; the restart policy starts it again at `until`.
    Backoff {
        /// When the next attempt starts.
        until: SystemTime,
        /// Which restart the next attempt is (1 for the first).
        attempt: u32,
        /// How the process ended.
        exit: ExitInfo,
    },
    /// `stop()` or `shutdown()` is taking the tree down.
    Stopping {
        /// When the stop began.
        since: SystemTime,
    },
    /// Down for good: stopped, or exited with no restart left. The port is released.
    Stopped {
        /// How the last process ended, when one ran.
        exit: Option<ExitInfo>,
        /// When it went down.
        at: SystemTime,
    },
}

/// `RunningServer.healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Started, not yet answering its health check.
    Starting,
    /// Answered its last health check.
    Healthy,
    /// Exited, or failed its last health check.
    Unhealthy,
    /// Being stopped.
    Stopping,
}

impl HealthStatus {
    /// The name JS sees.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Stopping => "stopping",
        }
    }
}

impl ServerState {
    /// The health status a caller sees for this state.
    pub fn health(&self) -> HealthStatus {
        match self {
            ServerState::Starting { .. } => HealthStatus::Starting,
            ServerState::Running { healthy: true, .. } => HealthStatus::Healthy,
            ServerState::Running { healthy: false, .. }
            | ServerState::Backoff { .. }
            | ServerState::Stopped { .. } => HealthStatus::Unhealthy,
            ServerState::Stopping { .. } => HealthStatus::Stopping,
        }
    }
}

/// A snapshot of one server, as its supervisor last published it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// The server's id.
    pub id: String,
    /// The deployment it serves.
    pub deployment_id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// The build it runs.
    pub build_id: String,
    /// The current process id, while one runs.
    pub pid: Option<u32>,
    /// Always `127.0.0.1`.
    pub host: String,
    /// The port it listens on.
    pub port: u16,
    /// Where it stands.
    pub state: ServerState,
    /// When its health was last checked.
    pub last_health_check: Option<SystemTime>,
    /// When it was deployed.
    pub started_at: SystemTime,
    /// Restarts made by the restart policy.
    pub restarts: u32,
    /// The token every process of the server carries in its environment.
    pub token: String,
}

impl ServerInfo {
    /// Its health status.
    pub fn health(&self) -> HealthStatus {
        self.state.health()
    }

    /// When it went down for good, once it has.
    pub fn stopped_at(&self) -> Option<SystemTime> {
        match self.state {
            ServerState::Stopped { at, .. } => Some(at),
            _ => None,
        }
    }

    /// Whether a process of it may be running (it is not down for good).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, ServerState::Stopped { .. })
    }
}

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
    HealthReport {
        healthy: false,
        message: Some("Process is not running".to_owned()),
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

/// What [`start`] needs for a server whose first process is already spawned.
pub struct NewServer {
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
    pub child: ServerProcess,
    /// How long the first process may take to become healthy.
    pub health_timeout: Duration,
    /// The token in the environment of every process of the server
    /// ([`process::ownership::SERVER_TOKEN_VAR`]).
    pub token: String,
}

/// Starts the supervisor task of `server`. Returns its handle, the task (to be joined), and a
/// receiver that resolves once the first process is healthy, or with why it never became so
/// (then the tree is gone and the port released).
pub fn start(
    shared: Arc<Shared>,
    server: NewServer,
) -> (
    SupervisorHandle,
    JoinHandle<()>,
    oneshot::Receiver<Result<()>>,
) {
    let (control, messages) = mpsc::unbounded_channel();
    let (publish, info) = watch::channel(server.info.clone());
    let (ready, deployed) = oneshot::channel();
    let ready = (server.origin == Origin::Deploy).then_some(ready);
    let kept = server.child.handle.is_kept();
    let supervisor = Supervisor {
        shared,
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
    };
    if !kept {
        process::registry::register_token(&supervisor.token);
    }
    let task = tokio::spawn(supervisor.run());
    (SupervisorHandle { control, info }, task, deployed)
}

/// Consecutive restarts without a stable run in between.
struct Streak {
    started: Instant,
    restarts: u32,
}

/// The task's own data: nothing else touches it.
struct Supervisor {
    shared: Arc<Shared>,
    info: ServerInfo,
    spec: Option<SpawnSpec>,
    log: Arc<LogStore>,
    child: Option<ServerProcess>,
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
}

impl Supervisor {
    async fn run(mut self) {
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
                break;
            }
            let child = self.child.as_ref().map(|c| c.handle.clone());
            let backoff_until = match self.info.state {
                ServerState::Backoff { until, .. } => Some(until),
                _ => None,
            };
            let exit = async {
                match &child {
                    Some(child) => child.wait().await,
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
            let event = tokio::select! {
                exit = exit => Event::Exited(exit),
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
                    if self.child.as_ref().is_none_or(|c| !c.handle.is_running()) {
                        let _ = reply.send(not_running());
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

    /// The health gate of the process that is starting: polling on the health checker's
    /// schedule, and a probe at once whenever the server says it is ready on its IPC channel.
    /// Either way the answer must come from this server, not from a program that took the port.
    fn health_gate(&self) -> BoxFuture<'static, Result<()>> {
        let health = Arc::clone(&self.shared.health);
        let timeout = if self.ready.is_some() {
            self.health_timeout
        } else {
            self.shared.config.health_check.retry_interval
                * self.shared.config.health_check.max_retries
        };
        let announced = self
            .child
            .as_ref()
            .and_then(|c| c.signal.as_ref())
            .map(|s| s.announced.clone());
        let owner = OwnerCheck {
            port: self.info.port,
            leader: self.info.pid.unwrap_or_default() as i32,
            token: self.token.clone(),
        };
        Box::pin(Self::gate(health, owner, timeout, announced))
    }

    /// The gate's steps: an answer from the health endpoint ([`Self::health_answer`]), and the
    /// server holding the port. A server listens by the time it says so, so who holds the port
    /// is read from its first `server-ready` on, while the probe is in flight, rather than
    /// after the answer; without a signal (or when that read has not finished) it is read
    /// after the answer.
    async fn gate(
        health: Arc<crate::health::HealthChecker>,
        owner: OwnerCheck,
        timeout: Duration,
        announced: Option<watch::Receiver<u64>>,
    ) -> Result<()> {
        let first_signal = announced.clone();
        let early = async {
            let Some(mut first_signal) = first_signal else {
                return std::future::pending().await;
            };
            next_announcement(&mut first_signal).await;
            owner.run().await
        };
        let answer = Self::health_answer(health, owner.port, timeout, announced);
        tokio::pin!(early, answer);
        let mut early_outcome = None;
        loop {
            tokio::select! {
                // The answer first: on the signal its probe goes out before the check wakes a
                // blocking thread (on a busy machine that thread can take the CPU).
                biased;
                answered = &mut answer => {
                    answered?;
                    break;
                }
                outcome = &mut early, if early_outcome.is_none() => early_outcome = Some(outcome),
            }
        }
        match early_outcome.transpose()? {
            Some(Listener::Server) => Ok(()),
            // Read after the answer, no listener at all (another network namespace) leaves the
            // answer trusted.
            Some(Listener::Unseen) | None => owner.run().await.map(drop),
        }
    }

    /// Waits for a 2xx from the health endpoint: polling, or at once on the server's signal.
    async fn health_answer(
        health: Arc<crate::health::HealthChecker>,
        port: u16,
        timeout: Duration,
        announced: Option<watch::Receiver<u64>>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let polling = health.wait_until_healthy_loopback(port, timeout);
        let has_signal = announced.is_some();
        let signalled = async {
            let Some(mut announced) = announced else {
                return std::future::pending().await;
            };
            loop {
                next_announcement(&mut announced).await;
                if health.check_loopback(port).await.healthy {
                    return Ok(());
                }
            }
        };
        tokio::pin!(signalled);
        tokio::select! {
            outcome = polling => match outcome {
                // Polling gives up once its next probe would come too late; the server's
                // own signal may still arrive before the deadline.
                Err(error) if has_signal => tokio::time::timeout_at(deadline, &mut signalled)
                    .await
                    .unwrap_or(Err(error)),
                outcome => outcome,
            },
            outcome = &mut signalled => outcome,
        }
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

    /// Lets go of a kept server that runs; stops one that does not. Returns whether it was
    /// left running.
    async fn detach(&mut self) -> bool {
        // Running (healthy or not, or adopted and not yet checked), and no deploy waits for it.
        let running = self.ready.is_none()
            && matches!(
                self.info.state,
                ServerState::Running { .. } | ServerState::Starting { .. }
            )
            && self
                .child
                .as_ref()
                .is_some_and(|c| c.handle.is_kept() && c.handle.is_running());
        if !running {
            self.stop("detach()").await;
            return false;
        }
        if let Some(child) = self.child.take() {
            if let Some(signal) = &child.signal {
                signal.reader.abort();
            }
            child.handle.let_go();
            self.shared.monitor.forget(child.handle.pid() as i32);
        }
        self.runner_line(format!(
            "detached: the server keeps running (pid {}, port {}) for the next runner on this buildDir",
            self.info.pid.unwrap_or_default(),
            self.info.port
        ));
        self.shared.ports.release(self.info.port);
        true
    }

    /// The process exited on its own.
    async fn exited(&mut self, exit: ExitInfo) {
        if let Some(ready) = self.ready.take() {
            if let Some(child) = &self.child {
                child.handle.wait_output_closed(LAST_OUTPUT_WAIT).await;
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
        let not_ours = self.child.as_ref().is_some_and(|c| c.adopted);
        self.runner_line(if not_ours && exit == ExitInfo::unknown() {
            "process exited (its exit status is unknown: it was not started by this runner)"
                .to_owned()
        } else {
            format!("process exited with {exit}")
        });
        tracing::warn!(server = self.info.id, "server process exited with {exit}");
        // Whatever the leader left in its group goes before anything else takes the port.
        self.kill_tree().await;
        self.info.pid = None;
        let Some(policy) = self.shared.config.restart_policy.clone() else {
            self.go_down(Some(exit));
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
            self.go_down(Some(exit));
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
            self.go_down(None);
            return false;
        };
        match start_process(&self.shared, spec, &self.log, &self.info.id).await {
            Ok(child) => {
                self.info.pid = Some(child.handle.pid());
                self.info.restarts += 1;
                if let Some(kept) = &self.shared.kept {
                    let (pid, ticks, restarts) = (
                        child.handle.pid(),
                        child.handle.start_ticks(),
                        self.info.restarts,
                    );
                    kept.update(&self.info.id, |record| {
                        record.pid = pid;
                        record.start_ticks = ticks;
                        record.restarts = restarts;
                    });
                }
                self.child = Some(child);
                self.streak.started = Instant::now();
                self.set_state(ServerState::Starting {
                    since: SystemTime::now(),
                });
                true
            }
            Err(error) => {
                self.runner_line(format!("restart failed: {error}"));
                self.go_down(None);
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
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(Error::DeployInterrupted {
                port: self.info.port,
                by: by.to_owned(),
            }));
        }
    }

    /// Kills the current process tree, if any, and waits until nothing of it is left.
    async fn kill_tree(&mut self) -> Option<ExitInfo> {
        let child = self.child.take()?;
        if let Some(signal) = &child.signal {
            signal.reader.abort();
        }
        let grace = self.shared.config.shutdown_timeout;
        let exit = child.handle.kill_tree(grace).await;
        // Processes that left the group (setsid, detached children) still carry the token.
        let escaped = process::ownership::kill_token_processes(&self.token, grace).await;
        if escaped > 0 {
            self.runner_line(format!(
                "stopped {escaped} process(es) that had left the server's process group"
            ));
        }
        self.shared.monitor.forget(child.handle.pid() as i32);
        Some(exit)
    }

    /// Down for good: the tree is gone, so the port goes back.
    fn go_down(&mut self, exit: Option<ExitInfo>) {
        process::registry::unregister_token(&self.token);
        if let Some(kept) = &self.shared.kept {
            kept.remove(&self.info.id);
        }
        self.info.pid = None;
        self.shared.ports.release(self.info.port);
        self.set_state(ServerState::Stopped {
            exit,
            at: SystemTime::now(),
        });
    }
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
}

/// `server-ready` messages read off a server's IPC channel.
struct ReadySignal {
    /// Bumped for every `{ type: 'server-ready' }` message.
    announced: watch::Receiver<u64>,
    /// The task reading the channel, stopped with the process.
    reader: tokio::task::AbortHandle,
}

/// Starts a process of server `server_id`: with a Node IPC channel when
/// `healthCheck.readySignal` is on, and under `keepServersOnExit` as a process that outlives
/// the host, its output in its log file.
pub async fn start_process(
    shared: &Shared,
    spec: &SpawnSpec,
    log: &Arc<LogStore>,
    server_id: &str,
) -> Result<ServerProcess> {
    let lifetime = match &shared.kept {
        Some(kept) => process::Lifetime::Kept {
            log_file: kept.log_file(server_id),
            max_log_bytes: shared.config.log_file_max_bytes,
        },
        None => process::Lifetime::WithHost(Some(Arc::clone(&shared.journal))),
    };
    let (handle, channel) = process::spawn_with(
        spec.clone(),
        Arc::clone(log),
        lifetime,
        shared.config.ready_signal,
    )
    .await?;
    let signal = channel.map(|channel| {
        let (announce, announced) = watch::channel(0u64);
        let reader = tokio::spawn(read_channel(channel, announce)).abort_handle();
        ReadySignal { announced, reader }
    });
    Ok(ServerProcess {
        handle,
        signal,
        adopted: false,
    })
}

/// Longest IPC message read; longer ones are skipped.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Pause after each full read of the channel: a server that floods it is read no faster than a
/// readiness signal needs, and never costs the runner more than one small buffer.
const FLOOD_PAUSE: Duration = Duration::from_millis(50);

/// Reads JSON messages (one per line) off a server's IPC channel until it closes, announcing
/// each `{ type: 'server-ready' }`; anything else is ignored.
async fn read_channel(mut channel: tokio::net::UnixStream, announce: watch::Sender<u64>) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = match channel.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for chunk in buffer[..n].split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            if !skipping {
                line.extend_from_slice(chunk);
            }
            if line.len() > MAX_MESSAGE_BYTES {
                line.clear();
                skipping = true;
            }
            if complete {
                if !skipping && is_server_ready(&line) {
                    announce.send_modify(|count| *count += 1);
                }
                line.clear();
                skipping = false;
            }
        }
        if n == buffer.len() {
            tokio::time::sleep(FLOOD_PAUSE).await;
        }
    }
}

/// Whether `line` is the JSON of a message with `type: 'server-ready'`.
fn is_server_ready(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|message| {
            message
                .get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "server-ready")
        })
        .unwrap_or(false)
}

/// Resolves on the server's next `server-ready`; never once its channel has closed (polling
/// alone decides then).
async fn next_announcement(announced: &mut watch::Receiver<u64>) {
    if announced.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Who listens on a server's port, as far as [`OwnerCheck`] could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// A process of the server holds a socket listening on the port.
    Server,
    /// No socket listening on the port could be read.
    Unseen,
}

/// The check that the sockets listening on a server's port belong to the server: its tree
/// from `leader`, or a process carrying `token`.
struct OwnerCheck {
    port: u16,
    leader: i32,
    token: String,
}

impl OwnerCheck {
    /// Runs the check on the blocking pool (it reads `/proc`).
    async fn run(&self) -> Result<Listener> {
        let (port, leader, token) = (self.port, self.leader, self.token.clone());
        tokio::task::spawn_blocking(move || check_listener(port, leader, &token))
            .await
            .map_err(|e| Error::internal("checking who listens on the port", e))?
    }
}

/// Fails with [`Error::ForeignListener`] when the sockets listening on `port` are held by none
/// of the server's processes (its tree from `leader`, and those carrying `token`).
fn check_listener(port: u16, leader: i32, token: &str) -> Result<Listener> {
    use crate::process::{ownership, procfs};
    let inodes = ownership::listening_inodes(port);
    if inodes.is_empty() {
        return Ok(Listener::Unseen);
    }
    let tree: Vec<i32> = procfs::live_tree(leader).iter().map(|p| p.pid).collect();
    // The tree is cheap to read; every process's environment (for the token) only if needed.
    if ownership::holds_any(&tree, &inodes)
        || ownership::holds_any(&ownership::processes_with_token(token), &inodes)
    {
        return Ok(Listener::Server);
    }
    Err(Error::ForeignListener {
        port,
        holder: ownership::holder_of(&inodes),
    })
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
