//! The log file of a server that outlives its host (`keepServersOnExit`), and the tailer that
//! reads it into the server's [`LogStore`].
//!
//! Such a server cannot write to a pipe: a pipe's reader is the host, and when the host goes
//! the server would lose its output (or die of `SIGPIPE`). Its stdout and stderr are one file
//! opened with `O_APPEND`, so nothing it prints is lost while no host runs and the two streams
//! keep their order; a host tails the file into the usual ring (woken by inotify, with a slow
//! poll as the fallback), and the next host starts by reading what the file retained.
//!
//! # Caveats
//! - Both streams share the file, so its lines are reported as `stdout`.
//! - The file is bounded without renaming (the server holds it open, so a renamed file would
//!   keep growing): once it holds more than twice `logFileMaxMb` past what was read, the bytes
//!   older than the newest `logFileMaxMb` are punched out (`FALLOC_FL_PUNCH_HOLE`), so it
//!   takes at most about two `logFileMaxMb` of disk. On a filesystem without hole punching it
//!   is truncated instead, which can drop the lines written between the last read and the
//!   truncation.
//! - While no host runs nobody bounds the file; the next host does at its first read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::FallocateFlags;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::exit::ExitInfo;
use crate::logs::{LineFramer, LogStore, Stream};

/// Bytes read at once.
const READ_CHUNK: usize = 256 * 1024;

/// The most one blocking pass reads before it hands back to the tailer's loop, so that a
/// server printing without pause neither keeps a blocking thread forever nor delays the exit
/// check and a stop of the tailer.
const PASS_BYTES: u64 = 16 * 1024 * 1024;

/// How often the file is looked at when inotify cannot say that it grew.
const FALLBACK_POLL: Duration = Duration::from_millis(100);

/// Opens (creating, mode 0600) the file a server's stdout and stderr append to; a link or
/// anything else planted under its name is replaced, never written through.
pub fn open_for_server(path: &Path) -> io::Result<File> {
    super::state_files::open_private_log(path)
}

/// Where a tailer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFrom {
    /// At this offset: the file's length when a server was just started by this host (read
    /// before the spawn, so its very first lines are read too).
    Offset(u64),
    /// At the oldest byte the file retained (the first whole line of it): a server another
    /// host started, whose earlier output belongs in the ring.
    Retained,
}

/// What a tailer needs.
pub struct Tail {
    /// The file.
    pub path: PathBuf,
    /// Where to start.
    pub from: TailFrom,
    /// The store its lines go to.
    pub log: Arc<LogStore>,
    /// The server process's exit: once it has exited the file is read to its end and the
    /// tailer stops.
    pub exit: watch::Receiver<Option<ExitInfo>>,
    /// `logFileMaxMb` in bytes.
    pub max_bytes: u64,
    /// Set to `true` once the tailer has read the file to the end it had when the tailer
    /// started (or gave up on it): the log then holds what the file held.
    pub caught_up: Option<watch::Sender<bool>>,
}

/// Reads `tail.path` into `tail.log` until the process has exited and the file is read to its
/// end. Fails only when the file cannot be opened.
pub async fn run(tail: Tail) -> io::Result<()> {
    let file = super::state_files::open_private_file(
        &tail.path,
        OpenOptions::new().read(true).write(true),
    )?;
    let (start, kept_from) = match tail.from {
        TailFrom::Offset(offset) => (offset, offset),
        TailFrom::Retained => retained_range(&file, tail.max_bytes)?,
    };
    let skipping_partial = tail.from == TailFrom::Retained && !starts_a_line(&file, start);
    let mut reader = Reader {
        file,
        offset: start,
        kept_from,
        skipping_partial,
        framer: LineFramer::new(tail.log.limits().max_line_bytes),
        buffer: vec![0u8; READ_CHUNK],
        max_bytes: tail.max_bytes,
        log: Arc::clone(&tail.log),
    };
    let wakeups = Wakeups::watch(&tail.path);
    let mut exit = tail.exit;
    let mut exited = exit.borrow().is_some();
    loop {
        let pass = tokio::task::spawn_blocking(move || {
            let read = reader.read_available();
            (reader, read)
        })
        .await;
        let read;
        (reader, read) = match pass {
            Ok(pass) => pass,
            Err(error) => {
                tracing::warn!("the tailer of {} failed: {error}", tail.path.display());
                return Ok(());
            }
        };
        let at_end = match read {
            Ok(at_end) => at_end,
            Err(error) => {
                tracing::debug!("reading {} failed: {error}", tail.path.display());
                break;
            }
        };
        if !at_end {
            continue;
        }
        if let Some(caught_up) = &tail.caught_up {
            caught_up.send_replace(true);
        }
        if exited {
            // Read once more after the exit was seen: everything it wrote is in the file now.
            break;
        }
        tokio::select! {
            () = wakeups.next() => {}
            changed = exit.changed() => {
                exited = changed.is_err() || exit.borrow().is_some();
            }
        }
    }
    reader.log.finish_chunks(Stream::Stdout, &mut reader.framer);
    Ok(())
}

/// Where a later host starts reading a file it did not write: the oldest data the file holds,
/// at most `2 × max_bytes` before its end (holes punched earlier read as zeros, so they are
/// skipped); and the oldest data, from which the first bound frees what lies before the
/// newest `max_bytes` (the file may have grown without bound while no host ran).
fn retained_range(file: &File, max_bytes: u64) -> io::Result<(u64, u64)> {
    let len = file.metadata()?.len();
    let data = match nix::unistd::lseek(file.as_fd(), 0, nix::unistd::Whence::SeekData) {
        Ok(offset) => offset.max(0) as u64,
        // ENXIO: no data at all (empty, or all holes).
        Err(nix::errno::Errno::ENXIO) => len,
        Err(_) => 0,
    };
    Ok((data.max(len.saturating_sub(2 * max_bytes)), data))
}

/// Whether `offset` is the start of a line: the file's start, or just after a newline.
fn starts_a_line(file: &File, offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    if offset == 0 {
        return true;
    }
    let mut before = [0u8; 1];
    file.read_exact_at(&mut before, offset - 1).is_ok() && before[0] == b'\n'
}

/// The reading side of one tailer.
struct Reader {
    file: File,
    offset: u64,
    /// Bytes before this offset may have been punched out.
    kept_from: u64,
    /// Started in the middle of the file: the bytes before the first newline are a partial
    /// line and are dropped.
    skipping_partial: bool,
    framer: LineFramer,
    buffer: Vec<u8>,
    max_bytes: u64,
    log: Arc<LogStore>,
}

impl Reader {
    /// Reads and frames what the file holds past the offset (at most [`PASS_BYTES`]) and bounds
    /// the file. Returns whether it read to the end.
    fn read_available(&mut self) -> io::Result<bool> {
        let reader = self;
        let pass_end = reader.offset + PASS_BYTES;
        if reader.file.metadata()?.len() < reader.offset {
            // Truncated by someone else: start again from its beginning.
            reader.offset = 0;
            reader.kept_from = 0;
        }
        reader.file.seek(SeekFrom::Start(reader.offset))?;
        let at_end = loop {
            if reader.offset >= pass_end {
                break false;
            }
            let n = match reader.file.read(&mut reader.buffer) {
                Ok(0) => break true,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            reader.offset += n as u64;
            let mut bytes = &reader.buffer[..n];
            if reader.skipping_partial {
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(newline) => {
                        bytes = &bytes[newline + 1..];
                        reader.skipping_partial = false;
                    }
                    None => continue,
                }
            }
            reader
                .log
                .append_chunk(Stream::Stdout, &mut reader.framer, bytes);
        };
        reader.bound();
        Ok(at_end)
    }

    /// Frees the bytes older than the newest `max_bytes` once more than twice that was read.
    fn bound(&mut self) {
        if self.offset.saturating_sub(self.kept_from) <= 2 * self.max_bytes {
            return;
        }
        let block = 4096;
        let until = (self.offset - self.max_bytes) / block * block;
        if until <= self.kept_from {
            return;
        }
        let punched = nix::fcntl::fallocate(
            self.file.as_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            self.kept_from as i64,
            (until - self.kept_from) as i64,
        );
        match punched {
            Ok(()) => self.kept_from = until,
            Err(errno) => {
                tracing::debug!(
                    fd = self.file.as_raw_fd(),
                    "cannot punch the log file ({}): truncating it",
                    errno.desc()
                );
                if self.file.set_len(0).is_ok() {
                    self.offset = 0;
                    self.kept_from = 0;
                }
            }
        }
    }
}

/// Tells a tailer that its file may have grown.
enum Wakeups {
    /// Woken by inotify's `IN_MODIFY` on the file.
    Inotify(AsyncFd<OwnedFd>),
    /// No inotify: a poll.
    Poll,
}

impl Wakeups {
    fn watch(path: &Path) -> Self {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let watched =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|inotify| {
                inotify.add_watch(path, AddWatchFlags::IN_MODIFY)?;
                Ok(OwnedFd::from(inotify))
            });
        match watched
            .map_err(io::Error::from)
            .and_then(|fd| super::async_fd(fd, tokio::io::Interest::READABLE))
        {
            Ok(fd) => Wakeups::Inotify(fd),
            Err(error) => {
                tracing::debug!("no inotify for {} ({error}): polling it", path.display());
                Wakeups::Poll
            }
        }
    }

    /// Resolves when the file may have grown (at most [`FALLBACK_POLL`] later in any case).
    async fn next(&self) {
        let Wakeups::Inotify(fd) = self else {
            return tokio::time::sleep(FALLBACK_POLL).await;
        };
        let wait = async {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await;
            };
            let mut events = [0u8; 4096];
            // Drains the queued events; their content does not matter.
            while nix::unistd::read(fd.get_ref(), &mut events).is_ok_and(|n| n > 0) {}
            ready.clear_ready();
        };
        let _ = tokio::time::timeout(FALLBACK_POLL * 10, wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogLimits;
    use std::io::Write;

    fn lines(log: &LogStore) -> Vec<String> {
        log.all().iter().map(|e| e.line().to_string()).collect()
    }

    /// What a later host reads of the file of a process that has exited.
    async fn read_retained(path: PathBuf, max_bytes: u64) -> Vec<String> {
        let log = Arc::new(LogStore::new(LogLimits::with_lines(10_000)));
        let (_exit_sender, exit) = watch::channel(Some(ExitInfo::unknown()));
        run(Tail {
            path,
            from: TailFrom::Retained,
            log: Arc::clone(&log),
            exit,
            max_bytes,
            caught_up: None,
        })
        .await
        .unwrap();
        lines(&log)
    }

    #[tokio::test]
    async fn tails_appended_lines_and_stops_after_the_exit() {
        let dir = tempfile_dir("tail");
        let path = dir.join("server.log");
        let mut writer = open_for_server(&path).unwrap();
        writer.write_all(b"before the tailer\n").unwrap();
        let log = Arc::new(LogStore::new(LogLimits::with_lines(100)));
        let (exit_sender, exit) = watch::channel(None);
        let tailer = tokio::spawn(run(Tail {
            path: path.clone(),
            from: TailFrom::Offset(std::fs::metadata(&path).unwrap().len()),
            log: Arc::clone(&log),
            exit,
            max_bytes: 1024 * 1024,
            caught_up: None,
        }));
        writer.write_all(b"one\ntwo\nunfinished").unwrap();
        exit_sender.send_replace(Some(ExitInfo::unknown()));
        tailer.await.unwrap().unwrap();
        assert_eq!(lines(&log), ["one", "two", "unfinished"]);
    }

    #[tokio::test]
    async fn a_later_host_reads_what_the_file_retained_from_a_whole_line() {
        let dir = tempfile_dir("retained");
        let path = dir.join("server.log");
        let mut writer = open_for_server(&path).unwrap();
        for n in 0..2000 {
            writeln!(writer, "line {n:04}").unwrap();
        }
        // 10 bytes a line: a 4 KiB bound keeps the last 8 KiB, starting mid-line.
        let read = read_retained(path, 4096).await;
        assert_eq!(read.last().map(String::as_str), Some("line 1999"));
        assert!(read.len() < 2000 && read.len() > 700, "{}", read.len());
        assert!(read.iter().all(|l| l.len() == 9 && l.starts_with("line ")));
    }

    #[tokio::test]
    async fn a_retained_tail_that_starts_on_a_line_keeps_that_line() {
        let dir = tempfile_dir("aligned");
        let path = dir.join("server.log");
        let mut writer = open_for_server(&path).unwrap();
        // 8 bytes a line, 4 KiB bound: the tail starts 8 KiB before the end, at a line start.
        for n in 0..2048 {
            writeln!(writer, "ln {n:04x}").unwrap();
        }
        assert_eq!(read_retained(path, 4096).await.len(), 1024);
    }

    #[test]
    fn a_long_read_log_file_is_bounded_by_punching_its_oldest_bytes() {
        let dir = tempfile_dir("bound");
        let path = dir.join("server.log");
        let mut writer = open_for_server(&path).unwrap();
        let block = vec![b'x'; 4095];
        for _ in 0..64 {
            writer.write_all(&block).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        let log = Arc::new(LogStore::new(LogLimits::with_lines(10)));
        let mut reader = Reader {
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
            offset: 0,
            kept_from: 0,
            skipping_partial: false,
            framer: LineFramer::new(1 << 20),
            buffer: vec![0u8; READ_CHUNK],
            max_bytes: 16 * 4096,
            log,
        };
        reader.read_available().unwrap();
        // 256 KiB read, bound 64 KiB: everything but the newest 64 KiB is freed, the size kept.
        assert_eq!(reader.kept_from, 48 * 4096);
        let file = File::open(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 64 * 4096);
        assert_eq!(
            retained_range(&file, 16 * 4096).unwrap(),
            (48 * 4096, 48 * 4096)
        );
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "runner-logfile-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
