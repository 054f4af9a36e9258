//! The core's one error type.
//!
//! Every variant carries the context a user needs to act on it (which argument, which path, what
//! the operating system said). The binding layer turns it into a JS `Error` whose message is this
//! type's `Display`, in exactly one place.

use std::fmt;

/// Something the core could not do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A caller passed a value that breaks the contract. `name` is the argument or config field
    /// as the caller spelled it (for example `healthCheck.endpoint`).
    InvalidArgument { name: String, reason: String },
    /// A process could not be started.
    SpawnFailed { program: String, reason: String },
    /// A signal could not be sent to a process group.
    SignalFailed {
        pid: u32,
        signal: String,
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument { name, reason } => write!(f, "Invalid {name}: {reason}"),
            Error::SpawnFailed { program, reason } => {
                write!(f, "Cannot start '{program}': {reason}")
            }
            Error::SignalFailed {
                pid,
                signal,
                reason,
            } => write!(f, "Cannot send {signal} to process group {pid}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
