//! The privileged helper, on the real kernel: what the agent and its helper keep of root; a
//! client that loads its own copy of libssl after the agent started, and one in a container
//! (mount and pid namespaces, a root of its own), traced through the uprobes the helper
//! attaches; another user's `OTEL_SERVICE_NAME`, read through the
//! helper while the agent runs as `nobody`; bad requests (pids that ended, a "libssl" that
//! is no ELF file, a flood of execs); and the two dying in either order.

mod support;

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF.
const HELPER_CAPS: u64 = 1 << 2 | 1 << 19 | 1 << 21 | 1 << 38 | 1 << 39;

fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn caps(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key), 16).unwrap()
}

/// The helper: the agent's child named `telegen-helper`.
fn helper_of(agent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            status_field(pid, "PPid:") == agent.to_string()
                && status_field(pid, "Name:") == "telegen-helper"
        })
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !status_field(pid, "State:").starts_with('Z')
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The latest value of `telegen.agent.helper.requests{kind, status}`.
fn helper_answers(requests: &[Value], kind: &str, status: &str) -> u64 {
    latest_total(
        requests,
        "telegen.agent.helper.requests",
        &[("kind", kind), ("status", status)],
    )
}

#[test]
fn the_agent_keeps_no_capability_and_the_helper_only_its_own_without_network() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let receiver = Receiver::start("helper-caps");
    let mut agent = start_agent(
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let me = agent.0.id();
    let helper = helper_of(me).expect("the agent forked its helper");
    for key in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
        assert_eq!(caps(me, key), 0, "agent {key}");
    }
    assert_eq!(
        status_field(me, "Uid:").split_whitespace().next(),
        Some("65534")
    );
    for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps(helper, key), HELPER_CAPS, "helper {key}");
    }
    assert_eq!(caps(helper, "CapAmb:"), 0);
    assert_eq!(
        status_field(helper, "Uid:").split_whitespace().next(),
        Some("65534")
    );
    assert_eq!(status_field(helper, "NoNewPrivs:"), "1");
    assert_eq!(status_field(helper, "Seccomp:"), "2", "filtered");
    // A network namespace of its own, with no socket but its two socketpairs to the agent
    // (Unix sockets of the agent's namespace).
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(ns(helper), ns(me));
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{helper}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    assert_eq!(sockets.len(), 2, "{sockets:?}");
    let unix = std::fs::read_to_string(format!("/proc/{me}/net/unix")).unwrap();
    for inode in &sockets {
        assert!(
            unix.lines()
                .any(|l| l.split_whitespace().nth(6) == Some(inode.as_str())),
            "helper socket {inode} is not a Unix socket"
        );
    }
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let t = std::fs::read_to_string(format!("/proc/{helper}/net/{table}")).unwrap();
        assert_eq!(t.lines().count(), 1, "helper's {table}: {t}");
    }
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    assert!(wait_until(Duration::from_secs(2), || !alive(helper)));
}

/// A copy of Debian's libssl and libcrypto in a directory of their own.
fn late_libssl(test: &str) -> std::path::PathBuf {
    let dir = scratch(test, "late-ssl");
    std::fs::create_dir_all(&dir).unwrap();
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        let src = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .iter()
            .map(|d| std::path::Path::new(d).join(lib))
            .find(|p| p.exists())
            .expect("Debian's libssl3");
        std::fs::copy(src, dir.join(lib)).unwrap();
    }
    dir
}

/// Run in new mount and pid namespaces: `$1` becomes the root (the host's /usr and /etc
/// bound into it, read-only), and `python3 -c "$2"` runs there with the libssl of
/// `/opt/box`.
const CONTAINER: &str = r#"
root=$1
mount --make-rprivate /
for d in usr etc; do mount --rbind "/$d" "$root/$d"; mount -o remount,bind,ro "$root/$d"; done
exec chroot "$root" /usr/bin/env LD_LIBRARY_PATH=/opt/box /usr/bin/python3 -c "$2"
"#;

/// A container's root: empty directories for /usr and /etc, the merged-/usr links, and
/// the libssl copy at /opt/box.
fn container_root(test: &str, libs: &std::path::Path) -> std::path::PathBuf {
    let root = scratch(test, "box-root");
    for d in ["usr", "etc", "tmp", "opt/box"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, to) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
    ] {
        let _ = std::os::unix::fs::symlink(to, root.join(link));
    }
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(libs.join(lib), root.join("opt/box").join(lib)).unwrap();
    }
    root
}

#[test]
fn a_client_with_its_own_libssl_started_later_is_traced_and_bad_requests_are_counted() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let test = "helper-late-ssl";
    let nginx = start_nginx(test, &|d, port, tls_port| {
        format!(
            r#"
    server {{ listen 127.0.0.1:{port}; location = /ok {{ return 200 "ok\n"; }} }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location /late/ {{ return 200 "late\n"; }}
        location /box/ {{ return 200 "box\n"; }}
    }}"#
        )
    });
    let libs = late_libssl(test);
    // A file named like a libssl that is no ELF file, mapped by a process started later.
    let fake_dir = scratch(test, "fake-ssl");
    std::fs::create_dir_all(&fake_dir).unwrap();
    let fake = fake_dir.join("libssl.so.3");
    std::fs::write(&fake, "not a library\n".repeat(400)).unwrap();
    let receiver = Receiver::start(test);
    let mut agent = start_agent(
        &["--metric-interval", "500"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );

    // A flood of processes that stay: beyond the 64 requests that may wait (two an exec),
    // the requests are counted as dropped, and the helper goes on. Short processes cost
    // nothing: their exit takes their requests back.
    for _ in 0..50 {
        Command::new("/bin/true").status().unwrap();
    }
    let sleepers: Vec<Proc> = (0..40)
        .map(|_| Proc(Command::new("/bin/sleep").arg("20").spawn().unwrap()))
        .collect();
    // Every request of theirs asked and answered (the second 2 s after the exec).
    std::thread::sleep(Duration::from_millis(2600));
    drop(sleepers);
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import mmap, sys, time\nf = open(sys.argv[1], 'rb')\n\
             m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\ntime.sleep(30)",
        ])
        .arg(&fake)
        .spawn()
        .unwrap();
    // The client: its libssl is mapped at start (Python's ssl module), its first request
    // comes after both attach attempts (200 ms, 2 s).
    let client = format!(
        r#"
import http.client, ssl, time
time.sleep(3)
c = http.client.HTTPSConnection("127.0.0.1", {port}, context=ssl._create_unverified_context())
for i in range(5):
    c.request("GET", "/late/%d" % i)
    r = c.getresponse()
    r.read()
c.close()
"#,
        port = nginx.tls_port
    );
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &client])
        .env("LD_LIBRARY_PATH", &libs)
        .status()
        .unwrap();
    assert!(ok.success(), "the late client failed");
    // The same from a container started later: its own mount and pid namespaces and root,
    // where its libssl is `/opt/box/libssl.so.3`, a path the host does not have. The
    // helper finds the file through the process's `/proc/PID/root`.
    let root = container_root(test, &libs);
    assert!(!std::path::Path::new("/opt/box").exists());
    let boxed = client.replace("/late/", "/box/");
    let ok = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--", "sh", "-euc"])
        .arg(CONTAINER)
        .arg("container")
        .arg(&root)
        .arg(&boxed)
        .status()
        .unwrap();
    assert!(ok.success(), "the container's client failed");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", holder.id())).unwrap();
    assert!(
        maps.contains(fake.to_str().unwrap()),
        "the fake libssl is mapped"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let helper = helper_of(agent.0.id()).expect("the helper");
    assert!(alive(helper), "the helper keeps serving");
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
    let requests = receiver.requests();
    let log = agent_log(&agent);
    let _ = holder.kill();
    let _ = holder.wait();

    let p = nginx.tls_port.to_string();
    let all = spans(&requests);
    for prefix in ["/late/", "/box/"] {
        let client_spans: Vec<&SpanSeen> = all
            .iter()
            .filter(|s| {
                s.kind == "SPAN_KIND_CLIENT"
                    && s.attr("server.port") == Some(p.as_str())
                    && s.attr("url.path").is_some_and(|u| u.starts_with(prefix))
            })
            .collect();
        assert_eq!(
            client_spans.len(),
            5,
            "{prefix} client spans: {client_spans:#?}\n{log}"
        );
        for s in &client_spans {
            assert_eq!(s.attr("url.scheme"), Some("https"), "{s:?}");
            assert_eq!(s.process(), "python3");
            assert_eq!(s.attr("http.response.status_code"), Some("200"));
        }
    }
    let server = all
        .iter()
        .filter(|s| s.kind == "SPAN_KIND_SERVER" && s.attr("server.port") == Some(p.as_str()))
        .count();
    assert_eq!(server, 10, "nginx's libssl was probed at start-up");

    assert!(helper_answers(&requests, "attach_tls", "ok") >= 1);
    assert!(
        helper_answers(&requests, "attach_tls", "not_elf") >= 1,
        "{log}"
    );
    assert!(
        helper_answers(&requests, "attach_tls", "nothing") >= 32,
        "the sleepers"
    );
    assert!(
        latest_total(
            &requests,
            "telegen.agent.dropped",
            &[("reason", "helper_queue_full")]
        ) > 0,
        "40 execs at once overflow the 64 requests that may wait"
    );
    assert!(log.contains("is not an ELF file: not probed"), "{log}");
}

#[test]
fn another_users_service_name_is_read_through_the_helper() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let run = |extra: &[&str]| {
        let receiver = Receiver::start("helper-environ");
        let mut agent = start_agent(
            extra,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
        );
        // A server of www-data, whose environment nobody (the agent) may not read.
        let port = free_port();
        let mut server = Command::new("/usr/bin/python3");
        server
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .env("OTEL_SERVICE_NAME", "ledger")
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .uid(33)
            .gid(33);
        let mut server = Proc(server.spawn().unwrap());
        assert!(serves(&mut server.0, &[port]));
        for _ in 0..3 {
            curl_port(port);
        }
        std::thread::sleep(Duration::from_millis(300));
        let (status, _) = terminate(&mut agent, Duration::from_secs(5));
        assert!(status.success());
        drop(server);
        let p = port.to_string();
        let names: Vec<String> = spans(&receiver.requests())
            .into_iter()
            .filter(|s| s.kind == "SPAN_KIND_SERVER" && s.attr("server.port") == Some(p.as_str()))
            .map(|s| attr(&s.resource, "service.name").unwrap_or("").to_string())
            .collect();
        names
    };
    let names = run(&[]);
    assert_eq!(names, ["ledger", "ledger", "ledger"]);
    // Without the helper the agent may not read it: the name the test sees is the helper's.
    let names = run(&["--no-helper"]);
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| n != "ledger"), "{names:?}");
}

#[test]
fn the_helper_dies_with_the_agent_and_the_agent_goes_on_without_it() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    // SIGKILL to the agent: no chance to close anything, the helper still ends.
    let mut agent = start_agent(&["--console"], &[]);
    let helper = helper_of(agent.0.id()).expect("the helper");
    agent.0.kill().unwrap();
    let _ = agent.0.wait();
    assert!(
        wait_until(Duration::from_secs(2), || !alive(helper)),
        "the helper outlived the agent"
    );

    // SIGKILL to the helper: said once, and the agent keeps exporting.
    let receiver = Receiver::start("helper-killed");
    let mut agent = start_agent(
        &["--metric-interval", "200"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())],
    );
    let helper = helper_of(agent.0.id()).expect("the helper");
    // SAFETY: signalling a process of this test's.
    unsafe { libc::kill(helper as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(3), || agent_log(&agent)
        .contains("the privileged helper was killed by signal 9")));
    let before = receiver.requests().len();
    assert!(
        wait_until(Duration::from_secs(3), || receiver.requests().len()
            >= before + 3),
        "the agent stopped exporting"
    );
    // Reaped: no zombie left.
    assert!(!std::path::Path::new(&format!("/proc/{helper}")).exists());
    let (status, _) = terminate(&mut agent, Duration::from_secs(5));
    assert!(status.success());
}
