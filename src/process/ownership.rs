//! Which processes belong to a server, beyond its process group, and who holds a listening
//! port.
//!
//! Every process of a server carries the server's token in its environment
//! ([`SERVER_TOKEN_VAR`]); it survives fork, `setsid()`, `setpgid()` and exec unless a process
//! scrubs its environment, so the token finds the processes that left the server's group
//! (daemons, Node's `detached: true` children). A listening socket is tied to its process
//! through the socket's inode: the kernel's `sock_diag` answer (or `/proc/net/tcp` and `tcp6`)
//! gives each listener's inode, and `/proc/<pid>/fd/*` link to `socket:[inode]`.
//!
//! # Caveats
//! Only processes of this user can be read; a process that clears its environment *and*
//! leaves the group cannot be found. Listeners in another network namespace are not listed.

use std::collections::BTreeSet;
use std::fs;

use super::{procfs, sock_diag};

/// The environment variable that carries a server's token.
pub const SERVER_TOKEN_VAR: &str = "MASTRA_RUNNER_SERVER_TOKEN";

/// A token unique to one server on this host.
pub fn new_server_token(server_id: &str) -> String {
    format!("{server_id}-{:032x}", crate::ids::random_u128())
}

/// Live processes whose environment carries `token` as [`SERVER_TOKEN_VAR`].
pub fn processes_with_token(token: &str) -> Vec<i32> {
    processes_with_tokens(&[(token, 0)])
}

/// The live processes carrying one of `tokens` that started no earlier than that token's start
/// time; never this process or PID 1. Each process's environment is read once.
fn processes_with_tokens(tokens: &[(&str, u64)]) -> Vec<i32> {
    let wanted: std::collections::HashMap<Vec<u8>, u64> = tokens
        .iter()
        .map(|(token, since)| (format!("{SERVER_TOKEN_VAR}={token}").into_bytes(), *since))
        .collect();
    let me = std::process::id() as i32;
    procfs::all_processes()
        .into_iter()
        .filter(|p| p.is_alive() && p.pid > 1 && p.pid != me)
        .filter(|p| {
            procfs::environ_has(p.pid, |entry| {
                wanted
                    .get(entry)
                    .is_some_and(|since| p.start_ticks >= *since)
            })
        })
        .map(|p| p.pid)
        .collect()
}

/// SIGKILLs at once every live process carrying one of `tokens` that started no earlier than
/// that token's start time (ticks after boot); returns those signalled. Reads every process's
/// environment once: call it off Node's main thread.
pub fn kill_token_processes_now(tokens: &[(&str, u64)]) -> Vec<i32> {
    use nix::sys::signal::{Signal, kill};
    processes_with_tokens(tokens)
        .into_iter()
        .filter(|pid| kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL).is_ok())
        .collect()
}

/// Stops the processes carrying `token` (those that left the server's group): SIGTERM, up to
/// `grace` for them to exit, then SIGKILL. Returns how many there were.
pub async fn kill_token_processes(token: &str, grace: std::time::Duration) -> usize {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let found = processes_with_token(token);
    if found.is_empty() {
        return 0;
    }
    for pid in &found {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let left = processes_with_token(token);
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    found.len()
}

/// The inodes of the sockets listening on TCP `port` (IPv4 and IPv6, any address): asked of
/// the kernel over `sock_diag`, or read from the `/proc/net` tables when that fails.
pub fn listening_inodes(port: u16) -> BTreeSet<u64> {
    match sock_diag::listening_inodes(port) {
        Ok(inodes) => inodes,
        Err(error) => {
            tracing::debug!("sock_diag failed ({error}); reading /proc/net/tcp instead");
            listening_inodes_from_tables(port)
        }
    }
}

/// How many TCP connections a server on `port` has open (accepted and not yet closed by it):
/// asked of the kernel over `sock_diag`, or read from the `/proc/net` tables when that fails.
pub fn open_connections(port: u16) -> usize {
    match sock_diag::connection_inodes(port) {
        Ok(inodes) => inodes.len(),
        Err(error) => {
            tracing::debug!("sock_diag failed ({error}); reading /proc/net/tcp instead");
            inodes_from_tables(port, &OPEN_CONNECTION_STATES).len()
        }
    }
}

/// The `/proc/net/tcp` state of a listener.
const LISTEN_STATE: [&str; 1] = ["0A"];

/// The `/proc/net/tcp` states of a connection a server may still answer on: established, and
/// half-closed by the client.
const OPEN_CONNECTION_STATES: [&str; 2] = ["01", "08"];

/// [`listening_inodes`] from `/proc/net/tcp` and `tcp6`, which list every socket.
fn listening_inodes_from_tables(port: u16) -> BTreeSet<u64> {
    inodes_from_tables(port, &LISTEN_STATE)
}

/// The inodes of the sockets of `/proc/net/tcp` and `tcp6` with local port `port` in one of
/// `states`.
fn inodes_from_tables(port: u16, states: &[&str]) -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| socket_inode(line, port, states)),
        );
    }
    inodes
}

/// The inode of a `/proc/net/tcp` row with local port `port` in one of `states`.
fn socket_inode(row: &str, port: u16, states: &[&str]) -> Option<u64> {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let local = fields.get(1)?;
    let state = fields.get(3)?;
    let (_, hex_port) = local.rsplit_once(':')?;
    if !states.contains(state) || u16::from_str_radix(hex_port, 16).ok()? != port {
        return None;
    }
    fields.get(9)?.parse().ok().filter(|inode| *inode != 0)
}

/// Whether one of `pids` holds a socket among `inodes`.
pub fn holds_any(pids: &[i32], inodes: &BTreeSet<u64>) -> bool {
    pids.iter()
        .any(|pid| !socket_inodes(*pid).is_disjoint(inodes))
}

/// A live process holding a socket among `inodes`, when one can be read.
pub fn holder_of(inodes: &BTreeSet<u64>) -> Option<i32> {
    procfs::all_processes()
        .into_iter()
        .filter(|p| p.is_alive())
        .find(|p| !socket_inodes(p.pid).is_disjoint(inodes))
        .map(|p| p.pid)
}

/// The socket inodes among the open files of `pid`.
fn socket_inodes(pid: i32) -> BTreeSet<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let target = fs::read_link(entry.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sockets_of_a_port_from_a_tcp_table_row() {
        let header_less = "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41234 1 0000000000000000 100 0 0 10 0";
        assert_eq!(socket_inode(header_less, 8080, &LISTEN_STATE), Some(41234));
        assert_eq!(socket_inode(header_less, 8081, &LISTEN_STATE), None);
        let established = "   3: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 41299 1";
        assert_eq!(socket_inode(established, 8080, &LISTEN_STATE), None);
        assert_eq!(
            socket_inode(established, 8080, &OPEN_CONNECTION_STATES),
            Some(41299)
        );
    }

    #[test]
    fn finds_this_process_by_a_listener_it_holds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let inodes = listening_inodes(port);
        assert!(!inodes.is_empty());
        assert_eq!(listening_inodes_from_tables(port), inodes);
        let me = std::process::id() as i32;
        assert!(holds_any(&[me], &inodes));
        assert_eq!(holder_of(&inodes), Some(me));
        drop(listener);
        assert!(listening_inodes(port).is_empty());
        assert!(listening_inodes_from_tables(port).is_empty());
    }
}
