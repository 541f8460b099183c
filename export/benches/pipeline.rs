//! The user-space pipeline without the kernel (a benchmark, not a test): records in the
//! kernel's wire format are decoded, tracked and aggregated, and every 100,000 records the
//! metrics are collected, encoded to OTLP protobuf and gzipped, as the agent does at each
//! export interval. Reports records per second on one core, allocator calls per record on the
//! per-record path (a counting global allocator), and the cost and size of each export.
//!
//! The records are synthetic but shaped like the kernel's (one connection = SYN_SENT, two
//! ESTABLISHED, two CLOSE), over 200 server ports and 50 client processes.
//! Run: `cargo bench -p telegen-export --bench pipeline`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use telegen_common::{AF_INET, EventHeader, EventKind, TcpEvent, tcp_state};
use telegen_core::record::{Record, decode, encode_tcp_event};
use telegen_core::selfmetrics::AgentCounters;
use telegen_core::tcp::{TcpLimits, TcpTracker};
use telegen_export::codec::{Codec, Format, encode_fitting};
use telegen_export::otlp::{MetricsCollector, resource};
use telegen_export::payload::Encoder;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn record(sock: u64, pid: u32, lport: u16, rport: u16, old: u32, new: u32, ts: u64) -> [u8; 96] {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    encode_tcp_event(&TcpEvent {
        header: EventHeader {
            kind: EventKind::TcpStateChange as u32,
            size: 96,
            tgid: pid,
            tid: pid,
            ts_ns: ts,
            comm,
        },
        sock,
        saddr: addr,
        daddr: addr,
        sport: lport,
        dport: rport,
        family: AF_INET,
        _pad0: 0,
        old_state: old,
        new_state: new,
    })
}

fn main() {
    use tcp_state::*;
    const CONNECTIONS: u64 = 200_000;
    let mut records: Vec<[u8; 96]> = Vec::with_capacity(CONNECTIONS as usize * 5 + 200);
    for p in 0..200u16 {
        records.push(record(
            1 << 40 | u64::from(p),
            1000 + u32::from(p % 50),
            8000 + p,
            0,
            CLOSE,
            LISTEN,
            1,
        ));
    }
    for i in 0..CONNECTIONS {
        let (c, s) = (2 * i + 10, 2 * i + 11);
        let port = 8000 + (i % 200) as u16;
        let eph = 30_000 + (i % 20_000) as u16;
        let pid = 5000 + (i % 50) as u32;
        let t = i * 1000;
        records.push(record(c, pid, eph, port, CLOSE, SYN_SENT, t));
        records.push(record(s, pid, port, eph, SYN_RECV, ESTABLISHED, t + 10));
        records.push(record(c, pid, eph, port, SYN_SENT, ESTABLISHED, t + 20));
        records.push(record(c, pid, eph, port, FIN_WAIT2, CLOSE, t + 500));
        records.push(record(s, pid, port, eph, LAST_ACK, CLOSE, t + 600));
    }
    let limits = TcpLimits {
        connections: 4096,
        listeners: 256,
        series_per_metric: 1000,
    };
    let mut tracker = TcpTracker::new(limits);
    let mut counters = AgentCounters::default();
    let codec = Codec {
        format: Format::Protobuf,
        gzip: true,
    };
    let mut encoder = Encoder::default();
    let res = resource(&[("service.name".into(), "bench".into())]);

    let (mut track_ns, mut export_ns, mut exports, mut bytes, mut points) =
        (0u128, 0u128, 0u64, 0usize, 0usize);
    let mut hot_allocs = 0u64;
    for chunk in records.chunks(100_000) {
        let a0 = ALLOCS.load(Ordering::Relaxed);
        let t0 = Instant::now();
        for r in chunk {
            if let Ok(Record::Tcp(t)) = decode(r) {
                counters.events += 1;
                tracker.on_record(&t, &mut counters);
            }
        }
        track_ns += t0.elapsed().as_nanos();
        hot_allocs += ALLOCS.load(Ordering::Relaxed) - a0;

        let t1 = Instant::now();
        let mut c = MetricsCollector::new(1, 2);
        tracker.report(&mut c);
        counters.report(&mut c);
        points += c.points();
        let mut batches = Vec::new();
        for req in c.into_requests(&res, 2000) {
            encode_fitting(
                &codec,
                &mut encoder,
                req,
                20 << 20,
                &mut counters,
                &mut batches,
            );
        }
        bytes += batches.iter().map(|b| b.body.len()).sum::<usize>();
        export_ns += t1.elapsed().as_nanos();
        exports += 1;
    }
    let n = counters.events;
    println!("| pipeline measure | value |");
    println!("|---|---|");
    println!("| records decoded and tracked | {n} |");
    println!(
        "| records per second, one core | {:.2} M |",
        n as f64 / (track_ns as f64 / 1e9) / 1e6
    );
    println!("| ns per record | {:.0} |", track_ns as f64 / n as f64);
    println!(
        "| allocator calls on the per-record path | {hot_allocs} ({:.4} per record) |",
        hot_allocs as f64 / n as f64
    );
    println!(
        "| export: collect + encode + gzip | {:.2} ms for {} points (mean of {exports}) |",
        export_ns as f64 / 1e6 / exports as f64,
        points / exports as usize
    );
    println!(
        "| export: bytes on the wire per export | {} |",
        bytes / exports as usize
    );
}
