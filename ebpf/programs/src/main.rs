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

mod floor;

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read, bpf_probe_read_user},
    macros::{map, tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerfEventArray, ProgramArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use telegen_common::{
    AF_INET, CloseEvent, DATA_CAP, DEFAULT_RING_BYTES, DataEvent, EXCLUDED_COMMS_CAP,
    EXCLUDED_PORTS_CAP, EXCLUDED_PROBE, EXCLUDED_SLOTS, EventHeader, EventKind, ExecEvent,
    ExitEvent, FIELD_ABSENT, JOIN_DESCRIPTOR, KERNEL_DROP_REASONS, KernelDrop, MQTT_PORTS,
    PATH_CAP, SockHead, SockOffsets, TRANSPORT_PERF, TcpEvent, TcpTpOffsets, data_flags, direction,
    excluded_slot, tcp_state,
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

/// Unread bytes in the ring whose crossing wakes user space up (and from three times as
/// many, every write); below it, records wait for the agent's periodic drain (one wake-up
/// per batch instead of one per record).
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
const IPPROTO_UDP: u16 = 17;
/// DNS's port: a UDP or TCP socket with it as its remote port is a resolver's.
const DNS_PORT: u16 = 53;

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

/// This task's name, all 16 bytes (zero-padded); zeros if it cannot be read.
#[inline(always)]
fn comm() -> [u8; 16] {
    comm_as()
}

/// The types a task's name is read as: 16 bytes, any bits valid.
trait CommBuf: Copy {
    const ZERO: Self;
}
impl CommBuf for [u8; 16] {
    const ZERO: Self = [0; 16];
}
impl CommBuf for [u64; 2] {
    const ZERO: Self = [0; 2];
}

/// [`comm`] as bytes or as two words (compared as such, from an aligned slot). The helper
/// writes the whole buffer, so it starts uninitialised (aya's `bpf_get_current_comm` zeroes
/// it first, byte by byte, in a call).
#[inline(always)]
fn comm_as<T: CommBuf>() -> T {
    const { assert!(core::mem::size_of::<T>() == 16) };
    let mut c = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the helper writes all 16 bytes of the buffer (it pads the name with zeros).
    let rc =
        unsafe { aya_ebpf::helpers::generated::bpf_get_current_comm(c.as_mut_ptr().cast(), 16) };
    if rc == 0 {
        // SAFETY: written by the helper, above; every bit pattern is a valid `T`.
        unsafe { c.assume_init() }
    } else {
        T::ZERO
    }
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
    if kind == EventKind::TcpStateChange && new_state == tcp_state::SYN_SENT {
        learn_connect(sock);
    }
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
    let comm = comm();
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
    emit(ctx, &event)
}

/// Writes one record to the transport user space chose.
#[inline(always)]
fn emit<C: EbpfContext, T>(ctx: &C, event: &T) -> Result<(), KernelDrop> {
    emit_prefix(ctx, event, core::mem::size_of::<T>() as u64)
}

/// Writes the first `size` bytes of `event` (at most its size).
#[inline(always)]
fn emit_prefix<C: EbpfContext, T>(ctx: &C, event: &T, size: u64) -> Result<(), KernelDrop> {
    if size > core::mem::size_of::<T>() as u64 || size == 0 {
        return Ok(());
    }
    // SAFETY: a read-only global that user space sets before load.
    if unsafe { core::ptr::read_volatile(&TRANSPORT) } == TRANSPORT_PERF {
        return perf_output(ctx, event, size);
    }
    // SAFETY: a read-only global that user space sets before load.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    let pending = EVENTS.query(u64::from(aya_ebpf::bindings::BPF_RB_AVAIL_DATA));
    // A wake-up is an interrupt on this CPU, inside the traced call (in a VM, an exit to the
    // hypervisor): only the record that crosses the threshold sends one, not every record
    // until the agent has read them; past three times the threshold (the agent is late),
    // every record does. Below, the agent's periodic drain collects the records.
    // A record takes its size and an 8-byte header, rounded up to 8, in the ring. Each
    // multiple of the threshold crossed wakes, so that a crossing missed (two CPUs that read
    // the fill at once) is made up at the next.
    let room = (size + 8 + 7) & !7;
    let crosses = threshold != 0 && pending / threshold != (pending + room) / threshold;
    let wake = if threshold == 0 || crosses || pending >= 3 * threshold {
        aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP
    } else {
        aya_ebpf::bindings::BPF_RB_NO_WAKEUP
    };
    // SAFETY: `event` is a valid value of its size (the helper copies it).
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            core::ptr::addr_of!(EVENTS).cast_mut().cast(),
            core::ptr::from_ref(event).cast_mut().cast(),
            size,
            u64::from(wake),
        )
    };
    if rc < 0 {
        Err(KernelDrop::RingFull)
    } else {
        Ok(())
    }
}

/// Writes to this CPU's perf buffer; a failure (a full buffer: -ENOSPC) is counted here, as
/// for the ring, so that it shows at once (the kernel's own lost-sample records come only with
/// the next successful write).
#[inline(always)]
fn perf_output<C: EbpfContext, T>(ctx: &C, event: &T, size: u64) -> Result<(), KernelDrop> {
    // SAFETY: the map is a static perf event array (its definition is the first and only
    // field of the wrapper); the event is a valid value of the size given.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_perf_event_output(
            ctx.as_ptr(),
            core::ptr::addr_of!(EVENTS_PERF).cast_mut().cast(),
            u64::from(aya_ebpf::bindings::BPF_F_CURRENT_CPU),
            core::ptr::from_ref(event).cast_mut().cast(),
            size,
        )
    };
    if rc < 0 {
        Err(KernelDrop::RingFull)
    } else {
        Ok(())
    }
}

// ---- Payload capture from syscall tracepoints ----------------------------------------
//
// A read or write is followed from its syscall's entry to its exit, per thread. In between,
// `sock:sock_recv_length` / `sock:sock_send_length` (Linux 6.4+) fire in the same thread when
// the descriptor is a socket, naming its `struct sock`: only such calls, on TCP, are captured,
// at the exit, with the connection read from the socket. Writes are kept only when their
// first bytes look like HTTP, a Redis command, an MQTT CONNECT, a PostgreSQL startup, a
// MySQL handshake, AMQP's protocol header or a Kafka request (or a DNS query, kept if the socket turns out to
// be a resolver's UDP socket), or when their descriptor already carried one of those but HTTP (whose
// messages can be a few bytes of anything); reads are
// looked at when they return, and a socket on an MQTT port is MQTT whatever its first bytes
// (brokers read a packet's first byte alone).
//
// Kernels before 6.4 lack those two tracepoints: there the descriptor join ([`JOIN`]) learns
// each descriptor's socket once, from `sock:inet_sock_set_state` inside `connect` and from
// `tcp:tcp_rcv_space_adjust` inside each TCP read that copied data (4.16+), keeps it in
// `FD_SOCKS` until `close`, and gives it to the calls no tracepoint named. UDP is not seen
// that way (DNS over UDP is not traced there).
//
// The records of `syscalls:sys_enter_*` are the common fields (8 bytes), the syscall number
// (8 with padding), then each argument as 8 bytes from offset 16; `sys_exit_*` records hold
// the return value at 16. That layout is the same on every kernel with syscall tracepoints.

const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const RET: usize = 16;

/// A read or write between its syscall's entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    /// A user buffer, an iovec array or a msghdr, per `how`.
    ptr: u64,
    /// The socket, once `sock_{send,recv}_length` named it; 0 until then.
    sock: u64,
    fd: u32,
    how: u32,
    dir: u32,
    /// [`data_flags`] of what is captured.
    flags: u16,
    /// The socket is UDP (only DNS is captured on those).
    udp: u16,
    /// A write's first buffer and its size, as its entry read them (the exit does not read
    /// them again); 0 for reads and for the OpenSSL calls.
    buf: u64,
    buf_len: u64,
    /// The protocol a write's entry found in its first bytes; 0 when it found none (a DNS
    /// query, confirmed by its socket) or did not look.
    protocol: u64,
}

const PLAIN: u32 = 0;
const IOVEC: u32 = 1;
const MSGHDR: u32 = 2;
/// A thread's [`PENDING`] entry between calls: its last call has ended.
const DONE: u32 = u32::MAX;
/// An array of `struct mmsghdr` (`sendmmsg`): a msghdr, then the bytes the message moved.
const MMSGHDR: u32 = 3;
/// `sizeof(struct mmsghdr)` on 64-bit, and the offset of its `msg_len`.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN: u64 = 56;
/// Messages of one `sendmmsg` captured (a resolver sends its A and AAAA queries in one).
const MMSG_CAPTURED: u64 = 2;

/// The agent's own process: never captured (set by user space before load).
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets::LP64;

/// How a call is joined to its socket (`telegen_common::JOIN_GLOBAL`); set by user space
/// before load, read-only, so the verifier prunes the join not taken.
#[unsafe(no_mangle)]
static JOIN: u32 = 0;

/// Offset of `skaddr` in `tcp:tcp_rcv_space_adjust`'s record, from tracefs.
#[unsafe(no_mangle)]
static RCV_SPACE_SKADDR: u32 = FIELD_ABSENT;

/// Descriptor join: the TCP socket (`struct sock` address) of each descriptor
/// (tgid << 32 | fd) seen connecting or reading; dropped at `close`, an LRU for the
/// descriptors of processes that ended without closing them.
#[map(name = "FD_SOCKS")]
static FD_SOCKS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16384, 0);

/// Descriptor join: the descriptor each thread is calling `connect` on, until the socket's
/// move to SYN_SENT (in the same thread) names it. An LRU: a connect that never gets there
/// (UDP, an error) leaves an entry that the thread's next connect replaces.
#[map(name = "CONNECTING")]
static CONNECTING: LruHashMap<u64, u32> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn descriptor_join() -> bool {
    // SAFETY: a read-only global that user space sets before load.
    let join = unsafe { core::ptr::read_volatile(&JOIN) };
    join == JOIN_DESCRIPTOR
}

/// Descriptor join: `sock` is what descriptor `fd` of this process goes through; written
/// only when it changed (an LRU update costs more than the lookup).
#[inline(always)]
fn learn_fd(fd: u32, sock: u64) {
    let key = fd_key(fd);
    // SAFETY: the value is copied at once.
    if unsafe { FD_SOCKS.get(&key) }.copied() != Some(sock) {
        let _ = FD_SOCKS.insert(&key, &sock, 0);
    }
}

/// Descriptor join: a socket of this thread moved to SYN_SENT, which happens inside
/// `connect`: it is the socket of the descriptor being connected.
#[inline(always)]
fn learn_connect(sock: u64) {
    if !descriptor_join() {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(fd) = (unsafe { CONNECTING.get(&id) }).copied() else {
        return;
    };
    let _ = CONNECTING.remove(&id);
    learn_fd(fd, sock);
}

/// The socket of a call that no socket tracepoint named: in the descriptor join, the one its
/// descriptor was last seen with.
#[inline(always)]
fn joined_sock(sock: u64, fd: u32) -> u64 {
    if sock != 0 || !descriptor_join() || fd == u32::MAX {
        return sock;
    }
    // SAFETY: the value is copied at once.
    unsafe { FD_SOCKS.get(&fd_key(fd)) }.copied().unwrap_or(0)
}

/// Bytes of a [`DataEvent`] before its data.
const DATA_HEADER: usize = core::mem::size_of::<DataEvent>() - DATA_CAP;

/// Each thread's read or write between its entry and exit, by pid_tgid. A thread's entry
/// lives from its first call to its end (`sched_process_exit`), marked [`DONE`] between
/// calls. LRU: on a node with more than 8192 threads that read or write, the entries of
/// the threads idle longest make room (an entry no thread exit removes, as that of a
/// thread that called exec from outside the group leader, goes the same way).
#[map(name = "PENDING")]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(8192, 0);

/// Descriptors (tgid << 32 | fd) that carried captured bytes, with their protocol
/// ([`FD_HTTP`], [`FD_REDIS`], [`FD_MQTT`], [`FD_POSTGRES`], [`FD_MYSQL`], [`FD_DNS`],
/// [`FD_AMQP`], [`FD_KAFKA`]): their close is reported.
#[map(name = "CAPTURED_FDS")]
static CAPTURED_FDS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// Room to build a [`DataEvent`], larger than the BPF stack; `slack` lets the verifier
/// see that a copy of at most [`DATA_CAP`] bytes at an offset below [`DATA_CAP`] stays in
/// the value (what [`gather`] does).
#[repr(C)]
struct DataScratch {
    event: DataEvent,
    slack: [u8; DATA_CAP],
}

#[map(name = "DATA_SCRATCH")]
static DATA_SCRATCH: PerCpuArray<DataScratch> = PerCpuArray::with_max_entries(1, 0);

/// Buffers of one call's iovec array that [`gather`] copies at most (gRPC writes each
/// header name and value of a block from a buffer of its own).
const IOV_GATHERED: u64 = 32;

const FD_HTTP: u8 = 1;
const FD_REDIS: u8 = 2;
const FD_MQTT: u8 = 3;
const FD_POSTGRES: u8 = 4;
const FD_MYSQL: u8 = 5;
const FD_DNS: u8 = 6;
const FD_AMQP: u8 = 7;
const FD_KAFKA: u8 = 8;
const FD_HTTP2: u8 = 9;

/// `CAPTURED_FDS` key of this process's descriptor `fd`.
#[inline(always)]
fn fd_key(fd: u32) -> u64 {
    (bpf_get_current_pid_tgid() & 0xffff_ffff_0000_0000) | u64::from(fd)
}

/// The protocol a descriptor of this process carried, 0 if none.
#[inline(always)]
fn fd_protocol(fd: u32) -> u8 {
    // SAFETY: the value is copied at once.
    unsafe { CAPTURED_FDS.get(&fd_key(fd)) }
        .copied()
        .unwrap_or(0)
}

/// What a call of `len` bytes on `fd`, whose first eight bytes are `h` ([`head`]), is: a
/// protocol to capture, or 0.
#[inline(always)]
fn protocol_of_head(fd: u32, h: Option<[u8; 8]>, len: u64) -> u8 {
    let seen = first_bytes_protocol(h);
    if seen == FD_HTTP || seen == FD_HTTP2 || len == 0 {
        return seen;
    }
    protocol_with(seen, fd_protocol(fd), len)
}

/// The protocol of a call of `len` bytes whose first bytes open `seen` (0: none), on a
/// descriptor that carried `tagged` ([`fd_protocol`]).
#[inline(always)]
fn protocol_with(seen: u8, tagged: u8, len: u64) -> u8 {
    if seen == FD_HTTP || seen == FD_HTTP2 {
        return seen;
    }
    // Every protocol but HTTP/1: its messages can be a few bytes of anything. An HTTP/2
    // frame can start like a binary protocol's message (a SETTINGS frame reads as a Kafka
    // request): a descriptor's HTTP/2 stays.
    if len > 0 && (tagged == FD_HTTP2 || (seen == 0 && tagged > FD_HTTP)) {
        return tagged;
    }
    seen
}

/// The protocol the first bytes of a call open, or 0.
#[inline(always)]
fn first_bytes_protocol(h: Option<[u8; 8]>) -> u8 {
    let Some(h) = h else {
        return 0;
    };
    if looks_like_http(&h) {
        return FD_HTTP;
    }
    // The start of HTTP/2's connection preface (`PRI * HTTP/2.0`).
    if h == *b"PRI * HT" {
        return FD_HTTP2;
    }
    if looks_like_resp_command(&h) {
        return FD_REDIS;
    }
    if looks_like_mqtt_connect(&h) {
        return FD_MQTT;
    }
    if looks_like_postgres_startup(&h) {
        return FD_POSTGRES;
    }
    if looks_like_mysql_handshake(&h) {
        return FD_MYSQL;
    }
    if h == *b"AMQP\x00\x00\x09\x01" {
        return FD_AMQP;
    }
    if looks_like_kafka_request(&h) {
        return FD_KAFKA;
    }
    0
}

#[inline(always)]
fn arg(ctx: &TracePointContext, at: usize) -> u64 {
    // SAFETY: within the syscall tracepoint's record (layout above), aligned.
    unsafe { field(ctx, at) }
}

/// The field at `at`, a constant, of a tracepoint's record: a load from the record itself,
/// which a tracepoint program may read (from offset 8, aligned to the field's size), with
/// no helper call (`read_at`'s `bpf_probe_read` costs about 50 ns each time). Offsets known
/// only at load time (from tracefs) go through [`read`]: the verifier takes direct loads
/// only at offsets written in the instruction.
///
/// # Safety
/// `at` is within the record, at least 8 and a multiple of `T`'s size.
#[inline(always)]
unsafe fn field<T: Copy>(ctx: &TracePointContext, at: usize) -> T {
    // SAFETY: per the caller; volatile, so that the load keeps its width and offset.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(at).cast::<T>()) }
}

/// Processes excluded by the user's rules (see `telegen_common::EXCLUDED_MAP`).
#[map(name = "EXCLUDED")]
static EXCLUDED: Array<u64> =
    Array::with_max_entries(EXCLUDED_SLOTS, aya_ebpf::bindings::BPF_F_MMAPABLE as u32);

/// 1 when the rules may exclude processes by tgid; set by user space before load.
#[unsafe(no_mangle)]
static EXCLUDED_ANY: u32 = 0;

/// Ports excluded by the user's rules (0: unused); set by user space before load.
#[unsafe(no_mangle)]
static EXCLUDED_PORTS: [u16; EXCLUDED_PORTS_CAP] = [0; EXCLUDED_PORTS_CAP];

/// Task names excluded by the user's rules; set by user space before load.
#[unsafe(no_mangle)]
static EXCLUDED_COMMS: [[u8; 16]; EXCLUDED_COMMS_CAP] = [[0; 16]; EXCLUDED_COMMS_CAP];

/// Whether this process is not to be captured: the agent itself, or one the rules exclude
/// (by its task name, or by its tgid).
#[inline(always)]
fn ours() -> bool {
    // SAFETY: a read-only global that user space sets before load.
    let agent = unsafe { core::ptr::read_volatile(&AGENT_TGID) };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == agent {
        return true;
    }
    // Each name read as two words, in place (the list is too large for the stack).
    let name = |i: usize| {
        // SAFETY: a read-only global that user space sets before load; `i` is in bounds.
        unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(EXCLUDED_COMMS[i]).cast::<[u64; 2]>())
        }
    };
    if name(0)[0] != 0 {
        let comm: [u64; 2] = comm_as();
        for i in 0..EXCLUDED_COMMS_CAP {
            let c = name(i);
            if c[0] == 0 {
                break;
            }
            if c == comm {
                return true;
            }
        }
    }
    // SAFETY: a read-only global that user space sets before load.
    if unsafe { core::ptr::read_volatile(&EXCLUDED_ANY) } == 0 {
        return false;
    }
    let first = excluded_slot(tgid);
    for i in 0..EXCLUDED_PROBE {
        if EXCLUDED.get((first + i) & (EXCLUDED_SLOTS - 1)) == Some(&u64::from(tgid)) {
            return true;
        }
    }
    false
}

/// Whether a socket with local port `sport` and remote port `dport` is excluded.
#[inline(always)]
fn port_excluded(sport: u16, dport: u16) -> bool {
    // SAFETY: a read-only global that user space sets before load.
    let ports = unsafe { core::ptr::read_volatile(&EXCLUDED_PORTS) };
    for p in ports {
        if p != 0 && (p == sport || p == dport) {
            return true;
        }
    }
    false
}

/// Whether the first bytes look like an HTTP/1.x request or response.
#[inline(always)]
fn looks_like_http(b: &[u8; 8]) -> bool {
    matches!(
        b,
        [b'G', b'E', b'T', b' ', ..]
            | [b'P', b'O', b'S', b'T', b' ', ..]
            | [b'P', b'U', b'T', b' ', ..]
            | [b'H', b'E', b'A', b'D', b' ', ..]
            | [b'D', b'E', b'L', b'E', b'T', b'E', b' ', ..]
            | [b'P', b'A', b'T', b'C', b'H', b' ', ..]
            | [b'O', b'P', b'T', b'I', b'O', b'N', b'S', b' ']
            | [b'H', b'T', b'T', b'P', b'/', b'1', b'.', _]
    )
}

/// Whether the first bytes start a Redis command: an array of bulk strings (`*N\r\n$`).
#[inline(always)]
fn looks_like_resp_command(b: &[u8; 8]) -> bool {
    match b {
        [b'*', d, b'\r', b'\n', b'$', ..] => d.is_ascii_digit(),
        [b'*', d, e, b'\r', b'\n', b'$', ..] => d.is_ascii_digit() && e.is_ascii_digit(),
        _ => false,
    }
}

/// Whether the first bytes are an MQTT CONNECT: `\x10`, a remaining length of one or two
/// bytes, then the protocol name `\0\x04MQTT`.
#[inline(always)]
fn looks_like_mqtt_connect(b: &[u8; 8]) -> bool {
    match b {
        [0x10, l, 0, 4, b'M', b'Q', b'T', b'T'] => *l & 0x80 == 0,
        [0x10, l, m, 0, 4, b'M', b'Q', b'T'] => *l & 0x80 != 0 && *m & 0x80 == 0,
        _ => false,
    }
}

/// Whether the first bytes are a PostgreSQL startup message of protocol 3.0: a length
/// under 64 KiB, then the code `00 03 00 00`.
#[inline(always)]
fn looks_like_postgres_startup(b: &[u8; 8]) -> bool {
    matches!(b, [0, 0, _, _, 0, 3, 0, 0])
}

/// Whether the first bytes are a MySQL server's handshake: a length under 64 KiB, sequence
/// 0, protocol version 10, then a version's first characters (`10.`, `8.0`, `5.5`).
#[inline(always)]
fn looks_like_mysql_handshake(b: &[u8; 8]) -> bool {
    let v = |c: u8| c.is_ascii_digit() || c == b'.';
    matches!(b, [_, _, 0, 0, 10, d, ..] if d.is_ascii_digit()) && v(b[6]) && v(b[7])
}

/// Whether the first bytes are a request a Kafka client opens a connection with: a size
/// under 64 KiB, then ApiVersions, Metadata (v1 on: v0 reads as a PostgreSQL startup),
/// Produce (v1 on, as every client since Kafka 0.9: v0 reads as an HTTP/2 SETTINGS,
/// WINDOW_UPDATE or DATA frame) or Fetch, at a version up to 20.
#[inline(always)]
fn looks_like_kafka_request(b: &[u8; 8]) -> bool {
    match b {
        [0, 0, _, _, 0, key, 0, v] => match *key {
            1 | 18 => *v <= 20,
            0 | 3 => *v >= 1 && *v <= 20,
            _ => false,
        },
        _ => false,
    }
}

/// Whether the `len` bytes at `buf` start like a DNS query over UDP: a header with the
/// QR bit clear, opcode QUERY, one question and no answers.
#[inline(always)]
fn looks_like_dns_query(buf: u64, len: u64) -> bool {
    len >= 17 && dns_query_head(peek(buf))
}

/// Whether the first eight bytes of a call of 17 or more open a DNS query.
#[inline(always)]
fn dns_query_head(h: Option<[u8; 8]>) -> bool {
    matches!(h, Some([_, _, f, _, 0, 1, 0, 0]) if f & 0xf8 == 0)
}

/// The first buffer of a call: `(base, len)`. `len` is the buffer's size, not what moved.
#[inline(always)]
fn first_buffer(ptr: u64, how: u32, plain_len: u64) -> Option<(u64, u64)> {
    let iov = match how {
        PLAIN => return Some((ptr, plain_len)),
        IOVEC => ptr,
        // struct user_msghdr: msg_iov at 16.
        // SAFETY: bpf_probe_read_user copes with any address.
        _ => unsafe { bpf_probe_read_user((ptr + 16) as *const u64) }.ok()?,
    };
    // struct iovec { void *iov_base; size_t iov_len; }, in one copy (each copy from user
    // memory costs about 100 ns here). Not in `iov_at`: its loops outgrow the verifier so.
    // SAFETY: as above.
    let [base, len] = unsafe { bpf_probe_read_user(iov as *const [u64; 2]) }.ok()?;
    Some((base, len))
}

/// The first buffer of a `struct user_msghdr`, in separate copies: [`first_buffer`]'s
/// single copy of the iovec, inside `sendmmsg`'s loop, grows that program past the 6.1
/// verifier's limit ("argument list too long"; 6.18 takes it).
#[inline(always)]
fn msg_first_buffer(msg: u64) -> Option<(u64, u64)> {
    // SAFETY: bpf_probe_read_user copes with any address.
    let iov = unsafe { bpf_probe_read_user((msg + 16) as *const u64) }.ok()?;
    iov_at(iov, 0)
}

/// The second buffer of an iovec array: `(base, len)`.
#[inline(always)]
fn second_iov(iov: u64) -> Option<(u64, u64)> {
    iov_at(iov, 1)
}

/// Buffer `i` of an iovec array: `(base, len)`.
#[inline(always)]
fn iov_at(iov: u64, i: u64) -> Option<(u64, u64)> {
    let at = iov + i * 16;
    // SAFETY: bpf_probe_read_user copes with any address.
    let base = unsafe { bpf_probe_read_user(at as *const u64) }.ok()?;
    // SAFETY: as above.
    let len = unsafe { bpf_probe_read_user((at + 8) as *const u64) }.ok()?;
    Some((base, len))
}

#[inline(always)]
fn peek(buf: u64) -> Option<[u8; 8]> {
    // SAFETY: bpf_probe_read_user copes with any address.
    unsafe { bpf_probe_read_user(buf as *const [u8; 8]) }.ok()
}

/// The first eight bytes of a buffer of `len`, `None` when shorter (or unreadable).
#[inline(always)]
fn head(buf: u64, len: u64) -> Option<[u8; 8]> {
    if len < 8 { None } else { peek(buf) }
}

#[inline(always)]
fn enter(ctx: &TracePointContext, how: u32, dir: u32) -> u32 {
    if ours() {
        return 0;
    }
    if let Some(t) = tls_pending(bpf_get_current_pid_tgid()) {
        // The TLS library of this thread is moving ciphertext: its descriptor.
        // SAFETY: a valid map value of this thread.
        unsafe { (*t).call.fd = arg(ctx, ARG0) as u32 };
    }
    let ptr = arg(ctx, ARG1);
    let fd = arg(ctx, ARG0) as u32;
    let (mut buf, mut buf_len, mut protocol) = (0, 0, 0);
    if dir == direction::EGRESS {
        // What is written is known now: keep only what a protocol tracer wants.
        let Some((b, len)) = first_buffer(ptr, how, arg(ctx, ARG2)) else {
            return 0;
        };
        // The first bytes are read once, for the DNS check and the protocol's, and the exit
        // reads neither the buffer's place nor them again.
        let h = head(b, len);
        protocol = protocol_of_head(fd, h, len);
        let dns = protocol == 0
            && ((len >= 17 && dns_query_head(h))
                || (how == IOVEC
                    && len == 2
                    && second_iov(ptr).is_some_and(|(b, l)| looks_like_dns_query(b, l))));
        if !dns && protocol == 0 {
            return 0;
        }
        // sendmmsg: what is read here is the first message's; the exit reads each.
        if how != MMSGHDR {
            (buf, buf_len) = (b, len);
        }
    }
    let protocol = if buf == 0 { 0 } else { u64::from(protocol) };
    // Field by field, in word stores: a struct with zero fields built at once becomes a call
    // to a byte-by-byte memset.
    let fill = |to: *mut Pending| {
        // SAFETY: `to` is a writable `Pending` (a map value of this thread, or the stack).
        unsafe {
            use core::ptr::{addr_of_mut, write_volatile};
            write_volatile(addr_of_mut!((*to).ptr), ptr);
            write_volatile(addr_of_mut!((*to).sock), 0);
            write_volatile(addr_of_mut!((*to).fd), fd);
            write_volatile(addr_of_mut!((*to).how), how);
            write_volatile(addr_of_mut!((*to).dir), dir);
            write_volatile(addr_of_mut!((*to).flags), 0);
            write_volatile(addr_of_mut!((*to).udp), 0);
            write_volatile(addr_of_mut!((*to).buf), buf);
            write_volatile(addr_of_mut!((*to).buf_len), buf_len);
            write_volatile(addr_of_mut!((*to).protocol), protocol);
        }
    };
    let id = bpf_get_current_pid_tgid();
    // A thread keeps its entry from call to call (an insert and a delete per call cost
    // about as much as the rest of the entry's work): it is written over in place.
    if let Some(slot) = PENDING.get_ptr_mut(&id) {
        // Only this thread writes its entry.
        fill(slot);
        return 0;
    }
    let mut pending = core::mem::MaybeUninit::<Pending>::uninit();
    fill(pending.as_mut_ptr());
    // SAFETY: every field was written (`Pending` has no padding).
    let followed = PENDING.insert(&id, unsafe { pending.assume_init_ref() }, 0);
    finish(followed.map_err(|_| KernelDrop::PendingFull))
}

/// The call of this thread between its entry and exit, if any (see [`DONE`]).
#[inline(always)]
fn pending_call(id: u64) -> Option<*mut Pending> {
    // SAFETY: a valid map value of this thread, read at once.
    PENDING
        .get_ptr_mut(&id)
        .filter(|p| unsafe { (**p).how } != DONE)
}

/// Takes this thread's call out of [`PENDING`] at its exit: the entry stays, marked done.
#[inline(always)]
fn take_pending(id: u64) -> Option<Pending> {
    let slot = pending_call(id)?;
    // SAFETY: as in `pending_call`; only this thread writes its entry.
    unsafe {
        let p = *slot;
        (*slot).how = DONE;
        Some(p)
    }
}

/// `sock:sock_{send,recv}_length`: the pending call of this thread goes through a socket.
/// Record: common (8), `void *sk` at 8, `__u16 family` at 16, `__u16 protocol` at 18.
#[inline(always)]
fn on_sock(ctx: &TracePointContext) -> u32 {
    // SAFETY: within the tracepoint's record, aligned.
    let protocol: u16 = unsafe { field(ctx, 18) };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return 0;
    }
    // SAFETY: as above.
    let sock: u64 = unsafe { field(ctx, 8) };
    let id = bpf_get_current_pid_tgid();
    if let Some(p) = pending_call(id) {
        // SAFETY: a valid map value of this thread.
        unsafe {
            (*p).sock = sock;
            (*p).udp = u16::from(protocol == IPPROTO_UDP);
        }
    }
    if protocol == IPPROTO_UDP {
        return 0;
    }
    tls_socket(id, sock);
    0
}

/// The TCP socket `sock` moved bytes for thread `id`: if its TLS library is inside a call,
/// the SSL object remembers the socket and descriptor.
#[inline(always)]
fn tls_socket(id: u64, sock: u64) {
    if let Some(t) = tls_pending(id) {
        // SAFETY: a valid map value of this thread.
        unsafe {
            (*t).call.sock = sock;
            let conn = SslConn {
                sock,
                fd: (*t).call.fd,
                _pad: 0,
            };
            let _ = SSL_CONNS.insert(&(*t).ssl, &conn, 0);
        }
    }
}

// ---- TLS plaintext from OpenSSL uprobes ------------------------------------------------
//
// SSL_read/SSL_write (and the _ex forms) are followed from entry to return per thread. The
// syscalls the library makes meanwhile name the descriptor and the socket (above); an SSL
// object remembers them, for calls served from the library's buffers without a syscall.

#[repr(C)]
#[derive(Clone, Copy)]
struct TlsPending {
    call: Pending,
    ssl: u64,
    /// `_ex` forms: where the library writes the byte count; 0 otherwise.
    count_ptr: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SslConn {
    sock: u64,
    fd: u32,
    _pad: u32,
}

#[map(name = "TLS_PENDING")]
static TLS_PENDING: HashMap<u64, TlsPending> = HashMap::with_max_entries(8192, 0);

/// Entries of [`TLS_PENDING`], or more (one whose thread never returned nor ended stays
/// counted): while 0, no thread is inside an OpenSSL call, and the syscall programs look
/// nothing up there (a lookup that finds nothing costs about as much as one that does).
#[map(name = "TLS_CALLS")]
static TLS_CALLS: Array<u64> = Array::with_max_entries(1, 0);

/// This thread's OpenSSL call, if it is inside one.
#[inline(always)]
fn tls_pending(id: u64) -> Option<*mut TlsPending> {
    // SAFETY: slot 0 of an array, read at once.
    let any = TLS_CALLS
        .get_ptr(0)
        .is_some_and(|n| unsafe { core::ptr::read_volatile(n) } != 0);
    if any {
        TLS_PENDING.get_ptr_mut(&id)
    } else {
        None
    }
}

/// Adds `delta` (wrapping) to [`TLS_CALLS`], atomically (its old value is not read: an
/// atomic add every kernel's verifier knows).
#[inline(always)]
fn tls_count(delta: u64) {
    if let Some(n) = TLS_CALLS.get_ptr_mut(0) {
        // SAFETY: slot 0 of an array: an aligned u64 that lives as long as the map; other
        // CPUs add to it atomically too (the intrinsic, as in `finish`).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                n, delta,
            )
        };
    }
}

/// Removes thread `id`'s OpenSSL call, if it has one.
#[inline(always)]
fn end_tls_call(id: u64) {
    if tls_pending(id).is_some() && TLS_PENDING.remove(&id).is_ok() {
        tls_count(u64::MAX);
    }
}

#[map(name = "SSL_CONNS")]
static SSL_CONNS: LruHashMap<u64, SslConn> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn ssl_enter(ctx: &ProbeContext, dir: u32, ex: bool) -> u32 {
    if ours() {
        return 0;
    }
    let ssl: u64 = ctx.arg(0).unwrap_or(0);
    let buf: u64 = ctx.arg(1).unwrap_or(0);
    let count_ptr: u64 = if ex { ctx.arg(3).unwrap_or(0) } else { 0 };
    let known = SSL_CONNS.get_ptr(&ssl);
    // SAFETY: a valid map value, copied.
    let (sock, fd) = known.map_or((0, u32::MAX), |c| unsafe { ((*c).sock, (*c).fd) });
    let t = TlsPending {
        call: Pending {
            ptr: buf,
            sock,
            fd,
            how: PLAIN,
            dir,
            flags: data_flags::TLS,
            udp: 0,
            buf: 0,
            buf_len: 0,
            protocol: 0,
        },
        ssl,
        count_ptr,
    };
    let id = bpf_get_current_pid_tgid();
    let new = TLS_PENDING.get_ptr(&id).is_none();
    if new {
        // Counted before the insert: the count is never below the entries.
        tls_count(1);
    }
    let followed = TLS_PENDING.insert(&id, &t, 0);
    if followed.is_err() && new {
        tls_count(u64::MAX);
    }
    finish(followed.map_err(|_| KernelDrop::PendingFull))
}

#[inline(always)]
fn ssl_return(ctx: &RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(t) = (unsafe { TLS_PENDING.get(&id) }).copied() else {
        return 0;
    };
    end_tls_call(id);
    let ret: i64 = ctx.ret::<i32>() as i64;
    if ret <= 0 {
        return 0;
    }
    let mut t = t;
    t.call.sock = joined_sock(t.call.sock, t.call.fd);
    if t.call.sock == 0 {
        return 0;
    }
    let moved = if t.count_ptr != 0 {
        // SAFETY: bpf_probe_read_user copes with any address.
        match unsafe { bpf_probe_read_user(t.count_ptr as *const u64) } {
            Ok(n) => n,
            Err(_) => return 0,
        }
    } else {
        ret as u64
    };
    finish(capture(
        ctx, &t.call, t.call.ptr, moved, moved, false, false,
    ))
}

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, direction::EGRESS, false)
}
#[uretprobe]
pub fn ssl_write_ret(ctx: RetProbeContext) -> u32 {
    ssl_return(&ctx)
}
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, direction::INGRESS, false)
}
#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    ssl_return(&ctx)
}
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, direction::EGRESS, true)
}
#[uretprobe]
pub fn ssl_write_ex_ret(ctx: RetProbeContext) -> u32 {
    ssl_return(&ctx)
}
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, direction::INGRESS, true)
}
#[uretprobe]
pub fn ssl_read_ex_ret(ctx: RetProbeContext) -> u32 {
    ssl_return(&ctx)
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    exit_call(ctx, false)
}

/// A call's exit; with `dns_pairs` (writev), a second DNS-over-TCP message written in the
/// same call (a two-byte length and the message, buffers 2 and 3, as glibc writes its A
/// and AAAA queries) is captured too, as a record of its own.
#[inline(always)]
fn exit_call(ctx: &TracePointContext, dns_pairs: bool) -> u32 {
    let Some(p) = take_pending(bpf_get_current_pid_tgid()) else {
        return 0;
    };
    let ret = arg(ctx, RET) as i64;
    if ret <= 0 {
        return 0;
    }
    let Some(p) = with_socket(p) else {
        return finish(unjoined(ctx, &p, ret as u64));
    };
    let Some((buf, len)) = call_buffer(&p, ret as u64) else {
        return 0;
    };
    let len = if len < ret as u64 { len } else { ret as u64 };
    let mut result = capture(ctx, &p, buf, len, ret as u64, true, true);
    if dns_pairs && len == 2 && p.how == IOVEC && fd_protocol(p.fd) == FD_DNS {
        // Buffers 2 and 3: `second_iov` reads the iovec after the one it is given.
        if let Some((b2, l2)) = second_iov(p.ptr + 16)
            && l2 == 2
            && let Some((_, l3)) = second_iov(p.ptr + 32)
        {
            let pair = Pending {
                ptr: p.ptr + 32,
                protocol: 0,
                ..p
            };
            result = result.and(capture(ctx, &pair, b2, 2, 2 + l3, false, false));
        }
    }
    finish(result)
}

/// `sendmmsg`'s exit: the return value is the number of messages sent; the first
/// [`MMSG_CAPTURED`] are captured, each as a record.
#[inline(always)]
fn exit_mmsg(ctx: &TracePointContext) -> u32 {
    let Some(p) = take_pending(bpf_get_current_pid_tgid()) else {
        return 0;
    };
    let ret = arg(ctx, RET) as i64;
    if ret <= 0 {
        return 0;
    }
    // sendmmsg carries DNS over UDP, whose sockets the descriptor join never learns.
    let Some(p) = with_socket(p) else {
        return 0;
    };
    // Each message's protocol is its own (the entry looked at the first one only).
    let p = Pending { protocol: 0, ..p };
    let mut result = Ok(());
    for i in 0..MMSG_CAPTURED {
        if i >= ret as u64 {
            break;
        }
        let msg = p.ptr + i * MMSGHDR_SIZE;
        // SAFETY: bpf_probe_read_user copes with any address.
        let Ok(moved) = (unsafe { bpf_probe_read_user((msg + MMSGHDR_LEN) as *const u32) }) else {
            break;
        };
        let Some((buf, len)) = msg_first_buffer(msg) else {
            break;
        };
        let len = if len < u64::from(moved) {
            len
        } else {
            u64::from(moved)
        };
        result = result.and(capture(ctx, &p, buf, len, u64::from(moved), false, false));
    }
    finish(result)
}

/// The call with its socket, if it has one (see [`joined_sock`]).
#[inline(always)]
fn with_socket(p: Pending) -> Option<Pending> {
    let sock = joined_sock(p.sock, p.fd);
    if sock == 0 {
        None
    } else {
        Some(Pending { sock, ..p })
    }
}

/// Descriptor join: a write whose descriptor's socket is not known yet (a server that
/// speaks first, a connection older than the agent that writes before it reads). If its
/// first bytes open a protocol they go out with no socket and no connection: user space
/// holds them until the descriptor's next record names the socket (the peer's answer, read
/// on the same descriptor). Only the first buffer, as for any write.
#[inline(always)]
fn unjoined(ctx: &TracePointContext, p: &Pending, ret: u64) -> Result<(), KernelDrop> {
    if !descriptor_join() || p.dir != direction::EGRESS {
        return Ok(());
    }
    let Some((buf, len)) = call_buffer(p, ret) else {
        return Ok(());
    };
    let len = if len < ret { len } else { ret };
    let tagged = fd_protocol(p.fd);
    let protocol = if p.protocol != 0 {
        p.protocol as u8
    } else {
        protocol_with(first_bytes_protocol(head(buf, len)), tagged, len)
    };
    if protocol == 0 {
        // DNS over UDP: its sockets are never learnt (not traced in this join).
        return Ok(());
    }
    let n = copy_data(buf, len)?;
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot of a per-CPU array; tracepoint programs do not nest on a CPU.
    let event = unsafe { &mut (*scratch).event };
    put_v4(&mut event.saddr, [0; 4]);
    put_v4(&mut event.daddr, [0; 4]);
    event.sport = 0;
    event.dport = 0;
    event.family = AF_INET;
    event.sock = 0;
    finish_data(ctx, event, p, n, ret, protocol, tagged)
}

/// The first buffer of a call: a write's as its entry read it, else read now.
#[inline(always)]
fn call_buffer(p: &Pending, ret: u64) -> Option<(u64, u64)> {
    if p.buf != 0 {
        Some((p.buf, p.buf_len))
    } else {
        first_buffer(p.ptr, p.how, ret)
    }
}

/// Writes an IPv4 address into a 16-byte address field, the rest zero, in three stores (an
/// array assignment becomes a call to a byte-by-byte memset). The field is 8-aligned.
#[inline(always)]
fn put_v4(to: &mut [u8; 16], a: [u8; 4]) {
    let p: *mut [u8; 16] = to;
    // SAFETY: within the field, aligned (`DataEvent` puts its addresses at multiples of 8).
    unsafe {
        core::ptr::write_volatile(p.cast::<u32>(), u32::from_ne_bytes(a));
        core::ptr::write_volatile(p.cast::<u32>().add(1), 0);
        core::ptr::write_volatile(p.cast::<u64>().add(1), 0);
    }
}

#[inline(always)]
fn read_sock<T>(sock: u64, at: u32) -> Result<T, KernelDrop> {
    // SAFETY: bpf_probe_read copes with any address.
    unsafe { bpf_probe_read((sock + u64::from(at)) as *const T) }
        .map_err(|_| KernelDrop::ReadFailed)
}

/// Captures up to [`DATA_CAP`] of the `len` bytes at `buf` if a protocol tracer wants them;
/// `gathers`: an HTTP/2 call's iovec buffers are gathered through the tail call to
/// [`gather_http2`]. A constant at each call site: the OpenSSL uprobes (plain buffers, and a
/// program type that may not tail-call a tracepoint program) and the captures that never
/// carry HTTP/2 (sendmmsg, DNS pairs) leave the tail call out of their programs.
/// `copy_first`: a read on a descriptor that carried a protocol is copied before its first
/// bytes are looked at (one copy instead of two); a constant too, left out where the
/// program must stay small for older verifiers (sendmmsg's loop) or the call is rare.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn capture<C: EbpfContext>(
    ctx: &C,
    p: &Pending,
    buf: u64,
    len: u64,
    moved: u64,
    gathers: bool,
    copy_first: bool,
) -> Result<(), KernelDrop> {
    // SAFETY: a read-only global that user space sets before load.
    let off = unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) };
    if p.udp != 0 {
        // UDP: a resolver's socket (connected to port 53) only.
        let remote: u16 = u16::from_be(read_sock(p.sock, off.dport)?);
        if remote != DNS_PORT {
            return Ok(());
        }
        return emit_data(
            ctx,
            p,
            buf,
            len,
            moved,
            FD_DNS,
            &off,
            false,
            fd_protocol(p.fd),
            0,
        );
    }
    // One lookup of what the descriptor carried, for the protocol and for the record.
    let tagged = fd_protocol(p.fd);
    let mut copied = 0;
    let mut protocol = if p.protocol != 0 {
        // A write whose entry read its first bytes.
        p.protocol as u8
    } else if copy_first && tagged != 0 && len >= 8 {
        // A descriptor that carried a protocol is likely to again: its bytes are copied at
        // once, and their first eight come from the copy, not from a read of their own.
        copied = copy_data(buf, len).unwrap_or(0);
        let h = if copied < 8 {
            // Not copied: the first bytes on their own, as for any other read.
            head(buf, len)
        } else {
            DATA_SCRATCH
                .get_ptr(0)
                // SAFETY: this CPU's slot, whose first `copied` bytes of data were just written.
                .map(|s| unsafe {
                    core::ptr::read_unaligned((*s).event.data.as_ptr().cast::<[u8; 8]>())
                })
        };
        protocol_with(first_bytes_protocol(h), tagged, len)
    } else {
        protocol_with(first_bytes_protocol(head(buf, len)), tagged, len)
    };
    if protocol == 0 && len > 0 {
        // A socket on an MQTT port: the broker's end reads one byte at a time.
        let local: u16 = read_sock(p.sock, off.num)?;
        let remote: u16 = u16::from_be(read_sock(p.sock, off.dport)?);
        let mqtt = |port: u16| port == MQTT_PORTS[0] || port == MQTT_PORTS[1];
        if mqtt(local) || mqtt(remote) {
            protocol = FD_MQTT;
        }
        if remote == DNS_PORT {
            protocol = FD_DNS;
        }
    }
    if protocol == 0 {
        return Ok(());
    }
    emit_data(
        ctx, p, buf, len, moved, protocol, &off, gathers, tagged, copied,
    )
}

/// Copies up to [`DATA_CAP`] of the `len` bytes at `buf` into this CPU's record; returns how
/// many.
#[inline(always)]
fn copy_data(buf: u64, len: u64) -> Result<u64, KernelDrop> {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Err(KernelDrop::ReadFailed);
    };
    let n = if len > DATA_CAP as u64 {
        DATA_CAP as u64
    } else {
        len
    };
    // SAFETY: `n` is at most the destination's size; the helper copes with any source.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            (*scratch).event.data.as_mut_ptr().cast(),
            n as u32,
            buf as *const core::ffi::c_void,
        )
    };
    if rc < 0 {
        Err(KernelDrop::ReadFailed)
    } else {
        Ok(n)
    }
}

/// Sends a record of up to [`DATA_CAP`] of the `len` bytes at `buf`, moved on a socket
/// carrying `protocol` (see [`capture`] for `gathers`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit_data<C: EbpfContext>(
    ctx: &C,
    p: &Pending,
    buf: u64,
    len: u64,
    moved: u64,
    protocol: u8,
    off: &SockOffsets,
    gathers: bool,
    tagged: u8,
    copied: u64,
) -> Result<(), KernelDrop> {
    let Some(scratch) = DATA_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let mut n = len;
    if n > DATA_CAP as u64 {
        n = DATA_CAP as u64;
    }
    // HTTP/2 writers put frame headers and payloads in buffers of their own.
    let iov = match p.how {
        _ if !gathers || protocol != FD_HTTP2 => 0,
        IOVEC => p.ptr,
        // struct user_msghdr: msg_iov at 16.
        // SAFETY: bpf_probe_read_user copes with any address.
        MSGHDR => unsafe { bpf_probe_read_user((p.ptr + 16) as *const u64) }.unwrap_or(0),
        _ => 0,
    };
    if iov != 0
        && let Some(call) = GATHER_CALL.get_ptr_mut(0)
    {
        // The gathering program goes on from here (it needs a verifier budget of its own);
        // the tail call returns only when it could not be made.
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe {
            *call = GatherCall {
                pending: *p,
                iov,
                moved,
                tagged: u64::from(tagged),
            };
            GATHER_PROGS.tail_call(ctx, 0);
        }
    }
    // The bytes are in place already when `capture` copied them to look at their start.
    if copied != n {
        // SAFETY: `n` is at most the destination's size; the helper copes with any source.
        let rc = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                (*scratch).event.data.as_mut_ptr().cast(),
                n as u32,
                buf as *const core::ffi::c_void,
            )
        };
        if rc < 0 {
            return Err(KernelDrop::ReadFailed);
        }
    }
    // SAFETY: this CPU's slot of a per-CPU array; tracepoint programs do not nest on a CPU.
    let event = unsafe { &mut (*scratch).event };
    if p.how == IOVEC && n == 2 && moved > 2 {
        // A two-byte length in its own buffer (DNS over TCP, as resolvers write it): the
        // message in the next buffer goes with it.
        if let Some((b2, l2)) = second_iov(p.ptr) {
            let mut m = if l2 < moved - 2 { l2 } else { moved - 2 };
            if m > (DATA_CAP - 2) as u64 {
                m = (DATA_CAP - 2) as u64;
            }
            // SAFETY: at most the room after the two bytes; the helper copes with any source.
            let rc = unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_user(
                    event.data.as_mut_ptr().add(2).cast(),
                    m as u32,
                    b2 as *const core::ffi::c_void,
                )
            };
            if rc == 0 {
                n = 2 + m;
            }
        }
    }
    if n > DATA_CAP as u64 {
        n = DATA_CAP as u64;
    }
    send_data(ctx, event, p, n, moved, protocol, off, tagged)
}

/// Fills in the connection and the header of the record whose first `n` bytes of data are
/// in place, and sends it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send_data<C: EbpfContext>(
    ctx: &C,
    event: &mut DataEvent,
    p: &Pending,
    n: u64,
    moved: u64,
    protocol: u8,
    off: &SockOffsets,
    tagged: u8,
) -> Result<(), KernelDrop> {
    // One copy for the IPv4 connection, ports and family (each copy costs about as much as
    // several of these fields).
    let head: SockHead = read_sock(p.sock, 0)?;
    let family = head.family;
    if family == AF_INET {
        put_v4(&mut event.saddr, head.rcv_saddr);
        put_v4(&mut event.daddr, head.daddr);
    } else {
        event.saddr = read_sock(p.sock, off.v6_rcv_saddr)?;
        event.daddr = read_sock(p.sock, off.v6_daddr)?;
    }
    event.sport = head.num;
    event.dport = u16::from_be(head.dport);
    if port_excluded(event.sport, event.dport) {
        return Ok(());
    }
    event.family = family;
    event.sock = p.sock;
    finish_data(ctx, event, p, n, moved, protocol, tagged)
}

/// Fills in the header of the record whose data and connection are in place, and sends it;
/// `tagged`: what [`fd_protocol`] said of the descriptor.
#[inline(always)]
fn finish_data<C: EbpfContext>(
    ctx: &C,
    event: &mut DataEvent,
    p: &Pending,
    n: u64,
    moved: u64,
    protocol: u8,
    tagged: u8,
) -> Result<(), KernelDrop> {
    event.flags = p.flags
        | match protocol {
            FD_REDIS => data_flags::REDIS,
            FD_MQTT => data_flags::MQTT,
            FD_POSTGRES => data_flags::POSTGRES,
            FD_MYSQL => data_flags::MYSQL,
            FD_DNS => data_flags::DNS,
            FD_AMQP => data_flags::AMQP,
            FD_KAFKA => data_flags::KAFKA,
            FD_HTTP2 => data_flags::HTTP2,
            _ => 0,
        };
    let pid_tgid = bpf_get_current_pid_tgid();
    event.header = EventHeader {
        kind: EventKind::SocketData as u32,
        size: core::mem::size_of::<DataEvent>() as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // SAFETY: a helper with no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: comm(),
    };
    event.fd = p.fd;
    event.direction = p.dir;
    event.len = moved as u32;
    event.captured = n as u32;
    // An update costs a new LRU element each time; most records only confirm what the
    // descriptor already carried, and the lookup keeps its entry fresh.
    if tagged != protocol {
        let _ = CAPTURED_FDS.insert(&fd_key(p.fd), &protocol, 0);
    }
    // Only the captured bytes travel: a status line costs about 130 bytes of ring, not 616.
    let size = DATA_HEADER as u64 + n;
    event.header.size = size as u32;
    emit_prefix(ctx, &*event, size)
}

/// What [`gather_http2`] is handed by the program that tail-calls it.
#[repr(C)]
#[derive(Clone, Copy)]
struct GatherCall {
    pending: Pending,
    iov: u64,
    moved: u64,
    /// What [`fd_protocol`] said of the descriptor.
    tagged: u64,
}

#[map(name = "GATHER_CALL")]
static GATHER_CALL: PerCpuArray<GatherCall> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: [`gather_http2`], set by user space.
#[map(name = "GATHER_PROGS")]
static GATHER_PROGS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Tail-called by a syscall's exit program for an HTTP/2 call that moved an iovec array:
/// gathers its buffers (up to [`IOV_GATHERED`]) into one record and sends it. Not attached.
#[tracepoint]
pub fn gather_http2(ctx: TracePointContext) -> u32 {
    let (Some(call), Some(scratch)) = (GATHER_CALL.get_ptr(0), DATA_SCRATCH.get_ptr_mut(0)) else {
        return 0;
    };
    // SAFETY: this CPU's slot, written by the caller just before the tail call.
    let call = unsafe { *call };
    let n = gather(scratch, call.iov, call.moved);
    // SAFETY: a read-only global that user space sets before load.
    let off = unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) };
    // SAFETY: this CPU's slot of a per-CPU array; tracepoint programs do not nest on a CPU.
    let event = unsafe { &mut (*scratch).event };
    finish(send_data(
        &ctx,
        event,
        &call.pending,
        n,
        call.moved,
        FD_HTTP2,
        &off,
        call.tagged as u8,
    ))
}

/// Copies the buffers of the iovec array at `iov` into the record's data, in order, until
/// `moved` bytes or [`DATA_CAP`] are there; returns how many.
#[inline(always)]
fn gather(scratch: *mut DataScratch, iov: u64, moved: u64) -> u64 {
    // Shaped for the verifier: every path that clamps `m` ends at the next iteration's
    // check, so the paths it follows grow with the iterations, not exponentially.
    let limit = if moved < DATA_CAP as u64 {
        moved
    } else {
        DATA_CAP as u64
    };
    let mut n: u64 = 0;
    for i in 0..IOV_GATHERED {
        if n >= limit {
            break;
        }
        let Some((base, len)) = iov_at(iov, i) else {
            break;
        };
        let mut m = len;
        if m > limit - n {
            m = limit - n;
        }
        if m > DATA_CAP as u64 {
            m = DATA_CAP as u64;
        }
        let off = n & (DATA_CAP as u64 - 1);
        // SAFETY: `off` < DATA_CAP and `m` <= DATA_CAP: within the data and its slack; the
        // helper copes with any source (and with a size of 0).
        let rc = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                scratch.cast::<u8>().add(DATA_HEADER + off as usize).cast(),
                m as u32,
                base as *const core::ffi::c_void,
            )
        };
        if rc < 0 {
            break;
        }
        n += m;
    }
    n
}

#[tracepoint]
pub fn sys_enter_read(ctx: TracePointContext) -> u32 {
    enter(&ctx, PLAIN, direction::INGRESS)
}
#[tracepoint]
pub fn sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    enter(&ctx, PLAIN, direction::INGRESS)
}
#[tracepoint]
pub fn sys_enter_readv(ctx: TracePointContext) -> u32 {
    enter(&ctx, IOVEC, direction::INGRESS)
}
#[tracepoint]
pub fn sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, MSGHDR, direction::INGRESS)
}
#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    enter(&ctx, PLAIN, direction::EGRESS)
}
#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    enter(&ctx, PLAIN, direction::EGRESS)
}
#[tracepoint]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    enter(&ctx, IOVEC, direction::EGRESS)
}
#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, MSGHDR, direction::EGRESS)
}
#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    enter(&ctx, MMSGHDR, direction::EGRESS)
}
#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    on_sock(&ctx)
}
/// Descriptor join: the descriptor a thread connects (its socket comes at SYN_SENT).
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if !descriptor_join() || ours() {
        return 0;
    }
    let fd = arg(&ctx, ARG0) as u32;
    let _ = CONNECTING.insert(&bpf_get_current_pid_tgid(), &fd, 0);
    0
}
/// Descriptor join: `tcp:tcp_rcv_space_adjust` fires in the reading thread inside each TCP
/// read that copied data: it names the socket of the pending read (as `sock_recv_length`
/// does on 6.4+), and so of its descriptor.
#[tracepoint]
pub fn tcp_rcv_space_adjust(ctx: TracePointContext) -> u32 {
    // SAFETY: a read-only global that user space sets before load.
    let off = unsafe { core::ptr::read_volatile(&RCV_SPACE_SKADDR) };
    if !descriptor_join() || off == FIELD_ABSENT {
        return 0;
    }
    // `skaddr` is the record's first field on every kernel seen: a direct load there.
    let sock = if off == 8 {
        // SAFETY: within the record, aligned.
        unsafe { field::<u64>(&ctx, 8) }
    } else {
        let Ok(sock) = read::<u64>(&ctx, off) else {
            return finish(Err(KernelDrop::ReadFailed));
        };
        sock
    };
    let id = bpf_get_current_pid_tgid();
    let Some(p) = pending_call(id) else {
        return 0;
    };
    // SAFETY: a valid map value of this thread.
    let fd = unsafe {
        if (*p).sock == sock {
            // A read that copies several segments: named already.
            return 0;
        }
        (*p).sock = sock;
        (*p).udp = 0;
        (*p).fd
    };
    learn_fd(fd, sock);
    tls_socket(id, sock);
    0
}
#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    on_sock(&ctx)
}
#[tracepoint]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_readv(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_write(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_sendto(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_writev(ctx: TracePointContext) -> u32 {
    exit_call(&ctx, true)
}
#[tracepoint]
pub fn sys_exit_sendmsg(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
#[tracepoint]
pub fn sys_exit_sendmmsg(ctx: TracePointContext) -> u32 {
    exit_mmsg(&ctx)
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let fd = arg(&ctx, ARG0) as u32;
    let key = (pid_tgid & 0xffff_ffff_0000_0000) | u64::from(fd);
    if descriptor_join() {
        let _ = FD_SOCKS.remove(&key);
    }
    // SAFETY: only presence is checked.
    if unsafe { CAPTURED_FDS.get(&key) }.is_none() {
        return 0;
    }
    let _ = CAPTURED_FDS.remove(&key);
    let event = CloseEvent {
        header: EventHeader {
            kind: EventKind::FdClose as u32,
            size: core::mem::size_of::<CloseEvent>() as u32,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            // SAFETY: a helper with no preconditions.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            comm: comm(),
        },
        fd,
        _pad0: 0,
    };
    finish(emit(&ctx, &event))
}

/// Offset of `filename` in `sched:sched_process_exec`'s record; [`FIELD_ABSENT`] until user
/// space sets it from tracefs.
#[unsafe(no_mangle)]
static EXEC_FILENAME: u32 = FIELD_ABSENT;

#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn header(kind: EventKind, size: usize) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // SAFETY: a helper with no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: comm(),
    }
}

/// A process ran a new program: its pid and the program's path.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    finish(try_exec(&ctx))
}

fn try_exec(ctx: &TracePointContext) -> Result<(), KernelDrop> {
    // SAFETY: a read-only global that user space sets before load.
    let off = unsafe { core::ptr::read_volatile(&EXEC_FILENAME) };
    if off == FIELD_ABSENT {
        return Ok(());
    }
    // `__data_loc`: the string's offset in the record (low 16 bits) and length (high 16).
    let loc: u32 = read(ctx, off)?;
    let Some(event) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot of a per-CPU array; tracepoint programs do not nest on a CPU.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::ProcessExec, core::mem::size_of::<ExecEvent>());
    event._pad0 = 0;
    // SAFETY: the destination is the array itself; the helper copes with any source and
    // stops at the NUL or the array's end.
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            event.path.as_mut_ptr().cast(),
            PATH_CAP as u32,
            ctx.as_ptr()
                .cast::<u8>()
                .add((loc & 0xffff) as usize)
                .cast(),
        )
    };
    if n <= 0 {
        return Err(KernelDrop::ReadFailed);
    }
    let mut n = n as u64;
    if n > PATH_CAP as u64 {
        n = PATH_CAP as u64;
    }
    event.path_len = (n - 1) as u32;
    let size = (core::mem::size_of::<ExecEvent>() - PATH_CAP) as u64 + n;
    event.header.size = size as u32;
    emit_prefix(ctx, event, size)
}

/// The thread-group leader of a process exited: the process is gone.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Each thread's call entries go with it (see `enter`).
    let _ = PENDING.remove(&pid_tgid);
    end_tls_call(pid_tgid);
    if pid_tgid >> 32 != pid_tgid & 0xffff_ffff {
        return 0;
    }
    let event = ExitEvent {
        header: header(EventKind::ProcessExit, core::mem::size_of::<ExitEvent>()),
    };
    finish(emit(&ctx, &event))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
