//! Finding Mastra projects directly under base paths, and their stable ids.
//!
//! A directory directly under a base path is a Mastra project when its `package.json` lists
//! `@mastra/core` or `mastra` in `dependencies` or `devDependencies`, or when it has
//! `src/mastra/index.ts` or `src/mastra/index.js`. Deeper directories are not searched. An
//! entry that is a symlink counts when it resolves to a directory inside a base path (the same
//! rule as [`super::check_access`]); its project is reported under its canonical path.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::access::check_access;
use crate::error::{Error, Result};

/// A Mastra project found under a base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Stable id: see [`project_id`].
    pub id: String,
    /// package.json `name` when it is a non-empty string, else the directory's name.
    pub name: String,
    /// The project directory, canonical.
    pub path: PathBuf,
}

/// The dependencies that mark a package as a Mastra project.
const MASTRA_PACKAGES: [&str; 2] = ["@mastra/core", "mastra"];

/// The id of the project at canonical path `path`: the 64-bit FNV-1a hash of the path's bytes
/// as 16 lowercase hex digits. The same path gives the same id in every process and on every
/// machine; moving or renaming the project changes it. Ids contain no path separator, so they
/// are valid build-directory ids as well.
pub fn project_id(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Whether `dir` is a Mastra project by the rules above; an unreadable or malformed
/// package.json only means that rule does not apply.
pub fn is_mastra_project(dir: &Path) -> bool {
    let mastra = dir.join("src").join("mastra");
    if mastra.join("index.ts").is_file() || mastra.join("index.js").is_file() {
        return true;
    }
    read_package_json(dir).is_some_and(|package| {
        ["dependencies", "devDependencies"].iter().any(|field| {
            package
                .get(field)
                .and_then(Value::as_object)
                .is_some_and(|deps| MASTRA_PACKAGES.iter().any(|name| deps.contains_key(*name)))
        })
    })
}

fn read_package_json(dir: &Path) -> Option<Value> {
    let text = fs::read(dir.join("package.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The project's display name: package.json `name`, else the directory's name.
fn project_name(dir: &Path) -> String {
    read_package_json(dir)
        .and_then(|package| {
            package
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// The Mastra projects directly under `base_paths` (canonical), sorted by path, each once
/// even when reachable through several entries. A base path that cannot be read is an error;
/// an entry that cannot be resolved is skipped.
pub fn discover_projects(base_paths: &[PathBuf]) -> Result<Vec<ProjectInfo>> {
    let mut projects: Vec<ProjectInfo> = Vec::new();
    for base in base_paths {
        let entries = fs::read_dir(base).map_err(|e| Error::io("read directory", base, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", base, &e))?;
            let Ok(path) = check_access(&entry.path(), base_paths) else {
                continue;
            };
            if is_mastra_project(&path) && !projects.iter().any(|p| p.path == path) {
                projects.push(ProjectInfo {
                    id: project_id(&path),
                    name: project_name(&path),
                    path,
                });
            }
        }
    }
    projects.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(projects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("source-discover-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn ids_are_stable_hex_hashes_of_the_path() {
        let id = project_id(Path::new("/projects/hello"));
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, project_id(Path::new("/projects/hello")));
        assert_ne!(id, project_id(Path::new("/projects/hello2")));
        // FNV-1a of the empty input is its offset basis.
        assert_eq!(project_id(Path::new("")), "cbf29ce484222325");
        assert_eq!(crate::validate::id("project.id", &id), Ok(()));
    }

    #[test]
    fn each_rule_finds_a_project_and_plain_directories_are_ignored() {
        let base = temp("rules");
        write(
            &base.join("core/package.json"),
            r#"{"name":"with-core","dependencies":{"@mastra/core":"1"}}"#,
        );
        write(
            &base.join("cli/package.json"),
            r#"{"devDependencies":{"mastra":"1"}}"#,
        );
        write(&base.join("ts/src/mastra/index.ts"), "export {}");
        write(&base.join("js/src/mastra/index.js"), "export {}");
        write(
            &base.join("plain/package.json"),
            r#"{"name":"plain","dependencies":{"express":"4"}}"#,
        );
        write(&base.join("broken/package.json"), "{ not json");
        write(&base.join("deep/inner/src/mastra/index.ts"), "export {}");
        write(
            &base.join("peer/package.json"),
            r#"{"peerDependencies":{"mastra":"1"}}"#,
        );
        write(&base.join("file.txt"), "x");
        let projects = discover_projects(std::slice::from_ref(&base)).unwrap();
        let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cli", "with-core", "js", "ts"]);
        for project in &projects {
            assert_eq!(project.id, project_id(&project.path));
            assert!(project.path.starts_with(&base));
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinked_entries_count_once_and_only_inside_base_paths() {
        let dir = temp("links");
        let base = dir.join("base");
        write(&base.join("app/src/mastra/index.ts"), "export {}");
        write(&dir.join("elsewhere/src/mastra/index.ts"), "export {}");
        symlink(base.join("app"), base.join("alias")).unwrap();
        symlink(dir.join("elsewhere"), base.join("escape")).unwrap();
        let projects = discover_projects(std::slice::from_ref(&base)).unwrap();
        assert_eq!(projects.len(), 1);
        assert_eq!(projects[0].path, base.join("app"));
        assert_eq!(projects[0].name, "app");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_base_path_is_an_error_naming_it() {
        let dir = temp("gone");
        let gone = dir.join("gone");
        assert_eq!(
            discover_projects(std::slice::from_ref(&gone))
                .unwrap_err()
                .to_string(),
            format!(
                "Cannot read directory {}: No such file or directory (os error 2)",
                gone.display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
