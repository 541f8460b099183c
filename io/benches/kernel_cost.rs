//! What the kernel programs cost per traced request (a benchmark, not a test).
//!
//! nginx (one worker) answers `h2load` at a fixed rate on loopback (not saturated: the
//! programs' own time is measured, not their fight for the CPU), once per capture join
//! (`--capture-join socket`, Linux 6.4+, and `descriptor`, what older kernels get), with the
//! kernel's per-program statistics on (`sysctl kernel.bpf_stats_enabled=1`); then once under
//! bpftrace with an empty program on each of the same tracepoints: the floor, what any
//! program there costs; then the floor of raw tracepoints (`raw_syscalls:sys_enter` and
//! `sys_exit`, empty, and reading the arguments a capture needs), the design issue 15 asks
//! to weigh. Reports, per program, the runs and nanoseconds per request, and the
//! totals. Run as root: `cargo bench -p telegen --bench kernel_cost`
//! (`TELEGEN_BENCH_REQUESTS`, default 20000; `TELEGEN_BENCH_RPS`, default 2000 in all).

#[path = "../tests/support/mod.rs"]
mod support;

mod measure;

use measure::{BpfStats, Stats, delta, h2load_succeeded, ids, stats_of_new};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{agent_log, free_port, scratch, start_agent, terminate};

/// Runs h2load: the requests that succeeded.
fn load(url: &str, requests: u64, rps: u64) -> u64 {
    let clients = 4;
    let out = Command::new("h2load")
        .args(["--h1", "-t1", &format!("-c{clients}")])
        .args(["-n", &requests.to_string()])
        .args(["--rps", &(rps / clients).max(1).to_string()])
        .arg(url)
        .output()
        .expect("h2load (nghttp2-client, installed by cross/bootstrap.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = h2load_succeeded(&text);
    assert!(ok > 0, "h2load failed: {text}");
    ok
}

/// One traced run with the agent's join `join`: per-program deltas, requests, and the
/// tracepoints (group:name) its programs attached to.
fn with_agent(url: &str, requests: u64, rps: u64, join: &str) -> (Stats, u64, Vec<String>) {
    let before = ids();
    let mut agent = start_agent(
        &["--capture-join", join, "--console"],
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    std::thread::sleep(Duration::from_millis(500));
    let s0 = stats_of_new(&before);
    let ok = load(url, requests, rps);
    let s1 = stats_of_new(&before);
    let log = agent_log(&agent);
    terminate(&mut agent, Duration::from_secs(10));
    assert!(
        log.contains(&format!("by the {join} join")),
        "the agent did not take the {join} join: {log}"
    );
    (delta(&s1, &s0), ok, hooks_of(&log))
}

/// The floor: bpftrace with an empty program on each tracepoint of `hooks`.
fn floor(url: &str, requests: u64, rps: u64, hooks: &[String]) -> (Stats, u64) {
    let script: String = hooks
        .iter()
        .map(|h| format!("tracepoint:{h} {{}}\n"))
        .collect();
    let before = ids();
    let mut bt = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace (installed by cross/bootstrap.sh)");
    // bpftrace names every program alike: count them by id.
    let started = std::time::Instant::now();
    while ids().difference(&before).count() < hooks.len() {
        assert!(bt.try_wait().unwrap().is_none(), "bpftrace ended: {script}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "bpftrace did not attach"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let s0 = stats_of_new(&before);
    let ok = load(url, requests, rps);
    let s1 = stats_of_new(&before);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let _ = bt.wait();
    (delta(&s1, &s0), ok)
}

/// The agent's kernel object: the benchmark floors' raw tracepoint programs are in it
/// (`ebpf/programs/src/floor.rs`), never loaded by the agent.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/telegen-ebpf"));

/// The raw-tracepoint floor: `enter`/`exit` on `raw_syscalls:sys_enter`/`sys_exit` (every
/// system call of every process runs them) and an empty program on each other tracepoint
/// of `hooks`.
fn raw_floor(
    url: &str,
    requests: u64,
    rps: u64,
    hooks: &[String],
    (enter, exit): (&str, &str),
) -> (Stats, u64) {
    use aya::programs::RawTracePoint;
    let before = ids();
    let mut ebpf = aya::EbpfLoader::new()
        .load(OBJECT)
        .expect("the agent's kernel object loads");
    for (prog, points) in [
        (enter, vec!["sys_enter".to_string()]),
        (exit, vec!["sys_exit".to_string()]),
        (
            "floor_raw_other",
            hooks
                .iter()
                .filter(|h| !h.starts_with("syscalls:"))
                .map(|h| h.split(':').nth(1).unwrap_or(h).to_string())
                .collect(),
        ),
    ] {
        let p: &mut RawTracePoint = ebpf
            .program_mut(prog)
            .unwrap_or_else(|| panic!("{prog} in the object"))
            .try_into()
            .unwrap();
        p.load().unwrap_or_else(|e| panic!("{prog}: {e}"));
        for point in points {
            p.attach(&point)
                .unwrap_or_else(|e| panic!("{prog} on {point}: {e}"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let s0 = stats_of_new(&before);
    let ok = load(url, requests, rps);
    let s1 = stats_of_new(&before);
    drop(ebpf);
    (delta(&s1, &s0), ok)
}

/// The tracepoints (group:name) the agent's programs attach to, from its log.
fn hooks_of(log: &str) -> Vec<String> {
    let list = log
        .lines()
        .find_map(|l| l.split("attached tracepoints: ").nth(1))
        .and_then(|l| l.split(" (records through").next())
        .expect("the agent's list of attached tracepoints");
    list.split(", ")
        .filter(|n| !n.starts_with("ssl_") && !n.contains(' '))
        .map(|n| {
            let group = if n.starts_with("sys_") {
                "syscalls"
            } else if n.starts_with("sched_") {
                "sched"
            } else if n.starts_with("sock_") || n == "inet_sock_set_state" {
                "sock"
            } else {
                "tcp"
            };
            format!("{group}:{n}")
        })
        .collect()
}

fn main() {
    let requests: u64 = std::env::var("TELEGEN_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rps: u64 = std::env::var("TELEGEN_BENCH_RPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let stats = BpfStats::enable();
    let dir = scratch("bench-kernel", "nginx");
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
    load(&url, 1000, 5000); // warm-up

    let (socket, n_socket, socket_hooks) = with_agent(&url, requests, rps, "socket");
    let (descriptor, n_descriptor, descriptor_hooks) =
        with_agent(&url, requests, rps, "descriptor");
    let mut hooks: BTreeSet<String> = socket_hooks.into_iter().collect();
    hooks.extend(descriptor_hooks);
    let hooks: Vec<String> = hooks.into_iter().collect();
    let (empty, n_empty) = floor(&url, requests, rps, &hooks);
    let (raw, n_raw) = raw_floor(
        &url,
        requests,
        rps,
        &hooks,
        ("floor_raw_enter", "floor_raw_exit"),
    );
    let (raw_args, n_raw_args) = raw_floor(
        &url,
        requests,
        rps,
        &hooks,
        ("floor_raw_args_enter", "floor_raw_args_exit"),
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let _ = nginx.wait();
    drop(stats);

    println!(
        "h2load --h1 -c4 at {rps} requests/s against nginx (1 worker), loopback, {requests} \
         requests per run; kernel time per request (both ends: h2load's and nginx's calls)"
    );
    println!(
        "| program (name cut at 15 bytes) | socket join: runs, ns per request | descriptor join: runs, ns per request |"
    );
    println!("|---|---|---|");
    let mut names: BTreeSet<&String> = socket.keys().collect();
    names.extend(descriptor.keys());
    let cell = |s: &Stats, n: u64, k: &String| match s.get(k) {
        Some((r, ns)) => format!("{:.2}, {:.0}", *r as f64 / n as f64, *ns as f64 / n as f64),
        None => "–".into(),
    };
    for k in names {
        println!(
            "| {k} | {} | {} |",
            cell(&socket, n_socket, k),
            cell(&descriptor, n_descriptor, k)
        );
    }
    let total = |s: &Stats, n: u64| {
        let ns: u64 = s.values().map(|v| v.1).sum();
        let runs: u64 = s.values().map(|v| v.0).sum();
        format!(
            "**{:.2}, {:.0}**",
            runs as f64 / n as f64,
            ns as f64 / n as f64
        )
    };
    println!(
        "| **all** | {} | {} |",
        total(&socket, n_socket),
        total(&descriptor, n_descriptor)
    );
    println!(
        "| floor: an empty bpftrace program on each of the {} tracepoints | {} | |",
        hooks.len(),
        total(&empty, n_empty)
    );
    let others = hooks.iter().filter(|h| !h.starts_with("syscalls:")).count();
    println!(
        "| raw tracepoints: empty programs on sys_enter and sys_exit (every call) and the {others} others | {} | |",
        total(&raw, n_raw)
    );
    println!(
        "| raw tracepoints: the same, reading a traced call's number and three arguments from pt_regs | {} | |",
        total(&raw_args, n_raw_args)
    );
}
