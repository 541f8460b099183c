//! What HTTP request tracing costs a busy server (a benchmark, not a test).
//!
//! nginx (one worker) answers `wrk` on loopback three times in one run: without the agent,
//! with it (spans and metrics exported to the Python OTLP receiver), and without it again.
//! Reports requests/s of each run, the ratio with the agent against the mean of the two
//! baselines, the agent's CPU per traced request, its peak RSS, and what it exported and
//! dropped. Run as root: `cargo bench -p telegen --bench http_overhead`
//! (`TELEGEN_BENCH_SECONDS`, default 10, per run; `TELEGEN_BENCH_CONNECTIONS`, default 8).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    Receiver, attr, cpu_seconds, free_port, latest, points, scratch, start_agent, status_kib,
    terminate,
};

/// Runs wrk; returns (requests, requests per second).
fn wrk(url: &str, secs: u64, conns: u32) -> (u64, f64) {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), url])
        .output()
        .expect("wrk (installed by cross/bootstrap.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(requests > 0, "wrk failed: {text}");
    (requests, rate)
}

fn main() {
    let secs: u64 = std::env::var("TELEGEN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let conns: u32 = std::env::var("TELEGEN_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = scratch("bench-http", "nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{ access_log off; keepalive_requests 1000000;\n\
         client_body_temp_path {d}/tmp/b; proxy_temp_path {d}/tmp/p; fastcgi_temp_path {d}/tmp/f;\n\
         uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;\n\
         server {{ listen 127.0.0.1:{port}; location = /api/items {{ return 200 \"ok\\n\"; }} }} }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut nginx = Command::new("nginx")
        .args(["-c", &dir.join("nginx.conf").display().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("http://127.0.0.1:{port}/api/items");
    wrk(&url, 1, conns); // warm-up

    let (_, base1) = wrk(&url, secs, conns);
    let all = traced(&url, secs, conns, "always_on", None);
    let sampled = traced(&url, secs, conns, "parentbased_traceidratio", Some("0.01"));
    let (_, base2) = wrk(&url, secs, conns);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let _ = nginx.wait();

    let baseline = (base1 + base2) / 2.0;
    println!("wrk -t1 -c{conns} -d{secs}s against nginx (1 worker), loopback; spans of both ends");
    println!("| measure | every span exported | 1 % of traces sampled |");
    println!("|---|---|---|");
    println!("| requests/s without the agent (before, after) | {base1:.0}, {base2:.0} | |");
    println!(
        "| requests/s with the agent | {:.0} | {:.0} |",
        all.rate, sampled.rate
    );
    println!(
        "| ratio to the mean baseline | {:.1} % | {:.1} % |",
        100.0 * all.rate / baseline,
        100.0 * sampled.rate / baseline
    );
    println!(
        "| agent CPU per request (2 spans, 4 captures) | {:.2} µs | {:.2} µs |",
        all.cpu_us, sampled.cpu_us
    );
    println!(
        "| agent peak RSS (VmHWM) | {:.1} MiB | {:.1} MiB |",
        all.hwm_mib, sampled.hwm_mib
    );
    println!(
        "| requests / spans exported | {} / {} | {} / {} |",
        all.requests, all.spans, sampled.requests, sampled.spans
    );
    println!(
        "| requests counted in http.server.request.duration | {} | {} |",
        all.counted, sampled.counted
    );
    println!("| dropped | {} | {} |", all.drops, sampled.drops);
}

struct Traced {
    rate: f64,
    requests: u64,
    cpu_us: f64,
    hwm_mib: f64,
    spans: usize,
    counted: u64,
    drops: String,
}

/// One wrk run with the agent, sampling as `sampler` says.
fn traced(url: &str, secs: u64, conns: u32, sampler: &str, arg: Option<&str>) -> Traced {
    let receiver = Receiver::start(&format!("bench-http-{sampler}"));
    let endpoint = receiver.endpoint();
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_TRACES_SAMPLER", sampler),
    ];
    if let Some(a) = arg {
        env.push(("OTEL_TRACES_SAMPLER_ARG", a));
    }
    let mut agent = start_agent(&["--metric-interval", "2000"], &env);
    let pid = agent.0.id();
    let cpu0 = cpu_seconds(pid);
    let (requests, rate) = wrk(url, secs, conns);
    let cpu = cpu_seconds(pid) - cpu0;
    let hwm = status_kib(pid, "VmHWM:");
    std::thread::sleep(Duration::from_millis(300));
    terminate(&mut agent, Duration::from_secs(10));
    let got = receiver.requests();
    let spans: usize = got
        .iter()
        .filter(|r| r["path"] == "/v1/traces")
        .map(|r| {
            r["request"]["resourceSpans"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
                .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        })
        .sum();
    let counted = points(&got, "http.server.request.duration")
        .iter()
        .filter(|p| attr(&p.attrs, "process.executable.name") == Some("nginx"))
        .map(|p| p.value)
        .max()
        .unwrap_or(0);
    let dropped = points(&got, "telegen.agent.dropped");
    let drops: Vec<String> = [
        "kernel_ring_full",
        "span_queue_full",
        "export_queue_full",
        "http_table_full",
    ]
    .iter()
    .map(|r| {
        let v = latest(&dropped, &[("reason", r)]).map_or(0, |p| p.value);
        format!("{r}={v}")
    })
    .collect();
    Traced {
        rate,
        requests,
        cpu_us: cpu * 1e6 / requests as f64,
        hwm_mib: hwm as f64 / 1024.0,
        spans,
        counted,
        drops: drops.join(", "),
    }
}
