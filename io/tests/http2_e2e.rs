//! HTTP/2 and gRPC tracing end to end on the real kernel: nginx serving HTTP/2 in plaintext
//! (h2c) and over TLS, driven by curl and nghttp; a gRPC service and client on grpcio; the
//! real agent, and the OTLP receiver decoding with the official opentelemetry-proto package.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

/// nginx serving HTTP/2: nginx 1.22 (Debian 12) takes `http2` on `listen`; without `ssl`
/// that is h2c with prior knowledge.
fn start_nginx(test: &str) -> Nginx {
    support::start_nginx(test, &|d, port, tls_port| {
        format!(
            r#"
    server {{
        listen 127.0.0.1:{port} http2;
        location = /ok {{ return 200 "ok\n"; }}
        location /missing/ {{ return 404; }}
        location = /boom {{ return 500; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location = /ok {{ return 200 "ok\n"; }}
        location /missing/ {{ return 404; }}
    }}"#
        )
    })
}

fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e} (installed by cross/bootstrap.sh)"));
    assert!(ok.success(), "{program} {args:?}");
}

fn count(all: &[SpanSeen], kind: &str, process: &str, port: u16, status: &str) -> usize {
    let port = port.to_string();
    all.iter()
        .filter(|s| {
            s.kind == kind
                && s.process() == process
                && s.attr("server.port") == Some(port.as_str())
                && s.attr("http.response.status_code") == Some(status)
        })
        .count()
}

#[test]
fn nginx_over_http2_with_curl_and_nghttp_becomes_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let nginx = start_nginx("http2-nginx");
    let traced = Traced::start("http2-nginx", &[("OTEL_METRIC_EXPORT_INTERVAL", "300")]);
    let (plain, tls) = (
        format!("http://127.0.0.1:{}", nginx.port),
        format!("https://127.0.0.1:{}", nginx.tls_port),
    );
    // curl: a connection per request, h2c with prior knowledge.
    for _ in 0..3 {
        run(
            "curl",
            &["-sf", "--http2-prior-knowledge", &format!("{plain}/ok")],
        );
    }
    let traceparent = format!("traceparent: 00-{TRACE}-{CALLER}-01");
    run(
        "curl",
        &[
            "-s",
            "--http2-prior-knowledge",
            "-H",
            &traceparent,
            "-H",
            "Authorization: Bearer sekret-token",
            "-H",
            "Cookie: session=sekret-cookie",
            &format!("{plain}/missing/1001?token=sekret-query"),
        ],
    );
    // nghttp: three streams at once on one connection, twice.
    for _ in 0..2 {
        run(
            "nghttp",
            &[
                "-n",
                &format!("{plain}/ok"),
                &format!("{plain}/missing/7"),
                &format!("{plain}/boom"),
            ],
        );
    }
    // Over TLS (ALPN h2): curl and nghttp through OpenSSL, whose uprobes give the plaintext.
    run("curl", &["-sk", "--http2", &format!("{tls}/ok")]);
    run("curl", &["-sk", "--http2", &format!("{tls}/missing/3")]);
    run(
        "nghttp",
        &["-n", &format!("{tls}/ok"), &format!("{tls}/missing/4")],
    );
    // The last metric export must follow the last request.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let requests = traced.finish(&["sekret"]);

    let all = spans(&requests);
    let (p, t) = (nginx.port, nginx.tls_port);
    let server = "SPAN_KIND_SERVER";
    let client = "SPAN_KIND_CLIENT";
    assert_eq!(count(&all, server, "nginx", p, "200"), 5);
    assert_eq!(count(&all, server, "nginx", p, "404"), 3);
    assert_eq!(count(&all, server, "nginx", p, "500"), 2);
    assert_eq!(count(&all, client, "curl", p, "200"), 3);
    assert_eq!(count(&all, client, "curl", p, "404"), 1);
    assert_eq!(count(&all, client, "nghttp", p, "200"), 2);
    assert_eq!(count(&all, client, "nghttp", p, "404"), 2);
    assert_eq!(count(&all, client, "nghttp", p, "500"), 2);
    assert_eq!(count(&all, server, "nginx", t, "200"), 2);
    assert_eq!(count(&all, server, "nginx", t, "404"), 2);
    assert_eq!(count(&all, client, "curl", t, "200"), 1);
    assert_eq!(count(&all, client, "curl", t, "404"), 1);
    assert_eq!(count(&all, client, "nghttp", t, "200"), 1);
    assert_eq!(count(&all, client, "nghttp", t, "404"), 1);

    let ours = |s: &&SpanSeen| s.attr("server.port") == Some(p.to_string().as_str());
    let missing = all
        .iter()
        .filter(ours)
        .find(|s| s.kind == server && s.attr("http.response.status_code") == Some("404"))
        .unwrap();
    assert_eq!(missing.name, "GET /missing/{id}");
    assert_eq!(missing.attr("network.protocol.version"), Some("2"));
    assert_eq!(missing.attr("url.scheme"), Some("http"));
    assert_eq!(missing.attr("http.request.method"), Some("GET"));
    assert_eq!(
        missing.attr("error.type"),
        None,
        "4xx is not a server error"
    );
    let boom = all
        .iter()
        .filter(ours)
        .find(|s| s.kind == server && s.attr("http.response.status_code") == Some("500"))
        .unwrap();
    assert_eq!(boom.attr("error.type"), Some("500"));
    assert_eq!(boom.status, "STATUS_CODE_ERROR");
    // curl's traceparent: nginx's span joins the caller's trace; curl's span is the caller.
    // (Filtered by port: the agent sees the other tests' traffic too, the gRPC test's own
    // traceparent among it.)
    let joined = all
        .iter()
        .filter(ours)
        .find(|s| s.kind == server && s.trace_id == b64(TRACE))
        .expect("the server span joins the caller's trace");
    assert_eq!(joined.parent, b64(CALLER));
    assert_eq!(joined.attr("url.path"), Some("/missing/1001"));
    let caller = all
        .iter()
        .filter(ours)
        .find(|s| s.kind == client && s.trace_id == b64(TRACE))
        .unwrap();
    assert_eq!(caller.span_id, b64(CALLER));
    let https = all
        .iter()
        .find(|s| s.kind == server && s.attr("server.port") == Some(t.to_string().as_str()))
        .unwrap();
    assert_eq!(https.attr("url.scheme"), Some("https"));
    assert_eq!(https.attr("network.protocol.version"), Some("2"));

    // Every request counts in the histograms.
    let (ps, ts) = (p.to_string(), t.to_string());
    let server_n = |port: &str, status: &str| {
        histogram_count(
            &requests,
            "http.server.request.duration",
            &[
                ("server.port", port),
                ("http.response.status_code", status),
                ("network.protocol.version", "2"),
            ],
            (status == "500").then_some("500"),
        )
    };
    assert_eq!(server_n(&ps, "200"), 5);
    assert_eq!(server_n(&ps, "404"), 3);
    assert_eq!(server_n(&ps, "500"), 2);
    assert_eq!(server_n(&ts, "200"), 2);
    let client_404 = histogram_count(
        &requests,
        "http.client.request.duration",
        &[("server.port", &ps), ("http.response.status_code", "404")],
        Some("404"),
    );
    assert_eq!(client_404, 3);
    assert_no_drops(&requests, &PROTOCOL_DROPS);
    assert_no_drops(&requests, &["http_table_full", "http_pipeline_full"]);
}

#[test]
fn grpc_calls_become_rpc_spans_and_metrics() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let traced = Traced::start("http2-grpc", &[("OTEL_METRIC_EXPORT_INTERVAL", "300")]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc_demo.py");
    let mut server = Command::new(python())
        .arg(&script)
        .arg("server")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the venv's python with grpcio (cross/bootstrap.sh)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let server = Proc(server);
    let port: u16 = line.trim().parse().expect("the server prints its port");
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let ok = Command::new(python())
        .arg(&script)
        .args(["client", &port.to_string(), &traceparent])
        .status()
        .unwrap()
        .success();
    assert!(ok, "the gRPC client failed");
    std::thread::sleep(std::time::Duration::from_millis(700));
    drop(server);
    let requests = traced.finish(&[]);

    let all = spans(&requests);
    let port_s = port.to_string();
    let rpc: Vec<&SpanSeen> = all
        .iter()
        .filter(|s| s.attr("server.port") == Some(port_s.as_str()))
        .collect();
    let calls = |kind: &str, code: &str| {
        rpc.iter()
            .filter(|s| s.kind == kind && s.attr("rpc.grpc.status_code") == Some(code))
            .count()
    };
    assert_eq!(calls("SPAN_KIND_SERVER", "0"), 4);
    assert_eq!(calls("SPAN_KIND_SERVER", "5"), 1);
    assert_eq!(calls("SPAN_KIND_CLIENT", "0"), 4);
    assert_eq!(calls("SPAN_KIND_CLIENT", "5"), 1);
    assert_eq!(rpc.len(), 10);
    for s in &rpc {
        assert_eq!(s.name, "demo.Greeter/SayHello");
        assert_eq!(s.attr("rpc.system"), Some("grpc"));
        assert_eq!(s.attr("rpc.service"), Some("demo.Greeter"));
        assert_eq!(s.attr("rpc.method"), Some("SayHello"));
        assert_eq!(s.attr("http.response.status_code"), None);
    }
    // NOT_FOUND is the client's error; to the server it is an answer.
    let not_found = |kind: &str| {
        rpc.iter()
            .find(|s| s.kind == kind && s.attr("rpc.grpc.status_code") == Some("5"))
            .unwrap()
    };
    assert_eq!(
        not_found("SPAN_KIND_CLIENT").attr("error.type"),
        Some("NOT_FOUND")
    );
    assert_eq!(not_found("SPAN_KIND_CLIENT").status, "STATUS_CODE_ERROR");
    assert_eq!(not_found("SPAN_KIND_SERVER").attr("error.type"), None);
    // The call whose metadata carried traceparent: the client's span is the caller, the
    // server's joins it.
    let traced: Vec<&&SpanSeen> = rpc.iter().filter(|s| s.trace_id == b64(TRACE)).collect();
    assert_eq!(traced.len(), 2);
    let server_span = traced
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER")
        .unwrap();
    assert_eq!(server_span.parent, b64(CALLER));

    let rpc_count = |metric: &str, code: &str| {
        histogram_count(
            &requests,
            metric,
            &[
                ("server.port", &port_s),
                ("rpc.grpc.status_code", code),
                ("rpc.method", "SayHello"),
            ],
            None,
        )
    };
    assert_eq!(rpc_count("rpc.server.duration", "0"), 4);
    assert_eq!(rpc_count("rpc.server.duration", "5"), 1);
    assert_eq!(rpc_count("rpc.client.duration", "0"), 4);
    assert_eq!(rpc_count("rpc.client.duration", "5"), 1);
    assert_no_drops(&requests, &PROTOCOL_DROPS);
    assert_no_drops(&requests, &["http_table_full", "http_pipeline_full"]);
}
