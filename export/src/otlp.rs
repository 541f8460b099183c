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

    /// Splits the metrics into requests of at most `batch_size` data points each, all under
    /// `resource`.
    pub fn into_requests(
        self,
        resource: &Resource,
        batch_size: usize,
    ) -> Vec<ExportMetricsServiceRequest> {
        batch(vec![(resource.clone(), self.metrics)], batch_size)
    }

    /// As [`MetricsCollector::into_requests`], with the points about a process under that
    /// process's resource: a point with `process.pid` loses it to the resource
    /// `process_resource(pid, name)` gives, or is left out when it gives none (an excluded
    /// process) (`name`: the point's `process.executable.name`,
    /// the kernel's task name), and that name becomes the point's `thread.name` (the task
    /// that did the work; threads of a process keep their series apart). Points without a
    /// process stay under `resource`. Resources come in the order their first point does.
    pub fn into_requests_per_process(
        self,
        resource: &Resource,
        batch_size: usize,
        process_resource: &mut dyn FnMut(u32, &str) -> Option<Resource>,
    ) -> Vec<ExportMetricsServiceRequest> {
        // Group by process: None (the agent's), then each pid.
        let mut groups: Vec<(Option<u32>, Vec<Metric>)> = vec![(None, Vec::new())];
        let mut names: Vec<(u32, String)> = Vec::new();
        for m in self.metrics {
            for (pid, part) in split_by_process(m, &mut names) {
                let i = match groups.iter().position(|(p, _)| *p == pid) {
                    Some(i) => i,
                    None => {
                        groups.push((pid, Vec::new()));
                        groups.len() - 1
                    }
                };
                groups[i].1.push(part);
            }
        }
        let with_resources = groups
            .into_iter()
            .filter(|(_, ms)| !ms.is_empty())
            .filter_map(|(pid, ms)| match pid {
                None => Some((resource.clone(), ms)),
                Some(pid) => {
                    let name = names
                        .iter()
                        .find(|(p, _)| *p == pid)
                        .map_or("", |(_, n)| n.as_str());
                    process_resource(pid, name).map(|r| (r, ms))
                }
            })
            .collect();
        batch(with_resources, batch_size)
    }
}

/// Takes `process.pid` off a point's attributes and renames its `process.executable.name`
/// to `thread.name`; the pid and that name.
fn take_process(attrs: &mut Vec<KeyValue>) -> Option<(u32, String)> {
    let at = attrs.iter().position(|a| a.key == "process.pid")?;
    let pid = match attrs[at].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::IntValue(p)) => u32::try_from(*p).ok()?,
        _ => return None,
    };
    attrs.remove(at);
    let mut name = String::new();
    if let Some(a) = attrs
        .iter_mut()
        .find(|a| a.key == "process.executable.name")
    {
        a.key = "thread.name".to_string();
        if let Some(any_value::Value::StringValue(n)) =
            a.value.as_ref().and_then(|v| v.value.as_ref())
        {
            name = n.clone();
        }
    }
    Some((pid, name))
}

/// One metric cut into one metric per process its points are about (`None`: no process).
/// The first name seen of each pid goes into `names`.
fn split_by_process(mut m: Metric, names: &mut Vec<(u32, String)>) -> Vec<(Option<u32>, Metric)> {
    fn part<P>(
        points: Vec<P>,
        attrs: impl Fn(&mut P) -> &mut Vec<KeyValue>,
        names: &mut Vec<(u32, String)>,
    ) -> Vec<(Option<u32>, Vec<P>)> {
        let mut out: Vec<(Option<u32>, Vec<P>)> = Vec::new();
        for mut p in points {
            let pid = take_process(attrs(&mut p)).map(|(pid, name)| {
                if !names.iter().any(|(q, _)| *q == pid) {
                    names.push((pid, name));
                }
                pid
            });
            match out.iter_mut().find(|(q, _)| *q == pid) {
                Some((_, ps)) => ps.push(p),
                None => out.push((pid, vec![p])),
            }
        }
        out
    }
    let data = m.data.take();
    let shell = |data| Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data: Some(data),
        ..Default::default()
    };
    match data {
        Some(metric::Data::Sum(mut s)) => part(
            std::mem::take(&mut s.data_points),
            |p| &mut p.attributes,
            names,
        )
        .into_iter()
        .map(|(pid, ps)| {
            let data = metric::Data::Sum(Sum {
                data_points: ps,
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            });
            (pid, shell(data))
        })
        .collect(),
        Some(metric::Data::Gauge(g)) => part(g.data_points, |p| &mut p.attributes, names)
            .into_iter()
            .map(|(pid, ps)| (pid, shell(metric::Data::Gauge(Gauge { data_points: ps }))))
            .collect(),
        Some(metric::Data::Histogram(mut h)) => part(
            std::mem::take(&mut h.data_points),
            |p| &mut p.attributes,
            names,
        )
        .into_iter()
        .map(|(pid, ps)| {
            let data = metric::Data::Histogram(OtlpHistogram {
                data_points: ps,
                aggregation_temporality: h.aggregation_temporality,
            });
            (pid, shell(data))
        })
        .collect(),
        // Kinds the collector never builds: kept as they are.
        other => {
            m.data = other;
            vec![(None, m)]
        }
    }
}

/// Requests of at most `batch_size` data points each, holding each resource's metrics in
/// order (a resource's metrics may span requests; a request may hold several resources).
fn batch(
    groups: Vec<(Resource, Vec<Metric>)>,
    batch_size: usize,
) -> Vec<ExportMetricsServiceRequest> {
    let batch_size = batch_size.max(1);
    let mut requests = Vec::new();
    let mut current: Vec<ResourceMetrics> = Vec::new();
    let mut in_current = 0;
    for (resource, metrics) in groups {
        let mut mine: Vec<Metric> = Vec::new();
        for m in metrics {
            let mut rest = Some(m);
            while let Some(mut m) = rest.take() {
                let room = batch_size - in_current;
                if point_count(&m) > room {
                    rest = Some(split_metric(&mut m, room));
                }
                in_current += point_count(&m);
                if point_count(&m) > 0 {
                    mine.push(m);
                }
                if in_current == batch_size {
                    current.push(resource_metrics(&resource, std::mem::take(&mut mine)));
                    requests.push(ExportMetricsServiceRequest {
                        resource_metrics: std::mem::take(&mut current),
                    });
                    in_current = 0;
                }
            }
        }
        if !mine.is_empty() {
            current.push(resource_metrics(&resource, mine));
        }
    }
    if !current.is_empty() {
        requests.push(ExportMetricsServiceRequest {
            resource_metrics: current,
        });
    }
    requests
}

fn resource_metrics(resource: &Resource, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
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
    fn points_about_a_process_go_under_its_resource() {
        let mut c = MetricsCollector::new(10, 20);
        let about = |pid: i64, name: &'static str| {
            [
                Attr::str("server.port", "80"),
                Attr::int("process.pid", pid),
                Attr::str("process.executable.name", name),
            ]
        };
        c.counter(&C, &about(7, "nginx"), 1);
        c.counter(&C, &[Attr::str("reason", "x")], 2); // the agent's own
        c.counter(&C, &about(9, "isc-net-0000"), 3);
        c.counter(&C, &about(9, "isc-net-0001"), 4); // another thread of 9
        let mut h = Histogram::new(&B);
        h.record(1.5);
        c.histogram(&H, &about(7, "nginx"), &h);
        let agent = resource(&[("service.name".into(), "telegen".into())]);
        let mut asked = Vec::new();
        let reqs = c.into_requests_per_process(&agent, 3, &mut |pid, name| {
            asked.push((pid, name.to_string()));
            Some(resource(&[("process.pid".into(), pid.to_string())]))
        });
        assert_eq!(asked, [(7, "nginx".into()), (9, "isc-net-0000".into())]);
        let rms: Vec<&ResourceMetrics> = reqs.iter().flat_map(|r| &r.resource_metrics).collect();
        // 5 points in batches of 3: the agent's group and 7's, then 9's.
        assert_eq!(reqs.len(), 2);
        let pid_of =
            |rm: &ResourceMetrics| rm.resource.as_ref().unwrap().attributes[0].value.clone();
        assert_eq!(rms.len(), 3);
        assert_eq!(pid_of(rms[0]), agent.attributes[0].value);
        let keys = |rm: &ResourceMetrics| -> Vec<Vec<String>> {
            let mut out = Vec::new();
            for m in &rm.scope_metrics[0].metrics {
                match &m.data {
                    Some(metric::Data::Sum(s)) => out.extend(
                        s.data_points
                            .iter()
                            .map(|p| p.attributes.iter().map(|a| a.key.clone()).collect()),
                    ),
                    Some(metric::Data::Histogram(h)) => out.extend(
                        h.data_points
                            .iter()
                            .map(|p| p.attributes.iter().map(|a| a.key.clone()).collect()),
                    ),
                    _ => {}
                }
            }
            out
        };
        assert_eq!(keys(rms[0]), [["reason"]]);
        assert_eq!(keys(rms[1]), [["server.port", "thread.name"]; 2]);
        assert_eq!(
            keys(rms[2]).len(),
            2,
            "both of 9's threads keep their series"
        );
        // One point per request: 9's two points are split, still under 9's resource.
        let mut c = MetricsCollector::new(10, 20);
        c.counter(&C, &about(9, "a"), 1);
        c.counter(&C, &about(9, "b"), 1);
        c.counter(&C, &about(11, "excluded"), 1);
        let reqs = c.into_requests_per_process(&agent, 1, &mut |pid, _| {
            (pid != 11).then(|| resource(&[("process.pid".into(), pid.to_string())]))
        });
        assert_eq!(reqs.len(), 2, "11's point is left out");
        for r in &reqs {
            assert_eq!(r.resource_metrics.len(), 1);
            assert_eq!(
                keys(&r.resource_metrics[0]),
                [["server.port", "thread.name"]]
            );
        }
    }

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
