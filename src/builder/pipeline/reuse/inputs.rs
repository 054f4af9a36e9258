//! The inputs of a build's install, as fingerprint text: what of the copied tree, the host and
//! the install's variables decides what an install makes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::builder::package_manager::find_in_path;
use crate::builder::reuse::{ContentDigest, EntryKind, ScanEntry, TreeScan};

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
const INSTALL_FIELDS: [&str; 16] = [
    "name",
    "dependenciesMeta",
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

/// The package managers' user settings files the install's variables point to, by content:
/// only those `readable` says a sandboxed install can read (the variables may come from the
/// build's own `envVars`, so a path is never read on their word alone).
pub(super) fn user_config(
    env: &BTreeMap<String, String>,
    readable: impl Fn(&Path) -> bool,
) -> String {
    let home = env.get("HOME").map(PathBuf::from);
    let xdg = env
        .get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files: Vec<PathBuf> = ["npm_config_userconfig", "NPM_CONFIG_USERCONFIG"]
        .iter()
        .filter_map(|key| env.get(*key).map(PathBuf::from))
        .collect();
    if let Some(home) = &home {
        files.extend(
            [".npmrc", ".yarnrc", ".yarnrc.yml", ".bunfig.toml"]
                .iter()
                .map(|name| home.join(name)),
        );
    }
    if let Some(xdg) = &xdg {
        files.push(xdg.join("pnpm/rc"));
    }
    files
        .iter()
        .map(|file| {
            let content = std::fs::canonicalize(file)
                .ok()
                .filter(|real| readable(real))
                .and_then(|real| read_small(&real))
                .map(|bytes| ContentDigest::of(&bytes).hex())
                .unwrap_or_default();
            format!("{} {content}", file.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `node` a build runs, as its real path, size and modification time (an upgrade in
/// place changes it).
pub(super) fn node_identity(env: &BTreeMap<String, String>) -> String {
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
pub(super) fn dependency_inputs(scan: &TreeScan) -> String {
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
            "overrides",
            "resolutions",
            "pnpm",
        ] {
            let mut specs = Vec::new();
            strings_in(fields.get(field), &mut specs, 0);
            for spec in specs {
                if let Some(local) = local_dependency(&dir, spec) {
                    local_dirs.insert(local);
                }
            }
        }
        // pnpm copies an injected workspace package into node_modules: its sources are then
        // an install input.
        if serde_json::to_string(fields.get("dependenciesMeta").unwrap_or(&Value::Null))
            .unwrap_or_default()
            .contains("\"injected\":true")
        {
            whole_tree = true;
        }
    }
    let injects = scan.entries().iter().any(|entry| {
        file_name(&entry.path) == "pnpm-workspace.yaml"
            && read_small(&scan.root().join(&entry.path)).is_some_and(|text| {
                memchr::memmem::find(&text, b"injectWorkspacePackages").is_some()
            })
    });
    whole_tree |= injects;
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

/// Every string inside `value` (objects and arrays walked, at most 32 levels deep).
fn strings_in<'a>(value: Option<&'a Value>, into: &mut Vec<&'a str>, depth: usize) {
    match value {
        Some(Value::String(text)) => into.push(text),
        Some(Value::Object(fields)) if depth < 32 => {
            for value in fields.values() {
                strings_in(Some(value), into, depth + 1);
            }
        }
        Some(Value::Array(values)) if depth < 32 => {
            for value in values {
                strings_in(Some(value), into, depth + 1);
            }
        }
        _ => {}
    }
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

pub(super) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(dir, _)| dir.to_owned())
        .unwrap_or_default()
}

/// A `package.json` of the copy as JSON, when it is a regular file of a sane size.
fn read_manifest(path: &Path) -> Option<Value> {
    serde_json::from_slice(&read_small(path)?).ok()
}

/// The content of `path` when it is a regular file (not a link) of at most
/// [`MAX_MANIFEST_BYTES`].
fn read_small(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_MANIFEST_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes).ok()?;
    Some(bytes)
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
    #[test]
    fn local_paths_are_found_in_overrides_too() {
        let manifest: Value = serde_json::json!({
            "overrides": { "foo": "file:./vendor/foo", "bar": { "baz": "link:../baz" } },
            "pnpm": { "overrides": { "qux": "^1" } }
        });
        let mut specs = Vec::new();
        strings_in(manifest.get("overrides"), &mut specs, 0);
        strings_in(manifest.get("pnpm"), &mut specs, 0);
        let locals: BTreeSet<String> = specs
            .iter()
            .filter_map(|spec| local_dependency("app", spec))
            .collect();
        assert_eq!(
            locals,
            ["app/vendor/foo".to_owned(), "baz".to_owned()].into()
        );
    }

    #[test]
    fn user_settings_count_only_where_a_sandboxed_install_reads_them() {
        let home = std::env::temp_dir().join(format!("inputs-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).expect("home");
        let npmrc = home.join(".npmrc");
        let env: BTreeMap<String, String> =
            [("HOME".to_owned(), home.to_string_lossy().into_owned())].into();
        std::fs::write(&npmrc, "legacy-peer-deps=true").expect("write");
        let (shared, hidden) = (user_config(&env, |_| true), user_config(&env, |_| false));
        std::fs::write(&npmrc, "legacy-peer-deps=false").expect("write");
        assert_ne!(
            user_config(&env, |_| true),
            shared,
            "a readable file counts"
        );
        assert_eq!(
            user_config(&env, |_| false),
            hidden,
            "a file out of reach is not read"
        );
        let _ = std::fs::remove_dir_all(&home);
    }
}
