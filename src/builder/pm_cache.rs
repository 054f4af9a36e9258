//! The package-manager cache on disk, and the private copy each build runs its package manager
//! from.
//!
//! ```text
//! <buildDir>/.cache/pm/                     0700
//!   pnpm@9.15.0/package.tgz                 the tarball as fetched: untrusted, hashed before each use
//!   .run/<pid>-<build.id>-<random>/         0700, one build's own copy, removed when the build ends
//!     package.tgz                           the tarball that was hashed…
//!     package/                              …unpacked here by tar…
//!     bin/pnpm -> ../package/bin/pnpm.cjs   …and run from here (first on the build's PATH)
//!     npm-cache/                            npm's cache while asking the registry (not the shared one)
//! ```
//!
//! Everything under `buildDir` can be written by the builds and servers the runner starts, so
//! nothing here trusts what it finds: entries are opened with `O_NOFOLLOW` (and `O_NONBLOCK`,
//! so a FIFO planted in their place cannot hang a build), a symlink or a file where a directory
//! belongs is removed, a bin is reached with `openat` one component at a time without
//! following any link and made executable through its own descriptor (`fchmod`), never through
//! a path.
//!
//! # Caveats
//! - Same uid: 0700 keeps other users out, not the runner's own children. A build script that
//!   runs *at the same moment* as another build can still write into that build's private
//!   copy between the hash and the run; only a sandbox for builds closes that window. What this
//!   module closes is lasting poisoning: nothing an earlier build left in the cache runs
//!   without being verified first.
//! - Cost: every build copies the tarball (pnpm 9: 4 MB), hashes it (about 0.1 s with Node),
//!   unpacks it (21 MB in 900 files, about 0.2 s) and removes the copy when it ends, instead of
//!   running a shared unpacked tree that any build could have changed.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use serde_json::Value;

use super::provision::Wanted;

/// The tarball's name in a cache entry and in a private copy.
pub const TARBALL: &str = "package.tgz";

/// The directory under the cache that holds the builds' private copies.
const RUN_DIR: &str = ".run";

/// The largest tarball accepted (npm's own is about 3 MB, pnpm's about 5 MB).
const MAX_TARBALL_BYTES: u64 = 128 << 20;

/// The largest package.json accepted in an unpacked package.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// What [`PmCache::copy_cached`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// No cached tarball for that version.
    Missing,
    /// The cached tarball was copied (not yet verified).
    Copied,
}

/// The cache of package-manager tarballs (`<buildDir>/.cache/pm`).
#[derive(Debug, Clone)]
pub struct PmCache {
    root: PathBuf,
}

impl PmCache {
    /// The cache at `root`, created (0700) as need be. Its parent (`.cache`) must not be a
    /// symlink; a symlink or a file at `root` itself, or at its `.run`, is replaced by a
    /// directory.
    pub fn open(root: PathBuf) -> Result<Self, String> {
        if let Some(parent) = root.parent() {
            match std::fs::symlink_metadata(parent) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(format!(
                        "{} is a symbolic link: the cache is not used",
                        parent.display()
                    ));
                }
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                Err(error) => return Err(format!("cannot inspect {}: {error}", parent.display())),
            }
        }
        ensure_private_dir(&root)?;
        ensure_private_dir(&root.join(RUN_DIR))?;
        let cache = PmCache { root };
        cache.sweep_orphans();
        Ok(cache)
    }

    /// Removes the private copies of runners that are gone (a host killed mid-build never
    /// dropped them): their names start with the pid of the runner that made them, and that
    /// process no longer exists. A reused pid only keeps an orphan a while longer; the copies
    /// of a live runner are never touched. An entry without a pid was not made by a runner and
    /// goes too.
    fn sweep_orphans(&self) {
        let run_dir = self.root.join(RUN_DIR);
        let Ok(entries) = std::fs::read_dir(&run_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|name| name.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<i32>().ok())
                .filter(|pid| *pid > 0);
            let orphaned = owner.is_none_or(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH)
            });
            if orphaned {
                let path = entry.path();
                let _ = match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                    _ => std::fs::remove_file(&path),
                };
            }
        }
    }

    /// The directory of `wanted`'s cached tarball (`<root>/pnpm@9.15.0`).
    pub fn entry(&self, wanted: &Wanted) -> PathBuf {
        wanted.dir(&self.root)
    }

    /// A new private directory for one build (`<root>/.run/<pid>-<build_id>-<random>`, 0700;
    /// the runner's pid lets a later runner sweep it if this one dies first).
    pub fn private_copy(&self, build_id: &str) -> Result<PrivateCopy, String> {
        let name = format!(
            "{}-{build_id}-{:016x}",
            std::process::id(),
            crate::ids::random_u128() as u64
        );
        let dir = self.root.join(RUN_DIR).join(name);
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(PrivateCopy { dir })
    }

    /// Copies `wanted`'s cached tarball to `into` without following a link at its place. An
    /// error says why the entry is unusable (a symlink, not a regular file, too large).
    pub fn copy_cached(&self, wanted: &Wanted, into: &Path) -> Result<Cached, String> {
        let entry = self.entry(wanted);
        match std::fs::symlink_metadata(&entry) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", entry.display())),
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(error) => return Err(format!("cannot inspect {}: {error}", entry.display())),
        }
        let path = entry.join(TARBALL);
        let source = match open_no_follow(&path, OFlag::empty()) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(error) => return Err(open_error(&path, &error)),
        };
        let meta = source
            .metadata()
            .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        copy_capped(source, &path, into)?;
        Ok(Cached::Copied)
    }

    /// Removes `wanted`'s entry, whatever it holds (a symlink is removed, not followed).
    pub fn discard(&self, wanted: &Wanted) -> Result<(), String> {
        let entry = self.entry(wanted);
        let removed = match std::fs::symlink_metadata(&entry) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&entry),
            Ok(_) => std::fs::remove_file(&entry),
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(error) => Err(error),
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", entry.display()))
    }

    /// Keeps a verified tarball as `wanted`'s entry, replacing whatever was there. The file is
    /// written under a temporary name and renamed, so a concurrent build sees the old tarball,
    /// none, or the whole new one.
    pub fn store(&self, wanted: &Wanted, verified: &Path) -> Result<(), String> {
        self.discard(wanted)?;
        let entry = self.entry(wanted);
        ensure_private_dir(&entry)?;
        let source =
            open_no_follow(verified, OFlag::empty()).map_err(|e| open_error(verified, &e))?;
        let temporary = entry.join(format!(
            ".{TARBALL}.{:016x}",
            crate::ids::random_u128() as u64
        ));
        copy_capped(source, verified, &temporary)?;
        let target = entry.join(TARBALL);
        std::fs::rename(&temporary, &target).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            format!(
                "cannot move {} to {}: {e}",
                temporary.display(),
                target.display()
            )
        })
    }
}

/// One build's private directory: the tarball it verified, unpacked, and the links to its
/// bins. Removed (a few MB of files) when dropped, that is when the build ends.
#[derive(Debug)]
pub struct PrivateCopy {
    dir: PathBuf,
}

impl PrivateCopy {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the tarball goes before it is hashed and unpacked.
    pub fn tarball(&self) -> PathBuf {
        self.dir.join(TARBALL)
    }

    /// The directory whose links go first on the build's `PATH`.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// npm's cache while it fetches or asks the registry: empty, so that nothing another
    /// build left in the shared npm cache stands in for the registry.
    pub fn npm_cache(&self) -> PathBuf {
        self.dir.join("npm-cache")
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `path` a directory only its owner can use (0700): a symlink or a file there is
/// removed first, an existing directory has its mode set through its own descriptor.
pub fn ensure_private_dir(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?,
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot inspect {}: {error}", path.display())),
    }
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
        Err(error) => return Err(format!("cannot create {}: {error}", path.display())),
    }
    let dir = open_no_follow(path, OFlag::O_DIRECTORY).map_err(|e| open_error(path, &e))?;
    dir.set_permissions(Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private: {e}", path.display()))
}

/// Opens `path` for reading without following a symlink at its last component (nor blocking
/// on a FIFO).
fn open_no_follow(path: &Path, extra: OFlag) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | extra).bits())
        .open(path)
}

/// An open failure in words. `O_NOFOLLOW` meets a symlink with `ELOOP`, or with `ENOTDIR`
/// alongside `O_DIRECTORY`: both are told as what they are.
fn open_error(path: &Path, error: &std::io::Error) -> String {
    let refused_link = [Errno::ELOOP as i32, Errno::ENOTDIR as i32]
        .contains(&error.raw_os_error().unwrap_or_default())
        && std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
    if refused_link {
        format!("{} is a symbolic link", path.display())
    } else {
        format!("cannot open {}: {error}", path.display())
    }
}

/// Copies `source` (opened from `shown`) into a new file `into` (0600), refusing more than
/// [`MAX_TARBALL_BYTES`].
fn copy_capped(source: File, shown: &Path, into: &Path) -> Result<(), String> {
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(into)
        .map_err(|e| open_error(into, &e))?;
    let copied = std::io::copy(&mut source.take(MAX_TARBALL_BYTES + 1), &mut target)
        .map_err(|e| format!("cannot copy {} to {}: {e}", shown.display(), into.display()))?;
    if copied > MAX_TARBALL_BYTES {
        return Err(format!(
            "{} is larger than {} MB",
            shown.display(),
            MAX_TARBALL_BYTES >> 20
        ));
    }
    Ok(())
}

/// Opens `relative` inside the directory `root` for reading, one component at a time with
/// `openat`, following no symlink on the way (a symlinked component is an error naming it).
fn open_beneath(root: &Path, relative: &Path) -> Result<File, String> {
    let mut current = open_no_follow(root, OFlag::O_DIRECTORY).map_err(|e| open_error(root, &e))?;
    let names: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut reached = root.to_path_buf();
    for (index, name) in names.iter().enumerate() {
        reached.push(name);
        let last = index + 1 == names.len();
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | if last {
                OFlag::empty()
            } else {
                OFlag::O_DIRECTORY
            };
        let fd = openat(&current, *name, flags, Mode::empty()).map_err(|errno| {
            open_error(&reached, &std::io::Error::from_raw_os_error(errno as i32))
        })?;
        current = File::from(fd);
    }
    Ok(current)
}

/// The `bin` entries of the unpacked package in `copy/package`: name and path inside the
/// package. A name with a path separator, or a path leaving the package, is an error.
fn bins(copy: &Path, package: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let package_dir = copy.join("package");
    let manifest_path = package_dir.join("package.json");
    let file = open_beneath(&package_dir, Path::new("package.json"))?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{} is larger than {} MB",
            manifest_path.display(),
            MAX_MANIFEST_BYTES >> 20
        ));
    }
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
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                && relative
                    .components()
                    .any(|c| matches!(c, Component::Normal(_)));
            if name.is_empty() || name.contains('/') || name.starts_with('.') || !inside {
                return Err(format!("{package} declares an unusable bin {name}: {path}"));
            }
            Ok((name, relative))
        })
        .collect()
}

/// Links each of the package's bins from `copy/bin` to the unpacked package in
/// `copy/package` and makes them executable. A bin that is a symlink, or is reached through
/// one, or is not a regular file, is refused: its mode is changed through its own descriptor,
/// so no chmod ever lands on a link's target.
pub fn link_bins(copy: &Path, package: &str) -> Result<Vec<String>, String> {
    let bin = copy.join("bin");
    let package_dir = copy.join("package");
    DirBuilder::new()
        .mode(0o700)
        .create(&bin)
        .map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let mut names = Vec::new();
    for (name, relative) in bins(copy, package)? {
        let file = open_beneath(&package_dir, &relative)
            .map_err(|why| format!("{package}'s bin {name} is refused: {why}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("{package}'s bin {name}: {e}"))?;
        if !meta.is_file() {
            return Err(format!(
                "{package}'s bin {name} is refused: {} is not a regular file",
                package_dir.join(&relative).display()
            ));
        }
        file.set_permissions(Permissions::from_mode(meta.permissions().mode() | 0o755))
            .map_err(|e| {
                format!(
                    "cannot make {} executable: {e}",
                    package_dir.join(&relative).display()
                )
            })?;
        let link = bin.join(&name);
        std::os::unix::fs::symlink(Path::new("../package").join(&relative), &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        crate::test_support::temp_dir("runner-pm-cache", name)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn unpacked(copy: &Path, manifest: &str) {
        std::fs::create_dir_all(copy.join("package/bin")).unwrap();
        std::fs::write(copy.join("package/package.json"), manifest).unwrap();
    }

    fn pnpm() -> Wanted {
        Wanted {
            name: "pnpm",
            package: "pnpm",
            version: "9.15.0".to_owned(),
            hash: None,
        }
    }

    #[test]
    fn bins_are_linked_and_made_executable() {
        let copy = temp("link");
        unpacked(
            &copy,
            r#"{"bin":{"pnpm":"bin/pnpm.cjs","pnpx":"./bin/pnpx.cjs"}}"#,
        );
        std::fs::write(copy.join("package/bin/pnpm.cjs"), "").unwrap();
        std::fs::write(copy.join("package/bin/pnpx.cjs"), "").unwrap();
        assert_eq!(link_bins(&copy, "pnpm").unwrap(), ["pnpm", "pnpx"]);
        assert!(copy.join("bin/pnpm").is_file(), "the link resolves");
        assert_eq!(mode(&copy.join("package/bin/pnpm.cjs")) & 0o755, 0o755);
        std::fs::remove_dir_all(&copy).unwrap();
    }

    #[test]
    fn bins_that_are_or_pass_through_links_are_refused_and_their_targets_untouched() {
        let root = temp("links");
        let victim = root.join("victim");
        std::fs::write(&victim, "").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("pnpm.cjs"), "").unwrap();
        std::fs::set_permissions(outside.join("pnpm.cjs"), Permissions::from_mode(0o600)).unwrap();

        let copy = root.join("file-link");
        unpacked(&copy, r#"{"bin":{"pnpm":"bin/pnpm.cjs"}}"#);
        std::os::unix::fs::symlink(&victim, copy.join("package/bin/pnpm.cjs")).unwrap();
        let error = link_bins(&copy, "pnpm").unwrap_err();
        assert!(error.contains("is a symbolic link"), "{error}");

        let copy = root.join("dir-link");
        std::fs::create_dir_all(copy.join("package")).unwrap();
        std::fs::write(
            copy.join("package/package.json"),
            r#"{"bin":{"pnpm":"bin/pnpm.cjs"}}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, copy.join("package/bin")).unwrap();
        let error = link_bins(&copy, "pnpm").unwrap_err();
        assert!(error.contains("package/bin is a symbolic link"), "{error}");

        let copy = root.join("fifo");
        unpacked(&copy, r#"{"bin":{"pnpm":"bin/pnpm.cjs"}}"#);
        nix::unistd::mkfifo(
            &copy.join("package/bin/pnpm.cjs"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let error = link_bins(&copy, "pnpm").unwrap_err();
        assert!(error.contains("is not a regular file"), "{error}");

        assert_eq!(mode(&victim), 0o600);
        assert_eq!(mode(&outside.join("pnpm.cjs")), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unusable_bin_declarations_are_refused() {
        let copy = temp("declared");
        unpacked(&copy, r#"{"bin":{"x":"../outside.js"}}"#);
        assert!(link_bins(&copy, "x").unwrap_err().contains("unusable bin"));
        let copy = temp("declared-none");
        unpacked(&copy, "{}");
        assert!(
            link_bins(&copy, "x")
                .unwrap_err()
                .contains("declares no bin")
        );
    }

    #[test]
    fn the_cache_is_private_and_entries_are_read_without_following_links() {
        let build_dir = temp("cache");
        let root = build_dir.join(".cache/pm");
        // A link planted where the cache goes is replaced by a private directory.
        let elsewhere = temp("cache-elsewhere");
        std::fs::create_dir_all(build_dir.join(".cache")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &root).unwrap();
        let cache = PmCache::open(root.clone()).unwrap();
        assert!(
            !std::fs::symlink_metadata(&root)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(RUN_DIR)), 0o700);

        let copy = cache.private_copy("b1").unwrap();
        assert_eq!(mode(copy.dir()), 0o700);
        assert_eq!(
            cache.copy_cached(&pnpm(), &copy.tarball()),
            Ok(Cached::Missing)
        );

        // A tarball that is a symlink is not read.
        let entry = cache.entry(&pnpm());
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(elsewhere.join("planted.tgz"), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("planted.tgz"), entry.join(TARBALL)).unwrap();
        let error = cache.copy_cached(&pnpm(), &copy.tarball()).unwrap_err();
        assert!(error.ends_with("package.tgz is a symbolic link"), "{error}");
        assert!(!copy.tarball().exists());

        // Stored, it is read back; discarded, it is gone and the link's target stays.
        std::fs::write(build_dir.join("verified.tgz"), "tarball").unwrap();
        cache
            .store(&pnpm(), &build_dir.join("verified.tgz"))
            .unwrap();
        assert_eq!(mode(&entry), 0o700);
        assert_eq!(
            cache.copy_cached(&pnpm(), &copy.tarball()),
            Ok(Cached::Copied)
        );
        assert_eq!(std::fs::read_to_string(copy.tarball()).unwrap(), "tarball");
        cache.discard(&pnpm()).unwrap();
        assert!(!entry.exists());
        assert!(elsewhere.join("planted.tgz").exists());

        // A copy of a runner that is gone is swept when the cache is next opened; this
        // runner's own copies stay.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let orphan = root
            .join(RUN_DIR)
            .join(format!("{gone}-b0-0123456789abcdef"));
        std::fs::create_dir_all(orphan.join("package")).unwrap();
        PmCache::open(root.clone()).unwrap();
        assert!(!orphan.exists(), "the orphan was swept");
        assert!(copy.dir().is_dir(), "a live runner's copy stays");

        let dir = copy.dir().to_path_buf();
        drop(copy);
        assert!(!dir.exists(), "a private copy goes when dropped");
        std::fs::remove_dir_all(&build_dir).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }
}
