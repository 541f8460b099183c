//! The disk spool's record format, sans-IO: `io` owns the files, this module owns the bytes.
//!
//! A spool segment is a sequence of records, each a 16-byte header and a payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `TGS1` |
//! | 4..8 | items in the batch, u32 little endian |
//! | 8..12 | payload length, u32 little endian |
//! | 12..16 | CRC-32 (IEEE) of bytes 4..12 and the payload, little endian |
//!
//! The payload is the request body exactly as it goes on the wire. A reader that meets a
//! record whose checksum or magic is wrong skips forward to the next valid record (the bad
//! one is counted); a record cut short at the end of the file (a torn write) is reported so
//! that the file can be truncated there.

use std::ops::Range;

pub const MAGIC: [u8; 4] = *b"TGS1";
pub const HEADER_LEN: usize = 16;
/// Payloads larger than this are not believed (a corrupted length).
pub const MAX_PAYLOAD: usize = 256 << 20;

fn crc(items: u32, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&items.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The header of a record holding `payload`.
pub fn header(items: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let items = u32::try_from(items).unwrap_or(u32::MAX);
    let len = payload.len() as u32;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&items.to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&crc(items, len, payload).to_le_bytes());
    h
}

/// What lies at an offset of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// A valid record; the next one starts at `next`.
    Record {
        items: u64,
        payload: Range<usize>,
        next: usize,
    },
    /// Bytes that are not a valid record; the next valid record (or the end) is at `next`.
    Corrupt { next: usize },
    /// A record cut short by the end of the data: the file should end at the offset scanned.
    Torn,
    /// Nothing more.
    End,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Checks for a whole valid record at `at`.
fn record_at(buf: &[u8], at: usize) -> Result<Scan, bool> {
    let Some(h) = buf.get(at..at + HEADER_LEN) else {
        // A partial header: torn if what is there could start a record.
        let rest = &buf[at.min(buf.len())..];
        let plausible = MAGIC.starts_with(&rest[..rest.len().min(4)]);
        return Err(plausible);
    };
    if h[0..4] != MAGIC {
        return Err(false);
    }
    let items = u32_at(h, 4);
    let len = u32_at(h, 8) as usize;
    if len > MAX_PAYLOAD {
        return Err(false);
    }
    let start = at + HEADER_LEN;
    let Some(payload) = buf.get(start..start + len) else {
        return Err(true);
    };
    if crc(items, len as u32, payload) != u32_at(h, 12) {
        return Err(false);
    }
    Ok(Scan::Record {
        items: u64::from(items),
        payload: start..start + len,
        next: start + len,
    })
}

/// What is at `at` in `buf` (a whole segment as read from disk).
pub fn scan(buf: &[u8], at: usize) -> Scan {
    if at >= buf.len() {
        return Scan::End;
    }
    match record_at(buf, at) {
        Ok(r) => r,
        Err(torn) => {
            // Resynchronise on the next offset that holds a valid record.
            let mut next = at + 1;
            while next < buf.len() {
                if buf[next..].starts_with(&MAGIC) && record_at(buf, next).is_ok() {
                    return Scan::Corrupt { next };
                }
                next += 1;
            }
            if torn {
                Scan::Torn
            } else {
                Scan::Corrupt { next: buf.len() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(items: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = header(items, payload).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn all(buf: &[u8]) -> Vec<Scan> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let s = scan(buf, at);
            at = match &s {
                Scan::Record { next, .. } | Scan::Corrupt { next } => *next,
                Scan::Torn | Scan::End => {
                    out.push(s);
                    return out;
                }
            };
            out.push(s);
        }
    }

    #[test]
    fn reads_records_back() {
        let mut buf = record(3, b"abc");
        buf.extend(record(1, b""));
        let s = all(&buf);
        assert_eq!(
            s[0],
            Scan::Record {
                items: 3,
                payload: 16..19,
                next: 19
            }
        );
        assert_eq!(
            s[1],
            Scan::Record {
                items: 1,
                payload: 35..35,
                next: 35
            }
        );
        assert_eq!(s[2], Scan::End);
    }

    #[test]
    fn skips_a_flipped_record_and_keeps_the_next() {
        let mut buf = record(3, b"first");
        let second = buf.len();
        buf.extend(record(4, b"second"));
        buf.extend(record(5, b"third"));
        buf[second + HEADER_LEN + 2] ^= 0x40;
        let s = all(&buf);
        assert!(matches!(s[0], Scan::Record { items: 3, .. }));
        assert!(matches!(s[1], Scan::Corrupt { .. }));
        assert!(matches!(s[2], Scan::Record { items: 5, .. }), "{s:?}");
        // A flipped length is caught by the checksum too.
        let mut buf = record(3, b"first");
        buf.extend(record(4, b"second"));
        buf[9] ^= 0x01;
        let s = all(&buf);
        assert!(matches!(s[0], Scan::Corrupt { next: 21 }), "{s:?}");
        assert!(matches!(s[1], Scan::Record { items: 4, .. }));
    }

    #[test]
    fn a_torn_tail_is_reported() {
        let mut buf = record(3, b"whole");
        let full = record(9, b"cut short");
        buf.extend_from_slice(&full[..full.len() - 3]);
        let s = all(&buf);
        assert!(matches!(s[0], Scan::Record { items: 3, .. }));
        assert_eq!(s[1], Scan::Torn);
        let buf = record(3, b"whole");
        for cut in 1..buf.len() {
            assert_eq!(all(&buf[..cut]), vec![Scan::Torn], "cut at {cut}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 1u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x.is_multiple_of(7) { b'T' } else { x as u8 }
                })
                .collect();
            let _ = all(&buf);
        }
    }
}
