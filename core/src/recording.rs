//! The format of a recording (`telegen --record FILE`): the kernel's records as the agent
//! read them, in the order it read them, for replay by benchmarks and tests.
//!
//! Layout: [`MAGIC`] (8 bytes), then per record its length as a little-endian u32 and its
//! bytes. Records keep the kernel's native layout, so a recording replays on a machine of the
//! same pointer width and byte order (every target here is little-endian).

/// The first 8 bytes of a recording: the name and the format's version.
pub const MAGIC: [u8; 8] = *b"TGREC\x01\0\0";

/// Why a recording cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingError {
    /// The file does not start with [`MAGIC`].
    NotARecording,
    /// A record's length runs past the end, at this byte offset (a torn last write).
    Truncated(usize),
}

impl core::fmt::Display for RecordingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotARecording => write!(f, "not a telegen recording (bad magic)"),
            Self::Truncated(at) => write!(f, "record at byte {at} is cut short"),
        }
    }
}

/// The records of `buf`, in order; a truncated tail ends the iteration with an error.
pub fn records(buf: &[u8]) -> Result<Records<'_>, RecordingError> {
    match buf.strip_prefix(&MAGIC[..]) {
        Some(rest) => Ok(Records {
            rest,
            at: MAGIC.len(),
        }),
        None => Err(RecordingError::NotARecording),
    }
}

/// The frame header to write before a record of `len` bytes.
pub fn frame(len: usize) -> [u8; 4] {
    (len as u32).to_le_bytes()
}

/// Byte range of a record's kernel timestamp (`EventHeader::ts_ns`, native byte order).
const TS: core::ops::Range<usize> = 16..24;

/// The kernel timestamp of a record, if it is long enough to have one.
pub fn timestamp(record: &[u8]) -> Option<u64> {
    let b: [u8; 8] = record.get(TS)?.try_into().ok()?;
    Some(u64::from_ne_bytes(b))
}

/// Moves a record's kernel timestamp `by` nanoseconds later (replaying a recording again
/// after its own end); a record too short for a header is left as it is.
pub fn shift_timestamp(record: &mut [u8], by: u64) {
    if let Some(ts) = timestamp(record)
        && let Some(b) = record.get_mut(TS)
    {
        b.copy_from_slice(&ts.wrapping_add(by).to_ne_bytes());
    }
}

/// Iterator over a recording's records.
pub struct Records<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, body)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(RecordingError::Truncated(self.at)));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if body.len() < len {
            self.rest = &[];
            return Some(Err(RecordingError::Truncated(self.at)));
        }
        let (record, rest) = body.split_at(len);
        self.rest = rest;
        self.at += 4 + len;
        Some(Ok(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn recording(records: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for r in records {
            out.extend_from_slice(&frame(r.len()));
            out.extend_from_slice(r);
        }
        out
    }

    #[test]
    fn reads_back_what_was_framed() {
        let buf = recording(&[b"abc", b"", b"defgh"]);
        let got: Vec<_> = records(&buf).unwrap().collect();
        assert_eq!(got, [Ok(&b"abc"[..]), Ok(&b""[..]), Ok(&b"defgh"[..])]);
    }

    #[test]
    fn timestamps_sit_where_the_header_puts_them() {
        let h = telegen_common::EventHeader {
            kind: 1,
            size: 40,
            tgid: 2,
            tid: 3,
            ts_ns: 1_000,
            comm: [0; telegen_common::COMM_LEN],
        };
        assert_eq!(
            core::mem::offset_of!(telegen_common::EventHeader, ts_ns),
            TS.start
        );
        let mut r = [0u8; 40];
        r[16..24].copy_from_slice(&h.ts_ns.to_ne_bytes());
        shift_timestamp(&mut r, 500);
        assert_eq!(timestamp(&r), Some(1_500));
        let mut short = [7u8; 10];
        shift_timestamp(&mut short, 500);
        assert_eq!(short, [7u8; 10]);
    }

    #[test]
    fn a_torn_tail_and_a_foreign_file_are_errors() {
        let mut buf = recording(&[b"abc", b"defgh"]);
        buf.truncate(buf.len() - 2);
        let got: Vec<_> = records(&buf).unwrap().collect();
        assert_eq!(got, [Ok(&b"abc"[..]), Err(RecordingError::Truncated(15))]);
        buf.truncate(17);
        let got: Vec<_> = records(&buf).unwrap().collect();
        assert_eq!(got, [Ok(&b"abc"[..]), Err(RecordingError::Truncated(15))]);
        assert!(matches!(
            records(b"GIF89a.."),
            Err(RecordingError::NotARecording)
        ));
        assert_eq!(records(&MAGIC).unwrap().count(), 0);
    }
}
