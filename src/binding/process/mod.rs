//! Processes as JS sees them: `spawnCommand`, `runCommand`, `ProcessManager`,
//! `getProcessResourceUsage` and `cleanupResourceMonitor` (SPEC §2), all over the core's one
//! spawner and one tree killer.
//!
//! `spawnCommand` returns its process at once, shaped like Node's `ChildProcess` where the
//! TypeScript package relies on it (`pid`, `exitCode`, `killed`, `kill()`, and `on` / `once` /
//! `off` for `exit`, `close` and `error`). The fork runs on the core's spawner thread while the
//! JS thread waits for its pid (about a millisecond). Events reach JS through a weak
//! threadsafe function, so a spawned process never keeps Node alive by itself; `close` is
//! emitted after the last output line reached `onOutput`.
//!
//! Files: `command.rs` (arguments, `spawnCommand`, `runCommand`), `spawned.rs`
//! (`SpawnedProcess` and its events), `tracked.rs` and `manager.rs` (`ProcessManager`); this one
//! holds the resource sampling and the exit hook.

mod command;
mod manager;
mod spawned;
mod tracked;

use super::error::{Result, spawn, to_js_error};
use std::sync::LazyLock;

use napi::bindgen_prelude::{Env, FnArgs, Function, JsObjectValue, Object, PromiseRaw, Unknown};
use napi_derive::napi;

use super::convert::{Int, PromisedArg, arg_names};
use super::entities::ResourceUsage;
use crate::process::{self, ResourceMonitor};

arg_names! {
    PidArg = "pid";
}

/// The monitor behind `getProcessResourceUsage`.
static MONITOR: LazyLock<ResourceMonitor> = LazyLock::new(ResourceMonitor::new);

/// Memory (RSS) and CPU of process `pid` and all its descendants, from `/proc`. A tree of up to
/// 64 processes is read on this thread (their `stat` and `children` files) and the Promise is
/// settled at once; a larger one is read off it.
#[napi(ts_return_type = "Promise<ResourceUsage>")]
pub fn get_process_resource_usage<'env>(
    env: &'env Env,
    #[napi(ts_arg_type = "number")] pid: PromisedArg<Int<1, { i32::MAX as u64 }>, PidArg>,
) -> napi::Result<PromiseRaw<'env, ResourceUsage>> {
    let pid = pid.into_result().map(|pid| pid.0);
    if let Ok(pid) = pid
        && let Some(usage) = MONITOR.quick_sample(pid as i32)
    {
        return PromiseRaw::resolve(env, ResourceUsage::from(usage));
    }
    spawn(env, async move {
        let pid = pid? as i32;
        tokio::task::spawn_blocking(move || ResourceUsage::from(MONITOR.sample(pid)))
            .await
            .map_err(|e| to_js_error(crate::error::Error::internal("sampling a process tree", e)))
    })
}

/// Forgets every previous sample of `getProcessResourceUsage`.
#[napi]
pub fn cleanup_resource_monitor() {
    MONITOR.clear();
}

/// Node's `process.on(event, listener)`.
type ProcessOn<'env> = Function<'env, FnArgs<(String, Function<'env, (), ()>)>, Unknown<'env>>;

/// Registers `process.on('exit')` so that a normal exit of Node (`process.exit()`, the end of
/// the event loop) SIGKILLs every process group the runner still has: an exit handler must be
/// synchronous, so there is no grace period then.
pub(crate) fn install_exit_hook(env: &Env) -> Result<()> {
    let global = env.get_global()?;
    let node_process: Object = global.get_named_property("process")?;
    let on: ProcessOn = node_process.get_named_property("on")?;
    let hook = env.create_function_from_closure::<(), (), _>("killRunnerProcesses", |_| {
        let killed = process::registry::kill_all_now();
        if killed > 0 {
            tracing::debug!("killed {killed} process groups at exit");
        }
        Ok(())
    })?;
    on.apply(node_process, FnArgs::from(("exit".to_owned(), hook)))?;
    install_signal_hooks(env)
}

/// For SIGINT, SIGTERM and SIGHUP (Ctrl-C, `systemctl stop`, `docker stop`, a closed terminal)
/// Node's default action ends the process without its `exit` hook, which would leave the
/// servers' grandchildren running. As the `signal-exit` package does: a listener that, when it
/// is the only one for the signal (the host has none of its own), kills every process the runner
/// started, then removes itself and raises the signal again, so the host still ends by it. A host
/// with its own listener decides what the signal means, and its `process.exit()` runs the exit
/// hook.
fn install_signal_hooks(env: &Env) -> Result<()> {
    const INSTALL: &str = r#"(function installRunnerSignalHooks(killAll) {
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
        const onSignal = () => {
          if (process.listeners(signal).some((listener) => listener !== onSignal)) return
          process.removeListener(signal, onSignal)
          killAll()
          process.kill(process.pid, signal)
        }
        process.on(signal, onSignal)
      }
    })"#;
    let install: Function<Function<(), ()>, ()> = env.run_script(INSTALL)?;
    let kill_all = env.create_function_from_closure::<(), (), _>("killRunnerProcesses", |_| {
        let killed = process::registry::kill_all_now();
        if killed > 0 {
            tracing::debug!("killed {killed} process groups and processes on a signal");
        }
        Ok(())
    })?;
    install.call(kill_all)?;
    Ok(())
}
