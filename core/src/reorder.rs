//! Restores time order across per-CPU perf buffers.
//!
//! Each perf buffer is in time order, but the agent reads them one after the other: a
//! connection established by a soft interrupt on CPU 1 and connected from a task on CPU 0
//! would reach the tracker in whatever order the buffers happen to be read. A BPF ring
//! buffer is one queue for all CPUs and needs none of this.
//!
//! The agent stages every record it reads in one pass over the buffers, then releases, in
//! timestamp order, those stamped no later than the time the pass started (the
//! *watermark*). That is enough for causality: a record stamped before the pass started was
//! written after every record of an event that caused it, and those were already in their
//! buffers when the pass started, so the pass saw them too. Records stamped later wait for
//! the next pass. On shutdown everything is released.
//!
//! The staging area is sized once. If a pass reads more than it holds, the caller releases
//! everything staged so far and goes on: order is then kept within each part only (a
//! degradation under overload, not a loss).

use alloc::vec::Vec;

/// The timestamp's offset in a record header (see `telegen_common::EventHeader`).
const TS_AT: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Entry {
    ts: u64,
    /// Offset in the arena; arrival order among entries of equal `ts`.
    at: u32,
    len: u32,
}

/// Fixed-capacity staging area for records read from per-CPU buffers.
pub struct Reorder {
    arena: Vec<u8>,
    index: Vec<Entry>,
    bytes_cap: usize,
    index_cap: usize,
}

/// [`Reorder::push`] found no room for the record.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Reorder {
    /// Room for `bytes` of records, and for `records` of them at most.
    pub fn with_capacity(bytes: usize, records: usize) -> Self {
        Self {
            arena: Vec::with_capacity(bytes),
            index: Vec::with_capacity(records),
            bytes_cap: bytes,
            index_cap: records,
        }
    }

    /// Records staged and not yet released.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Memory this holds, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes_cap + self.index_cap * core::mem::size_of::<Entry>()
    }

    /// Stages one record. A record too short to carry a timestamp sorts first (the decoder
    /// rejects it later and counts it).
    pub fn push(&mut self, record: &[u8]) -> Result<(), Full> {
        if self.index.len() == self.index_cap || self.arena.len() + record.len() > self.bytes_cap {
            return Err(Full);
        }
        let ts = match record.get(TS_AT..TS_AT + 8) {
            Some(b) => u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            None => 0,
        };
        let at = self.arena.len() as u32;
        self.arena.extend_from_slice(record);
        self.index.push(Entry {
            ts,
            at,
            len: record.len() as u32,
        });
        Ok(())
    }

    /// Hands every staged record stamped at or before `watermark` to `f`, oldest first (ties
    /// in arrival order), and keeps the others. Allocates nothing.
    pub fn release(&mut self, watermark: u64, mut f: impl FnMut(&[u8])) {
        self.index.sort_unstable_by_key(|e| (e.ts, e.at));
        let split = self.index.partition_point(|e| e.ts <= watermark);
        for e in &self.index[..split] {
            f(&self.arena[e.at as usize..(e.at + e.len) as usize]);
        }
        // Keep the later records: move them to the front of the arena in arrival order (a
        // destination never passes its source, so copying in that order is safe).
        self.index.drain(..split);
        self.index.sort_unstable_by_key(|e| e.at);
        let mut to = 0u32;
        for e in self.index.iter_mut() {
            let from = e.at as usize;
            self.arena
                .copy_within(from..from + e.len as usize, to as usize);
            e.at = to;
            to += e.len;
        }
        self.arena.truncate(to as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn rec(ts: u64, tag: u8) -> Vec<u8> {
        let mut r = vec![tag; 40];
        r[TS_AT..TS_AT + 8].copy_from_slice(&ts.to_ne_bytes());
        r
    }

    fn released(r: &mut Reorder, watermark: u64) -> Vec<(u64, u8)> {
        let mut out = Vec::new();
        r.release(watermark, |b| {
            let ts = u64::from_ne_bytes(b[TS_AT..TS_AT + 8].try_into().unwrap());
            out.push((ts, b[0]));
        });
        out
    }

    #[test]
    fn merges_buffers_read_one_after_the_other() {
        let mut r = Reorder::with_capacity(1024, 16);
        // CPU 1's buffer read first, then CPU 0's.
        for (ts, tag) in [(20, b'b'), (40, b'd'), (10, b'a'), (30, b'c'), (30, b'e')] {
            r.push(&rec(ts, tag)).unwrap();
        }
        assert_eq!(
            released(&mut r, 100),
            [(10, b'a'), (20, b'b'), (30, b'c'), (30, b'e'), (40, b'd')]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn records_after_the_watermark_wait_for_the_next_pass() {
        let mut r = Reorder::with_capacity(1024, 16);
        for (ts, tag) in [(50, b'x'), (10, b'a'), (60, b'y'), (20, b'b')] {
            r.push(&rec(ts, tag)).unwrap();
        }
        assert_eq!(released(&mut r, 30), [(10, b'a'), (20, b'b')]);
        assert_eq!(r.len(), 2);
        // The next pass finds a record that belongs between the held ones.
        r.push(&rec(55, b'm')).unwrap();
        assert_eq!(released(&mut r, 100), [(50, b'x'), (55, b'm'), (60, b'y')]);
        assert!(r.is_empty());
    }

    #[test]
    fn is_bounded_and_takes_odd_records() {
        let mut r = Reorder::with_capacity(100, 3);
        r.push(&rec(5, b'a')).unwrap();
        r.push(&rec(4, b'b')).unwrap();
        assert_eq!(r.push(&rec(3, b'c')), Err(Full), "bytes");
        r.push(&[1, 2, 3]).unwrap();
        assert_eq!(r.push(&[]), Err(Full), "records");
        let mut lens = Vec::new();
        r.release(u64::MAX, |b| lens.push(b.len()));
        assert_eq!(lens, [3, 40, 40], "the short record sorts first");
        r.push(&rec(3, b'c')).unwrap();
        assert_eq!(r.len(), 1);
    }
}
