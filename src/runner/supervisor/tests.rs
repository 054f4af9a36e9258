//! The supervisor's state transitions, each driven through a fake child: a stand-in for the
//! server's process that exits when the test says so, with the status the test chooses. The
//! health gate is real, against a test endpoint on loopback held by this process (so the fake
//! child, which claims this process's pid, owns the port as a server does).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::child::{ServerChild, Spawner};
use super::ready::ReadySignal;
use super::*;
use crate::config::{HealthCheckSettings, RestartPolicy, RunnerConfig};
use crate::error::Error;
use crate::health::HealthChecker;
use crate::health::test_endpoint::{TestServer, closed_port, serve};
use crate::logs::{LogLimits, LogStore};
use crate::ports::PortRange;
use crate::process::{ExitInfo, Journal, ResourceMonitor, SpawnSpec};
use crate::runner::kept::{KeptRecord, KeptServers};
use crate::runner::lease::PortLeases;
use crate::sync::BoxFuture;

/// How long a test waits for a state before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// SIGTERM's number: how a fake child that is killed ends.
const SIGTERM: i32 = 15;

/// The test's side of a fake child: what was done to it, and its exit.
struct FakeState {
    exit: watch::Sender<Option<ExitInfo>>,
    start_ticks: u64,
    /// Ends only when told, even once killed (a server slow to die).
    stubborn: bool,
    killed: AtomicBool,
    let_go: AtomicBool,
}

/// A stand-in for a server's process.
struct FakeChild {
    state: Arc<FakeState>,
    exit: watch::Receiver<Option<ExitInfo>>,
    adopted: bool,
}

/// What the test holds of a [`FakeChild`].
#[derive(Clone)]
struct Remote(Arc<FakeState>);

impl Remote {
    /// Makes the child exit with `code`.
    fn exit_with(&self, code: i32) {
        self.end(ExitInfo {
            code: Some(code),
            signal: None,
        });
    }

    fn end(&self, exit: ExitInfo) {
        self.0.exit.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(exit);
            }
            first
        });
    }

    fn killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }

    fn let_go(&self) -> bool {
        self.0.let_go.load(Ordering::SeqCst)
    }
}

/// A fake child started at `start_ticks`, and its remote.
fn fake_child(start_ticks: u64) -> (FakeChild, Remote) {
    new_child(start_ticks, false)
}

/// A fake child that a kill does not end: only [`Remote::exit_with`] does.
fn stubborn_child() -> (FakeChild, Remote) {
    new_child(1, true)
}

fn new_child(start_ticks: u64, stubborn: bool) -> (FakeChild, Remote) {
    let (sender, exit) = watch::channel(None);
    let state = Arc::new(FakeState {
        exit: sender,
        start_ticks,
        stubborn,
        killed: AtomicBool::new(false),
        let_go: AtomicBool::new(false),
    });
    let remote = Remote(Arc::clone(&state));
    let child = FakeChild {
        state,
        exit,
        adopted: false,
    };
    (child, remote)
}

impl ServerChild for FakeChild {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn start_ticks(&self) -> u64 {
        self.state.start_ticks
    }

    fn is_running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    fn exit(&self) -> BoxFuture<'static, ExitInfo> {
        let mut exit = self.exit.clone();
        Box::pin(async move {
            match exit.wait_for(Option::is_some).await {
                Ok(ended) => (*ended).unwrap_or_else(ExitInfo::unknown),
                Err(_) => ExitInfo::unknown(),
            }
        })
    }

    fn output_closed(&self, _limit: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn ready_announcements(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    fn is_adopted(&self) -> bool {
        self.adopted
    }

    fn kill_tree(self: Box<Self>, _grace: Duration) -> BoxFuture<'static, ExitInfo> {
        self.state.killed.store(true, Ordering::SeqCst);
        if !self.state.stubborn {
            Remote(Arc::clone(&self.state)).end(ExitInfo {
                code: None,
                signal: Some(SIGTERM),
            });
        }
        self.exit()
    }

    fn let_go(self: Box<Self>) {
        self.state.let_go.store(true, Ordering::SeqCst);
    }
}

/// Hands out prepared fake children for restarts; fails once none is left.
#[derive(Default)]
struct FakeSpawner {
    children: Mutex<VecDeque<FakeChild>>,
    spawned: AtomicUsize,
}

impl FakeSpawner {
    fn with(children: Vec<FakeChild>) -> Arc<Self> {
        Arc::new(FakeSpawner {
            children: Mutex::new(children.into()),
            spawned: AtomicUsize::new(0),
        })
    }
}

impl Spawner for FakeSpawner {
    fn spawn<'a>(
        &'a self,
        _spec: &'a SpawnSpec,
        _log: &'a Arc<LogStore>,
        _server_id: &'a str,
    ) -> BoxFuture<'a, crate::error::Result<Box<dyn ServerChild>>> {
        self.spawned.fetch_add(1, Ordering::SeqCst);
        let next = crate::sync::lock(&self.children).pop_front();
        Box::pin(async move {
            match next {
                Some(child) => Ok(Box::new(child) as Box<dyn ServerChild>),
                None => Err(Error::internal("spawning a server", "no fake child left")),
            }
        })
    }
}

/// A runner's shared state for one test: quick health checks, a short kill grace, `policy`,
/// and ports `port..=port` (so a kept record of the test port is valid).
fn shared(name: &str, port: u16, policy: Option<RestartPolicy>, kept: bool) -> Arc<Shared> {
    let dir = crate::test_support::temp_dir("supervisor", name);
    let mut config = RunnerConfig::defaults(&dir);
    config.build_dir = dir.clone();
    config.port_range = PortRange {
        start: port,
        end: port,
    };
    config.restart_policy = policy;
    config.shutdown_timeout = Duration::from_millis(50);
    config.health_check = HealthCheckSettings {
        timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(10),
        max_retries: 30,
        endpoint: "/health".to_owned(),
    };
    config.keep_servers_on_exit = kept;
    let ports = Arc::new(PortLeases::new(config.port_range));
    ports.hold_adopted(port, SERVER_ID);
    let journal = Arc::new(Journal::new(&dir));
    let kept = kept.then(|| Arc::new(KeptServers::new(&dir, config.port_range)));
    let keeping = keeping_for(kept.as_ref(), &journal, config.log_file_max_bytes);
    Arc::new(Shared {
        ports,
        health: Arc::new(HealthChecker::new(config.health_check.clone()).expect("health checker")),
        journal,
        monitor: ResourceMonitor::new(),
        kept,
        keeping,
        isolation: crate::isolation::Isolation::new(&config.sandbox, &config.build_dir),
        config,
    })
}

/// Restarts after 10 ms, at most `max_restarts`.
fn policy(max_restarts: u32) -> Option<RestartPolicy> {
    policy_with_backoff(max_restarts, Duration::from_millis(10))
}

/// Restarts after `backoff` (doubled for each following one), at most `max_restarts`.
fn policy_with_backoff(max_restarts: u32, backoff: Duration) -> Option<RestartPolicy> {
    Some(RestartPolicy {
        max_restarts,
        backoff,
        max_backoff: backoff * 2,
    })
}

/// A health endpoint that always answers 200.
async fn healthy_endpoint() -> TestServer {
    serve("127.0.0.1:0", |_| Some("200 OK"))
        .await
        .expect("test endpoint")
}

const SERVER_ID: &str = "server-1";

/// Supervises `child` as server [`SERVER_ID`] on `port`, restarts coming from `spawner`.
fn supervise_fake(
    shared: &Arc<Shared>,
    origin: Origin,
    child: FakeChild,
    spawner: Arc<FakeSpawner>,
) -> (Supervised, Arc<LogStore>) {
    let port = shared.config.port_range.start;
    let token = crate::process::ownership::new_server_token(SERVER_ID);
    let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
    let now = SystemTime::now();
    let server = NewServer {
        info: ServerInfo {
            id: SERVER_ID.to_owned(),
            deployment_id: "deployment-1".to_owned(),
            project_id: "project-1".to_owned(),
            build_id: "build-1".to_owned(),
            pid: Some(child.pid()),
            host: "127.0.0.1".to_owned(),
            port,
            state: ServerState::Starting { since: now },
            last_health_check: None,
            started_at: now,
            restarts: 0,
            token: token.clone(),
        },
        origin,
        spec: Some(SpawnSpec {
            program: "node".to_owned(),
            args: vec!["index.mjs".to_owned()],
            cwd: PathBuf::from("/"),
            env: Default::default(),
            confinement: Default::default(),
        }),
        log: Arc::clone(&log),
        child: Box::new(child) as Box<dyn ServerChild>,
        health_timeout: Duration::from_secs(2),
        token,
        keeping: Arc::clone(&shared.keeping),
    };
    (supervise(Arc::clone(shared), server, spawner), log)
}

/// Waits until the server's published state satisfies `wanted`.
async fn until(handle: &SupervisorHandle, wanted: impl Fn(&ServerState) -> bool) -> ServerInfo {
    until_info(handle, |info| wanted(&info.state)).await
}

/// Waits until the server as published satisfies `wanted`.
async fn until_info(handle: &SupervisorHandle, wanted: impl Fn(&ServerInfo) -> bool) -> ServerInfo {
    let mut info = handle.info.clone();
    let waited = tokio::time::timeout(PATIENCE, info.wait_for(|info| wanted(info))).await;
    match waited {
        Ok(Ok(info)) => info.clone(),
        _ => panic!("state never came; last: {:?}", handle.info().state),
    }
}

/// A crashed server with no restart left keeps its port until a caller stops it; then the
/// task ends and the port goes back.
async fn stop_after_crash(
    handle: &SupervisorHandle,
    task: tokio::task::JoinHandle<()>,
    shared: &Shared,
    port: u16,
) {
    until(handle, is_stopped).await;
    assert!(
        shared.ports.is_allocated(port),
        "a crashed server's port stays reserved"
    );
    handle.stop("stop()").await;
    task.await.expect("task ends");
    assert!(!shared.ports.is_allocated(port));
}

fn is_running(state: &ServerState) -> bool {
    matches!(state, ServerState::Running { healthy: true, .. })
}

fn is_stopped(state: &ServerState) -> bool {
    matches!(state, ServerState::Stopped { .. })
}

fn log_text(log: &LogStore) -> String {
    crate::logs::join_text(&log.tail(100))
}

#[tokio::test]
async fn a_deploy_gate_that_passes_makes_the_server_running_and_healthy() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("passes", endpoint.port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, _task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    assert_eq!(handle.info().health(), HealthStatus::Starting);
    ready.await.expect("answered").expect("healthy");
    let info = handle.info();
    assert!(is_running(&info.state), "{:?}", info.state);
    assert_eq!(info.health(), HealthStatus::Healthy);
    assert!(info.last_health_check.is_some());
    assert!(handle.check_health().await.healthy);
    handle.stop("stop()").await;
    assert!(remote.killed());
}

#[tokio::test]
async fn a_deploy_gate_that_fails_stops_the_server_and_releases_its_port() {
    let port = closed_port();
    let shared = shared("gate-fails", port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    let outcome = ready.await.expect("answered");
    assert!(outcome.is_err(), "{outcome:?}");
    task.await.expect("task ends");
    assert!(remote.killed());
    assert!(is_stopped(&handle.info().state));
    assert!(!shared.ports.is_allocated(port));
}

#[tokio::test]
async fn a_first_process_that_exits_during_its_deploy_fails_the_deploy() {
    let port = closed_port();
    let shared = shared("first-exits", port, policy(3), false);
    let (child, remote) = fake_child(1);
    let ((handle, _task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    remote.exit_with(7);
    let outcome = ready.await.expect("answered");
    assert!(
        matches!(outcome, Err(Error::ServerExited { exit, .. }) if exit.code == Some(7)),
        "{outcome:?}"
    );
    // A deploy's first process is not restarted, whatever the policy.
    let info = until(&handle, is_stopped).await;
    assert_eq!(info.restarts, 0);
    assert!(!shared.ports.is_allocated(port));
}

#[tokio::test]
async fn an_exit_without_a_restart_policy_stops_the_server() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("no-policy", endpoint.port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    remote.exit_with(1);
    stop_after_crash(&handle, task, &shared, endpoint.port).await;
    let info = handle.info();
    assert!(
        matches!(info.state, ServerState::Stopped { exit: Some(exit), .. } if exit.code == Some(1)),
        "{:?}",
        info.state
    );
    assert_eq!(info.pid, None);
    assert!(log_text(&log).contains("process exited with exit code 1"));
    assert!(!shared.ports.is_allocated(endpoint.port));
    assert_eq!(
        handle.check_health().await.message.as_deref(),
        Some("Process is not running")
    );
}

#[tokio::test]
async fn an_exit_under_the_policy_backs_off_then_restarts_until_healthy() {
    let endpoint = healthy_endpoint().await;
    // A backoff long enough to be seen however slowly this test is scheduled.
    let backoff = Duration::from_millis(300);
    let shared = shared(
        "restarts",
        endpoint.port,
        policy_with_backoff(3, backoff),
        false,
    );
    let (child, first) = fake_child(1);
    let (second_child, second) = fake_child(2);
    let spawner = FakeSpawner::with(vec![second_child]);
    let ((handle, _task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, Arc::clone(&spawner));
    ready.await.expect("answered").expect("healthy");
    first.exit_with(1);
    let backoff = until(&handle, |state| {
        matches!(state, ServerState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(backoff.state, ServerState::Backoff { attempt: 1, exit, .. } if exit.code == Some(1)),
        "{:?}",
        backoff.state
    );
    assert_eq!(backoff.health(), HealthStatus::Unhealthy);
    let restarted = until(&handle, |state| {
        !matches!(state, ServerState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(
            restarted.state,
            ServerState::Starting { .. } | ServerState::Running { .. }
        ),
        "{:?}",
        restarted.state
    );
    let running = until(&handle, is_running).await;
    assert_eq!(running.restarts, 1);
    assert_eq!(running.pid, Some(std::process::id()));
    assert_eq!(spawner.spawned.load(Ordering::SeqCst), 1);
    assert!(
        first.killed(),
        "what the leader left is killed before the restart"
    );
    let text = log_text(&log);
    assert!(
        text.contains("restarting in 300 ms (restart 1 of 3)"),
        "{text}"
    );
    assert!(text.contains("restarted: healthy"), "{text}");
    handle.stop("stop()").await;
    assert!(second.killed());
}

#[tokio::test]
async fn the_restart_limit_leaves_the_server_stopped() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("limit", endpoint.port, policy(1), false);
    let (child, first) = fake_child(1);
    let (second_child, second) = fake_child(2);
    let ((handle, task, ready), log) = supervise_fake(
        &shared,
        Origin::Deploy,
        child,
        FakeSpawner::with(vec![second_child]),
    );
    ready.await.expect("answered").expect("healthy");
    first.exit_with(1);
    until_info(&handle, |info| {
        info.restarts == 1 && is_running(&info.state)
    })
    .await;
    second.exit_with(2);
    stop_after_crash(&handle, task, &shared, endpoint.port).await;
    let info = handle.info();
    assert!(
        matches!(info.state, ServerState::Stopped { exit: Some(exit), .. } if exit.code == Some(2)),
        "{:?}",
        info.state
    );
    assert!(log_text(&log).contains("restart limit reached (1 restarts): the server stays down"));
    assert!(!shared.ports.is_allocated(endpoint.port));
}

#[tokio::test]
async fn a_restart_that_cannot_spawn_leaves_the_server_stopped() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("spawn-fails", endpoint.port, policy(3), false);
    let (child, first) = fake_child(1);
    let ((handle, task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    first.exit_with(1);
    stop_after_crash(&handle, task, &shared, endpoint.port).await;
    assert!(matches!(
        handle.info().state,
        ServerState::Stopped { exit: None, .. }
    ));
    assert!(log_text(&log).contains("restart failed: "));
}

#[tokio::test]
async fn a_stop_goes_through_stopping_to_stopped_once_the_tree_is_gone() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("stop", endpoint.port, policy(3), false);
    let (child, remote) = stubborn_child();
    let ((handle, task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.stop("stop()").await }
    });
    let info = until(&handle, |state| {
        matches!(state, ServerState::Stopping { .. })
    })
    .await;
    assert_eq!(info.health(), HealthStatus::Stopping);
    assert!(remote.killed());
    // The port stays taken while the tree is still there.
    assert!(shared.ports.is_allocated(endpoint.port));
    remote.exit_with(0);
    stopping.await.expect("stop resolves");
    task.await.expect("task ends");
    assert!(is_stopped(&handle.info().state));
    assert!(log_text(&log).contains("stopped"));
    assert!(!shared.ports.is_allocated(endpoint.port));
}

#[tokio::test]
async fn a_stop_while_the_deploy_waits_interrupts_the_deploy() {
    let port = closed_port();
    let shared = shared("stop-starting", port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, _task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    handle.stop("shutdown()").await;
    let outcome = ready.await.expect("answered");
    assert!(
        matches!(&outcome, Err(Error::DeployInterrupted { by, .. }) if by == "shutdown()"),
        "{outcome:?}"
    );
    assert!(remote.killed());
}

#[tokio::test]
async fn dropping_every_handle_stops_the_server() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("dropped", endpoint.port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    drop(handle);
    task.await.expect("task ends");
    assert!(remote.killed());
    assert!(log_text(&log).contains("stopped"));
}

#[tokio::test]
async fn an_adopted_server_is_gated_without_a_deploy_and_its_unknown_exit_said_so() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("adopted", endpoint.port, None, false);
    let (mut child, remote) = fake_child(1);
    child.adopted = true;
    let ((handle, task, _no_deploy_waits), log) =
        supervise_fake(&shared, Origin::Adopted, child, FakeSpawner::with(vec![]));
    until(&handle, is_running).await;
    assert!(log_text(&log).contains("adopted: healthy"));
    remote.end(ExitInfo::unknown());
    stop_after_crash(&handle, task, &shared, endpoint.port).await;
    assert!(log_text(&log).contains(
        "process exited (its exit status is unknown: it was not started by this runner)"
    ));
}

#[tokio::test]
async fn detach_of_a_server_that_dies_with_the_host_stops_it() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("detach-with-host", endpoint.port, None, false);
    let (child, remote) = fake_child(1);
    let ((handle, task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    assert!(!handle.detach().await);
    task.await.expect("task ends");
    assert!(remote.killed());
    assert!(!remote.let_go());
    assert!(is_stopped(&handle.info().state));
}

/// Records server [`SERVER_ID`] as kept (as a deploy does before its spawn) and returns where.
fn record_kept(shared: &Shared, start_ticks: u64) -> PathBuf {
    let kept = shared.kept.as_ref().expect("kept strategy");
    let record = KeptRecord {
        server_id: SERVER_ID.to_owned(),
        deployment_id: "deployment-1".to_owned(),
        project_id: "project-1".to_owned(),
        build_id: "build-1".to_owned(),
        port: shared.config.port_range.start,
        pid: std::process::id(),
        start_ticks,
        token: format!("{SERVER_ID}-{:032x}", 1),
        started_at: SystemTime::now(),
        restarts: 0,
        route_id: None,
        deployed: true,
        owner: None,
        draining: false,
        watched_memory_mb: None,
    };
    kept.record(record).expect("record written");
    kept.record_path(SERVER_ID)
}

fn recorded(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read(path).expect("record");
    serde_json::from_slice(&text).expect("record JSON")
}

#[tokio::test]
async fn detach_under_the_kept_strategy_leaves_a_running_server_running() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("detach-kept", endpoint.port, None, true);
    let record = record_kept(&shared, 1);
    let (child, remote) = fake_child(1);
    let ((handle, task, ready), log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    ready.await.expect("answered").expect("healthy");
    assert!(handle.detach().await);
    task.await.expect("task ends");
    assert!(remote.let_go());
    assert!(!remote.killed());
    assert!(log_text(&log).contains("detached: the server keeps running"));
    assert!(!shared.ports.is_allocated(endpoint.port));
    assert!(record.exists(), "the record stays for the next runner");
}

#[tokio::test]
async fn detach_under_the_kept_strategy_stops_a_server_a_deploy_waits_for() {
    let port = closed_port();
    let shared = shared("detach-kept-starting", port, None, true);
    let record = record_kept(&shared, 1);
    let (child, remote) = fake_child(1);
    let ((handle, _task, ready), _log) =
        supervise_fake(&shared, Origin::Deploy, child, FakeSpawner::with(vec![]));
    assert!(!handle.detach().await);
    assert!(ready.await.expect("answered").is_err());
    assert!(remote.killed());
    assert!(!remote.let_go());
    assert!(!record.exists(), "a server down for good loses its record");
}

#[tokio::test]
async fn under_the_kept_strategy_a_restart_updates_the_record_and_going_down_removes_it() {
    let endpoint = healthy_endpoint().await;
    let shared = shared("kept-restart", endpoint.port, policy(3), true);
    let record = record_kept(&shared, 1);
    let (child, first) = fake_child(1);
    let (second_child, second) = fake_child(42);
    let ((handle, task, ready), _log) = supervise_fake(
        &shared,
        Origin::Deploy,
        child,
        FakeSpawner::with(vec![second_child]),
    );
    ready.await.expect("answered").expect("healthy");
    first.exit_with(1);
    until_info(&handle, |info| info.restarts == 1).await;
    let value = recorded(&record);
    assert_eq!(value["startTicks"], 42);
    assert_eq!(value["restarts"], 1);
    assert_eq!(value["pid"], std::process::id());
    handle.stop("stop()").await;
    task.await.expect("task ends");
    assert!(second.killed());
    assert!(!record.exists());
}

#[tokio::test]
async fn the_ready_channel_counts_server_ready_messages_only() {
    let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("socket pair");
    let signal = ReadySignal::listen(ours);
    let mut announced = signal.announced.clone();
    use tokio::io::AsyncWriteExt;
    theirs
        .write_all(b"{\"type\":\"other\"}\nnot json\n{\"type\":\"server-ready\"}\n")
        .await
        .expect("write");
    tokio::time::timeout(PATIENCE, announced.wait_for(|count| *count == 1))
        .await
        .expect("announced")
        .expect("channel open");
    signal.close();
}
