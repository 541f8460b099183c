//! The HTTP per-event path allocates nothing once the tracker is built: requests with and
//! without trace context, pipelined and interim answers, closes with exchanges open, a full
//! span queue, sampling, and the perf-buffer merge, all under a counting global allocator
//! (its own test binary, so that no other test's allocations are counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::metrics::{Attr, Histogram, MetricDesc, MetricSink};
use telegen_core::record::{CloseRecord, DataRecord, IpAddr, Protocol, Task};
use telegen_core::redis::RedisTracker;
use telegen_core::reorder::Reorder;
use telegen_core::selfmetrics::{AgentCounters, DropReason};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

thread_local! {
    /// Only the test's own thread is counted: the test harness's threads allocate as they
    /// please meanwhile (seen under qemu-arm, where the harness is slow).
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread exits.
    if COUNTED.try_with(|c| c.get()).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn data<'a>(ts: u64, tid: u32, fd: u32, ingress: bool, d: &'a [u8]) -> DataRecord<'a> {
    DataRecord {
        ts_ns: ts,
        task: Task {
            tgid: 10,
            tid,
            comm: *b"server\0\0\0\0\0\0\0\0\0\0",
        },
        fd,
        ingress,
        len: d.len() as u32,
        sock: u64::from(fd),
        local: IpAddr::default(),
        remote: IpAddr::default(),
        local_port: 8080,
        remote_port: 40_000 + fd as u16,
        tls: fd.is_multiple_of(2),
        protocol: if fd >= 200 {
            Protocol::Redis
        } else {
            Protocol::Http
        },
        data: d,
    }
}

#[test]
fn http_exchanges_and_the_perf_merge_allocate_nothing() {
    let mut t = HttpTracker::new(
        HttpLimits {
            connections: 32,
            exchanges: 64,
            spans: 16,
            series_per_metric: 16,
        },
        1,
        Sampling {
            parent_based: true,
            root: RootSampling::ratio(0.5),
        },
    );
    let mut counters = AgentCounters::default();
    let mut staged = Reorder::with_capacity(64 * 1024, 1024);
    let traced = b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    let plain = b"POST /orders HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let call = b"GET /backend/7 HTTP/1.1\r\n\r\n";
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let fail = b"HTTP/1.1 503 Busy\r\n\r\n";
    let mut redis = RedisTracker::new(8);
    let commands = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n";
    let replies = b"+OK\r\n-ERR value is not an integer or out of range\r\n";
    let mut record = [0u8; 64];
    COUNTED.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..5_000u64 {
        let fd = (i % 20) as u32;
        let tid = 100 + (i % 3) as u32;
        let ts = i * 1_000;
        t.on_data(&data(ts, tid, fd, true, traced), &mut counters);
        t.on_data(&data(ts + 1, tid, fd, true, plain), &mut counters);
        t.on_data(&data(ts + 2, tid, 100 + fd, false, call), &mut counters);
        t.on_data(&data(ts + 3, tid, 100 + fd, true, ok), &mut counters);
        t.on_data(&data(ts + 4, tid, fd, false, interim), &mut counters);
        t.on_data(&data(ts + 5, tid, fd, false, ok), &mut counters);
        t.on_data(&data(ts + 6, tid, fd, false, fail), &mut counters);
        if i.is_multiple_of(7) {
            t.on_data(&data(ts + 7, tid, fd, true, plain), &mut counters);
            t.on_close(
                &CloseRecord {
                    ts_ns: ts + 8,
                    task: Task::default(),
                    fd,
                },
                &mut counters,
            );
        }
        // Redis: a pipeline of two commands (client and server ends), replies cut in two.
        let rfd = 200 + (i % 4) as u32;
        redis.on_data(&data(ts, tid, rfd, false, commands), &mut t, &mut counters);
        redis.on_data(
            &data(ts + 1, tid, rfd + 4, true, commands),
            &mut t,
            &mut counters,
        );
        let (a, b) = replies.split_at(7);
        for (fd, ingress) in [(rfd, true), (rfd + 4, false)] {
            redis.on_data(&data(ts + 2, tid, fd, ingress, a), &mut t, &mut counters);
            redis.on_data(&data(ts + 3, tid, fd, ingress, b), &mut t, &mut counters);
        }
        // Records of two CPUs, merged in time order.
        record[16..24].copy_from_slice(&(ts + 9).to_ne_bytes());
        staged.push(&record).unwrap();
        record[16..24].copy_from_slice(&(ts + 3).to_ne_bytes());
        staged.push(&record).unwrap();
        staged.release(ts + 5, |r| assert_eq!(r.len(), 64));
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocator calls on the per-event path");
    // The run did what it claims: spans were made and the bounded queue overflowed.
    assert_eq!(t.spans().len(), 16);
    assert!(counters.dropped(DropReason::SpanQueueFull) > 0);
    assert_eq!(redis.connections(), 8);
    assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
    // Every client command counted: 5,000 rounds of two.
    struct Samples(u64);
    impl MetricSink for Samples {
        fn counter(&mut self, _: &MetricDesc, _: &[Attr], _: u64) {}
        fn gauge(&mut self, _: &MetricDesc, _: &[Attr], _: i64) {}
        fn histogram(&mut self, d: &MetricDesc, _: &[Attr], h: &Histogram) {
            if d.name == "db.client.operation.duration" {
                self.0 += h.count;
            }
        }
    }
    let mut samples = Samples(0);
    // The HTTP tracker keeps the database histogram with its own.
    t.report(&mut samples);
    assert_eq!(samples.0, 10_000);
}

/// HTTP/2 and gRPC: a recorded grpcio session (frames, HPACK with its dynamic table,
/// trailers, closes) replayed 200 times allocates nothing once the trackers are built.
#[test]
fn http2_and_grpc_allocate_nothing() {
    use telegen_core::http2::Http2Tracker;
    use telegen_core::record::{Record, decode};
    let recording = include_bytes!("../src/testdata/http2/grpc.rec");
    let records: Vec<Record<'_>> = telegen_core::recording::records(recording)
        .unwrap()
        .filter_map(|r| decode(r.unwrap()).ok())
        .filter(|r| match r {
            Record::Data(d) => d.protocol == Protocol::Http2,
            Record::Close(_) => true,
            _ => false,
        })
        .collect();
    let mut spans = HttpTracker::new(
        HttpLimits {
            connections: 8,
            exchanges: 8,
            spans: 16,
            series_per_metric: 16,
        },
        1,
        Sampling::ALWAYS_ON,
    );
    let mut h2 = Http2Tracker::new(4);
    let mut counters = AgentCounters::default();
    COUNTED.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..200 {
        for r in &records {
            match r {
                Record::Data(d) => h2.on_data(d, &mut spans, &mut counters),
                Record::Close(c) => h2.on_close(c, &mut spans, &mut counters),
                _ => {}
            }
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTED.with(|c| c.set(false));
    assert_eq!(after - before, 0, "allocator calls on the HTTP/2 path");
    assert_eq!(counters.dropped(DropReason::ProtocolDesync), 0);
    assert_eq!(h2.connections(), 0, "every connection closed");
    struct Calls(u64);
    impl MetricSink for Calls {
        fn counter(&mut self, _: &MetricDesc, _: &[Attr], _: u64) {}
        fn gauge(&mut self, _: &MetricDesc, _: &[Attr], _: i64) {}
        fn histogram(&mut self, d: &MetricDesc, _: &[Attr], h: &Histogram) {
            if d.name.starts_with("rpc.") {
                self.0 += h.count;
            }
        }
    }
    let mut calls = Calls(0);
    spans.report(&mut calls);
    // Five calls, seen from the server and from the client, 200 times.
    assert_eq!(calls.0, 2_000);
}
