//! Runners whose one build is the fixture server (`__test__/fixtures/server/index.mjs`, run by
//! the machine's `node`), and checks of what is left on the machine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mastra_runner_local::config::RunnerConfig;
use mastra_runner_local::process::procfs;
use mastra_runner_local::runner::{DeployRequest, Runner, ServerInfo};
use serde_json::json;

/// A runner on a fresh build directory holding one build, `build-1`, whose output is the
/// fixture server; ports `base..base+19`.
pub fn runner(name: &str, base: u16, extra: serde_json::Value) -> (Arc<Runner>, PathBuf) {
    let build_dir = super::temp_dir(&format!("lifecycle-{name}"));
    let output = build_dir.join("build-1").join(".mastra").join("output");
    std::fs::create_dir_all(&output).expect("create output dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("__test__/fixtures/server/index.mjs");
    std::fs::copy(fixture, output.join("index.mjs")).expect("copy fixture server");
    (runner_on(&build_dir, base, extra), build_dir)
}

/// Another runner on `build_dir` (one [`runner`] made), with the same defaults. Without a
/// `sandbox` in `extra`, its servers run unsandboxed: these tests read host pids the fixture
/// reports and marker files it writes beside the builds; the sandbox has its own tests
/// (`tests/isolation.rs`), and the JS specs run with it on, as the default is.
pub fn runner_on(build_dir: &Path, base: u16, extra: serde_json::Value) -> Arc<Runner> {
    let mut config = json!({
        "buildDir": build_dir,
        "portRange": { "start": base, "end": base + 19 },
        "shutdownTimeoutMs": 2000,
        "healthCheck": { "retryIntervalMs": 100, "maxRetries": 50 },
        "sandbox": false,
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    let config = RunnerConfig::from_json(&config, Path::new("/")).expect("valid config");
    Arc::new(Runner::new(config).expect("runner"))
}

/// A deploy of `build-1` with the fixture's `vars`.
pub fn request(deployment: &str, vars: &[(&str, &str)]) -> DeployRequest {
    DeployRequest {
        project_id: "project-1".to_owned(),
        deployment_id: deployment.to_owned(),
        build_id: "build-1".to_owned(),
        subdomain: "project-1".to_owned(),
        env: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        port: None,
        health_timeout: None,
        limits: Default::default(),
        node: PathBuf::from("node"),
    }
}

/// Starts a deploy of `request` on a task of its own, so the test can act while it runs.
pub fn deploy_in_background(
    runner: &Arc<Runner>,
    request: DeployRequest,
) -> tokio::task::JoinHandle<mastra_runner_local::error::Result<ServerInfo>> {
    let runner = Arc::clone(runner);
    tokio::spawn(async move { runner.deploy(request).await })
}

/// The status code of `GET /health` on loopback `port`, or `None` when nothing answers.
pub fn health_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Live (non-zombie) processes whose working directory is inside `dir`.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    procfs::all_processes()
        .into_iter()
        .filter(|p| p.is_alive())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{}/cwd", p.pid)).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .map(|p| p.pid)
        .collect()
}

/// Whether nothing listens on `port` and it can be bound.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn log_text(runner: &Runner, server_id: &str) -> String {
    runner
        .server_log(server_id)
        .map(|log| {
            log.all()
                .iter()
                .map(|e| e.line().to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The pid a fixture server reported in a `<label> <pid>` line of its log (waiting for it).
pub async fn reported_pid(runner: &Runner, server_id: &str, label: &str) -> i32 {
    let prefix = format!("{label} ");
    super::wait_until(&format!("the {label} pid"), Duration::from_secs(10), || {
        log_text(runner, server_id).contains(&prefix)
    })
    .await;
    log_text(runner, server_id)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|p| p.trim().parse().ok())
        .expect("a pid")
}
