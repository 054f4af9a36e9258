//! The Landlock domain of the program: file rules beneath paths, TCP port rules, scoping.

use std::ffi::CString;
use std::os::raw::{c_int, c_long, c_ulong, c_void};
use std::os::unix::ffi::OsStrExt;

use super::{O_CLOEXEC, O_PATH, Request, close, fail, last_error, open, syscall};

const LANDLOCK_RULE_NET_PORT: c_int = 2;
const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
const LANDLOCK_CREATE_RULESET_VERSION: c_ulong = 1;
const SYS_LANDLOCK_RESTRICT_SELF: c_long = 446;
const SYS_LANDLOCK_ADD_RULE: c_long = 445;
const SYS_LANDLOCK_CREATE_RULESET: c_long = 444;
/// The kernel's Landlock ABI, 0 without Landlock.
pub(super) fn landlock_abi() -> i64 {
    // SAFETY: the version query takes no attribute.
    let abi = unsafe {
        syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            std::ptr::null::<c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

const FS_EXECUTE: u64 = 1;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1;
const NET_CONNECT_TCP: u64 = 2;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
const SCOPE_SIGNAL: u64 = 2;

/// Every file-system right the kernel's ABI knows.
fn fs_rights(abi: i64) -> u64 {
    match abi {
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    }
}

/// Builds the domain from the request and enters it.
pub(super) fn enter_landlock(request: &Request, abi: i64) {
    let handled_fs = fs_rights(abi);
    let attr = RulesetAttr {
        handled_access_fs: handled_fs,
        handled_access_net: match (abi >= 4, request.bind_port, request.connect_except) {
            (false, ..) => 0,
            (true, bind, connect) => {
                (if bind.is_some() { NET_BIND_TCP } else { 0 })
                    | (if connect.is_some() {
                        NET_CONNECT_TCP
                    } else {
                        0
                    })
            }
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    let size = match abi {
        1..=3 => 8,
        4 | 5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    // SAFETY: a valid attribute of the size the ABI reads.
    let ruleset = unsafe {
        syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            &attr as *const RulesetAttr,
            size,
            0u32,
        )
    };
    if ruleset < 0 {
        fail("landlock ruleset", &last_error());
    }
    let ruleset = ruleset as c_int;
    let read_only = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
    for path in &request.read_only {
        allow_path(ruleset, path, read_only, handled_fs);
    }
    for path in &request.read_write {
        allow_path(ruleset, path, handled_fs, handled_fs);
    }
    if abi >= 4 {
        if let Some(port) = request.bind_port {
            allow_port(ruleset, port, NET_BIND_TCP);
        }
        if let Some((first, last)) = request.connect_except {
            // Landlock's port rules only allow: every port outside the range gets one, and
            // the program's own port.
            for port in (1..=u16::MAX).filter(|p| !(first..=last).contains(p)) {
                allow_port(ruleset, port, NET_CONNECT_TCP);
            }
            if let Some(own) = request.bind_port.filter(|p| (first..=last).contains(p)) {
                allow_port(ruleset, own, NET_CONNECT_TCP);
            }
        }
    }
    // SAFETY: entering the domain (no_new_privs is set).
    if unsafe { syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0u32) } != 0 {
        fail("landlock restrict", &last_error());
    }
    unsafe { close(ruleset) };
}

/// Allows `access` (bind or connect) on TCP port `port`.
fn allow_port(ruleset: c_int, port: u16, access: u64) {
    let rule = NetPortAttr {
        allowed_access: access,
        port: u64::from(port),
    };
    // SAFETY: a valid rule for the ruleset.
    if unsafe {
        syscall(
            SYS_LANDLOCK_ADD_RULE,
            ruleset,
            LANDLOCK_RULE_NET_PORT,
            &rule as *const NetPortAttr,
            0u32,
        )
    } != 0
    {
        fail(&format!("landlock rule for port {port}"), &last_error());
    }
}

/// Allows `rights` beneath `path` (a file gets the file rights among them); a missing path is
/// skipped.
fn allow_path(ruleset: c_int, path: &CString, rights: u64, handled: u64) {
    // SAFETY: a valid C string.
    let fd = unsafe { open(path.as_ptr(), O_PATH | O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    let is_dir = std::fs::metadata(std::ffi::OsStr::from_bytes(path.as_bytes()))
        .map(|meta| meta.is_dir())
        .unwrap_or(false);
    let file_rights = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
    let allowed = if is_dir { rights } else { rights & file_rights } & handled;
    let rule = PathBeneathAttr {
        allowed_access: allowed,
        parent_fd: fd,
    };
    // SAFETY: a valid rule for the ruleset.
    let added = unsafe {
        syscall(
            SYS_LANDLOCK_ADD_RULE,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &rule as *const PathBeneathAttr,
            0u32,
        )
    };
    if added != 0 {
        fail(
            &format!("landlock rule for {}", path.to_string_lossy()),
            &last_error(),
        );
    }
    unsafe { close(fd) };
}
