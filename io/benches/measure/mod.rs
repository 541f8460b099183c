//! What the benchmarks share: a native OTLP/HTTP span sink, the kernel's per-program
//! statistics, and the CPU time and context switches of processes, threads and the system.

#![allow(dead_code)]

use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// What the sink has received so far.
#[derive(Default)]
struct Got {
    spans: u64,
    trace_requests: u64,
    /// Bytes on the wire (bodies as sent, gzip included).
    bytes: u64,
    /// Requests it could not read or decode (each answered 400).
    bad: u64,
    /// The metric requests, as OTLP JSON (`{"path", "request"}`, as the Python receiver
    /// writes them), for the test support's readers.
    metrics: Vec<Value>,
    /// The threads that served connections (their CPU is the sink's, not the agent's).
    tids: BTreeSet<i32>,
}

/// A native OTLP/HTTP receiver for benchmarks: it keeps up with an agent exporting every span
/// of 100k requests a second (the Python receiver does not), decodes every request with
/// prost (so a malformed export shows as `bad`), counts spans and keeps the metric requests.
pub struct Sink {
    port: u16,
    got: Arc<Mutex<Got>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Got::default()));
        let shared = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let got = shared.clone();
                std::thread::spawn(move || serve(conn, &got));
            }
        });
        Sink { port, got }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> u64 {
        self.got.lock().unwrap().spans
    }

    pub fn trace_requests(&self) -> u64 {
        self.got.lock().unwrap().trace_requests
    }

    pub fn bytes(&self) -> u64 {
        self.got.lock().unwrap().bytes
    }

    pub fn bad(&self) -> u64 {
        self.got.lock().unwrap().bad
    }

    pub fn metric_requests(&self) -> Vec<Value> {
        self.got.lock().unwrap().metrics.clone()
    }

    /// CPU time (ns) of the threads that have served connections.
    pub fn cpu_ns(&self) -> u64 {
        let pid = std::process::id();
        let tids = self.got.lock().unwrap().tids.clone();
        tids.iter()
            .map(|t| schedstat_ns(&format!("/proc/{pid}/task/{t}/schedstat")))
            .sum()
    }
}

/// One connection: HTTP/1.1 requests, kept alive, until the peer closes.
fn serve(mut conn: TcpStream, got: &Mutex<Got>) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    got.lock().unwrap().tids.insert(tid);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        // Headers.
        let (head_len, path, length, gzip) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let header = |name: &str| {
                        req.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let gzip = header("content-encoding").is_some_and(|v| v == "gzip");
                    break (n, req.path.unwrap_or("").to_string(), length, gzip);
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => {
                    got.lock().unwrap().bad += 1;
                    return;
                }
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_len + length {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buf[head_len..head_len + length];
        let ok = take(&path, body, gzip, got);
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
        buf.drain(..head_len + length);
    }
}

/// Decodes one export request into `got`: false if it is not a valid one.
fn take(path: &str, body: &[u8], gzip: bool, got: &Mutex<Got>) -> bool {
    let mut plain = Vec::new();
    let bytes = if gzip {
        if GzDecoder::new(body).read_to_end(&mut plain).is_err() {
            got.lock().unwrap().bad += 1;
            return false;
        }
        &plain[..]
    } else {
        body
    };
    let mut g = got.lock().unwrap();
    g.bytes += body.len() as u64;
    match path {
        "/v1/traces" => match ExportTraceServiceRequest::decode(bytes) {
            Ok(req) => {
                g.trace_requests += 1;
                g.spans += req
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len() as u64)
                    .sum::<u64>();
                true
            }
            Err(_) => {
                g.bad += 1;
                false
            }
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(bytes) {
            Ok(req) => {
                let request = serde_json::to_value(&req).unwrap_or(Value::Null);
                g.metrics.push(json!({ "path": path, "request": request }));
                true
            }
            Err(_) => {
                g.bad += 1;
                false
            }
        },
        // Logs and anything else: accepted, not counted.
        _ => true,
    }
}

/// Per program (by name): (runs, nanoseconds) so far.
pub type Stats = BTreeMap<String, (u64, u64)>;

/// Every loaded BPF program: id, name, runs and run time (`kernel.bpf_stats_enabled`).
pub fn programs() -> Vec<(u64, String, u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool (installed by cross/bootstrap.sh)");
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["id"].as_u64().unwrap_or(0),
                p["name"].as_str().unwrap_or("?").to_string(),
                p["run_cnt"].as_u64().unwrap_or(0),
                p["run_time_ns"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The ids of the programs loaded now.
pub fn ids() -> BTreeSet<u64> {
    programs().into_iter().map(|p| p.0).collect()
}

/// The statistics of the programs whose ids are not in `before`.
pub fn stats_of_new(before: &BTreeSet<u64>) -> Stats {
    let mut s = Stats::new();
    for (id, name, runs, ns) in programs() {
        if !before.contains(&id) {
            let e = s.entry(name).or_default();
            e.0 += runs;
            e.1 += ns;
        }
    }
    s
}

/// Difference of two snapshots (programs that did not run left out).
pub fn delta(after: &Stats, before: &Stats) -> Stats {
    after
        .iter()
        .map(|(k, (r, n))| {
            let (r0, n0) = before.get(k).copied().unwrap_or((0, 0));
            (k.clone(), (r - r0, n - n0))
        })
        .filter(|(_, (r, _))| *r > 0)
        .collect()
}

/// Total run time (ns) of a snapshot.
pub fn run_ns(s: &Stats) -> u64 {
    s.values().map(|v| v.1).sum()
}

/// Turns the kernel's per-program statistics on; `Drop` puts the old setting back.
pub struct BpfStats(String);

impl BpfStats {
    pub fn enable() -> BpfStats {
        let was = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .unwrap_or_else(|_| "0".into());
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").expect("bpf_stats_enabled");
        BpfStats(was.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time and context switches, summed over its threads.
#[derive(Clone, Copy, Default, Debug)]
pub struct Usage {
    pub cpu_ns: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, o: Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(o.cpu_ns),
            voluntary: self.voluntary.saturating_sub(o.voluntary),
            involuntary: self.involuntary.saturating_sub(o.involuntary),
        }
    }
}

/// [`Usage`] of process `pid` now, from `/proc/PID/task/*/{schedstat,status}`.
pub fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return u;
    };
    for t in tasks.flatten() {
        let dir = t.path();
        u.cpu_ns += schedstat_ns(&dir.join("schedstat").display().to_string());
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        u.voluntary += field("voluntary_ctxt_switches:");
        u.involuntary += field("nonvoluntary_ctxt_switches:");
    }
    u
}

/// [`Usage`] of a child that has ended, reaped with `wait4` (its whole life).
pub fn reap(pid: u32) -> Usage {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, pid as i32, "wait4 of {pid}");
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Usage {
        cpu_ns: ns(ru.ru_utime) + ns(ru.ru_stime),
        voluntary: ru.ru_nvcsw as u64,
        involuntary: ru.ru_nivcsw as u64,
    }
}

/// Busy time of the whole machine (all CPUs, ns): `/proc/stat`'s first line less idle and
/// iowait.
pub fn system_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    busy * 1_000_000_000 / hz
}

/// The pids of `parent`'s children.
pub fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Percentile `p` (0–100) of `sorted` (ascending), nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The requests h2load's summary says succeeded (0 if it has none).
pub fn h2load_succeeded(text: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" succeeded")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
