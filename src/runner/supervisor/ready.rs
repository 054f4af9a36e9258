//! The IPC ready channel: with `healthCheck.readySignal` on, a server's process gets a Node IPC
//! channel, and each `{ type: 'server-ready' }` message it sends there makes its health gate
//! probe at once instead of waiting for the next poll.
//!
//! # Caveats
//! A server may write anything to its channel: messages are read at most
//! [`MAX_MESSAGE_BYTES`] long (longer ones are skipped), and a flooded channel is read no faster
//! than a readiness signal needs ([`FLOOD_PAUSE`]).

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::watch;

/// `server-ready` messages read off a server's IPC channel.
pub(super) struct ReadySignal {
    /// Bumped for every `{ type: 'server-ready' }` message.
    pub(super) announced: watch::Receiver<u64>,
    /// The task reading the channel, stopped with the process.
    reader: tokio::task::AbortHandle,
}

impl ReadySignal {
    /// Starts reading `channel`, a server process's end of its IPC channel.
    pub(super) fn listen(channel: UnixStream) -> Self {
        let (announce, announced) = watch::channel(0u64);
        let reader = tokio::spawn(read_channel(channel, announce)).abort_handle();
        ReadySignal { announced, reader }
    }

    /// Stops reading the channel (its process is gone or let go).
    pub(super) fn close(&self) {
        self.reader.abort();
    }
}

/// Longest IPC message read; longer ones are skipped.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Pause after each full read of the channel: a server that floods it is read no faster than a
/// readiness signal needs, and never costs the runner more than one small buffer.
const FLOOD_PAUSE: Duration = Duration::from_millis(50);

/// Reads JSON messages (one per line) off a server's IPC channel until it closes, announcing
/// each `{ type: 'server-ready' }`; anything else is ignored.
async fn read_channel(mut channel: UnixStream, announce: watch::Sender<u64>) {
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = match channel.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for chunk in buffer[..n].split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            if !skipping {
                line.extend_from_slice(chunk);
            }
            if line.len() > MAX_MESSAGE_BYTES {
                line.clear();
                skipping = true;
            }
            if complete {
                if !skipping && is_server_ready(&line) {
                    announce.send_modify(|count| *count += 1);
                }
                line.clear();
                skipping = false;
            }
        }
        if n == buffer.len() {
            tokio::time::sleep(FLOOD_PAUSE).await;
        }
    }
}

/// Whether `line` is the JSON of a message with `type: 'server-ready'`.
fn is_server_ready(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|message| {
            message
                .get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "server-ready")
        })
        .unwrap_or(false)
}

/// Resolves on the server's next `server-ready`; never once its channel has closed (polling
/// alone decides then).
pub(super) async fn next_announcement(announced: &mut watch::Receiver<u64>) {
    if announced.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
