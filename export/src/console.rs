//! Signals as readable lines, for `--console`.

use std::fmt::Write;
use telegen_core::http::Span;
use telegen_core::metrics::{Attr, AttrValue, Histogram, MetricDesc, MetricSink};
use telegen_core::record::comm_str;
use telegen_core::tcp::Side;

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

impl ConsoleSink {
    /// One span as a line: `span SERVER GET /users/{id} 200 1.234ms nginx[42] 127.0.0.1:80
    /// trace=<id> span=<id> parent=<id>`.
    pub fn span_line(s: &Span) -> String {
        let mut name = heapless::String::new();
        s.name(&mut name);
        let (server, port) = s.server();
        let kind = match s.side {
            Side::Server => "SERVER",
            Side::Client => "CLIENT",
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "span {kind} {name} {} {:.3}ms {}[{}] {server}:{port} trace={} span={}",
            match s.protocol {
                telegen_core::record::Protocol::Http | telegen_core::record::Protocol::Http2 => {
                    s.status.to_string()
                }
                telegen_core::record::Protocol::Grpc => {
                    telegen_core::http2::grpc_status_name(s.status).to_string()
                }
                telegen_core::record::Protocol::Mqtt => "mqtt".to_string(),
                telegen_core::record::Protocol::Dns => "dns".to_string(),
                telegen_core::record::Protocol::Amqp => "amqp".to_string(),
                telegen_core::record::Protocol::Kafka => "kafka".to_string(),
                p => p.db_system().unwrap_or_default().to_string(),
            },
            (s.end_ns - s.start_ns) as f64 / 1e6,
            comm_str(&s.process.comm),
            s.process.pid,
            hex(&s.context.trace_id),
            hex(&s.context.span_id),
        );
        if s.parent_span_id != [0; 8] {
            let _ = write!(out, " parent={}", hex(&s.parent_span_id));
        }
        let mut error = heapless::String::new();
        if s.error_type(&mut error) {
            let _ = write!(out, " error={error}");
        }
        out
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
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
