//! Any sequence of captured reads, writes and closes: the HTTP tracker must never panic,
//! stay within its bounds, and produce spans whose names and error types render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::record::{CloseRecord, DataRecord, IpAddr, Task};
use telegen_core::selfmetrics::AgentCounters;

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits { connections: 3, exchanges: 5, spans: 4, series_per_metric: 4 };
    let sampling = Sampling { parent_based: data.first().is_some_and(|b| b & 1 == 1), root: RootSampling::ratio(0.5) };
    let mut t = HttpTracker::new(limits, 1, sampling);
    let mut counters = AgentCounters::default();
    let mut rest = data;
    let mut ts = 0u64;
    // Each step: an op byte (bit 0: ingress, bit 1: close, bits 2-3: fd, bit 4: thread, bit 5:
    // TLS), a length byte, then that many bytes of captured data.
    while let [op, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        ts += 1000;
        let task = Task { tgid: 7, tid: 7 + u32::from(op >> 4 & 1), comm: [0; 16] };
        let fd = u32::from(op >> 2 & 3);
        if op & 2 != 0 {
            t.on_close(&CloseRecord { ts_ns: ts, task, fd }, &mut counters);
            continue;
        }
        let r = DataRecord {
            ts_ns: ts,
            task,
            fd,
            ingress: op & 1 != 0,
            len: bytes.len() as u32,
            sock: u64::from(fd),
            local: IpAddr::default(),
            remote: IpAddr::default(),
            local_port: 80,
            remote_port: 4000 + fd as u16,
            tls: op & 32 != 0,
            protocol: telegen_core::record::Protocol::Http,
            data: bytes,
        };
        t.on_data(&r, &mut counters);
        assert!(t.spans().len() <= 4);
        for s in t.spans().drain(..) {
            let mut name = heapless::String::new();
            s.name(&mut name);
            let mut e = heapless::String::new();
            s.error_type(&mut e);
            assert!(s.end_ns >= s.start_ns);
        }
    }
});
