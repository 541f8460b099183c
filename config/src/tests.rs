use super::*;
use std::collections::HashMap;
use std::ffi::OsString;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, Error> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load(args.iter().map(OsString::from), &|k| env.get(k).cloned())
}

fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
    match run(args, env) {
        Ok(Command::Run(c) | Command::Check(c)) => c,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn write(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("telegen-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn defaults_follow_the_specification() {
    let c = config(&[], &[]);
    let m = c.endpoint_for(Signal::Metrics).unwrap();
    assert_eq!(m.to_string(), "http://localhost:4318/v1/metrics");
    assert_eq!(c.metrics.interval_ms, 60_000);
    let e = c.export_settings(Signal::Metrics).unwrap();
    assert_eq!(
        (e.timeout_ms, e.compression, e.protocol),
        (10_000, Compression::Gzip, Protocol::HttpProtobuf)
    );
    assert_eq!(e.max_body_bytes, 20 << 20);
    assert_eq!(e.spool, None);
}

#[test]
fn signal_endpoints_are_used_as_is_and_base_endpoints_get_the_path() {
    let c = config(
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector:4318/otlp/",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[::1]:9000/custom",
            ),
        ],
    );
    let m = c.endpoint_for(Signal::Metrics).unwrap();
    assert_eq!(m.to_string(), "https://collector:4318/otlp/v1/metrics");
    assert_eq!(m.scheme, Scheme::Https);
    let t = c.endpoint_for(Signal::Traces).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path.as_str()),
        ("::1", 9000, "/custom")
    );
    assert_eq!(t.authority(), "[::1]:9000");
    let d = Endpoint::parse("http://h").unwrap();
    assert_eq!(
        (d.port, d.join_signal("v1/logs").path.as_str()),
        (80, "/v1/logs")
    );
}

#[test]
fn console_mode_exports_only_to_an_explicit_endpoint() {
    let c = config(&["--console"], &[]);
    assert_eq!(c.endpoint_for(Signal::Metrics), None);
    let c = config(
        &["--console", "--otlp-endpoint", "http://127.0.0.1:1234"],
        &[],
    );
    assert_eq!(c.endpoint_for(Signal::Metrics).unwrap().port, 1234);
}

#[test]
fn env_headers_and_resource_attributes_are_percent_decoded() {
    let c = config(
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=se%20cret, x-tenant=a%2Cb",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=edge,rack=r%3D1",
            ),
            ("OTEL_SERVICE_NAME", "gateway"),
        ],
    );
    assert_eq!(
        c.export_settings(Signal::Metrics).unwrap().headers,
        vec![
            ("api-key".into(), "se cret".into()),
            ("x-tenant".into(), "a,b".into())
        ]
    );
    assert_eq!(c.resource_attributes[1], ("rack".into(), "r=1".into()));
    assert_eq!(c.service_name.as_deref(), Some("gateway"));
}

#[test]
fn precedence_is_cli_over_env_over_file() {
    let f = write(
        "prec.toml",
        "[otlp]\nendpoint = \"http://file:1\"\n[metrics]\ninterval_ms = 1000\nbatch_size = 7\n",
    );
    let c = config(&["-c", &f], &[]);
    assert_eq!(c.otlp.endpoint.as_ref().unwrap().host, "file");
    assert_eq!((c.metrics.interval_ms, c.metrics.batch_size), (1000, 7));
    let c = config(
        &["-c", &f],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:2")],
    );
    assert_eq!(c.otlp.endpoint.as_ref().unwrap().host, "env");
    let c = config(
        &[
            "-c",
            &f,
            "--otlp-endpoint",
            "http://cli:3",
            "--metric-interval",
            "500",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:2"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "900"),
        ],
    );
    assert_eq!(c.otlp.endpoint.as_ref().unwrap().host, "cli");
    assert_eq!(c.metrics.interval_ms, 500);
}

#[test]
fn file_errors_name_the_file_line_and_what_was_expected() {
    let f = write(
        "bad.toml",
        "[otlp]\nendpoint = \"http://x\"\n\n[limits]\nconections = 5\n",
    );
    let e = run(&["--config", &f], &[]).unwrap_err();
    assert!(e.source.ends_with("bad.toml:5:1"), "{e}");
    assert!(e.message.contains("unknown field `conections`"), "{e}");
    assert!(
        e.message.contains("connections"),
        "lists what is expected: {e}"
    );

    let f = write("type.toml", "[metrics]\ninterval_ms = \"soon\"\n");
    let e = run(&["--config", &f], &[]).unwrap_err();
    assert!(e.source.ends_with("type.toml:2:15"), "{e}");

    let e = run(&["--config", "/nonexistent/telegen.toml"], &[]).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn bad_values_are_refused_with_their_source() {
    let e = run(&["--bogus"], &[]).unwrap_err();
    assert!(e.message.contains("--bogus"), "{e}");
    let e = run(&["frobnicate"], &[]).unwrap_err();
    assert!(e.message.contains("check"), "{e}");
    let e = run(&[], &[("OTEL_METRIC_EXPORT_INTERVAL", "10s")]).unwrap_err();
    assert_eq!(e.source, "OTEL_METRIC_EXPORT_INTERVAL");
    let e = run(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
    assert!(e.message.contains("http://"), "{e}");
    let e = run(&[], &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
    assert!(e.message.contains("4318"), "{e}");
    let e = run(&[], &[("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "x")]).unwrap_err();
    assert_eq!(e.source, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT");
    let e = run(&[], &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")]).unwrap_err();
    assert!(e.message.contains("client certificate"), "{e}");

    let e = run(&[], &[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).unwrap_err();
    assert!(e.message.contains("gzip"), "{e}");
    let f = write("ring.toml", "[limits]\nring_buffer_bytes = 5000\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.message.contains("power of two"), "{e}");
    assert_eq!(config(&[], &[]).limits.db_connections, 64);
    assert_eq!(config(&[], &[]).limits.http2_connections, 32);
    let f = write("h2.toml", "[limits]\nhttp2_connections = 4\n");
    assert_eq!(config(&["-c", &f], &[]).limits.http2_connections, 4);
    assert!(config(&[], &[]).dns_spans);
    let f = write("dns.toml", "[dns]\nspans = false\n");
    assert!(!config(&["-c", &f], &[]).dns_spans);
    let f = write("dns-bad.toml", "[dns]\nspan = false\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("span"), "{e}");
    let f = write("db.toml", "[limits]\ndb_connections = 8\n");
    assert_eq!(config(&["-c", &f], &[]).limits.db_connections, 8);
    let f = write("db0.toml", "[limits]\ndb_connections = 0\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("limits.db_connections"), "{e}");
}

#[test]
fn header_values_never_appear_in_errors() {
    let e = run(
        &[],
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%ZZtopsecret",
        )],
    )
    .unwrap_err();
    assert!(!e.to_string().contains("topsecret"), "{e}");
    let e = run(&[], &[("OTEL_EXPORTER_OTLP_HEADERS", "Bearer topsecret")]).unwrap_err();
    assert!(!e.to_string().contains("topsecret"), "{e}");
}

#[test]
fn commands() {
    assert_eq!(run(&["--help"], &[]), Ok(Command::Help));
    assert_eq!(run(&["-V"], &[]), Ok(Command::Version));
    assert!(matches!(run(&["check"], &[]), Ok(Command::Check(_))));
}

#[test]
fn signal_settings_override_the_base_ones() {
    let c = config(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ],
    );
    let m = c.export_settings(Signal::Metrics).unwrap();
    assert_eq!(m.headers, vec![("b".to_string(), "2".to_string())]);
    assert_eq!((m.protocol, m.timeout_ms), (Protocol::HttpJson, 5000));
    assert_eq!(
        m.certificate.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    let t = c.export_settings(Signal::Traces).unwrap();
    assert_eq!(t.headers, vec![("a".to_string(), "1".to_string())]);
    assert_eq!(
        (t.protocol, t.compression),
        (Protocol::HttpProtobuf, Compression::None)
    );
}

#[test]
fn file_sets_tls_retry_and_spool() {
    let f = write(
        "tls.toml",
        "[otlp]\ncertificate = \"/ca.pem\"\nclient_key = \"/k.pem\"\nclient_certificate = \"/c.pem\"\n\
         retry_initial_ms = 200\nretry_max_ms = 800\nmax_body_bytes = 4096\n\
         [metrics]\ncompression = \"none\"\n[spool]\ndir = \"/var/spool/telegen\"\nmax_bytes = 1048576\nfsync = \"never\"\n",
    );
    let c = config(&["-c", &f], &[]);
    let m = c.export_settings(Signal::Metrics).unwrap();
    assert_eq!(
        m.client_key.as_deref(),
        Some(std::path::Path::new("/k.pem"))
    );
    assert_eq!(
        (m.retry_initial_ms, m.retry_max_ms, m.max_body_bytes),
        (200, 800, 4096)
    );
    assert_eq!(m.compression, Compression::None);
    let sp = m.spool.unwrap();
    assert_eq!(sp.dir, std::path::Path::new("/var/spool/telegen/metrics"));
    assert_eq!((sp.max_bytes, sp.fsync), (1 << 20, Fsync::Never));
    let c = config(&["--spool-dir", "/tmp/sp"], &[]);
    assert_eq!(
        c.export_settings(Signal::Metrics)
            .unwrap()
            .spool
            .unwrap()
            .fsync,
        Fsync::Always
    );
    let f = write("sp.toml", "[spool]\ndir = \"/x\"\nfsync = \"sometimes\"\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.message.contains("always or never"), "{e}");
}

#[test]
fn the_run_time_user() {
    assert_eq!(config(&[], &[]).user.as_deref(), Some("nobody"));
    assert_eq!(
        config(&["--user", "telegen"], &[]).user.as_deref(),
        Some("telegen")
    );
    assert_eq!(config(&["--user", "root"], &[]).user, None);
    let f = write("user.toml", "[security]\nuser = \"daemon\"\n");
    assert_eq!(config(&["-c", &f], &[]).user.as_deref(), Some("daemon"));
}

#[test]
fn the_kernel_transport() {
    assert_eq!(config(&[], &[]).transport, Transport::Auto);
    assert_eq!(
        config(&["--transport", "perf"], &[]).transport,
        Transport::Perf
    );
    let f = write("transport.toml", "[kernel]\ntransport = \"ring\"\n");
    assert_eq!(config(&["-c", &f], &[]).transport, Transport::Ring);
    let e = run(&["--transport", "pipe"], &[]).unwrap_err();
    assert!(e.message.contains("auto, ring or perf"), "{e}");
}

#[test]
fn the_capture_join() {
    assert_eq!(config(&[], &[]).capture_join, CaptureJoin::Auto);
    assert_eq!(
        config(&["--capture-join", "descriptor"], &[]).capture_join,
        CaptureJoin::Descriptor
    );
    let f = write("join.toml", "[kernel]\ncapture_join = \"socket\"\n");
    assert_eq!(config(&["-c", &f], &[]).capture_join, CaptureJoin::Socket);
    let e = run(&["--capture-join", "fd"], &[]).unwrap_err();
    assert!(e.message.contains("auto, socket or descriptor"), "{e}");
}

#[test]
fn the_privileged_helper_is_on_unless_turned_off() {
    assert!(config(&[], &[]).helper);
    assert!(!config(&["--no-helper"], &[]).helper);
    let f = write("helper-off.toml", "[security]\nhelper = false\n");
    assert!(!config(&["-c", &f], &[]).helper);
    let f = write("helper-bad.toml", "[security]\nhelper = \"no\"\n");
    assert!(run(&["-c", &f], &[]).is_err());
}

#[test]
fn the_seccomp_mode() {
    assert_eq!(config(&[], &[]).seccomp, Seccomp::Off);
    assert_eq!(config(&["--seccomp", "kill"], &[]).seccomp, Seccomp::Kill);
    let f = write(
        "seccomp.toml",
        "[security]\nuser = \"daemon\"\nseccomp = \"log\"\n",
    );
    let c = config(&["-c", &f], &[]);
    assert_eq!(
        (c.seccomp, c.user.as_deref()),
        (Seccomp::Log, Some("daemon"))
    );
    // The flag wins over the file.
    assert_eq!(
        config(&["-c", &f, "--seccomp", "off"], &[]).seccomp,
        Seccomp::Off
    );
    let e = run(&["--seccomp", "strict"], &[]).unwrap_err();
    assert!(e.message.contains("off, log or kill"), "{e}");
    let f = write("seccomp-bad.toml", "[security]\nseccomp = \"on\"\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("security.seccomp"), "{e}");
}

#[test]
fn a_recording_only_when_asked() {
    assert_eq!(config(&[], &[]).record, None);
    assert_eq!(
        config(&["--record", "/tmp/r.rec"], &[]).record,
        Some("/tmp/r.rec".into())
    );
    let e = run(&["--record"], &[]).unwrap_err();
    assert!(e.message.contains("--record"), "{e}");
}

#[test]
fn a_signal_exporter_can_be_turned_off() {
    let c = config(&[], &[("OTEL_TRACES_EXPORTER", "none")]);
    assert!(c.export_settings(Signal::Traces).is_none());
    assert!(c.export_settings(Signal::Metrics).is_some());
    let c = config(&[], &[("OTEL_METRICS_EXPORTER", "otlp")]);
    assert!(c.export_settings(Signal::Metrics).is_some());
    match run(&[], &[("OTEL_LOGS_EXPORTER", "zipkin")]) {
        Err(e) => {
            assert!(e.to_string().contains("OTEL_LOGS_EXPORTER"), "{e}");
            assert!(e.to_string().contains("zipkin"), "{e}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn trace_samplers_follow_the_specification() {
    use crate::{RootSampler, Sampler};
    assert_eq!(config(&[], &[]).sampler, Sampler::DEFAULT);
    let c = config(
        &[],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
    );
    assert_eq!(
        c.sampler,
        Sampler {
            parent_based: true,
            root: RootSampler::TraceIdRatio(0.25)
        }
    );
    let c = config(&[], &[("OTEL_TRACES_SAMPLER", "always_off")]);
    assert_eq!(c.sampler.root, RootSampler::AlwaysOff);
    assert!(!c.sampler.parent_based);
    for (name, arg) in [
        ("traceidratio", "1.5"),
        ("traceidratio", "x"),
        ("jaeger_remote", ""),
    ] {
        let r = run(
            &[],
            &[
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ],
        );
        assert!(r.is_err(), "{name} {arg}: {r:?}");
    }
}

#[test]
fn gzip_level_is_checked() {
    assert_eq!(config(&[], &[]).otlp.gzip_level, 1);
    let f = write("gzip.toml", "[otlp]\ngzip_level = 6\n");
    assert_eq!(config(&["-c", &f], &[]).otlp.gzip_level, 6);
    let f = write("gzip-bad.toml", "[otlp]\ngzip_level = 12\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("otlp.gzip_level"), "{e}");
}

#[test]
fn the_cloud_metadata_probe() {
    let c = config(&[], &[]);
    let p = c.cloud.expect("probed by default");
    assert_eq!(
        (p.endpoint.host.as_str(), p.endpoint.port),
        ("169.254.169.254", 80)
    );
    assert_eq!(p.timeout_ms, 2_000);
    // Asked only where the machine says it is a cloud VM.
    assert!(!p.named);
    assert_eq!(config(&["--cloud-metadata", "auto"], &[]).cloud, Some(p));
    assert_eq!(config(&["--cloud-metadata", "off"], &[]).cloud, None);
    let c = config(&["--cloud-metadata", "http://127.0.0.1:8099"], &[]);
    let p = c.cloud.unwrap();
    assert_eq!(p.endpoint.authority(), "127.0.0.1:8099");
    // A named service is asked on any machine.
    assert!(p.named);
    let e = run(&["--cloud-metadata", "https://169.254.169.254"], &[]).unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
    let f = write(
        "cloud.toml",
        "[discovery]\ncloud = \"http://127.0.0.1:9\"\ncloud_timeout_ms = 300\n",
    );
    let p = config(&["-c", &f], &[]).cloud.unwrap();
    assert_eq!(
        (p.endpoint.authority(), p.timeout_ms, p.named),
        ("127.0.0.1:9".into(), 300, true)
    );
    // A timeout alone keeps the default's decision by DMI data.
    let f = write("cloud-t.toml", "[discovery]\ncloud_timeout_ms = 300\n");
    let p = config(&["-c", &f], &[]).cloud.unwrap();
    assert_eq!(
        (p.endpoint.authority(), p.timeout_ms, p.named),
        ("169.254.169.254".into(), 300, false)
    );
    // The flag keeps the file's timeout.
    let p = config(&["-c", &f, "--cloud-metadata", "http://10.0.0.1"], &[])
        .cloud
        .unwrap();
    assert_eq!(p.timeout_ms, 300);
    let f = write("cloud-off.toml", "[discovery]\ncloud = \"off\"\n");
    assert_eq!(config(&["-c", &f], &[]).cloud, None);
    let f = write("cloud-0.toml", "[discovery]\ncloud_timeout_ms = 0\n");
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("discovery.cloud_timeout_ms"), "{e}");
    let f = write(
        "cloud-bad.toml",
        "[discovery]\ncloud = \"169.254.169.254\"\n",
    );
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("discovery.cloud"), "{e}");
}

#[test]
fn the_kubernetes_api() {
    let k = config(&[], &[]).kubernetes;
    assert_eq!(k.api, KubeApi::Auto);
    assert_eq!(k.max_pods, 110);
    assert!(k.token_file.ends_with("serviceaccount/token"));
    let f = write(
        "kube.toml",
        "[kubernetes]\napi = \"https://127.0.0.1:6443\"\nnode_name = \"edge-1\"\n\
         token_file = \"/tmp/t\"\nca_file = \"/tmp/ca.pem\"\nrefresh_ms = 5000\nmax_pods = 8\n",
    );
    let k = config(&["-c", &f], &[]).kubernetes;
    let KubeApi::Url(e) = &k.api else {
        panic!("{:?}", k.api)
    };
    assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 6443));
    assert_eq!(k.node_name.as_deref(), Some("edge-1"));
    assert_eq!((k.refresh_ms, k.max_pods), (5000, 8));
    let f = write("kube-off.toml", "[kubernetes]\napi = \"off\"\n");
    assert_eq!(config(&["-c", &f], &[]).kubernetes.api, KubeApi::Off);
    for (text, what) in [
        ("api = \"http://10.0.0.1\"", "https only"),
        ("refresh_ms = 10", "kubernetes.refresh_ms"),
        ("max_pods = 0", "kubernetes.max_pods"),
        ("apiserver = \"x\"", "apiserver"),
    ] {
        let f = write("kube-bad.toml", &format!("[kubernetes]\n{text}\n"));
        let e = run(&["-c", &f], &[]).unwrap_err();
        assert!(e.to_string().contains(what), "{text}: {e}");
    }
}

#[test]
fn rules_about_processes_and_ports() {
    let f = write(
        "rules.toml",
        "[[rules]]\naction = \"exclude\"\nport = 22\n\n\
         [[rules]]\naction = \"include\"\nk8s_namespace = \"shop\"\n\n\
         [[rules]]\naction = \"exclude\"\ncontainer = \"any\"\n\n\
         [[rules]]\naction = \"exclude\"\nexecutable = \"sshd\"\n\n\
         [[rules]]\naction = \"exclude\"\ncontainer = \"7BE9\"\nk8s_label = \"tier=debug\"\n",
    );
    let c = config(&["-c", &f], &[]);
    assert_eq!(c.excluded_ports, [22]);
    assert_eq!(c.rules.len(), 4);
    assert_eq!(
        c.rules[3].container,
        Some(ContainerMatch::Id("7be9".into()))
    );
    let labels = [("k8s.pod.label.tier".to_string(), "debug".to_string())];
    let host_sshd = Facts {
        names: [Some("sshd"), Some("sshd")],
        ..Default::default()
    };
    assert_eq!(judge(&c.rules, &host_sshd), Action::Exclude);
    let host_nginx = Facts {
        names: [Some("nginx"), None],
        ..Default::default()
    };
    assert_eq!(judge(&c.rules, &host_nginx), Action::Include);
    let in_shop = Facts {
        names: [Some("java"), None],
        container: Some("7be92808"),
        pod_known: true,
        k8s_namespace: Some("shop"),
        labels: &labels,
    };
    assert_eq!(
        judge(&c.rules, &in_shop),
        Action::Include,
        "the first match decides"
    );
    let elsewhere = Facts {
        k8s_namespace: Some("iot"),
        ..in_shop
    };
    assert_eq!(judge(&c.rules, &elsewhere), Action::Exclude);
    // A pod criterion does not match before the pod is known.
    let rule = &c.rules[3];
    assert!(rule.matches(&elsewhere));
    assert!(!rule.matches(&Facts {
        pod_known: false,
        ..elsewhere
    }));
    for (text, what) in [
        ("action = \"drop\"\nexecutable = \"x\"", "include"),
        ("action = \"exclude\"", "names no"),
        ("action = \"include\"\nport = 80", "port rule"),
        (
            "action = \"exclude\"\nport = 80\nexecutable = \"x\"",
            "port rule",
        ),
        ("action = \"exclude\"\ncontainer = \"docker\"", "hex digits"),
        ("action = \"exclude\"\nk8s_label = \"tier\"", "key=value"),
        ("action = \"exclude\"\nexe = \"x\"", "exe"),
        (
            "action = \"exclude\"\nexecutable = \"x\"\nservice_name = \"y\"",
            "service_name",
        ),
    ] {
        let f = write("rules-bad.toml", &format!("[[rules]]\n{text}\n"));
        let e = run(&["-c", &f], &[]).unwrap_err();
        assert!(e.to_string().contains(what), "{text}: {e}");
    }
    let many: String = (1..=9)
        .map(|p| format!("[[rules]]\naction = \"exclude\"\nport = {p}\n"))
        .collect();
    let f = write("rules-many.toml", &many);
    let e = run(&["-c", &f], &[]).unwrap_err();
    assert!(e.to_string().contains("at most 8"), "{e}");
}
