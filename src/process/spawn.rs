//! The one spawner: every child of the runner starts here.
//!
//! Each child gets an explicit environment (nothing inherited), its own process group (so the
//! tree killer reaches its descendants), piped stdout and stderr framed into a log store, and
//! a parent-death signal so that it dies with the host even when the host is SIGKILLed.
//!
//! # Caveats
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
//! Tokio's blocking threads come and go, so every fork happens on one dedicated spawner thread
//! that lives as long as the host process. The signal reaches only the direct child; its
//! descendants are found again by the next runner through the [`journal`](super::journal).

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use super::handle::{ExitInfo, ProcessHandle};
use super::journal::Journal;
use super::procfs;
use crate::error::{Error, Result};
use crate::logs::{LineFramer, LogStore, Stream};
use std::collections::BTreeMap;

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The program: a path, or a name looked up in the child's `PATH`.
    pub program: String,
    /// Arguments, passed as they are (no shell).
    pub args: Vec<String>,
    /// Working directory; must exist.
    pub cwd: PathBuf,
    /// The child's whole environment.
    pub env: BTreeMap<String, String>,
}

/// Bytes read from a pipe at once.
const READ_CHUNK: usize = 64 * 1024;

struct SpawnJob {
    command: tokio::process::Command,
    runtime: Handle,
    reply: oneshot::Sender<io::Result<tokio::process::Child>>,
}

/// The channel to the spawner thread, started on first use.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, jobs) = mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new()
            .name("mastra-runner-spawner".to_owned())
            .spawn(move || {
                for mut job in jobs {
                    let _runtime = job.runtime.enter();
                    // The receiver only goes away when the caller gave up; nothing to do then.
                    let _ = job.reply.send(job.command.spawn());
                }
            });
        if let Err(error) = started {
            tracing::error!("cannot start the spawner thread: {error}");
        }
        Mutex::new(sender)
    })
}

/// Starts `spec` with its output framed into `log`. Errors name the program or directory.
pub async fn spawn(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    journal: Option<Arc<Journal>>,
) -> Result<ProcessHandle> {
    check_cwd(&spec)?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let host = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The host may have died between fork and prctl; then nobody would ever kill us.
            if nix::unistd::getppid().as_raw() != host {
                return Err(io::Error::other(
                    "the runner exited while starting this process",
                ));
            }
            Ok(())
        });
    }

    let (reply, spawned) = oneshot::channel();
    let job = SpawnJob {
        command,
        runtime: Handle::current(),
        reply,
    };
    let sent = spawner()
        .lock()
        .map_err(|_| spawn_error(&spec, "the spawner thread failed".to_owned()))?
        .send(job);
    if sent.is_err() {
        return Err(spawn_error(
            &spec,
            "the spawner thread is not running".to_owned(),
        ));
    }
    let mut child = spawned
        .await
        .map_err(|_| spawn_error(&spec, "the spawner thread stopped".to_owned()))?
        .map_err(|error| spawn_error(&spec, describe_spawn_error(&spec, &error)))?;

    let pid = child.id().ok_or_else(|| {
        spawn_error(
            &spec,
            "the process exited before its pid was read".to_owned(),
        )
    })?;
    let start_ticks = procfs::read_stat(pid as i32).map_or(0, |s| s.start_ticks);
    let (exit_sender, exit) = watch::channel(None::<ExitInfo>);
    let (output_sender, output_closed) = watch::channel(0u8);
    let output_sender = Arc::new(output_sender);
    for (pipe, stream) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
            Stream::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Send + Unpin>),
            Stream::Stderr,
        ),
    ] {
        if let Some(pipe) = pipe {
            let log = Arc::clone(&log);
            let closed = Arc::clone(&output_sender);
            tokio::spawn(async move {
                pump(pipe, stream, &log).await;
                closed.send_modify(|count| *count += 1);
            });
        }
    }
    tokio::spawn(async move {
        let info = match child.wait().await {
            Ok(status) => ExitInfo::from_status(status),
            Err(error) => {
                tracing::warn!("waiting for process {pid} failed: {error}");
                ExitInfo::unknown()
            }
        };
        tracing::debug!(pid, "process exited: {info}");
        let _ = exit_sender.send(Some(info));
    });
    tracing::debug!(pid, program = %spec.program, "process started");
    Ok(ProcessHandle::new(
        pid,
        start_ticks,
        SystemTime::now(),
        log,
        exit,
        output_closed,
        journal,
    ))
}

/// Reads a pipe to its end, framing lines into `log`.
async fn pump(mut pipe: Box<dyn AsyncRead + Send + Unpin>, stream: Stream, log: &LogStore) {
    let mut framer = LineFramer::new(log.limits().max_line_bytes);
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut lines = Vec::new();
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                framer.push(&buffer[..n], |line| lines.push(line));
                if !lines.is_empty() {
                    log.append_lines(stream, lines.drain(..));
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::debug!("reading {} failed: {error}", stream.as_str());
                break;
            }
        }
    }
    framer.finish(|line| lines.push(line));
    log.append_lines(stream, lines);
}

fn check_cwd(spec: &SpawnSpec) -> Result<()> {
    match std::fs::metadata(&spec.cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(spawn_error(
            spec,
            format!(
                "the working directory {} is not a directory",
                spec.cwd.display()
            ),
        )),
        Err(error) => Err(spawn_error(
            spec,
            format!(
                "the working directory {} cannot be used ({error})",
                spec.cwd.display()
            ),
        )),
    }
}

fn describe_spawn_error(spec: &SpawnSpec, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => {
            let path = spec.env.get("PATH").map_or("", String::as_str);
            format!("command not found (PATH={path})")
        }
        io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".to_owned(),
        _ => error.to_string(),
    }
}

fn spawn_error(spec: &SpawnSpec, reason: String) -> Error {
    Error::SpawnFailed {
        program: spec.program.clone(),
        reason,
    }
}
