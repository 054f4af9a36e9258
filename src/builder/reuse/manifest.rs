//! A snapshot's manifest: `snapshots/<id>.json`, what the snapshot is and every entry it holds.
//!
//! ```json
//! { "format": 1, "id": "…", "kind": "output", "projectId": "…", "fingerprint": "<64 hex>",
//!   "buildId": "…", "createdMs": 1700000000000,
//!   "entries": [["dir", "d", 493, <mtime ns>],
//!               ["dir/file", "f", 420, <mtime ns>, <size>, "<64 hex>"],
//!               ["dir/link", "l", 511, <mtime ns>, "target"]] }
//! ```
//!
//! When the snapshot was last used is the manifest file's modification time, so marking a
//! use does not rewrite the manifest.
//!
//! A manifest on disk is untrusted input (an unsandboxed app could forge one): [`parse`]
//! checks its size, every id, kind and digest, and every path (relative, `/`-separated normal
//! components, sorted, each one's parent a directory entry of the same manifest, so no entry
//! can sit below a symlink the restore created).

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Value, json};

use super::fingerprint::ContentDigest;
use crate::validate;

/// The largest manifest read back.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The most entries one manifest may hold.
pub const MAX_MANIFEST_ENTRIES: usize = 1_000_000;

/// The longest relative path and symlink target accepted.
const MAX_PATH_BYTES: usize = 4096;

/// The largest file size a manifest may state.
const MAX_FILE_BYTES: u64 = 1 << 40;

/// The format this module writes and reads.
const FORMAT: u64 = 1;

/// What a snapshot holds: a finished build's tree, or what an install added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotKind {
    /// The tree a successful build left (its output and installed dependencies).
    Output,
    /// What an install added to the tree (every `node_modules`, changed lockfiles).
    Install,
}

impl SnapshotKind {
    /// `output` or `install`, as manifests and logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Output => "output",
            SnapshotKind::Install => "install",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "output" => Some(SnapshotKind::Output),
            "install" => Some(SnapshotKind::Install),
            _ => None,
        }
    }
}

/// What a snapshot is, without its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's id (its manifest is `snapshots/<id>.json`).
    pub id: String,
    /// What it holds.
    pub kind: SnapshotKind,
    /// The project it was taken from.
    pub project_id: String,
    /// The fingerprint of the inputs that produced it.
    pub fingerprint: String,
    /// The build it was taken from.
    pub build_id: String,
    /// When it was taken, in milliseconds since the epoch.
    pub created_ms: u64,
    /// When it was last taken or restored, in milliseconds since the epoch.
    pub last_used_ms: u64,
    /// The total size of its files.
    pub file_bytes: u64,
    /// How many entries it holds.
    pub entries: usize,
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestEntry {
    pub(crate) path: String,
    pub(crate) kind: StoredKind,
    pub(crate) mode: u32,
    pub(crate) mtime_ns: i64,
}

/// What a manifest entry is, with what restores its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKind {
    Dir,
    File { size: u64, digest: ContentDigest },
    Symlink(String),
}

/// A manifest: the snapshot and its entries.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) info: SnapshotInfo,
    pub(crate) entries: Vec<ManifestEntry>,
}

/// The manifest as JSON bytes.
pub(crate) fn render(manifest: &Manifest) -> Vec<u8> {
    let info = &manifest.info;
    let entries: Vec<Value> = manifest
        .entries
        .iter()
        .map(|entry| match &entry.kind {
            StoredKind::Dir => json!([entry.path, "d", entry.mode, entry.mtime_ns]),
            StoredKind::File { size, digest } => json!([
                entry.path,
                "f",
                entry.mode,
                entry.mtime_ns,
                size,
                digest.hex()
            ]),
            StoredKind::Symlink(target) => {
                json!([entry.path, "l", entry.mode, entry.mtime_ns, target])
            }
        })
        .collect();
    let document = json!({
        "format": FORMAT,
        "id": info.id,
        "kind": info.kind.as_str(),
        "projectId": info.project_id,
        "fingerprint": info.fingerprint,
        "buildId": info.build_id,
        "createdMs": info.created_ms,
        "entries": entries,
    });
    document.to_string().into_bytes()
}

/// Reads a manifest's bytes (at most [`MAX_MANIFEST_BYTES`], already capped by the reader),
/// checking everything; `file_id` is the id its file name gives and `last_used_ms` its file's
/// modification time. The error says the first thing wrong.
pub(crate) fn parse(bytes: &[u8], file_id: &str, last_used_ms: u64) -> Result<Manifest, String> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!("larger than {} MB", MAX_MANIFEST_BYTES >> 20));
    }
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if document.get("format").and_then(Value::as_u64) != Some(FORMAT) {
        return Err(format!("not format {FORMAT}"));
    }
    let text = |name: &str| -> Result<&str, String> {
        document
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name} is not a string"))
    };
    let id = text("id")?;
    if id != file_id || !is_snapshot_id(id) {
        return Err(format!("its id {id:?} does not match its file name"));
    }
    let kind = SnapshotKind::parse(text("kind")?).ok_or("its kind is unknown")?;
    let project_id = text("projectId")?;
    validate::id("projectId", project_id).map_err(|e| e.to_string())?;
    let build_id = text("buildId")?;
    validate::id("buildId", build_id).map_err(|e| e.to_string())?;
    let fingerprint = text("fingerprint")?;
    ContentDigest::from_hex(fingerprint).ok_or("its fingerprint is not 64 lowercase hex digits")?;
    let created_ms = document
        .get("createdMs")
        .and_then(Value::as_u64)
        .ok_or("createdMs is not a number")?;
    let listed = document
        .get("entries")
        .and_then(Value::as_array)
        .ok_or("entries is not an array")?;
    if listed.len() > MAX_MANIFEST_ENTRIES {
        return Err(format!("more than {MAX_MANIFEST_ENTRIES} entries"));
    }
    let entries = listed
        .iter()
        .enumerate()
        .map(|(index, value)| {
            parse_entry(value).map_err(|reason| format!("entry {index}: {reason}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    check_layout(&entries)?;
    let file_bytes = entries
        .iter()
        .map(|entry| match entry.kind {
            StoredKind::File { size, .. } => size,
            _ => 0,
        })
        .fold(0u64, u64::saturating_add);
    Ok(Manifest {
        info: SnapshotInfo {
            id: id.to_owned(),
            kind,
            project_id: project_id.to_owned(),
            fingerprint: fingerprint.to_owned(),
            build_id: build_id.to_owned(),
            created_ms,
            last_used_ms: last_used_ms.max(created_ms),
            file_bytes,
            entries: entries.len(),
        },
        entries,
    })
}

fn parse_entry(value: &Value) -> Result<ManifestEntry, String> {
    let fields = value.as_array().ok_or("not an array")?;
    let text = |at: usize| fields.get(at).and_then(Value::as_str);
    let number = |at: usize| fields.get(at).and_then(Value::as_u64);
    let path = text(0).ok_or("its path is not a string")?;
    let mode = number(2)
        .and_then(|mode| u32::try_from(mode).ok())
        .filter(|mode| *mode <= 0o777)
        .ok_or("its mode is not a number up to 0o777")?;
    let mtime_ns = fields
        .get(3)
        .and_then(Value::as_i64)
        .ok_or("its modification time is not a number")?;
    let (kind, length) = match text(1) {
        Some("d") => (StoredKind::Dir, 4),
        Some("f") => {
            let size = number(4)
                .filter(|size| *size <= MAX_FILE_BYTES)
                .ok_or("its size is not a number up to 1 TiB")?;
            let digest = text(5)
                .and_then(ContentDigest::from_hex)
                .ok_or("its digest is not 64 lowercase hex digits")?;
            (StoredKind::File { size, digest }, 6)
        }
        Some("l") => {
            let target = text(4).ok_or("its target is not a string")?;
            if target.is_empty() || target.len() > MAX_PATH_BYTES || target.contains('\0') {
                return Err("its target is empty, too long or holds a NUL".to_owned());
            }
            (StoredKind::Symlink(target.to_owned()), 5)
        }
        _ => return Err("its kind is unknown".to_owned()),
    };
    if fields.len() != length {
        return Err(format!("it has {} fields, not {length}", fields.len()));
    }
    Ok(ManifestEntry {
        path: path.to_owned(),
        kind,
        mode,
        mtime_ns,
    })
}

/// Checks that `entries` have plain relative paths, sorted without repeats, and that each
/// one's parent is a directory entry before it (so nothing lies below a symlink of the same manifest).
pub(crate) fn check_layout(entries: &[ManifestEntry]) -> Result<(), String> {
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut previous: Option<&str> = None;
    for (index, entry) in entries.iter().enumerate() {
        let path = entry.path.as_str();
        check_relative_path(path).map_err(|reason| format!("entry {index}: {reason}"))?;
        if previous.is_some_and(|before| before >= path) {
            return Err(format!(
                "entry {index}: {path:?} is out of order or repeated"
            ));
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && !dirs.contains(parent)
        {
            return Err(format!(
                "entry {index}: the parent of {path:?} is not a directory of the snapshot"
            ));
        }
        if entry.kind == StoredKind::Dir {
            dirs.insert(path);
        }
        previous = Some(path);
    }
    Ok(())
}

/// Checks that `path` is relative and made of normal components only: not empty, no leading
/// or doubled `/`, no `.` or `..`, no NUL, not too long.
pub(crate) fn check_relative_path(path: &str) -> Result<(), String> {
    let fine = !path.is_empty()
        && path.len() <= MAX_PATH_BYTES
        && !path.contains('\0')
        && path
            .split('/')
            .all(|name| !name.is_empty() && name != "." && name != ".." && name.len() <= 255);
    if fine && Path::new(path).is_relative() {
        Ok(())
    } else {
        Err(format!("{path:?} is not a plain relative path"))
    }
}

/// Whether `id` is a snapshot id as [`new_snapshot_id`] makes them.
pub(crate) fn is_snapshot_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// A new snapshot id: the time in milliseconds and 64 random bits, `<ms>-<16 hex>`.
pub(crate) fn new_snapshot_id(now_ms: u64) -> String {
    format!("{now_ms}-{:016x}", crate::ids::random_u128() as u64)
}
