//! The TOML configuration file. Unknown keys are errors, reported with file, line and column.

use crate::endpoint::parse_from;
use crate::env::{compression, protocol};
use crate::{Config, Error, Fsync, OtlpOverrides, SignalConfig, Spool, defaults};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    otlp: Option<OtlpFile>,
    metrics: Option<SignalFile>,
    traces: Option<SignalFile>,
    logs: Option<SignalFile>,
    service: Option<ServiceFile>,
    limits: Option<LimitsFile>,
    spool: Option<SpoolFile>,
    security: Option<SecurityFile>,
    kernel: Option<KernelFile>,
    dns: Option<DnsFile>,
    discovery: Option<DiscoveryFile>,
    kubernetes: Option<KubernetesFile>,
    rules: Option<Vec<RuleFile>>,
    console: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    action: String,
    executable: Option<String>,
    port: Option<u16>,
    container: Option<String>,
    k8s_namespace: Option<String>,
    k8s_label: Option<String>,
    service_name: Option<String>,
}

/// Port rules the kernel can hold.
const PORT_RULES_CAP: usize = telegen_common::EXCLUDED_PORTS_CAP;

fn rules(c: &mut Config, list: Vec<RuleFile>, key: &dyn Fn(&str) -> String) -> Result<(), Error> {
    c.rules.clear();
    c.excluded_ports.clear();
    for (i, r) in list.into_iter().enumerate() {
        let k = |f: &str| key(&format!("rules[{i}].{f}"));
        let action = match r.action.as_str() {
            "include" => crate::Action::Include,
            "exclude" => crate::Action::Exclude,
            other => {
                return Err(Error::new(
                    k("action"),
                    format!("{other:?}: expected \"include\" or \"exclude\""),
                ));
            }
        };
        let others = r.executable.is_some()
            || r.container.is_some()
            || r.k8s_namespace.is_some()
            || r.k8s_label.is_some();
        if let Some(port) = r.port {
            if others || action != crate::Action::Exclude || port == 0 {
                return Err(Error::new(
                    k("port"),
                    "a port rule excludes a port (1-65535) and names nothing else: \
                     the kernel drops its sockets before any process is known",
                ));
            }
            if c.excluded_ports.len() == PORT_RULES_CAP {
                return Err(Error::new(
                    k("port"),
                    format!("at most {PORT_RULES_CAP} port rules"),
                ));
            }
            c.excluded_ports.push(port);
            continue;
        }
        if !others {
            return Err(Error::new(
                key(&format!("rules[{i}]")),
                "names no executable, port, container, k8s_namespace or k8s_label",
            ));
        }
        if let Some(s) = &r.service_name
            && (action != crate::Action::Include || s.trim().is_empty() || s.len() > 128)
        {
            return Err(Error::new(
                k("service_name"),
                "names the service of processes a rule includes: 1 to 128 bytes, with \
                 action = \"include\"",
            ));
        }
        let container = match r.container.as_deref() {
            None => None,
            Some("any") => Some(crate::ContainerMatch::Any),
            Some("none") => Some(crate::ContainerMatch::None),
            Some(id)
                if id.len() >= 4 && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(crate::ContainerMatch::Id(id.to_ascii_lowercase()))
            }
            Some(other) => {
                return Err(Error::new(
                    k("container"),
                    format!("{other:?}: expected \"any\", \"none\" or 4 to 64 hex digits of an id"),
                ));
            }
        };
        let k8s_label = match r.k8s_label {
            None => None,
            Some(l) => match l.split_once('=') {
                Some((key_, v)) if !key_.is_empty() => Some((key_.to_string(), v.to_string())),
                _ => {
                    return Err(Error::new(
                        k("k8s_label"),
                        format!("{l:?}: expected key=value"),
                    ));
                }
            },
        };
        c.rules.push(crate::Rule {
            action,
            executable: r.executable,
            container,
            k8s_namespace: r.k8s_namespace,
            k8s_label,
            service_name: r.service_name.map(|s| s.trim().to_string()),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesFile {
    /// `auto`, `off`, or the API server's https URL.
    api: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    node_name: Option<String>,
    refresh_ms: Option<u64>,
    max_pods: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoveryFile {
    /// `off`, or the metadata service's base URL.
    cloud: Option<String>,
    cloud_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsFile {
    spans: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelFile {
    transport: Option<String>,
    capture_join: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFile {
    user: Option<String>,
    seccomp: Option<String>,
    helper: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolFile {
    dir: PathBuf,
    max_bytes: Option<u64>,
    fsync: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpFile {
    endpoint: Option<String>,
    protocol: Option<String>,
    compression: Option<String>,
    timeout_ms: Option<u64>,
    headers: Option<BTreeMap<String, String>>,
    certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    insecure_skip_verify: Option<bool>,
    max_body_bytes: Option<usize>,
    gzip_level: Option<u32>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFile {
    enabled: Option<bool>,
    endpoint: Option<String>,
    batch_size: Option<usize>,
    interval_ms: Option<u64>,
    protocol: Option<String>,
    compression: Option<String>,
    timeout_ms: Option<u64>,
    headers: Option<BTreeMap<String, String>>,
    certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
}

/// The keys `[otlp]` and each signal share.
struct Overridable {
    protocol: Option<String>,
    compression: Option<String>,
    timeout_ms: Option<u64>,
    headers: Option<BTreeMap<String, String>>,
    certificate: Option<PathBuf>,
    client_key: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
}

impl Overridable {
    fn resolve(self, key: &dyn Fn(&str) -> String) -> Result<OtlpOverrides, Error> {
        Ok(OtlpOverrides {
            headers: self.headers.map(|h| h.into_iter().collect()),
            compression: self
                .compression
                .map(|v| compression(&key("compression"), &v))
                .transpose()?,
            protocol: self
                .protocol
                .map(|v| protocol(&key("protocol"), &v))
                .transpose()?,
            timeout_ms: self.timeout_ms,
            certificate: self.certificate,
            client_key: self.client_key,
            client_certificate: self.client_certificate,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: Option<String>,
    resource_attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    connections: Option<usize>,
    listeners: Option<usize>,
    series_per_metric: Option<usize>,
    ring_buffer_bytes: Option<u32>,
    export_queue_bytes: Option<usize>,
    http_connections: Option<usize>,
    http_exchanges: Option<usize>,
    http2_connections: Option<usize>,
    span_queue: Option<usize>,
    db_connections: Option<usize>,
}

/// Reads and applies the file at `path`.
pub(crate) fn apply(c: &mut Config, path: &Path) -> Result<(), Error> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(&name, format!("cannot read the config file: {e}")))?;
    apply_str(c, &name, &text)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(at.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub(crate) fn apply_str(c: &mut Config, name: &str, text: &str) -> Result<(), Error> {
    let f: File = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        Error::new(
            format!("{name}:{line}:{col}"),
            e.message().trim().to_string(),
        )
    })?;
    let key = |k: &str| format!("{name}: {k}");
    if let Some(v) = f.dns.and_then(|d| d.spans) {
        c.dns_spans = v;
    }
    if let Some(list) = f.rules {
        rules(c, list, &key)?;
    }
    if let Some(k) = f.kubernetes {
        let kc = &mut c.kubernetes;
        if let Some(v) = k.api {
            kc.api = match v.trim() {
                "auto" => crate::KubeApi::Auto,
                "off" => crate::KubeApi::Off,
                url => {
                    let e = parse_from(&key("kubernetes.api"), url)?;
                    if e.scheme != crate::Scheme::Https {
                        return Err(Error::new(
                            key("kubernetes.api"),
                            format!("{url}: the API server is asked over https only"),
                        ));
                    }
                    crate::KubeApi::Url(e)
                }
            };
        }
        if let Some(v) = k.token_file {
            kc.token_file = v;
        }
        if let Some(v) = k.ca_file {
            kc.ca_file = v;
        }
        if let Some(v) = k.node_name.filter(|n| !n.trim().is_empty()) {
            kc.node_name = Some(v.trim().to_string());
        }
        if let Some(v) = k.refresh_ms {
            if v < 1000 {
                return Err(Error::new(
                    key("kubernetes.refresh_ms"),
                    "must be at least 1000",
                ));
            }
            kc.refresh_ms = v;
        }
        if let Some(v) = k.max_pods {
            if v == 0 {
                return Err(Error::new(key("kubernetes.max_pods"), "must be at least 1"));
            }
            kc.max_pods = v;
        }
    }
    if let Some(d) = f.discovery {
        let timeout_ms = d
            .cloud_timeout_ms
            .or(c.cloud.as_ref().map(|p| p.timeout_ms))
            .unwrap_or(defaults::CLOUD_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(Error::new(
                key("discovery.cloud_timeout_ms"),
                "must be at least 1",
            ));
        }
        c.cloud = match d.cloud {
            Some(v) => crate::CloudProbe::parse(&key("discovery.cloud"), &v, timeout_ms)?,
            None => c
                .cloud
                .take()
                .map(|p| crate::CloudProbe { timeout_ms, ..p }),
        };
    }
    if let Some(v) = f.console {
        c.console = v;
    }
    if let Some(o) = f.otlp {
        if let Some(v) = o.endpoint {
            c.otlp.endpoint = Some(parse_from(&key("otlp.endpoint"), &v)?);
        }
        let shared = Overridable {
            protocol: o.protocol,
            compression: o.compression,
            timeout_ms: o.timeout_ms,
            headers: o.headers,
            certificate: o.certificate,
            client_key: o.client_key,
            client_certificate: o.client_certificate,
        };
        c.otlp
            .base
            .merge(shared.resolve(&|k| key(&format!("otlp.{k}")))?);
        let d = &mut c.otlp;
        d.insecure_skip_verify = o.insecure_skip_verify.unwrap_or(d.insecure_skip_verify);
        d.max_body_bytes = o.max_body_bytes.unwrap_or(d.max_body_bytes);
        d.gzip_level = o.gzip_level.unwrap_or(d.gzip_level);
        d.retry_initial_ms = o.retry_initial_ms.unwrap_or(d.retry_initial_ms);
        d.retry_max_ms = o.retry_max_ms.unwrap_or(d.retry_max_ms);
    }
    for (section, file, sig) in [
        ("metrics", f.metrics, &mut c.metrics),
        ("traces", f.traces, &mut c.traces),
        ("logs", f.logs, &mut c.logs),
    ] {
        if let Some(s) = file {
            apply_signal(sig, s, &|k| key(&format!("{section}.{k}")))?;
        }
    }
    if let Some(k) = f.kernel {
        if let Some(t) = k.transport {
            c.transport = transport(&key("kernel.transport"), &t)?;
        }
        if let Some(j) = k.capture_join {
            c.capture_join = capture_join(&key("kernel.capture_join"), &j)?;
        }
    }
    if let Some(sec) = f.security {
        if let Some(user) = sec.user {
            c.user = user_setting(user);
        }
        if let Some(m) = sec.seccomp {
            c.seccomp = seccomp(&key("security.seccomp"), &m)?;
        }
        if let Some(h) = sec.helper {
            c.helper = h;
        }
    }
    if let Some(sp) = f.spool {
        let fsync = match sp.fsync.as_deref() {
            None | Some("always") => Fsync::Always,
            Some("never") => Fsync::Never,
            Some(other) => {
                return Err(Error::new(
                    key("spool.fsync"),
                    format!("expected always or never, got {other:?}"),
                ));
            }
        };
        c.spool = Some(Spool {
            dir: sp.dir,
            max_bytes: sp.max_bytes.unwrap_or(defaults::SPOOL_MAX_BYTES),
            fsync,
        });
    }
    if let Some(s) = f.service {
        if let Some(n) = s.name {
            c.service_name = Some(n);
        }
        if let Some(a) = s.resource_attributes {
            c.resource_attributes.extend(a);
        }
    }
    if let Some(l) = f.limits {
        let d = &mut c.limits;
        d.connections = l.connections.unwrap_or(d.connections);
        d.listeners = l.listeners.unwrap_or(d.listeners);
        d.series_per_metric = l.series_per_metric.unwrap_or(d.series_per_metric);
        d.ring_buffer_bytes = l.ring_buffer_bytes.unwrap_or(d.ring_buffer_bytes);
        d.export_queue_bytes = l.export_queue_bytes.unwrap_or(d.export_queue_bytes);
        d.http_connections = l.http_connections.unwrap_or(d.http_connections);
        d.http_exchanges = l.http_exchanges.unwrap_or(d.http_exchanges);
        d.http2_connections = l.http2_connections.unwrap_or(d.http2_connections);
        d.span_queue = l.span_queue.unwrap_or(d.span_queue);
        d.db_connections = l.db_connections.unwrap_or(d.db_connections);
    }
    Ok(())
}

pub(crate) fn transport(source: &str, v: &str) -> Result<crate::Transport, Error> {
    match v.trim() {
        "auto" => Ok(crate::Transport::Auto),
        "ring" => Ok(crate::Transport::Ring),
        "perf" => Ok(crate::Transport::Perf),
        other => Err(Error::new(
            source,
            format!("expected auto, ring or perf, got {other:?}"),
        )),
    }
}

pub(crate) fn capture_join(source: &str, v: &str) -> Result<crate::CaptureJoin, Error> {
    match v.trim() {
        "auto" => Ok(crate::CaptureJoin::Auto),
        "socket" => Ok(crate::CaptureJoin::Socket),
        "descriptor" => Ok(crate::CaptureJoin::Descriptor),
        other => Err(Error::new(
            source,
            format!("expected auto, socket or descriptor, got {other:?}"),
        )),
    }
}

pub(crate) fn seccomp(source: &str, v: &str) -> Result<crate::Seccomp, Error> {
    match v.trim() {
        "off" => Ok(crate::Seccomp::Off),
        "log" => Ok(crate::Seccomp::Log),
        "kill" => Ok(crate::Seccomp::Kill),
        other => Err(Error::new(
            source,
            format!("expected off, log or kill, got {other:?}"),
        )),
    }
}

/// `root` (or an empty name) means: keep the privileges.
pub(crate) fn user_setting(user: String) -> Option<String> {
    let u = user.trim();
    (!u.is_empty() && u != "root" && u != "0").then(|| u.to_string())
}

fn apply_signal(
    sig: &mut SignalConfig,
    s: SignalFile,
    key: &dyn Fn(&str) -> String,
) -> Result<(), Error> {
    if let Some(v) = s.enabled {
        sig.enabled = v;
    }
    if let Some(v) = s.endpoint {
        sig.endpoint = Some(parse_from(&key("endpoint"), &v)?);
    }
    let o = Overridable {
        protocol: s.protocol,
        compression: s.compression,
        timeout_ms: s.timeout_ms,
        headers: s.headers,
        certificate: s.certificate,
        client_key: s.client_key,
        client_certificate: s.client_certificate,
    };
    sig.otlp.merge(o.resolve(key)?);
    if let Some(v) = s.batch_size {
        sig.batch_size = v;
    }
    if let Some(v) = s.interval_ms {
        sig.interval_ms = v;
    }
    Ok(())
}
