//! Timeouts and cancellation of builds with a fake `npm` (a shell script on PATH; see
//! `common`) whose install hangs: the outcome, and that no process of the build survives.

mod common;

use std::time::Duration;

use common::{FakeBuilds, WITH_BUILD, wait_until};
use mastra_runner_local::builder::{BuildRequest, BuildStatus};
use mastra_runner_local::process::procfs;

/// An install that starts a grandchild ignoring SIGTERM, records its pid, and hangs.
const HANG: &str = "(trap '' TERM; exec sleep 1000) & echo $! > grandchild.pid; echo hanging; wait";

fn grandchild(request: &BuildRequest) -> i32 {
    std::fs::read_to_string(request.workdir.join("grandchild.pid"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn hanging(request: &BuildRequest) {
    let log = request.log.clone();
    wait_until("the install to hang", Duration::from_secs(20), || {
        log.all().iter().any(|e| e.line() == "hanging")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_tree_and_fails_the_build() {
    let builds = FakeBuilds::new("timeout", 2);
    let mut request = builds.request("slow", WITH_BUILD, &[("FAKE_INSTALL", HANG)]);
    request.timeout = Some(Duration::from_millis(1_500));
    let probe = request.clone();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    let message = outcome.error_message.unwrap();
    assert!(
        message.starts_with("Build timed out after 1.")
            || message.starts_with("Build timed out after 2"),
        "{message}"
    );
    assert!(
        message.ends_with("(during install: npm install --audit=false --fund=false)"),
        "{message}"
    );
    let pid = grandchild(&probe);
    assert!(pid > 0);
    assert!(
        !procfs::is_alive(pid),
        "grandchild {pid} survived the timeout"
    );
    assert!(!probe.workdir.join("build.env").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_build_kills_its_tree() {
    let builds = FakeBuilds::new("cancel-running", 2);
    let request = builds.request("running", WITH_BUILD, &[("FAKE_INSTALL", HANG)]);
    let probe = request.clone();
    let builder = builds.builder.clone();
    let build = tokio::spawn(async move { builder.build(request).await });
    hanging(&probe).await;
    assert!(builds.builder.cancel("running").await);
    // `cancel` resolves only once the processes are gone.
    let pid = grandchild(&probe);
    assert!(
        !procfs::is_alive(pid),
        "grandchild {pid} survived the cancel"
    );
    let outcome = build.await.unwrap().unwrap();
    assert_eq!(outcome.status, BuildStatus::Cancelled);
    let message = outcome.error_message.unwrap();
    assert!(message.starts_with("Build cancelled after "), "{message}");
    assert!(
        message.ends_with("(during install: npm install --audit=false --fund=false)"),
        "{message}"
    );
    assert!(!builds.builder.is_active("running"));
    assert!(
        !builds.builder.cancel("running").await,
        "a finished build is not cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_build_that_is_cancelled_never_starts() {
    let builds = FakeBuilds::new("cancel-queued", 1);
    let first = builds.request("first", WITH_BUILD, &[("FAKE_INSTALL", HANG)]);
    let second = builds.request("second", WITH_BUILD, &[]);
    let (first_probe, second_probe) = (first.clone(), second.clone());
    let builder = builds.builder.clone();
    let first_build = tokio::spawn(async move { builder.build(first).await });
    hanging(&first_probe).await;
    let builder = builds.builder.clone();
    let second_build = tokio::spawn(async move { builder.build(second).await });
    wait_until("the second build to queue", Duration::from_secs(10), || {
        builds.builder.queued_count() == 1
    })
    .await;

    assert!(builds.builder.cancel("second").await);
    let outcome = second_build.await.unwrap().unwrap();
    assert_eq!(outcome.status, BuildStatus::Cancelled);
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("Build cancelled while queued")
    );
    assert_eq!(outcome.started_at, None);
    assert_eq!(outcome.package_manager, None);
    assert!(
        outcome.logs.starts_with(
            "[runner] Build second is waiting for a build slot: position 1 in the queue (1 of 1 builds running)"
        ),
        "{}",
        outcome.logs
    );
    assert!(!second_probe.workdir.join("install.env").exists());
    assert_eq!(builds.builder.queued_count(), 0);

    builds.builder.cancel_all().await;
    let outcome = first_build.await.unwrap().unwrap();
    assert_eq!(outcome.status, BuildStatus::Cancelled);
    assert!(!procfs::is_alive(grandchild(&first_probe)));
    assert_eq!(builds.builder.running_count(), 0);
    assert!(builds.builder.active_builds().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_all_stops_running_and_queued_builds() {
    let builds = FakeBuilds::new("cancel-all", 1);
    let mut probes = Vec::new();
    let mut tasks = Vec::new();
    for id in ["a", "b", "c"] {
        let request = builds.request(id, WITH_BUILD, &[("FAKE_INSTALL", HANG)]);
        probes.push(request.clone());
        let builder = builds.builder.clone();
        tasks.push(tokio::spawn(async move { builder.build(request).await }));
    }
    wait_until(
        "one running and two queued",
        Duration::from_secs(20),
        || builds.builder.running_count() == 1 && builds.builder.queued_count() == 2,
    )
    .await;
    let running = probes.iter().find(|p| {
        p.log
            .all()
            .iter()
            .any(|e| e.line().contains("Installing dependencies..."))
    });
    builds.builder.cancel_all().await;
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, BuildStatus::Cancelled);
    }
    if let Some(running) = running {
        assert!(!procfs::is_alive(grandchild(running)));
    }
    assert!(builds.builder.active_builds().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_build_id_cannot_run_twice_nor_its_directory_be_touched() {
    let builds = FakeBuilds::new("twice", 2);
    let request = builds.request("dup", WITH_BUILD, &[("FAKE_INSTALL", HANG)]);
    let again = request.clone();
    let probe = request.clone();
    let builder = builds.builder.clone();
    let first = tokio::spawn(async move { builder.build(request).await });
    hanging(&probe).await;
    let error = builds.builder.build(again).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "Build 'dup' is already queued or running; cancel it first"
    );
    assert!(builds.builder.remove_build_dir("dup").await.is_err());
    assert!(builds.builder.clean_build_dir("dup").await.is_err());
    builds.builder.cancel("dup").await;
    assert_eq!(first.await.unwrap().unwrap().status, BuildStatus::Cancelled);
    let dir = builds.builder.clean_build_dir("dup").await.unwrap();
    assert!(dir.is_dir());
    assert!(builds.builder.remove_build_dir("dup").await.unwrap());
}
