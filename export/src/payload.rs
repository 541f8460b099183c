//! Protobuf encoding and gzip of export requests, into buffers that are reused.

use flate2::{Compression, write::GzEncoder};
use prost::Message;
use std::io::Write;

/// Encodes messages; keeps its scratch buffer between calls.
pub struct Encoder {
    proto: Vec<u8>,
    level: u32,
}

impl Default for Encoder {
    /// gzip level 1, the fastest.
    fn default() -> Self {
        Self::with_level(1)
    }
}

impl Encoder {
    /// An encoder that gzips at `level` (1 fastest … 9 smallest).
    pub fn with_level(level: u32) -> Self {
        Self {
            proto: Vec::new(),
            level: level.clamp(1, 9),
        }
    }

    /// Encodes `msg` into `out` (cleared first), gzipped when `gzip` is set.
    pub fn encode<M: Message>(&mut self, msg: &M, gzip: bool, out: &mut Vec<u8>) {
        out.clear();
        if !gzip {
            // Encoding into a Vec cannot run out of room.
            let _ = msg.encode(out);
            return;
        }
        self.proto.clear();
        let _ = msg.encode(&mut self.proto);
        let proto = std::mem::take(&mut self.proto);
        self.compress(&proto, true, out);
        self.proto = proto;
    }

    /// Copies `plain` into `out` (cleared first), gzipped when `gzip` is set.
    pub fn compress(&mut self, plain: &[u8], gzip: bool, out: &mut Vec<u8>) {
        out.clear();
        if !gzip {
            out.extend_from_slice(plain);
            return;
        }
        let mut gz = GzEncoder::new(std::mem::take(out), Compression::new(self.level));
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(plain);
        *out = gz.finish().unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use std::io::Read;

    #[test]
    fn gzip_round_trips() {
        let msg = ExportMetricsServiceRequest::default();
        let mut e = Encoder::default();
        let mut out = Vec::new();
        e.encode(&msg, true, &mut out);
        assert_eq!(&out[..2], &[0x1f, 0x8b], "gzip magic");
        let mut plain = Vec::new();
        GzDecoder::new(&out[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(
            ExportMetricsServiceRequest::decode(&plain[..]).unwrap(),
            msg
        );
    }
}
