//! HTTP/2 and gRPC exchanges from captured socket data: frames, HPACK, streams, spans.
//!
//! The kernel tags a descriptor as HTTP/2 when the client's connection preface crosses it
//! (written: this end is the client; read: the server) and then hands over the first bytes
//! of every call on it. Each direction is followed as a stream of frames: headers of frames
//! are read, HEADERS, CONTINUATION and PUSH_PROMISE blocks are decoded with HPACK (one
//! [`Decoder`] per direction, as the protocol requires), DATA is passed over whether it was
//! captured or not. A stream opens at its request's HEADERS and ends at the response's
//! END_STREAM, at a RST_STREAM, at a GOAWAY that did not cover it, or at the close.
//!
//! Bytes the capture cut are passed over by frame length. When they hid a frame header or
//! part of a header block, the direction's HPACK table can no longer be known: the
//! connection is lost, counted as `protocol_desync` (once, and once per stream that was
//! open), and ignored until it is closed.
//!
//! A request whose `content-type` is `application/grpc` is a gRPC call: `rpc.*` instead of
//! HTTP attributes, its status from the `grpc-status` trailer (or, without one, from the
//! HTTP status as gRPC maps it). Of the header values only `:method`, `:path` (without its
//! query), `:status`, `grpc-status`, `content-type` and `traceparent` are looked at, and
//! nothing else is kept.
//!
//! Every table here is allocated by [`Http2Tracker::new`]; the per-record path allocates
//! nothing.

use crate::fixed_map::FixedMap;
use crate::hpack::{Decoder, Scratch};
use crate::http::{Broken, HttpTracker, Method, Path, Span, SpanContext, parse_traceparent};
use crate::l7::{Ends, conn_key};
use crate::metrics::{Attr, Attributes, Attrs, Kind, MetricDesc};
use crate::record::{CloseRecord, DataRecord, IpAddr, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::{Process, Side};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// What a client sends first on every HTTP/2 connection (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest header block followed; a longer one loses the connection.
pub const BLOCK_CAP: usize = 1024;
/// Streams of one connection open at once; one more is counted as `http_pipeline_full`.
pub const STREAMS: usize = 16;

pub static RPC_SERVER_DURATION: MetricDesc = MetricDesc {
    name: "rpc.server.duration",
    description: "Duration of inbound RPCs.",
    unit: "ms",
    kind: Kind::Histogram,
};

pub static RPC_CLIENT_DURATION: MetricDesc = MetricDesc {
    name: "rpc.client.duration",
    description: "Duration of outbound RPCs.",
    unit: "ms",
    kind: Kind::Histogram,
};

/// The bucket bounds of the RPC duration histograms, in milliseconds (the SDKs' default).
pub static RPC_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

mod frame {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const PUSH_PROMISE: u8 = 5;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;

    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// The name of an HTTP/2 error code (RFC 9113 section 7), as `error.type`.
pub fn error_name(code: u32) -> &'static str {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("_OTHER")
}

/// The name of a gRPC status code.
pub fn grpc_status_name(code: u16) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(usize::from(code)).copied().unwrap_or("_OTHER")
}

/// Whether a gRPC status is an error for the `side` reporting it: every status but OK for
/// a client; for a server, those that mean the server failed (the semantic conventions'
/// list).
pub fn grpc_failed(side: Side, code: u16) -> bool {
    match side {
        Side::Client => code != 0,
        Side::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// The gRPC status of a call whose response had no `grpc-status`, from its HTTP status
/// (gRPC's "HTTP to gRPC status code mapping").
fn grpc_from_http(status: u16) -> u16 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// The gRPC status of a call its stream's reset ended (gRPC's HTTP/2 error code mapping),
/// or the close of its connection (`None`).
fn grpc_from_reset(code: Option<u32>) -> u16 {
    match code {
        Some(7) | None => 14,
        Some(8) => 1,
        Some(11) => 8,
        Some(12) => 7,
        Some(_) => 13,
    }
}

/// The attributes of the RPC duration histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RpcKey {
    /// `/package.Service/Method`.
    pub path: Path,
    pub status: u16,
    pub server_port: u16,
    pub process: Process,
}

/// `rpc.service` and `rpc.method` of a gRPC `:path`.
pub fn rpc_names(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    p.rsplit_once('/').unwrap_or((p, ""))
}

impl Attributes for RpcKey {
    fn attributes(&self, out: &mut Attrs) {
        let (service, method) = rpc_names(&self.path);
        let _ = out.push(Attr::str("rpc.system", "grpc"));
        let _ = out.push(Attr::str("rpc.service", service));
        let _ = out.push(Attr::str("rpc.method", method));
        let _ = out.push(Attr::int("rpc.grpc.status_code", i64::from(self.status)));
        let _ = out.push(Attr::int("server.port", i64::from(self.server_port)));
        self.process.attributes(out);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
    len: u32,
}

/// One direction of a connection: where its frames are, and its HPACK table.
#[derive(Clone)]
struct Dir {
    hpack: Decoder,
    /// Bytes of the preface still to pass over (the client's direction starts with it).
    preface: u8,
    head: [u8; 9],
    head_len: u8,
    frame: FrameHead,
    /// Inside the current frame's payload, with this many bytes of it still to come.
    in_payload: bool,
    left: u32,
    /// The header block being gathered (HEADERS or PUSH_PROMISE, then CONTINUATIONs).
    block: heapless::Vec<u8, BLOCK_CAP>,
    /// Where the current frame's part of `block` starts.
    frame_start: usize,
    block_stream: u32,
    block_end_stream: bool,
    block_is_push: bool,
    /// A block is open: only CONTINUATION may come next.
    continuing: bool,
    /// The block was longer than [`BLOCK_CAP`].
    overflow: bool,
    /// The first bytes of a RST_STREAM or GOAWAY payload.
    ctrl: [u8; 8],
    ctrl_len: u8,
}

impl Dir {
    fn new() -> Self {
        Self {
            hpack: Decoder::default(),
            preface: 0,
            head: [0; 9],
            head_len: 0,
            frame: FrameHead::default(),
            in_payload: false,
            left: 0,
            block: heapless::Vec::new(),
            frame_start: 0,
            block_stream: 0,
            block_end_stream: false,
            block_is_push: false,
            continuing: false,
            overflow: false,
            ctrl: [0; 8],
            ctrl_len: 0,
        }
    }

    fn reset(&mut self, preface: bool) {
        self.hpack.reset();
        self.preface = if preface { PREFACE.len() as u8 } else { 0 };
        self.head_len = 0;
        self.in_payload = false;
        self.left = 0;
        self.block.clear();
        self.continuing = false;
        self.overflow = false;
        self.ctrl_len = 0;
    }
}

/// A request waiting for its response to end.
#[derive(Debug, Clone)]
struct Stream {
    id: u32,
    context: SpanContext,
    parent_span_id: [u8; 8],
    start_ns: u64,
    method: Method,
    path: Path,
    grpc: bool,
    /// The response's `:status`; 0 until it came.
    status: u16,
    grpc_status: Option<u16>,
}

/// One descriptor that carries HTTP/2.
struct Conn {
    ends: Ends,
    /// 0: what the client sends (requests), 1: what the server sends.
    dirs: [Dir; 2],
    streams: heapless::Vec<Stream, STREAMS>,
    /// Bytes were lost where they could not be passed over: ignored until closed.
    lost: bool,
}

/// What happened in a direction, for the connection to act on.
enum Event {
    /// A header block of `stream` was decoded into `fields`.
    Headers {
        stream: u32,
        end_stream: bool,
        fields: Fields,
    },
    EndStream(u32),
    Reset(u32, u32),
    GoAway(u32),
}

/// The header fields of a block that are looked at.
#[derive(Debug, Default)]
struct Fields {
    method: Method,
    path: Path,
    status: u16,
    grpc: bool,
    grpc_status: Option<u16>,
    traceparent: Option<SpanContext>,
}

impl Fields {
    fn take(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b":method" => {
                self.method.clear();
                let _ = core::str::from_utf8(value).map(|m| self.method.push_str(m));
            }
            b":path" => {
                self.path.clear();
                let path = value.split(|c| *c == b'?' || *c == b'#').next();
                for c in path.unwrap_or_default() {
                    if !c.is_ascii() || self.path.push(char::from(*c)).is_err() {
                        break;
                    }
                }
            }
            b":status" => self.status = number(value).unwrap_or(0),
            b"content-type" => self.grpc = value.starts_with(b"application/grpc"),
            b"grpc-status" => self.grpc_status = number(value),
            b"traceparent" => self.traceparent = parse_traceparent(value),
            _ => {}
        }
    }
}

fn number(v: &[u8]) -> Option<u16> {
    if v.is_empty() || v.len() > 4 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u16, |n, c| n * 10 + u16::from(c - b'0')))
}

/// Tracks HTTP/2 connections: their streams become spans in the HTTP tracker's queue.
pub struct Http2Tracker {
    /// Descriptor key to its slot in `conns`.
    index: FixedMap<u64, usize>,
    conns: Vec<Conn>,
    free: Vec<usize>,
    scratch: Box<Scratch>,
}

/// The connection is lost.
struct Desync;

impl Http2Tracker {
    /// Room for `connections` HTTP/2 descriptors at once.
    pub fn new(connections: usize) -> Self {
        let n = connections.max(1);
        let mut conns = Vec::with_capacity(n);
        conns.resize_with(n, || Conn {
            ends: Ends {
                side: Side::Client,
                tls: false,
                local: IpAddr::default(),
                local_port: 0,
                remote: IpAddr::default(),
                remote_port: 0,
                process: Process::default(),
            },
            dirs: [Dir::new(), Dir::new()],
            streams: heapless::Vec::new(),
            lost: false,
        });
        Self {
            index: FixedMap::with_capacity(n),
            conns,
            free: (0..n).rev().collect(),
            scratch: Box::default(),
        }
    }

    /// Bytes the tables of `connections` take.
    pub fn bytes(connections: usize) -> usize {
        let n = connections.max(1);
        FixedMap::<u64, usize>::bytes_for(n)
            + n * (core::mem::size_of::<Conn>() + core::mem::size_of::<usize>())
            + core::mem::size_of::<Scratch>()
    }

    /// Descriptors followed now.
    pub fn connections(&self) -> usize {
        self.index.len()
    }

    /// Handles what one read or write moved on an HTTP/2 descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        if let Some(&i) = self.index.get(&key)
            && self.conns[i].ends.stale(r)
        {
            self.end(key, r.ts_ns, spans, drops);
        }
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                // Followed from the preface on (the kernel tags a descriptor on its first 8
                // bytes): what began before it cannot be decoded.
                if r.data.len() < 8 || r.data[..8] != PREFACE[..8] {
                    return;
                }
                let Some(i) = self.free.pop() else {
                    drops.drop(DropReason::HttpTableFull, 1);
                    return;
                };
                if self.index.insert(key, i).is_err() {
                    self.free.push(i);
                    drops.drop(DropReason::HttpTableFull, 1);
                    return;
                }
                let side = if r.ingress {
                    Side::Server
                } else {
                    Side::Client
                };
                let c = &mut self.conns[i];
                c.ends = Ends::of(r, side);
                c.dirs[0].reset(true);
                c.dirs[1].reset(false);
                c.streams.clear();
                c.lost = false;
                i
            }
        };
        let conn = &mut self.conns[i];
        // A TLS connection's own syscalls move its ciphertext: only the plaintext counts.
        if conn.lost || conn.ends.tls != r.tls {
            return;
        }
        let from_client = r.ingress == (conn.ends.side == Side::Server);
        let lost_bytes = r.len.saturating_sub(r.data.len() as u32);
        let scratch = &mut *self.scratch;
        let fed = feed(conn, from_client, r, lost_bytes, scratch, spans, drops);
        if fed.is_err() {
            let conn = &mut self.conns[i];
            conn.lost = true;
            drops.drop(DropReason::ProtocolDesync, 1 + conn.streams.len() as u64);
            conn.streams.clear();
        }
    }

    /// A descriptor that carried data was closed: its open streams end broken.
    pub fn on_close(
        &mut self,
        r: &CloseRecord,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        self.end(conn_key(r.task.tgid, r.fd), r.ts_ns, spans, drops);
    }

    fn end(&mut self, key: u64, ts_ns: u64, spans: &mut HttpTracker, drops: &mut AgentCounters) {
        let Some(i) = self.index.remove(&key) else {
            return;
        };
        self.free.push(i);
        let conn = &mut self.conns[i];
        while let Some(s) = conn.streams.pop() {
            finish(&conn.ends, s, ts_ns, Some(Broken::Closed), spans, drops);
        }
    }
}

/// Feeds one record's bytes, then passes over the bytes the capture cut.
fn feed(
    conn: &mut Conn,
    from_client: bool,
    r: &DataRecord<'_>,
    mut lost: u32,
    scratch: &mut Scratch,
    spans: &mut HttpTracker,
    drops: &mut AgentCounters,
) -> Result<(), Desync> {
    let d = usize::from(!from_client);
    let mut data = r.data;
    while !data.is_empty() || lost > 0 {
        let dir = &mut conn.dirs[d];
        let event = if data.is_empty() {
            skip(dir, &mut lost)?
        } else {
            step(dir, &mut data, scratch)?
        };
        if let Some(e) = event {
            on_event(conn, from_client, e, r, spans, drops);
        }
    }
    Ok(())
}

/// Passes over lost bytes inside a frame's payload; lost bytes elsewhere lose the
/// connection.
fn skip(dir: &mut Dir, lost: &mut u32) -> Result<Option<Event>, Desync> {
    if dir.preface > 0 {
        let k = (*lost).min(u32::from(dir.preface));
        dir.preface -= k as u8;
        *lost -= k;
        return Ok(None);
    }
    let collected = matches!(
        dir.frame.kind,
        frame::HEADERS | frame::CONTINUATION | frame::PUSH_PROMISE
    );
    if !dir.in_payload || collected {
        return Err(Desync);
    }
    let k = (*lost).min(dir.left);
    dir.left -= k;
    *lost -= k;
    // Control payloads cut short are not acted on.
    dir.ctrl_len = 0;
    Ok(if dir.left == 0 { frame_done(dir) } else { None })
}

/// Consumes bytes of `data` up to the next thing that happens.
fn step(dir: &mut Dir, data: &mut &[u8], scratch: &mut Scratch) -> Result<Option<Event>, Desync> {
    if dir.preface > 0 {
        let k = data.len().min(usize::from(dir.preface));
        let at = PREFACE.len() - usize::from(dir.preface);
        if data[..k] != PREFACE[at..at + k] {
            return Err(Desync);
        }
        dir.preface -= k as u8;
        *data = &data[k..];
        return Ok(None);
    }
    if !dir.in_payload {
        let k = data.len().min(9 - usize::from(dir.head_len));
        let h = usize::from(dir.head_len);
        dir.head[h..h + k].copy_from_slice(&data[..k]);
        dir.head_len += k as u8;
        *data = &data[k..];
        if dir.head_len < 9 {
            return Ok(None);
        }
        dir.head_len = 0;
        let h = dir.head;
        dir.frame = FrameHead {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        };
        let f = dir.frame;
        if dir.continuing != (f.kind == frame::CONTINUATION) {
            // A header block interrupted, or a CONTINUATION without one.
            return Err(Desync);
        }
        if matches!(f.kind, frame::HEADERS | frame::PUSH_PROMISE) {
            dir.block.clear();
            dir.overflow = false;
            dir.block_stream = f.stream;
            dir.block_end_stream = f.flags & frame::END_STREAM != 0;
            dir.block_is_push = f.kind == frame::PUSH_PROMISE;
        }
        dir.frame_start = dir.block.len();
        dir.ctrl_len = 0;
        dir.in_payload = true;
        dir.left = f.len;
        if f.len == 0 {
            return frame_end(dir, scratch);
        }
        return Ok(None);
    }
    let k = data.len().min(dir.left as usize);
    let (chunk, rest) = data.split_at(k);
    *data = rest;
    dir.left -= k as u32;
    match dir.frame.kind {
        frame::HEADERS | frame::CONTINUATION | frame::PUSH_PROMISE
            if dir.block.extend_from_slice(chunk).is_err() =>
        {
            dir.overflow = true;
        }
        frame::RST_STREAM | frame::GOAWAY => {
            for b in chunk {
                if usize::from(dir.ctrl_len) < dir.ctrl.len() {
                    dir.ctrl[usize::from(dir.ctrl_len)] = *b;
                    dir.ctrl_len += 1;
                }
            }
        }
        _ => {}
    }
    if dir.left == 0 {
        return frame_end(dir, scratch);
    }
    Ok(None)
}

/// The current frame's payload is complete.
fn frame_end(dir: &mut Dir, scratch: &mut Scratch) -> Result<Option<Event>, Desync> {
    dir.in_payload = false;
    let f = dir.frame;
    match f.kind {
        frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION => {
            if dir.overflow {
                return Err(Desync);
            }
            if f.kind != frame::CONTINUATION {
                strip(dir)?;
            }
            dir.continuing = f.flags & frame::END_HEADERS == 0;
            if dir.continuing {
                return Ok(None);
            }
            let mut fields = Fields::default();
            let decoded = dir
                .hpack
                .decode(&dir.block, scratch, |n, v| fields.take(n, v));
            dir.block.clear();
            decoded.map_err(|_| Desync)?;
            if dir.block_is_push {
                return Ok(None);
            }
            Ok(Some(Event::Headers {
                stream: dir.block_stream,
                end_stream: dir.block_end_stream,
                fields,
            }))
        }
        _ => Ok(frame_done(dir)),
    }
}

/// Removes the padding and the fields before the block fragment of a HEADERS or
/// PUSH_PROMISE frame.
fn strip(dir: &mut Dir) -> Result<(), Desync> {
    let f = dir.frame;
    let payload = &dir.block[dir.frame_start..];
    let padded = f.flags & frame::PADDED != 0;
    let pad = if padded {
        usize::from(*payload.first().ok_or(Desync)?)
    } else {
        0
    };
    let before = usize::from(padded)
        + match f.kind {
            frame::PUSH_PROMISE => 4,
            _ if f.flags & frame::PRIORITY != 0 => 5,
            _ => 0,
        };
    let len = payload.len();
    if before + pad > len {
        return Err(Desync);
    }
    let start = dir.frame_start;
    dir.block
        .copy_within(start + before..start + len - pad, start);
    dir.block.truncate(start + len - pad - before);
    Ok(())
}

/// What a frame other than a header block's means once its payload has passed.
fn frame_done(dir: &mut Dir) -> Option<Event> {
    dir.in_payload = false;
    let f = dir.frame;
    let ctrl = (usize::from(dir.ctrl_len) >= 4).then(|| {
        let c = dir.ctrl;
        (
            u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
        )
    });
    match f.kind {
        frame::DATA if f.flags & frame::END_STREAM != 0 => Some(Event::EndStream(f.stream)),
        frame::RST_STREAM => ctrl.map(|(code, _)| Event::Reset(f.stream, code)),
        frame::GOAWAY if dir.ctrl_len == 8 => {
            ctrl.map(|(last, _)| Event::GoAway(last & 0x7fff_ffff))
        }
        _ => None,
    }
}

fn on_event(
    conn: &mut Conn,
    from_client: bool,
    e: Event,
    r: &DataRecord<'_>,
    spans: &mut HttpTracker,
    drops: &mut AgentCounters,
) {
    let ends = conn.ends;
    let at =
        |streams: &heapless::Vec<Stream, STREAMS>, id: u32| streams.iter().position(|s| s.id == id);
    match e {
        Event::Headers { stream, fields, .. } if from_client => {
            if at(&conn.streams, stream).is_some() || fields.method.is_empty() {
                // Trailers of a request, or not a request.
                return;
            }
            let (context, parent_span_id) =
                spans.request_context(ends.side, fields.traceparent, r.task.tid);
            let s = Stream {
                id: stream,
                context,
                parent_span_id,
                start_ns: r.ts_ns,
                method: fields.method,
                path: fields.path,
                grpc: fields.grpc,
                status: 0,
                grpc_status: None,
            };
            if conn.streams.push(s).is_err() {
                drops.drop(DropReason::HttpPipelineFull, 1);
            }
        }
        Event::Headers {
            stream,
            end_stream,
            fields,
        } => {
            let Some(i) = at(&conn.streams, stream) else {
                return;
            };
            let s = &mut conn.streams[i];
            let interim = (100..200).contains(&fields.status) && fields.status != 101;
            if s.status == 0 && !interim {
                s.status = fields.status;
            }
            if fields.grpc_status.is_some() {
                s.grpc_status = fields.grpc_status;
            }
            if end_stream {
                let s = conn.streams.swap_remove(i);
                finish(&ends, s, r.ts_ns, None, spans, drops);
            }
        }
        Event::EndStream(stream) if !from_client => {
            if let Some(i) = at(&conn.streams, stream) {
                let s = conn.streams.swap_remove(i);
                finish(&ends, s, r.ts_ns, None, spans, drops);
            }
        }
        Event::EndStream(_) => {}
        Event::Reset(stream, code) => {
            if let Some(i) = at(&conn.streams, stream) {
                let s = conn.streams.swap_remove(i);
                finish(&ends, s, r.ts_ns, Some(Broken::Reset(code)), spans, drops);
            }
        }
        Event::GoAway(last) => {
            // Streams above the last one the sender processed were not processed at all
            // (RFC 9113 section 6.8): as if refused.
            let mut i = 0;
            while i < conn.streams.len() {
                if conn.streams[i].id > last {
                    let s = conn.streams.swap_remove(i);
                    finish(&ends, s, r.ts_ns, Some(Broken::Reset(7)), spans, drops);
                } else {
                    i += 1;
                }
            }
        }
    }
}

fn finish(
    ends: &Ends,
    s: Stream,
    end_ns: u64,
    broken: Option<Broken>,
    spans: &mut HttpTracker,
    drops: &mut AgentCounters,
) {
    let (protocol, status) = if s.grpc {
        let code = match broken {
            Some(Broken::Reset(c)) => grpc_from_reset(Some(c)),
            Some(Broken::Closed) => grpc_from_reset(None),
            None => s.grpc_status.unwrap_or_else(|| grpc_from_http(s.status)),
        };
        (Protocol::Grpc, code)
    } else {
        (Protocol::Http2, s.status)
    };
    let span = Span {
        side: ends.side,
        protocol,
        context: s.context,
        parent_span_id: s.parent_span_id,
        start_ns: s.start_ns,
        end_ns: end_ns.max(s.start_ns),
        method: s.method,
        path: s.path,
        status,
        minor_version: 0,
        broken,
        db_error: heapless::String::new(),
        namespace: heapless::String::new(),
        tls: ends.tls,
        local: ends.local,
        local_port: ends.local_port,
        remote: ends.remote,
        remote_port: ends.remote_port,
        process: ends.process,
    };
    spans.complete(span, drops);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpLimits, RootSampling, Sampling};
    use crate::record::{Record, Task, decode};
    use alloc::vec;
    use alloc::vec::Vec;

    /// Recorded by `telegen --record` from grpcio 1.85 (PyPI), `io/tests/support/grpc_demo.py`:
    /// a server and a client on one channel, three OK calls, a NOT_FOUND, and an OK call
    /// whose metadata carries `traceparent` (trace 0af7…, caller b7ad…).
    const GRPC: &[u8] = include_bytes!("testdata/http2/grpc.rec");
    /// Recorded from nginx 1.22 (Debian 12, `listen … http2`, plaintext and TLS) with
    /// nghttp 1.52 (three streams /ok, /missing/1, /boom on one connection; then /ok over
    /// TLS) and curl 7.88 (/ok?token=… with `traceparent`, `Authorization` and `Cookie`;
    /// /missing/2 over TLS).
    const NGINX: &[u8] = include_bytes!("testdata/http2/nginx_h2.rec");
    const TRACE: [u8; 16] = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];
    const CALLER: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];

    fn spans_of(rec: &[u8]) -> (Vec<Span>, AgentCounters) {
        let (spans, c) = crate::pipeline::replay(rec);
        let h2 = spans
            .into_iter()
            .filter(|s| matches!(s.protocol, Protocol::Http2 | Protocol::Grpc))
            .collect();
        (h2, c)
    }

    #[test]
    fn a_recorded_grpc_session() {
        let (spans, c) = spans_of(GRPC);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
        assert_eq!(spans.len(), 10, "{spans:?}");
        for side in [Side::Server, Side::Client] {
            let mut codes: Vec<u16> = spans
                .iter()
                .filter(|s| s.side == side)
                .map(|s| s.status)
                .collect();
            codes.sort();
            assert_eq!(codes, [0, 0, 0, 0, 5], "{side:?}");
        }
        for s in &spans {
            assert_eq!(s.protocol, Protocol::Grpc);
            assert_eq!(s.path, "/demo.Greeter/SayHello");
            assert_eq!(rpc_names(&s.path), ("demo.Greeter", "SayHello"));
            assert_eq!(s.protocol_version(), "2");
            let mut name = heapless::String::new();
            s.name(&mut name);
            assert_eq!(name, "demo.Greeter/SayHello");
            let mut e = crate::http::ErrorType::new();
            let failed = s.error_type(&mut e);
            // NOT_FOUND is the client's error, not the server's.
            assert_eq!(failed, s.status == 5 && s.side == Side::Client);
        }
        let traced: Vec<&Span> = spans
            .iter()
            .filter(|s| s.context.trace_id == TRACE)
            .collect();
        assert_eq!(traced.len(), 2);
        let server = traced.iter().find(|s| s.side == Side::Server).unwrap();
        assert_eq!(server.parent_span_id, CALLER);
        let client = traced.iter().find(|s| s.side == Side::Client).unwrap();
        assert_eq!(client.context.span_id, CALLER);
    }

    #[test]
    fn a_recorded_nginx_session() {
        let (spans, c) = spans_of(NGINX);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
        let mut seen: Vec<(bool, bool, &str, u16)> = spans
            .iter()
            .map(|s| (s.side == Side::Server, s.tls, s.path.as_str(), s.status))
            .collect();
        seen.sort();
        let (c, s) = (false, true);
        assert_eq!(
            seen,
            [
                (c, false, "/boom", 500),
                (c, false, "/missing/1", 404),
                (c, false, "/ok", 200),
                (c, false, "/ok", 200),
                (c, true, "/missing/2", 404),
                (c, true, "/ok", 200),
                (s, false, "/boom", 500),
                (s, false, "/missing/1", 404),
                (s, false, "/ok", 200),
                (s, false, "/ok", 200),
                (s, true, "/missing/2", 404),
                (s, true, "/ok", 200),
            ]
        );
        assert!(
            spans
                .iter()
                .all(|s| s.protocol == Protocol::Http2 && s.method == "GET")
        );
        let joined = spans
            .iter()
            .find(|s| s.side == Side::Server && s.context.trace_id == TRACE)
            .expect("nginx's span joins curl's trace");
        assert_eq!(joined.parent_span_id, CALLER);
    }

    /// The same bytes in pieces of 1 to 7 bytes (as reads of a few bytes would give them)
    /// make the same spans.
    #[test]
    fn records_split_anywhere_give_the_same_spans() {
        for rec in [GRPC, NGINX] {
            let mut whole = Http2Tracker::new(8);
            let mut split = Http2Tracker::new(8);
            let (mut a, mut b) = (tracker(), tracker());
            let mut c = AgentCounters::default();
            let mut k = 0usize;
            for r in crate::recording::records(rec).unwrap() {
                let Ok(Record::Data(d)) = decode(r.unwrap()) else {
                    continue;
                };
                if d.protocol != Protocol::Http2 {
                    continue;
                }
                whole.on_data(&d, &mut a, &mut c);
                // The kernel starts on a call whose first 8 bytes open the preface.
                let first = if d.data.starts_with(PREFACE) { 8 } else { 0 };
                let (head, mut rest) = d.data.split_at(first);
                if first > 0 {
                    let p = DataRecord {
                        data: head,
                        len: 8,
                        ..d
                    };
                    split.on_data(&p, &mut b, &mut c);
                }
                while !rest.is_empty() {
                    k = k % 7 + 1;
                    let (piece, r) = rest.split_at(k.min(rest.len()));
                    rest = r;
                    let p = DataRecord {
                        data: piece,
                        len: piece.len() as u32,
                        ..d
                    };
                    split.on_data(&p, &mut b, &mut c);
                }
            }
            assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
            let key = |t: &mut HttpTracker| {
                let mut v: Vec<_> = t
                    .spans()
                    .iter()
                    .map(|s| {
                        (
                            s.side == Side::Server,
                            s.path.clone(),
                            s.status,
                            s.start_ns,
                            s.end_ns,
                        )
                    })
                    .collect();
                v.sort();
                v
            };
            let (ka, kb) = (key(&mut a), key(&mut b));
            assert!(!ka.is_empty());
            assert_eq!(ka, kb);
        }
    }

    fn tracker() -> HttpTracker {
        let limits = HttpLimits {
            connections: 8,
            exchanges: 8,
            spans: 64,
            series_per_metric: 16,
        };
        let sampling = Sampling {
            parent_based: true,
            root: RootSampling::AlwaysOn,
        };
        HttpTracker::new(limits, 3, sampling)
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// RFC 7541 C.3.1: GET http://www.example.com/.
    const GET: &[u8] = b"\x82\x86\x84\x41\x0fwww.example.com";
    /// A gRPC request: POST, :path literal, content-type application/grpc.
    fn grpc_request() -> Vec<u8> {
        let mut b = vec![0x83, 0x86, 0x04, 22];
        b.extend_from_slice(b"/demo.Greeter/SayHello");
        b.extend_from_slice(&[0x0f, 0x10, 16]);
        b.extend_from_slice(b"application/grpc");
        b
    }
    /// `:status 200` (static index 8).
    const OK: &[u8] = b"\x88";

    struct Conn2 {
        t: Http2Tracker,
        spans: HttpTracker,
        drops: AgentCounters,
        ts: u64,
    }

    impl Conn2 {
        fn new() -> Self {
            Self {
                t: Http2Tracker::new(2),
                spans: tracker(),
                drops: AgentCounters::default(),
                ts: 1000,
            }
        }

        /// A server's read (`ingress`) or write of `data`, of which `lost` more bytes moved
        /// than were captured.
        fn server(&mut self, ingress: bool, data: &[u8], lost: u32) {
            self.ts += 1000;
            let mut comm = [0u8; 16];
            comm[..5].copy_from_slice(b"nginx");
            let r = DataRecord {
                ts_ns: self.ts,
                task: Task {
                    tgid: 7,
                    tid: 7,
                    comm,
                },
                fd: 3,
                ingress,
                len: data.len() as u32 + lost,
                sock: 1,
                local: IpAddr::default(),
                remote: IpAddr::default(),
                local_port: 8080,
                remote_port: 40000,
                tls: false,
                protocol: Protocol::Http2,
                data,
            };
            self.t.on_data(&r, &mut self.spans, &mut self.drops);
        }

        fn open(&mut self) {
            let mut d = PREFACE.to_vec();
            d.extend(frame(4, 0, 0, &[]));
            self.server(true, &d, 0);
        }

        fn spans(&mut self) -> Vec<Span> {
            self.spans.spans().drain(..).collect()
        }
    }

    #[test]
    fn padding_priority_and_continuation_are_read() {
        let mut c = Conn2::new();
        c.open();
        // HEADERS, padded (3 bytes) with a priority, the block split over a CONTINUATION.
        let mut payload = vec![3, 0, 0, 0, 0, 16];
        payload.extend_from_slice(&GET[..3]);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut d = frame(1, 0x8 | 0x20 | 0x1, 1, &payload);
        d.extend(frame(9, 0x4, 1, &GET[3..]));
        c.server(true, &d, 0);
        c.server(false, &frame(1, 0x4 | 0x1, 1, OK), 0);
        let spans = c.spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].method.as_str(), spans[0].path.as_str()),
            ("GET", "/")
        );
        assert_eq!((spans[0].status, spans[0].side), (200, Side::Server));
        assert_eq!(c.drops.dropped(DropReason::ProtocolDesync), 0);
    }

    #[test]
    fn data_the_capture_cut_is_passed_over() {
        let mut c = Conn2::new();
        c.open();
        c.server(true, &frame(1, 0x4 | 0x1, 1, GET), 0);
        c.server(true, &frame(1, 0x4 | 0x1, 3, GET), 0);
        // Response headers, then a 100 kB body of which 10 bytes were captured, ending the
        // stream; then the next stream's answer is read normally.
        let mut d = frame(1, 0x4, 1, OK);
        let mut body = frame(0, 0x1, 1, &[]);
        body[0..3].copy_from_slice(&[0x01, 0x86, 0xa0]);
        d.extend(body);
        d.extend_from_slice(&[b'x'; 10]);
        c.server(false, &d, 100_000 - 10);
        c.server(false, &frame(1, 0x4 | 0x1, 3, b"\x89"), 0);
        let mut got: Vec<(u16, u64)> = c.spans().iter().map(|s| (s.status, s.end_ns)).collect();
        got.sort();
        assert_eq!(got, [(200, 5000), (204, 6000)]);
        assert_eq!(c.drops.dropped(DropReason::ProtocolDesync), 0);
    }

    #[test]
    fn a_lost_header_block_loses_the_connection_and_is_counted() {
        let mut c = Conn2::new();
        c.open();
        c.server(true, &frame(1, 0x4 | 0x1, 1, GET), 0);
        // The response's header block was cut: its table entries are unknown from here.
        let d = frame(1, 0x4 | 0x1, 1, b"\x40\x03abc\x03def");
        c.server(false, &d[..12], (d.len() - 12) as u32);
        c.server(true, &frame(1, 0x4 | 0x1, 3, GET), 0);
        c.server(false, &frame(1, 0x4 | 0x1, 3, OK), 0);
        assert!(c.spans().is_empty());
        // The connection, and the stream that was open.
        assert_eq!(c.drops.dropped(DropReason::ProtocolDesync), 2);
        // Bytes that are not a preface where one must be: the same.
        let mut c = Conn2::new();
        c.server(true, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 0);
        assert_eq!(c.drops.dropped(DropReason::ProtocolDesync), 1);
    }

    #[test]
    fn resets_goaways_and_closes_end_streams_as_errors() {
        let mut c = Conn2::new();
        c.open();
        for id in [1, 3, 5, 7] {
            c.server(true, &frame(1, 0x4 | 0x1, id, &grpc_request()), 0);
        }
        // The client cancels stream 1; the server processed up to 3, then went away.
        c.server(true, &frame(3, 0, 1, &8u32.to_be_bytes()), 0);
        let mut goaway = 3u32.to_be_bytes().to_vec();
        goaway.extend_from_slice(&0u32.to_be_bytes());
        c.server(false, &frame(7, 0, 0, &goaway), 0);
        c.t.on_close(
            &CloseRecord {
                ts_ns: 99_000,
                task: Task {
                    tgid: 7,
                    tid: 7,
                    comm: [0; 16],
                },
                fd: 3,
            },
            &mut c.spans,
            &mut c.drops,
        );
        let errors: Vec<(u16, crate::http::ErrorType)> = c
            .spans()
            .iter()
            .map(|s| {
                assert_eq!(s.protocol, Protocol::Grpc);
                let mut e = crate::http::ErrorType::new();
                assert!(s.error_type(&mut e));
                (s.status, e)
            })
            .collect();
        let mut got: Vec<(u16, &str)> = errors.iter().map(|(c, e)| (*c, e.as_str())).collect();
        got.sort();
        // CANCEL: CANCELLED (1); refused by the GOAWAY and closed: UNAVAILABLE (14).
        assert_eq!(
            got,
            [
                (1, "CANCEL"),
                (14, "REFUSED_STREAM"),
                (14, "REFUSED_STREAM"),
                (14, "connection_closed"),
            ]
        );
        assert_eq!(c.t.connections(), 0);
    }

    #[test]
    fn grpc_status_comes_from_trailers_or_the_http_status() {
        let mut c = Conn2::new();
        c.open();
        c.server(true, &frame(1, 0x4, 1, &grpc_request()), 0);
        c.server(true, &frame(1, 0x4, 3, &grpc_request()), 0);
        // Stream 1: headers, data, trailers with grpc-status 7. Stream 3: a proxy's 503.
        let mut d = frame(1, 0x4, 1, OK);
        d.extend(frame(0, 0, 1, b"\0\0\0\0\0"));
        let mut trailer = vec![0x00, 11];
        trailer.extend_from_slice(b"grpc-status");
        trailer.extend_from_slice(&[1, b'7']);
        d.extend(frame(1, 0x4 | 0x1, 1, &trailer));
        c.server(false, &d, 0);
        c.server(false, &frame(1, 0x4 | 0x1, 3, b"\x48\x03503"), 0);
        let mut got: Vec<u16> = c.spans().iter().map(|s| s.status).collect();
        got.sort();
        assert_eq!(got, [7, 14]);
        // Both calls are samples of the server's RPC histogram, one series per status.
        struct Count(Vec<(&'static str, i64, u64)>);
        impl crate::metrics::MetricSink for Count {
            fn counter(&mut self, _: &MetricDesc, _: &[Attr], _: u64) {}
            fn gauge(&mut self, _: &MetricDesc, _: &[Attr], _: i64) {}
            fn histogram(&mut self, d: &MetricDesc, a: &[Attr], h: &crate::metrics::Histogram) {
                let code = a.iter().find(|a| a.key == "rpc.grpc.status_code");
                let code = match code.map(|a| &a.value) {
                    Some(crate::metrics::AttrValue::Int(v)) => *v,
                    _ => -1,
                };
                self.0.push((d.name, code, h.count));
            }
        }
        let mut m = Count(Vec::new());
        c.spans.report(&mut m);
        m.0.sort();
        assert_eq!(
            m.0,
            [
                ("rpc.server.duration", 7, 1),
                ("rpc.server.duration", 14, 1)
            ]
        );
    }

    #[test]
    fn full_tables_are_counted() {
        let mut c = Conn2::new();
        c.open();
        for i in 0..=STREAMS as u32 {
            c.server(true, &frame(1, 0x4 | 0x1, 1 + 2 * i, GET), 0);
        }
        assert_eq!(c.drops.dropped(DropReason::HttpPipelineFull), 1);
        let mut t = Http2Tracker::new(1);
        let mut spans = tracker();
        let mut drops = AgentCounters::default();
        let mut pre = PREFACE.to_vec();
        pre.extend(frame(4, 0, 0, &[]));
        for fd in [3, 4] {
            let r = DataRecord {
                ts_ns: 1,
                task: Task::default(),
                fd,
                ingress: true,
                len: pre.len() as u32,
                sock: 1,
                local: IpAddr::default(),
                remote: IpAddr::default(),
                local_port: 1,
                remote_port: 2,
                tls: false,
                protocol: Protocol::Http2,
                data: &pre,
            };
            t.on_data(&r, &mut spans, &mut drops);
        }
        assert_eq!(drops.dropped(DropReason::HttpTableFull), 1);
        assert_eq!(t.connections(), 1);
    }
}
