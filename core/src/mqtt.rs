//! MQTT 3.1.1 and 5.0 exchanges from captured socket data: spans and the client
//! operation-duration metric.
//!
//! The kernel tags a descriptor as MQTT when a CONNECT packet crosses it (`\x10`, a length,
//! `\0\x04MQTT`) or when one of its ports is an MQTT port (1883, 8883: brokers read a packet's
//! first byte alone, too little to recognise), and from then on hands over every read and
//! write on it. Each direction goes through a packet scanner that resumes across calls (a
//! broker reads one byte at a time), keeps the first bytes of each packet's body (topic and
//! packet id) and passes over the rest, captured or not.
//!
//! The same rules hold for clients and brokers, since both publish and receive:
//! - a PUBLISH a process sends is a `publish` span (PRODUCER) that ends when it is
//!   acknowledged (PUBACK for QoS 1, PUBCOMP for QoS 2), or at once for QoS 0;
//! - a PUBLISH a process receives is a `receive` span (CONSUMER) that ends when the process
//!   acknowledges it, or at once for QoS 0;
//! - a SUBSCRIBE a process sends is a `subscribe` span (CLIENT) that ends with its SUBACK,
//!   failed when the broker refuses a filter (a reason code of 0x80 or more).
//!
//! Payloads are never kept: only the topic leaves this module.

use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Table, Word, conn_key};
use crate::metrics::{Histogram, Kind, MetricDesc};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::Side;

const MQTT: Protocol = Protocol::Mqtt;

pub static CLIENT_DURATION: MetricDesc = MetricDesc {
    name: "messaging.client.operation.duration",
    description: "Duration of messaging operation initiated by a producer or consumer client.",
    unit: "s",
    kind: Kind::Histogram,
};

/// The bucket bounds the messaging semantic conventions advise, in seconds.
pub static DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The ports MQTT brokers listen on (plain and TLS), as the kernel programs know them.
pub const PORTS: [u16; 2] = [1883, 8883];
/// Acknowledgements a connection may wait for at once.
pub const IN_FLIGHT: usize = 8;
/// Body bytes kept per packet: a topic of up to [`TOPIC_CAP`] bytes and what follows it.
const BODY_KEEP: usize = 2 + TOPIC_CAP + 8;
/// Longest topic kept (longer ones are cut).
pub const TOPIC_CAP: usize = 128;

const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;

/// The framing could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desync;

/// Follows MQTT packets through a byte stream fed in pieces.
#[derive(Debug, Clone, Default)]
struct Scanner {
    /// The fixed header read so far: the type byte and the remaining-length bytes.
    head: heapless::Vec<u8, 5>,
    /// In a packet's body, with this many bytes still to come.
    in_body: bool,
    remaining: u32,
    /// The first bytes of the body.
    body: heapless::Vec<u8, BODY_KEEP>,
}

impl Scanner {
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Scans `bytes`; `done` gets each packet that ends in them: its first byte and the
    /// first bytes of its body.
    fn feed(&mut self, mut bytes: &[u8], done: &mut impl FnMut(u8, &[u8])) -> Result<(), Desync> {
        while let Some((&b, rest)) = bytes.split_first() {
            if self.in_body {
                let n = (self.remaining as usize).min(bytes.len());
                let room = BODY_KEEP - self.body.len();
                let _ = self.body.extend_from_slice(&bytes[..n.min(room)]);
                self.remaining -= n as u32;
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    self.ended(done);
                }
                continue;
            }
            bytes = rest;
            if self.head.is_empty() && b >> 4 == 0 {
                // Type 0 is reserved: not MQTT.
                return Err(Desync);
            }
            self.head.push(b).map_err(|_| Desync)?;
            if self.head.len() == 1 {
                continue;
            }
            if b & 0x80 != 0 {
                if self.head.len() == 5 {
                    return Err(Desync);
                }
                continue;
            }
            self.remaining = self.head[1..]
                .iter()
                .rev()
                .fold(0u32, |n, &d| n << 7 | u32::from(d & 0x7f));
            self.in_body = true;
            if self.remaining == 0 {
                self.ended(done);
            }
        }
        Ok(())
    }

    /// `n` bytes the capture did not hand over: fine inside a body, lost otherwise.
    fn gap(&mut self, n: u64, done: &mut impl FnMut(u8, &[u8])) -> Result<(), Desync> {
        if n == 0 {
            return Ok(());
        }
        if !self.in_body || u64::from(self.remaining) < n {
            return Err(Desync);
        }
        self.remaining -= n as u32;
        if self.remaining == 0 {
            self.ended(done);
        }
        Ok(())
    }

    fn ended(&mut self, done: &mut impl FnMut(u8, &[u8])) {
        done(self.head[0], &self.body);
        self.head.clear();
        self.body.clear();
        self.in_body = false;
    }
}

/// Whether a call's first bytes are an MQTT CONNECT, as the kernel decides it.
pub fn starts_connect(b: &[u8]) -> bool {
    match b {
        [0x10, l, 0, 4, b'M', b'Q', b'T', b'T', ..] => l & 0x80 == 0,
        [0x10, l, m, 0, 4, b'M', b'Q', b'T', ..] => l & 0x80 != 0 && m & 0x80 == 0,
        _ => false,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skips an MQTT 5 property block at `at`: the offset after it.
fn after_properties(b: &[u8], mut at: usize) -> Option<usize> {
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let d = *b.get(at)?;
        at += 1;
        len |= usize::from(d & 0x7f) << shift;
        if d & 0x80 == 0 {
            return Some(at + len);
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
}

/// `messaging.operation.type` of an operation name; none for `subscribe`.
pub fn operation_type(operation: &str) -> Option<&'static str> {
    match operation {
        "publish" => Some("send"),
        "receive" => Some("receive"),
        _ => None,
    }
}

/// An operation waiting for its acknowledgement.
#[derive(Debug, Clone)]
struct Waiting {
    /// The packet type that ends it (PUBACK, PUBCOMP, SUBACK) and the packet id.
    ends_with: u8,
    id: u16,
    /// Sent by this process (it waits for the ack) or received (it sends the ack).
    sent: bool,
    begun: Begun,
}

#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    /// 5 for MQTT 5, else 4 (3.1.1), from the CONNECT when it was seen.
    version: u8,
    sent: Scanner,
    received: Scanner,
    waiting: heapless::Vec<Waiting, IN_FLIGHT>,
    /// The framing was lost: nothing is followed until a call starts with a CONNECT.
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        MQTT
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        // Oldest first.
        (!self.waiting.is_empty()).then(|| (self.waiting.remove(0).begun, Word::new()))
    }
}

/// Tracks MQTT exchanges and aggregates the client metric; the spans go to the HTTP
/// tracker's queue.
pub struct MqttTracker {
    t: Table<Conn>,
}

pub(crate) fn histogram() -> Histogram {
    Histogram::new(&DURATION_BOUNDS)
}

/// A finished span's parts, before the span is built.
struct Done {
    w: Waiting,
    error: Word,
}

crate::l7::table_tracker!(MqttTracker, "MQTT");

impl MqttTracker {
    /// Handles what one read or write moved on an MQTT descriptor; finished spans go to
    /// the queue of `spans`.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        let connect = starts_connect(r.data);
        if self.t.conns.get(&key).is_some_and(|c| c.ends.stale(r)) {
            self.t.end_all(key, r.ts_ns, spans, drops);
        }
        if self.t.conns.get(&key).is_none() {
            // The broker is the end that reads the CONNECT, or the end on an MQTT port.
            let side = if connect {
                if r.ingress {
                    Side::Server
                } else {
                    Side::Client
                }
            } else if PORTS.contains(&r.local_port) {
                Side::Server
            } else {
                Side::Client
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                version: 4,
                sent: Scanner::default(),
                received: Scanner::default(),
                waiting: heapless::Vec::new(),
                // Joined mid-stream: follow from the first call that starts a packet...
                // which cannot be told apart; a stream joined late is followed as if it
                // started here, and a desync is counted if it did not.
                lost: false,
            };
            if !self.t.open(key, conn, drops) {
                return;
            }
        }
        let Some(conn) = self.t.conns.get_mut(&key) else {
            return;
        };
        if conn.lost {
            if !connect {
                return;
            }
            conn.lost = false;
            conn.sent.reset();
            conn.received.reset();
        }
        let ends = conn.ends;
        let gap = u64::from(r.len).saturating_sub(r.data.len() as u64);
        let sent = !r.ingress;
        let mut finished: heapless::Vec<Done, IN_FLIGHT> = heapless::Vec::new();
        let Conn {
            version,
            sent: out,
            received: inn,
            waiting,
            ..
        } = conn;
        let scanner = if sent { out } else { inn };
        let mut packet = |first: u8, body: &[u8]| {
            on_packet(
                first,
                body,
                sent,
                r,
                version,
                waiting,
                spans,
                drops,
                &mut finished,
            )
        };
        let scanned = scanner
            .feed(r.data, &mut packet)
            .and_then(|()| scanner.gap(gap, &mut packet));
        if scanned.is_err() {
            drops.drop(DropReason::ProtocolDesync, 1 + conn.waiting.len() as u64);
            conn.waiting.clear();
            conn.sent.reset();
            conn.received.reset();
            conn.lost = true;
        }
        for d in finished {
            let (b, e) = (d.w.begun, d.error);
            self.t
                .finish(MQTT, &ends, b, r.ts_ns, e, None, spans, drops);
        }
    }
}

/// One packet that went `sent` (by this process) or was received.
#[allow(clippy::too_many_arguments)]
fn on_packet(
    first: u8,
    body: &[u8],
    sent: bool,
    r: &DataRecord<'_>,
    version: &mut u8,
    waiting: &mut heapless::Vec<Waiting, IN_FLIGHT>,
    spans: &mut HttpTracker,
    drops: &mut AgentCounters,
    finished: &mut heapless::Vec<Done, IN_FLIGHT>,
) {
    let new_wait =
        |operation: &str, ends_with: u8, id: u16, topic: Path, spans: &mut HttpTracker| {
            let mut op = Word::new();
            let _ = op.push_str(operation);
            Waiting {
                ends_with,
                id,
                sent,
                begun: Begun::new(op, topic, r.ts_ns, sent, r.task.tid, spans),
            }
        };
    match first >> 4 {
        CONNECT => {
            // "\0\x04MQTT", then the protocol level.
            if let Some(&level) = body.get(6) {
                *version = level;
            }
        }
        PUBLISH => {
            let qos = (first >> 1) & 3;
            let Some(len) = u16_at(body, 0) else {
                return;
            };
            let len = usize::from(len);
            let mut topic = Path::new();
            let end = (2 + len).min(body.len());
            if let Ok(t) = core::str::from_utf8(&body[2.min(end)..end]) {
                for c in t.chars() {
                    if topic.push(c).is_err() {
                        break;
                    }
                }
            }
            let operation = if sent { "publish" } else { "receive" };
            let id = u16_at(body, 2 + len);
            let ends_with = match qos {
                1 => PUBACK,
                2 => PUBCOMP,
                _ => 0,
            };
            let w = new_wait(operation, ends_with, id.unwrap_or(0), topic, spans);
            if ends_with == 0 || id.is_none() {
                // QoS 0 (or an id the capture cut off): nothing to wait for.
                let _ = finished.push(Done {
                    w,
                    error: heapless::String::new(),
                });
            } else if waiting.push(w).is_err() {
                drops.drop(DropReason::DbPipelineFull, 1);
            }
        }
        SUBSCRIBE if sent => {
            let Some(id) = u16_at(body, 0) else {
                return;
            };
            // The first topic filter, after the MQTT 5 properties.
            let at = if *version >= 5 {
                after_properties(body, 2)
            } else {
                Some(2)
            };
            let mut topic = Path::new();
            if let Some(at) = at
                && let Some(len) = u16_at(body, at)
            {
                let end = (at + 2 + usize::from(len)).min(body.len());
                if let Ok(t) = core::str::from_utf8(body.get(at + 2..end).unwrap_or(&[])) {
                    for c in t.chars() {
                        if topic.push(c).is_err() {
                            break;
                        }
                    }
                }
            }
            let w = new_wait("subscribe", SUBACK, id, topic, spans);
            if waiting.push(w).is_err() {
                drops.drop(DropReason::DbPipelineFull, 1);
            }
        }
        kind @ (PUBACK | PUBCOMP | SUBACK) => {
            let Some(id) = u16_at(body, 0) else {
                return;
            };
            // The ack goes the other way from what it acknowledges.
            let Some(i) = waiting
                .iter()
                .position(|w| w.ends_with == kind && w.id == id && w.sent != sent)
            else {
                return;
            };
            let w = waiting.swap_remove(i);
            // Reason codes: MQTT 5 PUBACK/PUBCOMP after the id; SUBACK return codes after
            // the id (and, in MQTT 5, the properties).
            let code = match kind {
                SUBACK if *version >= 5 => after_properties(body, 2).and_then(|at| body.get(at)),
                SUBACK => body.get(2),
                _ => body.get(2),
            };
            let mut error = heapless::String::new();
            if let Some(&c) = code
                && c >= 0x80
            {
                let _ = core::fmt::write(&mut error, format_args!("0x{c:02x}"));
            }
            let _ = finished.push(Done { w, error });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Span;
    use crate::http::{HttpLimits, RootSampling, Sampling};
    use crate::record::IpAddr;
    use crate::record::Task;
    use alloc::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Recorded between mosquitto_pub/mosquitto_sub 2.0.11 and mosquitto 2.0.11 (Debian 12).
    const CONNECT_311: &str = "100c00044d5154540402003c0000";
    const CONNECT_5: &str = "101000044d5154540502003c032100140000";
    const PUBLISH_QOS1: &str = "321a000f73656e736f72732f34322f74656d70000168656c6c6f2d31";
    const PUBLISH_QOS2: &str = "341a000f73656e736f72732f34322f74656d70000168656c6c6f2d32";
    const PUBLISH_QOS0: &str = "3018000f73656e736f72732f34322f74656d7068656c6c6f2d30";
    const SUBSCRIBE_311: &str = "820e0001000973656e736f72732f2302";
    const SUBACK_311: &str = "9003000102";
    const PUBLISH_5: &str = "3216000d73656e736f72732f372f68756d00010076352d30";
    const SUBSCRIBE_5: &str = "820f000100000973656e736f72732f2301";
    const SUBACK_5: &str = "900400010001";

    fn trackers() -> (MqttTracker, HttpTracker, AgentCounters) {
        let limits = HttpLimits {
            connections: 4,
            exchanges: 4,
            spans: 64,
            series_per_metric: 16,
        };
        let sampling = Sampling {
            parent_based: true,
            root: RootSampling::AlwaysOn,
        };
        (
            MqttTracker::new(4),
            HttpTracker::new(limits, 1, sampling),
            AgentCounters::default(),
        )
    }

    fn rec(
        ts: u64,
        fd: u32,
        ingress: bool,
        local_port: u16,
        data: &[u8],
        len: u32,
    ) -> DataRecord<'_> {
        DataRecord {
            ts_ns: ts,
            task: Task {
                tgid: 10,
                tid: 10,
                comm: [0; 16],
            },
            fd,
            ingress,
            len,
            sock: 1,
            local: IpAddr::default(),
            remote: IpAddr::default(),
            local_port,
            remote_port: if local_port == 1883 { 40000 } else { 1883 },
            tls: false,
            protocol: Protocol::Mqtt,
            data,
        }
    }

    /// Feeds `(ingress, hex)` steps as whole calls on a client's descriptor.
    fn client(steps: &[(bool, &str)]) -> (Vec<Span>, AgentCounters) {
        let (mut t, mut h, mut c) = trackers();
        for (i, (ingress, h_)) in steps.iter().enumerate() {
            let b = hex(h_);
            t.on_data(
                &rec(i as u64 * 1000, 3, *ingress, 40000, &b, b.len() as u32),
                &mut h,
                &mut c,
            );
        }
        (h.spans().drain(..).collect(), c)
    }

    fn summary(spans: &[Span]) -> Vec<(&str, &str, u64, &str)> {
        spans
            .iter()
            .map(|s| {
                (
                    s.method.as_str(),
                    s.path.as_str(),
                    s.end_ns - s.start_ns,
                    s.db_error.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn publishes_end_with_their_acknowledgement() {
        assert!(starts_connect(&hex(CONNECT_311)));
        assert!(starts_connect(&hex(CONNECT_5)));
        assert!(!starts_connect(&hex(PUBLISH_QOS1)));
        let (spans, c) = client(&[
            (false, CONNECT_311),
            (true, "20020000"),
            (false, PUBLISH_QOS0),
            (false, PUBLISH_QOS1),
            (true, "40020001"),
            (false, PUBLISH_QOS2),
            (true, "50020001"),
            (false, "62020001"),
            (true, "70020001"),
            (false, "e000"),
        ]);
        let t = "sensors/42/temp";
        assert_eq!(
            summary(&spans),
            [
                ("publish", t, 0, ""),
                ("publish", t, 1000, ""),
                ("publish", t, 3000, "")
            ]
        );
        let mut name = heapless::String::new();
        spans[0].name(&mut name);
        assert_eq!(name, "publish sensors/{id}/temp");
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
    }

    #[test]
    fn a_subscriber_receives_and_acknowledges() {
        let (spans, _) = client(&[
            (false, CONNECT_311),
            (true, "20020000"),
            (false, SUBSCRIBE_311),
            (true, SUBACK_311),
            (true, PUBLISH_QOS0),
            (
                true,
                "321a000f73656e736f72732f34322f74656d70000168656c6c6f2d31",
            ),
            (false, "40020001"),
            (
                true,
                "341a000f73656e736f72732f34322f74656d70000268656c6c6f2d32",
            ),
            (false, "50020002"),
            (true, "62020002"),
            (false, "70020002e000"),
        ]);
        let t = "sensors/42/temp";
        assert_eq!(
            summary(&spans),
            [
                ("subscribe", "sensors/#", 1000, ""),
                ("receive", t, 0, ""),
                ("receive", t, 1000, ""),
                ("receive", t, 3000, "")
            ]
        );
        // MQTT 5: properties before the filter and before the reason codes.
        let (spans, _) = client(&[
            (false, CONNECT_5),
            (false, SUBSCRIBE_5),
            (true, SUBACK_5),
            (true, PUBLISH_5),
            (false, "40020001"),
        ]);
        assert_eq!(
            summary(&spans),
            [
                ("subscribe", "sensors/#", 1000, ""),
                ("receive", "sensors/7/hum", 1000, "")
            ]
        );
        // A refused subscription.
        let (spans, _) = client(&[
            (false, CONNECT_311),
            (false, SUBSCRIBE_311),
            (true, "9003000180"),
        ]);
        assert_eq!(summary(&spans), [("subscribe", "sensors/#", 1000, "0x80")]);
    }

    #[test]
    fn a_broker_reading_one_byte_at_a_time() {
        let (mut t, mut h, mut c) = trackers();
        let stream = [CONNECT_311, PUBLISH_QOS1, "e000"].concat();
        let stream = hex(&stream);
        for (i, b) in stream.chunks(1).enumerate() {
            t.on_data(&rec(i as u64, 5, true, 1883, b, 1), &mut h, &mut c);
        }
        let ack = hex("40020001");
        t.on_data(&rec(999, 5, false, 1883, &ack, 4), &mut h, &mut c);
        let spans: Vec<Span> = h.spans().drain(..).collect();
        assert_eq!(
            summary(&spans),
            [("receive", "sensors/42/temp", 999 - 41, "")]
        );
        assert_eq!(spans[0].side, Side::Server);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
    }

    #[test]
    fn payloads_the_capture_cut_are_passed_over_and_lost_headers_counted() {
        let (mut t, mut h, mut c) = trackers();
        let connect = hex(CONNECT_311);
        t.on_data(
            &rec(0, 3, false, 40000, &connect, connect.len() as u32),
            &mut h,
            &mut c,
        );
        // A QoS 0 publish of 10,000 bytes of which 512 were captured.
        let mut p = hex("30924e000f73656e736f72732f34322f74656d70");
        p.resize(512, b'x');
        t.on_data(&rec(1, 3, false, 40000, &p, 10_005), &mut h, &mut c);
        assert_eq!(h.spans().len(), 1);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
        // A header the capture cut off: the stream is lost until the next CONNECT.
        t.on_data(&rec(2, 3, false, 40000, &hex("32"), 5), &mut h, &mut c);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 1);
        let q1 = hex(PUBLISH_QOS1);
        t.on_data(
            &rec(3, 3, false, 40000, &q1, q1.len() as u32),
            &mut h,
            &mut c,
        );
        assert_eq!(h.spans().len(), 1, "nothing followed while lost");
        t.on_data(
            &rec(4, 3, false, 40000, &connect, connect.len() as u32),
            &mut h,
            &mut c,
        );
        let q0 = hex(PUBLISH_QOS0);
        t.on_data(
            &rec(5, 3, false, 40000, &q0, q0.len() as u32),
            &mut h,
            &mut c,
        );
        assert_eq!(h.spans().len(), 2);
        // Type 0 is not MQTT.
        t.on_data(&rec(6, 3, false, 40000, &[0, 0], 2), &mut h, &mut c);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 2);
    }
}
