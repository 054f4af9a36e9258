//! `ProcessManager`: server processes by server id, a thin wrapper over the core's
//! [`crate::process::ProcessManager`], which holds them and decides (one running process per
//! id, the newest of a deployment, the grace of a stop). This file converts the arguments,
//! reads the JS process objects and stops the ones it did not start through their own `kill`.
use super::ProcessOn;
use super::command::{
    ArgsArg, ArgumentList, CommandArg, CommandOptions, OptionsArg, Program, read_promised_command,
};
use super::spawned::SpawnedProcess;
use super::tracked::{
    JsProcess, Manager, TrackedProcess, rejected, release, resolved, tracked_info,
};
use crate::binding::convert::{
    Arg, DeploymentIdArg, Fields, PlainObject, Port, PromisedArg, Required, ServerIdArg, arg_names,
};
use crate::binding::error::{JsFailure, Result, spawn};
use std::cell::RefCell;
use std::rc::Rc;

use napi::ValueType;
use napi::bindgen_prelude::{
    ClassInstance, Either, Env, FnArgs, FromNapiValue, Function, JavaScriptClassExt, JsObjectValue,
    JsValue, Object, ObjectFinalize, ToNapiValue, Unknown,
};
use napi_derive::napi;

use crate::binding::delivery::report_callback_error;
use crate::logs::join_text;
use crate::process::{self, Admission, ManagerOptions, Tracked};

arg_names! {
    ProcessArg = "process";
    PortArg = "port";
    LogCollectorArg = "logCollector";
}

/// A server id or deployment id argument.
type Id<N> = Arg<Required<String>, N>;

/// The same, for a Promise-returning method (a wrong one rejects).
type PromisedId<N> = PromisedArg<Required<String>, N>;

/// Server processes by server id: track (or start), look up, and stop them.
///
/// A tracked process leaves the manager when its `exit` event fires. Stopping a
/// `SpawnedProcess` stops its whole tree (SIGTERM, `shutdownTimeoutMs`, SIGKILL); any other
/// process object (a Node `ChildProcess`) gets its own `kill('SIGTERM')`. The manager never
/// signals a pid it did not start.
#[napi(custom_finalize)]
pub struct ProcessManager {
    inner: Manager,
}

#[napi]
impl ProcessManager {
    /// A manager whose `kill` gives each tree `shutdownTimeoutMs` (default 10000) between
    /// SIGTERM and SIGKILL.
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "{ shutdownTimeoutMs?: number }")] options: Option<
            Arg<Fields<ManagerOptions>, OptionsArg>,
        >,
    ) -> Result<Self> {
        let options = options.map_or_else(ManagerOptions::default, |given| given.into_inner().0);
        Ok(ProcessManager {
            inner: Rc::new(RefCell::new(process::ProcessManager::new(options))),
        })
    }

    /// Tracks `process` (from `spawnCommand`, or any object shaped like Node's `ChildProcess`)
    /// as `serverId` of `deploymentId`, listening on `port`, with its `logCollector`; it is
    /// forgotten when its `exit` event fires. Throws when a running process is already
    /// tracked as `serverId`.
    #[napi]
    pub fn track(
        &self,
        env: &Env,
        #[napi(ts_arg_type = "string")] server_id: Id<ServerIdArg>,
        #[napi(ts_arg_type = "string")] deployment_id: Id<DeploymentIdArg>,
        #[napi(
            ts_arg_type = "SpawnedProcess | { pid?: number; killed?: boolean; exitCode?: number | null; on(event: 'exit', listener: (...args: any[]) => void): unknown; kill?(signal?: string): unknown }"
        )]
        process: Arg<PlainObject, ProcessArg>,
        #[napi(ts_arg_type = "number")] port: Option<Arg<Port, PortArg>>,
        #[napi(ts_arg_type = "object")] log_collector: Option<Arg<PlainObject, LogCollectorArg>>,
    ) -> Result<()> {
        let server_id = server_id.into_inner().0;
        let admission = self.inner.borrow().admit(&server_id, env)?;
        let log_collector = log_collector.map(|log| log.unknown(env)).transpose()?;
        self.insert(
            env,
            admission,
            deployment_id.into_inner().0,
            process.get(env)?,
            port.map(|port| port.0),
            log_collector,
        )
    }

    /// Starts `command` for `serverId` (see `spawnCommand` for the options) and tracks it.
    /// Rejects when a process for `serverId` is already running or the command cannot start.
    // The whole signature is spelled out because `args` is optional before `options`: the
    // command's own argument kinds (`command.rs`) are not napi `Option`s.
    #[napi(
        ts_args_type = "serverId: string, deploymentId: string, command: string, args?: string[], options?: { cwd?: string; env?: Record<string, string>; onOutput?: (line: string, stream: 'stdout' | 'stderr') => void }",
        ts_return_type = "Promise<TrackedProcess>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        server_id: PromisedId<ServerIdArg>,
        deployment_id: PromisedId<DeploymentIdArg>,
        command: PromisedArg<Program, CommandArg>,
        arguments: Option<PromisedArg<ArgumentList, ArgsArg>>,
        options: Option<PromisedArg<CommandOptions, OptionsArg>>,
    ) -> Result<Unknown<'env>> {
        let started = (|| {
            let server_id = server_id.into_result()?.0;
            let deployment_id = deployment_id.into_result()?.0;
            let admission = self.inner.borrow().admit(&server_id, env)?;
            let command = read_promised_command(command, arguments, options)?;
            let spawned = SpawnedProcess::start(env, command, false)?;
            let instance = spawned.into_instance(env)?;
            self.insert(
                env,
                admission,
                deployment_id,
                instance.as_object(env),
                None,
                None,
            )?;
            match self.info(env, &server_id)? {
                Either::A(info) => Ok(info),
                Either::B(()) => Err(JsFailure::invalid("serverId", "its process exited at once")),
            }
        })();
        match started {
            Ok(info) => resolved(env, info.into_unknown(env)?),
            Err(error) => rejected(env, error),
        }
    }

    /// The process tracked as `serverId`, or `undefined`.
    #[napi(ts_return_type = "TrackedProcess | undefined")]
    pub fn get<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] server_id: Id<ServerIdArg>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        self.info(env, &server_id.0)
    }

    /// The newest process serving `deploymentId`, or `undefined`.
    #[napi(ts_return_type = "TrackedProcess | undefined")]
    pub fn get_by_deployment_id<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] deployment_id: Id<DeploymentIdArg>,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        let manager = self.inner.borrow();
        Ok(match manager.newest_serving(&deployment_id.0) {
            Some((server_id, tracked)) => Either::A(tracked_info(env, server_id, tracked)?),
            None => Either::B(()),
        })
    }

    /// Every tracked process.
    #[napi(ts_return_type = "TrackedProcess[]")]
    pub fn get_all<'env>(&self, env: &'env Env) -> Result<Vec<TrackedProcess<'env>>> {
        self.inner
            .borrow()
            .iter()
            .map(|(server_id, tracked)| tracked_info(env, server_id, tracked))
            .collect()
    }

    /// Whether the process of `serverId` is running (for a `ChildProcess`-like object: not
    /// `killed` and without an `exitCode`).
    #[napi]
    pub fn is_running(
        &self,
        env: &Env,
        #[napi(ts_arg_type = "string")] server_id: Id<ServerIdArg>,
    ) -> Result<bool> {
        self.inner.borrow().is_running(&server_id.0, env)
    }

    /// How many tracked processes are running.
    #[napi]
    pub fn get_running_count(&self, env: &Env) -> Result<u32> {
        Ok(self.inner.borrow().running_count(env)? as u32)
    }

    /// Everything the `SpawnedProcess` of `serverId` wrote (last 10000 lines); `''` otherwise.
    #[napi]
    pub fn get_output(&self, #[napi(ts_arg_type = "string")] server_id: Id<ServerIdArg>) -> String {
        self.inner
            .borrow()
            .get(&server_id.0)
            .and_then(|tracked| tracked.process.handle.as_ref())
            .map(|handle| join_text(&handle.log().all()))
            .unwrap_or_default()
    }

    /// Forgets the process of `serverId` and stops it; resolves when nothing of a
    /// `SpawnedProcess`'s tree is left. Unknown ids resolve at once.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] server_id: PromisedId<ServerIdArg>,
    ) -> Result<Unknown<'env>> {
        let server_id = match server_id.into_result() {
            Ok(id) => id.0,
            Err(error) => return rejected(env, error),
        };
        let removed = self.inner.borrow_mut().remove(&server_id);
        self.stop(env, removed.into_iter().collect())
    }

    /// Forgets and stops every tracked process at once; resolves when nothing of any
    /// `SpawnedProcess`'s tree is left.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill_all<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let removed = self.inner.borrow_mut().remove_all();
        self.stop(env, removed)
    }
}

impl ProcessManager {
    /// The `TrackedProcess` of `server_id`, or `undefined`.
    fn info<'env>(
        &self,
        env: &'env Env,
        server_id: &str,
    ) -> Result<Either<TrackedProcess<'env>, ()>> {
        Ok(match self.inner.borrow().get(server_id) {
            Some(tracked) => Either::A(tracked_info(env, server_id, tracked)?),
            None => Either::B(()),
        })
    }

    /// Tracks `object` under `admission`: it is forgotten when its `exit` event fires (when it
    /// has an `on` method).
    fn insert(
        &self,
        env: &Env,
        admission: Admission,
        deployment_id: String,
        object: Object,
        port: Option<u16>,
        log_collector: Option<Unknown>,
    ) -> Result<()> {
        let handle = if SpawnedProcess::instance_of(env, &object)? {
            // SAFETY: `object` was just checked to be a SpawnedProcess instance.
            let instance = unsafe {
                ClassInstance::<SpawnedProcess>::from_napi_value(env.raw(), object.raw())
            }?;
            instance.handle.clone()
        } else {
            None
        };
        let on: Unknown = object.get_named_property("on")?;
        if on.get_type()? == ValueType::Function {
            let manager = Rc::clone(&self.inner);
            let id = admission.server_id().to_owned();
            let generation = admission.generation();
            let untrack = env.create_function_from_closure::<(), (), _>("untrack", move |ctx| {
                let forgotten = manager.borrow_mut().untrack(&id, generation);
                if let Some(tracked) = forgotten {
                    release(ctx.env, tracked);
                }
                Ok(())
            })?;
            // SAFETY: the type was just checked.
            let on = unsafe { on.cast::<ProcessOn>() }?;
            on.apply(object, FnArgs::from(("exit".to_owned(), untrack)))?;
        }
        // Referenced only after every check: a reference dropped without `unref` leaks its
        // object.
        let object = object.to_unknown().create_ref()?;
        let log_collector = match log_collector.map(|log| log.create_ref()).transpose() {
            Ok(log_collector) => log_collector,
            Err(error) => {
                if let Err(unref) = object.unref(env) {
                    tracing::debug!("releasing a process reference failed: {unref}");
                }
                return Err(error.into());
            }
        };
        let process = JsProcess {
            object,
            log_collector,
            handle,
        };
        let replaced = self
            .inner
            .borrow_mut()
            .track(admission, deployment_id, port, process);
        if let Some(previous) = replaced {
            release(env, previous);
        }
        Ok(())
    }

    /// Stops `removed` (already forgotten): whole trees for `SpawnedProcess`es, `kill('SIGTERM')`
    /// for other objects. The Promise resolves when every tree is gone.
    fn stop<'env>(
        &self,
        env: &'env Env,
        removed: Vec<Tracked<JsProcess>>,
    ) -> Result<Unknown<'env>> {
        let mut trees = Vec::new();
        for tracked in removed {
            match &tracked.process.handle {
                Some(handle) => trees.push(handle.clone()),
                None => {
                    let value = tracked.process.object.get_value(env)?;
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
            release(env, tracked);
        }
        let stopped = self.inner.borrow().stop_trees(trees);
        let promise = spawn(env, async move {
            stopped.await;
            Ok(())
        })?;
        Ok(promise.to_unknown())
    }
}

impl ObjectFinalize for ProcessManager {
    fn finalize(self, env: Env) -> napi::Result<()> {
        for tracked in self.inner.borrow_mut().remove_all() {
            release(&env, tracked);
        }
        Ok(())
    }
}
