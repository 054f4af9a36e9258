//! The build cache of a runner's builds (`<buildDir>/.runner/build-cache`), opened on first use
//! off the async threads, with the runner's answer to "does a live server run this build?": the
//! snapshots a live server's build was made from (its own, or the ones it restored) are never
//! evicted. Snapshots outlive the build directories they were taken from; only the cache's
//! bound removes them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::reuse::{BuildCache, CacheStats};
use crate::process::journal::JOURNAL_DIR;
use crate::sync::lock;

/// Where the snapshots live, under `buildDir` (inside the runner's state directory, which no
/// sandbox sees).
pub const BUILD_CACHE_DIR: &str = "build-cache";

/// Whether a live server runs from build `build_id`.
pub type InUse = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The most "build B was restored from build A's snapshot" facts kept (the oldest go first).
const MAX_LINEAGE: usize = 10_000;

/// The build cache, opened when the first build needs it.
pub struct CacheSlot {
    dir: PathBuf,
    max_bytes: u64,
    cache: tokio::sync::OnceCell<Result<Arc<BuildCache>, String>>,
    in_use: Mutex<Option<InUse>>,
    /// Build → the build whose snapshot it restored, oldest first.
    restored_from: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for CacheSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSlot")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheSlot {
    /// The cache of a runner on `build_dir`, bounded to `max_bytes` (0: no cache).
    pub fn new(build_dir: &Path, max_bytes: u64) -> Self {
        CacheSlot {
            dir: build_dir.join(JOURNAL_DIR).join(BUILD_CACHE_DIR),
            max_bytes,
            cache: tokio::sync::OnceCell::new(),
            in_use: Mutex::new(None),
            restored_from: Mutex::new(Vec::new()),
        }
    }

    /// The bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The cache, opened now if it was not yet; else why there is none (`maxMb: 0`, another
    /// runner on the same `buildDir` holds it, or it cannot be opened).
    pub async fn get(&self) -> Result<Arc<BuildCache>, String> {
        if self.max_bytes == 0 {
            return Err("buildCache.maxMb is 0".to_owned());
        }
        self.cache
            .get_or_init(|| async {
                let (dir, max) = (self.dir.clone(), self.max_bytes);
                let opened = tokio::task::spawn_blocking(move || {
                    BuildCache::open_exclusive(&dir, Some(max))
                })
                .await;
                let why = match opened {
                    Ok(Ok(Some(cache))) => return Ok(Arc::new(cache)),
                    Ok(Ok(None)) => format!(
                        "another runner on this buildDir holds it ({})",
                        self.dir.display()
                    ),
                    Ok(Err(error)) => format!("it cannot be opened: {error}"),
                    Err(error) => format!("opening it failed: {error}"),
                };
                tracing::warn!("the build cache is off: {why}");
                Err(why)
            })
            .await
            .clone()
    }

    /// Its figures, zero until a build opened it.
    pub fn stats(&self) -> CacheStats {
        match self.cache.get() {
            Some(Ok(cache)) => cache.stats(),
            _ => CacheStats::default(),
        }
    }

    /// Sets how the cache learns which builds live servers run.
    pub fn set_in_use(&self, in_use: InUse) {
        *lock(&self.in_use) = Some(in_use);
    }

    /// Whether a live server runs from build `build_id`, or from a build that restored a
    /// snapshot of `build_id` (false when nobody said).
    pub fn in_use(&self, build_id: &str) -> bool {
        let Some(live) = lock(&self.in_use).clone() else {
            return false;
        };
        if live(build_id) {
            return true;
        }
        let restored: Vec<String> = lock(&self.restored_from)
            .iter()
            .filter(|(_, from)| from == build_id)
            .map(|(build, _)| build.clone())
            .collect();
        restored.iter().any(|build| live(build))
    }

    /// Records that build `build_id` restored a snapshot of build `from`.
    pub fn restored(&self, build_id: &str, from: &str) {
        let mut lineage = lock(&self.restored_from);
        lineage.retain(|(build, _)| build != build_id);
        if lineage.len() >= MAX_LINEAGE {
            lineage.remove(0);
        }
        lineage.push((build_id.to_owned(), from.to_owned()));
    }
}
