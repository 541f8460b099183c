//! The exporter's connection: a non-blocking TCP socket on the shared `mio::Poll`, with
//! rustls on top for https endpoints. Drives an [`Exporter`] (the sans-IO state machine).
//!
//! Host names are resolved when a connection is opened (`getaddrinfo`, which blocks for the
//! resolver's time; IP literals and /etc/hosts names answer at once).

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use telegen_config::{Endpoint, Scheme};
use telegen_core::selfmetrics::AgentCounters;
use telegen_export::client::{Exporter, Failure, Outcome};

/// One endpoint's connection and exporter.
pub struct Connection {
    pub exporter: Exporter,
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
    failing: bool,
    buf: Box<[u8; 16 * 1024]>,
}

fn tls_config() -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions.
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        Err(e) => unreachable!("ring supports TLS 1.2 and 1.3: {e}"),
    }
}

impl Connection {
    pub fn new(
        exporter: Exporter,
        endpoint: Endpoint,
        token: Token,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls = match endpoint.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| format!("{endpoint}: invalid TLS server name: {e}"))?;
                Some((tls_config(), name))
            }
        };
        Ok(Self {
            exporter,
            token,
            endpoint,
            tls,
            stream: None,
            session: None,
            connected: false,
            answered: 0,
            deadline: None,
            timeout,
            failing: false,
            buf: Box::new([0; 16 * 1024]),
        })
    }

    /// When the request in flight times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
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
                    .map_err(|e| Failure::Tls(e.to_string()))?,
            ),
            None => None,
        };
        self.stream = Some(stream);
        self.connected = false;
        self.answered = 0;
        Ok(())
    }

    fn close(&mut self, poll: &Poll) {
        if let Some(mut s) = self.stream.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        self.session = None;
        self.connected = false;
    }

    /// Starts the next queued request if the exporter is free.
    pub fn kick(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        if self.exporter.in_flight() || !self.exporter.start_next() {
            return;
        }
        self.deadline = Some(now + self.timeout);
        if self.stream.is_none() {
            if let Err(f) = self.open(poll) {
                let o = self.exporter.on_failure(f, drops);
                self.settle(poll, o, now, drops);
            }
            return;
        }
        if self.connected {
            self.pump(poll, now, drops);
        }
    }

    /// The socket is ready (or may be: readiness is a hint).
    pub fn on_ready(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        if self.stream.is_none() {
            return;
        }
        if !self.connected {
            let Some(stream) = &self.stream else { return };
            match stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    let o = self
                        .exporter
                        .on_failure(Failure::Connect(e.to_string()), drops);
                    return self.settle(poll, o, now, drops);
                }
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => {
                    self.connected = true;
                    self.exporter.on_connected();
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let o = self
                        .exporter
                        .on_failure(Failure::Connect(e.to_string()), drops);
                    return self.settle(poll, o, now, drops);
                }
            }
        }
        self.pump(poll, now, drops);
    }

    /// Writes what is pending and reads what has arrived, until the socket would block.
    fn pump(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        loop {
            if let Err(f) = self.write_pending() {
                let o = self.exporter.on_failure(f, drops);
                self.settle(poll, o, now, drops);
                return self.kick(poll, now, drops);
            }
            match self.read_available(drops) {
                Ok(Some(o)) => {
                    let more = matches!(
                        o,
                        Outcome::Delivered { close: false, .. }
                            | Outcome::Failed { close: false, .. }
                    );
                    self.settle(poll, o, now, drops);
                    if more && self.stream.is_some() && self.exporter.start_next() {
                        self.deadline = Some(now + self.timeout);
                        continue;
                    }
                    if self.stream.is_none() {
                        // Closed: the next batch (if any) opens a new connection.
                        self.kick(poll, now, drops);
                    }
                    return;
                }
                Ok(None) => return,
                Err(o) => {
                    self.settle(poll, o, now, drops);
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

    /// Reads until the socket would block; returns the outcome of a completed response.
    fn read_available(&mut self, drops: &mut AgentCounters) -> Result<Option<Outcome>, Outcome> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            let n = if let Some(tls) = self.session.as_mut() {
                match tls.read_tls(stream) {
                    Ok(0) => 0,
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            return Err(self
                                .exporter
                                .on_failure(Failure::Tls(e.to_string()), drops));
                        }
                        match tls.reader().read(&mut self.buf[..]) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                // Handshake bytes only: answer them and read on.
                                while tls.wants_write() {
                                    if tls.write_tls(stream).is_err() {
                                        break;
                                    }
                                }
                                continue;
                            }
                            Err(e) => {
                                return Err(self
                                    .exporter
                                    .on_failure(Failure::Tls(e.to_string()), drops));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(self.exporter.on_failure(Failure::Io(e.to_string()), drops));
                    }
                }
            } else {
                match stream.read(&mut self.buf[..]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(self.exporter.on_failure(Failure::Io(e.to_string()), drops));
                    }
                }
            };
            if n == 0 {
                // Closed by the peer. A reused keep-alive connection that closes before any
                // answer is a race with the server's idle timeout: send again on a new one.
                if self.exporter.in_flight() && self.answered > 0 && self.exporter.retry_in_flight()
                {
                    return Err(Outcome::Failed {
                        items: 0,
                        failure: Failure::Io("keep-alive connection closed; resending".into()),
                        close: true,
                    });
                }
                return match self.exporter.on_eof(drops) {
                    Some(o) => Err(o),
                    None => Err(Outcome::Failed {
                        items: 0,
                        failure: Failure::Io("closed".into()),
                        close: true,
                    }),
                };
            }
            if let Some(o) = self.exporter.on_bytes(&self.buf[..n], drops) {
                self.answered += 1;
                return Ok(Some(o));
            }
        }
    }

    /// Accounts for an outcome: logs changes of health, closes when the outcome says so.
    fn settle(&mut self, poll: &Poll, o: Outcome, _now: Instant, _drops: &mut AgentCounters) {
        match &o {
            Outcome::Delivered { close, .. } => {
                if self.failing {
                    log::info!("export to {} recovered", self.endpoint);
                    self.failing = false;
                }
                self.deadline = None;
                if *close {
                    self.close(poll);
                }
            }
            Outcome::Failed {
                items,
                failure,
                close,
            } => {
                if *items > 0 {
                    if !self.failing {
                        log::warn!(
                            "export to {} failed: {failure}; {items} items dropped (counted in telegen.agent.dropped)",
                            self.endpoint
                        );
                    } else {
                        log::debug!("export to {} failed again: {failure}", self.endpoint);
                    }
                    self.failing = true;
                } else {
                    log::debug!("connection to {}: {failure}", self.endpoint);
                }
                self.deadline = None;
                if *close {
                    self.close(poll);
                }
            }
        }
    }

    /// Fails the request in flight if its deadline passed.
    pub fn check_timeout(&mut self, poll: &Poll, now: Instant, drops: &mut AgentCounters) {
        if self.deadline.is_some_and(|d| now >= d) {
            let o = self.exporter.on_failure(Failure::Timeout, drops);
            self.settle(poll, o, now, drops);
            self.kick(poll, now, drops);
        }
    }
}
