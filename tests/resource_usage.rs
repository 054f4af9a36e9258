//! CPU and memory of real process trees.

mod common;

use std::time::Duration;

use common::{line_after, sh};
use mastra_runner_local::process::ResourceMonitor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_child_shows_near_one_core_of_cpu() {
    // The busy loop runs in a grandchild, so only a whole-tree sample sees it.
    let child = sh("(echo busy; while :; do :; done) & wait").await;
    line_after(&child, "busy").await;
    let monitor = ResourceMonitor::new();
    monitor.sample(child.pid() as i32).expect("first sample");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let usage = monitor.sample(child.pid() as i32).expect("second sample");
    child.kill_tree(Duration::from_secs(1)).await;
    assert!(usage.processes >= 2, "{usage:?}");
    // Two cores shared with other tests and builds: the loop gets anything from a quarter of
    // one (both cores busy elsewhere) to one whole core; an idle tree shows about 0.
    assert!(
        usage.cpu_percent > 25.0 && usage.cpu_percent < 210.0,
        "{usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_grows_when_the_tree_allocates() {
    // A grandchild (python3, on every machine of this kind) fills 64 MiB after a pause.
    let child = sh(
        "python3 -c \"import time; print('small', flush=True); time.sleep(0.3); \
         data = b'a' * (64 << 20); print('big', flush=True); time.sleep(1000)\" & wait",
    )
    .await;
    line_after(&child, "small").await;
    let monitor = ResourceMonitor::new();
    let before = monitor.sample(child.pid() as i32).expect("sample before");
    line_after(&child, "big").await;
    let after = monitor.sample(child.pid() as i32).expect("sample after");
    child.kill_tree(Duration::from_secs(1)).await;
    assert!(
        after.memory_mb > before.memory_mb + 50.0,
        "before {before:?}, after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_process_has_no_usage() {
    let child = sh("exit 0").await;
    child.wait().await;
    assert_eq!(ResourceMonitor::new().sample(child.pid() as i32), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_sample_reads_small_trees_and_leaves_large_ones_to_a_full_sample() {
    use mastra_runner_local::process::QUICK_SAMPLE_PROCESSES;
    let monitor = ResourceMonitor::new();
    let small = sh("sleep 30 & sleep 30 & echo ready; wait").await;
    line_after(&small, "ready").await;
    let quick = monitor
        .quick_sample(small.pid() as i32)
        .expect("a small tree is quick");
    assert_eq!(quick.map(|u| u.processes), Some(3));
    small.kill_tree(Duration::from_secs(1)).await;
    assert_eq!(monitor.quick_sample(small.pid() as i32), Some(None));

    let many = QUICK_SAMPLE_PROCESSES + 5;
    let large = sh(&format!(
        "i=0; while [ $i -lt {many} ]; do sleep 30 & i=$((i+1)); done; echo ready; wait"
    ))
    .await;
    line_after(&large, "ready").await;
    assert_eq!(monitor.quick_sample(large.pid() as i32), None);
    let full = monitor.sample(large.pid() as i32).expect("full sample");
    assert_eq!(full.processes, many + 1);
    large.kill_tree(Duration::from_secs(5)).await;
}
