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

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::install::Install;
use super::{Run, secs};
use crate::builder::package_manager::{PackageManager, find_in_path};
use crate::builder::reuse::{
    BuildCache, EntryKind, Fingerprint, ScanEntry, Selection, SnapshotKey, SnapshotKind, TreeScan,
    scan_tree,
};

/// Directory names never scanned (`git init` makes one in the copy before the install).
const SCAN_EXCLUDES: [&str; 1] = [".git"];

/// Files whose whole content is an install input, wherever they are in the tree.
const INSTALL_FILES: [&str; 15] = [
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "yarn.lock",
    "bun.lock",
    "bun.lockb",
    "bunfig.toml",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pnpmfile.cjs",
    ".pnpmfile.mjs",
    ".pnp.cjs",
    "lerna.json",
];

/// Directories whose whole content is an install input (patches and yarn's own files).
const INSTALL_DIRS: [&str; 2] = ["patches", ".yarn"];

/// `package.json` fields an install reads.
const INSTALL_FIELDS: [&str; 15] = [
    "name",
    "version",
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundleDependencies",
    "bundledDependencies",
    "overrides",
    "resolutions",
    "pnpm",
    "workspaces",
    "packageManager",
    "engines",
];

/// Scripts an install runs of the project's own packages.
const INSTALL_SCRIPTS: [&str; 4] = ["preinstall", "install", "postinstall", "prepare"];

/// The largest `package.json` read for its fields.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

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
        let cache = self.settings.cache.get().await?;
        let copy_root = self.settings.build_dir.join(&self.request.build_id);
        if !self.request.workdir.starts_with(&copy_root) || !self.root.starts_with(&copy_root) {
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
        false
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
        let cache = Arc::clone(&plan.cache);
        let slot = Arc::clone(&self.settings.cache);
        let (root, project_id, build_id) = (
            plan.copy_root.clone(),
            plan.project_id.clone(),
            self.request.build_id.clone(),
        );
        let before = (kind == SnapshotKind::Install).then(|| plan.source.clone());
        let saved = tokio::task::spawn_blocking(move || {
            let scan = scan_tree(&root, &SCAN_EXCLUDES, cache.memo())?;
            let selection = match &before {
                Some(before) => Selection::Paths(scan.changed_since(before)),
                None => Selection::Whole,
            };
            if selection == Selection::Paths(Vec::new()) {
                return Ok(None);
            }
            let key = SnapshotKey {
                kind,
                project_id: &project_id,
                fingerprint: &fingerprint,
            };
            cache
                .save(&key, &build_id, &scan, &selection, |b| slot.in_use(b))
                .map(Some)
        })
        .await;
        let failure = match saved {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        self.say(format!(
            "Warning: no {} snapshot of this build was kept for later builds: {failure}",
            kind.as_str()
        ));
    }
}

/// The `node` a build runs, as its real path, size and modification time (an upgrade in
/// place changes it).
fn node_identity(env: &BTreeMap<String, String>) -> String {
    let path = env.get("PATH").map(String::as_str);
    let Some(node) = find_in_path("node", path, Path::new("/"))
        .and_then(|node| std::fs::canonicalize(node).ok())
    else {
        return "none".to_owned();
    };
    match std::fs::metadata(&node) {
        Ok(meta) => format!(
            "{} {} {}.{}",
            node.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        ),
        Err(_) => node.display().to_string(),
    }
}

/// The install inputs of the scanned tree, as text for a fingerprint field.
fn dependency_inputs(scan: &TreeScan) -> String {
    let mut local_dirs: BTreeSet<String> = BTreeSet::new();
    let mut lines: Vec<String> = Vec::new();
    let mut whole_tree = false;
    let manifests: Vec<&ScanEntry> = scan
        .entries()
        .iter()
        .filter(|entry| {
            matches!(entry.kind, EntryKind::File(_)) && file_name(&entry.path) == "package.json"
        })
        .collect();
    for entry in &manifests {
        let dir = parent(&entry.path);
        let manifest = read_manifest(&scan.root().join(&entry.path));
        let Some(Value::Object(fields)) = manifest else {
            // Unreadable as JSON: its whole content stands in.
            lines.push(format!("{} {}", entry.path, entry_value(entry)));
            continue;
        };
        let chosen: BTreeMap<&str, &Value> = INSTALL_FIELDS
            .iter()
            .filter_map(|name| Some((*name, fields.get(*name)?)))
            .collect();
        let scripts: BTreeMap<&str, &Value> = INSTALL_SCRIPTS
            .iter()
            .filter_map(|name| Some((*name, fields.get("scripts")?.get(*name)?)))
            .collect();
        if !scripts.is_empty() {
            lines.push(format!(
                "{} scripts {}",
                entry.path,
                serde_json::to_string(&scripts).unwrap_or_default()
            ));
            // A local dependency's own scripts are covered by its content; the project's
            // may read any file of the tree.
            if !inside_any(&dir, &local_dirs) {
                whole_tree = true;
            }
        }
        lines.push(format!(
            "{} {}",
            entry.path,
            serde_json::to_string(&chosen).unwrap_or_default()
        ));
        for field in [
            "dependencies",
            "devDependencies",
            "optionalDependencies",
            "peerDependencies",
        ] {
            let Some(Value::Object(specs)) = fields.get(field) else {
                continue;
            };
            for spec in specs.values().filter_map(Value::as_str) {
                if let Some(local) = local_dependency(&dir, spec) {
                    local_dirs.insert(local);
                }
            }
        }
    }
    for entry in scan.entries() {
        let name = file_name(&entry.path);
        let listed = INSTALL_FILES.contains(&name)
            || entry
                .path
                .split('/')
                .any(|part| INSTALL_DIRS.contains(&part))
            || inside_any(&entry.path, &local_dirs);
        if listed {
            lines.push(format!("{} {}", entry.path, entry_value(entry)));
        }
    }
    if whole_tree {
        lines.push(format!("tree {}", scan.digest().hex()));
    }
    lines.join("\n")
}

/// A local dependency's directory, relative to the tree's root, when `spec` names one inside
/// the tree (`file:../lib`, `link:./vendor/x`, `portal:..`, `../lib`).
fn local_dependency(dir: &str, spec: &str) -> Option<String> {
    let target = ["file:", "link:", "portal:"]
        .iter()
        .find_map(|prefix| spec.strip_prefix(prefix))
        .or_else(|| (spec.starts_with("./") || spec.starts_with("../")).then_some(spec))?;
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Whether `path` is one of `dirs` or inside one.
fn inside_any(path: &str, dirs: &BTreeSet<String>) -> bool {
    dirs.iter().any(|dir| {
        dir.is_empty()
            || path == dir
            || path
                .strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// What an entry is, for a fingerprint: its kind, mode and content digest or link target.
fn entry_value(entry: &ScanEntry) -> String {
    let what = match &entry.kind {
        EntryKind::Dir => "dir".to_owned(),
        EntryKind::File(digest) => format!("file {}", digest.hex()),
        EntryKind::Symlink(target) => format!("link {target}"),
    };
    format!("{what} {:o}", entry.mode)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(dir, _)| dir.to_owned())
        .unwrap_or_default()
}

/// A `package.json` of the copy as JSON, when it is a regular file of a sane size.
fn read_manifest(path: &Path) -> Option<Value> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_MANIFEST_BYTES {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dependencies_resolve_inside_the_tree_only() {
        assert_eq!(
            local_dependency("app", "file:../stamp-dep"),
            Some("stamp-dep".to_owned())
        );
        assert_eq!(
            local_dependency("packages/app", "link:./vendor/x"),
            Some("packages/app/vendor/x".to_owned())
        );
        assert_eq!(local_dependency("", "../outside"), None);
        assert_eq!(local_dependency("app", "file:/abs/path"), None);
        assert_eq!(local_dependency("app", "^1.2.3"), None);
        assert_eq!(local_dependency("app", "workspace:*"), None);
    }

    #[test]
    fn a_directory_holds_only_its_own_paths() {
        let dirs: BTreeSet<String> = ["stamp-dep".to_owned()].into();
        assert!(inside_any("stamp-dep/index.js", &dirs));
        assert!(inside_any("stamp-dep", &dirs));
        assert!(!inside_any("stamp-dep-other/index.js", &dirs));
    }
}
