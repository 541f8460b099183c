//! Database tracing end to end on the real kernel: redis-server, redis-cli and a Python
//! client started here, the real agent, and the OTLP receiver decoding with the official
//! Python opentelemetry-proto package.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

struct Redis {
    proc: std::process::Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// redis-server on a fresh port (three tries: another test may take the port first).
fn start_redis(test: &str) -> Redis {
    let dir = scratch(test, "redis");
    std::fs::create_dir_all(&dir).unwrap();
    (0..3)
        .find_map(|_| try_redis(&dir))
        .expect("redis-server did not start in three tries")
}

fn try_redis(dir: &std::path::Path) -> Option<Redis> {
    let port = free_port();
    let mut proc = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (installed by cross/bootstrap.sh)");
    serves(&mut proc, &[port]).then_some(Redis { proc, port })
}

/// Runs redis-cli with `args`; its output.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads from `s` until what was read ends with `end`.
fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(end) {
        let n = s.read(&mut buf).expect("redis answers");
        assert!(n > 0, "redis closed the connection: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Spans of `process` whose operation is `op` on `port`, by kind, and how many of them
/// carry `error.type`.
fn ops(all: &[SpanSeen], kind: &str, process: &str, port: u16, op: &str) -> (usize, usize) {
    let port = port.to_string();
    let mine: Vec<&SpanSeen> = all
        .iter()
        .filter(|s| {
            s.kind == kind
                && s.process() == process
                && s.attr("server.port") == Some(port.as_str())
                && s.attr("db.operation.name") == Some(op)
        })
        .collect();
    let errors = mine
        .iter()
        .filter(|s| s.attr("error.type").is_some())
        .count();
    (mine.len(), errors)
}

#[test]
fn redis_commands_replies_and_errors_become_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let redis = start_redis("db-redis");
    let receiver = Receiver::start("db-redis");
    let mut agent = start_agent(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint()),
            ("OTEL_SERVICE_NAME", "db-test"),
        ],
    );
    let port = redis.port;
    // redis-cli: a connection per command.
    assert_eq!(cli(port, &["SET", "greeting", "sekret-value"]).trim(), "OK");
    for _ in 0..3 {
        assert_eq!(cli(port, &["GET", "greeting"]).trim(), "sekret-value");
    }
    assert_eq!(cli(port, &["GET", "missing-key"]).trim(), "");
    assert!(cli(port, &["LPUSH", "greeting", "x"]).contains("WRONGTYPE"));

    // One connection: a pipeline of four commands in one write (one of them fails), then
    // a value larger than the capture, written and read back.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut pipeline = Vec::new();
    for c in [
        command(&[b"SET", b"p", b"1"]),
        command(&[b"INCR", b"p"]),
        command(&[b"GET", b"p"]),
        command(&[b"INCR", b"greeting"]),
    ] {
        pipeline.extend_from_slice(&c);
    }
    s.write_all(&pipeline).unwrap();
    let got = read_until(&mut s, b"out of range\r\n");
    assert!(got.starts_with(b"+OK\r\n:2\r\n$1\r\n2\r\n-ERR"), "{got:?}");
    let big = vec![b'v'; 100_000];
    s.write_all(&command(&[b"SET", b"big", &big])).unwrap();
    read_until(&mut s, b"+OK\r\n");
    s.write_all(&command(&[b"GET", b"big"])).unwrap();
    let got = read_until(&mut s, b"vvv\r\n");
    assert_eq!(got.len(), "$100000\r\n".len() + 100_000 + 2);
    drop(s);

    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let requests = receiver.requests();
    for r in &requests {
        assert!(r.get("error").is_none(), "receiver could not decode: {r}");
        let text = r.to_string();
        assert!(
            !text.contains("sekret") && !text.contains("greeting"),
            "a key or a value left the agent: {text}"
        );
    }
    let all = spans(&requests);
    let client = "SPAN_KIND_CLIENT";
    assert_eq!(ops(&all, client, "redis-cli", port, "SET"), (1, 0));
    assert_eq!(ops(&all, client, "redis-cli", port, "GET"), (4, 0));
    assert_eq!(ops(&all, client, "redis-cli", port, "LPUSH"), (1, 1));
    // The test process itself is the second client (its command name is the test's).
    let me = all
        .iter()
        .find(|s| s.kind == client && s.attr("db.operation.name") == Some("INCR"))
        .map(|s| s.process().to_string())
        .expect("the pipelined INCR");
    // The process's name (the test binary's), not its test thread's.
    assert!(me.starts_with("db_e2e"), "{me}");
    assert_eq!(ops(&all, client, &me, port, "SET"), (2, 0));
    assert_eq!(ops(&all, client, &me, port, "INCR"), (2, 1));
    assert_eq!(ops(&all, client, &me, port, "GET"), (2, 0));
    let server = "SPAN_KIND_SERVER";
    assert_eq!(ops(&all, server, "redis-server", port, "SET"), (3, 0));
    assert_eq!(ops(&all, server, "redis-server", port, "GET"), (6, 0));
    assert_eq!(ops(&all, server, "redis-server", port, "LPUSH"), (1, 1));
    assert_eq!(ops(&all, server, "redis-server", port, "INCR"), (2, 1));

    let lpush = all
        .iter()
        .find(|s| s.kind == client && s.attr("db.operation.name") == Some("LPUSH"))
        .unwrap();
    assert_eq!(lpush.name, "LPUSH");
    assert_eq!(lpush.attr("db.system.name"), Some("redis"));
    assert_eq!(lpush.attr("error.type"), Some("WRONGTYPE"));
    assert_eq!(lpush.status, "STATUS_CODE_ERROR");
    assert_eq!(lpush.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(attr(&lpush.resource, "service.name"), Some("redis-cli"));
    let incr = all
        .iter()
        .find(|s| s.kind == server && s.attr("error.type").is_some() && s.name == "INCR")
        .unwrap();
    assert_eq!(incr.attr("error.type"), Some("ERR"));

    // The metric counts every client operation, errors by their type.
    let metric = "db.client.operation.duration";
    let count = |op: &str, error: Option<&str>| {
        let mut want = vec![("db.system.name", "redis"), ("db.operation.name", op)];
        let p = port.to_string();
        want.push(("server.port", p.as_str()));
        histogram_count(&requests, metric, &want, error)
    };
    assert_eq!(count("GET", None), 6);
    assert_eq!(count("SET", None), 3);
    assert_eq!(count("INCR", None), 1);
    assert_eq!(count("INCR", Some("ERR")), 1);
    assert_eq!(count("LPUSH", Some("WRONGTYPE")), 1);
    assert_no_drops(
        &requests,
        &[
            "protocol_desync",
            "db_pipeline_full",
            "db_table_full",
            "kernel_ring_full",
        ],
    );
}
