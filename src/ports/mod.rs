//! Port allocation: hands out ports of the configured range to servers, one server per port.
//!
//! A port is free when this allocator has not handed it out and a TCP listener can be bound on
//! it at `127.0.0.1` and `0.0.0.0` (and at `[::]` and `[::1]` where the machine has IPv6). The
//! lowest free port wins unless the caller prefers another free port of the range.
//!
//! # Caveats
//! - A probe binds and closes at once; the server binds later. Another program can take the
//!   port in between, which the deploy's health gate then notices. Within this process the race
//!   cannot happen: the allocator's lock is held while probing, so concurrent callers never get
//!   the same port.
//! - `std`'s listeners set `SO_REUSEADDR` on Unix, as Node does, so a port whose old connections
//!   linger in `TIME_WAIT` counts as free: the next server can bind it.
//! - Probing binds sockets, which blocks for microseconds per port; async callers should run
//!   [`PortAllocator::allocate`] on a blocking thread.

pub mod range;

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
pub use range::PortRange;

/// The IPv4 addresses a port must be bindable on to count as free.
const IPV4_PROBES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
];

/// The IPv6 addresses probed too; failures other than "address in use" are ignored, because
/// they mean the machine has no IPv6 (or no `::1`), so nothing can listen there either.
const IPV6_PROBES: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// What a bind probe found out about one port.
#[derive(Debug)]
enum Probe {
    /// Every probe address could be bound.
    Free,
    /// Another socket listens on the port.
    InUse,
    /// Binding failed for another reason (for example a privileged port).
    Unbindable(io::Error),
}

/// Binds and closes a listener on each probe address in turn (one at a time: two of our own
/// listeners on `127.0.0.1` and `0.0.0.0` would conflict with each other).
fn probe(port: u16) -> Probe {
    for address in IPV4_PROBES {
        match TcpListener::bind((address, port)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Probe::InUse,
            Err(e) => return Probe::Unbindable(e),
        }
    }
    for address in IPV6_PROBES {
        if let Err(e) = TcpListener::bind((address, port))
            && e.kind() == io::ErrorKind::AddrInUse
        {
            return Probe::InUse;
        }
    }
    Probe::Free
}

/// Hands out free ports of one range; thread-safe and cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    allocated: Mutex<BTreeSet<u16>>,
}

impl PortAllocator {
    /// An allocator over `range` with nothing handed out.
    pub fn new(range: PortRange) -> Self {
        PortAllocator {
            range,
            allocated: Mutex::new(BTreeSet::new()),
        }
    }

    /// The range ports are taken from.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The allocated set. A panic while it was held cannot leave it half-updated (every update
    /// is one insert or remove), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, BTreeSet<u16>> {
        crate::sync::lock(&self.allocated)
    }

    /// Hands out `preferred` when it lies in the range and is free, else the lowest free port.
    /// Fails when no port of the range is free, saying how many are taken and by whom.
    ///
    /// Blocks while it probes (one bind per address per port tried).
    pub fn allocate(&self, preferred: Option<u16>) -> Result<u16> {
        // Held until the port is recorded: a concurrent caller must not probe the same port
        // between our probe and our insert.
        let mut allocated = self.lock();
        if let Some(port) = preferred.filter(|p| self.range.contains(*p) && !allocated.contains(p))
            && matches!(probe(port), Probe::Free)
        {
            allocated.insert(port);
            tracing::debug!(port, "preferred port allocated");
            return Ok(port);
        }
        let (mut in_use, mut unbindable, mut bind_error) = (0, 0, None);
        for port in self.range.start..=self.range.end {
            if allocated.contains(&port) {
                continue;
            }
            match probe(port) {
                Probe::Free => {
                    allocated.insert(port);
                    tracing::debug!(port, "port allocated");
                    return Ok(port);
                }
                Probe::InUse => in_use += 1,
                Probe::Unbindable(e) => {
                    unbindable += 1;
                    bind_error.get_or_insert_with(|| format!("port {port}: {e}"));
                }
            }
        }
        Err(Error::NoFreePort {
            range: self.range,
            allocated: allocated.len(),
            in_use,
            unbindable,
            bind_error,
        })
    }

    /// Marks `port` as handed out without probing it (a server adopted from an earlier runner
    /// already listens on it); true when it was not handed out before.
    pub fn reserve(&self, port: u16) -> bool {
        self.lock().insert(port)
    }

    /// Gives `port` back; true when it had been handed out.
    pub fn release(&self, port: u16) -> bool {
        let released = self.lock().remove(&port);
        if released {
            tracing::debug!(port, "port released");
        }
        released
    }

    /// Whether `port` is currently handed out by this allocator.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.lock().contains(&port)
    }

    /// The ports handed out, ascending.
    pub fn allocated_ports(&self) -> Vec<u16> {
        self.lock().iter().copied().collect()
    }

    /// Ports of the range not handed out by this allocator (other programs may still use some).
    pub fn available_count(&self) -> usize {
        let taken = self
            .lock()
            .iter()
            .filter(|p| self.range.contains(**p))
            .count();
        self.range.len() - taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU16, Ordering};

    /// A block of `len` ports that nothing on the machine listens on, different for every call,
    /// so tests running in parallel (and other programs) do not disturb each other. The first
    /// block depends on the process id, so two test runs at once start apart.
    fn fresh_range(len: u16) -> PortRange {
        static NEXT: OnceLock<AtomicU16> = OnceLock::new();
        let next =
            NEXT.get_or_init(|| AtomicU16::new(20_000 + (std::process::id() % 40) as u16 * 200));
        loop {
            let start = next.fetch_add(len, Ordering::SeqCst);
            assert!(start < 32_000, "no free block of {len} ports below 32000");
            let range = PortRange {
                start,
                end: start + len - 1,
            };
            if (range.start..=range.end).all(|p| matches!(probe(p), Probe::Free)) {
                return range;
            }
        }
    }

    #[test]
    fn hands_out_the_lowest_free_ports_in_order() {
        let range = fresh_range(5);
        let ports = PortAllocator::new(range);
        assert_eq!(ports.range(), range);
        assert_eq!(ports.available_count(), 5);
        let got: Vec<u16> = (0..3).map(|_| ports.allocate(None).unwrap()).collect();
        assert_eq!(got, vec![range.start, range.start + 1, range.start + 2]);
        assert_eq!(ports.allocated_ports(), got);
        assert_eq!(ports.available_count(), 2);
        assert!(ports.is_allocated(range.start + 1));
        assert!(!ports.is_allocated(range.start + 3));
    }

    #[test]
    fn preferred_port_is_used_only_when_free_and_in_range() {
        let range = fresh_range(6);
        let ports = PortAllocator::new(range);
        assert_eq!(
            ports.allocate(Some(range.start + 3)).unwrap(),
            range.start + 3
        );
        // Already handed out: the lowest free port instead.
        assert_eq!(ports.allocate(Some(range.start + 3)).unwrap(), range.start);
        // Outside the range: ignored.
        assert_eq!(
            ports.allocate(Some(range.end + 1)).unwrap(),
            range.start + 1
        );
        // Held by another listener: ignored.
        let _held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, range.end)).unwrap();
        assert_eq!(ports.allocate(Some(range.end)).unwrap(), range.start + 2);
    }

    #[test]
    fn ports_other_listeners_hold_are_skipped() {
        let range = fresh_range(4);
        let _any = TcpListener::bind((Ipv4Addr::UNSPECIFIED, range.start)).unwrap();
        let _loopback = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start + 1)).unwrap();
        // A server bound to IPv6 loopback only must be seen too (where the machine has IPv6).
        let ipv6 = TcpListener::bind((Ipv6Addr::LOCALHOST, range.start + 2)).ok();
        let expected = if ipv6.is_some() {
            range.start + 3
        } else {
            range.start + 2
        };
        let ports = PortAllocator::new(range);
        assert_eq!(ports.allocate(None).unwrap(), expected);
    }

    #[test]
    fn released_ports_can_be_handed_out_again() {
        let range = fresh_range(3);
        let ports = PortAllocator::new(range);
        let first = ports.allocate(None).unwrap();
        let second = ports.allocate(None).unwrap();
        assert!(ports.release(first));
        assert!(
            !ports.release(first),
            "a second release reports nothing to do"
        );
        assert!(!ports.release(range.end + 1));
        assert_eq!(ports.allocated_ports(), vec![second]);
        assert_eq!(ports.available_count(), 2);
        assert_eq!(ports.allocate(None).unwrap(), first);
    }

    #[test]
    fn exhaustion_names_the_range_and_who_holds_its_ports() {
        let range = fresh_range(3);
        let _held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, range.start + 1)).unwrap();
        let ports = PortAllocator::new(range);
        ports.allocate(None).unwrap();
        ports.allocate(None).unwrap();
        let error = ports.allocate(None).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "No free port in range {}-{}: 2 allocated by this runner, 1 in use by other programs",
                range.start, range.end
            )
        );
        assert_eq!(
            ports.allocated_ports().len(),
            2,
            "a failed call allocates nothing"
        );
    }

    #[test]
    fn fifty_threads_at_once_get_fifty_distinct_ports() {
        let range = fresh_range(60);
        let ports = PortAllocator::new(range);
        let got: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|_| scope.spawn(|| ports.allocate(None).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: BTreeSet<u16> = got.iter().copied().collect();
        assert_eq!(distinct.len(), 50);
        assert!(got.iter().all(|p| range.contains(*p)));
        assert_eq!(ports.allocated_ports().len(), 50);
        assert_eq!(ports.available_count(), 10);
    }
}
