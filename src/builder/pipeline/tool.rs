//! The package manager that runs a build: found on the build's `PATH` (where a fetched copy
//! comes first), asked for its version, and after the install, the version that actually ran
//! it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Run, Stop, how};
use crate::builder::package_manager::{
    Detection, PackageManager, alone_args, find_in_path, major_version,
};
use crate::logs::{LogLimits, LogStore, Stream};
use crate::process::SpawnSpec;

impl Run<'_> {
    /// Finds the package manager on the child's PATH (where a fetched copy comes first) and
    /// asks it for its version; the yarn flavour follows the version actually found.
    pub(super) async fn resolve_tool(
        &mut self,
        detection: &Detection,
        env: &BTreeMap<String, String>,
        fetched: bool,
        alone: bool,
    ) -> Result<(PathBuf, Option<String>), Stop> {
        let command = detection.package_manager.command();
        let path = env.get("PATH").map(String::as_str);
        let program = find_in_path(command, path, &self.root).ok_or_else(|| {
            Stop::Failed(format!(
                "Package manager {command} not found on PATH ({})",
                path.unwrap_or("PATH is not set")
            ))
        })?;
        let prefix = if alone {
            alone_args(detection.package_manager)
        } else {
            &[]
        };
        let version = self.version(&program, prefix, env).await?;
        let mut pm = detection.package_manager;
        let found = match &version {
            Some(version) => {
                pm = pm.with_version(version);
                format!("{command} {version}")
            }
            None => format!("{command} (version unknown)"),
        };
        self.package_manager = Some(pm);
        // A fetched pnpm 10 may hand over to the version a workspace root above names
        // (manage-package-manager-versions): say what it reports, not what was fetched.
        let origin = match (&detection.requested_version, &version) {
            (Some(wanted), Some(found)) if fetched && wanted != found => {
                format!("fetched as {command}@{wanted}, the version package.json names")
            }
            _ if fetched => "the version package.json names".to_owned(),
            _ => "found on PATH".to_owned(),
        };
        self.say(format!(
            "Detected package manager: {}; running {found} from {} ({origin})",
            detection.describe(),
            program.display()
        ));
        if let (Some(wanted), Some(found)) = (&detection.requested_version, &version)
            && major_version(wanted) != major_version(found)
        {
            self.say(format!(
                "Warning: package.json asks for {command}@{wanted} but {command} {found} is on \
                 PATH; using it"
            ));
        }
        Ok((program, version))
    }

    /// `<program> <prefix> --version` in the install's folder, first line; `None` (with a
    /// warning) when it fails.
    async fn version(
        &mut self,
        program: &Path,
        prefix: &[&str],
        env: &BTreeMap<String, String>,
    ) -> Result<Option<String>, Stop> {
        let scratch = Arc::new(LogStore::new(LogLimits::with_lines(50)));
        let mut args: Vec<String> = prefix.iter().map(|a| (*a).to_owned()).collect();
        args.push("--version".to_owned());
        let spec = SpawnSpec {
            program: program.to_string_lossy().into_owned(),
            args,
            cwd: self.root.clone(),
            env: env.clone(),
            confinement: Default::default(),
        };
        let shown = format!("{} {}", program.display(), spec.args.join(" "));
        let exit = self
            .supervise(spec, Arc::clone(&scratch), "detection", &shown)
            .await?;
        let first = scratch
            .all()
            .into_iter()
            .filter(|e| e.stream() == Stream::Stdout)
            .map(|e| e.line().trim().to_owned())
            .find(|line| !line.is_empty());
        match first {
            Some(line) if exit.success() => {
                let version = line.trim_start_matches('v');
                if is_version(version) {
                    return Ok(Some(version.to_owned()));
                }
                self.say(format!(
                    "Warning: {shown} printed no version; continuing without it"
                ));
                Ok(None)
            }
            _ => {
                self.say(format!(
                    "Warning: {shown} {}; continuing without its version",
                    how(&exit)
                ));
                Ok(None)
            }
        }
    }

    /// Says which version of the package manager ran the install, from its own report: for
    /// pnpm the `packageManager` it wrote into `node_modules/.modules.yaml`, else (and when
    /// that file is elsewhere, as in a workspace) `<program> --version` with the install's
    /// folder, flags and environment; warns when it is not the version package.json names.
    pub(super) async fn report_version(
        &mut self,
        program: &Path,
        pm: PackageManager,
        env: &BTreeMap<String, String>,
        detection: &Detection,
        alone: bool,
    ) -> Result<(), Stop> {
        let command = pm.command();
        let written = match pm {
            PackageManager::Pnpm => modules_yaml_version(&self.root.join("node_modules")),
            _ => None,
        };
        let (ran, source) = match written {
            Some(version) => (Some(version), "node_modules/.modules.yaml".to_owned()),
            None => {
                let prefix = if alone { alone_args(pm) } else { &[] };
                let version = self.version(program, prefix, env).await?;
                let mut shown = vec![command];
                shown.extend(prefix);
                shown.push("--version");
                (version, shown.join(" "))
            }
        };
        let Some(ran) = ran else {
            return Ok(());
        };
        self.say(format!(
            "The install ran {command} {ran} (as {source} reports)"
        ));
        if let Some(wanted) = &detection.requested_version
            && *wanted != ran
        {
            self.say(format!(
                "Warning: package.json names {command}@{wanted} but {command} {ran} ran the \
                 install"
            ));
        }
        Ok(())
    }
}

/// The most of `.modules.yaml` read: pnpm writes its `packageManager` line near the top.
const MODULES_YAML_MAX_BYTES: u64 = 64 * 1024;

/// The version in the `packageManager: pnpm@<version>` line pnpm writes into
/// `<node_modules>/.modules.yaml` after an install, if that file is there and says so. The
/// install's scripts could have replaced the file: only a regular file is read, and only its
/// first 64 KiB; what it names must look like a version.
fn modules_yaml_version(node_modules: &Path) -> Option<String> {
    let path = node_modules.join(".modules.yaml");
    if !std::fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .ok()?
        .take(MODULES_YAML_MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("packageManager:")?.trim();
        let (_, version) = value
            .trim_matches(|c| c == '\'' || c == '"')
            .rsplit_once('@')?;
        is_version(version).then(|| version.to_owned())
    })
}

/// Whether a package manager's report of its version looks like one (`10.4.1`, not a line
/// of anything else): short, and leading with a number.
fn is_version(text: &str) -> bool {
    text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_digit())
        && major_version(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_short_number_first_line_is_a_version() {
        assert!(is_version("9.1.0"));
        assert!(!is_version("Usage: pnpm [command]"));
        assert!(!is_version(&"1".repeat(65)));
    }
}
