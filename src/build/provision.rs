//! Package managers at the version a project names (`"packageManager": "pnpm@9.15.0"`).
//!
//! As Heroku and Railpack do, a build runs the version the project asks for, not whatever is on
//! `PATH`: the package manager's own npm package (`pnpm`, `yarn`, `@yarnpkg/cli-dist` for yarn
//! 2+, `npm`) is fetched once with the host's `npm pack`, its tarball checked against the hash
//! corepack's form carries (`pnpm@9.1.0+sha512.<hex>`), unpacked into
//! `<buildDir>/.cache/pm/<name>@<version>/` and run with the host's Node through links in its
//! `bin/` directory, which goes first on the build's `PATH`. Later builds use that copy without
//! the registry.
//!
//! This module holds the rules and the file work; the pipeline runs `npm pack`, `node` and
//! `tar` through the one spawner, under the build's budget.
//!
//! ```text
//! .cache/pm/pnpm@9.15.0/
//!   package.tgz          the tarball as fetched (its hash is checked on every build)
//!   package/             the unpacked package
//!   bin/pnpm -> ../package/bin/pnpm.cjs
//!   .complete            written last: the copy is whole
//! ```

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::package_manager::{Detection, DetectionSource, PackageManager};

/// The file that marks a cached package manager as whole.
const COMPLETE: &str = ".complete";

/// The tarball's name inside a cached copy.
pub const TARBALL: &str = "package.tgz";

/// The hash algorithms a `packageManager` field may name (those Node's `crypto` computes).
const ALGORITHMS: [&str; 5] = ["sha1", "sha224", "sha256", "sha384", "sha512"];

/// A package manager version to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The name in the `packageManager` field (`pnpm`, `yarn`, `npm`).
    pub name: &'static str,
    /// The npm package that carries it.
    pub package: &'static str,
    /// The exact version.
    pub version: String,
    /// The tarball's expected hash: algorithm and lower-case hex digest.
    pub hash: Option<(String, String)>,
}

impl Wanted {
    /// `pnpm@9.15.0`: the name of its cache directory and of it in the log.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// `@yarnpkg/cli-dist@4.5.0`: what `npm pack` is asked for.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }

    /// Its directory under `root` (`<buildDir>/.cache/pm`).
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.key())
    }
}

/// What to do about the package manager's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The project names no version: the one on `PATH` runs.
    Absent,
    /// A version is named but cannot be fetched (the reason); the one on `PATH` runs.
    Unavailable(String),
    /// Fetch (or reuse) this version.
    Fetch(Wanted),
}

/// What `detection` asks for. An error is a hash that cannot be checked: the build fails
/// rather than run an unverified package manager.
pub fn plan(detection: &Detection) -> Result<Plan, String> {
    let (DetectionSource::PackageManagerField(field), Some(version)) =
        (&detection.source, &detection.requested_version)
    else {
        return Ok(Plan::Absent);
    };
    let (name, package) = match detection.package_manager {
        PackageManager::Pnpm => ("pnpm", "pnpm"),
        PackageManager::Yarn => ("yarn", "yarn"),
        PackageManager::YarnBerry => ("yarn", "@yarnpkg/cli-dist"),
        PackageManager::Npm => ("npm", "npm"),
        PackageManager::Bun => {
            return Ok(Plan::Unavailable(format!(
                "bun@{version} is not fetched (its npm package needs a platform binary installed \
                 by a script)"
            )));
        }
    };
    if !is_exact_version(version) {
        return Ok(Plan::Unavailable(format!(
            "\"{field}\" does not name an exact version"
        )));
    }
    let hash = match &detection.requested_hash {
        None => None,
        Some(hash) => Some(parse_hash(hash).ok_or_else(|| {
            format!(
                "The packageManager field \"{field}\" carries a hash that cannot be checked: \
                 expected <algorithm>.<hex digest> with one of {}",
                ALGORITHMS.join(", ")
            )
        })?),
    };
    Ok(Plan::Fetch(Wanted {
        name,
        package,
        version: version.clone(),
        hash,
    }))
}

/// `1.2.3` or `1.2.3-rc.1`: digits and dots, then an optional pre-release of safe characters
/// (the version becomes a directory name).
fn is_exact_version(version: &str) -> bool {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && pre.is_none_or(|pre| {
            !pre.is_empty()
                && pre
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
}

/// `sha512.<hex>` into the algorithm and the lower-case digest.
fn parse_hash(hash: &str) -> Option<(String, String)> {
    let (algorithm, hex) = hash.split_once('.')?;
    let algorithm = algorithm.to_ascii_lowercase();
    (ALGORITHMS.contains(&algorithm.as_str())
        && !hex.is_empty()
        && hex.chars().all(|c| c.is_ascii_hexdigit()))
    .then(|| (algorithm, hex.to_ascii_lowercase()))
}

/// Whether `dir` holds a whole copy.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE).is_file() && dir.join(TARBALL).is_file()
}

/// The directory whose links go first on the build's `PATH`.
pub fn bin_dir(dir: &Path) -> PathBuf {
    dir.join("bin")
}

/// The `bin` entries of the unpacked package in `staging/package`: name and path inside the
/// package. A name with a path separator, or a path leaving the package, is an error.
fn bins(staging: &Path, package: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let manifest_path = staging.join("package").join("package.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", manifest_path.display()))?;
    let own_name = package.rsplit('/').next().unwrap_or(package).to_owned();
    let entries: Vec<(String, String)> = match manifest.get("bin") {
        Some(Value::String(path)) => vec![(own_name, path.clone())],
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(name, path)| Some((name.clone(), path.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    };
    if entries.is_empty() {
        return Err(format!("{package} declares no bin in its package.json"));
    }
    entries
        .into_iter()
        .map(|(name, path)| {
            let relative = PathBuf::from(&path);
            let inside = relative
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if name.is_empty() || name.contains('/') || name.starts_with('.') || !inside {
                return Err(format!("{package} declares an unusable bin {name}: {path}"));
            }
            Ok((name, relative))
        })
        .collect()
}

/// Links each of the package's bins from `staging/bin` (relative links, so the directory can
/// be renamed) and makes their targets executable.
pub fn link_bins(staging: &Path, package: &str) -> Result<Vec<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = bin_dir(staging);
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let mut names = Vec::new();
    for (name, relative) in bins(staging, package)? {
        let target = staging.join("package").join(&relative);
        let meta = std::fs::metadata(&target)
            .map_err(|e| format!("{package}'s bin {name} ({}): {e}", target.display()))?;
        let mut permissions = meta.permissions();
        permissions.set_mode(permissions.mode() | 0o755);
        std::fs::set_permissions(&target, permissions)
            .map_err(|e| format!("cannot make {} executable: {e}", target.display()))?;
        let link = bin.join(&name);
        std::os::unix::fs::symlink(Path::new("../package").join(&relative), &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
        names.push(name);
    }
    Ok(names)
}

/// Marks `staging` whole and moves it to `dir`. When another build got there first, its copy
/// is kept and `staging` removed.
pub fn finish(staging: &Path, dir: &Path) -> Result<(), String> {
    std::fs::write(staging.join(COMPLETE), "")
        .map_err(|e| format!("cannot write {}: {e}", staging.join(COMPLETE).display()))?;
    if is_complete(dir) {
        let _ = std::fs::remove_dir_all(staging);
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    match std::fs::rename(staging, dir) {
        Ok(()) => Ok(()),
        Err(_) if is_complete(dir) => {
            let _ = std::fs::remove_dir_all(staging);
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            dir.display()
        )),
    }
}

/// The Node program that prints the hex digest of a file: `node -e <this> <algorithm> <file>`.
pub const HASH_SCRIPT: &str = "process.stdout.write(require('crypto').createHash(process.argv[1])\
    .update(require('fs').readFileSync(process.argv[2])).digest('hex'))";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::package_manager::detect_with;

    fn plan_of(field: &str) -> Result<Plan, String> {
        let manifest = serde_json::json!({ "packageManager": field });
        plan(&detect_with(Path::new("/nonexistent"), Some(&manifest)).unwrap())
    }

    #[test]
    fn each_package_manager_comes_from_its_own_package() {
        let cases = [
            ("pnpm@9.15.0", "pnpm", "pnpm"),
            ("yarn@1.22.22", "yarn", "yarn"),
            ("yarn@4.5.0", "yarn", "@yarnpkg/cli-dist"),
            ("npm@10.9.2", "npm", "npm"),
        ];
        for (field, name, package) in cases {
            let Ok(Plan::Fetch(wanted)) = plan_of(field) else {
                panic!("{field}: {:?}", plan_of(field));
            };
            assert_eq!((wanted.name, wanted.package), (name, package), "{field}");
            assert_eq!(wanted.key(), field);
            assert_eq!(wanted.hash, None);
        }
        let Ok(Plan::Fetch(berry)) = plan_of("yarn@4.5.0") else {
            panic!("berry")
        };
        assert_eq!(berry.spec(), "@yarnpkg/cli-dist@4.5.0");
        assert_eq!(
            berry.dir(Path::new("/b/.cache/pm")),
            Path::new("/b/.cache/pm/yarn@4.5.0")
        );
    }

    #[test]
    fn hashes_are_parsed_and_bad_ones_refused() {
        let Ok(Plan::Fetch(wanted)) = plan_of("pnpm@9.1.0+sha512.ABCdef01") else {
            panic!("hash")
        };
        assert_eq!(
            wanted.hash,
            Some(("sha512".to_owned(), "abcdef01".to_owned()))
        );
        for bad in [
            "pnpm@9.1.0+md5.abcd",
            "pnpm@9.1.0+sha512.xyz",
            "pnpm@9.1.0+abcd",
        ] {
            let error = plan_of(bad).unwrap_err();
            assert!(
                error.contains("carries a hash that cannot be checked"),
                "{error}"
            );
        }
    }

    #[test]
    fn what_cannot_be_fetched_falls_back() {
        assert_eq!(plan_of("pnpm").unwrap(), Plan::Absent);
        for (field, reason) in [
            ("pnpm@^9", "does not name an exact version"),
            ("pnpm@9", "does not name an exact version"),
            ("pnpm@9.1.0/../../x", "does not name an exact version"),
            ("bun@1.1.0", "needs a platform binary"),
        ] {
            let Ok(Plan::Unavailable(why)) = plan_of(field) else {
                panic!("{field}")
            };
            assert!(why.contains(reason), "{field}: {why}");
        }
        assert!(matches!(plan_of("pnpm@10.0.0-rc.1"), Ok(Plan::Fetch(_))));
        let none = detect_with(Path::new("/nonexistent"), Some(&serde_json::json!({}))).unwrap();
        assert_eq!(plan(&none).unwrap(), Plan::Absent);
    }

    #[test]
    fn bins_are_linked_and_a_copy_is_finished_once() {
        let root = std::env::temp_dir().join(format!("runner-provision-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let staging = root.join(".staging");
        std::fs::create_dir_all(staging.join("package/bin")).unwrap();
        std::fs::write(
            staging.join("package/package.json"),
            r#"{"bin":{"pnpm":"bin/pnpm.cjs","pnpx":"./bin/pnpx.cjs"}}"#,
        )
        .unwrap();
        std::fs::write(staging.join("package/bin/pnpm.cjs"), "").unwrap();
        std::fs::write(staging.join("package/bin/pnpx.cjs"), "").unwrap();
        std::fs::write(staging.join(TARBALL), "").unwrap();
        assert_eq!(link_bins(&staging, "pnpm").unwrap(), ["pnpm", "pnpx"]);
        let dir = root.join("pnpm@9.15.0");
        finish(&staging, &dir).unwrap();
        assert!(is_complete(&dir));
        assert!(!staging.exists());
        assert!(
            bin_dir(&dir).join("pnpm").is_file(),
            "the link resolves after the move"
        );

        std::fs::create_dir_all(staging.join("package")).unwrap();
        std::fs::write(
            staging.join("package/package.json"),
            r#"{"bin":{"x":"../outside.js"}}"#,
        )
        .unwrap();
        assert!(
            link_bins(&staging, "x")
                .unwrap_err()
                .contains("unusable bin")
        );
        std::fs::write(staging.join("package/package.json"), "{}").unwrap();
        assert!(
            link_bins(&staging, "x")
                .unwrap_err()
                .contains("declares no bin")
        );
        // A second finisher keeps the first copy.
        std::fs::write(staging.join(TARBALL), "").unwrap();
        finish(&staging, &dir).unwrap();
        assert!(!staging.exists());
        assert!(bin_dir(&dir).join("pnpm").is_file());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
