//! The standard `OTEL_*` environment variables, with the meaning the specification gives them.

use crate::endpoint::parse_from;
use crate::{Compression, Config, Error, parse_kv_list, parse_u64};

/// Applies every variable that is set; an unparsable value is an error naming the variable.
pub(crate) fn apply(c: &mut Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), Error> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        c.otlp.endpoint = Some(parse_from("OTEL_EXPORTER_OTLP_ENDPOINT", &v)?);
    }
    for (var, sig) in [
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &mut c.metrics),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &mut c.traces),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &mut c.logs),
    ] {
        if let Some(v) = get(var) {
            sig.endpoint = Some(parse_from(var, &v)?);
        }
    }
    if let Some(v) = get("OTEL_EXPORTER_OTLP_HEADERS") {
        c.otlp.headers = parse_kv_list("OTEL_EXPORTER_OTLP_HEADERS", &v)?;
    }
    if let Some(v) = get("OTEL_EXPORTER_OTLP_COMPRESSION") {
        c.otlp.compression = compression("OTEL_EXPORTER_OTLP_COMPRESSION", &v)?;
    }
    if let Some(v) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
        protocol("OTEL_EXPORTER_OTLP_PROTOCOL", &v)?;
    }
    if let Some(v) = get("OTEL_EXPORTER_OTLP_TIMEOUT") {
        c.otlp.timeout_ms = parse_u64("OTEL_EXPORTER_OTLP_TIMEOUT", &v)?;
    }
    if let Some(v) = get("OTEL_SERVICE_NAME") {
        c.service_name = Some(v.trim().to_string());
    }
    if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
        c.resource_attributes
            .extend(parse_kv_list("OTEL_RESOURCE_ATTRIBUTES", &v)?);
    }
    for (var, slot) in [
        ("OTEL_METRIC_EXPORT_INTERVAL", &mut c.metrics.interval_ms),
        ("OTEL_BSP_SCHEDULE_DELAY", &mut c.traces.interval_ms),
        ("OTEL_BLRP_SCHEDULE_DELAY", &mut c.logs.interval_ms),
    ] {
        if let Some(v) = get(var) {
            *slot = parse_u64(var, &v)?;
        }
    }
    Ok(())
}

pub(crate) fn compression(source: &str, v: &str) -> Result<Compression, Error> {
    match v.trim() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        other => Err(Error::new(
            source,
            format!("expected gzip or none, got {other:?}"),
        )),
    }
}

/// Only `http/protobuf` is implemented; the others are refused with the reason.
pub(crate) fn protocol(source: &str, v: &str) -> Result<(), Error> {
    match v.trim() {
        "http/protobuf" => Ok(()),
        "grpc" => Err(Error::new(
            source,
            "grpc is not supported: telegen speaks OTLP/HTTP; point it at the collector's \
             HTTP port (4318) with http/protobuf",
        )),
        other => Err(Error::new(
            source,
            format!("expected http/protobuf, got {other:?}"),
        )),
    }
}
