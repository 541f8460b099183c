//! telegen's configuration: the model, and how it is read.
//!
//! Sources, lowest precedence first: built-in defaults, the TOML file (`--config`), the
//! standard `OTEL_*` environment variables (with the meaning the OpenTelemetry specification
//! gives them), then command-line flags. Everything is validated here; a bad value is an
//! [`Error`] that names its source (file and line, variable, or flag) and what was expected.
//! This crate reads the one file it is handed and nothing else.

mod cli;
mod endpoint;
mod env;
mod file;

use cli::parse_args;
pub use cli::{Command, HELP};
pub use endpoint::{Endpoint, Scheme};

use std::fmt;
use std::path::PathBuf;

/// A configuration error: where it came from and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// `--flag`, `ENV_VAR`, or `file:line:column`.
    pub source: String,
    pub message: String,
}

impl Error {
    pub fn new(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for Error {}

/// Payload compression of export requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

/// The signals telegen exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const fn path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
            Self::Logs => "v1/logs",
        }
    }
}

/// The OTLP/HTTP body encoding (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    HttpJson,
}

/// OTLP settings a signal may override (`OTEL_EXPORTER_OTLP_<SIGNAL>_*`); `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpOverrides {
    /// Extra request headers. Their values are secrets: never logged.
    pub headers: Option<Vec<(String, String)>>,
    pub compression: Option<Compression>,
    pub protocol: Option<Protocol>,
    pub timeout_ms: Option<u64>,
    /// PEM file of the CA(s) trusted for the collector's certificate (replaces the defaults).
    pub certificate: Option<PathBuf>,
    /// PEM private key for mTLS.
    pub client_key: Option<PathBuf>,
    /// PEM certificate chain for mTLS.
    pub client_certificate: Option<PathBuf>,
}

impl OtlpOverrides {
    /// Takes every value `other` sets.
    pub(crate) fn merge(&mut self, other: OtlpOverrides) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            headers,
            compression,
            protocol,
            timeout_ms,
            certificate,
            client_key,
            client_certificate
        );
    }
}

/// Per-signal export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalConfig {
    pub enabled: bool,
    /// The signal-specific endpoint, used as is (`OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`).
    pub endpoint: Option<Endpoint>,
    /// Most items (data points, spans, log records) in one request.
    pub batch_size: usize,
    /// Milliseconds between exports (metric interval, span/log schedule delay).
    pub interval_ms: u64,
    /// What this signal sets differently from `[otlp]`.
    pub otlp: OtlpOverrides,
}

/// OTLP exporter settings shared by the signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Otlp {
    /// The base endpoint; `None` when nothing set one (then console mode exports nothing,
    /// and otherwise the specification's default `http://localhost:4318` applies).
    pub endpoint: Option<Endpoint>,
    /// Values every signal inherits unless it overrides them.
    pub base: OtlpOverrides,
    /// Skip verification of the collector's certificate. Dangerous; logged loudly.
    pub insecure_skip_verify: bool,
    /// Largest request body before compression; bigger batches are split.
    pub max_body_bytes: usize,
    /// gzip level, 1 (fastest) to 9 (smallest).
    pub gzip_level: u32,
    /// First retry delay and the cap of the exponential backoff, in ms.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

/// How a read or write is joined to the socket it moved bytes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureJoin {
    /// `sock:sock_{send,recv}_length` where the kernel has them (6.4+), else the descriptor
    /// join.
    Auto,
    /// `sock:sock_{send,recv}_length` only (no request tracing without them).
    Socket,
    /// Each descriptor's socket learnt at `connect` and at its TCP reads (4.16+), on any
    /// kernel.
    Descriptor,
}

/// How kernel records reach user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The BPF ring buffer when the kernel has it (5.8+), else perf buffers.
    Auto,
    Ring,
    Perf,
}

/// What the steady-state seccomp filter does with a system call outside its allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    /// No filter.
    Off,
    /// Allow the call and have the kernel log it (audit log; Linux 4.14+): to find what a
    /// platform needs before turning `kill` on.
    Log,
    /// Kill the agent (SIGSYS).
    Kill,
}

/// When the spool forces its writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record: a record on disk survives a power cut.
    Always,
    /// Never explicitly: records survive a crash of the agent, not of the machine.
    Never,
}

/// The optional disk spool for batches that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub fsync: Fsync,
}

/// Everything one signal's exporter needs, resolved from every source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    pub endpoint: Endpoint,
    pub headers: Vec<(String, String)>,
    pub compression: Compression,
    pub protocol: Protocol,
    pub timeout_ms: u64,
    pub certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub max_body_bytes: usize,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub batch_size: usize,
    pub queue_bytes: usize,
    /// This signal's spool directory (a subdirectory of the configured one).
    pub spool: Option<Spool>,
}

/// Capacities fixed at start-up; `telegen check` prints the memory they imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP connection ends tracked at once.
    pub connections: usize,
    /// Listening sockets tracked at once.
    pub listeners: usize,
    /// Attribute sets per metric before the overflow series.
    pub series_per_metric: usize,
    /// Size of the kernel's event ring (a power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Compressed request bytes waiting for the collector.
    pub export_queue_bytes: usize,
    /// Descriptors with HTTP exchanges tracked at once.
    pub http_connections: usize,
    /// HTTP requests waiting for their answers, over all connections.
    pub http_exchanges: usize,
    /// HTTP/2 descriptors followed at once (each holds two HPACK tables, about 15 KiB).
    pub http2_connections: usize,
    /// Finished spans waiting for export (the oldest is dropped, and counted, beyond).
    pub span_queue: usize,
    /// Descriptors followed at once by each protocol tracker after HTTP (Redis, MQTT,
    /// PostgreSQL, MySQL), and DNS queries waiting for answers.
    pub db_connections: usize,
}

/// Which spans are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`). Request metrics
/// count every request whatever is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// A span with a parent (a caller's `traceparent`, or the request its thread serves)
    /// follows the parent's decision; `root` decides for the others.
    pub parent_based: bool,
    pub root: RootSampler,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction of traces, decided from the trace id (so every agent that sees a
    /// trace decides alike).
    TraceIdRatio(f64),
}

impl Sampler {
    /// The specification's default: `parentbased_always_on`.
    pub const DEFAULT: Self = Self {
        parent_based: true,
        root: RootSampler::AlwaysOn,
    };

    /// From the values of `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, Error> {
        let ratio = || -> Result<f64, Error> {
            let Some(a) = arg else {
                return Ok(1.0);
            };
            match a.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(Error::new(
                    "OTEL_TRACES_SAMPLER_ARG",
                    format!("expected a ratio from 0 to 1, got {a:?}"),
                )),
            }
        };
        let (parent_based, root) = match name.trim() {
            "always_on" => (false, RootSampler::AlwaysOn),
            "always_off" => (false, RootSampler::AlwaysOff),
            "traceidratio" => (false, RootSampler::TraceIdRatio(ratio()?)),
            "parentbased_always_on" => (true, RootSampler::AlwaysOn),
            "parentbased_always_off" => (true, RootSampler::AlwaysOff),
            "parentbased_traceidratio" => (true, RootSampler::TraceIdRatio(ratio()?)),
            other => {
                return Err(Error::new(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "{other:?} is not supported: expected always_on, always_off, \
                         traceidratio or parentbased_{{always_on,always_off,traceidratio}}"
                    ),
                ));
            }
        };
        Ok(Self { parent_based, root })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub console: bool,
    /// A client span per DNS lookup (`[dns] spans`); the lookup metric is always kept.
    pub dns_spans: bool,
    pub sampler: Sampler,
    pub otlp: Otlp,
    pub metrics: SignalConfig,
    pub traces: SignalConfig,
    pub logs: SignalConfig,
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` and the file's `[service.resource_attributes]`.
    pub resource_attributes: Vec<(String, String)>,
    pub limits: Limits,
    pub spool: Option<Spool>,
    /// The account the agent switches to once its programs are attached; `None` keeps root.
    pub user: Option<String>,
    pub transport: Transport,
    /// How captured calls find their socket (`[kernel] capture_join`, `--capture-join`).
    pub capture_join: CaptureJoin,
    /// The seccomp filter installed once start-up is over.
    pub seccomp: Seccomp,
    /// Whether a privileged helper is forked before the drop (`[security] helper`,
    /// `--no-helper`): it attaches the OpenSSL uprobes to a libssl that appears later and
    /// opens other users' processes' /proc entries.
    pub helper: bool,
    /// `--record FILE`: every kernel record is also written to FILE (benchmarks, bug reports).
    pub record: Option<std::path::PathBuf>,
    /// The cloud metadata service probed at start-up; `None`: not probed.
    pub cloud: Option<CloudProbe>,
    /// The Kubernetes API server asked for the pods of this node.
    pub kubernetes: Kubernetes,
    /// `[[rules]]` about processes, in order: the first that matches decides.
    pub rules: Vec<Rule>,
    /// Ports whose sockets are never captured (`[[rules]]` with `port`, excluded in the kernel).
    pub excluded_ports: Vec<u16>,
}

/// What a rule does to the processes it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Include,
    Exclude,
}

/// Which containers a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerMatch {
    /// In any container.
    Any,
    /// On the host, in none.
    None,
    /// A container whose id starts with these (lower-case hex) digits.
    Id(String),
}

/// A rule about processes: it matches a process when every criterion it names matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// The process's name (its task name) or its program file's name.
    pub executable: Option<String>,
    pub container: Option<ContainerMatch>,
    pub k8s_namespace: Option<String>,
    /// `key=value`: a label of the process's pod.
    pub k8s_label: Option<(String, String)>,
    /// An `include` rule may name the service of the processes it matches: their
    /// `service.name`, over their own `OTEL_SERVICE_NAME` and what would be inferred.
    pub service_name: Option<String>,
}

/// What is known of a process when rules are tried on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// Names it goes by: its task name, its program file's name.
    pub names: [Option<&'a str>; 2],
    /// Its container's id, when it is in one (`None` on the host).
    pub container: Option<&'a str>,
    /// Whether its pod is known (its namespace and labels below), when it is in one.
    pub pod_known: bool,
    pub k8s_namespace: Option<&'a str>,
    /// Its pod's labels.
    pub labels: &'a [(String, String)],
}

impl Rule {
    /// Whether the rule matches a process with `facts`. A pod criterion does not match a
    /// process whose pod is not known (yet).
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        if let Some(e) = &self.executable
            && !f.names.iter().flatten().any(|n| n == e)
        {
            return false;
        }
        match (&self.container, f.container) {
            (None, _)
            | (Some(ContainerMatch::Any), Some(_))
            | (Some(ContainerMatch::None), None) => {}
            (Some(ContainerMatch::Id(p)), Some(id)) if id.starts_with(p.as_str()) => {}
            _ => return false,
        }
        if let Some(ns) = &self.k8s_namespace
            && (!f.pod_known || f.k8s_namespace != Some(ns.as_str()))
        {
            return false;
        }
        if let Some((k, v)) = &self.k8s_label {
            let key = format!("k8s.pod.label.{k}");
            if !f.pod_known || !f.labels.iter().any(|(lk, lv)| *lk == key && lv == v) {
                return false;
            }
        }
        true
    }

    /// Whether the rule needs the process's container (or pod) to be judged.
    pub fn needs_container(&self) -> bool {
        self.container.is_some() || self.k8s_namespace.is_some() || self.k8s_label.is_some()
    }
}

/// Task names the kernel can exclude by itself, at every call: those of the rules that
/// exclude by `executable` alone before any rule includes (a task name is at most 15
/// bytes; a longer name is matched in user space only).
pub fn kernel_comms(rules: &[Rule]) -> Vec<String> {
    rules
        .iter()
        .take_while(|r| r.action == Action::Exclude)
        .filter(|r| r.container.is_none() && r.k8s_namespace.is_none() && r.k8s_label.is_none())
        .filter_map(|r| r.executable.clone())
        .filter(|e| !e.is_empty() && e.len() <= 15)
        .take(telegen_common::EXCLUDED_COMMS_CAP)
        .collect()
}

/// The action of the first of `rules` that matches, `Include` when none does.
pub fn judge(rules: &[Rule], f: &Facts<'_>) -> Action {
    first_match(rules, f).map_or(Action::Include, |r| r.action)
}

/// The first of `rules` that matches.
pub fn first_match<'a>(rules: &'a [Rule], f: &Facts<'_>) -> Option<&'a Rule> {
    rules.iter().find(|r| r.matches(f))
}

/// Which API server, if any, names the pods of the node's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeApi {
    /// In a pod with a service account: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    Auto,
    Off,
    Url(Endpoint),
}

/// `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    pub api: KubeApi,
    /// The service account's bearer token (read again at each refresh: it rotates).
    pub token_file: PathBuf,
    /// The CA that signed the API server's certificate (the only one trusted).
    pub ca_file: PathBuf,
    /// The node whose pods are asked for; `None`: `$K8S_NODE_NAME`, else `$NODE_NAME`, else
    /// the host name.
    pub node_name: Option<String>,
    pub refresh_ms: u64,
    /// Pods kept; more are counted as `pod_table_full`.
    pub max_pods: usize,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Self {
            api: KubeApi::Auto,
            token_file: defaults::KUBE_TOKEN_FILE.into(),
            ca_file: defaults::KUBE_CA_FILE.into(),
            node_name: None,
            refresh_ms: defaults::KUBE_REFRESH_MS,
            max_pods: defaults::KUBE_MAX_PODS,
        }
    }
}

/// Where and how long the cloud instance metadata service (AWS, GCP, Azure) is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudProbe {
    /// Its base address (plain HTTP): `http://169.254.169.254` unless set.
    pub endpoint: Endpoint,
    /// How long each provider's probe may take, connection included.
    pub timeout_ms: u64,
    /// Whether the user named the endpoint: then it is asked on any machine. Otherwise
    /// (`auto`, the default) only a machine whose DMI data names a cloud is probed.
    pub named: bool,
}

impl CloudProbe {
    /// The default: the link-local address, asked only where DMI data names a cloud.
    pub fn auto(timeout_ms: u64) -> Option<Self> {
        crate::endpoint::Endpoint::parse(defaults::CLOUD_ENDPOINT)
            .ok()
            .map(|endpoint| Self {
                endpoint,
                timeout_ms,
                named: false,
            })
    }

    /// `off` (no probe), `auto` (the default address where DMI data names a cloud) or a
    /// base URL, asked on any machine, which must be plain `http`.
    pub fn parse(source: &str, value: &str, timeout_ms: u64) -> Result<Option<Self>, Error> {
        let value = value.trim();
        if value == "off" {
            return Ok(None);
        }
        if value == "auto" {
            return Ok(Self::auto(timeout_ms));
        }
        let endpoint = crate::endpoint::parse_from(source, value)?;
        if endpoint.scheme != Scheme::Http {
            return Err(Error::new(
                source,
                format!("{value}: instance metadata services answer plain http, not https"),
            ));
        }
        Ok(Some(Self {
            endpoint,
            timeout_ms,
            named: true,
        }))
    }
}

/// Defaults: one place for each.
pub mod defaults {
    pub const ENDPOINT: &str = "http://localhost:4318";
    pub const TIMEOUT_MS: u64 = 10_000;
    pub const METRIC_INTERVAL_MS: u64 = 60_000;
    pub const BSP_SCHEDULE_DELAY_MS: u64 = 5_000;
    pub const BLRP_SCHEDULE_DELAY_MS: u64 = 1_000;
    pub const METRICS_BATCH: usize = 2_000;
    pub const TRACES_BATCH: usize = 512;
    pub const LOGS_BATCH: usize = 512;
    pub const CONNECTIONS: usize = 4_096;
    pub const LISTENERS: usize = 256;
    pub const HTTP_CONNECTIONS: usize = 1_024;
    pub const HTTP_EXCHANGES: usize = 512;
    pub const HTTP2_CONNECTIONS: usize = 32;
    pub const SPAN_QUEUE: usize = 2_048;
    pub const DB_CONNECTIONS: usize = 64;
    pub const SERIES_PER_METRIC: usize = 1_000;
    pub const RING_BUFFER_BYTES: u32 = telegen_common::DEFAULT_RING_BYTES;
    pub const EXPORT_QUEUE_BYTES: usize = 1 << 20;
    pub const MAX_BODY_BYTES: usize = 20 << 20;
    /// The fastest: about a fifth of the CPU of level 6 for about 9 % more bytes (README).
    pub const GZIP_LEVEL: u32 = 1;
    pub const RETRY_INITIAL_MS: u64 = 1_000;
    pub const RETRY_MAX_MS: u64 = 30_000;
    pub const SPOOL_MAX_BYTES: u64 = 64 << 20;
    pub const USER: &str = "nobody";
    /// The address AWS, GCP and Azure serve instance metadata at.
    pub const CLOUD_ENDPOINT: &str = "http://169.254.169.254";
    pub const CLOUD_TIMEOUT_MS: u64 = 2_000;
    pub const KUBE_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    pub const KUBE_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    pub const KUBE_REFRESH_MS: u64 = 60_000;
    /// The kubelet's default limit of pods per node.
    pub const KUBE_MAX_PODS: usize = 110;
}

impl Default for Config {
    fn default() -> Self {
        let signal = |batch_size, interval_ms| SignalConfig {
            enabled: true,
            endpoint: None,
            batch_size,
            interval_ms,
            otlp: OtlpOverrides::default(),
        };
        Self {
            console: false,
            dns_spans: true,
            otlp: Otlp {
                endpoint: None,
                base: OtlpOverrides {
                    headers: Some(Vec::new()),
                    compression: Some(Compression::Gzip),
                    protocol: Some(Protocol::HttpProtobuf),
                    timeout_ms: Some(defaults::TIMEOUT_MS),
                    certificate: None,
                    client_key: None,
                    client_certificate: None,
                },
                insecure_skip_verify: false,
                max_body_bytes: defaults::MAX_BODY_BYTES,
                gzip_level: defaults::GZIP_LEVEL,
                retry_initial_ms: defaults::RETRY_INITIAL_MS,
                retry_max_ms: defaults::RETRY_MAX_MS,
            },
            metrics: signal(defaults::METRICS_BATCH, defaults::METRIC_INTERVAL_MS),
            traces: signal(defaults::TRACES_BATCH, defaults::BSP_SCHEDULE_DELAY_MS),
            logs: signal(defaults::LOGS_BATCH, defaults::BLRP_SCHEDULE_DELAY_MS),
            service_name: None,
            resource_attributes: Vec::new(),
            limits: Limits {
                connections: defaults::CONNECTIONS,
                http_connections: defaults::HTTP_CONNECTIONS,
                http_exchanges: defaults::HTTP_EXCHANGES,
                http2_connections: defaults::HTTP2_CONNECTIONS,
                db_connections: defaults::DB_CONNECTIONS,
                span_queue: defaults::SPAN_QUEUE,
                listeners: defaults::LISTENERS,
                series_per_metric: defaults::SERIES_PER_METRIC,
                ring_buffer_bytes: defaults::RING_BUFFER_BYTES,
                export_queue_bytes: defaults::EXPORT_QUEUE_BYTES,
            },
            spool: None,
            user: Some(defaults::USER.to_string()),
            transport: Transport::Auto,
            capture_join: CaptureJoin::Auto,
            seccomp: Seccomp::Off,
            helper: true,
            record: None,
            sampler: Sampler::DEFAULT,
            // The default parses: covered by a test.
            cloud: CloudProbe::auto(defaults::CLOUD_TIMEOUT_MS),
            kubernetes: Kubernetes::default(),
            rules: Vec::new(),
            excluded_ports: Vec::new(),
        }
    }
}

impl Config {
    /// Where a signal goes, or `None` when it is not exported over OTLP.
    ///
    /// A signal-specific endpoint is used as is; the base endpoint gets `v1/<signal>`
    /// appended to its path, as the specification says. In console mode nothing is exported
    /// unless an endpoint was set explicitly.
    pub fn endpoint_for(&self, signal: Signal) -> Option<Endpoint> {
        let s = self.signal(signal);
        if !s.enabled {
            return None;
        }
        if let Some(e) = &s.endpoint {
            return Some(e.clone());
        }
        let base = match &self.otlp.endpoint {
            Some(e) => e.clone(),
            None if self.console => return None,
            // The default parses: covered by a test.
            None => Endpoint::parse(defaults::ENDPOINT).ok()?,
        };
        Some(base.join_signal(signal.path()))
    }

    pub fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// The resolved settings of a signal's exporter, or `None` when it is not exported.
    pub fn export_settings(&self, signal: Signal) -> Option<ExportSettings> {
        let endpoint = self.endpoint_for(signal)?;
        let s = self.signal(signal);
        let mut o = self.otlp.base.clone();
        o.merge(s.otlp.clone());
        let spool = self.spool.as_ref().map(|sp| Spool {
            dir: sp.dir.join(signal.path().trim_start_matches("v1/")),
            ..sp.clone()
        });
        Some(ExportSettings {
            endpoint,
            headers: o.headers.unwrap_or_default(),
            compression: o.compression.unwrap_or(Compression::Gzip),
            protocol: o.protocol.unwrap_or(Protocol::HttpProtobuf),
            timeout_ms: o.timeout_ms.unwrap_or(defaults::TIMEOUT_MS),
            certificate: o.certificate,
            client_key: o.client_key,
            client_certificate: o.client_certificate,
            insecure_skip_verify: self.otlp.insecure_skip_verify,
            max_body_bytes: self.otlp.max_body_bytes,
            retry_initial_ms: self.otlp.retry_initial_ms,
            retry_max_ms: self.otlp.retry_max_ms,
            batch_size: s.batch_size,
            queue_bytes: self.limits.export_queue_bytes,
            spool,
        })
    }

    /// Checks values that each source could not check alone.
    pub fn validate(&self) -> Result<(), Error> {
        let l = &self.limits;
        let ring = l.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(Error::new(
                "limits.ring_buffer_bytes",
                format!("{ring} is not a power of two of at least 4096"),
            ));
        }
        let positive = [
            ("limits.connections", l.connections),
            ("limits.listeners", l.listeners),
            ("limits.series_per_metric", l.series_per_metric),
            ("limits.export_queue_bytes", l.export_queue_bytes),
            ("limits.http_connections", l.http_connections),
            ("limits.http_exchanges", l.http_exchanges),
            ("limits.http2_connections", l.http2_connections),
            ("limits.span_queue", l.span_queue),
            ("limits.db_connections", l.db_connections),
            ("metrics.batch_size", self.metrics.batch_size),
        ];
        for (name, v) in positive {
            if v == 0 || v > 1 << 26 {
                return Err(Error::new(name, format!("{v} is outside 1..=67108864")));
            }
        }
        if self.metrics.interval_ms < 100 {
            return Err(Error::new(
                "metrics.interval_ms",
                format!(
                    "{} ms is below the 100 ms minimum",
                    self.metrics.interval_ms
                ),
            ));
        }
        for sig in [Signal::Metrics, Signal::Traces, Signal::Logs] {
            let Some(e) = self.export_settings(sig) else {
                continue;
            };
            let name = sig.path().trim_start_matches("v1/");
            if e.timeout_ms == 0 {
                return Err(Error::new(
                    format!("{name}: OTLP timeout"),
                    "must be above 0 ms",
                ));
            }
            if e.client_key.is_some() != e.client_certificate.is_some() {
                return Err(Error::new(
                    format!("{name}: mTLS"),
                    "a client key and a client certificate go together: set both or neither",
                ));
            }
        }
        if self.otlp.max_body_bytes < 1024 {
            return Err(Error::new("otlp.max_body_bytes", "must be at least 1024"));
        }
        if !(1..=9).contains(&self.otlp.gzip_level) {
            return Err(Error::new(
                "otlp.gzip_level",
                format!("{} is outside 1..=9", self.otlp.gzip_level),
            ));
        }
        if self.otlp.retry_initial_ms == 0 || self.otlp.retry_max_ms < self.otlp.retry_initial_ms {
            return Err(Error::new(
                "otlp.retry_initial_ms/retry_max_ms",
                "need 0 < retry_initial_ms <= retry_max_ms",
            ));
        }
        if self
            .spool
            .as_ref()
            .is_some_and(|sp| sp.max_bytes < 64 * 1024)
        {
            return Err(Error::new("spool.max_bytes", "must be at least 65536"));
        }
        Ok(())
    }
}

/// Parses a duration or count given as a whole number.
pub(crate) fn parse_u64(source: &str, v: &str) -> Result<u64, Error> {
    v.trim()
        .parse()
        .map_err(|_| Error::new(source, format!("expected a whole number, got {v:?}")))
}

/// Percent-decodes a `W3C Baggage`-style value, as the OTel specification asks for
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `key=value,key2=value2` lists with percent-decoded values.
pub(crate) fn parse_kv_list(source: &str, v: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((k, val)) = item.split_once('=') else {
            return Err(Error::new(
                source,
                format!("expected key=value, got {:?}", redact(item)),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(Error::new(source, "empty key"));
        }
        let Some(val) = percent_decode(val.trim()) else {
            return Err(Error::new(
                source,
                format!("bad percent-encoding in the value of {k:?}"),
            ));
        };
        out.push((k.to_string(), val));
    }
    Ok(out)
}

/// Shows the key of a `key=value` item and hides the value: header values are secrets.
fn redact(item: &str) -> String {
    match item.split_once('=') {
        Some((k, _)) => format!("{k}=<redacted>"),
        None => String::from("<redacted>"),
    }
}

/// Builds the configuration from every source. `env` looks a variable up; `args` excludes
/// the program name.
pub fn load(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, Error> {
    let parsed = parse_args(args)?;
    let (mut config, overrides) = match parsed {
        cli::Parsed::Help => return Ok(Command::Help),
        cli::Parsed::Version => return Ok(Command::Version),
        cli::Parsed::Run(o) | cli::Parsed::Check(o) => {
            let mut c = Config::default();
            if let Some(path) = &o.config {
                file::apply(&mut c, path)?;
            }
            env::apply(&mut c, env)?;
            (c, o)
        }
    };
    let check = overrides.check;
    overrides.apply(&mut config)?;
    config.validate()?;
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

#[cfg(test)]
mod tests;
