//! Writes waiting for their socket (descriptor join, kernels before 6.4).
//!
//! There the kernel learns a descriptor's socket when it connects or reads; a write before
//! either (a server that speaks first, as MySQL's greeting; a connection older than the agent
//! whose client writes first) comes with no socket and no connection. It is held here, per
//! (process, descriptor), until the descriptor's next record names the socket (the peer's
//! answer, read on the same descriptor), and then goes to its tracker first with that
//! record's connection. A held write whose descriptor closes, whose process ends, or that
//! finds the table full is dropped and counted as `socket_unknown`.

use crate::record::{DataRecord, Task};
use alloc::boxed::Box;
use telegen_common::DATA_CAP;

/// Writes held at once: a connection's first write is answered within a round trip, so a
/// few are pending at a time even on a busy server.
pub const CAPACITY: usize = 32;

#[derive(Clone, Copy)]
struct Held {
    /// 0: a free slot (the kernel never captures pid 0's calls).
    tgid: u32,
    fd: u32,
    ts_ns: u64,
    task: Task,
    len: u32,
    tls: bool,
    protocol: crate::record::Protocol,
    captured: u16,
    data: [u8; DATA_CAP],
}

const FREE: Held = Held {
    tgid: 0,
    fd: 0,
    ts_ns: 0,
    task: Task {
        tgid: 0,
        tid: 0,
        comm: [0; 16],
    },
    len: 0,
    tls: false,
    protocol: crate::record::Protocol::Http,
    captured: 0,
    data: [0; DATA_CAP],
};

/// The held writes: a fixed table, allocated once.
pub struct Unjoined {
    slots: Box<[Held; CAPACITY]>,
    used: usize,
}

impl Default for Unjoined {
    fn default() -> Self {
        Self::new()
    }
}

impl Unjoined {
    pub fn new() -> Self {
        Self {
            slots: Box::new([FREE; CAPACITY]),
            used: 0,
        }
    }

    /// Bytes the table takes.
    pub const fn bytes() -> usize {
        CAPACITY * core::mem::size_of::<Held>()
    }

    /// Holds `r`, a write that came with no socket; `false` when it could not be (the table is
    /// full, or its descriptor holds one already: the first is kept, being the one whose
    /// loss would confuse the tracker).
    pub fn hold(&mut self, r: &DataRecord<'_>) -> bool {
        if r.task.tgid == 0 || self.find(r.task.tgid, r.fd).is_some() {
            return false;
        }
        let Some(slot) = self.slots.iter_mut().find(|s| s.tgid == 0) else {
            return false;
        };
        let n = r.data.len().min(DATA_CAP);
        slot.tgid = r.task.tgid;
        slot.fd = r.fd;
        slot.ts_ns = r.ts_ns;
        slot.task = r.task;
        slot.len = r.len;
        slot.tls = r.tls;
        slot.protocol = r.protocol;
        slot.captured = n as u16;
        slot.data[..n].copy_from_slice(&r.data[..n]);
        self.used += 1;
        true
    }

    /// The write held for the descriptor of `joined` (a record that names its socket), as a
    /// record on `joined`'s connection; its bytes are copied into `buf`.
    pub fn take<'b>(
        &mut self,
        joined: &DataRecord<'_>,
        buf: &'b mut [u8; DATA_CAP],
    ) -> Option<DataRecord<'b>> {
        let i = self.find(joined.task.tgid, joined.fd)?;
        let h = &mut self.slots[i];
        let n = usize::from(h.captured);
        buf[..n].copy_from_slice(&h.data[..n]);
        let r = DataRecord {
            ts_ns: h.ts_ns,
            task: h.task,
            fd: h.fd,
            ingress: false,
            len: h.len,
            sock: joined.sock,
            local: joined.local,
            remote: joined.remote,
            local_port: joined.local_port,
            remote_port: joined.remote_port,
            tls: h.tls,
            protocol: h.protocol,
            data: &buf[..n],
        };
        h.tgid = 0;
        self.used -= 1;
        Some(r)
    }

    /// Descriptor `fd` of `tgid` closed: how many held writes that drops (0 or 1).
    pub fn on_close(&mut self, tgid: u32, fd: u32) -> u64 {
        match self.find(tgid, fd) {
            Some(i) => {
                self.slots[i].tgid = 0;
                self.used -= 1;
                1
            }
            None => 0,
        }
    }

    /// Process `tgid` ended: how many held writes that drops.
    pub fn on_exit(&mut self, tgid: u32) -> u64 {
        if self.used == 0 || tgid == 0 {
            return 0;
        }
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.tgid == tgid) {
            s.tgid = 0;
            n += 1;
        }
        self.used -= n;
        n as u64
    }

    fn find(&self, tgid: u32, fd: u32) -> Option<usize> {
        if self.used == 0 {
            return None;
        }
        self.slots.iter().position(|s| s.tgid == tgid && s.fd == fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{IpAddr, Protocol};

    fn record(tgid: u32, fd: u32, sock: u64, data: &[u8]) -> DataRecord<'_> {
        DataRecord {
            ts_ns: 7,
            task: Task {
                tgid,
                tid: tgid,
                comm: [0; 16],
            },
            fd,
            ingress: sock != 0,
            len: data.len() as u32,
            sock,
            local: IpAddr::from_wire(false, [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            remote: IpAddr::from_wire(false, [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            local_port: if sock != 0 { 3306 } else { 0 },
            remote_port: if sock != 0 { 40000 } else { 0 },
            tls: false,
            protocol: Protocol::Mysql,
            data,
        }
    }

    #[test]
    fn a_held_write_takes_the_connection_of_its_descriptors_next_record() {
        let mut u = Unjoined::new();
        assert!(u.hold(&record(10, 5, 0, b"greeting")));
        let mut buf = [0; DATA_CAP];
        // Another descriptor, another process: nothing.
        assert!(
            u.take(&record(10, 6, 0xffff_0001, b"x"), &mut buf)
                .is_none()
        );
        assert!(
            u.take(&record(11, 5, 0xffff_0001, b"x"), &mut buf)
                .is_none()
        );
        let r = u
            .take(&record(10, 5, 0xffff_0001, b"answer"), &mut buf)
            .unwrap();
        assert_eq!(r.data, b"greeting");
        assert_eq!(
            (r.sock, r.local_port, r.remote_port),
            (0xffff_0001, 3306, 40000)
        );
        assert!(!r.ingress);
        assert_eq!(r.ts_ns, 7);
        // Taken once.
        assert!(
            u.take(&record(10, 5, 0xffff_0001, b"answer"), &mut buf)
                .is_none()
        );
    }

    #[test]
    fn held_writes_are_dropped_at_close_and_exit_and_the_table_is_bounded() {
        let mut u = Unjoined::new();
        assert!(u.hold(&record(10, 5, 0, b"a")));
        assert!(!u.hold(&record(10, 5, 0, b"b")), "one per descriptor");
        assert_eq!(u.on_close(10, 6), 0);
        assert_eq!(u.on_close(10, 5), 1);
        for fd in 0..CAPACITY as u32 {
            assert!(u.hold(&record(20, fd, 0, b"c")));
        }
        assert!(!u.hold(&record(21, 0, 0, b"d")), "full");
        assert_eq!(u.on_exit(20), CAPACITY as u64);
        assert!(u.hold(&record(21, 0, 0, b"d")));
    }
}
