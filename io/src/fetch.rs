//! One HTTP/1.1 request on a connection of its own (`Connection: close`), over plain TCP or
//! rustls, on a non-blocking socket of the agent's `mio::Poll`: what the cloud metadata
//! probes and the Kubernetes API client send. The response is read with the exporter's
//! reader (`Content-Length`, chunked, or until close; at most 256 KiB).

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use telegen_export::http::{Response, ResponseReader};

/// A request in flight.
pub struct Fetch {
    stream: TcpStream,
    tls: Option<ClientConnection>,
    out: Vec<u8>,
    written: usize,
    reader: ResponseReader,
}

impl Fetch {
    /// Connects to `addr` and registers the socket under `token`; `request` goes once the
    /// connection is up (through TLS for `server` when `tls` is given).
    pub fn start(
        addr: SocketAddr,
        token: Token,
        poll: &Poll,
        request: Vec<u8>,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    ) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        let tls = match tls {
            Some((config, name)) => {
                Some(ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?)
            }
            None => None,
        };
        Ok(Self {
            stream,
            tls,
            out: request,
            written: 0,
            reader: ResponseReader::new(),
        })
    }

    /// Stops listening to the socket and closes it.
    pub fn close(mut self, poll: &Poll) {
        let _ = poll.registry().deregister(&mut self.stream);
    }

    /// Sends what it can and reads what came: the response once it is whole; an error ends
    /// the request.
    pub fn on_ready(&mut self) -> Result<Option<Response>, String> {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Err(e.to_string());
        }
        if self.stream.peer_addr().is_err() {
            // Still connecting.
            return Ok(None);
        }
        self.write()?;
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.tls.as_mut() {
                Some(tls) => match tls.read_tls(&mut self.stream) {
                    Ok(0) => 0,
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            let _ = tls.write_tls(&mut self.stream);
                            return Err(crate::tls::explain(&e));
                        }
                        while tls.wants_write() {
                            if tls.write_tls(&mut self.stream).is_err() {
                                break;
                            }
                        }
                        match tls.reader().read(&mut buf) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            // The peer closed without close_notify: what came is all.
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.to_string()),
                },
                None => match self.stream.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.to_string()),
                },
            };
            if n == 0 {
                return self.reader.eof().map_err(|e| e.to_string());
            }
            if let Some(r) = self.reader.feed(&buf[..n]).map_err(|e| e.to_string())? {
                return Ok(Some(r));
            }
        }
    }

    fn write(&mut self) -> Result<(), String> {
        if let Some(tls) = self.tls.as_mut() {
            if self.written < self.out.len() {
                tls.writer()
                    .write_all(&self.out[self.written..])
                    .map_err(|e| format!("TLS: {e}"))?;
                self.written = self.out.len();
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            return Ok(());
        }
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err("the socket accepted no bytes".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}
