//! The agent's own health: events handled and everything dropped, by reason.
//!
//! Every place that gives up on data counts it here; `telegen.agent.dropped{reason}` is the
//! one metric a user reads to know nothing was lost silently.

use crate::helper::{Kind as HelperKind, Status as HelperStatus};
use crate::metrics::{Attr, Kind, MetricDesc, MetricSink};
use telegen_common::KernelDrop;

pub static EVENTS: MetricDesc = MetricDesc {
    name: "telegen.agent.events",
    description: "Kernel records the agent decoded and processed.",
    unit: "{event}",
    kind: Kind::Counter,
};

pub static DROPPED: MetricDesc = MetricDesc {
    name: "telegen.agent.dropped",
    description: "Items the agent could not deliver, by reason.",
    unit: "{item}",
    kind: Kind::Counter,
};

pub static HELPER_REQUESTS: MetricDesc = MetricDesc {
    name: "telegen.agent.helper.requests",
    description: "Requests the privileged helper answered, by kind and status.",
    unit: "{request}",
    kind: Kind::Counter,
};

/// Why something was dropped. The `reason` attribute takes [`DropReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The kernel could not reserve room in the event ring.
    KernelRingFull,
    /// The kernel could not read a tracepoint field.
    KernelReadFailed,
    /// The kernel's table of read/write calls in flight was full: a call was not followed.
    KernelPendingFull,
    /// A record from the ring failed validation.
    DecodeError,
    /// Descriptor join: a write whose socket was not known yet was held for the
    /// descriptor's next record, which never came (the descriptor closed or its process
    /// ended first, or the holding table was full). Also what a descriptor that is no TCP
    /// socket (a pipe, a file, a Unix socket) costs when its bytes look like a protocol.
    SocketUnknown,
    /// The connection table was full when a connection opened.
    ConnTableFull,
    /// The listener table was full when a socket started listening.
    ListenerTableFull,
    /// Data points in a request the collector did not accept (connection, timeout, 5xx).
    ExportFailed,
    /// Data points the collector rejected as invalid (4xx).
    ExportRejected,
    /// Data points whose batch was pushed out of a full export queue.
    ExportQueueFull,
    /// A single item larger than the collector accepts (413 with nothing left to split).
    ExportTooLarge,
    /// Items the collector reported as rejected in a `partial_success`.
    ExportPartialRejected,
    /// Items in spool records dropped to keep the spool under its size cap.
    SpoolFull,
    /// Spool records found torn or corrupted (counted per record: their item count is lost).
    SpoolCorrupt,
    /// A request on a connection the HTTP table had no room for.
    HttpTableFull,
    /// A pipelined request beyond the requests a connection may have waiting for answers.
    HttpPipelineFull,
    /// A finished span with no room in the span queue (the oldest is dropped).
    SpanQueueFull,
    /// A database connection the table of database connections had no room for.
    DbTableFull,
    /// A pipelined database command beyond those a connection may have waiting.
    DbPipelineFull,
    /// A protocol stream whose framing was lost (the capture cut off a header, or bytes
    /// that are not the protocol): counted once, plus once per command left waiting.
    ProtocolDesync,
    /// A process the process table had no room for: its spans carry no process attributes
    /// beyond its pid and name.
    ProcessTableFull,
    /// A pod beyond `kubernetes.max_pods` in a listing of the node's pods (counted at each
    /// listing): its processes carry no pod name.
    PodTableFull,
    /// A request for the privileged helper beyond the requests that may wait for it (an
    /// exec-time attach or another user's environment not asked for).
    HelperQueueFull,
}

impl DropReason {
    pub const ALL: [Self; 23] = [
        Self::KernelRingFull,
        Self::KernelReadFailed,
        Self::KernelPendingFull,
        Self::DecodeError,
        Self::SocketUnknown,
        Self::ConnTableFull,
        Self::ListenerTableFull,
        Self::ExportFailed,
        Self::ExportRejected,
        Self::ExportQueueFull,
        Self::ExportTooLarge,
        Self::ExportPartialRejected,
        Self::SpoolFull,
        Self::SpoolCorrupt,
        Self::HttpTableFull,
        Self::HttpPipelineFull,
        Self::SpanQueueFull,
        Self::DbTableFull,
        Self::DbPipelineFull,
        Self::ProtocolDesync,
        Self::ProcessTableFull,
        Self::PodTableFull,
        Self::HelperQueueFull,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KernelRingFull => KernelDrop::RingFull.reason(),
            Self::KernelReadFailed => KernelDrop::ReadFailed.reason(),
            Self::KernelPendingFull => KernelDrop::PendingFull.reason(),
            Self::DecodeError => "decode_error",
            Self::SocketUnknown => "socket_unknown",
            Self::ConnTableFull => "conn_table_full",
            Self::ListenerTableFull => "listener_table_full",
            Self::ExportFailed => "export_failed",
            Self::ExportRejected => "export_rejected",
            Self::ExportQueueFull => "export_queue_full",
            Self::ExportTooLarge => "export_too_large",
            Self::ExportPartialRejected => "export_partial_rejected",
            Self::SpoolFull => "spool_full",
            Self::SpoolCorrupt => "spool_corrupt",
            Self::HttpTableFull => "http_table_full",
            Self::HttpPipelineFull => "http_pipeline_full",
            Self::SpanQueueFull => "span_queue_full",
            Self::DbTableFull => "db_table_full",
            Self::DbPipelineFull => "db_pipeline_full",
            Self::ProtocolDesync => "protocol_desync",
            Self::ProcessTableFull => "process_table_full",
            Self::PodTableFull => "pod_table_full",
            Self::HelperQueueFull => "helper_queue_full",
        }
    }

    pub const fn from_kernel(k: KernelDrop) -> Self {
        match k {
            KernelDrop::RingFull => Self::KernelRingFull,
            KernelDrop::ReadFailed => Self::KernelReadFailed,
            KernelDrop::PendingFull => Self::KernelPendingFull,
        }
    }
}

/// Counters of the agent's own health.
#[derive(Debug, Default, Clone)]
pub struct AgentCounters {
    pub events: u64,
    dropped: [u64; DropReason::ALL.len()],
    helper: [[u64; HelperStatus::ALL.len()]; HelperKind::ALL.len()],
}

impl AgentCounters {
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason as usize] = self.dropped[reason as usize].saturating_add(n);
    }

    /// Sets a count kept elsewhere (the kernel's per-CPU counters, summed).
    pub fn set(&mut self, reason: DropReason, total: u64) {
        self.dropped[reason as usize] = total;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// One answer of the privileged helper.
    pub fn helper_answered(&mut self, kind: HelperKind, status: HelperStatus) {
        let c = &mut self.helper[kind as usize - 1][status as usize];
        *c = c.saturating_add(1);
    }

    pub fn helper_answers(&self, kind: HelperKind, status: HelperStatus) -> u64 {
        self.helper[kind as usize - 1][status as usize]
    }

    /// Reports `telegen.agent.events` and one `telegen.agent.dropped` series per reason.
    /// Every reason is reported, zero included, so a dashboard sees the series exist.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        sink.counter(&EVENTS, &[], self.events);
        for r in DropReason::ALL {
            sink.counter(
                &DROPPED,
                &[Attr::str("reason", r.as_str())],
                self.dropped(r),
            );
        }
        // Only the pairs that happened: 28 series of zeros would say nothing.
        for k in HelperKind::ALL {
            for st in HelperStatus::ALL {
                let n = self.helper_answers(k, st);
                if n > 0 {
                    sink.counter(
                        &HELPER_REQUESTS,
                        &[
                            Attr::str("kind", k.as_str()),
                            Attr::str("status", st.as_str()),
                        ],
                        n,
                    );
                }
            }
        }
    }
}
