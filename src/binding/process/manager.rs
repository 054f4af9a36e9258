//! `ProcessManager`: server processes by server id.
use super::ProcessOn;
use super::command::{
    ArgsArg, ArgumentList, CommandArg, CommandOptions, OptionsArg, Program, read_promised_command,
};
use super::spawned::SpawnedProcess;
use super::tracked::{
    Tracked, TrackedMap, TrackedProcess, rejected, release, resolved, status, tracked_info,
};
use crate::binding::convert::PromisedArg;
use crate::binding::error::JsFailure;
use crate::binding::error::{Result, spawn};
use crate::process;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use napi::ValueType;
use napi::bindgen_prelude::{
    ClassInstance, Either, Env, FnArgs, FromNapiValue, Function, JavaScriptClassExt, JsObjectValue,
    JsValue, Object, ObjectFinalize, ToNapiValue, Unknown,
};
use napi_derive::napi;

use crate::binding::args;
use crate::binding::delivery::report_callback_error;
use crate::logs::join_text;
use crate::validate;

/// Server processes by server id: track (or start), look up, and stop them.
///
/// A tracked process leaves the manager when its `exit` event fires. Stopping a
/// `SpawnedProcess` stops its whole tree (SIGTERM, `shutdownTimeoutMs`, SIGKILL); any other
/// process object (a Node `ChildProcess`) gets its own `kill('SIGTERM')`. The manager never
/// signals a pid it did not start.
#[napi(custom_finalize)]
pub struct ProcessManager {
    pub(super) tracked: TrackedMap,
    pub(super) generations: Cell<u64>,
    pub(super) grace: Duration,
}

#[napi]
impl ProcessManager {
    /// A manager whose `kill` gives each tree `shutdownTimeoutMs` (default 10000) between
    /// SIGTERM and SIGKILL.
    #[napi(constructor, ts_args_type = "options?: { shutdownTimeoutMs?: number }")]
    pub fn new(options: Option<Unknown>) -> Result<Self> {
        let grace = args::optional_integer(
            args::field(options.as_ref(), "options", "shutdownTimeoutMs")?.as_ref(),
            "options.shutdownTimeoutMs",
            0,
            validate::MAX_SAFE_INTEGER,
        )?
        .map_or(process::DEFAULT_KILL_GRACE, Duration::from_millis);
        Ok(ProcessManager {
            tracked: Rc::default(),
            generations: Cell::new(0),
            grace,
        })
    }

    /// Tracks `process` (from `spawnCommand`, or any object shaped like Node's `ChildProcess`)
    /// as `serverId` of `deploymentId`, listening on `port`, with its `logCollector`; it is
    /// forgotten when its `exit` event fires. Throws when a running process is already
    /// tracked as `serverId`.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, process: SpawnedProcess | { pid?: number; killed?: boolean; exitCode?: number | null; on(event: 'exit', listener: (...args: any[]) => void): unknown; kill?(signal?: string): unknown }, port?: number, logCollector?: object"
    )]
    pub fn track(
        &self,
        env: &Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        process: Option<Unknown>,
        port: Option<Unknown>,
        log_collector: Option<Unknown>,
    ) -> Result<()> {
        let server_id = args::required_string(server_id, "serverId")?;
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        let object = args::object(process.as_ref(), "process")?;
        let port = args::optional_port(port, "port")?;
        let log_collector = match log_collector {
            Some(log) if !matches!(log.get_type()?, ValueType::Undefined | ValueType::Null) => {
                args::object(Some(&log), "logCollector")?;
                Some(log)
            }
            _ => None,
        };
        self.insert(env, server_id, deployment_id, object, port, log_collector)
    }

    /// Starts `command` for `serverId` (see `spawnCommand` for the options) and tracks it.
    /// Rejects when a process for `serverId` is already running or the command cannot start.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
        ts_return_type = "Promise<TrackedProcess>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        command: PromisedArg<Program, CommandArg>,
        arguments: Option<PromisedArg<ArgumentList, ArgsArg>>,
        options: Option<PromisedArg<CommandOptions, OptionsArg>>,
    ) -> Result<Unknown<'env>> {
        match self.start_now(env, server_id, deployment_id, command, arguments, options) {
            Ok(info) => resolved(env, info.into_unknown(env)?),
            Err(error) => rejected(env, error),
        }
    }

    /// The process tracked as `serverId`, or `undefined`.
    #[napi(
        ts_args_type = "serverId: string",
        ts_return_type = "TrackedProcess | undefined"
    )]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        let server_id = args::required_string(server_id, "serverId")?;
        let tracked = self.tracked.borrow();
        Ok(match tracked.get(&server_id) {
            Some(entry) => Either::A(tracked_info(env, &server_id, entry)?),
            None => Either::B(()),
        })
    }

    /// The newest process serving `deploymentId`, or `undefined`.
    #[napi(
        ts_args_type = "deploymentId: string",
        ts_return_type = "TrackedProcess | undefined"
    )]
    pub fn get_by_deployment_id<'env>(
        &self,
        env: &'env Env,
        deployment_id: Option<Unknown>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        let tracked = self.tracked.borrow();
        let newest = tracked
            .iter()
            .filter(|(_, entry)| entry.deployment_id == deployment_id)
            .max_by_key(|(_, entry)| entry.generation);
        Ok(match newest {
            Some((server_id, entry)) => Either::A(tracked_info(env, server_id, entry)?),
            None => Either::B(()),
        })
    }

    /// Every tracked process.
    #[napi(ts_return_type = "TrackedProcess[]")]
    pub fn get_all<'env>(&self, env: &'env Env) -> Result<Vec<TrackedProcess<'env>>> {
        self.tracked
            .borrow()
            .iter()
            .map(|(server_id, entry)| tracked_info(env, server_id, entry))
            .collect()
    }

    /// Whether the process of `serverId` is running (for a `ChildProcess`-like object: not
    /// `killed` and without an `exitCode`).
    #[napi(ts_args_type = "serverId: string")]
    pub fn is_running(&self, env: &Env, server_id: Option<Unknown>) -> Result<bool> {
        let server_id = args::required_string(server_id, "serverId")?;
        match self.tracked.borrow().get(&server_id) {
            Some(entry) => Ok(status(env, entry)?.0),
            None => Ok(false),
        }
    }

    /// How many tracked processes are running.
    #[napi]
    pub fn get_running_count(&self, env: &Env) -> Result<u32> {
        let mut count = 0;
        for entry in self.tracked.borrow().values() {
            if status(env, entry)?.0 {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Everything the `SpawnedProcess` of `serverId` wrote (last 10000 lines); `''` otherwise.
    #[napi(ts_args_type = "serverId: string")]
    pub fn get_output(&self, server_id: Option<Unknown>) -> Result<String> {
        let server_id = args::required_string(server_id, "serverId")?;
        Ok(self
            .tracked
            .borrow()
            .get(&server_id)
            .and_then(|entry| entry.handle.as_ref())
            .map(|handle| join_text(&handle.log().all()))
            .unwrap_or_default())
    }

    /// Forgets the process of `serverId` and stops it; resolves when nothing of a
    /// `SpawnedProcess`'s tree is left. Unknown ids resolve at once.
    #[napi(ts_args_type = "serverId: string", ts_return_type = "Promise<void>")]
    pub fn kill<'env>(&self, env: &'env Env, server_id: Option<Unknown>) -> Result<Unknown<'env>> {
        let server_id = match args::required_string(server_id, "serverId") {
            Ok(id) => id,
            Err(error) => return rejected(env, error),
        };
        let removed = self.tracked.borrow_mut().remove(&server_id);
        self.stop(env, removed.into_iter().collect())
    }

    /// Forgets and stops every tracked process at once; resolves when nothing of any
    /// `SpawnedProcess`'s tree is left.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill_all<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let removed: Vec<Tracked> = std::mem::take(&mut *self.tracked.borrow_mut())
            .into_values()
            .collect();
        self.stop(env, removed)
    }
}

impl ProcessManager {
    fn start_now<'env>(
        &self,
        env: &'env Env,
        server_id: Option<Unknown>,
        deployment_id: Option<Unknown>,
        command: PromisedArg<Program, CommandArg>,
        arguments: Option<PromisedArg<ArgumentList, ArgsArg>>,
        options: Option<PromisedArg<CommandOptions, OptionsArg>>,
    ) -> Result<TrackedProcess<'env>> {
        let server_id = args::required_string(server_id, "serverId")?;
        let deployment_id = args::required_string(deployment_id, "deploymentId")?;
        self.check_free(env, &server_id)?;
        let command = read_promised_command(command, arguments, options)?;
        let spawned = SpawnedProcess::start(env, command, false)?;
        let instance = spawned.into_instance(env)?;
        let object = instance.as_object(env);
        self.insert(env, server_id.clone(), deployment_id, object, None, None)?;
        let tracked = self.tracked.borrow();
        match tracked.get(&server_id) {
            Some(entry) => tracked_info(env, &server_id, entry),
            None => Err(JsFailure::invalid("serverId", "its process exited at once")),
        }
    }

    /// A running process already tracked as `server_id` is an error.
    fn check_free(&self, env: &Env, server_id: &str) -> Result<()> {
        if let Some(entry) = self.tracked.borrow().get(server_id)
            && status(env, entry)?.0
        {
            return Err(JsFailure::invalid(
                "serverId",
                format!("a process for server '{server_id}' is already running"),
            ));
        }
        Ok(())
    }

    fn insert(
        &self,
        env: &Env,
        server_id: String,
        deployment_id: String,
        object: Object,
        port: Option<u16>,
        log_collector: Option<Unknown>,
    ) -> Result<()> {
        self.check_free(env, &server_id)?;
        let handle = if SpawnedProcess::instance_of(env, &object)? {
            // SAFETY: `object` was just checked to be a SpawnedProcess instance.
            let instance = unsafe {
                ClassInstance::<SpawnedProcess>::from_napi_value(env.raw(), object.raw())
            }?;
            instance.handle.clone()
        } else {
            None
        };
        let generation = self.generations.get() + 1;
        self.generations.set(generation);
        let on: Unknown = object.get_named_property("on")?;
        if on.get_type()? == ValueType::Function {
            let tracked = Rc::clone(&self.tracked);
            let id = server_id.clone();
            let untrack = env.create_function_from_closure::<(), (), _>("untrack", move |ctx| {
                let mut map = tracked.borrow_mut();
                if map.get(&id).is_some_and(|e| e.generation == generation)
                    && let Some(entry) = map.remove(&id)
                {
                    drop(map);
                    release(ctx.env, entry);
                }
                Ok(())
            })?;
            // SAFETY: the type was just checked.
            let on = unsafe { on.cast::<ProcessOn>() }?;
            on.apply(object, FnArgs::from(("exit".to_owned(), untrack)))?;
        }
        // Referenced only after every check: a reference dropped without `unref` leaks its
        // object.
        let process = object.to_unknown().create_ref()?;
        let log_collector = match log_collector.map(|log| log.create_ref()).transpose() {
            Ok(log_collector) => log_collector,
            Err(error) => {
                if let Err(unref) = process.unref(env) {
                    tracing::debug!("releasing a process reference failed: {unref}");
                }
                return Err(error.into());
            }
        };
        let entry = Tracked {
            deployment_id,
            port,
            started_at: SystemTime::now(),
            process,
            log_collector,
            handle,
            generation,
        };
        if let Some(previous) = self.tracked.borrow_mut().insert(server_id, entry) {
            release(env, previous);
        }
        Ok(())
    }

    /// Stops `removed` (already forgotten): whole trees for `SpawnedProcess`es, `kill('SIGTERM')`
    /// for other objects. The Promise resolves when every tree is gone.
    fn stop<'env>(&self, env: &'env Env, removed: Vec<Tracked>) -> Result<Unknown<'env>> {
        let mut trees = Vec::new();
        for entry in removed {
            match &entry.handle {
                Some(handle) => trees.push(handle.clone()),
                None => {
                    let value = entry.process.get_value(env)?;
                    // SAFETY: `track` only accepts objects.
                    let object = unsafe { value.cast::<Object>() }?;
                    let kill: Unknown = object.get_named_property("kill")?;
                    if kill.get_type()? == ValueType::Function {
                        // SAFETY: the type was just checked.
                        let kill = unsafe { kill.cast::<Function<String, Unknown>>() }?;
                        if let Err(error) = kill.apply(object, "SIGTERM".to_owned()) {
                            report_callback_error("a tracked process's kill()", &error);
                        }
                    }
                }
            }
            release(env, entry);
        }
        let grace = self.grace;
        let promise = spawn(env, async move {
            let mut kills = tokio::task::JoinSet::new();
            for handle in trees {
                kills.spawn(async move { handle.kill_tree(grace).await });
            }
            while kills.join_next().await.is_some() {}
            Ok(())
        })?;
        Ok(promise.to_unknown())
    }
}

impl ObjectFinalize for ProcessManager {
    fn finalize(self, env: Env) -> napi::Result<()> {
        for (_, entry) in std::mem::take(&mut *self.tracked.borrow_mut()) {
            release(&env, entry);
        }
        Ok(())
    }
}
