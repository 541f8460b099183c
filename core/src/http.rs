//! HTTP/1.x exchanges from captured socket data: spans and request-duration metrics.
//!
//! The kernel hands over the first bytes of every read and write on a TCP socket that look
//! like HTTP (a request line or a status line), with the connection and the thread. A
//! request *read* by a process opens a server exchange on that descriptor; a request
//! *written* opens a client exchange. The next status line going the other way ends the
//! oldest open exchange (pipelining keeps order), interim 1xx answers excepted. A descriptor
//! closed with exchanges open ends them as errors.
//!
//! Trace context: a `traceparent` header in a request read makes the server span a child of
//! the caller; without one the server span starts a trace. A request written by a thread
//! while it serves one becomes a child of that server span (thread-per-request servers). A
//! request written with its own `traceparent` keeps those ids.
//!
//! Every exchange counts in the duration histograms; spans go to a bounded queue the
//! exporter drains. Header values other than `traceparent` are never kept, so
//! `Authorization`, `Cookie` and `Set-Cookie` never leave this module.

use crate::fixed_map::FixedMap;
use crate::http2::{RPC_BOUNDS, RPC_CLIENT_DURATION, RPC_SERVER_DURATION, RpcKey};
use crate::l7::OperationKey;
use crate::metrics::{Attr, Attributes, Attrs, Histogram, Kind, MetricDesc, MetricSink, Series};
pub use crate::record::Protocol;
use crate::record::{CloseRecord, DataRecord, IpAddr};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::{Process, Side};
use alloc::collections::VecDeque;

pub static SERVER_DURATION: MetricDesc = MetricDesc {
    name: "http.server.request.duration",
    description: "Duration of HTTP server requests.",
    unit: "s",
    kind: Kind::Histogram,
};

pub static CLIENT_DURATION: MetricDesc = MetricDesc {
    name: "http.client.request.duration",
    description: "Duration of HTTP client requests.",
    unit: "s",
    kind: Kind::Histogram,
};

/// The bucket bounds the HTTP semantic conventions advise, in seconds.
pub static DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Longest path kept (longer ones are cut).
pub const PATH_CAP: usize = 128;
/// Requests a connection may have waiting for their answers.
pub const PIPELINE_DEPTH: usize = 4;

pub type Path = heapless::String<PATH_CAP>;
pub type Method = heapless::String<16>;
/// An `error.type` value (`connection_closed`, `NOT_LEADER_OR_FOLLOWER`…).
pub type ErrorType = heapless::String<24>;

/// W3C trace context ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Which spans are kept; every request counts in the metrics whatever is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    /// A span with a parent follows the parent's decision.
    pub parent_based: bool,
    pub root: RootSampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSampling {
    AlwaysOn,
    AlwaysOff,
    /// Keeps a trace when the 56 random low bits of its id are below this threshold, so
    /// every agent seeing the trace decides alike.
    Below(u64),
}

impl RootSampling {
    /// The threshold keeping `ratio` (0..=1) of the traces.
    pub fn ratio(ratio: f64) -> Self {
        let r = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        Self::Below((r * (1u64 << 56) as f64) as u64)
    }

    fn keeps(self, trace_id: &[u8; 16]) -> bool {
        match self {
            Self::AlwaysOn => true,
            Self::AlwaysOff => false,
            Self::Below(t) => {
                let mut low = [0u8; 8];
                low[1..].copy_from_slice(&trace_id[9..]);
                u64::from_be_bytes(low) < t
            }
        }
    }
}

impl Sampling {
    pub const ALWAYS_ON: Self = Self {
        parent_based: true,
        root: RootSampling::AlwaysOn,
    };

    /// The decision for a span of `trace_id` whose parent, if any, decided `parent`.
    fn decide(&self, trace_id: &[u8; 16], parent: Option<bool>) -> bool {
        match parent {
            Some(p) if self.parent_based => p,
            _ => self.root.keeps(trace_id),
        }
    }
}

/// Why an exchange ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The descriptor was closed first.
    Closed,
    /// An HTTP/2 stream reset with this error code (or refused by a GOAWAY: code 7).
    Reset(u32),
}

/// One finished exchange, of any protocol: for Redis `method` is the command, `path` is
/// empty, `status` 0 and `db_error` the error reply's first word.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub side: Side,
    pub protocol: Protocol,
    pub context: SpanContext,
    /// All zero for a root span.
    pub parent_span_id: [u8; 8],
    /// Monotonic nanoseconds (the kernel's clock).
    pub start_ns: u64,
    pub end_ns: u64,
    pub method: Method,
    pub path: Path,
    /// 0 when there was no answer.
    pub status: u16,
    /// HTTP/1.x: `1.0` or `1.1`, as the minor version digit (see [`Span::protocol_version`]).
    pub minor_version: u8,
    pub broken: Option<Broken>,
    /// A database's error (its first word, `WRONGTYPE`); empty without one.
    pub db_error: heapless::String<16>,
    /// The database (`db.namespace`), an AMQP message's routing key or a Kafka partition;
    /// empty when unknown or none of those.
    pub namespace: crate::l7::Namespace,
    /// Seen as TLS plaintext (`https`).
    pub tls: bool,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub process: Process,
}

impl Span {
    /// `url.scheme`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `network.protocol.version` of an HTTP or gRPC span.
    pub fn protocol_version(&self) -> &'static str {
        match (self.protocol, self.minor_version) {
            (Protocol::Http2 | Protocol::Grpc, _) => "2",
            (_, 0) => "1.0",
            _ => "1.1",
        }
    }

    /// `error.type`: the status code for 5xx (server) or 4xx/5xx (client), or why the
    /// exchange broke.
    pub fn error_type(&self, out: &mut ErrorType) -> bool {
        match self.broken {
            Some(Broken::Closed) => {
                let _ = out.push_str("connection_closed");
                return true;
            }
            Some(Broken::Reset(code)) => {
                let _ = out.push_str(crate::http2::error_name(code));
                return true;
            }
            None => {}
        }
        match self.protocol {
            Protocol::Http | Protocol::Http2 => {}
            Protocol::Grpc => {
                let failed = crate::http2::grpc_failed(self.side, self.status);
                if failed {
                    let _ = out.push_str(crate::http2::grpc_status_name(self.status));
                }
                return failed;
            }
            _ => {
                let _ = out.push_str(&self.db_error);
                return !self.db_error.is_empty();
            }
        }
        let failed = match self.side {
            Side::Server => self.status >= 500,
            Side::Client => self.status >= 400,
        };
        if failed {
            let _ = core::fmt::write(out, format_args!("{}", self.status));
        }
        failed
    }

    /// The low-cardinality name: `GET /users/{id}`.
    pub fn name(&self, out: &mut heapless::String<{ PATH_CAP + 20 }>) {
        if self.protocol == Protocol::Grpc {
            // `package.Service/Method`, as the RPC conventions name spans.
            let _ = out.push_str(self.path.strip_prefix('/').unwrap_or(&self.path));
            return;
        }
        let _ = out.push_str(&self.method);
        match self.protocol {
            Protocol::Http | Protocol::Http2 | Protocol::Grpc => {}
            // Database spans: the operation.
            Protocol::Redis => return,
            // DNS: the record type (`DNS AAAA`); the name is an attribute.
            Protocol::Dns => {
                out.clear();
                let _ = out.push_str("DNS ");
                let _ = out.push_str(&self.method);
                return;
            }
            // SQL: the operation and the database (`SELECT shop`).
            Protocol::Postgres | Protocol::Mysql | Protocol::Mariadb => {
                if self.method.is_empty() {
                    let _ = out.push_str(self.protocol.db_system().unwrap_or_default());
                }
                if !self.namespace.is_empty() {
                    if !out.is_empty() {
                        let _ = out.push(' ');
                    }
                    let _ = out.push_str(&self.namespace);
                }
                return;
            }
            // Messaging spans: the operation and the topic, ids collapsed.
            Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka => {
                if self.path.is_empty() {
                    return;
                }
            }
        }
        let _ = out.push(' ');
        let mut r = Path::new();
        route(&self.path, &mut r);
        let _ = out.push_str(&r);
    }

    /// The server's address and port, whichever end this span describes.
    pub fn server(&self) -> (IpAddr, u16) {
        match self.side {
            Side::Server => (self.local, self.local_port),
            Side::Client => (self.remote, self.remote_port),
        }
    }

    /// The client's address and port.
    pub fn client(&self) -> (IpAddr, u16) {
        match self.side {
            Side::Server => (self.remote, self.remote_port),
            Side::Client => (self.local, self.local_port),
        }
    }
}

/// Collapses the path segments that look like ids (numbers, UUIDs, long hex) into `{id}`.
pub fn route(path: &str, out: &mut Path) {
    out.clear();
    if path.is_empty() {
        let _ = out.push('/');
        return;
    }
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 && out.push('/').is_err() {
            return;
        }
        let s = if looks_like_id(seg) { "{id}" } else { seg };
        if out.push_str(s).is_err() {
            return;
        }
    }
}

fn looks_like_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let hex = |c: &u8| c.is_ascii_hexdigit();
    // 8-4-4-4-12 UUIDs.
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                hex(c)
            }
        })
    {
        return true;
    }
    // Long hex strings with a digit (hashes, object ids); words like "deadbeef" stay.
    b.len() >= 16 && b.iter().all(hex) && b.iter().any(u8::is_ascii_digit)
}

/// Parses a W3C `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>`.
pub fn parse_traceparent(v: &[u8]) -> Option<SpanContext> {
    let v = v.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) {
        return None;
    }
    let mut c = SpanContext::default();
    for (i, b) in c.trace_id.iter_mut().enumerate() {
        *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
    }
    for (i, b) in c.span_id.iter_mut().enumerate() {
        *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
    }
    if c.trace_id == [0; 16] || c.span_id == [0; 8] {
        return None;
    }
    c.sampled = hex_byte(&v[53..55])? & 1 == 1;
    Some(c)
}

fn hex_byte(b: &[u8]) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16).filter(|_| !c.is_ascii_uppercase());
    Some((d(b[0])? * 16 + d(b[1])?) as u8)
}

/// The attributes of the duration histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub method: Method,
    pub status: u16,
    /// `network.protocol.version`.
    pub version: &'static str,
    pub error: ErrorType,
    pub server_port: u16,
    pub tls: bool,
    pub process: Process,
}

impl Attributes for RequestKey {
    fn attributes(&self, out: &mut Attrs) {
        let _ = out.push(Attr::str("http.request.method", &self.method));
        if self.status != 0 {
            let _ = out.push(Attr::int(
                "http.response.status_code",
                i64::from(self.status),
            ));
        }
        let _ = out.push(Attr::str(
            "url.scheme",
            if self.tls { "https" } else { "http" },
        ));
        let _ = out.push(Attr::str("network.protocol.version", self.version));
        let _ = out.push(Attr::int("server.port", i64::from(self.server_port)));
        if !self.error.is_empty() {
            let _ = out.push(Attr::str("error.type", &self.error));
        }
        self.process.attributes(out);
    }
}

/// An exchange waiting for its answer.
#[derive(Debug, Clone)]
struct Open {
    context: SpanContext,
    parent_span_id: [u8; 8],
    start_ns: u64,
    method: Method,
    path: Path,
    minor_version: u8,
    tid: u32,
}

/// One descriptor that carried HTTP.
#[derive(Debug, Clone)]
struct Conn {
    side: Side,
    tls: bool,
    local: IpAddr,
    local_port: u16,
    remote: IpAddr,
    remote_port: u16,
    process: Process,
    /// Sequence numbers of the oldest exchange waiting for its answer and of the next one;
    /// the exchanges themselves are in [`HttpTracker::opens`], so an idle connection costs
    /// a few dozen bytes.
    first: u32,
    next: u32,
}

/// Table sizes, fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Descriptors with HTTP exchanges tracked at once.
    pub connections: usize,
    /// Exchanges waiting for their answers, over all connections.
    pub exchanges: usize,
    /// Finished spans waiting for export.
    pub spans: usize,
    pub series_per_metric: usize,
}

impl HttpLimits {
    pub fn bytes(&self) -> usize {
        FixedMap::<u64, Conn>::bytes_for(self.connections)
            + FixedMap::<(u64, u32), Open>::bytes_for(self.exchanges)
            + FixedMap::<u32, SpanContext>::bytes_for(self.connections)
            + self.spans * core::mem::size_of::<Span>()
            + 2 * Series::<RequestKey, Histogram>::bytes_for(self.series_per_metric)
            + 2 * Series::<OperationKey, Histogram>::bytes_for(self.series_per_metric)
            + 2 * Series::<RpcKey, Histogram>::bytes_for(self.series_per_metric)
    }
}

/// A small, fast generator for span and trace ids (not for secrets).
#[derive(Debug, Clone)]
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn span_id(&mut self) -> [u8; 8] {
        let mut v = self.next();
        if v == 0 {
            v = 1;
        }
        v.to_be_bytes()
    }
    fn trace_id(&mut self) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&self.next().to_be_bytes());
        t[8..].copy_from_slice(&self.span_id());
        t
    }
}

/// Tracks HTTP/1.x exchanges and aggregates their metrics.
pub struct HttpTracker {
    conns: FixedMap<u64, Conn>,
    /// Exchanges waiting for their answers, by connection and sequence number.
    opens: FixedMap<(u64, u32), Open>,
    /// The server exchange each thread is serving, for the client calls it makes meanwhile.
    serving: FixedMap<u32, SpanContext>,
    spans: VecDeque<Span>,
    span_cap: usize,
    server: Series<RequestKey, Histogram>,
    client: Series<RequestKey, Histogram>,
    /// `db.client.operation.duration` and `messaging.client.operation.duration`, which the
    /// protocol trackers after HTTP record into (one series table per metric).
    db_ops: Series<OperationKey, Histogram>,
    messaging_ops: Series<OperationKey, Histogram>,
    /// `rpc.server.duration` and `rpc.client.duration` of gRPC calls.
    rpc_server: Series<RpcKey, Histogram>,
    rpc_client: Series<RpcKey, Histogram>,
    ids: Ids,
    sampling: Sampling,
}

fn conn_key(tgid: u32, fd: u32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd)
}

impl HttpTracker {
    /// `seed` makes the span ids; it should differ between runs.
    pub fn new(limits: HttpLimits, seed: u64, sampling: Sampling) -> Self {
        let cap = limits.series_per_metric;
        Self {
            conns: FixedMap::with_capacity(limits.connections),
            opens: FixedMap::with_capacity(limits.exchanges),
            serving: FixedMap::with_capacity(limits.connections),
            spans: VecDeque::with_capacity(limits.spans),
            span_cap: limits.spans,
            server: Series::new(&SERVER_DURATION, cap, || Histogram::new(&DURATION_BOUNDS)),
            client: Series::new(&CLIENT_DURATION, cap, || Histogram::new(&DURATION_BOUNDS)),
            db_ops: Series::new(&crate::redis::CLIENT_DURATION, cap, crate::redis::histogram),
            messaging_ops: Series::new(&crate::mqtt::CLIENT_DURATION, cap, crate::mqtt::histogram),
            rpc_server: Series::new(&RPC_SERVER_DURATION, cap, || Histogram::new(&RPC_BOUNDS)),
            rpc_client: Series::new(&RPC_CLIENT_DURATION, cap, || Histogram::new(&RPC_BOUNDS)),
            ids: Ids(seed),
            sampling,
        }
    }

    /// Exchanges waiting for their answer.
    pub fn open_exchanges(&self) -> usize {
        self.opens.len()
    }

    /// Finished spans, oldest first; the caller exports and removes them.
    pub fn spans(&mut self) -> &mut VecDeque<Span> {
        &mut self.spans
    }

    /// Handles what one read or write moved.
    pub fn on_data(&mut self, r: &DataRecord<'_>, drops: &mut AgentCounters) {
        if r.data.starts_with(b"HTTP/1.") {
            self.on_response(r, drops);
        } else {
            self.on_request(r, drops);
        }
    }

    fn on_request(&mut self, r: &DataRecord<'_>, drops: &mut AgentCounters) {
        let mut headers = [httparse::EMPTY_HEADER; 24];
        let mut req = httparse::Request::new(&mut headers);
        // A request cut by the capture limit is Partial, with what was parsed kept; a
        // header line cut in the middle is an error, but the request line is still known.
        let parsed = req.parse(r.data);
        let (Some(m), Some(p)) = (req.method, req.path) else {
            return;
        };
        let mut method = Method::new();
        if method.push_str(m).is_err() {
            return;
        }
        let mut path = Path::new();
        let p = p.split(['?', '#']).next().unwrap_or("");
        for c in p.chars() {
            if path.push(c).is_err() {
                break;
            }
        }
        let minor_version = req.version.unwrap_or(1);
        let carried = match parsed {
            Ok(_) => req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("traceparent"))
                .and_then(|h| parse_traceparent(h.value)),
            Err(_) => None,
        };
        let side = if r.ingress {
            Side::Server
        } else {
            Side::Client
        };
        let (context, parent_span_id) = self.request_context(side, carried, r.task.tid);
        let key = conn_key(r.task.tgid, r.fd);
        let process = Process {
            pid: r.task.tgid,
            comm: r.task.comm,
        };
        let fresh = Conn {
            side,
            tls: r.tls,
            local: r.local,
            local_port: r.local_port,
            remote: r.remote,
            remote_port: r.remote_port,
            process,
            first: 0,
            next: 0,
        };
        let stale = self
            .conns
            .get(&key)
            .is_some_and(|c| c.local_port != r.local_port || c.remote_port != r.remote_port);
        if stale {
            // The descriptor now names another connection (its close was not seen): the
            // old exchanges can no longer be answered.
            self.end_all(key, r.ts_ns, drops);
        }
        if self.conns.get(&key).is_none() && self.conns.insert(key, fresh).is_err() {
            drops.drop(DropReason::HttpTableFull, 1);
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.side = side;
        conn.tls = r.tls;
        if conn.next.wrapping_sub(conn.first) as usize >= PIPELINE_DEPTH {
            drops.drop(DropReason::HttpPipelineFull, 1);
            return;
        }
        let seq = conn.next;
        let open = Open {
            context,
            parent_span_id,
            start_ns: r.ts_ns,
            method,
            path,
            minor_version,
            tid: r.task.tid,
        };
        if self.opens.insert((key, seq), open).is_err() {
            drops.drop(DropReason::HttpTableFull, 1);
            return;
        }
        conn.next = seq.wrapping_add(1);
        if side == Side::Server {
            // Without room the thread's client calls start their own traces: not a loss.
            let _ = self.serving.insert(r.task.tid, context);
        }
    }

    /// The context of a request this process reads (`Server`) or writes (`Client`) on
    /// thread `tid`, carrying `carried` (its `traceparent`), and its parent span id.
    pub(crate) fn request_context(
        &mut self,
        side: Side,
        carried: Option<SpanContext>,
        tid: u32,
    ) -> (SpanContext, [u8; 8]) {
        let s = self.sampling;
        match (side, carried) {
            (Side::Server, Some(caller)) => (
                SpanContext {
                    trace_id: caller.trace_id,
                    span_id: self.ids.span_id(),
                    sampled: s.decide(&caller.trace_id, Some(caller.sampled)),
                },
                caller.span_id,
            ),
            // The client already propagates these ids: its span is the one they name, and
            // the flags it sends are its decision.
            (Side::Client, Some(own)) => (
                SpanContext {
                    sampled: s.decide(&own.trace_id, Some(own.sampled)),
                    ..own
                },
                [0; 8],
            ),
            (Side::Client, None) => self.client_context(tid),
            (Side::Server, None) => self.root_context(),
        }
    }

    fn new_root(&mut self) -> SpanContext {
        let trace_id = self.ids.trace_id();
        SpanContext {
            trace_id,
            span_id: self.ids.span_id(),
            sampled: self.sampling.decide(&trace_id, None),
        }
    }

    fn on_response(&mut self, r: &DataRecord<'_>, drops: &mut AgentCounters) {
        let key = conn_key(r.task.tgid, r.fd);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        // A response goes the other way from its request.
        let expected = if r.ingress {
            Side::Client
        } else {
            Side::Server
        };
        if conn.side != expected {
            return;
        }
        let status = parse_status(r.data);
        if (100..200).contains(&status) && status != 101 {
            return;
        }
        if conn.first == conn.next {
            return;
        }
        let seq = conn.first;
        conn.first = seq.wrapping_add(1);
        let conn = conn.clone();
        if let Some(open) = self.opens.remove(&(key, seq)) {
            self.finish(&conn, open, r.ts_ns, status, None, drops);
        }
    }

    /// A descriptor that carried HTTP was closed: its open exchanges end as errors.
    pub fn on_close(&mut self, r: &CloseRecord, drops: &mut AgentCounters) {
        self.end_all(conn_key(r.task.tgid, r.fd), r.ts_ns, drops);
    }

    /// Forgets a connection; its exchanges still waiting end as broken.
    fn end_all(&mut self, key: u64, ts_ns: u64, drops: &mut AgentCounters) {
        let Some(conn) = self.conns.remove(&key) else {
            return;
        };
        let mut seq = conn.first;
        while seq != conn.next {
            if let Some(open) = self.opens.remove(&(key, seq)) {
                self.finish(&conn, open, ts_ns, 0, Some(Broken::Closed), drops);
            }
            seq = seq.wrapping_add(1);
        }
    }

    fn finish(
        &mut self,
        conn: &Conn,
        open: Open,
        end_ns: u64,
        status: u16,
        broken: Option<Broken>,
        drops: &mut AgentCounters,
    ) {
        if conn.side == Side::Server
            && self
                .serving
                .get(&open.tid)
                .is_some_and(|c| c.span_id == open.context.span_id)
        {
            self.serving.remove(&open.tid);
        }
        let span = Span {
            side: conn.side,
            protocol: Protocol::Http,
            context: open.context,
            parent_span_id: open.parent_span_id,
            start_ns: open.start_ns,
            end_ns: end_ns.max(open.start_ns),
            method: open.method,
            path: open.path,
            status,
            minor_version: open.minor_version,
            broken,
            db_error: heapless::String::new(),
            namespace: heapless::String::new(),
            tls: conn.tls,
            local: conn.local,
            local_port: conn.local_port,
            remote: conn.remote,
            remote_port: conn.remote_port,
            process: conn.process,
        };
        self.complete(span, drops);
    }

    /// Ends an HTTP or gRPC exchange: a sample in its duration histogram, and the span in
    /// the queue.
    pub(crate) fn complete(&mut self, span: Span, drops: &mut AgentCounters) {
        let nanos = (span.end_ns - span.start_ns) as f64;
        if span.protocol == Protocol::Grpc {
            let key = RpcKey {
                path: span.path.clone(),
                status: span.status,
                server_port: span.server().1,
                process: span.process,
            };
            let series = match span.side {
                Side::Server => &mut self.rpc_server,
                Side::Client => &mut self.rpc_client,
            };
            series.point(key).0.record(nanos / 1e6);
        } else {
            let mut error = heapless::String::new();
            span.error_type(&mut error);
            let key = RequestKey {
                method: span.method.clone(),
                status: span.status,
                version: span.protocol_version(),
                error,
                server_port: span.server().1,
                tls: span.tls,
                process: span.process,
            };
            let series = match span.side {
                Side::Server => &mut self.server,
                Side::Client => &mut self.client,
            };
            series.point(key).0.record(nanos / 1e9);
        }
        self.push_span(span, drops);
    }

    /// Queues a finished span of any protocol for export (unless sampled out or unwanted);
    /// the oldest goes when the queue is full.
    pub fn push_span(&mut self, span: Span, drops: &mut AgentCounters) {
        if self.span_cap == 0 || !span.context.sampled {
            // Spans are not wanted (no traces exporter), or sampled out: not a loss.
            return;
        }
        if self.spans.len() == self.span_cap {
            self.spans.pop_front();
            drops.drop(DropReason::SpanQueueFull, 1);
        }
        self.spans.push_back(span);
    }

    /// The context of a client call thread `tid` makes now, and its parent span id: a
    /// child of the request the thread serves, or a new trace.
    pub fn client_context(&mut self, tid: u32) -> (SpanContext, [u8; 8]) {
        match self.serving.get(&tid).copied() {
            Some(parent) => (
                SpanContext {
                    trace_id: parent.trace_id,
                    span_id: self.ids.span_id(),
                    sampled: self.sampling.decide(&parent.trace_id, Some(parent.sampled)),
                },
                parent.span_id,
            ),
            None => (self.new_root(), [0; 8]),
        }
    }

    /// A new trace's context for a server span without a caller.
    pub fn root_context(&mut self) -> (SpanContext, [u8; 8]) {
        (self.new_root(), [0; 8])
    }

    /// The client operation histogram of a protocol after HTTP: the database one, or the
    /// messaging one.
    pub(crate) fn operations(&mut self, p: Protocol) -> &mut Series<OperationKey, Histogram> {
        match p {
            Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka => &mut self.messaging_ops,
            _ => &mut self.db_ops,
        }
    }

    /// Hands the request and operation duration histograms to the sink.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        self.server.report(sink);
        self.client.report(sink);
        self.db_ops.report(sink);
        self.messaging_ops.report(sink);
        self.rpc_server.report(sink);
        self.rpc_client.report(sink);
    }
}

/// The status code of `HTTP/1.x NNN ...`; 0 when it is not one.
fn parse_status(b: &[u8]) -> u16 {
    match b.get(8..12) {
        Some([b' ', d @ ..]) if d.iter().all(u8::is_ascii_digit) => {
            d.iter().fold(0u16, |n, c| n * 10 + u16::from(c - b'0'))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Task;

    fn limits() -> HttpLimits {
        HttpLimits {
            connections: 8,
            exchanges: 16,
            spans: 16,
            series_per_metric: 16,
        }
    }

    fn lo() -> IpAddr {
        IpAddr {
            v6: false,
            bytes: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    fn task(pid: u32, tid: u32) -> Task {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        Task {
            tgid: pid,
            tid,
            comm,
        }
    }

    fn data(
        ts: u64,
        task: Task,
        fd: u32,
        ingress: bool,
        ports: (u16, u16),
        d: &[u8],
    ) -> DataRecord<'_> {
        DataRecord {
            ts_ns: ts,
            task,
            fd,
            ingress,
            len: d.len() as u32,
            sock: 1,
            local: lo(),
            remote: lo(),
            local_port: ports.0,
            remote_port: ports.1,
            tls: false,
            protocol: Protocol::Http,
            data: d,
        }
    }

    const SERVER: (u16, u16) = (8080, 40000);
    const CLIENT: (u16, u16) = (40000, 8080);

    #[test]
    fn routes_collapse_ids() {
        let mut r = Path::new();
        for (path, want) in [
            ("/users/42/orders/7", "/users/{id}/orders/{id}"),
            ("/o/123e4567-e89b-12d3-a456-426614174000", "/o/{id}"),
            ("/blob/9f86d081884c7d659a2feaa0c55ad015", "/blob/{id}"),
            ("/static/deadbeef", "/static/deadbeef"),
            ("/", "/"),
            ("", "/"),
        ] {
            route(path, &mut r);
            assert_eq!(r.as_str(), want, "{path}");
        }
    }

    #[test]
    fn traceparent_is_parsed_strictly() {
        let c = parse_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        assert_eq!(c.trace_id[0], 0x0a);
        assert_eq!(c.span_id[7], 0x31);
        assert!(c.sampled);
        for bad in [
            &b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"[..],
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn server_exchanges_pipeline_and_join_the_callers_trace() {
        let mut t = HttpTracker::new(limits(), 7, Sampling::ALWAYS_ON);
        let mut drops = AgentCounters::default();
        let nginx = task(10, 11);
        let req =
            b"GET /users/42?token=secret HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        t.on_data(&data(1_000, nginx, 5, true, SERVER, req), &mut drops);
        t.on_data(
            &data(2_000, nginx, 5, true, SERVER, b"POST /x HTTP/1.1\r\n\r\n"),
            &mut drops,
        );
        t.on_data(
            &data(
                3_000,
                nginx,
                5,
                false,
                SERVER,
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ),
            &mut drops,
        );
        t.on_data(
            &data(4_000, nginx, 5, false, SERVER, b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut drops,
        );
        t.on_data(
            &data(9_000, nginx, 5, false, SERVER, b"HTTP/1.1 503 Busy\r\n\r\n"),
            &mut drops,
        );
        let spans: alloc::vec::Vec<Span> = t.spans().drain(..).collect();
        assert_eq!(spans.len(), 2);
        let a = &spans[0];
        assert_eq!(
            (a.side, a.status, a.path.as_str()),
            (Side::Server, 200, "/users/42")
        );
        assert_eq!(a.end_ns - a.start_ns, 3_000);
        assert_eq!(a.context.trace_id[..2], [0x0a, 0xf7]);
        assert_eq!(
            a.parent_span_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        let mut name = heapless::String::new();
        a.name(&mut name);
        assert_eq!(name.as_str(), "GET /users/{id}");
        let b = &spans[1];
        assert_eq!((b.status, b.method.as_str()), (503, "POST"));
        assert_eq!(b.parent_span_id, [0; 8], "a new trace");
        let mut e = heapless::String::new();
        assert!(b.error_type(&mut e));
        assert_eq!(e.as_str(), "503");
        assert_ne!(b.context.trace_id, a.context.trace_id);
    }

    #[test]
    fn client_calls_made_while_serving_are_children() {
        let mut t = HttpTracker::new(limits(), 7, Sampling::ALWAYS_ON);
        let mut drops = AgentCounters::default();
        let worker = task(10, 12);
        t.on_data(
            &data(1, worker, 5, true, SERVER, b"GET /a HTTP/1.1\r\n\r\n"),
            &mut drops,
        );
        t.on_data(
            &data(2, worker, 9, false, CLIENT, b"GET /b HTTP/1.1\r\n\r\n"),
            &mut drops,
        );
        t.on_data(
            &data(3, worker, 9, true, CLIENT, b"HTTP/1.1 404 Nope\r\n\r\n"),
            &mut drops,
        );
        t.on_data(
            &data(4, worker, 5, false, SERVER, b"HTTP/1.0 200 OK\r\n\r\n"),
            &mut drops,
        );
        // After the server span ended, a new call starts its own trace.
        t.on_data(
            &data(5, worker, 9, false, CLIENT, b"GET /c HTTP/1.1\r\n\r\n"),
            &mut drops,
        );
        let spans: alloc::vec::Vec<Span> = t.spans().drain(..).collect();
        let (client, server) = (&spans[0], &spans[1]);
        assert_eq!(client.side, Side::Client);
        assert_eq!(client.context.trace_id, server.context.trace_id);
        assert_eq!(client.parent_span_id, server.context.span_id);
        assert_eq!(client.server(), (lo(), 8080));
        let mut e = heapless::String::new();
        assert!(client.error_type(&mut e), "4xx is a client error");
        // The unanswered call ends as broken when its descriptor closes.
        t.on_close(
            &CloseRecord {
                ts_ns: 6,
                task: worker,
                fd: 9,
            },
            &mut drops,
        );
        let broken = t.spans().pop_front().expect("closed exchange");
        assert_eq!(broken.broken, Some(Broken::Closed));
        assert_ne!(broken.context.trace_id, server.context.trace_id);
        assert_eq!(t.open_exchanges(), 0);
    }

    #[test]
    fn bounded_everywhere() {
        let mut t = HttpTracker::new(
            HttpLimits {
                connections: 2,
                exchanges: 8,
                spans: 1,
                series_per_metric: 4,
            },
            1,
            Sampling::ALWAYS_ON,
        );
        let mut drops = AgentCounters::default();
        let p = task(1, 1);
        for i in 0..PIPELINE_DEPTH as u64 + 1 {
            t.on_data(
                &data(i, p, 3, true, SERVER, b"GET / HTTP/1.1\r\n\r\n"),
                &mut drops,
            );
        }
        assert_eq!(drops.dropped(DropReason::HttpPipelineFull), 1);
        for fd in 4..8 {
            t.on_data(
                &data(9, p, fd, true, SERVER, b"GET / HTTP/1.1\r\n\r\n"),
                &mut drops,
            );
        }
        assert!(drops.dropped(DropReason::HttpTableFull) >= 1);
        for _ in 0..3 {
            t.on_data(
                &data(10, p, 3, false, SERVER, b"HTTP/1.1 204 No\r\n\r\n"),
                &mut drops,
            );
        }
        assert_eq!(t.spans().len(), 1);
        assert_eq!(drops.dropped(DropReason::SpanQueueFull), 2);
        // Garbage never panics.
        for junk in [
            &b"GET"[..],
            b"HTTP/1.1 2",
            b"HTTP/1.1 abc",
            b"\xff\xfe GET / HTTP/1.1",
        ] {
            t.on_data(&data(11, p, 3, true, SERVER, junk), &mut drops);
            t.on_data(&data(11, p, 3, false, SERVER, junk), &mut drops);
        }
    }

    #[test]
    fn sampling_keeps_metrics_exact_and_follows_parents() {
        let get = b"GET /a HTTP/1.1\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\n\r\n";
        let run = |sampling: Sampling, req: &[u8], n: u32| {
            let mut t = HttpTracker::new(
                HttpLimits {
                    connections: 8,
                    exchanges: 8,
                    spans: 4096,
                    series_per_metric: 8,
                },
                99,
                sampling,
            );
            let mut drops = AgentCounters::default();
            for i in 0..n {
                let p = task(1, 1);
                t.on_data(
                    &data(u64::from(i) * 10, p, 3, true, SERVER, req),
                    &mut drops,
                );
                t.on_data(
                    &data(u64::from(i) * 10 + 5, p, 3, false, SERVER, ok),
                    &mut drops,
                );
            }
            struct Count(u64);
            impl MetricSink for Count {
                fn counter(&mut self, _: &MetricDesc, _: &[Attr], _: u64) {}
                fn gauge(&mut self, _: &MetricDesc, _: &[Attr], _: i64) {}
                fn histogram(&mut self, _: &MetricDesc, _: &[Attr], h: &Histogram) {
                    self.0 += h.count;
                }
            }
            let mut c = Count(0);
            t.report(&mut c);
            (t.spans().len(), c.0)
        };
        let off = Sampling {
            parent_based: true,
            root: RootSampling::AlwaysOff,
        };
        assert_eq!(
            run(off, get, 100),
            (0, 100),
            "no span, every request counted"
        );
        let half = Sampling {
            parent_based: false,
            root: RootSampling::ratio(0.5),
        };
        let (kept, counted) = run(half, get, 2000);
        assert_eq!(counted, 2000);
        assert!((850..1150).contains(&kept), "{kept} of 2000 kept at 0.5");
        // Parent-based: a caller that sampled its trace in keeps ours in, even with the
        // root sampler off, and one that sampled it out keeps ours out.
        let sampled_in =
            b"GET /a HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        let sampled_out =
            b"GET /a HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n\r\n";
        assert_eq!(run(off, sampled_in, 10).0, 10);
        assert_eq!(run(Sampling::ALWAYS_ON, sampled_out, 10).0, 0);
        assert_eq!(RootSampling::ratio(0.0), RootSampling::Below(0));
        assert!(RootSampling::ratio(1.0).keeps(&[0xff; 16]));
    }

    /// Bytes recorded from the real programs (`testdata/http`): curl 7.88 and Python 3.11
    /// http.client requests as a server read them, nginx 1.22 answers as it wrote them.
    #[test]
    fn real_captures_from_curl_python_and_nginx() {
        let curl = include_bytes!("testdata/http/curl_request");
        let python = include_bytes!("testdata/http/python_request");
        let ok = include_bytes!("testdata/http/nginx_200");
        let missing = include_bytes!("testdata/http/nginx_404");
        let boom = include_bytes!("testdata/http/nginx_500");
        let mut t = HttpTracker::new(limits(), 3, Sampling::ALWAYS_ON);
        let mut drops = AgentCounters::default();
        let nginx = task(5, 5);
        let exchanges: [(&[u8], &[u8]); 3] = [(curl, missing), (python, boom), (curl, ok)];
        for (i, (req, resp)) in exchanges.into_iter().enumerate() {
            let ts = i as u64 * 100;
            t.on_data(&data(ts, nginx, 9, true, SERVER, req), &mut drops);
            t.on_data(&data(ts + 40, nginx, 9, false, SERVER, resp), &mut drops);
        }
        let spans: alloc::vec::Vec<Span> = t.spans().drain(..).collect();
        let got: alloc::vec::Vec<(&str, &str, u16)> = spans
            .iter()
            .map(|s| (s.method.as_str(), s.path.as_str(), s.status))
            .collect();
        assert_eq!(
            got,
            [
                ("GET", "/users/42", 404),
                ("POST", "/orders", 500),
                ("GET", "/users/42", 200)
            ]
        );
        assert_eq!(
            spans[0].context.trace_id[..2],
            [0x0a, 0xf7],
            "curl sent a traceparent"
        );
        assert_eq!(spans[1].parent_span_id, [0; 8], "python did not");
        let mut e = heapless::String::new();
        assert!(spans[1].error_type(&mut e));
        assert_eq!(e.as_str(), "500");
        assert_eq!(spans[1].minor_version, 1);
    }

    #[test]
    fn waiting_exchanges_share_one_bounded_table_and_a_reused_descriptor_ends_them() {
        let mut t = HttpTracker::new(
            HttpLimits {
                connections: 8,
                exchanges: 2,
                spans: 8,
                series_per_metric: 8,
            },
            5,
            Sampling::ALWAYS_ON,
        );
        let mut drops = AgentCounters::default();
        let p = task(1, 1);
        let get = b"GET /a HTTP/1.1\r\n\r\n";
        for fd in 3..6 {
            t.on_data(&data(1, p, fd, true, SERVER, get), &mut drops);
        }
        assert_eq!(t.open_exchanges(), 2);
        assert_eq!(drops.dropped(DropReason::HttpTableFull), 1);
        // fd 3 now carries another connection: its unanswered exchange ends as broken.
        t.on_data(&data(2, p, 3, true, (8080, 40001), get), &mut drops);
        let broken = t.spans().pop_front().expect("the old exchange");
        assert_eq!(
            (broken.broken, broken.remote_port),
            (Some(Broken::Closed), 40000)
        );
        t.on_data(
            &data(3, p, 3, false, (8080, 40001), b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut drops,
        );
        let answered = t.spans().pop_front().expect("the new exchange");
        assert_eq!((answered.status, answered.remote_port), (200, 40001));
        assert_eq!(t.open_exchanges(), 1);
    }
}
