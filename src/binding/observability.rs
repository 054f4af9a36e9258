//! MastraAdmin's `FileStorageProvider` behind the core's [`FileStorage`], and the runner's
//! observability persister as `setObservabilityStorage` installs it.
//!
//! Only `write(path, content)` is called: read off the object once, bound to it, wrapped in a
//! weak threadsafe function (a stored storage never keeps Node alive). What it returns is
//! awaited as `await` would (a synchronous `write` returning `undefined` has written); a throw
//! or a rejection comes back as a message. Time limits and retries are the core's.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::{FnArgs, Object};
use napi::threadsafe_function::UnknownReturnValue;

use super::entities::ObservabilityStats;
use super::error::{JsFailure, Result};
use super::provider::{AsyncMethod, async_method, call};
use crate::observability::{FileStorage, Persister, PersisterSlot};
use crate::runner::{BoxFuture, Runner};

/// The name the persister is kept under among the runner's log observers.
const OBSERVER: &str = "observabilityStorage";

/// A JS `FileStorageProvider`.
struct JsFileStorage {
    write: AsyncMethod<FnArgs<(String, String)>, UnknownReturnValue>,
}

impl FileStorage for JsFileStorage {
    fn write<'a>(
        &'a self,
        path: &'a str,
        content: String,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async move {
            call(&self.write, FnArgs::from((path.to_owned(), content)))
                .await
                .map(|_| ())
        })
    }
}

/// The persister a runner writes its logs through, once a storage was set, and the ones it
/// replaced while they hand over.
#[derive(Default)]
pub(crate) struct ObservabilitySlot {
    persisters: PersisterSlot,
}

impl ObservabilitySlot {
    /// Writes every server's and build's log lines to `storage` from now on. A storage set
    /// earlier gets what it had pending at once (within `providerTimeoutMs`, the rest counted
    /// as dropped) and nothing later.
    pub(crate) fn set(&self, runner: &Runner, storage: &Object) -> Result<()> {
        let write = async_method(storage, "storage", "write")?;
        let config = runner.config();
        napi::bindgen_prelude::within_runtime_if_available(|| {
            let persister = Arc::new(Persister::new(
                Arc::new(JsFileStorage { write }),
                config.observability,
                config.provider_timeout,
            )?);
            // The new one subscribes before the old one stops reading: no line falls between.
            runner.set_log_observer(OBSERVER, Arc::clone(&persister) as _);
            self.persisters.replace(persister, config.provider_timeout)
        })
        .map_err(JsFailure::from)
    }

    /// `getStats().observability`: absent until a storage is set; counts every storage set.
    pub(crate) fn stats(&self) -> Option<ObservabilityStats> {
        self.persisters.stats().map(ObservabilityStats::from)
    }

    /// Resolves once every replaced storage got (or gave up on) what it had pending.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let persisters = self.persisters.clone();
        async move { persisters.settled().await }
    }
}
