//! The exporter's state machine for one OTLP/HTTP endpoint, without the socket or the clock.
//!
//! Batches wait in a queue bounded in bytes; when a new batch does not fit, the oldest are
//! dropped and counted (`export_queue_full`). One request is in flight at a time on a
//! keep-alive connection. `io` moves the bytes: it writes [`Exporter::pending`], reports
//! what it wrote with [`Exporter::advance`], feeds what it reads to [`Exporter::on_bytes`],
//! tells of failures with [`Exporter::on_failure`], and passes the time (monotonic ms).
//!
//! What happens to a batch follows the OTLP/HTTP specification:
//! - 2xx: delivered; a `partial_success` is counted (`export_partial_rejected`) and logged.
//! - 429, 502, 503, 504, connection failures, timeouts, TLS and unreadable responses: the
//!   batch goes back to the head of the queue and the endpoint pauses for `Retry-After` or
//!   an exponential backoff with jitter.
//! - 413: the batch is split in two halves that are sent in its place; a single item that is
//!   still too large is dropped (`export_too_large`).
//! - any other status: dropped (`export_rejected` for 4xx, `export_failed` otherwise), with
//!   the message of the `google.rpc.Status` body.

use crate::codec::{Codec, OtlpRequest, split_body};
use crate::http::{RequestHead, Response, ResponseError, ResponseReader, write_request};
use crate::payload::Encoder;
use crate::retry::{RetryPolicy, Rng, parse_retry_after, retryable_status};
use std::collections::VecDeque;
use std::time::SystemTime;
use telegen_core::metrics::{Attr, Kind, MetricDesc, MetricSink};
use telegen_core::selfmetrics::{AgentCounters, DropReason};

/// One encoded request body and the number of items in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub items: u64,
    /// The batch is a record of the disk spool (which keeps it until it is consumed).
    pub spooled: bool,
}

impl Batch {
    pub fn new(body: Vec<u8>, items: u64) -> Self {
        Self {
            body,
            items,
            spooled: false,
        }
    }
}

/// Where requests go and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub codec: Codec,
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Connect(String),
    Io(String),
    Tls(String),
    Timeout,
    Response(ResponseError),
    Status {
        status: u16,
        message: Option<String>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Io(e) => write!(f, "connection error: {e}"),
            Self::Tls(e) => write!(f, "TLS error: {e}"),
            Self::Timeout => write!(f, "request timed out"),
            Self::Response(e) => write!(f, "{e}"),
            Self::Status {
                status,
                message: Some(m),
            } => write!(f, "collector answered HTTP {status}: {m}"),
            Self::Status {
                status,
                message: None,
            } => write!(f, "collector answered HTTP {status}"),
        }
    }
}

/// The kinds of failure the self-metrics distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Status4xx,
    Status5xx,
    Timeout,
    Connection,
    Tls,
    Protocol,
}

impl FailureKind {
    pub const ALL: [Self; 6] = [
        Self::Status4xx,
        Self::Status5xx,
        Self::Timeout,
        Self::Connection,
        Self::Tls,
        Self::Protocol,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
        }
    }
}

impl Failure {
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Connect(_) | Self::Io(_) => FailureKind::Connection,
            Self::Tls(_) => FailureKind::Tls,
            Self::Timeout => FailureKind::Timeout,
            Self::Response(_) => FailureKind::Protocol,
            Self::Status { status, .. } if *status < 500 => FailureKind::Status4xx,
            Self::Status { .. } => FailureKind::Status5xx,
        }
    }
}

/// What happened to the request in flight. `close`: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        items: u64,
        spooled: bool,
        partial: Option<(i64, String)>,
        close: bool,
    },
    /// The batch waits at the head of the queue; the endpoint is paused for `after_ms`.
    Retry {
        failure: Failure,
        after_ms: u64,
        spooled: bool,
        close: bool,
    },
    /// HTTP 413: the batch was replaced by two halves at the head of the queue.
    Split { spooled: bool, close: bool },
    /// The batch is gone, counted under `reason`.
    Dropped {
        items: u64,
        failure: Failure,
        reason: DropReason,
        spooled: bool,
        close: bool,
    },
    /// The connection ended without a request to account for (an idle keep-alive closed, or
    /// the request in flight was put back to be sent on a new connection).
    Closed,
}

impl Outcome {
    pub fn close(&self) -> bool {
        match self {
            Self::Delivered { close, .. }
            | Self::Retry { close, .. }
            | Self::Split { close, .. }
            | Self::Dropped { close, .. } => *close,
            Self::Closed => true,
        }
    }
}

/// Counters of the exporter's own work (self-metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    pub requests: u64,
    pub delivered_items: u64,
    pub retries: u64,
    pub failures: [u64; FailureKind::ALL.len()],
}

pub static REQUESTS: MetricDesc = MetricDesc {
    name: "telegen.agent.export.requests",
    description: "Export requests sent, retries included.",
    unit: "{request}",
    kind: Kind::Counter,
};
pub static FAILURES: MetricDesc = MetricDesc {
    name: "telegen.agent.export.failures",
    description: "Export requests that did not succeed, by reason.",
    unit: "{request}",
    kind: Kind::Counter,
};
pub static RETRIES: MetricDesc = MetricDesc {
    name: "telegen.agent.export.retries",
    description: "Batches put back to be sent again after a retryable failure.",
    unit: "{batch}",
    kind: Kind::Counter,
};
pub static QUEUE_BYTES: MetricDesc = MetricDesc {
    name: "telegen.agent.export.queue.bytes",
    description: "Encoded bytes waiting in memory for the collector.",
    unit: "By",
    kind: Kind::Gauge,
};
pub static SPOOL_BYTES: MetricDesc = MetricDesc {
    name: "telegen.agent.export.spool.bytes",
    description: "Bytes waiting in the disk spool.",
    unit: "By",
    kind: Kind::Gauge,
};

impl Exporter {
    /// Reports the exporter's self-metrics; `signal` names the signal it carries.
    pub fn report(&self, signal: &str, spool_bytes: Option<u64>, sink: &mut dyn MetricSink) {
        let sig = Attr::str("signal", signal);
        sink.counter(&REQUESTS, core::slice::from_ref(&sig), self.stats.requests);
        for k in FailureKind::ALL {
            let attrs = [sig.clone(), Attr::str("reason", k.as_str())];
            sink.counter(&FAILURES, &attrs, self.stats.failures[k as usize]);
        }
        sink.counter(&RETRIES, core::slice::from_ref(&sig), self.stats.retries);
        let queued = self.queue_bytes + self.inflight.as_ref().map_or(0, |b| b.body.len());
        sink.gauge(&QUEUE_BYTES, core::slice::from_ref(&sig), queued as i64);
        if let Some(b) = spool_bytes {
            sink.gauge(&SPOOL_BYTES, core::slice::from_ref(&sig), b as i64);
        }
    }
}

/// Splits a body of the exporter's request type (chosen when it is built).
type Splitter = fn(&Codec, &mut Encoder, &[u8]) -> Option<[(Vec<u8>, u64); 2]>;
/// Reads `partial_success` from a response body.
type PartialReader = fn(&[u8], crate::codec::Format) -> Option<(i64, String)>;

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
    policy: RetryPolicy,
    rng: Rng,
    /// Consecutive failures (backoff exponent); 0 after a delivery.
    failures_in_row: u32,
    paused_until_ms: u64,
    encoder: Encoder,
    split: Splitter,
    partial: PartialReader,
    pub stats: ExportStats,
}

impl Exporter {
    /// An exporter for requests of type `R`.
    pub fn new<R: OtlpRequest>(
        target: Target,
        cap_bytes: usize,
        policy: RetryPolicy,
        seed: u64,
    ) -> Self {
        Self {
            target,
            queue: VecDeque::new(),
            queue_bytes: 0,
            cap_bytes,
            inflight: None,
            out: Vec::new(),
            written: 0,
            reader: ResponseReader::new(),
            policy,
            rng: Rng::new(seed),
            failures_in_row: 0,
            paused_until_ms: 0,
            encoder: Encoder::default(),
            split: split_body::<R>,
            partial: R::partial_success,
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

    /// When the endpoint may be tried again (monotonic ms), if it is paused at `now_ms`.
    pub fn paused_until(&self, now_ms: u64) -> Option<u64> {
        (self.paused_until_ms > now_ms).then_some(self.paused_until_ms)
    }

    /// Ends a pause now (a last attempt at shutdown).
    pub fn resume(&mut self) {
        self.paused_until_ms = 0;
    }

    /// Consecutive failed attempts since the last delivery.
    pub fn failures_in_row(&self) -> u32 {
        self.failures_in_row
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

    /// Puts a batch at the head of the queue (a spool record to send next). Not bounded:
    /// the caller brings one at a time.
    pub fn push_front(&mut self, batch: Batch) {
        self.queue_bytes += batch.body.len();
        self.queue.push_front(batch);
    }

    /// Takes every batch not yet delivered, oldest first, in-flight one included (for the
    /// spool). The connection must be closed if a request was in flight.
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.reader.reset();
        self.written = 0;
        let mut all: Vec<Batch> = self.inflight.take().into_iter().collect();
        all.extend(self.queue.drain(..));
        self.queue_bytes = 0;
        all
    }

    /// Starts the next request if none is in flight and the endpoint is not paused;
    /// true when there is one to write.
    pub fn start_next(&mut self, now_ms: u64) -> bool {
        if self.inflight.is_some() {
            return true;
        }
        if self.paused_until(now_ms).is_some() {
            return false;
        }
        let Some(batch) = self.queue.pop_front() else {
            return false;
        };
        self.queue_bytes -= batch.body.len();
        let head = RequestHead {
            authority: &self.target.authority,
            path: &self.target.path,
            headers: &self.target.headers,
            content_type: self.target.codec.format.content_type(),
            gzip: self.target.codec.gzip,
        };
        write_request(&mut self.out, &head, &batch.body);
        self.written = 0;
        self.inflight = Some(batch);
        self.stats.requests += 1;
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
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        now_ms: u64,
        wall: SystemTime,
        drops: &mut AgentCounters,
    ) -> Option<Outcome> {
        match self.reader.feed(data) {
            Ok(None) => None,
            Ok(Some(resp)) => Some(self.finish(resp, now_ms, wall, drops)),
            Err(e) => Some(self.on_failure(Failure::Response(e), now_ms, drops)),
        }
    }

    /// The peer closed the connection.
    pub fn on_eof(
        &mut self,
        now_ms: u64,
        wall: SystemTime,
        drops: &mut AgentCounters,
    ) -> Option<Outcome> {
        let result = self.reader.eof();
        self.reader.reset();
        match result {
            Ok(Some(resp)) => Some(self.finish(resp, now_ms, wall, drops)),
            _ if self.inflight.is_none() => None,
            Ok(None) => {
                Some(self.on_failure(Failure::Io("closed by the collector".into()), now_ms, drops))
            }
            Err(e) => Some(self.on_failure(Failure::Response(e), now_ms, drops)),
        }
    }

    fn count(&mut self, kind: FailureKind) {
        self.stats.failures[kind as usize] += 1;
    }

    /// Requeues the batch in flight at the head and pauses the endpoint.
    fn retry(
        &mut self,
        failure: Failure,
        delay_ms: Option<u64>,
        now_ms: u64,
        close: bool,
    ) -> Outcome {
        self.count(failure.kind());
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        let after_ms =
            delay_ms.unwrap_or_else(|| self.policy.delay_ms(self.failures_in_row, &mut self.rng));
        self.paused_until_ms = now_ms.saturating_add(after_ms);
        let mut spooled = false;
        if let Some(b) = self.inflight.take() {
            spooled = b.spooled;
            self.stats.retries += 1;
            self.push_front(b);
        }
        Outcome::Retry {
            failure,
            after_ms,
            spooled,
            close,
        }
    }

    fn finish(
        &mut self,
        resp: Response,
        now_ms: u64,
        wall: SystemTime,
        drops: &mut AgentCounters,
    ) -> Outcome {
        let close = resp.close;
        let Some(batch) = self.inflight.take() else {
            // A response nobody asked for: the connection is out of step.
            let failure = Failure::Status {
                status: resp.status,
                message: None,
            };
            return Outcome::Dropped {
                items: 0,
                failure,
                reason: DropReason::ExportFailed,
                spooled: false,
                close: true,
            };
        };
        let codec = self.target.codec;
        let status = resp.status;
        if (200..300).contains(&status) {
            self.failures_in_row = 0;
            self.stats.delivered_items += batch.items;
            let partial = (self.partial)(&resp.body, codec.format);
            if let Some((rejected, _)) = &partial {
                drops.drop(DropReason::ExportPartialRejected, (*rejected).max(0) as u64);
            }
            return Outcome::Delivered {
                items: batch.items,
                spooled: batch.spooled,
                partial,
                close,
            };
        }
        let failure = Failure::Status {
            status,
            message: codec.status_message(&resp.body),
        };
        if retryable_status(status) {
            let delay = resp
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, wall))
                .map(|d| d.as_millis() as u64);
            self.inflight = Some(batch);
            return self.retry(failure, delay, now_ms, close);
        }
        self.count(failure.kind());
        if status == 413 {
            if let Some([a, b]) = (self.split)(&codec, &mut self.encoder, &batch.body) {
                for (body, items) in [b, a] {
                    self.push_front(Batch::new(body, items));
                }
                return Outcome::Split {
                    spooled: batch.spooled,
                    close,
                };
            }
            drops.drop(DropReason::ExportTooLarge, batch.items);
            return Outcome::Dropped {
                items: batch.items,
                failure,
                reason: DropReason::ExportTooLarge,
                spooled: batch.spooled,
                close,
            };
        }
        let reason = if (400..500).contains(&status) {
            DropReason::ExportRejected
        } else {
            DropReason::ExportFailed
        };
        drops.drop(reason, batch.items);
        Outcome::Dropped {
            items: batch.items,
            failure,
            reason,
            spooled: batch.spooled,
            close,
        }
    }

    /// The request in flight failed (connect, I/O, TLS, timeout, unreadable response): it
    /// will be retried after a backoff. The connection must be closed.
    pub fn on_failure(
        &mut self,
        failure: Failure,
        now_ms: u64,
        _drops: &mut AgentCounters,
    ) -> Outcome {
        self.reader.reset();
        self.written = 0;
        self.retry(failure, None, now_ms, true)
    }

    /// Sends the request in flight again on a new connection, without a pause or a count:
    /// a reused keep-alive connection was closed by the server before it answered.
    pub fn resend_in_flight(&mut self) -> bool {
        let Some(batch) = self.inflight.take() else {
            return false;
        };
        self.reader.reset();
        self.written = 0;
        self.push_front(batch);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Format;
    use crate::otlp::{MetricsCollector, resource};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use std::time::Duration;
    use telegen_core::metrics::{Attr, Kind, MetricDesc, MetricSink};

    const CODEC: Codec = Codec {
        format: Format::Protobuf,
        gzip: false,
    };
    const POLICY: RetryPolicy = RetryPolicy {
        initial_ms: 1000,
        max_ms: 8000,
    };

    fn exporter(cap: usize) -> Exporter {
        let t = Target {
            authority: "h".into(),
            path: "/v1/metrics".into(),
            headers: vec![],
            codec: CODEC,
        };
        Exporter::new::<ExportMetricsServiceRequest>(t, cap, POLICY, 7)
    }

    fn batch(n: usize, items: u64) -> Batch {
        Batch::new(vec![0; n], items)
    }

    fn real_batch(points: i64) -> Batch {
        static C: MetricDesc = MetricDesc {
            name: "c",
            description: "",
            unit: "1",
            kind: Kind::Counter,
        };
        let mut c = MetricsCollector::new(1, 2);
        for i in 0..points {
            c.counter(&C, &[Attr::int("i", i)], 1);
        }
        let req = c.into_requests(&resource(&[]), 1000).remove(0);
        let mut body = Vec::new();
        CODEC.encode(&mut Encoder::default(), &req, &mut body);
        Batch::new(body, points as u64)
    }

    fn respond(e: &mut Exporter, d: &mut AgentCounters, now: u64, raw: &str) -> Outcome {
        assert!(e.start_next(now), "a request should start");
        let n = e.pending().len();
        e.advance(n);
        e.on_bytes(raw.as_bytes(), now, SystemTime::UNIX_EPOCH, d)
            .expect("complete response")
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
        assert!(e.start_next(0));
        assert!(String::from_utf8_lossy(e.pending()).starts_with("POST /v1/metrics"));
        let n = e.pending().len();
        e.advance(n);
        assert!(e.pending().is_empty());
        assert_eq!(
            e.on_bytes(
                b"HTTP/1.1 200 OK\r\nContent-Len",
                0,
                SystemTime::UNIX_EPOCH,
                &mut d
            ),
            None
        );
        let o = e.on_bytes(b"gth: 0\r\n\r\n", 0, SystemTime::UNIX_EPOCH, &mut d);
        assert_eq!(
            o,
            Some(Outcome::Delivered {
                items: 5,
                spooled: false,
                partial: None,
                close: false
            })
        );
        assert!(e.is_idle());
    }

    #[test]
    fn retryable_statuses_pause_the_endpoint_and_keep_the_batch() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        e.enqueue(batch(3, 5), &mut d);
        let o = respond(
            &mut e,
            &mut d,
            100,
            "HTTP/1.1 503 Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(o, Outcome::Retry { after_ms: 7000, .. }), "{o:?}");
        assert!(!e.start_next(7099), "paused until Retry-After passes");
        assert_eq!(e.paused_until(7099), Some(7100));
        // Without Retry-After: exponential backoff with jitter.
        let o = respond(
            &mut e,
            &mut d,
            7100,
            "HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\n\r\n",
        );
        let Outcome::Retry { after_ms, .. } = o else {
            panic!("{o:?}")
        };
        assert!(
            (1000..=2000).contains(&after_ms),
            "second failure in a row: {after_ms}"
        );
        let o = respond(
            &mut e,
            &mut d,
            7100 + after_ms,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(o, Outcome::Delivered { items: 5, .. }));
        assert_eq!(e.stats.retries, 2);
        assert_eq!(e.failures_in_row(), 0);
        assert_eq!(d.dropped(DropReason::ExportFailed), 0);
    }

    #[test]
    fn http_date_retry_after() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        e.enqueue(batch(3, 1), &mut d);
        assert!(e.start_next(0));
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        let o = e.on_bytes(b"HTTP/1.1 503 X\r\nRetry-After: Sun, 06 Nov 1994 08:49:40 GMT\r\nContent-Length: 0\r\n\r\n", 0, wall, &mut d);
        assert!(
            matches!(o, Some(Outcome::Retry { after_ms: 3000, .. })),
            "{o:?}"
        );
    }

    #[test]
    fn connection_failures_back_off_and_count_by_kind() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        e.enqueue(batch(3, 2), &mut d);
        assert!(e.start_next(0));
        let o = e.on_failure(Failure::Connect("refused".into()), 0, &mut d);
        assert!(matches!(o, Outcome::Retry { close: true, .. }));
        assert!(e.start_next(10_000));
        e.on_failure(Failure::Timeout, 10_000, &mut d);
        assert_eq!(e.stats.failures[FailureKind::Connection as usize], 1);
        assert_eq!(e.stats.failures[FailureKind::Timeout as usize], 1);
        assert!(!e.is_idle(), "the batch is still there");
    }

    #[test]
    fn client_errors_drop_with_the_status_message() {
        let mut e = exporter(1000);
        let mut d = AgentCounters::default();
        e.enqueue(batch(3, 4), &mut d);
        let o = respond(
            &mut e,
            &mut d,
            0,
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\noops!",
        );
        let Outcome::Dropped {
            items: 4,
            failure,
            reason: DropReason::ExportRejected,
            ..
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(failure.to_string(), "collector answered HTTP 400: oops!");
        assert_eq!(d.dropped(DropReason::ExportRejected), 4);
        e.enqueue(batch(3, 4), &mut d);
        respond(
            &mut e,
            &mut d,
            0,
            "HTTP/1.1 500 Internal\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            d.dropped(DropReason::ExportFailed),
            4,
            "500 is not retryable"
        );
    }

    #[test]
    fn too_large_splits_until_one_item_remains() {
        let mut e = exporter(1 << 20);
        let mut d = AgentCounters::default();
        e.enqueue(real_batch(5), &mut d);
        let too_large = "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            respond(&mut e, &mut d, 0, too_large),
            Outcome::Split { .. }
        ));
        // The halves (2 and 3 points) go next, in order.
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            respond(&mut e, &mut d, 0, ok),
            Outcome::Delivered { items: 2, .. }
        ));
        assert!(matches!(
            respond(&mut e, &mut d, 0, too_large),
            Outcome::Split { .. }
        ));
        assert!(matches!(
            respond(&mut e, &mut d, 0, ok),
            Outcome::Delivered { items: 1, .. }
        ));
        let o = respond(&mut e, &mut d, 0, too_large);
        assert!(matches!(o, Outcome::Split { .. }), "{o:?}");
        assert!(matches!(
            respond(&mut e, &mut d, 0, too_large),
            Outcome::Dropped {
                items: 1,
                reason: DropReason::ExportTooLarge,
                ..
            }
        ));
        assert!(matches!(
            respond(&mut e, &mut d, 0, ok),
            Outcome::Delivered { items: 1, .. }
        ));
        assert!(e.is_idle());
        assert_eq!(d.dropped(DropReason::ExportTooLarge), 1);
    }
}
