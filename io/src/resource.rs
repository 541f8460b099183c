//! The agent's own OTLP resource: service, host, OS and agent identity.

use crate::procfs;
use opentelemetry_proto::tonic::resource::v1::Resource;
use telegen_config::Config;
use telegen_export::otlp;

/// Builds the resource: detected attributes, then `OTEL_RESOURCE_ATTRIBUTES` (which may
/// override them), then `service.name` from `OTEL_SERVICE_NAME`/config, which wins.
pub fn build(config: &Config) -> Resource {
    build_with(config, &[])
}

/// As [`build`], with `found` (the cloud's attributes) over the detected ones and under
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub fn build_with(config: &Config, found: &[(String, String)]) -> Resource {
    let (node, release) = procfs::uname();
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let os_description = procfs::os_pretty_name(&os_release).map_or_else(
        || format!("Linux {release}"),
        |p| format!("{p} (Linux {release})"),
    );
    let version = env!("CARGO_PKG_VERSION");
    let mut attrs: Vec<(String, String)> = vec![
        ("service.name".into(), "telegen".into()),
        ("service.version".into(), version.into()),
        ("host.name".into(), node),
        ("host.arch".into(), procfs::host_arch().into()),
        ("os.type".into(), "linux".into()),
        ("os.description".into(), os_description),
        (
            "os.version".into(),
            procfs::os_release_field(&os_release, "VERSION_ID").unwrap_or(release.clone()),
        ),
        ("telemetry.sdk.name".into(), "telegen".into()),
        ("telemetry.sdk.language".into(), "rust".into()),
        ("telemetry.sdk.version".into(), version.into()),
    ];
    if let Some(name) = procfs::os_release_field(&os_release, "NAME") {
        attrs.push(("os.name".into(), name));
    }
    if let Some(id) = procfs::machine_id() {
        attrs.push(("host.id".into(), id));
    }
    // No convention names it: the agent's own namespace.
    if let Some(b) = procfs::boot_time() {
        attrs.push(("telegen.host.boot_time".into(), procfs::rfc3339(b)));
    }
    let mut set = |k: &str, v: &str| match attrs.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => attrs.push((k.to_string(), v.to_string())),
    };
    for (k, v) in found {
        set(k, v);
    }
    // The agent's own pod, from the downward API (the manifests set these).
    for (var, key) in [
        ("K8S_POD_NAME", "k8s.pod.name"),
        ("K8S_POD_UID", "k8s.pod.uid"),
        ("K8S_NAMESPACE", "k8s.namespace.name"),
        ("K8S_NODE_NAME", "k8s.node.name"),
    ] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
            && v.len() <= 253
        {
            set(key, &v);
        }
    }
    for (k, v) in &config.resource_attributes {
        set(k, v);
    }
    if let Some(name) = &config.service_name {
        set("service.name", name);
    }
    otlp::resource(&attrs)
}
