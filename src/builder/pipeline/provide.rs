//! The package manager at the version the project names, made ready for one build: what runs
//! is what was verified.
//!
//! 1. The expected digest comes from outside the cache: the hash pinned in package.json, else
//!    the registry's `dist.integrity` for that version (`npm view`, once per runner; see
//!    [`provision::KnownIntegrities`]).
//! 2. The cached tarball is copied into a private directory of this build, hashed there and
//!    compared with it. A tarball that does not match, or an entry that cannot be read safely,
//!    is discarded with a warning and fetched again (`npm pack`), and the fetched tarball must
//!    match too.
//! 3. The verified copy is unpacked with `tar` in that private directory, its bins linked
//!    (see [`pm_cache::link_bins`]), and that `bin/` goes first on the build's `PATH`. The
//!    directory is removed when the build ends.
//!
//! `npm` runs with an empty cache of its own and `--prefix` set to the private directory, so
//! neither a poisoned shared npm cache nor an `.npmrc` planted in a folder above it (npm reads
//! the one of the nearest folder with a package.json as project configuration) can stand in
//! for the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Run, Stop, how};
use crate::builder::excerpt::{error_excerpt, first_error_line};
use crate::builder::package_manager::{Detection, find_in_path};
use crate::builder::pm_cache::{self, Cached, PmCache};
use crate::builder::provision::{self, Authority, Expected, Integrity, Plan, Wanted};
use crate::logs::Stream;

/// Why a package manager could not be made ready.
pub(super) enum Fetch {
    /// The build stops (timeout, cancel, a hash that does not match the pinned one).
    Stop(Stop),
    /// It cannot be had; the one on `PATH` runs instead.
    Unavailable(String),
}

impl From<Stop> for Fetch {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Failed(reason) => Fetch::Unavailable(reason),
            other => Fetch::Stop(other),
        }
    }
}

impl Run<'_> {
    /// The package manager at the version the project names, when it names one: the `bin`
    /// directory of this build's verified private copy (fetched now if need be). `None`: the
    /// one on `PATH` runs (the project names no version, or it cannot be had; a warning says
    /// why).
    pub(super) async fn provide(
        &mut self,
        detection: &Detection,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<PathBuf>, Stop> {
        let command = detection.package_manager.command();
        let wanted = match provision::plan(detection).map_err(Stop::Failed)? {
            Plan::Absent => return Ok(None),
            Plan::Unavailable(reason) => {
                self.say(format!("Warning: {reason}; using {command} from PATH"));
                return Ok(None);
            }
            Plan::Fetch(wanted) => wanted,
        };
        match self.prepare(&wanted, env).await {
            Ok(bin) => Ok(Some(bin)),
            Err(Fetch::Stop(stop)) => Err(stop),
            Err(Fetch::Unavailable(reason)) => {
                self.say(format!(
                    "Warning: cannot fetch {}: {reason}; using {command} from PATH",
                    wanted.spec()
                ));
                Ok(None)
            }
        }
    }

    /// Steps 1 to 3 of the module doc; the `bin` directory of the private copy.
    async fn prepare(
        &mut self,
        wanted: &Wanted,
        env: &BTreeMap<String, String>,
    ) -> Result<PathBuf, Fetch> {
        let cache =
            PmCache::open(self.settings.caches.package_managers()).map_err(Fetch::Unavailable)?;
        let copy = cache
            .private_copy(&self.request.build_id)
            .map_err(Fetch::Unavailable)?;
        let dir = copy.dir().to_path_buf();
        let tarball = copy.tarball();
        let bin = copy.bin_dir();
        let npm_cache = copy.npm_cache();
        // Held by the run until the build ends, whatever happens next; dropping it removes it.
        self.pm_copy = Some(copy);

        let expected = self.expected(wanted, &dir, &npm_cache, env).await?;
        let reused = match cache.copy_cached(wanted, &tarball) {
            Ok(Cached::Missing) => false,
            Ok(Cached::Copied) => match self.mismatch(&expected, &tarball, wanted, env).await? {
                None => true,
                Some(actual) => {
                    let reason = format!(
                        "it does not match {}: {} {actual} instead of {}",
                        expected.authority, expected.integrity.algorithm, expected.integrity.hex
                    );
                    self.discard_untrusted(&cache, wanted, &tarball, &reason);
                    false
                }
            },
            Err(reason) => {
                self.discard_untrusted(&cache, wanted, &tarball, &reason);
                false
            }
        };
        if !reused {
            self.fetch(wanted, &dir, &npm_cache, env).await?;
            if let Some(actual) = self.mismatch(&expected, &tarball, wanted, env).await? {
                let message = format!(
                    "{} does not match {}: {} {actual} instead of {}",
                    wanted.spec(),
                    expected.authority,
                    expected.integrity.algorithm,
                    expected.integrity.hex
                );
                return Err(match expected.authority {
                    Authority::PackageJson => Fetch::Stop(Stop::Failed(message)),
                    Authority::Registry => Fetch::Unavailable(message),
                });
            }
            if let Err(why) = cache.store(wanted, &tarball) {
                self.say(format!(
                    "Warning: cannot keep {} in the cache: {why}",
                    wanted.key()
                ));
            }
        }
        self.unpack(&dir, env).await?;
        pm_cache::link_bins(&dir, wanted.package).map_err(Fetch::Unavailable)?;
        let entry = cache.entry(wanted);
        let origin = if reused {
            format!("using the copy cached in {}", entry.display())
        } else {
            format!(
                "fetched {} from the npm registry into {}",
                wanted.spec(),
                entry.display()
            )
        };
        self.say(format!(
            "Package manager {}: {origin}, its {} hash checked against {}, unpacked for this \
             build into {}",
            wanted.key(),
            expected.integrity.algorithm,
            expected.authority,
            dir.display()
        ));
        Ok(bin)
    }

    /// Removes a cache entry that failed verification (and this build's copy of it), with a
    /// warning saying why.
    fn discard_untrusted(&self, cache: &PmCache, wanted: &Wanted, copied: &Path, reason: &str) {
        self.say(format!(
            "Warning: the cached {} in {} cannot be trusted ({reason}): discarded, fetching it \
             again",
            wanted.key(),
            cache.entry(wanted).display()
        ));
        if let Err(why) = cache.discard(wanted) {
            self.say(format!("Warning: {why}"));
        }
        let _ = std::fs::remove_file(copied);
    }

    /// The digest the tarball must have: the one package.json pins, else the registry's.
    async fn expected(
        &mut self,
        wanted: &Wanted,
        dir: &Path,
        npm_cache: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Expected, Fetch> {
        if let Some(integrity) = &wanted.hash {
            return Ok(Expected {
                integrity: integrity.clone(),
                authority: Authority::PackageJson,
            });
        }
        let spec = wanted.spec();
        if let Some(integrity) = self.settings.integrities.get(&spec) {
            return Ok(Expected {
                integrity,
                authority: Authority::Registry,
            });
        }
        let npm = self.helper("npm", env)?;
        let prefix = dir.to_string_lossy().into_owned();
        let args = [
            "view",
            &spec,
            "dist.integrity",
            "dist.shasum",
            "--json",
            "--prefix",
            &prefix,
            "--loglevel=error",
        ];
        let npm_env = npm_env(env, npm_cache);
        let (exit, output) = self
            .quiet(
                &npm,
                &args,
                dir,
                &npm_env,
                "asking the registry for the package manager's integrity",
            )
            .await?;
        if !exit.success() {
            return Err(Fetch::Unavailable(format!(
                "npm view {spec} {}{}",
                how(&exit),
                first_error_line(&output)
            )));
        }
        let printed: Vec<&str> = output
            .iter()
            .filter(|e| e.stream() == Stream::Stdout)
            .map(|e| e.line())
            .collect();
        let integrity =
            Integrity::from_registry(&printed.join("\n")).map_err(Fetch::Unavailable)?;
        self.settings
            .integrities
            .remember(spec.clone(), integrity.clone());
        Ok(Expected {
            integrity,
            authority: Authority::Registry,
        })
    }

    /// `npm pack`s the package into `dir` as [`pm_cache::TARBALL`].
    async fn fetch(
        &mut self,
        wanted: &Wanted,
        dir: &Path,
        npm_cache: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<(), Fetch> {
        let npm = self.helper("npm", env)?;
        let destination = dir.to_string_lossy().into_owned();
        let spec = wanted.spec();
        let args = [
            "pack",
            &spec,
            "--pack-destination",
            &destination,
            "--prefix",
            &destination,
            "--loglevel=error",
        ];
        let npm_env = npm_env(env, npm_cache);
        let (exit, output) = self
            .quiet(&npm, &args, dir, &npm_env, "fetching the package manager")
            .await?;
        if !exit.success() {
            return Err(Fetch::Unavailable(format!(
                "npm pack {spec} {}{}",
                how(&exit),
                first_error_line(&output)
            )));
        }
        let packed = std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .find(|p| {
                p.extension().is_some_and(|ext| ext == "tgz")
                    && p.file_name().is_some_and(|name| name != pm_cache::TARBALL)
            })
            .ok_or_else(|| Fetch::Unavailable("npm pack wrote no tarball".to_owned()))?;
        let tarball = dir.join(pm_cache::TARBALL);
        std::fs::rename(&packed, &tarball)
            .map_err(|e| Fetch::Unavailable(format!("cannot rename {}: {e}", packed.display())))
    }

    /// Unpacks the verified tarball in the private directory `dir`.
    async fn unpack(&mut self, dir: &Path, env: &BTreeMap<String, String>) -> Result<(), Fetch> {
        let tar = self.helper("tar", env)?;
        let (exit, output) = self
            .quiet(
                &tar,
                &["-xzf", pm_cache::TARBALL, "--no-same-owner"],
                dir,
                env,
                "unpacking the package manager",
            )
            .await?;
        if !exit.success() {
            return Err(Fetch::Unavailable(format!(
                "tar {}: {}",
                how(&exit),
                error_excerpt(&output).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// `None` when `tarball` has the expected digest, else the digest it has. Computing it
    /// needs Node: without it a pinned hash fails the build (it cannot be checked), a
    /// registry digest makes the package manager unavailable.
    async fn mismatch(
        &mut self,
        expected: &Expected,
        tarball: &Path,
        wanted: &Wanted,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<String>, Fetch> {
        let algorithm = expected.integrity.algorithm.as_str();
        let cannot_check = |why: String| {
            let message = format!(
                "Cannot check the {algorithm} hash of {}: {why}",
                wanted.spec()
            );
            match expected.authority {
                Authority::PackageJson => Fetch::Stop(Stop::Failed(message)),
                Authority::Registry => Fetch::Unavailable(message),
            }
        };
        let path = env.get("PATH").map(String::as_str);
        let node = find_in_path("node", path, &self.request.workdir)
            .ok_or_else(|| cannot_check("node is not on PATH".to_owned()))?;
        let file = tarball.to_string_lossy().into_owned();
        let cwd = tarball.parent().unwrap_or(tarball).to_path_buf();
        let (exit, output) = self
            .quiet(
                &node,
                &["-e", provision::HASH_SCRIPT, algorithm, &file],
                &cwd,
                env,
                "checking the package manager's hash",
            )
            .await
            .map_err(|stop| match stop {
                Stop::Failed(why) => cannot_check(why),
                other => Fetch::Stop(other),
            })?;
        let digest = output
            .iter()
            .find(|e| e.stream() == Stream::Stdout)
            .map(|e| e.line().trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !exit.success() || digest.is_empty() {
            return Err(cannot_check(format!("node {}", how(&exit))));
        }
        Ok((digest != expected.integrity.hex).then_some(digest))
    }

    /// `program` (npm, tar) on the build's `PATH`.
    fn helper(&self, program: &str, env: &BTreeMap<String, String>) -> Result<PathBuf, Fetch> {
        let path = env.get("PATH").map(String::as_str);
        find_in_path(program, path, &self.request.workdir)
            .ok_or_else(|| Fetch::Unavailable(format!("{program} is not on PATH")))
    }
}

/// The build's variables for a helper `npm`: its own empty cache, no `NODE_ENV`.
fn npm_env(env: &BTreeMap<String, String>, npm_cache: &Path) -> BTreeMap<String, String> {
    let mut npm_env = env.clone();
    npm_env.insert(
        "npm_config_cache".to_owned(),
        npm_cache.to_string_lossy().into_owned(),
    );
    npm_env.remove("NODE_ENV");
    npm_env
}
