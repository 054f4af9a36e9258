//! Isolation of tenants from each other and from the host: every server and build step runs in
//! a sandbox ([`sandbox`]: its own user, mount and pid namespaces with a fresh `/proc`,
//! `no_new_privs`, no capabilities, a Landlock domain) and, where the runner may create cgroups,
//! in a cgroup with kernel-enforced limits.
//!
//! [`Isolation`] is the runner's view: the configuration, what this host supports (found once
//! per process), and the sandbox of a server or a build step. `getStats().isolation` is its
//! [`IsolationReport`].

pub mod cgroup;
pub mod groups;
pub mod private_tmp;
pub mod sandbox;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cgroup::Enforced;
pub use groups::{GroupUsage, Groups};

pub use sandbox::Sandbox;
pub use settings::{Limits, SandboxSettings};

pub use private_tmp::PRIVATE_TMP_DIR;

/// The runner's isolation: configuration and host support.
#[derive(Debug)]
pub struct Isolation {
    sandbox: SandboxSettings,
    /// The runner's `buildDir`, hidden in every sandbox but for the sandbox's own paths.
    build_dir: PathBuf,
    /// The cgroups of servers and builds.
    pub groups: Arc<Groups>,
}

/// What a server's sandbox is made of.
#[derive(Debug, Clone)]
pub struct ServerPlaces<'a> {
    /// The `node` that runs it.
    pub node: &'a Path,
    /// Its build's whole copy (`<buildDir>/<buildId>`).
    pub build_copy: &'a Path,
    /// Its deployment's data directory.
    pub data_dir: &'a Path,
    /// Its private temporary directory (`TMPDIR`, `HOME`).
    pub private_tmp: &'a Path,
    /// Its port, the only one it may bind.
    pub port: u16,
    /// The runner's `portRange`, whose other ports it may not connect to under
    /// `sandbox.isolatePorts`.
    pub port_range: (u16, u16),
}

/// What a build step's sandbox is made of.
#[derive(Debug, Clone)]
pub struct BuildPlaces<'a> {
    /// The `node` the build uses.
    pub node: &'a Path,
    /// The build's copy (`<buildDir>/<buildId>`).
    pub build_copy: &'a Path,
    /// Directories the step reads besides the system's (package managers fetched for it).
    pub read: Vec<PathBuf>,
    /// Package-manager caches the step writes.
    pub caches: Vec<PathBuf>,
    /// Its private temporary directory (`TMPDIR`, `HOME`).
    pub private_tmp: &'a Path,
}

/// `getStats().isolation`: what is enforced and how, with the reason when something is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationReport {
    /// Whether servers and build steps run in a sandbox.
    pub sandboxed: bool,
    /// The kernel's Landlock ABI (0: none).
    pub landlock_abi: u32,
    /// Whether servers may bind only their own port (Landlock ABI ≥ 4).
    pub bind_own_port_only: bool,
    /// Whether signals and abstract unix sockets stop at the sandbox (Landlock ABI ≥ 6).
    pub scoped: bool,
    /// What a sandboxed process holds of the host's privileges: `"none"` (root's bounding set
    /// emptied, or a user that holds none), or `"host"` without a sandbox.
    pub capabilities: &'static str,
    /// Why there is no sandbox, when there is none.
    pub sandbox_reason: Option<String>,
    /// How limits are enforced: `"cgroup-v2"`, `"cgroup-v1"` or `"watchdog"` (no cgroup:
    /// memory only, by an RSS watchdog).
    pub limits: &'static str,
    /// Why limits are not enforced by a cgroup, when they are not.
    pub limits_reason: Option<String>,
    /// Which limits the kernel enforces.
    pub enforced: Enforced,
}

impl Isolation {
    /// The isolation `settings` ask for, for a runner on `build_dir`; starts finding what the host supports (once per
    /// process, off the caller's thread) when a sandbox is wanted.
    pub fn new(settings: &SandboxSettings, build_dir: &Path) -> Self {
        if settings.enabled {
            std::thread::Builder::new()
                .name("mastra-runner-sandbox-probe".to_owned())
                .spawn(|| {
                    let _ = sandbox::support();
                })
                .ok();
        }
        Isolation {
            sandbox: settings.clone(),
            build_dir: build_dir.to_path_buf(),
            groups: Arc::new(Groups::default()),
        }
    }

    /// Whether spawns are sandboxed: asked for, and supported here. Waits for the host's probe
    /// (milliseconds, once per process) off the async threads.
    pub async fn sandboxing(&self) -> bool {
        if !self.sandbox.enabled {
            return false;
        }
        // Every deploy and build step asks: only the first waits for the probe, off the
        // async threads.
        if let Some(known) = sandbox::support_if_known() {
            return known.is_ok();
        }
        tokio::task::spawn_blocking(|| sandbox::support().is_ok())
            .await
            .unwrap_or(false)
    }

    /// The sandbox of a server, or `None` when spawns are not sandboxed.
    pub async fn server_sandbox(&self, places: &ServerPlaces<'_>) -> Option<Sandbox> {
        if !self.sandboxing().await {
            return None;
        }
        Some(self.server_rules(places))
    }

    /// [`Self::server_sandbox`] on the calling thread (which may wait for the host's probe, a
    /// few milliseconds once per process): for a server adopted from an earlier runner.
    pub fn server_sandbox_now(&self, places: &ServerPlaces<'_>) -> Option<Sandbox> {
        if !self.sandbox.enabled || sandbox::support().is_err() {
            return None;
        }
        Some(self.server_rules(places))
    }

    fn server_rules(&self, places: &ServerPlaces<'_>) -> Sandbox {
        let mut sandbox = self.base(places.node);
        sandbox.read_write.extend([
            places.build_copy.to_path_buf(),
            places.data_dir.to_path_buf(),
            places.private_tmp.to_path_buf(),
        ]);
        sandbox.bind_port = Some(places.port);
        if self.sandbox.isolate_ports {
            sandbox.connect_except = Some(places.port_range);
        }
        sandbox
    }

    /// The sandbox of a build step, or `None` when spawns are not sandboxed. It may connect
    /// anywhere (registries, git hosts) but bind only ephemeral ports (port 0), so no build
    /// takes a port of the runner's range.
    pub async fn build_sandbox(&self, places: &BuildPlaces<'_>) -> Option<Sandbox> {
        if !self.sandboxing().await {
            return None;
        }
        let mut sandbox = self.base(places.node);
        sandbox.read_only.extend(places.read.iter().cloned());
        sandbox.read_write.push(places.build_copy.to_path_buf());
        sandbox.read_write.extend(places.caches.iter().cloned());
        sandbox.read_write.push(places.private_tmp.to_path_buf());
        sandbox.bind_port = Some(0);
        Some(sandbox)
    }

    /// Makes (or keeps) the private temporary directory `name` under `build_dir` (0700, in a
    /// 0700 parent), which a sandboxed server or build gets as `TMPDIR` and `HOME`; this
    /// process holds it until [`Self::remove_private_tmp`].
    pub fn private_tmp(build_dir: &Path, name: &str) -> std::io::Result<PathBuf> {
        private_tmp::make(build_dir, name)
    }

    /// Removes the private temporary directory `name` under `build_dir`, if any.
    pub fn remove_private_tmp(build_dir: &Path, name: &str) {
        private_tmp::remove(build_dir, name);
    }

    /// Makes the cgroup `name` with `limits` off the async threads; what a child writes to join
    /// it, `None` where no cgroup can be made.
    pub async fn create_group(
        &self,
        name: &str,
        limits: Limits,
    ) -> std::io::Result<Option<Arc<cgroup::JoinPaths>>> {
        let groups = Arc::clone(&self.groups);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || groups.create(&name, &limits))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Ends the cgroup `name` (its processes killed, its directories removed) off the async
    /// threads.
    pub async fn remove_group(&self, name: &str) {
        let groups = Arc::clone(&self.groups);
        let name = name.to_owned();
        let _ = tokio::task::spawn_blocking(move || groups.remove(&name)).await;
    }

    /// SIGKILLs every process of the cgroup `name` off the async threads; how many there were.
    pub async fn kill_group(&self, name: &str) -> usize {
        let groups = Arc::clone(&self.groups);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || groups.kill_all(&name))
            .await
            .unwrap_or(0)
    }

    /// [`Self::remove_private_tmp`] off the async threads.
    pub async fn remove_private_tmp_later(&self, build_dir: &Path, name: &str) {
        let (build_dir, name) = (build_dir.to_path_buf(), name.to_owned());
        let _ =
            tokio::task::spawn_blocking(move || Self::remove_private_tmp(&build_dir, &name)).await;
    }

    /// Ends everything server or build `name` was confined with: its cgroup (and whatever is
    /// left in it) and its private directory, off the async threads.
    pub async fn release(&self, build_dir: &Path, name: &str) {
        self.remove_group(name).await;
        self.remove_private_tmp_later(build_dir, name).await;
    }

    /// Whether `path` (already resolved) lies in a path the configuration lets every sandbox
    /// read or write (`sandbox.readPaths`, `sandbox.writePaths`): outside them, and outside a
    /// build's own places, a sandboxed build cannot read it.
    pub fn shared_path(&self, path: &Path) -> bool {
        self.sandbox
            .read_paths
            .iter()
            .chain(&self.sandbox.write_paths)
            .any(|allowed| {
                let allowed = std::fs::canonicalize(allowed).unwrap_or_else(|_| allowed.clone());
                path.starts_with(allowed)
            })
    }

    fn base(&self, node: &Path) -> Sandbox {
        let mut sandbox = Sandbox::base(node, &self.sandbox.read_paths, &self.sandbox.write_paths);
        sandbox.hidden.push(self.build_dir.clone());
        sandbox
    }

    /// What is enforced now. Before the host's probe has finished, the sandbox is reported as
    /// the kernel allows it.
    pub fn report(&self) -> IsolationReport {
        let abi = sandbox::landlock_abi();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { nix::libc::geteuid() } == 0;
        let support = if !self.sandbox.enabled {
            Err("turned off by the configuration (sandbox: false)".to_owned())
        } else {
            sandbox::support().clone()
        };
        let sandboxed = support.is_ok();
        let place = self.groups.place();
        IsolationReport {
            sandboxed,
            landlock_abi: abi,
            bind_own_port_only: sandboxed && abi >= 4,
            scoped: sandboxed && abi >= 6,
            capabilities: if sandboxed || !root { "none" } else { "host" },
            sandbox_reason: support.err(),
            limits: match place {
                Ok(place) => place.version().as_str(),
                Err(_) => "watchdog",
            },
            limits_reason: place.as_ref().err().cloned(),
            // Without a cgroup, an RSS watchdog enforces memory; nothing enforces the rest.
            enforced: match place {
                Ok(place) => place.enforced(),
                Err(_) => Enforced {
                    memory: true,
                    pids: false,
                    cpus: false,
                },
            },
        }
    }
}
