//! Request bodies as they go on the wire, and what the exporter needs to know of them:
//! encoding (protobuf or JSON, gzip or not), splitting a batch the collector found too large
//! (HTTP 413), and reading `partial_success` and `google.rpc.Status` from responses.

use crate::payload::Encoder;
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use prost::Message;
use std::io::Read;

/// The body encoding of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// How bodies are encoded for one exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub format: Format,
    pub gzip: bool,
}

/// `google.rpc.Status`, the body of OTLP error responses (details are not read).
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An OTLP export request type.
pub trait OtlpRequest: Message + Default + serde::Serialize + serde::de::DeserializeOwned {
    /// Items (data points, spans, log records) in the request.
    fn items(&self) -> u64;
    /// Splits into two requests of about half the items each; `None` for a single item.
    fn split(self) -> Option<(Self, Self)>;
    /// `(rejected items, error message)` from a 2xx response body, when it reports some.
    fn partial_success(body: &[u8], format: Format) -> Option<(i64, String)>;
}

pub(crate) fn point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Moves the points after the first `keep` of `m` into a copy of it.
pub(crate) fn split_metric(m: &mut Metric, keep: usize) -> Metric {
    let data = match &mut m.data {
        Some(metric::Data::Sum(s)) => {
            let mut t = s.clone();
            t.data_points = s.data_points.split_off(keep);
            Some(metric::Data::Sum(t))
        }
        Some(metric::Data::Histogram(h)) => {
            let mut t = h.clone();
            t.data_points = h.data_points.split_off(keep);
            Some(metric::Data::Histogram(t))
        }
        Some(metric::Data::Gauge(g)) => {
            let mut t = g.clone();
            t.data_points = g.data_points.split_off(keep);
            Some(metric::Data::Gauge(t))
        }
        other => other.take(),
    };
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data,
        ..Default::default()
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    fn items(&self) -> u64 {
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(point_count)
            .sum::<usize>() as u64
    }

    fn split(mut self) -> Option<(Self, Self)> {
        let total = self.items();
        if total < 2 {
            return None;
        }
        let mut keep = (total / 2) as usize;
        let mut tail = ExportMetricsServiceRequest::default();
        for rm in &mut self.resource_metrics {
            let mut tail_rm = rm.clone();
            tail_rm.scope_metrics.clear();
            for sm in &mut rm.scope_metrics {
                let mut tail_sm = sm.clone();
                tail_sm.metrics.clear();
                let mut kept = Vec::new();
                for mut m in std::mem::take(&mut sm.metrics) {
                    let n = point_count(&m);
                    if keep >= n {
                        keep -= n;
                        kept.push(m);
                    } else if keep > 0 {
                        let rest = split_metric(&mut m, keep);
                        keep = 0;
                        kept.push(m);
                        tail_sm.metrics.push(rest);
                    } else {
                        tail_sm.metrics.push(m);
                    }
                }
                sm.metrics = kept;
                if !tail_sm.metrics.is_empty() {
                    tail_rm.scope_metrics.push(tail_sm);
                }
            }
            rm.scope_metrics.retain(|s| !s.metrics.is_empty());
            if !tail_rm.scope_metrics.is_empty() {
                tail.resource_metrics.push(tail_rm);
            }
        }
        self.resource_metrics
            .retain(|r| !r.scope_metrics.is_empty());
        Some((self, tail))
    }

    fn partial_success(body: &[u8], format: Format) -> Option<(i64, String)> {
        let (rejected, message) = match format {
            Format::Protobuf => {
                let p = ExportMetricsServiceResponse::decode(body)
                    .ok()?
                    .partial_success?;
                (p.rejected_data_points, p.error_message)
            }
            Format::Json => json_partial(body, "rejectedDataPoints")?,
        };
        (rejected != 0 || !message.is_empty()).then_some((rejected, message))
    }
}

/// `partialSuccess` of an OTLP/JSON response. Collectors write 64-bit integers as strings
/// (protojson) or numbers; both are read.
pub(crate) fn json_partial(body: &[u8], rejected_key: &str) -> Option<(i64, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let p = v.get("partialSuccess")?;
    let rejected = match p.get(rejected_key) {
        Some(serde_json::Value::String(s)) => s.parse().ok()?,
        Some(n) => n.as_i64()?,
        None => 0,
    };
    let message = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    Some((rejected, message))
}

impl Codec {
    /// Encodes a request into `out` (cleared first).
    pub fn encode<R: OtlpRequest>(&self, enc: &mut Encoder, req: &R, out: &mut Vec<u8>) {
        match self.format {
            Format::Protobuf => enc.encode(req, self.gzip, out),
            Format::Json => {
                // Serializing these types into a Vec cannot fail.
                let json = serde_json::to_vec(req).unwrap_or_default();
                enc.compress(&json, self.gzip, out);
            }
        }
    }

    /// Decodes a body this codec encoded.
    pub fn decode<R: OtlpRequest>(&self, body: &[u8]) -> Option<R> {
        let mut plain = Vec::new();
        let raw = if self.gzip {
            GzDecoder::new(body).read_to_end(&mut plain).ok()?;
            &plain[..]
        } else {
            body
        };
        match self.format {
            Format::Protobuf => R::decode(raw).ok(),
            Format::Json => serde_json::from_slice(raw).ok(),
        }
    }

    /// The message of an error response, from `google.rpc.Status` when the body is one.
    pub fn status_message(&self, body: &[u8]) -> Option<String> {
        if body.is_empty() {
            return None;
        }
        let from_proto = RpcStatus::decode(body)
            .ok()
            .filter(|s| !s.message.is_empty());
        let from_json = || {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
        };
        let text = || {
            std::str::from_utf8(body)
                .ok()
                .map(|t| t.chars().take(200).collect::<String>())
        };
        from_proto
            .map(|s| s.message)
            .or_else(from_json)
            .or_else(text)
    }
}

/// Encodes `req` into batches whose bodies are at most `max_body` bytes before
/// compression, splitting it as needed. A single item larger than that is dropped and
/// counted (`export_too_large`).
pub fn encode_fitting<R: OtlpRequest>(
    codec: &Codec,
    enc: &mut Encoder,
    req: R,
    max_body: usize,
    drops: &mut telegen_core::selfmetrics::AgentCounters,
    out: &mut Vec<crate::client::Batch>,
) {
    let plain_len = match codec.format {
        Format::Protobuf => req.encoded_len(),
        Format::Json => serde_json::to_vec(&req).map_or(usize::MAX, |v| v.len()),
    };
    if plain_len > max_body {
        let items = req.items();
        match req.split() {
            Some((a, b)) => {
                encode_fitting(codec, enc, a, max_body, drops, out);
                encode_fitting(codec, enc, b, max_body, drops, out);
            }
            None => drops.drop(telegen_core::selfmetrics::DropReason::ExportTooLarge, items),
        }
        return;
    }
    let mut body = Vec::new();
    codec.encode(enc, &req, &mut body);
    out.push(crate::client::Batch::new(body, req.items()));
}

/// Splits an encoded body into two encoded halves; `None` when it holds a single item or
/// cannot be decoded.
pub fn split_body<R: OtlpRequest>(
    codec: &Codec,
    enc: &mut Encoder,
    body: &[u8],
) -> Option<[(Vec<u8>, u64); 2]> {
    let req: R = codec.decode(body)?;
    let (a, b) = req.split()?;
    let mut out = [(Vec::new(), a.items()), (Vec::new(), b.items())];
    codec.encode(enc, &a, &mut out[0].0);
    codec.encode(enc, &b, &mut out[1].0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{MetricsCollector, resource};
    use telegen_core::metrics::{Attr, Kind, MetricDesc, MetricSink};

    static C: MetricDesc = MetricDesc {
        name: "c",
        description: "",
        unit: "1",
        kind: Kind::Counter,
    };
    static D: MetricDesc = MetricDesc {
        name: "d",
        description: "",
        unit: "1",
        kind: Kind::Counter,
    };

    fn request(n: i64) -> ExportMetricsServiceRequest {
        let mut c = MetricsCollector::new(1, 2);
        for i in 0..n {
            c.counter(
                if i % 2 == 0 { &C } else { &D },
                &[Attr::int("i", i)],
                i as u64,
            );
        }
        c.into_requests(&resource(&[]), 1000).remove(0)
    }

    #[test]
    fn splits_into_halves_that_keep_every_point() {
        let req = request(7);
        let (a, b) = req.split().unwrap();
        assert_eq!((a.items(), b.items()), (3, 4));
        assert!(request(1).split().is_none());
    }

    #[test]
    fn round_trips_every_format_and_splits_encoded_bodies() {
        let mut enc = Encoder::default();
        for (format, gzip) in [
            (Format::Protobuf, true),
            (Format::Json, false),
            (Format::Json, true),
        ] {
            let codec = Codec { format, gzip };
            let mut body = Vec::new();
            codec.encode(&mut enc, &request(6), &mut body);
            let back: ExportMetricsServiceRequest = codec.decode(&body).unwrap();
            assert_eq!(back, request(6));
            let halves =
                split_body::<ExportMetricsServiceRequest>(&codec, &mut enc, &body).unwrap();
            assert_eq!((halves[0].1, halves[1].1), (3, 3));
        }
        let json = Codec {
            format: Format::Json,
            gzip: false,
        };
        let mut body = Vec::new();
        json.encode(&mut enc, &request(1), &mut body);
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("\"resourceMetrics\""),
            "OTLP JSON uses lowerCamelCase: {text}"
        );
        assert!(
            text.contains("\"timeUnixNano\":\"2\""),
            "64-bit integers as strings: {text}"
        );
    }

    #[test]
    fn bodies_are_split_to_fit_the_cap() {
        let mut enc = Encoder::default();
        let mut drops = telegen_core::selfmetrics::AgentCounters::default();
        let codec = Codec {
            format: Format::Protobuf,
            gzip: true,
        };
        let req = request(40);
        let whole = req.encoded_len();
        let mut out = Vec::new();
        encode_fitting(&codec, &mut enc, req, whole / 3, &mut drops, &mut out);
        assert!(out.len() >= 3, "{} batches", out.len());
        assert_eq!(out.iter().map(|b| b.items).sum::<u64>(), 40);
        for b in &out {
            let r: ExportMetricsServiceRequest = codec.decode(&b.body).unwrap();
            assert!(r.encoded_len() <= whole / 3);
        }
        let mut out = Vec::new();
        encode_fitting(&codec, &mut enc, request(1), 10, &mut drops, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            drops.dropped(telegen_core::selfmetrics::DropReason::ExportTooLarge),
            1
        );
    }

    #[test]
    fn reads_partial_success_and_status() {
        let resp = ExportMetricsServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points: 3,
                    error_message: "too old".into(),
                },
            ),
        };
        let body = resp.encode_to_vec();
        assert_eq!(
            ExportMetricsServiceRequest::partial_success(&body, Format::Protobuf),
            Some((3, "too old".to_string()))
        );
        let json = br#"{"partialSuccess":{"rejectedDataPoints":"2","errorMessage":"x"}}"#;
        assert_eq!(
            ExportMetricsServiceRequest::partial_success(json, Format::Json),
            Some((2, "x".into()))
        );
        let json = br#"{"partialSuccess":{"rejectedDataPoints":4}}"#;
        assert_eq!(
            ExportMetricsServiceRequest::partial_success(json, Format::Json),
            Some((4, String::new()))
        );
        assert_eq!(
            ExportMetricsServiceRequest::partial_success(b"{}", Format::Json),
            None
        );
        assert_eq!(
            ExportMetricsServiceRequest::partial_success(b"", Format::Protobuf),
            None
        );
        let codec = Codec {
            format: Format::Protobuf,
            gzip: true,
        };
        let status = RpcStatus {
            code: 3,
            message: "bad metric name".into(),
        }
        .encode_to_vec();
        assert_eq!(
            codec.status_message(&status).as_deref(),
            Some("bad metric name")
        );
        assert_eq!(
            codec
                .status_message(br#"{"code":3,"message":"m"}"#)
                .as_deref(),
            Some("m")
        );
        assert_eq!(codec.status_message(b"").as_deref(), None);
    }
}
