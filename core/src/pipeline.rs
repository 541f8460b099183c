//! One kernel record through the trackers: the agent's per-record step, shared with replays
//! of recordings (benchmarks, tests) so that they measure and check the agent's own path.

use crate::amqp::AmqpTracker;
use crate::dns::DnsTracker;
use crate::http::HttpTracker;
use crate::http2::Http2Tracker;
use crate::kafka::KafkaTracker;
use crate::metrics::MetricSink;
use crate::mqtt::MqttTracker;
use crate::mysql::MysqlTracker;
use crate::own::OwnConnections;
use crate::postgres::PostgresTracker;
use crate::record::{DecodeError, Protocol, Record, decode};
use crate::redis::RedisTracker;
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::TcpTracker;
use crate::unjoined::Unjoined;

/// The trackers kernel records feed.
pub struct Trackers {
    pub tcp: TcpTracker,
    /// HTTP exchanges, and the span queue of every protocol.
    pub http: HttpTracker,
    pub http2: Http2Tracker,
    pub redis: RedisTracker,
    pub mqtt: MqttTracker,
    pub postgres: PostgresTracker,
    pub mysql: MysqlTracker,
    pub dns: DnsTracker,
    pub amqp: AmqpTracker,
    pub kafka: KafkaTracker,
    /// Writes that came before their descriptor's socket was known (descriptor join).
    pub unjoined: Unjoined,
    /// The agent's export connections: their other end's calls make no spans.
    pub own: OwnConnections,
}

impl Trackers {
    /// The trackers around `tcp` and `http`, each protocol after HTTP following up to
    /// `connections` descriptors (and DNS as many queries; HTTP/2 `http2_connections`),
    /// each metric up to `series_per_metric` series; `dns_spans`: a span per DNS lookup.
    pub fn new(
        tcp: TcpTracker,
        http: HttpTracker,
        http2_connections: usize,
        connections: usize,
        series_per_metric: usize,
        dns_spans: bool,
    ) -> Self {
        let (c, s) = (connections, series_per_metric);
        Self {
            tcp,
            http,
            http2: Http2Tracker::new(http2_connections),
            redis: RedisTracker::new(c),
            mqtt: MqttTracker::new(c),
            postgres: PostgresTracker::new(c),
            mysql: MysqlTracker::new(c),
            dns: DnsTracker::new(c, s, dns_spans),
            amqp: AmqpTracker::new(c),
            kafka: KafkaTracker::new(c),
            unjoined: Unjoined::new(),
            own: OwnConnections::new(),
        }
    }

    /// What the tables of the protocols after HTTP take, each with its budget line.
    pub fn protocol_bytes(
        connections: usize,
        series_per_metric: usize,
    ) -> [(&'static str, usize); 8] {
        let (c, s) = (connections, series_per_metric);
        [
            ("Redis connection table", RedisTracker::bytes(c)),
            ("MQTT connection table", MqttTracker::bytes(c)),
            ("PostgreSQL connection table", PostgresTracker::bytes(c)),
            ("MySQL connection table", MysqlTracker::bytes(c)),
            ("DNS queries and metric series", DnsTracker::bytes(c, s)),
            ("AMQP connection table", AmqpTracker::bytes(c)),
            ("Kafka connection table", KafkaTracker::bytes(c)),
            ("writes awaiting their socket", Unjoined::bytes()),
        ]
    }

    /// Hands every tracker's metrics to the sink.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        self.tcp.report(sink);
        // HTTP's histograms, and the database and messaging ones of the other protocols.
        self.http.report(sink);
        self.dns.report(sink);
    }
}

/// A process starting a program or ending: the caller's process table acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle<'a> {
    /// `pid` ran the program at `path` (as `execve` was given it); its task name is now
    /// `comm` (NUL padded).
    Exec {
        pid: u32,
        path: &'a [u8],
        comm: [u8; 16],
    },
    Exit {
        pid: u32,
    },
}

/// Decodes `bytes` and hands the record to the tracker it belongs to; a process's exec or
/// exit is returned to the caller. A record that does not decode is counted as
/// `decode_error` and returned for the caller to log. Allocates nothing.
pub fn on_record<'a>(
    bytes: &'a [u8],
    t: &mut Trackers,
    counters: &mut AgentCounters,
) -> Result<Option<Lifecycle<'a>>, DecodeError> {
    match decode(bytes) {
        Ok(Record::Tcp(r)) => {
            counters.events += 1;
            t.tcp.on_record(&r, counters);
        }
        Ok(Record::Data(r)) => {
            counters.events += 1;
            if r.sock == 0 {
                // Descriptor join: a write before its socket was known.
                if !t.unjoined.hold(&r) {
                    counters.drop(DropReason::SocketUnknown, 1);
                }
                return Ok(None);
            }
            let mut buf = [0; telegen_common::DATA_CAP];
            if let Some(held) = t.unjoined.take(&r, &mut buf) {
                on_data(&held, t, counters);
            }
            on_data(&r, t, counters);
        }
        Ok(Record::Close(r)) => {
            counters.events += 1;
            let lost = t.unjoined.on_close(r.task.tgid, r.fd);
            counters.drop(DropReason::SocketUnknown, lost);
            t.http.on_close(&r, counters);
            t.http2.on_close(&r, &mut t.http, counters);
            t.redis.on_close(&r, &mut t.http, counters);
            t.mqtt.on_close(&r, &mut t.http, counters);
            t.postgres.on_close(&r, &mut t.http, counters);
            t.mysql.on_close(&r, &mut t.http, counters);
            t.dns.on_close(&r, &mut t.http, counters);
            t.amqp.on_close(&r, &mut t.http, counters);
            t.kafka.on_close(&r, &mut t.http, counters);
        }
        Ok(Record::Exec(r)) => {
            counters.events += 1;
            return Ok(Some(Lifecycle::Exec {
                pid: r.task.tgid,
                path: r.path,
                comm: r.task.comm,
            }));
        }
        Ok(Record::Exit { task, .. }) => {
            counters.events += 1;
            let lost = t.unjoined.on_exit(task.tgid);
            counters.drop(DropReason::SocketUnknown, lost);
            return Ok(Some(Lifecycle::Exit { pid: task.tgid }));
        }
        Err(e) => {
            counters.drop(DropReason::DecodeError, 1);
            return Err(e);
        }
    }
    Ok(None)
}

/// Hands a socket's bytes to the tracker of their protocol.
fn on_data(r: &crate::record::DataRecord<'_>, t: &mut Trackers, counters: &mut AgentCounters) {
    if t.own.is_peer_of(r) {
        return;
    }
    match r.protocol {
        Protocol::Http => t.http.on_data(r, counters),
        Protocol::Redis => t.redis.on_data(r, &mut t.http, counters),
        Protocol::Mqtt => t.mqtt.on_data(r, &mut t.http, counters),
        Protocol::Postgres => t.postgres.on_data(r, &mut t.http, counters),
        Protocol::Mysql | Protocol::Mariadb => t.mysql.on_data(r, &mut t.http, counters),
        Protocol::Dns => t.dns.on_data(r, &mut t.http, counters),
        Protocol::Amqp => t.amqp.on_data(r, &mut t.http, counters),
        Protocol::Kafka => t.kafka.on_data(r, &mut t.http, counters),
        Protocol::Http2 | Protocol::Grpc => t.http2.on_data(r, &mut t.http, counters),
    }
}

/// Replays a recording through fresh trackers: the spans they made, and the counters.
#[cfg(test)]
pub(crate) fn replay(recording: &[u8]) -> (alloc::vec::Vec<crate::http::Span>, AgentCounters) {
    use crate::http::{HttpLimits, RootSampling, Sampling};
    use crate::tcp::TcpLimits;
    let tcp = TcpTracker::new(TcpLimits {
        connections: 64,
        listeners: 16,
        series_per_metric: 64,
    });
    let limits = HttpLimits {
        connections: 16,
        exchanges: 16,
        spans: 256,
        series_per_metric: 64,
    };
    let sampling = Sampling {
        parent_based: true,
        root: RootSampling::AlwaysOn,
    };
    let mut t = Trackers::new(tcp, HttpTracker::new(limits, 1, sampling), 4, 16, 64, true);
    let mut counters = AgentCounters::default();
    for r in crate::recording::records(recording).expect("a recording") {
        let r = r.expect("a whole record");
        let _ = on_record(r, &mut t, &mut counters);
    }
    (t.http.spans().drain(..).collect(), counters)
}
