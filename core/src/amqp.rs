//! AMQP 0-9-1 (RabbitMQ) exchanges from captured socket data: client spans and the client
//! operation-duration metric.
//!
//! The kernel tags a descriptor as AMQP when the protocol header (`AMQP\0\0\x09\x01`, the
//! first bytes a client sends) crosses it, and from then on hands over every read and write
//! on it. Each direction goes through a frame scanner ([`crate::frames`]) that keeps the
//! start of each method frame and passes over content headers and bodies, captured or not.
//!
//! Spans are made for the client's end (the end that sent the protocol header):
//! - `basic.publish` it sends: a `publish {exchange}` span (PRODUCER) that ends at once, or,
//!   on a channel in confirm mode, when the broker acknowledges it (`basic.ack`, failed by a
//!   `basic.nack`);
//! - `basic.deliver` it receives: a `receive {exchange}` span (CONSUMER) at its arrival;
//! - `basic.get` it sends: a `get {queue}` span (CLIENT) that ends with `basic.get-ok` or
//!   `basic.get-empty`.
//!
//! The destination is the exchange (`amq.default` for the default one) or, for a get, the
//! queue; the routing key goes with it. Payloads and headers are never kept.

use crate::frames::{Framer, Framing, Msg};
use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Table, Word, conn_key};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::Side;

pub use crate::mqtt::{CLIENT_DURATION, DURATION_BOUNDS};

const AMQP: Protocol = Protocol::Amqp;

/// The protocol header a client sends first.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// Operations a connection may wait for at once (gets, and publishes awaiting their
/// confirms).
pub const IN_FLIGHT: usize = 8;
/// Channels in confirm mode followed per connection.
pub const CHANNELS: usize = 4;

const METHOD: u8 = 1;
const BASIC: u16 = 60;
const PUBLISH: u16 = 40;
const DELIVER: u16 = 60;
const GET: u16 = 70;
const GET_OK: u16 = 71;
const GET_EMPTY: u16 = 72;
const ACK: u16 = 80;
const NACK: u16 = 120;
const CONFIRM: u16 = 85;
const SELECT: u16 = 10;

/// Whether a call's first bytes are AMQP 0-9-1's protocol header.
pub fn starts_connection(b: &[u8]) -> bool {
    b.starts_with(&PROTOCOL_HEADER)
}

/// What a waiting operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaits {
    /// The broker's confirm of this delivery tag.
    Confirm(u64),
    /// A get's answer.
    Get,
}

#[derive(Debug, Clone)]
struct Waiting {
    channel: u16,
    awaits: Awaits,
    begun: Begun,
}

/// A channel in confirm mode: the delivery tag its next publish gets.
#[derive(Debug, Clone, Copy)]
struct Confirming {
    channel: u16,
    next: u64,
}

#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    sent: Framer,
    received: Framer,
    waiting: heapless::Deque<Waiting, IN_FLIGHT>,
    confirming: heapless::Vec<Confirming, CHANNELS>,
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        AMQP
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        self.waiting.pop_front().map(|w| (w.begun, Word::new()))
    }
}

/// `messaging.operation.type` of an operation this tracker names.
pub fn operation_type(operation: &str) -> Option<&'static str> {
    match operation {
        "publish" => Some("send"),
        "receive" | "get" => Some("receive"),
        _ => None,
    }
}

/// Tracks AMQP exchanges and aggregates the client metric; spans go to the HTTP tracker's
/// queue.
pub struct AmqpTracker {
    t: Table<Conn>,
}

/// A short string (a length byte, then the bytes) and what follows it.
fn shortstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = b.split_first()?;
    let n = usize::from(n);
    // A string cut by the capture keeps what was captured.
    Some((rest.get(..n).unwrap_or(rest), rest.get(n..).unwrap_or(&[])))
}

fn text<const N: usize>(b: &[u8]) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for &c in b {
        let c = if c.is_ascii_graphic() || c == b' ' {
            c as char
        } else {
            '?'
        };
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let v = b.get(at..at + 8)?;
    Some(u64::from_be_bytes([
        v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
    ]))
}

/// A method frame's class and method ids and its arguments.
fn method<'a>(m: &Msg<'a>) -> Option<(u16, u16, &'a [u8])> {
    if m.tag != METHOD {
        return None;
    }
    let b = m.body;
    let ids = b.get(..4)?;
    Some((
        u16::from_be_bytes([ids[0], ids[1]]),
        u16::from_be_bytes([ids[2], ids[3]]),
        &b[4..],
    ))
}

/// An exchange's name as a destination.
fn exchange(name: &[u8]) -> Path {
    if name.is_empty() {
        text("amq.default".as_bytes())
    } else {
        text(name)
    }
}

crate::l7::table_tracker!(AmqpTracker, "AMQP");

impl AmqpTracker {
    /// Handles what one read or write moved on an AMQP descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        let starts = starts_connection(r.data);
        if starts {
            self.t.end_all(key, r.ts_ns, spans, drops);
            let side = if r.ingress {
                Side::Server
            } else {
                Side::Client
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                sent: Framer::new(Framing::AmqpHeader),
                received: Framer::new(Framing::Amqp),
                waiting: heapless::Deque::new(),
                confirming: heapless::Vec::new(),
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
        let client = conn.ends.side == Side::Client;
        // Operations that ended in this call: (begun, error).
        let mut ended: heapless::Vec<(Begun, Word), IN_FLIGHT> = heapless::Vec::new();
        let Conn {
            ends,
            sent,
            received,
            waiting,
            confirming,
            ..
        } = conn;
        let mut full = 0u64;
        let begin = |name: &str, target: Path, key: &[u8], spans: &mut HttpTracker| {
            let op = text(name.as_bytes());
            let mut b = Begun::new(op, target, r.ts_ns, true, r.task.tid, spans);
            b.namespace = text(key);
            b
        };
        let scanned = if r.ingress {
            // From the broker (to a client), or to the broker.
            let mut frame = |m: Msg<'_>| {
                let Some((class, id, args)) = method(&m) else {
                    return;
                };
                if !client || class != BASIC {
                    return;
                }
                match id {
                    DELIVER => {
                        // consumer-tag, delivery-tag, redelivered, exchange, routing-key.
                        let Some((_, rest)) = shortstr(args) else {
                            return;
                        };
                        let Some((ex, rest)) = rest.get(9..).and_then(shortstr) else {
                            return;
                        };
                        let routing = shortstr(rest).map_or(&[][..], |s| s.0);
                        let b = begin("receive", exchange(ex), routing, spans);
                        let _ = ended.push((b, Word::new()));
                    }
                    GET_OK | GET_EMPTY => {
                        let at = waiting
                            .iter()
                            .position(|w| w.channel == m.channel && w.awaits == Awaits::Get);
                        if let Some(w) = at.and_then(|i| remove_at(waiting, i)) {
                            let _ = ended.push((w.begun, Word::new()));
                        }
                    }
                    ACK | NACK => {
                        // delivery-tag, then the multiple bit.
                        let Some(tag) = u64_at(args, 0) else {
                            return;
                        };
                        let multiple = args.get(8).is_some_and(|f| f & 1 != 0);
                        let mut error = Word::new();
                        if id == NACK {
                            let _ = error.push_str("nack");
                        }
                        while let Some(i) = waiting.iter().position(|w| {
                            w.channel == m.channel
                                && match w.awaits {
                                    Awaits::Confirm(t) => t == tag || (multiple && t <= tag),
                                    Awaits::Get => false,
                                }
                        }) {
                            if let Some(w) = remove_at(waiting, i) {
                                let _ = ended.push((w.begun, error.clone()));
                            }
                        }
                    }
                    _ => {}
                }
            };
            let s = if client { &mut *received } else { &mut *sent };
            s.feed(r.data, &mut frame)
                .and_then(|()| s.gap(gap, &mut frame))
        } else {
            let mut frame = |m: Msg<'_>| {
                let Some((class, id, args)) = method(&m) else {
                    return;
                };
                if !client {
                    return;
                }
                match (class, id) {
                    (CONFIRM, SELECT) if !confirming.iter().any(|c| c.channel == m.channel) => {
                        let c = Confirming {
                            channel: m.channel,
                            next: 1,
                        };
                        // Beyond CHANNELS, publishes on the channel end at once.
                        let _ = confirming.push(c);
                    }
                    (BASIC, PUBLISH) => {
                        // reserved (2), exchange, routing-key, flags.
                        let Some((ex, rest)) = args.get(2..).and_then(shortstr) else {
                            return;
                        };
                        let routing = shortstr(rest).map_or(&[][..], |s| s.0);
                        let b = begin("publish", exchange(ex), routing, spans);
                        let confirm = confirming.iter_mut().find(|c| c.channel == m.channel);
                        match confirm {
                            Some(c) => {
                                let w = Waiting {
                                    channel: m.channel,
                                    awaits: Awaits::Confirm(c.next),
                                    begun: b,
                                };
                                c.next += 1;
                                if waiting.push_back(w).is_err() {
                                    full += 1;
                                }
                            }
                            None => {
                                let _ = ended.push((b, Word::new()));
                            }
                        }
                    }
                    (BASIC, GET) => {
                        // reserved (2), queue, no-ack.
                        let Some((queue, _)) = args.get(2..).and_then(shortstr) else {
                            return;
                        };
                        let b = begin("get", text(queue), &[], spans);
                        let w = Waiting {
                            channel: m.channel,
                            awaits: Awaits::Get,
                            begun: b,
                        };
                        if waiting.push_back(w).is_err() {
                            full += 1;
                        }
                    }
                    _ => {}
                }
            };
            let s = if client { &mut *sent } else { &mut *received };
            s.feed(r.data, &mut frame)
                .and_then(|()| s.gap(gap, &mut frame))
        };
        let ends = *ends;
        if full > 0 {
            drops.drop(DropReason::DbPipelineFull, full);
        }
        if scanned.is_err() {
            drops.drop(DropReason::ProtocolDesync, 1 + conn.waiting.len() as u64);
            conn.waiting.clear();
            conn.lost = true;
        }
        for (b, error) in ended {
            self.t
                .finish(AMQP, &ends, b, r.ts_ns, error, None, spans, drops);
        }
    }
}

/// Removes the `i`th waiting operation, keeping the others' order.
fn remove_at(waiting: &mut heapless::Deque<Waiting, IN_FLIGHT>, i: usize) -> Option<Waiting> {
    let mut out = None;
    for j in 0..waiting.len() {
        let w = waiting.pop_front()?;
        if j == i {
            out = Some(w);
        } else {
            let _ = waiting.push_back(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Recorded by `telegen --record` from RabbitMQ 3.10 (Debian 12) and pika 1.3 (PyPI):
    /// three publishes, a publish on a channel in confirm mode, a get, three deliveries
    /// acknowledged by the consumer, and a get that found nothing.
    const RECORDING: &[u8] = include_bytes!("testdata/messaging/amqp.rec");

    #[test]
    fn a_recorded_session_of_pika_and_rabbitmq() {
        let (spans, counters) = crate::pipeline::replay(RECORDING);
        assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
        let mut seen: Vec<(&str, &str, &str)> = spans
            .iter()
            .filter(|s| s.protocol == AMQP)
            .map(|s| (s.method.as_str(), s.path.as_str(), s.namespace.as_str()))
            .collect();
        seen.sort();
        let (p, r) = (
            ("publish", "amq.default", "orders"),
            ("receive", "amq.default", "orders"),
        );
        let g = ("get", "orders", "");
        assert_eq!(seen, [g, g, p, p, p, p, r, r, r]);
        // The confirmed publish waited for the broker's ack; the others ended at once.
        let waited = spans
            .iter()
            .filter(|s| s.protocol == AMQP && s.method == "publish" && s.end_ns > s.start_ns)
            .count();
        assert_eq!(waited, 1);
        assert!(
            spans
                .iter()
                .all(|s| s.protocol != AMQP || s.side == Side::Client)
        );
    }

    #[test]
    fn method_frames_are_read_and_others_passed_over() {
        assert!(starts_connection(b"AMQP\x00\x00\x09\x01"));
        assert!(!starts_connection(b"AMQP\x01\x01\x00\x0a"));
        // basic.publish on channel 1: reserved, exchange "ex", routing key "rk", flags.
        let mut f: Framer = Framer::new(Framing::Amqp);
        let mut got = Vec::new();
        let frame = b"\x01\x00\x01\x00\x00\x00\x0d\x00\x3c\x00\x28\x00\x00\x02ex\x02rk\x00\xce";
        f.feed(frame, &mut |m: Msg<'_>| {
            let (class, id, args) = method(&m).unwrap();
            let (ex, rest) = shortstr(&args[2..]).unwrap();
            let (rk, _) = shortstr(rest).unwrap();
            got.push((m.channel, class, id, ex.to_vec(), rk.to_vec()));
        })
        .unwrap();
        assert_eq!(got, [(1, BASIC, PUBLISH, b"ex".to_vec(), b"rk".to_vec())]);
        // A body frame of 100 kB the capture cut: passed over, the next frame read.
        let mut f: Framer = Framer::new(Framing::Amqp);
        let mut kinds = Vec::new();
        let mut done = |m: Msg<'_>| kinds.push(m.tag);
        f.feed(b"\x03\x00\x01\x00\x01\x86\xa0abc", &mut done)
            .unwrap();
        f.gap(100_000 - 3 + 1, &mut done).unwrap();
        f.feed(b"\x08\x00\x00\x00\x00\x00\x00\xce", &mut done)
            .unwrap();
        assert_eq!(kinds, [3, 8]);
        assert_eq!(exchange(b""), "amq.default");
    }
}
