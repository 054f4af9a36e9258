//! `mastra-runner-init`: the sandbox every server and build step of a runner starts in.
//!
//! The runner cannot set up namespaces or Landlock in its own forked child: that child is a
//! copy of a multi-threaded Node process (only async-signal-safe calls are allowed), it may not
//! create a user namespace, and a long-lived copy would keep the host's memory alive. So the
//! runner's child execs this small program (embedded in the addon, see `build.rs`), which:
//!
//! 1. when not root, enters a new user namespace mapping its own uid and gid (so files keep
//!    their owners);
//! 2. enters new mount, pid, IPC and cgroup namespaces and forks the namespace's init (pid 1),
//!    which mounts a fresh `/proc` (only the sandbox's own processes), hides the `--mask` paths
//!    (directories where sockets and secrets live, root-only files) and, with `--private-shm`,
//!    gives the sandbox its own `/dev/shm`;
//! 3. pid 1 forks the program's process, which marks every descriptor above 2 (above 3 with
//!    `--keep-fd3`, a Node IPC channel) close-on-exec, sets `no_new_privs`, drops every capability from
//!    its bounding set when it runs as root, enters a Landlock domain (`--ro` read and execute,
//!    `--rw` full access, `--bind` the one TCP port it may bind, with `--connect-except` no
//!    TCP connection to that range of ports but its own, signal and abstract-socket scoping)
//!    and execs the program;
//! 4. pid 1 reaps every orphan of the namespace until the program ends, then exits, which kills
//!    whatever the program left behind; this process (outside the namespace, the one the runner
//!    knows) then ends the way the program ended: the same exit code, or the same signal.
//!
//! Signals: the runner signals the whole process group, which reaches the program directly; this
//! process ignores the polite ones (it waits for the program instead) and pid 1 of a namespace
//! only receives SIGKILL from outside, which ends the namespace.
//!
//! Usage: `mastra-runner-init [--probe] [--landlock] [--ro PATH]... [--rw PATH]... [--bind PORT]
//! [--connect-except FIRST-LAST] [--mask PATH]... [--private-shm] [--keep-fd3] -- PROGRAM
//! [ARG]...`. `--probe` checks that every step works and prints the
//! Landlock ABI. Errors are printed as `mastra-runner-init: <step>: <reason>` with exit code 125
//! (126 or 127 when the program cannot be executed or found).

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::raw::{c_char, c_int, c_long, c_ulong, c_void};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

mod landlock;
mod mounts;

use landlock::{enter_landlock, landlock_abi};
use mounts::{mask, mount_proc, private_shm};

const CLONE_NEWNS: c_int = 0x0002_0000;
const CLONE_NEWCGROUP: c_int = 0x0200_0000;
const CLONE_NEWIPC: c_int = 0x0800_0000;
const CLONE_NEWUSER: c_int = 0x1000_0000;
const CLONE_NEWPID: c_int = 0x2000_0000;
const MS_NOSUID: c_ulong = 2;
const MS_NODEV: c_ulong = 4;
const MS_NOEXEC: c_ulong = 8;
const MS_REC: c_ulong = 16384;
const MS_PRIVATE: c_ulong = 1 << 18;
const PR_SET_PDEATHSIG: c_int = 1;
const PR_CAPBSET_DROP: c_int = 24;
const PR_SET_NO_NEW_PRIVS: c_int = 38;
const PR_CAP_AMBIENT: c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: c_ulong = 4;
const SYS_CLOSE_RANGE: c_long = 436;
const CLOSE_RANGE_CLOEXEC: u32 = 4;
const O_PATH: c_int = 0o10_000_000;
const O_CLOEXEC: c_int = 0o2_000_000;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;
const SIGKILL: c_int = 9;
/// The signals a supervisor sends politely; this process waits for the program instead.
const POLITE_SIGNALS: [c_int; 6] = [1, 2, 3, 10, 12, 15];
/// Exit code when the sandbox cannot be set up.
const SETUP_FAILED: i32 = 125;

unsafe extern "C" {
    fn unshare(flags: c_int) -> c_int;
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn fork() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn prctl(option: c_int, arg2: c_ulong, arg3: c_ulong, arg4: c_ulong, arg5: c_ulong) -> c_int;
    fn syscall(number: c_long, ...) -> c_long;
    fn getuid() -> u32;
    fn getgid() -> u32;
    fn getpid() -> c_int;
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize;
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
    fn kill(pid: c_int, signal: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn signal(signum: c_int, handler: usize) -> usize;
    fn _exit(code: c_int) -> !;
}

/// What the command line asks for.
#[derive(Default)]
struct Request {
    probe: bool,
    landlock: bool,
    read_only: Vec<CString>,
    read_write: Vec<CString>,
    bind_port: Option<u16>,
    /// Directories hidden under an empty read-only tmpfs, files under `/dev/null`.
    masks: Vec<CString>,
    /// Whether `/dev/shm` is a fresh tmpfs of the sandbox's own.
    private_shm: bool,
    /// Whether descriptor 3 (a Node IPC channel) goes to the program.
    keep_fd3: bool,
    /// TCP ports the program may not connect to (the runner's range), but its own.
    connect_except: Option<(u16, u16)>,
    program: Vec<OsString>,
}

fn main() {
    let request = match parse(std::env::args_os().skip(1).collect()) {
        Ok(request) => request,
        Err(reason) => fail("arguments", &reason),
    };
    if !request.probe && request.program.is_empty() {
        fail("arguments", "no program after --");
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (getuid(), getgid()) };
    if uid != 0 {
        enter_user_namespace(uid, gid);
    }
    // SAFETY: plain system calls on this single-threaded process.
    if unsafe { unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWCGROUP) } != 0 {
        fail("new mount, pid, IPC and cgroup namespaces", &last_error());
    }
    let root = c"/";
    // SAFETY: a valid C string; null type and data are allowed for a propagation change.
    if unsafe {
        mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            MS_REC | MS_PRIVATE,
            std::ptr::null(),
        )
    } != 0
    {
        fail("private mounts", &last_error());
    }
    let mut status_pipe = [0 as c_int; 2];
    // SAFETY: a two-element array for the two ends.
    if unsafe { pipe2(status_pipe.as_mut_ptr(), O_CLOEXEC) } != 0 {
        fail("status pipe", &last_error());
    }
    // SAFETY: this process is single-threaded, so the child may do anything.
    match unsafe { fork() } {
        -1 => fail("fork of the namespace's init", &last_error()),
        0 => {
            unsafe { close(status_pipe[0]) };
            namespace_init(&request, status_pipe[1])
        }
        init => {
            unsafe { close(status_pipe[1]) };
            wait_outside(init, status_pipe[0])
        }
    }
}

/// Outside the namespace: waits for its init and ends as the program ended.
fn wait_outside(init: c_int, status_read: c_int) -> ! {
    close_other_descriptors(status_read);
    for polite in POLITE_SIGNALS {
        // SAFETY: ignoring a signal is always allowed.
        unsafe { signal(polite, SIG_IGN) };
    }
    let mut ignored = 0;
    // SAFETY: waiting for our own child; EINTR retried.
    while unsafe { waitpid(init, &mut ignored, 0) } == -1 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut status_bytes = [0u8; 4];
    // SAFETY: reading into a four-byte buffer.
    let got = unsafe { read(status_read, status_bytes.as_mut_ptr().cast(), 4) };
    if got != 4 {
        // The init was killed before the program ended (SIGKILL of the group): so were we.
        end_by_signal(SIGKILL);
    }
    let status = c_int::from_ne_bytes(status_bytes);
    if status & 0x7f == 0 {
        // SAFETY: ending this process.
        unsafe { _exit((status >> 8) & 0xff) }
    }
    end_by_signal(status & 0x7f)
}

/// Ends this process by `signal`, as the program ended.
fn end_by_signal(signal_number: c_int) -> ! {
    // SAFETY: restoring the default action, then signalling ourselves.
    unsafe {
        signal(signal_number, SIG_DFL);
        kill(getpid(), signal_number);
        _exit(128 + signal_number)
    }
}

/// Pid 1 of the new namespace: mounts, forks the program, reaps until it ends.
fn namespace_init(request: &Request, status_write: c_int) -> ! {
    // The parent waits for this process before it can end, so it cannot die before the
    // parent-death signal is set (its pid is not visible here to check).
    // SAFETY: plain prctl.
    unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong, 0, 0, 0) };
    mount_proc();
    for path in &request.masks {
        mask(path, request);
    }
    if request.private_shm {
        private_shm();
    }
    // SAFETY: single-threaded; the child only sets itself up and execs.
    let program = match unsafe { fork() } {
        -1 => fail("fork of the program", &last_error()),
        0 => {
            unsafe { close(status_write) };
            run_program(request)
        }
        program => program,
    };
    close_other_descriptors(status_write);
    loop {
        let mut status = 0;
        // SAFETY: reaping any child of this namespace's init.
        let ended = unsafe { waitpid(-1, &mut status, 0) };
        if ended == program || (ended == -1 && last_errno() != libc_eintr()) {
            let bytes = status.to_ne_bytes();
            // SAFETY: writing four bytes; the reader is the process outside.
            unsafe { write(status_write, bytes.as_ptr().cast(), 4) };
            // Leaving ends the namespace: the kernel kills whatever the program left behind.
            unsafe { _exit(0) }
        }
    }
}

/// The program's process: privileges down, Landlock on, then exec.
fn run_program(request: &Request) -> ! {
    // The working directory again, through the masks and the paths bound back in them.
    if let Ok(cwd) = std::env::current_dir() {
        let _ = std::env::set_current_dir(cwd);
    }
    // Descriptors the host left open without close-on-exec stop here (Landlock checks opens,
    // not descriptors already open).
    let first_closed: u32 = if request.keep_fd3 { 4 } else { 3 };
    // SAFETY: marking our own descriptors close-on-exec.
    if unsafe { syscall(SYS_CLOSE_RANGE, first_closed, u32::MAX, CLOSE_RANGE_CLOEXEC) } != 0 {
        // Before Linux 5.11: one by one, as `/proc/self/fd` lists them.
        mark_close_on_exec_from(first_closed);
    }
    for polite in POLITE_SIGNALS {
        // SAFETY: restoring default actions for the program.
        unsafe { signal(polite, SIG_DFL) };
    }
    // SAFETY: plain prctl calls.
    if unsafe { prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail("no_new_privs", &last_error());
    }
    if unsafe { getuid() } == 0 {
        drop_capabilities();
    }
    let abi = landlock_abi();
    if request.landlock {
        if abi < 1 {
            fail("landlock", "the kernel has no Landlock");
        }
        enter_landlock(request, abi);
    }
    if request.probe {
        println!("landlock-abi {abi}");
        std::process::exit(0);
    }
    let error = std::process::Command::new(&request.program[0])
        .args(&request.program[1..])
        .exec();
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    let _ = writeln!(
        std::io::stderr(),
        "mastra-runner-init: cannot run {}: {error}",
        request.program[0].to_string_lossy()
    );
    std::process::exit(code)
}

/// Empties the bounding and ambient sets: after exec, root holds no capability.
fn drop_capabilities() {
    for capability in 0..64 {
        // SAFETY: dropping a capability; EINVAL past the last one the kernel knows.
        unsafe { prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) };
    }
    unsafe { prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
}

/// A new user namespace in which this process keeps its uid and gid.
fn enter_user_namespace(uid: u32, gid: u32) {
    // SAFETY: this process is single-threaded.
    if unsafe { unshare(CLONE_NEWUSER) } != 0 {
        fail("new user namespace", &last_error());
    }
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1"));
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1"));
}

fn write_file(path: &str, content: &str) {
    if let Err(error) = std::fs::write(path, content) {
        fail(path, &error.to_string());
    }
}

/// Marks every open descriptor from `first` on close-on-exec, as `/proc/self/fd` lists them.
fn mark_close_on_exec_from(first: u32) {
    const F_SETFD: c_int = 2;
    const FD_CLOEXEC: c_int = 1;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        fail("descriptors", "cannot list /proc/self/fd");
    };
    let fds: Vec<c_int> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| u32::try_from(*fd).is_ok_and(|fd| fd >= first))
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor of ours (the listing's own one is gone: EBADF).
        unsafe { fcntl(fd, F_SETFD, FD_CLOEXEC) };
    }
}

/// Closes every descriptor from 3 on but `keep`: the program's copies stay with the program.
fn close_other_descriptors(keep: c_int) {
    // SAFETY: closing ranges of our own descriptors.
    unsafe {
        if keep > 3 {
            syscall(SYS_CLOSE_RANGE, 3u32, (keep - 1) as u32, 0u32);
        }
        syscall(SYS_CLOSE_RANGE, (keep + 1) as u32, u32::MAX, 0u32);
        if keep < 3 {
            syscall(SYS_CLOSE_RANGE, 3u32, u32::MAX, 0u32);
        }
    }
}

fn parse(args: Vec<OsString>) -> Result<Request, String> {
    let mut request = Request::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => {
                request.program = args.collect();
                break;
            }
            Some("--probe") => request.probe = true,
            Some("--landlock") => request.landlock = true,
            Some("--private-shm") => request.private_shm = true,
            Some("--keep-fd3") => request.keep_fd3 = true,
            Some("--connect-except") => {
                let value = args.next().ok_or("--connect-except needs FIRST-LAST")?;
                let range = value
                    .to_str()
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or("--connect-except needs FIRST-LAST")?;
                request.connect_except = Some(range);
            }
            Some(flag @ ("--ro" | "--rw" | "--bind" | "--mask")) => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag {
                    "--ro" | "--rw" | "--mask" => {
                        let path = CString::new(value.as_bytes())
                            .map_err(|_| format!("{flag}: a path with a NUL byte"))?;
                        match flag {
                            "--ro" => request.read_only.push(path),
                            "--rw" => request.read_write.push(path),
                            _ => request.masks.push(path),
                        }
                    }
                    _ => {
                        request.bind_port = Some(
                            value
                                .to_str()
                                .and_then(|v| v.parse().ok())
                                .ok_or("--bind needs a port")?,
                        );
                    }
                }
            }
            _ => return Err(format!("unknown argument {}", arg.to_string_lossy())),
        }
    }
    Ok(request)
}

fn last_error() -> String {
    std::io::Error::last_os_error().to_string()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn libc_eintr() -> i32 {
    4
}

/// Reports a failed step on stderr (the server's log) and exits with [`SETUP_FAILED`].
fn fail(step: &str, reason: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "mastra-runner-init: {step}: {reason}");
    std::process::exit(SETUP_FAILED)
}
