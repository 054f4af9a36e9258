//! Local project sources: finding Mastra projects under configured base paths, deciding which
//! paths a caller may read, copying a project into a build directory, and watching one for
//! changes.
//!
//! A [`LocalSource`] holds canonical base paths (symlinks and `..` resolved once, at
//! construction). A project is a directory up to `maxDepth` levels below a base path
//! ([`discover`]) or one added by hand; a path is readable only when its canonical form lies
//! inside a base path or is an added project ([`access`]); a copy skips dependency and
//! build-output directories at every depth and never lets a symlink lead out of the project
//! ([`copy`]); a watch polls the project's files ([`watch`]). Scans are remembered for
//! [`CACHE_TTL`], as the TypeScript source does.
//!
//! # Caveats
//! Checks and copies are separate filesystem operations: a tree changed by another program
//! while it is copied may be copied in part. Symlinks are judged when the copy meets them, and
//! the walk never follows one, so a link swapped in during the copy is still copied as a link.

pub mod access;
pub mod copy;
pub mod discover;
pub mod watch;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::validate::expected;

pub use access::check_access;
pub use copy::{CopyReport, DEFAULT_EXCLUDES, Skipped, copy_project};
pub use discover::{
    DEFAULT_MAX_DEPTH, ProjectInfo, ProjectMetadata, ScanRules, WorkspaceOf, discover_projects,
    is_mastra_project, project_id,
};
pub use watch::{ChangeEvent, ChangeKind, WatchOptions, WatchStop};

/// A project copied for a build: where the build works, and what the copy did.
#[derive(Debug, Clone)]
pub struct BuildCopy {
    /// The directory the build works in: the target, or a workspace package's folder in it.
    pub workdir: PathBuf,
    /// What was copied and skipped.
    pub report: CopyReport,
    /// Lines for the build log about the workspace, if any.
    pub notes: Vec<String>,
}

impl BuildCopy {
    fn plain(target: &Path, report: CopyReport) -> Self {
        BuildCopy {
            workdir: target.to_path_buf(),
            report,
            notes: Vec::new(),
        }
    }

    /// The lines for the build log: the workspace notes, then the copy's report.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = self.notes.clone();
        lines.extend(self.report.log_lines());
        lines
    }
}

/// The one Mastra app of the workspace rooted at `root` (its path relative to the root), or
/// `None` when it has none or the root is an app itself; an error listing them when it has
/// several.
pub fn workspace_app(root: &Path) -> Result<Option<String>> {
    if discover::read_package_json(root).is_some_and(|m| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|f| m.get(f).and_then(|d| d.get("@mastra/core")).is_some())
    }) {
        return Ok(None);
    }
    let Some(workspace) = workspace::load(root) else {
        return Ok(None);
    };
    let apps: Vec<&workspace::Member> = workspace
        .members
        .iter()
        .filter(|m| is_mastra_project(&m.dir))
        .collect();
    match apps.as_slice() {
        [] => Ok(None),
        [app] => Ok(Some(app.relative.clone())),
        several => Err(Error::invalid(
            "project.sourceConfig.path",
            format!(
                "{} is a workspace with {} Mastra apps ({}): point sourceConfig.path at one of them",
                root.display(),
                several.len(),
                several
                    .iter()
                    .map(|m| m.relative.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// How long a scan's result answers `listProjects` (as in the TypeScript source).
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Debounce of `watchChanges` unless configured, in ms.
pub const DEFAULT_WATCH_DEBOUNCE_MS: u64 = 300;

/// The largest `maxDepth` accepted.
const MAX_DEPTH_LIMIT: u64 = 32;

/// Everything a [`LocalSource`] is configured with, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Where and how to search for projects; `rules.exclude` also applies to copies.
    pub rules: ScanRules,
    /// Whether `watchChanges` watches.
    pub watch_changes: bool,
    /// Quiet time before `watchChanges` reports, in ms.
    pub watch_debounce_ms: u64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            rules: ScanRules::default(),
            watch_changes: false,
            watch_debounce_ms: DEFAULT_WATCH_DEBOUNCE_MS,
        }
    }
}

/// The last scan, and when it ran.
#[derive(Debug, Default)]
struct Cache {
    scanned_at: Option<Instant>,
    projects: Vec<ProjectInfo>,
}

/// A provider of the projects found under a set of base directories, plus the ones added by
/// hand.
#[derive(Debug)]
pub struct LocalSource {
    base_paths: Vec<PathBuf>,
    options: SourceOptions,
    cache: Mutex<Cache>,
    added: Mutex<Vec<ProjectInfo>>,
}

impl LocalSource {
    /// A source over `base_paths` (each resolved against `cwd` when relative, then
    /// canonicalised), skipping `exclude` names in scans and copies on top of
    /// [`DEFAULT_EXCLUDES`], with the other options at their defaults. Errors name the
    /// offending entry (`basePaths[1]`, `exclude[0]`).
    pub fn new(base_paths: &[PathBuf], exclude: &[String], cwd: &Path) -> Result<Self> {
        let options = SourceOptions {
            rules: ScanRules {
                exclude: exclude.to_vec(),
                ..ScanRules::default()
            },
            ..SourceOptions::default()
        };
        LocalSource::with_options(base_paths, options, cwd)
    }

    /// A source over `base_paths` (as for [`LocalSource::new`]) with `options`.
    pub fn with_options(
        base_paths: &[PathBuf],
        options: SourceOptions,
        cwd: &Path,
    ) -> Result<Self> {
        if base_paths.is_empty() {
            return Err(Error::invalid(
                "basePaths",
                "must list at least one directory",
            ));
        }
        let mut canonical = Vec::with_capacity(base_paths.len());
        for (index, path) in base_paths.iter().enumerate() {
            let name = format!("basePaths[{index}]");
            let path = cwd.join(path);
            let resolved = path.canonicalize().map_err(|e| {
                Error::invalid(&name, format!("cannot resolve {}: {e}", path.display()))
            })?;
            if !resolved.is_dir() {
                return Err(Error::invalid(
                    name,
                    format!("{} is not a directory", path.display()),
                ));
            }
            if !canonical.contains(&resolved) {
                canonical.push(resolved);
            }
        }
        for (index, name) in options.rules.exclude.iter().enumerate() {
            check_exclude(&format!("exclude[{index}]"), name)?;
        }
        for (index, pattern) in options.rules.include.iter().enumerate() {
            check_include(&format!("include[{index}]"), pattern)?;
        }
        if options.rules.max_depth == 0 || options.rules.max_depth as u64 > MAX_DEPTH_LIMIT {
            return Err(Error::invalid(
                "maxDepth",
                format!(
                    "must be an integer from 1 to {MAX_DEPTH_LIMIT} (got {})",
                    options.rules.max_depth
                ),
            ));
        }
        Ok(LocalSource {
            base_paths: canonical,
            options,
            cache: Mutex::new(Cache::default()),
            added: Mutex::new(Vec::new()),
        })
    }

    /// A source from a caller's `{ basePaths, include?, exclude?, maxDepth?, watchChanges?,
    /// watchDebounceMs? }`; relative paths are resolved against `cwd`.
    pub fn from_json(options: &Value, cwd: &Path) -> Result<Self> {
        let fields = match options {
            Value::Null => return Err(Error::invalid("basePaths", "is required")),
            Value::Object(fields) => fields,
            other => return Err(Error::invalid("options", expected("an object", other))),
        };
        let base_paths = string_list("basePaths", fields.get("basePaths"), true)?;
        let exclude = string_list("exclude", fields.get("exclude"), false)?;
        let include = match fields.get("include") {
            None | Some(Value::Null) => ScanRules::default().include,
            present => string_list("include", present, false)?,
        };
        let max_depth = match fields.get("maxDepth") {
            None | Some(Value::Null) => DEFAULT_MAX_DEPTH as u64,
            Some(value) => crate::validate::integer("maxDepth", value, 1, MAX_DEPTH_LIMIT)?,
        };
        let watch_changes = match fields.get("watchChanges") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(on)) => *on,
            Some(other) => {
                return Err(Error::invalid("watchChanges", expected("a boolean", other)));
            }
        };
        let watch_debounce_ms = match fields.get("watchDebounceMs") {
            None | Some(Value::Null) => DEFAULT_WATCH_DEBOUNCE_MS,
            Some(value) => crate::validate::integer("watchDebounceMs", value, 0, 3_600_000)?,
        };
        let options = SourceOptions {
            rules: ScanRules {
                include,
                exclude,
                max_depth: usize::try_from(max_depth).unwrap_or(DEFAULT_MAX_DEPTH),
            },
            watch_changes,
            watch_debounce_ms,
        };
        let base_paths: Vec<PathBuf> = base_paths.into_iter().map(PathBuf::from).collect();
        LocalSource::with_options(&base_paths, options, cwd)
    }

    /// The canonical base paths, without duplicates, in the order given.
    pub fn base_paths(&self) -> &[PathBuf] {
        &self.base_paths
    }

    /// The configured excludes (the defaults are always skipped as well).
    pub fn exclude(&self) -> &[String] {
        &self.options.rules.exclude
    }

    /// The options in force.
    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// The names skipped in copies: [`DEFAULT_EXCLUDES`], then the configured ones.
    pub fn effective_excludes(&self) -> Vec<String> {
        let mut names: Vec<String> = DEFAULT_EXCLUDES.iter().map(|n| (*n).to_owned()).collect();
        for name in &self.options.rules.exclude {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    fn added(&self) -> std::sync::MutexGuard<'_, Vec<ProjectInfo>> {
        self.added
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The projects under the base paths (found afresh by [`discover_projects`]) followed by
    /// the added ones not among them; remembered for [`CACHE_TTL`].
    pub fn scan(&self) -> Result<Vec<ProjectInfo>> {
        let mut projects = discover_projects(&self.base_paths, &self.options.rules)?;
        for project in self.added().iter() {
            if !projects.iter().any(|p| p.path == project.path) {
                projects.push(project.clone());
            }
        }
        let mut cache = self.cache();
        cache.scanned_at = Some(Instant::now());
        cache.projects = projects.clone();
        Ok(projects)
    }

    /// The projects, as the last scan found them when it ran less than [`CACHE_TTL`] ago and
    /// found any, else from a new [`LocalSource::scan`].
    pub fn list_projects(&self) -> Result<Vec<ProjectInfo>> {
        {
            let cache = self.cache();
            if cache
                .scanned_at
                .is_some_and(|at| at.elapsed() < CACHE_TTL && !cache.projects.is_empty())
            {
                return Ok(cache.projects.clone());
            }
        }
        self.scan()
    }

    /// The project with `id`: the cached one while its directory exists, else from a new
    /// scan; [`Error::ProjectNotFound`] when none has it.
    pub fn project(&self, id: &str) -> Result<ProjectInfo> {
        let cached = self.cache().projects.iter().find(|p| p.id == id).cloned();
        if let Some(project) = cached {
            if project.path.is_dir() {
                return Ok(project);
            }
            self.cache().projects.retain(|p| p.id != id);
        }
        self.scan()?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::ProjectNotFound {
                id: id.to_owned(),
                base_paths: self.base_paths.clone(),
            })
    }

    /// Adds the Mastra project at `path` (resolved against `cwd`), inside the base paths or
    /// not: from now on it is listed and may be read and copied, until
    /// [`LocalSource::remove_project`]. A directory that is not a Mastra project is an error.
    pub fn add_project(&self, path: &Path, cwd: &Path) -> Result<ProjectInfo> {
        let given = cwd.join(path);
        let resolved = given
            .canonicalize()
            .map_err(|e| Error::io("resolve project path", &given, &e))?;
        if !resolved.is_dir() || !is_mastra_project(&resolved) {
            return Err(Error::invalid(
                "projectPath",
                format!(
                    "Not a valid Mastra project: {} (it needs a package.json depending on @mastra/core, mastra, @mastra/cli or @mastra/server, or one of {})",
                    resolved.display(),
                    discover::MASTRA_CONFIG_FILES.join(", ")
                ),
            ));
        }
        if self
            .base_paths
            .iter()
            .any(|base| base.starts_with(&resolved))
        {
            return Err(Error::AccessDenied {
                path: given,
                reason: format!(
                    "{} is or holds a base path; a project lies inside one",
                    resolved.display()
                ),
            });
        }
        let project = discover::project_info(&resolved, &self.base_paths);
        {
            let mut added = self.added();
            added.retain(|p| p.path != resolved);
            added.push(project.clone());
        }
        let mut cache = self.cache();
        cache.projects.retain(|p| p.path != resolved);
        cache.projects.push(project.clone());
        Ok(project)
    }

    /// Forgets the project with `id` until the next scan finds it again (an added project is
    /// forgotten for good). The files are not touched.
    pub fn remove_project(&self, id: &str) {
        self.added().retain(|p| p.id != id);
        self.cache().projects.retain(|p| p.id != id);
    }

    /// Forgets the last scan, so the next [`LocalSource::list_projects`] scans again.
    pub fn clear_cache(&self) {
        *self.cache() = Cache::default();
    }

    /// The canonical form of `path` when it is a directory inside a base path (see
    /// [`check_access`]) or an added project.
    pub fn check_access(&self, path: &Path) -> Result<PathBuf> {
        match check_access(path, &self.base_paths) {
            Ok(resolved) => Ok(resolved),
            Err(denied @ Error::AccessDenied { .. }) => {
                let resolved = path.canonicalize().ok();
                let added = self.added();
                match resolved {
                    Some(resolved) if added.iter().any(|p| p.path == resolved) => Ok(resolved),
                    _ => Err(denied),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Copies the project at `path` (which must pass [`LocalSource::check_access`]) into
    /// `target`, emptying it first. Besides [`copy_project`]'s own refusals, a target that is
    /// a base path or holds one is refused.
    pub fn copy_to(&self, path: &Path, target: &Path) -> Result<CopyReport> {
        let project = self.check_access(path)?;
        self.copy_readable(&project, target)
    }

    /// [`LocalSource::copy_to`] of `source`, a canonical directory this source may read: a
    /// project, or the workspace root (up to a base path itself) that holds one.
    fn copy_readable(&self, source: &Path, target: &Path) -> Result<CopyReport> {
        let resolved = copy::resolve_target(target)?;
        if let Some(base) = self.base_paths.iter().find(|b| b.starts_with(&resolved)) {
            return Err(Error::UnsafeCopyTarget {
                target: target.to_path_buf(),
                reason: format!("it is or holds the base path {}", base.display()),
            });
        }
        copy_project(source, target, &self.options.rules.exclude)
    }

    /// Copies the project at `path` into `target` for a build and returns the directory the
    /// build works in, with lines for the log. A package of a workspace (a root with
    /// `pnpm-workspace.yaml` or package.json `workspaces` at or above it whose globs list
    /// it, no higher than its base path, which may be the root itself) brings the whole
    /// workspace, and the build works in the package's folder of the copy. Nothing above the
    /// base path is read; an added project outside the base paths is only its own workspace.
    /// A workspace root that is not itself a Mastra app stands for its one Mastra app; with
    /// several, the copy is refused with their list.
    pub fn copy_for_build(&self, path: &Path, target: &Path) -> Result<BuildCopy> {
        let project = self.check_access(path)?;
        let top = discover::search_top(&project, &self.base_paths);
        let Some(root) = workspace::owning_root(&project, workspace::SearchBound::Within(top))
        else {
            return self.copy_alone(&project, top, target);
        };
        let mut notes = Vec::new();
        let relative = if root == project {
            match workspace_app(&root)? {
                Some(app) => {
                    notes.push(format!(
                        "{} is a workspace whose one Mastra app is {app}: building it",
                        root.display()
                    ));
                    PathBuf::from(app)
                }
                None => PathBuf::new(),
            }
        } else {
            let relative = project
                .strip_prefix(&root)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            notes.push(format!(
                "{} is the package {} of the workspace at {}: copying the whole workspace",
                project.display(),
                relative.display(),
                root.display()
            ));
            relative
        };
        // The root is the project or one of its ancestors no higher than its base path.
        let report = self.copy_readable(&root, target)?;
        Ok(BuildCopy {
            workdir: target.join(relative),
            report,
            notes,
        })
    }

    /// Copies `project`, which no workspace lists, for a build: alone, or, when its
    /// `file:`/`link:` dependencies name directories outside it that this source may read
    /// (within `top`, its base path: `file:../lib`), with those directories, each at its place
    /// relative to their nearest common folder, so the relative paths still resolve; the
    /// build then works in the project's folder of the copy.
    fn copy_alone(&self, project: &Path, top: &Path, target: &Path) -> Result<BuildCopy> {
        let locals: Vec<PathBuf> = local_dependencies(project)
            .into_iter()
            .filter(|dir| dir.starts_with(top) && self.check_access(dir).is_ok())
            .collect();
        let Some(common) = project
            .ancestors()
            .find(|dir| locals.iter().all(|local| local.starts_with(dir)))
            .filter(|_| !locals.is_empty())
        else {
            let report = self.copy_readable(project, target)?;
            return Ok(BuildCopy::plain(target, report));
        };
        let relative = |dir: &Path| dir.strip_prefix(common).unwrap_or(dir).to_path_buf();
        let mut report = CopyReport::default();
        for dir in std::iter::once(project).chain(locals.iter().map(PathBuf::as_path)) {
            let part = self.copy_readable(dir, &target.join(relative(dir)))?;
            report.files += part.files;
            report.bytes += part.bytes;
            report.symlinks += part.symlinks;
            report.skipped_symlinks.extend(part.skipped_symlinks);
            report.skipped_special.extend(part.skipped_special);
        }
        let named: Vec<String> = locals
            .iter()
            .map(|dir| relative(dir).display().to_string())
            .collect();
        Ok(BuildCopy {
            workdir: target.join(relative(project)),
            report,
            notes: vec![format!(
                "{} is in no workspace; copying it with the local directories its file:/link: \
                 dependencies name ({}), at their places relative to {}",
                project.display(),
                named.join(", "),
                common.display()
            )],
        })
    }

    /// Starts watching the project at `path` (which must pass [`LocalSource::check_access`])
    /// with this source's excludes and debounce; must be called within a tokio runtime. See
    /// [`watch::watch`].
    pub fn watch<F>(&self, path: &Path, deliver: F) -> Result<WatchStop>
    where
        F: FnMut(Vec<ChangeEvent>) -> bool + Send + 'static,
    {
        let root = self.check_access(path)?;
        let options = WatchOptions {
            root,
            exclude: self.options.rules.exclude.clone(),
            debounce: Duration::from_millis(self.options.watch_debounce_ms),
        };
        Ok(watch::watch(options, deliver))
    }
}

/// The directories outside `project` that the `file:` and `link:` dependencies of its
/// package.json (`dependencies`, `devDependencies`, `optionalDependencies`) name, canonical,
/// without repeats and without one inside another; tarballs, missing paths and folders that
/// hold the project are left out.
fn local_dependencies(project: &Path) -> Vec<PathBuf> {
    let Some(manifest) = discover::read_package_json(project) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = Vec::new();
    for field in ["dependencies", "devDependencies", "optionalDependencies"] {
        let Some(Value::Object(entries)) = manifest.get(field) else {
            continue;
        };
        for spec in entries.values().filter_map(Value::as_str) {
            let Some(path) = spec
                .strip_prefix("file:")
                .or_else(|| spec.strip_prefix("link:"))
            else {
                continue;
            };
            let Ok(dir) = project.join(path).canonicalize() else {
                continue;
            };
            // A folder inside the project comes with it, and one holding the project would copy
            // it again over its own copy: neither is a separate local.
            if dir.is_dir() && !dir.starts_with(project) && !project.starts_with(&dir) {
                found.push(dir);
            }
        }
    }
    // Only the outermost of nested locals: each is copied whole, so a folder inside another
    // would be copied twice, the second copy emptying the first's place.
    let outermost: Vec<PathBuf> = found
        .iter()
        .filter(|dir| {
            !found
                .iter()
                .any(|other| other != *dir && dir.starts_with(other))
        })
        .cloned()
        .collect();
    let mut unique: Vec<PathBuf> = Vec::new();
    for dir in outermost {
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

/// An include is a `/`-separated glob pattern.
fn check_include(name: &str, value: &str) -> Result<()> {
    let reason = if value.trim().is_empty() {
        "must not be empty".to_owned()
    } else if value.contains('\0') {
        "must not contain NUL".to_owned()
    } else if value.starts_with('/') || value.split('/').any(|s| s == "..") {
        format!("must be a pattern relative to a base path (got '{value}')")
    } else {
        return Ok(());
    };
    Err(Error::invalid(name, reason))
}

/// An exclude is a single directory or file name.
fn check_exclude(name: &str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.contains('/') || value.contains('\0') {
        format!("must be a directory or file name, not a path (got '{value}')")
    } else if value == "." || value == ".." {
        format!("must be a directory or file name (got '{value}')")
    } else {
        return Ok(());
    };
    Err(Error::invalid(name, reason))
}

/// An array of strings; `None` / `null` is an error when `required`, else empty.
fn string_list(name: &str, value: Option<&Value>, required: bool) -> Result<Vec<String>> {
    match value {
        None | Some(Value::Null) if required => Err(Error::invalid(name, "is required")),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(Error::invalid(
                    format!("{name}[{index}]"),
                    expected("a string", other),
                )),
            })
            .collect(),
        Some(other) => Err(Error::invalid(name, expected("an array of strings", other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    fn temp(name: &str) -> PathBuf {
        crate::test_support::temp_dir("source-mod", name)
    }

    #[test]
    fn options_errors_name_the_field() {
        let dir = temp("options");
        let cwd = Path::new("/");
        let error = |options: Value| {
            LocalSource::from_json(&options, cwd)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(Value::Null), "Invalid basePaths: is required");
        assert_eq!(error(json!({})), "Invalid basePaths: is required");
        assert_eq!(
            error(json!({ "basePaths": [] })),
            "Invalid basePaths: must list at least one directory"
        );
        assert_eq!(
            error(json!({ "basePaths": "/tmp" })),
            "Invalid basePaths: expected an array of strings, got string '/tmp'"
        );
        assert_eq!(
            error(json!({ "basePaths": [dir, 3] })),
            "Invalid basePaths[1]: expected a string, got number 3"
        );
        let missing = dir.join("missing");
        assert_eq!(
            error(json!({ "basePaths": [missing] })),
            format!(
                "Invalid basePaths[0]: cannot resolve {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let file = dir.join("file");
        fs::write(&file, "x").unwrap();
        assert_eq!(
            error(json!({ "basePaths": [file] })),
            format!(
                "Invalid basePaths[0]: {} is not a directory",
                file.display()
            )
        );
        assert_eq!(
            error(json!({ "basePaths": [dir], "exclude": ["a/b"] })),
            "Invalid exclude[0]: must be a directory or file name, not a path (got 'a/b')"
        );
        assert_eq!(
            error(json!({ "basePaths": [dir], "exclude": ["ok", ".."] })),
            "Invalid exclude[1]: must be a directory or file name (got '..')"
        );
        assert_eq!(
            error(json!([1])),
            "Invalid options: expected an object, got an array"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn base_paths_are_canonical_and_relative_ones_follow_cwd() {
        let dir = temp("canonical");
        fs::create_dir(dir.join("base")).unwrap();
        let source = LocalSource::from_json(
            &json!({ "basePaths": ["base", "./base/../base"], "exclude": ["secrets"] }),
            &dir,
        )
        .unwrap();
        assert_eq!(
            source.base_paths(),
            &[dir.join("base").canonicalize().unwrap()]
        );
        assert_eq!(source.exclude(), &["secrets".to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_ids_are_named() {
        let dir = temp("unknown");
        let source = LocalSource::new(std::slice::from_ref(&dir), &[], Path::new("/")).unwrap();
        assert_eq!(
            source.project("nope").unwrap_err().to_string(),
            format!(
                "Project not found: no Mastra project with id 'nope' under {}",
                dir.canonicalize().unwrap().display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_target_holding_a_base_path_is_refused() {
        let dir = temp("holds-base");
        let base = dir.join("base");
        fs::create_dir_all(base.join("app/src/mastra")).unwrap();
        let source = LocalSource::new(std::slice::from_ref(&base), &[], Path::new("/")).unwrap();
        let error = source.copy_to(&base.join("app"), &dir).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "Refusing to copy into {}: it is or holds the base path {}",
                dir.display(),
                base.canonicalize().unwrap().display()
            )
        );
        assert!(base.join("app/src/mastra").is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn locals_are_the_outermost_folders_beside_the_project() {
        let dir = temp("locals").canonicalize().unwrap();
        let project = dir.join("app");
        for folder in ["app/src", "lib/inner", "other"] {
            fs::create_dir_all(dir.join(folder)).unwrap();
        }
        let manifest = json!({
            "dependencies": {
                "parent": "file:..",
                "lib": "file:../lib",
                "inner": "file:../lib/inner",
                "own": "file:./src",
                "again": "link:../lib"
            },
            "devDependencies": { "other": "file:../other" }
        });
        fs::write(project.join("package.json"), manifest.to_string()).unwrap();
        assert_eq!(
            local_dependencies(&project),
            [dir.join("lib"), dir.join("other")],
            "neither the folder holding the project, nor one inside the project or another local"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
