//! Local project sources: finding Mastra projects under configured base paths, deciding which
//! paths a caller may read, and copying a project into a build directory.
//!
//! A [`LocalSource`] holds canonical base paths (symlinks and `..` resolved once, at
//! construction). A project is a directory directly under a base path ([`discover`]); a path
//! is readable only when its canonical form lies inside a base path ([`access`]); a copy skips
//! dependency and build-output directories at every depth and never lets a symlink lead out of
//! the project ([`copy`]).
//!
//! # Caveats
//! Checks and copies are separate filesystem operations: a tree changed by another program
//! while it is copied may be copied in part. Symlinks are judged when the copy meets them, and
//! the walk never follows one, so a link swapped in during the copy is still copied as a link.

pub mod access;
pub mod copy;
pub mod discover;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::validate::expected;

pub use access::check_access;
pub use copy::{CopyReport, DEFAULT_EXCLUDES, Skipped, copy_project};
pub use discover::{ProjectInfo, discover_projects, is_mastra_project, project_id};

/// A provider of projects found directly under a set of base directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSource {
    base_paths: Vec<PathBuf>,
    exclude: Vec<String>,
}

impl LocalSource {
    /// A source over `base_paths` (each resolved against `cwd` when relative, then
    /// canonicalised), skipping `exclude` names in copies on top of [`DEFAULT_EXCLUDES`].
    /// Errors name the offending entry (`basePaths[1]`, `exclude[0]`).
    pub fn new(base_paths: &[PathBuf], exclude: &[String], cwd: &Path) -> Result<Self> {
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
        for (index, name) in exclude.iter().enumerate() {
            check_exclude(&format!("exclude[{index}]"), name)?;
        }
        Ok(LocalSource {
            base_paths: canonical,
            exclude: exclude.to_vec(),
        })
    }

    /// A source from a caller's `{ basePaths: string[], exclude?: string[] }`; relative paths
    /// are resolved against `cwd`.
    pub fn from_json(options: &Value, cwd: &Path) -> Result<Self> {
        let fields = match options {
            Value::Null => return Err(Error::invalid("basePaths", "is required")),
            Value::Object(fields) => fields,
            other => return Err(Error::invalid("options", expected("an object", other))),
        };
        let base_paths = string_list("basePaths", fields.get("basePaths"), true)?;
        let exclude = string_list("exclude", fields.get("exclude"), false)?;
        let base_paths: Vec<PathBuf> = base_paths.into_iter().map(PathBuf::from).collect();
        LocalSource::new(&base_paths, &exclude, cwd)
    }

    /// The canonical base paths, without duplicates, in the order given.
    pub fn base_paths(&self) -> &[PathBuf] {
        &self.base_paths
    }

    /// The configured excludes (the defaults are always skipped as well).
    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }

    /// The Mastra projects directly under the base paths, sorted by path.
    pub fn list_projects(&self) -> Result<Vec<ProjectInfo>> {
        discover_projects(&self.base_paths)
    }

    /// The project with `id`; [`Error::ProjectNotFound`] when none has it.
    pub fn project(&self, id: &str) -> Result<ProjectInfo> {
        self.list_projects()?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::ProjectNotFound {
                id: id.to_owned(),
                base_paths: self.base_paths.clone(),
            })
    }

    /// The canonical form of `path` when it is a directory inside a base path; see
    /// [`check_access`].
    pub fn check_access(&self, path: &Path) -> Result<PathBuf> {
        check_access(path, &self.base_paths)
    }

    /// Copies the project at `path` (which must pass [`LocalSource::check_access`]) into
    /// `target`, emptying it first. Besides [`copy_project`]'s own refusals, a target that is
    /// a base path or holds one is refused.
    pub fn copy_to(&self, path: &Path, target: &Path) -> Result<CopyReport> {
        let project = self.check_access(path)?;
        let resolved = copy::resolve_target(target)?;
        if let Some(base) = self.base_paths.iter().find(|b| b.starts_with(&resolved)) {
            return Err(Error::UnsafeCopyTarget {
                target: target.to_path_buf(),
                reason: format!("it is or holds the base path {}", base.display()),
            });
        }
        copy_project(&project, target, &self.exclude)
    }
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
        let dir = std::env::temp_dir().join(format!("source-mod-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
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
}
