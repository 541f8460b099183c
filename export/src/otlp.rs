//! OTLP protobuf messages built from the core's metric view.

use crate::codec::{point_count, split_metric};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram as OtlpHistogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use telegen_core::metrics::{Attr, AttrValue, Histogram, Kind, MetricDesc, MetricSink};

/// The instrumentation scope telegen reports under.
pub const SCOPE_NAME: &str = "telegen";

pub fn kv_str(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

fn kv(a: &Attr) -> KeyValue {
    let value = match &a.value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.as_str().to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: a.key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A resource from string attributes.
pub fn resource(attrs: &[(String, String)]) -> Resource {
    Resource {
        attributes: attrs.iter().map(|(k, v)| kv_str(k, v)).collect(),
        ..Default::default()
    }
}

/// Collects metric points into OTLP metrics, one `Metric` per descriptor.
pub struct MetricsCollector {
    start_ns: u64,
    now_ns: u64,
    metrics: Vec<Metric>,
    points: usize,
}

impl MetricsCollector {
    /// `start_ns` is the start of the cumulative period, `now_ns` the point time (Unix ns).
    pub fn new(start_ns: u64, now_ns: u64) -> Self {
        Self {
            start_ns,
            now_ns,
            metrics: Vec::new(),
            points: 0,
        }
    }

    /// Data points collected.
    pub fn points(&self) -> usize {
        self.points
    }

    fn metric(&mut self, desc: &MetricDesc) -> &mut Metric {
        let pos = self.metrics.iter().position(|m| m.name == desc.name);
        let i = match pos {
            Some(i) => i,
            None => {
                let cumulative = AggregationTemporality::Cumulative as i32;
                let data = match desc.kind {
                    Kind::Counter => metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: cumulative,
                        is_monotonic: true,
                    }),
                    Kind::Histogram => metric::Data::Histogram(OtlpHistogram {
                        data_points: Vec::new(),
                        aggregation_temporality: cumulative,
                    }),
                    Kind::Gauge => metric::Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    }),
                };
                self.metrics.push(Metric {
                    name: desc.name.to_string(),
                    description: desc.description.to_string(),
                    unit: desc.unit.to_string(),
                    data: Some(data),
                    ..Default::default()
                });
                self.metrics.len() - 1
            }
        };
        &mut self.metrics[i]
    }

    /// Splits the metrics into requests of at most `batch_size` data points each.
    pub fn into_requests(
        self,
        resource: &Resource,
        batch_size: usize,
    ) -> Vec<ExportMetricsServiceRequest> {
        let batch_size = batch_size.max(1);
        let mut requests = Vec::new();
        let mut current: Vec<Metric> = Vec::new();
        let mut in_current = 0;
        for m in self.metrics {
            let mut rest = Some(m);
            while let Some(mut m) = rest.take() {
                let room = batch_size - in_current;
                let n = point_count(&m);
                if n > room {
                    rest = Some(split_metric(&mut m, room));
                }
                in_current += point_count(&m);
                if point_count(&m) > 0 {
                    current.push(m);
                }
                if in_current == batch_size {
                    requests.push(request(resource, std::mem::take(&mut current)));
                    in_current = 0;
                }
            }
        }
        if !current.is_empty() {
            requests.push(request(resource, current));
        }
        requests
    }
}

fn request(resource: &Resource, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

impl MetricSink for MetricsCollector {
    fn counter(&mut self, desc: &MetricDesc, attrs: &[Attr], value: u64) {
        let (start, now) = (self.start_ns, self.now_ns);
        if let Some(metric::Data::Sum(s)) = &mut self.metric(desc).data {
            s.data_points.push(NumberDataPoint {
                attributes: attrs.iter().map(kv).collect(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                // OTLP carries integers as signed; counts above i64::MAX saturate.
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(value).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            });
            self.points += 1;
        }
    }

    fn gauge(&mut self, desc: &MetricDesc, attrs: &[Attr], value: i64) {
        let now = self.now_ns;
        if let Some(metric::Data::Gauge(g)) = &mut self.metric(desc).data {
            g.data_points.push(NumberDataPoint {
                attributes: attrs.iter().map(kv).collect(),
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(value)),
                ..Default::default()
            });
            self.points += 1;
        }
    }

    fn histogram(&mut self, desc: &MetricDesc, attrs: &[Attr], h: &Histogram) {
        let (start, now) = (self.start_ns, self.now_ns);
        if let Some(metric::Data::Histogram(m)) = &mut self.metric(desc).data {
            let any = h.count > 0;
            m.data_points.push(HistogramDataPoint {
                attributes: attrs.iter().map(kv).collect(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: h.count,
                sum: Some(h.sum),
                bucket_counts: h.bucket_counts().to_vec(),
                explicit_bounds: h.bounds.to_vec(),
                min: any.then_some(h.min),
                max: any.then_some(h.max),
                ..Default::default()
            });
            self.points += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegen_core::metrics::Attr;

    static C: MetricDesc = MetricDesc {
        name: "c",
        description: "d",
        unit: "1",
        kind: Kind::Counter,
    };
    static H: MetricDesc = MetricDesc {
        name: "h",
        description: "d",
        unit: "s",
        kind: Kind::Histogram,
    };
    static B: [f64; 2] = [1.0, 2.0];

    #[test]
    fn builds_cumulative_points_and_splits_batches() {
        let mut c = MetricsCollector::new(10, 20);
        for i in 0..5 {
            c.counter(&C, &[Attr::int("i", i)], i as u64);
        }
        let mut h = Histogram::new(&B);
        h.record(1.5);
        c.histogram(&H, &[], &h);
        assert_eq!(c.points(), 6);
        let res = resource(&[("service.name".into(), "x".into())]);
        let reqs = c.into_requests(&res, 4);
        assert_eq!(reqs.len(), 2);
        let count = |r: &ExportMetricsServiceRequest| {
            r.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .map(point_count)
                .sum::<usize>()
        };
        assert_eq!((count(&reqs[0]), count(&reqs[1])), (4, 2));
        let second = &reqs[1].resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(second[0].name, "c");
        assert_eq!(second[1].name, "h");
        let Some(metric::Data::Histogram(hist)) = &second[1].data else {
            panic!()
        };
        assert_eq!(hist.data_points[0].bucket_counts, vec![0, 1, 0]);
        assert_eq!(hist.data_points[0].start_time_unix_nano, 10);
        let Some(metric::Data::Sum(s)) = &second[0].data else {
            panic!()
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }
}
