//! Any sequence of captured reads, writes and closes on MQTT descriptors, with bytes the
//! capture cut off: the MQTT tracker must never panic, stay within its bounds, and produce
//! spans whose names and error types render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::record::{CloseRecord, DataRecord, IpAddr, Protocol, Task};
use telegen_core::mqtt::MqttTracker;
use telegen_core::selfmetrics::AgentCounters;

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits { connections: 3, exchanges: 5, spans: 4, series_per_metric: 4 };
    let sampling = Sampling { parent_based: true, root: RootSampling::ratio(0.5) };
    let mut spans = HttpTracker::new(limits, 1, sampling);
    let mut t = MqttTracker::new(3, 4);
    let mut counters = AgentCounters::default();
    let mut rest = data;
    let mut ts = 0u64;
    // Each step: an op byte (bit 0: ingress, bit 1: close, bits 2-3: fd, bit 4: thread, bit 6: the broker end),
    // a length byte, a byte of bytes not captured (times 16), then that many bytes.
    while let [op, len, cut, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        ts += 1000;
        let task = Task { tgid: 7, tid: 7 + u32::from(op >> 4 & 1), comm: [0; 16] };
        let fd = u32::from(op >> 2 & 3);
        if op & 2 != 0 {
            t.on_close(&CloseRecord { ts_ns: ts, task, fd }, &mut spans, &mut counters);
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
            local_port: if op & 64 != 0 { 1883 } else { 40000 },
            remote_port: 4000 + fd as u16,
            tls: false,
            protocol: Protocol::Mqtt,
            data: bytes,
        };
        t.on_data(&r, &mut spans, &mut counters);
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
});
