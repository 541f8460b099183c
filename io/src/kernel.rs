//! Loading and attaching the kernel programs, and reading what they report.
//!
//! The object is built by `build.rs` and embedded. Before load, each TCP program's field
//! offsets are read from tracefs and set as read-only globals; a tracepoint whose layout does
//! not fit is skipped with one log line and the others run. The ring size comes from config.
//!
//! Records reach user space through the BPF ring buffer (5.8+) or, on older kernels or when
//! asked, through per-CPU perf buffers; a read-only global tells the programs which. Both are
//! read through memory mapped at start-up.

use crate::tracefs;
use aya::maps::perf::{PerfEvent, PerfEventArray, PerfEventArrayBuffer};
use aya::maps::{MapData, MapType, RingBuf};
use aya::programs::{TracePoint, UProbe, uprobe::UProbeScope};
use aya::{Ebpf, EbpfLoader};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use telegen_common::{
    AGENT_TGID_GLOBAL, CloseEvent, DataEvent, EVENTS_MAP, EVENTS_PERF_MAP, EXCLUDED_ANY_GLOBAL,
    EXCLUDED_COMMS_CAP, EXCLUDED_COMMS_GLOBAL, EXCLUDED_MAP, EXCLUDED_PORTS_CAP,
    EXCLUDED_PORTS_GLOBAL, EXCLUDED_PROBE, EXCLUDED_SLOTS, EXEC_FILENAME_GLOBAL, FIELD_ABSENT,
    JOIN_DESCRIPTOR, JOIN_GLOBAL, JOIN_SOCK_LENGTH, KERNEL_DROP_REASONS, KERNEL_DROPS_MAP,
    KernelDrop, RCV_SPACE_SKADDR_GLOBAL, SOCK_OFFSETS_GLOBAL, SSL_PROBES, SockOffsets,
    TRANSPORT_GLOBAL, TRANSPORT_PERF, TRANSPORT_RING, TcpTpOffsets, WAKEUP_BYTES_GLOBAL,
    excluded_slot,
};
use telegen_config::{CaptureJoin, Transport};
use telegen_core::reorder::Reorder;
use telegen_core::selfmetrics::{AgentCounters, DropReason};
use telegen_core::tracefs::{
    TcpTracepoint, exec_filename_offset, rcv_space_skaddr_offset, tcp_offsets,
};

/// The compiled kernel programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telegen-ebpf"));

/// The loaded programs and the maps user space reads.
pub struct Kernel {
    /// Keeps programs and links alive.
    ebpf: Ebpf,
    events: Events,
    drops: DropCounters,
    /// Processes the rules exclude: the programs capture nothing of them.
    pub excluded: Excluded,
    /// The descriptors of the programs' attachments (bpf links), for [`Kernel::detach`].
    links: Vec<RawFd>,
    /// Tracepoints attached, for the start-up line.
    pub attached: Vec<&'static str>,
    /// The libssl files probed (device, inode), with request tracing on.
    tls_probed: Option<Vec<(u64, u64)>>,
}

/// Raises RLIMIT_MEMLOCK for kernels that charge BPF memory to it (before 5.11).
/// Newer kernels do not need it; failure is tolerated.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK (not needed on kernels >= 5.11)");
    }
}

/// Runs `f` (which builds an `EbpfLoader`) while /sys/kernel/btf/vmlinux reads as empty.
///
/// `EbpfLoader::new` parses the kernel's BTF eagerly (several MiB of file, about 19 MiB of
/// heap on a 6.x kernel) even though these programs use no CO-RE relocations; that parse was
/// the agent's whole start-up peak. In a private mount namespace, /dev/null is bound over the
/// file for the duration of the call, then the agent returns to its original namespace. When
/// any step fails (no CAP_SYS_ADMIN, no namespaces) `f` simply runs as is.
fn without_kernel_btf<T>(f: impl FnOnce() -> T) -> T {
    const VMLINUX: &std::ffi::CStr = c"/sys/kernel/btf/vmlinux";
    if std::fs::metadata("/sys/kernel/btf/vmlinux").is_err() {
        return f();
    }
    let Ok(original) = std::fs::File::open("/proc/self/ns/mnt") else {
        return f();
    };
    // SAFETY: plain syscalls on valid NUL-terminated paths; the process is single-threaded
    // here (unshare(CLONE_NEWNS) requires it and fails cleanly otherwise).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return f();
        }
        let isolated = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
            && libc::mount(
                c"/dev/null".as_ptr(),
                VMLINUX.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) == 0;
        if !isolated {
            log::debug!("could not hide kernel BTF from the loader; loading with it");
        }
        let out = f();
        use std::os::fd::AsRawFd;
        if libc::setns(original.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
            log::warn!(
                "could not return to the original mount namespace: {}",
                std::io::Error::last_os_error()
            );
        }
        out
    }
}

/// Where records arrive.
enum Events {
    Ring(RingBuf<MapData>),
    /// One buffer per online CPU, and the staging area that merges them in time order.
    Perf(Vec<PerfEventArrayBuffer<MapData>>, Reorder),
}

/// Whether this kernel has BPF ring buffers (needs the bpf() syscall).
pub fn ring_supported() -> bool {
    matches!(aya::sys::is_map_supported(MapType::RingBuf), Ok(true))
}

/// The record that fills the ring past this fraction wakes the agent up (and, past three
/// times as much, every record does); below, the agent's periodic drain
/// ([`DRAIN_INTERVAL`]) collects the records.
const WAKEUP_FRACTION: u32 = 4;
/// How often the agent drains the kernel's buffers without being woken up.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Smallest record any program writes: bounds the records a staging area can hold.
const RECORD_LEN_MIN: usize = core::mem::size_of::<CloseEvent>();

/// Payload capture: every read and write syscall that can carry a socket's bytes, and close.
const CAPTURE_PROGRAMS: [(&str, &str); 21] = [
    ("syscalls", "sys_enter_read"),
    ("syscalls", "sys_exit_read"),
    ("syscalls", "sys_enter_recvfrom"),
    ("syscalls", "sys_exit_recvfrom"),
    ("syscalls", "sys_enter_readv"),
    ("syscalls", "sys_exit_readv"),
    ("syscalls", "sys_enter_recvmsg"),
    ("syscalls", "sys_exit_recvmsg"),
    ("syscalls", "sys_enter_write"),
    ("syscalls", "sys_exit_write"),
    ("syscalls", "sys_enter_sendto"),
    ("syscalls", "sys_exit_sendto"),
    ("syscalls", "sys_enter_writev"),
    ("syscalls", "sys_exit_writev"),
    ("syscalls", "sys_enter_sendmsg"),
    ("syscalls", "sys_exit_sendmsg"),
    ("syscalls", "sys_enter_sendmmsg"),
    ("syscalls", "sys_exit_sendmmsg"),
    ("syscalls", "sys_enter_close"),
    // The process table: which program each process runs, and when it ends.
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
];

/// The socket join of Linux 6.4+: tracepoints that name the socket of the call they fire in.
const SOCKET_JOIN_PROGRAMS: [(&str, &str); 2] =
    [("sock", "sock_send_length"), ("sock", "sock_recv_length")];

/// The descriptor join (Linux 4.16+): the descriptor a thread connects, and the socket of
/// each TCP read that copied data (with `sock:inet_sock_set_state`, attached anyway).
const DESCRIPTOR_JOIN_PROGRAMS: [(&str, &str); 2] = [
    ("syscalls", "sys_enter_connect"),
    ("tcp", "tcp_rcv_space_adjust"),
];

/// How this kernel joins a read or write to its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// `sock:sock_{send,recv}_length` (Linux 6.4+).
    Socket,
    /// Per descriptor, learnt at `connect` and at each TCP read; the offset of `skaddr` in
    /// `tcp:tcp_rcv_space_adjust`'s record.
    Descriptor(u32),
}

impl Join {
    /// What `telegen check` and the log call it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Socket => "socket join (sock:sock_send_length and sock:sock_recv_length)",
            Self::Descriptor(_) => {
                "descriptor join (sys_enter_connect, sock:inet_sock_set_state and \
                 tcp:tcp_rcv_space_adjust; DNS over UDP is not traced)"
            }
        }
    }

    fn programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Socket => &SOCKET_JOIN_PROGRAMS,
            Self::Descriptor(_) => &DESCRIPTOR_JOIN_PROGRAMS,
        }
    }
}

/// The join `wanted` gets on this kernel, or why request tracing is not possible.
pub fn choose_join(tracing: &std::path::Path, wanted: CaptureJoin) -> Result<Join, String> {
    let socket = || {
        if tracefs::sockets_named(tracing) {
            Ok(Join::Socket)
        } else {
            Err(
                "the socket join needs the tracepoints sock:sock_send_length and \
                 sock:sock_recv_length (Linux 6.4+)"
                    .to_string(),
            )
        }
    };
    let descriptor = || {
        tracefs::read_format(tracing, "tcp", "tcp_rcv_space_adjust")
            .map_err(|e| e.to_string())
            .and_then(|f| rcv_space_skaddr_offset(&f).map_err(|e| e.to_string()))
            .map(Join::Descriptor)
            .map_err(|e| {
                format!("the descriptor join needs tcp:tcp_rcv_space_adjust (Linux 4.16+): {e}")
            })
    };
    match wanted {
        CaptureJoin::Socket => socket(),
        CaptureJoin::Descriptor => descriptor(),
        CaptureJoin::Auto => socket().or_else(|s| descriptor().map_err(|d| format!("{s}; {d}"))),
    }
}

/// The program an HTTP/2 call's exit tail-calls to gather its iovec buffers (not attached).
const GATHER_PROGRAM: &str = "gather_http2";
const GATHER_PROGS_MAP: &str = "GATHER_PROGS";

/// Loads the HTTP/2 gathering program into its program array, before the programs that
/// tail-call it are attached; without it those calls are captured from their first
/// buffer only.
fn install_gather(ebpf: &mut Ebpf) {
    let installed = (|| -> Result<(), String> {
        let prog: &mut TracePoint = ebpf
            .program_mut(GATHER_PROGRAM)
            .ok_or("program missing from the object")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load()
            .map_err(|e| format!("the verifier refused it: {e}"))?;
        let fd = prog
            .fd()
            .map_err(|e| e.to_string())?
            .try_clone()
            .map_err(|e| e.to_string())?;
        let map = ebpf
            .map_mut(GATHER_PROGS_MAP)
            .ok_or("program array missing")?;
        let mut array = aya::maps::ProgramArray::try_from(map).map_err(|e| e.to_string())?;
        array.set(0, &fd, 0).map_err(|e| e.to_string())
    })();
    if let Err(e) = installed {
        log::warn!(
            "{GATHER_PROGRAM}: {e}; HTTP/2 calls that move several buffers are captured from \
             their first buffer only (gRPC spans may be lost, counted as protocol_desync)"
        );
    }
}

/// Loads the OpenSSL uprobe programs (so that a libssl found later, by the helper, can be
/// probed without loading anything then); whether all loaded.
fn load_tls(ebpf: &mut Ebpf) -> bool {
    let mut all = true;
    for (prog, _) in SSL_PROBES {
        let p: Option<&mut UProbe> = ebpf.program_mut(prog).and_then(|p| p.try_into().ok());
        let Some(p) = p else {
            log::warn!("uprobe program {prog} missing from the object");
            all = false;
            continue;
        };
        if let Err(e) = p.load() {
            log::warn!("uprobe {prog}: the verifier refused the program: {e}");
            all = false;
        }
    }
    all
}

/// Attaches the (loaded) OpenSSL uprobes to the libssl at `path`; how many attached. A
/// library without a symbol (the `_ex` forms came with OpenSSL 1.1.1) is skipped for that
/// symbol only.
fn attach_tls_file(ebpf: &mut Ebpf, path: &Path) -> Result<u32, String> {
    let mut ok = 0;
    let mut last = String::new();
    for (prog, symbol) in SSL_PROBES {
        let p: Option<&mut UProbe> = ebpf.program_mut(prog).and_then(|p| p.try_into().ok());
        let Some(p) = p else { continue };
        match p.attach(symbol, path, UProbeScope::AllProcesses) {
            Ok(_) => ok += 1,
            Err(e) => {
                // The kernel's reason is the source's.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                log::debug!("uprobe {symbol} on {}: {why}", path.display());
                last = why;
            }
        }
    }
    if ok == 0 {
        return Err(last);
    }
    Ok(ok)
}

/// The OpenSSL uprobes, on every libssl found at start-up.
fn attach_tls(ebpf: &mut Ebpf, attached: &mut Vec<&'static str>) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    if !load_tls(ebpf) {
        log::warn!("the OpenSSL uprobes did not all load: HTTPS may not be traced");
    }
    let files = crate::procfs::libssl_files();
    if files.is_empty() {
        log::info!("no OpenSSL libssl found at start-up: HTTPS is traced once a process maps one");
        return Vec::new();
    }
    let mut ok = 0;
    let mut probed = Vec::new();
    for f in &files {
        if let Ok(n) = attach_tls_file(ebpf, f) {
            ok += n;
            if let Ok(m) = std::fs::metadata(f) {
                probed.push((m.dev(), m.ino()));
            }
        }
    }
    if ok > 0 {
        attached.push("SSL_read/SSL_write uprobes");
        log::info!(
            "TLS plaintext: {ok} uprobes on {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        log::warn!("no OpenSSL uprobe could be attached: HTTPS is not traced");
    }
    probed
}

/// Loads (verifies) the request-tracing programs without attaching them, then unloads
/// them: (accepted, all).
fn verify_capture(ebpf: &mut Ebpf) -> (usize, usize) {
    let mut ok = 0;
    let names = CAPTURE_PROGRAMS
        .iter()
        .chain(&SOCKET_JOIN_PROGRAMS)
        .chain(&DESCRIPTOR_JOIN_PROGRAMS)
        .map(|(_, n)| *n)
        .chain([GATHER_PROGRAM])
        .chain(SSL_PROBES.iter().map(|(p, _)| *p));
    let mut total = 0;
    for name in names {
        total += 1;
        let loaded = match ebpf.program_mut(name) {
            Some(aya::programs::Program::TracePoint(p)) => p.load().and_then(|()| p.unload()),
            Some(aya::programs::Program::UProbe(p)) => p.load().and_then(|()| p.unload()),
            _ => {
                log::warn!("program {name} missing from the object");
                continue;
            }
        };
        match loaded {
            Ok(()) => ok += 1,
            Err(e) => log::warn!("program {name}: the verifier refused it: {e}"),
        }
    }
    (ok, total)
}

fn attach_capture(ebpf: &mut Ebpf, group: &str, name: &str) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load()
        .map_err(|e| format!("the verifier refused the program: {e}"))?;
    prog.attach(group, name)
        .map_err(|e| format!("attach failed: {e}"))?;
    Ok(())
}

/// The area that merges perf buffers holding `bytes` in all.
pub fn staging(bytes: usize) -> Reorder {
    Reorder::with_capacity(bytes, bytes / RECORD_LEN_MIN)
}

/// The clock of `bpf_ktime_get_ns`, which stamps every record.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Largest record any program writes: a perf sample that wraps is copied into this.
const MAX_RECORD: usize = core::mem::size_of::<DataEvent>() + 8;

impl Kernel {
    /// The transport, its name, and the fds to poll.
    pub fn transport(&self) -> &'static str {
        match self.events {
            Events::Ring(_) => "ring buffer",
            Events::Perf(..) => "perf buffers",
        }
    }

    pub fn event_fds(&self) -> Vec<RawFd> {
        match &self.events {
            Events::Ring(r) => vec![r.as_raw_fd()],
            Events::Perf(bufs, _) => bufs.iter().map(AsRawFd::as_raw_fd).collect(),
        }
    }

    /// Hands every record waiting in the kernel to `on_record`, until none is left; returns
    /// the samples the perf buffers reported lost meanwhile. Allocates nothing. Records from
    /// perf buffers come in time order; the few stamped after this pass began wait for the
    /// next one, unless `last` (see [`telegen_core::reorder`]).
    pub fn drain(&mut self, last: bool, mut on_record: impl FnMut(&[u8])) -> u64 {
        match &mut self.events {
            Events::Ring(ring) => {
                while let Some(item) = ring.next() {
                    on_record(&item);
                }
                0
            }
            Events::Perf(bufs, staged) => {
                let watermark = if last { u64::MAX } else { monotonic_ns() };
                let mut lost = 0;
                let mut wrapped = [0u8; MAX_RECORD];
                let mut stage = |record: &[u8]| {
                    if staged.push(record).is_err() {
                        // More than the staging area holds in one pass: release what is
                        // there (order is kept within each part) and go on.
                        staged.release(u64::MAX, &mut on_record);
                        if staged.push(record).is_err() {
                            on_record(record);
                        }
                    }
                };
                for buf in bufs.iter_mut() {
                    buf.for_each(|ev| match ev {
                        PerfEvent::Sample { head, tail: [] } => stage(head),
                        PerfEvent::Sample { head, tail } => {
                            // A sample that straddles the end of the buffer: join its halves.
                            let n = (head.len() + tail.len()).min(MAX_RECORD);
                            let h = head.len().min(n);
                            wrapped[..h].copy_from_slice(&head[..h]);
                            wrapped[h..n].copy_from_slice(&tail[..n - h]);
                            stage(&wrapped[..n]);
                        }
                        PerfEvent::Lost { count } => lost += count,
                    });
                }
                staged.release(watermark, &mut on_record);
                lost
            }
        }
    }

    /// Loads and attaches everything this kernel supports.
    pub fn load(
        ring_bytes: u32,
        transport: Transport,
        capture: bool,
        join: CaptureJoin,
        excluded_ports: &[u16],
        excluded_comms: &[String],
        exclude_processes: bool,
    ) -> Result<Self, String> {
        let perf = match transport {
            Transport::Perf => true,
            Transport::Ring => false,
            Transport::Auto => {
                let ring = ring_supported();
                if !ring {
                    log::info!("this kernel has no BPF ring buffer (5.8+): using perf buffers");
                }
                !ring
            }
        };
        raise_memlock();
        let tracing = tracefs::ensure_mounted()?;
        let mut offsets: Vec<(TcpTracepoint, TcpTpOffsets)> = Vec::new();
        for tp in TcpTracepoint::ALL {
            let (group, name) = tp.event();
            let format = match tracefs::read_format(&tracing, group, name) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("tracepoint {group}:{name} unavailable ({e}); skipping it");
                    continue;
                }
            };
            match tcp_offsets(tp, &format) {
                Ok(o) => offsets.push((tp, o)),
                Err(e) => {
                    log::warn!("tracepoint {group}:{name}: unsupported layout: {e}; skipping it")
                }
            }
        }
        let mut loader = without_kernel_btf(EbpfLoader::new);
        loader.map_max_entries(EVENTS_MAP, ring_bytes);
        let selected = if perf { TRANSPORT_PERF } else { TRANSPORT_RING };
        loader.override_global(TRANSPORT_GLOBAL, &selected, true);
        let wakeup = u64::from(ring_bytes / WAKEUP_FRACTION);
        loader.override_global(WAKEUP_BYTES_GLOBAL, &wakeup, true);
        if perf {
            // The ring map cannot be created on kernels before 5.8; the programs' ring
            // branch is pruned by the verifier since the global above is read-only.
            loader.allow_unsupported_maps();
        }
        for (tp, o) in &offsets {
            loader.override_global(tp.offsets_global(), o, true);
        }
        let me = std::process::id();
        loader.override_global(AGENT_TGID_GLOBAL, &me, true);
        let mut ports = [0u16; EXCLUDED_PORTS_CAP];
        for (slot, p) in ports.iter_mut().zip(excluded_ports) {
            *slot = *p;
        }
        loader.override_global(EXCLUDED_PORTS_GLOBAL, &ports, true);
        let mut comms = [[0u8; 16]; EXCLUDED_COMMS_CAP];
        for (slot, c) in comms.iter_mut().zip(excluded_comms) {
            let n = c.len().min(15);
            slot[..n].copy_from_slice(&c.as_bytes()[..n]);
        }
        loader.override_global(EXCLUDED_COMMS_GLOBAL, &comms, true);
        let any = u32::from(exclude_processes);
        loader.override_global(EXCLUDED_ANY_GLOBAL, &any, true);
        let exec_filename = tracefs::read_format(&tracing, "sched", "sched_process_exec")
            .map_err(|e| e.to_string())
            .and_then(|f| exec_filename_offset(&f).map_err(|e| e.to_string()));
        match &exec_filename {
            Ok(o) => {
                loader.override_global(EXEC_FILENAME_GLOBAL, o, true);
            }
            Err(e) => log::warn!(
                "sched:sched_process_exec unusable ({e}): processes are named from /proc only"
            ),
        }
        let sock = if cfg!(target_pointer_width = "32") {
            SockOffsets::ILP32
        } else {
            SockOffsets::LP64
        };
        loader.override_global(SOCK_OFFSETS_GLOBAL, &sock, true);
        let joined = if capture {
            choose_join(&tracing, join)
        } else {
            Err("request tracing is off".to_string())
        };
        let (mode, skaddr) = match joined {
            Ok(Join::Descriptor(skaddr)) => (JOIN_DESCRIPTOR, skaddr),
            _ => (JOIN_SOCK_LENGTH, FIELD_ABSENT),
        };
        loader.override_global(JOIN_GLOBAL, &mode, true);
        loader.override_global(RCV_SPACE_SKADDR_GLOBAL, &skaddr, true);
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| format!("loading the eBPF object: {e}"))?;
        let events = open_events(&mut ebpf, perf, ring_bytes)?;
        let mut attached = Vec::new();
        let mut tls_probed = None;
        for (tp, _) in &offsets {
            let (group, name) = tp.event();
            let prog: &mut TracePoint = ebpf
                .program_mut(tp.program())
                .ok_or_else(|| format!("program {} missing from the object", tp.program()))?
                .try_into()
                .map_err(|e| format!("program {}: {e}", tp.program()))?;
            if let Err(e) = prog.load() {
                log::warn!("tracepoint {group}:{name}: the verifier refused the program: {e}");
                continue;
            }
            match prog.attach(group, name) {
                Ok(_) => attached.push(name),
                Err(e) => log::warn!("tracepoint {group}:{name}: attach failed: {e}"),
            }
        }
        if !attached.contains(&TcpTracepoint::InetSockSetState.program()) {
            return Err(
                "could not attach sock:inet_sock_set_state; no TCP data can be collected".into(),
            );
        }
        // Request tracing needs a way to join each call to its socket: without one the
        // syscall programs would cost every read and write for nothing.
        if capture && joined.is_err() {
            // Not attached, but still shown to this kernel's verifier: what a kernel upgrade
            // would run is known to load here.
            let (verified, total) = verify_capture(&mut ebpf);
            let why = joined.as_ref().err().map_or("", String::as_str);
            log::warn!(
                "no request tracing: {why}; TCP metrics are not affected \
                 ({verified} of its {total} programs pass this kernel's verifier)"
            );
        } else if let (true, Ok(join)) = (capture, joined) {
            log::info!(
                "request tracing joins calls to sockets by the {}",
                join.describe()
            );
            install_gather(&mut ebpf);
            let mut missing = Vec::new();
            for &(group, name) in CAPTURE_PROGRAMS.iter().chain(join.programs()) {
                match attach_capture(&mut ebpf, group, name) {
                    Ok(()) => attached.push(name),
                    Err(e) => {
                        log::warn!("tracepoint {group}:{name}: {e}");
                        missing.push(name);
                    }
                }
            }
            tls_probed = Some(attach_tls(&mut ebpf, &mut attached));
            if !missing.is_empty() {
                log::warn!(
                    "requests moved by {} are not seen: spans and request metrics are incomplete",
                    missing.join(", ")
                );
            }
        }
        let drops = ebpf
            .take_map(KERNEL_DROPS_MAP)
            .ok_or("map KERNEL_DROPS missing from the object")?;
        let aya::maps::Map::Array(drops) = drops else {
            return Err("map KERNEL_DROPS is not an array".into());
        };
        let drops = DropCounters::map(drops)?;
        let excluded = match ebpf.take_map(EXCLUDED_MAP) {
            Some(aya::maps::Map::Array(m)) => Excluded::map(m)?,
            _ => return Err("map EXCLUDED missing from the object".into()),
        };
        Ok(Self {
            ebpf,
            events,
            drops,
            excluded,
            links: link_fds(),
            attached,
            tls_probed,
        })
    }

    /// The libssl files (device, inode) probed so far; `None` without request tracing.
    pub fn tls_probed(&self) -> Option<&[(u64, u64)]> {
        self.tls_probed.as_deref()
    }

    /// Attaches the OpenSSL uprobes to the libssl at `path` (the helper's, or the agent's
    /// own as root), noting its (device, inode); how many attached.
    pub fn attach_tls_file(&mut self, path: &Path, id: (u64, u64)) -> Result<u32, String> {
        let n = attach_tls_file(&mut self.ebpf, path)?;
        if let Some(p) = self.tls_probed.as_mut() {
            p.push(id);
        }
        Ok(n)
    }

    /// The descriptors of the OpenSSL uprobe programs: what the helper keeps open.
    pub fn tls_program_fds(&self) -> Vec<RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        SSL_PROBES
            .iter()
            .filter_map(|(prog, _)| {
                let p: &UProbe = self.ebpf.program(prog)?.try_into().ok()?;
                Some(p.fd().ok()?.as_fd().as_raw_fd())
            })
            .collect()
    }

    /// Copies the kernel's drop counters into the agent's counters. Reads shared memory:
    /// no system call, so it works after privileges are dropped.
    pub fn read_drops(&self, counters: &mut AgentCounters) {
        for k in KernelDrop::ALL {
            counters.set(DropReason::from_kernel(k), self.drops.get(k as usize));
        }
    }
}

/// Pages per CPU for perf buffers holding about `total` bytes in all: a power of two, at
/// least one.
fn perf_pages(total: usize, page: usize, cpus: usize) -> usize {
    let per_cpu = (total / page / cpus.max(1)).max(1);
    1 << (usize::BITS - 1 - per_cpu.leading_zeros())
}

/// The kernel's drop counters, mapped read-only into the agent's memory.
struct DropCounters {
    ptr: std::ptr::NonNull<u64>,
    len: usize,
    /// Keeps the map (and so the mapping's object) alive.
    _map: MapData,
}

/// The process's bpf link descriptors (read from /proc/self/fd while it may).
fn link_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf_link")
        })
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

impl Kernel {
    /// Detaches every program, several at a time, then lets the process end without the
    /// one-by-one teardown: closing a link waits for an RCU grace period (about 60 ms here,
    /// 35 links), and `closer`'s threads wait for theirs together.
    pub fn detach(self, closer: &Closer) {
        let links = self.links.clone();
        if links.is_empty() {
            return;
        }
        // The rest (programs, maps, the ring's mapping) goes with the process, at once.
        std::mem::forget(self);
        closer.close(links);
    }
}

/// Threads that close descriptors in parallel at shutdown. Started once privileges are
/// dropped and before the seccomp filter (which then covers them too): they only wait on a
/// channel and close what they are handed.
pub struct Closer {
    jobs: Vec<std::sync::mpsc::Sender<Vec<RawFd>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Closer {
    /// Returns once every thread is running: their start-up system calls (robust list,
    /// rseq, name) are made before the seccomp filter exists.
    pub fn spawn(threads: usize) -> std::io::Result<Self> {
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut jobs = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<RawFd>>();
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("telegen-close{i}"))
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = done_tx.send(());
                    for fds in rx {
                        for fd in fds {
                            // SAFETY: descriptors handed over by their owner, which forgot them.
                            unsafe { libc::close(fd) };
                        }
                        let _ = done_tx.send(());
                    }
                })?;
            jobs.push(tx);
        }
        for _ in 0..threads {
            let _ = done.recv();
        }
        Ok(Self { jobs, done })
    }

    /// Closes `fds`, spread over the threads, and waits until all are closed.
    fn close(&self, fds: Vec<RawFd>) {
        let n = self.jobs.len().max(1);
        let mut parts: Vec<Vec<RawFd>> = vec![Vec::new(); n];
        for (i, fd) in fds.into_iter().enumerate() {
            parts[i % n].push(fd);
        }
        let mut sent = 0;
        for (tx, part) in self.jobs.iter().zip(parts) {
            if tx.send(part).is_ok() {
                sent += 1;
            }
        }
        for _ in 0..sent {
            let _ = self.done.recv();
        }
    }
}

/// Maps the first `bytes` of a BPF array created with `BPF_F_MMAPABLE` (shared with the
/// kernel): the address and the length mapped (whole pages).
fn mmap_array(
    map: &MapData,
    bytes: usize,
    writable: bool,
    what: &str,
) -> Result<(*mut u8, usize), String> {
    use std::os::fd::AsFd;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = bytes.div_ceil(page) * page;
    let fd = map.fd().as_fd().as_raw_fd();
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: mapping a BPF array created with BPF_F_MMAPABLE, shared.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED || p.is_null() {
        return Err(format!(
            "mapping {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((p.cast(), len))
}

impl DropCounters {
    fn map(map: MapData) -> Result<Self, String> {
        let bytes = KERNEL_DROP_REASONS as usize * std::mem::size_of::<u64>();
        let (p, len) = mmap_array(&map, bytes, false, "the drop counters")?;
        let ptr = std::ptr::NonNull::new(p.cast::<u64>()).ok_or("mmap returned null")?;
        Ok(Self {
            ptr,
            len,
            _map: map,
        })
    }

    fn get(&self, i: usize) -> u64 {
        if i >= KERNEL_DROP_REASONS as usize {
            return 0;
        }
        // SAFETY: in bounds of the mapping, 8-byte aligned (page-aligned base); the kernel
        // updates it atomically, so an atomic load reads a whole value.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.as_ptr().add(i)) }
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The excluded processes, shared with the programs (`telegen_common::EXCLUDED_MAP`):
/// written through a mapping, so it keeps working once privileges are gone.
pub struct Excluded {
    ptr: std::ptr::NonNull<u64>,
    len: usize,
    _map: MapData,
}

impl Excluded {
    fn map(map: MapData) -> Result<Self, String> {
        let bytes = EXCLUDED_SLOTS as usize * std::mem::size_of::<u64>();
        let (p, len) = mmap_array(&map, bytes, true, "the excluded processes")?;
        let ptr = std::ptr::NonNull::new(p.cast::<u64>()).ok_or("mmap returned null")?;
        Ok(Self {
            ptr,
            len,
            _map: map,
        })
    }

    fn slot(&self, i: u32) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: in bounds of the mapping (masked to the slots), 8-byte aligned; the
        // programs read it concurrently, so every access is atomic.
        unsafe {
            std::sync::atomic::AtomicU64::from_ptr(
                self.ptr.as_ptr().add((i & (EXCLUDED_SLOTS - 1)) as usize),
            )
        }
    }

    /// Has the programs capture nothing of `tgid`; false when its slots are all taken.
    pub fn insert(&self, tgid: u32) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let first = excluded_slot(tgid);
        let v = u64::from(tgid);
        if (0..EXCLUDED_PROBE).any(|i| self.slot(first + i).load(Relaxed) == v) {
            return true;
        }
        (0..EXCLUDED_PROBE).any(|i| {
            self.slot(first + i)
                .compare_exchange(0, v, Relaxed, Relaxed)
                .is_ok()
        })
    }

    /// Captures `tgid` again (it ended, or a rule now includes it).
    pub fn remove(&self, tgid: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        let first = excluded_slot(tgid);
        for i in 0..EXCLUDED_PROBE {
            let _ = self
                .slot(first + i)
                .compare_exchange(u64::from(tgid), 0, Relaxed, Relaxed);
        }
    }
}

impl Drop for Excluded {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl Drop for DropCounters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Opens the transport's buffers. For perf buffers this must come before any program is
/// attached: until a CPU's buffer is in the map, a record from that CPU fails (-ENOENT)
/// and would be counted as a full buffer.
fn open_events(ebpf: &mut Ebpf, perf: bool, ring_bytes: u32) -> Result<Events, String> {
    Ok(if perf {
        let map = ebpf
            .take_map(EVENTS_PERF_MAP)
            .ok_or("map EVENTS_PERF missing from the object")?;
        let mut array = PerfEventArray::try_from(map).map_err(|e| format!("perf buffers: {e}"))?;
        let cpus = aya::util::online_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let pages = perf_pages(ring_bytes as usize, page, cpus.len());
        let mut bufs = Vec::with_capacity(cpus.len());
        let staged = staging(pages * page * cpus.len());
        for cpu in cpus {
            bufs.push(
                array
                    .open(cpu, Some(pages))
                    .map_err(|e| format!("perf buffer of CPU {cpu}: {e}"))?,
            );
        }
        Events::Perf(bufs, staged)
    } else {
        let ring = ebpf
            .take_map(EVENTS_MAP)
            .ok_or("map EVENTS missing from the object")?;
        Events::Ring(RingBuf::try_from(ring).map_err(|e| format!("ring buffer: {e}"))?)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn perf_buffers_split_the_ring_budget() {
        assert_eq!(super::perf_pages(256 * 1024, 4096, 2), 32);
        assert_eq!(super::perf_pages(256 * 1024, 4096, 3), 16);
        assert_eq!(super::perf_pages(4096, 4096, 8), 1);
    }
}
