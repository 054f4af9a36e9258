//! Where the cgroup hierarchies are mounted (`/proc/self/mountinfo`) and where the host process
//! sits in each (`/proc/self/cgroup`). Nothing is hard-coded: `cpu` and `cpuacct` are separate
//! mounts on some hosts and one `cpu,cpuacct` mount on others.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::files::read_capped;

/// The v1 controllers the runner uses.
const V1_CONTROLLERS: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];
/// The most read from `/proc/self/mountinfo` (hosts with many mounts have long ones).
const MAX_MOUNTINFO: u64 = 4 * 1024 * 1024;
/// The most read from `/proc/self/cgroup`.
const MAX_PROC_CGROUP: u64 = 64 * 1024;

/// A mounted cgroup hierarchy and the host process's own group in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// The host's group, relative to `mount` (empty for the hierarchy's root).
    pub own: PathBuf,
}

impl Mounted {
    /// The directory of the host's own group.
    pub fn own_dir(&self) -> PathBuf {
        self.mount.join(&self.own)
    }
}

/// The cgroup hierarchies of this host and the host process's place in each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The cgroup v2 hierarchy, when mounted and the host is in it.
    pub v2: Option<Mounted>,
    /// The v1 hierarchies of the controllers the runner uses (`memory`, `pids`, `cpu`,
    /// `cpuacct`, `freezer`), by controller name.
    pub v1: BTreeMap<String, Mounted>,
}

impl Hierarchies {
    /// Reads this process's mounts and groups from `/proc/self`.
    pub fn of_this_process() -> Result<Hierarchies, String> {
        let read = |path: &str, cap| {
            read_capped(Path::new(path), cap)
                .map_err(|error| format!("cannot read {path}: {error}"))
        };
        let mountinfo = read("/proc/self/mountinfo", MAX_MOUNTINFO)?;
        let groups = read("/proc/self/cgroup", MAX_PROC_CGROUP)?;
        Ok(Hierarchies::parse(&mountinfo, &groups))
    }

    /// Parses the text of `/proc/<pid>/mountinfo` and `/proc/<pid>/cgroup`. A hierarchy whose
    /// group path is not below its mount's root (another cgroup namespace) is left out.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Hierarchies {
        let mut v2_mount = None;
        let mut v1_mounts: BTreeMap<&str, (PathBuf, PathBuf)> = BTreeMap::new();
        for line in mountinfo.lines() {
            let Some(mount) = parse_mount_line(line) else {
                continue;
            };
            if mount.fs_type == "cgroup2" {
                v2_mount.get_or_insert((mount.root, mount.point));
            } else if mount.fs_type == "cgroup" {
                for option in mount.super_options.split(',') {
                    if let Some(controller) = V1_CONTROLLERS.iter().find(|known| **known == option)
                    {
                        v1_mounts
                            .entry(controller)
                            .or_insert((mount.root.clone(), mount.point.clone()));
                    }
                }
            }
        }
        let mut hierarchies = Hierarchies::default();
        for line in proc_cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                hierarchies.v2 = v2_mount
                    .as_ref()
                    .and_then(|(root, point)| mounted(root, point, path));
                continue;
            }
            for controller in controllers.split(',') {
                let place = v1_mounts
                    .get(controller)
                    .and_then(|(root, point)| mounted(root, point, path));
                if let Some(place) = place {
                    hierarchies.v1.insert(controller.to_string(), place);
                }
            }
        }
        hierarchies
    }
}

/// The host's place in a hierarchy mounted at `point` showing the hierarchy's `root`, from its
/// group `path`; `None` when the path is not absolute, holds `..` or is not below `root`.
fn mounted(root: &Path, point: &Path, path: &str) -> Option<Mounted> {
    let path = Path::new(path);
    if !path.is_absolute() || path.components().any(|part| part == Component::ParentDir) {
        return None;
    }
    let own = path.strip_prefix(root).ok()?.to_path_buf();
    Some(Mounted {
        mount: point.to_path_buf(),
        own,
    })
}

/// The fields of one mountinfo line the runner uses.
struct MountLine<'a> {
    root: PathBuf,
    point: PathBuf,
    fs_type: &'a str,
    super_options: &'a str,
}

/// Parses `id parent major:minor root point options [optional…] - type source super-options`.
fn parse_mount_line(line: &str) -> Option<MountLine<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let root = fields.nth(3)?;
    let point = fields.next()?;
    let mut after = after.split(' ');
    let fs_type = after.next()?;
    let super_options = after.nth(1)?;
    Some(MountLine {
        root: PathBuf::from(unescape(root)),
        point: PathBuf::from(unescape(point)),
        fs_type,
        super_options,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = bytes
            .get(index + 1..index + 4)
            .filter(|digits| {
                bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
            })
            .and_then(|digits| {
                let value = digits
                    .iter()
                    .fold(0u32, |sum, digit| sum * 8 + u32::from(digit - b'0'));
                // A NUL could not be a path; such a field is kept as written.
                u8::try_from(value).ok().filter(|byte| *byte != 0)
            });
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
