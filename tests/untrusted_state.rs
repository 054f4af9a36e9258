//! Issue 27: the files under `<buildDir>/.runner/` are data from an untrusted writer (every
//! server and build runs as the host's user inside `buildDir`). Each test plants what a hostile
//! app could write and checks that the runner neither kills, reads, writes nor runs what it
//! names. Case ids are the issue's.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use mastra_runner_local::process::{self, journal::JOURNAL_DIR, procfs, watchdog::HOST_VAR};
use serde_json::{Value, json};

/// A `sleep` leading its own process group, with `env` added to its environment; killed when
/// dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("sleep");
        command.arg("1000").process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        Sleeper::exec_done(command.spawn().expect("spawn sleep"))
    }

    /// `child` once it runs `sleep` with its own environment in place (between fork and exec,
    /// and for a moment inside exec, `/proc/<pid>/environ` is not yet the new one).
    fn exec_done(child: Child) -> Self {
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let runs_sleep = std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|path| path.ends_with("sleep"));
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if runs_sleep && !environ.is_empty() {
                return Sleeper(child);
            }
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn start_ticks(&self) -> u64 {
        procfs::read_stat(self.pid())
            .expect("stat of the sleeper")
            .start_ticks
    }

    fn alive(&self) -> bool {
        procfs::read_stat(self.pid()).is_some_and(|stat| stat.is_alive())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The id of a host that is gone: its pid names no live process.
const DEAD_HOST: (i64, u64) = (4_194_000, 1);

/// Writes a journal of the dead host naming `groups` under `dir`'s state directory.
fn plant_journal(dir: &Path, groups: Value) -> PathBuf {
    let journal_dir = dir.join(JOURNAL_DIR);
    std::fs::create_dir_all(&journal_dir).expect("state dir");
    let path = journal_dir.join("processes-4194000-1.json");
    let record = json!({ "hostPid": DEAD_HOST.0, "hostStartTicks": DEAD_HOST.1, "groups": groups });
    std::fs::write(&path, record.to_string()).expect("write journal");
    path
}

fn dead_host_id() -> String {
    format!("{}-{}", DEAD_HOST.0, DEAD_HOST.1)
}

#[test]
fn a_dead_hosts_own_children_are_reaped() {
    let dir = common::temp_dir("journal-positive");
    let orphan = Sleeper::start(&[(HOST_VAR, &dead_host_id())]);
    let path = plant_journal(
        &dir,
        json!([{ "pgid": orphan.pid(), "startTicks": orphan.start_ticks() }]),
    );
    let report = process::reap_leftovers(&dir);
    assert_eq!(report.killed, vec![orphan.pid()]);
    assert!(!path.exists(), "the journal is removed");
}

/// J01: a forged journal names an unrelated process group (one that does not carry the dead
/// host's id): it is not signalled.
#[test]
fn j01_a_group_not_started_by_the_dead_host_is_left_alone() {
    let dir = common::temp_dir("journal-j01");
    let unrelated = Sleeper::start(&[]);
    let other_host = Sleeper::start(&[(HOST_VAR, "777-1")]);
    plant_journal(
        &dir,
        json!([
            { "pgid": unrelated.pid(), "startTicks": unrelated.start_ticks() },
            { "pgid": other_host.pid(), "startTicks": other_host.start_ticks() },
        ]),
    );
    assert!(process::reap_leftovers(&dir).killed.is_empty());
    assert!(unrelated.alive() && other_host.alive());
}

/// J02, J03, J03b: the host's own group, group 1, and a group id that only truncation would make
/// 0 (the caller's own group for `kill`) are never signalled: this test process survives.
#[test]
fn j02_j03_the_hosts_group_group_one_and_truncated_ids_are_ignored() {
    let dir = common::temp_dir("journal-j02");
    let own_group = nix::unistd::getpgrp().as_raw();
    plant_journal(
        &dir,
        json!([
            { "pgid": own_group, "startTicks": 1 },
            { "pgid": std::process::id(), "startTicks": 1 },
            { "pgid": 1, "startTicks": 1 },
            { "pgid": 4_294_967_296_u64, "startTicks": 1 },
            { "pgid": -1, "startTicks": 1 },
            { "pgid": 0, "startTicks": 0 },
        ]),
    );
    let report = process::reap_leftovers(&dir);
    assert!(report.killed.is_empty(), "{report:?}");
}

/// J04: a journal with 20 000 entries is read within its bounds (one look at `/proc` whatever it
/// holds; the time it costs is measured by the bench, not here), and one of more than 1 MiB is
/// not read at all.
#[test]
fn j04_huge_journals_are_bounded() {
    let dir = common::temp_dir("journal-j04");
    let orphan = Sleeper::start(&[(HOST_VAR, &dead_host_id())]);
    let mut groups = vec![json!({ "pgid": orphan.pid(), "startTicks": orphan.start_ticks() })];
    groups.extend((0..20_000).map(|i| json!({ "pgid": 3_000_000 + i, "startTicks": 1 })));
    let path = plant_journal(&dir, Value::Array(groups));
    assert_eq!(process::reap_leftovers(&dir).killed, vec![orphan.pid()]);
    assert!(!path.exists());

    let survivor = Sleeper::start(&[(HOST_VAR, &dead_host_id())]);
    let mut padded = vec![json!({ "pgid": survivor.pid(), "startTicks": survivor.start_ticks() })];
    padded.extend((0..40_000).map(|i| json!({ "pgid": 3_000_000 + i, "startTicks": 1 })));
    let path = plant_journal(&dir, Value::Array(padded));
    assert!(std::fs::metadata(&path).expect("journal").len() > 1024 * 1024);
    assert!(process::reap_leftovers(&dir).killed.is_empty());
    assert!(survivor.alive(), "a journal over 1 MiB is not acted on");
    assert!(!path.exists(), "it is removed, with a warning");
}

/// A journal planted as a link to another file is neither read nor followed.
#[test]
fn a_journal_that_is_a_link_is_not_followed() {
    let dir = common::temp_dir("journal-link");
    let orphan = Sleeper::start(&[(HOST_VAR, &dead_host_id())]);
    let real = plant_journal(
        &dir,
        json!([{ "pgid": orphan.pid(), "startTicks": orphan.start_ticks() }]),
    );
    let elsewhere = dir.join("elsewhere.json");
    std::fs::rename(&real, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &real).expect("symlink");
    assert!(process::reap_leftovers(&dir).killed.is_empty());
    assert!(orphan.alive());
    assert!(elsewhere.exists(), "the link's target is untouched");
}

/// A kept-server record as a runner writes it, for server `server_id` of `deployment` on `port`,
/// naming `pid` (0: none) with start time `ticks`.
fn kept_record(server_id: &str, deployment: &str, port: u16, pid: i32, ticks: u64) -> Value {
    json!({
        "version": 1,
        "serverId": server_id,
        "deploymentId": deployment,
        "projectId": "project-1",
        "buildId": "build-1",
        "port": port,
        "pid": pid,
        "pgid": pid,
        "startTicks": ticks,
        "token": token_of(server_id),
        "startedAtMs": 1_700_000_000_000_u64,
        "restarts": 0,
        "routeId": null,
        "deployed": true,
        "owner": null,
    })
}

fn token_of(server_id: &str) -> String {
    format!("{server_id}-{:032x}", 42)
}

/// Writes `record` as `<buildDir>/.runner/kept/<serverId>.json`.
fn plant_record(dir: &Path, record: &Value) -> PathBuf {
    let kept = dir.join(JOURNAL_DIR).join("kept");
    std::fs::create_dir_all(&kept).expect("kept dir");
    let id = record["serverId"].as_str().expect("id");
    let path = kept.join(format!("{id}.json"));
    std::fs::write(&path, record.to_string()).expect("write record");
    path
}

/// A process a runner would identify as kept server `server_id`: it leads its group and
/// carries the server's token.
fn kept_process(server_id: &str) -> Sleeper {
    Sleeper::start(&[(process::ownership::SERVER_TOKEN_VAR, &token_of(server_id))])
}

fn kept_runner(
    dir: &Path,
    base: u16,
    extra: Value,
) -> std::sync::Arc<mastra_runner_local::runner::Runner> {
    let mut config = json!({ "keepServersOnExit": true });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    common::servers::runner_on(dir, base, config)
}

/// K05: a dead server's record whose `logFile` names another file: the next runner removes the
/// record and the log file it would name itself, never the file the record names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k05_a_dead_record_never_names_the_file_removed() {
    let (_, dir) = common::servers::runner("state-k05", 13000, json!({}));
    let victim = dir.join("victim.env");
    std::fs::write(&victim, "SECRET=1\n").expect("victim");
    let mut record = kept_record("dead-1", "dep-1", 13000, 4_194_001, 5);
    record["logFile"] = json!(victim);
    let path = plant_record(&dir, &record);
    let runner = kept_runner(&dir, 13000, json!({}));
    let report = runner.adopt_kept_servers();
    assert_eq!(report.died.len(), 1, "{report:?}");
    common::wait_until(
        "the record to go",
        std::time::Duration::from_secs(5),
        || !path.exists(),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "SECRET=1\n"
    );
}

/// K08, K09, K10: a live record's `logFile` naming another tenant's secret, or `/dev/zero`: the
/// runner reads `<serverId>.log` beside the record and nothing else, so the secret never shows
/// in the log and no foreign file is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k08_k09_k10_a_records_log_file_is_never_read_from_it() {
    let (_, dir) = common::servers::runner("state-k08", 13020, json!({}));
    let victim = dir.join("other-tenant.env");
    let secret = format!("DATABASE_PASSWORD=hunter2\n{}", "x".repeat(64 * 1024));
    std::fs::write(&victim, &secret).expect("victim");
    let reader = kept_process("live-1");
    let zero = kept_process("live-2");
    let mut record = kept_record("live-1", "dep-1", 13020, reader.pid(), reader.start_ticks());
    record["logFile"] = json!(victim);
    plant_record(&dir, &record);
    let mut record = kept_record("live-2", "dep-2", 13021, zero.pid(), zero.start_ticks());
    record["logFile"] = json!("/dev/zero");
    plant_record(&dir, &record);
    let runner = kept_runner(&dir, 13020, json!({ "logFileMaxMb": 1 }));
    let report = runner.adopt_kept_servers();
    assert_eq!(report.adopted.len(), 2, "{report:?}");
    let logs = runner.settled_server_log("live-1").await.expect("log");
    let text = mastra_runner_local::logs::join_text(&logs.all());
    assert!(!text.contains("hunter2"), "{text}");
    let zero_log = runner.settled_server_log("live-2").await.expect("log");
    assert!(zero_log.bytes() < 64 * 1024, "/dev/zero was read");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), secret);
    runner.shutdown().await;
    assert!(
        !reader.alive() && !zero.alive(),
        "adopted servers stop with shutdown()"
    );
}

/// K26: a record naming a process that does not lead its own group is refused, and stop and
/// shutdown do not wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k26_a_process_that_does_not_lead_its_group_is_not_adopted() {
    let (_, dir) = common::servers::runner("state-k26", 13040, json!({}));
    let mut command = Command::new("sleep");
    command
        .arg("1000")
        .env(process::ownership::SERVER_TOKEN_VAR, token_of("follower"));
    let follower = Sleeper::exec_done(command.spawn().expect("spawn"));
    plant_record(
        &dir,
        &kept_record(
            "follower",
            "dep-1",
            13040,
            follower.pid(),
            follower.start_ticks(),
        ),
    );
    let runner = kept_runner(&dir, 13040, json!({}));
    let report = runner.adopt_kept_servers();
    assert!(report.adopted.is_empty());
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.contains("does not lead its process group")),
        "{report:?}"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), runner.shutdown())
        .await
        .expect("shutdown() finishes");
    assert!(
        follower.alive(),
        "a process the runner does not own is left alone"
    );
}

/// K21: a host that died while a redeploy's old server drained left two records of the
/// deployment; the next runner adopts the routed one and stops the draining one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k21_after_a_crash_during_a_drain_the_routed_server_is_kept() {
    let (_, dir) = common::servers::runner("state-k21", 13060, json!({}));
    let old = kept_process("old");
    let new = kept_process("new");
    let mut draining = kept_record("old", "dep-1", 13060, old.pid(), old.start_ticks());
    draining["draining"] = json!(true);
    plant_record(&dir, &draining);
    let mut routed = kept_record("new", "dep-1", 13061, new.pid(), new.start_ticks());
    routed["routeId"] = json!("route-1");
    plant_record(&dir, &routed);
    let runner = kept_runner(&dir, 13060, json!({}));
    let report = runner.adopt_kept_servers();
    assert_eq!(report.adopted, vec!["new".to_owned()], "{report:?}");
    assert_eq!(report.died.len(), 1);
    common::wait_until(
        "the draining server to be stopped",
        std::time::Duration::from_secs(10),
        || !old.alive(),
    )
    .await;
    assert!(new.alive());
    runner.shutdown().await;
}

/// K13, K14, K15: records claiming one port, one route or one deployment: none of them is
/// adopted and none of their processes is signalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k13_k14_k15_records_that_claim_the_same_thing_are_refused() {
    let (_, dir) = common::servers::runner("state-k13", 13080, json!({}));
    let genuine = kept_process("genuine");
    let forged = kept_process("forged");
    plant_record(
        &dir,
        &kept_record(
            "genuine",
            "dep-1",
            13080,
            genuine.pid(),
            genuine.start_ticks(),
        ),
    );
    plant_record(
        &dir,
        &kept_record("forged", "dep-1", 13081, forged.pid(), forged.start_ticks()),
    );
    let runner = kept_runner(&dir, 13080, json!({}));
    let report = runner.adopt_kept_servers();
    assert!(report.adopted.is_empty(), "{report:?}");
    assert_eq!(report.refused.len(), 2);
    assert!(report.refused[0].contains("deployment dep-1 is claimed by 2 records"));
    assert!(genuine.alive() && forged.alive());
    runner.shutdown().await;
}

/// K25: a record's `command` is never run: a restart runs the server's own Node binary on the
/// build's `index.mjs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k25_a_records_command_never_runs() {
    let (_, dir) = common::servers::runner("state-k25", 13100, json!({}));
    let marker = dir.join("pwned");
    let server = kept_process("cmd");
    let mut record = kept_record("cmd", "dep-1", 13100, server.pid(), server.start_ticks());
    record["command"] = json!(["/bin/sh", "-c", format!("touch {}", marker.display())]);
    plant_record(&dir, &record);
    // The deployment's data view, as the host that deployed it left it.
    mastra_runner_local::runner::data::prepare(
        &mastra_runner_local::runner::data::data_dir(&dir, "dep-1"),
        &dir.join("build-1/.mastra/output"),
    )
    .expect("data view");
    let runner = kept_runner(&dir, 13100, json!({ "restartPolicy": { "backoffMs": 10 } }));
    let report = runner.adopt_kept_servers();
    assert_eq!(report.adopted, vec!["cmd".to_owned()], "{report:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    common::wait_until("a restart", std::time::Duration::from_secs(10), || {
        runner.server("cmd").is_some_and(|info| info.restarts >= 1)
    })
    .await;
    runner.shutdown().await;
    assert!(!marker.exists(), "the record's command ran");
}
