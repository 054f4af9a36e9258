//! Which project paths a source provider may read.
//!
//! A path is judged by what it really names: it is canonicalised (symlinks and `..` resolved
//! by the operating system) and must then lie strictly inside one of the canonical base paths.
//! So `base/../etc` and a symlink in a base path that points elsewhere are both refused, while
//! a symlink elsewhere that points into a base path is allowed (it names a project there).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, path_list};

/// The canonical form of `path` when it is a directory strictly inside one of `base_paths`
/// (which must be canonical); otherwise [`Error::AccessDenied`] naming `path` as given, or
/// [`Error::Io`] when it cannot be resolved (it does not exist, a loop of symlinks).
pub fn check_access(path: &Path, base_paths: &[PathBuf]) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(Error::AccessDenied {
            path: path.to_path_buf(),
            reason: "a project path must be absolute".to_owned(),
        });
    }
    let resolved = path
        .canonicalize()
        .map_err(|e| Error::io("resolve project path", path, &e))?;
    let denied = |reason: String| Error::AccessDenied {
        path: path.to_path_buf(),
        reason,
    };
    if base_paths.contains(&resolved) {
        return Err(denied(format!(
            "{} is a base path itself; projects are the directories inside one",
            resolved.display()
        )));
    }
    if !base_paths.iter().any(|base| resolved.starts_with(base)) {
        return Err(denied(format!(
            "it resolves to {}, which is outside every base path ({})",
            resolved.display(),
            path_list(base_paths)
        )));
    }
    if !resolved.is_dir() {
        return Err(denied(format!("{} is not a directory", resolved.display())));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn setup(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("source-access-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("base/app")).unwrap();
        fs::create_dir_all(dir.join("outside")).unwrap();
        let dir = dir.canonicalize().unwrap();
        (dir.clone(), dir.join("base"))
    }

    #[test]
    fn a_directory_inside_a_base_path_is_allowed() {
        let (dir, base) = setup("inside");
        let bases = [base.clone()];
        assert_eq!(
            check_access(&base.join("app"), &bases),
            Ok(base.join("app"))
        );
        assert_eq!(
            check_access(&base.join("app/../app/."), &bases),
            Ok(base.join("app"))
        );
        // A link outside the base paths that points into one names a project there.
        symlink(base.join("app"), dir.join("alias")).unwrap();
        assert_eq!(
            check_access(&dir.join("alias"), &bases),
            Ok(base.join("app"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dot_dot_and_escaping_symlinks_are_refused() {
        let (dir, base) = setup("escape");
        let bases = [base.clone()];
        let tricks = [
            base.join("../outside"),
            base.join("app/../../outside"),
            base.join("../../../../etc"),
        ];
        for trick in tricks {
            let message = check_access(&trick, &bases).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!(
                    "Access denied to {}: it resolves to ",
                    trick.display()
                )),
                "{message}"
            );
            assert!(
                message.contains("which is outside every base path"),
                "{message}"
            );
        }
        symlink(dir.join("outside"), base.join("link-out")).unwrap();
        symlink("../outside", base.join("relative-out")).unwrap();
        for link in ["link-out", "relative-out"] {
            assert_eq!(
                check_access(&base.join(link), &bases)
                    .unwrap_err()
                    .to_string(),
                format!(
                    "Access denied to {}: it resolves to {}, which is outside every base path ({})",
                    base.join(link).display(),
                    dir.join("outside").display(),
                    base.display()
                )
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn base_paths_files_missing_and_relative_paths_are_refused() {
        let (dir, base) = setup("other");
        let bases = [base.clone()];
        assert_eq!(
            check_access(&base, &bases).unwrap_err().to_string(),
            format!(
                "Access denied to {0}: {0} is a base path itself; projects are the directories inside one",
                base.display()
            )
        );
        fs::write(base.join("file"), "x").unwrap();
        assert_eq!(
            check_access(&base.join("file"), &bases)
                .unwrap_err()
                .to_string(),
            format!(
                "Access denied to {0}: {0} is not a directory",
                base.join("file").display()
            )
        );
        assert_eq!(
            check_access(&base.join("missing"), &bases)
                .unwrap_err()
                .to_string(),
            format!(
                "Cannot resolve project path {}: No such file or directory (os error 2)",
                base.join("missing").display()
            )
        );
        assert_eq!(
            check_access(Path::new("base/app"), &bases)
                .unwrap_err()
                .to_string(),
            "Access denied to base/app: a project path must be absolute"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
