//! The exporter against a fault-injecting OTLP receiver (decoding with the official Python
//! opentelemetry-proto): a collector that is down, throttles, rejects, splits, stalls, resets
//! or answers garbage, TLS with the right CA, a wrong one and mTLS, and the disk spool across
//! a `kill -9`. The agent runs for real on the kernel; the data are real TCP connections.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const N: u64 = 6;

/// Makes N connections to a fresh server; returns its port (the server lives as long as Proc).
fn traffic() -> (Proc, u16) {
    let (server, port) = start_server();
    for _ in 0..N {
        connect_once(port);
    }
    (server, port)
}

/// The last cumulative count of server-side connections opened on `port`.
fn opened_on(requests: &[Value], port: u16) -> u64 {
    let p = port.to_string();
    latest(
        &points(requests, "telegen.tcp.connections.opened"),
        &[("server.port", &p), ("telegen.connection.side", "server")],
    )
    .map_or(0, |p| p.value)
}

fn write_config(test: &str, toml: &str) -> String {
    let path = scratch(test, "telegen.toml");
    // These tests script the collector's answers to metrics requests: spans (of other tests'
    // HTTP traffic) must not take them.
    let toml = if toml.contains("[traces]") {
        toml.to_string()
    } else {
        format!("{toml}\n[traces]\nenabled = false\n")
    };
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

fn script(test: &str, json: &str) -> String {
    let path = scratch(test, "script.json");
    std::fs::write(&path, json).unwrap();
    path.display().to_string()
}

/// Runs the agent against `endpoint` with a fast interval and fast retries, makes traffic,
/// waits `settle`, stops it cleanly and returns the server port.
fn run_agent(test: &str, endpoint: &str, extra_toml: &str, settle: Duration) -> u16 {
    let cfg = write_config(
        test,
        &format!(
            "[otlp]\nendpoint = \"{endpoint}\"\nretry_initial_ms = 200\nretry_max_ms = 400\n{extra_toml}"
        ),
    );
    let mut agent = start_agent(&["--metric-interval", "300", "-c", &cfg], &[]);
    let (_server, port) = traffic();
    std::thread::sleep(settle);
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    port
}

#[test]
fn collector_down_at_start_then_up_gets_everything() {
    assert!(is_root());
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let cfg = write_config(
        "down",
        &format!("[otlp]\nendpoint = \"{endpoint}\"\nretry_initial_ms = 200\nretry_max_ms = 400\n"),
    );
    let mut agent = start_agent(&["--metric-interval", "300", "-c", &cfg], &[]);
    let (_server, server_port) = traffic();
    std::thread::sleep(Duration::from_millis(1200));
    let up_at = std::time::SystemTime::now();
    let receiver = Receiver::start_with("down", port, &[]);
    receiver.wait_for(3, Duration::from_secs(5));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let requests = receiver.requests();
    assert_eq!(
        opened_on(&requests, server_port),
        N,
        "connections made while the collector was down"
    );
    // Batches built while it was down were kept and delivered, oldest first.
    let up_ns = up_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let times: Vec<u64> = requests
        .iter()
        .filter_map(|r| {
            points(std::slice::from_ref(r), "telegen.agent.events")
                .first()
                .map(|p| p.time)
        })
        .collect();
    assert!(
        times[0] < up_ns,
        "the first batch delivered dates from the outage"
    );
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in order: {times:?}"
    );
    let failures = latest_total(
        &requests,
        "telegen.agent.export.failures",
        &[("reason", "connection")],
    );
    assert!(failures >= 1, "connection failures counted");
}

#[test]
fn retry_after_is_honoured_and_everything_arrives() {
    assert!(is_root());
    let s = script(
        "retryafter",
        r#"[{"status": 503, "retry_after": "2"}, {"status": 429, "retry_after": "1"}]"#,
    );
    let receiver = Receiver::start_with("retryafter", 0, &["--script", &s]);
    let port = run_agent(
        "retryafter",
        &receiver.endpoint(),
        "",
        Duration::from_millis(4000),
    );
    let r = receiver.requests();
    let t: Vec<f64> = r.iter().map(|x| x["t"].as_f64().unwrap()).collect();
    assert!(t.len() >= 3, "{} requests", t.len());
    assert!(
        t[1] - t[0] >= 2.0,
        "nothing before Retry-After: 2 passed ({:.3} s)",
        t[1] - t[0]
    );
    assert!(
        t[2] - t[1] >= 1.0,
        "nothing before Retry-After: 1 passed ({:.3} s)",
        t[2] - t[1]
    );
    assert_eq!(opened_on(&r, port), N);
    assert_eq!(latest_total(&r, "telegen.agent.export.retries", &[]), 2);
    assert_eq!(
        latest_total(&r, "telegen.agent.dropped", &[("reason", "export_failed")]),
        0
    );
}

fn items(request: &Value) -> u64 {
    let mut n = 0;
    for rm in request["request"]["resourceMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten() {
                for kind in ["sum", "histogram", "gauge"] {
                    n += m[kind]["dataPoints"]
                        .as_array()
                        .map_or(0, |a| a.len() as u64);
                }
            }
        }
    }
    n
}

#[test]
fn rejections_splits_and_partial_success_are_counted() {
    assert!(is_root());
    let s = script(
        "reject",
        r#"[{"status": 400, "message": "metric name too long"}, {"status": 413}, {}, {}, {"partial": 3, "message": "too old"}]"#,
    );
    let receiver = Receiver::start_with("reject", 0, &["--script", &s]);
    run_agent(
        "reject",
        &receiver.endpoint(),
        "",
        Duration::from_millis(2500),
    );
    let r = receiver.requests();
    assert!(r.len() >= 6, "{} requests", r.len());
    // 413: the next two requests are the halves of the rejected one.
    let (whole, a, b) = (items(&r[1]), items(&r[2]), items(&r[3]));
    assert!(
        a > 0 && b > 0 && a + b == whole,
        "halves {a} + {b} of {whole}"
    );
    let last = &r[r.len() - 1..];
    assert_eq!(
        latest_total(
            last,
            "telegen.agent.dropped",
            &[("reason", "export_rejected")]
        ),
        items(&r[0])
    );
    assert_eq!(
        latest_total(
            last,
            "telegen.agent.dropped",
            &[("reason", "export_partial_rejected")]
        ),
        3
    );
    assert_eq!(
        latest_total(
            last,
            "telegen.agent.export.failures",
            &[("reason", "status_4xx")]
        ),
        2
    );
}

#[test]
fn stalls_resets_and_garbage_do_not_stop_the_agent() {
    assert!(is_root());
    let s = script(
        "faults",
        r#"[{"stall": 2.0}, {"reset": true}, {"garbage": true}]"#,
    );
    let receiver = Receiver::start_with("faults", 0, &["--script", &s]);
    let port = run_agent(
        "faults",
        &receiver.endpoint(),
        "timeout_ms = 700\n",
        Duration::from_millis(4000),
    );
    let r = receiver.requests();
    assert_eq!(opened_on(&r, port), N, "data still arrives");
    let last = &r[r.len() - 1..];
    for reason in ["timeout", "connection", "protocol"] {
        let n = latest_total(last, "telegen.agent.export.failures", &[("reason", reason)]);
        assert!(n >= 1, "{reason} failure counted");
    }
}

#[test]
fn json_protocol_is_decoded_by_the_reference_implementation() {
    assert!(is_root());
    let receiver = Receiver::start("json");
    let port = run_agent(
        "json",
        &receiver.endpoint(),
        "protocol = \"http/json\"\n",
        Duration::from_millis(800),
    );
    let r = receiver.requests();
    assert!(
        r.iter()
            .all(|x| x["content_type"] == "application/json" && x.get("error").is_none()),
        "{r:?}"
    );
    assert_eq!(opened_on(&r, port), N);
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = scratch(test, "pki");
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |cmd: &str| {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                ok.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&ok.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            sh(&format!(
                "openssl req -x509 -newkey rsa:2048 -nodes -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN={ca}"
            ));
        }
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1"),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            sh(&format!(
                "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name} && \
                 printf '{ext}\\n' > {name}.ext && \
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.pem"
            ));
        }
        Pki { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

/// Runs the agent against an https receiver with the given extra TOML; returns the server
/// port, the requests received and the agent's log.
fn run_tls(test: &str, receiver_args: &[&str], toml: &str) -> (u16, Vec<Value>, String) {
    let receiver = Receiver::start_with(test, 0, receiver_args);
    let cfg = write_config(
        test,
        &format!(
            "[otlp]\nendpoint = \"https://127.0.0.1:{}\"\nretry_initial_ms = 200\nretry_max_ms = 400\n{toml}",
            receiver.port
        ),
    );
    let mut agent = start_agent(&["--metric-interval", "300", "-c", &cfg], &[]);
    let (_server, port) = traffic();
    std::thread::sleep(Duration::from_millis(1000));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    (port, receiver.requests(), agent_log(&agent))
}

#[test]
fn tls_with_the_right_ca_a_wrong_one_and_mtls() {
    assert!(is_root());
    let pki = Pki::new("tls");
    let (cert, key, ca, other) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
        pki.path("other-ca.pem"),
    );
    let server = ["--tls", cert.as_str(), key.as_str()];

    let (port, r, _) = run_tls("tls-ok", &server, &format!("certificate = \"{ca}\"\n"));
    assert_eq!(
        opened_on(&r, port),
        N,
        "delivered over TLS with the collector's CA"
    );

    // A CA that did not sign the server's certificate: nothing delivered, and the agent
    // says what to set.
    let (_, r, log) = run_tls(
        "tls-wrong",
        &server,
        &format!("certificate = \"{other}\"\n"),
    );
    assert!(r.is_empty(), "nothing delivered to an unverified collector");
    assert!(
        log.contains("TLS error") && log.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "{log}"
    );

    // Verification skipped only on explicit request, and loudly.
    let (port, r, log) = run_tls("tls-insecure", &server, "insecure_skip_verify = true\n");
    assert_eq!(opened_on(&r, port), N);
    assert!(log.contains("verification is DISABLED"), "{log}");

    // mTLS: the receiver requires a client certificate signed by the CA.
    let mtls = [
        "--tls",
        cert.as_str(),
        key.as_str(),
        "--client-ca",
        ca.as_str(),
    ];
    let client = format!(
        "certificate = \"{ca}\"\nclient_certificate = \"{}\"\nclient_key = \"{}\"\n",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let (port, r, _) = run_tls("mtls", &mtls, &client);
    assert_eq!(
        opened_on(&r, port),
        N,
        "delivered with a client certificate"
    );
    let (_, r, log) = run_tls("mtls-none", &mtls, &format!("certificate = \"{ca}\"\n"));
    assert!(
        r.is_empty(),
        "nothing delivered without a client certificate"
    );
    assert!(log.contains("TLS error"), "{log}");
}

/// Every spool record's first point time, read with the agent's own spool format.
fn spooled_times(dir: &std::path::Path) -> Vec<u64> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use telegen_export::codec::{Codec, Format};
    use telegen_export::spool::{Scan, scan};
    let codec = Codec {
        format: Format::Protobuf,
        gzip: true,
    };
    let mut times = Vec::new();
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    segs.sort();
    for seg in segs
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
    {
        let data = std::fs::read(seg).unwrap();
        let mut at = 0;
        while let Scan::Record { payload, next, .. } = scan(&data, at) {
            let req: ExportMetricsServiceRequest = codec.decode(&data[payload]).unwrap();
            let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
            let t = match &m.data {
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => {
                    s.data_points[0].time_unix_nano
                }
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) => {
                    h.data_points[0].time_unix_nano
                }
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) => {
                    g.data_points[0].time_unix_nano
                }
                _ => 0,
            };
            times.push(t);
            at = next;
        }
    }
    times
}

#[test]
fn spool_survives_kill_9_and_delivers_at_least_once() {
    assert!(is_root());
    let spool = scratch("spool", "spool");
    let _ = std::fs::remove_dir_all(&spool);
    let port = free_port();
    let cfg = write_config(
        "spool",
        &format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nretry_initial_ms = 200\nretry_max_ms = 400\n\
             [spool]\ndir = \"{}\"\n",
            spool.display()
        ),
    );
    let mut agent = start_agent(&["--metric-interval", "200", "-c", &cfg], &[]);
    let (_server, server_port) = traffic();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no flush, no goodbye.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGKILL) };
    let _ = agent.0.wait();
    let spooled = spooled_times(&spool.join("metrics"));
    assert!(
        spooled.len() >= 4,
        "records reached the spool: {}",
        spooled.len()
    );

    let receiver = Receiver::start_with("spool", port, &[]);
    let mut agent = start_agent(&["--metric-interval", "200", "-c", &cfg], &[]);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let got: Vec<u64> = receiver
            .requests()
            .iter()
            .filter_map(|r| {
                points(std::slice::from_ref(r), "telegen.agent.events")
                    .first()
                    .map(|p| p.time)
            })
            .collect();
        if spooled.iter().all(|t| got.contains(t)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let requests = receiver.requests();
    let got: Vec<u64> = requests
        .iter()
        .filter_map(|r| {
            points(std::slice::from_ref(r), "telegen.agent.events")
                .first()
                .map(|p| p.time)
        })
        .collect();
    for t in &spooled {
        let n = got.iter().filter(|g| *g == t).count();
        assert!(
            (1..=2).contains(&n),
            "spooled batch {t} delivered {n} times"
        );
    }
    assert_eq!(
        opened_on(&requests, server_port),
        N,
        "the counts made before the kill arrive"
    );
}

#[test]
fn an_unusable_spool_directory_does_not_stop_the_agent() {
    assert!(is_root());
    // A regular file where the spool directory should be.
    let blocker = scratch("badspool", "not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let receiver = Receiver::start("badspool");
    let spool = blocker.join("spool");
    let mut agent = start_agent(
        &[
            "--metric-interval",
            "300",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let (_server, port) = traffic();
    std::thread::sleep(Duration::from_millis(800));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    assert!(
        agent_log(&agent).contains("running without a spool"),
        "{}",
        agent_log(&agent)
    );
    assert_eq!(opened_on(&receiver.requests(), port), N);
}

#[test]
fn a_corrupted_spool_is_skipped_and_counted() {
    assert!(is_root());
    let spool = scratch("corrupt", "spool");
    let _ = std::fs::remove_dir_all(&spool);
    let port = free_port();
    let cfg = write_config(
        "corrupt",
        &format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nretry_initial_ms = 200\nretry_max_ms = 400\n\
             [spool]\ndir = \"{}\"\n",
            spool.display()
        ),
    );
    let mut agent = start_agent(&["--metric-interval", "200", "-c", &cfg], &[]);
    std::thread::sleep(Duration::from_millis(1200));
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGKILL) };
    let _ = agent.0.wait();
    let before = spooled_times(&spool.join("metrics")).len();
    assert!(before >= 3);
    // Flip bytes in the middle of the first segment.
    let seg = std::fs::read_dir(spool.join("metrics"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 8] {
        *b ^= 0xa5;
    }
    std::fs::write(&seg, &data).unwrap();

    let receiver = Receiver::start_with("corrupt", port, &[]);
    let mut agent = start_agent(&["--metric-interval", "200", "-c", &cfg], &[]);
    receiver.wait_for(before, Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(
        status.success(),
        "the agent started and ran despite the corruption"
    );
    let r = receiver.requests();
    assert!(r.len() >= before - 1, "the other records were delivered");
    assert_eq!(
        latest_total(
            &r[r.len() - 1..],
            "telegen.agent.dropped",
            &[("reason", "spool_corrupt")]
        ),
        1
    );
}
