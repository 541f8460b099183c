//! Kubernetes: the agent lists this node's pods from an API server on loopback (TLS with a
//! CA of the test's own, a bearer token, pages followed through `continue`), and a server
//! whose cgroup names one of those pods, as the kubelet's systemd driver names a
//! container's, gets the pod's name, namespace, node, workload and labels on the resource
//! of its spans and metrics, and its workload as `service.name`. Then the API server
//! refuses, answers garbage, or has more pods than the agent keeps.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

const WEB_UID: &str = "0cd7e3ac-1d38-4a1e-8e17-5a5c0e5d8f4f";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.telegen-test-token.c2lnbmF0dXJl";

/// A CA and a server certificate for 127.0.0.1 signed by it, made by openssl.
fn pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kubernetes-ca 2>/dev/null",
    );
    sh(
        "openssl req -newkey rsa:2048 -nodes -keyout api.key -out api.csr -subj /CN=kube-apiserver 2>/dev/null && \
        printf 'subjectAltName=IP:127.0.0.1\\n' > api.ext && \
        openssl x509 -req -in api.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile api.ext -out api.pem 2>/dev/null",
    );
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
}

struct Api {
    _proc: Proc,
    port: u16,
}

fn api(dir: &Path, behaviour: &str) -> Api {
    let (cert, key) = (dir.join("api.pem"), dir.join("api.key"));
    let (proc, port) = support_script(
        "kube_api.py",
        &[
            cert.as_os_str(),
            key.as_os_str(),
            TOKEN.as_ref(),
            behaviour.as_ref(),
        ],
    );
    Api { _proc: proc, port }
}

/// A Python HTTP server in the cgroup the kubelet (systemd driver) makes for a container of
/// pod `WEB_UID`.
fn server_in_pod(test: &str) -> (Proc, u16, Cgroup) {
    let id = format!("{:064x}", u128::from(std::process::id()) << 32 | 0xbeef);
    let cg = Cgroup::new(&[
        format!("telegen-{test}-{}.slice", std::process::id()),
        format!("kubepods-burstable-pod{}.slice", WEB_UID.replace('-', "_")),
        format!("cri-containerd-{id}.scope"),
    ]);
    let (server, port) = http_server(&cg.join(), &[]);
    (server, port, cg)
}

/// Runs the agent with `[kubernetes]` pointed at `api` (and `extra` TOML) while curl asks
/// the server three times; the requests received and the agent's log.
fn run(dir: &Path, test: &str, api: &Api, extra: &str, port: u16) -> (Vec<Value>, String) {
    let receiver = Receiver::start(test);
    let config = dir.join(format!("{test}.toml"));
    std::fs::write(
        &config,
        format!(
            "[kubernetes]\napi = \"https://127.0.0.1:{}\"\ntoken_file = \"{}\"\n\
             ca_file = \"{}\"\nnode_name = \"edge-1\"\nrefresh_ms = 1000\n{extra}",
            api.port,
            dir.join("token").display(),
            dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    let endpoint = receiver.endpoint();
    let mut agent = start_agent(
        &[
            "--config",
            config.to_str().unwrap(),
            "--metric-interval",
            "300",
            "--user",
            "root",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("K8S_POD_NAME", "telegen-8x2kq"),
            ("K8S_NAMESPACE", "telegen"),
            ("TELEGEN_LOG", "debug"),
        ],
    );
    // The first listing, then the requests.
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..3 {
        curl_port(port);
    }
    std::thread::sleep(Duration::from_millis(800));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let log = agent_log(&agent);
    let requests = receiver.requests();
    for r in &requests {
        assert!(!r.to_string().contains(TOKEN), "the token left the agent");
    }
    assert!(!log.contains(TOKEN), "the token was logged");
    (requests, log)
}

fn server_spans(requests: &[Value], port: u16) -> Vec<SpanSeen> {
    let p = port.to_string();
    spans(requests)
        .into_iter()
        .filter(|s| s.kind == "SPAN_KIND_SERVER" && s.attr("server.port") == Some(&p))
        .collect()
}

#[test]
fn a_process_in_a_pod_carries_the_pod_and_its_workload() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let dir = scratch("kube", "pki");
    pki(&dir);
    let api = api(&dir, "ok");
    let (server, port, _cg) = server_in_pod("kube");
    let (requests, log) = run(&dir, "kube", &api, "", port);
    drop(server);
    // Both pages were read: three pods.
    assert!(log.contains("Kubernetes: 3 pods on node edge-1"), "{log}");
    let served = server_spans(&requests, port);
    assert_eq!(served.len(), 3, "{log}");
    for s in &served {
        let r = &s.resource;
        assert_eq!(attr(r, "k8s.pod.uid"), Some(WEB_UID));
        assert_eq!(
            attr(r, "k8s.pod.name"),
            Some("web-5d9c8b7f6d-x7k2p"),
            "{r:?}"
        );
        assert_eq!(attr(r, "k8s.namespace.name"), Some("shop"));
        assert_eq!(attr(r, "k8s.node.name"), Some("edge-1"));
        assert_eq!(attr(r, "k8s.deployment.name"), Some("web"));
        assert_eq!(attr(r, "k8s.replicaset.name"), Some("web-5d9c8b7f6d"));
        assert_eq!(attr(r, "k8s.pod.label.app"), Some("web"));
        assert_eq!(attr(r, "k8s.pod.label.tier"), Some("frontend"));
        assert_eq!(attr(r, "container.runtime"), Some("containerd"));
        // No OTEL_SERVICE_NAME: the workload names the service.
        assert_eq!(attr(r, "service.name"), Some("web"));
    }
    // The server's request metric is under the same resource.
    let server_pid = served[0]
        .resource
        .iter()
        .find(|(k, _)| k == "process.pid")
        .unwrap()
        .1
        .clone();
    let durations = points(&requests, "http.server.request.duration");
    let mine = durations
        .iter()
        .find(|p| attr(&p.attrs, "process.pid") == Some(&server_pid))
        .expect("the server's duration series");
    assert_eq!(
        attr(&mine.resource, "k8s.pod.name"),
        Some("web-5d9c8b7f6d-x7k2p")
    );
    assert_eq!(attr(&mine.resource, "service.name"), Some("web"));
    // curl is on the host: no pod.
    let curl = spans(&requests)
        .into_iter()
        .find(|s| s.kind == "SPAN_KIND_CLIENT" && s.process() == "curl")
        .expect("curl's spans");
    assert_eq!(attr(&curl.resource, "k8s.pod.name"), None);
    // The agent's own resource: its pod from the downward API environment.
    let events = points(&requests, "telegen.agent.events");
    assert_eq!(
        attr(&events[0].resource, "k8s.pod.name"),
        Some("telegen-8x2kq")
    );
    assert_eq!(
        attr(&events[0].resource, "k8s.namespace.name"),
        Some("telegen")
    );
    assert_no_drops(&requests, &["pod_table_full"]);
}

#[test]
fn a_refusing_or_garbled_api_server_or_a_full_cache_is_said_and_counted() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let dir = scratch("kube-faults", "pki");
    pki(&dir);
    let (server, port, _cg) = server_in_pod("kube-faults");
    for (behaviour, extra, said) in [
        (
            "forbidden",
            "",
            "HTTP 403 (the service account may not list pods",
        ),
        ("garbage", "", "not JSON"),
        ("ok", "max_pods = 1\n", "Kubernetes: 1 pods on node edge-1"),
    ] {
        let api = api(&dir, behaviour);
        let (requests, log) = run(&dir, &format!("kube-{behaviour}"), &api, extra, port);
        assert!(log.contains(said), "{behaviour}: {log}");
        let spans = server_spans(&requests, port);
        assert_eq!(spans.len(), 3, "{behaviour}");
        for s in &spans {
            // The cgroup still names the pod's uid.
            assert_eq!(attr(&s.resource, "k8s.pod.uid"), Some(WEB_UID));
        }
        if behaviour == "ok" {
            // The web pod came first and was kept; the other two were not.
            let full = latest_total(
                &requests,
                "telegen.agent.dropped",
                &[("reason", "pod_table_full")],
            );
            assert!(full >= 2, "pod_table_full {full}");
            assert_eq!(
                attr(&spans[0].resource, "k8s.pod.name"),
                Some("web-5d9c8b7f6d-x7k2p")
            );
        } else {
            assert_eq!(
                attr(&spans[0].resource, "k8s.pod.name"),
                None,
                "{behaviour}"
            );
            assert_eq!(attr(&spans[0].resource, "service.name"), Some("python3"));
            // Said once, not at every refresh.
            assert_eq!(log.matches(said).count(), 1, "{behaviour}: {log}");
        }
    }
    drop(server);
}
