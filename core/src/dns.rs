//! DNS lookups from captured socket data: the `dns.lookup.duration` metric and, when wanted,
//! a client span per lookup.
//!
//! The kernel hands over what a process sends to and receives from port 53 over UDP (its
//! connected sockets, as resolvers use them) and TCP. Queries and answers pair by the
//! descriptor and the message id; over TCP a call may start with the two-byte length of the
//! message (writes; reads of a whole message), or hold it alone (a resolver reading the
//! length first); only the first message of a record is read (the kernel makes a record of
//! each of the two first length/message pairs of a `writev`). A query with no answer ends as `timeout` when
//! its descriptor closes or when [`TIMEOUT_NS`] passes (seen at the next DNS record), and
//! an answer with a response code other than NOERROR ends with that code as `error.type`
//! (`NXDOMAIN`, `SERVFAIL`, `REFUSED`…).

use crate::fixed_map::FixedMap;
use crate::http::{HttpTracker, Path, Span, SpanContext};
use crate::l7::{Word, conn_key};
use crate::metrics::{Attr, Attributes, Attrs, Histogram, Kind, MetricDesc, MetricSink, Series};
use crate::record::{CloseRecord, DataRecord, IpAddr, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::{Process, Side};

pub static LOOKUP_DURATION: MetricDesc = MetricDesc {
    name: "dns.lookup.duration",
    description: "Measures the time taken to perform a DNS lookup.",
    unit: "s",
    kind: Kind::Histogram,
};

/// The bucket bounds the DNS semantic conventions advise, in seconds.
pub static DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A query unanswered this long has timed out.
pub const TIMEOUT_NS: u64 = 10_000_000_000;

/// The attributes of `dns.lookup.duration`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupKey {
    pub name: Path,
    pub error: Word,
    pub process: Process,
}

impl Attributes for LookupKey {
    fn attributes(&self, out: &mut Attrs) {
        let _ = out.push(Attr::str("dns.question.name", &self.name));
        if !self.error.is_empty() {
            let _ = out.push(Attr::str("error.type", &self.error));
        }
        self.process.attributes(out);
    }
}

/// Whether `data` (of a call that moved `len` bytes) starts with TCP's two-byte length: one
/// that fits the call, ahead of something that is not itself a message with one question
/// (a UDP message's bytes 4 and 5 are its question count, 1; in a TCP one they are the
/// message's flags).
fn tcp_prefixed(data: &[u8], len: u32) -> bool {
    match data {
        [h, l, _, _, q0, q1, ..] => {
            let n = u32::from(u16::from_be_bytes([*h, *l]));
            n >= 12 && n + 2 <= len && [*q0, *q1] != [0, 1]
        }
        _ => false,
    }
}

/// A query's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// The name, dotted, lower-cased, without the root's dot.
    pub name: Path,
    pub qtype: u16,
}

/// A message's header fields that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub questions: u16,
}

/// The header of a DNS message, if `b` holds one.
pub fn header(b: &[u8]) -> Option<Header> {
    let h = b.get(..12)?;
    Some(Header {
        id: u16::from_be_bytes([h[0], h[1]]),
        response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0xf,
        rcode: h[3] & 0xf,
        questions: u16::from_be_bytes([h[4], h[5]]),
    })
}

/// The first question of a query (standard opcode, one question at least); `None` for
/// anything else, or a name that runs past the bytes captured.
pub fn question(b: &[u8]) -> Option<Question> {
    let h = header(b)?;
    if h.response || h.opcode != 0 || h.questions == 0 {
        return None;
    }
    let mut name = Path::new();
    let mut at = 12;
    loop {
        let len = usize::from(*b.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended labels have no place in a query's question.
        if len > 63 {
            return None;
        }
        let label = b.get(at..at + len)?;
        at += len;
        if !name.is_empty() {
            let _ = name.push('.');
        }
        for &c in label {
            let c = if c.is_ascii_graphic() {
                c.to_ascii_lowercase() as char
            } else {
                '?'
            };
            if name.push(c).is_err() {
                break;
            }
        }
    }
    let t = b.get(at..at + 2)?;
    Some(Question {
        id: h.id,
        name,
        qtype: u16::from_be_bytes([t[0], t[1]]),
    })
}

/// A record type's name (`A`, `AAAA`…), or its number.
pub fn type_name(qtype: u16, out: &mut Word) {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => {
            let _ = core::fmt::write(out, format_args!("TYPE{qtype}"));
            return;
        }
    };
    let _ = out.push_str(name);
}

/// A response code's name, empty for NOERROR.
pub fn rcode_name(rcode: u8, out: &mut Word) {
    let name = match rcode {
        0 => return,
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => {
            let _ = core::fmt::write(out, format_args!("RCODE{rcode}"));
            return;
        }
    };
    let _ = out.push_str(name);
}

/// A query waiting for its answer.
#[derive(Debug, Clone)]
struct Waiting {
    start_ns: u64,
    qtype: u16,
    name: Path,
    context: SpanContext,
    parent_span_id: [u8; 8],
    local: IpAddr,
    local_port: u16,
    remote: IpAddr,
    remote_port: u16,
    process: Process,
}

/// Tracks DNS lookups: the duration histogram, and spans when `spans` is set.
pub struct DnsTracker {
    waiting: FixedMap<(u64, u16), Waiting>,
    lookups: Series<LookupKey, Histogram>,
    spans: bool,
    /// The oldest start among the waiting queries (0: none).
    oldest_ns: u64,
}

fn histogram() -> Histogram {
    Histogram::new(&DURATION_BOUNDS)
}

impl DnsTracker {
    /// `queries`: queries waiting for answers at once, over all descriptors.
    pub fn new(queries: usize, series_per_metric: usize, spans: bool) -> Self {
        Self {
            waiting: FixedMap::with_capacity(queries),
            lookups: Series::new(&LOOKUP_DURATION, series_per_metric, histogram),
            spans,
            oldest_ns: 0,
        }
    }

    /// Bytes the tables take.
    pub fn bytes(queries: usize, series_per_metric: usize) -> usize {
        FixedMap::<(u64, u16), Waiting>::bytes_for(queries)
            + Series::<LookupKey, Histogram>::bytes_for(series_per_metric)
    }

    /// Queries waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Handles what one read or write moved on a DNS descriptor.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        self.expire(r.ts_ns, spans, drops);
        let key = conn_key(r.task.tgid, r.fd);
        let msg = if tcp_prefixed(r.data, r.len) {
            &r.data[2..]
        } else {
            r.data
        };
        let Some(h) = header(msg) else {
            return;
        };
        if !r.ingress {
            let Some(q) = question(msg) else {
                return;
            };
            let (context, parent_span_id) = if self.spans {
                spans.client_context(r.task.tid)
            } else {
                (SpanContext::default(), [0; 8])
            };
            let w = Waiting {
                start_ns: r.ts_ns,
                qtype: q.qtype,
                name: q.name,
                context,
                parent_span_id,
                local: r.local,
                local_port: r.local_port,
                remote: r.remote,
                remote_port: r.remote_port,
                process: Process {
                    pid: r.task.tgid,
                    comm: r.task.comm,
                },
            };
            if self.waiting.insert((key, q.id), w).is_err() {
                drops.drop(DropReason::DbTableFull, 1);
                return;
            }
            if self.oldest_ns == 0 {
                self.oldest_ns = r.ts_ns;
            }
            return;
        }
        if !h.response {
            return;
        }
        // An answer to no waiting query: one to a query sent before the agent started, or
        // a second answer (glibc may send a query to two servers).
        if let Some(w) = self.waiting.remove(&(key, h.id)) {
            let mut error = Word::new();
            rcode_name(h.rcode, &mut error);
            self.finish(w, r.ts_ns, error, spans, drops);
        }
    }

    /// A descriptor that carried DNS was closed: its queries timed out.
    pub fn on_close(
        &mut self,
        r: &CloseRecord,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        self.end_where(|k, _| k.0 == key, r.ts_ns, spans, drops);
    }

    /// Ends as `timeout` the queries older than [`TIMEOUT_NS`] at `now_ns`.
    pub fn expire(&mut self, now_ns: u64, spans: &mut HttpTracker, drops: &mut AgentCounters) {
        if self.oldest_ns == 0 || now_ns.saturating_sub(self.oldest_ns) < TIMEOUT_NS {
            return;
        }
        let old = |_: &(u64, u16), w: &Waiting| now_ns.saturating_sub(w.start_ns) >= TIMEOUT_NS;
        self.end_where(old, now_ns, spans, drops);
        self.oldest_ns = self
            .waiting
            .iter()
            .map(|(_, w)| w.start_ns)
            .min()
            .unwrap_or(0);
    }

    fn end_where(
        &mut self,
        which: impl Fn(&(u64, u16), &Waiting) -> bool,
        ts_ns: u64,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        loop {
            let found = self.waiting.iter().find(|(k, w)| which(k, w));
            let Some(k) = found.map(|(k, _)| *k) else {
                break;
            };
            if let Some(w) = self.waiting.remove(&k) {
                let end = ts_ns.min(w.start_ns.saturating_add(TIMEOUT_NS));
                let error = Word::try_from("timeout").unwrap_or_default();
                self.finish(w, end, error, spans, drops);
            }
        }
    }

    fn finish(
        &mut self,
        w: Waiting,
        end_ns: u64,
        error: Word,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let end_ns = end_ns.max(w.start_ns);
        let key = LookupKey {
            name: w.name.clone(),
            error: error.clone(),
            process: w.process,
        };
        let secs = (end_ns - w.start_ns) as f64 / 1e9;
        self.lookups.point(key).0.record(secs);
        if !self.spans {
            return;
        }
        let mut method = Word::new();
        type_name(w.qtype, &mut method);
        let span = Span {
            side: Side::Client,
            protocol: Protocol::Dns,
            context: w.context,
            parent_span_id: w.parent_span_id,
            start_ns: w.start_ns,
            end_ns,
            method,
            path: w.name,
            status: 0,
            minor_version: 0,
            broken: None,
            db_error: error,
            namespace: heapless::String::new(),
            tls: false,
            local: w.local,
            local_port: w.local_port,
            remote: w.remote,
            remote_port: w.remote_port,
            process: w.process,
        };
        spans.push_span(span, drops);
    }

    /// Hands the lookup duration histogram to the sink.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        self.lookups.report(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpLimits, RootSampling, Sampling};
    use crate::record::Task;
    use alloc::vec::Vec;

    // Captured with strace from glibc 2.36's resolver (getaddrinfo: A and AAAA in one
    // sendmmsg) and the NXDOMAIN answer to the AAAA query.
    const GLIBC_A: &[u8] =
        b"+\x91\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x04test\x00\x00\x01\x00\x01";
    const GLIBC_AAAA: &[u8] =
        b"\xff\x92\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x04test\x00\x00\x1c\x00\x01";
    const AAAA_NXDOMAIN: &[u8] =
        b"\xff\x92\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x04test\x00\x00\x1c\x00\x01";
    // dig 9.18: EDNS with a cookie (the OPT record follows the question).
    const DIG: &[u8] = b"`\xbf\x01 \x00\x01\x00\x00\x00\x00\x00\x01\x07Example\x04test\x00\x00\x01\x00\x01\x00\x00)\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\n\x00\x08\xd8\x1b\x8f\xa6\xd6\x8e\x11\xb4";

    #[test]
    fn tcp_length_prefixes_are_told_from_udp_messages() {
        // glibc over TCP: one writev of [length, A query, length, AAAA query]; the capture
        // holds the first two buffers, the call moved all four.
        let tcp = [&[0, 29][..], GLIBC_A].concat();
        assert!(tcp_prefixed(&tcp, 62));
        assert!(tcp_prefixed(&tcp, 31));
        // UDP: whatever its id, a message with one question is not prefixed.
        let mut udp = GLIBC_A.to_vec();
        udp[..2].copy_from_slice(&[0, 27]);
        assert!(!tcp_prefixed(&udp, udp.len() as u32));
        assert!(!tcp_prefixed(&[0, 29, 1], 31));
    }

    #[test]
    fn questions_and_headers_of_real_messages() {
        let q = question(GLIBC_AAAA).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0xff92, "example.test", 28)
        );
        let q = question(DIG).unwrap();
        assert_eq!((q.name.as_str(), q.qtype), ("example.test", 1));
        assert_eq!(question(AAAA_NXDOMAIN), None, "an answer is no query");
        let h = header(AAAA_NXDOMAIN).unwrap();
        assert!(h.response);
        let mut e = Word::new();
        rcode_name(h.rcode, &mut e);
        assert_eq!(e, "NXDOMAIN");
        // A name cut off by the capture, or a compression pointer in a question: none.
        assert_eq!(question(&GLIBC_A[..20]), None);
        let mut bad = GLIBC_A.to_vec();
        bad[12] = 0xc0;
        assert_eq!(question(&bad), None);
        let mut t = Word::new();
        type_name(65, &mut t);
        assert_eq!(t, "HTTPS");
        let mut t = Word::new();
        type_name(99, &mut t);
        assert_eq!(t, "TYPE99");
    }

    fn rec(ts: u64, ingress: bool, data: &[u8]) -> DataRecord<'_> {
        DataRecord {
            ts_ns: ts,
            task: Task {
                tgid: 10,
                tid: 10,
                comm: [0; 16],
            },
            fd: 3,
            ingress,
            len: data.len() as u32,
            sock: 1,
            local: IpAddr::default(),
            remote: IpAddr::default(),
            local_port: 40000,
            remote_port: 53,
            tls: false,
            protocol: Protocol::Dns,
            data,
        }
    }

    fn spans() -> HttpTracker {
        let limits = HttpLimits {
            connections: 4,
            exchanges: 4,
            spans: 16,
            series_per_metric: 16,
        };
        let sampling = Sampling {
            parent_based: true,
            root: RootSampling::AlwaysOn,
        };
        HttpTracker::new(limits, 1, sampling)
    }

    #[test]
    fn answers_pair_by_id_and_the_unanswered_time_out() {
        let (mut t, mut h, mut c) = (
            DnsTracker::new(4, 16, true),
            spans(),
            AgentCounters::default(),
        );
        t.on_data(&rec(1_000, false, GLIBC_A), &mut h, &mut c);
        t.on_data(&rec(1_100, false, GLIBC_AAAA), &mut h, &mut c);
        assert_eq!(t.waiting(), 2);
        t.on_data(&rec(5_000, true, AAAA_NXDOMAIN), &mut h, &mut c);
        // The A query's answer never comes: the descriptor's close ends it.
        let close = CloseRecord {
            ts_ns: 9_000,
            task: Task {
                tgid: 10,
                tid: 10,
                comm: [0; 16],
            },
            fd: 3,
        };
        t.on_close(&close, &mut h, &mut c);
        assert_eq!(t.waiting(), 0);
        let got: Vec<(alloc::string::String, u64, &str)> = h
            .spans()
            .iter()
            .map(|s| {
                let mut name = heapless::String::<148>::new();
                s.name(&mut name);
                (
                    alloc::string::String::from(name.as_str()),
                    s.end_ns - s.start_ns,
                    s.db_error.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("DNS AAAA".into(), 3_900, "NXDOMAIN"),
                ("DNS A".into(), 8_000, "timeout")
            ]
        );
        // A query older than the timeout ends at the next DNS record, capped at the timeout.
        t.on_data(&rec(10_000, false, GLIBC_A), &mut h, &mut c);
        t.on_data(
            &rec(10_000 + TIMEOUT_NS + 5, false, GLIBC_AAAA),
            &mut h,
            &mut c,
        );
        assert_eq!(t.waiting(), 1);
        let last = h.spans().back().unwrap();
        assert_eq!(
            (last.end_ns - last.start_ns, last.db_error.as_str()),
            (TIMEOUT_NS, "timeout")
        );
        // Without spans, the metric still counts.
        let (mut t, mut h) = (DnsTracker::new(4, 16, false), spans());
        t.on_data(&rec(1, false, GLIBC_A), &mut h, &mut c);
        t.on_data(
            &rec(
                2,
                true,
                &[&GLIBC_A[..2], b"\x81\x80", &GLIBC_A[4..]].concat(),
            ),
            &mut h,
            &mut c,
        );
        assert!(h.spans().is_empty());
        assert_eq!(t.waiting(), 0);
    }
}
