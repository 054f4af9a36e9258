//! What confines a build's steps: one cgroup per build run (`buildLimits`) and, where spawns
//! are sandboxed, a sandbox per step that writes only the build's copy, the package-manager
//! caches and a private `TMPDIR`, and reads the host only where every sandbox may (plus the
//! package manager the step runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Run, Stop};
use crate::builder::package_manager::find_in_path;
use crate::isolation::{BuildPlaces, Isolation, PRIVATE_TMP_DIR};
use crate::process::{Confinement, SpawnSpec};
use crate::source::workspace;

/// A build run's cgroup and private directory, made at its first step.
#[derive(Debug)]
pub(super) struct BuildConfinement {
    /// The name of its cgroup and of its private directory.
    name: String,
    cgroup: Option<Arc<crate::isolation::cgroup::JoinPaths>>,
    /// Its private temporary directory, when steps are sandboxed.
    private_tmp: Option<PathBuf>,
}

/// The cache under `.cache` that build steps get as `XDG_CACHE_HOME`.
const METADATA_CACHE: &str = "xdg";

/// The variables that point a package manager at its cache (`layout::Caches::env`).
const CACHE_VARS: [&str; 6] = [
    "npm_config_cache",
    "npm_config_store_dir",
    "pnpm_config_store_dir",
    "YARN_CACHE_FOLDER",
    "YARN_GLOBAL_FOLDER",
    "BUN_INSTALL_CACHE_DIR",
];

/// The caches under `caches` that `spec`'s variables point its package manager at: only values
/// the runner set (a build's own variables may name any path), made if missing, and only when
/// their real path is still under the caches (no `..`, no link out) and outside `pm` but for a
/// helper's own npm cache inside its private copy (`pm/.run`).
fn step_caches(
    spec: &SpawnSpec,
    caches: &Path,
    tenant: &[&BTreeMap<String, String>],
) -> Vec<PathBuf> {
    let Ok(real_caches) = std::fs::canonicalize(caches) else {
        return Vec::new();
    };
    let set_by_runner =
        |var: &str, value: &String| !tenant.iter().any(|env| env.get(var) == Some(value));
    let store_locks = spec
        .env
        .iter()
        .any(|(var, value)| var.ends_with("_config_store_dir") && set_by_runner(var, value))
        .then(pnpm_store_locks);
    CACHE_VARS
        .iter()
        .filter_map(|var| spec.env.get(*var).filter(|value| set_by_runner(var, value)))
        .map(PathBuf::from)
        .filter(|dir| {
            !dir.components()
                .any(|c| c == std::path::Component::ParentDir)
        })
        .filter_map(|dir| make_dir(&dir))
        .filter(|dir| {
            std::fs::canonicalize(dir).is_ok_and(|real| {
                real.starts_with(&real_caches)
                    && (!real.starts_with(real_caches.join("pm"))
                        || real.starts_with(real_caches.join("pm").join(".run")))
            })
        })
        .chain(store_locks.and_then(|locks| make_dir(&locks)))
        .collect()
}

/// `dir`, made if missing; `None` (with a warning) when it cannot be.
fn make_dir(dir: &Path) -> Option<PathBuf> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Some(dir.to_path_buf()),
        Err(error) => {
            tracing::warn!("cannot create the cache {}: {error}", dir.display());
            None
        }
    }
}

/// The most parents above a package manager's program searched for its package root.
const PACKAGE_ROOT_DEPTH: usize = 4;

impl Run<'_> {
    /// Confines `spec`, a step of this build: in the build's cgroup, and in a sandbox when
    /// spawns are sandboxed, with `TMPDIR` and `HOME` at the build's private directory (the
    /// host's `~/.npmrc` is out of reach: registry settings come from the project's `.npmrc` or
    /// `npm_config_*` variables) and `XDG_CACHE_HOME` (pnpm's metadata, among others) under
    /// `.cache`, unless the build's own variables set them.
    pub(super) async fn confine(&mut self, spec: &mut SpawnSpec) -> Result<(), Stop> {
        let isolation = Arc::clone(&self.settings.isolation);
        if self.confinement.is_none() {
            self.confinement = Some(self.make_confinement(&isolation).await?);
        }
        let Some(confinement) = &self.confinement else {
            return Ok(());
        };
        let mut sandbox = None;
        if let Some(tmp) = &confinement.private_tmp {
            let caches = self.settings.caches.root();
            // Node as the host runs it and as the host's own PATH finds it: never as the
            // build's PATH (its variables) says, which could name a `node` inside buildDir.
            let node = std::env::current_exe().unwrap_or_else(|_| "node".into());
            let copy = self.copy_of(&self.request.workdir);
            let build_dir = &self.settings.build_dir;
            let read: Vec<PathBuf> = [
                package_root(Path::new(&spec.program), build_dir),
                host_node().and_then(|node| package_root(&node, build_dir)),
            ]
            .into_iter()
            .flatten()
            .chain([caches.join("pm")])
            .chain(trusted_path_dirs(
                self.settings.global_env_vars.get("PATH"),
                build_dir,
            ))
            .collect();
            let metadata = caches.join(METADATA_CACHE);
            let tenant = [&self.request.env_vars, &self.settings.global_env_vars];
            let mut writable = step_caches(spec, caches, &tenant);
            writable.extend(make_dir(&metadata));
            // A package manager being fetched into its directory under `pm` (checked against
            // its digest before it runs).
            if spec.cwd.starts_with(caches.join("pm")) {
                writable.push(spec.cwd.clone());
            }
            if copy.is_none() {
                // Built in place: the whole workspace above it is the build's, as a package
                // manager walking up to its root installs there.
                let top = PathBuf::from("/");
                let bound = workspace::SearchBound::Within(&top);
                writable.extend(workspace::find_root(&self.request.workdir, bound));
            }
            sandbox = isolation
                .build_sandbox(&BuildPlaces {
                    node: &node,
                    build_copy: copy.as_deref().unwrap_or(&self.root),
                    read,
                    caches: writable,
                    private_tmp: tmp,
                })
                .await;
            if sandbox.is_some() {
                // npm's update check would write under the unreachable home and print notices
                // into the build's log.
                let own = [
                    ("TMPDIR", tmp.to_string_lossy().into_owned()),
                    ("HOME", tmp.to_string_lossy().into_owned()),
                    ("XDG_CACHE_HOME", metadata.to_string_lossy().into_owned()),
                    ("npm_config_update_notifier", "false".to_owned()),
                ];
                // pnpm would hard-link files of the shared store into the build's copy, where
                // the build (and later its server) may write them: every other build using
                // that package would run what it wrote. A copy keeps each build's its own.
                let store_vars: Vec<String> = spec
                    .env
                    .keys()
                    .filter(|var| var.ends_with("_config_store_dir"))
                    .map(|var| var.replace("store_dir", "package_import_method"))
                    .collect();
                for var in store_vars {
                    spec.env.insert(var, "clone-or-copy".to_owned());
                }
                for (key, value) in own {
                    if !self.request.env_vars.contains_key(key)
                        && !self.settings.global_env_vars.contains_key(key)
                    {
                        spec.env.insert(key.to_owned(), value);
                    }
                }
            }
        }
        spec.confinement = Confinement {
            sandbox: sandbox.map(Arc::new),
            cgroup: confinement.cgroup.clone(),
        };
        Ok(())
    }

    async fn make_confinement(&self, isolation: &Isolation) -> Result<BuildConfinement, Stop> {
        let name = format!("build-{}", crate::ids::uuid_v4());
        let cgroup = isolation
            .create_group(&name, self.settings.limits)
            .await
            .map_err(|e| Stop::Failed(format!("Cannot create the build's cgroup: {e}")))?;
        let private_tmp = if isolation.sandboxing().await {
            let build_dir = &self.settings.build_dir;
            Some(Isolation::private_tmp(build_dir, &name).map_err(|e| {
                Stop::Failed(format!(
                    "Cannot create {}: {e}",
                    build_dir.join(PRIVATE_TMP_DIR).join(&name).display()
                ))
            })?)
        } else {
            None
        };
        Ok(BuildConfinement {
            name,
            cgroup,
            private_tmp,
        })
    }

    /// Ends the run's cgroup (with anything left in it) and removes its private directory.
    pub(super) async fn release_confinement(&mut self) {
        let Some(confinement) = self.confinement.take() else {
            return;
        };
        self.settings
            .isolation
            .remove_group(&confinement.name)
            .await;
        if confinement.private_tmp.is_some() {
            let build_dir = self.settings.build_dir.clone();
            let _ = tokio::task::spawn_blocking(move || {
                Isolation::remove_private_tmp(&build_dir, &confinement.name);
            })
            .await;
        }
    }
}

/// Where pnpm 11 and later take their store locks, whatever `TMPDIR` says:
/// `/tmp/pnpm-store-operation-locks-<uid>` (a lock is all a build can do there).
fn pnpm_store_locks() -> PathBuf {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { nix::libc::getuid() };
    PathBuf::from(format!("/tmp/pnpm-store-operation-locks-{uid}"))
}

/// The package a program belongs to (the nearest parent with a `package.json`, a few levels
/// up from its real path), or its directory: what a step must read to run it. Nothing that
/// holds `build_dir` or lies in it (a program there is the build's own, or another's).
fn package_root(program: &Path, build_dir: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(program).ok()?;
    let real_build_dir = std::fs::canonicalize(build_dir).unwrap_or_else(|_| build_dir.into());
    let dir = real.parent()?;
    let root = dir
        .ancestors()
        .take(PACKAGE_ROOT_DEPTH)
        .find(|candidate| candidate.join("package.json").is_file())
        .unwrap_or(dir);
    let overlaps = root.starts_with(&real_build_dir) || real_build_dir.starts_with(root);
    (!overlaps).then(|| root.to_path_buf())
}

/// The directories of the host's own `PATH` and of `globalEnvVars.PATH` (`global_path`):
/// trusted, since the admin set them, not a build. For a `node_modules/.bin` among them, the
/// `node_modules` its links point into too: the tools a build step finds there stay visible
/// when a hidden directory holds them. Nothing that overlaps `build_dir`.
fn trusted_path_dirs(global_path: Option<&String>, build_dir: &Path) -> Vec<PathBuf> {
    let host = std::env::var_os("PATH").unwrap_or_default();
    let global = global_path
        .map(std::ffi::OsString::from)
        .unwrap_or_default();
    let real_build_dir = std::fs::canonicalize(build_dir).unwrap_or_else(|_| build_dir.into());
    std::env::split_paths(&host)
        .chain(std::env::split_paths(&global))
        .filter(|dir| dir.is_absolute())
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .flat_map(|dir| {
            let packages = dir
                .ends_with("node_modules/.bin")
                .then(|| dir.parent().map(Path::to_path_buf))
                .flatten();
            std::iter::once(dir).chain(packages)
        })
        .filter(|dir| !dir.starts_with(&real_build_dir) && !real_build_dir.starts_with(dir))
        .collect()
}

/// The `node` the host's own `PATH` finds (build scripts run the one on their `PATH`, which
/// starts with the host's).
fn host_node() -> Option<PathBuf> {
    let path = std::env::var("PATH").ok()?;
    find_in_path("node", Some(&path), Path::new("/"))
}
