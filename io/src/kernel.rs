//! Loading and attaching the kernel programs, and reading what they report.
//!
//! The object is built by `build.rs` and embedded. Before load, each TCP program's field
//! offsets are read from tracefs and set as read-only globals; a tracepoint whose layout does
//! not fit is skipped with one log line and the others run. The ring size comes from config.

use crate::tracefs;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use telegen_common::{EVENTS_MAP, KERNEL_DROPS_MAP, KernelDrop, TcpTpOffsets};
use telegen_core::selfmetrics::{AgentCounters, DropReason};
use telegen_core::tracefs::{TcpTracepoint, tcp_offsets};

/// The compiled kernel programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telegen-ebpf"));

/// The loaded programs and the maps user space reads.
pub struct Kernel {
    /// Keeps programs and links alive.
    _ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    /// Tracepoints attached, for the start-up line.
    pub attached: Vec<&'static str>,
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

impl Kernel {
    /// Loads and attaches everything this kernel supports.
    pub fn load(ring_bytes: u32) -> Result<Self, String> {
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
        for (tp, o) in &offsets {
            loader.override_global(tp.offsets_global(), o, true);
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| format!("loading the eBPF object: {e}"))?;
        let mut attached = Vec::new();
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
        let ring = ebpf
            .take_map(EVENTS_MAP)
            .ok_or("map EVENTS missing from the object")?;
        let ring = RingBuf::try_from(ring).map_err(|e| format!("ring buffer: {e}"))?;
        let drops = ebpf
            .take_map(KERNEL_DROPS_MAP)
            .ok_or("map KERNEL_DROPS missing from the object")?;
        let drops = PerCpuArray::try_from(drops).map_err(|e| format!("drop counters: {e}"))?;
        Ok(Self {
            _ebpf: ebpf,
            ring,
            drops,
            attached,
        })
    }

    /// Copies the kernel's drop counters (summed over CPUs) into the agent's counters.
    pub fn read_drops(&self, counters: &mut AgentCounters) {
        for k in KernelDrop::ALL {
            if let Ok(values) = self.drops.get(&(k as u32), 0) {
                let total = values.iter().fold(0u64, |a, v| a.saturating_add(*v));
                counters.set(DropReason::from_kernel(k), total);
            }
        }
    }
}
