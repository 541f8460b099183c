//! The user-space pipeline without the kernel (a benchmark, not a test): records in the
//! kernel's wire format are decoded, tracked and aggregated, and every 100,000 records the
//! metrics are collected, encoded to OTLP protobuf and gzipped, as the agent does at each
//! export interval. Reports records per second on one core, allocator calls per record on the
//! per-record path (a counting global allocator), and the cost and size of each export.
//!
//! Two parts. Synthetic TCP records shaped like the kernel's (one connection = SYN_SENT, two
//! ESTABLISHED, two CLOSE), over 200 server ports and 50 client processes. Then a recording
//! of real kernel records (`telegen --record`, made by `cross/record.sh`: nginx driven by curl
//! and a keep-alive client), replayed again and again, each pass shifted in time after the
//! last, through the agent's own per-record step (`telegen_core::pipeline::on_record`: decode,
//! TCP and HTTP tracking, histograms), with the finished spans written as OTLP protobuf and
//! gzipped every 4,096 records and the metrics every 100,000, as the agent would.
//! Run: `cargo bench -p telegen-export --bench pipeline` (recording: `TELEGEN_RECORDING`,
//! default `target/bench/nginx.rec`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use telegen_common::{AF_INET, EventHeader, EventKind, TcpEvent, tcp_state};
use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::pipeline::{self, Trackers};
use telegen_core::record::{Record, decode, encode_tcp_event};
use telegen_core::recording;
use telegen_core::selfmetrics::{AgentCounters, DropReason};
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
    synthetic();
    replay();
}

fn synthetic() {
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

/// The recording, replayed: see the module doc.
fn replay() {
    let path = std::env::var_os("TELEGEN_RECORDING")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/nginx.rec")
        });
    let Ok(mut buf) = std::fs::read(&path) else {
        println!();
        println!(
            "(no recording at {}: `bash cross/record.sh` makes one; replay skipped)",
            path.display()
        );
        return;
    };
    // Where each record sits, once.
    let mut spans_at = Vec::new();
    let mut at = recording::MAGIC.len();
    for r in recording::records(&buf).expect("a telegen recording") {
        let r = r.expect("a complete recording");
        spans_at.push((at + 4, r.len()));
        at += 4 + r.len();
    }
    let times: Vec<u64> = spans_at
        .iter()
        .filter_map(|&(a, n)| recording::timestamp(&buf[a..a + n]))
        .collect();
    let (first, last) = (
        times.iter().copied().min().unwrap_or(0),
        times.iter().copied().max().unwrap_or(0),
    );
    let period = last - first + 1_000_000;

    let mut t = Trackers::new(
        TcpTracker::new(TcpLimits {
            connections: 4096,
            listeners: 256,
            series_per_metric: 1000,
        }),
        HttpTracker::new(
            HttpLimits {
                connections: 1024,
                exchanges: 1024,
                spans: 8192,
                series_per_metric: 1000,
            },
            7,
            Sampling {
                parent_based: true,
                root: RootSampling::AlwaysOn,
            },
        ),
        32,
        128,
        1000,
        true,
    );
    let mut counters = AgentCounters::default();
    let mut encoder = Encoder::default();
    let mut writer = telegen_export::spanpb::SpanWriter::default();
    let res = resource(&[("service.name".into(), "bench".into())]);
    let codec = Codec {
        format: Format::Protobuf,
        gzip: true,
    };

    const TARGET: usize = 2_000_000;
    let passes = TARGET.div_ceil(spans_at.len().max(1)).max(3);
    let (mut record_ns, mut span_ns, mut metric_ns) = (0u128, 0u128, 0u128);
    let (mut records, mut hot_allocs, mut spans, mut span_bytes, mut metric_bytes) =
        (0u64, 0u64, 0u64, 0usize, 0usize);
    let (mut since_spans, mut since_metrics, mut metric_exports) = (0usize, 0usize, 0u64);
    for pass in 0..passes {
        if pass > 0 {
            for &(a, n) in &spans_at {
                recording::shift_timestamp(&mut buf[a..a + n], period);
            }
        }
        for &(a, n) in &spans_at {
            let a0 = ALLOCS.load(Ordering::Relaxed);
            let t0 = Instant::now();
            let _ = pipeline::on_record(&buf[a..a + n], &mut t, &mut counters);
            record_ns += t0.elapsed().as_nanos();
            hot_allocs += ALLOCS.load(Ordering::Relaxed) - a0;
            records += 1;
            since_spans += 1;
            since_metrics += 1;
            if since_spans == 4096 {
                since_spans = 0;
                let t1 = Instant::now();
                let (n, b) =
                    export_spans(&mut t.http, &mut writer, &mut encoder, &res, &mut counters);
                span_ns += t1.elapsed().as_nanos();
                spans += n;
                span_bytes += b;
            }
            if since_metrics == 100_000 {
                since_metrics = 0;
                let t2 = Instant::now();
                let mut c = MetricsCollector::new(1, 2);
                t.report(&mut c);
                counters.report(&mut c);
                let mut out = Vec::new();
                for req in c.into_requests(&res, 2000) {
                    encode_fitting(&codec, &mut encoder, req, 20 << 20, &mut counters, &mut out);
                }
                metric_bytes += out.iter().map(|b| b.body.len()).sum::<usize>();
                metric_ns += t2.elapsed().as_nanos();
                metric_exports += 1;
            }
        }
    }
    let t1 = Instant::now();
    let (n, b) = export_spans(&mut t.http, &mut writer, &mut encoder, &res, &mut counters);
    span_ns += t1.elapsed().as_nanos();
    spans += n;
    span_bytes += b;
    // The timer around each record costs some of its own: measured, and taken off.
    let t = Instant::now();
    for _ in 0..records {
        std::hint::black_box(Instant::now());
    }
    let timer_ns = t.elapsed().as_nanos();
    let record_ns = record_ns.saturating_sub(timer_ns);
    let all_ns = record_ns + span_ns + metric_ns;
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&r| counters.dropped(r) > 0)
        .map(|&r| format!("{} {}", r.as_str(), counters.dropped(r)))
        .collect();
    let drops = if drops.is_empty() {
        "none".to_string()
    } else {
        drops.join(", ")
    };
    println!();
    println!(
        "| replay of {} ({} records, {} bytes, {passes} passes) | value |",
        path.file_name().unwrap_or_default().to_string_lossy(),
        spans_at.len(),
        buf.len()
    );
    println!("|---|---|");
    println!("| records replayed | {records} |");
    println!(
        "| spans finished | {spans} ({:.2} per record) |",
        spans as f64 / records as f64
    );
    println!(
        "| per-record step (decode, track, histograms) | {:.0} ns, {:.2} M records/s on one core |",
        record_ns as f64 / records as f64,
        records as f64 / (record_ns as f64 / 1e9) / 1e6
    );
    println!(
        "| allocator calls on the per-record path | {hot_allocs} ({:.4} per record) |",
        hot_allocs as f64 / records as f64
    );
    println!(
        "| spans to OTLP protobuf + gzip | {:.0} ns per span, {:.1} bytes per span on the wire |",
        span_ns as f64 / spans.max(1) as f64,
        span_bytes as f64 / spans.max(1) as f64
    );
    println!(
        "| metrics collect + encode + gzip | {:.2} ms per export, {} bytes (mean of {metric_exports}) |",
        metric_ns as f64 / 1e6 / metric_exports.max(1) as f64,
        metric_bytes / metric_exports.max(1) as usize
    );
    println!(
        "| whole pipeline, records in to gzip out | {:.2} M records/s, {:.0} k spans/s on one core |",
        records as f64 / (all_ns as f64 / 1e9) / 1e6,
        spans as f64 / (all_ns as f64 / 1e9) / 1e3
    );
    println!("| drops counted | {drops} |");
}

/// Writes the finished spans as gzipped OTLP protobuf and removes them: (spans, bytes).
fn export_spans(
    http: &mut HttpTracker,
    writer: &mut telegen_export::spanpb::SpanWriter,
    encoder: &mut Encoder,
    res: &opentelemetry_proto::tonic::resource::v1::Resource,
    counters: &mut AgentCounters,
) -> (u64, usize) {
    let q = http.spans();
    let n = q.len() as u64;
    let mut batches = Vec::new();
    telegen_export::spanpb::batches(
        writer,
        encoder,
        true,
        q.make_contiguous(),
        res,
        0,
        (512, 4 << 20),
        counters,
        &mut batches,
    );
    q.clear();
    (n, batches.iter().map(|b| b.body.len()).sum())
}
