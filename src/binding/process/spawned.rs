//! `SpawnedProcess`: a started command shaped like Node's `ChildProcess` (events, kill).
use super::command::{Command, OUTPUT_SETTLE, output_store, read_signal};
use crate::binding::error::JsFailure;
use crate::binding::error::{Result, rejection, spawn, to_js_error};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::{Either, Env, FnArgs, FunctionRef, Object, PromiseRaw, This, Unknown};
use napi::threadsafe_function::UnknownReturnValue;
use napi_derive::napi;
use nix::sys::signal::Signal;

use crate::binding::convert::read;
use crate::binding::convert::{AnyFunction, Arg, ArgName, FromArg, Required, arg_names};
use crate::binding::delivery::{BatchSink, batch_sink, report_callback_error};
use crate::logs::join_text;
use crate::process::{self, ProcessHandle};

/// What a spawned process tells its listeners.
pub(super) enum ProcessEvent {
    /// It exited (`code`) or a signal ended it (`signal`).
    Exit {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// It exited and its output is closed and delivered.
    Close {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// It could not be started.
    Error(crate::error::Error),
}

/// The events `on` / `once` / `off` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// `'exit'`: the process exited.
    Exit,
    /// `'close'`: it exited and its output was delivered.
    Close,
    /// `'error'`: it could not be started.
    Error,
}

impl FromArg for EventName {
    /// `'exit'`, `'close'` or `'error'`.
    fn from_arg(value: &Unknown<'_>, name: &str) -> Result<Self> {
        let Required(event) = Required::<String>::from_arg(value, name)?;
        match event.as_str() {
            "exit" => Ok(EventName::Exit),
            "close" => Ok(EventName::Close),
            "error" => Ok(EventName::Error),
            other => Err(JsFailure::invalid(
                name,
                format!("must be 'exit', 'close' or 'error' (got '{other}')"),
            )),
        }
    }
}

/// A signal name (`'SIGTERM'`, or `'TERM'`).
pub struct SignalName(Signal);

impl FromArg for SignalName {
    fn from_arg(value: &Unknown<'_>, _: &str) -> Result<Self> {
        match read_signal(Some(*value))? {
            Some(signal) => Ok(SignalName(signal)),
            None => Err(JsFailure::invalid("signal", "is required")),
        }
    }
}

arg_names! {
    EventArg = "event";
    ListenerArg = "listener";
    SignalArg = "signal";
}

/// The event argument of `on`, `once` and `off`.
type Event = Arg<EventName, EventArg>;

/// The listener argument of `on`, `once` and `off`.
type AnyListener = Arg<AnyFunction, ListenerArg>;

/// A listener of `exit` / `close`, called with `(code, signal)`.
pub(super) type ExitListener =
    FunctionRef<FnArgs<(Option<i32>, Option<String>)>, UnknownReturnValue>;

/// A listener of `error`, called with an `Error`.
pub(super) type ErrorListener = FunctionRef<napi::Error, UnknownReturnValue>;

/// One registered listener; `active` turns false when it is removed or has fired once.
pub(super) struct Listener {
    pub(super) event: EventName,
    pub(super) callback: Either<ExitListener, ErrorListener>,
    pub(super) once: bool,
    pub(super) active: Cell<bool>,
}

impl Listener {
    fn is(&self, env: &Env, function: &Unknown<'_>) -> bool {
        let same = match &self.callback {
            Either::A(callback) => callback
                .borrow_back(env)
                .and_then(|f| env.strict_equals(f, *function)),
            Either::B(callback) => callback
                .borrow_back(env)
                .and_then(|f| env.strict_equals(f, *function)),
        };
        same.unwrap_or(false)
    }
}

pub(super) type Listeners = Rc<RefCell<Vec<Rc<Listener>>>>;

/// Calls the listeners of `event` in registration order (a listener added meanwhile waits for
/// the next event). An `error` nobody listens to is reported instead of thrown.
pub(super) fn emit(env: &Env, listeners: &Listeners, event: ProcessEvent) {
    let name = match &event {
        ProcessEvent::Exit { .. } => EventName::Exit,
        ProcessEvent::Close { .. } => EventName::Close,
        ProcessEvent::Error(_) => EventName::Error,
    };
    let chosen: Vec<Rc<Listener>> = listeners
        .borrow()
        .iter()
        .filter(|l| l.event == name && l.active.get())
        .cloned()
        .collect();
    if let ProcessEvent::Error(error) = &event
        && chosen.is_empty()
    {
        tracing::warn!("a spawned process failed and nobody listens to 'error': {error}");
    }
    for listener in chosen {
        if !listener.active.get() {
            continue;
        }
        if listener.once {
            listener.active.set(false);
            listeners.borrow_mut().retain(|l| !Rc::ptr_eq(l, &listener));
        }
        let called = match (&listener.callback, &event) {
            (
                Either::A(callback),
                ProcessEvent::Exit { code, signal } | ProcessEvent::Close { code, signal },
            ) => callback
                .borrow_back(env)
                .and_then(|f| f.call(FnArgs::from((*code, signal.clone()))))
                .map(drop),
            (Either::B(callback), ProcessEvent::Error(error)) => callback
                .borrow_back(env)
                .and_then(|f| f.call(rejection(env, to_js_error(error.clone()))))
                .map(drop),
            _ => Ok(()),
        };
        if let Err(error) = called {
            report_callback_error("a process event listener", &error);
        }
    }
}

/// A started command, shaped like Node's `ChildProcess` where the TypeScript package uses it:
/// its pid, its exit, its output, events, and a kill that reaches its whole tree.
#[napi]
pub struct SpawnedProcess {
    pub(super) handle: Option<ProcessHandle>,
    pub(super) listeners: Listeners,
    pub(super) killed: Cell<bool>,
}

#[napi]
impl SpawnedProcess {
    /// The process id (also the id of its process group); `undefined` when it could not be
    /// started (its `error` event says why).
    #[napi(getter, ts_return_type = "number | undefined")]
    pub fn pid(&self) -> Either<u32, ()> {
        match &self.handle {
            Some(handle) => Either::A(handle.pid()),
            None => Either::B(()),
        }
    }

    /// Whether the process is still running.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.handle.as_ref().is_some_and(ProcessHandle::is_running)
    }

    /// Whether `kill()` was called.
    #[napi(getter)]
    pub fn killed(&self) -> bool {
        self.killed.get()
    }

    /// The exit code once it exited by itself; `null` while running or when a signal ended it.
    #[napi(getter)]
    pub fn exit_code(&self) -> Option<i32> {
        self.handle
            .as_ref()
            .and_then(ProcessHandle::exit_info)
            .and_then(|e| e.code)
    }

    /// The terminating signal's name once a signal ended it; `null` otherwise.
    #[napi(getter)]
    pub fn signal(&self) -> Option<String> {
        self.handle
            .as_ref()
            .and_then(ProcessHandle::exit_info)
            .and_then(|e| e.signal_name())
    }

    /// The same as `signal`, under the name Node's `ChildProcess` uses.
    #[napi(getter)]
    pub fn signal_code(&self) -> Option<String> {
        self.signal()
    }

    /// Adds `listener` for `'exit'` / `'close'` (called with `(code, signal)`, one of them
    /// `null`) or `'error'` (called with an `Error` when the process could not be started).
    /// `close` comes after `exit`, once every output line reached `onOutput`.
    #[napi(ts_return_type = "this")]
    pub fn on<'env>(
        &self,
        env: &Env,
        this: This<'env>,
        #[napi(ts_arg_type = "'exit' | 'close'")] event: Event,
        #[napi(ts_arg_type = "(code: number | null, signal: string | null) => void")]
        listener: AnyListener,
    ) -> Result<Object<'env>> {
        self.listen(env, event, listener, false)?;
        Ok(this.object)
    }

    /// Like `on`, for the next event only.
    #[napi(ts_return_type = "this")]
    pub fn once<'env>(
        &self,
        env: &Env,
        this: This<'env>,
        #[napi(ts_arg_type = "'exit' | 'close'")] event: Event,
        #[napi(ts_arg_type = "(code: number | null, signal: string | null) => void")]
        listener: AnyListener,
    ) -> Result<Object<'env>> {
        self.listen(env, event, listener, true)?;
        Ok(this.object)
    }

    /// Removes the most recently added registration of `listener` for `event`.
    #[napi(ts_return_type = "this")]
    pub fn off<'env>(
        &self,
        env: &Env,
        this: This<'env>,
        #[napi(ts_arg_type = "'exit' | 'close' | 'error'")] event: Event,
        #[napi(ts_arg_type = "(...args: any[]) => void")] listener: AnyListener,
    ) -> Result<Object<'env>> {
        let event = *event;
        let listener = listener.get(env)?;
        let mut listeners = self.listeners.borrow_mut();
        if let Some(index) = listeners
            .iter()
            .rposition(|l| l.event == event && l.is(env, &listener))
        {
            listeners.remove(index).active.set(false);
        }
        Ok(this.object)
    }

    /// Resolves when the process has exited and been reaped: `{ exitCode, signal }` (the
    /// exit code, or the name of the signal that ended it; the other is `null`).
    #[napi(ts_return_type = "Promise<ProcessExit>")]
    pub fn wait<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ProcessExit>> {
        let handle = self.handle.clone();
        spawn(env, async move {
            let Some(handle) = handle else {
                return Ok(ProcessExit {
                    exit_code: None,
                    signal: None,
                });
            };
            let info = handle.wait().await;
            Ok(ProcessExit {
                exit_code: info.code,
                signal: info.signal_name(),
            })
        })
    }

    /// Without `signal`: stops the whole tree (SIGTERM, 10 s grace, SIGKILL) and resolves when
    /// nothing of it is left. With `signal` (`'SIGTERM'`, `'SIGINT'`, `'SIGKILL'`, …): sends
    /// just that signal to the process group. Either way a running process gets its signal
    /// before `kill` returns. Throws for an unknown signal name; the Promise itself never
    /// rejects.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn kill<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "string")] signal: Option<Arg<SignalName, SignalArg>>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let signal = signal.map(|name| name.into_inner().0);
        let Some(handle) = self.handle.clone() else {
            return spawn(env, async { Ok(()) });
        };
        self.killed.set(true);
        // The signal goes out now, on this thread (a non-blocking system call); only the wait
        // for the reap runs on the runtime.
        let reaped = match signal {
            Some(signal) => {
                if let Err(error) = handle.signal_group(signal) {
                    tracing::debug!("{error}");
                }
                None
            }
            None => Some(handle.kill_tree(process::DEFAULT_KILL_GRACE)),
        };
        spawn(env, async move {
            if let Some(reaped) = reaped {
                reaped.await;
            }
            Ok(())
        })
    }

    /// Everything the process wrote so far (the last 10000 lines; stderr lines prefixed).
    #[napi]
    pub fn get_output(&self) -> String {
        self.handle
            .as_ref()
            .map(|h| join_text(&h.log().all()))
            .unwrap_or_default()
    }
}

impl SpawnedProcess {
    fn listen(&self, env: &Env, event: Event, listener: AnyListener, once: bool) -> Result<()> {
        let event = *event;
        let listener = listener.get(env)?;
        let callback = match event {
            EventName::Exit | EventName::Close => {
                Either::A(read::callback(&listener, ListenerArg::NAME)?)
            }
            EventName::Error => Either::B(read::callback(&listener, ListenerArg::NAME)?),
        };
        self.listeners.borrow_mut().push(Rc::new(Listener {
            event,
            callback,
            once,
            active: Cell::new(true),
        }));
        Ok(())
    }

    /// Starts `command` now and returns it. A start failure becomes its `error` event when
    /// `failure_as_event`, else the returned error.
    pub(super) fn start(env: &Env, command: Command, failure_as_event: bool) -> Result<Self> {
        let listeners: Listeners = Rc::default();
        let emitting = Rc::clone(&listeners);
        let events: Arc<BatchSink<ProcessEvent>> =
            batch_sink(env, move |env, event| emit(env, &emitting, event))?;
        let (log, delivery) = output_store(env, command.on_output)?;
        let started =
            napi::bindgen_prelude::block_on(process::spawn(command.spec, Arc::clone(&log), None));
        let handle = match started {
            Ok(handle) => handle,
            Err(error) if !failure_as_event => return Err(to_js_error(error)),
            Err(error) => {
                napi::bindgen_prelude::spawn(async move {
                    events.send(ProcessEvent::Error(error)).await;
                });
                return Ok(SpawnedProcess {
                    handle: None,
                    listeners,
                    killed: Cell::new(false),
                });
            }
        };
        let watched = handle.clone();
        napi::bindgen_prelude::spawn(async move {
            let exit = watched.wait().await;
            let (code, signal) = (exit.code, exit.signal_name());
            let exit_event = ProcessEvent::Exit {
                code,
                signal: signal.clone(),
            };
            if !events.send(exit_event).await {
                return;
            }
            watched.wait_output_closed(OUTPUT_SETTLE).await;
            log.close_subscriptions();
            if let Some(delivery) = delivery {
                let _ = delivery.await;
            }
            events.send(ProcessEvent::Close { code, signal }).await;
        });
        Ok(SpawnedProcess {
            handle: Some(handle),
            listeners,
            killed: Cell::new(false),
        })
    }
}

/// What `SpawnedProcess.wait` resolves: one of the two is `null`.
#[napi(object, use_nullable = true)]
pub struct ProcessExit {
    /// The exit code, or `null` when a signal ended the process.
    pub exit_code: Option<i32>,
    /// The signal that ended the process (`'SIGTERM'`, …), or `null` when it exited.
    pub signal: Option<String>,
}
