//! The processes spans come from, beyond their pid and name, read once per process from
//! /proc: the container it runs in (`/proc/PID/cgroup`, readable by any user, so this works
//! after the privileges are gone; parsed by `telegen_core::cgroup`) and the
//! `OTEL_SERVICE_NAME` of its environment (`/proc/PID/environ`, readable only by its owner
//! or a privileged reader: with the default `--user nobody` it is found only for processes
//! of that user). Bounded: past [`CAPACITY`] processes the table starts over.
//!
//! A process is looked up after the drain that finished its first span, so one that exits
//! within that drain interval (100 ms) is exported without them.

use std::collections::HashMap;
use telegen_core::cgroup;
use telegen_core::http::Span;
use telegen_core::tcp::Process;
use telegen_export::spanpb::ProcessAttrs;

/// Processes remembered at once.
pub const CAPACITY: usize = 1024;
/// Longest `service.name` taken from a process's environment.
const SERVICE_NAME_CAP: usize = 128;

pub struct Processes {
    /// By pid: the command name when it was read (a pid reused by another program is read
    /// again) and what was found.
    known: HashMap<u32, ([u8; 16], ProcessAttrs)>,
}

impl Default for Processes {
    fn default() -> Self {
        Self {
            known: HashMap::with_capacity(CAPACITY),
        }
    }
}

/// `OTEL_SERVICE_NAME` in the NUL-separated `environ` of a process.
fn service_name(environ: &[u8]) -> Option<String> {
    let v = environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"OTEL_SERVICE_NAME="))?;
    let v = std::str::from_utf8(v).ok()?.trim();
    if v.is_empty() || v.len() > SERVICE_NAME_CAP {
        return None;
    }
    Some(v.to_string())
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
            let service_name = std::fs::read(format!("/proc/{}/environ", p.pid))
                .ok()
                .and_then(|env| service_name(&env));
            let attrs = ProcessAttrs {
                service_name,
                container,
            };
            self.known.insert(p.pid, (p.comm, attrs));
        }
    }

    /// Puts in `out` what is known of each process of `spans`.
    pub fn attrs<'a>(
        &self,
        spans: impl Iterator<Item = &'a Span>,
        out: &mut Vec<(u32, ProcessAttrs)>,
    ) {
        out.clear();
        for s in spans {
            let pid = s.process.pid;
            if out.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            if let Some((comm, a)) = self.known.get(&pid)
                && *comm == s.process.comm
                && *a != ProcessAttrs::default()
            {
                out.push((pid, a.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_of_an_environment() {
        let env = b"PATH=/bin\0OTEL_SERVICE_NAME=checkout\0HOME=/\0";
        assert_eq!(service_name(env).as_deref(), Some("checkout"));
        assert_eq!(service_name(b"PATH=/bin\0"), None);
        assert_eq!(service_name(b"OTEL_SERVICE_NAME=\0"), None);
        assert_eq!(service_name(b"XOTEL_SERVICE_NAME=a\0"), None);
    }
}
