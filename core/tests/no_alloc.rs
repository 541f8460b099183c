//! The per-event path allocates nothing: decode and track many records after start-up and
//! count the allocator calls made meanwhile (a counting global allocator, this binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use telegen_common::{AF_INET, EventHeader, EventKind, TcpEvent, tcp_state};
use telegen_core::record::{Record, decode, encode_tcp_event};
use telegen_core::selfmetrics::AgentCounters;
use telegen_core::tcp::{TcpLimits, TcpTracker};

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

fn event(sock: u64, pid: u32, lport: u16, rport: u16, old: u32, new: u32, ts: u64) -> [u8; 96] {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    encode_tcp_event(&TcpEvent {
        header: EventHeader {
            kind: EventKind::TcpStateChange as u32,
            size: 96,
            tgid: pid,
            tid: pid,
            ts_ns: ts,
            comm: *b"client\0\0\0\0\0\0\0\0\0\0",
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

#[test]
fn tracking_connections_allocates_nothing() {
    use tcp_state::*;
    let mut tracker = TcpTracker::new(TcpLimits {
        connections: 64,
        listeners: 8,
        series_per_metric: 32,
    });
    let mut counters = AgentCounters::default();
    // Pre-render the records so that building them is not counted.
    let mut records = Vec::new();
    records.push(event(1, 10, 8080, 0, CLOSE, LISTEN, 1));
    for i in 0..2_000u64 {
        let (c, s) = (1_000 + 2 * i, 1_001 + 2 * i);
        let port = 40_000 + (i % 7) as u16;
        records.push(event(
            c,
            20 + (i % 5) as u32,
            port,
            8080,
            CLOSE,
            SYN_SENT,
            10 * i,
        ));
        records.push(event(s, 20, 8080, port, SYN_RECV, ESTABLISHED, 10 * i + 1));
        records.push(event(c, 20, port, 8080, SYN_SENT, ESTABLISHED, 10 * i + 2));
        records.push(event(c, 20, port, 8080, FIN_WAIT2, CLOSE, 10 * i + 5));
        records.push(event(s, 20, 8080, port, LAST_ACK, CLOSE, 10 * i + 6));
    }
    COUNTED.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for r in &records {
        if let Ok(Record::Tcp(t)) = decode(r) {
            counters.events += 1;
            tracker.on_record(&t, &mut counters);
        }
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(counters.events, records.len() as u64);
    assert_eq!(tracker.open_connections(), 0);
    assert_eq!(during, 0, "allocations on the per-event path");
}
