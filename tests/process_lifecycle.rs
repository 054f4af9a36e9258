//! Real child processes through the runner's spawner and tree killer.

mod common;

use std::time::Duration;

use common::{line_after, lines, sh, temp_dir, wait_until};
use mastra_runner_local::logs::{LogLimits, LogStore, Stream};
use mastra_runner_local::process::{self, SpawnSpec, procfs};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_framed_into_the_log_with_stream_tags() {
    let child = sh("echo out; echo err >&2; printf 'no newline'").await;
    let exit = child.wait().await;
    assert!(exit.success());
    assert!(child.wait_output_closed(Duration::from_secs(5)).await);
    let entries = child.log().all();
    let tagged: Vec<(Stream, String)> = entries
        .iter()
        .map(|e| (e.stream(), e.line().to_owned()))
        .collect();
    assert!(tagged.contains(&(Stream::Stdout, "out".to_owned())));
    assert!(tagged.contains(&(Stream::Stderr, "err".to_owned())));
    assert!(tagged.contains(&(Stream::Stdout, "no newline".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_line_after_a_stdout_flood_is_stored_after_it() {
    // Fast enough that the reader treats stdout as busy and pauses between passes.
    let child = sh("seq 1 400000; echo done >&2").await;
    assert!(child.wait().await.success());
    assert!(child.wait_output_closed(Duration::from_secs(10)).await);
    let entries = child.log().all();
    let last: Vec<(Stream, String)> = entries[entries.len() - 2..]
        .iter()
        .map(|e| (e.stream(), e.line().to_owned()))
        .collect();
    assert_eq!(
        last,
        vec![
            (Stream::Stdout, "400000".to_owned()),
            (Stream::Stderr, "done".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_signals_are_reported_as_they_are() {
    let failed = sh("exit 3").await.wait().await;
    assert_eq!((failed.code, failed.signal), (Some(3), None));
    assert_eq!(failed.to_string(), "exit code 3");
    let killed = sh("kill -SEGV $$").await.wait().await;
    assert_eq!((killed.code, killed.signal), (None, Some(11)));
    assert_eq!(killed.to_string(), "signal SIGSEGV");
    assert!(!killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_is_noticed_while_a_grandchild_still_holds_the_pipes() {
    let child = sh("sleep 30 & echo started").await;
    let exit = child.wait().await;
    assert!(exit.success());
    assert!(!child.is_running());
    assert!(!child.wait_output_closed(Duration::from_millis(50)).await);
    child.kill_tree(Duration::from_secs(5)).await;
    assert!(child.wait_output_closed(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_that_ignores_sigterm_is_gone_after_kill_tree() {
    let child = sh("trap '' TERM; (trap '' TERM; echo grandchild $(sh -c 'echo $PPID'); exec sleep 1000) & wait").await;
    let grandchild: i32 = line_after(&child, "grandchild ")
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(procfs::is_alive(grandchild));
    let exit = child.kill_tree(Duration::from_millis(300)).await;
    assert_eq!(exit.signal_name().as_deref(), Some("SIGKILL"));
    assert!(
        !procfs::is_alive(grandchild),
        "grandchild {grandchild} survived"
    );
    assert!(procfs::live_group_members(child.pid() as i32).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_process_ends_with_sigterm_not_sigkill() {
    let child = sh("echo ready; exec sleep 1000").await;
    line_after(&child, "ready").await;
    let exit = child.kill_tree(Duration::from_secs(30)).await;
    assert_eq!(exit.signal_name().as_deref(), Some("SIGTERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_tree_sends_sigterm_when_called_not_when_first_polled() {
    let child = sh("echo ready; exec sleep 1000").await;
    line_after(&child, "ready").await;
    let stopping = child.kill_tree(Duration::from_secs(30));
    // The returned future has not run yet: the process must already be dying.
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("SIGTERM was not sent until the kill was polled");
    assert_eq!(exit.signal_name().as_deref(), Some("SIGTERM"));
    assert_eq!(stopping.await.signal_name().as_deref(), Some("SIGTERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_ignoring_sigterm_is_killed_when_the_grace_period_ends() {
    let child = sh("trap '' TERM; echo ready; while true; do sleep 0.05; done").await;
    line_after(&child, "ready").await;
    let exit = child.kill_tree(Duration::from_millis(200)).await;
    assert_eq!(exit.signal_name().as_deref(), Some("SIGKILL"));
    assert!(!child.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_finished_process_is_a_no_op() {
    let child = sh("exit 0").await;
    child.wait().await;
    assert!(child.kill_tree(Duration::from_secs(1)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_or_directory_is_an_error_naming_it() {
    let log = Arc::new(LogStore::new(LogLimits::with_lines(10)));
    let missing_program = SpawnSpec {
        program: "definitely-not-a-program".to_owned(),
        args: Vec::new(),
        cwd: std::env::temp_dir(),
        env: process::env::compose([]),
        confinement: Default::default(),
    };
    let error = process::spawn(missing_program, Arc::clone(&log), None)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Cannot start 'definitely-not-a-program': command not found (PATH="),
        "{error}"
    );
    let missing_dir = SpawnSpec {
        program: "/bin/true".to_owned(),
        args: Vec::new(),
        cwd: "/no/such/dir".into(),
        env: process::env::compose([]),
        confinement: Default::default(),
    };
    let error = process::spawn(missing_dir, log, None).await.unwrap_err();
    assert!(
        error.to_string().starts_with(
            "Cannot start '/bin/true': the working directory /no/such/dir cannot be used"
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_sees_only_the_allow_list_and_given_variables() {
    // SAFETY: set before the spawn below, read by nothing else concurrently in this test binary
    // that depends on its absence.
    unsafe { std::env::set_var("RUNNER_TEST_SECRET", "hunter2") };
    let spec = SpawnSpec {
        program: "/usr/bin/env".to_owned(),
        args: Vec::new(),
        cwd: std::env::temp_dir(),
        env: process::env::compose([&[("GIVEN".to_owned(), "yes".to_owned())].into()]),
        confinement: Default::default(),
    };
    let log = Arc::new(LogStore::new(LogLimits::with_lines(1000)));
    let child = process::spawn(spec, log, None).await.unwrap();
    child.wait().await;
    child.wait_output_closed(Duration::from_secs(5)).await;
    let env = lines(&child);
    assert!(env.contains(&"GIVEN=yes".to_owned()));
    assert!(env.iter().any(|l| l.starts_with("PATH=")));
    assert!(!env.iter().any(|l| l.contains("hunter2")), "{env:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_records_live_groups_and_forgets_finished_ones() {
    let dir = temp_dir("journal");
    let journal = Arc::new(process::Journal::new(&dir));
    let child = common::spawn_sh("echo ready; exec sleep 1000", Some(Arc::clone(&journal))).await;
    line_after(&child, "ready").await;
    let records = std::fs::read_dir(dir.join(process::journal::JOURNAL_DIR))
        .unwrap()
        .count();
    assert_eq!(records, 1);
    child.kill_tree(Duration::from_secs(5)).await;
    wait_until("the record to be removed", Duration::from_secs(5), || {
        std::fs::read_dir(dir.join(process::journal::JOURNAL_DIR)).map_or(0, |d| d.count()) == 0
    })
    .await;
    // A runner in this same host process never reaps its siblings' records.
    assert!(process::reap_leftovers(&dir).killed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_runner_reaps_groups_recorded_by_a_dead_host() {
    let dir = temp_dir("dead-host");
    // A child of that host carries its id (the runner's spawner gives each child this host's).
    let child = common::sh(&format!(
        "echo ready; exec env {}=4194000-1 sleep 1000",
        process::watchdog::HOST_VAR
    ))
    .await;
    line_after(&child, "ready").await;
    let pid = child.pid() as i32;
    wait_until("sleep to run with that id", Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ.split(|b| *b == 0).any(|entry| {
                entry == format!("{}=4194000-1", process::watchdog::HOST_VAR).as_bytes()
            })
        })
    })
    .await;
    // A record as a host that is gone would have left it: its pid names no live process.
    let journal_dir = dir.join(process::journal::JOURNAL_DIR);
    std::fs::create_dir_all(&journal_dir).unwrap();
    let record = serde_json::json!({
        "hostPid": 4_194_000,
        "hostStartTicks": 1,
        "groups": [{ "pgid": pid, "startTicks": child.start_ticks() }],
    });
    std::fs::write(
        journal_dir.join("processes-4194000-1.json"),
        record.to_string(),
    )
    .unwrap();
    let report = process::reap_leftovers(&dir);
    assert_eq!(report.killed, vec![pid]);
    assert_eq!(report.records_removed, 1);
    child.wait().await;
    assert!(!process::procfs::is_alive(pid));
}
