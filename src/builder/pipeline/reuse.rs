//! The build cache in a build's steps (a runner's builds only: they own their copy).
//!
//! Before the install, the build copy (`<buildDir>/<buildId>`, the whole copied tree) is
//! scanned once. Two fingerprints come of it:
//! - the **install** fingerprint: the dependency inputs (every lockfile and package-manager
//!   setting file, the dependency fields and install scripts of every `package.json`, the
//!   content of local `file:`/`link:` dependencies, `patches/`, `.yarn/`), the package manager
//!   and its version, the `node` the build runs (its real path, size and time), the platform,
//!   the install's variables and arguments, and where it runs. A project whose own
//!   `package.json` has an install script (`preinstall`, `install`, `postinstall`, `prepare`)
//!   also puts its whole tree in: such a script may read any file.
//! - the **output** fingerprint: the install fingerprint, the digest of the whole copied tree,
//!   the build's variables and where the project sits in the copy.
//!
//! A matching output snapshot is restored in place of install and build; else a matching
//! install snapshot in place of the install. After an install, what it added or changed is
//! snapshotted; after a successful build, the whole tree (before any server runs from it).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod inputs;

use self::inputs::{dependency_inputs, file_name, node_identity, user_config};
use super::install::Install;
use super::{Run, secs};
use crate::builder::package_manager::PackageManager;
use crate::builder::reuse::{
    BuildCache, Fingerprint, Selection, SnapshotKey, SnapshotKind, TreeScan, scan_tree,
};

/// Directory names never scanned (`git init` makes one in the copy before the install).
const SCAN_EXCLUDES: [&str; 1] = [".git"];

/// What the cache knows of one build: where its copy is, its fingerprints, and the scan of
/// its tree before the install.
pub(super) struct Plan {
    cache: Arc<BuildCache>,
    project_id: String,
    copy_root: PathBuf,
    install_fingerprint: Option<String>,
    output_fingerprint: String,
    source: TreeScan,
}

impl Run<'_> {
    /// Fingerprints this build for the cache; `None` when it does not take part (not a
    /// runner's build, the cache is off, or its copy cannot be read: said in the log).
    pub(super) async fn reuse_plan(
        &mut self,
        pm: PackageManager,
        version: Option<&str>,
        install: Option<&Install>,
        build_env: &BTreeMap<String, String>,
    ) -> Option<Plan> {
        let project_id = self.request.reuse_for.clone()?;
        let cache = match self.settings.cache.get().await {
            Ok(cache) => cache,
            Err(why) => {
                self.say(format!("Build cache not used: {why}"));
                return None;
            }
        };
        if !self.settings.isolation.sandboxing().await {
            // Unsandboxed, a tenant's server or build script could rewrite the snapshots every
            // later build of every project restores.
            self.say(
                "Build cache not used: builds and servers run without a sandbox here, so the \
                 snapshots could not be kept from them"
                    .to_owned(),
            );
            return None;
        }
        let copy_root = self.settings.build_dir.join(&self.request.build_id);
        if !self.request.workdir.starts_with(&copy_root) || !self.root.starts_with(&copy_root) {
            return None;
        }
        if let Err(why) = self.fits(&copy_root).await {
            self.say(format!("Build cache not used: {why}"));
            return None;
        }
        let started = tokio::time::Instant::now();
        let scanned = {
            let (cache, root) = (Arc::clone(&cache), copy_root.clone());
            tokio::task::spawn_blocking(move || scan_tree(&root, &SCAN_EXCLUDES, cache.memo()))
                .await
        };
        let source = match scanned {
            Ok(Ok(scan)) => scan,
            Ok(Err(error)) => {
                self.say(format!("Build cache not used: {error}"));
                return None;
            }
            Err(error) => {
                self.say(format!(
                    "Build cache not used: scanning the copy failed: {error}"
                ));
                return None;
            }
        };
        // The package manager a build fetched runs from a directory of its own: its place
        // in PATH is not an input, its version is.
        let private_bin = self
            .pm_copy
            .as_ref()
            .map(|copy| copy.bin_dir().to_string_lossy().into_owned());
        let stable = |env: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            env.iter()
                .map(|(key, value)| {
                    let value = match &private_bin {
                        Some(bin) => value.replace(bin.as_str(), "<package manager>"),
                        None => value.clone(),
                    };
                    (key.clone(), value)
                })
                .collect()
        };
        let relative = |path: &Path| {
            path.strip_prefix(&copy_root)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned()
        };
        let node = node_identity(build_env);
        let platform = format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH);
        let isolation = &self.settings.isolation;
        let install_fingerprint = install.map(|install| {
            Fingerprint::new("install-v1")
                .text("package manager", pm.command())
                .optional("version", version)
                .text("node", &node)
                .text("platform", &platform)
                .map("env", &stable(&install.env))
                .list("args", &install.args)
                .text("root", &relative(&install.root))
                .text("inputs", &dependency_inputs(&source))
                .text(
                    "user config",
                    &user_config(&install.env, |path| isolation.shared_path(path)),
                )
                .finish()
        });
        let output_fingerprint = Fingerprint::new("output-v1")
            .optional("install", install_fingerprint.as_deref())
            .text("package manager", pm.command())
            .optional("version", version)
            .text("node", &node)
            .text("platform", &platform)
            .digest("tree", &source.digest())
            .map("env", &stable(build_env))
            .text("workdir", &relative(&self.request.workdir))
            .finish();
        tracing::debug!(
            build = self.request.build_id,
            "fingerprinted {} entries in {} s",
            source.entries().len(),
            secs(started.elapsed())
        );
        if !self.request.use_cache {
            self.say(
                "Build cache not used (cache: false): building from scratch; the snapshots are \
                 taken anew"
                    .to_owned(),
            );
        }
        Some(Plan {
            cache,
            project_id,
            copy_root,
            install_fingerprint,
            output_fingerprint,
            source,
        })
    }

    /// Restores the output of an earlier build with the same inputs; whether it did.
    pub(super) async fn reuse_output(&mut self, plan: &Plan) -> bool {
        let key = SnapshotKey {
            kind: SnapshotKind::Output,
            project_id: &plan.project_id,
            fingerprint: &plan.output_fingerprint,
        };
        self.restore(plan, key, "inputs unchanged", "reused the output of build")
            .await
    }

    /// Restores the dependencies an earlier install with the same inputs left; whether it did.
    pub(super) async fn reuse_install(&mut self, plan: &Plan) -> bool {
        let Some(fingerprint) = &plan.install_fingerprint else {
            return false;
        };
        let key = SnapshotKey {
            kind: SnapshotKind::Install,
            project_id: &plan.project_id,
            fingerprint,
        };
        self.restore(
            plan,
            key,
            "lockfile unchanged",
            "dependencies restored from build",
        )
        .await
    }

    async fn restore(&mut self, plan: &Plan, key: SnapshotKey<'_>, why: &str, done: &str) -> bool {
        if !self.request.use_cache {
            return false;
        }
        let started = tokio::time::Instant::now();
        let Some(snapshot) = plan.cache.lookup(&key) else {
            return false;
        };
        let restored = {
            let (cache, into, snapshot) = (
                Arc::clone(&plan.cache),
                plan.copy_root.clone(),
                snapshot.clone(),
            );
            tokio::task::spawn_blocking(move || cache.restore(&snapshot, &into)).await
        };
        let failure = match restored {
            Ok(Ok(stats)) => {
                self.settings
                    .cache
                    .restored(&self.request.build_id, &snapshot.build_id);
                self.say(format!("{done} {} ({why})", snapshot.build_id));
                self.say(format!(
                    "Restored {} files ({} MB) from its snapshot in {} s",
                    stats.files,
                    stats.bytes / (1024 * 1024),
                    secs(started.elapsed())
                ));
                return true;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        self.say(format!(
            "Warning: the {} snapshot of build {} could not be restored ({failure}): building \
             from scratch",
            key.kind.as_str(),
            snapshot.build_id
        ));
        // What the restore added goes; what it replaced was the same as the copy's (the
        // fingerprint says so) or is whole (files are replaced by rename).
        let (root, source) = (plan.copy_root.clone(), plan.source_paths());
        let _ =
            tokio::task::spawn_blocking(move || remove_additions(&root, Path::new(""), &source))
                .await;
        false
    }

    /// Whether the tree at `root` is small enough to fingerprint and snapshot: at most half the
    /// cache's bound, counted from metadata before anything is read.
    async fn fits(&self, root: &Path) -> Result<(), String> {
        let limit = self.settings.cache.max_bytes() / 2;
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || tree_fits(&root, limit))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Snapshots what the install added or changed in the copy.
    pub(super) async fn save_install(&mut self, plan: &Plan) {
        let Some(fingerprint) = plan.install_fingerprint.clone() else {
            return;
        };
        self.save(plan, SnapshotKind::Install, fingerprint).await;
    }

    /// Snapshots the whole tree a successful build left.
    pub(super) async fn save_output(&mut self, plan: &Plan) {
        self.save(plan, SnapshotKind::Output, plan.output_fingerprint.clone())
            .await;
    }

    async fn save(&mut self, plan: &Plan, kind: SnapshotKind, fingerprint: String) {
        if let Err(why) = self.fits(&plan.copy_root).await {
            self.say(format!(
                "No {} snapshot of this build was kept: {why}",
                kind.as_str()
            ));
            return;
        }
        let cache = Arc::clone(&plan.cache);
        let slot = Arc::clone(&self.settings.cache);
        let (root, project_id, build_id) = (
            plan.copy_root.clone(),
            plan.project_id.clone(),
            self.request.build_id.clone(),
        );
        let before = (kind == SnapshotKind::Install).then(|| plan.source.clone());
        let saved = tokio::task::spawn_blocking(move || {
            let scan = scan_tree(&root, &SCAN_EXCLUDES, cache.memo())
                .map_err(|e| Unsaved::Failed(e.to_string()))?;
            let selection = match &before {
                Some(before) => {
                    let changed = scan.changed_since(before);
                    // Only what installs make: a file a dependency's script wrote elsewhere
                    // may come from project files the install fingerprint does not cover.
                    let other: Vec<&String> =
                        changed.iter().filter(|p| !install_output(p)).collect();
                    if let Some(first) = other.first() {
                        return Err(Unsaved::NotInstallOutput(format!(
                            "{first}{}",
                            if other.len() > 1 { " and more" } else { "" }
                        )));
                    }
                    Selection::Paths(changed)
                }
                None => Selection::Whole,
            };
            if selection == Selection::Paths(Vec::new()) {
                return Ok(());
            }
            let key = SnapshotKey {
                kind,
                project_id: &project_id,
                fingerprint: &fingerprint,
            };
            cache
                .save(&key, &build_id, &scan, &selection, |b| slot.in_use(b))
                .map(|_| ())
                .map_err(|e| Unsaved::Failed(e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(Unsaved::Failed(e.to_string())));
        let line = match saved {
            Ok(()) => return,
            Err(Unsaved::NotInstallOutput(what)) => format!(
                "No install snapshot of this build was kept: the install changed {what} outside \
                 node_modules (a dependency's script, from files the cache does not follow), so \
                 later builds of this project install again"
            ),
            Err(Unsaved::Failed(why)) => format!(
                "Warning: no {} snapshot of this build was kept for later builds: {why}",
                kind.as_str()
            ),
        };
        self.say(line);
    }
}

/// Why a snapshot was not taken.
enum Unsaved {
    /// The install wrote files outside what installs make (named).
    NotInstallOutput(String),
    /// Scanning or saving failed.
    Failed(String),
}

impl Plan {
    /// The paths of the copy before the install, as the scan found them.
    fn source_paths(&self) -> HashSet<String> {
        self.source
            .entries()
            .iter()
            .map(|entry| entry.path.clone())
            .collect()
    }
}

/// Removes what is under `root`/`dir` but not in `source` (paths relative to `root`), without
/// following links; `.git` stays.
fn remove_additions(root: &Path, dir: &Path, source: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let relative = dir.join(entry.file_name());
        let name = relative.to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if source.contains(&name) {
            if kind.is_dir() {
                remove_additions(root, &relative, source);
            }
        } else if kind.is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether an install made `path` (relative to the copy): anything in a `node_modules`,
/// Plug'n'Play's files, yarn's own directory, or a lockfile.
fn install_output(path: &str) -> bool {
    let name = file_name(path);
    path.split('/').any(|part| part == "node_modules")
        || path == ".yarn"
        || path.starts_with(".yarn/")
        || name.starts_with(".pnp.")
        || [
            "package-lock.json",
            "npm-shrinkwrap.json",
            "pnpm-lock.yaml",
            "yarn.lock",
            "bun.lock",
            "bun.lockb",
        ]
        .contains(&name)
}

/// `Ok` when the regular files under `root` take at most `limit` bytes (counted from their
/// sizes, links not followed, `.git` skipped); else why not. Sparse files count at their size.
fn tree_fits(root: &Path, limit: u64) -> Result<(), String> {
    let mut total: u64 = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(entry.path());
                }
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
                if total > limit {
                    return Err(format!(
                        "the build copy takes more than half of buildCache.maxMb ({} MB)",
                        limit / (1024 * 1024)
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pipeline-reuse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn a_failed_restore_leaves_the_copy_as_it_was() {
        let root = scratch("additions");
        std::fs::create_dir_all(root.join("src")).expect("src");
        std::fs::write(root.join("src/index.ts"), "source").expect("source");
        std::fs::write(root.join("package.json"), "{}").expect("manifest");
        let source: HashSet<String> = ["src", "src/index.ts", "package.json"]
            .map(str::to_owned)
            .into();
        // What a half-done restore added, a link among it, and the copy's own .git.
        std::fs::create_dir_all(root.join("node_modules/dep")).expect("node_modules");
        std::fs::write(root.join("src/generated.ts"), "restored").expect("added file");
        std::os::unix::fs::symlink("/etc", root.join("src/link")).expect("link");
        std::fs::create_dir_all(root.join(".git")).expect(".git");
        remove_additions(&root, Path::new(""), &source);
        let mut left: Vec<String> = std::fs::read_dir(root.join("src"))
            .expect("src")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["index.ts"]);
        assert!(!root.join("node_modules").exists());
        assert!(root.join(".git").exists());
        assert!(std::path::Path::new("/etc").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn install_snapshots_hold_only_what_installs_make() {
        for made in [
            "node_modules",
            "packages/app/node_modules/.bin/x",
            ".pnp.cjs",
            ".yarn/install-state.gz",
            "package-lock.json",
            "packages/app/pnpm-lock.yaml",
        ] {
            assert!(install_output(made), "{made}");
        }
        for other in [
            "src/generated/client.ts",
            "prisma/dev.db",
            ".yarnrc.yml",
            "dist",
        ] {
            assert!(!install_output(other), "{other}");
        }
    }

    #[test]
    fn a_tree_over_the_limit_is_refused_by_its_sizes_alone() {
        let root = scratch("fits");
        std::fs::write(root.join("small"), vec![0u8; 1000]).expect("small");
        assert!(tree_fits(&root, 2000).is_ok());
        // A sparse file: no blocks, but its size counts.
        let sparse = std::fs::File::create(root.join("sparse")).expect("sparse");
        sparse.set_len(1 << 40).expect("set_len");
        assert!(tree_fits(&root, 2000).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
