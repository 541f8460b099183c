//! The processes spans come from, beyond their pid and name, read once per process from
//! /proc: its parent and owner (`/proc/PID/status`, the owner's name from `/etc/passwd`),
//! its command (the first word of `/proc/PID/cmdline`; the arguments are never read on), the
//! container it runs in (`/proc/PID/cgroup`, readable by any user, so this works
//! after the privileges are gone; parsed by `telegen_core::cgroup`) and the
//! `OTEL_SERVICE_NAME` of its environment (`/proc/PID/environ`, readable only by its owner
//! or a privileged reader: with the default `--user nobody` it is found only for processes
//! of that user). Bounded: a process beyond [`CAPACITY`] is counted as `process_table_full`
//! (its spans carry only its pid and name) unless room is made by processes that ended.
//!
//! The table is kept current from the kernel's exec and exit records
//! (`sched:sched_process_exec`/`sched_process_exit`): an exec notes the program's path and
//! has the process read again, an exit removes it once its last spans are exported.
//! Processes already running at start-up get their program's path from `/proc/PID/exe`
//! while the agent still may read it. What is read of a process is read at its first span,
//! after the drain that finished it, so one that exits within that drain interval (100 ms)
//! keeps only what its exec record said. Its name comes from the same place (`Name:` of its
//! status, the main thread's), since the kernel records name the thread that moved the bytes.
//!
//! Its runtime (`telegen_core::runtime`) is found from its program: Go's build info in the
//! ELF file, CPython's and Node's executable names, Java's `release` file; a script started
//! through its `#!` line is its interpreter's. The file is read through `/proc/PID/exe`
//! when the agent may (root, or the process's own user), else at its exec path when the
//! process is in the agent's own mount namespace (not a container).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telegen_config::{Action, Facts, Rule};
use telegen_core::cgroup;
use telegen_core::http::Span;
use telegen_core::runtime::{self, Runtime};
use telegen_core::selfmetrics::{AgentCounters, DropReason};
use telegen_export::k8s::Pod;
use telegen_export::spanpb::ProcessAttrs;

/// Processes remembered at once.
pub const CAPACITY: usize = 512;
/// The most of a process's environment read (through the helper).
const ENVIRON_MAX: u64 = 256 << 10;
/// Longest `service.name` taken from a process's environment.
const SERVICE_NAME_CAP: usize = 128;
/// Longest program path kept (a longer one is not kept at all): as the kernel's exec
/// records carry.
const PATH_MAX_KEPT: usize = telegen_common::PATH_CAP - 1;
/// Longest process name, user name and runtime version kept.
const NAME_CAP: usize = 64;

/// The most one process's entry holds: the entry, and each of its strings at its cap
/// (paths twice: as executed, and resolved).
const ENTRY_BYTES_MAX: usize = core::mem::size_of::<(u32, Entry)>()
    + 2 * PATH_MAX_KEPT
    + SERVICE_NAME_CAP
    + 128
    + 3 * NAME_CAP;

/// What the process table may take at most, for `telegen check`: [`CAPACITY`] entries,
/// their strings at their caps, and the hash table's control bytes.
pub fn bytes() -> usize {
    CAPACITY * (ENTRY_BYTES_MAX + 1)
}

/// `s` when it is at most `cap` bytes long.
fn capped(s: String, cap: usize) -> Option<String> {
    (s.len() <= cap).then_some(s)
}

/// How long what was read of a process is trusted: a pid reused by another program within
/// that time keeps the previous one's attributes until it is read again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// A process the table knows.
#[derive(Default)]
struct Entry {
    /// The program's path as its exec gave it (or `/proc/PID/exe` at start-up).
    exec_path: Option<String>,
    /// What was read, and when; `None` until its first span (or after an exec).
    read: Option<(Instant, ProcessAttrs)>,
    /// Its exit was seen: removed at the next [`Processes::sweep`].
    exited: bool,
    /// Its task name, as its exec (or /proc at start-up) gave it: rules match it.
    comm: Option<String>,
}

pub struct Processes {
    known: HashMap<u32, Entry>,
    /// `[[rules]]`, in order.
    rules: Vec<Rule>,
    /// Whether a rule looks at containers or pods (then cgroups are read at exec).
    rules_need_containers: bool,
    /// Processes the rules exclude.
    excluded: HashSet<u32>,
    /// Excluded processes that ended: still excluded until their last spans are dropped.
    ended: Vec<u32>,
    /// `service.name` given by a rule, by pid.
    services: HashMap<u32, String>,
    /// Container names from the runtimes' state.
    names: crate::containers::ContainerNames,
    /// The privileged helper, for the entries of other users' processes.
    opener: Option<crate::helper::Opener>,
}

impl Default for Processes {
    fn default() -> Self {
        Self::with_rules(Vec::new())
    }
}

/// The pod with a uid, if known (the Kubernetes cache).
pub type PodOf<'a> = &'a dyn Fn(&str) -> Option<Arc<Pod>>;

/// A change of what the kernel must capture of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Exclude(u32),
    Include(u32),
}

/// The name of the file at `path`.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
                (f.nth(1)?.parse::<u32>().ok()? == uid && name.len() <= NAME_CAP)
                    .then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Where a process's program can be read: `/proc/PID/exe` when the agent may open it,
/// else the exec path, which names the right file only outside containers.
fn program_file(pid: u32, exec_path: Option<&str>, in_container: bool) -> Option<(File, String)> {
    let exe = format!("/proc/{pid}/exe");
    if let (Some(f), Ok(target)) = (open_regular(&exe), std::fs::read_link(&exe)) {
        return Some((
            f,
            capped(target.to_string_lossy().into_owned(), PATH_MAX_KEPT)?,
        ));
    }
    let path = exec_path.filter(|p| p.starts_with('/') && !in_container)?;
    let resolved = std::fs::canonicalize(path).ok()?;
    let f = open_regular(&resolved)?;
    Some((
        f,
        capped(resolved.to_string_lossy().into_owned(), PATH_MAX_KEPT)?,
    ))
}

/// Opens `path` when it is a regular file, without ever waiting (a FIFO or a device named
/// by an exec path would block the event loop).
fn open_regular(path: impl AsRef<std::path::Path>) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

fn read_at(f: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = f.read_at(&mut buf, offset).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The Go toolchain version in the build info of the ELF file `f`, if it is a Go program.
fn go_version(f: &File) -> Option<String> {
    let h = runtime::elf_header(&read_at(f, 0, runtime::ELF_HEADER_LEN)?)?;
    let table = read_at(f, h.shoff, h.table_len())?;
    let names = h.section(&table, h.shstrndx)?;
    // Section names are short; a names section past 64 KiB is not a program's.
    let names = read_at(f, names.offset, names.size.min(64 * 1024) as usize)?;
    let info = runtime::find_section(&h, &table, &names, ".go.buildinfo")?;
    let info = read_at(f, info.offset, runtime::GO_BUILDINFO_LEN)?;
    runtime::go_version(&info)
        .filter(|v| v.len() <= NAME_CAP)
        .map(str::to_string)
}

/// The interpreter a `#!` line names (`#!/usr/bin/python3`, `#!/usr/bin/env python3`),
/// resolved; `None` for a file that does not start with one.
fn interpreter(f: &File) -> Option<String> {
    let head = read_at(f, 0, 128)?;
    let line = head.strip_prefix(b"#!")?;
    let line = std::str::from_utf8(&line[..line.iter().position(|&b| b == b'\n')?]).ok()?;
    let mut words = line.split_whitespace();
    let mut prog = words.next()?.to_string();
    if prog.ends_with("/env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        prog = ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| std::path::Path::new(p).exists())?;
    }
    capped(
        std::fs::canonicalize(prog)
            .ok()?
            .to_string_lossy()
            .into_owned(),
        PATH_MAX_KEPT,
    )
}

/// The runtime of the program in `f` at `path`, and the path of the executable that runs
/// it (the interpreter of a script).
fn runtime_of(f: &File, path: &str) -> (Option<(&'static str, Option<String>)>, String) {
    if let Some(interp) = interpreter(f) {
        let rt = runtime::from_path(&interp).map(|(r, v)| {
            let v = v.filter(|v| v.len() <= NAME_CAP).map(str::to_string);
            (r.name(), v)
        });
        return (rt, interp);
    }
    let rt = match runtime::from_path(path) {
        Some((Runtime::Java, _)) => {
            let version = runtime::java_home(path)
                .and_then(|home| std::fs::read_to_string(format!("{home}/release")).ok())
                .and_then(|r| runtime::java_version(&r).map(str::to_string));
            Some((Runtime::Java.name(), version))
        }
        Some((r, v)) => Some((
            r.name(),
            v.filter(|v| v.len() <= NAME_CAP).map(str::to_string),
        )),
        None => go_version(f).map(|v| (Runtime::Go.name(), Some(v))),
    };
    (rt, path.to_string())
}

impl Processes {
    pub fn with_rules(rules: Vec<Rule>) -> Self {
        Self {
            known: HashMap::with_capacity(CAPACITY),
            rules_need_containers: rules.iter().any(Rule::needs_container),
            rules,
            excluded: HashSet::new(),
            ended: Vec::new(),
            services: HashMap::new(),
            names: Default::default(),
            opener: None,
        }
    }

    /// Reads other users' processes' environments and programs through the helper.
    pub fn set_opener(&mut self, opener: crate::helper::Opener) {
        self.opener = Some(opener);
    }

    /// The container names this table gives processes in containers.
    pub fn set_container_names(&mut self, names: crate::containers::ContainerNames) {
        self.names = names;
    }

    /// Whether the rules exclude `pid`.
    pub fn is_excluded(&self, pid: u32) -> bool {
        self.excluded.contains(&pid)
    }

    /// Processes the rules exclude now.
    pub fn excluded(&self) -> usize {
        self.excluded.len()
    }

    /// Tries the rules on `pid`, known by `names`; the change, if any.
    fn judge(&mut self, pid: u32, names: [Option<&str>; 2], pod_of: PodOf<'_>) -> Option<Verdict> {
        if self.rules.is_empty() {
            return None;
        }
        let container = if self.rules_need_containers {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|text| cgroup::container(&text))
        } else {
            None
        };
        let pod = container
            .as_ref()
            .and_then(|c| c.pod_uid_str())
            .and_then(pod_of);
        let facts = Facts {
            names,
            container: container.as_ref().map(|c| c.id_str()),
            pod_known: pod.is_some(),
            k8s_namespace: pod.as_deref().map(|p| p.namespace.as_str()),
            labels: pod.as_deref().map_or(&[], |p| p.labels.as_slice()),
        };
        let rule = telegen_config::first_match(&self.rules, &facts);
        match rule.and_then(|r| r.service_name.as_ref()) {
            Some(s) => {
                self.services.insert(pid, s.clone());
            }
            None => {
                self.services.remove(&pid);
            }
        }
        let exclude = rule.is_some_and(|r| r.action == Action::Exclude);
        match (exclude, self.excluded.contains(&pid)) {
            (true, false) => {
                self.excluded.insert(pid);
                Some(Verdict::Exclude(pid))
            }
            (false, true) => {
                self.excluded.remove(&pid);
                Some(Verdict::Include(pid))
            }
            _ => None,
        }
    }

    /// Tries the rules again on every process in a container: their pods may have become
    /// known (a Kubernetes listing came in).
    pub fn rejudge(&mut self, pod_of: PodOf<'_>) -> Vec<Verdict> {
        if !self.rules_need_containers {
            return Vec::new();
        }
        let pids: Vec<(u32, Option<String>, Option<String>)> = self
            .known
            .iter()
            .filter(|(_, e)| !e.exited)
            .map(|(p, e)| (*p, e.comm.clone(), e.exec_path.clone()))
            .collect();
        pids.into_iter()
            .filter_map(|(pid, comm, path)| {
                let names = [comm.as_deref(), path.as_deref().map(file_name)];
                self.judge(pid, names, pod_of)
            })
            .collect()
    }

    /// Notes the program of every running process (at most [`CAPACITY`]), from
    /// `/proc/PID/exe`: called at start-up, while the agent may still read every process's.
    /// The rules are tried on each; those they exclude are returned.
    pub fn scan_running(&mut self, pod_of: PodOf<'_>) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return verdicts;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(target) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
                continue;
            };
            let path = capped(target.to_string_lossy().into_owned(), PATH_MAX_KEPT);
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|c| c.trim_end().to_string())
                .and_then(|c| capped(c, NAME_CAP));
            let names = [comm.as_deref(), path.as_deref().map(file_name)];
            verdicts.extend(self.judge(pid, names, pod_of));
            if self.known.len() < CAPACITY {
                let entry = Entry {
                    exec_path: path,
                    comm,
                    ..Default::default()
                };
                self.known.insert(pid, entry);
            }
        }
        verdicts
    }

    /// `pid` ran the program at `path` under the task name `comm`: what was read of it is
    /// read again at its next span, and the rules are tried on it (the change, if any).
    pub fn on_exec(
        &mut self,
        pid: u32,
        path: &[u8],
        comm: &str,
        pod_of: PodOf<'_>,
        counters: &mut AgentCounters,
    ) -> Option<Verdict> {
        let path = capped(String::from_utf8_lossy(path).into_owned(), PATH_MAX_KEPT);
        let comm = capped(comm.to_string(), NAME_CAP).filter(|c| !c.is_empty());
        let names = [comm.as_deref(), path.as_deref().map(file_name)];
        let verdict = self.judge(pid, names, pod_of);
        if !self.known.contains_key(&pid) && self.known.len() >= CAPACITY {
            self.sweep();
            if self.known.len() >= CAPACITY {
                counters.drop(DropReason::ProcessTableFull, 1);
                return verdict;
            }
        }
        self.known.insert(
            pid,
            Entry {
                exec_path: path,
                comm,
                ..Default::default()
            },
        );
        verdict
    }

    /// `pid` ended: forgotten at the next [`Processes::sweep`], after its last spans. True
    /// when the rules excluded it (the kernel's slot is to be freed).
    pub fn on_exit(&mut self, pid: u32) -> bool {
        if let Some(e) = self.known.get_mut(&pid) {
            e.exited = true;
        }
        let excluded = self.excluded.contains(&pid);
        if excluded {
            self.ended.push(pid);
        }
        excluded
    }

    /// Forgets the processes that ended.
    pub fn sweep(&mut self) {
        self.known.retain(|_, e| !e.exited);
        let known = &self.known;
        self.services.retain(|p, _| known.contains_key(p));
        for pid in self.ended.drain(..) {
            self.excluded.remove(&pid);
        }
    }

    /// Processes in the table.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Reads what is not known (or no longer trusted) of the processes of `spans`.
    /// A process met here for the first time (forked, not exec'd, since the agent started)
    /// is tried by the rules: the changes are returned.
    pub fn learn<'a>(
        &mut self,
        spans: impl Iterator<Item = &'a Span>,
        now: Instant,
        pod_of: PodOf<'_>,
        counters: &mut AgentCounters,
    ) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for s in spans {
            let pid = s.process.pid;
            let judged = self.known.get(&pid).is_some_and(|e| e.comm.is_some());
            self.learn_pid(pid, now, counters);
            if !judged && !self.rules.is_empty() && !self.excluded.contains(&pid) {
                let (name, path) = match self.get(pid) {
                    Some(a) => (a.executable_name.clone(), a.executable_path.clone()),
                    None => (None, None),
                };
                let names = [name.as_deref(), path.as_deref().map(file_name)];
                verdicts.extend(self.judge(pid, names, pod_of));
                if let Some(e) = self.known.get_mut(&pid) {
                    e.comm = name.or_else(|| Some(String::new()));
                }
            }
        }
        verdicts
    }

    /// Reads what is not known (or no longer trusted) of process `pid`. A process that is
    /// gone and was never in the table is not added (metric series outlive processes).
    pub fn learn_pid(&mut self, pid: u32, now: Instant, counters: &mut AgentCounters) {
        let known = self.known.get(&pid);
        let fresh = known
            .and_then(|e| e.read.as_ref())
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < REFRESH);
        if fresh || (known.is_none() && !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            return;
        }
        if known.is_none() && self.known.len() >= CAPACITY {
            self.sweep();
            if self.known.len() >= CAPACITY {
                counters.drop(DropReason::ProcessTableFull, 1);
                return;
            }
        }
        let entry = self.known.entry(pid).or_default();
        let mut attrs = read_process(
            pid,
            entry.exec_path.as_deref(),
            self.opener.as_mut(),
            counters,
        );
        if let Some(c) = &attrs.container {
            attrs.container_name = self.names.name(&c.id, now).map(String::from);
        }
        entry.read = Some((now, attrs));
    }

    /// What is known of process `pid`.
    pub fn get(&self, pid: u32) -> Option<ProcessAttrs> {
        let read = self.known.get(&pid).and_then(|e| e.read.as_ref());
        let service = self.services.get(&pid);
        if read.is_none() && service.is_none() {
            return None;
        }
        let mut a = read.map(|(_, a)| a.clone()).unwrap_or_default();
        if let Some(s) = service {
            // A rule's name wins over the process's own.
            a.service_name = Some(s.clone());
        }
        Some(a)
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
            if let Some(a) = self.get(pid)
                && a != ProcessAttrs::default()
            {
                out.push((pid, a));
            }
        }
    }
}

/// Reads what /proc says of `pid`, with its program's path from its exec when known.
fn read_process(
    pid: u32,
    exec_path: Option<&str>,
    mut opener: Option<&mut crate::helper::Opener>,
    counters: &mut AgentCounters,
) -> ProcessAttrs {
    use std::io::Read;
    use telegen_core::helper::Kind;
    let container = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| cgroup::container(&text));
    // Another user's: through the helper, which may open it.
    let environ = std::fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .or_else(|| {
            let f = opener.as_mut()?.open(Kind::OpenEnviron, pid, counters)?;
            let mut v = Vec::new();
            f.take(ENVIRON_MAX).read_to_end(&mut v).ok()?;
            Some(v)
        });
    let service_name = environ.as_deref().and_then(service_name);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    let (parent_pid, uid) = status
        .as_deref()
        .map(parent_and_uid)
        .unwrap_or((None, None));
    // The process's name, not the name of the thread that moved the bytes.
    let executable_name = status.as_deref().and_then(|st| {
        st.lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty() && n.len() <= NAME_CAP)
    });
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| command(&c));
    let program = program_file(pid, exec_path, container.is_some()).or_else(|| {
        // The program of another user's process, opened by the helper (checked to be ELF);
        // its path as this process sees the descriptor.
        let f = opener.as_mut()?.open(Kind::OpenExe, pid, counters)?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
        Some((
            f,
            capped(path.to_string_lossy().into_owned(), PATH_MAX_KEPT)?,
        ))
    });
    let (runtime, executable_path) = match program {
        Some((f, path)) => {
            let (rt, path) = runtime_of(&f, &path);
            (rt, Some(path))
        }
        None => (
            None,
            exec_path.filter(|p| p.starts_with('/')).map(String::from),
        ),
    };
    // Node.js says its version only through its installation (see telegen_core::runtime).
    let runtime = runtime.map(|(name, version)| match version {
        None if name == Runtime::Node.name() => {
            let v = environ
                .as_deref()
                .and_then(runtime::node_version_in_environ)
                .or_else(|| exec_path.and_then(runtime::node_version_in_path))
                .or_else(|| {
                    executable_path
                        .as_deref()
                        .and_then(runtime::node_version_in_path)
                });
            (name, v.map(str::to_string))
        }
        v => (name, v),
    });
    ProcessAttrs {
        service_name,
        container,
        parent_pid,
        owner: uid.map(user_name),
        command,
        executable_name,
        executable_path,
        runtime,
        // Filled in by the table, from the runtimes' state it read.
        container_name: None,
        // Filled in at export, from the Kubernetes pod cache and the listener table.
        pod: None,
        server: None,
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
    fn exec_and_exit_keep_the_table_current_and_bounded() {
        let mut p = Processes::default();
        let mut c = AgentCounters::default();
        p.on_exec(7, b"/usr/bin/python3", "x", &|_| None, &mut c);
        p.on_exit(7);
        assert_eq!(p.len(), 1, "kept until its spans are exported");
        p.sweep();
        assert_eq!(p.len(), 0);
        for pid in 0..CAPACITY as u32 {
            p.on_exec(pid + 10, b"/bin/true", "x", &|_| None, &mut c);
        }
        p.on_exec(5, b"/bin/true", "x", &|_| None, &mut c);
        assert_eq!(c.dropped(DropReason::ProcessTableFull), 1);
        p.on_exec(10, b"/bin/false", "x", &|_| None, &mut c);
        assert_eq!(
            c.dropped(DropReason::ProcessTableFull),
            1,
            "a known pid has room"
        );
        // Room is made from the processes that ended.
        p.on_exit(11);
        p.on_exec(5, b"/bin/true", "x", &|_| None, &mut c);
        assert_eq!(c.dropped(DropReason::ProcessTableFull), 1);
        assert_eq!(p.len(), CAPACITY);
    }

    #[test]
    fn rules_decide_at_exec_and_free_the_slot_at_exit() {
        let rules = vec![Rule {
            action: Action::Exclude,
            executable: Some("sshd".into()),
            container: None,
            k8s_namespace: None,
            k8s_label: None,
            service_name: None,
        }];
        let mut p = Processes::with_rules(rules);
        let mut c = AgentCounters::default();
        let v = p.on_exec(40, b"/usr/sbin/sshd", "sshd", &|_| None, &mut c);
        assert_eq!(v, Some(Verdict::Exclude(40)));
        assert!(p.is_excluded(40));
        // The program file's name counts too.
        let v = p.on_exec(41, b"/usr/sbin/sshd", "sshd-session", &|_| None, &mut c);
        assert_eq!(v, Some(Verdict::Exclude(41)));
        // A process that runs another program is tried again.
        let v = p.on_exec(40, b"/usr/bin/bash", "bash", &|_| None, &mut c);
        assert_eq!(v, Some(Verdict::Include(40)));
        assert!(!p.is_excluded(40));
        assert_eq!(p.on_exec(42, b"/bin/true", "true", &|_| None, &mut c), None);
        // Excluded until its last spans are gone, then forgotten.
        assert!(p.on_exit(41));
        assert!(p.is_excluded(41));
        p.sweep();
        assert!(!p.is_excluded(41));
        assert!(!p.on_exit(42));
    }

    #[test]
    fn a_rule_names_the_service() {
        let rule = |exe: &str, service: Option<&str>| Rule {
            action: Action::Include,
            executable: Some(exe.into()),
            container: None,
            k8s_namespace: None,
            k8s_label: None,
            service_name: service.map(String::from),
        };
        let mut p = Processes::with_rules(vec![rule("worker", Some("billing")), rule("x", None)]);
        let mut c = AgentCounters::default();
        assert_eq!(
            p.on_exec(50, b"/opt/worker", "worker", &|_| None, &mut c),
            None
        );
        assert_eq!(
            p.get(50).and_then(|a| a.service_name).as_deref(),
            Some("billing")
        );
        assert_eq!(p.get(51), None, "unknown, and no rule named it");
        // Running another program: the rule no longer matches.
        p.on_exec(50, b"/bin/sh", "sh", &|_| None, &mut c);
        assert_eq!(p.get(50).and_then(|a| a.service_name), None);
    }

    #[test]
    fn this_test_program_read_as_a_process() {
        // This process: its /proc/PID/exe is readable; it is no runtime of those known.
        let me = std::process::id();
        let a = read_process(me, None, None, &mut AgentCounters::default());
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(a.executable_path.as_deref(), exe.to_str());
        assert_eq!(a.runtime, None);
        // A `#!` script names its interpreter.
        let dir = std::env::temp_dir().join(format!("telegen-interp-{me}"));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("tool");
        std::fs::write(&script, "#!/usr/bin/env python3\nprint(1)\n").unwrap();
        let f = File::open(&script).unwrap();
        let (rt, path) = runtime_of(&f, script.to_str().unwrap());
        let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
        assert_eq!(path, python.to_str().unwrap());
        assert_eq!(rt.map(|(n, _)| n), Some("cpython"));
        std::fs::write(&script, "#!/bin/sh\necho\n").unwrap();
        let f = File::open(&script).unwrap();
        assert_eq!(runtime_of(&f, script.to_str().unwrap()).0, None);
        let _ = std::fs::remove_dir_all(&dir);
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
