//! Any bytes from the ring: decoding must return a record or an error, never panic, and a
//! decoded TCP record must survive the tracker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::record::{Record, decode};
use telegen_core::selfmetrics::AgentCounters;
use telegen_core::tcp::{TcpLimits, TcpTracker};

fuzz_target!(|data: &[u8]| {
    let mut tracker = TcpTracker::new(TcpLimits { connections: 4, listeners: 2, series_per_metric: 4 });
    let mut counters = AgentCounters::default();
    // Treat the input as a sequence of records of the ring's record size.
    for chunk in data.chunks(96) {
        if let Ok(Record::Tcp(r)) = decode(chunk) {
            tracker.on_record(&r, &mut counters);
        }
    }
});
