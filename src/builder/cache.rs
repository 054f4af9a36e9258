//! The build cache of a runner's builds (`<buildDir>/.runner/build-cache`), opened on first use
//! off the async threads, with the runner's answer to "does a live server run this build?"
//! (such a build's snapshots are never evicted).

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

/// The build cache, opened when the first build needs it.
pub struct CacheSlot {
    dir: PathBuf,
    max_bytes: u64,
    cache: tokio::sync::OnceCell<Option<Arc<BuildCache>>>,
    in_use: Mutex<Option<InUse>>,
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
        }
    }

    /// The bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The cache, opened now if it was not yet; `None` when it is off (`maxMb: 0`) or cannot
    /// be opened (said once in the runner's log).
    pub async fn get(&self) -> Option<Arc<BuildCache>> {
        if self.max_bytes == 0 {
            return None;
        }
        self.cache
            .get_or_init(|| async {
                let (dir, max) = (self.dir.clone(), self.max_bytes);
                let opened =
                    tokio::task::spawn_blocking(move || BuildCache::open(&dir, Some(max))).await;
                match opened {
                    Ok(Ok(cache)) => Some(Arc::new(cache)),
                    Ok(Err(error)) => {
                        tracing::warn!("the build cache is off: {error}");
                        None
                    }
                    Err(error) => {
                        tracing::warn!("the build cache is off: opening it failed: {error}");
                        None
                    }
                }
            })
            .await
            .clone()
    }

    /// Its figures, zero until a build opened it.
    pub fn stats(&self) -> CacheStats {
        self.cache
            .get()
            .and_then(Option::as_ref)
            .map(|cache| cache.stats())
            .unwrap_or_default()
    }

    /// Sets how the cache learns which builds live servers run.
    pub fn set_in_use(&self, in_use: InUse) {
        *lock(&self.in_use) = Some(in_use);
    }

    /// Whether a live server runs from build `build_id` (false when nobody said).
    pub fn in_use(&self, build_id: &str) -> bool {
        let in_use = lock(&self.in_use).clone();
        in_use.is_some_and(|in_use| in_use(build_id))
    }

    /// Drops the snapshots taken from build `build_id` (its directory was removed).
    pub async fn remove_build(&self, build_id: &str) {
        let Some(cache) = self.get().await else {
            return;
        };
        let build_id = build_id.to_owned();
        let _ = tokio::task::spawn_blocking(move || cache.remove_build(&build_id)).await;
    }
}
