//! Copying a project for a build: excludes at every depth, symlinks kept or refused, file
//! modes, a clean target on every copy, unsafe targets, and access checks of `LocalSource`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use mastra_runner_local::error::Error;
use mastra_runner_local::source::{LocalSource, copy_project};

/// A fresh canonical temporary directory with `base/app` (the project) inside.
struct Fixture {
    dir: PathBuf,
    base: PathBuf,
    app: PathBuf,
    target: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("source-copy-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("base/app")).unwrap();
        let dir = dir.canonicalize().unwrap();
        Fixture {
            base: dir.join("base"),
            app: dir.join("base/app"),
            target: dir.join("builds/b1"),
            dir,
        }
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.app.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn source(&self) -> LocalSource {
        LocalSource::new(std::slice::from_ref(&self.base), &[], Path::new("/")).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Read-only directories made by a test must become writable before removal.
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.dir)
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Every path under `root`, relative, sorted (symlinks listed, not followed).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn excludes_apply_at_every_depth_and_only_to_exact_names() {
    let f = Fixture::new("excludes");
    f.write("package.json", "{}");
    f.write("src/index.ts", "export {}");
    f.write("dist.txt", "kept");
    f.write("node_modules/x/index.js", "skipped");
    f.write("a/b/node_modules/x", "skipped");
    f.write("a/dist/out.js", "skipped");
    f.write("a/.git/HEAD", "skipped");
    f.write("a/b/.mastra/output/index.mjs", "skipped");
    f.write(".next/cache", "skipped");
    f.write("deep/.turbo/log", "skipped");
    f.write("deep/secrets/key", "skipped by the configured exclude");
    f.write(
        "deep/notes.local",
        "skipped by the configured exclude (a file name)",
    );
    f.write("deep/secrets.txt", "kept");
    let excludes = ["secrets".to_owned(), "notes.local".to_owned()];
    let report = copy_project(&f.app, &f.target, &excludes).unwrap();
    assert_eq!(
        listing(&f.target),
        [
            "a",
            "a/b",
            "deep",
            "deep/secrets.txt",
            "dist.txt",
            "package.json",
            "src",
            "src/index.ts"
        ]
    );
    assert_eq!(report.files, 4);
    assert_eq!(report.bytes, (2 + 9 + 4 + 4) as u64);
    assert_eq!(report.symlinks, 0);
    assert!(report.skipped_symlinks.is_empty());
}

#[test]
fn the_configured_excludes_of_a_source_apply_to_its_copies() {
    let f = Fixture::new("source-excludes");
    f.write("src/mastra/index.ts", "export {}");
    f.write("coverage/lcov.info", "skipped");
    let source = LocalSource::new(
        std::slice::from_ref(&f.base),
        &["coverage".to_owned()],
        Path::new("/"),
    )
    .unwrap();
    source.copy_to(&f.app, &f.target).unwrap();
    assert_eq!(
        listing(&f.target),
        ["src", "src/mastra", "src/mastra/index.ts"]
    );
}

#[test]
fn relative_symlinks_inside_are_kept_as_links() {
    let f = Fixture::new("links-in");
    f.write("lib/real.js", "real");
    f.write("lib/data/file.txt", "data");
    symlink("real.js", f.app.join("lib/alias.js")).unwrap();
    symlink("../lib/real.js", f.app.join("lib/data/up.js")).unwrap();
    symlink("lib/data", f.app.join("data-dir")).unwrap();
    symlink("missing.js", f.app.join("lib/dangling.js")).unwrap();
    let report = copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(report.symlinks, 4, "{report:?}");
    assert!(report.skipped_symlinks.is_empty(), "{report:?}");
    assert_eq!(report.files, 2, "the linked directory is not copied twice");
    for (link, pointee) in [
        ("lib/alias.js", "real.js"),
        ("lib/data/up.js", "../lib/real.js"),
        ("data-dir", "lib/data"),
        ("lib/dangling.js", "missing.js"),
    ] {
        let copied = f.target.join(link);
        assert!(
            fs::symlink_metadata(&copied).unwrap().is_symlink(),
            "{link}"
        );
        assert_eq!(fs::read_link(&copied).unwrap(), PathBuf::from(pointee));
    }
    assert_eq!(
        fs::read_to_string(f.target.join("data-dir/file.txt")).unwrap(),
        "data"
    );
}

#[test]
fn symlinks_leading_out_of_the_project_are_reported_not_copied() {
    let f = Fixture::new("links-out");
    fs::write(f.dir.join("secret"), "outside").unwrap();
    f.write("src/index.ts", "export {}");
    f.write("sub/keep", "x");
    symlink(f.dir.join("secret"), f.app.join("absolute")).unwrap();
    symlink("../../secret", f.app.join("dotdot")).unwrap();
    symlink("../../../etc", f.app.join("sub/deeper")).unwrap();
    // Resolves lexically inside but really outside: `sub/up` is the project root.
    symlink("..", f.app.join("sub/up")).unwrap();
    symlink("up/../..", f.app.join("sub/trick")).unwrap();
    // An absolute link is refused wherever it points.
    symlink(&f.base, f.app.join("base-abs")).unwrap();
    let report = copy_project(&f.app, &f.target, &[]).unwrap();
    let mut skipped: Vec<(String, String)> = report
        .skipped_symlinks
        .iter()
        .map(|s| (s.path.display().to_string(), s.reason.clone()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            (
                "absolute".to_owned(),
                format!(
                    "its target is absolute (-> {}); only relative links inside the project are kept",
                    f.dir.join("secret").display()
                )
            ),
            (
                "base-abs".to_owned(),
                format!(
                    "its target is absolute (-> {}); only relative links inside the project are kept",
                    f.base.display()
                )
            ),
            (
                "dotdot".to_owned(),
                "it points outside the project (-> ../../secret)".to_owned()
            ),
            (
                "sub/deeper".to_owned(),
                "it points outside the project (-> ../../../etc)".to_owned()
            ),
            (
                "sub/trick".to_owned(),
                "it points outside the project (-> up/../..)".to_owned()
            ),
        ]
    );
    assert_eq!(report.symlinks, 1);
    assert_eq!(
        listing(&f.target),
        ["src", "src/index.ts", "sub", "sub/keep", "sub/up"]
    );
    let lines = report.log_lines();
    assert_eq!(lines[0], "copied 2 files (10 bytes) and 1 symlinks");
    assert!(
        lines.contains(
            &"warning: symlink dotdot not copied: it points outside the project (-> ../../secret)"
                .to_owned()
        )
    );
}

#[test]
fn a_second_copy_leaves_no_stale_files() {
    let f = Fixture::new("stale");
    f.write("old.txt", "old");
    f.write("dir/old.txt", "old");
    copy_project(&f.app, &f.target, &[]).unwrap();
    fs::remove_file(f.app.join("old.txt")).unwrap();
    fs::remove_dir_all(f.app.join("dir")).unwrap();
    f.write("new.txt", "new");
    // Leftovers of a failed build, including a link that must be removed, not followed.
    fs::write(f.target.join("leftover"), "x").unwrap();
    symlink(&f.app, f.target.join("link-to-source")).unwrap();
    let report = copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(listing(&f.target), ["new.txt"]);
    assert_eq!(report.files, 1);
    assert!(f.app.join("new.txt").is_file(), "the source is untouched");
}

#[test]
fn file_and_directory_modes_are_kept() {
    let f = Fixture::new("modes");
    f.write("bin/run.sh", "#!/bin/sh\necho ok\n");
    f.write("secret.env", "KEY=1");
    f.write("ro/file", "x");
    fs::set_permissions(f.app.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(f.app.join("secret.env"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(f.app.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(mode(&f.target.join("bin/run.sh")), 0o755);
    assert_eq!(mode(&f.target.join("secret.env")), 0o600);
    assert_eq!(mode(&f.target.join("ro")), 0o555);
    assert_eq!(fs::read_to_string(f.target.join("ro/file")).unwrap(), "x");
    let run = std::process::Command::new(f.target.join("bin/run.sh"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok\n");
    // A second copy can empty a target holding a read-only directory.
    copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(mode(&f.target.join("ro")), 0o555);
}

#[test]
fn unsafe_targets_are_refused_before_anything_is_removed() {
    let f = Fixture::new("targets");
    f.write("package.json", "{}");
    let refusal = |target: &Path| match copy_project(&f.app, target, &[]) {
        Err(Error::UnsafeCopyTarget { reason, .. }) => reason,
        other => panic!("{target:?}: expected a refusal, got {other:?}"),
    };
    assert_eq!(refusal(Path::new("/")), "it is the root directory");
    assert_eq!(refusal(&f.app), "it is the project itself");
    assert_eq!(refusal(&f.app.join("../app/.")), "it is the project itself");
    assert_eq!(refusal(&f.app.join("out")), "it is inside the project");
    assert_eq!(
        refusal(&f.app.join("missing/deeper")),
        "it is inside the project"
    );
    assert_eq!(refusal(&f.base), "it holds the project");
    symlink(&f.app, f.dir.join("alias")).unwrap();
    assert_eq!(refusal(&f.dir.join("alias")), "it is the project itself");
    fs::create_dir(f.dir.join("elsewhere")).unwrap();
    fs::write(f.dir.join("elsewhere/keep"), "x").unwrap();
    symlink(f.dir.join("elsewhere"), f.dir.join("link-target")).unwrap();
    assert_eq!(
        refusal(&f.dir.join("link-target")),
        "it is a symlink; give the directory it points to"
    );
    assert!(f.dir.join("elsewhere/keep").is_file());
    fs::write(f.dir.join("file"), "x").unwrap();
    assert_eq!(
        refusal(&f.dir.join("file")),
        "it exists and is not a directory"
    );
    assert_eq!(
        copy_project(&f.app, Path::new("/"), &[])
            .unwrap_err()
            .to_string(),
        "Refusing to copy into /: it is the root directory"
    );
    assert!(f.app.join("package.json").is_file());
}

#[test]
fn sources_outside_the_base_paths_are_refused() {
    let f = Fixture::new("access");
    f.write("package.json", "{}");
    fs::create_dir_all(f.dir.join("outside")).unwrap();
    fs::write(f.dir.join("outside/secret"), "x").unwrap();
    symlink(f.dir.join("outside"), f.base.join("escape")).unwrap();
    let source = f.source();
    for path in [
        f.dir.join("outside"),
        f.base.join("../outside"),
        f.base.join("app/../../outside"),
        f.base.join("escape"),
        PathBuf::from("/etc"),
    ] {
        let error = source.copy_to(&path, &f.target).unwrap_err();
        assert!(
            matches!(&error, Error::AccessDenied { path: named, .. } if *named == path),
            "{path:?}: {error}"
        );
        assert!(
            error.to_string().contains("outside every base path"),
            "{error}"
        );
    }
    assert!(!f.target.exists(), "nothing was created");
    let report = source.copy_to(&f.app, &f.target).unwrap();
    assert_eq!(report.files, 1);
}

#[test]
fn many_files_copy_in_parallel_with_exact_totals() {
    let f = Fixture::new("many");
    let mut bytes = 0u64;
    for dir in 0..20 {
        for file in 0..50 {
            let text = "x".repeat(dir * 50 + file);
            bytes += text.len() as u64;
            f.write(&format!("d{dir}/f{file}.txt"), &text);
        }
    }
    let report = copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(report.files, 1000);
    assert_eq!(report.bytes, bytes);
    assert_eq!(
        fs::read_to_string(f.target.join("d19/f49.txt"))
            .unwrap()
            .len(),
        999
    );
}

#[test]
fn special_files_are_reported_not_read() {
    let f = Fixture::new("fifo");
    f.write("a.txt", "a");
    let made = std::process::Command::new("mkfifo")
        .arg(f.app.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let report = copy_project(&f.app, &f.target, &[]).unwrap();
    assert_eq!(listing(&f.target), ["a.txt"]);
    assert_eq!(report.skipped_special.len(), 1);
    assert_eq!(report.skipped_special[0].path, PathBuf::from("pipe"));
}

#[test]
fn a_workspace_package_brings_its_workspace_and_a_root_stands_for_its_one_app() {
    let fx = Fixture::new("workspace");
    // base/app is the workspace root; apps/agent its Mastra app, packages/lib a library.
    fx.write(
        "package.json",
        r#"{"name":"mono","workspaces":["apps/*","packages/*"]}"#,
    );
    fx.write("package-lock.json", "{}");
    fx.write(
        "apps/agent/package.json",
        r#"{"name":"agent","dependencies":{"@mastra/core":"1","lib":"*"}}"#,
    );
    fx.write("packages/lib/package.json", r#"{"name":"lib"}"#);
    fx.write("packages/lib/node_modules/x/index.js", "");
    let source = fx.source();

    let copy = source
        .copy_for_build(&fx.app.join("apps/agent"), &fx.target)
        .unwrap();
    assert_eq!(copy.workdir, fx.target.join("apps/agent"));
    assert!(fx.target.join("packages/lib/package.json").is_file());
    assert!(fx.target.join("package-lock.json").is_file());
    assert!(!fx.target.join("packages/lib/node_modules").exists());
    assert_eq!(
        copy.log_lines()[0],
        format!(
            "{} is the package apps/agent of the workspace at {}: copying the whole workspace",
            fx.app.join("apps/agent").display(),
            fx.app.display()
        )
    );

    let copy = source.copy_for_build(&fx.app, &fx.target).unwrap();
    assert_eq!(copy.workdir, fx.target.join("apps/agent"));
    assert_eq!(
        copy.notes,
        [format!(
            "{} is a workspace whose one Mastra app is apps/agent: building it",
            fx.app.display()
        )]
    );

    fx.write("apps/web/src/mastra/index.ts", "export {}");
    fx.write("apps/web/package.json", r#"{"name":"web"}"#);
    let message = source
        .copy_for_build(&fx.app, &fx.target)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "Invalid project.sourceConfig.path: {} is a workspace with 2 Mastra apps (apps/agent, \
             apps/web): point sourceConfig.path at one of them",
            fx.app.display()
        )
    );

    // The root must lie inside the base path: a project at the base's top is copied alone.
    let inner = LocalSource::new(&[fx.app.join("apps")], &[], Path::new("/")).unwrap();
    let copy = inner
        .copy_for_build(&fx.app.join("apps/agent"), &fx.target)
        .unwrap();
    assert_eq!(copy.workdir, fx.target);
    assert!(copy.notes.is_empty());
    assert!(fx.target.join("package.json").is_file());
    fs::remove_dir_all(&fx.dir).unwrap();
}
