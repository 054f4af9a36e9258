//! The watchdog that cleans up after a host killed without warning (SIGKILL, an OOM kill, a
//! crash), within a second instead of at the next runner's start.
//!
//! Every child the runner spawns carries the host's id in its environment ([`HOST_VAR`]), and
//! its descendants inherit it. On the first spawn the host starts one small watchdog: a
//! `/bin/sh` in its own process group, without the parent-death signal, reading a pipe whose
//! only writer is the host. When the host ends, however it ends, the pipe reads end-of-file and
//! the watchdog SIGKILLs every process that carries the host's id, then exits. After a normal
//! exit the exit hook has already killed everything, so the watchdog finds nothing.
//!
//! # Caveats
//! A process that clears its environment is not found (the journal still lets the next runner
//! reap its group). The watchdog needs `/bin/sh`, `grep -z` and `/proc`; without them it is not
//! started and only the journal remains (a debug line says so).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The environment variable that carries the host's id in every process the runner starts.
pub const HOST_VAR: &str = "MASTRA_RUNNER_HOST";

/// Waits for end-of-file on stdin, then kills every other process whose environment holds
/// `MASTRA_RUNNER_HOST=$1`.
const SCRIPT: &str = r#"while read -r _; do :; done
for environ in /proc/[0-9]*/environ; do
  pid=${environ#/proc/}; pid=${pid%/environ}
  [ "$pid" = "$$" ] && continue
  grep -qzx "MASTRA_RUNNER_HOST=$1" "$environ" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
exit 0"#;

/// This host's id: its pid and start time, so a reused pid is never taken for it.
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let pid = std::process::id() as i32;
        let ticks = super::procfs::read_stat(pid).map_or(0, |s| s.start_ticks);
        format!("{pid}-{ticks}")
    })
}

/// Starts the watchdog once per host; later calls do nothing.
pub fn ensure_started() {
    static PIPE: OnceLock<Mutex<Option<ChildStdin>>> = OnceLock::new();
    PIPE.get_or_init(|| Mutex::new(start()));
}

fn start() -> Option<ChildStdin> {
    let started = Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("mastra-runner-watchdog")
        .arg(host_id())
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match started {
        Ok(mut child) => {
            tracing::debug!(pid = child.id(), "watchdog started");
            let mut pipe = child.stdin.take()?;
            // A first line proves the pipe works; the watchdog waits for its end.
            let _ = pipe.write_all(b"started\n");
            // The watchdog outlives the host on purpose; its exit status is never read.
            std::mem::forget(child);
            Some(pipe)
        }
        Err(error) => {
            tracing::debug!(
                "no watchdog ({error}): only the journal cleans up after a killed host"
            );
            None
        }
    }
}
