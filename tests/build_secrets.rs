//! The host's variables outside the allow-list never reach a build's install or build script.
//! In its own test binary because it changes this process's environment.

mod common;

use common::{FakeBuilds, WITH_BUILD, recorded_env};
use mastra_runner_local::builder::BuildStatus;

#[test]
fn a_secret_of_the_host_reaches_neither_install_nor_build() {
    // SAFETY: this is the only test of this binary and it sets the variable before any other
    // thread exists (the runtime is built afterwards), so nothing reads the environment
    // concurrently.
    unsafe {
        std::env::set_var("RUNNER_TEST_ADMIN_SECRET", "hunter2");
        std::env::set_var("npm_config_test_allowed", "passes");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let builds = FakeBuilds::new("secrets", 1);
        let request = builds.request("secret", WITH_BUILD, &[]);
        let workdir = request.workdir.clone();
        let outcome = builds.builder.build(request).await.unwrap();
        assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
        for step in ["install.env", "build.env"] {
            let env = recorded_env(&workdir.join(step));
            assert!(!env.contains_key("RUNNER_TEST_ADMIN_SECRET"), "{step}");
            assert!(!env.values().any(|v| v.contains("hunter2")), "{step}");
            assert_eq!(env["npm_config_test_allowed"], "passes", "{step}");
        }
    });
}
