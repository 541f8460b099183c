//! Decoding of the records the kernel programs write (layouts in `telegen-common`).
//!
//! Validates once, then hands out plain values: the length is checked against the header's
//! `size` and the kind's fixed size, enumerations are checked against their ranges. Nothing
//! here trusts a size that came from the ring, and nothing panics on short or odd input.

use telegen_common::{
    AF_INET, AF_INET6, COMM_LEN, CloseEvent, DATA_CAP, DataEvent, EventHeader, EventKind,
    ExecEvent, ExitEvent, PATH_CAP, TcpEvent, data_flags, direction, tcp_state,
};

/// Why a record was rejected. Each is counted as a `decode_error` drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    ShortHeader {
        len: usize,
    },
    /// The kind number is not one this build knows.
    UnknownKind(u32),
    /// The header's size disagrees with the bytes received or with the kind's layout.
    SizeMismatch {
        kind: u32,
        header: u32,
        actual: usize,
    },
    /// An address family other than IPv4 or IPv6.
    BadFamily(u16),
    /// A TCP state outside the kernel's range.
    BadState(u32),
    BadDirection(u32),
    BadCaptureLength(u32),
    /// An exec record whose path length disagrees with its size.
    BadPathLength(u32),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ShortHeader { len } => {
                write!(f, "record of {len} bytes is shorter than a header")
            }
            Self::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            Self::SizeMismatch {
                kind,
                header,
                actual,
            } => {
                write!(
                    f,
                    "record kind {kind}: header says {header} bytes, got {actual}"
                )
            }
            Self::BadFamily(v) => write!(f, "address family {v} is neither IPv4 nor IPv6"),
            Self::BadState(v) => write!(f, "TCP state {v} out of range"),
            Self::BadDirection(v) => write!(f, "data direction {v} is neither read nor write"),
            Self::BadPathLength(v) => {
                write!(f, "exec path of {v} bytes: more than the record holds")
            }
            Self::BadCaptureLength(v) => {
                write!(
                    f,
                    "{v} captured bytes: more than the record or the call holds"
                )
            }
        }
    }
}

/// The task that was current when the kernel wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Task {
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
}

impl Task {
    /// The command name up to its first NUL, or `""` when it is not UTF-8.
    pub fn comm_str(&self) -> &str {
        comm_str(&self.comm)
    }
}

/// A kernel command name up to its first NUL, or `""` when it is not UTF-8.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> &str {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(COMM_LEN);
    core::str::from_utf8(&comm[..end]).unwrap_or("")
}

/// An IP address as the kernel gave it; IPv4 uses the first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpAddr {
    pub v6: bool,
    pub bytes: [u8; 16],
}

impl IpAddr {
    /// An address from a record. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
    /// dual-stack socket sees of IPv4 peers) become the IPv4 addresses they are on the wire.
    pub fn from_wire(v6: bool, bytes: [u8; 16]) -> Self {
        const MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        if v6 && bytes[..12] == MAPPED {
            let mut v4 = [0u8; 16];
            v4[..4].copy_from_slice(&bytes[12..]);
            return Self {
                v6: false,
                bytes: v4,
            };
        }
        Self { v6, bytes }
    }
}

impl core::fmt::Display for IpAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.v6 {
            let mut seg = [0u16; 8];
            for (i, s) in seg.iter_mut().enumerate() {
                *s = u16::from_be_bytes([self.bytes[2 * i], self.bytes[2 * i + 1]]);
            }
            core::net::Ipv6Addr::from(seg).fmt(f)
        } else {
            let b = &self.bytes;
            core::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).fmt(f)
        }
    }
}

/// A validated TCP record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRecord {
    pub kind: EventKind,
    pub ts_ns: u64,
    pub task: Task,
    pub sock: u64,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub old_state: u32,
    pub new_state: u32,
}

/// Every kind of record this build understands.
/// The start of what one read or write moved on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRecord<'a> {
    pub ts_ns: u64,
    pub task: Task,
    pub fd: u32,
    /// Read by the process (`true`) or written by it.
    pub ingress: bool,
    /// Bytes the syscall moved; `data` holds the first of them.
    pub len: u32,
    /// The socket and its connection, local end first.
    pub sock: u64,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    /// Plaintext of a TLS connection, from the TLS library.
    pub tls: bool,
    /// The protocol the kernel recognised on the descriptor.
    pub protocol: Protocol,
    pub data: &'a [u8],
}

/// The application protocol of captured bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Http,
    Redis,
    Mqtt,
    Postgres,
    /// MySQL's protocol; spans of a MariaDB server say [`Protocol::Mariadb`].
    Mysql,
    Mariadb,
    Dns,
    Amqp,
    Kafka,
    /// HTTP/2 (records, and the spans of its requests that are not gRPC calls).
    Http2,
    /// gRPC over HTTP/2 (spans only: its records say [`Protocol::Http2`]).
    Grpc,
}

impl Protocol {
    /// `db.system.name` of a database protocol.
    pub fn db_system(self) -> Option<&'static str> {
        match self {
            Self::Redis => Some("redis"),
            Self::Postgres => Some("postgresql"),
            Self::Mysql => Some("mysql"),
            Self::Mariadb => Some("mariadb"),
            _ => None,
        }
    }

    /// `messaging.system` of a messaging protocol.
    pub fn messaging_system(self) -> Option<&'static str> {
        match self {
            Self::Mqtt => Some("mqtt"),
            Self::Amqp => Some("rabbitmq"),
            Self::Kafka => Some("kafka"),
            _ => None,
        }
    }

    /// `messaging.operation.type` of a messaging operation named `operation`.
    pub fn operation_type(self, operation: &str) -> Option<&'static str> {
        match self {
            Self::Mqtt => crate::mqtt::operation_type(operation),
            Self::Amqp => crate::amqp::operation_type(operation),
            Self::Kafka => crate::kafka::operation_type(operation),
            _ => None,
        }
    }

    /// Its errors are codes the server sent (`db.response.status_code`).
    pub fn has_status_codes(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql | Self::Mariadb)
    }
}

/// A descriptor that carried data was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRecord {
    pub ts_ns: u64,
    pub task: Task,
    pub fd: u32,
}

/// A process ran a new program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecRecord<'a> {
    pub ts_ns: u64,
    pub task: Task,
    /// The path `execve` was given (at most [`PATH_CAP`] - 1 bytes, not checked as UTF-8).
    pub path: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Tcp(TcpRecord),
    Data(DataRecord<'a>),
    Close(CloseRecord),
    Exec(ExecRecord<'a>),
    /// The process `task.tgid` ended.
    Exit {
        ts_ns: u64,
        task: Task,
    },
}

/// Little cursor over a byte slice whose length has been checked already.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        let mut b = [0; 2];
        b.copy_from_slice(&self.0[at..at + 2]);
        u16::from_ne_bytes(b)
    }
    fn u32(&self, at: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_ne_bytes(b)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_ne_bytes(b)
    }
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0; N];
        b.copy_from_slice(&self.0[at..at + N]);
        b
    }
}

const HEADER_LEN: usize = core::mem::size_of::<EventHeader>();
/// Bytes of a data record before its captured bytes.
const DATA_HEADER: usize = core::mem::size_of::<DataEvent>() - DATA_CAP;
/// Bytes of an exec record before its path.
const EXEC_HEADER: usize = core::mem::size_of::<ExecEvent>() - PATH_CAP;

/// Decodes one record from the ring.
pub fn decode(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader { len: buf.len() });
    }
    let f = Fields(buf);
    let kind_raw = f.u32(0);
    let size = f.u32(4);
    let kind = EventKind::from_u32(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
    let expected = match kind {
        EventKind::TcpStateChange
        | EventKind::TcpRetransmit
        | EventKind::TcpSendReset
        | EventKind::TcpReceiveReset => core::mem::size_of::<TcpEvent>(),
        EventKind::SocketData => core::mem::size_of::<DataEvent>(),
        EventKind::FdClose => core::mem::size_of::<CloseEvent>(),
        EventKind::ProcessExec => core::mem::size_of::<ExecEvent>(),
        EventKind::ProcessExit => core::mem::size_of::<ExitEvent>(),
    };
    // The ring may pad a record to 8 bytes; the header's size must still be exact. Data
    // records carry only their captured bytes: any size from the header on.
    let exact = match kind {
        EventKind::SocketData => size as usize >= DATA_HEADER && size as usize <= expected,
        EventKind::ProcessExec => size as usize > EXEC_HEADER && size as usize <= expected,
        _ => size as usize == expected,
    };
    if !exact || buf.len() < size as usize {
        return Err(DecodeError::SizeMismatch {
            kind: kind_raw,
            header: size,
            actual: buf.len(),
        });
    }
    let task = Task {
        tgid: f.u32(8),
        tid: f.u32(12),
        comm: f.bytes::<COMM_LEN>(24),
    };
    let ts_ns = f.u64(16);
    match kind {
        EventKind::SocketData => {
            // DataEvent after the header: fd@40 direction@44 len@48 captured@52 sock@56
            // saddr@64 daddr@80 sport@96 dport@98 family@100 flags@102 data@104.
            let dir = f.u32(44);
            if dir != direction::INGRESS && dir != direction::EGRESS {
                return Err(DecodeError::BadDirection(dir));
            }
            let captured = f.u32(52);
            if captured as usize != size as usize - DATA_HEADER || captured > f.u32(48) {
                return Err(DecodeError::BadCaptureLength(captured));
            }
            let v6 = match f.u16(100) {
                AF_INET => false,
                AF_INET6 => true,
                other => return Err(DecodeError::BadFamily(other)),
            };
            return Ok(Record::Data(DataRecord {
                ts_ns,
                task,
                fd: f.u32(40),
                ingress: dir == direction::INGRESS,
                len: f.u32(48),
                sock: f.u64(56),
                local: IpAddr::from_wire(v6, f.bytes::<16>(64)),
                remote: IpAddr::from_wire(v6, f.bytes::<16>(80)),
                local_port: f.u16(96),
                remote_port: f.u16(98),
                tls: f.u16(102) & data_flags::TLS != 0,
                protocol: match f.u16(102) {
                    fl if fl & data_flags::REDIS != 0 => Protocol::Redis,
                    fl if fl & data_flags::MQTT != 0 => Protocol::Mqtt,
                    fl if fl & data_flags::POSTGRES != 0 => Protocol::Postgres,
                    fl if fl & data_flags::MYSQL != 0 => Protocol::Mysql,
                    fl if fl & data_flags::DNS != 0 => Protocol::Dns,
                    fl if fl & data_flags::AMQP != 0 => Protocol::Amqp,
                    fl if fl & data_flags::KAFKA != 0 => Protocol::Kafka,
                    fl if fl & data_flags::HTTP2 != 0 => Protocol::Http2,
                    _ => Protocol::Http,
                },
                data: &buf[104..104 + captured as usize],
            }));
        }
        EventKind::ProcessExec => {
            // ExecEvent after the header: path_len@40 pad@44 path@48 (NUL after path_len).
            let n = f.u32(40);
            if n as usize + 1 != size as usize - EXEC_HEADER {
                return Err(DecodeError::BadPathLength(n));
            }
            return Ok(Record::Exec(ExecRecord {
                ts_ns,
                task,
                path: &buf[EXEC_HEADER..EXEC_HEADER + n as usize],
            }));
        }
        EventKind::ProcessExit => return Ok(Record::Exit { ts_ns, task }),
        EventKind::FdClose => {
            return Ok(Record::Close(CloseRecord {
                ts_ns,
                task,
                fd: f.u32(40),
            }));
        }
        _ => {}
    }
    // TcpEvent after the header: sock@40 saddr@48 daddr@64 sport@80 dport@82 family@84
    // pad@86 old_state@88 new_state@92.
    let family = f.u16(84);
    let v6 = match family {
        AF_INET => false,
        AF_INET6 => true,
        other => return Err(DecodeError::BadFamily(other)),
    };
    let (old_state, new_state) = (f.u32(88), f.u32(92));
    for s in [old_state, new_state] {
        if s >= tcp_state::MAX {
            return Err(DecodeError::BadState(s));
        }
    }
    Ok(Record::Tcp(TcpRecord {
        kind,
        ts_ns,
        task,
        sock: f.u64(40),
        local: IpAddr::from_wire(v6, f.bytes::<16>(48)),
        remote: IpAddr::from_wire(v6, f.bytes::<16>(64)),
        local_port: f.u16(80),
        remote_port: f.u16(82),
        old_state,
        new_state,
    }))
}

/// Test and fuzz helper: the wire bytes of a [`TcpEvent`], laid out as the kernel writes them.
pub fn encode_tcp_event(e: &TcpEvent) -> [u8; core::mem::size_of::<TcpEvent>()] {
    let mut b = [0u8; core::mem::size_of::<TcpEvent>()];
    let h = &e.header;
    b[0..4].copy_from_slice(&h.kind.to_ne_bytes());
    b[4..8].copy_from_slice(&h.size.to_ne_bytes());
    b[8..12].copy_from_slice(&h.tgid.to_ne_bytes());
    b[12..16].copy_from_slice(&h.tid.to_ne_bytes());
    b[16..24].copy_from_slice(&h.ts_ns.to_ne_bytes());
    b[24..40].copy_from_slice(&h.comm);
    b[40..48].copy_from_slice(&e.sock.to_ne_bytes());
    b[48..64].copy_from_slice(&e.saddr);
    b[64..80].copy_from_slice(&e.daddr);
    b[80..82].copy_from_slice(&e.sport.to_ne_bytes());
    b[82..84].copy_from_slice(&e.dport.to_ne_bytes());
    b[84..86].copy_from_slice(&e.family.to_ne_bytes());
    b[88..92].copy_from_slice(&e.old_state.to_ne_bytes());
    b[92..96].copy_from_slice(&e.new_state.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn sample() -> TcpEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        TcpEvent {
            header: EventHeader {
                kind: EventKind::TcpStateChange as u32,
                size: 96,
                tgid: 42,
                tid: 43,
                ts_ns: 1_000,
                comm,
            },
            sock: 0xffff_8880_0000_1000,
            saddr,
            daddr: saddr,
            sport: 51000,
            dport: 8080,
            family: AF_INET,
            _pad0: 0,
            old_state: tcp_state::SYN_SENT,
            new_state: tcp_state::ESTABLISHED,
        }
    }

    #[test]
    fn decodes_a_state_change() {
        let bytes = encode_tcp_event(&sample());
        let Ok(Record::Tcp(r)) = decode(&bytes) else {
            panic!("should decode")
        };
        assert_eq!(r.kind, EventKind::TcpStateChange);
        assert_eq!(r.task.tgid, 42);
        assert_eq!(r.task.comm_str(), "curl");
        assert_eq!(r.local.to_string(), "127.0.0.1");
        assert_eq!((r.local_port, r.remote_port), (51000, 8080));
        assert_eq!(r.new_state, tcp_state::ESTABLISHED);
        // Ring records are padded to 8 bytes: trailing bytes are allowed.
        let mut padded = [0u8; 104];
        padded[..96].copy_from_slice(&bytes);
        assert!(decode(&padded).is_ok());
    }

    #[test]
    fn rejects_malformed_records() {
        let good = encode_tcp_event(&sample());
        for len in 0..good.len() {
            assert!(
                decode(&good[..len]).is_err(),
                "prefix of {len} bytes must be rejected"
            );
        }
        let mut e = sample();
        e.header.kind = 99;
        assert_eq!(
            decode(&encode_tcp_event(&e)),
            Err(DecodeError::UnknownKind(99))
        );
        let mut e = sample();
        e.header.size = 4_000_000_000;
        assert!(matches!(
            decode(&encode_tcp_event(&e)),
            Err(DecodeError::SizeMismatch { .. })
        ));
        let mut e = sample();
        e.family = 1;
        assert_eq!(
            decode(&encode_tcp_event(&e)),
            Err(DecodeError::BadFamily(1))
        );
        let mut e = sample();
        e.new_state = 200;
        assert_eq!(
            decode(&encode_tcp_event(&e)),
            Err(DecodeError::BadState(200))
        );
    }

    /// A data record as the kernel writes it: the header, then only the captured bytes.
    fn data_record(data: &[u8], dir: u32) -> alloc::vec::Vec<u8> {
        let size = DATA_HEADER + data.len();
        let mut b = alloc::vec![0u8; size];
        b[0..4].copy_from_slice(&(EventKind::SocketData as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&(size as u32).to_ne_bytes());
        b[8..12].copy_from_slice(&42u32.to_ne_bytes());
        b[16..24].copy_from_slice(&7u64.to_ne_bytes());
        b[40..44].copy_from_slice(&5u32.to_ne_bytes());
        b[44..48].copy_from_slice(&dir.to_ne_bytes());
        b[48..52].copy_from_slice(&1000u32.to_ne_bytes());
        b[52..56].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        b[64..68].copy_from_slice(&[127, 0, 0, 1]);
        b[96..98].copy_from_slice(&8080u16.to_ne_bytes());
        b[100..102].copy_from_slice(&AF_INET.to_ne_bytes());
        b[102..104].copy_from_slice(&data_flags::TLS.to_ne_bytes());
        b[DATA_HEADER..].copy_from_slice(data);
        b
    }

    #[test]
    fn decodes_data_records_of_any_captured_length() {
        let req = b"GET / HTTP/1.1\r\n\r\n";
        let mut padded = data_record(req, direction::INGRESS);
        padded.extend_from_slice(&[0; 5]); // the ring pads to 8 bytes
        match decode(&padded) {
            Ok(Record::Data(d)) => {
                assert_eq!(d.data, req);
                assert!(d.ingress && d.tls);
                assert_eq!((d.fd, d.len, d.local_port), (5, 1000, 8080));
                assert_eq!(d.local.to_string(), "127.0.0.1");
            }
            other => panic!("{other:?}"),
        }
        let good = data_record(req, direction::EGRESS);
        assert!(decode(&good[..good.len() - 1]).is_err(), "cut short");
        let mut bad = good.clone();
        bad[52] += 1; // captured disagrees with the size
        assert!(decode(&bad).is_err());
        let mut bad = good.clone();
        bad[44] = 9;
        assert_eq!(decode(&bad), Err(DecodeError::BadDirection(9)));
        let too_big = data_record(&[b'x'; DATA_CAP + 1], direction::EGRESS);
        assert!(
            decode(&too_big).is_err(),
            "more than the kernel can capture"
        );
    }

    #[test]
    fn decodes_exec_and_exit_records() {
        let path = b"/usr/bin/python3.11";
        let size = EXEC_HEADER + path.len() + 1;
        let mut b = alloc::vec![0u8; size];
        b[0..4].copy_from_slice(&(EventKind::ProcessExec as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&(size as u32).to_ne_bytes());
        b[8..12].copy_from_slice(&4242u32.to_ne_bytes());
        b[40..44].copy_from_slice(&(path.len() as u32).to_ne_bytes());
        b[EXEC_HEADER..EXEC_HEADER + path.len()].copy_from_slice(path);
        let mut padded = b.clone();
        padded.extend_from_slice(&[0; 3]);
        match decode(&padded) {
            Ok(Record::Exec(e)) => assert_eq!((e.task.tgid, e.path), (4242, &path[..])),
            other => panic!("{other:?}"),
        }
        let mut bad = b.clone();
        bad[40] += 1; // the path would run past the record
        assert_eq!(
            decode(&bad),
            Err(DecodeError::BadPathLength(path.len() as u32 + 1))
        );
        let mut bad = b.clone();
        bad[4..8].copy_from_slice(&(EXEC_HEADER as u32).to_ne_bytes());
        assert!(decode(&bad).is_err(), "no room for even the NUL");
        let mut exit = alloc::vec![0u8; HEADER_LEN];
        exit[0..4].copy_from_slice(&(EventKind::ProcessExit as u32).to_ne_bytes());
        exit[4..8].copy_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
        exit[8..12].copy_from_slice(&77u32.to_ne_bytes());
        assert!(matches!(decode(&exit), Ok(Record::Exit { task, .. }) if task.tgid == 77));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let mut b = [0u8; 16];
        b[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        let a = IpAddr::from_wire(true, b);
        assert_eq!((a.v6, a.to_string()), (false, "127.0.0.1".into()));
        b[9] = 1;
        assert!(
            IpAddr::from_wire(true, b).v6,
            "only ::ffff:0:0/96 is mapped"
        );
    }

    #[test]
    fn formats_ipv6() {
        let mut bytes = [0u8; 16];
        bytes[15] = 1;
        assert_eq!(IpAddr { v6: true, bytes }.to_string(), "::1");
    }
}
