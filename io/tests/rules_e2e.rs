//! `[[rules]]`: processes excluded by container and by executable, and a port excluded,
//! cost no capture in the kernel (the agent's own recording of what the kernel sent holds
//! none of their bytes) and appear in no span or metric; a process no rule names is traced
//! as before. Three Python servers, started before the agent (the start-up scan judges
//! them); curl, started after (its exec record is judged).

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;
use telegen_core::record::{Record, decode};
use telegen_core::recording;

#[test]
fn excluded_processes_and_ports_cost_no_capture_and_leave_no_trace() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let id = format!("{:064x}", u128::from(std::process::id()) << 16 | 0xc0de);
    let cg = Cgroup::new(&[
        format!("telegen-rules-{}.slice", std::process::id()),
        format!("docker-{id}.scope"),
    ]);
    let (in_container, container_port) = http_server(&cg.join(), &[]);
    let (excluded_port_server, excluded_port) = http_server("", &[]);
    let (traced, traced_port) = http_server("", &[]);

    let dir = scratch("rules", "x");
    let dir = dir.parent().unwrap();
    let config = dir.join("rules.toml");
    std::fs::write(
        &config,
        format!(
            "[[rules]]\naction = \"exclude\"\ncontainer = \"any\"\n\n\
             [[rules]]\naction = \"exclude\"\nport = {excluded_port}\n\n\
             [[rules]]\naction = \"exclude\"\nexecutable = \"curl\"\n\n\
             [[rules]]\naction = \"include\"\nexecutable = \"python3\"\ncontainer = \"none\"\n\
             service_name = \"catalog\"\n"
        ),
    )
    .unwrap();
    let recording = dir.join("rules.rec");
    let receiver = Receiver::start("rules");
    let endpoint = receiver.endpoint();
    let mut agent = start_agent(
        &[
            "--config",
            config.to_str().unwrap(),
            "--record",
            recording.to_str().unwrap(),
            "--metric-interval",
            "300",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("TELEGEN_LOG", "debug"),
        ],
    );
    for port in [container_port, excluded_port, traced_port] {
        for _ in 0..3 {
            curl_port(port);
        }
    }
    // A client no rule names: python's urllib, for the traced server's client side.
    let script = format!(
        "import urllib.request\nfor _ in range(2): urllib.request.urlopen('http://127.0.0.1:{traced_port}/').read()"
    );
    assert!(
        Command::new("python3")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(700));
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let log = agent_log(&agent);
    assert!(log.contains("excluded by the rules"), "{log}");
    let requests = receiver.requests();

    // What the kernel sent: nothing of the excluded server, the excluded port or curl.
    let bytes = std::fs::read(&recording).expect("the recording");
    let (mut traced_records, mut leaks) = (0, Vec::new());
    for r in recording::records(&bytes).expect("a recording") {
        let Ok(Record::Data(d)) = decode(r.expect("a whole record")) else {
            continue;
        };
        let comm = telegen_core::record::comm_str(&d.task.comm).to_string();
        let ports = [d.local_port, d.remote_port];
        if ports.contains(&traced_port) && comm != "curl" {
            traced_records += 1;
        }
        if d.task.tgid == in_container.0.id() || ports.contains(&excluded_port) || comm == "curl" {
            leaks.push((d.task.tgid, comm, ports));
        }
    }
    assert!(leaks.is_empty(), "captured though excluded: {leaks:?}");
    assert!(
        traced_records >= 4,
        "the traced server's bytes: {traced_records}"
    );

    let all = spans(&requests);
    let on = |port: u16, kind: &str| {
        let p = port.to_string();
        all.iter()
            .filter(|s| s.kind == kind && s.attr("server.port") == Some(&p))
            .count()
    };
    assert_eq!(on(container_port, "SPAN_KIND_SERVER"), 0);
    assert_eq!(on(excluded_port, "SPAN_KIND_SERVER"), 0);
    assert_eq!(
        on(traced_port, "SPAN_KIND_SERVER"),
        5,
        "3 from curl, 2 from python"
    );
    assert_eq!(
        on(traced_port, "SPAN_KIND_CLIENT"),
        2,
        "python's; curl's are excluded"
    );
    assert!(all.iter().all(|s| s.process() != "curl"));
    // The include rule names the traced server's service.
    let p = traced_port.to_string();
    for s in all
        .iter()
        .filter(|s| s.kind == "SPAN_KIND_SERVER" && s.attr("server.port") == Some(&p))
    {
        assert_eq!(attr(&s.resource, "service.name"), Some("catalog"));
    }
    // No metric series of the excluded processes either.
    let container_pid = in_container.0.id().to_string();
    let durations = points(&requests, "http.server.request.duration");
    assert!(
        durations
            .iter()
            .all(|p| attr(&p.attrs, "process.pid") != Some(&container_pid)),
        "the excluded server's metrics"
    );
    assert!(
        durations
            .iter()
            .any(|p| attr(&p.attrs, "server.port") == Some(&traced_port.to_string())),
        "the traced server's metrics"
    );
    drop((in_container, excluded_port_server, traced));
}
