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

/// The IPv4 destinations (address, port) of every `connect` a process named `telegen` makes
/// while `during` runs, seen by bpftrace on the syscall's entry.
fn connects_of_the_agent(during: impl FnOnce()) -> Vec<([u8; 4], u16)> {
    let script = "tracepoint:syscalls:sys_enter_connect /comm == \"telegen\"/ \
                  { printf(\"connect %rx\\n\", buf(args->uservaddr, 8)); }";
    let mut bt = Command::new("bpftrace")
        .args(["-e", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bpftrace (installed by cross/bootstrap.sh)");
    let mut out = std::io::BufReader::new(bt.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::{BufRead, Read};
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("Attaching"), "bpftrace: {line}");
    during();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let _ = bt.wait();
    rest.lines()
        .filter_map(|l| l.strip_prefix("connect "))
        .filter_map(|hex| {
            let b: Vec<u8> = hex
                .split("\\x")
                .filter(|s| !s.is_empty())
                .filter_map(|h| u8::from_str_radix(h, 16).ok())
                .collect();
            // AF_INET (2, little-endian), then the port and address in network order.
            (b.len() == 8 && b[0] == 2 && b[1] == 0)
                .then(|| ([b[4], b[5], b[6], b[7]], u16::from_be_bytes([b[2], b[3]])))
        })
        .collect()
}

#[test]
fn by_default_no_packet_goes_to_the_metadata_address_where_dmi_names_no_cloud() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dmi =
        |f: &str| std::fs::read_to_string(format!("/sys/class/dmi/id/{f}")).unwrap_or_default();
    let (vendor, product) = (dmi("sys_vendor"), dmi("product_name"));
    assert!(
        !["Amazon EC2", "Google", "Microsoft Corporation"].contains(&vendor.trim()),
        "this test is for machines that are not cloud VMs: DMI says {vendor} {product}"
    );
    let receiver = Receiver::start("cloud-default");
    let endpoint = receiver.endpoint();
    let mut log = String::new();
    let seen = connects_of_the_agent(|| {
        // The default (auto), as a user's first run has it.
        let mut agent = start_agent(
            &["--cloud-metadata", "auto", "--metric-interval", "200"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
        );
        receiver.wait_for(2, Duration::from_secs(10));
        let (status, _) = terminate(&mut agent, Duration::from_secs(5));
        assert!(status.success(), "exit status {status:?}");
        log = agent_log(&agent);
    });
    // The watcher works: it saw the agent connect to the receiver.
    assert!(
        seen.contains(&([127, 0, 0, 1], receiver.port)),
        "bpftrace saw {seen:?}"
    );
    assert!(
        !seen.iter().any(|(a, _)| *a == [169, 254, 169, 254]),
        "the agent connected to the metadata address: {seen:?}"
    );
    assert!(log.contains("cloud metadata: not asked: "), "{log}");
    // `telegen check` says the same, and why.
    let out = Command::new(env!("CARGO_BIN_EXE_telegen"))
        .arg("check")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("cloud metadata"))
        .unwrap_or_else(|| panic!("no cloud line in check: {out}"));
    assert!(
        line.contains("not asked: ") && line.contains("DMI"),
        "{line}"
    );
}
