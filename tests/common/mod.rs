//! Helpers shared by the integration tests: spawning shell scripts and polling with deadlines.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mastra_runner_local::logs::{LogLimits, LogStore};
use mastra_runner_local::process::{self, ProcessHandle, SpawnSpec};

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Runs `script` with `/bin/sh -c` through the runner's spawner.
pub async fn sh(script: &str) -> ProcessHandle {
    spawn_sh(script, None).await
}

/// Like [`sh`], recording the group in `journal`.
pub async fn spawn_sh(script: &str, journal: Option<Arc<process::Journal>>) -> ProcessHandle {
    let spec = SpawnSpec {
        program: "/bin/sh".to_owned(),
        args: vec!["-c".to_owned(), script.to_owned()],
        cwd: std::env::temp_dir(),
        env: process::env::compose([]),
    };
    process::spawn(
        spec,
        Arc::new(LogStore::new(LogLimits::with_lines(10_000))),
        journal,
    )
    .await
    .expect("spawn /bin/sh")
}

/// Polls `condition` every few ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The lines of a handle's log, without stream tags.
pub fn lines(handle: &ProcessHandle) -> Vec<String> {
    handle
        .log()
        .all()
        .iter()
        .map(|e| e.line.to_string())
        .collect()
}

/// Waits for a line starting with `prefix` and returns the rest of it.
pub async fn line_after(handle: &ProcessHandle, prefix: &str) -> String {
    let mut found = None;
    wait_until(
        &format!("a line starting with {prefix:?}"),
        Duration::from_secs(20),
        || {
            found = lines(handle)
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_owned));
            found.is_some()
        },
    )
    .await;
    found.unwrap_or_default()
}
