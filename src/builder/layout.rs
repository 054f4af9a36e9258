//! The disk layout under `buildDir`, and the checks that keep every write inside it.
//!
//! ```text
//! <buildDir>/
//!   <build.id>/          one working copy per build (cleaned before the source is copied in)
//!   .cache/npm/          npm_config_cache
//!   .cache/pnpm-store/   pnpm's content-addressed store
//!   .cache/yarn/         YARN_CACHE_FOLDER (yarn 1 and berry)
//!   .cache/yarn-berry/   YARN_GLOBAL_FOLDER (berry's global cache)
//!   .cache/bun/          BUN_INSTALL_CACHE_DIR
//!   .cache/pm/           0700: package-manager tarballs and the builds' private copies (see
//!                        `pm_cache`)
//!   .runner/             the process journal (see `process::journal`)
//! ```
//!
//! Ids become directory names, so SPEC §3's id rules are checked here before anything touches
//! the disk. Names starting with `.` are refused too: they would collide with `.cache` and
//! `.runner` (cleaning a build called `.cache` would wipe every cache).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::package_manager::PackageManager;
use crate::error::{Error, Result};
use crate::validate;

/// The directory under `buildDir` that holds the package managers' caches.
pub const CACHE_DIR: &str = ".cache";

/// `<build_dir>/<build_id>`, after checking the id and that the result is a direct child of
/// `build_dir`.
pub fn build_path(build_dir: &Path, build_id: &str) -> Result<PathBuf> {
    validate::id("build.id", build_id)?;
    let path = build_dir.join(build_id);
    if path.parent() != Some(build_dir) || path.file_name() != Some(build_id.as_ref()) {
        return Err(Error::PathOutsideBuildDir {
            path,
            build_dir: build_dir.to_path_buf(),
        });
    }
    Ok(path)
}

/// Empties `<build_dir>/<build_id>` (creating `build_dir` and it as needed) and returns its
/// path, ready for a source provider to copy into. A symlink there is removed, never followed.
pub async fn clean_build_dir(build_dir: &Path, build_id: &str) -> Result<PathBuf> {
    let path = build_path(build_dir, build_id)?;
    let target = path.clone();
    blocking(&path, move || {
        remove_entry(&target)?;
        std::fs::create_dir_all(&target).map_err(|e| Error::io("create", &target, &e))
    })
    .await?;
    Ok(path)
}

/// Removes `<build_dir>/<build_id>`; returns whether there was anything to remove.
pub async fn remove_build_dir(build_dir: &Path, build_id: &str) -> Result<bool> {
    let path = build_path(build_dir, build_id)?;
    let target = path.clone();
    blocking(&path, move || remove_entry(&target)).await
}

/// Removes a directory tree, a file or a symlink (not its target); false when nothing was there.
fn remove_entry(path: &Path) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(Error::io("inspect", path, &error)),
    };
    let removed = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| Error::io("remove", path, &e))?;
    Ok(true)
}

/// Runs blocking file-system work on `path` off the async threads.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("clean", path, &std::io::Error::other(e)))?
}

/// The package managers' caches of one runner, shared by all its builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caches {
    root: PathBuf,
}

impl Caches {
    /// Caches under `root` (normally `<buildDir>/.cache`).
    pub fn new(root: PathBuf) -> Self {
        Caches { root }
    }

    /// The caches of a runner on `build_dir`.
    pub fn for_build_dir(build_dir: &Path) -> Self {
        Caches::new(build_dir.join(CACHE_DIR))
    }

    /// The directory holding every cache.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The variables that point `pm` at its cache, and only those it reads (another package
    /// manager would warn about a variable it does not know, as npm does about
    /// `npm_config_store_dir`). pnpm up to 10 reads `npm_config_store_dir`, pnpm 11+
    /// `pnpm_config_store_dir`: `version` (what the binary reported) picks one; both when it is
    /// unknown. Berry keeps its global cache under `YARN_GLOBAL_FOLDER` and a project cache
    /// under `YARN_CACHE_FOLDER`; yarn 1 reads only the latter.
    pub fn env(&self, pm: PackageManager, version: Option<&str>) -> BTreeMap<String, String> {
        let dir = |name: &str| self.root.join(name).to_string_lossy().into_owned();
        let keys: &[(&str, &str)] = match pm {
            PackageManager::Npm => &[("npm_config_cache", "npm")],
            PackageManager::Pnpm => match version.and_then(super::package_manager::major_version) {
                Some(major) if major >= 11 => &[("pnpm_config_store_dir", "pnpm-store")],
                Some(_) => &[("npm_config_store_dir", "pnpm-store")],
                None => &[
                    ("npm_config_store_dir", "pnpm-store"),
                    ("pnpm_config_store_dir", "pnpm-store"),
                ],
            },
            PackageManager::Yarn => &[("YARN_CACHE_FOLDER", "yarn")],
            PackageManager::YarnBerry => &[
                ("YARN_CACHE_FOLDER", "yarn"),
                ("YARN_GLOBAL_FOLDER", "yarn-berry"),
            ],
            PackageManager::Bun => &[("BUN_INSTALL_CACHE_DIR", "bun")],
        };
        keys.iter()
            .map(|(key, name)| ((*key).to_owned(), dir(name)))
            .collect()
    }

    /// Where package managers fetched at the version a project names are kept
    /// (`<root>/pm/<name>@<version>/package.tgz`; see `pm_cache`).
    pub fn package_managers(&self) -> PathBuf {
        self.root.join("pm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_spec_rules() {
        let long = "x".repeat(129);
        let cases = [
            ("", "Invalid build.id: must not be empty"),
            (
                "a/b",
                "Invalid build.id: must not contain a path separator (got 'a/b')",
            ),
            (
                "../x",
                "Invalid build.id: must not contain a path separator (got '../x')",
            ),
            (
                "a\\b",
                "Invalid build.id: must not contain a path separator (got 'a\\b')",
            ),
            ("..", "Invalid build.id: must not contain '..' (got '..')"),
            (
                "a..b",
                "Invalid build.id: must not contain '..' (got 'a..b')",
            ),
            ("a\0b", "Invalid build.id: must not contain a NUL character"),
            (
                ".cache",
                "Invalid build.id: must not start with '.', which is reserved for the runner's own directories (got '.cache')",
            ),
            (
                long.as_str(),
                "Invalid build.id: must be at most 128 characters (got 129)",
            ),
        ];
        for (id, message) in cases {
            assert_eq!(
                validate::id("build.id", id).unwrap_err().to_string(),
                message,
                "{id:?}"
            );
        }
        for ok in [
            "b1",
            "3f2a-uuid",
            "x".repeat(128).as_str(),
            "ünïcødé",
            "a.b",
        ] {
            assert_eq!(validate::id("build.id", ok), Ok(()), "{ok:?}");
        }
        assert!(
            validate::id("deployment.id", "")
                .unwrap_err()
                .to_string()
                .starts_with("Invalid deployment.id")
        );
    }

    #[test]
    fn build_paths_are_direct_children() {
        let root = Path::new("/srv/builds");
        assert_eq!(build_path(root, "b1").unwrap(), root.join("b1"));
        for bad in ["../etc", "/etc", "..", ".", "", "a/../../b"] {
            assert!(build_path(root, bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn cleaning_empties_the_directory_and_refuses_outside_paths() {
        let root = std::env::temp_dir().join(format!("runner-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let outside = root.with_extension("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();

        let dir = clean_build_dir(&root, "b1").await.unwrap();
        assert_eq!(dir, root.join("b1"));
        std::fs::write(dir.join("stale"), "x").unwrap();
        clean_build_dir(&root, "b1").await.unwrap();
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none());

        // A symlink in place of a build directory is removed, not followed.
        std::os::unix::fs::symlink(&outside, root.join("b2")).unwrap();
        clean_build_dir(&root, "b2").await.unwrap();
        assert!(outside.join("keep").exists());

        for bad in ["../runner-layout-outside", "..", ""] {
            assert!(clean_build_dir(&root, bad).await.is_err(), "{bad:?}");
            assert!(remove_build_dir(&root, bad).await.is_err(), "{bad:?}");
        }
        assert!(outside.join("keep").exists());

        assert!(remove_build_dir(&root, "b1").await.unwrap());
        assert!(!remove_build_dir(&root, "b1").await.unwrap());
        assert!(!dir.exists());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn each_package_manager_gets_only_its_own_cache_variables() {
        use PackageManager::*;
        let caches = Caches::for_build_dir(Path::new("/b"));
        assert_eq!(caches.root(), Path::new("/b/.cache"));
        let keys = |pm, version| -> Vec<String> {
            let env = caches.env(pm, version);
            assert!(env.values().all(|v| v.starts_with("/b/.cache/")));
            env.into_keys().collect()
        };
        assert_eq!(keys(Npm, Some("11.1.0")), ["npm_config_cache"]);
        assert_eq!(caches.env(Npm, None)["npm_config_cache"], "/b/.cache/npm");
        assert_eq!(keys(Pnpm, Some("9.15.0")), ["npm_config_store_dir"]);
        assert_eq!(keys(Pnpm, Some("12.0.0")), ["pnpm_config_store_dir"]);
        assert_eq!(
            keys(Pnpm, None),
            ["npm_config_store_dir", "pnpm_config_store_dir"]
        );
        assert_eq!(
            caches.env(Pnpm, None)["pnpm_config_store_dir"],
            "/b/.cache/pnpm-store"
        );
        assert_eq!(keys(Yarn, None), ["YARN_CACHE_FOLDER"]);
        assert_eq!(
            keys(YarnBerry, None),
            ["YARN_CACHE_FOLDER", "YARN_GLOBAL_FOLDER"]
        );
        assert_eq!(
            caches.env(Bun, None)["BUN_INSTALL_CACHE_DIR"],
            "/b/.cache/bun"
        );
        assert_eq!(caches.package_managers(), Path::new("/b/.cache/pm"));
    }
}
