//! The agent's own export connections, seen from their other end.
//!
//! The kernel programs skip the agent's calls, but not those of the process it exports to:
//! a collector on the same node (or a test's receiver) reads every export request the
//! agent writes, and each would become a server span of that process, exported in turn,
//! and so on. The agent names each connection it opens (its local and remote ends); a
//! captured call whose connection is one of those, seen from the other end, goes to no
//! tracker, just as the agent's own calls never leave the kernel: neither is traffic of the
//! node's services, and neither is a drop.

use crate::record::{DataRecord, IpAddr};

/// Connections remembered at once: the latest ones the exporters opened (one per signal at
/// a time, a new one after each failure), so that the records of one closed a moment ago
/// are still known when they are read.
pub const CAPACITY: usize = 16;

/// One end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct End {
    pub addr: IpAddr,
    pub port: u16,
}

/// The connections the agent opened, newest last, oldest forgotten first.
#[derive(Debug, Clone, Default)]
pub struct OwnConnections {
    /// `(agent's end, peer's end)`; a port of 0: a free slot.
    slots: [(End, End); CAPACITY],
    next: usize,
}

impl OwnConnections {
    pub fn new() -> Self {
        Self::default()
    }

    /// The agent opened a connection from `local` to `remote`.
    pub fn opened(&mut self, local: End, remote: End) {
        if local.port == 0 || remote.port == 0 || self.slots.contains(&(local, remote)) {
            return;
        }
        self.slots[self.next] = (local, remote);
        self.next = (self.next + 1) % CAPACITY;
    }

    /// Whether `r` is a call of the process at the other end of one of the agent's
    /// connections, on that connection.
    pub fn is_peer_of(&self, r: &DataRecord<'_>) -> bool {
        if r.remote_port == 0 {
            return false;
        }
        let (theirs, ours) = (
            End {
                addr: r.local,
                port: r.local_port,
            },
            End {
                addr: r.remote,
                port: r.remote_port,
            },
        );
        self.slots.iter().any(|&(l, p)| l == ours && p == theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Protocol, Task};

    fn v4(a: [u8; 4]) -> IpAddr {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&a);
        IpAddr { v6: false, bytes }
    }

    fn end(a: [u8; 4], port: u16) -> End {
        End { addr: v4(a), port }
    }

    fn call(local: End, remote: End) -> DataRecord<'static> {
        DataRecord {
            ts_ns: 1,
            task: Task::default(),
            fd: 5,
            ingress: true,
            len: 4,
            sock: 1,
            local: local.addr,
            remote: remote.addr,
            local_port: local.port,
            remote_port: remote.port,
            tls: false,
            protocol: Protocol::Http,
            data: b"POST",
        }
    }

    #[test]
    fn the_collectors_end_of_an_own_connection_is_known_and_no_other() {
        let mut own = OwnConnections::new();
        let (agent, collector) = (end([127, 0, 0, 1], 40000), end([127, 0, 0, 1], 4318));
        own.opened(agent, collector);
        // The collector reads what the agent wrote: its local end is the collector's.
        assert!(own.is_peer_of(&call(collector, agent)));
        // Another client of the same collector, and the agent's end itself, are not.
        assert!(!own.is_peer_of(&call(collector, end([127, 0, 0, 1], 40001))));
        assert!(!own.is_peer_of(&call(agent, collector)));
        assert!(!own.is_peer_of(&call(collector, end([10, 0, 0, 1], 40000))));
    }

    #[test]
    fn the_oldest_connection_is_forgotten_first() {
        let mut own = OwnConnections::new();
        let collector = end([127, 0, 0, 1], 4318);
        for port in 0..=CAPACITY as u16 {
            own.opened(end([127, 0, 0, 1], 30000 + port), collector);
        }
        assert!(!own.is_peer_of(&call(collector, end([127, 0, 0, 1], 30000))));
        for port in 1..=CAPACITY as u16 {
            assert!(own.is_peer_of(&call(collector, end([127, 0, 0, 1], 30000 + port))));
        }
        // A connection opened twice takes one slot.
        own.opened(end([127, 0, 0, 1], 30005), collector);
        assert!(own.is_peer_of(&call(collector, end([127, 0, 0, 1], 30001))));
    }
}
