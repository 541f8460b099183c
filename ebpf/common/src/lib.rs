//! The wire contract between telegen's kernel programs and user space.
//!
//! Every record a program writes to the event ring starts with [`EventHeader`], whose
//! [`EventKind`] says which payload follows. Kind ids are stable: a new kind gets a new
//! number, an old number is never reused. All structs are `#[repr(C)]`, sized in multiples
//! of 8 bytes, with explicit padding fields so that no byte is left implicit.
//!
//! Tracepoint field offsets differ between kernels, so user space reads them from tracefs
//! `format` files and hands them to the programs as read-only globals ([`TcpTpOffsets`]).
//!
//! This crate holds data definitions only: no logic, no allocation, `no_std`.
#![no_std]

/// Name of the ring buffer map that carries every event.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the array that counts what the kernel side could not deliver: one `u64` per
/// [`KernelDrop`] reason, added to atomically, created `BPF_F_MMAPABLE` so that user space
/// reads it through memory (no bpf() calls, hence no capability, after start-up).
pub const KERNEL_DROPS_MAP: &str = "KERNEL_DROPS";
/// Name of the perf event array used instead of the ring on kernels without BPF ring buffers.
pub const EVENTS_PERF_MAP: &str = "EVENTS_PERF";
/// Name of the read-only global that selects the transport: [`TRANSPORT_RING`] or
/// [`TRANSPORT_PERF`].
pub const TRANSPORT_GLOBAL: &str = "TRANSPORT";
pub const TRANSPORT_RING: u32 = 0;
/// Name of the read-only global (u64) below which ring writes do not wake user space up:
/// records then wait for the agent's next periodic drain. 0 wakes it on every record.
pub const WAKEUP_BYTES_GLOBAL: &str = "WAKEUP_BYTES";
pub const TRANSPORT_PERF: u32 = 1;
/// Default size in bytes of the event ring (a power of two, a multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 256 * 1024;

/// Stable identifiers of the record kinds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `sock:inet_sock_set_state` for TCP, payload [`TcpEvent`].
    TcpStateChange = 1,
    /// `tcp:tcp_retransmit_skb`, payload [`TcpEvent`] (`old_state` = `new_state` = socket state).
    TcpRetransmit = 2,
    /// `tcp:tcp_send_reset`, payload [`TcpEvent`].
    TcpSendReset = 3,
    /// `tcp:tcp_receive_reset`, payload [`TcpEvent`].
    TcpReceiveReset = 4,
    /// The start of what a read or write syscall moved, when it looks like an application
    /// protocol the agent parses; payload [`DataEvent`].
    SocketData = 5,
    /// `close()` of a descriptor that carried [`EventKind::SocketData`]; payload [`CloseEvent`].
    FdClose = 6,
    /// `sched:sched_process_exec`: a process ran a new program; payload [`ExecEvent`].
    ProcessExec = 7,
    /// `sched:sched_process_exit` of a thread-group leader: the process ended; the header
    /// alone ([`ExitEvent`]).
    ProcessExit = 8,
}

impl EventKind {
    /// Maps a wire value back to a kind; unknown values are `None`.
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::TcpStateChange),
            2 => Some(Self::TcpRetransmit),
            3 => Some(Self::TcpSendReset),
            4 => Some(Self::TcpReceiveReset),
            5 => Some(Self::SocketData),
            6 => Some(Self::FdClose),
            7 => Some(Self::ProcessExec),
            8 => Some(Self::ProcessExit),
            _ => None,
        }
    }
}

/// Length of the kernel's task command name, NUL included.
pub const COMM_LEN: usize = 16;

/// The fixed header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Size in bytes of the whole record, header included.
    pub size: u32,
    /// Thread group id (the process id user space sees) of the current task.
    pub tgid: u32,
    /// Thread id of the current task.
    pub tid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The current task's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Socket address family values as the kernel reports them.
pub const AF_INET: u16 = 2;
/// IPv6 address family.
pub const AF_INET6: u16 = 10;

/// TCP states as numbered by the kernel (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;
    pub const NEW_SYN_RECV: u32 = 12;
    /// One past the highest state the kernel defines.
    pub const MAX: u32 = 13;
}

/// One TCP event: a state change, a retransmission or a reset.
///
/// Addresses are as the socket sees them: `saddr`/`sport` local, `daddr`/`dport` remote.
/// IPv4 addresses occupy the first four bytes; the rest are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEvent {
    pub header: EventHeader,
    /// Kernel address of the `struct sock`: identifies the socket for its lifetime.
    pub sock: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    pub _pad0: u16,
    pub old_state: u32,
    pub new_state: u32,
}

/// Bytes of a read or write a [`DataEvent`] carries at most: enough for a request line and
/// the headers of ordinary requests (where `traceparent` is).
pub const DATA_CAP: usize = 512;

/// Which way a [`DataEvent`]'s bytes went, seen from the process.
pub mod direction {
    /// Read by the process (`read`, `readv`, `recvfrom`, `recvmsg`).
    pub const INGRESS: u32 = 0;
    /// Written by the process (`write`, `writev`, `sendto`, `sendmsg`).
    pub const EGRESS: u32 = 1;
}

/// The start of what one read or write syscall moved on a descriptor. Only the first
/// `104 + captured` bytes travel (the header's `size`); `data` is cut there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEvent {
    pub header: EventHeader,
    /// The descriptor, in the process [`EventHeader::tgid`].
    pub fd: u32,
    /// A [`direction`] value.
    pub direction: u32,
    /// Bytes the syscall moved (writes: asked to move).
    pub len: u32,
    /// Bytes of `data` that are valid: at most [`DATA_CAP`].
    pub captured: u32,
    /// Kernel address of the `struct sock` the bytes went through (as in [`TcpEvent`]).
    /// 0 only in the descriptor join ([`JOIN_DESCRIPTOR`]): a write whose socket was not
    /// known yet (a server that speaks first, a connection older than the agent); the
    /// connection fields are zero, and user space holds the record until the descriptor's
    /// next record names its socket.
    pub sock: u64,
    /// The connection as the socket sees it: local, then remote (as in [`TcpEvent`]).
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    /// [`data_flags`] bits.
    pub flags: u16,
    pub data: [u8; DATA_CAP],
}

/// Bits of [`DataEvent::flags`].
pub mod data_flags {
    /// The bytes are TLS plaintext, taken from the TLS library (`SSL_read`/`SSL_write`).
    pub const TLS: u16 = 1;
    /// The descriptor speaks Redis (RESP): every call on it is captured, however short.
    pub const REDIS: u16 = 2;
    /// The descriptor speaks MQTT: every call on it is captured, however short.
    pub const MQTT: u16 = 4;
    /// The descriptor speaks PostgreSQL's protocol 3: every call on it is captured.
    pub const POSTGRES: u16 = 8;
    /// The descriptor speaks MySQL's protocol: every call on it is captured.
    pub const MYSQL: u16 = 16;
    /// DNS messages a resolver's UDP socket (connected to port 53) moved.
    pub const DNS: u16 = 32;
    /// The descriptor speaks AMQP 0-9-1: every call on it is captured.
    pub const AMQP: u16 = 64;
    /// The descriptor speaks Kafka: every call on it is captured.
    pub const KAFKA: u16 = 128;
    /// The descriptor speaks HTTP/2 (its client sent the connection preface): every call
    /// on it is captured, gathered over the call's buffers.
    pub const HTTP2: u16 = 256;
}

/// The ports MQTT brokers listen on (plain, TLS): a descriptor on one of them is MQTT.
pub const MQTT_PORTS: [u16; 2] = [1883, 8883];

/// Name of the uprobes on OpenSSL's `libssl`: `(program, symbol)`.
pub const SSL_PROBES: [(&str, &str); 8] = [
    ("ssl_write", "SSL_write"),
    ("ssl_write_ret", "SSL_write"),
    ("ssl_read", "SSL_read"),
    ("ssl_read_ret", "SSL_read"),
    ("ssl_write_ex", "SSL_write_ex"),
    ("ssl_write_ex_ret", "SSL_write_ex"),
    ("ssl_read_ex", "SSL_read_ex"),
    ("ssl_read_ex_ret", "SSL_read_ex"),
];

/// Byte offsets in `struct sock_common` that [`DataEvent`] addresses are read from. Stable
/// for years, but they depend on the pointer width, so user space sets them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    pub daddr: u32,
    pub rcv_saddr: u32,
    pub dport: u32,
    pub num: u32,
    pub family: u32,
    pub v6_daddr: u32,
    pub v6_rcv_saddr: u32,
    pub _pad0: u32,
}

impl SockOffsets {
    /// A 64-bit kernel with IPv6 and network namespaces (every distribution kernel).
    pub const LP64: Self = Self {
        daddr: 0,
        rcv_saddr: 4,
        dport: 12,
        num: 14,
        family: 16,
        v6_daddr: 56,
        v6_rcv_saddr: 72,
        _pad0: 0,
    };
    /// The same on a 32-bit kernel (armv7).
    pub const ILP32: Self = Self {
        v6_daddr: 40,
        v6_rcv_saddr: 56,
        ..Self::LP64
    };
}

/// The start of `struct sock_common`, the same on 32- and 64-bit kernels: what a captured
/// call's IPv4 connection is read from, in one copy (each copy from kernel memory costs
/// about as much as several of its fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockHead {
    pub daddr: [u8; 4],
    pub rcv_saddr: [u8; 4],
    pub hash: u32,
    /// Network byte order.
    pub dport: u16,
    /// Host byte order.
    pub num: u16,
    pub family: u16,
    pub _pad0: u16,
}

const _: () = {
    use core::mem::offset_of;
    let head = [
        offset_of!(SockHead, daddr) as u32,
        offset_of!(SockHead, rcv_saddr) as u32,
        offset_of!(SockHead, dport) as u32,
        offset_of!(SockHead, num) as u32,
        offset_of!(SockHead, family) as u32,
    ];
    let mut i = 0;
    while i < 2 {
        let o = if i == 0 {
            SockOffsets::LP64
        } else {
            SockOffsets::ILP32
        };
        assert!(head[0] == o.daddr && head[1] == o.rcv_saddr && head[2] == o.dport);
        assert!(head[3] == o.num && head[4] == o.family);
        i += 1;
    }
};

/// Name of the read-only global holding the [`SockOffsets`].
pub const SOCK_OFFSETS_GLOBAL: &str = "SOCK_OFFSETS";

/// A descriptor that carried [`DataEvent`]s was closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    pub header: EventHeader,
    pub fd: u32,
    pub _pad0: u32,
}

/// Longest executable path an [`ExecEvent`] carries (NUL included); a longer one is cut.
pub const PATH_CAP: usize = 256;

/// A process ran a new program (`execve`). Only the first `48 + path_len + 1` bytes travel
/// (the header's `size`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Bytes of `path` that are valid, its NUL excluded.
    pub path_len: u32,
    pub _pad0: u32,
    /// The program's path as `execve` was given it (absolute unless the caller used a
    /// relative one), NUL terminated when shorter than [`PATH_CAP`].
    pub path: [u8; PATH_CAP],
}

/// The process [`EventHeader::tgid`] ended (its thread-group leader exited).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
}

/// Name of the array of excluded processes: an open-addressed set of tgids (0: empty) in
/// [`EXCLUDED_SLOTS`] `u64` slots (an array's values are 8-byte aligned in its mapping,
/// so a `u32` would not be where user space looks), mmapable so that user space updates it without bpf()
/// calls (privileges are gone by then). A tgid lives within [`EXCLUDED_PROBE`] slots of
/// [`excluded_slot`]; the programs capture nothing of a process found there.
pub const EXCLUDED_MAP: &str = "EXCLUDED";
pub const EXCLUDED_SLOTS: u32 = 1024;
pub const EXCLUDED_PROBE: u32 = 8;

/// The first slot of `tgid` in [`EXCLUDED_MAP`] (Fibonacci hashing to 10 bits).
#[inline(always)]
pub const fn excluded_slot(tgid: u32) -> u32 {
    tgid.wrapping_mul(0x9E37_79B1) >> 22
}

/// Name of the read-only global (u32): 1 when rules may exclude processes, so the programs
/// look in [`EXCLUDED_MAP`]; 0 (no such rule) spares every call the lookups.
pub const EXCLUDED_ANY_GLOBAL: &str = "EXCLUDED_ANY";

/// Name of the read-only global `[u16; EXCLUDED_PORTS_CAP]`: local or remote ports whose
/// sockets are never captured (0: unused).
pub const EXCLUDED_PORTS_GLOBAL: &str = "EXCLUDED_PORTS";
pub const EXCLUDED_PORTS_CAP: usize = 8;

/// Name of the read-only global `[[u8; COMM_LEN]; EXCLUDED_COMMS_CAP]`: task names whose
/// threads are never captured (checked at every call, so forked children and short-lived
/// programs are covered from their first byte); an all-zero name ends the list.
pub const EXCLUDED_COMMS_GLOBAL: &str = "EXCLUDED_COMMS";
pub const EXCLUDED_COMMS_CAP: usize = 8;

/// Name of the read-only global (u32): offset of `filename` (a `__data_loc` field) in
/// `sched:sched_process_exec`'s record, from tracefs.
pub const EXEC_FILENAME_GLOBAL: &str = "EXEC_FILENAME";

/// Name of the read-only global (u32) that says how a read or write is joined to its
/// socket: [`JOIN_SOCK_LENGTH`] or [`JOIN_DESCRIPTOR`].
pub const JOIN_GLOBAL: &str = "JOIN";
/// `sock:sock_{send,recv}_length` name the socket of the call they fire in (Linux 6.4+).
pub const JOIN_SOCK_LENGTH: u32 = 0;
/// The socket of a descriptor is learnt once and kept per (tgid, fd): from
/// `sock:inet_sock_set_state` (SYN_SENT, in the connecting thread) after `connect`, and from
/// `tcp:tcp_rcv_space_adjust`, which fires in the reading thread inside every TCP read that
/// returns data (Linux 4.16+). Writes take the socket their descriptor was last seen with.
pub const JOIN_DESCRIPTOR: u32 = 1;
/// Name of the read-only global (u32): offset of `skaddr` in `tcp:tcp_rcv_space_adjust`'s
/// record, from tracefs.
pub const RCV_SPACE_SKADDR_GLOBAL: &str = "RCV_SPACE_SKADDR";

/// Name of the read-only global (u32) holding the agent's own process id: its programs
/// never capture the agent's own traffic (its exports are HTTP too).
pub const AGENT_TGID_GLOBAL: &str = "AGENT_TGID";

/// Sentinel offset for a field the running kernel's tracepoint does not have.
pub const FIELD_ABSENT: u32 = u32::MAX;

/// Byte offsets of the fields the TCP programs read from their tracepoint's record.
///
/// One value per attached tracepoint, filled by user space from tracefs. A field the
/// kernel lacks is [`FIELD_ABSENT`]; the program then leaves the payload field zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTpOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    /// The socket state (`state` field) of the retransmit and reset tracepoints.
    pub state: u32,
    /// 1 when `saddr`/`daddr` hold whole `struct sockaddr_in`/`sockaddr_in6` values (family,
    /// big-endian port, address) instead of bare addresses, as `tcp_send_reset` has since 6.10.
    pub sockaddr: u32,
    pub _pad0: u32,
}

impl TcpTpOffsets {
    /// Every field absent: the value a program sees before user space fills it in.
    pub const ABSENT: Self = Self {
        skaddr: FIELD_ABSENT,
        oldstate: FIELD_ABSENT,
        newstate: FIELD_ABSENT,
        sport: FIELD_ABSENT,
        dport: FIELD_ABSENT,
        family: FIELD_ABSENT,
        protocol: FIELD_ABSENT,
        saddr: FIELD_ABSENT,
        daddr: FIELD_ABSENT,
        saddr_v6: FIELD_ABSENT,
        daddr_v6: FIELD_ABSENT,
        state: FIELD_ABSENT,
        sockaddr: 0,
        _pad0: 0,
    };
}

/// Why the kernel side could not deliver an event: indexes into [`KERNEL_DROPS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelDrop {
    /// `bpf_ringbuf_reserve` failed: user space is not draining fast enough.
    RingFull = 0,
    /// A tracepoint field could not be read.
    ReadFailed = 1,
    /// A read or write could not be followed from its syscall's entry to its exit: the
    /// table of calls in flight was full (its bytes are not captured).
    PendingFull = 2,
}

/// Number of [`KernelDrop`] reasons, the length of [`KERNEL_DROPS_MAP`].
pub const KERNEL_DROP_REASONS: u32 = 3;

impl KernelDrop {
    /// Every reason, in index order.
    pub const ALL: [Self; KERNEL_DROP_REASONS as usize] =
        [Self::RingFull, Self::ReadFailed, Self::PendingFull];

    /// The `reason` attribute value of `telegen.agent.dropped`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::RingFull => "kernel_ring_full",
            Self::ReadFailed => "kernel_read_failed",
            Self::PendingFull => "kernel_pending_full",
        }
    }
}

// Layout checks: the wire contract must not change by accident.
const _: () = assert!(core::mem::size_of::<EventHeader>() == 40);
const _: () = assert!(core::mem::size_of::<TcpEvent>() == 96);
const _: () = assert!(core::mem::size_of::<TcpTpOffsets>() == 56);
const _: () = assert!(core::mem::size_of::<DataEvent>() == 104 + DATA_CAP);
// The kernel programs write the addresses in aligned word stores.
const _: () = assert!(core::mem::offset_of!(DataEvent, saddr) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(DataEvent, daddr) % 8 == 0);
const _: () = assert!(core::mem::size_of::<SockOffsets>() == 32);
const _: () = assert!(core::mem::size_of::<CloseEvent>() == 48);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48 + PATH_CAP);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 40);
const _: () = assert!(EXCLUDED_SLOTS == 1 << 10, "excluded_slot hashes to 10 bits");

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers with no padding (checked by the size assertion above).
unsafe impl aya::Pod for TcpTpOffsets {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for SockOffsets {}
