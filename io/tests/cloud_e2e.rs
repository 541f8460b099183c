//! Cloud metadata: the agent asks a metadata service on loopback (`--cloud-metadata`), which
//! answers as AWS, GCP or Azure do, with bodies laid out as their documentation shows; then
//! slowly, with errors, with malformed bodies, or not at all. The exported resource must
//! carry what was found, and nothing else may suffer: metrics keep their interval while the
//! probes wait.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::*;

struct Metadata {
    proc: Proc,
    port: u16,
}

fn metadata(provider: &str, behaviour: &str) -> Metadata {
    let args = [provider.as_ref(), behaviour.as_ref()];
    let (proc, port) = support_script("metadata_server.py", &args);
    Metadata { proc, port }
}

/// Runs the agent against `md` for `run`, exporting metrics every 200 ms; returns the
/// requests the receiver decoded and the agent's log.
fn agent_against(md: &Metadata, run: Duration, env: &[(&str, &str)]) -> (Vec<Value>, String) {
    let receiver = Receiver::start(&format!("cloud-{}", md.port));
    let endpoint = receiver.endpoint();
    let url = format!("http://127.0.0.1:{}", md.port);
    let config = scratch("cloud", &format!("telegen-{}.toml", md.port));
    std::fs::write(&config, "[discovery]\ncloud_timeout_ms = 700\n").unwrap();
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("TELEGEN_LOG", "debug"),
    ];
    all.extend_from_slice(env);
    let mut agent = start_agent(
        &[
            "--config",
            config.to_str().unwrap(),
            "--cloud-metadata",
            &url,
            "--metric-interval",
            "200",
        ],
        &all,
    );
    std::thread::sleep(run);
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let log = agent_log(&agent);
    (receiver.requests(), log)
}

fn metric_resources(requests: &[Value]) -> Vec<Vec<(String, String)>> {
    requests
        .iter()
        .flat_map(|r| {
            r["request"]["resourceMetrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|rm| attrs(&rm["resource"]))
        .collect()
}

#[test]
fn each_provider_is_recognised_and_joins_the_resource() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let cases = [
        (
            "aws",
            "aws_ec2",
            "eu-central-1",
            "i-0a1b2c3d4e5f60718",
            Some("t4g.small"),
        ),
        (
            "gcp",
            "gcp_compute_engine",
            "europe-west4",
            "8141295766102245571",
            Some("e2-small"),
        ),
        (
            "azure",
            "azure_vm",
            "westeurope",
            "13f56399-bd52-4150-9748-7190aae1ff21",
            Some("Standard_B2s"),
        ),
    ];
    for (provider, platform, region, id, host_type) in cases {
        let md = metadata(provider, "ok");
        // OTEL_RESOURCE_ATTRIBUTES wins over what was found.
        let (requests, log) = agent_against(
            &md,
            Duration::from_millis(1200),
            &[("OTEL_RESOURCE_ATTRIBUTES", "cloud.account.id=override")],
        );
        assert!(
            log.contains(&format!("cloud: {provider} {id} in {region}")),
            "{log}"
        );
        let resources = metric_resources(&requests);
        let last = resources.last().expect("metrics were exported");
        assert_eq!(attr(last, "cloud.provider"), Some(provider), "{last:?}");
        assert_eq!(attr(last, "cloud.platform"), Some(platform));
        assert_eq!(attr(last, "cloud.region"), Some(region));
        assert_eq!(attr(last, "host.id"), Some(id));
        assert_eq!(attr(last, "host.type"), host_type);
        assert_eq!(attr(last, "cloud.account.id"), Some("override"));
        // Exactly one cloud.provider: the other two probes found nothing.
        let n = last.iter().filter(|(k, _)| k == "cloud.provider").count();
        assert_eq!(n, 1);
        drop(md.proc);
    }
}

#[test]
fn off_cloud_slow_failing_and_malformed_services_add_nothing_and_block_nothing() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    for (provider, behaviour) in [
        ("aws", "slow"),
        ("gcp", "error"),
        ("azure", "malformed"),
        ("aws", "malformed"),
    ] {
        let md = metadata(provider, behaviour);
        let (requests, log) = agent_against(&md, Duration::from_millis(1500), &[]);
        let resources = metric_resources(&requests);
        // The probes never held the loop up: exports every 200 ms from the start, slow
        // service or not (about 7 in 1.5 s; at least 5 asked).
        assert!(
            resources.len() >= 5,
            "{provider}/{behaviour}: {} exports",
            resources.len()
        );
        for r in &resources {
            assert_eq!(
                attr(r, "cloud.provider"),
                None,
                "{provider}/{behaviour}: {r:?}"
            );
        }
        // The machine's own host.id stays (the machine id).
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        if !machine_id.trim().is_empty() {
            assert_eq!(attr(&resources[0], "host.id"), Some(machine_id.trim()));
        }
        match behaviour {
            "malformed" => assert!(
                log.contains(&format!(
                    "cloud metadata: {provider} answered, but not as documented"
                )),
                "{log}"
            ),
            _ => {
                assert!(log.contains("no cloud metadata service ("), "{log}");
                let warned = log
                    .lines()
                    .any(|l| l.starts_with("telegen warn:") && l.contains("cloud"));
                assert!(!warned, "off-cloud is not a warning: {log}");
            }
        }
        if behaviour == "slow" {
            assert!(log.contains("aws: no answer in time"), "{log}");
        }
        drop(md.proc);
    }
    // Nothing listening at all: refused at once.
    let port = free_port();
    let md = Metadata {
        proc: Proc(Command::new("true").spawn().unwrap()),
        port,
    };
    let (requests, log) = agent_against(&md, Duration::from_millis(600), &[]);
    assert!(log.contains("aws: Connection refused"), "{log}");
    assert!(!metric_resources(&requests).is_empty());
}
