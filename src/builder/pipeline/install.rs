//! The install step: its variables and arguments (decided before it runs, so that the build
//! cache can fingerprint them), and the run itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{INSTALL, Run, Stop};
use crate::builder::dependency_scripts;
use crate::builder::package_manager::{Detection, PackageManager, alone_args, install_args};
use crate::logs::LogEntry;

/// How a build installs its dependencies.
#[derive(Debug, Clone)]
pub(super) struct Install {
    /// The package manager.
    pub pm: PackageManager,
    /// Its arguments (`ci`, `install --frozen-lockfile`, ...).
    pub args: Vec<String>,
    /// Its variables: the build's, the caches, `CI=true` and no `NODE_ENV`.
    pub env: BTreeMap<String, String>,
    /// Where it runs (the workspace root or the working directory).
    pub root: PathBuf,
    /// Whether pnpm skips dependencies' build scripts as pnpm 10 does (no policy is set).
    pub skip_scripts: bool,
    /// Whether the project is installed alone (outside the workspace above it).
    pub alone: bool,
}

impl Install {
    /// The install of a project managed by `pm` in `root`, with the build's variables `env`
    /// and the cache variables `caches`.
    pub fn new(
        pm: PackageManager,
        env: &BTreeMap<String, String>,
        caches: BTreeMap<String, String>,
        detection: &Detection,
        alone: bool,
        root: &Path,
    ) -> Install {
        let mut install_env = env.clone();
        install_env.extend(caches);
        install_env.remove("NODE_ENV");
        install_env.insert("CI".to_owned(), "true".to_owned());
        install_env.insert("HUSKY".to_owned(), "0".to_owned());
        // pnpm 11+ would stop at dependencies' build scripts that no policy allows; without a
        // policy the project expects pnpm 10's skipping (the user's own setting, in envVars,
        // still wins).
        let skip_scripts = pm == PackageManager::Pnpm && !dependency_scripts::sets_policy(root);
        if skip_scripts {
            install_env
                .entry(dependency_scripts::STRICT_DEP_BUILDS_VAR.to_owned())
                .or_insert_with(|| "false".to_owned());
        }
        let mut args = install_args(pm, detection.lockfile().is_some());
        if alone {
            args.extend(alone_args(pm).iter().map(|a| (*a).to_owned()));
        }
        if pm == PackageManager::Bun {
            // bun hard-links packages out of its shared cache by default, and does not check
            // them there: a build writing into its node_modules would change what every later
            // bun build gets.
            args.push("--backend=copyfile".to_owned());
        }
        Install {
            pm,
            args,
            env: install_env,
            root: root.to_path_buf(),
            skip_scripts,
            alone,
        }
    }
}

impl Run<'_> {
    /// Runs `install` with `program`, says which dependency scripts pnpm skipped, and which
    /// version of the package manager ran.
    pub(super) async fn install(
        &mut self,
        program: &Path,
        install: &Install,
        detection: &Detection,
    ) -> Result<(), Stop> {
        let before = self.log.tail(1).first().map_or(0, LogEntry::id);
        self.step(
            &INSTALL,
            program,
            install.pm,
            install.args.clone(),
            install.env.clone(),
            &install.root,
        )
        .await?;
        if install.skip_scripts {
            let output = self.log.all();
            let skipped = dependency_scripts::ignored_builds(
                output
                    .iter()
                    .filter(|e| e.id() > before)
                    .map(LogEntry::line),
            );
            if !skipped.is_empty() {
                self.say(format!(
                    "Build scripts of dependencies not run: {} (skipped as pnpm 10 skips them: \
                     the project sets no policy such as onlyBuiltDependencies or allowBuilds)",
                    skipped.join(", ")
                ));
            }
        }
        self.report_version(program, install.pm, &install.env, detection, install.alone)
            .await
    }
}
