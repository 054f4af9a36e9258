//! Where a build installs: the root of the workspace the project is a package of (looked for
//! inside the build copy), or the project alone when a workspace root above it leaves it out;
//! and that place made a git work tree for lifecycle scripts that ask git.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Run, Stop, how};
use crate::builder::excerpt::error_excerpt;
use crate::builder::package_manager::{PackageManager, alone_args, find_in_path};
use crate::source::workspace::{self, Member, Workspace};

impl Run<'_> {
    /// The build copy (`<buildDir>/<build.id>`) holding `workdir`, if it is in one.
    pub(super) fn copy_of(&self, workdir: &Path) -> Option<PathBuf> {
        let build_dir = self.settings.caches.root().parent()?;
        let first = workdir.strip_prefix(build_dir).ok()?.components().next()?;
        Some(build_dir.join(first))
    }

    /// The workspace the working directory is a package of, looked for inside the build copy
    /// (`<buildDir>/<build.id>`) only: a directory elsewhere is built on its own.
    pub(super) fn workspace(&self, workdir: &Path) -> Option<Workspace> {
        let copy = self.copy_of(workdir)?;
        let root = workspace::find_root(workdir, workspace::SearchBound::Within(&copy))
            .filter(|root| root != workdir)?;
        workspace::load(&root).filter(|workspace| workspace.member(workdir).is_some())
    }

    /// Whether the install must stay in `workdir`, which no workspace takes as a package
    /// (membership is decided in the build copy, as the copy decided it, or, for a directory
    /// built in place, up to the filesystem root), because a workspace root above it (in the
    /// copy or above the copy) leaves it out: `pm` walking up would install that root
    /// instead. Says so.
    pub(super) fn alone(&self, workdir: &Path, pm: PackageManager) -> bool {
        let top = PathBuf::from("/");
        let copy = self.copy_of(workdir);
        let bound = workspace::SearchBound::Within(copy.as_deref().unwrap_or(&top));
        let Some(root) = workspace::unlisting_root(workdir, bound) else {
            return false;
        };
        let how = match alone_args(pm) {
            [] => "as it does on its own".to_owned(),
            args => format!("with {}", args.join(" ")),
        };
        self.say(format!(
            "Workspace: {} is a workspace root whose packages do not include the project: \
             installing the project alone ({} {how})",
            root.display(),
            pm.command()
        ));
        true
    }

    /// Makes the workspace's root the place of the install, says so, and returns the workspace
    /// packages the app (`workdir`) depends on, in build order.
    pub(super) fn enter_workspace(&mut self, workspace: &Workspace, workdir: &Path) -> Vec<Member> {
        self.root = workspace.root.clone();
        let dependencies: Vec<Member> = workspace
            .member(workdir)
            .map(|app| {
                workspace
                    .dependencies_of(app)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let relative = workdir.strip_prefix(&workspace.root).unwrap_or(workdir);
        let needed = if dependencies.is_empty() {
            "no other workspace package".to_owned()
        } else {
            dependencies
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.say(format!(
            "Workspace: the project is the package {} of the workspace at {} ({}); installing \
             at its root; it depends on {needed}",
            relative.display(),
            workspace.root.display(),
            workspace.marker
        ));
        dependencies
    }

    /// Makes a build copy (a working directory inside `buildDir`) without a `.git` of its own a
    /// git work tree, with an empty repository, so that lifecycle scripts that ask git (husky,
    /// lefthook) work; a directory elsewhere is the caller's and is left alone.
    pub(super) async fn git_work_tree(
        &mut self,
        env: &BTreeMap<String, String>,
    ) -> Result<(), Stop> {
        let workdir = self.root.clone();
        let inside = self
            .settings
            .caches
            .root()
            .parent()
            .is_some_and(|build_dir| workdir.starts_with(build_dir));
        if !inside || workdir.join(".git").exists() {
            return Ok(());
        }
        let path = env.get("PATH").map(String::as_str);
        let Some(git) = find_in_path("git", path, &workdir) else {
            self.say(
                "git is not on PATH: the build copy is not a git work tree, so lifecycle scripts \
                 that need one (husky, lefthook) may fail"
                    .to_owned(),
            );
            return Ok(());
        };
        let (exit, output) = self
            .quiet(
                &git,
                &["-c", "init.defaultBranch=main", "init", "--quiet"],
                &workdir,
                env,
                "git init",
            )
            .await?;
        if exit.success() {
            self.say(
                "Initialised an empty git repository in the build copy (without the source's \
                 history), for lifecycle scripts that need a git work tree"
                    .to_owned(),
            );
        } else {
            self.say(format!(
                "Warning: git init {}: {}",
                how(&exit),
                error_excerpt(&output).unwrap_or_default()
            ));
        }
        Ok(())
    }
}
