//! Build scripts of dependencies under pnpm: pnpm 10 skips those of packages no policy allows
//! (with a warning), pnpm 11 and later stop the install with `ERR_PNPM_IGNORED_BUILDS`
//! (`strictDepBuilds` defaults to true). A project that sets no policy was written for the
//! former, so its install runs with `strictDepBuilds` off and the log names the packages whose
//! scripts were skipped; a project that sets one keeps it, strictness included.
//!
//! # Caveats
//! - The policy is looked for where pnpm reads it (the `pnpm` field of package.json,
//!   `pnpm-workspace.yaml`, `.npmrc`) by its top-level keys only: a policy set anywhere else
//!   (the user's global config) is not seen, and the install runs with `strictDepBuilds` off.

use std::path::Path;

use serde_json::Value;

use super::package_manager::{read_package_json, read_small_text};

/// The variable that turns `strictDepBuilds` off (pnpm 11+ read `pnpm_config_*`; older pnpm
/// ignore it and skip such scripts anyway).
pub const STRICT_DEP_BUILDS_VAR: &str = "pnpm_config_strict_dep_builds";

/// The settings by which a project says which dependencies may run build scripts, as keys of
/// package.json's `pnpm` field and of `pnpm-workspace.yaml`.
const POLICY_KEYS: [&str; 7] = [
    "onlyBuiltDependencies",
    "onlyBuiltDependenciesFile",
    "neverBuiltDependencies",
    "ignoredBuiltDependencies",
    "allowBuilds",
    "dangerouslyAllowAllBuilds",
    "strictDepBuilds",
];

/// What pnpm prints before the packages whose build scripts it did not run.
const IGNORED_BUILDS: &str = "Ignored build scripts:";

/// Whether the pnpm project installed at `root` sets a policy for its dependencies' build
/// scripts (one of [`POLICY_KEYS`], or its kebab-case form in `.npmrc`); an unreadable file
/// counts as none.
pub fn sets_policy(root: &Path) -> bool {
    let manifest = read_package_json(root).ok().flatten();
    let in_manifest = manifest
        .as_ref()
        .and_then(|m| m.get("pnpm"))
        .and_then(Value::as_object)
        .is_some_and(|pnpm| POLICY_KEYS.iter().any(|key| pnpm.contains_key(*key)));
    let in_workspace = read_small_text(&root.join("pnpm-workspace.yaml"))
        .is_some_and(|text| text.lines().any(|line| top_level_key(line, ':', false)));
    let in_npmrc = read_small_text(&root.join(".npmrc"))
        .is_some_and(|text| text.lines().any(|line| top_level_key(line, '=', true)));
    in_manifest || in_workspace || in_npmrc
}

/// Whether `line` starts with one of [`POLICY_KEYS`] (in kebab case with `kebab`), followed by
/// `separator` (`only-built-dependencies[]=` in `.npmrc` too).
fn top_level_key(line: &str, separator: char, kebab: bool) -> bool {
    POLICY_KEYS.iter().any(|key| {
        let key = if kebab {
            kebab_case(key)
        } else {
            (*key).to_owned()
        };
        line.strip_prefix(key.as_str()).is_some_and(|rest| {
            let rest = rest.strip_prefix("[]").unwrap_or(rest);
            rest.trim_start().starts_with(separator)
        })
    })
}

/// `onlyBuiltDependencies` → `only-built-dependencies`.
fn kebab_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The packages an install's `lines` say pnpm did not run the build scripts of
/// (`Ignored build scripts: esbuild@0.25.0, dep@file:dep.`, also inside pnpm 10's box), each
/// once, in order.
pub fn ignored_builds<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in lines {
        let Some(at) = line.find(IGNORED_BUILDS) else {
            continue;
        };
        let list = line[at + IGNORED_BUILDS.len()..]
            .trim_end_matches(|c: char| c.is_whitespace() || c == '│')
            .trim_end_matches('.');
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !found.iter().any(|f| f == name) {
                found.push(name.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn policies_are_found_where_pnpm_reads_them() {
        let dir = crate::test_support::temp_dir("runner-dep-scripts", "policy");
        assert!(!sets_policy(&dir));
        fs::write(dir.join("package.json"), r#"{"pnpm":{"overrides":{}}}"#).unwrap();
        fs::write(
            dir.join("pnpm-workspace.yaml"),
            "packages:\n  - '.'\n# allowBuilds: x\n",
        )
        .unwrap();
        fs::write(dir.join(".npmrc"), "strict-peer-dependencies=false\n").unwrap();
        assert!(!sets_policy(&dir));
        fs::write(
            dir.join("package.json"),
            r#"{"pnpm":{"onlyBuiltDependencies":["esbuild"]}}"#,
        )
        .unwrap();
        assert!(sets_policy(&dir));
        fs::remove_file(dir.join("package.json")).unwrap();
        fs::write(
            dir.join("pnpm-workspace.yaml"),
            "allowBuilds:\n  esbuild: true\n",
        )
        .unwrap();
        assert!(sets_policy(&dir));
        fs::remove_file(dir.join("pnpm-workspace.yaml")).unwrap();
        fs::write(dir.join(".npmrc"), "only-built-dependencies[]=esbuild\n").unwrap();
        assert!(sets_policy(&dir));
        fs::write(dir.join(".npmrc"), "strict-dep-builds = true\n").unwrap();
        assert!(sets_policy(&dir));
    }

    #[test]
    fn ignored_builds_are_read_from_pnpm_10_and_12() {
        let pnpm12 = [
            "dependencies:",
            "Ignored build scripts: dep@file:dep, esbuild@0.25.0.",
        ];
        assert_eq!(ignored_builds(pnpm12), ["dep@file:dep", "esbuild@0.25.0"]);
        let pnpm10 = [
            "│   Ignored build scripts: esbuild.                              │",
            "│   Run \"pnpm approve-builds\" to pick which dependencies should  │",
        ];
        assert_eq!(ignored_builds(pnpm10), ["esbuild"]);
        assert!(ignored_builds(["Done in 53ms"]).is_empty());
    }
}
