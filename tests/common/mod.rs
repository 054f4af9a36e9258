//! Helpers shared by the integration tests: spawning shell scripts and polling with deadlines.

#![allow(dead_code)]

pub mod servers;

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
        confinement: Default::default(),
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
        .map(|e| e.line().to_owned())
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

/// A fake `npm` for build tests, so that exit codes, signals, timing and the environment are
/// under the test's control (the real package managers are exercised by the vitest specs).
/// `--version` prints a version; `install` / `ci` and `run build` record their environment
/// in the working directory and then run `$FAKE_INSTALL` / `$FAKE_BUILD` (default: succeed,
/// and the build writes `.mastra/output/index.mjs`).
const FAKE_NPM: &str = r#"#!/bin/sh
case "$1" in
  --version) echo 10.0.0-fake ;;
  install|ci)
    env > "$PWD/install.env"
    echo "fake npm $*"
    eval "${FAKE_INSTALL:-true}" ;;
  run)
    env > "$PWD/build.env"
    echo "fake npm $*"
    eval "${FAKE_BUILD:-mkdir -p .mastra/output && echo 'export const ok = 1' > .mastra/output/index.mjs}" ;;
  *) echo "fake npm: unexpected $*" >&2; exit 64 ;;
esac
"#;

/// A directory holding the fake `npm` (see [`FAKE_NPM`]).
pub fn fake_npm_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir(&format!("{name}-bin"));
    let npm = dir.join("npm");
    std::fs::write(&npm, FAKE_NPM).expect("write fake npm");
    std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `PATH` with `dir` first, then the host's.
pub fn path_with(dir: &std::path::Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A project directory with `package.json` = `manifest`.
pub fn project(name: &str, manifest: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("package.json"), manifest).expect("write package.json");
    dir
}

/// A package.json with a build script.
pub const WITH_BUILD: &str = r#"{ "name": "p", "scripts": { "build": "mastra build" } }"#;

/// The variables a child recorded in `file` (`env` output), as name → value.
pub fn recorded_env(file: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A builder on a fresh build directory whose builds find the fake `npm` first on PATH.
pub struct FakeBuilds {
    /// The builder under test.
    pub builder: mastra_runner_local::builder::ProjectBuilder,
    /// `PATH` with the fake npm first.
    pub path: String,
    name: String,
}

impl FakeBuilds {
    /// `max` builds at once, a short kill grace.
    pub fn new(name: &str, max: usize) -> Self {
        use mastra_runner_local::builder::{BuilderConfig, ProjectBuilder};
        let mut config = BuilderConfig::new(temp_dir(&format!("{name}-builds")));
        config.max_concurrent_builds = max;
        config.kill_grace = Duration::from_millis(300);
        // The fake npm writes its marks beside the builds, outside any build's sandbox; the
        // build sandbox is tested by the JS specs (build.spec runs with it on, isolation.spec
        // attacks it).
        config.sandbox.enabled = false;
        FakeBuilds {
            builder: ProjectBuilder::new(config),
            path: path_with(&fake_npm_dir(name)),
            name: name.to_owned(),
        }
    }

    /// A request for a new project `id` with `manifest`, the fake npm on PATH, and `vars`.
    pub fn request(
        &self,
        id: &str,
        manifest: &str,
        vars: &[(&str, &str)],
    ) -> mastra_runner_local::builder::BuildRequest {
        let workdir = project(&format!("{}-{id}", self.name), manifest);
        let mut request = mastra_runner_local::builder::BuildRequest::new(id, workdir);
        request
            .env_vars
            .insert("PATH".to_owned(), self.path.clone());
        for (name, value) in vars {
            request
                .env_vars
                .insert((*name).to_owned(), (*value).to_owned());
        }
        request
    }
}
