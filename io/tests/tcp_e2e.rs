//! End to end on the real kernel: real TCP connections on loopback between a server process
//! and this test, the real agent, and an OTLP receiver that decodes with the official Python
//! opentelemetry-proto package.

mod support;

use std::io::{BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn tcp_connections_reach_an_otlp_backend() {
    tcp_connections_reach_an_otlp_backend_through("ring");
}

/// The same assertions with the transport of kernels before 5.8, forced on this one.
#[test]
fn tcp_connections_reach_an_otlp_backend_through_perf_buffers() {
    tcp_connections_reach_an_otlp_backend_through("perf");
}

fn tcp_connections_reach_an_otlp_backend_through(transport: &str) {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    const N: usize = 25;
    let receiver = Receiver::start(&format!("tcp-{transport}"));
    // The default 60 s interval: the only export is the flush on SIGTERM, so the counts
    // below also prove that the last interval is flushed.
    let mut agent = start_agent(
        &["--transport", transport],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("OTEL_SERVICE_NAME", "edge-node-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ],
    );
    let (server, port) = start_server();
    for _ in 0..N {
        connect_once(port);
    }
    // Let the server side finish its closes.
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");

    let requests = receiver.requests();
    assert!(!requests.is_empty(), "the agent exported nothing");
    for r in &requests {
        // Spans come too: other tests' HTTP traffic (their agents' exports included).
        assert!(
            r["path"] == "/v1/metrics" || r["path"] == "/v1/traces",
            "{}",
            r["path"]
        );
        assert_eq!(r["content_encoding"], "gzip", "gzip on the wire");
        assert_eq!(r["content_type"], "application/x-protobuf");
        assert!(r.get("error").is_none(), "receiver could not decode: {r}");
    }

    let port_s = port.to_string();
    let server_pid = server.0.id().to_string();
    let my_pid = std::process::id().to_string();
    let opened = points(&requests, "telegen.tcp.connections.opened");
    let server_side = latest(
        &opened,
        &[
            ("server.port", &port_s),
            ("telegen.connection.side", "server"),
        ],
    )
    .expect("server-side series");
    assert_eq!(server_side.value, N as u64, "server ends opened");
    assert_eq!(
        attr(&server_side.attrs, "process.pid"),
        Some(server_pid.as_str())
    );
    assert_eq!(
        attr(&server_side.attrs, "process.executable.name"),
        Some("python3")
    );
    assert_eq!(
        attr(&server_side.attrs, "server.address"),
        Some("127.0.0.1")
    );
    assert_eq!(attr(&server_side.attrs, "network.type"), Some("ipv4"));
    let client_side = latest(
        &opened,
        &[
            ("server.port", &port_s),
            ("telegen.connection.side", "client"),
        ],
    )
    .expect("client-side series");
    assert_eq!(client_side.value, N as u64, "client ends opened");
    assert_eq!(
        attr(&client_side.attrs, "process.pid"),
        Some(my_pid.as_str())
    );

    let durations = points(&requests, "telegen.tcp.connection.duration");
    for side in ["server", "client"] {
        let h = latest(
            &durations,
            &[("server.port", &port_s), ("telegen.connection.side", side)],
        )
        .unwrap_or_else(|| panic!("{side} duration series"));
        assert_eq!(h.value, N as u64, "{side} duration samples");
        let sum = h.raw["sum"].as_f64().unwrap();
        assert!(
            sum > 0.0 && sum < N as f64 * 5.0,
            "{side} duration sum {sum}"
        );
    }

    // The server's points carry its process's resource: its own service name and process,
    // with everything the agent's resource says of the host.
    let res = &server_side.resource;
    assert_eq!(attr(res, "service.name"), Some("python3"));
    assert_eq!(attr(res, "process.pid"), Some(server_pid.as_str()));
    assert!(attr(&server_side.attrs, "thread.name").is_some());
    assert!(
        server_side.raw["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["key"] != "process.pid"),
        "the pid is the resource's, not the point's"
    );
    let agent_res = &points(&requests, "telegen.agent.events")[0].resource;
    assert_eq!(attr(agent_res, "service.name"), Some("edge-node-test"));
    assert_eq!(attr(agent_res, "process.pid"), None);
    assert_eq!(attr(res, "deployment.environment"), Some("ci"));
    assert_eq!(attr(res, "telemetry.sdk.name"), Some("telegen"));
    assert_eq!(attr(res, "os.type"), Some("linux"));
    assert!(attr(res, "host.name").is_some_and(|h| !h.is_empty()));
    assert!(attr(res, "host.arch").is_some());
    assert!(attr(res, "os.description").is_some_and(|d| d.contains("Linux")));
    assert!(attr(res, "os.name").is_some_and(|n| !n.is_empty()));
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
    let version_id = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"'))
        .unwrap();
    assert_eq!(attr(res, "os.version"), Some(version_id));
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap();
    assert_eq!(attr(res, "host.id"), Some(machine.trim()));

    assert_no_drops(
        &requests,
        &[
            "kernel_ring_full",
            "decode_error",
            "conn_table_full",
            "export_failed",
        ],
    );
    let events = points(&requests, "telegen.agent.events");
    assert!(
        events.iter().any(|p| p.value >= 4 * N as u64),
        "events counted: {events:?}"
    );
}

#[test]
fn listeners_older_than_the_agent_are_attributed() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let receiver = Receiver::start("seed");
    let (server, port) = start_server();
    let mut agent = start_agent(
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    for _ in 0..3 {
        connect_once(port);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let opened = points(&receiver.requests(), "telegen.tcp.connections.opened");
    let port_s = port.to_string();
    let server_ends: Vec<_> = opened
        .iter()
        .filter(|p| attr(&p.attrs, "server.port") == Some(port_s.as_str()))
        .filter(|p| attr(&p.attrs, "telegen.connection.side") == Some("server"))
        .collect();
    assert_eq!(
        server_ends.len(),
        1,
        "one server series, all attributed: {server_ends:?}"
    );
    let p = server_ends[0];
    assert_eq!(p.value, 3);
    assert_eq!(
        attr(&p.attrs, "process.pid"),
        Some(server.0.id().to_string().as_str())
    );
}

/// The last value printed on the console for a metric line prefix.
fn console_values(text: &str, prefix: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

#[test]
fn an_unreachable_collector_is_retried_bounded_and_counted() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    // Nothing listens on port 9 of loopback: every export fails to connect. The queue holds
    // about two batches, so it overflows within the test.
    let dir = std::env::temp_dir().join(format!("telegen-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("telegen.toml");
    std::fs::write(
        &cfg,
        "[otlp]\nendpoint = \"http://127.0.0.1:9\"\nretry_initial_ms = 100\nretry_max_ms = 200\n\
         [limits]\nexport_queue_bytes = 3000\n",
    )
    .unwrap();
    let out = dir.join("console.txt");
    let file = std::fs::File::create(&out).unwrap();
    let mut agent = start_agent_to(
        &[
            "--console",
            "--metric-interval",
            "200",
            "-c",
            cfg.to_str().unwrap(),
        ],
        &[],
        file.into(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let (status, took) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5));
    let text = std::fs::read_to_string(&out).unwrap();
    let failures = console_values(
        &text,
        "metric telegen.agent.export.failures{signal=\"metrics\",reason=\"connection\"} ",
    );
    assert!(failures.len() >= 5, "console printed each interval: {text}");
    assert!(
        failures.windows(2).all(|w| w[1] >= w[0]) && *failures.last().unwrap() >= 3,
        "{failures:?}"
    );
    let queued = console_values(
        &text,
        "metric telegen.agent.export.queue.bytes{signal=\"metrics\"} ",
    );
    assert!(
        queued.iter().all(|q| *q <= 3000 + 2000),
        "bounded queue (plus one in flight): {queued:?}"
    );
    let full = console_values(
        &text,
        "metric telegen.agent.dropped{reason=\"export_queue_full\"} ",
    );
    assert!(*full.last().unwrap() > 0, "overflow counted: {full:?}");
}

/// Closes with SO_LINGER {on, 0}: the kernel aborts the connection with a RST.
fn connect_and_abort(port: u16) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    // Give the server time to accept, so that the reset reaches an established socket.
    std::thread::sleep(Duration::from_millis(20));
    drop(s);
}

#[test]
fn resets_are_counted_in_both_directions() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    const N: u64 = 4;
    let receiver = Receiver::start("resets");
    let mut agent = start_agent(
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let (server, port) = start_server();
    for _ in 0..N {
        connect_and_abort(port);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let resets = points(&receiver.requests(), "telegen.tcp.resets");
    let port_s = port.to_string();
    let sent = latest(
        &resets,
        &[
            ("server.port", &port_s),
            ("telegen.connection.side", "client"),
            ("network.io.direction", "transmit"),
        ],
    )
    .expect("resets sent by the client end");
    assert_eq!(sent.value, N);
    let received = latest(
        &resets,
        &[
            ("server.port", &port_s),
            ("telegen.connection.side", "server"),
            ("network.io.direction", "receive"),
        ],
    )
    .expect("resets received by the server end");
    assert_eq!(received.value, N);
    assert_eq!(
        attr(&received.attrs, "process.pid"),
        Some(server.0.id().to_string().as_str())
    );
}

#[test]
fn a_full_kernel_ring_is_counted_not_silent() {
    full_kernel_buffers_are_counted("ring", "kernel_ring_full");
}

#[test]
fn full_perf_buffers_are_counted_not_silent() {
    full_kernel_buffers_are_counted("perf", "kernel_ring_full");
}

fn full_kernel_buffers_are_counted(transport: &str, reason: &str) {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    const CONNECTIONS: u64 = 100;
    let receiver = Receiver::start(&format!("full-{transport}"));
    let cfg = scratch(&format!("full-{transport}"), "telegen.toml");
    // A one-page ring holds about 40 records; each connection makes 5.
    std::fs::write(&cfg, "[limits]\nring_buffer_bytes = 4096\n").unwrap();
    let mut agent = start_agent(
        &["-c", cfg.to_str().unwrap(), "--transport", transport],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let (_server, port) = start_server();
    // Stop the agent so that nothing drains the ring while the connections are made.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGSTOP) };
    for _ in 0..CONNECTIONS {
        connect_once(port);
    }
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let r = receiver.requests();
    let full = latest_total(&r, "telegen.agent.dropped", &[("reason", reason)]);
    let events = latest_total(&r, "telegen.agent.events", &[]);
    assert!(full > 0, "ring-full drops counted");
    assert!(
        events + full >= 5 * CONNECTIONS,
        "every record handled or counted: {events} + {full}"
    );
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[test]
fn the_running_agent_has_no_privileges_and_still_exports() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let receiver = Receiver::start("privileges");
    let mut agent = start_agent(
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let pid = agent.0.id();
    assert_eq!(
        status_field(pid, "Uid:"),
        "65534 65534 65534 65534",
        "runs as nobody"
    );
    assert_eq!(status_field(pid, "Gid:"), "65534 65534 65534 65534");
    assert_eq!(status_field(pid, "Groups:"), "");
    for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    // The harness starts agents with --seccomp kill: filter mode 2.
    assert_eq!(status_field(pid, "Seccomp:"), "2");
    let (_server, port) = start_server();
    for _ in 0..3 {
        connect_once(port);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let r = receiver.requests();
    let opened = points(&r, "telegen.tcp.connections.opened");
    let p = latest(
        &opened,
        &[
            ("server.port", &port.to_string()),
            ("telegen.connection.side", "server"),
        ],
    );
    assert_eq!(
        p.map(|p| p.value),
        Some(3),
        "still exports after dropping privileges"
    );
    // The kernel's drop counters are still read (through memory, not bpf()).
    assert!(
        points(&r, "telegen.agent.dropped")
            .iter()
            .any(|p| attr(&p.attrs, "reason") == Some("kernel_ring_full"))
    );

    // `--user root` keeps them, and says so.
    let mut agent = start_agent(&["--user", "root", "--console", "--seccomp", "off"], &[]);
    assert_ne!(status_field(agent.0.id(), "CapEff:"), "0000000000000000");
    assert_eq!(status_field(agent.0.id(), "Seccomp:"), "0", "--seccomp off");
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    assert!(agent_log(&agent).contains("running as root"));
}

#[test]
fn the_packaged_capability_set_is_enough() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    // The capabilities the systemd unit bounds (and the Kubernetes manifests add).
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cross/packaging/telegen.service"
    ))
    .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds capabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("-all,{}", caps.join(","));
    let receiver = Receiver::start("caps");
    let spool = scratch("caps", "spool");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set",
        &bounding,
        "--inh-caps",
        "-all",
        AGENT,
        "--spool-dir",
        spool.to_str().unwrap(),
    ])
    .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
    .stderr(Stdio::piped());
    let mut child = Proc(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (_server, port) = start_server();
    for _ in 0..3 {
        connect_once(port);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = terminate(&mut child, Duration::from_secs(5));
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("running as nobody"), "{log}");
    assert!(
        !log.contains("warn"),
        "no degradation with the packaged capabilities: {log}"
    );
    let opened = points(&receiver.requests(), "telegen.tcp.connections.opened");
    let p = latest(
        &opened,
        &[
            ("server.port", &port.to_string()),
            ("telegen.connection.side", "server"),
        ],
    );
    assert_eq!(p.map(|p| p.value), Some(3));
}
