//! The one spawner: every child of the runner starts here.
//!
//! Each child gets an explicit environment (nothing inherited), its own process group (so the
//! tree killer reaches its descendants), and piped stdout and stderr framed into a log store.
//! A child of [`Lifetime::WithHost`] also gets a parent-death signal so that it dies with the
//! host even when the host is SIGKILLed; a child of [`Lifetime::Kept`] (a server under
//! `keepServersOnExit`) gets its own session instead and appends its output to a file that
//! the host tails ([`logfile`](super::logfile)), so it outlives the host without losing a line.
//!
//! # Caveats
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
//! Tokio's blocking threads come and go, so every fork happens on one dedicated spawner thread
//! that lives as long as the host process. The signal reaches only the direct child; its
//! descendants are found again by the next runner through the [`journal`](super::journal).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use tokio::net::UnixStream;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use super::exit::ExitInfo;
use super::handle::{Cleanup, Output, ProcessHandle, Started};
use super::journal::Journal;
use super::output;
use super::procfs;
use crate::error::{Error, Result};
use crate::isolation::Sandbox;
use crate::isolation::cgroup::JoinPaths;
use crate::logs::{LogStore, Stream};
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
    /// Its sandbox and cgroup; none by default.
    pub confinement: Confinement,
}

/// What confines a child: the sandbox it starts in (through the init program, see
/// [`crate::isolation::sandbox`]) and the cgroup it joins before exec.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    /// Its sandbox; `None`: it runs as the host does.
    pub sandbox: Option<Arc<Sandbox>>,
    /// The cgroup it joins between fork and exec, so that every process it starts is counted.
    pub cgroup: Option<Arc<JoinPaths>>,
}

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

/// The file descriptor a child's Node IPC channel gets (`NODE_CHANNEL_FD`).
const CHANNEL_FD: RawFd = 3;

/// How long a child may live, and where its output goes.
#[derive(Debug, Clone)]
pub enum Lifetime {
    /// It dies with the host (parent-death signal, exit hook, watchdog); its output is piped.
    /// With a journal, its group is recorded so that the next runner reaps what survives.
    WithHost(Option<Arc<Journal>>),
    /// It outlives the host: its own session, none of the above, and stdout and stderr
    /// appended to `log_file`, which the host tails.
    Kept {
        /// The file its output goes to.
        log_file: PathBuf,
        /// `logFileMaxMb` in bytes.
        max_log_bytes: u64,
    },
}

/// Starts `spec` with its output framed into `log`. Errors name the program or directory.
pub async fn spawn(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    journal: Option<Arc<Journal>>,
) -> Result<ProcessHandle> {
    spawn_process(spec, log, Lifetime::WithHost(journal), None).await
}

/// Like [`spawn`], with a [`Lifetime`] of choice and, when `channel` is set, a Node IPC
/// channel: the child gets one end of a Unix socket pair as fd 3 with `NODE_CHANNEL_FD=3` and
/// JSON serialization (what `child_process.fork` sets up), so its `process.send(message)`
/// writes one JSON line to the returned end.
pub async fn spawn_with(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    lifetime: Lifetime,
    channel: bool,
) -> Result<(ProcessHandle, Option<UnixStream>)> {
    if !channel {
        let handle = spawn_process(spec, log, lifetime, None).await?;
        return Ok((handle, None));
    }
    let (handle, channel) = spawn_with_channel(spec, log, lifetime).await?;
    Ok((handle, Some(channel)))
}

async fn spawn_with_channel(
    mut spec: SpawnSpec,
    log: Arc<LogStore>,
    lifetime: Lifetime,
) -> Result<(ProcessHandle, UnixStream)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| {
        spawn_error(
            &spec,
            format!("cannot create its IPC channel: {}", errno.desc()),
        )
    })?;
    spec.env
        .insert("NODE_CHANNEL_FD".to_owned(), CHANNEL_FD.to_string());
    spec.env.insert(
        "NODE_CHANNEL_SERIALIZATION_MODE".to_owned(),
        "json".to_owned(),
    );
    let ours = std::os::unix::net::UnixStream::from(ours);
    let channel = ours
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(ours))
        .map_err(|error| spawn_error(&spec, format!("cannot use its IPC channel: {error}")))?;
    // `theirs` stays open until the child has exec'd (spawn_process returns), then closes here,
    // so only the child holds that end.
    let handle = spawn_process(spec, log, lifetime, Some(theirs.as_raw_fd())).await?;
    drop(theirs);
    Ok((handle, channel))
}

async fn spawn_process(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    lifetime: Lifetime,
    channel: Option<RawFd>,
) -> Result<ProcessHandle> {
    check_cwd(&spec)?;
    let mut command = match &spec.confinement.sandbox {
        Some(sandbox) => {
            // The init program execs the real one, so a missing program is reported here as an
            // unsandboxed spawn would report it.
            let program = resolve_program(&spec)?;
            let init = crate::isolation::sandbox::init_program()
                .map_err(|reason| spawn_error(&spec, reason))?;
            let mut command = tokio::process::Command::new(init);
            command
                .args(sandbox.init_args(channel.is_some()))
                .arg(program);
            command
        }
        None => tokio::process::Command::new(&spec.program),
    };
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .kill_on_drop(false);
    let kept_output = match &lifetime {
        Lifetime::WithHost(_) => {
            super::watchdog::ensure_started();
            command
                .env(super::watchdog::HOST_VAR, super::watchdog::host_id())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            None
        }
        Lifetime::Kept {
            log_file,
            max_log_bytes,
        } => {
            let (out, err, start) = super::logfile::open_for_server(log_file)
                .and_then(|out| Ok((out.try_clone()?, out.metadata()?.len(), out)))
                .map(|(err, start, out)| (out, err, start))
                .map_err(|error| {
                    spawn_error(
                        &spec,
                        format!("cannot open its log file {}: {error}", log_file.display()),
                    )
                })?;
            command.stdout(out).stderr(err);
            Some((log_file.clone(), *max_log_bytes, start))
        }
    };
    let dies_with_host = kept_output.is_none();
    let host = std::process::id() as i32;
    let cgroup = spec.confinement.cgroup.clone();
    // Read before the fork: the child only loops up to it when close_range is missing.
    let fd_limit = open_file_limit();
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (open, write, close, setsid, prctl, getppid, dup2, fcntl, close_range).
    unsafe {
        command.pre_exec(move || {
            if let Some(cgroup) = &cgroup {
                cgroup.join_self()?;
            }
            if let Some(fd) = channel {
                place_channel(fd)?;
            }
            // Whatever the host left open without close-on-exec does not reach the child.
            let first_closed: u32 = if channel.is_some() { 4 } else { 3 };
            // close_range with CLOSE_RANGE_CLOEXEC only marks our own descriptors (the
            // spawner's own status pipe is close-on-exec already).
            let marked = nix::libc::syscall(
                nix::libc::SYS_close_range,
                first_closed,
                u32::MAX,
                nix::libc::CLOSE_RANGE_CLOEXEC,
            );
            if marked != 0 {
                // Before Linux 5.11: one by one, up to the descriptor limit.
                for fd in first_closed as i32..fd_limit {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
                }
            }
            if !dies_with_host {
                // Its own session (and group): no signal aimed at the host's reaches it.
                nix::unistd::setsid()?;
                return Ok(());
            }
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
    let tailer = match kept_output {
        Some((path, max_bytes, start)) => Some(tail_output(
            super::logfile::Tail {
                path,
                from: super::logfile::TailFrom::Offset(start),
                log: Arc::clone(&log),
                exit: exit.clone(),
                max_bytes,
                caught_up: None,
            },
            output_sender,
        )),
        None => {
            read_pipes(&mut child, Arc::clone(&log), output_sender);
            None
        }
    };
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
    let cleanup = match lifetime {
        Lifetime::WithHost(journal) => Cleanup::WithHost(journal),
        Lifetime::Kept { .. } => Cleanup::Kept(tailer),
    };
    Ok(ProcessHandle::new(
        Started {
            pid,
            start_ticks,
            started_at: SystemTime::now(),
        },
        log,
        Output {
            exit,
            closed: output_closed,
        },
        cleanup,
    ))
}

/// Starts the reader of a child's piped stdout and stderr; each counts in `closed` once it ends.
fn read_pipes(child: &mut tokio::process::Child, log: Arc<LogStore>, closed: watch::Sender<u8>) {
    let mut pipes = Vec::with_capacity(2);
    let taken = [
        (
            child.stdout.take().map(ChildStdout::into_owned_fd),
            Stream::Stdout,
        ),
        (
            child.stderr.take().map(ChildStderr::into_owned_fd),
            Stream::Stderr,
        ),
    ];
    for (pipe, stream) in taken {
        match pipe {
            Some(Ok(pipe)) => pipes.push((File::from(pipe), stream)),
            Some(Err(error)) => {
                tracing::warn!("cannot read {}: {error}", stream.as_str());
                closed.send_modify(|count| *count += 1);
            }
            None => {}
        }
    }
    output::spawn_reader(pipes, log, closed);
}

/// Starts the tailer of a kept process's log file; `closed` counts both streams as closed
/// once it has read the file to its end after the exit.
pub(super) fn tail_output(
    tail: super::logfile::Tail,
    closed: watch::Sender<u8>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let path = tail.path.clone();
        if let Err(error) = super::logfile::run(tail).await {
            tracing::warn!("cannot read the log file {}: {error}", path.display());
        }
        closed.send_modify(|count| *count = 2);
    })
    .abort_handle()
}

/// In the forked child: puts the channel end at [`CHANNEL_FD`], open across exec. Every other
/// descriptor of the host is close-on-exec, so fd 3 can be taken over.
fn place_channel(fd: RawFd) -> io::Result<()> {
    if fd == CHANNEL_FD {
        // dup2 onto itself keeps close-on-exec; clear the flag instead.
        // SAFETY: fcntl on a descriptor this process owns; async-signal-safe.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: dup2 between descriptors this process owns; async-signal-safe. The copy has
    // close-on-exec cleared.
    if unsafe { nix::libc::dup2(fd, CHANNEL_FD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// The soft limit of open descriptors (at most 65 536; 1 024 when it cannot be read).
fn open_file_limit() -> i32 {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur.min(65_536) as i32
}

/// The program's path as `execvp` would find it: as given when it names a path, else the first
/// executable file of that name in the child's `PATH`.
fn resolve_program(spec: &SpawnSpec) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if spec.program.contains('/') {
        return Ok(spec.cwd.join(&spec.program));
    }
    let path = spec.env.get("PATH").map_or("", String::as_str);
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| spec.cwd.join(dir).join(&spec.program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| spawn_error(spec, format!("command not found (PATH={path})")))
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
