//! The runner's server lifecycle without Node's event loop: real `node` servers (the vitest
//! fixture `__test__/fixtures/server/index.mjs`, run by the machine's `node`), real ports,
//! real HTTP. Deploy, crash, restart with backoff, stop during backoff and during the health
//! wait, concurrent stops, and shutdown racing deploys.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::servers::{
    health_status, log_text, port_is_free, processes_under, reported_pid, request, runner,
};
use mastra_runner_local::process::procfs;
use mastra_runner_local::runner::{DeployRequest, HealthStatus, ServerState};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_serves_and_stop_leaves_nothing() {
    let (runner, dir) = runner("deploy", 12000, json!({}));
    let server = runner.deploy(request("dep-1", &[])).await.expect("deploy");
    assert_eq!(server.health(), HealthStatus::Healthy);
    assert_eq!(health_status(server.port), Some(200));
    assert_eq!(runner.stats().allocated_ports, vec![server.port]);
    let pid = server.pid.expect("a pid");

    let stopped = runner.stop(&server.id).await.expect("a known server");
    assert!(matches!(stopped.state, ServerState::Stopped { .. }));
    assert!(!procfs::is_alive(pid as i32));
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(port_is_free(server.port));
    assert!(runner.server(&server.id).is_none());
    assert!(log_text(&runner, &server.id).contains("listening on"));
    assert!(
        runner.stop(&server.id).await.is_none(),
        "a second stop is a no-op"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_noticed_and_the_port_kept_until_stop() {
    let (runner, dir) = runner("crash", 12020, json!({}));
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_AFTER_MS", "100")]))
        .await
        .expect("deploy");
    common::wait_until("the crash to be noticed", Duration::from_secs(10), || {
        runner
            .server(&server.id)
            .is_some_and(|s| matches!(s.state, ServerState::Stopped { .. }))
    })
    .await;
    let info = runner.server(&server.id).expect("still listed");
    assert_eq!(info.health(), HealthStatus::Unhealthy);
    assert_eq!(info.pid, None);
    // The port stays the crashed server's until it is stopped: no stranger takes it meanwhile.
    assert_eq!(runner.stats().allocated_ports, [server.port]);
    assert!(processes_under(&dir).is_empty());
    assert!(log_text(&runner, &server.id).contains("process exited with exit code 1"));
    let report = runner.health_check(&server.id).await;
    assert_eq!(report.message.as_deref(), Some("Process is not running"));
    runner.stop(&server.id).await;
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_backoff_then_stays_down() {
    let policy =
        json!({ "restartPolicy": { "maxRestarts": 2, "backoffMs": 50, "maxBackoffMs": 200 } });
    let (runner, dir) = runner("restart", 12040, policy);
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_AFTER_MS", "300")]))
        .await
        .expect("deploy");
    let mut saw_backoff = false;
    common::wait_until(
        "two restarts and the limit",
        Duration::from_secs(20),
        || {
            let info = runner.server(&server.id);
            saw_backoff |= info
                .as_ref()
                .is_some_and(|s| matches!(s.state, ServerState::Backoff { .. }));
            info.is_some_and(|s| matches!(s.state, ServerState::Stopped { .. }))
        },
    )
    .await;
    let info = runner.server(&server.id).expect("still listed");
    assert_eq!(info.restarts, 2);
    assert!(saw_backoff, "the state went through Backoff");
    let log = log_text(&runner, &server.id);
    assert_eq!(log.matches("listening on").count(), 3, "{log}");
    assert!(log.contains("restart limit reached (2 restarts)"), "{log}");
    assert!(log.contains("restarted: healthy"), "{log}");
    assert_eq!(runner.stats().allocated_ports, [server.port]);
    assert!(processes_under(&dir).is_empty());
    runner.stop(&server.id).await;
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_backoff_starts_nothing_more() {
    let policy =
        json!({ "restartPolicy": { "maxRestarts": 5, "backoffMs": 60000, "maxBackoffMs": 60000 } });
    let (runner, dir) = runner("backoff-stop", 12060, policy);
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_CRASH_AFTER_MS", "100")]))
        .await
        .expect("deploy");
    common::wait_until("the backoff", Duration::from_secs(10), || {
        runner
            .server(&server.id)
            .is_some_and(|s| matches!(s.state, ServerState::Backoff { .. }))
    })
    .await;
    let stopped = runner.stop(&server.id).await.expect("known");
    assert!(matches!(stopped.state, ServerState::Stopped { .. }));
    assert_eq!(stopped.restarts, 0);
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
    assert_eq!(
        log_text(&runner, &server.id)
            .matches("listening on")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_the_health_wait_fails_the_deploy() {
    let (runner, dir) = runner("health-stop", 12080, json!({}));
    let deploy = common::servers::deploy_in_background(
        &runner,
        request("dep-1", &[("FIXTURE_HEALTH_STATUS", "503")]),
    );
    common::wait_until("the server to be starting", Duration::from_secs(10), || {
        runner
            .stats()
            .servers
            .iter()
            .any(|s| s.health() == HealthStatus::Starting)
    })
    .await;
    let id = runner.stats().servers[0].id.clone();
    runner.stop(&id).await;
    let error = deploy
        .await
        .expect("deploy task")
        .expect_err("the deploy fails");
    assert_eq!(error.code(), "ERR_DEPLOY_INTERRUPTED");
    assert!(error.to_string().contains("stopped by stop()"), "{error}");
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(runner.stats().servers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_stops_both_wait_for_the_tree() {
    let (runner, dir) = runner("two-stops", 12100, json!({ "shutdownTimeoutMs": 300 }));
    let server = runner
        .deploy(request(
            "dep-1",
            &[("FIXTURE_IGNORE_SIGTERM", "1"), ("FIXTURE_GRANDCHILD", "1")],
        ))
        .await
        .expect("deploy");
    let (first, second) = tokio::join!(runner.stop(&server.id), runner.stop(&server.id));
    assert!(first.is_some() || second.is_some());
    assert!(
        processes_under(&dir).is_empty(),
        "both stops resolved after the tree was gone"
    );
    assert!(port_is_free(server.port));
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_racing_ten_deploys_leaves_no_process_and_no_port() {
    let (runner, dir) = runner("shutdown-race", 12120, json!({}));
    let mut deploys = Vec::new();
    for n in 0..10 {
        let runner = Arc::clone(&runner);
        // Half never become healthy, half do: shutdown meets them at every step.
        let vars: &[(&str, &str)] = if n % 2 == 0 {
            &[("FIXTURE_HEALTH_STATUS", "503")]
        } else {
            &[]
        };
        let request = request(&format!("dep-{n}"), vars);
        deploys.push(tokio::spawn(async move { runner.deploy(request).await }));
    }
    common::wait_until("a first server to start", Duration::from_secs(10), || {
        !runner.stats().servers.is_empty()
    })
    .await;
    runner.shutdown().await;
    for deploy in deploys {
        match deploy.await.expect("deploy task") {
            Ok(server) => assert!(
                runner.server(&server.id).is_none(),
                "{server:?} outlived shutdown"
            ),
            Err(error) => assert_eq!(error.code(), "ERR_DEPLOY_INTERRUPTED", "{error}"),
        }
    }
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(runner.stats().servers.is_empty());
    assert!((12120..12140).all(port_is_free));

    // Calls after shutdown start afresh.
    let server = runner
        .deploy(request("dep-after", &[]))
        .await
        .expect("deploy after shutdown");
    assert_eq!(health_status(server.port), Some(200));
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

/// A fixture that starts listening 2.3 s after it starts. Polling with a long retry interval
/// probes about 1.77 s after the spawn (refused; later under load) and next about 3.05 s after
/// it (never earlier), after the 2.9 s health timeout; the server's own signal comes at about
/// 2.35 s.
const LATE_LISTENER: &[(&str, &str)] = &[
    ("FIXTURE_LISTEN_AFTER_MS", "2300"),
    ("FIXTURE_SEND_READY", "1"),
];

fn late_request() -> DeployRequest {
    DeployRequest {
        health_timeout: Some(Duration::from_millis(2900)),
        ..request("dep-1", LATE_LISTENER)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_message_makes_the_gate_probe_at_once() {
    let slow_polling = json!({ "healthCheck": { "retryIntervalMs": 60000 } });
    let (runner, dir) = runner("ready-signal", 12140, slow_polling);
    let server = runner
        .deploy(late_request())
        .await
        .expect("healthy on the server's own signal");
    assert!(log_text(&runner, &server.id).contains("ipc channel: function"));
    runner.stop(&server.id).await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ready_signal_the_same_deploy_waits_for_polling() {
    let no_signal = json!({ "healthCheck": { "retryIntervalMs": 60000, "readySignal": false } });
    let (runner, dir) = runner("no-ready-signal", 12160, no_signal);
    let error = runner
        .deploy(late_request())
        .await
        .map(|s| log_text(&runner, &s.id))
        .expect_err("polling misses it");
    assert_eq!(error.code(), "ERR_HEALTH_CHECK_FAILED", "{error}");
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flooding_its_channel_with_garbage_is_unaffected() {
    let (runner, dir) = runner("ipc-noise", 12180, json!({}));
    let server = runner
        .deploy(request(
            "dep-1",
            &[("FIXTURE_IPC_NOISE", "2000"), ("FIXTURE_SEND_READY", "1")],
        ))
        .await
        .expect("deploy");
    assert_eq!(health_status(server.port), Some(200));
    assert!(runner.health_check(&server.id).await.healthy);
    runner.stop(&server.id).await;
    assert!(processes_under(&dir).is_empty());
}

/// Answers every connection on `listener` with `200 ok`, until the test ends.
fn serve_foreign(listener: std::net::TcpListener) {
    serve_foreign_when(listener, || true);
}

/// Answers every connection on `listener` until the test ends: `200 ok` once `ready()` holds,
/// `503` before.
fn serve_foreign_when(listener: std::net::TcpListener, ready: impl Fn() -> bool + Send + 'static) {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let status = if ready() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .as_bytes(),
            );
        }
    });
}

/// Deploys a server that listens late, and makes a foreign listener take its port meanwhile.
async fn deploy_against_a_foreign_listener(
    runner: &Arc<mastra_runner_local::runner::Runner>,
) -> (
    Result<mastra_runner_local::runner::ServerInfo, mastra_runner_local::error::Error>,
    u16,
) {
    let deploy = common::servers::deploy_in_background(
        runner,
        request("dep-1", &[("FIXTURE_LISTEN_AFTER_MS", "600")]),
    );
    common::wait_until("the first server to start", Duration::from_secs(10), || {
        !runner.stats().servers.is_empty()
    })
    .await;
    let taken = runner.stats().servers[0].port;
    let foreign = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("take the port");
    serve_foreign(foreign);
    (deploy.await.expect("deploy task"), taken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_listener_never_passes_for_the_server() {
    let (runner, dir) = runner("foreign", 12280, json!({}));
    let (deployed, taken) = deploy_against_a_foreign_listener(&runner).await;
    let server = deployed.expect("the retry on another port succeeds");
    assert_ne!(server.port, taken, "the deploy moved off the taken port");
    assert!(log_text(&runner, &server.id).contains(&format!("listening on {}", server.port)));
    runner.shutdown().await;
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_listener_on_the_only_port_fails_the_deploy_naming_it() {
    let (runner, dir) = runner(
        "foreign-only",
        12300,
        json!({ "portRange": { "start": 12300, "end": 12300 } }),
    );
    let (deployed, taken) = deploy_against_a_foreign_listener(&runner).await;
    let error = deployed.expect_err("no other port to move to");
    assert!(
        matches!(error.code(), "ERR_FOREIGN_LISTENER" | "ERR_SERVER_EXITED"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&taken.to_string()), "{message}");
    if error.code() == "ERR_FOREIGN_LISTENER" {
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
    }
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_listener_never_passes_for_a_server_that_says_it_is_ready() {
    // Slow polling, and a foreign listener that answers 2xx only once the server has sent
    // `server-ready` (without listening): the answer comes on the signal's probe.
    let (runner, dir) = runner(
        "foreign-signal",
        12420,
        json!({
            "portRange": { "start": 12420, "end": 12420 },
            "healthCheck": { "retryIntervalMs": 60000 },
        }),
    );
    let marker = dir.join("said-ready");
    let marker_var = marker.to_string_lossy().into_owned();
    let deploy = common::servers::deploy_in_background(
        &runner,
        DeployRequest {
            health_timeout: Some(Duration::from_secs(10)),
            ..request(
                "dep-1",
                &[
                    ("FIXTURE_LISTEN_AFTER_MS", "600"),
                    ("FIXTURE_FALSE_READY", &marker_var),
                ],
            )
        },
    );
    common::wait_until("the server to start", Duration::from_secs(10), || {
        !runner.stats().servers.is_empty()
    })
    .await;
    let foreign = std::net::TcpListener::bind(("127.0.0.1", 12420)).expect("take the port");
    let said_ready = marker.clone();
    serve_foreign_when(foreign, move || said_ready.exists());
    let error = deploy
        .await
        .expect("deploy task")
        .expect_err("the answer came from the foreign listener");
    assert_eq!(error.code(), "ERR_FOREIGN_LISTENER", "{error}");
    assert!(marker.exists(), "the server said it was ready");
    let message = error.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    assert!(runner.stats().allocated_ports.is_empty());
    assert!(processes_under(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_also_ends_processes_that_left_the_group() {
    let (runner, _dir) = runner("detached", 12320, json!({}));
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_DETACHED", "1")]))
        .await
        .expect("deploy");
    let pid = reported_pid(&runner, &server.id, "detached").await;
    let leader = server.pid.expect("leader") as i32;
    assert_ne!(
        procfs::read_stat(pid).map(|s| s.pgrp),
        Some(leader),
        "the child left the server's group"
    );
    assert!(procfs::is_alive(pid));
    runner.stop(&server.id).await;
    assert!(!procfs::is_alive(pid), "the detached child outlived stop()");
    assert!(log_text(&runner, &server.id).contains("left the server's process group"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_group_cannot_be_recorded_fails_and_leaves_nothing() {
    let (runner, dir) = runner("unrecordable", 12340, json!({}));
    // The journal's directory cannot be created: a file stands where it goes.
    std::fs::write(dir.join(".runner"), "not a directory").expect("block the journal");
    let error = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect_err("the deploy must not run unrecorded");
    assert_eq!(error.code(), "ERR_IO", "{error}");
    assert!(
        error.to_string().contains("record the process group"),
        "{error}"
    );
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_deploy_naming_it() {
    let (runner, dir) = runner("full-disk", 12360, json!({}));
    // The journal's directory is a small tmpfs, which is then filled up. (A link to it would
    // be refused: the state directory must be a directory of its own.)
    let state = dir.join(".runner");
    std::fs::create_dir_all(&state).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&state)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs is not permitted on this machine");
        return;
    }
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 512 * 1024]);
    let error = runner
        .deploy(request("dep-1", &[]))
        .await
        .expect_err("a full disk fails the deploy");
    let _ = std::process::Command::new("umount").arg(&state).status();
    assert_eq!(error.code(), "ERR_IO", "{error}");
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
    assert!(processes_under(&dir).is_empty());
    assert!(runner.stats().allocated_ports.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_usage_counts_a_daemon_that_left_the_tree_and_stop_ends_it() {
    let (runner, _dir) = runner("daemon", 12380, json!({}));
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_DAEMON", "1")]))
        .await
        .expect("deploy");
    let pid = reported_pid(&runner, &server.id, "daemon").await;
    let leader = server.pid.expect("leader") as i32;
    common::wait_until(
        "the daemon to be reparented",
        Duration::from_secs(10),
        || procfs::read_stat(pid).is_some_and(|s| s.ppid != leader),
    )
    .await;
    assert!(
        !procfs::live_tree(leader).iter().any(|p| p.pid == pid),
        "the daemon is outside the server's tree"
    );
    let usage = runner.resource_usage(&server.id).await.expect("usage");
    assert!(usage.processes >= 2, "{usage:?}");
    runner.stop(&server.id).await;
    assert!(!procfs::is_alive(pid), "the daemon outlived stop()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_also_ends_a_child_that_moved_to_a_group_of_its_own() {
    if std::process::Command::new("perl")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("skipped: perl (used to call setpgid) is not installed");
        return;
    }
    let (runner, _dir) = runner("setpgid", 12400, json!({}));
    let server = runner
        .deploy(request("dep-1", &[("FIXTURE_SETPGID", "1")]))
        .await
        .expect("deploy");
    let pid = reported_pid(&runner, &server.id, "setpgid").await;
    let leader = server.pid.expect("leader") as i32;
    common::wait_until(
        "the child to leave the group",
        Duration::from_secs(10),
        || procfs::read_stat(pid).is_some_and(|s| s.pgrp == pid),
    )
    .await;
    assert_ne!(procfs::read_stat(pid).map(|s| s.pgrp), Some(leader));
    runner.stop(&server.id).await;
    assert!(!procfs::is_alive(pid), "the setpgid child outlived stop()");
}
