//! Redis exchanges (RESP2 and RESP3) from captured socket data: spans and the client
//! operation-duration metric.
//!
//! The kernel tags a descriptor as Redis when a call on it starts like a RESP command (an
//! array of bulk strings: `*N\r\n$`) and from then on hands over the first bytes of every read
//! and write on it, however short. Here each direction of a connection goes through a
//! streaming scanner of RESP values that resumes across calls and passes over the bytes the
//! capture cut off when they lie inside a bulk string. Commands (the first element of each
//! array sent) queue up in order; each reply ends the oldest (pipelining keeps order), RESP3
//! push messages excepted. A reply that is an error (`-ERR …`, `-WRONGTYPE …`, a blob
//! error) ends its span with `error.type` set to the error's first word. Arguments are never
//! kept: only the command name leaves this module.
//!
//! When the scanner cannot follow (the capture cut off a value's framing, a value nests
//! deeper than [`DEPTH`], bytes that are not RESP), the connection's waiting commands are
//! dropped and counted as `protocol_desync`, and it is followed again from the next call
//! that sends a command.

use crate::http::{HttpTracker, Path};
use crate::l7::{Begun, Ends, Followed, Table, conn_key};
use crate::metrics::{Histogram, Kind, MetricDesc};
use crate::record::{CloseRecord, DataRecord, Protocol};
use crate::selfmetrics::{AgentCounters, DropReason};
use crate::tcp::Side;

pub use crate::l7::Word;

const REDIS: Protocol = Protocol::Redis;

pub static CLIENT_DURATION: MetricDesc = MetricDesc {
    name: "db.client.operation.duration",
    description: "Duration of database client operations.",
    unit: "s",
    kind: Kind::Histogram,
};

/// The bucket bounds the database semantic conventions advise, in seconds.
pub static DURATION_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Aggregates a value may nest in (commands are flat; replies rarely nest past 2).
pub const DEPTH: usize = 8;
/// Commands a connection may have waiting for their replies.
pub const PIPELINE_DEPTH: usize = 16;
/// Longest header line (`$`, a length, CRLF) kept across a cut.
const LINE_CAP: usize = 32;

/// A top-level value the scanner finished.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Value {
    /// Its type byte (`*`, `+`, `-`, `$`, `>`…).
    kind: u8,
    /// For an array: its first element when that is a string (the command name); for an
    /// error: its first word.
    word: Word,
}

/// The framing could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desync;

/// Follows RESP values through a byte stream fed in pieces, keeping only the framing.
#[derive(Debug, Clone, Default)]
struct Scanner {
    /// Elements still expected by each open aggregate, outermost first; the high bit marks
    /// an attribute (`|`), which precedes a value rather than being one.
    stack: heapless::Vec<u64, DEPTH>,
    /// Bytes of a bulk string (and its CRLF) still to come.
    skip: u64,
    /// The first bytes of a header line cut between two calls; `long` when more were
    /// dropped; `last`, its last byte so far.
    line: heapless::Vec<u8, LINE_CAP>,
    long: bool,
    last: u8,
    /// The value being scanned: its type byte, 0 between values.
    kind: u8,
    /// The bulk string being passed is kept in `word` (first element of a top-level
    /// array, or a blob error).
    keep: bool,
    /// The next element ending at depth 1 is the first of the top-level array.
    first: bool,
    word: Word,
}

const ATTR: u64 = 1 << 63;

impl Scanner {
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Scans `bytes`; `done` gets each top-level value that ends in them.
    fn feed(&mut self, mut bytes: &[u8], done: &mut impl FnMut(Value)) -> Result<(), Desync> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                if self.keep {
                    // The CRLF (the last two bytes of `skip`) is not part of the string.
                    let text = self.skip.saturating_sub(2).min(n as u64) as usize;
                    for &c in &bytes[..text] {
                        if c == b' ' || c == b'\r' {
                            self.keep = false;
                            break;
                        }
                        if self.word.push(c.to_ascii_uppercase() as char).is_err() {
                            self.keep = false;
                            break;
                        }
                    }
                }
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.keep = false;
                    self.element_ended(done);
                }
                continue;
            }
            let Some(nl) = bytes.iter().position(|&c| c == b'\n') else {
                self.keep_line(bytes);
                return Ok(());
            };
            let (head, rest) = bytes.split_at(nl + 1);
            bytes = rest;
            if self.line.is_empty() && !self.long {
                let [t, body @ .., b'\r', b'\n'] = head else {
                    return Err(Desync);
                };
                self.header(*t, body, false, done)?;
            } else {
                // The line began in an earlier call.
                self.keep_line(&head[..nl]);
                let line = core::mem::take(&mut self.line);
                let long = core::mem::take(&mut self.long);
                if self.last != b'\r' {
                    return Err(Desync);
                }
                let body = if long {
                    &line[..]
                } else {
                    &line[..line.len() - 1]
                };
                let [t, body @ ..] = body else {
                    return Err(Desync);
                };
                self.header(*t, body, long, done)?;
            }
        }
        Ok(())
    }

    /// Keeps the first bytes of a header line cut between calls (enough for a length or
    /// an error's first word), and its last byte.
    fn keep_line(&mut self, bytes: &[u8]) {
        for &c in bytes {
            if self.line.push(c).is_err() {
                self.long = true;
            }
            self.last = c;
        }
    }

    /// `n` bytes the capture did not hand over: fine inside a bulk string, lost otherwise.
    fn gap(&mut self, n: u64, done: &mut impl FnMut(Value)) -> Result<(), Desync> {
        if n == 0 {
            return Ok(());
        }
        if !self.line.is_empty() || self.long || self.skip < n {
            return Err(Desync);
        }
        self.skip -= n;
        if self.skip == 0 {
            self.keep = false;
            self.element_ended(done);
        }
        Ok(())
    }

    /// One header line: its type byte and text (only the first bytes when `long`).
    fn header(
        &mut self,
        t: u8,
        body: &[u8],
        long: bool,
        done: &mut impl FnMut(Value),
    ) -> Result<(), Desync> {
        let top = self.kind == 0;
        if top {
            self.kind = t;
            self.word.clear();
        }
        if long && !matches!(t, b'+' | b'-' | b',' | b'(') {
            // A length or a number longer than any real one.
            return Err(Desync);
        }
        match t {
            b'+' | b':' | b',' | b'#' | b'_' | b'(' => self.element_ended(done),
            b'-' => {
                if top {
                    for &c in body.iter().take_while(|&&c| c != b' ') {
                        if self.word.push(c as char).is_err() {
                            break;
                        }
                    }
                }
                self.element_ended(done);
            }
            b'$' | b'=' | b'!' => match length(body)? {
                None => self.element_ended(done),
                Some(n) => {
                    self.keep = (self.first && self.stack.len() == 1) || (top && t == b'!');
                    self.skip = n + 2;
                }
            },
            b'*' | b'%' | b'~' | b'>' | b'|' => match length(body)? {
                None | Some(0) => self.element_ended(done),
                Some(n) => {
                    let n = if matches!(t, b'%' | b'|') { n * 2 } else { n };
                    let entry = if t == b'|' { n | ATTR } else { n };
                    if top && t != b'|' {
                        self.first = true;
                    }
                    self.stack.push(entry).map_err(|_| Desync)?;
                }
            },
            _ => return Err(Desync),
        }
        Ok(())
    }

    /// An element (or a whole top-level value) ended.
    fn element_ended(&mut self, done: &mut impl FnMut(Value)) {
        loop {
            let depth = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                let kind = core::mem::take(&mut self.kind);
                done(Value {
                    kind,
                    word: core::mem::take(&mut self.word),
                });
                self.first = false;
                return;
            };
            *top -= 1;
            if depth == 1 {
                self.first = false;
            }
            if *top & !ATTR != 0 {
                return;
            }
            let attr = *top & ATTR != 0;
            self.stack.pop();
            if attr {
                // An attribute came first; the value it describes follows.
                if self.stack.is_empty() {
                    self.kind = 0;
                }
                return;
            }
        }
    }
}

/// The length of a `$`/`*` header: `None` for -1 (null), an error for anything else.
fn length(body: &[u8]) -> Result<Option<u64>, Desync> {
    if body == b"-1" {
        return Ok(None);
    }
    if body.is_empty() || body.len() > 10 || !body.iter().all(u8::is_ascii_digit) {
        return Err(Desync);
    }
    Ok(Some(
        body.iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0')),
    ))
}

/// Whether a call's first bytes start a RESP command (an array of bulk strings), as the
/// kernel decides it.
pub fn starts_command(b: &[u8]) -> bool {
    match b {
        [b'*', d, b'\r', b'\n', b'$', ..] => d.is_ascii_digit(),
        [b'*', d, e, b'\r', b'\n', b'$', ..] => d.is_ascii_digit() && e.is_ascii_digit(),
        _ => false,
    }
}

/// One descriptor that carried Redis.
#[derive(Debug, Clone)]
struct Conn {
    ends: Ends,
    commands: Scanner,
    replies: Scanner,
    waiting: heapless::Deque<Begun, PIPELINE_DEPTH>,
    /// The framing was lost: replies are ignored until a call sends a command again.
    lost: bool,
}

impl Followed for Conn {
    fn ends(&self) -> &Ends {
        &self.ends
    }
    fn protocol(&self) -> Protocol {
        REDIS
    }
    fn unfinished(&mut self) -> Option<(Begun, Word)> {
        self.waiting.pop_front().map(|b| (b, Word::new()))
    }
}

/// Tracks Redis exchanges and aggregates the client metric; the spans go to the HTTP
/// tracker's queue (one queue, one sampler, one id generator for every protocol).
pub struct RedisTracker {
    t: Table<Conn>,
}

/// The client duration histogram of a new attribute set.
pub(crate) fn histogram() -> Histogram {
    Histogram::new(&DURATION_BOUNDS)
}

crate::l7::table_tracker!(RedisTracker, "Redis");

impl RedisTracker {
    /// Handles what one read or write moved on a Redis descriptor; finished spans go to
    /// the queue of `spans`.
    pub fn on_data(
        &mut self,
        r: &DataRecord<'_>,
        spans: &mut HttpTracker,
        drops: &mut AgentCounters,
    ) {
        let key = conn_key(r.task.tgid, r.fd);
        let starts = starts_command(r.data);
        if self.t.conns.get(&key).is_some_and(|c| c.ends.stale(r)) {
            self.t.end_all(key, r.ts_ns, spans, drops);
        }
        if self.t.conns.get(&key).is_none() {
            if !starts {
                return;
            }
            let side = if r.ingress {
                Side::Server
            } else {
                Side::Client
            };
            let conn = Conn {
                ends: Ends::of(r, side),
                commands: Scanner::default(),
                replies: Scanner::default(),
                waiting: heapless::Deque::new(),
                lost: false,
            };
            if !self.t.open(key, conn, drops) {
                return;
            }
        }
        let Some(conn) = self.t.conns.get_mut(&key) else {
            return;
        };
        let ends = conn.ends;
        let gap = u64::from(r.len).saturating_sub(r.data.len() as u64);
        if (ends.side == Side::Server) == r.ingress {
            // Commands.
            if conn.lost {
                if !starts {
                    return;
                }
                conn.lost = false;
                conn.commands.reset();
                conn.replies.reset();
            }
            let Conn {
                commands, waiting, ..
            } = conn;
            let mut sent = |v: Value| {
                if v.kind != b'*' {
                    return;
                }
                let calls = ends.side == Side::Client;
                let b = Begun::new(v.word, Path::new(), r.ts_ns, calls, r.task.tid, spans);
                if waiting.push_back(b).is_err() {
                    drops.drop(DropReason::DbPipelineFull, 1);
                }
            };
            let scanned = commands
                .feed(r.data, &mut sent)
                .and_then(|()| commands.gap(gap, &mut sent));
            if scanned.is_err() {
                Self::desync(conn, drops);
            }
            return;
        }
        // Replies.
        if conn.lost {
            return;
        }
        let mut answered: heapless::Vec<(Begun, Word), PIPELINE_DEPTH> = heapless::Vec::new();
        let Conn {
            replies, waiting, ..
        } = conn;
        let mut replied = |v: Value| {
            if v.kind == b'>' {
                // A RESP3 push (pub/sub): no command waits for it.
                return;
            }
            // Without a waiting command: a reply to a command sent before the agent
            // started, or one already counted as db_pipeline_full.
            if let Some(w) = waiting.pop_front() {
                let error = if matches!(v.kind, b'-' | b'!') {
                    v.word
                } else {
                    Word::new()
                };
                // At most PIPELINE_DEPTH commands wait: there is room.
                let _ = answered.push((w, error));
            }
        };
        let scanned = replies
            .feed(r.data, &mut replied)
            .and_then(|()| replies.gap(gap, &mut replied));
        if scanned.is_err() {
            Self::desync(conn, drops);
        }
        for (b, error) in answered {
            self.t
                .finish(REDIS, &ends, b, r.ts_ns, error, None, spans, drops);
        }
    }

    fn desync(conn: &mut Conn, drops: &mut AgentCounters) {
        drops.drop(DropReason::ProtocolDesync, 1 + conn.waiting.len() as u64);
        conn.waiting.clear();
        conn.commands.reset();
        conn.replies.reset();
        conn.lost = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Broken, HttpLimits, RootSampling, Sampling};
    use crate::record::IpAddr;
    use crate::record::Task;
    use alloc::vec::Vec;

    // Recorded from redis-cli 7.0.15 and redis-server 7.0.15 (Debian 12) on loopback.
    const CLI_SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$11\r\nhello world\r\n";
    /// SET k v, GET k, GET nokey, INCR k, RPUSH l a b, LRANGE l 0 -1, LPUSH k x.
    const RESP2: &[u8] = b"+OK\r\n$1\r\nv\r\n$-1\r\n-ERR value is not an integer or out of range\r\n:2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    /// HELLO 3, HGETALL nohash, HSET h f v, HGETALL h, SMEMBERS nos, GET nokey.
    const RESP3: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n%0\r\n:1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n~0\r\n_\r\n";
    /// CLIENT TRACKING on, GET k, SET k w: the invalidation arrives as a push.
    const PUSH: &[u8] = b"+OK\r\n$1\r\nv\r\n+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";

    fn scan(pieces: &[&[u8]]) -> Result<Vec<(char, Word)>, Desync> {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        for p in pieces {
            s.feed(p, &mut |v: Value| out.push((v.kind as char, v.word)))?;
        }
        Ok(out)
    }

    fn w(s: &str) -> Word {
        Word::try_from(s).unwrap()
    }

    #[test]
    fn commands_and_replies_recorded_from_redis() {
        assert!(starts_command(CLI_SET));
        assert!(!starts_command(b"+OK\r\n"));
        assert_eq!(scan(&[CLI_SET]).unwrap(), [('*', w("SET"))]);
        let kinds: Vec<_> = scan(&[RESP2]).unwrap();
        let e = Word::new();
        assert_eq!(
            kinds,
            [
                ('+', e.clone()),
                ('$', e.clone()),
                ('$', e.clone()),
                ('-', w("ERR")),
                (':', e.clone()),
                ('*', w("A")),
                ('-', w("WRONGTYPE")),
            ]
        );
        let k: Vec<char> = scan(&[RESP3]).unwrap().iter().map(|v| v.0).collect();
        assert_eq!(k, ['%', '%', ':', '%', '~', '_']);
        let k: Vec<char> = scan(&[PUSH]).unwrap().iter().map(|v| v.0).collect();
        assert_eq!(k, ['+', '$', '+', '>']);
    }

    #[test]
    fn any_cut_gives_the_same_values() {
        for stream in [CLI_SET, RESP2, RESP3, PUSH] {
            let whole = scan(&[stream]).unwrap();
            for at in 0..=stream.len() {
                let (a, b) = stream.split_at(at);
                assert_eq!(scan(&[a, b]).unwrap(), whole, "cut at {at}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(scan(&bytes).unwrap(), whole);
        }
    }

    #[test]
    fn bytes_not_captured_inside_a_string_are_passed_over() {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        let mut done = |v: Value| out.push(v.kind);
        s.feed(b"$100000\r\nvvvv", &mut done).unwrap();
        s.gap(99_000, &mut done).unwrap();
        s.feed(&[b'v'; 996], &mut done).unwrap();
        s.gap(2, &mut done).unwrap();
        s.feed(b"+OK\r\n", &mut done).unwrap();
        assert_eq!(out, [b'$', b'+']);
        // A gap past the string's end, or in a header, cannot be followed.
        let mut s = Scanner::default();
        let mut none = |_: Value| {};
        s.feed(b"$10\r\nabc", &mut none).unwrap();
        assert_eq!(s.gap(20, &mut none), Err(Desync));
        let mut s = Scanner::default();
        s.feed(b"*2\r\n", &mut none).unwrap();
        assert_eq!(s.gap(1, &mut none), Err(Desync));
    }

    #[test]
    fn what_is_not_resp_or_nests_too_deep_is_refused() {
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\n"]), Err(Desync));
        assert_eq!(scan(&[b"$abc\r\n"]), Err(Desync));
        assert_eq!(scan(&[b"+OK\n"]), Err(Desync));
        assert_eq!(
            scan(&[b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"]),
            Err(Desync)
        );
        assert_eq!(scan(&[&[b'$'; 64], b"\r\n"]), Err(Desync));
        // A long error cut between calls keeps its first word.
        let e = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        for at in 1..e.len() {
            let (a, b) = e.split_at(at);
            assert_eq!(
                scan(&[a, b]).unwrap(),
                [('-', w("WRONGTYPE"))],
                "cut at {at}"
            );
        }
        // RESP3 attributes precede the value they describe; nulls end at once.
        assert_eq!(
            scan(&[b"|1\r\n+ttl\r\n:3\r\n$1\r\nx\r\n*-1\r\n"]).unwrap(),
            [('$', Word::new()), ('*', Word::new())]
        );
    }

    fn task(pid: u32) -> Task {
        let mut comm = [0u8; 16];
        comm[..9].copy_from_slice(b"redis-cli");
        Task {
            tgid: pid,
            tid: pid,
            comm,
        }
    }

    fn rec(ts: u64, ingress: bool, data: &[u8], len: u32) -> DataRecord<'_> {
        DataRecord {
            ts_ns: ts,
            task: task(10),
            fd: 3,
            ingress,
            len,
            sock: 1,
            local: IpAddr::default(),
            remote: IpAddr::default(),
            local_port: 40000,
            remote_port: 6379,
            tls: false,
            protocol: crate::record::Protocol::Redis,
            data,
        }
    }

    fn trackers() -> (RedisTracker, HttpTracker, AgentCounters) {
        let limits = HttpLimits {
            connections: 4,
            exchanges: 4,
            spans: 64,
            series_per_metric: 16,
        };
        let sampling = Sampling {
            parent_based: true,
            root: RootSampling::AlwaysOn,
        };
        (
            RedisTracker::new(4),
            HttpTracker::new(limits, 1, sampling),
            AgentCounters::default(),
        )
    }

    #[test]
    fn a_pipeline_pairs_in_order_and_errors_carry_their_type() {
        let (mut t, mut h, mut c) = trackers();
        let cmds: Vec<u8> = [
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"[..],
            b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n",
            b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n",
        ]
        .concat();
        t.on_data(&rec(1_000, false, &cmds, cmds.len() as u32), &mut h, &mut c);
        let replies = b"+OK\r\n$1\r\nv\r\n-ERR value is not an integer or out of range\r\n";
        let (a, b) = replies.split_at(9);
        t.on_data(&rec(5_000, true, a, a.len() as u32), &mut h, &mut c);
        t.on_data(&rec(9_000, true, b, b.len() as u32), &mut h, &mut c);
        let spans: Vec<_> = h.spans().drain(..).collect();
        let got: Vec<(&str, u64, &str)> = spans
            .iter()
            .map(|s| {
                (
                    s.method.as_str(),
                    s.end_ns - s.start_ns,
                    s.db_error.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("SET", 4_000, ""),
                ("GET", 8_000, ""),
                ("INCR", 8_000, "ERR")
            ]
        );
        assert!(
            spans
                .iter()
                .all(|s| s.side == Side::Client && s.protocol == crate::record::Protocol::Redis)
        );
        let mut e = crate::http::ErrorType::new();
        assert!(spans[2].error_type(&mut e));
        assert_eq!(e, "ERR");
        let mut name = heapless::String::new();
        spans[1].name(&mut name);
        assert_eq!(name, "GET");
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 0);
    }

    #[test]
    fn a_large_reply_a_close_and_a_lost_frame() {
        let (mut t, mut h, mut c) = trackers();
        t.on_data(
            &rec(1, false, CLI_SET, CLI_SET.len() as u32),
            &mut h,
            &mut c,
        );
        // A 100 kB reply of which the capture kept 512 bytes per read.
        let head = [&b"$100000\r\n"[..], &[b'v'; 503]].concat();
        t.on_data(&rec(2, true, &head, 65_536), &mut h, &mut c);
        assert!(h.spans().is_empty());
        t.on_data(
            &rec(3, true, &[b'v'; 512], 100_009 + 2 - 65_536),
            &mut h,
            &mut c,
        );
        assert_eq!(h.spans().len(), 1);
        // A command left waiting at close ends broken.
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        t.on_data(&rec(4, false, get, get.len() as u32), &mut h, &mut c);
        t.on_close(
            &CloseRecord {
                ts_ns: 9,
                task: task(10),
                fd: 3,
            },
            &mut h,
            &mut c,
        );
        let last = h.spans().pop_back().unwrap();
        assert_eq!(last.broken, Some(Broken::Closed));
        let mut e = crate::http::ErrorType::new();
        assert!(last.error_type(&mut e));
        assert_eq!(e, "connection_closed", "the whole name fits");
        assert_eq!(t.connections(), 0);
        // Replies whose framing was cut off: the waiting command is counted, not paired.
        t.on_data(&rec(10, false, get, get.len() as u32), &mut h, &mut c);
        t.on_data(&rec(11, true, b"*3\r\n$1\r\na", 9_000), &mut h, &mut c);
        assert_eq!(c.dropped(DropReason::ProtocolDesync), 2);
        t.on_data(&rec(12, true, b"+OK\r\n", 5), &mut h, &mut c);
        assert_eq!(h.spans().len(), 1, "nothing paired while lost");
        // The next command starts over.
        t.on_data(&rec(13, false, get, get.len() as u32), &mut h, &mut c);
        t.on_data(&rec(14, true, b"$-1\r\n", 5), &mut h, &mut c);
        assert_eq!(h.spans().len(), 2);
    }
}
