//! cgroup v2: one directory per group in the unified hierarchy, controllers enabled from the
//! host's own group down.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{
    keyed_value, make_dir, parse_pids, read_keyed, read_text, subtree_pids, write_raw, write_text,
};
use super::hierarchies::Mounted;
use super::{
    CPU_PERIOD_US, CgroupUsage, Limits, RUNNER_DIR, cpu_quota_us, limit_or_max, parse_limit,
};

/// The leaf the host process moves into when its own group must hold no process (the "no
/// internal processes" rule: a non-root v2 group with processes cannot enable controllers for
/// its children).
pub const HOST_LEAF: &str = "host";

/// Prepares `<own>/mastra-runner` so that its children get the memory and pids controllers (and
/// cpu when the host's group has it); returns that directory and whether cpu is enabled.
pub fn detect(place: &Mounted) -> Result<(PathBuf, bool), String> {
    let own_dir = place.mount.join(own_group(&place.own));
    let controllers_file = own_dir.join("cgroup.controllers");
    let available = read_text(&controllers_file)
        .map_err(|error| format!("cannot read {}: {error}", controllers_file.display()))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    let missing: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|name| !available.contains(name))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 group {} lacks the {} controller(s) (available: {})",
            own_dir.display(),
            missing.join(", "),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(" ")
            }
        ));
    }
    let wanted_cpu = available.contains(&"cpu");
    let base = own_dir.join(RUNNER_DIR);
    make_dir(&base).map_err(|error| format!("cannot create {}: {error}", base.display()))?;
    let own_cpu = match enable(&own_dir, wanted_cpu) {
        Err(error)
            if error.kind() == io::ErrorKind::ResourceBusy && !place.own.as_os_str().is_empty() =>
        {
            move_host_to_leaf(&own_dir, &base)?;
            enable(&own_dir, wanted_cpu)
        }
        other => other,
    }
    .map_err(|error| format!("cannot enable controllers: {error}"))?;
    let base_cpu =
        enable(&base, own_cpu).map_err(|error| format!("cannot enable controllers: {error}"))?;
    Ok((base, base_cpu))
}

/// The host's own group: the group it was started in, also once it moved into its leaf.
fn own_group(own: &Path) -> &Path {
    let in_leaf = own.file_name() == Some(OsStr::new(HOST_LEAF))
        && own.parent().and_then(Path::file_name) == Some(OsStr::new(RUNNER_DIR));
    match own.parent().and_then(Path::parent) {
        Some(started_in) if in_leaf => started_in,
        _ => own,
    }
}

/// Moves every process of the host's own group (the host and what it started before) into the
/// leaf `<base>/host`, so the own group may enable controllers.
fn move_host_to_leaf(own_dir: &Path, base: &Path) -> Result<(), String> {
    let leaf = base.join(HOST_LEAF);
    make_dir(&leaf).map_err(|error| format!("cannot create {}: {error}", leaf.display()))?;
    let procs = read_text(&own_dir.join("cgroup.procs")).unwrap_or_default();
    for pid in parse_pids(&procs, super::files::MAX_PIDS) {
        // A process that exited meanwhile cannot be moved (ESRCH); the others must be.
        match write_raw(&leaf.join("cgroup.procs"), &pid.to_string()) {
            Err(error) if error.raw_os_error() != Some(nix::libc::ESRCH) => {
                return Err(format!(
                    "cannot move process {pid} into {}: {error}",
                    leaf.display()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Enables memory and pids (and cpu when `cpu`) for the children of `dir`; memory and pids must
/// succeed, cpu may not. Returns whether cpu is enabled.
fn enable(dir: &Path, cpu: bool) -> io::Result<bool> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = read_text(&control)?;
    let is_enabled = |name: &str| enabled.split_whitespace().any(|word| word == name);
    for name in ["memory", "pids"] {
        if !is_enabled(name) {
            write_text(&control, &format!("+{name}"))?;
        }
    }
    Ok(cpu && (is_enabled("cpu") || write_text(&control, "+cpu").is_ok()))
}

/// Writes a group's limits: `memory.max` (with `memory.swap.max` 0, so swap does not dodge it),
/// `pids.max`, and `cpu.max` when the cpu controller is enabled.
pub fn write_limits(dir: &Path, limits: &Limits, cpu: bool) -> io::Result<()> {
    write_text(&dir.join("memory.max"), &limit_or_max(limits.memory_bytes))?;
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        write_text(
            &swap,
            if limits.memory_bytes.is_some() {
                "0"
            } else {
                "max"
            },
        )?;
    }
    write_text(&dir.join("pids.max"), &limit_or_max(limits.pids))?;
    if cpu {
        let quota = cpu_quota_us(limits.cpus).map_or("max".to_string(), |quota| quota.to_string());
        write_text(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(())
}

/// The limits a group's files show.
pub fn read_limits(dir: &Path) -> Limits {
    let cpu = read_text(&dir.join("cpu.max")).unwrap_or_default();
    let mut cpu = cpu.split_whitespace().map(|word| word.parse::<u64>().ok());
    let cpus = match (cpu.next().flatten(), cpu.next().flatten()) {
        (Some(quota), Some(period)) if period > 0 => Some(quota as f64 / period as f64),
        _ => None,
    };
    Limits {
        memory_bytes: parse_limit(&read_text(&dir.join("memory.max")).unwrap_or_default()),
        cpus,
        pids: parse_limit(&read_text(&dir.join("pids.max")).unwrap_or_default()),
    }
}

/// Memory (anonymous and mapped file pages), cpu time and processes of a group.
pub fn usage(dir: &Path) -> io::Result<CgroupUsage> {
    let stat = read_text(&dir.join("memory.stat"))?;
    let memory = keyed_value(&stat, "anon")
        .unwrap_or(0)
        .saturating_add(keyed_value(&stat, "file_mapped").unwrap_or(0));
    Ok(CgroupUsage {
        memory_bytes: memory,
        cpu_time_ns: read_keyed(&dir.join("cpu.stat"), "usage_usec")
            .map(|usec| usec.saturating_mul(1000)),
        processes: subtree_pids(dir).len() as u64,
    })
}

/// OOM kills in the group (`memory.events`).
pub fn oom_kills(dir: &Path) -> u64 {
    read_keyed(&dir.join("memory.events"), "oom_kill").unwrap_or(0)
}

/// SIGKILLs the whole group at once through `cgroup.kill` (Linux 5.14+); false when the kernel
/// has no such file.
pub fn kill(dir: &Path) -> bool {
    let file = dir.join("cgroup.kill");
    file.exists() && write_text(&file, "1").is_ok()
}
