//! The body of the protocol trackers' fuzz targets: any sequence of captured reads, writes
//! and closes on a protocol's descriptors, with bytes the capture cut off. A tracker must
//! never panic, stay within its bounds, and produce spans whose names and error types
//! render.

use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::record::{CloseRecord, DataRecord, IpAddr, Protocol, Task};
use telegen_core::selfmetrics::AgentCounters;

/// What the fuzz targets drive: one protocol tracker.
pub trait Tracker {
    fn data(&mut self, r: &DataRecord<'_>, spans: &mut HttpTracker, c: &mut AgentCounters);
    fn close(&mut self, r: &CloseRecord, spans: &mut HttpTracker, c: &mut AgentCounters);
    fn connections(&self) -> usize;
}

macro_rules! tracker {
    ($($t:ty),*) => {$(
        impl Tracker for $t {
            fn data(&mut self, r: &DataRecord<'_>, s: &mut HttpTracker, c: &mut AgentCounters) {
                self.on_data(r, s, c)
            }
            fn close(&mut self, r: &CloseRecord, s: &mut HttpTracker, c: &mut AgentCounters) {
                self.on_close(r, s, c)
            }
            fn connections(&self) -> usize {
                <$t>::connections(self)
            }
        }
    )*};
}

tracker!(
    telegen_core::redis::RedisTracker,
    telegen_core::mqtt::MqttTracker,
    telegen_core::postgres::PostgresTracker,
    telegen_core::mysql::MysqlTracker,
    telegen_core::amqp::AmqpTracker,
    telegen_core::kafka::KafkaTracker,
    telegen_core::http2::Http2Tracker
);

impl Tracker for telegen_core::dns::DnsTracker {
    fn data(&mut self, r: &DataRecord<'_>, s: &mut HttpTracker, c: &mut AgentCounters) {
        self.on_data(r, s, c)
    }
    fn close(&mut self, r: &CloseRecord, s: &mut HttpTracker, c: &mut AgentCounters) {
        self.on_close(r, s, c)
    }
    /// Queries waiting, which the table bounds as it bounds connections.
    fn connections(&self) -> usize {
        self.waiting()
    }
}

/// Runs `data` through `t` (made for 3 connections). Each step: an op byte (bit 0:
/// ingress, bit 1: close, bits 2-3: fd, bit 4: thread, bit 6: the local port is
/// `server_port`), a length byte, a byte of bytes not captured (times 16), then that many
/// bytes.
pub fn run(data: &[u8], t: &mut impl Tracker, protocol: Protocol, server_port: u16) {
    let limits = HttpLimits { connections: 3, exchanges: 5, spans: 4, series_per_metric: 4 };
    let sampling = Sampling { parent_based: true, root: RootSampling::ratio(0.5) };
    let mut spans = HttpTracker::new(limits, 1, sampling);
    let mut counters = AgentCounters::default();
    let mut rest = data;
    let mut ts = 0u64;
    while let [op, len, cut, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        ts += 1000;
        let task = Task { tgid: 7, tid: 7 + u32::from(op >> 4 & 1), comm: [0; 16] };
        let fd = u32::from(op >> 2 & 3);
        if op & 2 != 0 {
            t.close(&CloseRecord { ts_ns: ts, task, fd }, &mut spans, &mut counters);
            continue;
        }
        let r = DataRecord {
            ts_ns: ts,
            task,
            fd,
            ingress: op & 1 != 0,
            len: bytes.len() as u32 + u32::from(*cut) * 16,
            sock: u64::from(fd),
            local: IpAddr::default(),
            remote: IpAddr::default(),
            local_port: if op & 64 != 0 { server_port } else { 40000 + fd as u16 },
            remote_port: if op & 64 != 0 { 40000 + fd as u16 } else { server_port },
            tls: false,
            protocol,
            data: bytes,
        };
        t.data(&r, &mut spans, &mut counters);
        assert!(t.connections() <= 3);
        assert!(spans.spans().len() <= 4);
        for s in spans.spans().drain(..) {
            let mut name = heapless::String::new();
            s.name(&mut name);
            let mut e = heapless::String::new();
            s.error_type(&mut e);
            assert!(s.end_ns >= s.start_ns);
        }
    }
}
