//! `telegen check`: what this kernel and these privileges allow, and what the configuration
//! will cost in memory. Reads only; changes nothing. Exits 1 with one line per blocker.

use crate::agent::Agent;
use crate::privileges::effective_caps;
use crate::tracefs;
use std::path::Path;
use telegen_common::TcpEvent;
use telegen_config::{CaptureJoin, Config};
use telegen_core::budget::Budget;
use telegen_core::tracefs::{TcpTracepoint, tcp_offsets};
use telegen_export::http::MAX_RESPONSE_BYTES;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// The memory the configuration fixes at start-up.
pub fn budget(config: &Config) -> Budget {
    let mut b = Budget::default();
    b.add(
        "kernel event ring",
        config.limits.ring_buffer_bytes as usize,
    );
    b.add(
        "TCP tables and metric series",
        Agent::tcp_limits(config).bytes(),
    );
    b.add(
        "HTTP tables, span queue, duration series",
        Agent::http_limits(config).bytes(),
    );
    b.add(
        "HTTP/2 connections and their HPACK tables",
        telegen_core::http2::Http2Tracker::bytes(config.limits.http2_connections),
    );
    let protocols = telegen_core::pipeline::Trackers::protocol_bytes(
        config.limits.db_connections,
        config.limits.series_per_metric,
    );
    for (what, bytes) in protocols {
        b.add(what, bytes);
    }
    b.add("process table (512 processes)", crate::processes::bytes());
    b.add(
        "container names (256, at their caps)",
        crate::containers::CAPACITY * (64 + telegen_export::containers::NAME_CAP + 32),
    );
    if crate::kube::endpoint(&config.kubernetes).is_some() {
        // The cache, and the listing that replaces it.
        b.add(
            "Kubernetes pod cache (kubernetes.max_pods)",
            2 * config.kubernetes.max_pods * crate::kube::POD_BYTES_MAX,
        );
    }
    b.add("metrics export queue", config.limits.export_queue_bytes);
    if config
        .export_settings(telegen_config::Signal::Traces)
        .is_some()
    {
        b.add("traces export queue", config.limits.export_queue_bytes);
    }
    let perf = match config.transport {
        telegen_config::Transport::Perf => true,
        telegen_config::Transport::Ring => false,
        telegen_config::Transport::Auto => !crate::kernel::ring_supported(),
    };
    if perf {
        // Records from the per-CPU buffers are merged in time order through a staging area
        // as large as the buffers.
        b.add(
            "perf buffer staging",
            crate::kernel::staging(config.limits.ring_buffer_bytes as usize).bytes(),
        );
    }
    if let Some(sp) = &config.spool {
        // The spool reader holds one segment (or one record larger than a segment).
        b.add(
            "spool segment buffer (disk: spool.max_bytes)",
            crate::spool::segment_target(sp.max_bytes) as usize,
        );
    }
    b.add("HTTP response buffer", MAX_RESPONSE_BYTES);
    b.add("socket read buffer", 16 * 1024);
    b
}

struct Report {
    blockers: Vec<String>,
}

impl Report {
    fn line(&self, status: &str, what: &str, detail: &str) {
        println!("{status:<5} {what:<26} {detail}");
    }
    fn ok(&self, what: &str, detail: &str) {
        self.line("ok", what, detail);
    }
    fn note(&self, what: &str, detail: &str) {
        self.line("note", what, detail);
    }
    fn fail(&mut self, what: &str, detail: &str) {
        self.line("FAIL", what, detail);
        self.blockers.push(format!("{what}: {detail}"));
    }
}

/// Runs the checks; returns the process exit code.
pub fn run(config: &Config) -> i32 {
    let mut r = Report {
        blockers: Vec::new(),
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let (major, minor) = parse_release(release);
    match (major, minor) {
        v if v >= (5, 8) => r.ok("kernel", release),
        v if v >= (5, 5) => r.note(
            "kernel",
            &format!("{release}: no BPF ring buffer before 5.8; records go through perf buffers"),
        ),
        _ => r.fail(
            "kernel",
            &format!(
                "{release} is older than 5.5: the programs need read-only globals (5.2) and a \
                 memory-mapped counter array (5.5)"
            ),
        ),
    }

    let caps = effective_caps();
    let bpf_caps = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
    if bpf_caps {
        r.ok(
            "privileges",
            "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) present",
        );
    } else {
        r.fail(
            "privileges",
            "need CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or grant them",
        );
    }

    match tracefs::find() {
        Some(p) => {
            r.ok("tracefs", &p.display().to_string());
            check_tracepoints(&mut r, &p, config.capture_join);
        }
        None if has(caps, CAP_SYS_ADMIN) => r.note(
            "tracefs",
            "not mounted; the agent mounts it at /sys/kernel/tracing on start",
        ),
        None => r.fail(
            "tracefs",
            "not mounted, and mounting needs CAP_SYS_ADMIN: mount -t tracefs tracefs /sys/kernel/tracing",
        ),
    }

    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        r.ok("BTF", "present (not required)");
    } else {
        r.note(
            "BTF",
            "absent; not required (tracepoint layouts come from tracefs)",
        );
    }

    if bpf_caps {
        match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
            Ok(true) => r.ok("BPF ring buffer", "supported"),
            Ok(false) => r.note(
                "BPF ring buffer",
                "not supported: perf buffers are used instead",
            ),
            Err(e) if e.io_error.raw_os_error() == Some(libc::ENOSYS) => r.fail(
                "bpf()",
                "the bpf() syscall is not implemented here (an emulator such as qemu-user, \
                 or a kernel built without CONFIG_BPF_SYSCALL)",
            ),
            Err(e) => r.fail(
                "bpf()",
                &format!("the bpf() syscall failed: {}: {}", e.call, e.io_error),
            ),
        }
    } else {
        r.note("BPF ring buffer", "not probed without privileges");
    }

    if Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        r.ok("uprobes", "available (used by the TLS tracer)");
    } else {
        r.note("uprobes", "unavailable: TLS and Go tracing will not run");
    }
    match std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid") {
        Ok(v) => r.ok(
            "perf_event",
            &format!("available (perf_event_paranoid={})", v.trim()),
        ),
        Err(_) => r.note("perf_event", "unavailable: the CPU profiler will not run"),
    }
    r.note("kprobes", "not used (tracepoints only)");
    match (&config.user, config.helper) {
        (None, _) => r.note(
            "privileged helper",
            "none: the agent keeps root ([security] user = \"root\") and probes a late libssl itself",
        ),
        (Some(_), false) => r.note(
            "privileged helper",
            "off: a libssl mapped after start-up is not probed, other users' environments are not read",
        ),
        (Some(u), true) => r.ok(
            "privileged helper",
            &format!(
                "forked at start-up, as {u}: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (uprobes), \
                 CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH; no network, its own seccomp list"
            ),
        ),
    }
    match config
        .cloud
        .as_ref()
        .map(|p| (p, crate::cloud::plan(p, &crate::cloud::read_dmi())))
    {
        None => r.note("cloud metadata", "off"),
        Some((p, crate::cloud::Plan::Ask(_, why))) => {
            r.ok("cloud metadata", &format!("asks {} ({why})", p.endpoint))
        }
        Some((_, crate::cloud::Plan::Skip(why))) => {
            r.ok("cloud metadata", &format!("not asked: {why}"))
        }
    }
    match crate::seccomp::availability() {
        Ok(how) => r.ok("seccomp", how),
        Err(why) if config.seccomp != telegen_config::Seccomp::Off => r.fail("seccomp", why),
        Err(why) => r.note("seccomp", why),
    }

    let b = budget(config);
    println!("\nmemory budget (fixed at start-up):");
    for i in &b.items {
        println!("  {:<44} {:>10} bytes", i.what, i.bytes);
    }
    println!(
        "  {:<44} {:>10} bytes ({:.1} MiB)",
        "total",
        b.total(),
        b.total() as f64 / 1048576.0
    );
    let ring = config.limits.ring_buffer_bytes as usize;
    let (tcp, data) = (
        std::mem::size_of::<TcpEvent>(),
        std::mem::size_of::<telegen_common::DataEvent>(),
    );
    println!(
        "  record sizes: TCP {tcp} bytes, HTTP data {} to {data} bytes; the ring holds about {} \
         TCP records, or at least {} HTTP data records",
        data - telegen_common::DATA_CAP,
        ring / (tcp + 8),
        ring / (data + 8)
    );

    if r.blockers.is_empty() {
        println!("\nready: telegen can run here");
        0
    } else {
        for b in &r.blockers {
            eprintln!("telegen check: {b}");
        }
        1
    }
}

fn check_tracepoints(r: &mut Report, tracing: &Path, join: CaptureJoin) {
    for tp in TcpTracepoint::ALL {
        let (group, name) = tp.event();
        let what = format!("{group}:{name}");
        let required = tp == TcpTracepoint::InetSockSetState;
        match tracefs::read_format(tracing, group, name) {
            Ok(f) => match tcp_offsets(tp, &f) {
                Ok(_) => r.ok(&what, "layout understood"),
                Err(e) if required => r.fail(&what, &format!("unsupported layout: {e}")),
                Err(e) => r.note(&what, &format!("unsupported layout ({e}); will be skipped")),
            },
            Err(e) if required => r.fail(&what, &format!("cannot read its format: {e}")),
            Err(e) => r.note(&what, &format!("unavailable ({e}); will be skipped")),
        }
    }
    // Request tracing: how a read or write is joined to its socket.
    let syscalls = tracing.join("events/syscalls/sys_enter_writev").exists();
    match (crate::kernel::choose_join(tracing, join), syscalls) {
        (Ok(j), true) => r.ok("HTTP request tracing", j.describe()),
        (Err(e), _) => r.note("HTTP request tracing", &format!("unavailable: {e}")),
        (Ok(_), false) => r.note(
            "HTTP request tracing",
            "unavailable: no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)",
        ),
    }
}

fn parse_release(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_kernel_releases() {
        assert_eq!(super::parse_release("6.18.44-fc-v769"), (6, 18));
        assert_eq!(super::parse_release("4.19.0"), (4, 19));
        assert_eq!(super::parse_release(""), (0, 0));
    }
}
