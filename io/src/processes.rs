//! The processes spans come from, beyond their pid and name, read once per process from
//! /proc: its parent and owner (`/proc/PID/status`, the owner's name from `/etc/passwd`),
//! its command (the first word of `/proc/PID/cmdline`; the arguments are never read on), the
//! container it runs in (`/proc/PID/cgroup`, readable by any user, so this works
//! after the privileges are gone; parsed by `telegen_core::cgroup`) and the
//! `OTEL_SERVICE_NAME` of its environment (`/proc/PID/environ`, readable only by its owner
//! or a privileged reader: with the default `--user nobody` it is found only for processes
//! of that user). Bounded: past [`CAPACITY`] processes the table starts over.
//!
//! A process is looked up after the drain that finished its first span, so one that exits
//! within that drain interval (100 ms) is exported without them. Its name comes from the
//! same place (`Name:` of its status, the main thread's), since the kernel records name the
//! thread that moved the bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use telegen_core::cgroup;
use telegen_core::http::Span;
use telegen_core::tcp::Process;
use telegen_export::spanpb::ProcessAttrs;

/// Processes remembered at once.
pub const CAPACITY: usize = 1024;
/// Longest `service.name` taken from a process's environment.
const SERVICE_NAME_CAP: usize = 128;

/// How long what was read of a process is trusted: a pid reused by another program within
/// that time keeps the previous one's attributes until it is read again.
pub const REFRESH: Duration = Duration::from_secs(60);

pub struct Processes {
    /// By pid: when it was read, and what was found.
    known: HashMap<u32, (Instant, ProcessAttrs)>,
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

/// `PPid` and the real uid of a `/proc/PID/status`.
fn parent_and_uid(status: &str) -> (Option<u32>, Option<u32>) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    (field("PPid:"), field("Uid:"))
}

/// The first word of a NUL-separated command line, at most 128 bytes.
fn command(cmdline: &[u8]) -> Option<String> {
    let first = cmdline.split(|&b| b == 0).next()?;
    let first = std::str::from_utf8(first).ok()?;
    (!first.is_empty() && first.len() <= 128).then(|| first.to_string())
}

/// The user name of `uid` from `/etc/passwd`, or the uid itself.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

impl Processes {
    /// Reads what is not known (or no longer trusted) of the processes of `spans`.
    pub fn learn<'a>(&mut self, spans: impl Iterator<Item = &'a Span>, now: Instant) {
        for s in spans {
            let p: &Process = &s.process;
            if self
                .known
                .get(&p.pid)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) < REFRESH)
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
            let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).ok();
            let (parent_pid, uid) = status
                .as_deref()
                .map(parent_and_uid)
                .unwrap_or((None, None));
            // The process's name, not the name of the thread that moved the bytes.
            let executable_name = status.as_deref().and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("Name:"))
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
            });
            let command = std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .ok()
                .and_then(|c| command(&c));
            let attrs = ProcessAttrs {
                service_name,
                container,
                parent_pid,
                owner: uid.map(user_name),
                command,
                executable_name,
            };
            self.known.insert(p.pid, (now, attrs));
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
            if let Some((_, a)) = self.known.get(&pid)
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

    #[test]
    fn parent_owner_and_command() {
        let status = "Name:\tnginx\nPPid:\t812\nUid:\t33\t33\t33\t33\nGid:\t33\n";
        assert_eq!(parent_and_uid(status), (Some(812), Some(33)));
        assert_eq!(parent_and_uid("Name:\tx\n"), (None, None));
        assert_eq!(
            command(b"/usr/bin/python3\0-m\0http.server\0--token=sekret\0").as_deref(),
            Some("/usr/bin/python3")
        );
        assert_eq!(command(b""), None);
        // This machine's /etc/passwd: uid 0 is root; an unknown uid stays a number.
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "4000000000");
    }
}
