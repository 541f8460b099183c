//! telegen's kernel programs (bpfel/bpfeb, `no_std`, `no_main`).
//!
//! Tracepoints only: they need neither kprobes nor BTF. Field offsets come from user space
//! as read-only globals (filled from tracefs `format` files), so one object runs on kernels
//! whose tracepoint records differ. Each program filters in the kernel, writes one fixed-size
//! record to the `EVENTS` ring and counts every record it could not write in `KERNEL_DROPS`.
//! The record layouts live in `telegen-common`; this crate holds no layout of its own.
#![no_std]
#![no_main]
// Atomic add on map memory: the BPF target's core lacks `fetch_add` (built with nightly).
#![allow(internal_features)]
#![feature(core_intrinsics)]

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read},
    macros::{map, tracepoint},
    maps::{Array, PerfEventArray, RingBuf},
    programs::TracePointContext,
};
use telegen_common::{
    AF_INET, DEFAULT_RING_BYTES, EventHeader, EventKind, FIELD_ABSENT, KERNEL_DROP_REASONS,
    KernelDrop, TRANSPORT_PERF, TcpEvent, TcpTpOffsets, tcp_state,
};

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// One counter per reason, added to atomically. Mmapable, so that user space reads it
/// without bpf() calls (which need CAP_BPF, dropped after start-up).
#[map(name = "KERNEL_DROPS")]
static KERNEL_DROPS: Array<u64> = Array::with_max_entries(
    KERNEL_DROP_REASONS,
    aya_ebpf::bindings::BPF_F_MMAPABLE as u32,
);

/// The transport when the kernel has no BPF ring buffer (before 5.8). Sized to the CPUs by
/// the loader.
#[map(name = "EVENTS_PERF")]
static EVENTS_PERF: PerfEventArray<TcpEvent> = PerfEventArray::new(0);

/// Which of the two the programs write to; set by user space before load. A read-only
/// global, so the verifier prunes the branch not taken (and the helper it calls, which an
/// older kernel would not know).
#[unsafe(no_mangle)]
static TRANSPORT: u32 = 0;

/// Unread bytes in the ring from which a write wakes user space up; below it, records wait
/// for the agent's periodic drain (one wake-up per batch instead of one per record).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

#[unsafe(no_mangle)]
static SET_STATE_OFFSETS: TcpTpOffsets = TcpTpOffsets::ABSENT;
#[unsafe(no_mangle)]
static RETRANSMIT_OFFSETS: TcpTpOffsets = TcpTpOffsets::ABSENT;
#[unsafe(no_mangle)]
static SEND_RESET_OFFSETS: TcpTpOffsets = TcpTpOffsets::ABSENT;
#[unsafe(no_mangle)]
static RECEIVE_RESET_OFFSETS: TcpTpOffsets = TcpTpOffsets::ABSENT;

const IPPROTO_TCP: u16 = 6;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // SAFETY: a read-only global that user space sets before load.
    let off = unsafe { core::ptr::read_volatile(&SET_STATE_OFFSETS) };
    finish(try_tcp_event(&ctx, &off, EventKind::TcpStateChange))
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(&RETRANSMIT_OFFSETS) };
    finish(try_tcp_event(&ctx, &off, EventKind::TcpRetransmit))
}

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(&SEND_RESET_OFFSETS) };
    finish(try_tcp_event(&ctx, &off, EventKind::TcpSendReset))
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(&RECEIVE_RESET_OFFSETS) };
    finish(try_tcp_event(&ctx, &off, EventKind::TcpReceiveReset))
}

fn finish(r: Result<(), KernelDrop>) -> u32 {
    if let Err(reason) = r {
        if let Some(count) = KERNEL_DROPS.get_ptr_mut(reason as u32) {
            // SAFETY: a valid, aligned map slot; other CPUs add to it atomically too. The BPF
            // target has no `AtomicU64::fetch_add`; the intrinsic lowers to BPF's atomic add.
            unsafe {
                core::intrinsics::atomic_xadd::<
                    u64,
                    u64,
                    { core::intrinsics::AtomicOrdering::Relaxed },
                >(count, 1)
            };
        }
    }
    0
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u32) -> Result<T, KernelDrop> {
    // SAFETY: bpf_probe_read copes with any address; the offset came from tracefs.
    unsafe { bpf_probe_read(ctx.as_ptr().cast::<u8>().add(offset as usize).cast::<T>()) }
        .map_err(|_| KernelDrop::ReadFailed)
}

#[inline(always)]
fn read_or<T>(ctx: &TracePointContext, offset: u32, absent: T) -> Result<T, KernelDrop> {
    if offset == FIELD_ABSENT {
        Ok(absent)
    } else {
        read(ctx, offset)
    }
}

#[inline(always)]
fn interesting_state(new_state: u32) -> bool {
    matches!(
        new_state,
        tcp_state::ESTABLISHED | tcp_state::SYN_SENT | tcp_state::LISTEN | tcp_state::CLOSE
    )
}

#[inline(always)]
fn try_tcp_event(
    ctx: &TracePointContext,
    off: &TcpTpOffsets,
    kind: EventKind,
) -> Result<(), KernelDrop> {
    if off.skaddr == FIELD_ABSENT {
        // Not configured by user space: nothing to read safely.
        return Ok(());
    }
    let protocol: u16 = read_or(ctx, off.protocol, IPPROTO_TCP)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let (old_state, new_state) = if kind == EventKind::TcpStateChange {
        let old: i32 = read(ctx, off.oldstate)?;
        let new: i32 = read(ctx, off.newstate)?;
        if !interesting_state(new as u32) {
            return Ok(());
        }
        (old as u32, new as u32)
    } else {
        let state: i32 = read_or(ctx, off.state, 0)?;
        (state as u32, state as u32)
    };

    let sock: u64 = read(ctx, off.skaddr)?;
    let mut sport: u16 = read_or(ctx, off.sport, 0)?;
    let mut dport: u16 = read_or(ctx, off.dport, 0)?;
    let mut family: u16 = read_or(ctx, off.family, AF_INET)?;
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if off.sockaddr != 0 {
        // struct sockaddr_in{,6}: family, port (big endian), then the address at 4 (v4)
        // or 8 (v6, after flowinfo).
        let s: [u8; 28] = read(ctx, off.saddr)?;
        let d: [u8; 28] = read(ctx, off.daddr)?;
        family = u16::from_ne_bytes([s[0], s[1]]);
        sport = u16::from_be_bytes([s[2], s[3]]);
        dport = u16::from_be_bytes([d[2], d[3]]);
        if family == AF_INET {
            saddr[..4].copy_from_slice(&s[4..8]);
            daddr[..4].copy_from_slice(&d[4..8]);
        } else {
            saddr.copy_from_slice(&s[8..24]);
            daddr.copy_from_slice(&d[8..24]);
        }
    } else if family == AF_INET {
        let s: [u8; 4] = read_or(ctx, off.saddr, [0; 4])?;
        let d: [u8; 4] = read_or(ctx, off.daddr, [0; 4])?;
        saddr[..4].copy_from_slice(&s);
        daddr[..4].copy_from_slice(&d);
    } else {
        saddr = read_or(ctx, off.saddr_v6, [0; 16])?;
        daddr = read_or(ctx, off.daddr_v6, [0; 16])?;
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let event = TcpEvent {
        header: EventHeader {
            kind: kind as u32,
            size: core::mem::size_of::<TcpEvent>() as u32,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            // SAFETY: a helper with no preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            comm,
        },
        sock,
        saddr,
        daddr,
        sport,
        dport,
        family,
        _pad0: 0,
        old_state,
        new_state,
    };
    // SAFETY: a read-only global that user space sets before load.
    if unsafe { core::ptr::read_volatile(&TRANSPORT) } == TRANSPORT_PERF {
        return perf_output(ctx, &event);
    }
    let Some(mut entry) = EVENTS.reserve::<TcpEvent>(0) else {
        return Err(KernelDrop::RingFull);
    };
    entry.write(event);
    // SAFETY: a read-only global that user space sets before load.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    let pending = EVENTS.query(u64::from(aya_ebpf::bindings::BPF_RB_AVAIL_DATA));
    let wake = if threshold == 0 || pending >= threshold {
        aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP
    } else {
        aya_ebpf::bindings::BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(wake));
    Ok(())
}

/// Writes to this CPU's perf buffer; a failure (a full buffer: -ENOSPC) is counted here, as
/// for the ring, so that it shows at once (the kernel's own lost-sample records come only with
/// the next successful write).
#[inline(always)]
fn perf_output(ctx: &TracePointContext, event: &TcpEvent) -> Result<(), KernelDrop> {
    // SAFETY: the map is a static perf event array (its definition is the first and only
    // field of the wrapper); the event is a valid value of the size given.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(EVENTS_PERF).cast_mut().cast(),
            u64::from(aya_ebpf::bindings::BPF_F_CURRENT_CPU),
            core::ptr::from_ref(event).cast_mut().cast(),
            core::mem::size_of::<TcpEvent>() as u64,
        )
    };
    if rc < 0 {
        Err(KernelDrop::RingFull)
    } else {
        Ok(())
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
