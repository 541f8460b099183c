//! TCP connection tracking: open/close pairing, process attribution, and the TCP metrics.
//!
//! Each end of a connection the kernel reports is tracked on its own, keyed by the kernel's
//! socket address. A client end belongs to the task that called `connect()` (seen on the
//! `SYN_SENT` transition, which runs in that task); a server end belongs to the process that
//! owns the listening socket on its local port (seen on the `LISTEN` transition, or seeded by
//! `io` from /proc for listeners older than the agent). Ends that became established before
//! the agent started are not in the table; their close produces no duration sample.

use crate::fixed_map::FixedMap;
use crate::metrics::{Attr, Attributes, Attrs, Histogram, Kind, MetricDesc, MetricSink, Series};
use crate::record::{IpAddr, TcpRecord, comm_str};
use crate::selfmetrics::{AgentCounters, DropReason};
use telegen_common::{COMM_LEN, EventKind, tcp_state};

pub static OPENED: MetricDesc = MetricDesc {
    name: "telegen.tcp.connections.opened",
    description: "TCP connection ends that reached ESTABLISHED.",
    unit: "{connection}",
    kind: Kind::Counter,
};
pub static DURATION: MetricDesc = MetricDesc {
    name: "telegen.tcp.connection.duration",
    description: "Time from ESTABLISHED to CLOSE of a TCP connection end.",
    unit: "s",
    kind: Kind::Histogram,
};
pub static RETRANSMITS: MetricDesc = MetricDesc {
    name: "telegen.tcp.retransmits",
    description: "TCP segments retransmitted.",
    unit: "{segment}",
    kind: Kind::Counter,
};
pub static RESETS: MetricDesc = MetricDesc {
    name: "telegen.tcp.resets",
    description: "TCP resets sent (network.io.direction=transmit) or received (receive).",
    unit: "{reset}",
    kind: Kind::Counter,
};

/// Bucket bounds of the duration histogram, in seconds.
pub static DURATION_BOUNDS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0,
];

/// Which end of a connection a series describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// A process as the kernel names it. `pid` 0 means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Process {
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
}

impl Process {
    /// `process.pid` and `process.executable.name` (the kernel's task name) on a metric's
    /// attributes; nothing when the process is unknown (pid 0).
    pub fn attributes(&self, out: &mut Attrs) {
        if self.pid != 0 {
            let _ = out.push(Attr::int("process.pid", i64::from(self.pid)));
            let _ = out.push(Attr::str("process.executable.name", comm_str(&self.comm)));
        }
    }
}

/// The attribute set of the TCP metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub side: Side,
    pub server: IpAddr,
    pub server_port: u16,
    pub process: Process,
}

impl Attributes for ConnKey {
    fn attributes(&self, out: &mut Attrs) {
        let mut addr = heapless::String::<48>::new();
        // An IPv6 address is at most 45 characters.
        let _ = core::fmt::write(&mut addr, format_args!("{}", self.server));
        let attrs = [
            Attr::str("server.address", &addr),
            Attr::int("server.port", i64::from(self.server_port)),
            Attr::str("network.transport", "tcp"),
            Attr::str("network.type", if self.server.v6 { "ipv6" } else { "ipv4" }),
            Attr::str("telegen.connection.side", self.side.as_str()),
        ];
        for a in attrs {
            let _ = out.push(a);
        }
        self.process.attributes(out);
    }
}

/// A reset's attributes: the connection's, and whether it was sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetKey {
    pub conn: ConnKey,
    pub received: bool,
}

impl Attributes for ResetKey {
    fn attributes(&self, out: &mut Attrs) {
        self.conn.attributes(out);
        let dir = if self.received { "receive" } else { "transmit" };
        let _ = out.push(Attr::str("network.io.direction", dir));
    }
}

/// One tracked connection end.
#[derive(Debug, Clone, Copy)]
struct Conn {
    key: ConnKey,
    /// Monotonic ns of ESTABLISHED; 0 while connecting.
    established_ns: u64,
}

/// One listening socket.
#[derive(Debug, Clone, Copy)]
struct Listener {
    sock: u64,
    process: Process,
}

/// Table sizes, fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub connections: usize,
    pub listeners: usize,
    pub series_per_metric: usize,
}

impl TcpLimits {
    /// Bytes the tracker's tables take.
    pub fn bytes(&self) -> usize {
        FixedMap::<u64, Conn>::bytes_for(self.connections)
            + FixedMap::<u16, Listener>::bytes_for(self.listeners)
            + 2 * Series::<ConnKey, u64>::bytes_for(self.series_per_metric)
            + Series::<ResetKey, u64>::bytes_for(self.series_per_metric)
            + Series::<ConnKey, Histogram>::bytes_for(self.series_per_metric)
    }
}

/// Tracks TCP connection ends and aggregates the TCP metrics.
pub struct TcpTracker {
    conns: FixedMap<u64, Conn>,
    listeners: FixedMap<u16, Listener>,
    opened: Series<ConnKey, u64>,
    duration: Series<ConnKey, Histogram>,
    retransmits: Series<ConnKey, u64>,
    resets: Series<ResetKey, u64>,
}

impl TcpTracker {
    pub fn new(limits: TcpLimits) -> Self {
        let cap = limits.series_per_metric;
        Self {
            conns: FixedMap::with_capacity(limits.connections),
            listeners: FixedMap::with_capacity(limits.listeners),
            opened: Series::new(&OPENED, cap, || 0),
            duration: Series::new(&DURATION, cap, || Histogram::new(&DURATION_BOUNDS)),
            retransmits: Series::new(&RETRANSMITS, cap, || 0),
            resets: Series::new(&RESETS, cap, || 0),
        }
    }

    /// Records a listener that existed before the agent started (from /proc).
    pub fn seed_listener(&mut self, port: u16, process: Process, drops: &mut AgentCounters) {
        if self
            .listeners
            .insert(port, Listener { sock: 0, process })
            .is_err()
        {
            drops.drop(DropReason::ListenerTableFull, 1);
        }
    }

    /// The ports process `pid` listens on (as far as the listener table knows).
    pub fn listening_ports(&self, pid: u32) -> impl Iterator<Item = u16> + '_ {
        self.listeners
            .iter()
            .filter(move |(_, l)| l.process.pid == pid)
            .map(|(port, _)| *port)
    }

    /// Connection ends tracked now.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Handles one validated record.
    pub fn on_record(&mut self, r: &TcpRecord, drops: &mut AgentCounters) {
        match r.kind {
            EventKind::TcpStateChange => self.on_state_change(r, drops),
            EventKind::TcpRetransmit => {
                let key = self.key_for(r);
                *self.retransmits.point(key).0 += 1;
            }
            EventKind::TcpSendReset | EventKind::TcpReceiveReset => {
                let conn = self.key_for(r);
                let received = r.kind == EventKind::TcpReceiveReset;
                *self.resets.point(ResetKey { conn, received }).0 += 1;
            }
            // Not TCP records: the decoder never makes a TcpRecord of these.
            EventKind::SocketData
            | EventKind::FdClose
            | EventKind::ProcessExec
            | EventKind::ProcessExit => {}
        }
    }

    fn process_of(r: &TcpRecord) -> Process {
        Process {
            pid: r.task.tgid,
            comm: r.task.comm,
        }
    }

    /// The series of a socket seen outside a state change: tracked, or guessed from ports.
    fn key_for(&self, r: &TcpRecord) -> ConnKey {
        if let Some(c) = self.conns.get(&r.sock) {
            return c.key;
        }
        match self.listeners.get(&r.local_port) {
            Some(l) => ConnKey {
                side: Side::Server,
                server: r.local,
                server_port: r.local_port,
                process: l.process,
            },
            None => ConnKey {
                side: Side::Client,
                server: r.remote,
                server_port: r.remote_port,
                process: Process::default(),
            },
        }
    }

    fn on_state_change(&mut self, r: &TcpRecord, drops: &mut AgentCounters) {
        match r.new_state {
            tcp_state::LISTEN => {
                let l = Listener {
                    sock: r.sock,
                    process: Self::process_of(r),
                };
                if self.listeners.insert(r.local_port, l).is_err() {
                    drops.drop(DropReason::ListenerTableFull, 1);
                }
            }
            tcp_state::SYN_SENT => {
                let key = ConnKey {
                    side: Side::Client,
                    server: r.remote,
                    server_port: r.remote_port,
                    process: Self::process_of(r),
                };
                if self
                    .conns
                    .insert(
                        r.sock,
                        Conn {
                            key,
                            established_ns: 0,
                        },
                    )
                    .is_err()
                {
                    drops.drop(DropReason::ConnTableFull, 1);
                }
            }
            tcp_state::ESTABLISHED => {
                let key = if r.old_state == tcp_state::SYN_SENT {
                    match self.conns.get(&r.sock) {
                        Some(c) => c.key,
                        // Connecting before the agent started: the current task is a guess.
                        None => ConnKey {
                            side: Side::Client,
                            server: r.remote,
                            server_port: r.remote_port,
                            process: Process::default(),
                        },
                    }
                } else {
                    let process = self
                        .listeners
                        .get(&r.local_port)
                        .map(|l| l.process)
                        .unwrap_or_default();
                    ConnKey {
                        side: Side::Server,
                        server: r.local,
                        server_port: r.local_port,
                        process,
                    }
                };
                *self.opened.point(key).0 += 1;
                let conn = Conn {
                    key,
                    established_ns: r.ts_ns,
                };
                if self.conns.insert(r.sock, conn).is_err() {
                    drops.drop(DropReason::ConnTableFull, 1);
                }
            }
            tcp_state::CLOSE => {
                if r.old_state == tcp_state::LISTEN {
                    let ours = self
                        .listeners
                        .get(&r.local_port)
                        .is_some_and(|l| l.sock == r.sock || l.sock == 0);
                    if ours {
                        self.listeners.remove(&r.local_port);
                    }
                } else if let Some(c) = self.conns.remove(&r.sock)
                    && c.established_ns != 0
                {
                    let secs = r.ts_ns.saturating_sub(c.established_ns) as f64 / 1e9;
                    self.duration.point(c.key).0.record(secs);
                }
            }
            _ => {}
        }
    }

    /// Hands every TCP series to the sink.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        self.opened.report(sink);
        self.duration.report(sink);
        self.retransmits.report(sink);
        self.resets.report(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::AttrValue;
    use crate::record::Task;
    use alloc::{string::String, vec::Vec};

    fn limits() -> TcpLimits {
        TcpLimits {
            connections: 8,
            listeners: 4,
            series_per_metric: 16,
        }
    }

    fn task(pid: u32, name: &str) -> Task {
        let mut comm = [0; COMM_LEN];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        Task {
            tgid: pid,
            tid: pid,
            comm,
        }
    }

    fn lo() -> IpAddr {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&[127, 0, 0, 1]);
        IpAddr { v6: false, bytes }
    }

    #[allow(clippy::too_many_arguments)]
    fn rec(
        kind: EventKind,
        ts: u64,
        t: Task,
        sock: u64,
        lp: u16,
        rp: u16,
        old: u32,
        new: u32,
    ) -> TcpRecord {
        TcpRecord {
            kind,
            ts_ns: ts,
            task: t,
            sock,
            local: lo(),
            remote: lo(),
            local_port: lp,
            remote_port: rp,
            old_state: old,
            new_state: new,
        }
    }

    /// (metric name, attributes, value or histogram count)
    type Seen = (String, Vec<(String, String)>, u64);

    #[derive(Default)]
    struct Points(Vec<Seen>);
    impl MetricSink for Points {
        fn counter(&mut self, d: &MetricDesc, attrs: &[Attr], value: u64) {
            self.0.push((d.name.into(), flat(attrs), value));
        }
        fn gauge(&mut self, d: &MetricDesc, attrs: &[Attr], value: i64) {
            self.0.push((d.name.into(), flat(attrs), value as u64));
        }
        fn histogram(&mut self, d: &MetricDesc, attrs: &[Attr], h: &Histogram) {
            self.0.push((d.name.into(), flat(attrs), h.count));
        }
    }
    fn flat(attrs: &[Attr]) -> Vec<(String, String)> {
        attrs
            .iter()
            .map(|a| {
                let v = match &a.value {
                    AttrValue::Str(s) => String::from(s.as_str()),
                    AttrValue::Int(i) => alloc::format!("{i}"),
                    AttrValue::Bool(b) => alloc::format!("{b}"),
                };
                (String::from(a.key), v)
            })
            .collect()
    }
    fn find<'a>(p: &'a Points, name: &str, side: &str) -> Option<&'a Seen> {
        p.0.iter().find(|(n, a, _)| {
            n == name
                && a.iter()
                    .any(|(k, v)| k == "telegen.connection.side" && v == side)
        })
    }

    #[test]
    fn pairs_both_ends_and_attributes_them_to_their_processes() {
        use EventKind::TcpStateChange as S;
        use tcp_state::*;
        let mut t = TcpTracker::new(limits());
        let mut d = AgentCounters::default();
        let server = task(100, "nginx");
        let client = task(200, "curl");
        t.on_record(&rec(S, 1, server, 0x10, 8080, 0, CLOSE, LISTEN), &mut d);
        t.on_record(
            &rec(S, 2, client, 0x20, 40000, 8080, CLOSE, SYN_SENT),
            &mut d,
        );
        // Softirq context: the current task is whoever ran, here the client.
        t.on_record(
            &rec(S, 3, client, 0x30, 8080, 40000, SYN_RECV, ESTABLISHED),
            &mut d,
        );
        t.on_record(
            &rec(S, 4, client, 0x20, 40000, 8080, SYN_SENT, ESTABLISHED),
            &mut d,
        );
        t.on_record(
            &rec(
                S,
                1_000_000_004,
                client,
                0x20,
                40000,
                8080,
                FIN_WAIT2,
                CLOSE,
            ),
            &mut d,
        );
        t.on_record(
            &rec(S, 2_000_000_003, server, 0x30, 8080, 40000, LAST_ACK, CLOSE),
            &mut d,
        );
        assert_eq!(t.open_connections(), 0);

        let mut p = Points::default();
        t.report(&mut p);
        let (_, attrs, n) = find(&p, OPENED.name, "server").unwrap();
        assert_eq!(*n, 1);
        assert!(
            attrs.contains(&("process.pid".into(), "100".into())),
            "{attrs:?}"
        );
        assert!(attrs.contains(&("server.port".into(), "8080".into())));
        let (_, attrs, n) = find(&p, OPENED.name, "client").unwrap();
        assert_eq!(*n, 1);
        assert!(attrs.contains(&("process.executable.name".into(), "curl".into())));
        assert!(attrs.contains(&("server.port".into(), "8080".into())));
        assert_eq!(find(&p, DURATION.name, "server").unwrap().2, 1);
        assert_eq!(find(&p, DURATION.name, "client").unwrap().2, 1);
        assert_eq!(d.dropped(DropReason::ConnTableFull), 0);
    }

    #[test]
    fn counts_a_full_table_instead_of_growing() {
        use tcp_state::*;
        let mut t = TcpTracker::new(limits());
        let mut d = AgentCounters::default();
        for sock in 0..10 {
            let r = rec(
                EventKind::TcpStateChange,
                1,
                task(1, "x"),
                sock,
                1000,
                80,
                CLOSE,
                SYN_SENT,
            );
            t.on_record(&r, &mut d);
        }
        assert_eq!(t.open_connections(), 8);
        assert_eq!(d.dropped(DropReason::ConnTableFull), 2);
    }

    #[test]
    fn resets_and_retransmits_use_the_tracked_end() {
        use tcp_state::*;
        let mut t = TcpTracker::new(limits());
        let mut d = AgentCounters::default();
        let c = task(7, "app");
        t.on_record(
            &rec(
                EventKind::TcpStateChange,
                1,
                c,
                5,
                1234,
                443,
                CLOSE,
                SYN_SENT,
            ),
            &mut d,
        );
        t.on_record(
            &rec(EventKind::TcpRetransmit, 2, task(0, ""), 5, 1234, 443, 2, 2),
            &mut d,
        );
        t.on_record(
            &rec(
                EventKind::TcpReceiveReset,
                3,
                task(0, ""),
                5,
                1234,
                443,
                2,
                2,
            ),
            &mut d,
        );
        let mut p = Points::default();
        t.report(&mut p);
        let (_, attrs, n) = find(&p, RETRANSMITS.name, "client").unwrap();
        assert_eq!(*n, 1);
        assert!(attrs.contains(&("process.pid".into(), "7".into())));
        let (_, attrs, _) = find(&p, RESETS.name, "client").unwrap();
        assert!(attrs.contains(&("network.io.direction".into(), "receive".into())));
    }
}
