//! `[[rules]]`: processes excluded by container and by executable, and a port excluded,
//! cost no capture in the kernel (the agent's own recording of what the kernel sent holds
//! none of their bytes) and appear in no span or metric; a process no rule names is traced
//! as before. Three Python servers, started before the agent (the start-up scan judges
//! them); curl, started after (its exec record is judged).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use telegen_core::record::{Record, decode};
use telegen_core::recording;

struct Cgroup(std::path::PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// `python3 -m http.server` on a free port, in `cgroup` when given.
fn server(cgroup: Option<&Path>) -> (Proc, u16) {
    let port = free_port();
    let join = cgroup
        .map(|c| format!("echo $$ > {} && ", c.join("cgroup.procs").display()))
        .unwrap_or_default();
    let script = format!("{join}exec python3 -m http.server {port} --bind 127.0.0.1");
    let child = Command::new("sh")
        .args(["-c", &script])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    wait_for_port(port, "a server");
    (Proc(child), port)
}

#[test]
fn excluded_processes_and_ports_cost_no_capture_and_leave_no_trace() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let unified = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .map(|f| f[1].to_string())
        .expect("a cgroup2 hierarchy");
    let id = format!("{:064x}", u128::from(std::process::id()) << 16 | 0xc0de);
    let cg = Cgroup(
        Path::new(&unified)
            .join(format!("telegen-rules-{}.slice", std::process::id()))
            .join(format!("docker-{id}.scope")),
    );
    std::fs::create_dir_all(&cg.0).expect("create a cgroup");
    let (in_container, container_port) = server(Some(&cg.0));
    let (excluded_port_server, excluded_port) = server(None);
    let (traced, traced_port) = server(None);

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
            let ok = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    &format!("http://127.0.0.1:{port}/"),
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok, "curl port {port}");
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
