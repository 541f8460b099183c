//! PostgreSQL exchanges (wire protocol 3.0) from captured socket data: spans and the client
//! operation-duration metric.
//!
//! The kernel tags a descriptor as PostgreSQL when a startup message crosses it (a length,
//! then the protocol code `00 03 00 00`), and from then on hands over every read and write
//! on it. Connections opened before the agent started are not followed: nothing in their
//! later messages tells PostgreSQL apart reliably.
//!
//! What is one operation:
//! - a simple query (`Q`): from the message to the server's `ReadyForQuery`;
//! - an extended-protocol batch that executes a statement (`Parse`/`Bind`/`Execute`, up to
//!   its `Sync`): from its first message to the `ReadyForQuery` answering the `Sync`. The
//!   statement is the batch's `Parse`, or the prepared statement its `Bind` names (the last
//!   [`STATEMENTS`] prepared on the connection are remembered).
//!
//! A batch that executes nothing (a prepare alone, a describe) and the start-up exchange
//! are round trips but not operations: they make no span. An `ErrorResponse` fails the
//! oldest waiting operation with its SQLSTATE (`db.response.status_code`, `error.type`).
//! The database named in the startup message is `db.namespace`. Statement text is exported
//! with its literals replaced by `?` ([`crate::sql`]); parameters are never kept.

use crate::frames::{Framer, Framing, Msg, cstr};
use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Namespace, Table, Word, conn_key};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::sql::{Dialect, obfuscate, operation};
use crate::tcp::Side;

pub use crate::redis::{CLIENT_DURATION, DURATION_BOUNDS};

const PG: Protocol = Protocol::Postgres;

/// Operations a connection may have waiting for their `ReadyForQuery`.
pub const PIPELINE_DEPTH: usize = 8;
/// Prepared statements remembered per connection.
pub const STATEMENTS: usize = 4;

/// Whether a call's first bytes are a startup message of protocol 3.0, as the kernel
/// decides it.
pub fn starts_session(b: &[u8]) -> bool {
    matches!(b, [0, 0, _, _, 0, 3, 0, 0, ..])
}

/// A prepared statement: its name's hash, operation and text.
#[derive(Debug, Clone)]
struct Statement {
    name: u32,
    operation: Word,
    text: Path,
}

/// An operation (or a round trip that is none) waiting for its `ReadyForQuery`.
#[derive(Debug, Clone)]
struct Waiting {
    begun: Option<Begun>,
    error: Word,
}

/// The extended-protocol batch being sent.
#[derive(Debug, Clone, Default)]
struct Batch {
    started: bool,
    start_ns: u64,
    operation: Word,
    text: Path,
    executes: bool,
}

#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    namespace: Namespace,
    front: Framer,
    back: Framer,
    waiting: heapless::Deque<Waiting, PIPELINE_DEPTH>,
    batch: Batch,
    statements: heapless::Deque<Statement, STATEMENTS>,
    /// The framing was lost: nothing is followed until the descriptor closes.
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        PG
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        // The oldest that makes a span.
        let w = core::iter::from_fn(|| self.waiting.pop_front()).find(|w| w.begun.is_some())?;
        Some((w.begun?, w.error))
    }
}

/// Tracks PostgreSQL exchanges and aggregates the client metric; spans go to the HTTP
/// tracker's queue.
pub struct PostgresTracker {
    t: Table<Conn>,
}

fn name_hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(0x0100_0193)
    })
}

crate::l7::table_tracker!(PostgresTracker, "PostgreSQL");

impl PostgresTracker {
    /// Handles what one read or write moved on a PostgreSQL descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        let starts = starts_session(r.data);
        if starts {
            // A new session on this descriptor: whatever was followed on it is over.
            self.t.end_all(key, r.ts_ns, spans, drops);
        }
        if self.t.conns.get(&key).is_none() {
            if !starts {
                return;
            }
            let side = if r.ingress {
                Side::Server
            } else {
                Side::Client
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                namespace: Namespace::new(),
                front: Framer::new(Framing::PgStartup),
                back: Framer::new(Framing::PgTyped),
                waiting: heapless::Deque::new(),
                batch: Batch::default(),
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
            // Lost, or the ciphertext of a connection whose plaintext is followed.
            return;
        }
        let gap = u64::from(r.len).saturating_sub(r.data.len() as u64);
        let frontend = (conn.ends.side == Side::Server) == r.ingress;
        let mut ended: heapless::Vec<Waiting, PIPELINE_DEPTH> = heapless::Vec::new();
        let scanned = if frontend {
            let Conn {
                front,
                waiting,
                batch,
                statements,
                namespace,
                ends,
                ..
            } = conn;
            let mut sent = |m: Msg<'_>| {
                let calls = ends.side == Side::Client;
                let tid = r.task.tid;
                let queued = match m.tag {
                    0 => {
                        startup(m.body, namespace);
                        Some(None)
                    }
                    b'Q' => {
                        let (op, text) = statement(m.body);
                        Some(Some(begin(op, text, r.ts_ns, calls, tid, namespace, spans)))
                    }
                    b'P' | b'B' | b'E' | b'D' | b'C' => {
                        if !batch.started {
                            *batch = Batch {
                                started: true,
                                start_ns: r.ts_ns,
                                ..Batch::default()
                            };
                        }
                        on_extended(m.tag, m.body, batch, statements);
                        None
                    }
                    b'S' => {
                        let b = core::mem::take(batch);
                        let start = if b.started { b.start_ns } else { r.ts_ns };
                        Some(b.executes.then(|| {
                            begin(b.operation, b.text, start, calls, tid, namespace, spans)
                        }))
                    }
                    // A function call also ends with a ReadyForQuery.
                    b'F' => Some(None),
                    _ => None,
                };
                if let Some(begun) = queued
                    && waiting
                        .push_back(Waiting {
                            begun,
                            error: Word::new(),
                        })
                        .is_err()
                {
                    drops.drop(DropReason::DbPipelineFull, 1);
                }
            };
            front
                .feed(r.data, &mut sent)
                .and_then(|()| front.gap(gap, &mut sent))
        } else {
            let Conn { back, waiting, .. } = conn;
            let mut replied = |m: Msg<'_>| match m.tag {
                b'E' => {
                    if let Some(w) = waiting.front_mut()
                        && w.error.is_empty()
                    {
                        w.error = sqlstate(m.body);
                    }
                }
                b'Z' => {
                    if let Some(w) = waiting.pop_front() {
                        let _ = ended.push(w);
                    }
                }
                _ => {}
            };
            back.feed(r.data, &mut replied)
                .and_then(|()| back.gap(gap, &mut replied))
        };
        let ends = conn.ends;
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
                self.t.finish(PG, &ends, b, r.ts_ns, e, None, spans, drops);
            }
        }
    }
}

fn begin(
    operation: Word,
    text: Path,
    start_ns: u64,
    calls: bool,
    tid: u32,
    namespace: &Namespace,
    spans: &mut HttpTracker,
) -> Begun {
    let mut b = Begun::new(operation, text, start_ns, calls, tid, spans);
    b.namespace = namespace.clone();
    b
}

/// The startup message's parameters: `database` (or, without one, `user`, which is the
/// server's default) names the namespace.
fn startup(body: &[u8], namespace: &mut Namespace) {
    let mut rest = body.get(4..).unwrap_or(&[]);
    let mut user: &[u8] = &[];
    while !rest.is_empty() {
        let (name, r) = cstr(rest);
        let (value, r) = cstr(r);
        rest = r;
        match name {
            b"database" => {
                set(namespace, value);
                return;
            }
            b"user" => user = value,
            b"" => break,
            _ => {}
        }
    }
    set(namespace, user);
}

fn set(namespace: &mut Namespace, value: &[u8]) {
    namespace.clear();
    for &c in value {
        if !c.is_ascii_graphic() || namespace.push(c as char).is_err() {
            break;
        }
    }
}

/// A statement's operation and obfuscated text from the first bytes of its text.
fn statement(text: &[u8]) -> (Word, Path) {
    let (text, _) = cstr(text);
    let mut out = Path::new();
    obfuscate(text, Dialect::Postgres, &mut out);
    (operation(&out), out)
}

/// One message of an extended-protocol batch.
fn on_extended(
    tag: u8,
    body: &[u8],
    batch: &mut Batch,
    statements: &mut heapless::Deque<Statement, STATEMENTS>,
) {
    match tag {
        b'P' => {
            let (name, rest) = cstr(body);
            let (operation, text) = statement(rest);
            let name = name_hash(name);
            remove(statements, name);
            if statements.is_full() {
                statements.pop_front();
            }
            let _ = statements.push_back(Statement {
                name,
                operation: operation.clone(),
                text: text.clone(),
            });
            batch.operation = operation;
            batch.text = text;
        }
        b'B' => {
            let (_portal, rest) = cstr(body);
            let (name, _) = cstr(rest);
            let name = name_hash(name);
            if let Some(s) = statements.iter().find(|s| s.name == name) {
                batch.operation = s.operation.clone();
                batch.text = s.text.clone();
            }
        }
        b'E' => batch.executes = true,
        // Close of a statement (`S`), not of a portal.
        b'C' if body.first() == Some(&b'S') => {
            let (name, _) = cstr(&body[1..]);
            remove(statements, name_hash(name));
        }
        _ => {}
    }
}

fn remove(statements: &mut heapless::Deque<Statement, STATEMENTS>, name: u32) {
    for _ in 0..statements.len() {
        if let Some(s) = statements.pop_front()
            && s.name != name
        {
            let _ = statements.push_back(s);
        }
    }
}

/// The SQLSTATE (`C` field) of an ErrorResponse.
fn sqlstate(body: &[u8]) -> Word {
    let mut rest = body;
    while let [field, r @ ..] = rest {
        if *field == 0 {
            break;
        }
        let (value, r) = cstr(r);
        if *field == b'C' {
            let mut w = Word::new();
            for &c in value {
                if !c.is_ascii_alphanumeric() || w.push(c as char).is_err() {
                    break;
                }
            }
            return w;
        }
        rest = r;
    }
    Word::try_from("error").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::Side;
    use alloc::vec::Vec;

    /// Recorded by `telegen --record` from PostgreSQL 15 (Debian 12) serving psql 15 (a
    /// session per statement, after an SSL request the server refused) and psycopg 3.1 (one
    /// session: a statement prepared once and executed four times, a failing insert).
    const RECORDING: &[u8] = include_bytes!("testdata/db/postgres.rec");

    #[test]
    fn a_recorded_session_of_psql_and_psycopg() {
        let (spans, counters) = crate::pipeline::replay(RECORDING);
        assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
        let mut seen: Vec<(&str, &str, &str, &str)> = spans
            .iter()
            .filter(|s| s.protocol == PG && s.side == Side::Client)
            .map(|s| {
                let comm = core::str::from_utf8(&s.process.comm).unwrap_or("");
                let comm = comm.trim_end_matches('\0');
                let (op, text, error) = (s.method.as_str(), s.path.as_str(), s.db_error.as_str());
                (comm, op, text, error)
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("psql", "CREATE", "CREATE DATABASE shop", ""),
                (
                    "psql",
                    "CREATE",
                    "CREATE TABLE items (id int primary key, name text)",
                    ""
                ),
                ("psql", "INSERT", "INSERT INTO items VALUES (?, ?)", ""),
                ("psql", "SELECT", "SELECT * FROM missing_table", "42P01"),
                ("psql", "SELECT", "SELECT name FROM items WHERE id = ?", ""),
                (
                    "python3",
                    "INSERT",
                    "INSERT INTO items VALUES ($1, $2)",
                    "23505"
                ),
                (
                    "python3",
                    "SELECT",
                    "SELECT name FROM items WHERE id = $1",
                    ""
                ),
                (
                    "python3",
                    "SELECT",
                    "SELECT name FROM items WHERE id = $1",
                    ""
                ),
                (
                    "python3",
                    "SELECT",
                    "SELECT name FROM items WHERE id = $1",
                    ""
                ),
                (
                    "python3",
                    "SELECT",
                    "SELECT name FROM items WHERE id = $1",
                    ""
                ),
            ]
        );
        // The server's ends saw the same operations, in their own sessions.
        let server = spans
            .iter()
            .filter(|s| s.protocol == PG && s.side == Side::Server)
            .count();
        assert_eq!(server, 10);
        assert!(
            spans.iter().all(|s| s.protocol != PG
                || (s.namespace == "shop") != (s.path == "CREATE DATABASE shop"))
        );
    }

    #[test]
    fn startup_names_the_database_and_errors_carry_their_sqlstate() {
        let mut ns = Namespace::new();
        startup(b"\0\x03\0\0user\0app\0database\0shop\0\0", &mut ns);
        assert_eq!(ns, "shop");
        startup(b"\0\x03\0\0user\0app\0\0", &mut ns);
        assert_eq!(ns, "app");
        let e = b"SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0\0";
        assert_eq!(sqlstate(e), "42P01");
        assert_eq!(sqlstate(b"SERROR\0"), "error");
        assert!(starts_session(b"\0\0\0\x25\0\x03\0\0user\0"));
        assert!(!starts_session(b"\0\0\0\x08\x04\xd2\x16\x2f"));
    }
}
