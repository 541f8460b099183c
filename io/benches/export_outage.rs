//! Memory through a collector outage under heavy traffic (a benchmark, not a test).
//!
//! The agent exports every second to a collector that is down for `TELEGEN_BENCH_OUTAGE_SECS`
//! (default 60) while this process churns TCP connections to 20 local servers as fast as it
//! can; then the collector comes up for 10 s. The agent's RSS is sampled every second. With
//! the default caps (1 MiB export queue, no spool) RSS must stay flat: the queue drops its
//! oldest batches (counted) instead of growing. Run as root:
//! `cargo bench -p telegen --bench export_outage`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Receiver, free_port, latest_total, start_agent, status_kib, terminate};

fn main() {
    let outage: u64 = std::env::var("TELEGEN_BENCH_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let port = free_port();
    let cfg = std::env::temp_dir().join("telegen-outage.toml");
    std::fs::write(
        &cfg,
        format!("[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nretry_initial_ms = 500\nretry_max_ms = 2000\n"),
    )
    .unwrap();
    let mut agent = start_agent(
        &["--metric-interval", "1000", "-c", cfg.to_str().unwrap()],
        &[],
    );
    let pid = agent.0.id();

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut ports = Vec::new();
    for _ in 0..20 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        ports.push(l.local_addr().unwrap().port());
        let stop = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut c) = c {
                    let mut b = [0u8; 8];
                    while c.read(&mut b).unwrap_or(0) > 0 {}
                }
            }
        });
    }
    let client = {
        let (stop, made) = (stop.clone(), made.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", ports[i % ports.len()])) {
                    let _ = s.write_all(b"x");
                    let _ = s.shutdown(Shutdown::Write);
                    let mut b = Vec::new();
                    let _ = s.read_to_end(&mut b);
                    made.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };

    println!("| t (s) | collector | connections so far | agent RSS (MiB) | peak so far (MiB) |");
    println!("|---|---|---|---|---|");
    let start = Instant::now();
    let mut receiver = None;
    for t in 0..=outage + 10 {
        while start.elapsed() < Duration::from_secs(t) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t == outage {
            receiver = Some(Receiver::start_with("outage", port, &[]));
        }
        if t % 5 == 0 {
            let up = if t >= outage { "up" } else { "down" };
            let rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
            let hwm = status_kib(pid, "VmHWM:") as f64 / 1024.0;
            println!(
                "| {t} | {up} | {} | {rss:.1} | {hwm:.1} |",
                made.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let peak = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    let requests = receiver.map(|r| r.requests()).unwrap_or_default();
    let dropped =
        |reason: &str| latest_total(&requests, "telegen.agent.dropped", &[("reason", reason)]);
    println!();
    println!(
        "peak RSS {peak:.1} MiB; {} connections; agent exit {status}",
        made.load(Ordering::Relaxed)
    );
    println!(
        "after the outage: {} requests delivered; dropped export_queue_full={} kernel_ring_full={} conn_table_full={}",
        requests.len(),
        dropped("export_queue_full"),
        dropped("kernel_ring_full"),
        dropped("conn_table_full")
    );
}
