//! How a process ended: the one vocabulary word every layer (spawning, supervision, errors)
//! shares, kept in a leaf module so that `error` can name it without importing the rest of
//! `process`.

use std::fmt;

use nix::sys::signal::Signal;

/// How a process ended: an exit code, or the signal that killed it (never both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when the process exited by itself.
    pub code: Option<i32>,
    /// The terminating signal's number, when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// From the status `wait` returned.
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// When the status could not be read.
    pub fn unknown() -> Self {
        ExitInfo {
            code: None,
            signal: None,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The signal's name (`SIGKILL`), if a signal ended the process.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(|number| match Signal::try_from(number) {
            Ok(signal) => signal.as_str().to_owned(),
            Err(_) => format!("signal {number}"),
        })
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal_name()) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => write!(f, "an unknown status"),
        }
    }
}
