//! The package-manager cache under `<buildDir>/.cache/pm` is writable by every build and server
//! (they run as the runner's uid inside `buildDir`), so what runs must be what was verified
//! (issue 27). These tests plant files in the cache the way a hostile build would, then build
//! another project that names `pnpm@9.15.0`. No network: the `npm` on the build's PATH is a
//! fake that answers `npm view` with the integrity of a tarball the test made and `npm pack`
//! with that tarball; the "pnpm" in it is a shell script that says it is genuine.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{path_with, project, temp_dir};
use mastra_runner_local::builder::{BuildOutcome, BuildRequest, BuilderConfig, ProjectBuilder};
use mastra_runner_local::isolation::SandboxSettings;

/// A fake `npm`: `view` prints the sha512 integrity of `$FAKE_PM_TARBALL` as the registry
/// would, `pack` copies that tarball to `--pack-destination` and appends the npm cache it was
/// given to `$FAKE_PACK_LOG`.
const FAKE_NPM: &str = r#"#!/bin/sh
case "$1" in
  --version) echo 10.0.0-fake ;;
  view)
    exec node -e "const t = require('fs').readFileSync(process.env.FAKE_PM_TARBALL);
      const sri = 'sha512-' + require('crypto').createHash('sha512').update(t).digest('base64');
      console.log(JSON.stringify({ 'dist.integrity': sri }, null, 2))" ;;
  pack)
    dest=""; previous=""
    for arg in "$@"; do
      [ "$previous" = "--pack-destination" ] && dest="$arg"
      previous="$arg"
    done
    echo "packed with cache $npm_config_cache" >> "$FAKE_PACK_LOG"
    cp "$FAKE_PM_TARBALL" "$dest/pnpm-9.15.0.tgz" ;;
  *) echo "fake npm: unexpected $*" >&2; exit 64 ;;
esac
"#;

/// The genuine package manager's bin: says so, and writes the build output.
const GENUINE_PNPM: &str = r#"#!/bin/sh
case "$1" in
  --version) echo 9.15.0 ;;
  install) echo "genuine pnpm $*" ;;
  run)
    echo "genuine pnpm $*"
    mkdir -p .mastra/output && echo 'export const ok = 1' > .mastra/output/index.mjs ;;
  *) exit 64 ;;
esac
"#;

/// What a hostile build plants: leaves a mark in the project it runs in, and pretends.
const POISONED_PNPM: &str = r#"#!/bin/sh
touch "$PWD/poisoned"
case "$1" in
  --version) echo 9.15.0 ;;
  *) mkdir -p .mastra/output && echo 'export const ok = 1' > .mastra/output/index.mjs ;;
esac
"#;

const PNPM_MANIFEST: &str =
    r#"{ "name": "pnpm", "version": "9.15.0", "bin": { "pnpm": "bin/pnpm.cjs" } }"#;

/// A builder on a fresh build directory, the fake npm first on its builds' PATH, serving
/// `served` (a pnpm tarball).
struct Setup {
    name: String,
    builder: ProjectBuilder,
    path: String,
    served: PathBuf,
    pack_log: PathBuf,
}

impl Setup {
    fn new(name: &str, served: PathBuf) -> Self {
        let bin = temp_dir(&format!("{name}-npm"));
        write_executable(&bin.join("npm"), FAKE_NPM);
        Setup {
            name: name.to_owned(),
            builder: ProjectBuilder::new(BuilderConfig {
                // The fake npm logs its packs beside the builds, outside a build's sandbox.
                sandbox: SandboxSettings {
                    enabled: false,
                    ..SandboxSettings::default()
                },
                ..BuilderConfig::new(temp_dir(&format!("{name}-builds")))
            }),
            path: path_with(&bin),
            served,
            pack_log: bin.join("pack.log"),
        }
    }

    /// `<buildDir>/.cache/pm`.
    fn cache(&self) -> PathBuf {
        self.builder.caches().package_managers()
    }

    /// `<buildDir>/.cache/pm/pnpm@9.15.0`.
    fn entry(&self) -> PathBuf {
        self.cache().join("pnpm@9.15.0")
    }

    /// Builds a new project `id` whose package.json names `package_manager`.
    async fn build(&self, id: &str, package_manager: &str) -> BuildOutcome {
        let manifest = format!(
            r#"{{ "name": "victim", "packageManager": "{package_manager}", "scripts": {{ "build": "mastra build" }} }}"#
        );
        let workdir = project(&format!("{}-{id}", self.name), &manifest);
        let mut request = BuildRequest::new(id, workdir);
        for (name, value) in [
            ("PATH", self.path.as_str()),
            ("FAKE_PM_TARBALL", &self.served.to_string_lossy()),
            ("FAKE_PACK_LOG", &self.pack_log.to_string_lossy()),
        ] {
            request.env_vars.insert(name.to_owned(), value.to_owned());
        }
        self.builder.build(request).await.expect("build runs")
    }

    /// The lines the fake `npm pack` logged.
    fn packs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.pack_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

/// A pnpm package tarball (`package/…`) at `<dir>/<name>.tgz` whose bin is `bin`, made by the
/// system's `tar`.
fn pnpm_tarball(dir: &Path, name: &str, bin: &str) -> PathBuf {
    let source = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(source.join("package/bin")).expect("mkdir");
    std::fs::write(source.join("package/package.json"), PNPM_MANIFEST).expect("manifest");
    write_executable(&source.join("package/bin/pnpm.cjs"), bin);
    pack(&source, &dir.join(format!("{name}.tgz")))
}

/// `tar -czf <out> -C <source> package`.
fn pack(source: &Path, out: &Path) -> PathBuf {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .arg("-C")
        .arg(source)
        .arg("package")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    out.to_path_buf()
}

/// The sha512 of `file`, lower-case hex (`sha512sum`).
fn sha512_hex(file: &Path) -> String {
    let output = Command::new("sha512sum")
        .arg(file)
        .output()
        .expect("run sha512sum");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Plants what a hostile build leaves in `entry`: the old layout's completeness marker, the
/// given tarball bytes, and a poisoned bin both where the links live and where they point.
fn plant(entry: &Path, tarball: &[u8]) {
    std::fs::create_dir_all(entry.join("bin")).expect("mkdir");
    std::fs::create_dir_all(entry.join("package/bin")).expect("mkdir");
    std::fs::write(entry.join(".complete"), "").expect("marker");
    std::fs::write(entry.join("package.tgz"), tarball).expect("tarball");
    std::fs::write(entry.join("package/package.json"), PNPM_MANIFEST).expect("manifest");
    write_executable(&entry.join("package/bin/pnpm.cjs"), POISONED_PNPM);
    write_executable(&entry.join("bin/pnpm"), POISONED_PNPM);
}

fn assert_genuine_ran(outcome: &BuildOutcome) {
    assert!(
        !outcome.workdir.join("poisoned").exists(),
        "the planted pnpm ran:\n{}",
        outcome.logs
    );
    assert!(
        outcome.logs.contains("\ngenuine pnpm install"),
        "{}",
        outcome.logs
    );
    assert_eq!(
        outcome.status,
        mastra_runner_local::builder::BuildStatus::Succeeded,
        "{}",
        outcome.logs
    );
}

/// P03: a pnpm planted in `.cache/pm` by another project's build (a `pnpm@9.15.0` directory
/// with the completeness marker, a junk tarball and a malicious bin) never runs: the entry
/// fails verification against the registry's integrity, is discarded with a warning and
/// fetched again, with an npm cache of the build's own; the cache directory is 0700 and the
/// build's private copy is gone once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p03_a_planted_package_manager_is_discarded_and_fetched_again() {
    let dir = temp_dir("p03");
    let genuine = pnpm_tarball(&dir, "genuine", GENUINE_PNPM);
    let setup = Setup::new("p03", genuine.clone());
    plant(&setup.entry(), b"not the tarball the registry has");

    let outcome = setup.build("b1", "pnpm@9.15.0").await;
    assert_genuine_ran(&outcome);
    let warning = format!(
        "\n[runner] Warning: the cached pnpm@9.15.0 in {} cannot be trusted (it does not match \
         the npm registry's integrity: sha512 ",
        setup.entry().display()
    );
    assert!(outcome.logs.contains(&warning), "{}", outcome.logs);
    assert!(
        outcome.logs.contains("): discarded, fetching it again\n"),
        "{}",
        outcome.logs
    );
    assert!(
        outcome.logs.contains(&format!(
            "[runner] Package manager pnpm@9.15.0: fetched pnpm@9.15.0 from the npm registry \
             into {}, its sha512 hash checked against the npm registry's integrity, unpacked for \
             this build into {}/.run/{}-b1-",
            setup.entry().display(),
            setup.cache().display(),
            std::process::id()
        )),
        "{}",
        outcome.logs
    );
    // Fetched once, with an empty npm cache inside the build's private copy.
    let packs = setup.packs();
    assert_eq!(packs.len(), 1, "{packs:?}");
    let private_cache = format!(
        "packed with cache {}/.run/{}-b1-",
        setup.cache().display(),
        std::process::id()
    );
    assert!(packs[0].starts_with(&private_cache), "{packs:?}");

    // The entry now holds the verified tarball only; the planted files are gone.
    assert_eq!(
        std::fs::read(setup.entry().join("package.tgz")).expect("cached tarball"),
        std::fs::read(&genuine).expect("genuine tarball")
    );
    for planted in [".complete", "bin", "package"] {
        assert!(!setup.entry().join(planted).exists(), "{planted} survived");
    }
    assert_eq!(mode(&setup.cache()), 0o700);
    assert_eq!(mode(&setup.entry()), 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(setup.cache().join(".run"))
        .expect("read .run")
        .collect();
    assert!(leftovers.is_empty(), "private copies left: {leftovers:?}");

    // A later build reuses the verified entry, checked again, without fetching.
    let outcome = setup.build("b2", "pnpm@9.15.0").await;
    assert_genuine_ran(&outcome);
    assert!(
        outcome.logs.contains(&format!(
            "[runner] Package manager pnpm@9.15.0: using the copy cached in {}, its sha512 hash \
             checked against the npm registry's integrity",
            setup.entry().display()
        )),
        "{}",
        outcome.logs
    );
    assert_eq!(setup.packs().len(), 1);
}

/// P04: with a pinned hash (`pnpm@9.15.0+sha512.<hex>`), what runs is the tarball that was
/// hashed, not what lies next to it: an entry whose tarball is the genuine one but whose
/// unpacked bins are poisoned runs the genuine pnpm (unpacked afresh for the build), and an
/// entry whose tarball was swapped after it was fetched is discarded and fetched again instead
/// of failing the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p04_a_pinned_package_manager_runs_what_was_hashed() {
    let dir = temp_dir("p04");
    let genuine = pnpm_tarball(&dir, "genuine", GENUINE_PNPM);
    let poisoned = pnpm_tarball(&dir, "poisoned", POISONED_PNPM);
    let pinned = format!("pnpm@9.15.0+sha512.{}", sha512_hex(&genuine));
    let setup = Setup::new("p04", genuine.clone());

    plant(
        &setup.entry(),
        &std::fs::read(&genuine).expect("genuine tarball"),
    );
    let outcome = setup.build("b1", &pinned).await;
    assert_genuine_ran(&outcome);
    assert!(
        outcome.logs.contains(&format!(
            "[runner] Package manager pnpm@9.15.0: using the copy cached in {}, its sha512 hash \
             checked against the hash in package.json's packageManager field, unpacked for this \
             build into {}/.run/{}-b1-",
            setup.entry().display(),
            setup.cache().display(),
            std::process::id()
        )),
        "{}",
        outcome.logs
    );
    assert!(!outcome.logs.contains("Warning"), "{}", outcome.logs);
    assert!(setup.packs().is_empty(), "the verified tarball is reused");

    // The tarball itself swapped for another (a whole, valid package) after it was verified.
    std::fs::copy(&poisoned, setup.entry().join("package.tgz")).expect("swap");
    let outcome = setup.build("b2", &pinned).await;
    assert_genuine_ran(&outcome);
    assert!(
        outcome.logs.contains(&format!(
            "\n[runner] Warning: the cached pnpm@9.15.0 in {} cannot be trusted (it does not \
             match the hash in package.json's packageManager field: sha512 {} instead of {}): \
             discarded, fetching it again\n",
            setup.entry().display(),
            sha512_hex(&poisoned),
            sha512_hex(&genuine)
        )),
        "{}",
        outcome.logs
    );
    assert_eq!(setup.packs().len(), 1);
    assert_eq!(
        std::fs::read(setup.entry().join("package.tgz")).expect("cached tarball"),
        std::fs::read(&genuine).expect("genuine tarball")
    );
}

/// P11: a package whose bin is a symlink (here to a file outside the build directory) is
/// refused, and the link's target keeps its mode: nothing is chmod'ed through a link. The
/// build falls back to the pnpm on PATH with a warning that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p11_a_symlinked_bin_is_refused_and_its_target_keeps_its_mode() {
    let dir = temp_dir("p11");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "not a program").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let source = dir.join("linked-src");
    std::fs::create_dir_all(source.join("package/bin")).expect("mkdir");
    std::fs::write(source.join("package/package.json"), PNPM_MANIFEST).expect("manifest");
    std::os::unix::fs::symlink(&victim, source.join("package/bin/pnpm.cjs")).expect("symlink");
    let linked = pack(&source, &dir.join("linked.tgz"));
    let setup = Setup::new("p11", linked);

    let outcome = setup.build("b1", "pnpm@9.15.0").await;
    assert_eq!(mode(&victim), 0o644, "the link's target was chmod'ed");
    assert!(
        outcome.logs.contains(&format!(
            "\n[runner] Warning: cannot fetch pnpm@9.15.0: pnpm's bin pnpm is refused: \
             {}/.run/{}-b1-",
            setup.cache().display(),
            std::process::id()
        )),
        "{}",
        outcome.logs
    );
    assert!(
        outcome
            .logs
            .contains("/package/bin/pnpm.cjs is a symbolic link; using pnpm from PATH\n"),
        "{}",
        outcome.logs
    );
    assert!(
        !outcome.logs.contains("(the version package.json names)"),
        "{}",
        outcome.logs
    );
}
