//! The package manager that runs a build: found on the build's `PATH` (where a fetched copy
//! comes first), asked for its version, and after the install, the version that actually ran
//! it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Run, Stop, how};
use crate::builder::package_manager::{Detection, PackageManager, alone_args, find_in_path};
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
            && major(wanted) != major(found)
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
            Some(line) if exit.success() => Ok(Some(line.trim_start_matches('v').to_owned())),
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

/// The version in the `packageManager: pnpm@<version>` line pnpm writes into
/// `<node_modules>/.modules.yaml` after an install, if that file is there and says so.
fn modules_yaml_version(node_modules: &Path) -> Option<String> {
    let text = std::fs::read_to_string(node_modules.join(".modules.yaml")).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("packageManager:")?.trim();
        let (_, version) = value
            .trim_matches(|c| c == '\'' || c == '"')
            .rsplit_once('@')?;
        Some(version.to_owned()).filter(|v| !v.is_empty())
    })
}

/// The leading number of a version.
fn major(version: &str) -> Option<u64> {
    version
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_lead_with_their_major_number() {
        assert_eq!(major("v12.21.0"), Some(12));
        assert_eq!(major("9.1.0"), Some(9));
    }
}
