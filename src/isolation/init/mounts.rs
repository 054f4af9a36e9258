//! The namespace's own mounts: a fresh `/proc`, the masks (with the allowed paths bound back),
//! a private `/dev/shm`.

use std::ffi::CString;
use std::os::raw::c_ulong;
use std::os::unix::ffi::OsStrExt;

use super::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, O_PATH, Request, fail, last_error, mount};

const MS_BIND: c_ulong = 4096;
const MS_REMOUNT: c_ulong = 32;
const MS_RDONLY: c_ulong = 1;
/// A fresh `/proc` over the host's: it lists only this namespace's processes.
pub(super) fn mount_proc() {
    let proc = c"proc";
    // SAFETY: valid C strings; procfs takes no data.
    if unsafe {
        mount(
            proc.as_ptr(),
            c"/proc".as_ptr(),
            proc.as_ptr(),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            std::ptr::null(),
        )
    } != 0
    {
        fail("mount /proc", &last_error());
    }
}

/// Hides `path`: a directory under an empty read-only tmpfs (the sandbox's allowed paths inside
/// it bound back in place), a file under `/dev/null`; a link or a missing path is left alone.
pub(super) fn mask(path: &CString, request: &Request) {
    let as_path = |c: &CString| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(c.as_bytes()));
    let dir = as_path(path);
    let Ok(meta) = std::fs::symlink_metadata(&dir) else {
        return;
    };
    if meta.is_file() {
        // SAFETY: valid C strings; a bind mount takes no type or data.
        let bound = unsafe {
            mount(
                c"/dev/null".as_ptr(),
                path.as_ptr(),
                std::ptr::null(),
                MS_BIND,
                std::ptr::null(),
            )
        };
        if bound != 0 {
            fail(&format!("mask {}", dir.display()), &last_error());
        }
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let allowed: Vec<std::path::PathBuf> = request
        .read_only
        .iter()
        .chain(&request.read_write)
        .map(as_path)
        .collect();
    if allowed.iter().any(|a| *a == dir) {
        return;
    }
    // Held open before the tmpfs covers them, then bound back at the same place.
    let inside: Vec<(std::fs::File, std::path::PathBuf)> = allowed
        .into_iter()
        .filter(|a| a.starts_with(&dir))
        .filter_map(|a| open_path(&a).map(|file| (file, a)))
        .collect();
    mount_tmpfs(path, 0, "size=64k,mode=755");
    for (file, place) in &inside {
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let made = if is_dir {
            std::fs::create_dir_all(place)
        } else {
            place
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(place).map(drop))
        };
        if let Err(error) = made {
            fail(&format!("mask {}", dir.display()), &error.to_string());
        }
        let source = CString::new(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file)
        ))
        .unwrap_or_else(|_| fail("mask", "a descriptor path"));
        let target = CString::new(place.as_os_str().as_bytes())
            .unwrap_or_else(|_| fail("mask", "a path with a NUL byte"));
        // SAFETY: valid C strings; a bind mount takes no type or data.
        if unsafe {
            mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                MS_BIND | MS_REC,
                std::ptr::null(),
            )
        } != 0
        {
            fail(&format!("bind {} back", place.display()), &last_error());
        }
    }
    mount_tmpfs(path, MS_REMOUNT | MS_RDONLY, "size=64k,mode=755");
}

/// An `O_PATH` descriptor of `path`, or `None` when it does not exist.
fn open_path(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_PATH)
        .open(path)
        .ok()
}

/// Mounts (or with `MS_REMOUNT`, remounts) a small tmpfs at `path`.
fn mount_tmpfs(path: &CString, flags: c_ulong, options: &str) {
    let tmpfs = c"tmpfs";
    let data = CString::new(options).unwrap_or_else(|_| fail("tmpfs", "options"));
    // SAFETY: valid C strings.
    if unsafe {
        mount(
            tmpfs.as_ptr(),
            path.as_ptr(),
            tmpfs.as_ptr(),
            flags | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data.as_ptr().cast(),
        )
    } != 0
    {
        fail(&format!("mask {}", path.to_string_lossy()), &last_error());
    }
}

/// A fresh `/dev/shm` of the sandbox's own (its pages count against its memory limit).
pub(super) fn private_shm() {
    if std::fs::metadata("/dev/shm")
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        let tmpfs = c"tmpfs";
        // SAFETY: valid C strings.
        if unsafe {
            mount(
                tmpfs.as_ptr(),
                c"/dev/shm".as_ptr(),
                tmpfs.as_ptr(),
                MS_NOSUID | MS_NODEV,
                c"mode=1777,size=256m".as_ptr().cast(),
            )
        } != 0
        {
            fail("private /dev/shm", &last_error());
        }
    }
}
