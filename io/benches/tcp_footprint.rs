//! Footprint of the agent while real TCP connections are made (a benchmark, not a test).
//!
//! Starts the release agent exporting to the Python OTLP receiver every second, makes
//! `TELEGEN_BENCH_CONNECTIONS` (default 3000) loopback connections to a server in this
//! process, then reads the agent's peak RSS (VmHWM) and CPU time from /proc and the size
//! of the stripped binary. Run as root: `cargo bench -p telegen --bench tcp_footprint`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{AGENT, Receiver, cpu_seconds, points, start_agent, status_kib, terminate};

fn stripped_size() -> u64 {
    let out = std::env::temp_dir().join("telegen-stripped");
    std::fs::copy(AGENT, &out).unwrap();
    let ok = Command::new("strip")
        .arg(&out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "strip (binutils) is needed");
    std::fs::metadata(&out).unwrap().len()
}

fn main() {
    let n: usize = std::env::var("TELEGEN_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let receiver = Receiver::start("bench");
    let mut agent = start_agent(
        &["--metric-interval", "1000"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let pid = agent.0.id();
    let rss_idle = status_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut c, _) = listener.accept().unwrap();
            let mut b = [0u8; 16];
            while c.read(&mut b).unwrap_or(0) > 0 {}
            let _ = c.write_all(b"ok");
        }
    });
    let started = Instant::now();
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
        s.write_all(b"x").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut b = Vec::new();
        let _ = s.read_to_end(&mut b);
    }
    server.join().unwrap();
    let elapsed = started.elapsed();
    // Two export intervals so the agent handles everything and exports it.
    std::thread::sleep(Duration::from_millis(2200));
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak = status_kib(pid, "VmHWM:");
    let rss = status_kib(pid, "VmRSS:");
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    let size = stripped_size();
    let requests = receiver.requests();
    let total = |name: &str| -> u64 {
        let pts = points(&requests, name);
        let last = pts.iter().map(|p| p.time).max().unwrap_or(0);
        pts.iter().filter(|p| p.time == last).map(|p| p.value).sum()
    };
    let (events, dropped) = (
        total("telegen.agent.events"),
        total("telegen.agent.dropped"),
    );

    println!(
        "telegen TCP footprint ({n} connections in {:.2} s, {:.0}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| peak RSS (VmHWM) | {:.1} MiB |", peak as f64 / 1024.0);
    println!(
        "| RSS idle after start / after load | {:.1} / {:.1} MiB |",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!(
        "| agent CPU per connection (both ends) | {:.1} µs |",
        cpu * 1e6 / n as f64
    );
    println!("| agent CPU total | {:.3} s |", cpu);
    println!(
        "| stripped binary | {:.2} MiB ({size} bytes) |",
        size as f64 / 1048576.0
    );
    println!("| kernel records handled / dropped | {events} / {dropped} |");
    println!("| agent exit on SIGTERM | {status} |");
}
