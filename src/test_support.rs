//! Helpers shared by the unit tests of several modules.

use std::fs;
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one unit test, `<tmp>/<area>-<name>-<pid>`, as a canonical path.
pub fn temp_dir(area: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{area}-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a test directory");
    dir.canonicalize().expect("canonical test directory")
}

/// Writes `text` at `path`, creating its parent directories.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, text).expect("write a test file");
}
