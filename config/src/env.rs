//! The standard `OTEL_*` environment variables, with the meaning the specification gives them.
//!
//! `OTEL_EXPORTER_OTLP_<KEY>` sets the base value of every signal; the signal-specific
//! `OTEL_EXPORTER_OTLP_{METRICS,TRACES,LOGS}_<KEY>` overrides it for that signal.

use crate::endpoint::parse_from;
use crate::{Compression, Config, Error, OtlpOverrides, Protocol, parse_kv_list, parse_u64};
use std::path::PathBuf;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the overridable OTLP keys under `prefix` (e.g. `OTEL_EXPORTER_OTLP_METRICS_`).
fn overrides(env: Env<'_>, prefix: &str) -> Result<OtlpOverrides, Error> {
    let get = |k: &str| {
        let var = format!("{prefix}{k}");
        env(&var).filter(|v| !v.trim().is_empty()).map(|v| (var, v))
    };
    let mut o = OtlpOverrides::default();
    if let Some((var, v)) = get("HEADERS") {
        o.headers = Some(parse_kv_list(&var, &v)?);
    }
    if let Some((var, v)) = get("COMPRESSION") {
        o.compression = Some(compression(&var, &v)?);
    }
    if let Some((var, v)) = get("PROTOCOL") {
        o.protocol = Some(protocol(&var, &v)?);
    }
    if let Some((var, v)) = get("TIMEOUT") {
        o.timeout_ms = Some(parse_u64(&var, &v)?);
    }
    o.certificate = get("CERTIFICATE").map(|(_, v)| PathBuf::from(v.trim()));
    o.client_key = get("CLIENT_KEY").map(|(_, v)| PathBuf::from(v.trim()));
    o.client_certificate = get("CLIENT_CERTIFICATE").map(|(_, v)| PathBuf::from(v.trim()));
    Ok(o)
}

/// Applies every variable that is set; an unparsable value is an error naming the variable.
pub(crate) fn apply(c: &mut Config, env: Env<'_>) -> Result<(), Error> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        c.otlp.endpoint = Some(parse_from("OTEL_EXPORTER_OTLP_ENDPOINT", &v)?);
    }
    c.otlp.base.merge(overrides(env, "OTEL_EXPORTER_OTLP_")?);
    for (name, sig) in [
        ("METRICS", &mut c.metrics),
        ("TRACES", &mut c.traces),
        ("LOGS", &mut c.logs),
    ] {
        let var = format!("OTEL_EXPORTER_OTLP_{name}_ENDPOINT");
        if let Some(v) = get(&var) {
            sig.endpoint = Some(parse_from(&var, &v)?);
        }
        sig.otlp
            .merge(overrides(env, &format!("OTEL_EXPORTER_OTLP_{name}_"))?);
        // OTEL_{METRICS,TRACES,LOGS}_EXPORTER: "otlp" (the default) or "none".
        let var = format!("OTEL_{name}_EXPORTER");
        if let Some(v) = get(&var) {
            sig.enabled = match v.trim() {
                "otlp" => true,
                "none" => false,
                other => {
                    return Err(Error::new(
                        &var,
                        format!("{other:?} is not supported: expected \"otlp\" or \"none\""),
                    ));
                }
            };
        }
    }
    if let Some(v) = get("OTEL_TRACES_SAMPLER") {
        c.sampler = crate::Sampler::parse(&v, get("OTEL_TRACES_SAMPLER_ARG").as_deref())?;
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

/// `http/protobuf` and `http/json`; `grpc` is refused with the reason.
pub(crate) fn protocol(source: &str, v: &str) -> Result<Protocol, Error> {
    match v.trim() {
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Ok(Protocol::HttpJson),
        "grpc" => Err(Error::new(
            source,
            "grpc is not supported: telegen speaks OTLP/HTTP; point it at the collector's \
             HTTP port (4318) with http/protobuf or http/json",
        )),
        other => Err(Error::new(
            source,
            format!("expected http/protobuf or http/json, got {other:?}"),
        )),
    }
}
