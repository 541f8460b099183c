//! The exporter's connection: a non-blocking TCP socket on the shared `mio::Poll`, with
//! rustls on top for https endpoints, driving an [`Exporter`] (the sans-IO state machine)
//! and, when configured, the disk [`Spool`].
//!
//! With a spool, batches go to disk whenever the endpoint is failing or the spool still holds
//! older records, and are sent from the spool in order; without one they wait in the memory
//! queue (bounded, oldest dropped and counted).
//!
//! Host names are resolved when a connection is opened (`getaddrinfo`, which blocks for the
//! resolver's time; IP literals and /etc/hosts names answer at once).

use crate::spool::Spool;
use crate::tls;
use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use telegen_config::{Compression, Endpoint, ExportSettings, Protocol, Scheme};
use telegen_core::metrics::MetricSink;
use telegen_core::selfmetrics::AgentCounters;
use telegen_export::client::{Batch, Exporter, Failure, Outcome, Target};
use telegen_export::codec::OtlpRequest;
use telegen_export::codec::{Codec, Format};
use telegen_export::retry::RetryPolicy;

/// One endpoint's connection, exporter and spool.
pub struct Connection {
    pub exporter: Exporter,
    spool: Option<Spool>,
    signal: &'static str,
    token: Token,
    endpoint: Endpoint,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    stream: Option<TcpStream>,
    session: Option<ClientConnection>,
    connected: bool,
    /// Responses received on this connection (0: a fresh one).
    answered: u64,
    deadline: Option<Instant>,
    timeout: Duration,
    epoch: Instant,
    failing: bool,
    /// Shutting down: one more attempt, then give up instead of backing off.
    shutting_down: bool,
    gave_up: bool,
    /// HTTP statuses already logged at warn level (each is logged once).
    logged: Vec<u16>,
    buf: Box<[u8; 16 * 1024]>,
    /// The ends (ours, the collector's) of the connection opened last, until taken.
    opened: Option<(SocketAddr, SocketAddr)>,
}

impl Connection {
    /// A connection exporting requests of type `R`.
    pub fn new<R: OtlpRequest>(
        signal: &'static str,
        s: &ExportSettings,
        token: Token,
        epoch: Instant,
        drops: &mut AgentCounters,
    ) -> Result<Self, String> {
        let tls = match s.endpoint.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let name = ServerName::try_from(s.endpoint.host.clone())
                    .map_err(|e| format!("{}: invalid TLS server name: {e}", s.endpoint))?;
                Some((tls::client_config(s)?, name))
            }
        };
        let codec = Codec {
            format: match s.protocol {
                Protocol::HttpProtobuf => Format::Protobuf,
                Protocol::HttpJson => Format::Json,
            },
            gzip: s.compression == Compression::Gzip,
        };
        let target = Target {
            authority: s.endpoint.authority(),
            path: s.endpoint.path.clone(),
            headers: s.headers.clone(),
            codec,
        };
        let policy = RetryPolicy {
            initial_ms: s.retry_initial_ms,
            max_ms: s.retry_max_ms,
        };
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        let exporter = Exporter::new::<R>(target, s.queue_bytes, policy, seed);
        // An unusable spool (read-only or full disk, bad permissions) must not cost the
        // telemetry itself: the agent runs without it and says so.
        let spool = s
            .spool
            .as_ref()
            .and_then(|cfg| match Spool::open(cfg, drops) {
                Ok(sp) => {
                    if !sp.is_empty() {
                        log::info!(
                            "spool {}: {} bytes to deliver from before",
                            cfg.dir.display(),
                            sp.bytes()
                        );
                    }
                    Some(sp)
                }
                Err(e) => {
                    log::error!(
                        "spool {} unusable ({e}); running without a spool: undeliverable batches \
                     wait in memory and are dropped (counted) when it is full",
                        cfg.dir.display()
                    );
                    None
                }
            });
        Ok(Self {
            exporter,
            spool,
            signal,
            token,
            endpoint: s.endpoint.clone(),
            tls,
            stream: None,
            session: None,
            connected: false,
            answered: 0,
            deadline: None,
            timeout: Duration::from_millis(s.timeout_ms),
            epoch,
            failing: false,
            shutting_down: false,
            gave_up: false,
            logged: Vec::new(),
            buf: Box::new([0; 16 * 1024]),
            opened: None,
        })
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The codec request bodies are built with.
    pub fn codec(&self) -> Codec {
        self.exporter.target().codec
    }

    /// When this connection next needs the loop: a request deadline or the end of a pause.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        let paused = self
            .exporter
            .paused_until(self.now_ms(now))
            .map(|ms| self.epoch + Duration::from_millis(ms));
        match (self.deadline, paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Nothing left to send, in memory or on disk.
    pub fn is_idle(&self) -> bool {
        self.exporter.is_idle() && self.spool.as_ref().is_none_or(Spool::is_empty)
    }

    /// Whether a shutdown need not wait longer: everything is delivered, or the endpoint is
    /// failing and a spool will keep what is left.
    pub fn may_stop(&self) -> bool {
        self.is_idle() || (self.spool.is_some() && self.failing) || self.gave_up
    }

    /// Shutdown begins: a paused endpoint gets one immediate attempt, not a backoff.
    pub fn begin_shutdown(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        self.shutting_down = true;
        self.exporter.resume();
        self.kick(poll, now, drops);
    }

    /// Whether new batches go to the spool rather than to memory.
    fn spooling(&self, now: Instant) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
            || (self.spool.is_some()
                && (self.failing || self.exporter.paused_until(self.now_ms(now)).is_some()))
    }

    /// Queues a batch for sending.
    pub fn enqueue(&mut self, batch: Batch, now: Instant, drops: &mut AgentCounters) {
        let spooling = self.spooling(now);
        if let Some(sp) = self.spool.as_mut().filter(|_| spooling) {
            match sp.append(&batch, drops) {
                Ok(()) => return,
                Err(e) => log::warn!("spool: cannot write ({e}); keeping the batch in memory"),
            }
        }
        self.exporter.enqueue(batch, drops);
    }

    /// Moves every batch held in memory to the spool (failing endpoint, or shutdown).
    fn spool_memory(&mut self, drops: &mut AgentCounters) {
        let Some(sp) = self.spool.as_mut() else {
            return;
        };
        for b in self.exporter.take_all() {
            // A spooled batch is still on disk: just forget the copy.
            if b.spooled {
                continue;
            }
            if let Err(e) = sp.append(&b, drops) {
                log::warn!("spool: cannot write ({e}); {} items dropped", b.items);
                drops.drop(telegen_core::selfmetrics::DropReason::ExportFailed, b.items);
            }
        }
    }

    /// At the end of shutdown: whatever could not be delivered waits in the spool for the
    /// next start, or, without a spool, is counted as dropped.
    pub fn finish_shutdown(&mut self, poll: &Poll, drops: &mut AgentCounters) {
        if self.exporter.is_idle() {
            return;
        }
        self.close(poll);
        if self.spool.is_some() {
            self.spool_memory(drops);
            log::info!("undelivered batches kept in the spool for the next start");
        } else {
            let items: u64 = self.exporter.take_all().iter().map(|b| b.items).sum();
            drops.drop(telegen_core::selfmetrics::DropReason::ExportFailed, items);
            log::warn!(
                "exiting with {items} items undelivered to {} (counted as export_failed)",
                self.endpoint
            );
        }
    }

    fn resolve(&self) -> Result<SocketAddr, Failure> {
        (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Connect(format!("resolving {}: {e}", self.endpoint.host)))?
            .next()
            .ok_or_else(|| Failure::Connect(format!("{} has no address", self.endpoint.host)))
    }

    fn open(&mut self, poll: &Poll) -> Result<(), Failure> {
        let addr = self.resolve()?;
        let mut stream =
            TcpStream::connect(addr).map_err(|e| Failure::Connect(format!("{addr}: {e}")))?;
        poll.registry()
            .register(
                &mut stream,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| Failure::Connect(format!("registering the socket: {e}")))?;
        self.session = match &self.tls {
            Some((config, name)) => Some(
                ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| Failure::Tls(tls::explain(&e)))?,
            ),
            None => None,
        };
        // The kernel picked the local port at connect.
        self.opened = stream.local_addr().ok().map(|local| (local, addr));
        self.stream = Some(stream);
        self.connected = false;
        self.answered = 0;
        Ok(())
    }

    /// The ends (ours, the collector's) of a connection opened since the last call: the
    /// collector's calls on it are the agent's own traffic.
    pub fn take_opened(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        self.opened.take()
    }

    fn close(&mut self, poll: &Poll) {
        if let Some(mut s) = self.stream.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        self.session = None;
        self.connected = false;
    }

    /// Starts the next request if the exporter is free and the endpoint not paused.
    pub fn kick(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        let now_ms = self.now_ms(now);
        if self.exporter.in_flight() || self.exporter.paused_until(now_ms).is_some() {
            return;
        }
        let from_spool = self.exporter.is_idle();
        if let Some(b) = self
            .spool
            .as_mut()
            .filter(|_| from_spool)
            .and_then(|sp| sp.peek(drops))
        {
            self.exporter.push_front(b);
        }
        if !self.exporter.start_next(now_ms) {
            return;
        }
        self.deadline = Some(now + self.timeout);
        if self.stream.is_none() {
            if let Err(f) = self.open(poll) {
                let o = self.exporter.on_failure(f, now_ms, drops);
                self.settle(poll, o, drops);
            }
            return;
        }
        if self.connected {
            self.pump(poll, now, drops);
        }
    }

    /// The socket is ready (or may be: readiness is a hint).
    pub fn on_ready(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        let now_ms = self.now_ms(now);
        let Some(stream) = &self.stream else { return };
        if !self.connected {
            let failed = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e.to_string()),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => Some(e.to_string()),
                },
            };
            if let Some(e) = failed {
                let o = self.exporter.on_failure(Failure::Connect(e), now_ms, drops);
                return self.settle(poll, o, drops);
            }
            self.connected = true;
            self.exporter.on_connected();
        }
        self.pump(poll, now, drops);
    }

    /// Writes what is pending and reads what has arrived, until the socket would block.
    fn pump(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        let now_ms = self.now_ms(now);
        loop {
            if let Err(f) = self.write_pending() {
                let o = self.exporter.on_failure(f, now_ms, drops);
                return self.settle(poll, o, drops);
            }
            match self.read_available(now_ms, drops) {
                Ok(None) => return,
                Ok(Some(o)) => {
                    self.settle(poll, o, drops);
                    if self.stream.is_none() {
                        // Closed: the next batch, if it may go now, opens a new connection.
                        return self.kick(poll, now, drops);
                    }
                    if self.exporter.in_flight() {
                        continue;
                    }
                    self.kick(poll, now, drops);
                    if !self.exporter.in_flight() {
                        return;
                    }
                }
                Err(o) => {
                    self.settle(poll, o, drops);
                    return self.kick(poll, now, drops);
                }
            }
        }
    }

    fn write_pending(&mut self) -> Result<(), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if let Some(tls) = self.session.as_mut() {
            let pending = self.exporter.pending();
            if !pending.is_empty() {
                let n = pending.len();
                tls.writer()
                    .write_all(pending)
                    .map_err(|e| Failure::Tls(e.to_string()))?;
                self.exporter.advance(n);
            }
            while tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(Failure::Io(e.to_string())),
                }
            }
            return Ok(());
        }
        loop {
            let pending = self.exporter.pending();
            if pending.is_empty() {
                return Ok(());
            }
            match stream.write(pending) {
                Ok(0) => return Err(Failure::Io("socket accepted no bytes".into())),
                Ok(n) => self.exporter.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e.to_string())),
            }
        }
    }

    /// Reads until the socket would block. `Ok(Some)`: a response completed on a connection
    /// that may stay open; `Err`: the connection is finished.
    fn read_available(
        &mut self,
        now_ms: u64,
        drops: &mut AgentCounters,
    ) -> Result<Option<Outcome>, Outcome> {
        let wall = SystemTime::now();
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            let n = if let Some(tls) = self.session.as_mut() {
                match tls.read_tls(stream) {
                    Ok(0) => 0,
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            // Tell the peer why, then give up on this connection.
                            let _ = tls.write_tls(stream);
                            return Err(self.exporter.on_failure(
                                Failure::Tls(tls::explain(&e)),
                                now_ms,
                                drops,
                            ));
                        }
                        while tls.wants_write() {
                            if tls.write_tls(stream).is_err() {
                                break;
                            }
                        }
                        match tls.reader().read(&mut self.buf[..]) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            Err(e) => {
                                return Err(self.exporter.on_failure(
                                    Failure::Tls(e.to_string()),
                                    now_ms,
                                    drops,
                                ));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(self.exporter.on_failure(
                            Failure::Io(e.to_string()),
                            now_ms,
                            drops,
                        ));
                    }
                }
            } else {
                match stream.read(&mut self.buf[..]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(self.exporter.on_failure(
                            Failure::Io(e.to_string()),
                            now_ms,
                            drops,
                        ));
                    }
                }
            };
            if n == 0 {
                // Closed by the peer. A reused keep-alive connection that closes before any
                // answer raced the server's idle timeout: send again on a new connection.
                if self.exporter.in_flight()
                    && self.answered > 0
                    && self.exporter.resend_in_flight()
                {
                    log::debug!(
                        "{}: keep-alive connection closed by the collector; resending",
                        self.endpoint
                    );
                    return Err(Outcome::Closed);
                }
                return Err(self
                    .exporter
                    .on_eof(now_ms, wall, drops)
                    .unwrap_or(Outcome::Closed));
            }
            if let Some(o) = self.exporter.on_bytes(&self.buf[..n], now_ms, wall, drops) {
                self.answered += 1;
                return if o.close() { Err(o) } else { Ok(Some(o)) };
            }
        }
    }

    /// The spool record in flight is done with (delivered, split or dropped).
    fn consume_if(&mut self, spooled: bool) {
        if let Some(sp) = self.spool.as_mut().filter(|_| spooled) {
            sp.consume();
        }
    }

    fn log_status_once(&mut self, status: u16, text: &str) {
        if self.logged.contains(&status) {
            log::debug!("{text}");
        } else {
            self.logged.push(status);
            log::warn!("{text} (logged once per status)");
        }
    }

    /// Accounts for an outcome: spool bookkeeping, logs of changes of health, closing.
    fn settle(&mut self, poll: &Poll, o: Outcome, drops: &mut AgentCounters) {
        self.deadline = None;
        let endpoint = self.endpoint.to_string();
        match &o {
            Outcome::Delivered {
                spooled, partial, ..
            } => {
                if self.failing {
                    log::info!("export to {endpoint} recovered");
                    self.failing = false;
                }
                if let Some((rejected, msg)) = partial {
                    self.log_status_once(
                        200,
                        &format!("{endpoint}: collector rejected {rejected} items: {msg}"),
                    );
                }
                self.consume_if(*spooled);
            }
            Outcome::Retry {
                failure, after_ms, ..
            } => {
                self.gave_up |= self.shutting_down;
                if !self.failing {
                    log::warn!(
                        "export to {endpoint} failed: {failure}; retrying in {after_ms} ms{}",
                        if self.spool.is_some() {
                            ", batches go to the spool meanwhile"
                        } else {
                            ""
                        }
                    );
                    self.failing = true;
                } else {
                    log::debug!(
                        "export to {endpoint} failed again: {failure}; next try in {after_ms} ms"
                    );
                }
                self.close(poll);
                self.spool_memory(drops);
            }
            Outcome::Closed => {}
            Outcome::Split { spooled, .. } => {
                self.consume_if(*spooled);
            }
            Outcome::Dropped {
                items,
                failure,
                reason,
                spooled,
                ..
            } => {
                let status = match failure {
                    Failure::Status { status, .. } => *status,
                    _ => 0,
                };
                self.log_status_once(
                    status,
                    &format!(
                        "export to {endpoint}: {failure}; {items} items dropped ({})",
                        reason.as_str()
                    ),
                );
                self.consume_if(*spooled);
            }
        }
        if o.close() {
            self.close(poll);
        }
    }

    /// Fails the request in flight if its deadline passed; resumes after a pause.
    pub fn on_timer(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        if self.deadline.is_some_and(|d| now >= d) {
            let o = self
                .exporter
                .on_failure(Failure::Timeout, self.now_ms(now), drops);
            self.settle(poll, o, drops);
        }
        self.kick(poll, now, drops);
    }

    /// The exporter's self-metrics.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        self.exporter
            .report(self.signal, self.spool.as_ref().map(Spool::bytes), sink);
    }
}
