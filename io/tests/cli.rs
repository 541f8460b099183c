//! The command line as a user meets it: check, help, version, and clear errors (exit 2).

mod support;

use std::process::{Command, Output};
use support::*;

fn telegen(args: &[&str]) -> Output {
    Command::new(AGENT).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_passes_here_and_prints_the_budget() {
    assert!(is_root(), "run as root");
    let o = telegen(&["check"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    for want in [
        "kernel",
        "tracefs",
        "sock:inet_sock_set_state",
        "BPF ring buffer",
        "BTF",
        "uprobes",
        "perf_event",
        "total",
        "ready",
    ] {
        assert!(out.contains(want), "check output lacks {want}: {out}");
    }
}

#[test]
fn check_explains_a_missing_tracefs() {
    assert!(is_root(), "run as root");
    // A private mount namespace in which tracefs is not mounted.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         umount /sys/kernel/debug 2>/dev/null; exec {AGENT} check"
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(
        out.contains("tracefs") && out.contains("not mounted"),
        "{out}"
    );
}

#[test]
fn check_without_root_names_the_missing_privileges() {
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            AGENT,
            "check",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("privileges") && err.contains("CAP_BPF"),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let o = telegen(&["--help"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("--console"));
    let o = telegen(&["--version"]);
    assert_eq!(
        text(&o.stdout).trim(),
        format!("telegen {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_input_is_a_clear_error_and_exit_2() {
    let o = telegen(&["--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--frobnicate"),
        "{}",
        text(&o.stderr)
    );

    let o = telegen(&["--metric-interval", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--metric-interval"));

    let path = std::env::temp_dir().join(format!("telegen-cli-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[otlp]\nendpoint = \"http://localhost:4318\"\ntimeout = 5\n",
    )
    .unwrap();
    let o = telegen(&["--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{}:3:1", path.display())), "{err}");
    assert!(err.contains("unknown field `timeout`"), "{err}");

    let o = Command::new(AGENT)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("4318"));
}
