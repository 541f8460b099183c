//! The processes spans come from, beyond their pid and name: the container each runs in,
//! read once per process from `/proc/PID/cgroup` (readable by any user, so this works after
//! the privileges are gone) and parsed by `telegen_core::cgroup`. Bounded: past
//! [`CAPACITY`] processes the table starts over.
//!
//! A process is looked up after the drain that finished its first span, so one that exits
//! within that drain interval (100 ms) is exported without container attributes.

use std::collections::HashMap;
use telegen_core::cgroup::{self, Container};
use telegen_core::http::Span;
use telegen_core::tcp::Process;

/// Processes remembered at once.
pub const CAPACITY: usize = 1024;

pub struct Processes {
    /// By pid: the command name when it was read (a pid reused by another program is read
    /// again) and its container.
    known: HashMap<u32, ([u8; 16], Option<Container>)>,
}

impl Default for Processes {
    fn default() -> Self {
        Self {
            known: HashMap::with_capacity(CAPACITY),
        }
    }
}

impl Processes {
    /// Reads what is not known yet of the processes of `spans`.
    pub fn learn<'a>(&mut self, spans: impl Iterator<Item = &'a Span>) {
        for s in spans {
            let p: &Process = &s.process;
            if self
                .known
                .get(&p.pid)
                .is_some_and(|(comm, _)| *comm == p.comm)
            {
                continue;
            }
            if self.known.len() >= CAPACITY {
                self.known.clear();
            }
            let container = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid))
                .ok()
                .and_then(|text| cgroup::container(&text));
            self.known.insert(p.pid, (p.comm, container));
        }
    }

    /// Puts in `out` the container of each process of `spans` that runs in one.
    pub fn containers<'a>(
        &self,
        spans: impl Iterator<Item = &'a Span>,
        out: &mut Vec<(u32, Container)>,
    ) {
        out.clear();
        for s in spans {
            let pid = s.process.pid;
            if out.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            if let Some((comm, Some(c))) = self.known.get(&pid)
                && *comm == s.process.comm
            {
                out.push((pid, *c));
            }
        }
    }
}
