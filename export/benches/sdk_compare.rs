//! telegen's span export against the OpenTelemetry Rust SDK's OTLP/HTTP exporter
//! (opentelemetry-otlp), side by side in one run (a benchmark, not a test).
//!
//! The same spans (HTTP server spans as the agent makes them: eight attributes, a parent,
//! 200 routes) are exported in batches of 512 by each, protobuf and gzip, to an HTTP client
//! that only counts the bytes it is handed (no network on either side). Each side runs in its
//! own child process so that its peak RSS is its own. Reports spans per second on one core,
//! bytes on the wire per span, and peak RSS.
//! Run: `cargo bench -p telegen-export --bench sdk_compare` (`TELEGEN_BENCH_SPANS`, default
//! 200,000).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

const BATCH: usize = 512;

fn spans_total() -> usize {
    std::env::var("TELEGEN_BENCH_SPANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The i-th span's varying parts: ids, route, status, times.
struct Shape {
    trace: [u8; 16],
    span: [u8; 8],
    parent: [u8; 8],
    path: String,
    status: u16,
    start_ns: u64,
    end_ns: u64,
}

fn shape(i: usize) -> Shape {
    let x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&x.to_be_bytes());
    trace[8..].copy_from_slice(&x.rotate_left(17).to_be_bytes());
    Shape {
        trace,
        span: x.rotate_left(29).to_be_bytes(),
        parent: x.rotate_left(41).to_be_bytes(),
        path: format!("/api/v1/items/{}", i % 200),
        status: if i.is_multiple_of(50) { 500 } else { 200 },
        start_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000_000,
        end_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000_000 + 250_000,
    }
}

fn telegen(n: usize, level: u32) -> (Duration, u64, u64) {
    use telegen_core::http::{Path, Span, SpanContext};
    use telegen_core::record::IpAddr;
    use telegen_core::selfmetrics::AgentCounters;
    use telegen_core::tcp::{Process, Side};
    use telegen_export::payload::Encoder;
    let resource = telegen_export::otlp::resource(&[
        ("service.name".into(), "bench".into()),
        ("host.name".into(), "edge-1".into()),
    ]);
    let lo = IpAddr {
        v6: false,
        bytes: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let mut comm = [0u8; 16];
    comm[..5].copy_from_slice(b"nginx");
    let mut writer = telegen_export::spanpb::SpanWriter::default();
    let mut encoder = Encoder::with_level(level);
    let mut counters = AgentCounters::default();
    let (mut bytes, mut requests) = (0u64, 0u64);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        let s = shape(i);
        let mut path = Path::new();
        let _ = path.push_str(&s.path);
        let mut method = heapless::String::new();
        let _ = method.push_str("GET");
        batch.push(Span {
            side: Side::Server,
            protocol: telegen_core::record::Protocol::Http,
            context: SpanContext {
                trace_id: s.trace,
                span_id: s.span,
                sampled: true,
            },
            parent_span_id: s.parent,
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            method,
            path,
            status: s.status,
            minor_version: 1,
            broken: None,
            db_error: heapless::String::new(),
            namespace: heapless::String::new(),
            tls: false,
            local: lo,
            local_port: 8080,
            remote: lo,
            remote_port: 40000 + (i % 1000) as u16,
            process: Process { pid: 42, comm },
        });
        if batch.len() == BATCH || i + 1 == n {
            // As the agent does for OTLP/protobuf: written straight from the spans.
            let mut out = Vec::new();
            telegen_export::spanpb::batches(
                &mut writer,
                &mut encoder,
                true,
                &batch,
                &resource,
                0,
                (BATCH, 20 << 20),
                &mut counters,
                &mut out,
            );
            batch.clear();
            for b in out {
                bytes += b.body.len() as u64;
                requests += 1;
            }
        }
    }
    (started.elapsed(), bytes, requests)
}

#[derive(Debug, Default, Clone)]
struct CountingClient {
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for CountingClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        self.bytes
            .fetch_add(request.body().len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(opentelemetry_http::Response::builder()
            .status(200)
            .body(opentelemetry_http::Bytes::new())
            .expect("a response"))
    }
}

fn sdk(n: usize) -> (Duration, u64, u64) {
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
    let client = CountingClient::default();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint("http://127.0.0.1:4318/v1/traces")
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .expect("the SDK exporter");
    exporter.set_resource(
        &opentelemetry_sdk::Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "bench"),
                KeyValue::new("host.name", "edge-1"),
                KeyValue::new("process.pid", 42),
                KeyValue::new("process.executable.name", "nginx"),
            ])
            .build(),
    );
    let scope = InstrumentationScope::builder("telegen").build();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..n {
        let s = shape(i);
        let at = |ns: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns);
        let mut attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", s.path.clone()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("server.address", "127.0.0.1"),
            KeyValue::new("server.port", 8080_i64),
            KeyValue::new("client.address", "127.0.0.1"),
            KeyValue::new("client.port", 40000 + (i % 1000) as i64),
            KeyValue::new("http.response.status_code", i64::from(s.status)),
        ];
        let status = if s.status >= 500 {
            attributes.push(KeyValue::new("error.type", "500"));
            Status::error("")
        } else {
            Status::Unset
        };
        batch.push(SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(s.trace),
                SpanId::from_bytes(s.span),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from_bytes(s.parent),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: "GET /api/v1/items/{id}".into(),
            start_time: at(s.start_ns),
            end_time: at(s.end_ns),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });
        if batch.len() == BATCH || i + 1 == n {
            let spans = std::mem::take(&mut batch);
            futures_executor::block_on(exporter.export(spans)).expect("export");
        }
    }
    (
        started.elapsed(),
        client.bytes.load(Ordering::Relaxed),
        client.requests.load(Ordering::Relaxed),
    )
}

fn main() {
    let n = spans_total();
    if let Ok(side) = std::env::var("TELEGEN_BENCH_SIDE") {
        let (took, bytes, requests) = match side.as_str() {
            "sdk" => sdk(n),
            "telegen-6" => telegen(n, 6),
            _ => telegen(n, 1),
        };
        println!(
            "{} {} {} {}",
            took.as_secs_f64(),
            bytes,
            requests,
            peak_rss_kib()
        );
        return;
    }
    let me = std::env::current_exe().expect("this benchmark");
    let run = |side: &str| -> (f64, u64, u64, u64) {
        let out = Command::new(&me)
            .env("TELEGEN_BENCH_SIDE", side)
            .output()
            .expect("a child run");
        assert!(
            out.status.success(),
            "{side}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<&str> = text.split_whitespace().collect();
        (
            v[0].parse().unwrap(),
            v[1].parse().unwrap(),
            v[2].parse().unwrap(),
            v[3].parse().unwrap(),
        )
    };
    let t = run("telegen");
    let t6 = run("telegen-6");
    let s = run("sdk");
    println!("{n} HTTP server spans, batches of {BATCH}, OTLP protobuf + gzip, one core");
    println!(
        "| measure | telegen (gzip level 1, its default) | telegen (gzip level 6) | \
         OpenTelemetry Rust SDK (opentelemetry-otlp, flate2's default level 6) |"
    );
    println!("|---|---|---|---|");
    let rate = |r: &(f64, u64, u64, u64)| n as f64 / r.0;
    let per = |r: &(f64, u64, u64, u64)| r.1 as f64 / n as f64;
    let mib = |r: &(f64, u64, u64, u64)| r.3 as f64 / 1024.0;
    println!(
        "| spans per second | {:.0} | {:.0} | {:.0} |",
        rate(&t),
        rate(&t6),
        rate(&s)
    );
    println!(
        "| bytes on the wire per span | {:.1} | {:.1} | {:.1} |",
        per(&t),
        per(&t6),
        per(&s)
    );
    println!("| requests | {} | {} | {} |", t.2, t6.2, s.2);
    println!(
        "| peak RSS of the process | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(&t),
        mib(&t6),
        mib(&s)
    );
    println!(
        "| speed against the SDK | {:.2}x | {:.2}x | 1x |",
        s.0 / t.0,
        s.0 / t6.0
    );
}
