//! Package managers at the version a project names (`"packageManager": "pnpm@9.15.0"`): the
//! rules (what to fetch, which digest it must have, who vouches for that digest).
//!
//! As Heroku and Railpack do, a build runs the version the project asks for, not whatever is on
//! `PATH`: the package manager's own npm package (`pnpm`, `yarn`, `@yarnpkg/cli-dist` for yarn
//! 2+, `npm`) is fetched with the host's `npm pack`, and its tarball kept in
//! `<buildDir>/.cache/pm/<name>@<version>/` (see [`super::pm_cache`]) so that later builds do not
//! download it again.
//!
//! Every build script and server runs as the runner's uid with its working directory inside
//! `buildDir`, so that cache is untrusted input: what runs is what was verified. Before each use
//! the tarball is hashed and compared with an [`Expected`] digest that comes from outside the
//! cache — the hash corepack's form carries in the project's own package.json
//! (`pnpm@9.1.0+sha512.<hex>`), or else the `dist.integrity` the npm registry gives for that
//! version (asked once per runner and then kept in memory, [`KnownIntegrities`]) — and then
//! unpacked afresh into a directory of that build's own, from which it runs.
//!
//! This module holds the rules; [`super::pm_cache`] the file work; the pipeline runs `npm`,
//! `node` and `tar` through the one spawner, under the build's budget.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::package_manager::{Detection, DetectionSource, PackageManager};

/// The hash algorithms a `packageManager` field may name (those Node's `crypto` computes).
const ALGORITHMS: [&str; 5] = ["sha1", "sha224", "sha256", "sha384", "sha512"];

/// The algorithms of a registry's `dist.integrity`, strongest first.
const INTEGRITY_ALGORITHMS: [&str; 4] = ["sha512", "sha384", "sha256", "sha1"];

/// A package manager version to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The name in the `packageManager` field (`pnpm`, `yarn`, `npm`).
    pub name: &'static str,
    /// The npm package that carries it.
    pub package: &'static str,
    /// The exact version.
    pub version: String,
    /// The tarball's digest as the `packageManager` field pins it, if it does.
    pub hash: Option<Integrity>,
}

impl Wanted {
    /// `pnpm@9.15.0`: the name of its cache directory and of it in the log.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// `@yarnpkg/cli-dist@4.5.0`: what `npm pack` and `npm view` are asked for.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }

    /// Its directory under `root` (`<buildDir>/.cache/pm`).
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.key())
    }
}

/// A digest a tarball must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    /// A hash algorithm Node's `crypto` knows (`sha512`).
    pub algorithm: String,
    /// The digest, lower-case hex.
    pub hex: String,
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.hex)
    }
}

impl Integrity {
    /// `sha512.<hex>`, corepack's form, into the algorithm and the lower-case digest.
    fn from_pin(hash: &str) -> Option<Self> {
        let (algorithm, hex) = hash.split_once('.')?;
        let algorithm = algorithm.to_ascii_lowercase();
        (ALGORITHMS.contains(&algorithm.as_str())
            && !hex.is_empty()
            && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| Integrity {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The digest in what `npm view <spec> dist.integrity dist.shasum --json` prints: the
    /// strongest hash of the Subresource Integrity string `dist.integrity`
    /// (`sha512-<base64>`), else the sha1 `dist.shasum` of packages published before npm
    /// recorded integrity.
    pub fn from_registry(output: &str) -> Result<Self, String> {
        let dist: Value = serde_json::from_str(output.trim())
            .map_err(|e| format!("npm view printed something other than JSON: {e}"))?;
        let sri = dist.get("dist.integrity").and_then(Value::as_str);
        let strongest = sri.and_then(|sri| {
            INTEGRITY_ALGORITHMS.iter().find_map(|wanted| {
                sri.split_whitespace().find_map(|entry| {
                    let (algorithm, rest) = entry.split_once('-')?;
                    let encoded = rest.split('?').next()?;
                    (algorithm.eq_ignore_ascii_case(wanted)).then_some(())?;
                    Some(Integrity {
                        algorithm: (*wanted).to_owned(),
                        hex: base64_to_hex(encoded)?,
                    })
                })
            })
        });
        if let Some(integrity) = strongest {
            return Ok(integrity);
        }
        match dist.get("dist.shasum").and_then(Value::as_str) {
            Some(hex) if hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                Ok(Integrity {
                    algorithm: "sha1".to_owned(),
                    hex: hex.to_ascii_lowercase(),
                })
            }
            _ => Err(format!(
                "the registry gives no usable integrity for it (dist.integrity {})",
                sri.unwrap_or("missing")
            )),
        }
    }
}

/// Standard base64 (with or without padding) into lower-case hex; `None` for anything else.
fn base64_to_hex(encoded: &str) -> Option<String> {
    let value = |c: u8| -> Option<u32> {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(sextet))
    };
    let digits = encoded.trim_end_matches('=').as_bytes();
    if digits.is_empty() || digits.len() % 4 == 1 {
        return None;
    }
    let mut hex = String::with_capacity(digits.len() * 3 / 2);
    for chunk in digits.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = (bits << 6) | value(c)?;
        }
        bits <<= 6 * (4 - chunk.len() as u32);
        for byte in &bits.to_be_bytes()[1..chunk.len()] {
            hex.push_str(&format!("{byte:02x}"));
        }
    }
    Some(hex)
}

/// Who vouches for an [`Expected`] digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The hash in the project's `packageManager` field.
    PackageJson,
    /// The npm registry's `dist.integrity` for the version.
    Registry,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Authority::PackageJson => "the hash in package.json's packageManager field",
            Authority::Registry => "the npm registry's integrity",
        })
    }
}

/// The digest a package manager's tarball must have before it runs, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The digest.
    pub integrity: Integrity,
    /// Who vouches for it.
    pub authority: Authority,
}

/// The registry's digests this runner has already asked for, by package spec. They live in the
/// runner's memory only: nothing under `buildDir` can vouch for a tarball there. Cheap to
/// clone; clones share the record.
#[derive(Debug, Clone, Default)]
pub struct KnownIntegrities {
    by_spec: Arc<Mutex<HashMap<String, Integrity>>>,
}

impl KnownIntegrities {
    /// The registry's digest for `spec` (`pnpm@9.15.0`), if this runner has it.
    pub fn get(&self, spec: &str) -> Option<Integrity> {
        crate::sync::lock(&self.by_spec).get(spec).cloned()
    }

    /// Records what the registry said about `spec`.
    pub fn remember(&self, spec: String, integrity: Integrity) {
        crate::sync::lock(&self.by_spec).insert(spec, integrity);
    }
}

/// What to do about the package manager's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The project names no version: the one on `PATH` runs.
    Absent,
    /// A version is named but cannot be fetched (the reason); the one on `PATH` runs.
    Unavailable(String),
    /// Fetch (or reuse) this version.
    Fetch(Wanted),
}

/// What `detection` asks for. An error is a hash that cannot be checked: the build fails
/// rather than run an unverified package manager.
pub fn plan(detection: &Detection) -> Result<Plan, String> {
    let (DetectionSource::PackageManagerField(field), Some(version)) =
        (&detection.source, &detection.requested_version)
    else {
        return Ok(Plan::Absent);
    };
    let (name, package) = match detection.package_manager {
        PackageManager::Pnpm => ("pnpm", "pnpm"),
        PackageManager::Yarn => ("yarn", "yarn"),
        PackageManager::YarnBerry => ("yarn", "@yarnpkg/cli-dist"),
        PackageManager::Npm => ("npm", "npm"),
        PackageManager::Bun => {
            return Ok(Plan::Unavailable(format!(
                "bun@{version} is not fetched (its npm package needs a platform binary installed \
                 by a script)"
            )));
        }
    };
    if !is_exact_version(version) {
        return Ok(Plan::Unavailable(format!(
            "\"{field}\" does not name an exact version"
        )));
    }
    let hash = match &detection.requested_hash {
        None => None,
        Some(hash) => Some(Integrity::from_pin(hash).ok_or_else(|| {
            format!(
                "The packageManager field \"{field}\" carries a hash that cannot be checked: \
                 expected <algorithm>.<hex digest> with one of {}",
                ALGORITHMS.join(", ")
            )
        })?),
    };
    Ok(Plan::Fetch(Wanted {
        name,
        package,
        version: version.clone(),
        hash,
    }))
}

/// `1.2.3` or `1.2.3-rc.1`: digits and dots, then an optional pre-release of safe characters
/// (the version becomes a directory name).
fn is_exact_version(version: &str) -> bool {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && pre.is_none_or(|pre| {
            !pre.is_empty()
                && pre
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
}

/// The Node program that prints the hex digest of a file: `node -e <this> <algorithm> <file>`.
pub const HASH_SCRIPT: &str = "process.stdout.write(require('crypto').createHash(process.argv[1])\
    .update(require('fs').readFileSync(process.argv[2])).digest('hex'))";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::package_manager::detect_with;

    fn plan_of(field: &str) -> Result<Plan, String> {
        let manifest = serde_json::json!({ "packageManager": field });
        plan(&detect_with(Path::new("/nonexistent"), Some(&manifest)).unwrap())
    }

    #[test]
    fn each_package_manager_comes_from_its_own_package() {
        let cases = [
            ("pnpm@9.15.0", "pnpm", "pnpm"),
            ("yarn@1.22.22", "yarn", "yarn"),
            ("yarn@4.5.0", "yarn", "@yarnpkg/cli-dist"),
            ("npm@10.9.2", "npm", "npm"),
        ];
        for (field, name, package) in cases {
            let Ok(Plan::Fetch(wanted)) = plan_of(field) else {
                panic!("{field}: {:?}", plan_of(field));
            };
            assert_eq!((wanted.name, wanted.package), (name, package), "{field}");
            assert_eq!(wanted.key(), field);
            assert_eq!(wanted.hash, None);
        }
        let Ok(Plan::Fetch(berry)) = plan_of("yarn@4.5.0") else {
            panic!("berry")
        };
        assert_eq!(berry.spec(), "@yarnpkg/cli-dist@4.5.0");
        assert_eq!(
            berry.dir(Path::new("/b/.cache/pm")),
            Path::new("/b/.cache/pm/yarn@4.5.0")
        );
    }

    #[test]
    fn hashes_are_parsed_and_bad_ones_refused() {
        let Ok(Plan::Fetch(wanted)) = plan_of("pnpm@9.1.0+sha512.ABCdef01") else {
            panic!("hash")
        };
        assert_eq!(
            wanted.hash,
            Some(Integrity {
                algorithm: "sha512".to_owned(),
                hex: "abcdef01".to_owned()
            })
        );
        for bad in [
            "pnpm@9.1.0+md5.abcd",
            "pnpm@9.1.0+sha512.xyz",
            "pnpm@9.1.0+abcd",
        ] {
            let error = plan_of(bad).unwrap_err();
            assert!(
                error.contains("carries a hash that cannot be checked"),
                "{error}"
            );
        }
    }

    #[test]
    fn what_cannot_be_fetched_falls_back() {
        assert_eq!(plan_of("pnpm").unwrap(), Plan::Absent);
        for (field, reason) in [
            ("pnpm@^9", "does not name an exact version"),
            ("pnpm@9", "does not name an exact version"),
            ("pnpm@9.1.0/../../x", "does not name an exact version"),
            ("bun@1.1.0", "needs a platform binary"),
        ] {
            let Ok(Plan::Unavailable(why)) = plan_of(field) else {
                panic!("{field}")
            };
            assert!(why.contains(reason), "{field}: {why}");
        }
        assert!(matches!(plan_of("pnpm@10.0.0-rc.1"), Ok(Plan::Fetch(_))));
        let none = detect_with(Path::new("/nonexistent"), Some(&serde_json::json!({}))).unwrap();
        assert_eq!(plan(&none).unwrap(), Plan::Absent);
    }

    #[test]
    fn the_registry_integrity_is_read_strongest_first() {
        let pnpm = r#"{
          "dist.integrity": "sha512-duI3l2CkMo7EQVgVvNZije5yevN3mqpMkU45RBVsQpmSGon5djge4QfUHxLPpLZmgcqccY8GaPoIMe1MbYulbA==",
          "dist.shasum": "8bfdb6d72b4d5fdf87d21d27f2bfbe2b21dd2629"
        }"#;
        // The sha512 corepack pins for pnpm@9.15.0: the same digest in hex.
        assert_eq!(
            Integrity::from_registry(pnpm).unwrap(),
            Integrity {
                algorithm: "sha512".to_owned(),
                hex: "76e2379760a4328ec4415815bcd6628dee727af3779aaa4c914e3944156c4299921a89f9\
                      76381ee107d41f12cfa4b66681ca9c718f0668fa0831ed4c6d8ba56c"
                    .to_owned(),
            }
        );
        // sha1 ("abc") next to sha256 ("abc"): the stronger wins, whatever the order.
        let both = r#"{"dist.integrity": "sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0= sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="}"#;
        assert_eq!(
            Integrity::from_registry(both).unwrap().to_string(),
            "sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let old = r#"{"dist.shasum": "A9993E364706816ABA3E25717850C26C9CD0D89D"}"#;
        assert_eq!(
            Integrity::from_registry(old).unwrap().to_string(),
            "sha1 a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        for bad in [
            "",
            "{}",
            r#"{"dist.integrity": "md5-AAAA"}"#,
            r#"{"dist.integrity": "sha512-not*base64"}"#,
        ] {
            assert!(Integrity::from_registry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_to_hex("TWFu").as_deref(), Some("4d616e"));
        assert_eq!(base64_to_hex("TWE=").as_deref(), Some("4d61"));
        assert_eq!(base64_to_hex("TQ==").as_deref(), Some("4d"));
        assert_eq!(base64_to_hex("TQ").as_deref(), Some("4d"));
        assert_eq!(base64_to_hex("T"), None);
        assert_eq!(base64_to_hex(""), None);
    }

    #[test]
    fn known_integrities_are_shared_by_clones() {
        let known = KnownIntegrities::default();
        let clone = known.clone();
        let integrity = Integrity {
            algorithm: "sha512".to_owned(),
            hex: "ab".to_owned(),
        };
        clone.remember("pnpm@9.15.0".to_owned(), integrity.clone());
        assert_eq!(known.get("pnpm@9.15.0"), Some(integrity));
        assert_eq!(known.get("pnpm@9.14.0"), None);
    }
}
