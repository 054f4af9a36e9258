//! Workspaces (monorepos): a root with `pnpm-workspace.yaml` or a package.json `workspaces`
//! field, whose packages (`apps/mastra`, `packages/*`) refer to each other (`workspace:*`).
//!
//! Many Mastra apps are one package of such a workspace. Their build needs the whole
//! workspace: the install runs at its root (where the lockfile is) and the packages the app
//! depends on are built before it. This module finds the root above a package, lists the
//! packages and orders the app's workspace dependencies so that each comes after those it
//! needs.
//!
//! A search upwards never passes its [`SearchBound`]: a `LocalProjectSource` looks no higher
//! than the base path that holds the project, a build no higher than its copy; only the
//! runner's built-in local source, which has no base paths, looks up to a repository root.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::discover::glob_matches;
use crate::builder::package_manager::{read_package_json, read_small_text};

/// How deep below the root packages are looked for.
const MAX_MEMBER_DEPTH: usize = 5;

/// A workspace root and its packages.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    /// The root directory.
    pub root: PathBuf,
    /// What makes it one: `pnpm-workspace.yaml` or `package.json workspaces`.
    pub marker: &'static str,
    /// Its packages (not the root), sorted by path.
    pub members: Vec<Member>,
}

/// One package of a workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Its package.json `name` (else its path relative to the root).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its directory relative to the root, `/`-separated.
    pub relative: String,
    /// Its package.json.
    pub manifest: Value,
}

/// The workspace patterns of `dir` when it is a workspace root: what declares them, and the
/// globs (`!` for exclusions).
pub fn patterns(dir: &Path) -> Option<(&'static str, Vec<String>)> {
    if let Some(text) = read_small_text(&dir.join("pnpm-workspace.yaml")) {
        return Some(("pnpm-workspace.yaml", yaml_packages(&text)));
    }
    let manifest = read_package_json(dir).ok()??;
    let list = match manifest.get("workspaces")? {
        Value::Array(list) => list,
        Value::Object(fields) => fields.get("packages")?.as_array()?,
        _ => return None,
    };
    let globs = list
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    Some(("package.json workspaces", globs))
}

/// The `packages:` list of a pnpm-workspace.yaml (block or flow style); other keys ignored.
fn yaml_packages(text: &str) -> Vec<String> {
    let unquote = |s: &str| {
        s.trim()
            .trim_matches(|c| c == '\'' || c == '"')
            .trim()
            .to_owned()
    };
    let mut globs = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let content = line.split(" #").next().unwrap_or(line);
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indented = content.starts_with(' ') || content.starts_with('\t');
        if !indented {
            inside = false;
            if let Some(rest) = content.strip_prefix("packages:") {
                let rest = rest.trim();
                if let Some(flow) = rest.strip_prefix('[') {
                    let flow = flow.trim_end().trim_end_matches(']');
                    globs.extend(flow.split(',').map(unquote).filter(|g| !g.is_empty()));
                } else {
                    inside = true;
                }
            }
            continue;
        }
        if inside && let Some(item) = content.trim_start().strip_prefix('-') {
            let glob = unquote(item);
            if !glob.is_empty() {
                globs.push(glob);
            }
        }
    }
    globs
}

/// How far up from a project a workspace root is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchBound<'a> {
    /// Up to and including this directory (a source's base path, a build copy, or the
    /// project itself): nothing above it is read.
    Within(&'a Path),
    /// Up to the nearest repository root (a directory holding `.git`), that one included, or
    /// the filesystem root: for a project given without base paths.
    Repository,
}

/// The directories a search from `start` looks at, nearest first, as `bound` allows.
fn searched<'a>(start: &'a Path, bound: SearchBound<'a>) -> impl Iterator<Item = &'a Path> {
    let mut ended = false;
    start.ancestors().take_while(move |dir| {
        if ended {
            return false;
        }
        match bound {
            SearchBound::Within(top) => {
                ended = *dir == top;
                dir.starts_with(top)
            }
            SearchBound::Repository => {
                ended = dir.join(".git").exists();
                true
            }
        }
    })
}

/// The nearest workspace root at or above `start`, within `bound`.
pub fn find_root(start: &Path, bound: SearchBound<'_>) -> Option<PathBuf> {
    searched(start, bound)
        .find(|dir| patterns(dir).is_some())
        .map(Path::to_path_buf)
}

/// The workspace root `project` belongs to: the nearest directory at or above it, within
/// `bound`, that is a workspace root and either is `project` or lists it among its packages
/// (its globs match the project's folder relative to it). A root whose globs leave the
/// project out is passed over, as npm does.
pub fn owning_root(project: &Path, bound: SearchBound<'_>) -> Option<PathBuf> {
    searched(project, bound)
        .find(|dir| {
            if *dir == project {
                patterns(dir).is_some()
            } else {
                lists(dir, project)
            }
        })
        .map(Path::to_path_buf)
}

/// The nearest workspace root strictly above `project` (looked for up to the filesystem root,
/// as package managers walk up) when `project` is neither a root itself nor listed by a root
/// within `bound`: a package manager started in `project` would take that workspace for its
/// own, so the install has to be told to stay in `project`.
pub fn unlisting_root(project: &Path, bound: SearchBound<'_>) -> Option<PathBuf> {
    let above =
        find_root(project, SearchBound::Within(Path::new("/"))).filter(|root| root != project)?;
    owning_root(project, bound).is_none().then_some(above)
}

/// Whether `root` is a workspace root whose globs match `dir` (below it) as a package.
fn lists(root: &Path, dir: &Path) -> bool {
    let Some((_, globs)) = patterns(root) else {
        return false;
    };
    let Ok(relative) = dir.strip_prefix(root) else {
        return false;
    };
    let relative: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    !relative.is_empty() && Globs::new(&globs).matches(&relative.join("/"))
}

/// A workspace's package globs: the ones that include and the `!` ones that exclude.
struct Globs {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Globs {
    /// The globs of a root's `packages` / `workspaces` list, `./` and trailing `/` trimmed.
    fn new(globs: &[String]) -> Self {
        let clean = |g: &str| g.trim_start_matches("./").trim_end_matches('/').to_owned();
        Globs {
            include: globs
                .iter()
                .filter(|g| !g.starts_with('!'))
                .map(|g| clean(g))
                .collect(),
            exclude: globs
                .iter()
                .filter_map(|g| g.strip_prefix('!'))
                .map(clean)
                .collect(),
        }
    }

    /// Whether a folder at `relative` (`/`-separated, below the root) is a package.
    fn matches(&self, relative: &str) -> bool {
        self.include.iter().any(|g| glob_matches(g, relative))
            && !self.exclude.iter().any(|g| glob_matches(g, relative))
    }
}

/// The workspace rooted at `root`, when it is one.
pub fn load(root: &Path) -> Option<Workspace> {
    let (marker, globs) = patterns(root)?;
    let globs = Globs::new(&globs);
    let mut members = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, relative, depth)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "node_modules" {
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let rel = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            if globs.matches(&rel)
                && let Ok(Some(manifest)) = read_package_json(&path)
            {
                let name = manifest
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map_or_else(|| rel.clone(), str::to_owned);
                members.push(Member {
                    name,
                    dir: path.clone(),
                    relative: rel.clone(),
                    manifest,
                });
            }
            if depth + 1 < MAX_MEMBER_DEPTH {
                pending.push((path, rel, depth + 1));
            }
        }
    }
    members.sort_by(|a, b| a.relative.cmp(&b.relative));
    Some(Workspace {
        root: root.to_path_buf(),
        marker,
        members,
    })
}

impl Workspace {
    /// The member whose directory is `dir`.
    pub fn member(&self, dir: &Path) -> Option<&Member> {
        self.members.iter().find(|m| m.dir == dir)
    }

    /// The workspace packages `app` depends on, directly or not (dependencies,
    /// devDependencies, optionalDependencies), each after the ones it needs; `app` itself is
    /// not among them. A cycle is cut where it closes.
    pub fn dependencies_of<'a>(&'a self, app: &'a Member) -> Vec<&'a Member> {
        let mut order = Vec::new();
        let mut seen: HashSet<&str> = HashSet::from([app.name.as_str()]);
        self.visit(app, &mut seen, &mut order);
        order
    }

    fn visit<'a>(
        &'a self,
        member: &Member,
        seen: &mut HashSet<&'a str>,
        order: &mut Vec<&'a Member>,
    ) {
        for dependency in self.direct_dependencies(member) {
            if seen.insert(dependency.name.as_str()) {
                self.visit(dependency, seen, order);
                order.push(dependency);
            }
        }
    }

    fn direct_dependencies(&self, member: &Member) -> Vec<&Member> {
        let names: Vec<&str> = ["dependencies", "devDependencies", "optionalDependencies"]
            .iter()
            .filter_map(|field| member.manifest.get(field)?.as_object())
            .flat_map(|deps| deps.keys().map(String::as_str))
            .collect();
        self.members
            .iter()
            .filter(|m| names.contains(&m.name.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::write;

    fn temp(name: &str) -> PathBuf {
        crate::test_support::temp_dir("source-ws", name)
    }

    #[test]
    fn pnpm_workspace_yaml_lists_are_read_in_both_styles() {
        let block = "# comment\npackages:\n  - 'apps/*'\n  - \"packages/*\" # libs\n  - '!**/test/**'\nallowBuilds:\n  - esbuild\n";
        assert_eq!(
            yaml_packages(block),
            ["apps/*", "packages/*", "!**/test/**"]
        );
        assert_eq!(
            yaml_packages("packages: ['apps/*', libs/x]\n"),
            ["apps/*", "libs/x"]
        );
        assert!(yaml_packages("onlyBuiltDependencies:\n  - esbuild\n").is_empty());
    }

    #[test]
    fn roots_members_and_dependency_order() {
        let root = temp("order");
        write(
            &root.join("package.json"),
            r#"{"name":"mono","workspaces":["apps/*","packages/*","!packages/skip"]}"#,
        );
        write(
            &root.join("apps/mastra/package.json"),
            r#"{"name":"app","dependencies":{"@x/b":"workspace:*","left-pad":"1"}}"#,
        );
        write(
            &root.join("packages/a/package.json"),
            r#"{"name":"@x/a","dependencies":{"@x/b":"*"}}"#,
        );
        write(
            &root.join("packages/b/package.json"),
            r#"{"name":"@x/b","devDependencies":{"@x/c":"*"}}"#,
        );
        write(
            &root.join("packages/c/package.json"),
            r#"{"name":"@x/c","dependencies":{"@x/b":"*"}}"#,
        );
        write(
            &root.join("packages/skip/package.json"),
            r#"{"name":"skip"}"#,
        );
        write(
            &root.join("apps/mastra/node_modules/z/package.json"),
            r#"{"name":"z"}"#,
        );
        fs::create_dir_all(root.join("apps/mastra/src")).unwrap();

        assert_eq!(
            find_root(&root.join("apps/mastra/src"), SearchBound::Within(&root)),
            Some(root.clone())
        );
        assert_eq!(
            find_root(
                &root.join("apps/mastra"),
                SearchBound::Within(&root.join("apps"))
            ),
            None
        );
        assert_eq!(
            find_root(&root.join("apps/mastra"), SearchBound::Repository),
            Some(root.clone())
        );
        assert!(lists(&root, &root.join("apps/mastra")));
        assert!(!lists(&root, &root.join("packages/skip")));
        assert!(!lists(&root, &root.join("apps/mastra/src")));
        assert!(!lists(&root, &root));
        let workspace = load(&root).unwrap();
        assert_eq!(workspace.marker, "package.json workspaces");
        let names: Vec<&str> = workspace.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["app", "@x/a", "@x/b", "@x/c"]);
        let app = workspace.member(&root.join("apps/mastra")).unwrap();
        assert_eq!(app.relative, "apps/mastra");
        // c before b (b needs c; the cycle back to b is cut); a is not needed.
        let order: Vec<&str> = workspace
            .dependencies_of(app)
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(order, ["@x/c", "@x/b"]);
        assert!(load(&root.join("apps/mastra")).is_none());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_search_stops_at_a_repository_root() {
        let root = temp("git");
        write(&root.join("package.json"), r#"{"workspaces":["repo/*"]}"#);
        fs::create_dir_all(root.join("repo/.git")).unwrap();
        write(&root.join("repo/app/package.json"), "{}");
        assert_eq!(
            find_root(&root.join("repo/app"), SearchBound::Repository),
            None
        );
        assert_eq!(
            find_root(&root.join("repo/app"), SearchBound::Within(&root)),
            Some(root.clone())
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_above_the_bound_is_read_and_a_root_must_list_the_project() {
        let root = temp("bound");
        // The temporary root lists base/**, above the base path; base/group/ is a workspace
        // of libs/* only.
        write(&root.join("pnpm-workspace.yaml"), "packages: ['base/**']\n");
        write(
            &root.join("base/group/package.json"),
            r#"{"workspaces":["libs/*"]}"#,
        );
        let base = root.join("base");
        let app = base.join("group/app");
        write(&app.join("package.json"), "{}");
        let lib = base.join("group/libs/util");
        write(&lib.join("package.json"), "{}");
        let within = SearchBound::Within(&base);
        // The nearest root, whatever it lists; the temporary root is above the bound.
        assert_eq!(find_root(&app, within), Some(base.join("group")));
        assert_eq!(owning_root(&lib, within), Some(base.join("group")));
        // group/ leaves app/ out, and the root above the base path is never looked at.
        assert_eq!(owning_root(&app, within), None);
        assert_eq!(owning_root(&app, SearchBound::Within(&app)), None);
        // Without a bound (no .git here), the outer root lists it.
        assert_eq!(
            owning_root(&app, SearchBound::Repository),
            Some(root.clone())
        );
        // A project that is a root is its own.
        assert_eq!(
            owning_root(&base.join("group"), within),
            Some(base.join("group"))
        );
        // A start outside the bound looks at nothing.
        assert_eq!(find_root(&root, within), None);
        // app/ is left out within the base path, yet group/ is above it: it must stay alone.
        assert_eq!(unlisting_root(&app, within), Some(base.join("group")));
        // Listed (lib/), or a root itself (group/): nothing to stay out of.
        assert_eq!(unlisting_root(&lib, within), None);
        assert_eq!(unlisting_root(&base.join("group"), within), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
