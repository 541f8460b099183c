//! What the protocol tracers after HTTP share ([`crate::redis`], [`crate::mqtt`]): a
//! descriptor's ends, the attributes of their client duration histograms, and the finishing
//! of an operation into a span and a histogram sample.

use crate::fixed_map::FixedMap;
use crate::http::{Broken, ErrorType, HttpTracker, Path, Span, SpanContext};
use crate::metrics::{Attr, Attributes, Attrs};
use crate::record::{CloseRecord, DataRecord, IpAddr, Protocol};
use crate::selfmetrics::AgentCounters;
use crate::tcp::{Process, Side};

/// An operation's name (`GET`, `publish`) or an error's first word (`WRONGTYPE`, `0x80`).
pub type Word = heapless::String<16>;

/// A database's name (`db.namespace`).
pub type Namespace = heapless::String<32>;

/// The descriptor's key in a tracker's table.
pub(crate) fn conn_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}

/// Which end a descriptor is and the connection it names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    pub side: Side,
    pub tls: bool,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub process: Process,
}

impl Ends {
    pub fn of(r: &DataRecord<'_>, side: Side) -> Self {
        Self {
            side,
            tls: r.tls,
            local: r.local,
            local_port: r.local_port,
            remote: r.remote,
            remote_port: r.remote_port,
            process: Process {
                pid: r.task.tgid,
                comm: r.task.comm,
            },
        }
    }

    /// The descriptor now names another connection (its close was not seen).
    pub fn stale(&self, r: &DataRecord<'_>) -> bool {
        self.local_port != r.local_port || self.remote_port != r.remote_port
    }
}

/// The attributes of a client duration histogram (`db.client.operation.duration`,
/// `messaging.client.operation.duration`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationKey {
    pub protocol: Protocol,
    pub operation: Word,
    pub namespace: Namespace,
    pub error: ErrorType,
    pub server_port: u16,
    pub process: Process,
}

impl Attributes for OperationKey {
    fn attributes(&self, out: &mut Attrs) {
        match self.protocol {
            Protocol::Redis | Protocol::Postgres | Protocol::Mysql | Protocol::Mariadb => {
                let system = self.protocol.db_system().unwrap_or_default();
                let _ = out.push(Attr::str("db.system.name", system));
                if !self.operation.is_empty() {
                    let _ = out.push(Attr::str("db.operation.name", &self.operation));
                }
                if !self.namespace.is_empty() {
                    let _ = out.push(Attr::str("db.namespace", &self.namespace));
                }
                if self.protocol.has_status_codes() && !self.error.is_empty() {
                    let _ = out.push(Attr::str("db.response.status_code", &self.error));
                }
            }
            Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka => {
                let _ = out.push(Attr::str(
                    "messaging.system",
                    self.protocol.messaging_system().unwrap_or_default(),
                ));
                let _ = out.push(Attr::str("messaging.operation.name", &self.operation));
                if let Some(t) = self.protocol.operation_type(&self.operation) {
                    let _ = out.push(Attr::str("messaging.operation.type", t));
                }
            }
            _ => {}
        }
        let _ = out.push(Attr::int("server.port", i64::from(self.server_port)));
        if !self.error.is_empty() {
            let _ = out.push(Attr::str("error.type", &self.error));
        }
        self.process.attributes(out);
    }
}

/// How an operation began: its name, its target (a topic; empty for Redis), when, and its
/// place in a trace.
#[derive(Debug, Clone)]
pub(crate) struct Begun {
    pub operation: Word,
    pub target: Path,
    pub start_ns: u64,
    pub context: SpanContext,
    pub parent_span_id: [u8; 8],
    /// The database (empty when unknown or not a database).
    pub namespace: Namespace,
}

impl Begun {
    /// An operation this process begins at `start_ns`: a client's call (a child of the
    /// request its thread serves, if any) or, on the serving side, a new trace.
    pub fn new(
        operation: Word,
        target: Path,
        start_ns: u64,
        calls: bool,
        tid: u32,
        spans: &mut HttpTracker,
    ) -> Self {
        let (context, parent_span_id) = if calls {
            spans.client_context(tid)
        } else {
            spans.root_context()
        };
        Self {
            operation,
            target,
            start_ns,
            context,
            parent_span_id,
            namespace: Namespace::new(),
        }
    }
}

/// Ends an operation: a sample in the protocol's client histogram (kept by `spans`) when
/// this end is the client, and a span in the queue of `spans`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    protocol: Protocol,
    ends: &Ends,
    b: Begun,
    end_ns: u64,
    error: Word,
    broken: Option<Broken>,
    spans: &mut HttpTracker,
    drops: &mut AgentCounters,
) {
    let span = Span {
        side: ends.side,
        protocol,
        context: b.context,
        parent_span_id: b.parent_span_id,
        start_ns: b.start_ns,
        end_ns: end_ns.max(b.start_ns),
        method: b.operation,
        path: b.target,
        status: 0,
        minor_version: 0,
        broken,
        db_error: error,
        namespace: b.namespace,
        tls: ends.tls,
        local: ends.local,
        local_port: ends.local_port,
        remote: ends.remote,
        remote_port: ends.remote_port,
        process: ends.process,
    };
    if ends.side == Side::Client {
        let mut e = ErrorType::new();
        span.error_type(&mut e);
        let key = OperationKey {
            protocol,
            operation: span.method.clone(),
            namespace: span.namespace.clone(),
            error: e,
            server_port: span.server().1,
            process: ends.process,
        };
        let secs = (span.end_ns - span.start_ns) as f64 / 1e9;
        spans.operations(protocol).point(key).0.record(secs);
    }
    spans.push_span(span, drops);
}

/// A connection a protocol tracker follows: its ends, and what it leaves unfinished.
pub(crate) trait Followed {
    fn ends(&self) -> &Ends;
    /// The protocol its spans name.
    fn protocol(&self) -> Protocol;
    /// The next operation still waiting for its end, with the error it got so far.
    fn unfinished(&mut self) -> Option<(Begun, Word)>;
}

/// What every protocol tracker after HTTP holds: its connections by descriptor. (Their
/// client histograms, one per metric, are kept by the HTTP tracker with the span queue.)
pub(crate) struct Table<C> {
    pub conns: FixedMap<u64, C>,
}

impl<C: Followed> Table<C> {
    /// Room for `connections` descriptors.
    pub fn new(connections: usize) -> Self {
        Self {
            conns: FixedMap::with_capacity(connections),
        }
    }

    /// Bytes the table takes.
    pub fn bytes(connections: usize) -> usize {
        FixedMap::<u64, C>::bytes_for(connections)
    }

    /// Ends an operation of the connection `ends` (see [`finish`]).
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        protocol: Protocol,
        ends: &Ends,
        b: Begun,
        end_ns: u64,
        error: Word,
        broken: Option<Broken>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        finish(protocol, ends, b, end_ns, error, broken, spans, drops);
    }

    /// Follows a new descriptor; false (counted as `db_table_full`) when the table is full.
    pub fn open(&mut self, key: u64, conn: C, drops: &mut AgentCounters) -> bool {
        if self.conns.insert(key, conn).is_err() {
            drops.drop(crate::selfmetrics::DropReason::DbTableFull, 1);
            return false;
        }
        true
    }

    /// Forgets the descriptor `key`; what still waited on it ends broken at `ts_ns`.
    pub fn end_all(
        &mut self,
        key: u64,
        ts_ns: u64,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        let (ends, protocol) = (*conn.ends(), conn.protocol());
        while let Some((b, error)) = conn.unfinished() {
            let closed = Some(Broken::Closed);
            self.finish(protocol, &ends, b, ts_ns, error, closed, spans, drops);
        }
    }

    /// A descriptor that carried data was closed.
    pub fn close(&mut self, r: &CloseRecord, spans: &mut HttpTracker, drops: &mut AgentCounters) {
        self.end_all(conn_key(r.task.tgid, r.fd), r.ts_ns, spans, drops);
    }
}

/// The methods every protocol tracker built on a [`Table`] of its `Conn` has alike.
macro_rules! table_tracker {
    ($tracker:ident, $what:literal) => {
        impl $tracker {
            #[doc = concat!("`connections`: ", $what, " descriptors followed at once.")]
            pub fn new(connections: usize) -> Self {
                Self {
                    t: Table::new(connections),
                }
            }

            /// Bytes the table takes.
            pub fn bytes(connections: usize) -> usize {
                Table::<Conn>::bytes(connections)
            }

            /// Descriptors followed now.
            pub fn connections(&self) -> usize {
                self.t.conns.len()
            }

            /// A descriptor that carried data was closed: what waited on it ends broken.
            pub fn on_close(
                &mut self,
                r: &CloseRecord,
                spans: &mut HttpTracker,
                drops: &mut AgentCounters,
            ) {
                self.t.close(r, spans, drops);
            }
        }
    };
}
pub(crate) use table_tracker;
