//! The TOML configuration file. Unknown keys are errors, reported with file, line and column.

use crate::endpoint::parse_from;
use crate::env::{compression, protocol};
use crate::{Config, Error, SignalConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    otlp: Option<OtlpFile>,
    metrics: Option<SignalFile>,
    traces: Option<SignalFile>,
    logs: Option<SignalFile>,
    service: Option<ServiceFile>,
    limits: Option<LimitsFile>,
    console: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpFile {
    endpoint: Option<String>,
    protocol: Option<String>,
    compression: Option<String>,
    timeout_ms: Option<u64>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFile {
    enabled: Option<bool>,
    endpoint: Option<String>,
    batch_size: Option<usize>,
    interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: Option<String>,
    resource_attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    connections: Option<usize>,
    listeners: Option<usize>,
    series_per_metric: Option<usize>,
    ring_buffer_bytes: Option<u32>,
    export_queue_bytes: Option<usize>,
}

/// Reads and applies the file at `path`.
pub(crate) fn apply(c: &mut Config, path: &Path) -> Result<(), Error> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(&name, format!("cannot read the config file: {e}")))?;
    apply_str(c, &name, &text)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(at.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub(crate) fn apply_str(c: &mut Config, name: &str, text: &str) -> Result<(), Error> {
    let f: File = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        Error::new(
            format!("{name}:{line}:{col}"),
            e.message().trim().to_string(),
        )
    })?;
    let key = |k: &str| format!("{name}: {k}");
    if let Some(v) = f.console {
        c.console = v;
    }
    if let Some(o) = f.otlp {
        if let Some(v) = o.endpoint {
            c.otlp.endpoint = Some(parse_from(&key("otlp.endpoint"), &v)?);
        }
        if let Some(v) = o.protocol {
            protocol(&key("otlp.protocol"), &v)?;
        }
        if let Some(v) = o.compression {
            c.otlp.compression = compression(&key("otlp.compression"), &v)?;
        }
        if let Some(v) = o.timeout_ms {
            c.otlp.timeout_ms = v;
        }
        if let Some(h) = o.headers {
            c.otlp.headers = h.into_iter().collect();
        }
    }
    for (section, file, sig) in [
        ("metrics", f.metrics, &mut c.metrics),
        ("traces", f.traces, &mut c.traces),
        ("logs", f.logs, &mut c.logs),
    ] {
        if let Some(s) = file {
            apply_signal(sig, s, &key(&format!("{section}.endpoint")))?;
        }
    }
    if let Some(s) = f.service {
        if let Some(n) = s.name {
            c.service_name = Some(n);
        }
        if let Some(a) = s.resource_attributes {
            c.resource_attributes.extend(a);
        }
    }
    if let Some(l) = f.limits {
        let d = &mut c.limits;
        d.connections = l.connections.unwrap_or(d.connections);
        d.listeners = l.listeners.unwrap_or(d.listeners);
        d.series_per_metric = l.series_per_metric.unwrap_or(d.series_per_metric);
        d.ring_buffer_bytes = l.ring_buffer_bytes.unwrap_or(d.ring_buffer_bytes);
        d.export_queue_bytes = l.export_queue_bytes.unwrap_or(d.export_queue_bytes);
    }
    Ok(())
}

fn apply_signal(sig: &mut SignalConfig, s: SignalFile, endpoint_key: &str) -> Result<(), Error> {
    if let Some(v) = s.enabled {
        sig.enabled = v;
    }
    if let Some(v) = s.endpoint {
        sig.endpoint = Some(parse_from(endpoint_key, &v)?);
    }
    if let Some(v) = s.batch_size {
        sig.batch_size = v;
    }
    if let Some(v) = s.interval_ms {
        sig.interval_ms = v;
    }
    Ok(())
}
