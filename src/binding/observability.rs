//! MastraAdmin's `FileStorageProvider` behind the core's [`FileStorage`], and the runner's
//! observability persister as `setObservabilityStorage` installs it.
//!
//! Only `write(path, content)` is called: read off the object once, bound to it, wrapped in a
//! weak threadsafe function (a stored storage never keeps Node alive). A throw, a rejection or
//! a value that is not a Promise comes back as a message; time limits and retries are the
//! core's.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{FnArgs, Object};
use napi::threadsafe_function::UnknownReturnValue;

use super::entities::ObservabilityStats;
use super::error::{JsFailure, Result};
use super::provider::{AsyncMethod, async_method, call};
use crate::observability::{FileStorage, Persister};
use crate::runner::{BoxFuture, Runner};
use crate::sync::lock;

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

/// The persister a runner writes its logs through, once a storage was set.
#[derive(Default)]
pub(crate) struct ObservabilitySlot {
    persister: Mutex<Option<Arc<Persister>>>,
}

impl ObservabilitySlot {
    /// Writes every server's and build's log lines to `storage` from now on (a storage set
    /// earlier keeps what it was given and gets nothing more).
    pub(crate) fn set(&self, runner: &Runner, storage: &Object) -> Result<()> {
        let write = async_method(storage, "storage", "write")?;
        let config = runner.config();
        let persister = napi::bindgen_prelude::within_runtime_if_available(|| {
            Persister::new(
                Arc::new(JsFileStorage { write }),
                config.observability,
                config.provider_timeout,
            )
        })
        .map_err(JsFailure::from)?;
        let persister = Arc::new(persister);
        runner.set_log_observer(OBSERVER, Arc::clone(&persister) as _);
        if let Some(previous) = lock(&self.persister).replace(persister) {
            previous.detach();
        }
        Ok(())
    }

    /// `getStats().observability`: absent until a storage is set.
    pub(crate) fn stats(&self) -> Option<ObservabilityStats> {
        lock(&self.persister)
            .as_ref()
            .map(|persister| ObservabilityStats::from(persister.stats()))
    }
}
