//! Watching a project directory for file changes, by polling.
//!
//! [`watch`] takes a snapshot of the project's files (path, size, modification time, inode)
//! every poll interval on tokio's blocking pool, compares it with the previous one, and
//! collects `add`, `change` and `unlink` events, the newest per path. Once nothing has changed
//! for the debounce time, it hands the collected events, sorted by path, to its callback. Polling
//! needs no extra dependency, works the same on network mounts and in containers, and costs one
//! `lstat` per file per interval; the directories a copy skips are never entered.
//!
//! # Caveats
//! A file rewritten within one poll interval with the same size and modification time (coarse
//! timestamps) is not noticed. Directories themselves produce no events; their files do.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch as signal;

use super::copy::DEFAULT_EXCLUDES;

/// Directory names never watched besides [`DEFAULT_EXCLUDES`] and the configured excludes.
const WATCH_EXCLUDES: [&str; 2] = ["build", "coverage"];

/// The longest pause between two polls.
const MAX_POLL: Duration = Duration::from_millis(100);

/// The shortest pause between two polls.
const MIN_POLL: Duration = Duration::from_millis(10);

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It appeared.
    Add,
    /// Its size, modification time or inode changed.
    Change,
    /// It disappeared.
    Unlink,
}

impl ChangeKind {
    /// `'add'`, `'change'` or `'unlink'`, as MastraAdmin's `ChangeEvent.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Change => "change",
            ChangeKind::Unlink => "unlink",
        }
    }
}

/// One change of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// The file, relative to the watched directory, `/`-separated.
    pub path: String,
    /// When the poll noticed it.
    pub at: SystemTime,
}

/// What is watched, and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The directory watched (canonical).
    pub root: PathBuf,
    /// Names skipped at any depth, on top of the built-in ones.
    pub exclude: Vec<String>,
    /// Quiet time after the last change before events are delivered.
    pub debounce: Duration,
}

/// Stops a [`watch`]; dropping it stops the watch too.
#[derive(Debug)]
pub struct WatchStop(signal::Sender<bool>);

impl WatchStop {
    /// Stops the watch and drops pending events; a batch already being handed to the
    /// callback at this moment may still arrive.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A file's identity and state in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    size: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

type Snapshot = BTreeMap<String, FileState>;

/// Whether a name is skipped when watching.
fn skipped(name: &str, exclude: &[String]) -> bool {
    DEFAULT_EXCLUDES.contains(&name)
        || WATCH_EXCLUDES.contains(&name)
        || name.ends_with(".log")
        || exclude.iter().any(|e| e == name)
}

/// Every file (anything that is not a directory; symlinks are not followed) under `root`.
fn snapshot(root: &Path, exclude: &[String]) -> Snapshot {
    let mut files = Snapshot::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if skipped(&name, exclude) {
                continue;
            }
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(metadata) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if metadata.is_dir() {
                pending.push((entry.path(), relative));
            } else {
                let state = FileState {
                    size: metadata.len(),
                    modified: metadata.modified().ok(),
                    inode: metadata.ino(),
                };
                files.insert(relative, state);
            }
        }
    }
    files
}

/// The changes from `before` to `after`.
fn diff(before: &Snapshot, after: &Snapshot) -> Vec<(String, ChangeKind)> {
    let mut changes = Vec::new();
    for (path, state) in after {
        match before.get(path) {
            None => changes.push((path.clone(), ChangeKind::Add)),
            Some(old) if old != state => changes.push((path.clone(), ChangeKind::Change)),
            Some(_) => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            changes.push((path.clone(), ChangeKind::Unlink));
        }
    }
    changes
}

async fn take_snapshot(root: PathBuf, exclude: Vec<String>) -> Option<Snapshot> {
    tokio::task::spawn_blocking(move || snapshot(&root, &exclude))
        .await
        .ok()
}

/// Starts watching `options.root`; must be called within a tokio runtime. The first snapshot
/// is taken on the calling thread before this returns, so every change made afterwards is
/// reported. `deliver` receives each debounced batch of events (sorted by path) and returns
/// whether to go on; the watch ends when it returns `false` or when the returned
/// [`WatchStop`] is stopped or dropped.
pub fn watch<F>(options: WatchOptions, mut deliver: F) -> WatchStop
where
    F: FnMut(Vec<ChangeEvent>) -> bool + Send + 'static,
{
    let (stop, mut stopped) = signal::channel(false);
    let poll = options.debounce.clamp(MIN_POLL, MAX_POLL);
    let mut previous = snapshot(&options.root, &options.exclude);
    tokio::spawn(async move {
        let mut pending: BTreeMap<String, ChangeEvent> = BTreeMap::new();
        let mut last_change = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            let Some(current) = take_snapshot(options.root.clone(), options.exclude.clone()).await
            else {
                return;
            };
            let changes = diff(&previous, &current);
            previous = current;
            if !changes.is_empty() {
                let at = SystemTime::now();
                last_change = Instant::now();
                for (path, kind) in changes {
                    let event = ChangeEvent {
                        kind,
                        path: path.clone(),
                        at,
                    };
                    pending.insert(path, event);
                }
            }
            if !pending.is_empty() && last_change.elapsed() >= options.debounce {
                if *stopped.borrow() {
                    return;
                }
                let batch: Vec<ChangeEvent> = std::mem::take(&mut pending).into_values().collect();
                if !deliver(batch) {
                    return;
                }
            }
        }
    });
    WatchStop(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("source-watch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src")).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn snapshots_skip_excluded_names_and_diffs_name_each_change() {
        let dir = temp("diff");
        fs::write(dir.join("src/a.ts"), "a").unwrap();
        fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        fs::write(dir.join("node_modules/x/i.js"), "x").unwrap();
        fs::write(dir.join("debug.log"), "x").unwrap();
        fs::create_dir_all(dir.join("secret")).unwrap();
        fs::write(dir.join("secret/k"), "x").unwrap();
        let exclude = ["secret".to_owned()];
        let first = snapshot(&dir, &exclude);
        assert_eq!(first.keys().collect::<Vec<_>>(), ["src/a.ts"]);
        fs::write(dir.join("src/a.ts"), "longer").unwrap();
        fs::write(dir.join("src/b.ts"), "b").unwrap();
        let second = snapshot(&dir, &exclude);
        assert_eq!(
            diff(&first, &second),
            [
                ("src/a.ts".to_owned(), ChangeKind::Change),
                ("src/b.ts".to_owned(), ChangeKind::Add)
            ]
        );
        fs::remove_file(dir.join("src/a.ts")).unwrap();
        assert_eq!(
            diff(&second, &snapshot(&dir, &exclude)),
            [("src/a.ts".to_owned(), ChangeKind::Unlink)]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_arrive_debounced_and_stop_ends_delivery() {
        let dir = temp("live");
        let batches: Arc<Mutex<Vec<Vec<ChangeEvent>>>> = Arc::default();
        let sink = Arc::clone(&batches);
        let options = WatchOptions {
            root: dir.clone(),
            exclude: Vec::new(),
            debounce: Duration::from_millis(50),
        };
        let stop = watch(options, move |batch| {
            sink.lock().unwrap().push(batch);
            true
        });
        fs::write(dir.join("src/a.ts"), "a").unwrap();
        fs::write(dir.join("src/b.ts"), "b").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while batches.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen: Vec<(String, ChangeKind)> = batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|e| (e.path.clone(), e.kind))
            .collect();
        assert!(
            seen.contains(&("src/a.ts".to_owned(), ChangeKind::Add)),
            "{seen:?}"
        );
        stop.stop();
        let delivered = batches.lock().unwrap().len();
        fs::write(dir.join("src/c.ts"), "c").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(batches.lock().unwrap().len(), delivered);
        fs::remove_dir_all(&dir).unwrap();
    }
}
