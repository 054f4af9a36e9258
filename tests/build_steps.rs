//! The steps of one build with a fake `npm` (a shell script on PATH; see `common`): the
//! outcome and message of each way a build can fail, the order of log lines, and the
//! environment each step sees.

mod common;

use common::{FakeBuilds, WITH_BUILD, recorded_env};
use mastra_runner_local::builder::BuildStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_build_logs_each_step_in_order_and_live() {
    let builds = FakeBuilds::new("steps-ok", 2);
    let request = builds.request("ok", WITH_BUILD, &[("FAKE_INSTALL", "echo to-stderr >&2")]);
    let live = request.log.subscribe(10_000);
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    assert_eq!(outcome.error_message, None);
    assert!(outcome.started_at.is_some());
    assert!(outcome.output_entry().is_file());

    let lines: Vec<&str> = outcome.logs.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{}", outcome.logs))
    };
    let order = [
        "[runner] Build ok started in ",
        "[runner] Detected package manager: npm (from no packageManager field and no lockfile; no lockfile); running npm 10.0.0-fake from ",
        "[runner] Detection finished in ",
        "[runner] Installing dependencies... (npm install --audit=false --fund=false)",
        "fake npm install --audit=false --fund=false",
        "[runner] Dependencies installed successfully in ",
        "[runner] Running build script... (npm run build)",
        "fake npm run build",
        "[runner] Build completed successfully in ",
        "[runner] Build output found: ",
        "[runner] Build succeeded in ",
    ];
    let positions: Vec<usize> = order.iter().map(|p| at(p)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "out of order: {positions:?}\n{}",
        outcome.logs
    );
    // stdout and stderr are separate pipes, so only the step's bounds order a stderr line.
    let stderr = at("[stderr] to-stderr");
    assert!(
        at("[runner] Installing dependencies... ") < stderr
            && stderr < at("[runner] Dependencies installed successfully")
    );

    // A subscriber saw the same lines, in the same order, as they were appended.
    let mut seen = Vec::new();
    while let Ok(Some(batch)) =
        tokio::time::timeout(std::time::Duration::from_millis(100), live.next_batch(1000)).await
    {
        seen.extend(batch.entries().map(|e| e.text()));
    }
    assert_eq!(seen.join("\n"), outcome.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockfile_selects_the_frozen_install() {
    let builds = FakeBuilds::new("steps-frozen", 2);
    let request = builds.request("frozen", WITH_BUILD, &[]);
    std::fs::write(request.workdir.join("package-lock.json"), "{}").unwrap();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    assert!(outcome.logs.contains(
        "\n[runner] Installing dependencies... (npm ci --audit=false --fund=false)\n\
                 fake npm ci --audit=false --fund=false\n"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_install_quotes_the_package_manager() {
    let builds = FakeBuilds::new("steps-install", 2);
    let install =
        "echo 'npm error code E404' >&2; echo 'npm error 404 Not Found - is-nope' >&2; exit 7";
    let request = builds.request("install", WITH_BUILD, &[("FAKE_INSTALL", install)]);
    let workdir = request.workdir.clone();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    assert_eq!(
        outcome.error_message.as_deref(),
        Some(
            "Dependency installation failed with exit code 7 (npm install --audit=false --fund=false)\n\
             npm error code E404\nnpm error 404 Not Found - is-nope"
        )
    );
    assert!(!workdir.join("build.env").exists(), "the build script ran");
    let last = outcome.logs.lines().last().unwrap();
    assert!(last.starts_with("[runner] Build failed after "), "{last}");
    assert!(
        last.ends_with(
            " s: Dependency installation failed with exit code 7 \
             (npm install --audit=false --fund=false)"
        ),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_script_reports_its_exit_code() {
    let builds = FakeBuilds::new("steps-build", 2);
    let request = builds.request(
        "build",
        WITH_BUILD,
        &[("FAKE_BUILD", "echo 'Error: boom' >&2; exit 2")],
    );
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    assert_eq!(
        outcome.error_message.as_deref(),
        Some("Build failed with exit code 2 (npm run build)\nError: boom")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_by_a_signal_names_the_signal() {
    let builds = FakeBuilds::new("steps-signal", 2);
    let request = builds.request("signal", WITH_BUILD, &[("FAKE_BUILD", "kill -KILL $$")]);
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    let message = outcome.error_message.unwrap();
    assert!(
        message.starts_with("Build failed: killed by signal SIGKILL (npm run build)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_output_names_the_path() {
    let builds = FakeBuilds::new("steps-output", 2);
    let request = builds.request("output", WITH_BUILD, &[("FAKE_BUILD", "true")]);
    let expected = request.workdir.join(".mastra/output/index.mjs");
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    assert_eq!(
        outcome.error_message,
        Some(format!("Build output not found: {}", expected.display()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_build_script_the_step_is_skipped_and_logged() {
    let builds = FakeBuilds::new("steps-noscript", 2);
    let request = builds.request("noscript", r#"{ "name": "p" }"#, &[]);
    let output = request.workdir.join(".mastra/output");
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(output.join("index.mjs"), "").unwrap();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    assert!(
        outcome
            .logs
            .contains("[runner] No build script found, skipping build step")
    );
    assert!(!outcome.logs.contains("fake npm run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_install_runs_only_the_build_script() {
    let builds = FakeBuilds::new("steps-skip", 2);
    let mut request = builds.request("skip", WITH_BUILD, &[]);
    request.skip_install = true;
    let workdir = request.workdir.clone();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    assert!(
        outcome
            .logs
            .contains("[runner] Install skipped (skipInstall)")
    );
    assert!(!workdir.join("install.env").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_build_script_runs_with_node_env_production() {
    let builds = FakeBuilds::new("steps-env", 2);
    // Even a caller's NODE_ENV=production must not make install skip devDependencies.
    let request = builds.request(
        "env",
        WITH_BUILD,
        &[("NODE_ENV", "production"), ("MY_VAR", "from-options")],
    );
    let workdir = request.workdir.clone();
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    let install = recorded_env(&workdir.join("install.env"));
    let build = recorded_env(&workdir.join("build.env"));
    assert_eq!(install.get("NODE_ENV"), None);
    assert_eq!(install.get("CI").map(String::as_str), Some("true"));
    assert_eq!(
        build.get("NODE_ENV").map(String::as_str),
        Some("production")
    );
    for env in [&install, &build] {
        assert_eq!(env["MY_VAR"], "from-options");
        let cache = builds
            .builder
            .caches()
            .root()
            .to_string_lossy()
            .into_owned();
        assert!(env["npm_config_cache"].starts_with(&cache));
        // Only npm's own cache variable: npm warns about others (`store-dir`).
        for other in [
            "npm_config_store_dir",
            "pnpm_config_store_dir",
            "YARN_CACHE_FOLDER",
            "BUN_INSTALL_CACHE_DIR",
        ] {
            assert_eq!(env.get(other), None, "{other}");
        }
    }
    assert_eq!(install.get("HUSKY").map(String::as_str), Some("0"));
    assert_eq!(build.get("HUSKY"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_package_manager_or_package_json_fails_clearly() {
    let builds = FakeBuilds::new("steps-missing", 2);
    // Only the fake npm and the system's directories: no pnpm (npm test puts one on PATH).
    let bin = builds.path.split(':').next().unwrap_or_default().to_owned();
    let path = format!("{bin}:/usr/bin:/bin");
    let request = builds.request(
        "nopm",
        r#"{ "packageManager": "pnpm@9.1.0" }"#,
        &[("PATH", &path)],
    );
    let outcome = builds.builder.build(request).await.unwrap();
    assert_eq!(outcome.status, BuildStatus::Failed);
    let message = outcome.error_message.unwrap();
    assert!(
        message.starts_with("Package manager pnpm not found on PATH ("),
        "{message}"
    );

    let request = builds.request("broken", "{ nope", &[]);
    let outcome = builds.builder.build(request).await.unwrap();
    let message = outcome.error_message.unwrap();
    assert!(
        message.contains("package.json: not valid JSON: "),
        "{message}"
    );
    assert!(message.contains("line 1 column 3"), "{message}");

    let mut request = builds.request("gone", WITH_BUILD, &[]);
    request.workdir = request.workdir.join("missing");
    let outcome = builds.builder.build(request).await.unwrap();
    assert!(
        outcome
            .error_message
            .unwrap()
            .starts_with("Working directory not found: ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_is_an_error_not_an_outcome() {
    let builds = FakeBuilds::new("steps-misuse", 2);
    let request = builds.request("../escape", WITH_BUILD, &[]);
    let error = builds.builder.build(request).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Invalid buildId: must not contain a path separator (got '../escape')"
    );
}
