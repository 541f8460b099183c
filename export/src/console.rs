//! Signals as readable lines, for `--console`.

use std::fmt::Write;
use telegen_core::metrics::{Attr, AttrValue, Histogram, MetricDesc, MetricSink};

/// Renders every point it is given as one line of text.
#[derive(Default)]
pub struct ConsoleSink {
    pub out: String,
}

fn attrs_text(out: &mut String, attrs: &[Attr]) {
    out.push('{');
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = match &a.value {
            AttrValue::Str(s) => write!(out, "{}={:?}", a.key, s.as_str()),
            AttrValue::Int(v) => write!(out, "{}={v}", a.key),
            AttrValue::Bool(v) => write!(out, "{}={v}", a.key),
        };
    }
    out.push('}');
}

impl MetricSink for ConsoleSink {
    fn counter(&mut self, desc: &MetricDesc, attrs: &[Attr], value: u64) {
        let _ = write!(self.out, "metric {}", desc.name);
        attrs_text(&mut self.out, attrs);
        let _ = writeln!(self.out, " {value}");
    }

    fn gauge(&mut self, desc: &MetricDesc, attrs: &[Attr], value: i64) {
        let _ = write!(self.out, "metric {}", desc.name);
        attrs_text(&mut self.out, attrs);
        let _ = writeln!(self.out, " {value}");
    }

    fn histogram(&mut self, desc: &MetricDesc, attrs: &[Attr], h: &Histogram) {
        let _ = write!(self.out, "metric {}", desc.name);
        attrs_text(&mut self.out, attrs);
        let _ = write!(self.out, " count={} sum={:.6}{}", h.count, h.sum, desc.unit);
        if h.count > 0 {
            let _ = write!(self.out, " min={:.6} max={:.6}", h.min, h.max);
        }
        self.out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegen_core::metrics::Kind;

    #[test]
    fn one_line_per_point() {
        static D: MetricDesc = MetricDesc {
            name: "m",
            description: "",
            unit: "s",
            kind: Kind::Histogram,
        };
        static B: [f64; 1] = [1.0];
        let mut s = ConsoleSink::default();
        s.counter(&D, &[Attr::str("a", "x"), Attr::int("p", 80)], 3);
        let mut h = Histogram::new(&B);
        h.record(0.5);
        s.histogram(&D, &[], &h);
        assert_eq!(
            s.out,
            "metric m{a=\"x\",p=80} 3\nmetric m{} count=1 sum=0.500000s min=0.500000 max=0.500000\n"
        );
    }
}
