//! The exit-hook registry. In its own test binary: killing every registered group would hit the
//! children of tests running beside it.

mod common;

use common::{line_after, sh};
use mastra_runner_local::process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_hook_registry_kills_every_live_group() {
    let child = sh("echo ready; exec sleep 1000").await;
    line_after(&child, "ready").await;
    assert!(process::registry::registered().contains(&(child.pid() as i32)));
    process::registry::kill_all_now();
    let exit = child.wait().await;
    assert_eq!(exit.signal_name().as_deref(), Some("SIGKILL"));
}
