//! Finding Mastra projects under base paths, what they are made of, and their stable ids.
//!
//! A directory is a Mastra project when its `package.json` lists `@mastra/core`, `mastra`,
//! `@mastra/cli` or `@mastra/server` in `dependencies` or `devDependencies`, or when it has
//! one of [`MASTRA_CONFIG_FILES`]. [`discover_projects`] searches up to [`ScanRules::max_depth`]
//! levels below each base path, never entering hidden directories, the copy excludes, `build`
//! or the configured excludes, and keeps the directories whose relative path matches an
//! `include` pattern ([`include_matches`]). An entry that is a symlink counts when it resolves
//! to a directory inside a base path (the rule of [`super::check_access`]) and is never
//! entered; its project is reported under its canonical path. The Mastra apps of a workspace
//! whose root is a base path or a directory the search meets are found however deep they sit;
//! a project's own workspace is looked for no higher than its base path ([`search_top`]).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::access::check_access;
use super::copy::DEFAULT_EXCLUDES;
use super::workspace::{self, SearchBound, Workspace};
use crate::error::{Error, Result};

/// A Mastra project found under a base path (or added by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Stable id: see [`project_id`].
    pub id: String,
    /// package.json `name` when it is a non-empty string, else the directory's name.
    pub name: String,
    /// The project directory, canonical.
    pub path: PathBuf,
    /// What its files say about it.
    pub metadata: ProjectMetadata,
}

/// What a project's files say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectMetadata {
    /// The same as [`ProjectInfo::name`].
    pub name: String,
    /// package.json `version`.
    pub version: Option<String>,
    /// package.json `description`.
    pub description: Option<String>,
    /// `npm`, `pnpm`, `yarn` or `bun`, detected as a build would (npm when undecidable).
    pub package_manager: &'static str,
    /// The first of [`MASTRA_CONFIG_FILES`] present, absolute.
    pub mastra_config_path: Option<PathBuf>,
    /// package.json `main`, else `module`.
    pub entry_point: Option<String>,
    /// Whether a `tsconfig.json` exists.
    pub is_typescript: bool,
    /// Which of [`MASTRA_PACKAGES`] it depends on.
    pub mastra_dependencies: Vec<String>,
    /// The workspace it is a package of, if any.
    pub workspace: Option<WorkspaceOf>,
}

/// The workspace a project is a package of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceOf {
    /// The workspace's root directory.
    pub root: PathBuf,
    /// The project's folder relative to it (`apps/mastra`).
    pub relative: String,
    /// What makes the root one: `pnpm-workspace.yaml` or `package.json workspaces`.
    pub marker: &'static str,
}

/// Where to search and what to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRules {
    /// Glob patterns a directory's path relative to its base path must match.
    pub include: Vec<String>,
    /// Names never entered or reported, on top of the built-in ones.
    pub exclude: Vec<String>,
    /// How many levels below a base path are searched (at least 1).
    pub max_depth: usize,
}

impl Default for ScanRules {
    fn default() -> Self {
        ScanRules {
            include: vec!["*".to_owned()],
            exclude: Vec::new(),
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Levels searched below a base path unless configured.
pub const DEFAULT_MAX_DEPTH: usize = 2;

/// The dependencies that mark a package as a Mastra project.
pub const MASTRA_PACKAGES: [&str; 4] = ["@mastra/core", "mastra", "@mastra/cli", "@mastra/server"];

/// Files that mark a directory as a Mastra project, in the order they are looked for.
pub const MASTRA_CONFIG_FILES: [&str; 5] = [
    "mastra.config.ts",
    "mastra.config.js",
    "mastra.config.mjs",
    "src/mastra/index.ts",
    "src/mastra/index.js",
];

/// Directory names a scan never enters besides [`DEFAULT_EXCLUDES`] and hidden ones.
const SCAN_ONLY_EXCLUDES: [&str; 1] = ["build"];

/// The id of the project at canonical path `path`: `local_` and the first 12 hex digits of
/// the SHA-256 of the path, as MastraAdmin's TypeScript local source computes it, so stored
/// project ids keep working. Moving or renaming the project changes it. Ids contain no path
/// separator, so they are valid build-directory ids as well.
pub fn project_id(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let digest = sha256(path.as_os_str().as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("local_{hex}")
}

/// SHA-256 of `data` (FIPS 180-4).
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(add);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Whether `dir` is a Mastra project by the rules above; an unreadable or malformed
/// package.json only means that rule does not apply.
pub fn is_mastra_project(dir: &Path) -> bool {
    mastra_config(dir).is_some()
        || read_package_json(dir).is_some_and(|package| !mastra_dependencies(&package).is_empty())
}

/// The first of [`MASTRA_CONFIG_FILES`] in `dir`.
fn mastra_config(dir: &Path) -> Option<PathBuf> {
    MASTRA_CONFIG_FILES
        .iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
}

/// Which of [`MASTRA_PACKAGES`] a package.json lists in `dependencies` or `devDependencies`.
fn mastra_dependencies(package: &Value) -> Vec<String> {
    MASTRA_PACKAGES
        .iter()
        .filter(|name| {
            ["dependencies", "devDependencies"].iter().any(|field| {
                package
                    .get(field)
                    .and_then(Value::as_object)
                    .is_some_and(|deps| deps.contains_key(**name))
            })
        })
        .map(|name| (*name).to_owned())
        .collect()
}

/// `<dir>/package.json` parsed, when it is there and valid.
pub(crate) fn read_package_json(dir: &Path) -> Option<Value> {
    crate::builder::package_manager::read_package_json(dir)
        .ok()
        .flatten()
}

/// A non-empty string field of package.json.
fn text_field(package: Option<&Value>, field: &str) -> Option<String> {
    package
        .and_then(|p| p.get(field))
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The highest directory a workspace search from `project` may look at: the deepest of
/// `base_paths` (canonical) that holds it, else the project itself (one added from outside
/// them). Nothing above a base path is ever read.
pub fn search_top<'a>(project: &'a Path, base_paths: &'a [PathBuf]) -> &'a Path {
    base_paths
        .iter()
        .filter(|base| project.starts_with(base))
        .max_by_key(|base| base.components().count())
        .map_or(project, PathBuf::as_path)
}

/// The project at canonical path `dir`, with its id, name and metadata; its workspace is
/// looked for no higher than [`search_top`] of `base_paths`.
pub fn project_info(dir: &Path, base_paths: &[PathBuf]) -> ProjectInfo {
    let package = read_package_json(dir);
    let name = text_field(package.as_ref(), "name").unwrap_or_else(|| {
        dir.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let bound = SearchBound::Within(search_top(dir, base_paths));
    let workspace = workspace::owning_root(dir, bound)
        .filter(|root| root != dir)
        .and_then(|root| workspace::load(&root))
        .and_then(|workspace| {
            let member = workspace.member(dir)?;
            Some(WorkspaceOf {
                root: workspace.root.clone(),
                relative: member.relative.clone(),
                marker: workspace.marker,
            })
        });
    // A workspace package installs with its workspace's package manager.
    let detect_in = workspace.as_ref().map_or(dir, |w| w.root.as_path());
    let package_manager = crate::builder::package_manager::detect(detect_in)
        .map(|detection| detection.package_manager.command())
        .unwrap_or("npm");
    let metadata = ProjectMetadata {
        name: name.clone(),
        version: text_field(package.as_ref(), "version"),
        description: text_field(package.as_ref(), "description"),
        package_manager,
        mastra_config_path: mastra_config(dir),
        entry_point: text_field(package.as_ref(), "main")
            .or_else(|| text_field(package.as_ref(), "module")),
        is_typescript: dir.join("tsconfig.json").is_file(),
        mastra_dependencies: package
            .as_ref()
            .map(mastra_dependencies)
            .unwrap_or_default(),
        workspace,
    };
    ProjectInfo {
        id: project_id(dir),
        name,
        path: dir.to_path_buf(),
        metadata,
    }
}

/// Whether one path segment matches a pattern segment with `*` (any run of characters) and
/// `?` (one character).
fn segment_matches(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            segment_matches(&pattern[1..], name)
                || (!name.is_empty() && segment_matches(pattern, &name[1..]))
        }
        (Some('?'), Some(_)) => segment_matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => segment_matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether the segments of `path` match the segments of `pattern`, where a `**` segment
/// matches any number of segments.
fn segments_match(pattern: &[Vec<char>], path: &[Vec<char>]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(first) if first.len() == 2 && first[0] == '*' && first[1] == '*' => {
            (0..=path.len()).any(|skip| segments_match(&pattern[1..], &path[skip..]))
        }
        Some(first) => {
            !path.is_empty()
                && segment_matches(first, &path[0])
                && segments_match(&pattern[1..], &path[1..])
        }
    }
}

fn split(text: &str) -> Vec<Vec<char>> {
    text.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.chars().collect())
        .collect()
}

/// Whether the whole of `relative` (a `/`-separated path) matches `pattern` (`*`, `?`, `**`),
/// as workspace globs match package directories.
pub fn glob_matches(pattern: &str, relative: &str) -> bool {
    segments_match(&split(pattern), &split(relative))
}

/// Whether `relative` (a `/`-separated path below a base path) matches the include
/// `pattern`: a pattern with `**` must match the whole path; one without matches the path's
/// last segments (as many as it has), so `*` matches a directory at any searched depth.
pub fn include_matches(pattern: &str, relative: &str) -> bool {
    let pattern = split(pattern);
    let path = split(relative);
    let deep = pattern
        .iter()
        .any(|s| s.len() == 2 && s[0] == '*' && s[1] == '*');
    if deep {
        return segments_match(&pattern, &path);
    }
    path.len() >= pattern.len() && segments_match(&pattern, &path[path.len() - pattern.len()..])
}

/// Whether a scan skips an entry called `name`.
fn scan_skips(name: &str, rules: &ScanRules) -> bool {
    name.starts_with('.')
        || DEFAULT_EXCLUDES.contains(&name)
        || SCAN_ONLY_EXCLUDES.contains(&name)
        || rules.exclude.iter().any(|e| e == name)
}

/// The Mastra projects under `base_paths` (canonical) by `rules`, sorted by path, each once
/// even when reachable through several entries. A base path that cannot be read is an error;
/// a deeper directory that cannot be read, or an entry that cannot be resolved, is skipped.
pub fn discover_projects(base_paths: &[PathBuf], rules: &ScanRules) -> Result<Vec<ProjectInfo>> {
    let mut found: Vec<PathBuf> = Vec::new();
    // The Mastra apps of a workspace are found however deep they are.
    let add_apps = |workspace: &Workspace, prefix: &str, found: &mut Vec<PathBuf>| {
        for member in &workspace.members {
            let relative = if prefix.is_empty() {
                member.relative.clone()
            } else {
                format!("{prefix}/{}", member.relative)
            };
            if rules.include.iter().any(|p| include_matches(p, &relative))
                && let Ok(path) = check_access(&member.dir, base_paths)
                && is_mastra_project(&path)
                && !found.contains(&path)
            {
                found.push(path);
            }
        }
    };
    for base in base_paths {
        let entries = fs::read_dir(base).map_err(|e| Error::io("read directory", base, &e))?;
        if let Some(workspace) = workspace::load(base) {
            add_apps(&workspace, "", &mut found);
        }
        let mut pending: Vec<(fs::ReadDir, String, usize)> = vec![(entries, String::new(), 1)];
        while let Some((entries, prefix, depth)) = pending.pop() {
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if depth == 1 => return Err(Error::io("read directory", base, &e)),
                    Err(_) => continue,
                };
                let name = entry.file_name().to_string_lossy().into_owned();
                if scan_skips(&name, rules) {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if !kind.is_dir() && !kind.is_symlink() {
                    continue;
                }
                let relative = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if rules.include.iter().any(|p| include_matches(p, &relative))
                    && let Ok(path) = check_access(&entry.path(), base_paths)
                    && is_mastra_project(&path)
                    && !found.contains(&path)
                {
                    found.push(path);
                }
                if kind.is_dir()
                    && let Some(workspace) = workspace::load(&entry.path())
                {
                    add_apps(&workspace, &relative, &mut found);
                }
                if kind.is_dir()
                    && depth < rules.max_depth
                    && let Ok(children) = fs::read_dir(entry.path())
                {
                    pending.push((children, relative, depth + 1));
                }
            }
        }
    }
    found.sort();
    Ok(found
        .iter()
        .map(|path| project_info(path, base_paths))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(name: &str) -> PathBuf {
        crate::test_support::temp_dir("source-discover", name)
    }

    use crate::test_support::write;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        let hex =
            |data: &[u8]| -> String { sha256(data).iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&[b'a'; 1000]),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn ids_are_those_of_the_typescript_source() {
        let id = project_id(Path::new("/projects/hello"));
        // sha256("/projects/hello") starts with these 12 hex digits.
        assert_eq!(id, format!("local_{}", &sha_hex("/projects/hello")[..12]));
        assert_eq!(id.len(), 18);
        assert_eq!(id, project_id(Path::new("/projects/hello")));
        assert_ne!(id, project_id(Path::new("/projects/hello2")));
        assert_eq!(crate::validate::id("project.id", &id), Ok(()));
    }

    fn sha_hex(text: &str) -> String {
        sha256(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn include_patterns_match_trailing_segments_or_whole_paths() {
        assert!(include_matches("*", "app"));
        assert!(include_matches("*", "apps/web"));
        assert!(include_matches("app-*", "group/app-1"));
        assert!(!include_matches("app-*", "app"));
        assert!(include_matches("ap?", "app"));
        assert!(include_matches("apps/*", "apps/web"));
        assert!(!include_matches("apps/*", "apps"));
        assert!(include_matches("**/web", "a/b/web"));
        assert!(!include_matches("**/web", "a/b/api"));
        assert!(include_matches("apps/**", "apps/x/y"));
        assert!(!include_matches("apps/**", "libs/x"));
    }

    #[test]
    fn each_rule_finds_a_project_and_plain_directories_are_ignored() {
        let base = temp("rules");
        write(
            &base.join("core/package.json"),
            r#"{"name":"with-core","version":"1.2.3","description":"d","main":"index.js","dependencies":{"@mastra/core":"1"}}"#,
        );
        write(&base.join("core/pnpm-lock.yaml"), "");
        write(&base.join("core/tsconfig.json"), "{}");
        write(
            &base.join("cli/package.json"),
            r#"{"devDependencies":{"mastra":"1","@mastra/cli":"1"}}"#,
        );
        write(&base.join("ts/src/mastra/index.ts"), "export {}");
        write(&base.join("js/src/mastra/index.js"), "export {}");
        write(&base.join("cfg/mastra.config.mjs"), "export {}");
        write(
            &base.join("plain/package.json"),
            r#"{"name":"plain","dependencies":{"express":"4"}}"#,
        );
        write(&base.join("broken/package.json"), "{ not json");
        write(
            &base.join("peer/package.json"),
            r#"{"peerDependencies":{"mastra":"1"}}"#,
        );
        write(&base.join("file.txt"), "x");
        let projects =
            discover_projects(std::slice::from_ref(&base), &ScanRules::default()).unwrap();
        let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cfg", "cli", "with-core", "js", "ts"]);
        for project in &projects {
            assert_eq!(project.id, project_id(&project.path));
            assert!(project.path.starts_with(&base));
        }
        let core = &projects[2].metadata;
        assert_eq!(core.version.as_deref(), Some("1.2.3"));
        assert_eq!(core.description.as_deref(), Some("d"));
        assert_eq!(core.entry_point.as_deref(), Some("index.js"));
        assert_eq!(core.package_manager, "pnpm");
        assert!(core.is_typescript);
        assert_eq!(core.mastra_dependencies, ["@mastra/core"]);
        assert_eq!(core.mastra_config_path, None);
        assert_eq!(
            projects[1].metadata.mastra_dependencies,
            ["mastra", "@mastra/cli"]
        );
        assert_eq!(
            projects[3].metadata.mastra_config_path,
            Some(base.join("js/src/mastra/index.js"))
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn depth_include_and_exclude_decide_where_to_look() {
        let base = temp("depth");
        write(&base.join("mono/apps/src/mastra/index.ts"), "export {}");
        write(
            &base.join("group/deep/inner/src/mastra/index.ts"),
            "export {}",
        );
        write(
            &base.join("node_modules/dep/src/mastra/index.ts"),
            "export {}",
        );
        write(&base.join("build/out/src/mastra/index.ts"), "export {}");
        write(&base.join(".hidden/app/src/mastra/index.ts"), "export {}");
        write(&base.join("skipme/app/src/mastra/index.ts"), "export {}");
        write(&base.join("top/src/mastra/index.ts"), "export {}");
        let bases = std::slice::from_ref(&base);
        let relative = |rules: &ScanRules| -> Vec<String> {
            discover_projects(bases, rules)
                .unwrap()
                .iter()
                .map(|p| p.path.strip_prefix(&base).unwrap().display().to_string())
                .collect()
        };
        let default = ScanRules::default();
        assert_eq!(relative(&default), ["mono/apps", "skipme/app", "top"]);
        let shallow = ScanRules {
            max_depth: 1,
            ..default.clone()
        };
        assert_eq!(relative(&shallow), ["top"]);
        let deeper = ScanRules {
            max_depth: 3,
            exclude: vec!["skipme".to_owned()],
            ..default.clone()
        };
        assert_eq!(relative(&deeper), ["group/deep/inner", "mono/apps", "top"]);
        let only_apps = ScanRules {
            include: vec!["apps".to_owned()],
            ..default
        };
        assert_eq!(relative(&only_apps), ["mono/apps"]);
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
        let projects =
            discover_projects(std::slice::from_ref(&base), &ScanRules::default()).unwrap();
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
            discover_projects(std::slice::from_ref(&gone), &ScanRules::default())
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
