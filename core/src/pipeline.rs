//! One kernel record through the trackers: the agent's per-record step, shared with replays
//! of recordings (benchmarks, tests) so that they measure and check the agent's own path.

use crate::http::HttpTracker;
use crate::record::{DecodeError, Record, decode};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::TcpTracker;

/// Decodes `bytes` and hands the record to the tracker it belongs to. A record that does not
/// decode is counted as `decode_error` and returned for the caller to log. Allocates nothing.
pub fn on_record(
    bytes: &[u8],
    tcp: &mut TcpTracker,
    http: &mut HttpTracker,
    counters: &mut AgentCounters,
) -> Result<(), DecodeError> {
    match decode(bytes) {
        Ok(Record::Tcp(r)) => {
            counters.events += 1;
            tcp.on_record(&r, counters);
        }
        Ok(Record::Data(r)) => {
            counters.events += 1;
            http.on_data(&r, counters);
        }
        Ok(Record::Close(r)) => {
            counters.events += 1;
            http.on_close(&r, counters);
        }
        Err(e) => {
            counters.drop(DropReason::DecodeError, 1);
            return Err(e);
        }
    }
    Ok(())
}
