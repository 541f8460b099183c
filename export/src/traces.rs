//! OTLP spans built from the core's finished HTTP exchanges.
//!
//! Spans are grouped by the process they describe: one `ResourceSpans` per process, its
//! resource being the agent's plus `process.pid` and `process.executable.name`.

use crate::codec::{Format, OtlpRequest};
use crate::otlp::{SCOPE_NAME, kv_str};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, status::StatusCode,
};
use prost::Message;
use telegen_core::http::{Protocol, Span};

pub(crate) fn kv_int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One OTLP span. `unix_offset_ns` turns the kernel's monotonic times into Unix times.
pub fn otlp_span(s: &Span, unix_offset_ns: u64) -> OtlpSpan {
    let mut name = heapless::String::new();
    s.name(&mut name);
    let (server, server_port) = s.server();
    let (client, client_port) = s.client();
    let version = s.protocol_version();
    let mut attributes = match s.protocol {
        Protocol::Http | Protocol::Http2 => vec![
            kv_str("http.request.method", &s.method),
            kv_str("url.path", &s.path),
            kv_str("url.scheme", s.scheme()),
            kv_str("network.protocol.version", version),
        ],
        Protocol::Grpc => {
            let (service, method) = telegen_core::http2::rpc_names(&s.path);
            vec![
                kv_str("rpc.system", "grpc"),
                kv_str("rpc.service", service),
                kv_str("rpc.method", method),
                kv_int("rpc.grpc.status_code", i64::from(s.status)),
                kv_str("network.protocol.version", version),
            ]
        }
        Protocol::Redis | Protocol::Postgres | Protocol::Mysql | Protocol::Mariadb => {
            let mut a = vec![kv_str(
                "db.system.name",
                s.protocol.db_system().unwrap_or_default(),
            )];
            let optional = [
                ("db.operation.name", s.method.as_str()),
                ("db.namespace", s.namespace.as_str()),
                ("db.query.text", s.path.as_str()),
            ];
            for (k, v) in optional {
                if !v.is_empty() {
                    a.push(kv_str(k, v));
                }
            }
            if s.protocol.has_status_codes() && !s.db_error.is_empty() {
                a.push(kv_str("db.response.status_code", &s.db_error));
            }
            a
        }
        Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka => {
            let mut a = vec![
                kv_str(
                    "messaging.system",
                    s.protocol.messaging_system().unwrap_or_default(),
                ),
                kv_str("messaging.operation.name", &s.method),
            ];
            if let Some(t) = s.protocol.operation_type(&s.method) {
                a.push(kv_str("messaging.operation.type", t));
            }
            if !s.path.is_empty() {
                a.push(kv_str("messaging.destination.name", &s.path));
            }
            if !s.namespace.is_empty() {
                let detail = crate::spanpb::messaging_detail(s.protocol);
                a.push(kv_str(detail, &s.namespace));
            }
            a
        }
        Protocol::Dns => vec![kv_str("dns.question.name", &s.path)],
    };
    attributes.extend([
        kv_str("server.address", &server.to_string()),
        kv_int("server.port", i64::from(server_port)),
        kv_str("client.address", &client.to_string()),
        kv_int("client.port", i64::from(client_port)),
    ]);
    if s.status != 0 && s.protocol != Protocol::Grpc {
        attributes.push(kv_int("http.response.status_code", i64::from(s.status)));
    }
    let mut error = heapless::String::new();
    let failed = s.error_type(&mut error);
    if failed {
        attributes.push(kv_str("error.type", &error));
    }
    OtlpSpan {
        trace_id: s.context.trace_id.to_vec(),
        span_id: s.context.span_id.to_vec(),
        parent_span_id: if s.parent_span_id == [0; 8] {
            Vec::new()
        } else {
            s.parent_span_id.to_vec()
        },
        flags: 0x100 | u32::from(s.context.sampled),
        name: name.to_string(),
        kind: crate::spanpb::span_kind(s),
        start_time_unix_nano: s.start_ns.saturating_add(unix_offset_ns),
        end_time_unix_nano: s.end_ns.saturating_add(unix_offset_ns),
        attributes,
        status: failed.then(|| Status {
            code: StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// Builds requests of at most `batch_size` spans from `spans`, grouped by process.
pub fn requests(
    spans: impl IntoIterator<Item = Span>,
    resource: &Resource,
    unix_offset_ns: u64,
    batch_size: usize,
    procs: &[(u32, crate::spanpb::ProcessAttrs)],
) -> Vec<ExportTraceServiceRequest> {
    let batch_size = batch_size.max(1);
    let mut out = Vec::new();
    let mut current = ExportTraceServiceRequest::default();
    let mut in_current = 0;
    // The process of each `ResourceSpans` of the current request, by index.
    let mut pids: Vec<u32> = Vec::new();
    for s in spans {
        let pid = s.process.pid;
        let i = match pids.iter().position(|p| *p == pid) {
            Some(i) => i,
            None => {
                let attrs = procs.iter().find(|(p, _)| *p == pid).map(|(_, a)| a);
                let res = crate::spanpb::process_resource(resource, &s.process, attrs);
                current.resource_spans.push(ResourceSpans {
                    resource: Some(res),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: SCOPE_NAME.to_string(),
                            version: env!("CARGO_PKG_VERSION").to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                pids.push(pid);
                pids.len() - 1
            }
        };
        current.resource_spans[i].scope_spans[0]
            .spans
            .push(otlp_span(&s, unix_offset_ns));
        in_current += 1;
        if in_current == batch_size {
            out.push(std::mem::take(&mut current));
            pids.clear();
            in_current = 0;
        }
    }
    if in_current > 0 {
        out.push(current);
    }
    out
}

impl OtlpRequest for ExportTraceServiceRequest {
    fn items(&self) -> u64 {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    }

    fn split(mut self) -> Option<(Self, Self)> {
        let total = self.items();
        if total < 2 {
            return None;
        }
        let mut keep = total / 2;
        let mut tail = ExportTraceServiceRequest::default();
        for rs in &mut self.resource_spans {
            let mut tail_rs = rs.clone();
            tail_rs.scope_spans.clear();
            for ss in &mut rs.scope_spans {
                let n = ss.spans.len() as u64;
                if keep >= n {
                    keep -= n;
                    continue;
                }
                let mut tail_ss = ss.clone();
                tail_ss.spans = ss.spans.split_off(keep as usize);
                keep = 0;
                tail_rs.scope_spans.push(tail_ss);
            }
            rs.scope_spans.retain(|s| !s.spans.is_empty());
            if !tail_rs.scope_spans.is_empty() {
                tail.resource_spans.push(tail_rs);
            }
        }
        self.resource_spans.retain(|r| !r.scope_spans.is_empty());
        Some((self, tail))
    }

    fn partial_success(body: &[u8], format: Format) -> Option<(i64, String)> {
        let (rejected, message) = match format {
            Format::Protobuf => {
                let p = ExportTraceServiceResponse::decode(body)
                    .ok()?
                    .partial_success?;
                (p.rejected_spans, p.error_message)
            }
            Format::Json => crate::codec::json_partial(body, "rejectedSpans")?,
        };
        (rejected != 0 || !message.is_empty()).then_some((rejected, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use telegen_core::http::{Path, SpanContext};
    use telegen_core::record::IpAddr;
    use telegen_core::tcp::{Process, Side};

    fn span(pid: u32, status: u16) -> Span {
        let mut path = Path::new();
        path.push_str("/users/42").unwrap();
        let mut method = heapless::String::new();
        method.push_str("GET").unwrap();
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        Span {
            side: Side::Server,
            protocol: telegen_core::record::Protocol::Http,
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                sampled: true,
            },
            parent_span_id: [3; 8],
            start_ns: 1_000,
            end_ns: 5_000,
            method,
            path,
            status,
            minor_version: 1,
            broken: None,
            db_error: heapless::String::new(),
            namespace: heapless::String::new(),
            tls: false,
            local: IpAddr {
                v6: false,
                bytes: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            local_port: 80,
            remote: IpAddr::default(),
            remote_port: 5555,
            process: Process { pid, comm },
        }
    }

    #[test]
    fn groups_by_process_batches_and_splits() {
        let spans = [span(1, 200), span(2, 500), span(1, 404), span(1, 200)];
        let reqs = requests(spans, &Resource::default(), 10_000, 3, &[]);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].items(), 3);
        assert_eq!(reqs[0].resource_spans.len(), 2, "one resource per process");
        let s = &reqs[0].resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.start_time_unix_nano, 11_000);
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.parent_span_id, vec![3; 8]);
        let failed = &reqs[0].resource_spans[1].scope_spans[0].spans[0];
        assert_eq!(
            failed.status.as_ref().unwrap().code,
            StatusCode::Error as i32
        );
        assert!(failed.attributes.iter().any(|kv| kv.key == "error.type"));
        let (a, b) = reqs[0].clone().split().unwrap();
        assert_eq!((a.items(), b.items()), (1, 2));
        assert!(reqs[1].clone().split().is_none());
    }
}
