//! The build queue with real processes and a fake `npm` (a shell script on PATH; see
//! `common`): never more builds at once than the limit, and FIFO order.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{FakeBuilds, WITH_BUILD, temp_dir, wait_until};
use mastra_runner_local::builder::BuildStatus;

/// An install that appends "start <id>" and "end <id>" to `$MARKS` around a short pause.
const MARKED: &str =
    "echo \"start $BUILD\" >> \"$MARKS\"; sleep 0.3; echo \"end $BUILD\" >> \"$MARKS\"";

fn marks(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(what, id)| (what.to_owned(), id.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_builds_with_two_slots_never_overlap_more_than_two() {
    let builds = FakeBuilds::new("queue-five", 2);
    let marks_file = temp_dir("queue-five-marks").join("marks");
    let marks_path = marks_file.to_string_lossy().into_owned();
    let mut tasks = Vec::new();
    for id in ["b1", "b2", "b3", "b4", "b5"] {
        let request = builds.request(
            id,
            WITH_BUILD,
            &[
                ("FAKE_INSTALL", MARKED),
                ("BUILD", id),
                ("MARKS", &marks_path),
            ],
        );
        let builder = builds.builder.clone();
        tasks.push(tokio::spawn(async move { builder.build(request).await }));
    }
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", outcome.logs);
    }
    let marks = marks(&marks_file);
    assert_eq!(marks.len(), 10, "{marks:?}");
    let mut running = 0;
    let mut most = 0;
    for (what, _) in &marks {
        running += if what == "start" { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(most, 2, "{marks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_builds_start_in_the_order_they_were_submitted() {
    let builds = FakeBuilds::new("queue-fifo", 1);
    let marks_file = temp_dir("queue-fifo-marks").join("marks");
    let marks_path = marks_file.to_string_lossy().into_owned();
    let mut tasks = Vec::new();
    for id in ["q1", "q2", "q3", "q4"] {
        let request = builds.request(
            id,
            WITH_BUILD,
            &[
                ("FAKE_INSTALL", MARKED),
                ("BUILD", id),
                ("MARKS", &marks_path),
            ],
        );
        let builder = builds.builder.clone();
        let task = tokio::spawn(async move { builder.build(request).await });
        // Submit the next one only once this one has its place, so the order is known.
        wait_until("the build to be admitted", Duration::from_secs(10), || {
            builds.builder.is_active(id) || task.is_finished()
        })
        .await;
        tasks.push(task);
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let starts: Vec<String> = marks(&marks_file)
        .into_iter()
        .filter(|(what, _)| what == "start")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(starts, vec!["q1", "q2", "q3", "q4"]);
    let positions: Vec<bool> = outcomes
        .iter()
        .skip(1)
        .map(|o| o.logs.contains("is waiting for a build slot: position"))
        .collect();
    assert!(
        positions.iter().all(|p| *p),
        "queued builds log that they wait"
    );
}
