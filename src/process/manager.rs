//! Processes tracked by server id: the state and the rules behind the `ProcessManager` JS export.
//!
//! The manager is generic over what it tracks ([`Managed`]): the binding tracks JS process
//! objects (a `SpawnedProcess` or anything shaped like Node's `ChildProcess`), whose state only
//! the JS thread can read, so the manager holds no lock of its own and its owner serializes the
//! calls (the binding keeps it in a `RefCell` on the JS thread).
//!
//! # Caveats
//! Between [`ProcessManager::admit`] and [`ProcessManager::track`] the caller may run other code
//! (the binding registers the process's `exit` listener, which is JS): the admission says the id
//! was free when it was given, as the TypeScript package checked it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::handle::{DEFAULT_KILL_GRACE, ProcessHandle};
use crate::error::{Error, Result};
use crate::validate;

/// A process a [`ProcessManager`] can track: it can say whether it is still running.
pub trait Managed {
    /// What reading its state needs besides the process itself (the JS environment for a JS
    /// object, nothing for a [`ProcessHandle`]).
    type Context;
    /// Why its state could not be read; the manager's own refusals convert into it.
    type Error: From<Error>;

    /// Whether it is still running.
    fn is_running(&self, context: &Self::Context) -> std::result::Result<bool, Self::Error>;
}

/// How a [`ProcessManager`] stops the trees it started (`{ shutdownTimeoutMs? }` in JS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Time between SIGTERM and SIGKILL for each tree (default [`DEFAULT_KILL_GRACE`]).
    pub grace: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            grace: DEFAULT_KILL_GRACE,
        }
    }
}

impl ManagerOptions {
    /// The fields [`ManagerOptions::from_json`] reads.
    pub const FIELDS: &'static [&'static str] = &["shutdownTimeoutMs"];

    /// Reads options object `name` (`null` for none); a wrong field is an error naming it.
    pub fn from_json(options: &Value, name: &str) -> Result<Self> {
        let shutdown_timeout = match options {
            Value::Null => &Value::Null,
            Value::Object(fields) => fields.get("shutdownTimeoutMs").unwrap_or(&Value::Null),
            other => {
                return Err(Error::invalid(name, validate::expected("an object", other)));
            }
        };
        let grace = match shutdown_timeout {
            Value::Null => DEFAULT_KILL_GRACE,
            given => Duration::from_millis(validate::integer(
                &format!("{name}.shutdownTimeoutMs"),
                given,
                0,
                validate::MAX_SAFE_INTEGER,
            )?),
        };
        Ok(ManagerOptions { grace })
    }
}

/// One tracked process with what it was tracked with.
#[derive(Debug)]
pub struct Tracked<P> {
    /// The deployment it serves.
    pub deployment_id: String,
    /// The port it listens on, when the caller said.
    pub port: Option<u16>,
    /// When it started being tracked.
    pub started_at: SystemTime,
    /// The process itself.
    pub process: P,
    /// Tells this registration from a later one under the same server id.
    generation: u64,
}

/// Permission to track a process under `server_id`, given while no running process had it.
#[derive(Debug)]
pub struct Admission {
    server_id: String,
    generation: u64,
}

impl Admission {
    /// The registration this admission becomes: what [`ProcessManager::untrack`] is given when
    /// the process exits.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The server id admitted.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }
}

/// Processes by server id, one running process per id. Stopping trees goes through the one
/// tree killer.
#[derive(Debug)]
pub struct ProcessManager<P> {
    processes: BTreeMap<String, Tracked<P>>,
    /// The last registration given out. A `Cell` so that [`ProcessManager::admit`] takes
    /// `&self`: the binding admits under a shared borrow, while JS getters may read the manager.
    generations: Cell<u64>,
    grace: Duration,
}

impl<P: Managed> ProcessManager<P> {
    /// An empty manager stopping trees as `options` say.
    pub fn new(options: ManagerOptions) -> Self {
        ProcessManager {
            processes: BTreeMap::new(),
            generations: Cell::new(0),
            grace: options.grace,
        }
    }

    /// Admits a process for `server_id`; a process tracked under it that still runs is an
    /// error. A finished one is replaced by [`ProcessManager::track`].
    pub fn admit(&self, server_id: &str, context: &P::Context) -> Result<Admission, P::Error> {
        if self.is_running(server_id, context)? {
            return Err(Error::invalid(
                "serverId",
                format!("a process for server '{server_id}' is already running"),
            )
            .into());
        }
        let generation = self.generations.get() + 1;
        self.generations.set(generation);
        Ok(Admission {
            server_id: server_id.to_owned(),
            generation,
        })
    }

    /// Tracks `process` under its admission; returns the finished process it replaces.
    pub fn track(
        &mut self,
        admission: Admission,
        deployment_id: String,
        port: Option<u16>,
        process: P,
    ) -> Option<Tracked<P>> {
        let tracked = Tracked {
            deployment_id,
            port,
            started_at: SystemTime::now(),
            process,
            generation: admission.generation,
        };
        self.processes.insert(admission.server_id, tracked)
    }

    /// The process tracked as `server_id`.
    pub fn get(&self, server_id: &str) -> Option<&Tracked<P>> {
        self.processes.get(server_id)
    }

    /// The most recently tracked process serving `deployment_id`, with its server id.
    pub fn newest_serving(&self, deployment_id: &str) -> Option<(&str, &Tracked<P>)> {
        self.processes
            .iter()
            .filter(|(_, tracked)| tracked.deployment_id == deployment_id)
            .max_by_key(|(_, tracked)| tracked.generation)
            .map(|(server_id, tracked)| (server_id.as_str(), tracked))
    }

    /// Every tracked process with its server id, by server id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tracked<P>)> {
        self.processes
            .iter()
            .map(|(server_id, tracked)| (server_id.as_str(), tracked))
    }

    /// Whether the process tracked as `server_id` is running (`false` for unknown ids).
    pub fn is_running(&self, server_id: &str, context: &P::Context) -> Result<bool, P::Error> {
        match self.processes.get(server_id) {
            Some(tracked) => tracked.process.is_running(context),
            None => Ok(false),
        }
    }

    /// How many tracked processes are running.
    pub fn running_count(&self, context: &P::Context) -> Result<usize, P::Error> {
        let mut count = 0;
        for tracked in self.processes.values() {
            if tracked.process.is_running(context)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Forgets the registration `generation` of `server_id` (its process exited); a later
    /// registration under the same id stays.
    pub fn untrack(&mut self, server_id: &str, generation: u64) -> Option<Tracked<P>> {
        if self.processes.get(server_id)?.generation != generation {
            return None;
        }
        self.processes.remove(server_id)
    }

    /// Forgets the process of `server_id` and returns it, for the caller to stop.
    pub fn remove(&mut self, server_id: &str) -> Option<Tracked<P>> {
        self.processes.remove(server_id)
    }

    /// Forgets every process and returns them, for the caller to stop.
    pub fn remove_all(&mut self) -> Vec<Tracked<P>> {
        std::mem::take(&mut self.processes).into_values().collect()
    }

    /// Stops `trees` at once (each SIGTERM, the manager's grace, SIGKILL); the future ends when
    /// nothing of any of them is left. The signals go out when the future first runs.
    pub fn stop_trees(
        &self,
        trees: Vec<ProcessHandle>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let grace = self.grace;
        async move {
            let mut kills = tokio::task::JoinSet::new();
            for tree in trees {
                kills.spawn(tree.kill_tree(grace));
            }
            while kills.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::logs::{LogLimits, LogStore};
    use crate::process::SpawnSpec;

    impl Managed for ProcessHandle {
        type Context = ();
        type Error = Error;

        fn is_running(&self, _: &()) -> Result<bool> {
            Ok(ProcessHandle::is_running(self))
        }
    }

    async fn sleeper() -> ProcessHandle {
        let spec = SpawnSpec {
            program: "sleep".to_owned(),
            args: vec!["30".to_owned()],
            cwd: std::env::temp_dir(),
            env: crate::process::env::compose([]),
            confinement: Default::default(),
        };
        let log = Arc::new(LogStore::new(LogLimits::with_lines(10)));
        match crate::process::spawn(spec, log, None).await {
            Ok(handle) => handle,
            Err(error) => panic!("sleep did not start: {error}"),
        }
    }

    fn manager() -> ProcessManager<ProcessHandle> {
        ProcessManager::new(ManagerOptions {
            grace: Duration::ZERO,
        })
    }

    #[test]
    fn options_default_and_name_the_wrong_field() {
        let parsed = |json: Value| ManagerOptions::from_json(&json, "options");
        assert_eq!(parsed(Value::Null).ok(), Some(ManagerOptions::default()));
        assert_eq!(
            parsed(serde_json::json!({ "shutdownTimeoutMs": 300 }))
                .ok()
                .map(|options| options.grace),
            Some(Duration::from_millis(300))
        );
        let message = |json: Value| parsed(json).err().map(|e| e.to_string());
        assert_eq!(
            message(serde_json::json!(5)).as_deref(),
            Some("Invalid options: expected an object, got number 5")
        );
        assert_eq!(
            message(serde_json::json!({ "shutdownTimeoutMs": -1 })).as_deref(),
            Some("Invalid options.shutdownTimeoutMs: must be an integer of at least 0 (got -1)")
        );
    }

    #[tokio::test]
    async fn one_running_process_per_id_and_exits_forget_only_their_registration() {
        let mut manager = manager();
        let first = manager.admit("server", &()).ok();
        let Some(first) = first else {
            panic!("a free id is admitted");
        };
        let first_generation = first.generation();
        manager.track(first, "dep-1".to_owned(), Some(4111), sleeper().await);
        let refused = manager.admit("server", &()).err().map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("Invalid serverId: a process for server 'server' is already running")
        );
        assert_eq!(manager.running_count(&()).ok(), Some(1));

        let removed = manager.remove_all();
        let trees = removed.into_iter().map(|tracked| tracked.process).collect();
        manager.stop_trees(trees).await;
        assert!(manager.get("server").is_none());

        // A second registration under the same id: the first one's exit leaves it alone.
        let Ok(second) = manager.admit("server", &()) else {
            panic!("a stopped id is admitted again");
        };
        let handle = sleeper().await;
        manager.track(second, "dep-2".to_owned(), None, handle.clone());
        assert!(manager.untrack("server", first_generation).is_none());
        assert_eq!(
            manager.newest_serving("dep-2").map(|(id, _)| id),
            Some("server")
        );
        assert!(manager.newest_serving("dep-1").is_none());
        manager.stop_trees(vec![handle]).await;
        assert_eq!(manager.running_count(&()).ok(), Some(0));
    }
}
