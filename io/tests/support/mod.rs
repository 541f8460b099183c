//! Helpers for the integration tests: the real agent binary, the Python OTLP receiver that
//! decodes with the official opentelemetry-proto package, and readers of what it received.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_telegen");

/// The Python with opentelemetry-proto that cross/bootstrap.sh installs.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TELEGEN_TEST_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/telegen/venv/bin/python")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The OTLP receiver and the file it records into.
pub struct Receiver {
    pub port: u16,
    pub out: PathBuf,
    _proc: Proc,
}

impl Receiver {
    pub fn start(name: &str) -> Receiver {
        Self::start_with(name, 0, &[])
    }

    /// A receiver on `port` (0: any) with extra arguments (`--script`, `--tls`, ...).
    pub fn start_with(name: &str, port: u16, args: &[&str]) -> Receiver {
        let out = std::env::temp_dir().join(format!("telegen-{name}-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&out);
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/otlp_receiver.py"
        );
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver (run cross/bootstrap.sh first)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("receiver prints its port");
        Receiver {
            port,
            out,
            _proc: Proc(child),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until at least `n` requests arrived (or `limit` passes); returns them.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.requests();
            if r.len() >= n || start.elapsed() > limit {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every request received so far. The receiver may be writing a line as this reads: only
    /// complete lines (ending in a newline) are taken.
    pub fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("receiver writes JSON"))
            .collect()
    }
}

/// A TCP port on loopback that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A file in a fresh per-test temporary directory.
pub fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("telegen-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Sum over the series of the latest export of a counter, filtered by attributes.
pub fn latest_total(requests: &[Value], name: &str, want: &[(&str, &str)]) -> u64 {
    let pts = points(requests, name);
    let last = pts.iter().map(|p| p.time).max().unwrap_or(0);
    pts.iter()
        .filter(|p| p.time == last)
        .filter(|p| want.iter().all(|(k, v)| attr(&p.attrs, k) == Some(*v)))
        .map(|p| p.value)
        .sum()
}

fn agent_log_path(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("telegen-agent-{pid}.log"))
}

/// What the agent started with [`start_agent`] wrote on stderr so far.
pub fn agent_log(p: &Proc) -> String {
    std::fs::read_to_string(agent_log_path(p.0.id())).unwrap_or_default()
}

/// Starts the agent with `args` and `env`, waiting until its programs are attached.
pub fn start_agent(args: &[&str], env: &[(&str, &str)]) -> Proc {
    start_agent_to(args, env, Stdio::null())
}

/// As [`start_agent`], with the agent's stdout sent to `stdout`.
///
/// Unless `args` choose otherwise, the agent runs with `--seccomp kill`: every test then also
/// proves that the steady state makes no system call outside the filter's list (the agent
/// would die of SIGSYS and the test see it); with `--cloud-metadata off`; and with the
/// `--capture-join` that `TELEGEN_TEST_CAPTURE_JOIN` names, if set (the suite runs the L7
/// tests again with the descriptor join that kernels before 6.4 get).
pub fn start_agent_to(args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Proc {
    let mut cmd = Command::new(AGENT);
    cmd.args(args).stdout(stdout).stderr(Stdio::piped());
    if let Ok(join) = std::env::var("TELEGEN_TEST_CAPTURE_JOIN")
        && !args.contains(&"--capture-join")
    {
        cmd.args(["--capture-join", &join]);
    }
    if !args.contains(&"--seccomp") {
        cmd.args(["--seccomp", "kill"]);
    }
    // Nothing leaves loopback: the cloud metadata address is asked only where a test says.
    if !args.contains(&"--cloud-metadata") {
        cmd.args(["--cloud-metadata", "off"]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the agent");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = agent_log_path(child.id());
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log_path).unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[agent] {line}");
            let _ = writeln!(log, "{line}");
            if line.contains("attached tracepoints") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the agent attaches its programs");
    Proc(child)
}

/// Sends SIGTERM and waits for the exit status, at most `limit`.
pub fn terminate(p: &mut Proc, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the agent did not exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attribute list of an OTLP JSON object as (key, value-as-string) pairs.
pub fn attrs(v: &Value) -> Vec<(String, String)> {
    v["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let val = &kv["value"];
                    let s = val
                        .get("stringValue")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            val.get("intValue")
                                .map(|i| i.as_str().map_or(i.to_string(), str::to_string))
                        })
                        .or_else(|| val.get("boolValue").map(|b| b.to_string()))
                        .unwrap_or_default();
                    (kv["key"].as_str().unwrap_or("").to_string(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn attr<'a>(a: &'a [(String, String)], key: &str) -> Option<&'a str> {
    a.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// One data point of a metric, as received: its resource, attributes (with its resource's
/// `process.*` ones) and value.
#[derive(Debug, Clone)]
pub struct Point {
    pub resource: Vec<(String, String)>,
    pub attrs: Vec<(String, String)>,
    pub time: u64,
    /// Sum value, or histogram count.
    pub value: u64,
    pub raw: Value,
}

fn as_u64(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

/// Every data point of metric `name` in every request received.
pub fn points(requests: &[Value], name: &str) -> Vec<Point> {
    let mut out = Vec::new();
    for r in requests {
        let Some(rms) = r["request"]["resourceMetrics"].as_array() else {
            continue;
        };
        for rm in rms {
            let resource = attrs(&rm["resource"]);
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let (dps, hist) = match (m.get("sum"), m.get("histogram")) {
                        (Some(s), _) => (&s["dataPoints"], false),
                        (_, Some(h)) => (&h["dataPoints"], true),
                        _ => continue,
                    };
                    for dp in dps.as_array().into_iter().flatten() {
                        let value = if hist {
                            as_u64(&dp["count"])
                        } else {
                            as_u64(&dp["asInt"])
                        };
                        // A process's points carry its pid and name on their resource:
                        // filters see them as the point's own.
                        let mut a = attrs(dp);
                        a.extend(
                            resource
                                .iter()
                                .filter(|(k, _)| k.starts_with("process."))
                                .cloned(),
                        );
                        out.push(Point {
                            resource: resource.clone(),
                            attrs: a,
                            time: as_u64(&dp["timeUnixNano"]),
                            value,
                            raw: dp.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The latest point (cumulative value) of the series whose attributes include `want`.
pub fn latest(points: &[Point], want: &[(&str, &str)]) -> Option<Point> {
    points
        .iter()
        .filter(|p| want.iter().all(|(k, v)| attr(&p.attrs, k) == Some(*v)))
        .max_by_key(|p| p.time)
        .cloned()
}

/// A Python TCP server in its own process: accepts, reads to EOF, answers, closes
/// (a client's reset ends that connection early).
pub fn start_server() -> (Proc, u16) {
    let script = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    try:
        while c.recv(4096):
            pass
        c.sendall(b"bye")
    except ConnectionResetError:
        pass
    c.close()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line.trim().parse().unwrap())
}

pub fn connect_once(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"hello").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"bye");
}

/// A `/proc/PID/status` value in KiB (`VmHWM:`, `VmRSS:`); 0 when unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Time a single-threaded process spent on CPU, in seconds, from `/proc/PID/schedstat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

/// One span as received.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub resource: Vec<(String, String)>,
    pub name: String,
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub attrs: Vec<(String, String)>,
    pub status: String,
}

impl SpanSeen {
    pub fn attr(&self, k: &str) -> Option<&str> {
        attr(&self.attrs, k)
    }
    pub fn process(&self) -> &str {
        attr(&self.resource, "process.executable.name").unwrap_or("")
    }
}

pub fn spans(requests: &[Value]) -> Vec<SpanSeen> {
    let mut out = Vec::new();
    for r in requests {
        for rs in r["request"]["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let resource = attrs(&rs["resource"]);
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
                    out.push(SpanSeen {
                        resource: resource.clone(),
                        name: text("name"),
                        kind: text("kind"),
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent: text("parentSpanId"),
                        attrs: attrs(s),
                        status: s["status"]["code"].as_str().unwrap_or("").to_string(),
                    });
                }
            }
        }
    }
    out
}

/// Samples of histogram `metric` over every series whose attributes include `want` and
/// whose `error.type` is `error`: each series' latest (cumulative) count, added up.
pub fn histogram_count(
    requests: &[Value],
    metric: &str,
    want: &[(&str, &str)],
    error: Option<&str>,
) -> u64 {
    type Latest = (Vec<(String, String)>, u64, u64);
    let mut seen: Vec<Latest> = Vec::new();
    for p in points(requests, metric).iter().filter(|p| {
        want.iter().all(|(k, v)| attr(&p.attrs, k) == Some(*v))
            && attr(&p.attrs, "error.type") == error
    }) {
        // A series is its point attributes and its process: the resource of a process
        // that ended says less of it (its path is no longer known), the series is the same.
        let mut key = attrs(&p.raw);
        key.extend(p.attrs.iter().filter(|(k, _)| k == "process.pid").cloned());
        match seen.iter_mut().find(|(a, _, _)| *a == key) {
            Some(s) if s.1 < p.time => {
                s.1 = p.time;
                s.2 = p.value;
            }
            Some(_) => {}
            None => seen.push((key, p.time, p.value)),
        }
    }
    seen.iter().map(|s| s.2).sum()
}

/// Waits until `child` listens on every one of `ports`, at most 10 s. False when it exited
/// first: a port `free_port` handed out was taken by another test meanwhile, and the caller
/// tries again with new ones.
pub fn serves(child: &mut Child, ports: &[u16]) -> bool {
    let started = Instant::now();
    while ports
        .iter()
        .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
    {
        if child.try_wait().ok().flatten().is_some() || started.elapsed() > Duration::from_secs(10)
        {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Waits until something listens on loopback `port`, at most 10 s; `what` names it.
pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The latest `telegen.agent.dropped` of each of `reasons` is there and zero.
pub fn assert_no_drops(requests: &[Value], reasons: &[&str]) {
    let dropped = points(requests, "telegen.agent.dropped");
    for reason in reasons {
        let p =
            latest(&dropped, &[("reason", reason)]).unwrap_or_else(|| panic!("no {reason} series"));
        assert_eq!(p.value, 0, "no {reason} drops expected");
    }
}

/// The agent run by one test, exporting to a receiver of its own.
pub struct Traced {
    pub receiver: Receiver,
    pub agent: Proc,
}

impl Traced {
    /// A receiver, and the agent exporting to it with `env` besides the endpoint.
    pub fn start(test: &str, env: &[(&str, &str)]) -> Traced {
        let receiver = Receiver::start(test);
        let endpoint = receiver.endpoint();
        let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
        all.extend_from_slice(env);
        let agent = start_agent(&[], &all);
        Traced { receiver, agent }
    }

    /// Stops the agent, which must exit cleanly, and returns what the receiver decoded;
    /// none of `secrets` may appear in it.
    pub fn finish(mut self, secrets: &[&str]) -> Vec<Value> {
        let (status, _) = terminate(&mut self.agent, Duration::from_secs(5));
        assert!(status.success(), "exit status {status:?}");
        let requests = self.receiver.requests();
        for r in &requests {
            assert!(r.get("error").is_none(), "receiver could not decode: {r}");
            let text = r.to_string();
            for s in secrets {
                assert!(!text.contains(s), "{s:?} left the agent: {text}");
            }
        }
        requests
    }
}

/// The drop reasons of the protocol trackers after HTTP, and of the ring they read.
pub const PROTOCOL_DROPS: [&str; 4] = [
    "protocol_desync",
    "db_pipeline_full",
    "db_table_full",
    "kernel_ring_full",
];

/// A cgroup made for a test under the cgroup2 hierarchy, at `parts` (each a directory
/// below the last); removed, with the directories made for it, when dropped.
pub struct Cgroup {
    pub path: PathBuf,
    made: Vec<PathBuf>,
}

impl Cgroup {
    pub fn new(parts: &[String]) -> Cgroup {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let unified = mounts
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&"cgroup2"))
            .map(|f| f[1].to_string())
            .expect("a cgroup2 hierarchy (the unified one, or the only one)");
        let mut path = PathBuf::from(unified);
        let mut made = Vec::new();
        for p in parts {
            path.push(p);
            made.push(path.clone());
        }
        std::fs::create_dir_all(&path).expect("create a cgroup");
        Cgroup { path, made }
    }

    /// The shell words that move the shell into this cgroup.
    pub fn join(&self) -> String {
        format!("echo $$ > {} && ", self.path.join("cgroup.procs").display())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in self.made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `python3 -m http.server` on a free port, run by `sh -c "{prefix}exec …"` with `env`
/// (a cgroup's `join()`, or nothing).
pub fn http_server(prefix: &str, env: &[(&str, &str)]) -> (Proc, u16) {
    let port = free_port();
    let script = format!("{prefix}exec python3 -m http.server {port} --bind 127.0.0.1");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("python3 -m http.server");
    wait_for_port(port, "python3 -m http.server");
    (Proc(child), port)
}

/// One `curl -s` of `http://127.0.0.1:{port}/`, which must succeed.
pub fn curl_port(port: u16) {
    let ok = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .status()
        .expect("curl")
        .success();
    assert!(ok, "curl port {port}");
}

/// A Python helper of `tests/support` run with `args`, which prints its port first.
pub fn support_script(script: &str, args: &[&std::ffi::OsStr]) -> (Proc, u16) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let mut child = Command::new("python3")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the helper prints its port");
    (Proc(child), port)
}

/// nginx (one worker) on two fresh loopback ports, `port` plaintext and `tls_port` TLS with
/// a self-signed certificate made here; killed (SIGTERM: the master stops its workers) when
/// dropped.
pub struct Nginx {
    pub proc: Child,
    pub port: u16,
    pub tls_port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.proc.id() as i32, libc::SIGTERM) };
        let _ = self.proc.wait();
    }
}

/// Starts nginx with the directives and `server` blocks `http(dir, port, tls_port)` gives
/// for its `http` block (the certificate is `{dir}/cert.pem`, its key `{dir}/key.pem`;
/// `dir` is `scratch(test, "nginx")`, where the caller may put files first). Three tries:
/// another test may take a port `free_port` handed out first.
pub fn start_nginx(test: &str, http: &dyn Fn(&str, u16, u16) -> String) -> Nginx {
    (0..3)
        .find_map(|_| try_nginx(test, http))
        .expect("nginx did not start in three tries")
}

fn try_nginx(test: &str, http: &dyn Fn(&str, u16, u16) -> String) -> Option<Nginx> {
    let dir = scratch(test, "nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let d = dir.display().to_string();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let conf = format!(
        r#"
worker_processes 1;
daemon off;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
{}
}}
"#,
        http(&d, port, tls_port)
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // The workers run as nobody: they must be able to read what the directory holds.
    let _ = Command::new("chmod").args(["-R", "a+rX", &d]).status();
    let mut parent = dir.clone();
    while parent.pop() {
        let _ = Command::new("chmod")
            .args(["a+x", &parent.display().to_string()])
            .status();
        if parent == std::path::Path::new("/tmp") || parent.parent().is_none() {
            break;
        }
    }
    let mut child = Command::new("nginx")
        .args(["-c", &conf_path.display().to_string(), "-p", &d])
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (installed by cross/bootstrap.sh)");
    serves(&mut child, &[port, tls_port]).then_some(Nginx {
        proc: child,
        port,
        tls_port,
    })
}

/// Ids as the JSON mapping of protobuf writes bytes: base64.
pub fn b64(hex: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
