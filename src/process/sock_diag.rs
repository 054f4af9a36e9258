//! The TCP listeners on one port, and the connections they accepted, asked of the kernel over
//! netlink `sock_diag` (`INET_DIAG`).
//!
//! `/proc/net/tcp` lists every socket, and the kernel builds it by walking its whole
//! connection hash table: milliseconds per read on a machine with much memory, however few
//! sockets there are. A `sock_diag` dump asked for the `LISTEN` state and one source port walks
//! only the listening table and answers with the listeners of that port alone (tens of
//! microseconds). The request and answer are fixed C layouts, written and read here byte by
//! byte in the host's byte order (ports in network order).
//!
//! # Caveats
//! Like `/proc/net/tcp`, the dump sees only this network namespace. A kernel without
//! `CONFIG_INET_DIAG` (or a sandbox that forbids netlink) fails the query: callers fall back to
//! the `/proc` tables.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

/// `SOCK_DIAG_BY_FAMILY`: the request type of an `inet_diag_req_v2`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const REQUEST_DUMP: u16 = 0x1 | 0x300;
/// `NLMSG_ERROR` and `NLMSG_DONE`.
const MESSAGE_ERROR: u16 = 2;
const MESSAGE_DONE: u16 = 3;
/// `TCP_LISTEN` (10) as a state bit.
const LISTEN_STATE_BIT: u32 = 1 << 10;
/// `TCP_ESTABLISHED` (1) and `TCP_CLOSE_WAIT` (8) as state bits: connections a server may still
/// answer on (a client that half-closed after its request still reads the answer).
const OPEN_CONNECTION_STATE_BITS: u32 = (1 << 1) | (1 << 8);
/// `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, extensions, pad, states, then the socket id.
const REQUEST_LEN: usize = 56;
/// Where `idiag_sport` (in `inet_diag_sockid`) lies in a request and in an answer.
const SPORT_OFFSET: usize = 8;
const ANSWER_SPORT_OFFSET: usize = 4;
/// Where `idiag_inode` lies in a `struct inet_diag_msg`, and the shortest such message.
const ANSWER_INODE_OFFSET: usize = 68;
const ANSWER_LEN: usize = 72;
/// The longest a dump may keep the caller waiting for the kernel's next answer.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// The inodes of the TCP sockets listening on `port`, IPv4 and IPv6 (a dual-stack `[::]`
/// listener is an IPv6 socket).
pub fn listening_inodes(port: u16) -> io::Result<BTreeSet<u64>> {
    sockets_in_states(port, LISTEN_STATE_BIT)
}

/// The inodes of the open TCP connections whose local port is `port` (IPv4 and IPv6): those a
/// server listening on `port` accepted and has not closed.
pub fn connection_inodes(port: u16) -> io::Result<BTreeSet<u64>> {
    sockets_in_states(port, OPEN_CONNECTION_STATE_BITS)
}

/// The inodes of the TCP sockets with local port `port` in one of the states of `state_bits`.
fn sockets_in_states(port: u16, state_bits: u32) -> io::Result<BTreeSet<u64>> {
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let timeout = TimeVal::new(RECEIVE_TIMEOUT.as_secs() as _, 0);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
    let mut inodes = BTreeSet::new();
    for (sequence, family) in [(1, AddressFamily::Inet), (2, AddressFamily::Inet6)] {
        send(
            socket.as_raw_fd(),
            &request(family as u8, port, state_bits, sequence),
            MsgFlags::empty(),
        )?;
        receive_dump(&socket, port, &mut inodes)?;
    }
    Ok(inodes)
}

/// A dump request for the TCP sockets of `family` on source port `port` in the states of
/// `state_bits`.
fn request(family: u8, port: u16, state_bits: u32, sequence: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    message.extend_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&REQUEST_DUMP.to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    // Port id 0: the kernel fills in this socket's.
    message.extend_from_slice(&0u32.to_ne_bytes());
    let mut body = [0u8; REQUEST_LEN];
    body[0] = family;
    body[1] = nix::libc::IPPROTO_TCP as u8;
    body[4..8].copy_from_slice(&state_bits.to_ne_bytes());
    // The kernel skips sockets on other ports when the source port is set.
    body[SPORT_OFFSET..SPORT_OFFSET + 2].copy_from_slice(&port.to_be_bytes());
    message.extend_from_slice(&body);
    message
}

/// Reads the answers to one dump until the kernel says it is done, adding the inode of each
/// socket on `port` to `inodes`.
fn receive_dump(socket: &OwnedFd, port: u16, inodes: &mut BTreeSet<u64>) -> io::Result<()> {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = recv(socket.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag closed before the end of its dump",
            ));
        }
        if read_answers(&buffer[..n], port, inodes)? {
            return Ok(());
        }
    }
}

/// Reads one datagram of netlink messages; returns whether it held the dump's end.
fn read_answers(mut datagram: &[u8], port: u16, inodes: &mut BTreeSet<u64>) -> io::Result<bool> {
    while datagram.len() >= HEADER_LEN {
        let len = u32_at(datagram, 0) as usize;
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        if len < HEADER_LEN || len > datagram.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "sock_diag answered a message of {len} bytes in {}",
                    datagram.len()
                ),
            ));
        }
        let body = &datagram[HEADER_LEN..len];
        match kind {
            MESSAGE_DONE => return Ok(true),
            MESSAGE_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return Err(io::Error::from_raw_os_error(-code));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= ANSWER_LEN => {
                let sport =
                    u16::from_be_bytes([body[ANSWER_SPORT_OFFSET], body[ANSWER_SPORT_OFFSET + 1]]);
                let inode = u64::from(u32_at(body, ANSWER_INODE_OFFSET));
                if sport == port && inode != 0 {
                    inodes.insert(inode);
                }
            }
            _ => {}
        }
        // Messages are padded to four bytes.
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(false)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listeners_of_a_port_on_both_families() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let port = v4.local_addr().expect("addr").port();
        let found = listening_inodes(port).expect("sock_diag");
        assert_eq!(found.len(), 1, "{found:?}");
        // The same port on the IPv6 loopback is a second listener (when IPv6 is up).
        if let Ok(v6) = std::net::TcpListener::bind(("::1", port)) {
            assert_eq!(listening_inodes(port).expect("sock_diag").len(), 2);
            drop(v6);
        }
        // A connection to the listener is not a listener.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert_eq!(listening_inodes(port).expect("sock_diag"), found);
        drop(v4);
        assert!(listening_inodes(port).expect("sock_diag").is_empty());
    }

    #[test]
    fn counts_the_connections_a_listener_accepted_until_they_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(connection_inodes(port).expect("sock_diag").is_empty());
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        // The accepted side has the server's port; the client's side does not count.
        assert_eq!(connection_inodes(port).expect("sock_diag").len(), 1);
        drop(client);
        // Half-closed by the client: the server may still answer on it.
        assert_eq!(connection_inodes(port).expect("sock_diag").len(), 1);
        drop(accepted);
        assert!(connection_inodes(port).expect("sock_diag").is_empty());
    }

    #[test]
    fn reads_an_error_answer_as_the_errno_it_carries() {
        let mut datagram = Vec::new();
        datagram.extend_from_slice(&20u32.to_ne_bytes());
        datagram.extend_from_slice(&MESSAGE_ERROR.to_ne_bytes());
        datagram.extend_from_slice(&[0; 10]);
        datagram.extend_from_slice(&(-nix::libc::EPERM).to_ne_bytes());
        let error = read_answers(&datagram, 80, &mut BTreeSet::new()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(nix::libc::EPERM));
    }

    #[test]
    fn rejects_a_message_longer_than_its_datagram() {
        let mut datagram = Vec::new();
        datagram.extend_from_slice(&200u32.to_ne_bytes());
        datagram.extend_from_slice(&[0; 12]);
        assert!(read_answers(&datagram, 80, &mut BTreeSet::new()).is_err());
    }
}
