//! The agent: one thread, one `mio::Poll`.
//!
//! Sources: the kernel's event ring, a signalfd, and each exporter's socket; timers are
//! deadlines that bound the poll timeout. The ring is drained until empty on every wake-up
//! (readiness is a hint, wake-ups may be spurious). On SIGTERM/SIGINT the ring is drained
//! once more, the last interval is collected and every exporter is given up to the shutdown
//! budget to deliver, then the agent exits 0.

use crate::kernel::{Closer, DRAIN_INTERVAL, Kernel};
use crate::processes::Verdict;
use crate::signals::{Request, Signals};
use crate::transport::Connection;
use crate::{privileges, procfs, resource, seccomp};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use telegen_config::{Config, RootSampler, Signal};
use telegen_core::http::{HttpLimits, HttpTracker, RootSampling, Sampling};
use telegen_core::pipeline::{self, Lifecycle, Trackers};
use telegen_core::selfmetrics::AgentCounters;
use telegen_core::tcp::{Process, TcpLimits, TcpTracker};
use telegen_export::client::Batch;
use telegen_export::codec::{Format, OtlpRequest, encode_fitting};
use telegen_export::console::ConsoleSink;
use telegen_export::otlp::MetricsCollector;
use telegen_export::payload::Encoder;
use telegen_export::spanpb::SpanWriter;

/// The event ring, or the first of the per-CPU perf buffers (one token each).
const EVENTS_BASE: Token = Token(16);
const SIGNALS: Token = Token(1);
const METRICS_EXPORT: Token = Token(2);
const TRACES_EXPORT: Token = Token(3);
/// The cloud metadata probes: this token and the two after it.
const CLOUD: Token = Token(8);
/// The Kubernetes API client's request.
const KUBE: Token = Token(11);
/// The privileged helper's answers to exec-time attach requests.
const HELPER: Token = Token(12);

/// Threads that detach the kernel programs at exit (each link waits for a grace period).
const CLOSERS: usize = 6;

/// How long the agent may take to deliver what is pending after SIGTERM.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(4);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub struct Agent {
    config: Config,
    poll: Poll,
    kernel: Kernel,
    signals: Signals,
    /// TCP connections, HTTP and Redis exchanges (and the span queue).
    t: Trackers,
    counters: AgentCounters,
    metrics: Option<Connection>,
    traces: Option<Connection>,
    resource: Resource,
    /// The resource each process's metric points were last exported under, kept while its
    /// series are: a process that ended (and left the process table) keeps the resource its
    /// series had, instead of turning into another one.
    metric_resources: std::collections::HashMap<u32, Resource>,
    encoder: Encoder,
    span_writer: SpanWriter,
    start_unix_ns: u64,
    recorder: Option<crate::recorder::Recorder>,
    /// The containers of the processes spans come from.
    procs: crate::processes::Processes,
    /// The cloud metadata probes, until they end.
    cloud: Option<crate::cloud::Cloud>,
    /// Whom to ask for cloud metadata, decided at start-up from the DMI data.
    cloud_plan: Option<crate::cloud::Plan>,
    /// Exec-time attach of the OpenSSL uprobes: through the helper, or in this process.
    attacher: Option<crate::helper::Attacher>,
    /// The pods of this node, when in a Kubernetes cluster.
    kube: Option<crate::kube::Kube>,
    /// Threads that detach the programs together at exit.
    closer: Option<Closer>,
}

impl Agent {
    pub fn tcp_limits(config: &Config) -> TcpLimits {
        TcpLimits {
            connections: config.limits.connections,
            listeners: config.limits.listeners,
            series_per_metric: config.limits.series_per_metric,
        }
    }

    pub fn http_limits(config: &Config) -> HttpLimits {
        // Without a traces exporter or the console, no span is kept at all.
        let spans_wanted = config.export_settings(Signal::Traces).is_some() || config.console;
        HttpLimits {
            connections: config.limits.http_connections,
            exchanges: config.limits.http_exchanges,
            spans: if spans_wanted {
                config.limits.span_queue
            } else {
                0
            },
            series_per_metric: config.limits.series_per_metric,
        }
    }

    pub fn new(config: Config) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| format!("creating the event loop: {e}"))?;
        let signals = Signals::new().map_err(|e| format!("signalfd: {e}"))?;
        // Requests are captured when anything reports them: spans, request metrics, the console.
        let capture = config.traces.enabled || config.metrics.enabled || config.console;
        let mut kernel = Kernel::load(
            config.limits.ring_buffer_bytes,
            config.transport,
            capture,
            config.capture_join,
            &config.excluded_ports,
            &telegen_config::kernel_comms(&config.rules),
            config
                .rules
                .iter()
                .any(|r| r.action == telegen_config::Action::Exclude),
        )?;
        let registry = poll.registry();
        for (i, fd) in kernel.event_fds().into_iter().enumerate() {
            registry
                .register(
                    &mut SourceFd(&fd),
                    Token(EVENTS_BASE.0 + i),
                    Interest::READABLE,
                )
                .map_err(|e| format!("registering the event buffer: {e}"))?;
        }
        registry
            .register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| format!("registering the signalfd: {e}"))?;

        let mut counters = AgentCounters::default();
        let mut tracker = TcpTracker::new(Self::tcp_limits(&config));
        // Seed listeners before the first record is read: records already in the ring then
        // find their listener, and a LISTEN record read later replaces the seeded entry.
        for o in procfs::listening_owners() {
            let mut comm = [0u8; 16];
            let n = o.comm.len().min(15);
            comm[..n].copy_from_slice(&o.comm.as_bytes()[..n]);
            tracker.seed_listener(o.port, Process { pid: o.pid, comm }, &mut counters);
        }

        let epoch = Instant::now();
        let metrics = match config.export_settings(Signal::Metrics) {
            Some(settings) => {
                log::info!(
                    "exporting metrics to {} every {} ms",
                    settings.endpoint,
                    config.metrics.interval_ms
                );
                Some(Connection::new::<ExportMetricsServiceRequest>(
                    "metrics",
                    &settings,
                    METRICS_EXPORT,
                    epoch,
                    &mut counters,
                )?)
            }
            None => None,
        };
        let traces = match config.export_settings(Signal::Traces) {
            Some(settings) => {
                log::info!("exporting spans to {}", settings.endpoint);
                Some(Connection::new::<ExportTraceServiceRequest>(
                    "traces",
                    &settings,
                    TRACES_EXPORT,
                    epoch,
                    &mut counters,
                )?)
            }
            None => None,
        };
        if metrics.is_none() && !config.console {
            log::warn!("metrics export is disabled and --console is off: nothing will be reported");
        }
        let resource = resource::build(&config);
        // The token and CA are read now, while the agent may.
        let kube = match crate::kube::Kube::new(&config.kubernetes, KUBE, Instant::now()) {
            Ok(k) => k,
            Err(e) => {
                log::warn!("Kubernetes: {e}; processes get no pod names");
                None
            }
        };
        let mut procs = crate::processes::Processes::with_rules(config.rules.clone());
        // Root-only files: read now, while the agent may.
        procs.set_container_names(crate::containers::ContainerNames::read(Instant::now()));
        if capture {
            // While every process's /proc/PID/exe may still be read.
            let verdicts = procs.scan_running(&|_| None);
            apply(&kernel, &verdicts);
            log::debug!(
                "{} running processes noted, {} excluded by the rules",
                procs.len(),
                procs.excluded()
            );
        }
        let recorder = match &config.record {
            Some(path) => Some(crate::recorder::Recorder::create(path)?),
            None => None,
        };
        let attacher = Self::start_helper(&config, &mut kernel, &poll, &mut procs)?;
        // The DMI serial and UUID are root's to read.
        let cloud_plan = config
            .cloud
            .as_ref()
            .map(|p| crate::cloud::plan(p, &crate::cloud::read_dmi()));
        // Everything privileged is done: programs attached, maps mapped, /proc read, files
        // opened. From here on the agent needs no privilege.
        Self::drop_privileges(&config)?;
        // Unprivileged now, and not yet filtered: the filter is synced to them.
        let closer = match Closer::spawn(CLOSERS) {
            Ok(c) => Some(c),
            Err(e) => {
                log::debug!("no shutdown closer threads ({e}): programs detach one by one");
                None
            }
        };
        if let Some(f) = seccomp::Filter::new(config.seccomp) {
            f.install().map_err(|e| format!("seccomp: {e}"))?;
            log::info!("seccomp filter installed ({:?})", config.seccomp);
        }
        log::info!(
            "attached tracepoints: {} (records through {})",
            kernel.attached.join(", "),
            kernel.transport()
        );
        let encoder = Encoder::with_level(config.otlp.gzip_level);
        let http = HttpTracker::new(Self::http_limits(&config), id_seed(), sampling(&config));
        let t = Trackers::new(
            tracker,
            http,
            config.limits.http2_connections,
            config.limits.db_connections,
            config.limits.series_per_metric,
            config.dns_spans,
        );
        Ok(Self {
            config,
            poll,
            kernel,
            signals,
            t,
            counters,
            metrics,
            traces,
            resource,
            metric_resources: std::collections::HashMap::new(),
            encoder,
            span_writer: SpanWriter::default(),
            start_unix_ns: unix_ns(),
            recorder,
            procs,
            cloud: None,
            cloud_plan,
            attacher,
            kube,
            closer,
        })
    }

    /// Forks the privileged helper when the agent is to drop its privileges; attaches in
    /// process when it keeps them (root).
    fn start_helper(
        config: &Config,
        kernel: &mut Kernel,
        poll: &Poll,
        procs: &mut crate::processes::Processes,
    ) -> Result<Option<crate::helper::Attacher>, String> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if kernel.tls_probed().is_none() {
            return Ok(None);
        }
        let user = match &config.user {
            // Root for the whole run: the agent may do it all itself.
            None => return Ok(crate::helper::Attacher::in_process(kernel)),
            Some(_) if euid != 0 => {
                log::info!(
                    "not root: no privileged helper; a libssl mapped after start-up is not probed"
                );
                return Ok(None);
            }
            Some(u) => u,
        };
        if !config.helper {
            log::warn!(
                "no privileged helper ([security] helper = false): a libssl mapped after \
                 start-up is not probed, and the environments (OTEL_SERVICE_NAME) and programs \
                 of processes of users other than {user} are not read"
            );
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let account = privileges::resolve(user, &passwd)?;
        let (opener, attacher) = crate::helper::spawn(kernel, account)
            .map_err(|e| format!("starting the privileged helper: {e}"))?;
        if let Some(fd) = attacher.fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), HELPER, Interest::READABLE)
                .map_err(|e| format!("registering the helper's socket: {e}"))?;
        }
        log::info!(
            "privileged helper started (pid {}): exec-time TLS attach, other users' /proc",
            attacher.helper_pid.unwrap_or(0)
        );
        procs.set_opener(opener);
        Ok(Some(attacher))
    }

    fn drop_privileges(config: &Config) -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let Some(user) = &config.user else {
            if euid == 0 {
                log::warn!("running as root for the whole run ([security] user = \"root\")");
            }
            return Ok(());
        };
        if euid != 0 {
            log::info!("not root (uid {euid}): nothing to drop");
            return Ok(());
        }
        let spool_dirs: Vec<std::path::PathBuf> = [Signal::Metrics, Signal::Traces, Signal::Logs]
            .into_iter()
            .filter_map(|s| {
                config
                    .export_settings(s)
                    .and_then(|e| e.spool)
                    .map(|sp| sp.dir)
            })
            .filter(|d| d.exists())
            .collect();
        let writable: Vec<&std::path::Path> = spool_dirs.iter().map(|d| d.as_path()).collect();
        let a = privileges::drop_to(user, &writable)
            .map_err(|e| format!("dropping privileges: {e}"))?;
        log::info!(
            "running as {user} (uid {}, gid {}) with no capabilities",
            a.uid,
            a.gid
        );
        Ok(())
    }

    /// Runs until SIGTERM/SIGINT; returns after the final flush.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(64);
        let interval = Duration::from_millis(self.config.metrics.interval_ms);
        let span_interval = Duration::from_millis(self.config.traces.interval_ms.max(1));
        let mut next_export = Instant::now() + interval;
        let mut next_spans = Instant::now() + span_interval;
        let mut next_drain = Instant::now() + DRAIN_INTERVAL;
        let mut shutdown_by: Option<Instant> = None;
        if let Some(probe) = &self.config.cloud {
            match self.cloud_plan.take() {
                Some(crate::cloud::Plan::Ask(providers, why)) => {
                    log::info!("cloud metadata: asking {} ({why})", probe.endpoint);
                    match crate::cloud::Cloud::start(
                        probe,
                        &providers,
                        &self.poll,
                        CLOUD,
                        Instant::now(),
                    ) {
                        Ok(c) => self.cloud = Some(c),
                        Err(e) => log::warn!("cloud metadata: {e}; not asked"),
                    }
                }
                Some(crate::cloud::Plan::Skip(why)) => {
                    log::info!("cloud metadata: not asked: {why}");
                }
                None => {}
            }
        }
        loop {
            let now = Instant::now();
            let mut wake = next_export.min(next_drain).min(next_spans);
            if let Some(c) = &self.cloud {
                wake = wake.min(c.deadline());
            }
            if let Some(k) = &self.kube {
                wake = wake.min(k.wake_at());
            }
            if let Some(at) = self.attacher.as_ref().and_then(|a| a.wake_at()) {
                wake = wake.min(at);
            }
            for c in [&self.metrics, &self.traces].into_iter().flatten() {
                if let Some(d) = c.wake_at(now) {
                    wake = wake.min(d);
                }
            }
            if let Some(s) = shutdown_by {
                wake = wake.min(s);
            }
            let timeout = wake.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(format!("poll: {e}"));
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    t if t.0 >= EVENTS_BASE.0 => self.drain(false),
                    SIGNALS => {
                        for r in self.signals.drain() {
                            match r {
                                Request::Shutdown if shutdown_by.is_none() => {
                                    log::info!("shutting down: flushing what is pending");
                                    shutdown_by = Some(now + SHUTDOWN_BUDGET);
                                    self.drain(true);
                                    self.export_spans(now);
                                    self.collect_metrics(now);
                                    for c in
                                        [&mut self.metrics, &mut self.traces].into_iter().flatten()
                                    {
                                        c.begin_shutdown(&self.poll, now, &mut self.counters);
                                    }
                                }
                                Request::Shutdown => {}
                                Request::Reload => {
                                    log::warn!("SIGHUP: reloading is not supported yet; ignored")
                                }
                            }
                        }
                    }
                    METRICS_EXPORT => {
                        if let Some(c) = self.metrics.as_mut() {
                            c.on_ready(&self.poll, now, &mut self.counters);
                        }
                    }
                    TRACES_EXPORT => {
                        if let Some(c) = self.traces.as_mut() {
                            c.on_ready(&self.poll, now, &mut self.counters);
                        }
                    }
                    KUBE => {
                        if let Some(k) = self.kube.as_mut()
                            && k.on_ready(&self.poll, now, &mut self.counters)
                        {
                            // New pods: rules about namespaces and labels may now apply.
                            let kube = &self.kube;
                            let pod_of = |uid: &str| kube.as_ref().and_then(|k| k.pod(uid));
                            let verdicts = self.procs.rejudge(&pod_of);
                            apply(&self.kernel, &verdicts);
                        }
                    }
                    HELPER => {
                        if let Some(a) = self.attacher.as_mut()
                            && let Err(why) = a.on_readable(&mut self.counters)
                        {
                            log::warn!(
                                "the privileged helper {why}: a libssl mapped from now on is \
                                 not probed, other users' processes are not read; going on"
                            );
                            self.attacher = None;
                        }
                    }
                    t if self.cloud.as_ref().is_some_and(|c| c.owns(t)) => {
                        let outcome = self.cloud.as_mut().and_then(|c| c.on_ready(&self.poll, t));
                        self.on_cloud(outcome);
                    }
                    _ => {}
                }
            }
            for c in [&mut self.metrics, &mut self.traces].into_iter().flatten() {
                c.on_timer(&self.poll, now, &mut self.counters);
            }
            if let Some(a) = self.attacher.as_mut() {
                a.send_due(now, &mut self.kernel, &mut self.counters);
            }
            let outcome = self
                .cloud
                .as_mut()
                .and_then(|c| c.on_timer(&self.poll, now));
            self.on_cloud(outcome);
            if let Some(k) = self.kube.as_mut() {
                k.on_timer(&self.poll, now);
            }
            if let Some(by) = shutdown_by {
                let done = [&self.metrics, &self.traces]
                    .into_iter()
                    .flatten()
                    .all(Connection::may_stop);
                if done || now >= by {
                    for c in [&mut self.metrics, &mut self.traces].into_iter().flatten() {
                        if !c.may_stop() {
                            log::warn!(
                                "shutdown budget spent with {} bytes not delivered",
                                c.exporter.queued_bytes()
                            );
                        }
                        c.finish_shutdown(&self.poll, &mut self.counters);
                    }
                    let Agent { kernel, closer, .. } = self;
                    if let Some(c) = closer {
                        kernel.detach(&c);
                    }
                    return Ok(());
                }
                continue;
            }
            if now >= next_drain {
                // Below the wake-up threshold the kernel does not signal the ring: records
                // are collected here, in batches.
                self.drain(false);
                next_drain = now + DRAIN_INTERVAL;
            }
            // A full batch goes at once, as the OTel batch span processor does.
            if now >= next_spans || self.t.http.spans().len() >= self.config.traces.batch_size {
                self.export_spans(now);
                next_spans = now + span_interval;
            }
            if now >= next_export {
                // Drain first: readiness may lag, and this interval should be complete.
                self.drain(false);
                self.collect_metrics(now);
                next_export += interval;
                if next_export < now {
                    next_export = now + interval;
                }
            }
        }
    }

    /// The cloud probes ended: what they found joins the resource.
    fn on_cloud(&mut self, outcome: Option<crate::cloud::Outcome>) {
        use crate::cloud::Outcome;
        let Some(outcome) = outcome else {
            return;
        };
        self.cloud = None;
        match outcome {
            Outcome::Found(provider, attrs) => {
                let get = |k: &str| {
                    attrs
                        .iter()
                        .find(|(key, _)| key == k)
                        .map_or("", |(_, v)| v.as_str())
                };
                log::info!(
                    "cloud: {} {} in {}",
                    provider.name(),
                    get("host.id"),
                    get("cloud.region")
                );
                self.resource = resource::build_with(&self.config, &attrs);
            }
            Outcome::Malformed(provider, why) => log::warn!(
                "cloud metadata: {} answered, but not as documented ({why}); no cloud attributes",
                provider.name()
            ),
            Outcome::NotFound(why) => {
                let why: Vec<String> = why
                    .iter()
                    .map(|(p, w)| format!("{}: {w}", p.name()))
                    .collect();
                log::debug!("no cloud metadata service ({})", why.join("; "));
            }
        }
    }

    /// Reads the kernel's records until none is left; the per-record path allocates
    /// nothing. Then reads /proc once for each process whose first span just finished.
    fn drain(&mut self, last: bool) {
        // Connections opened since the last drain, before the records of their other end.
        for c in [&mut self.metrics, &mut self.traces].into_iter().flatten() {
            if let Some((local, remote)) = c.take_opened() {
                self.t.own.opened(end(local), end(remote));
            }
        }
        let (trackers, counters) = (&mut self.t, &mut self.counters);
        let (recorder, procs) = (&mut self.recorder, &mut self.procs);
        let attacher = &mut self.attacher;
        let now = Instant::now();
        let kube = &self.kube;
        let pod_of = |uid: &str| kube.as_ref().and_then(|k| k.pod(uid));
        let mut verdicts = Vec::new();
        let lost = self.kernel.drain(last, |bytes| {
            if let Some(r) = recorder.as_mut() {
                r.record(bytes);
            }
            match pipeline::on_record(bytes, trackers, counters) {
                Ok(None) => {}
                Ok(Some(Lifecycle::Exec { pid, path, comm })) => {
                    let comm = telegen_core::record::comm_str(&comm);
                    if let Some(a) = attacher.as_mut() {
                        a.on_exec(pid, now, counters);
                    }
                    verdicts.extend(procs.on_exec(pid, path, comm, &pod_of, counters));
                }
                Ok(Some(Lifecycle::Exit { pid })) => {
                    if let Some(a) = attacher.as_mut() {
                        a.on_exit(pid);
                    }
                    if procs.on_exit(pid) {
                        verdicts.push(Verdict::Include(pid));
                    }
                }
                Err(e) => log::debug!("bad record from the kernel: {e}"),
            }
        });
        apply(&self.kernel, &verdicts);
        if let Some(r) = self.recorder.as_mut() {
            r.flush();
        }
        let kube = &self.kube;
        let pod_of = |uid: &str| kube.as_ref().and_then(|k| k.pod(uid));
        let verdicts = self.procs.learn(
            self.t.http.spans().iter(),
            Instant::now(),
            &pod_of,
            &mut self.counters,
        );
        apply(&self.kernel, &verdicts);
        if lost > 0 {
            // Already counted by the programs as kernel_ring_full when the write failed.
            log::debug!("perf buffers reported {lost} lost samples");
        }
    }

    /// Hands the finished spans to the console and the traces exporter.
    fn export_spans(&mut self, now: Instant) {
        // Spans of excluded processes that were captured before the rules knew them.
        if self.procs.excluded() > 0 {
            let procs = &self.procs;
            self.t
                .http
                .spans()
                .retain(|s| !procs.is_excluded(s.process.pid));
        }
        self.export_spans_of_processes(now);
        // Processes that ended are forgotten once their spans are out.
        self.procs.sweep();
    }

    fn export_spans_of_processes(&mut self, now: Instant) {
        if self.t.http.spans().is_empty() {
            return;
        }
        let offset = unix_ns().saturating_sub(crate::kernel::monotonic_ns());
        if self.config.console {
            let mut out = std::io::stdout().lock();
            for s in self.t.http.spans().iter() {
                let _ = writeln!(out, "{}", ConsoleSink::span_line(s));
            }
            let _ = out.flush();
        }
        let Some(conn) = self.traces.as_mut() else {
            // Console only.
            self.t.http.spans().clear();
            return;
        };
        let out = Out {
            encoder: &mut self.encoder,
            max: self.config.otlp.max_body_bytes,
            poll: &self.poll,
            now,
        };
        let spans = self.t.http.spans();
        if conn.codec().format == Format::Protobuf {
            // Written straight from the spans, without building the message structs.
            let mut batches = Vec::new();
            self.procs.attrs(spans.iter(), &mut self.span_writer.procs);
            enrich(
                &self.kube,
                &self.t.tcp,
                spans.iter(),
                &mut self.span_writer.procs,
            );
            telegen_export::spanpb::batches(
                &mut self.span_writer,
                out.encoder,
                conn.codec().gzip,
                spans.make_contiguous(),
                &self.resource,
                offset,
                (self.config.traces.batch_size, out.max),
                &mut self.counters,
                &mut batches,
            );
            spans.clear();
            out.queue(conn, batches, &mut self.counters);
        } else {
            // The queue keeps its preallocated room: drained, not replaced.
            let mut procs = Vec::new();
            self.procs.attrs(spans.iter(), &mut procs);
            enrich(&self.kube, &self.t.tcp, spans.iter(), &mut procs);
            let reqs = telegen_export::traces::requests(
                spans.drain(..),
                &self.resource,
                offset,
                self.config.traces.batch_size,
                &procs,
            );
            out.send(conn, reqs, &mut self.counters);
        }
    }

    fn collect_metrics(&mut self, now: Instant) {
        self.kernel.read_drops(&mut self.counters);
        let now_unix = unix_ns();
        if self.config.console {
            let mut sink = ConsoleSink::default();
            self.t.report(&mut sink);
            self.counters.report(&mut sink);
            for c in [&self.metrics, &self.traces].into_iter().flatten() {
                c.report(&mut sink);
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(sink.out.as_bytes());
            let _ = out.flush();
        }
        let Some(conn) = self.metrics.as_mut() else {
            return;
        };
        let mut collector = MetricsCollector::new(self.start_unix_ns, now_unix);
        self.t.report(&mut collector);
        self.counters.report(&mut collector);
        conn.report(&mut collector);
        if let Some(t) = &self.traces {
            t.report(&mut collector);
        }
        // Each process's points under its own resource, read as its spans' are.
        let (procs, counters, agent) = (&mut self.procs, &mut self.counters, &self.resource);
        let (kube, tcp) = (&self.kube, &self.t.tcp);
        let last = &mut self.metric_resources;
        let mut seen = std::collections::HashSet::new();
        let reqs = collector.into_requests_per_process(
            agent,
            self.config.metrics.batch_size,
            &mut |pid, name| {
                if procs.is_excluded(pid) {
                    return None;
                }
                seen.insert(pid);
                procs.learn_pid(pid, now, counters);
                let mut attrs = procs.get(pid);
                if attrs.is_none()
                    && let Some(r) = last.get(&pid)
                {
                    // Gone from the table (it ended): its series keep their resource.
                    return Some(r.clone());
                }
                let mut comm = [0u8; 16];
                let n = name.len().min(15);
                comm[..n].copy_from_slice(&name.as_bytes()[..n]);
                let p = Process { pid, comm };
                let a = attrs.get_or_insert_with(Default::default);
                with_pod(kube, a);
                with_server(tcp, pid, name, a);
                let r = telegen_export::spanpb::process_resource(agent, &p, attrs.as_ref());
                last.insert(pid, r.clone());
                Some(r)
            },
        );
        last.retain(|pid, _| seen.contains(pid));
        let out = Out {
            encoder: &mut self.encoder,
            max: self.config.otlp.max_body_bytes,
            poll: &self.poll,
            now,
        };
        out.send(conn, reqs, &mut self.counters);
    }
}

/// What sending a signal's requests needs besides the connection.
struct Out<'a> {
    encoder: &'a mut Encoder,
    /// Largest request body before compression.
    max: usize,
    poll: &'a Poll,
    now: Instant,
}

impl Out<'_> {
    /// Encodes `reqs` (split to fit `max`), queues them on `conn` and starts sending.
    fn send<R: OtlpRequest>(
        self,
        conn: &mut Connection,
        reqs: Vec<R>,
        counters: &mut AgentCounters,
    ) {
        let codec = conn.codec();
        let mut batches = Vec::new();
        for req in reqs {
            encode_fitting(&codec, self.encoder, req, self.max, counters, &mut batches);
        }
        self.queue(conn, batches, counters);
    }

    /// Queues encoded `batches` on `conn` and starts sending.
    fn queue(self, conn: &mut Connection, batches: Vec<Batch>, counters: &mut AgentCounters) {
        for b in batches {
            conn.enqueue(b, self.now, counters);
        }
        conn.kick(self.poll, self.now, counters);
    }
}

/// Tells the kernel what the rules decided.
fn apply(kernel: &Kernel, verdicts: &[Verdict]) {
    for v in verdicts {
        match *v {
            Verdict::Exclude(pid) => {
                log::debug!("rules: process {pid} excluded");
                if !kernel.excluded.insert(pid) {
                    // Its spans and metrics are still dropped at export.
                    log::debug!("no room in the kernel's excluded set for {pid}");
                }
            }
            Verdict::Include(pid) => kernel.excluded.remove(pid),
        }
    }
}

/// Names the database or broker a process is, by its executable (or `comm`, the task name
/// the kernel gave, for a process gone before it was read) or its listening ports.
fn with_server(
    tcp: &telegen_core::tcp::TcpTracker,
    pid: u32,
    comm: &str,
    a: &mut telegen_export::spanpb::ProcessAttrs,
) {
    let file = a
        .executable_path
        .as_deref()
        .map(|p| p.rsplit('/').next().unwrap_or(p));
    let names: Vec<&str> = [a.executable_name.as_deref(), file, Some(comm)]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect();
    a.server = telegen_core::runtime::server(&names, tcp.listening_ports(pid));
}

/// Completes what is known of the processes of `spans` with their pods and servers; a
/// process that was not read (gone too soon) gets an entry when it is a known server.
fn enrich<'a>(
    kube: &Option<crate::kube::Kube>,
    tcp: &telegen_core::tcp::TcpTracker,
    spans: impl Iterator<Item = &'a telegen_core::http::Span>,
    procs: &mut Vec<(u32, telegen_export::spanpb::ProcessAttrs)>,
) {
    let mut seen: Vec<u32> = Vec::new();
    for s in spans {
        let pid = s.process.pid;
        if seen.contains(&pid) {
            continue;
        }
        seen.push(pid);
        let comm = telegen_core::record::comm_str(&s.process.comm);
        match procs.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, a)) => {
                with_pod(kube, a);
                with_server(tcp, pid, comm, a);
            }
            None => {
                let mut a = telegen_export::spanpb::ProcessAttrs::default();
                with_server(tcp, pid, comm, &mut a);
                if a.server.is_some() {
                    procs.push((pid, a));
                }
            }
        }
    }
}

/// Names the pod of a process whose container is in one, from the Kubernetes cache.
fn with_pod(kube: &Option<crate::kube::Kube>, a: &mut telegen_export::spanpb::ProcessAttrs) {
    let uid = a.container.as_ref().and_then(|c| c.pod_uid_str());
    if let (Some(k), Some(uid)) = (kube, uid) {
        a.pod = k.pod(uid);
    }
}

/// The configured sampler in the core's terms.
fn sampling(config: &Config) -> Sampling {
    Sampling {
        parent_based: config.sampler.parent_based,
        root: match config.sampler.root {
            RootSampler::AlwaysOn => RootSampling::AlwaysOn,
            RootSampler::AlwaysOff => RootSampling::AlwaysOff,
            RootSampler::TraceIdRatio(r) => RootSampling::ratio(r),
        },
    }
}

/// A seed for span and trace ids that differs between runs.
fn id_seed() -> u64 {
    unix_ns()
        ^ (u64::from(std::process::id()) << 32)
        ^ crate::kernel::monotonic_ns().rotate_left(17)
}

/// A socket address as the kernel's records give it.
fn end(a: std::net::SocketAddr) -> telegen_core::own::End {
    let (v6, bytes) = match a.ip() {
        std::net::IpAddr::V4(ip) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&ip.octets());
            (false, b)
        }
        std::net::IpAddr::V6(ip) => (true, ip.octets()),
    };
    telegen_core::own::End {
        addr: telegen_core::record::IpAddr::from_wire(v6, bytes),
        port: a.port(),
    }
}
