//! MySQL and MariaDB exchanges (the client/server protocol, 4.1 and later) from captured
//! socket data: spans and the client operation-duration metric.
//!
//! The server speaks first: the kernel tags a descriptor as MySQL when a handshake packet
//! crosses it (a length, sequence 0, protocol version 10, a version string starting with a
//! digit), and from then on hands over every read and write on it. The handshake names the
//! server (a version containing `MariaDB` makes `db.system.name=mariadb`); the client's
//! answer names the capabilities both use and the database (`db.namespace`, later changed
//! by `COM_INIT_DB`). Connections opened before the agent started are not followed. When
//! the client asks for TLS (an SSL request instead of its response), the connection is
//! followed on through the plaintext the TLS library hands over, its ciphertext ignored.
//!
//! What is one operation: a `COM_QUERY`, or a `COM_STMT_EXECUTE` of a statement prepared on
//! the connection (its text comes from the `COM_STMT_PREPARE` whose reply gave its id; the
//! last [`STATEMENTS`] are remembered), from the command to the end of its reply: an OK or
//! ERR packet, or a result set's last EOF (or OK, with `CLIENT_DEPRECATE_EOF`), following
//! further result sets while the server says more exist. Other commands (a prepare, a
//! ping, `COM_INIT_DB`…) are round trips but make no span. An ERR packet fails its
//! operation with the error number (`db.response.status_code`, `error.type`).

use crate::frames::{Framer, Framing, Msg, cstr};
use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Namespace, Table, Word, conn_key};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::sql::{Dialect, obfuscate, operation};
use crate::tcp::Side;

pub use crate::redis::{CLIENT_DURATION, DURATION_BOUNDS};

/// Commands a connection may have waiting for their replies.
pub const PIPELINE_DEPTH: usize = 4;
/// Prepared statements remembered per connection.
pub const STATEMENTS: usize = 4;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC_DATA: u32 = 0x0020_0000;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// Whether a call's first bytes are a server's handshake, as the kernel decides it: a
/// packet of sequence 0 shorter than 64 KiB, protocol version 10, a version's first digits.
pub fn starts_session(b: &[u8]) -> bool {
    let v = |c: u8| c.is_ascii_digit() || c == b'.';
    matches!(b, [_, _, 0, 0, 10, d, e, f, ..] if d.is_ascii_digit() && v(*e) && v(*f))
}

#[derive(Debug, Clone)]
struct Statement {
    id: u32,
    operation: Word,
    text: Path,
}

/// Where the reply to the oldest waiting command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Its next packet starts a result (OK, ERR or a result set's column count).
    First,
    /// In a result set, with this many EOF markers still to come.
    Rows(u8),
    /// After a prepare's OK, with this many definition packets still to come.
    Definitions(u32),
}

#[derive(Debug, Clone)]
struct Waiting {
    command: u8,
    /// The operation of a query or execute; `None` for a command that makes no span.
    begun: Option<Begun>,
    /// A prepare's (or an init-db's) statement, kept until the reply names it.
    operation: Word,
    text: Path,
    error: Word,
}

#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    protocol: Protocol,
    capabilities: u32,
    /// The handshake is not over (no OK or ERR from the server yet).
    authenticating: bool,
    namespace: Namespace,
    front: Framer,
    back: Framer,
    waiting: heapless::Deque<Waiting, PIPELINE_DEPTH>,
    reply: Reply,
    statements: heapless::Deque<Statement, STATEMENTS>,
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        self.protocol
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        // The oldest that makes a span.
        let w = core::iter::from_fn(|| self.waiting.pop_front()).find(|w| w.begun.is_some())?;
        Some((w.begun?, w.error))
    }
}

/// Tracks MySQL exchanges and aggregates the client metric; spans go to the HTTP tracker's
/// queue.
pub struct MysqlTracker {
    t: Table<Conn>,
}

crate::l7::table_tracker!(MysqlTracker, "MySQL");

impl MysqlTracker {
    /// Handles what one read or write moved on a MySQL descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        let starts = starts_session(r.data);
        if starts {
            self.t.end_all(key, r.ts_ns, spans, drops);
            // The server sends the handshake: its sender is the server.
            let side = if r.ingress {
                Side::Client
            } else {
                Side::Server
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                protocol: Protocol::Mysql,
                capabilities: 0,
                authenticating: true,
                namespace: Namespace::new(),
                front: Framer::new(Framing::Mysql),
                back: Framer::new(Framing::Mysql),
                waiting: heapless::Deque::new(),
                reply: Reply::First,
                statements: heapless::Deque::new(),
                lost: false,
            };
            if !self.t.open(key, conn, drops) {
                return;
            }
        }
        let Some(conn) = self.t.conns.get_mut(&key) else {
            return;
        };
        if conn.lost || conn.ends.tls != r.tls {
            return;
        }
        let gap = u64::from(r.len).saturating_sub(r.data.len() as u64);
        let frontend = (conn.ends.side == Side::Server) == r.ingress;
        let mut ended: heapless::Vec<Waiting, PIPELINE_DEPTH> = heapless::Vec::new();
        let scanned = if frontend {
            let Conn {
                front,
                waiting,
                authenticating,
                capabilities,
                namespace,
                statements,
                ends,
                ..
            } = conn;
            let calls = ends.side == Side::Client;
            let mut sent = |m: Msg<'_>| {
                if *authenticating {
                    // The response is packet 1, or 2 after an SSL request.
                    if (m.tag == 1 || (m.tag == 2 && ends.tls))
                        && handshake_response(m.body, capabilities, namespace)
                    {
                        // TLS follows: the plaintext the library reads and writes is
                        // followed from here, the ciphertext ignored.
                        ends.tls = true;
                    }
                    return;
                }
                if m.tag != 0 || m.continued {
                    return;
                }
                let Some((&command, body)) = m.body.split_first() else {
                    return;
                };
                if matches!(command, COM_QUIT | COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA) {
                    // No reply comes.
                    if command == COM_STMT_CLOSE && body.len() >= 4 {
                        remove(
                            statements,
                            u32::from_le_bytes([body[0], body[1], body[2], body[3]]),
                        );
                    }
                    return;
                }
                let mut w = Waiting {
                    command,
                    begun: None,
                    operation: Word::new(),
                    text: Path::new(),
                    error: Word::new(),
                };
                match command {
                    COM_QUERY | COM_STMT_PREPARE => {
                        obfuscate(body, Dialect::Mysql, &mut w.text);
                        w.operation = operation(&w.text);
                    }
                    COM_STMT_EXECUTE if body.len() >= 4 => {
                        let id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
                        if let Some(s) = statements.iter().find(|s| s.id == id) {
                            w.operation = s.operation.clone();
                            w.text = s.text.clone();
                        }
                    }
                    COM_INIT_DB => {
                        for &c in body {
                            if !c.is_ascii_graphic() || w.text.push(c as char).is_err() {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
                if matches!(command, COM_QUERY | COM_STMT_EXECUTE) {
                    let (op, text) = (w.operation.clone(), core::mem::take(&mut w.text));
                    let mut b = Begun::new(op, text, r.ts_ns, calls, r.task.tid, spans);
                    b.namespace = namespace.clone();
                    w.begun = Some(b);
                }
                if waiting.push_back(w).is_err() {
                    drops.drop(DropReason::DbPipelineFull, 1);
                }
            };
            front
                .feed(r.data, &mut sent)
                .and_then(|()| front.gap(gap, &mut sent))
        } else {
            let Conn {
                back,
                waiting,
                authenticating,
                capabilities,
                reply,
                protocol,
                statements,
                namespace,
                ..
            } = conn;
            let deprecate_eof = *capabilities & CLIENT_DEPRECATE_EOF != 0;
            let mut replied = |m: Msg<'_>| {
                let Some(&first) = m.body.first() else {
                    return;
                };
                if *authenticating {
                    if m.tag == 0 && first == 10 && m.body.windows(7).any(|w| w == b"MariaDB") {
                        *protocol = Protocol::Mariadb;
                    }
                    if m.tag > 0 && matches!(first, 0x00 | 0xff) {
                        *authenticating = false;
                    }
                    return;
                }
                if m.continued {
                    return;
                }
                let Some(w) = waiting.front_mut() else {
                    return;
                };
                let len = m.body.len();
                let eof = first == 0xfe && (len < 9 || (deprecate_eof && m.whole));
                let done = match *reply {
                    Reply::First => match first {
                        0xff => {
                            w.error = error_code(m.body);
                            true
                        }
                        0x00 if w.command == COM_STMT_PREPARE => {
                            prepared(m.body, w, statements, deprecate_eof, reply)
                        }
                        0x00 | 0xfe => {
                            if w.command == COM_INIT_DB && first == 0 {
                                namespace.clear();
                                let _ = namespace.push_str(&w.text);
                            }
                            !more_results(ok_status(m.body))
                        }
                        // LOCAL INFILE: the client sends the file, then the reply comes.
                        0xfb => false,
                        _ => {
                            *reply = Reply::Rows(if deprecate_eof { 1 } else { 2 });
                            false
                        }
                    },
                    Reply::Rows(left) => {
                        if first == 0xff {
                            w.error = error_code(m.body);
                            true
                        } else if eof {
                            let status = if len < 9 {
                                m.body
                                    .get(3..5)
                                    .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
                            } else {
                                ok_status(m.body)
                            };
                            if left > 1 {
                                *reply = Reply::Rows(left - 1);
                                false
                            } else {
                                // The last marker: the reply is over unless more results
                                // follow, the next packet starting one.
                                *reply = Reply::First;
                                !more_results(status)
                            }
                        } else {
                            false
                        }
                    }
                    Reply::Definitions(left) => {
                        *reply = Reply::Definitions(left - 1);
                        left == 1
                    }
                };
                if done {
                    *reply = Reply::First;
                    if let Some(w) = waiting.pop_front() {
                        let _ = ended.push(w);
                    }
                }
            };
            back.feed(r.data, &mut replied)
                .and_then(|()| back.gap(gap, &mut replied))
        };
        let (ends, protocol) = (conn.ends, conn.protocol);
        if scanned.is_err() {
            drops.drop(
                DropReason::ProtocolDesync,
                1 + conn.waiting.iter().filter(|w| w.begun.is_some()).count() as u64,
            );
            conn.waiting.clear();
            conn.lost = true;
        }
        for w in ended {
            if let Some(b) = w.begun {
                let e = w.error;
                self.t
                    .finish(protocol, &ends, b, r.ts_ns, e, None, spans, drops);
            }
        }
    }
}

/// The client's handshake response: the capabilities, and the database it names. Whether
/// it was an SSL request (TLS follows).
fn handshake_response(body: &[u8], capabilities: &mut u32, namespace: &mut Namespace) -> bool {
    let Some(c) = body.get(..4) else {
        return false;
    };
    let caps = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return false;
    }
    *capabilities = caps;
    if caps & CLIENT_SSL != 0 && body.len() == 32 {
        return true;
    }
    // Capabilities, max packet size, character set, 23 bytes of filler.
    let Some(rest) = body.get(32..) else {
        return false;
    };
    let (_user, rest) = cstr(rest);
    let rest = if caps & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
        let Some((n, rest)) = lenenc(rest) else {
            return false;
        };
        rest.get(n as usize..).unwrap_or(&[])
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let Some((&n, rest)) = rest.split_first() else {
            return false;
        };
        rest.get(usize::from(n)..).unwrap_or(&[])
    } else {
        cstr(rest).1
    };
    if caps & CLIENT_CONNECT_WITH_DB != 0 && !rest.is_empty() {
        let (db, _) = cstr(rest);
        namespace.clear();
        for &c in db {
            if !c.is_ascii_graphic() || namespace.push(c as char).is_err() {
                break;
            }
        }
    }
    false
}

/// A prepare's OK: remembers the statement under its id and counts the definitions that
/// follow. Whether the reply is over.
fn prepared(
    body: &[u8],
    w: &mut Waiting,
    statements: &mut heapless::Deque<Statement, STATEMENTS>,
    deprecate_eof: bool,
    reply: &mut Reply,
) -> bool {
    let Some(b) = body.get(..9) else {
        return true;
    };
    let id = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let columns = u32::from(u16::from_le_bytes([b[5], b[6]]));
    let params = u32::from(u16::from_le_bytes([b[7], b[8]]));
    remove(statements, id);
    if statements.is_full() {
        statements.pop_front();
    }
    let _ = statements.push_back(Statement {
        id,
        operation: core::mem::take(&mut w.operation),
        text: core::mem::take(&mut w.text),
    });
    let eofs = if deprecate_eof {
        0
    } else {
        u32::from(columns > 0) + u32::from(params > 0)
    };
    let left = columns + params + eofs;
    if left == 0 {
        return true;
    }
    *reply = Reply::Definitions(left);
    false
}

fn remove(statements: &mut heapless::Deque<Statement, STATEMENTS>, id: u32) {
    for _ in 0..statements.len() {
        if let Some(s) = statements.pop_front()
            && s.id != id
        {
            let _ = statements.push_back(s);
        }
    }
}

/// A length-encoded integer and what follows it.
fn lenenc(b: &[u8]) -> Option<(u64, &[u8])> {
    let (&first, rest) = b.split_first()?;
    let n = match first {
        0..=0xfa => return Some((u64::from(first), rest)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..n)?;
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |v, &c| (v << 8) | u64::from(c));
    Some((v, &rest[n..]))
}

/// The status flags of an OK packet (`0x00` or `0xfe` header).
fn ok_status(body: &[u8]) -> u16 {
    let status = lenenc(body.get(1..).unwrap_or(&[]))
        .and_then(|(_, rest)| lenenc(rest))
        .and_then(|(_, rest)| rest.get(..2));
    status.map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn more_results(status: u16) -> bool {
    status & SERVER_MORE_RESULTS_EXISTS != 0
}

/// The error number of an ERR packet, in decimal.
fn error_code(body: &[u8]) -> Word {
    let mut w = Word::new();
    let code = body
        .get(1..3)
        .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let _ = core::fmt::write(&mut w, format_args!("{code}"));
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Recorded by `telegen --record` from MariaDB 10.11 (Debian 12) serving its mariadb
    /// client (a session per statement) and Perl's DBD::MariaDB over libmariadb with
    /// server-side prepared statements.
    const RECORDING: &[u8] = include_bytes!("testdata/db/mariadb.rec");

    #[test]
    fn a_recorded_session_of_the_mariadb_client_and_dbd_mariadb() {
        let (spans, counters) = crate::pipeline::replay(RECORDING);
        assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
        let mut seen: Vec<(&str, &str, &str, &str)> = spans
            .iter()
            .filter(|s| s.protocol == Protocol::Mariadb && s.side == Side::Client)
            .filter(|s| s.method != "SET")
            .map(|s| {
                let comm = core::str::from_utf8(&s.process.comm).unwrap_or("");
                let comm = comm.trim_end_matches('\0');
                (
                    comm,
                    s.method.as_str(),
                    s.path.as_str(),
                    s.db_error.as_str(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("mariadb", "CREATE", "CREATE DATABASE shop", ""),
                (
                    "mariadb",
                    "CREATE",
                    "CREATE TABLE items (id int PRIMARY KEY, name text)",
                    ""
                ),
                ("mariadb", "INSERT", "INSERT INTO items VALUES (?, ?)", ""),
                ("mariadb", "SELECT", "SELECT * FROM missing_table", "1146"),
                (
                    "mariadb",
                    "SELECT",
                    "SELECT name FROM items WHERE id = ?",
                    ""
                ),
                ("perl", "INSERT", "INSERT INTO items VALUES (?, ?)", "1062"),
                ("perl", "SELECT", "SELECT name FROM items WHERE id = ?", ""),
                ("perl", "SELECT", "SELECT name FROM items WHERE id = ?", ""),
                ("perl", "SELECT", "SELECT name FROM items WHERE id = ?", ""),
                ("perl", "SELECT", "SELECT name FROM items WHERE id = ?", ""),
            ]
        );
        let ends = |side: Side| {
            spans
                .iter()
                .filter(|s| s.protocol == Protocol::Mariadb && s.side == side)
                .count()
        };
        assert_eq!(ends(Side::Client), ends(Side::Server));
        assert!(spans.iter().all(|s| s.protocol != Protocol::Mysql));
    }

    #[test]
    fn replies_end_where_the_protocol_says() {
        assert!(starts_session(b"\x5b\0\0\0\x0a10.11.19-MariaDB"));
        assert!(starts_session(b"\x4a\0\0\0\x0a8.0.36\0"));
        assert!(!starts_session(b"\x4a\0\0\x01\x0a8.0.36\0"));
        assert_eq!(lenenc(&[0xfc, 0x10, 0x27, 9]), Some((10_000, &[9u8][..])));
        assert_eq!(lenenc(&[0xfe, 1]), None);
        // OK: affected rows 1, insert id 0, status SERVER_MORE_RESULTS_EXISTS | autocommit.
        assert!(more_results(ok_status(&[0, 1, 0, 0x0a, 0, 0, 0])));
        assert!(!more_results(ok_status(&[0, 1, 0, 2, 0, 0, 0])));
        assert_eq!(error_code(b"\xff\x7a\x04#42S02Table"), "1146");
    }
}
