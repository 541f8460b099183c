//! OTLP spans written as protobuf straight from the core's spans.
//!
//! The agent's spans are always of one shape (an HTTP exchange), so instead of building the
//! `opentelemetry-proto` message structs (a dozen owned strings per span) and encoding them,
//! this writes the protobuf wire format directly into reused buffers. The bytes decode to
//! exactly the message [`crate::traces::requests`] builds (a test holds them equal), which
//! stays the path for OTLP/JSON.

use crate::otlp::SCOPE_NAME;
use opentelemetry_proto::tonic::resource::v1::Resource;
use telegen_core::cgroup::Container;
use telegen_core::http::{Protocol, Span};
use telegen_core::http2::rpc_names;
use telegen_core::record::{IpAddr, comm_str};
use telegen_core::tcp::{Process, Side};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: tag, length, bytes.
fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field << 3 | 1));
    out.extend_from_slice(&v.to_le_bytes());
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field << 3));
    varint(out, v);
}

/// A `KeyValue` with a string value, as field `field` of the enclosing message.
fn kv_str(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    // AnyValue{string_value = 1} inside KeyValue{key = 1, value = 2}.
    let any = 1 + varint_len(value.len() as u64) + value.len();
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    varint(out, u64::from(field << 3 | 2));
    varint(out, kv as u64);
    bytes_field(out, 1, key.as_bytes());
    varint(out, 2 << 3 | 2);
    varint(out, any as u64);
    bytes_field(out, 1, value.as_bytes());
}

/// A `KeyValue` with an integer value.
fn kv_int(out: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    // AnyValue{int_value = 3}.
    let any = 1 + varint_len(value as u64);
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    varint(out, u64::from(field << 3 | 2));
    varint(out, kv as u64);
    bytes_field(out, 1, key.as_bytes());
    varint(out, 2 << 3 | 2);
    varint(out, any as u64);
    varint_field(out, 3, value as u64);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn addr(a: IpAddr) -> heapless::String<48> {
    let mut s = heapless::String::new();
    // An IPv6 address is at most 45 characters.
    let _ = core::fmt::write(&mut s, format_args!("{a}"));
    s
}

/// Writes `ExportTraceServiceRequest` bodies; keeps its scratch buffers between calls.
#[derive(Default)]
pub struct SpanWriter {
    /// What the caller read of the processes spans may come from: their resources carry
    /// it (their own `service.name`, their container).
    pub procs: Vec<(u32, ProcessAttrs)>,
    span: Vec<u8>,
    scope: Vec<u8>,
    group: Vec<u8>,
    resource: Vec<u8>,
    pids: Vec<u32>,
}

impl SpanWriter {
    /// Writes `spans` as one request into `out` (cleared first): one `ResourceSpans` per
    /// process, in the order processes first appear, each with the agent's `resource` plus
    /// `process.pid` and `process.executable.name`. `unix_offset_ns` turns the kernel's
    /// monotonic times into Unix times.
    pub fn write(
        &mut self,
        spans: &[Span],
        resource: &Resource,
        unix_offset_ns: u64,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        self.pids.clear();
        for s in spans {
            if !self.pids.contains(&s.process.pid) {
                self.pids.push(s.process.pid);
            }
        }
        let pids = std::mem::take(&mut self.pids);
        for &pid in &pids {
            let Some(first) = spans.iter().find(|s| s.process.pid == pid) else {
                continue;
            };
            // Resource: the agent's attributes but its service.name, then this process's.
            self.resource.clear();
            let attrs = self.procs.iter().find(|(p, _)| *p == pid).map(|(_, a)| a);
            for kv in resource.attributes.iter().filter(|kv| {
                !agents_own(&kv.key)
                    && !process_attributes(&first.process, attrs).any(|(k, _)| k == kv.key)
            }) {
                prost::encoding::message::encode(1, kv, &mut self.resource);
            }
            for (k, v) in process_attributes(&first.process, attrs) {
                match v {
                    Val::Str(v) => kv_str(&mut self.resource, 1, k, v),
                    Val::Int(v) => kv_int(&mut self.resource, 1, k, v),
                }
            }
            // ScopeSpans: the scope, then the spans.
            self.scope.clear();
            let mut scope = Vec::with_capacity(32);
            bytes_field(&mut scope, 1, SCOPE_NAME.as_bytes());
            bytes_field(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            bytes_field(&mut self.scope, 1, &scope);
            for s in spans.iter().filter(|s| s.process.pid == pid) {
                self.span.clear();
                write_span(&mut self.span, s, unix_offset_ns);
                bytes_field(&mut self.scope, 2, &self.span);
            }
            self.group.clear();
            bytes_field(&mut self.group, 1, &self.resource);
            bytes_field(&mut self.group, 2, &self.scope);
            bytes_field(out, 1, &self.group);
        }
        self.pids = pids;
    }
}

/// What the agent read of a process beyond its pid and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessAttrs {
    /// The `OTEL_SERVICE_NAME` in its environment, when the agent could read it.
    pub service_name: Option<String>,
    pub container: Option<Container>,
    /// `container.name`: its container's name in the runtime's state (docker, podman,
    /// buildah, cri-o), when the agent could read it.
    pub container_name: Option<String>,
    /// `process.parent_pid`.
    pub parent_pid: Option<u32>,
    /// `process.owner`: the user name of its real uid, or the uid without a name.
    pub owner: Option<String>,
    /// `process.command`: the first word of its command line (never its arguments).
    pub command: Option<String>,
    /// `process.executable.name` when read from the process (its main thread's name; the
    /// kernel's records name the thread that moved the bytes).
    pub executable_name: Option<String>,
    /// `process.executable.path`: the program file (`/proc/PID/exe`, or the path it was
    /// started from).
    pub executable_path: Option<String>,
    /// `process.runtime.name` (`go`, `cpython`, `java`, `nodejs`) and, when known,
    /// `process.runtime.version`.
    pub runtime: Option<(&'static str, Option<String>)>,
    /// The Kubernetes pod of its container, when the API server named it.
    pub pod: Option<std::sync::Arc<crate::k8s::Pod>>,
    /// The database or broker it is (`db.system.name` or `messaging.system`, and the value).
    pub server: Option<(&'static str, &'static str)>,
}

/// A resource attribute's value.
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
}

/// The attributes a process adds to the agent's resource (whose `service.name` it
/// replaces), in the order both span writers use: `service.name` (its own, else its pod's
/// workload's name, else its container's name, else its executable's name), `process.pid`, `process.parent_pid`,
/// `process.executable.name`, `process.executable.path`, `process.command`,
/// `process.owner`, `process.runtime.name` and `.version`, then its container's, then its
/// pod's (`k8s.*`).
pub fn process_attributes<'a>(
    p: &'a Process,
    attrs: Option<&'a ProcessAttrs>,
) -> impl Iterator<Item = (&'a str, Val<'a>)> {
    let comm = attrs
        .and_then(|a| a.executable_name.as_deref())
        .unwrap_or(comm_str(&p.comm));
    let pod = attrs.and_then(|a| a.pod.as_deref());
    let service = attrs
        .and_then(|a| a.service_name.as_deref())
        .or_else(|| pod.and_then(|p| p.workload_name()))
        .or_else(|| attrs.and_then(|a| a.container_name.as_deref()))
        .unwrap_or(comm);
    let c = attrs.and_then(|a| a.container.as_ref());
    let ppid = attrs.and_then(|a| a.parent_pid);
    let command = attrs.and_then(|a| a.command.as_deref());
    let owner = attrs.and_then(|a| a.owner.as_deref());
    let path = attrs.and_then(|a| a.executable_path.as_deref());
    let runtime = attrs.and_then(|a| a.runtime.as_ref());
    [
        Some(("service.name", Val::Str(service))),
        Some(("process.pid", Val::Int(i64::from(p.pid)))),
        ppid.map(|pp| ("process.parent_pid", Val::Int(i64::from(pp)))),
        Some(("process.executable.name", Val::Str(comm))),
        path.map(|v| ("process.executable.path", Val::Str(v))),
        command.map(|v| ("process.command", Val::Str(v))),
        owner.map(|v| ("process.owner", Val::Str(v))),
        runtime.map(|(n, _)| ("process.runtime.name", Val::Str(n))),
        runtime
            .and_then(|(_, v)| v.as_deref())
            .map(|v| ("process.runtime.version", Val::Str(v))),
        attrs.and_then(|a| a.server).map(|(k, v)| (k, Val::Str(v))),
        c.map(|c| ("container.id", Val::Str(c.id_str()))),
        c.map(|c| ("container.runtime", Val::Str(c.runtime.as_str()))),
        attrs
            .and_then(|a| a.container_name.as_deref())
            .map(|n| ("container.name", Val::Str(n))),
        c.and_then(|c| c.pod_uid_str())
            .map(|u| ("k8s.pod.uid", Val::Str(u))),
    ]
    .into_iter()
    .flatten()
    .chain(
        pod.into_iter()
            .flat_map(|p| p.attributes().map(|(k, v)| (k, Val::Str(v)))),
    )
}

/// Attributes of the agent's resource that describe the agent itself, not the host: a
/// process's resource leaves them out (its own `service.name`, pod and container replace
/// them, or are absent).
pub fn agents_own(key: &str) -> bool {
    key == "service.name"
        || key == "k8s.namespace.name"
        || key.starts_with("k8s.pod.")
        || key.starts_with("container.")
}

/// The resource of a process: the agent's `resource` without what describes the agent
/// itself ([`agents_own`]) or what the process says otherwise, then the process's
/// attributes ([`process_attributes`]).
pub fn process_resource(
    resource: &Resource,
    p: &Process,
    attrs: Option<&ProcessAttrs>,
) -> Resource {
    let mut res = resource.clone();
    res.attributes.retain(|kv| {
        !agents_own(&kv.key) && !process_attributes(p, attrs).any(|(k, _)| k == kv.key)
    });
    for (k, v) in process_attributes(p, attrs) {
        res.attributes.push(match v {
            Val::Str(v) => crate::otlp::kv_str(k, v),
            Val::Int(v) => crate::traces::kv_int(k, v),
        });
    }
    res
}

/// Protobuf bodies for `spans`: at most `batch_size` spans a request, a request's plain
/// bytes at most `max_body` (halved until it fits; a single span larger is dropped and
/// counted as `export_too_large`), gzipped when `gzip`.
#[allow(clippy::too_many_arguments)]
pub fn batches(
    writer: &mut SpanWriter,
    encoder: &mut crate::payload::Encoder,
    gzip: bool,
    spans: &[Span],
    resource: &Resource,
    unix_offset_ns: u64,
    (batch_size, max_body): (usize, usize),
    drops: &mut telegen_core::selfmetrics::AgentCounters,
    out: &mut Vec<crate::client::Batch>,
) {
    let mut plain = Vec::new();
    let mut todo: Vec<&[Span]> = spans.chunks(batch_size.max(1)).rev().collect();
    while let Some(chunk) = todo.pop() {
        writer.write(chunk, resource, unix_offset_ns, &mut plain);
        if plain.len() > max_body {
            if chunk.len() == 1 {
                drops.drop(telegen_core::selfmetrics::DropReason::ExportTooLarge, 1);
            } else {
                let (a, b) = chunk.split_at(chunk.len() / 2);
                todo.push(b);
                todo.push(a);
            }
            continue;
        }
        let mut body = Vec::new();
        encoder.compress(&plain, gzip, &mut body);
        out.push(crate::client::Batch::new(body, chunk.len() as u64));
    }
}

/// The attribute a messaging span's `namespace` field holds.
pub fn messaging_detail(p: Protocol) -> &'static str {
    match p {
        Protocol::Kafka => "messaging.destination.partition.id",
        _ => "messaging.rabbitmq.destination.routing_key",
    }
}

/// The OTLP span kind: SERVER 2, CLIENT 3, PRODUCER 4, CONSUMER 5.
pub fn span_kind(s: &Span) -> i32 {
    match (s.protocol, s.method.as_str(), s.side) {
        (Protocol::Mqtt | Protocol::Amqp, "publish", _) | (Protocol::Kafka, "send", _) => 4,
        (Protocol::Mqtt | Protocol::Amqp, "receive", _) => 5,
        (Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka, _, _) => 3,
        (_, _, Side::Server) => 2,
        (_, _, Side::Client) => 3,
    }
}

fn write_span(out: &mut Vec<u8>, s: &Span, unix_offset_ns: u64) {
    bytes_field(out, 1, &s.context.trace_id);
    bytes_field(out, 2, &s.context.span_id);
    if s.parent_span_id != [0; 8] {
        bytes_field(out, 4, &s.parent_span_id);
    }
    let mut name = heapless::String::new();
    s.name(&mut name);
    bytes_field(out, 5, name.as_bytes());
    let kind = span_kind(s) as u64;
    varint_field(out, 6, kind);
    fixed64_field(out, 7, s.start_ns.saturating_add(unix_offset_ns));
    fixed64_field(out, 8, s.end_ns.saturating_add(unix_offset_ns));
    let (server, server_port) = s.server();
    let (client, client_port) = s.client();
    match s.protocol {
        Protocol::Http | Protocol::Http2 => {
            kv_str(out, 9, "http.request.method", &s.method);
            kv_str(out, 9, "url.path", &s.path);
            kv_str(out, 9, "url.scheme", s.scheme());
            kv_str(out, 9, "network.protocol.version", s.protocol_version());
        }
        Protocol::Grpc => {
            let (service, method) = rpc_names(&s.path);
            kv_str(out, 9, "rpc.system", "grpc");
            kv_str(out, 9, "rpc.service", service);
            kv_str(out, 9, "rpc.method", method);
            kv_int(out, 9, "rpc.grpc.status_code", i64::from(s.status));
            kv_str(out, 9, "network.protocol.version", s.protocol_version());
        }
        Protocol::Redis | Protocol::Postgres | Protocol::Mysql | Protocol::Mariadb => {
            let system = s.protocol.db_system().unwrap_or_default();
            kv_str(out, 9, "db.system.name", system);
            if !s.method.is_empty() {
                kv_str(out, 9, "db.operation.name", &s.method);
            }
            if !s.namespace.is_empty() {
                kv_str(out, 9, "db.namespace", &s.namespace);
            }
            if !s.path.is_empty() {
                kv_str(out, 9, "db.query.text", &s.path);
            }
            if s.protocol.has_status_codes() && !s.db_error.is_empty() {
                kv_str(out, 9, "db.response.status_code", &s.db_error);
            }
        }
        Protocol::Mqtt | Protocol::Amqp | Protocol::Kafka => {
            let system = s.protocol.messaging_system().unwrap_or_default();
            kv_str(out, 9, "messaging.system", system);
            kv_str(out, 9, "messaging.operation.name", &s.method);
            if let Some(t) = s.protocol.operation_type(&s.method) {
                kv_str(out, 9, "messaging.operation.type", t);
            }
            if !s.path.is_empty() {
                kv_str(out, 9, "messaging.destination.name", &s.path);
            }
            if !s.namespace.is_empty() {
                kv_str(out, 9, messaging_detail(s.protocol), &s.namespace);
            }
        }
        Protocol::Dns => kv_str(out, 9, "dns.question.name", &s.path),
    }
    kv_str(out, 9, "server.address", &addr(server));
    kv_int(out, 9, "server.port", i64::from(server_port));
    kv_str(out, 9, "client.address", &addr(client));
    kv_int(out, 9, "client.port", i64::from(client_port));
    if s.status != 0 && s.protocol != Protocol::Grpc {
        kv_int(out, 9, "http.response.status_code", i64::from(s.status));
    }
    let mut error = heapless::String::new();
    if s.error_type(&mut error) {
        kv_str(out, 9, "error.type", &error);
        // Status{code = 3: STATUS_CODE_ERROR (2)}.
        bytes_field(out, 15, &[3 << 3, 2]);
    }
    // flags (fixed32, field 16; fields go in tag order, as prost writes them): the W3C
    // flags, and "the parent's remoteness is known".
    varint(out, 16 << 3 | 5);
    out.extend_from_slice(&(0x100 | u32::from(s.context.sampled)).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::kv_str as prost_kv;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use telegen_core::http::{Broken, Path, SpanContext};
    use telegen_core::tcp::Process;

    fn span(pid: u32, side: Side, status: u16, parent: bool, v6: bool) -> Span {
        let mut path = Path::new();
        path.push_str("/users/42").unwrap();
        let mut method = heapless::String::new();
        method.push_str("POST").unwrap();
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut a = IpAddr {
            v6,
            bytes: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        if v6 {
            a.bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        }
        Span {
            side,
            protocol: telegen_core::record::Protocol::Http,
            context: SpanContext {
                trace_id: [pid as u8; 16],
                span_id: [status as u8; 8],
                sampled: status != 201,
            },
            parent_span_id: if parent { [9; 8] } else { [0; 8] },
            start_ns: 1_000 + u64::from(status),
            end_ns: 90_000,
            method,
            path,
            status,
            minor_version: (status % 2) as u8,
            broken: (status == 0).then_some(Broken::Closed),
            db_error: heapless::String::new(),
            namespace: heapless::String::new(),
            tls: status == 404,
            local: a,
            local_port: 8443,
            remote: a,
            remote_port: 51234,
            process: Process { pid, comm },
        }
    }

    fn redis(side: Side, error: &str) -> Span {
        let mut s = span(11, side, 0, false, false);
        s.protocol = telegen_core::record::Protocol::Redis;
        s.broken = None;
        s.path = Path::new();
        s.method = heapless::String::try_from("LPUSH").unwrap();
        s.db_error = heapless::String::try_from(error).unwrap();
        s
    }

    fn postgres() -> Span {
        let mut s = redis(Side::Client, "42P01");
        s.protocol = telegen_core::record::Protocol::Postgres;
        s.method = heapless::String::try_from("SELECT").unwrap();
        s.path = Path::try_from("SELECT * FROM t WHERE id = ?").unwrap();
        s.namespace = heapless::String::try_from("shop").unwrap();
        s
    }

    #[test]
    fn decodes_to_the_message_the_struct_path_builds() {
        let spans = vec![
            span(7, Side::Server, 200, true, false),
            span(8, Side::Client, 503, false, true),
            span(7, Side::Client, 404, false, false),
            span(7, Side::Server, 0, true, false),
            span(9, Side::Server, 201, false, false),
            redis(Side::Client, "WRONGTYPE"),
            redis(Side::Server, ""),
            postgres(),
        ];
        let mut resource = Resource::default();
        resource.attributes.push(prost_kv("service.name", "edge"));
        resource.attributes.push(prost_kv("host.name", "node-1"));
        let offset = 1_700_000_000_000_000_000;
        let mut out = Vec::new();
        let mut w = SpanWriter::default();
        // Process 8 runs in a Kubernetes pod's container.
        let cgroup = "0::/kubepods/burstable/pod0cd7e3ac-1d38-4a1e-8e17-5a5c0e5d8f4f/\
7be92808767a667f35c8505cbf40d14e931ef6db5b0210329cf193b15ba9d605\n";
        let c = telegen_core::cgroup::container(cgroup).unwrap();
        w.procs.push((
            8,
            ProcessAttrs {
                container: Some(c),
                parent_pid: Some(1),
                owner: Some("root".into()),
                command: Some("/usr/bin/curl".into()),
                executable_path: Some("/usr/bin/curl".into()),
                runtime: Some(("go", Some("go1.19.8".into()))),
                ..Default::default()
            },
        ));
        w.procs.push((
            9,
            ProcessAttrs {
                service_name: Some("checkout".into()),
                executable_name: Some("java".into()),
                ..Default::default()
            },
        ));
        w.write(&spans, &resource, offset, &mut out);
        let direct = ExportTraceServiceRequest::decode(&out[..]).expect("valid protobuf");
        let built = crate::traces::requests(spans.clone(), &resource, offset, 100, &w.procs);
        let pod = direct.resource_spans[1].resource.as_ref().unwrap();
        let keys: Vec<&str> = pod.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "host.name",
                "service.name",
                "process.pid",
                "process.parent_pid",
                "process.executable.name",
                "process.executable.path",
                "process.command",
                "process.owner",
                "process.runtime.name",
                "process.runtime.version",
                "container.id",
                "container.runtime",
                "k8s.pod.uid"
            ]
        );
        // service.name: the process's own when known, else its executable's name.
        let name = |i: usize| {
            let r = direct.resource_spans[i].resource.as_ref().unwrap();
            let a = r
                .attributes
                .iter()
                .find(|a| a.key == "service.name")
                .unwrap();
            format!("{:?}", a.value.as_ref().unwrap().value.as_ref().unwrap())
        };
        assert!(name(1).contains("\"curl\""), "{}", name(1));
        assert!(name(2).contains("\"checkout\""), "{}", name(2));
        // The process's own name over the thread's (`curl` in the records).
        let r = direct.resource_spans[2].resource.as_ref().unwrap();
        let exe = r
            .attributes
            .iter()
            .find(|a| a.key == "process.executable.name");
        assert!(format!("{exe:?}").contains("\"java\""), "{exe:?}");
        assert_eq!(built.len(), 1);
        assert_eq!(direct, built[0]);
        assert_eq!(out, built[0].encode_to_vec(), "even byte for byte");
        // A Redis span: the database attributes, its error, its name.
        let r = &direct.resource_spans.last().unwrap().scope_spans[0].spans;
        let keys: Vec<&str> = r[0].attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "db.system.name",
                "db.operation.name",
                "server.address",
                "server.port",
                "client.address",
                "client.port",
                "error.type"
            ]
        );
        assert_eq!((r[0].name.as_str(), r[1].attributes.len()), ("LPUSH", 6));
        assert_eq!(r[0].status.as_ref().map(|s| s.code), Some(2));
        // A PostgreSQL span: its database, statement and SQLSTATE too.
        let keys: Vec<&str> = r[2].attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys[..6],
            [
                "db.system.name",
                "db.operation.name",
                "db.namespace",
                "db.query.text",
                "db.response.status_code",
                "server.address",
            ]
        );
        assert_eq!(r[2].name, "SELECT shop");
        assert_eq!(r[2].kind, 3);
        // The buffers are reused: a second, smaller write is not polluted by the first.
        w.write(&spans[..1], &resource, offset, &mut out);
        let again = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(
            again,
            crate::traces::requests(spans[..1].to_vec(), &resource, offset, 9, &w.procs)[0]
        );
    }

    #[test]
    fn batches_split_to_fit_and_count_what_cannot() {
        let spans: Vec<Span> = (0..10)
            .map(|i| span(7 + i % 2, Side::Server, 200, true, false))
            .collect();
        let resource = Resource::default();
        let (mut w, mut e) = (SpanWriter::default(), crate::payload::Encoder::default());
        let mut drops = telegen_core::selfmetrics::AgentCounters::default();
        let mut out = Vec::new();
        batches(
            &mut w,
            &mut e,
            false,
            &spans,
            &resource,
            0,
            (4, 1 << 20),
            &mut drops,
            &mut out,
        );
        let items: Vec<u64> = out.iter().map(|b| b.items).collect();
        assert_eq!(items, [4, 4, 2]);
        // A cap that holds about two spans: every batch is halved until it fits.
        let one = {
            let mut b = Vec::new();
            w.write(&spans[..1], &resource, 0, &mut b);
            b.len()
        };
        out.clear();
        batches(
            &mut w,
            &mut e,
            true,
            &spans,
            &resource,
            0,
            (4, one * 2 + 10),
            &mut drops,
            &mut out,
        );
        assert_eq!(out.iter().map(|b| b.items).sum::<u64>(), 10);
        assert!(out.iter().all(|b| b.items <= 2));
        let mut total = 0;
        for b in &out {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&b.body[..]), &mut plain)
                .unwrap();
            total += ExportTraceServiceRequest::decode(&plain[..])
                .unwrap()
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum::<usize>();
        }
        assert_eq!(total, 10);
        out.clear();
        batches(
            &mut w,
            &mut e,
            true,
            &spans,
            &resource,
            0,
            (4, 10),
            &mut drops,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(
            drops.dropped(telegen_core::selfmetrics::DropReason::ExportTooLarge),
            10
        );
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
