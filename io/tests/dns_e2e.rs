//! DNS lookups end to end on the real kernel: dnsmasq, dig and glibc's resolver (through
//! Python's getaddrinfo) in a network and mount namespace of the test's own (so that no
//! query leaves the machine and /etc/resolv.conf can point at dnsmasq), the real agent
//! outside it, and the OTLP receiver decoding with the official Python opentelemetry-proto.

mod support;

use std::process::Command;
use support::*;

/// Runs `script` with sh in a new network and mount namespace whose loopback is up,
/// dnsmasq answers on 127.0.0.1:53, UDP and TCP (`sensor.test` is 10.1.2.3, `gateway.test`
/// 10.1.2.4 and fd00::4, `viatcp.test` 10.1.2.5 and fd00::5, names under `missing.test` do
/// not exist) and /etc/resolv.conf names it.
fn in_namespace(test: &str, script: &str) -> String {
    let dir = scratch(test, "ns");
    std::fs::create_dir_all(&dir).unwrap();
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n",
    )
    .unwrap();
    let setup = format!(
        r#"set -e
ip link set lo up
mount --bind {resolv} /etc/resolv.conf
dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port=53 --pid-file= --log-facility=- \
  --address=/sensor.test/10.1.2.3 --address=/gateway.test/10.1.2.4 \
  --address=/gateway.test/fd00::4 --address=/viatcp.test/10.1.2.5 \
  --address=/viatcp.test/fd00::5 --local=/missing.test/ 2>/dev/null &
trap 'kill $!' EXIT
i=0
until ss -lun | grep -q '127.0.0.1:53 '; do
  i=$((i + 1)); [ $i -lt 100 ] || {{ echo "dnsmasq did not start" >&2; exit 1; }}
  sleep 0.1
done
{script}"#,
        resolv = resolv.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "--mount", "sh", "-c", &setup])
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "namespace script failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dns_lookups_become_metrics_and_spans() {
    assert!(is_root(), "this test loads eBPF programs: run it as root");
    let traced = Traced::start("dns", &[("OTEL_SERVICE_NAME", "dns-test")]);
    let script = r#"
dig @127.0.0.1 +tries=1 +short sensor.test A
dig @127.0.0.1 +tries=1 +noall +comments nothing.missing.test A | grep -o NXDOMAIN
dig @127.0.0.2 +tries=1 +time=1 +short quiet.test A >/dev/null || true
/usr/bin/python3 - <<'PY'
import socket
print(sorted({a[4][0] for a in socket.getaddrinfo("gateway.test", 80, proto=socket.IPPROTO_TCP)}))
try:
    socket.getaddrinfo("other.missing.test.", 80, proto=socket.IPPROTO_TCP)
    print("resolved?")
except socket.gaierror as e:
    print("gaierror", e.errno)
PY
dig @127.0.0.1 +tcp +tries=1 +short viatcp.test A
RES_OPTIONS=use-vc /usr/bin/python3 -c 'import socket; print(len(socket.getaddrinfo("viatcp.test", 80, proto=socket.IPPROTO_TCP)))'
"#;
    let out = in_namespace("dns", script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "10.1.2.3",
            "NXDOMAIN",
            "['10.1.2.4', 'fd00::4']",
            "gaierror -2",
            "10.1.2.5",
            "2"
        ],
        "{out}"
    );
    let requests = traced.finish(&[]);

    // Every lookup counts, by name and error: dig's three (one unanswered), and glibc's
    // A and AAAA for each name getaddrinfo asked for.
    let metric = "dns.lookup.duration";
    let count = |name: &str, error: Option<&str>| {
        histogram_count(&requests, metric, &[("dns.question.name", name)], error)
    };
    assert_eq!(count("sensor.test", None), 1);
    assert_eq!(count("nothing.missing.test", Some("NXDOMAIN")), 1);
    assert_eq!(count("quiet.test", Some("timeout")), 1);
    assert_eq!(count("gateway.test", None), 2);
    assert_eq!(count("other.missing.test", Some("NXDOMAIN")), 2);
    // Over TCP: dig's query, and glibc's A and AAAA queries (RES_OPTIONS=use-vc), which it
    // writes in one writev, each a two-byte length and the message.
    assert_eq!(count("viatcp.test", None), 3);

    let all = spans(&requests);
    let lookups: Vec<&SpanSeen> = all
        .iter()
        .filter(|s| s.attr("dns.question.name").is_some())
        .collect();
    assert_eq!(lookups.len(), 10, "a span per lookup");
    let mut names: Vec<(&str, &str, Option<&str>)> = lookups
        .iter()
        .map(|s| {
            let name = s.attr("dns.question.name").unwrap();
            (name, s.name.as_str(), s.attr("error.type"))
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("gateway.test", "DNS A", None),
            ("gateway.test", "DNS AAAA", None),
            ("nothing.missing.test", "DNS A", Some("NXDOMAIN")),
            ("other.missing.test", "DNS A", Some("NXDOMAIN")),
            ("other.missing.test", "DNS AAAA", Some("NXDOMAIN")),
            ("quiet.test", "DNS A", Some("timeout")),
            ("sensor.test", "DNS A", None),
            ("viatcp.test", "DNS A", None),
            ("viatcp.test", "DNS A", None),
            ("viatcp.test", "DNS AAAA", None),
        ]
    );
    // glibc's resolver ran in the Python process (a single-threaded one: its name).
    let gateway = lookups
        .iter()
        .filter(|s| s.attr("dns.question.name") == Some("gateway.test"));
    assert!(gateway.clone().all(|s| s.process() == "python3"));
    for s in &lookups {
        assert_eq!(s.kind, "SPAN_KIND_CLIENT");
        assert_eq!(s.attr("server.port"), Some("53"));
        let failed = s.attr("error.type").is_some();
        assert_eq!(s.status == "STATUS_CODE_ERROR", failed, "{:?}", s.attrs);
    }
    assert_no_drops(&requests, &PROTOCOL_DROPS);
}
