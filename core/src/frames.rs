//! Length-prefixed messages followed through a byte stream fed in pieces: the framing of the
//! PostgreSQL (type byte, big-endian length), MySQL (little-endian length, sequence byte),
//! AMQP 0-9-1 (type, channel, big-endian size, frame end) and Kafka (big-endian size) wire
//! protocols. Only the first [`KEEP`] bytes of each message's body are kept, enough for
//! a statement's text, an error's code or a startup's parameters; the rest, and whatever the
//! capture cut off inside a body, is passed over.

/// Bytes of a message body kept.
pub const KEEP: usize = 192;

/// How messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A PostgreSQL startup-phase message: a 4-byte length (itself included), no type.
    /// After a startup message (protocol 3) the framing becomes [`Framing::PgTyped`]; after
    /// an SSL or GSSAPI request it stays.
    PgStartup,
    /// A PostgreSQL message: a type byte, then a 4-byte length (itself included).
    PgTyped,
    /// A MySQL packet: a 3-byte little-endian length (itself excluded), a sequence byte.
    Mysql,
    /// AMQP 0-9-1's protocol header (`AMQP\0\0\x09\x01`), then [`Framing::Amqp`].
    AmqpHeader,
    /// An AMQP frame: a type byte, a 2-byte channel, a 4-byte size, the payload, `0xCE`
    /// (the body of a [`Msg`] is the payload and that last byte).
    Amqp,
    /// A Kafka request or response: a 4-byte big-endian size, then that many bytes.
    Kafka,
}

/// The framing could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desync;

/// A message that ended.
#[derive(Debug)]
pub struct Msg<'a> {
    /// PostgreSQL: the type byte (0 for a startup message); MySQL: the sequence byte.
    pub tag: u8,
    /// The body's first bytes.
    pub body: &'a [u8],
    /// `body` is the whole body.
    pub whole: bool,
    /// MySQL: this packet continues the previous one (which had the largest length).
    pub continued: bool,
    /// AMQP: the frame's channel.
    pub channel: u16,
}

/// The requests a PostgreSQL client may send before its startup message.
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;

const MYSQL_MAX: u32 = 0x00ff_ffff;
/// Largest AMQP frame accepted (RabbitMQ's default `frame_max` is 128 KiB; 512 MiB is the
/// most a broker lets a message be).
const AMQP_MAX: u32 = 1 << 29;
/// Largest Kafka message accepted (a client's `fetch.max.bytes` defaults to 50 MiB).
const KAFKA_MAX: u32 = 1 << 30;
/// Longest PostgreSQL message accepted (the server's own limit is 1 GiB).
const PG_MAX: u32 = 1 << 30;

#[derive(Debug, Clone)]
/// Keeps the first `N` bytes of each message body ([`KEEP`] unless a protocol needs more).
pub struct Framer<const N: usize = KEEP> {
    framing: Framing,
    head: [u8; 8],
    have: u8,
    /// Body bytes still to come once the header is complete.
    left: u32,
    body: heapless::Vec<u8, N>,
    /// Some body bytes were not kept.
    cut: bool,
    /// MySQL: the packet in progress continues the previous one; the next will continue
    /// this one.
    continued: bool,
    continues: bool,
}

impl<const N: usize> Framer<N> {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            head: [0; 8],
            have: 0,
            left: 0,
            body: heapless::Vec::new(),
            cut: false,
            continued: false,
            continues: false,
        }
    }

    fn head_len(&self) -> usize {
        match self.framing {
            Framing::PgStartup | Framing::Mysql | Framing::Kafka => 4,
            Framing::PgTyped => 5,
            Framing::Amqp => 7,
            Framing::AmqpHeader => 8,
        }
    }

    /// Between messages (no header or body bytes pending).
    pub fn between(&self) -> bool {
        self.have == 0
    }

    /// Scans `bytes`; `done` gets each message that ends in them.
    pub fn feed(&mut self, mut bytes: &[u8], done: &mut impl FnMut(Msg<'_>)) -> Result<(), Desync> {
        while !bytes.is_empty() {
            let need = self.head_len();
            if usize::from(self.have) < need {
                let n = (need - usize::from(self.have)).min(bytes.len());
                let at = usize::from(self.have);
                self.head[at..at + n].copy_from_slice(&bytes[..n]);
                self.have += n as u8;
                bytes = &bytes[n..];
                if usize::from(self.have) < need {
                    return Ok(());
                }
                self.left = self.body_len()?;
                self.body.clear();
                self.cut = false;
                if self.left == 0 {
                    self.ended(done);
                }
                continue;
            }
            let n = (self.left as usize).min(bytes.len());
            let room = N - self.body.len();
            let keep = n.min(room);
            // `keep` fits: it is at most the room left.
            let _ = self.body.extend_from_slice(&bytes[..keep]);
            if keep < n {
                self.cut = true;
            }
            self.left -= n as u32;
            bytes = &bytes[n..];
            if self.left == 0 {
                self.ended(done);
            }
        }
        Ok(())
    }

    /// `n` bytes the capture did not hand over: fine inside a body, lost otherwise.
    pub fn gap(&mut self, n: u64, done: &mut impl FnMut(Msg<'_>)) -> Result<(), Desync> {
        if n == 0 {
            return Ok(());
        }
        if usize::from(self.have) < self.head_len() || u64::from(self.left) < n {
            return Err(Desync);
        }
        self.left -= n as u32;
        self.cut = true;
        if self.left == 0 {
            self.ended(done);
        }
        Ok(())
    }

    fn body_len(&mut self) -> Result<u32, Desync> {
        let h = self.head;
        match self.framing {
            Framing::PgStartup => {
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if !(8..=10_000).contains(&len) {
                    return Err(Desync);
                }
                Ok(len - 4)
            }
            Framing::PgTyped => {
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
                if !h[0].is_ascii_alphanumeric() || !(4..=PG_MAX).contains(&len) {
                    return Err(Desync);
                }
                Ok(len - 4)
            }
            Framing::Mysql => {
                let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
                self.continued = self.continues;
                self.continues = len == MYSQL_MAX;
                Ok(len)
            }
            Framing::Kafka => {
                let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                // A correlation id at least; a broker's default limit is 100 MiB.
                if !(4..=KAFKA_MAX).contains(&size) {
                    return Err(Desync);
                }
                Ok(size)
            }
            Framing::AmqpHeader => {
                if h[..4] != *b"AMQP" {
                    return Err(Desync);
                }
                Ok(0)
            }
            Framing::Amqp => {
                let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
                // Method, content header, body and heartbeat frames.
                if !matches!(h[0], 1 | 2 | 3 | 8) || size > AMQP_MAX {
                    return Err(Desync);
                }
                Ok(size + 1)
            }
        }
    }

    fn ended(&mut self, done: &mut impl FnMut(Msg<'_>)) {
        let tag = match self.framing {
            Framing::PgStartup | Framing::Kafka => 0,
            Framing::PgTyped => self.head[0],
            Framing::Mysql => self.head[3],
            Framing::Amqp | Framing::AmqpHeader => self.head[0],
        };
        if self.framing == Framing::AmqpHeader {
            self.framing = Framing::Amqp;
        }
        if self.framing == Framing::PgStartup {
            let code = self
                .body
                .get(..4)
                .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            if code != PG_SSL_REQUEST && code != PG_GSSENC_REQUEST {
                self.framing = Framing::PgTyped;
            }
        }
        self.have = 0;
        done(Msg {
            tag,
            body: &self.body,
            whole: !self.cut,
            continued: self.continued,
            channel: u16::from_be_bytes([self.head[1], self.head[2]]),
        });
    }
}

/// A NUL-terminated string at the start of `b` (all of `b` when cut before its end) and
/// what follows it.
pub fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn run(framing: Framing, pieces: &[&[u8]]) -> Result<Vec<(u8, Vec<u8>, bool)>, Desync> {
        let mut f: Framer = Framer::new(framing);
        let mut out = Vec::new();
        for p in pieces {
            f.feed(p, &mut |m: Msg<'_>| {
                out.push((m.tag, m.body.to_vec(), m.whole))
            })?;
        }
        Ok(out)
    }

    #[test]
    fn postgres_messages_survive_any_cut() {
        let stream = b"\0\0\0\x08\x04\xd2\x16\x2f\0\0\0\x0e\0\x03\0\0user\0\0Q\0\0\0\x0dSELECT 1\0X\0\0\0\x04";
        let whole = run(Framing::PgStartup, &[stream]).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[2], (b'Q', b"SELECT 1\0".to_vec(), true));
        assert_eq!(whole[3], (b'X', Vec::new(), true));
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(
                run(Framing::PgStartup, &[a, b]).unwrap(),
                whole,
                "cut at {at}"
            );
        }
        assert_eq!(
            run(Framing::PgTyped, &[b"\x01\0\0\0\x04"]).unwrap_err(),
            Desync
        );
        assert_eq!(
            run(Framing::PgTyped, &[b"Q\0\0\0\x03"]).unwrap_err(),
            Desync
        );
    }

    #[test]
    fn long_bodies_keep_their_start_and_gaps_pass_inside_them() {
        let mut f: Framer = Framer::new(Framing::Mysql);
        let mut out = Vec::new();
        let mut done = |m: Msg<'_>| out.push((m.body.len(), m.whole, m.body.first().copied()));
        // A 1000-byte COM_QUERY of which 300 bytes were captured.
        f.feed(&[0xe8, 0x03, 0, 0, 3], &mut done).unwrap();
        f.feed(&[b'x'; 299], &mut done).unwrap();
        f.gap(700, &mut done).unwrap();
        f.feed(&[1, 0, 0, 1, 0xfe], &mut done).unwrap();
        assert_eq!(out, [(KEEP, false, Some(3)), (1, true, Some(0xfe))]);
        let mut f: Framer = Framer::new(Framing::Mysql);
        let mut none = |_: Msg<'_>| {};
        f.feed(&[5, 0], &mut none).unwrap();
        assert_eq!(f.gap(1, &mut none), Err(Desync));
    }
}
