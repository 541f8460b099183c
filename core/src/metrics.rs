//! Metric series with a fixed cardinality cap, and the view exporters read them through.
//!
//! Series are cumulative: a value only grows between start and shutdown. Each metric holds at
//! most `cap` attribute sets; a new set beyond the cap is folded into one overflow series that
//! carries `otel.metric.overflow=true`, as the OpenTelemetry metrics SDK specification asks.

use crate::fixed_map::FixedMap;
use core::hash::Hash;

/// The attribute the OTel specification defines for the overflow series.
pub const OVERFLOW_ATTR: &str = "otel.metric.overflow";

/// What kind of point a metric has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cumulative, monotonic sum.
    Counter,
    /// A cumulative histogram with explicit bucket bounds.
    Histogram,
    /// A value sampled at export time (queue sizes and the like).
    Gauge,
}

/// The fixed description of a metric: one place for its name, unit and meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
}

/// An attribute value; strings are short and stored inline.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(heapless::String<64>),
    Int(i64),
    Bool(bool),
}

/// One attribute of a data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub key: &'static str,
    pub value: AttrValue,
}

impl Attr {
    /// A string attribute; a value over 64 bytes is cut at a character boundary.
    pub fn str(key: &'static str, v: &str) -> Self {
        let mut s = heapless::String::new();
        for c in v.chars() {
            if s.push(c).is_err() {
                break;
            }
        }
        Self {
            key,
            value: AttrValue::Str(s),
        }
    }
    pub fn int(key: &'static str, v: i64) -> Self {
        Self {
            key,
            value: AttrValue::Int(v),
        }
    }
    pub fn bool(key: &'static str, v: bool) -> Self {
        Self {
            key,
            value: AttrValue::Bool(v),
        }
    }
}

/// The attributes of one point.
pub type Attrs = heapless::Vec<Attr, 12>;

/// Something that turns a series key into attributes.
pub trait Attributes {
    fn attributes(&self, out: &mut Attrs);
}

/// A histogram's state. Bounds are shared and static.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// `bounds.len() + 1` buckets are used.
    pub counts: [u64; MAX_BOUNDS + 1],
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// The most bucket bounds a histogram may have.
pub const MAX_BOUNDS: usize = 24;

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds: &bounds[..bounds.len().min(MAX_BOUNDS)],
            counts: [0; MAX_BOUNDS + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one value. Buckets are upper-inclusive, as OTLP defines them.
    pub fn record(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The counts that matter: one per bound plus the overflow bucket.
    pub fn bucket_counts(&self) -> &[u64] {
        &self.counts[..self.bounds.len() + 1]
    }
}

/// Receives the current value of every series of a metric.
pub trait MetricSink {
    fn counter(&mut self, desc: &MetricDesc, attrs: &[Attr], value: u64);
    fn gauge(&mut self, desc: &MetricDesc, attrs: &[Attr], value: i64);
    fn histogram(&mut self, desc: &MetricDesc, attrs: &[Attr], value: &Histogram);
}

/// What one series holds.
pub trait Point: Sized {
    fn report(&self, sink: &mut dyn MetricSink, desc: &MetricDesc, attrs: &[Attr]);
}

impl Point for u64 {
    fn report(&self, sink: &mut dyn MetricSink, desc: &MetricDesc, attrs: &[Attr]) {
        sink.counter(desc, attrs, *self);
    }
}

impl Point for Histogram {
    fn report(&self, sink: &mut dyn MetricSink, desc: &MetricDesc, attrs: &[Attr]) {
        sink.histogram(desc, attrs, self);
    }
}

/// The series of one metric, at most `cap` of them plus the overflow series.
pub struct Series<K, V> {
    pub desc: &'static MetricDesc,
    map: FixedMap<K, V>,
    overflow: Option<V>,
    make: fn() -> V,
}

impl<K: Hash + Eq + Attributes, V: Point> Series<K, V> {
    pub fn new(desc: &'static MetricDesc, cap: usize, make: fn() -> V) -> Self {
        Self {
            desc,
            map: FixedMap::with_capacity(cap),
            overflow: None,
            make,
        }
    }

    /// Bytes the series table takes for a given cap.
    pub fn bytes_for(cap: usize) -> usize {
        FixedMap::<K, V>::bytes_for(cap) + core::mem::size_of::<V>()
    }

    /// The value for `key`, or the overflow series when the cap is reached.
    /// Returns whether the point went to the overflow series.
    pub fn point(&mut self, key: K) -> (&mut V, bool) {
        let make = self.make;
        match self.map.get_or_insert_with(key, make) {
            Ok(v) => (v, false),
            Err(_) => (self.overflow.get_or_insert_with(make), true),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.overflow.is_none()
    }

    /// Hands every series to the sink.
    pub fn report(&self, sink: &mut dyn MetricSink) {
        let mut attrs = Attrs::new();
        for (k, v) in self.map.iter() {
            attrs.clear();
            k.attributes(&mut attrs);
            v.report(sink, self.desc, &attrs);
        }
        if let Some(v) = &self.overflow {
            attrs.clear();
            // Capacity 12 is ample for one attribute.
            let _ = attrs.push(Attr::bool(OVERFLOW_ATTR, true));
            v.report(sink, self.desc, &attrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{string::String, vec::Vec};

    #[derive(Hash, PartialEq, Eq, Clone, Copy)]
    struct Port(u16);
    impl Attributes for Port {
        fn attributes(&self, out: &mut Attrs) {
            let _ = out.push(Attr::int("server.port", i64::from(self.0)));
        }
    }

    static DESC: MetricDesc = MetricDesc {
        name: "t",
        description: "",
        unit: "1",
        kind: Kind::Counter,
    };
    static BOUNDS: [f64; 3] = [1.0, 2.0, 5.0];

    #[derive(Default)]
    struct Collect(Vec<(String, u64)>);
    impl MetricSink for Collect {
        fn counter(&mut self, _: &MetricDesc, attrs: &[Attr], value: u64) {
            self.0.push((alloc::format!("{:?}", attrs[0].value), value));
        }
        fn gauge(&mut self, _: &MetricDesc, _: &[Attr], _: i64) {}
        fn histogram(&mut self, _: &MetricDesc, _: &[Attr], _: &Histogram) {}
    }

    #[test]
    fn caps_cardinality_with_an_overflow_series() {
        let mut s: Series<Port, u64> = Series::new(&DESC, 2, || 0);
        for p in [1, 2, 3, 4, 1] {
            *s.point(Port(p)).0 += 1;
        }
        assert_eq!(s.len(), 2);
        let mut c = Collect::default();
        s.report(&mut c);
        c.0.sort();
        assert_eq!(c.0.len(), 3);
        assert!(c.0.contains(&(String::from("Bool(true)"), 2)), "{:?}", c.0);
        assert!(c.0.contains(&(String::from("Int(1)"), 2)));
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 1.5, 5.0, 9.0] {
            h.record(v);
        }
        assert_eq!(h.bucket_counts(), &[2, 1, 1, 1]);
        assert_eq!((h.count, h.min, h.max), (5, 0.5, 9.0));
        assert!((h.sum - 17.0).abs() < 1e-9);
    }
}
