//! Running a command to its end: start it, wait for its exit, a deadline or a cancel, kill its
//! whole tree, and let its output settle into its log. The one mechanism behind a build's
//! steps and `runCommand`.
//!
//! # Caveats
//! The output pipes can outlive the exit: a descendant that left the process group (or one
//! not yet killed) still holds them. The wait for them is capped by [`OUTPUT_SETTLE`], so a
//! run ends even when something outside the group keeps writing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::exit::ExitInfo;
use super::journal::Journal;
use super::spawn::{SpawnSpec, spawn};
use crate::error::Result;
use crate::logs::LogStore;

/// How long a finished run waits for its output pipes, held open by descendants, to drain
/// into the log.
pub const OUTPUT_SETTLE: Duration = Duration::from_secs(2);

/// The SIGTERM → SIGKILL grace of a command whose timeout ran out (`runCommand`).
pub const COMMAND_KILL_GRACE: Duration = Duration::from_secs(2);

/// When a run is stopped early, and what goes with it.
#[derive(Debug, Clone, Copy)]
pub struct Stopping {
    /// When the tree is killed if it is still running; `None`: no limit.
    pub deadline: Option<Instant>,
    /// The SIGTERM → SIGKILL grace when the tree is killed.
    pub grace: Duration,
    /// Whether what the command left running in its process group is killed once it exits on
    /// its own (a build step leaves nothing behind; `runCommand` leaves it alone).
    pub kill_leftovers: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The command exited on its own.
    Exited,
    /// The deadline came first; the tree was killed.
    TimedOut,
    /// The cancel came first; the tree was killed.
    Cancelled,
}

/// What a run came to.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    /// The command's exit status.
    pub exit: ExitInfo,
    /// Whether it exited or was stopped, and why.
    pub ending: Ending,
    /// How long killing the tree took (zero when nothing was killed).
    pub killed_in: Duration,
}

/// Starts `spec` through the one spawner (its output into `log`, its group recorded in
/// `journal` when given) and waits for its exit, the deadline or `cancel`, whichever comes
/// first; a stop kills the whole tree with the grace of `stopping`. Returns once its output
/// settled (at most [`OUTPUT_SETTLE`]). Fails only when the command cannot start.
pub async fn run_to_end(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    journal: Option<Arc<Journal>>,
    stopping: Stopping,
    cancel: impl Future<Output = ()>,
) -> Result<RunEnd> {
    let handle = spawn(spec, log, journal).await?;
    let deadline = async {
        match stopping.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    // A cancel wins over the deadline, and both over an exit at the same moment.
    let ending = tokio::select! {
        biased;
        () = cancel => Ending::Cancelled,
        () = deadline => Ending::TimedOut,
        _ = handle.wait() => Ending::Exited,
    };
    let killing = Instant::now();
    let (exit, killed_in) = if ending != Ending::Exited || stopping.kill_leftovers {
        let exit = handle.kill_tree(stopping.grace).await;
        (exit, killing.elapsed())
    } else {
        (handle.wait().await, Duration::ZERO)
    };
    handle.wait_output_closed(OUTPUT_SETTLE).await;
    Ok(RunEnd {
        exit,
        ending,
        killed_in,
    })
}

/// `runCommand`: runs `spec` to its end with its output into `log`; when `timeout` runs out
/// the whole tree is killed with [`COMMAND_KILL_GRACE`]. What it left running after exiting
/// on its own is left alone.
pub async fn run_command(
    spec: SpawnSpec,
    log: Arc<LogStore>,
    timeout: Option<Duration>,
) -> Result<RunEnd> {
    let stopping = Stopping {
        // A limit too far away to be an `Instant` is no limit.
        deadline: timeout.and_then(|limit| Instant::now().checked_add(limit)),
        grace: COMMAND_KILL_GRACE,
        kill_leftovers: false,
    };
    run_to_end(spec, log, None, stopping, std::future::pending()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogEntry, LogLimits};
    use std::collections::BTreeMap;

    fn sh(script: &str) -> SpawnSpec {
        SpawnSpec {
            program: "sh".to_owned(),
            args: vec!["-c".to_owned(), script.to_owned()],
            cwd: std::env::temp_dir(),
            env: crate::process::env::compose([&BTreeMap::new()]),
            confinement: Default::default(),
        }
    }

    fn log() -> Arc<LogStore> {
        Arc::new(LogStore::new(LogLimits::with_lines(100)))
    }

    fn lines(log: &LogStore) -> Vec<String> {
        log.all().iter().map(LogEntry::text).collect()
    }

    #[tokio::test]
    async fn an_exit_is_reported_with_its_output() {
        let output = log();
        let end = run_command(sh("echo hi; exit 3"), Arc::clone(&output), None)
            .await
            .unwrap();
        assert_eq!(end.ending, Ending::Exited);
        assert_eq!(end.exit.code, Some(3));
        assert_eq!(end.killed_in, Duration::ZERO);
        assert_eq!(lines(&output), ["hi"]);
    }

    #[tokio::test]
    async fn the_deadline_kills_the_tree() {
        let output = log();
        let end = run_command(
            sh("echo started; sleep 1000 & wait"),
            Arc::clone(&output),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        assert_eq!(end.ending, Ending::TimedOut);
        assert_eq!(end.exit.signal_name().as_deref(), Some("SIGTERM"));
        assert_eq!(lines(&output), ["started"]);
    }

    #[tokio::test]
    async fn a_cancel_kills_the_tree_and_wins_over_the_deadline() {
        let stopping = Stopping {
            deadline: Some(Instant::now()),
            grace: Duration::from_millis(500),
            kill_leftovers: true,
        };
        let end = run_to_end(sh("sleep 1000"), log(), None, stopping, async {})
            .await
            .unwrap();
        assert_eq!(end.ending, Ending::Cancelled);
        assert!(!end.exit.success());
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_an_error() {
        let spec = SpawnSpec {
            program: "no-such-command-xyz".to_owned(),
            ..sh("")
        };
        assert!(run_command(spec, log(), None).await.is_err());
    }
}
