//! One kernel record through the trackers: the agent's per-record step, shared with replays
//! of recordings (benchmarks, tests) so that they measure and check the agent's own path.

use crate::http::HttpTracker;
use crate::mqtt::MqttTracker;
use crate::record::{DecodeError, Protocol, Record, decode};
use crate::redis::RedisTracker;
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::TcpTracker;

/// The trackers kernel records feed.
pub struct Trackers {
    pub tcp: TcpTracker,
    /// HTTP exchanges, and the span queue of every protocol.
    pub http: HttpTracker,
    pub redis: RedisTracker,
    pub mqtt: MqttTracker,
}

/// Decodes `bytes` and hands the record to the tracker it belongs to. A record that does not
/// decode is counted as `decode_error` and returned for the caller to log. Allocates nothing.
pub fn on_record(
    bytes: &[u8],
    t: &mut Trackers,
    counters: &mut AgentCounters,
) -> Result<(), DecodeError> {
    match decode(bytes) {
        Ok(Record::Tcp(r)) => {
            counters.events += 1;
            t.tcp.on_record(&r, counters);
        }
        Ok(Record::Data(r)) => {
            counters.events += 1;
            match r.protocol {
                Protocol::Http => t.http.on_data(&r, counters),
                Protocol::Redis => t.redis.on_data(&r, &mut t.http, counters),
                Protocol::Mqtt => t.mqtt.on_data(&r, &mut t.http, counters),
            }
        }
        Ok(Record::Close(r)) => {
            counters.events += 1;
            t.http.on_close(&r, counters);
            t.redis.on_close(&r, &mut t.http, counters);
            t.mqtt.on_close(&r, &mut t.http, counters);
        }
        Err(e) => {
            counters.drop(DropReason::DecodeError, 1);
            return Err(e);
        }
    }
    Ok(())
}
