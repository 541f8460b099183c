//! Kafka exchanges from captured socket data: Produce and Fetch as client spans and the
//! client operation-duration metric.
//!
//! The kernel tags a descriptor as Kafka when a request a client opens a connection with
//! crosses it (a size under 64 KiB, then the API key of ApiVersions, Metadata, Produce or
//! Fetch and a plausible version), and from then on hands over every read and write on it.
//! Each direction goes through a size-prefixed framer ([`crate::frames`]) that keeps the
//! start of every message. Requests wait in order for their responses (a client keeps up to
//! five in flight per connection), paired by correlation id. Both the classic encodings and
//! the flexible ones (compact strings and arrays, tagged fields: Produce v9+, Fetch v12+)
//! are read.
//!
//! - A Produce request is a `send {topic}` span (PRODUCER) that ends with its response (at
//!   once with `acks=0`, which has none).
//! - A Fetch request is a `poll {topic}` span (CLIENT) that ends with its response.
//!
//! The topic and partition are the request's first; a non-zero error code in the response's
//! first partition fails the span (`error.type`: the code, `87` for INVALID_RECORD). Produce
//! and Fetch v13+ name topics by id: the names come from the Metadata responses (v10+) the
//! process received, as far as their first [`RESPONSE_KEEP`] bytes go. Records are never
//! kept.

use crate::fixed_map::FixedMap;
use crate::frames::{Framer, Framing, Msg};
use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Table, Word, conn_key};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::Side;

pub use crate::mqtt::{CLIENT_DURATION, DURATION_BOUNDS};

const KAFKA: Protocol = Protocol::Kafka;

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;

/// Requests a connection may have waiting for responses.
pub const IN_FLIGHT: usize = 8;

/// Whether a call's first bytes are a request a client opens a connection with, as the
/// kernel decides it.
pub fn starts_request(b: &[u8]) -> bool {
    match b {
        [0, 0, _, _, 0, key, 0, v, ..] => match i16::from(*key) {
            FETCH | API_VERSIONS => *v <= 20,
            // Metadata v0 would read as a PostgreSQL startup message, Produce v0 (no client
            // since Kafka 0.9 sends it) as an HTTP/2 SETTINGS, WINDOW_UPDATE or DATA frame.
            PRODUCE | METADATA => (1..=20).contains(v),
            _ => false,
        },
        _ => false,
    }
}

/// Whether `version` of `api` uses the flexible encoding (request header v2).
fn flexible(api: i16, version: i16) -> bool {
    match api {
        PRODUCE => version >= 9,
        FETCH => version >= 12,
        METADATA => version >= 9,
        API_VERSIONS => version >= 3,
        _ => false,
    }
}

/// `messaging.operation.type` of an operation this tracker names.
pub fn operation_type(operation: &str) -> Option<&'static str> {
    match operation {
        "send" => Some("send"),
        "poll" => Some("receive"),
        _ => None,
    }
}

/// Reads the fields of a message body in order; every read fails cleanly past the end.
#[derive(Clone, Copy)]
struct Reader<'a> {
    b: &'a [u8],
    compact: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (v, rest) = (self.b.get(..n)?, self.b.get(n..)?);
        self.b = rest;
        Some(v)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|v| i16::from_be_bytes([v[0], v[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|v| i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let c = *self.take(1)?.first()?;
            v |= u64::from(c & 0x7f) << shift;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A (nullable) string: `None` past the end, `Some(empty)` for null. A string cut by the
    /// capture keeps what was captured.
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = if self.compact {
            match self.uvarint()? {
                0 => return Some(&[]),
                n => (n - 1) as usize,
            }
        } else {
            match self.i16()? {
                n if n < 0 => return Some(&[]),
                n => n as usize,
            }
        };
        let n = n.min(self.b.len());
        self.take(n)
    }
    /// An array's length (null arrays are empty).
    fn array(&mut self) -> Option<u32> {
        if self.compact {
            Some(self.uvarint()?.saturating_sub(1) as u32)
        } else {
            Some(self.i32()?.max(0) as u32)
        }
    }
    /// Tagged fields (flexible versions only).
    fn tagged(&mut self) -> Option<()> {
        if !self.compact {
            return Some(());
        }
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let n = self.uvarint()? as usize;
            self.skip(n)?;
        }
        Some(())
    }
}

/// A request's header: its API, version, correlation id, and its body.
fn request_header(b: &[u8]) -> Option<(i16, i16, i32, Reader<'_>)> {
    let mut r = Reader { b, compact: false };
    let (api, version, correlation) = (r.i16()?, r.i16()?, r.i32()?);
    // The client id is a classic nullable string even in header v2.
    r.string()?;
    r.compact = flexible(api, version);
    r.tagged()?;
    Some((api, version, correlation, r))
}

/// Topic ids are 16 bytes (a UUID).
type TopicId = [u8; 16];

/// Whether `version` of `api` names topics by id rather than by name.
fn by_id(api: i16, version: i16) -> bool {
    (api == FETCH || api == PRODUCE) && version >= 13
}

/// The topic (by name, or by id for [`by_id`] versions) and partition a Produce or Fetch
/// request names first.
fn target(
    api: i16,
    version: i16,
    mut r: Reader<'_>,
) -> Option<(Path, Option<TopicId>, Option<i32>)> {
    let mut topic = Path::new();
    let mut id = None;
    if api == PRODUCE {
        if version >= 3 {
            r.string()?; // transactional_id
        }
        r.skip(6)?; // acks, timeout_ms
    } else {
        if version < 15 {
            r.skip(4)?; // replica_id
        }
        r.skip(8)?; // max_wait_ms, min_bytes
        if version >= 3 {
            r.skip(4)?; // max_bytes
        }
        if version >= 4 {
            r.skip(1)?; // isolation_level
        }
        if version >= 7 {
            r.skip(8)?; // session_id, session_epoch
        }
    }
    if r.array()? == 0 {
        return Some((topic, None, None));
    }
    if by_id(api, version) {
        id = Some(r.take(16)?.try_into().ok()?);
    } else {
        topic = text(r.string()?);
    }
    if r.array()? == 0 {
        return Some((topic, id, None));
    }
    Some((topic, id, r.i32()))
}

fn text(b: &[u8]) -> Path {
    let mut out = Path::new();
    for &c in b {
        let c = if c.is_ascii_graphic() { c as char } else { '?' };
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The topics a Metadata response (v10 on) names with their ids, in the bytes kept.
fn metadata_topics(version: i16, mut r: Reader<'_>, found: &mut impl FnMut(&[u8], TopicId)) {
    let _ = (|| -> Option<()> {
        if version >= 3 {
            r.skip(4)?; // throttle_time_ms
        }
        for _ in 0..r.array()? {
            r.skip(4)?; // node_id
            r.string()?; // host
            r.skip(4)?; // port
            r.string()?; // rack
            r.tagged()?;
        }
        r.string()?; // cluster_id
        r.skip(4)?; // controller_id
        for _ in 0..r.array()? {
            r.skip(2)?; // error_code
            let name = r.string()?;
            let id: TopicId = r.take(16)?.try_into().ok()?;
            if !name.is_empty() && id != [0; 16] {
                found(name, id);
            }
            r.skip(1)?; // is_internal
            for _ in 0..r.array()? {
                r.skip(14)?; // error_code, partition_index, leader_id, leader_epoch
                for _ in 0..3 {
                    // replica_nodes, isr_nodes, offline_replicas
                    let n = r.array()? as usize;
                    r.skip(4 * n)?;
                }
                r.tagged()?;
            }
            r.skip(4)?; // topic_authorized_operations
            r.tagged()?;
        }
        Some(())
    })();
}

/// The error code of the first partition of a Produce or Fetch response body.
fn response_error(api: i16, version: i16, mut r: Reader<'_>) -> Option<i16> {
    if api == FETCH {
        if version >= 1 {
            r.skip(4)?; // throttle_time_ms
        }
        if version >= 7 {
            let top = r.i16()?;
            if top != 0 {
                return Some(top);
            }
            r.skip(4)?; // session_id
        }
    }
    if r.array()? == 0 {
        return Some(0);
    }
    if api == FETCH && version >= 13 {
        r.skip(16)?;
    } else {
        r.string()?;
    }
    if r.array()? == 0 {
        return Some(0);
    }
    r.skip(4)?; // partition index
    r.i16()
}

/// An error code as `error.type`: its number (`6` is NOT_LEADER_OR_FOLLOWER), as the
/// broker sent it; most names are longer than the field.
pub fn error_name(code: i16, out: &mut Word) {
    let _ = core::fmt::write(out, format_args!("{code}"));
}

#[derive(Debug, Clone)]
struct Waiting {
    correlation: i32,
    api: i16,
    version: i16,
    begun: Option<Begun>,
}

#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    requests: Framer,
    responses: Framer<RESPONSE_KEEP>,
    waiting: heapless::Deque<Waiting, IN_FLIGHT>,
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        KAFKA
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        let w = core::iter::from_fn(|| self.waiting.pop_front()).find(|w| w.begun.is_some())?;
        Some((w.begun?, Word::new()))
    }
}

/// Tracks Kafka exchanges and aggregates the client metric; spans go to the HTTP tracker's
/// queue.
pub struct KafkaTracker {
    t: Table<Conn>,
    /// Topic names by process and id, learnt from Metadata responses, for the requests
    /// that name topics by id.
    topics: FixedMap<(u32, TopicId), Path>,
}

/// Response bytes kept per message: enough for a Metadata response's first topics.
pub const RESPONSE_KEEP: usize = 1024;

impl KafkaTracker {
    /// `connections`: Kafka descriptors followed at once.
    pub fn new(connections: usize) -> Self {
        Self {
            t: Table::new(connections),
            topics: FixedMap::with_capacity(connections),
        }
    }

    /// Bytes the table takes.
    pub fn bytes(connections: usize) -> usize {
        Table::<Conn>::bytes(connections) + FixedMap::<(u32, TopicId), Path>::bytes_for(connections)
    }

    /// Descriptors followed now.
    pub fn connections(&self) -> usize {
        self.t.conns.len()
    }

    /// Handles what one read or write moved on a Kafka descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        if self.t.conns.get(&key).is_some_and(|c| c.ends.stale(r)) {
            self.t.end_all(key, r.ts_ns, spans, drops);
        }
        if self.t.conns.get(&key).is_none() {
            if !starts_request(r.data) {
                return;
            }
            // The end that sends requests is the client.
            let side = if r.ingress {
                Side::Server
            } else {
                Side::Client
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                requests: Framer::new(Framing::Kafka),
                responses: Framer::new(Framing::Kafka),
                waiting: heapless::Deque::new(),
                lost: false,
            };
            if self.t.conns.insert(key, conn).is_err() {
                drops.drop(DropReason::DbTableFull, 1);
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
        let client = conn.ends.side == Side::Client;
        let mut ended: heapless::Vec<(Begun, Word), IN_FLIGHT> = heapless::Vec::new();
        let (mut full, mut skipped) = (0u64, 0u64);
        let topics = &mut self.topics;
        let Conn {
            requests,
            responses,
            waiting,
            ..
        } = conn;
        let scanned = if client != r.ingress {
            // A request.
            let mut request = |m: Msg<'_>| {
                let Some((api, version, correlation, body)) = request_header(m.body) else {
                    return;
                };
                let begun = match api {
                    PRODUCE | FETCH if client => {
                        let (topic, id, partition) = target(api, version, body).unwrap_or_default();
                        let topic = match id {
                            Some(id) => topics.get(&(r.task.tgid, id)).cloned().unwrap_or_default(),
                            None => topic,
                        };
                        let op = if api == PRODUCE { "send" } else { "poll" };
                        let op = Word::try_from(op).unwrap_or_default();
                        let mut b = Begun::new(op, topic, r.ts_ns, true, r.task.tid, spans);
                        if let Some(p) = partition {
                            let _ = core::fmt::write(&mut b.namespace, format_args!("{p}"));
                        }
                        Some(b)
                    }
                    _ => None,
                };
                // acks=0: no response comes (acks is the first field after the
                // transactional id, which a client without transactions sends null).
                if api == PRODUCE && produce_acks(version, body) == Some(0) {
                    if let Some(b) = begun {
                        let _ = ended.push((b, Word::new()));
                    }
                    return;
                }
                let w = Waiting {
                    correlation,
                    api,
                    version,
                    begun,
                };
                if waiting.push_back(w).is_err() {
                    full += 1;
                }
            };
            requests
                .feed(r.data, &mut request)
                .and_then(|()| requests.gap(gap, &mut request))
        } else {
            let mut response = |m: Msg<'_>| {
                let Some(c) = m.body.get(..4) else {
                    return;
                };
                let correlation = i32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                // Responses come in order: requests before this one's lost theirs.
                let Some(at) = waiting.iter().position(|w| w.correlation == correlation) else {
                    return;
                };
                for _ in 0..at {
                    if waiting.pop_front().is_some_and(|w| w.begun.is_some()) {
                        skipped += 1;
                    }
                }
                let Some(w) = waiting.pop_front() else {
                    return;
                };
                // Response header v1 (flexible versions, ApiVersions aside) has tagged
                // fields after the correlation id.
                let mut body = Reader {
                    b: &m.body[4..],
                    compact: flexible(w.api, w.version) && w.api != API_VERSIONS,
                };
                if w.api == METADATA && w.version >= 10 && body.tagged().is_some() {
                    // Full: later requests by id of a topic not learnt have no topic.
                    let tgid = r.task.tgid;
                    metadata_topics(w.version, body, &mut |name, id| {
                        let _ = topics.insert((tgid, id), text(name));
                    });
                    return;
                }
                let Some(b) = w.begun else {
                    return;
                };
                let mut error = Word::new();
                if body.tagged().is_some()
                    && let Some(code) = response_error(w.api, w.version, body)
                    && code != 0
                {
                    error_name(code, &mut error);
                }
                let _ = ended.push((b, error));
            };
            responses
                .feed(r.data, &mut response)
                .and_then(|()| responses.gap(gap, &mut response))
        };
        let ends = conn.ends;
        if full > 0 {
            drops.drop(DropReason::DbPipelineFull, full);
        }
        if skipped > 0 {
            drops.drop(DropReason::ProtocolDesync, skipped);
        }
        if scanned.is_err() {
            let waiting = conn.waiting.iter().filter(|w| w.begun.is_some()).count();
            drops.drop(DropReason::ProtocolDesync, 1 + waiting as u64);
            conn.waiting.clear();
            conn.lost = true;
        }
        for (b, error) in ended {
            self.t
                .finish(KAFKA, &ends, b, r.ts_ns, error, None, spans, drops);
        }
    }

    /// A descriptor that carried data was closed: what waits ends broken.
    pub fn on_close(
        &mut self,
        r: &CloseRecord,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        self.t.close(r, spans, drops);
    }
}

/// The `acks` of a Produce request body.
fn produce_acks(version: i16, mut r: Reader<'_>) -> Option<i16> {
    if version >= 3 {
        r.string()?;
    }
    r.i16()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Recorded by `telegen --record` from kafka-python 3.0 (PyPI) talking to the tests'
    /// broker (io/tests/support/kafka_broker.py) on port 41745 with the classic encodings
    /// (Produce v8, Fetch v11) and on port 42321 with the flexible ones (Produce v9, Fetch
    /// v12): three sends, one the broker refuses, then a consumer reading the partition.
    const RECORDING: &[u8] = include_bytes!("testdata/messaging/kafka.rec");

    #[test]
    fn a_recorded_session_of_kafka_python() {
        let (spans, counters) = crate::pipeline::replay(RECORDING);
        assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
        for port in [41745, 42321] {
            let mine: Vec<_> = spans
                .iter()
                .filter(|s| s.protocol == KAFKA && s.remote_port == port)
                .collect();
            let sends: Vec<(&str, &str, &str)> = mine
                .iter()
                .filter(|s| s.method == "send")
                .map(|s| (s.path.as_str(), s.namespace.as_str(), s.db_error.as_str()))
                .collect();
            let ok = ("orders", "0", "");
            assert_eq!(sends, [ok, ok, ok, ("orders", "0", "87")], "port {port}");
            let polls: Vec<_> = mine.iter().filter(|s| s.method == "poll").collect();
            assert!(!polls.is_empty(), "port {port}");
            assert_eq!(
                (polls[0].path.as_str(), polls[0].namespace.as_str()),
                ("orders", "0")
            );
            assert!(
                polls
                    .iter()
                    .all(|s| s.db_error.is_empty() && s.side == Side::Client)
            );
            let mut name = heapless::String::<148>::new();
            polls[0].name(&mut name);
            assert_eq!(name, "poll orders");
        }
    }

    /// A request as the protocol guide lays it out: size, API key, version, correlation
    /// id, client id (a classic nullable string), then header v2's tagged fields when the
    /// version is flexible, then the body.
    fn request(api: i16, version: i16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&api.to_be_bytes());
        m.extend_from_slice(&version.to_be_bytes());
        m.extend_from_slice(&7i32.to_be_bytes());
        m.extend_from_slice(&[0, 3]);
        m.extend_from_slice(b"app");
        if flexible(api, version) {
            // One tagged field: tag 0, 2 bytes.
            m.extend_from_slice(&[1, 0, 2, 0xaa, 0xbb]);
        }
        m.extend_from_slice(body);
        let mut out = (m.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&m);
        out
    }

    #[test]
    fn request_and_response_layouts_of_the_protocol_guide() {
        // Produce v3: transactional_id (null), acks, timeout_ms, [topic [partition records]].
        let mut body = Vec::new();
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0x75, 0x30]);
        body.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
        body.extend_from_slice(b"events");
        body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]);
        let produce = request(PRODUCE, 3, &body);
        assert!(starts_request(&produce));
        let (api, version, corr, r) = request_header(&produce[4..]).unwrap();
        assert_eq!((api, version, corr), (PRODUCE, 3, 7));
        let (topic, _, partition) = target(api, version, r).unwrap();
        assert_eq!((topic.as_str(), partition), ("events", Some(2)));
        assert_eq!(produce_acks(version, r), Some(-1));
        // Fetch v12 (flexible): replica_id, max_wait, min_bytes, max_bytes, isolation,
        // session id and epoch, then compact arrays and strings.
        let mut body = Vec::new();
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&[0, 0, 1, 0xf4, 0, 0, 0, 1, 0, 0x32, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        body.extend_from_slice(&[2, 7]);
        body.extend_from_slice(b"events");
        body.extend_from_slice(&[2, 0, 0, 0, 5]);
        let fetch = request(FETCH, 12, &body);
        assert!(starts_request(&fetch));
        let (api, version, _, r) = request_header(&fetch[4..]).unwrap();
        assert_eq!(target(api, version, r).unwrap().0, "events");
        assert_eq!(target(api, version, r).unwrap().2, Some(5));
        // Produce v3 response: [topic [partition error_code …]]; Fetch v11: throttle,
        // error, session, [topic [partition error_code …]].
        let resp = [
            &[0, 0, 0, 1, 0, 6][..],
            b"events",
            &[0, 0, 0, 1, 0, 0, 0, 2, 0, 6],
        ]
        .concat();
        let r = Reader {
            b: &resp,
            compact: false,
        };
        assert_eq!(response_error(PRODUCE, 3, r), Some(6));
        let resp = [
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 6][..],
            b"events",
            &[0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        ]
        .concat();
        let r = Reader {
            b: &resp,
            compact: false,
        };
        assert_eq!(response_error(FETCH, 11, r), Some(1));
        let mut e = Word::new();
        error_name(6, &mut e);
        assert_eq!(e, "6");
        // Metadata v0 is left to PostgreSQL's startup, which it reads like.
        assert!(!starts_request(&request(METADATA, 0, &[])));
        assert!(starts_request(&request(API_VERSIONS, 3, &[])));
        assert!(!starts_request(b"\0\0\0\x10\0\x13\0\x01"));
        // nginx's first HTTP/2 write: a SETTINGS frame, no Produce v0.
        assert!(!starts_request(b"\0\0\x12\x04\0\0\0\0\0"));
        assert!(starts_request(&request(PRODUCE, 3, &[])));
        let _ = String::new();
    }

    #[test]
    fn topic_ids_are_named_from_metadata() {
        let id = [7u8; 16];
        // Metadata v12 response (flexible): throttle, [broker], cluster_id (null),
        // controller, [topic: error, name, id, internal, [partition], authorized ops].
        let mut m = Vec::new();
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&[2, 0, 0, 0, 0, 2, b'h', 0, 0, 0x23, 0x84, 0, 0]);
        m.extend_from_slice(&[0, 0, 0, 0, 0]);
        m.extend_from_slice(&[2, 0, 0, 7]);
        m.extend_from_slice(b"orders");
        m.extend_from_slice(&id);
        m.push(0);
        m.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0]);
        m.extend_from_slice(&[0x80, 0, 0, 0, 0]);
        let mut found = Vec::new();
        let r = Reader {
            b: &m,
            compact: true,
        };
        metadata_topics(12, r, &mut |name, id| found.push((name.to_vec(), id)));
        assert_eq!(found, [(b"orders".to_vec(), id)]);
        // Fetch v13 names the topic by that id.
        let mut body = Vec::new();
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&[0, 0, 1, 0xf4, 0, 0, 0, 1, 0, 0x32, 0, 0, 0]);
        body.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2]);
        body.extend_from_slice(&id);
        body.extend_from_slice(&[2, 0, 0, 0, 3]);
        let fetch = request(FETCH, 13, &body);
        let (api, version, _, r) = request_header(&fetch[4..]).unwrap();
        assert_eq!(
            target(api, version, r),
            Some((Path::new(), Some(id), Some(3)))
        );
    }
}
