//! `--record FILE`: the kernel's records, as read, written to a file for replay
//! (format: `telegen_core::recording`). Opened at start-up (before the privileges go), so the
//! file is root's and private (mode 0600): it holds captured bytes, header values included.
//! Bounded: once [`CAP_BYTES`] are written, recording stops with one log line; a write error
//! stops it too. The agent itself is never stopped by its recorder.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use telegen_core::recording::{MAGIC, frame};

/// The largest recording.
pub const CAP_BYTES: u64 = 64 << 20;

pub struct Recorder {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    written: u64,
    records: u64,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        out.write_all(&MAGIC)
            .map_err(|e| format!("--record {}: {e}", path.display()))?;
        log::info!(
            "recording kernel records to {} (at most {} MiB; it holds captured bytes)",
            path.display(),
            CAP_BYTES >> 20
        );
        Ok(Self {
            out: Some(out),
            path: path.to_path_buf(),
            written: MAGIC.len() as u64,
            records: 0,
        })
    }

    /// Appends one record (until the cap or an error).
    pub fn record(&mut self, bytes: &[u8]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let len = 4 + bytes.len() as u64;
        if self.written + len > CAP_BYTES {
            log::warn!(
                "recording to {} stopped at its cap ({} records, {} bytes)",
                self.path.display(),
                self.records,
                self.written
            );
            self.stop();
            return;
        }
        if let Err(e) = out
            .write_all(&frame(bytes.len()))
            .and_then(|()| out.write_all(bytes))
        {
            log::warn!("recording to {} stopped: {e}", self.path.display());
            self.out = None;
            return;
        }
        self.written += len;
        self.records += 1;
    }

    /// Pushes what is buffered to the file (after each drain).
    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            log::warn!("recording to {} stopped: {e}", self.path.display());
            self.out = None;
        }
    }

    fn stop(&mut self) {
        self.flush();
        self.out = None;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.stop();
            log::info!(
                "recorded {} kernel records ({} bytes) to {}",
                self.records,
                self.written,
                self.path.display()
            );
        }
    }
}
