//! The exporter's state machine for one OTLP/HTTP endpoint, without the socket.
//!
//! Batches wait in a queue bounded in bytes; when a new batch does not fit, the oldest are
//! dropped and counted (`export_queue_full`). One request is in flight at a time on a
//! keep-alive connection. `io` moves the bytes: it writes [`Exporter::pending`], reports what
//! it wrote with [`Exporter::advance`], feeds what it reads to [`Exporter::on_bytes`], and
//! tells of failures with [`Exporter::on_failure`]. Every batch ends counted: delivered,
//! rejected (4xx: `export_rejected`) or failed (`export_failed`).
//!
//! Metrics are cumulative, so a lost metrics batch loses no counts: the next one carries the
//! totals. Retries with backoff for the other signals are the next step of this module.

use crate::http::{RequestHead, Response, ResponseError, ResponseReader, write_request};
use std::collections::VecDeque;
use telegen_core::selfmetrics::{AgentCounters, DropReason};

/// One encoded request body and the number of items in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub items: u64,
}

/// Where requests go and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Connect(String),
    Io(String),
    Tls(String),
    Timeout,
    Response(ResponseError),
    Status(u16),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Io(e) => write!(f, "connection error: {e}"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::Timeout => write!(f, "request timed out"),
            Self::Response(e) => write!(f, "{e}"),
            Self::Status(s) => write!(f, "collector answered HTTP {s}"),
        }
    }
}

/// What happened to the request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        items: u64,
        close: bool,
    },
    Failed {
        items: u64,
        failure: Failure,
        close: bool,
    },
}

/// Counters of the exporter's own work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    pub requests: u64,
    pub delivered_items: u64,
    pub failures: u64,
}

/// One endpoint's exporter.
pub struct Exporter {
    target: Target,
    queue: VecDeque<Batch>,
    queue_bytes: usize,
    cap_bytes: usize,
    inflight: Option<Batch>,
    out: Vec<u8>,
    written: usize,
    reader: ResponseReader,
    pub stats: ExportStats,
}

impl Exporter {
    pub fn new(target: Target, cap_bytes: usize) -> Self {
        Self {
            target,
            queue: VecDeque::new(),
            queue_bytes: 0,
            cap_bytes,
            inflight: None,
            out: Vec::new(),
            written: 0,
            reader: ResponseReader::new(),
            stats: ExportStats::default(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Bytes waiting in the queue (not counting the request in flight).
    pub fn queued_bytes(&self) -> usize {
        self.queue_bytes
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.inflight.is_none()
    }

    pub fn in_flight(&self) -> bool {
        self.inflight.is_some()
    }

    /// Queues a batch, dropping the oldest batches (counted) until it fits. A batch larger
    /// than the whole queue is dropped itself.
    pub fn enqueue(&mut self, batch: Batch, drops: &mut AgentCounters) {
        if batch.body.len() > self.cap_bytes {
            drops.drop(DropReason::ExportQueueFull, batch.items);
            return;
        }
        while self.queue_bytes + batch.body.len() > self.cap_bytes {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            self.queue_bytes -= old.body.len();
            drops.drop(DropReason::ExportQueueFull, old.items);
        }
        self.queue_bytes += batch.body.len();
        self.queue.push_back(batch);
    }

    /// Starts the next request if none is in flight; true when there is one to write.
    pub fn start_next(&mut self) -> bool {
        if self.inflight.is_none() {
            let Some(batch) = self.queue.pop_front() else {
                return false;
            };
            self.queue_bytes -= batch.body.len();
            let head = RequestHead {
                authority: &self.target.authority,
                path: &self.target.path,
                headers: &self.target.headers,
                gzip: self.target.gzip,
            };
            write_request(&mut self.out, &head, &batch.body);
            self.written = 0;
            self.inflight = Some(batch);
            self.stats.requests += 1;
        }
        true
    }

    /// Request bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        if self.inflight.is_some() {
            &self.out[self.written..]
        } else {
            &[]
        }
    }

    /// `n` bytes of [`Exporter::pending`] were written.
    pub fn advance(&mut self, n: usize) {
        self.written = (self.written + n).min(self.out.len());
    }

    /// The connection was (re)established: a new response starts.
    pub fn on_connected(&mut self) {
        self.reader.reset();
        self.written = 0;
    }

    /// Bytes read from the connection. Returns the outcome once the response is complete.
    pub fn on_bytes(&mut self, data: &[u8], drops: &mut AgentCounters) -> Option<Outcome> {
        match self.reader.feed(data) {
            Ok(None) => None,
            Ok(Some(resp)) => Some(self.finish(resp, drops)),
            Err(e) => Some(self.on_failure(Failure::Response(e), drops)),
        }
    }

    /// The peer closed the connection.
    pub fn on_eof(&mut self, drops: &mut AgentCounters) -> Option<Outcome> {
        let result = self.reader.eof();
        self.reader.reset();
        match result {
            Ok(Some(resp)) => Some(self.finish(resp, drops)),
            _ if self.inflight.is_none() => None,
            Ok(None) => Some(self.on_failure(Failure::Io("closed by the collector".into()), drops)),
            Err(e) => Some(self.on_failure(Failure::Response(e), drops)),
        }
    }

    fn finish(&mut self, resp: Response, drops: &mut AgentCounters) -> Outcome {
        let Some(batch) = self.inflight.take() else {
            // A response nobody asked for: the connection is out of step.
            return Outcome::Failed {
                items: 0,
                failure: Failure::Status(resp.status),
                close: true,
            };
        };
        if (200..300).contains(&resp.status) {
            self.stats.delivered_items += batch.items;
            return Outcome::Delivered {
                items: batch.items,
                close: resp.close,
            };
        }
        self.stats.failures += 1;
        let reason = if (400..500).contains(&resp.status) {
            DropReason::ExportRejected
        } else {
            DropReason::ExportFailed
        };
        drops.drop(reason, batch.items);
        Outcome::Failed {
            items: batch.items,
            failure: Failure::Status(resp.status),
            close: resp.close,
        }
    }

    /// Puts the request in flight back at the head of the queue, to send again on a new
    /// connection (a keep-alive connection closed under it). False when none was in flight.
    pub fn retry_in_flight(&mut self) -> bool {
        let Some(batch) = self.inflight.take() else {
            return false;
        };
        self.reader.reset();
        self.written = 0;
        self.queue_bytes += batch.body.len();
        self.queue.push_front(batch);
        true
    }

    /// The request in flight failed (connect, I/O, TLS, timeout, unreadable response).
    /// Its batch is counted as `export_failed`; the connection must be closed.
    pub fn on_failure(&mut self, failure: Failure, drops: &mut AgentCounters) -> Outcome {
        self.reader.reset();
        self.written = 0;
        let items = self.inflight.take().map_or(0, |b| b.items);
        if items > 0 {
            self.stats.failures += 1;
            drops.drop(DropReason::ExportFailed, items);
        }
        Outcome::Failed {
            items,
            failure,
            close: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(cap: usize) -> Exporter {
        let t = Target {
            authority: "h".into(),
            path: "/v1/metrics".into(),
            headers: vec![],
            gzip: false,
        };
        Exporter::new(t, cap)
    }

    fn batch(n: usize, items: u64) -> Batch {
        Batch {
            body: vec![0; n],
            items,
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let mut e = exporter(100);
        let mut d = AgentCounters::default();
        e.enqueue(batch(60, 1), &mut d);
        e.enqueue(batch(30, 2), &mut d);
        e.enqueue(batch(50, 4), &mut d);
        assert_eq!(d.dropped(DropReason::ExportQueueFull), 1);
        assert_eq!(e.queued_bytes(), 80);
        e.enqueue(batch(101, 8), &mut d);
        assert_eq!(d.dropped(DropReason::ExportQueueFull), 9);
    }

    #[test]
    fn a_request_is_written_then_answered() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        e.enqueue(batch(3, 5), &mut d);
        assert!(e.start_next());
        let n = e.pending().len();
        assert!(String::from_utf8_lossy(e.pending()).starts_with("POST /v1/metrics"));
        e.advance(n);
        assert!(e.pending().is_empty());
        assert_eq!(e.on_bytes(b"HTTP/1.1 200 OK\r\nContent-Len", &mut d), None);
        let o = e.on_bytes(b"gth: 0\r\n\r\n", &mut d);
        assert_eq!(
            o,
            Some(Outcome::Delivered {
                items: 5,
                close: false
            })
        );
        assert!(e.is_idle());
    }

    #[test]
    fn failures_are_counted_by_kind() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        for _ in 0..3 {
            e.enqueue(batch(3, 2), &mut d);
        }
        e.start_next();
        e.on_bytes(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            &mut d,
        );
        e.start_next();
        e.on_bytes(
            b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n",
            &mut d,
        );
        e.start_next();
        e.on_failure(Failure::Timeout, &mut d);
        assert_eq!(d.dropped(DropReason::ExportRejected), 2);
        assert_eq!(d.dropped(DropReason::ExportFailed), 4);
        assert_eq!(e.stats.failures, 3);
        // A failure with nothing in flight counts nothing.
        e.on_failure(Failure::Timeout, &mut d);
        assert_eq!(d.dropped(DropReason::ExportFailed), 4);
    }
}
