//! Reading a child's stdout and stderr into its log store.
//!
//! One task reads both pipes, stdout first, whenever either has data, so that lines of the two
//! streams are stored in about the order they were written. A child that writes faster than
//! one read per write can follow (a read returns [`BUSY_READ`] or more) gets a pipe of
//! [`BUSY_PIPE_BYTES`], and the pipes are then drained at most once per [`BUSY_PAUSE`]: each
//! pass takes what the child wrote meanwhile, instead of the child and the reader waking each
//! other for every write. A quiet child's lines are read as soon as they are written.
//!
//! # Caveats
//! - The kernel wakes a pipe's epoll watchers on every write, even to a pipe that already holds
//!   data, so during a pause the pipes are taken out of the reactor (and put back after it).
//! - Two pipes carry no order between them: the order of a stdout and a stderr line written
//!   within one pass (a pause, under a flood) is lost; stdout's lines of the pass come first.
//! - Tokio hands out a child's pipe in blocking mode; it is switched back to non-blocking.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::watch;

use crate::logs::{LineFramer, LogStore, Stream};

/// Bytes read from a pipe at once: what a grown pipe ([`BUSY_PIPE_BYTES`]) takes from a fast
/// writer in a [`BUSY_PAUSE`] or two.
const READ_CHUNK: usize = 256 * 1024;

/// A read of at least this much (half a default pipe) means the child writes faster than the
/// pipe is read one write at a time.
const BUSY_READ: usize = 32 * 1024;

/// The pipe size a busy child gets: the most an unprivileged process may set
/// (`/proc/sys/fs/pipe-max-size`), enough for what a fast writer writes in a few pauses.
const BUSY_PIPE_BYTES: i32 = 1024 * 1024;

/// How long busy pipes are left to fill between passes.
const BUSY_PAUSE: Duration = Duration::from_millis(2);

/// Starts the task that reads `pipes` (stdout first) to their ends, framing lines into `log`;
/// each pipe counts in `closed` once it ends or fails.
pub(super) fn spawn_reader(
    pipes: Vec<(File, Stream)>,
    log: Arc<LogStore>,
    closed: watch::Sender<u8>,
) {
    tokio::spawn(async move { read_all(pipes, &log, &closed).await });
}

/// The framing state of one pipe.
struct Output {
    stream: Stream,
    framer: LineFramer,
    /// Whether the pipe was grown to [`BUSY_PIPE_BYTES`] already.
    grown: bool,
}

/// What a pass over one pipe found.
enum Drained {
    /// The pipe has no more data now.
    Idle,
    /// The writer is busy: the pipe is worth leaving to fill for a while.
    Busy,
    /// End of the stream.
    End,
}

/// A pipe in the reactor, with its framing state.
type Watched = (Output, AsyncFd<File>);

async fn read_all(pipes: Vec<(File, Stream)>, log: &LogStore, closed: &watch::Sender<u8>) {
    let mut open = Vec::with_capacity(pipes.len());
    for (file, stream) in pipes {
        let output = Output {
            stream,
            framer: LineFramer::new(log.limits().max_line_bytes),
            grown: false,
        };
        match set_nonblocking(&file).and_then(|()| register(file)) {
            Ok(fd) => open.push((output, fd)),
            Err(error) => end(output, Some(error), log, closed),
        }
    }
    let mut buffer = vec![0u8; READ_CHUNK];
    while !open.is_empty() {
        any_readable(&open).await;
        let mut busy = false;
        let mut still_open = Vec::with_capacity(open.len());
        for (mut output, fd) in open {
            match output.drain(&fd, &mut buffer, log).await {
                Ok(Drained::Idle) => still_open.push((output, fd)),
                Ok(Drained::Busy) => {
                    busy = true;
                    still_open.push((output, fd));
                }
                Ok(Drained::End) => end(output, None, log, closed),
                Err(error) => end(output, Some(error), log, closed),
            }
        }
        open = still_open;
        if busy {
            open = pause(open, log, closed).await;
        }
    }
}

impl Output {
    /// Reads `fd` while the reactor says it is readable, appending each read to `log`.
    async fn drain(
        &mut self,
        fd: &AsyncFd<File>,
        buffer: &mut [u8],
        log: &LogStore,
    ) -> io::Result<Drained> {
        let mut drained = Drained::Idle;
        while let Some(ready) = ready_now(fd).await {
            let mut ready = ready?;
            let n = match ready.try_io(|fd| fd.get_ref().read(buffer)) {
                Ok(Ok(0)) => return Ok(Drained::End),
                Ok(Ok(n)) => n,
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(error)) => return Err(error),
                // Nothing to read after all; the reactor's readiness was cleared.
                Err(_would_block) => break,
            };
            log.append_chunk(self.stream, &mut self.framer, &buffer[..n]);
            if n >= BUSY_READ {
                drained = Drained::Busy;
                self.grow(fd.get_ref());
            }
            if n < buffer.len() {
                // The read took all the pipe held; the next write signals readiness again.
                ready.clear_ready();
                break;
            }
        }
        Ok(drained)
    }

    /// Gives a busy pipe room for a few pauses' worth of output, once.
    fn grow(&mut self, pipe: &File) {
        if !self.grown {
            self.grown = true;
            // Best effort: at the user's pipe quota the pipe keeps its size.
            let _ = nix::fcntl::fcntl(pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(BUSY_PIPE_BYTES));
        }
    }
}

/// Takes the pipes out of the reactor for [`BUSY_PAUSE`], then puts them back.
async fn pause(open: Vec<Watched>, log: &LogStore, closed: &watch::Sender<u8>) -> Vec<Watched> {
    let parked: Vec<(Output, File)> = open
        .into_iter()
        .map(|(output, fd)| (output, fd.into_inner()))
        .collect();
    tokio::time::sleep(BUSY_PAUSE).await;
    let mut watched = Vec::with_capacity(parked.len());
    for (output, file) in parked {
        match register(file) {
            Ok(fd) => watched.push((output, fd)),
            Err(error) => end(output, Some(error), log, closed),
        }
    }
    watched
}

/// A pipe's end (or its failure): its unfinished last line is stored, and it counts as closed.
fn end(mut output: Output, error: Option<io::Error>, log: &LogStore, closed: &watch::Sender<u8>) {
    if let Some(error) = error {
        tracing::debug!("reading {} failed: {error}", output.stream.as_str());
    }
    log.finish_chunks(output.stream, &mut output.framer);
    closed.send_modify(|count| *count += 1);
}

/// Waits until the reactor reports one of the pipes readable (or failed).
async fn any_readable(open: &[Watched]) {
    std::future::poll_fn(|cx| {
        // Every pipe is polled, so that each wakes this task at its next event.
        let mut ready = false;
        for (_, fd) in open {
            ready |= fd.poll_read_ready(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// `fd`'s readiness as the reactor last saw it, without waiting: `None` when not readable.
async fn ready_now(fd: &AsyncFd<File>) -> Option<io::Result<AsyncFdReadyGuard<'_, File>>> {
    std::future::poll_fn(|cx| match fd.poll_read_ready(cx) {
        Poll::Ready(ready) => Poll::Ready(Some(ready)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Puts `file` in the reactor, watched for reads.
fn register(file: File) -> io::Result<AsyncFd<File>> {
    super::async_fd(file, Interest::READABLE)
}

/// Makes reads of `file` fail with `WouldBlock` instead of waiting.
fn set_nonblocking(file: &File) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
