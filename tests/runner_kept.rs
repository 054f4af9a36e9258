//! `keepServersOnExit`: servers handed over by `detach()` keep running and the next runner on
//! the same `buildDir` adopts them; records of servers that died, or whose pid now belongs to
//! another process, are not adopted; a live runner's servers are left to it. (A host killed
//! with SIGKILL needs a host process of its own: `__test__/keep-servers.spec.ts` covers it.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::servers::{health_status, log_text, port_is_free, processes_under, request};
use mastra_runner_local::process::procfs;
use mastra_runner_local::runner::{Runner, ServerInfo};
use serde_json::json;

/// A second runner, with `keepServersOnExit`, on the build directory of `kept_runner`.
fn runner_on(dir: &Path, base: u16, extra: serde_json::Value) -> Arc<Runner> {
    let mut config = json!({ "keepServersOnExit": true });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    common::servers::runner_on(dir, base, config)
}

fn kept_runner(name: &str, base: u16) -> (Arc<Runner>, std::path::PathBuf) {
    common::servers::runner(name, base, json!({ "keepServersOnExit": true }))
}

async fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(10), done).await;
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the server");
}

/// A kept runner on a fresh directory that deploys the fixture, then detaches.
async fn deployed_then_detached(name: &str, base: u16) -> (std::path::PathBuf, ServerInfo) {
    let (first, dir) = kept_runner(name, base);
    let server = first.deploy(request("dep-1", &[])).await.expect("deploy");
    first.detach().await.expect("detach");
    (dir, server)
}

/// SIGKILLs adopted `server`'s process and waits until `runner` restarted it and it is healthy.
async fn killed_and_restarted(runner: &Runner, server: &ServerInfo) -> ServerInfo {
    sigkill(server.pid.expect("pid"));
    wait_until("the restart", || {
        runner
            .server(&server.id)
            .is_some_and(|s| s.restarts == 1 && s.health().as_str() == "healthy")
    })
    .await;
    runner.server(&server.id).expect("server")
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("tick ")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_server_keeps_running_and_the_next_runner_adopts_it() {
    let (first, dir) = kept_runner("kept-detach", 12420);
    let server = first
        .deploy(request("dep-1", &[("FIXTURE_TICK_MS", "50")]))
        .await
        .expect("deploy");
    let pid = server.pid.expect("pid");
    first.detach().await.expect("detach");
    assert!(first.list_servers().is_empty());
    assert_eq!(
        health_status(server.port),
        Some(200),
        "still serving after detach"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = runner_on(&dir, 12420, json!({}));
    let report = second.adopt_kept_servers();
    assert_eq!(report.adopted, vec![server.id.clone()]);
    let listed: Vec<ServerInfo> = second.list_servers();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].port, listed[0].pid),
        (server.id.as_str(), server.port, Some(pid))
    );
    assert!(second.stats().allocated_ports.contains(&server.port));
    wait_until("the adopted server to be healthy", || {
        second
            .server(&server.id)
            .is_some_and(|s| s.health().as_str() == "healthy")
    })
    .await;
    // The log holds the ticks printed before, during and after the hand-over, without a gap.
    wait_until("new ticks", || {
        ticks(&log_text(&second, &server.id)).len() > 8
    })
    .await;
    let seen = ticks(&log_text(&second, &server.id));
    assert_eq!(seen.first(), Some(&1));
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");

    second.stop(&server.id).await.expect("stopped");
    assert!(processes_under(&dir).is_empty());
    assert!(port_is_free(server.port));
    assert!(
        !dir.join(".runner/kept")
            .join(format!("{}.json", server.id))
            .exists()
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_died_meanwhile_is_reported_not_adopted() {
    let (dir, server) = deployed_then_detached("kept-dead", 12440).await;
    let pid = server.pid.expect("pid");
    sigkill(pid);
    wait_until("the server to die", || !procfs::is_alive(pid as i32)).await;

    let second = runner_on(&dir, 12440, json!({}));
    let report = second.adopt_kept_servers();
    assert!(report.adopted.is_empty());
    assert_eq!(report.died.len(), 1);
    assert_eq!(report.died[0].server_id, server.id);
    assert!(report.died[0].log_ended_at.is_some());
    assert!(second.list_servers().is_empty());
    // A SIGKILLed Node's main thread is a zombie a moment before its other threads have closed
    // its sockets, so the port may still be held briefly after `is_alive` says it is gone.
    wait_until("the port to be free", || port_is_free(server.port)).await;
    assert!(!second.stats().allocated_ports.contains(&server.port));
    let log_file = dir.join(".runner/kept").join(format!("{}.log", server.id));
    wait_until("the dead server's files to go", || !log_file.exists()).await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_reused_by_another_process_is_not_adopted_nor_killed() {
    let (dir, server) = deployed_then_detached("kept-reused", 12460).await;
    // Take the server down behind the record's back and point the record at an unrelated
    // process (what a reused pid looks like: a live pid with another start time and no token).
    let pid = server.pid.expect("pid");
    sigkill(pid);
    let mut unrelated = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let record_path = dir.join(".runner/kept").join(format!("{}.json", server.id));
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record_path).expect("record"))
            .expect("json");
    record["pid"] = json!(unrelated.id());
    record["pgid"] = json!(unrelated.id());
    std::fs::write(&record_path, record.to_string()).expect("rewrite record");

    let second = runner_on(&dir, 12460, json!({}));
    let report = second.adopt_kept_servers();
    assert!(report.adopted.is_empty(), "{report:?}");
    assert_eq!(report.died.len(), 1);
    assert!(second.list_servers().is_empty());
    assert!(
        procfs::is_alive(unrelated.id() as i32),
        "the unrelated process must not be touched"
    );
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_runners_servers_are_left_to_it() {
    let (first, dir) = kept_runner("kept-live", 12480);
    let server = first.deploy(request("dep-1", &[])).await.expect("deploy");
    let second = runner_on(&dir, 12480, json!({}));
    let report = second.adopt_kept_servers();
    assert!(report.adopted.is_empty());
    assert_eq!(report.left_to_other_runner, vec![server.id.clone()]);
    assert!(second.list_servers().is_empty());
    assert_eq!(health_status(server.port), Some(200));
    // shutdown() stops a kept server like any other.
    first.shutdown().await;
    assert!(processes_under(&dir).is_empty());
    assert!(port_is_free(server.port));
    assert!(
        std::fs::read_dir(dir.join(".runner/kept")).is_ok_and(|entries| {
            entries
                .flatten()
                .all(|e| e.path().extension().is_none_or(|x| x != "json"))
        })
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_server_that_crashes_is_restarted_by_the_new_runner() {
    let (dir, server) = deployed_then_detached("kept-restart", 12500).await;
    let second = runner_on(
        &dir,
        12500,
        json!({ "restartPolicy": { "maxRestarts": 2, "backoffMs": 50, "maxBackoffMs": 50 } }),
    );
    assert_eq!(second.adopt_kept_servers().adopted.len(), 1);
    let old_pid = server.pid.expect("pid");
    let restarted = killed_and_restarted(&second, &server).await;
    assert_ne!(restarted.pid, Some(old_pid));
    assert_eq!(restarted.port, server.port);
    assert_eq!(health_status(server.port), Some(200));
    let log = log_text(&second, &server.id);
    assert!(log.contains("exit status is unknown"), "{log}");
    // The record follows the new process, so a third runner would adopt that one.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".runner/kept").join(format!("{}.json", server.id)))
            .expect("record"),
    )
    .expect("json");
    assert_eq!(record["pid"].as_u64(), restarted.pid.map(u64::from));
    second.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_sandboxed_server_that_crashes_is_restarted_in_a_sandbox() {
    if mastra_runner_local::isolation::sandbox::support().is_err() {
        eprintln!("skipped: no sandbox on this kernel");
        return;
    }
    let sandboxed = json!({ "keepServersOnExit": true, "sandbox": true });
    let (first, dir) = common::servers::runner("kept-sandboxed", 12900, sandboxed);
    let server = first.deploy(request("dep-1", &[])).await.expect("deploy");
    first.detach().await.expect("detach");
    let second = runner_on(
        &dir,
        12900,
        json!({ "keepServersOnExit": true, "sandbox": true,
                "restartPolicy": { "maxRestarts": 2, "backoffMs": 50, "maxBackoffMs": 50 } }),
    );
    assert_eq!(second.adopt_kept_servers().adopted.len(), 1);
    let restarted = killed_and_restarted(&second, &server).await;
    assert_eq!(health_status(server.port), Some(200));
    // The restarted process is the sandbox's init again: its program is the init's memory file.
    let exe =
        std::fs::read_link(format!("/proc/{}/exe", restarted.pid.expect("pid"))).expect("exe");
    assert!(
        exe.to_string_lossy()
            .starts_with("/memfd:mastra-runner-init"),
        "{}",
        exe.display()
    );
    second.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_needs_keep_servers_on_exit() {
    let (runner, _dir) = common::servers::runner("kept-off", 12520, json!({}));
    let error = runner
        .detach()
        .await
        .expect_err("detach without the option");
    assert_eq!(error.code(), "ERR_INVALID_STATE");
    assert!(error.to_string().contains("keepServersOnExit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_replaces_an_adopted_server() {
    let (dir, server) = deployed_then_detached("kept-redeploy", 12540).await;
    let second = runner_on(&dir, 12540, json!({}));
    assert_eq!(second.adopt_kept_servers().adopted, vec![server.id.clone()]);
    let replacement = second
        .deploy(request("dep-1", &[]))
        .await
        .expect("redeploy");
    assert_ne!(replacement.port, server.port);
    let listed: Vec<String> = second.list_servers().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![replacement.id.clone()]);
    common::wait_until(
        "the adopted server to drain",
        Duration::from_secs(30),
        || second.server(&server.id).is_none(),
    )
    .await;
    assert!(port_is_free(server.port), "the adopted server is gone");
    assert!(!procfs::is_alive(server.pid.expect("pid") as i32));
    second.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_lets_go_of_an_adopted_server_whose_first_check_has_not_passed() {
    let (dir, server) = deployed_then_detached("kept-unchecked", 12560).await;
    // This runner probes an endpoint the server answers with 404: its gate never passes.
    let second = runner_on(
        &dir,
        12560,
        json!({ "healthCheck": { "endpoint": "/elsewhere" } }),
    );
    assert_eq!(second.adopt_kept_servers().adopted.len(), 1);
    assert_eq!(
        second.server(&server.id).map(|s| s.health().as_str()),
        Some("starting")
    );
    second.detach().await.expect("detach");
    assert_eq!(health_status(server.port), Some(200), "let go, not stopped");
    let third = runner_on(&dir, 12560, json!({}));
    assert_eq!(third.adopt_kept_servers().adopted, vec![server.id.clone()]);
    third.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_server_that_fails_to_start_reports_its_output() {
    let (runner, dir) = kept_runner("kept-crash", 12580);
    let error = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_ON_START", "1")]))
        .await
        .expect_err("the server exits");
    assert_eq!(error.code(), "ERR_SERVER_EXITED");
    assert!(
        error
            .to_string()
            .contains("fatal: cannot connect to the database"),
        "{error}"
    );
    // Nothing is left for a later runner: no record, no log file.
    assert!(
        std::fs::read_dir(dir.join(".runner/kept")).is_ok_and(|entries| {
            entries.flatten().all(|e| {
                e.path()
                    .extension()
                    .is_none_or(|x| x != "json" && x != "log")
            })
        })
    );
    runner.shutdown().await;
}
