//! Tracepoint record layouts, read from tracefs `format` text.
//!
//! Field offsets move between kernel versions (and `tcp_send_reset` changed shape in 6.10), so
//! the agent reads `events/<group>/<name>/format` at start-up and hands the offsets to the
//! programs. This module parses that text; `io` reads the file.

use telegen_common::{FIELD_ABSENT, TcpTpOffsets};

/// One `field:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub offset: u32,
    pub size: u32,
}

/// Why a layout could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError<'a> {
    /// A `field:` line that does not read `field:TYPE NAME; offset:N; size:N;`.
    Malformed { line: usize },
    /// A field the program needs is not in this kernel's record.
    Missing(&'static str),
    /// A field has a size the program does not read.
    Size {
        field: &'a str,
        size: u32,
        expected: u32,
    },
}

impl core::fmt::Display for LayoutError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed { line } => write!(f, "line {line}: not a `field:` description"),
            Self::Missing(name) => write!(f, "no field `{name}`"),
            Self::Size {
                field,
                size,
                expected,
            } => {
                write!(f, "field `{field}` is {size} bytes, expected {expected}")
            }
        }
    }
}

/// Iterates over the fields of a `format` file, in order.
pub fn fields(format: &str) -> impl Iterator<Item = Result<Field<'_>, LayoutError<'_>>> {
    format.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?;
        Some(parse_field(decl).ok_or(LayoutError::Malformed { line: i + 1 }))
    })
}

fn parse_field(decl: &str) -> Option<Field<'_>> {
    let mut parts = decl.split(';').map(str::trim);
    let ty_name = parts.next()?;
    let raw_name = ty_name
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()?;
    let name = raw_name.split('[').next()?;
    let mut offset = None;
    let mut size = None;
    for p in parts {
        if let Some(v) = p.strip_prefix("offset:") {
            offset = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("size:") {
            size = v.parse().ok();
        }
    }
    if name.is_empty() {
        return None;
    }
    Some(Field {
        name,
        offset: offset?,
        size: size?,
    })
}

/// The TCP tracepoints the agent attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpTracepoint {
    InetSockSetState,
    TcpRetransmitSkb,
    TcpSendReset,
    TcpReceiveReset,
}

impl TcpTracepoint {
    pub const ALL: [Self; 4] = [
        Self::InetSockSetState,
        Self::TcpRetransmitSkb,
        Self::TcpSendReset,
        Self::TcpReceiveReset,
    ];

    /// tracefs group and event name.
    pub const fn event(self) -> (&'static str, &'static str) {
        match self {
            Self::InetSockSetState => ("sock", "inet_sock_set_state"),
            Self::TcpRetransmitSkb => ("tcp", "tcp_retransmit_skb"),
            Self::TcpSendReset => ("tcp", "tcp_send_reset"),
            Self::TcpReceiveReset => ("tcp", "tcp_receive_reset"),
        }
    }

    /// The program's name in the object, which is also the event name.
    pub const fn program(self) -> &'static str {
        self.event().1
    }

    /// The global in the object that receives this tracepoint's offsets.
    pub const fn offsets_global(self) -> &'static str {
        match self {
            Self::InetSockSetState => "SET_STATE_OFFSETS",
            Self::TcpRetransmitSkb => "RETRANSMIT_OFFSETS",
            Self::TcpSendReset => "SEND_RESET_OFFSETS",
            Self::TcpReceiveReset => "RECEIVE_RESET_OFFSETS",
        }
    }
}

/// Builds the offsets a TCP program needs from this kernel's `format` text.
pub fn tcp_offsets(tp: TcpTracepoint, format: &str) -> Result<TcpTpOffsets, LayoutError<'_>> {
    let mut o = TcpTpOffsets::ABSENT;
    let mut sockaddr_size = None;
    for field in fields(format) {
        let field = field?;
        let (slot, expected): (&mut u32, u32) = match field.name {
            "skaddr" => (&mut o.skaddr, 8),
            "oldstate" => (&mut o.oldstate, 4),
            "newstate" => (&mut o.newstate, 4),
            "state" => (&mut o.state, 4),
            "sport" => (&mut o.sport, 2),
            "dport" => (&mut o.dport, 2),
            "family" => (&mut o.family, 2),
            "protocol" => (&mut o.protocol, 2),
            "saddr_v6" => (&mut o.saddr_v6, 16),
            "daddr_v6" => (&mut o.daddr_v6, 16),
            "saddr" | "daddr" => {
                // Bare IPv4 addresses, or whole sockaddrs (sockaddr_in6 is 28 bytes).
                let expected = if field.size == 28 { 28 } else { 4 };
                if field.size == 28 {
                    sockaddr_size = Some(28);
                }
                let slot = if field.name == "saddr" {
                    &mut o.saddr
                } else {
                    &mut o.daddr
                };
                (slot, expected)
            }
            _ => continue,
        };
        if field.size != expected {
            return Err(LayoutError::Size {
                field: field.name,
                size: field.size,
                expected,
            });
        }
        *slot = field.offset;
    }
    if sockaddr_size.is_some() {
        o.sockaddr = 1;
        for (name, off) in [("saddr", o.saddr), ("daddr", o.daddr)] {
            if off == FIELD_ABSENT {
                return Err(LayoutError::Missing(name));
            }
        }
    }
    let mut required: &[(&'static str, u32)] = &[("skaddr", o.skaddr)];
    let state_pair = [
        ("skaddr", o.skaddr),
        ("oldstate", o.oldstate),
        ("newstate", o.newstate),
    ];
    if tp == TcpTracepoint::InetSockSetState {
        required = &state_pair;
    }
    for (name, off) in required {
        if *off == FIELD_ABSENT {
            return Err(LayoutError::Missing(name));
        }
    }
    if o.sockaddr == 0 && (o.sport == FIELD_ABSENT || o.dport == FIELD_ABSENT) {
        return Err(LayoutError::Missing("sport/dport"));
    }
    Ok(o)
}

/// Offset of `filename` in `sched:sched_process_exec`'s record: a 4-byte `__data_loc`
/// (the string's offset in the record in its low 16 bits, its length in the high 16).
pub fn exec_filename_offset(format: &str) -> Result<u32, LayoutError<'_>> {
    field_offset(format, "filename", 4)
}

/// Offset of `skaddr` (the `struct sock` address, 8 bytes) in `tcp:tcp_rcv_space_adjust`'s
/// record.
pub fn rcv_space_skaddr_offset(format: &str) -> Result<u32, LayoutError<'_>> {
    field_offset(format, "skaddr", 8)
}

/// Offset of the field `name`, which must be `size` bytes.
fn field_offset<'a>(
    format: &'a str,
    name: &'static str,
    size: u32,
) -> Result<u32, LayoutError<'a>> {
    for f in fields(format) {
        let f = f?;
        if f.name == name {
            if f.size != size {
                return Err(LayoutError::Size {
                    field: f.name,
                    size: f.size,
                    expected: size,
                });
            }
            return Ok(f.offset);
        }
    }
    Err(LayoutError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a 6.18 kernel's tracefs.
    const SET_STATE: &str = include_str!("testdata/tracefs-6.18/inet_sock_set_state.format");
    const RETRANSMIT: &str = include_str!("testdata/tracefs-6.18/tcp_retransmit_skb.format");
    const SEND_RESET: &str = include_str!("testdata/tracefs-6.18/tcp_send_reset.format");
    const RECEIVE_RESET: &str = include_str!("testdata/tracefs-6.18/tcp_receive_reset.format");

    #[test]
    fn parses_inet_sock_set_state() {
        let o = tcp_offsets(TcpTracepoint::InetSockSetState, SET_STATE).unwrap();
        assert_eq!((o.skaddr, o.oldstate, o.newstate), (8, 16, 20));
        assert_eq!((o.sport, o.dport, o.family, o.protocol), (24, 26, 28, 30));
        assert_eq!((o.saddr, o.daddr, o.saddr_v6, o.daddr_v6), (32, 36, 40, 56));
        assert_eq!((o.state, o.sockaddr), (FIELD_ABSENT, 0));
    }

    #[test]
    fn parses_the_reset_and_retransmit_shapes() {
        let o = tcp_offsets(TcpTracepoint::TcpRetransmitSkb, RETRANSMIT).unwrap();
        assert_eq!(
            (o.skaddr, o.state, o.sport, o.family, o.saddr_v6),
            (16, 24, 28, 32, 42)
        );
        let o = tcp_offsets(TcpTracepoint::TcpSendReset, SEND_RESET).unwrap();
        assert_eq!(
            (o.skaddr, o.state, o.saddr, o.daddr, o.sockaddr),
            (16, 24, 32, 60, 1)
        );
        assert_eq!(o.sport, FIELD_ABSENT);
        let o = tcp_offsets(TcpTracepoint::TcpReceiveReset, RECEIVE_RESET).unwrap();
        assert_eq!(
            (o.skaddr, o.sport, o.family, o.saddr, o.daddr_v6),
            (8, 16, 20, 22, 46)
        );
        assert_eq!(o.state, FIELD_ABSENT);
    }

    /// This machine's `events/sched/sched_process_exec/format` (Linux 6.x; the same since 3.4).
    const EXEC: &str = "name: sched_process_exec
ID: 365
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid
";

    #[test]
    fn exec_filename() {
        assert_eq!(exec_filename_offset(EXEC), Ok(8));
        assert_eq!(
            exec_filename_offset(&EXEC.replace("filename;", "file;")),
            Err(LayoutError::Missing("filename"))
        );
        assert!(matches!(
            exec_filename_offset(&EXEC.replace("offset:8;\tsize:4", "offset:8;\tsize:8")),
            Err(LayoutError::Size { size: 8, .. })
        ));
    }

    #[test]
    fn rcv_space_skaddr() {
        let f = include_str!("testdata/tracefs-6.18/tcp_rcv_space_adjust.format");
        assert_eq!(rcv_space_skaddr_offset(f), Ok(8));
        assert_eq!(
            rcv_space_skaddr_offset(&f.replace("skaddr;", "sk;")),
            Err(LayoutError::Missing("skaddr"))
        );
        assert!(matches!(
            rcv_space_skaddr_offset(&f.replace("offset:8;\tsize:8", "offset:8;\tsize:4")),
            Err(LayoutError::Size { size: 4, .. })
        ));
    }

    #[test]
    fn explains_what_is_wrong() {
        let no_state = SET_STATE.replace("newstate", "whatever");
        assert_eq!(
            tcp_offsets(TcpTracepoint::InetSockSetState, &no_state),
            Err(LayoutError::Missing("newstate"))
        );
        let wide = SET_STATE.replace("offset:24;\tsize:2;", "offset:24;\tsize:4;");
        assert!(matches!(
            tcp_offsets(TcpTracepoint::InetSockSetState, &wide),
            Err(LayoutError::Size {
                field: "sport",
                size: 4,
                expected: 2
            })
        ));
        let broken = SET_STATE.replace("offset:8;", "offset:x;");
        assert!(matches!(
            tcp_offsets(TcpTracepoint::InetSockSetState, &broken),
            Err(LayoutError::Malformed { line: 9 })
        ));
        assert!(tcp_offsets(TcpTracepoint::TcpRetransmitSkb, "").is_err());
    }
}
