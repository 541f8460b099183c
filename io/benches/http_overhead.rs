//! What HTTP request tracing costs a busy server, as its users meet it (a benchmark, not a
//! test).
//!
//! nginx (one worker) on loopback, in one run:
//! - saturation: `wrk -t1` as fast as it goes, without the agent, with it exporting every span,
//!   with it sampling 1 % of traces, and without it again (the baseline is the mean of the
//!   two runs without it);
//! - fixed rates of 25 % and 50 % of that baseline (`h2load --rps`), each without the agent,
//!   with 1 % sampling and with every span exported.
//!
//! Spans and metrics go to a native OTLP/HTTP sink in this process (`measure::Sink`: prost
//! decodes every request), which keeps up with every span of 100k requests a second.
//! Reports requests/s, p50/p99 latency, the agent's CPU (user+sys) and its programs' kernel
//! time (`kernel.bpf_stats_enabled`) per request, the machine's busy time per request, CPU
//! per request and context switches of nginx and of the load generator, the agent's own
//! context switches (its wake-ups), the spans exported and every drop.
//! Run as root: `cargo bench -p telegen --bench http_overhead` (`TELEGEN_BENCH_SECONDS`,
//! default 10, per run; `TELEGEN_BENCH_CONNECTIONS`, default 8).

#[path = "../tests/support/mod.rs"]
mod support;

mod measure;

use measure::{
    BpfStats, Sink, Usage, children, delta, h2load_succeeded, ids, percentile, reap, run_ns,
    stats_of_new, system_busy_ns, usage,
};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{attr, free_port, latest, points, scratch, start_agent, status_kib, terminate};

/// The load of one run.
#[derive(Clone, Copy)]
enum Load {
    /// wrk, as fast as it goes.
    Saturate,
    /// h2load at this many requests a second in all.
    Paced(u64),
}

/// What the load generator reported.
struct Served {
    requests: u64,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    usage: Usage,
}

/// wrk's latency figure ("61.00us", "1.23ms", "2.00s") in µs.
fn wrk_us(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => f64::NAN,
    }
}

// The child is reaped by `reap` (wait4, for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn generate(url: &str, load: Load, secs: u64, conns: u32, log: &std::path::Path) -> Served {
    let mut cmd = match load {
        Load::Saturate => {
            let mut c = Command::new("wrk");
            c.args([
                "-t1",
                &format!("-c{conns}"),
                &format!("-d{secs}s"),
                "--latency",
                url,
            ]);
            c
        }
        Load::Paced(rps) => {
            let mut c = Command::new("h2load");
            c.args([
                "--h1",
                "-t1",
                &format!("-c{conns}"),
                "-D",
                &secs.to_string(),
            ])
            .args(["--rps", &(rps / u64::from(conns)).max(1).to_string()])
            .arg(format!("--log-file={}", log.display()))
            .arg(url);
            c
        }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrk and h2load (installed by cross/bootstrap.sh)");
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let usage = reap(child.id());
    match load {
        Load::Saturate => {
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
            let pct = |p: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(p))
                    .map_or(f64::NAN, |v| wrk_us(v.trim()))
            };
            assert!(requests > 0, "wrk failed: {text}");
            Served {
                requests,
                rate,
                p50_us: pct("50%"),
                p99_us: pct("99%"),
                usage,
            }
        }
        Load::Paced(_) => {
            let requests = h2load_succeeded(&text);
            assert!(requests > 0, "h2load failed: {text}");
            // start (µs since the epoch), status, µs to the end of the response
            let mut lat: Vec<u64> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
                .collect();
            lat.sort_unstable();
            let _ = std::fs::remove_file(log);
            Served {
                requests,
                rate: requests as f64 / secs as f64,
                p50_us: percentile(&lat, 50.0) as f64,
                p99_us: percentile(&lat, 99.0) as f64,
                usage,
            }
        }
    }
}

/// The agent's side of a traced run.
#[derive(Default)]
struct Agent {
    usage: Usage,
    bpf_ns: u64,
    hwm_mib: f64,
    spans: u64,
    bad: u64,
    sink_ns: u64,
    counted: u64,
    drops: Vec<(&'static str, u64)>,
}

/// One run; `sampler` None runs without the agent.
struct Run {
    served: Served,
    wall: f64,
    nginx: Usage,
    system_ns: u64,
    agent: Option<Agent>,
}

impl Run {
    fn per_req(&self, ns: u64) -> f64 {
        ns as f64 / 1e3 / self.served.requests as f64
    }
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.wall
    }
}

const REASONS: [&str; 4] = [
    "kernel_ring_full",
    "span_queue_full",
    "export_queue_full",
    "http_table_full",
];

fn run(
    url: &str,
    load: Load,
    secs: u64,
    conns: u32,
    worker: u32,
    sampler: Option<(&str, Option<&str>)>,
    log: &std::path::Path,
) -> Run {
    let sink = sampler.map(|_| Sink::start());
    let before = ids();
    let mut agent = sampler.map(|(s, arg)| {
        let endpoint = sink.as_ref().unwrap().endpoint();
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER", s),
        ];
        if let Some(a) = arg {
            env.push(("OTEL_TRACES_SAMPLER_ARG", a));
        }
        let a = start_agent(&["--metric-interval", "2000"], &env);
        std::thread::sleep(Duration::from_millis(300));
        a
    });
    let agent_pid = agent.as_ref().map(|a| a.0.id());
    let agent0 = agent_pid.map(usage).unwrap_or_default();
    let bpf0 = stats_of_new(&before);
    let nginx0 = usage(worker);
    let sys0 = system_busy_ns();
    let sink0 = sink.as_ref().map_or(0, Sink::cpu_ns);
    let t0 = Instant::now();
    let served = generate(url, load, secs, conns, log);
    let wall = t0.elapsed().as_secs_f64();
    let system_ns = system_busy_ns() - sys0;
    let nginx = usage(worker) - nginx0;
    let bpf = delta(&stats_of_new(&before), &bpf0);
    let agent = agent.as_mut().map(|a| {
        let pid = agent_pid.unwrap();
        let u = usage(pid) - agent0;
        let hwm = status_kib(pid, "VmHWM:");
        let sink = sink.as_ref().unwrap();
        let sink_ns = sink.cpu_ns() - sink0;
        std::thread::sleep(Duration::from_millis(300));
        terminate(a, Duration::from_secs(10));
        let metrics = sink.metric_requests();
        let counted = points(&metrics, "http.server.request.duration")
            .iter()
            .filter(|p| attr(&p.attrs, "process.executable.name") == Some("nginx"))
            .map(|p| p.value)
            .max()
            .unwrap_or(0);
        let dropped = points(&metrics, "telegen.agent.dropped");
        let drops = REASONS
            .iter()
            .map(|r| {
                (
                    *r,
                    latest(&dropped, &[("reason", r)]).map_or(0, |p| p.value),
                )
            })
            .collect();
        Agent {
            usage: u,
            bpf_ns: run_ns(&bpf),
            hwm_mib: hwm as f64 / 1024.0,
            spans: sink.spans(),
            bad: sink.bad(),
            sink_ns,
            counted,
            drops,
        }
    });
    Run {
        served,
        wall,
        nginx,
        system_ns,
        agent,
    }
}

/// A cell that only the runs with the agent fill.
fn with_agent(r: &Run, f: impl Fn(&Run, &Agent) -> String) -> String {
    r.agent.as_ref().map_or("–".into(), |a| f(r, a))
}

/// The rows every table has, one column per run.
fn rows(runs: &[&Run], base: &Run) {
    let line = |name: &str, f: &dyn Fn(&Run) -> String| {
        let cells: Vec<String> = runs.iter().map(|r| f(r)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    line("requests/s", &|r| format!("{:.0}", r.served.rate));
    line("latency p50 / p99 (µs)", &|r| {
        format!("{:.0} / {:.0}", r.served.p50_us, r.served.p99_us)
    });
    line("p99 against the run without the agent", &|r| {
        format!(
            "{:+.1} %",
            100.0 * (r.served.p99_us / base.served.p99_us - 1.0)
        )
    });
    line("agent CPU (user+sys) per request (µs)", &|r| {
        with_agent(r, |r, a| format!("{:.2}", r.per_req(a.usage.cpu_ns)))
    });
    line("its programs' kernel time per request (µs)", &|r| {
        with_agent(r, |r, a| format!("{:.2}", r.per_req(a.bpf_ns)))
    });
    line("**added CPU per request: the two summed (µs)**", &|r| {
        with_agent(r, |r, a| {
            format!("**{:.2}**", r.per_req(a.usage.cpu_ns + a.bpf_ns))
        })
    });
    line("machine busy per request, all CPUs (µs)", &|r| {
        format!("{:.2}", r.per_req(r.system_ns))
    });
    line(
        "the same less the sink's CPU, against the run without the agent (µs)",
        &|r| {
            with_agent(r, |r, a| {
                format!(
                    "{:+.2}",
                    r.per_req(r.system_ns.saturating_sub(a.sink_ns)) - base.per_req(base.system_ns)
                )
            })
        },
    );
    line("nginx CPU per request (µs)", &|r| {
        format!("{:.2}", r.per_req(r.nginx.cpu_ns))
    });
    line("nginx context switches/s, voluntary / involuntary", &|r| {
        format!(
            "{:.0} / {:.0}",
            r.per_sec(r.nginx.voluntary),
            r.per_sec(r.nginx.involuntary)
        )
    });
    line("load generator CPU per request (µs)", &|r| {
        format!("{:.2}", r.per_req(r.served.usage.cpu_ns))
    });
    line("load generator context switches/s, vol. / invol.", &|r| {
        format!(
            "{:.0} / {:.0}",
            r.per_sec(r.served.usage.voluntary),
            r.per_sec(r.served.usage.involuntary)
        )
    });
    line(
        "agent context switches/s (its wake-ups), vol. / invol.",
        &|r| {
            with_agent(r, |r, a| {
                format!(
                    "{:.0} / {:.0}",
                    r.per_sec(a.usage.voluntary),
                    r.per_sec(a.usage.involuntary)
                )
            })
        },
    );
    line("agent peak RSS (MiB)", &|r| {
        with_agent(r, |_, a| format!("{:.1}", a.hwm_mib))
    });
    line(
        "requests / spans exported / requests in the duration histogram",
        &|r| {
            with_agent(r, |r, a| {
                format!("{} / {} / {}", r.served.requests, a.spans, a.counted)
            })
        },
    );
    line("dropped", &|r| {
        with_agent(r, |_, a| {
            let d: Vec<String> = a
                .drops
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            let bad = if a.bad > 0 {
                format!(", {} bad exports", a.bad)
            } else {
                String::new()
            };
            if d.is_empty() {
                format!("none{bad}")
            } else {
                format!("{}{bad}", d.join(", "))
            }
        })
    });
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
    let _stats = BpfStats::enable();
    let dir = scratch("bench-http", "nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let log = dir.join("h2load.log");
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
    let worker = *children(nginx.id())
        .first()
        .expect("nginx's worker process");
    let url = format!("http://127.0.0.1:{port}/api/items");
    let all = Some(("always_on", None));
    let one = Some(("parentbased_traceidratio", Some("0.01")));
    let go = |load, sampler| run(&url, load, secs, conns, worker, sampler, &log);
    go(Load::Saturate, None); // warm-up

    let base1 = go(Load::Saturate, None);
    let sat_all = go(Load::Saturate, all);
    let sat_one = go(Load::Saturate, one);
    let base2 = go(Load::Saturate, None);
    let baseline = (base1.served.rate + base2.served.rate) / 2.0;
    let paced: Vec<(u64, [Run; 3])> = [25u64, 50]
        .iter()
        .map(|pct| {
            let rps = (baseline * *pct as f64 / 100.0) as u64;
            (
                *pct,
                [
                    go(Load::Paced(rps), None),
                    go(Load::Paced(rps), one),
                    go(Load::Paced(rps), all),
                ],
            )
        })
        .collect();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(nginx.id() as i32, libc::SIGTERM) };
    let _ = nginx.wait();

    println!(
        "nginx (1 worker) on loopback; {secs} s per run, {conns} connections; spans of both ends"
    );
    println!();
    println!(
        "Saturation (wrk -t1 -c{conns}); baseline {baseline:.0} requests/s, the mean of the runs without the agent"
    );
    println!();
    println!(
        "| measure | without the agent (before) | every span exported | 1 % of traces sampled | without the agent (after) |"
    );
    println!("|---|---|---|---|---|");
    let ratio = |r: &Run| format!("{:.1} %", 100.0 * r.served.rate / baseline);
    println!(
        "| ratio to the baseline (goals: ≥ 70 % every span, ≥ 85 % 1 %) | {} | {} | {} | {} |",
        ratio(&base1),
        ratio(&sat_all),
        ratio(&sat_one),
        ratio(&base2)
    );
    rows(&[&base1, &sat_all, &sat_one, &base2], &base1);
    for (pct, [none, one, all]) in &paced {
        println!();
        println!(
            "Fixed rate: {pct} % of the baseline (h2load --h1 -t1 -c{conns}, {} requests/s offered); goals at 50 %: p99 within +10 %, added CPU ≤ 3 µs per request",
            (baseline * *pct as f64 / 100.0) as u64
        );
        println!();
        println!("| measure | without the agent | 1 % of traces sampled | every span exported |");
        println!("|---|---|---|---|");
        rows(&[none, one, all], none);
    }
}
