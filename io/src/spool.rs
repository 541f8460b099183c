//! The disk spool: batches that cannot be sent wait here, across restarts.
//!
//! Segments `NNNNNNNNNNNNNNNN.seg` in the spool directory hold records in the format of
//! `telegen_export::spool`; a new segment starts when the current one passes a quarter of the
//! size cap. `cursor` holds the position of the oldest record not yet delivered (segment and
//! offset), rewritten through a temporary file and a rename after every delivery, so that a
//! crash re-sends at most the record that was in flight (at-least-once).
//!
//! fsync policy (`spool.fsync`): `always` syncs each record and the cursor before going on
//! (a record that reached the spool survives a power cut); `never` leaves it to the kernel
//! (records survive a crash of the agent, not of the machine).
//!
//! Reading a segment loads it whole (at most a quarter of the cap). A torn record at the end
//! of a segment is truncated away; a corrupted one is skipped; both are counted
//! (`spool_corrupt`) and logged. When the spool is over its cap, the oldest segment goes,
//! its records counted as `spool_full`. Nothing here stops the agent from starting.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use telegen_config::{Fsync, Spool as SpoolConfig};
use telegen_core::selfmetrics::{AgentCounters, DropReason};
use telegen_export::client::Batch;
use telegen_export::spool::{HEADER_LEN, Scan, header, scan};

struct Segment {
    id: u64,
    bytes: u64,
    /// Items in the records not yet delivered (for counting a dropped segment).
    items: u64,
}

/// The read position: the segment being read (loaded) and the offset in it.
struct Reader {
    id: u64,
    offset: usize,
    data: Vec<u8>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    fsync: Fsync,
    segments: VecDeque<Segment>,
    active: Option<File>,
    reader: Option<Reader>,
    /// Where the oldest undelivered record is, as persisted.
    cursor: (u64, usize),
}

/// Size at which a new segment starts: a quarter of the cap, between 64 KiB and 1 MiB (the
/// reader holds one segment in memory).
pub fn segment_target(max_bytes: u64) -> u64 {
    (max_bytes / 4).clamp(64 * 1024, 1 << 20)
}

fn seg_name(id: u64) -> String {
    format!("{id:016}.seg")
}

impl Spool {
    /// Opens (creating) the spool directory and takes stock of what it holds.
    pub fn open(cfg: &SpoolConfig, drops: &mut AgentCounters) -> io::Result<Self> {
        fs::create_dir_all(&cfg.dir)?;
        let mut ids: Vec<u64> = fs::read_dir(&cfg.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        let cursor = read_cursor(&cfg.dir).unwrap_or((0, 0));
        let mut spool = Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            fsync: cfg.fsync,
            segments: VecDeque::new(),
            active: None,
            reader: None,
            cursor,
        };
        for id in ids {
            if id < cursor.0 {
                // Fully delivered before the last stop.
                let _ = fs::remove_file(spool.dir.join(seg_name(id)));
                continue;
            }
            let start = if id == cursor.0 { cursor.1 } else { 0 };
            let (bytes, items) = spool.check_segment(id, start, drops)?;
            spool.segments.push_back(Segment { id, bytes, items });
        }
        if spool.segments.front().is_some_and(|s| s.id != cursor.0) {
            spool.cursor = (spool.segments[0].id, 0);
        }
        Ok(spool)
    }

    /// Validates a segment from `start`: truncates a torn tail (counted), counts the items
    /// of the records still to deliver. Corrupted records are counted when read.
    fn check_segment(
        &self,
        id: u64,
        start: usize,
        drops: &mut AgentCounters,
    ) -> io::Result<(u64, u64)> {
        let path = self.dir.join(seg_name(id));
        let data = fs::read(&path)?;
        let (mut at, mut items) = (start.min(data.len()), 0);
        loop {
            match scan(&data, at) {
                Scan::Record { items: n, next, .. } => {
                    items += n;
                    at = next;
                }
                Scan::Corrupt { next } => at = next,
                Scan::Torn => {
                    log::warn!(
                        "spool {}: torn record at byte {at} (an interrupted write); truncated",
                        path.display()
                    );
                    drops.drop(DropReason::SpoolCorrupt, 1);
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(at as u64)?;
                    return Ok((at as u64, items));
                }
                Scan::End => return Ok((data.len() as u64, items)),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.items == 0) && self.reader_is_done()
    }

    fn reader_is_done(&self) -> bool {
        match &self.reader {
            None => true,
            Some(r) => matches!(scan(&r.data, r.offset), Scan::End),
        }
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn sync(&self, f: &File) -> io::Result<()> {
        match self.fsync {
            Fsync::Always => f.sync_data(),
            Fsync::Never => Ok(()),
        }
    }

    /// Appends a batch. Over the cap, the oldest segments are dropped (counted).
    pub fn append(&mut self, batch: &Batch, drops: &mut AgentCounters) -> io::Result<()> {
        let record_len = (HEADER_LEN + batch.body.len()) as u64;
        let seg_target = segment_target(self.max_bytes);
        let rotate = match self.segments.back() {
            None => true,
            Some(s) => self.active.is_none() || s.bytes + record_len > seg_target && s.bytes > 0,
        };
        if rotate {
            let id = self
                .segments
                .back()
                .map_or(self.cursor.0.max(1), |s| s.id + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(seg_name(id)))?;
            if let Ok(d) = File::open(&self.dir) {
                let _ = self.sync(&d);
            }
            self.active = Some(f);
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                items: 0,
            });
        }
        let f = self
            .active
            .as_mut()
            .ok_or_else(|| io::Error::other("no active segment"))?;
        let mut rec = Vec::with_capacity(record_len as usize);
        rec.extend_from_slice(&header(batch.items, &batch.body));
        rec.extend_from_slice(&batch.body);
        f.write_all(&rec)?;
        let f = self
            .active
            .as_ref()
            .ok_or_else(|| io::Error::other("no active segment"))?;
        self.sync(f)?;
        if let Some(s) = self.segments.back_mut() {
            s.bytes += record_len;
            s.items += batch.items;
        }
        self.enforce_cap(drops);
        Ok(())
    }

    fn enforce_cap(&mut self, drops: &mut AgentCounters) {
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            drops.drop(DropReason::SpoolFull, old.items);
            log::warn!(
                "spool over its {} byte cap: dropped segment {} ({} items)",
                self.max_bytes,
                old.id,
                old.items
            );
            let _ = fs::remove_file(self.dir.join(seg_name(old.id)));
            if self.reader.as_ref().is_some_and(|r| r.id == old.id) {
                self.reader = None;
            }
            if let Some(next) = self.segments.front() {
                self.cursor = (next.id, 0);
                let _ = self.write_cursor();
            }
        }
    }

    /// The oldest undelivered record, as a batch marked `spooled`; corrupted records on the
    /// way are skipped and counted.
    pub fn peek(&mut self, drops: &mut AgentCounters) -> Option<Batch> {
        let mut reloaded = false;
        loop {
            let front = self.segments.front()?;
            let front_id = front.id;
            let is_active = self.segments.len() == 1 && self.active.is_some();
            if self.reader.as_ref().is_none_or(|r| r.id != front_id) {
                let data = fs::read(self.dir.join(seg_name(front_id))).unwrap_or_default();
                let offset = if self.cursor.0 == front_id {
                    self.cursor.1
                } else {
                    0
                };
                self.reader = Some(Reader {
                    id: front_id,
                    offset,
                    data,
                });
                reloaded = true;
            }
            let r = self.reader.as_mut()?;
            match scan(&r.data, r.offset) {
                Scan::Record { items, payload, .. } => {
                    return Some(Batch {
                        body: r.data[payload].to_vec(),
                        items,
                        spooled: true,
                    });
                }
                Scan::Corrupt { next } => {
                    log::warn!(
                        "spool segment {front_id}: corrupted record at byte {} skipped ({} bytes)",
                        r.offset,
                        next - r.offset
                    );
                    drops.drop(DropReason::SpoolCorrupt, 1);
                    r.offset = next;
                    self.cursor = (front_id, next);
                    let _ = self.write_cursor();
                }
                Scan::Torn | Scan::End if is_active => {
                    if reloaded {
                        return None;
                    }
                    // The segment being written has grown since it was read.
                    if let Ok(data) = fs::read(self.dir.join(seg_name(front_id))) {
                        r.data = data;
                    }
                    reloaded = true;
                }
                Scan::Torn | Scan::End => {
                    // Done with this segment.
                    let _ = fs::remove_file(self.dir.join(seg_name(front_id)));
                    self.segments.pop_front();
                    self.reader = None;
                    let next = self.segments.front().map_or(front_id + 1, |s| s.id);
                    self.cursor = (next, 0);
                    let _ = self.write_cursor();
                }
            }
        }
    }

    /// The record last returned by [`Spool::peek`] was delivered (or finally dropped).
    pub fn consume(&mut self) {
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        if let Scan::Record { items, next, .. } = scan(&r.data, r.offset) {
            r.offset = next;
            self.cursor = (r.id, next);
            if let Some(s) = self.segments.iter_mut().find(|s| s.id == r.id) {
                s.items = s.items.saturating_sub(items);
            }
            if let Err(e) = self.write_cursor() {
                log::warn!(
                    "spool: cannot record progress in {}: {e}",
                    self.dir.display()
                );
            }
        }
    }

    fn write_cursor(&self) -> io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        let mut f = File::create(&tmp)?;
        writeln!(f, "{} {}", self.cursor.0, self.cursor.1)?;
        self.sync(&f)?;
        fs::rename(tmp, self.dir.join("cursor"))
    }
}

fn read_cursor(dir: &Path) -> Option<(u64, usize)> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, max: u64) -> SpoolConfig {
        let dir = std::env::temp_dir().join(format!("telegen-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        SpoolConfig {
            dir,
            max_bytes: max,
            fsync: Fsync::Always,
        }
    }

    fn b(n: u8, items: u64) -> Batch {
        Batch::new(vec![n; 100 + n as usize], items)
    }

    fn drain(s: &mut Spool, d: &mut AgentCounters) -> Vec<u8> {
        let mut seen = Vec::new();
        while let Some(batch) = s.peek(d) {
            seen.push(batch.body[0]);
            s.consume();
        }
        seen
    }

    #[test]
    fn delivers_in_order_across_a_restart() {
        let c = cfg("order", 1 << 20);
        let mut d = AgentCounters::default();
        let mut s = Spool::open(&c, &mut d).unwrap();
        for i in 1..=5 {
            s.append(&b(i, 1), &mut d).unwrap();
        }
        assert_eq!(s.peek(&mut d).unwrap().body[0], 1);
        s.consume();
        assert_eq!(s.peek(&mut d).unwrap().body[0], 2);
        // Crash here: record 2 was in flight, not consumed.
        drop(s);
        let mut s = Spool::open(&c, &mut d).unwrap();
        assert_eq!(drain(&mut s, &mut d), vec![2, 3, 4, 5]);
        assert!(s.is_empty());
        s.append(&b(6, 1), &mut d).unwrap();
        drop(s);
        let mut s = Spool::open(&c, &mut d).unwrap();
        assert_eq!(drain(&mut s, &mut d), vec![6]);
        assert_eq!(d.dropped(DropReason::SpoolCorrupt), 0);
    }

    #[test]
    fn torn_and_corrupted_records_are_counted_and_skipped() {
        let c = cfg("corrupt", 1 << 20);
        let mut d = AgentCounters::default();
        let mut s = Spool::open(&c, &mut d).unwrap();
        for i in 1..=3 {
            s.append(&b(i, 1), &mut d).unwrap();
        }
        drop(s);
        let seg = fs::read_dir(&c.dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .unwrap()
            .path();
        let mut data = fs::read(&seg).unwrap();
        data[HEADER_LEN + 101 + HEADER_LEN + 5] ^= 0xff; // inside record 2
        data.extend_from_slice(&header(9, b"never finished")[..10]); // a torn tail
        fs::write(&seg, &data).unwrap();
        let mut s = Spool::open(&c, &mut d).unwrap();
        assert_eq!(d.dropped(DropReason::SpoolCorrupt), 1, "the torn tail");
        assert_eq!(drain(&mut s, &mut d), vec![1, 3]);
        assert_eq!(
            d.dropped(DropReason::SpoolCorrupt),
            2,
            "and the flipped record"
        );
    }

    #[test]
    fn the_cap_drops_the_oldest_segments() {
        let c = cfg("cap", 64 * 1024);
        let mut d = AgentCounters::default();
        let mut s = Spool::open(&c, &mut d).unwrap();
        for i in 0..200u8 {
            s.append(&Batch::new(vec![i; 1000], 2), &mut d).unwrap();
        }
        assert!(s.bytes() <= 64 * 1024, "{}", s.bytes());
        let dropped = d.dropped(DropReason::SpoolFull);
        assert!(dropped > 0 && dropped % 2 == 0);
        let seen = drain(&mut s, &mut d);
        assert_eq!(*seen.last().unwrap(), 199, "the newest records are kept");
        assert_eq!(
            seen.len() as u64 * 2 + dropped,
            400,
            "every item delivered or counted"
        );
    }
}
