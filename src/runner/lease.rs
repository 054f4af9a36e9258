//! Ports as leases: a server's port is a [`PortLease`], and a lease gives its port back in one
//! place, its `Drop` (an explicit [`PortLease::release`] is a drop too). No other code returns a
//! port to the allocator, so no path can forget one or give one back twice.
//!
//! A deploy holds its lease while it starts a server ([`super::start::StartGuard`]); once a
//! supervisor owns the server, the lease is parked in [`PortLeases`] under its port, and the
//! supervisor's "the tree is gone" ([`PortLeases::release`]) drops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::ports::{PortAllocator, PortRange};
use crate::sync::lock;

/// One port handed out by the allocator; given back when dropped.
#[derive(Debug)]
pub struct PortLease {
    allocator: Arc<PortAllocator>,
    port: u16,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Gives the port back now (the same as dropping the lease).
    pub fn release(self) {}
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.allocator.release(self.port);
    }
}

/// The runner's ports: leases handed out, and the leases supervisors hold for their servers.
#[derive(Debug)]
pub struct PortLeases {
    allocator: Arc<PortAllocator>,
    /// Leases of servers a supervisor owns, by port, with the server holding each, until it
    /// says the tree is gone.
    held: Mutex<HashMap<u16, (String, PortLease)>>,
}

impl PortLeases {
    /// Leases over `range`, none handed out.
    pub fn new(range: PortRange) -> Self {
        PortLeases {
            allocator: Arc::new(PortAllocator::new(range)),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Leases `preferred` when it lies in the range and is free, else the lowest free port.
    /// Blocks while it probes ([`PortAllocator::allocate`]).
    pub fn lease(&self, preferred: Option<u16>) -> Result<PortLease> {
        let port = self.allocator.allocate(preferred)?;
        Ok(PortLease {
            allocator: Arc::clone(&self.allocator),
            port,
        })
    }

    /// Parks `lease` for the supervisor of `server_id`, which listens on its port, until
    /// [`Self::release`].
    pub fn hold(&self, lease: PortLease, server_id: &str) {
        lock(&self.held).insert(lease.port, (server_id.to_owned(), lease));
    }

    /// Holds `port` for `server_id`, an adopted server that already listens on it (not
    /// probed). A port that is handed out already stays with its holder.
    pub fn hold_adopted(&self, port: u16, server_id: &str) {
        if self.allocator.reserve(port) {
            let lease = PortLease {
                allocator: Arc::clone(&self.allocator),
                port,
            };
            self.hold(lease, server_id);
        }
    }

    /// `server_id`, on `port`, is gone (or let go): the lease it holds ends. A port it does not
    /// hold (not held, or held by another server): a no-op.
    pub fn release(&self, port: u16, server_id: &str) {
        let mut held = lock(&self.held);
        if held
            .get(&port)
            .is_some_and(|(holder, _)| holder == server_id)
        {
            let lease = held.remove(&port);
            drop(held);
            drop(lease);
        }
    }

    /// Whether `port` is handed out.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.allocator.is_allocated(port)
    }

    /// The ports handed out, ascending.
    pub fn allocated_ports(&self) -> Vec<u16> {
        self.allocator.allocated_ports()
    }

    /// Ports of the range not handed out.
    pub fn available_count(&self) -> usize {
        self.allocator.available_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases() -> PortLeases {
        let start = 47_300 + (std::process::id() % 500) as u16 * 4;
        PortLeases::new(PortRange {
            start,
            end: start + 3,
        })
    }

    #[test]
    fn a_dropped_lease_gives_its_port_back_once() {
        let ports = leases();
        let lease = ports.lease(None).expect("a free port");
        let port = lease.port();
        assert_eq!(ports.allocated_ports(), vec![port]);
        drop(lease);
        assert!(ports.allocated_ports().is_empty());
        // Another lease of the same port is not freed by anything the first one did.
        let again = ports.lease(Some(port)).expect("the port again");
        assert_eq!(again.port(), port);
        ports.release(port, "a");
        assert_eq!(ports.allocated_ports(), vec![port], "not held: untouched");
        again.release();
        assert!(ports.allocated_ports().is_empty());
    }

    #[test]
    fn a_held_lease_ends_at_the_first_release_only() {
        let ports = leases();
        let lease = ports.lease(None).expect("a free port");
        let port = lease.port();
        ports.hold(lease, "a");
        assert_eq!(ports.allocated_ports(), vec![port]);
        ports.release(port, "a");
        assert!(ports.allocated_ports().is_empty());
        let next = ports.lease(Some(port)).expect("the port again");
        ports.release(port, "a");
        assert_eq!(
            ports.allocated_ports(),
            vec![port],
            "a second release frees nothing"
        );
        drop(next);
        assert_eq!(ports.available_count(), 4);
    }

    #[test]
    fn an_adopted_port_already_handed_out_stays_with_its_holder() {
        let ports = leases();
        let lease = ports.lease(None).expect("a free port");
        let port = lease.port();
        ports.hold_adopted(port, "adopted");
        ports.release(port, "adopted");
        assert_eq!(ports.allocated_ports(), vec![port]);
        // Held by a supervised server: the adopted one's going down leaves it held too.
        ports.hold(lease, "supervised");
        ports.hold_adopted(port, "adopted");
        ports.release(port, "adopted");
        assert_eq!(ports.allocated_ports(), vec![port]);
        ports.release(port, "supervised");
        let other = port + 1;
        ports.hold_adopted(other, "adopted");
        assert_eq!(ports.allocated_ports(), vec![other]);
        ports.release(other, "adopted");
        assert!(ports.allocated_ports().is_empty());
    }
}
