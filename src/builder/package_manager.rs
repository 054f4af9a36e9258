//! Which package manager a project uses, and the arguments that install it and run its build.
//!
//! Detection follows SPEC §3: the `packageManager` field of `package.json` wins (corepack's
//! `name@version` form, optionally with a `+sha…` hash, whose version is kept); otherwise the
//! lockfiles decide, in the order pnpm, bun, yarn, npm; otherwise npm. Yarn 1 ("classic") and
//! yarn 2+ ("berry") take different install flags, so they are told apart here: by the major
//! version in `packageManager`, else by a `.yarnrc.yml`, which only berry reads.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The package managers a build can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageManager {
    /// npm.
    Npm,
    /// pnpm.
    Pnpm,
    /// Yarn 1 (classic).
    Yarn,
    /// Yarn 2 and later (berry).
    YarnBerry,
    /// Bun.
    Bun,
}

/// The names a caller may pass, in the order error messages list them.
pub const PACKAGE_MANAGER_NAMES: [&str; 4] = ["npm", "pnpm", "yarn", "bun"];

impl PackageManager {
    /// The command that runs it (`yarn` for both yarn flavours).
    pub fn command(self) -> &'static str {
        match self {
            PackageManager::Npm => "npm",
            PackageManager::Pnpm => "pnpm",
            PackageManager::Yarn | PackageManager::YarnBerry => "yarn",
            PackageManager::Bun => "bun",
        }
    }

    /// The package manager called `name` (`yarn` is yarn 1), or an error naming it; `context`
    /// says where the name came from (for example "argument pm").
    pub fn from_name(name: &str, context: &str) -> Result<Self> {
        match name {
            "npm" => Ok(PackageManager::Npm),
            "pnpm" => Ok(PackageManager::Pnpm),
            "yarn" => Ok(PackageManager::Yarn),
            "bun" => Ok(PackageManager::Bun),
            _ => Err(Error::UnknownPackageManager {
                name: name.to_owned(),
                context: context.to_owned(),
            }),
        }
    }

    /// The lockfiles this package manager writes.
    pub fn lockfiles(self) -> &'static [&'static str] {
        match self {
            PackageManager::Npm => &["package-lock.json", "npm-shrinkwrap.json"],
            PackageManager::Pnpm => &["pnpm-lock.yaml"],
            PackageManager::Yarn | PackageManager::YarnBerry => &["yarn.lock"],
            PackageManager::Bun => &["bun.lock", "bun.lockb"],
        }
    }

    /// The flavour a reported version belongs to: yarn 2+ is berry, yarn 1 is classic; other
    /// package managers have one flavour.
    pub fn with_version(self, version: &str) -> Self {
        match (self, major_version(version)) {
            (PackageManager::Yarn | PackageManager::YarnBerry, Some(1)) => PackageManager::Yarn,
            (PackageManager::Yarn | PackageManager::YarnBerry, Some(_)) => {
                PackageManager::YarnBerry
            }
            (pm, _) => pm,
        }
    }
}

impl fmt::Display for PackageManager {
    /// The command name, with "(berry)" for yarn 2+.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageManager::YarnBerry => f.write_str("yarn (berry)"),
            pm => f.write_str(pm.command()),
        }
    }
}

/// The arguments the builder installs dependencies with: the plain form (`install`), or with
/// `frozen` the form that fails instead of changing the lockfile. npm runs without its audit and
/// funding requests in both.
pub fn install_args(pm: PackageManager, frozen: bool) -> Vec<String> {
    let args: &[&str] = match (pm, frozen) {
        (PackageManager::Npm, false) => &["install", "--audit=false", "--fund=false"],
        (PackageManager::Npm, true) => &["ci", "--audit=false", "--fund=false"],
        (_, false) => &["install"],
        (PackageManager::YarnBerry, true) => &["install", "--immutable"],
        (PackageManager::Pnpm | PackageManager::Yarn | PackageManager::Bun, true) => {
            &["install", "--frozen-lockfile"]
        }
    };
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// The arguments that keep an install in the project's own folder when a workspace above it
/// does not list it as a package: pnpm 10 would otherwise install that workspace's root
/// (`--ignore-workspace`); npm 11 already stays in a folder no workspace lists, and is told so
/// explicitly (`--workspaces=false`). Yarn 1 and bun stay in an unlisted folder on their own
/// and have no such flag; yarn berry has none either (it wants the folder to hold its own
/// `yarn.lock`).
pub fn alone_args(pm: PackageManager) -> &'static [&'static str] {
    match pm {
        PackageManager::Pnpm => &["--ignore-workspace"],
        PackageManager::Npm => &["--workspaces=false"],
        PackageManager::Yarn | PackageManager::YarnBerry | PackageManager::Bun => &[],
    }
}

/// The install arguments of the TypeScript package's `getInstallArgs`: quiet, non-interactive
/// installs (npm without audit, funding and progress; pnpm outside any enclosing workspace;
/// yarn 1 and bun silent; yarn berry, which has no `--silent`, plain).
pub fn quiet_install_args(pm: PackageManager) -> Vec<String> {
    let args: &[&str] = match pm {
        PackageManager::Npm => &[
            "install",
            "--audit=false",
            "--fund=false",
            "--loglevel=error",
            "--progress=false",
        ],
        PackageManager::Pnpm => &["install", "--ignore-workspace", "--loglevel=error"],
        PackageManager::Yarn | PackageManager::Bun => &["install", "--silent"],
        PackageManager::YarnBerry => &["install"],
    };
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// The arguments that run the project's `build` script.
pub fn build_args(_pm: PackageManager) -> Vec<String> {
    vec!["run".to_owned(), "build".to_owned()]
}

/// The arguments that run the project's own `mastra build` (the installed binary, never a
/// download): `npm exec --no -- mastra build`, `pnpm exec mastra build`, `yarn run mastra
/// build` (yarn 1 has no `exec`), `bun run mastra build`.
pub fn mastra_build_args(pm: PackageManager) -> Vec<String> {
    exec_args(pm, "mastra", &["build"])
}

/// The arguments that run the installed binary `bin` of the project (never a download) with
/// `args`: `npm exec --no -- <bin>`, `pnpm exec <bin>`, `yarn run <bin>`, `bun run <bin>`.
pub fn exec_args(pm: PackageManager, bin: &str, args: &[&str]) -> Vec<String> {
    let head: &[&str] = match pm {
        PackageManager::Npm => &["exec", "--no", "--"],
        PackageManager::Pnpm => &["exec"],
        PackageManager::Yarn | PackageManager::YarnBerry | PackageManager::Bun => &["run"],
    };
    head.iter()
        .copied()
        .chain(std::iter::once(bin))
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Whether a parsed package.json lists `name` in `dependencies` or `devDependencies`.
pub fn depends_on(manifest: &Value, name: &str) -> bool {
    ["dependencies", "devDependencies"].iter().any(|field| {
        manifest
            .get(field)
            .and_then(|deps| deps.get(name))
            .is_some()
    })
}

/// How the package manager was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectionSource {
    /// The `packageManager` field of package.json, as written (`pnpm@9.1.0+sha512.…`).
    PackageManagerField(String),
    /// A lockfile (its file name).
    Lockfile(&'static str),
    /// Neither: the default, npm.
    Default,
}

/// What [`detect`] found in a project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The package manager to use.
    pub package_manager: PackageManager,
    /// The version the `packageManager` field asks for (without its hash), if any.
    pub requested_version: Option<String>,
    /// The hash corepack's form appends to it (`sha512.<hex>` of the package's tarball), if any.
    pub requested_hash: Option<String>,
    /// How it was chosen.
    pub source: DetectionSource,
    /// Every lockfile present, in detection order.
    pub lockfiles: Vec<&'static str>,
    /// Things worth a line in the build log (conflicting lockfiles, a missing lockfile).
    pub warnings: Vec<String>,
}

impl Detection {
    /// The lockfile of the chosen package manager, when the project has one: the builder then
    /// installs with the frozen form.
    pub fn lockfile(&self) -> Option<&'static str> {
        let own = self.package_manager.lockfiles();
        self.lockfiles.iter().copied().find(|l| own.contains(l))
    }

    /// One line for the build log: what was chosen and why.
    pub fn describe(&self) -> String {
        let name = match &self.requested_version {
            Some(version) => format!("{}@{version}", self.package_manager.command()),
            None => self.package_manager.to_string(),
        };
        let why = match &self.source {
            DetectionSource::PackageManagerField(field) => {
                format!("packageManager field \"{field}\" in package.json")
            }
            DetectionSource::Lockfile(file) => format!("lockfile {file}"),
            DetectionSource::Default => "no packageManager field and no lockfile".to_owned(),
        };
        let lockfile = match (&self.source, self.lockfile()) {
            (DetectionSource::Lockfile(_), _) => String::new(),
            (_, Some(file)) => format!("; lockfile {file}"),
            (_, None) => "; no lockfile".to_owned(),
        };
        format!("{name} (from {why}{lockfile})")
    }
}

/// Lockfiles in detection order (SPEC §3).
const LOCKFILES: [(&str, PackageManager); 6] = [
    ("pnpm-lock.yaml", PackageManager::Pnpm),
    ("bun.lock", PackageManager::Bun),
    ("bun.lockb", PackageManager::Bun),
    ("yarn.lock", PackageManager::Yarn),
    ("package-lock.json", PackageManager::Npm),
    ("npm-shrinkwrap.json", PackageManager::Npm),
];

/// A project's small text file (`pnpm-workspace.yaml`, `.npmrc`): `None` when it is missing,
/// unreadable or larger than [`PACKAGE_JSON_MAX_BYTES`] (a project's files are input, and none
/// of these is that large).
pub fn read_small_text(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(PACKAGE_JSON_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= PACKAGE_JSON_MAX_BYTES).then_some(text)
}

/// The largest package.json read: real ones are a few KiB; anything larger is refused rather
/// than held in memory.
pub const PACKAGE_JSON_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads `<dir>/package.json`: `None` when there is none, an error naming the file and the
/// position when it is not valid JSON.
pub fn read_package_json(dir: &Path) -> Result<Option<Value>> {
    use std::io::Read;
    let path = dir.join("package.json");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("read", &path, &error)),
    };
    let mut text = Vec::new();
    file.take(PACKAGE_JSON_MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|error| Error::io("read", &path, &error))?;
    if text.len() as u64 > PACKAGE_JSON_MAX_BYTES {
        return Err(Error::InvalidPackageJson {
            path,
            reason: format!("larger than {} MiB", PACKAGE_JSON_MAX_BYTES >> 20),
        });
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| Error::InvalidPackageJson {
            path: path.clone(),
            reason: format!("not valid JSON: {error}"),
        })
}

/// Whether `<dir>/package.json` has a non-empty `scripts.build`; false without a package.json.
pub fn has_build_script(dir: &Path) -> Result<bool> {
    Ok(read_package_json(dir)?.is_some_and(|manifest| build_script_in(&manifest)))
}

/// Whether a parsed package.json has a non-empty `scripts.build`.
pub fn build_script_in(manifest: &Value) -> bool {
    manifest
        .pointer("/scripts/build")
        .and_then(Value::as_str)
        .is_some_and(|script| !script.trim().is_empty())
}

/// Detects the package manager of the project in `dir` (SPEC §3).
pub fn detect(dir: &Path) -> Result<Detection> {
    let manifest = read_package_json(dir)?;
    detect_with(dir, manifest.as_ref())
}

/// [`detect`] with the package.json already read (`None`: the project has none).
pub fn detect_with(dir: &Path, manifest: Option<&Value>) -> Result<Detection> {
    let lockfiles: Vec<(&'static str, PackageManager)> = LOCKFILES
        .iter()
        .copied()
        .filter(|(file, _)| dir.join(file).is_file())
        .collect();
    let field = match manifest.and_then(|m| m.get("packageManager")) {
        None | Some(Value::Null) => None,
        Some(Value::String(field)) => Some(field.clone()),
        Some(other) => {
            return Err(Error::InvalidPackageJson {
                path: dir.join("package.json"),
                reason: format!(
                    "the packageManager field must be a string like \"pnpm@9.1.0\" (got {other})"
                ),
            });
        }
    };
    let yarnrc = dir.join(".yarnrc.yml").is_file();

    let mut requested_hash = None;
    let (package_manager, requested_version, source) = match field {
        Some(field) => {
            let (name, version, hash) = parse_package_manager_field(&field);
            requested_hash = hash;
            let context = format!(
                "packageManager field of {}",
                dir.join("package.json").display()
            );
            let mut pm = PackageManager::from_name(name, &context)?;
            if pm == PackageManager::Yarn {
                pm = match version.as_deref().and_then(major_version) {
                    Some(1) => PackageManager::Yarn,
                    Some(_) => PackageManager::YarnBerry,
                    None if yarnrc => PackageManager::YarnBerry,
                    None => PackageManager::Yarn,
                };
            }
            (pm, version, DetectionSource::PackageManagerField(field))
        }
        None => match lockfiles.first() {
            Some((file, PackageManager::Yarn)) if yarnrc => (
                PackageManager::YarnBerry,
                None,
                DetectionSource::Lockfile(file),
            ),
            Some((file, pm)) => (*pm, None, DetectionSource::Lockfile(file)),
            None => (PackageManager::Npm, None, DetectionSource::Default),
        },
    };

    let mut detection = Detection {
        package_manager,
        requested_version,
        requested_hash,
        source,
        lockfiles: lockfiles.iter().map(|(file, _)| *file).collect(),
        warnings: Vec::new(),
    };
    let mut owners: Vec<&'static str> = lockfiles.iter().map(|(_, pm)| pm.command()).collect();
    owners.dedup();
    if owners.len() > 1 {
        detection.warnings.push(format!(
            "Lockfiles of more than one package manager were found ({}); using {} and ignoring the others",
            detection.lockfiles.join(", "),
            package_manager.command()
        ));
    } else if !lockfiles.is_empty() && detection.lockfile().is_none() {
        detection.warnings.push(format!(
            "package.json asks for {} but the only lockfile is {}; installing without a lockfile",
            package_manager.command(),
            detection.lockfiles.join(", ")
        ));
    }
    Ok(detection)
}

/// Splits corepack's `name@version+hash` into the name, the version and the hash.
fn parse_package_manager_field(field: &str) -> (&str, Option<String>, Option<String>) {
    let field = field.trim();
    match field.split_once('@') {
        Some((name, rest)) => {
            let (version, hash) = match rest.split_once('+') {
                Some((version, hash)) => (version.trim(), Some(hash.trim())),
                None => (rest.trim(), None),
            };
            let hash = hash.filter(|h| !h.is_empty()).map(str::to_owned);
            (
                name,
                (!version.is_empty()).then(|| version.to_owned()),
                hash,
            )
        }
        None => (field, None, None),
    }
}

/// The leading number of a version (`4` of `4.1.0`, `1` of `^1.22`).
pub fn major_version(version: &str) -> Option<u64> {
    let digits: String = version
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Finds `program` in a `PATH` value the way `execvp` would; relative entries are taken
/// relative to `cwd` (the child's working directory).
pub fn find_in_path(program: &str, path: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path?
        .split(':')
        .filter(|entry| !entry.is_empty())
        .map(|entry| cwd.join(entry).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn project(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runner-detect-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_package_manager_field_wins_and_keeps_its_version() {
        let dir = project(
            "field",
            &[
                ("package.json", r#"{"packageManager":"pnpm@9.1.0"}"#),
                ("yarn.lock", ""),
            ],
        );
        let found = detect(&dir).unwrap();
        assert_eq!(found.package_manager, PackageManager::Pnpm);
        assert_eq!(found.requested_version.as_deref(), Some("9.1.0"));
        assert_eq!(
            found.source,
            DetectionSource::PackageManagerField("pnpm@9.1.0".to_owned())
        );
        assert_eq!(found.lockfile(), None);
        assert_eq!(found.warnings.len(), 1);
        assert!(found.warnings[0].contains("asks for pnpm but the only lockfile is yarn.lock"));
    }

    #[test]
    fn a_corepack_hash_is_dropped_from_the_version() {
        let dir = project(
            "hash",
            &[(
                "package.json",
                r#"{"packageManager":"pnpm@9.1.0+sha512.abcdef0123"}"#,
            )],
        );
        let found = detect(&dir).unwrap();
        assert_eq!(found.package_manager, PackageManager::Pnpm);
        assert_eq!(found.requested_version.as_deref(), Some("9.1.0"));
        assert_eq!(found.requested_hash.as_deref(), Some("sha512.abcdef0123"));
        assert!(
            found
                .describe()
                .starts_with("pnpm@9.1.0 (from packageManager field")
        );
    }

    #[test]
    fn lockfiles_decide_in_spec_order() {
        let cases: [(&[&str], PackageManager); 7] = [
            (&["pnpm-lock.yaml"], PackageManager::Pnpm),
            (&["bun.lock"], PackageManager::Bun),
            (&["bun.lockb"], PackageManager::Bun),
            (&["yarn.lock"], PackageManager::Yarn),
            (&["package-lock.json"], PackageManager::Npm),
            (&["npm-shrinkwrap.json"], PackageManager::Npm),
            (&[], PackageManager::Npm),
        ];
        for (i, (files, expected)) in cases.iter().enumerate() {
            let mut all: Vec<(&str, &str)> = files.iter().map(|f| (*f, "")).collect();
            all.push(("package.json", "{}"));
            let dir = project(&format!("lock{i}"), &all);
            let found = detect(&dir).unwrap();
            assert_eq!(found.package_manager, *expected, "{files:?}");
            assert!(found.warnings.is_empty(), "{files:?}");
            assert_eq!(found.lockfile(), files.first().copied());
        }
    }

    #[test]
    fn no_package_json_and_no_lockfile_means_npm() {
        let dir = project("empty", &[]);
        let found = detect(&dir).unwrap();
        assert_eq!(found.package_manager, PackageManager::Npm);
        assert_eq!(found.source, DetectionSource::Default);
        assert!(found.describe().contains("no lockfile"));
    }

    #[test]
    fn conflicting_lockfiles_give_a_warning() {
        let dir = project(
            "conflict",
            &[
                ("package.json", "{}"),
                ("pnpm-lock.yaml", ""),
                ("package-lock.json", ""),
            ],
        );
        let found = detect(&dir).unwrap();
        assert_eq!(found.package_manager, PackageManager::Pnpm);
        assert_eq!(
            found.warnings,
            vec![
                "Lockfiles of more than one package manager were found (pnpm-lock.yaml, \
                 package-lock.json); using pnpm and ignoring the others"
                    .to_owned()
            ]
        );
        // Two lockfiles of the same package manager are no conflict.
        let dir = project(
            "bunboth",
            &[("package.json", "{}"), ("bun.lock", ""), ("bun.lockb", "")],
        );
        assert!(detect(&dir).unwrap().warnings.is_empty());
    }

    #[test]
    fn yarn_berry_is_told_apart_from_yarn_1() {
        let berry = project(
            "berry-rc",
            &[
                ("package.json", "{}"),
                ("yarn.lock", ""),
                (".yarnrc.yml", ""),
            ],
        );
        assert_eq!(
            detect(&berry).unwrap().package_manager,
            PackageManager::YarnBerry
        );
        let classic = project("classic", &[("package.json", "{}"), ("yarn.lock", "")]);
        assert_eq!(
            detect(&classic).unwrap().package_manager,
            PackageManager::Yarn
        );
        let by_field = project(
            "berry-field",
            &[("package.json", r#"{"packageManager":"yarn@4.1.0"}"#)],
        );
        assert_eq!(
            detect(&by_field).unwrap().package_manager,
            PackageManager::YarnBerry
        );
        let one = project(
            "yarn1-field",
            &[
                ("package.json", r#"{"packageManager":"yarn@1.22.22"}"#),
                (".yarnrc.yml", ""),
            ],
        );
        assert_eq!(detect(&one).unwrap().package_manager, PackageManager::Yarn);
    }

    #[test]
    fn unknown_package_managers_are_named() {
        let dir = project(
            "unknown",
            &[("package.json", r#"{"packageManager":"deno@2.0.0"}"#)],
        );
        let message = detect(&dir).unwrap_err().to_string();
        assert!(message.starts_with("Unknown package manager 'deno' (packageManager field of "));
        assert!(
            message.ends_with("expected npm, pnpm, yarn or bun"),
            "{message}"
        );
        assert_eq!(
            PackageManager::from_name("pip", "argument pm")
                .unwrap_err()
                .to_string(),
            "Unknown package manager 'pip' (argument pm): expected npm, pnpm, yarn or bun"
        );
    }

    #[test]
    fn a_broken_package_json_is_named_with_the_position() {
        let dir = project("broken", &[("package.json", "{\n  \"name\": \"x\",\n}")]);
        let message = detect(&dir).unwrap_err().to_string();
        let path = dir.join("package.json");
        assert!(
            message.starts_with(&format!("Invalid {}: not valid JSON: ", path.display())),
            "{message}"
        );
        assert!(message.contains("line 3 column 1"), "{message}");
        assert!(has_build_script(&dir).is_err());
        let wrong = project(
            "wrong-field",
            &[("package.json", r#"{"packageManager":7}"#)],
        );
        assert!(
            detect(&wrong)
                .unwrap_err()
                .to_string()
                .contains("must be a string")
        );
    }

    #[test]
    fn argument_tables() {
        use PackageManager::*;
        let frozen = [
            (Npm, "ci --audit=false --fund=false"),
            (Pnpm, "install --frozen-lockfile"),
            (Yarn, "install --frozen-lockfile"),
            (YarnBerry, "install --immutable"),
            (Bun, "install --frozen-lockfile"),
        ];
        for (pm, args) in frozen {
            assert_eq!(install_args(pm, true).join(" "), args, "{pm}");
            assert_eq!(build_args(pm), vec!["run", "build"], "{pm}");
        }
        assert_eq!(
            install_args(Npm, false).join(" "),
            "install --audit=false --fund=false"
        );
        assert_eq!(install_args(Pnpm, false), vec!["install"]);
        let quiet = [
            (
                Npm,
                "install --audit=false --fund=false --loglevel=error --progress=false",
            ),
            (Pnpm, "install --ignore-workspace --loglevel=error"),
            (Yarn, "install --silent"),
            (YarnBerry, "install"),
            (Bun, "install --silent"),
        ];
        for (pm, args) in quiet {
            assert_eq!(quiet_install_args(pm).join(" "), args, "{pm}");
        }
        assert_eq!(alone_args(Pnpm), ["--ignore-workspace"]);
        assert_eq!(alone_args(Npm), ["--workspaces=false"]);
        assert!(
            [Yarn, YarnBerry, Bun]
                .iter()
                .all(|pm| alone_args(*pm).is_empty())
        );
    }

    #[test]
    fn build_scripts_are_found() {
        let with = project(
            "with",
            &[("package.json", r#"{"scripts":{"build":"mastra build"}}"#)],
        );
        assert!(has_build_script(&with).unwrap());
        let blank = project(
            "blank",
            &[("package.json", r#"{"scripts":{"build":"  "}}"#)],
        );
        assert!(!has_build_script(&blank).unwrap());
        let none = project("none", &[("package.json", r#"{"scripts":{"dev":"x"}}"#)]);
        assert!(!has_build_script(&none).unwrap());
        assert!(!has_build_script(&project("nofile", &[])).unwrap());
    }

    #[test]
    fn mastra_build_runs_the_installed_binary() {
        use PackageManager::*;
        assert_eq!(
            mastra_build_args(Npm).join(" "),
            "exec --no -- mastra build"
        );
        assert_eq!(mastra_build_args(Pnpm).join(" "), "exec mastra build");
        assert_eq!(mastra_build_args(Yarn).join(" "), "run mastra build");
        assert_eq!(mastra_build_args(YarnBerry).join(" "), "run mastra build");
        assert_eq!(mastra_build_args(Bun).join(" "), "run mastra build");
        let manifest: Value = serde_json::from_str(
            r#"{"dependencies":{"@mastra/core":"1"},"devDependencies":{"mastra":"1"}}"#,
        )
        .unwrap();
        assert!(depends_on(&manifest, "mastra"));
        assert!(!depends_on(&manifest, "turbo"));
        assert!(!depends_on(&Value::Null, "mastra"));
    }

    #[test]
    fn versions_pick_the_yarn_flavour() {
        assert_eq!(
            PackageManager::Yarn.with_version("4.1.0"),
            PackageManager::YarnBerry
        );
        assert_eq!(
            PackageManager::YarnBerry.with_version("1.22.22"),
            PackageManager::Yarn
        );
        assert_eq!(
            PackageManager::Yarn.with_version("garbage"),
            PackageManager::Yarn
        );
        assert_eq!(
            PackageManager::Pnpm.with_version("12.0.0"),
            PackageManager::Pnpm
        );
    }

    #[test]
    fn programs_are_found_on_the_given_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = project("path", &[("tool", "#!/bin/sh\n"), ("plain", "")]);
        fs::set_permissions(dir.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent::{}", dir.display());
        assert_eq!(
            find_in_path("tool", Some(&path), Path::new("/")),
            Some(dir.join("tool"))
        );
        assert_eq!(find_in_path("plain", Some(&path), Path::new("/")), None);
        assert_eq!(find_in_path("tool", None, Path::new("/")), None);
    }
}
