//! `telegen`: the runtime. The only crate that makes syscalls: the mio loop, loading and
//! attaching the kernel programs, tracefs, /proc, signals, sockets and TLS.

mod agent;
mod check;
mod cloud;
mod containers;
mod fetch;
mod helper;
mod kernel;
mod kube;
mod logger;
mod privileges;
mod processes;
mod procfs;
mod recorder;
mod resource;
mod seccomp;
mod signals;
mod spool;
mod tls;
mod tracefs;
mod transport;

use std::process::ExitCode;
use telegen_config::{Command, HELP};

fn main() -> ExitCode {
    logger::init();
    let command =
        match telegen_config::load(std::env::args_os().skip(1), &|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("telegen: {e}");
                return ExitCode::from(2);
            }
        };
    if !matches!(command, Command::Run(_)) {
        // Reports printed into a closed pipe (`telegen check | head`) end quietly, as Unix
        // tools do, rather than panicking in println!. The agent keeps SIGPIPE ignored: its
        // sockets must see EPIPE, not a signal.
        // SAFETY: setting a signal disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match command {
        Command::Help => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("telegen {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(config) => ExitCode::from(check::run(&config) as u8),
        Command::Run(config) => {
            if let Err(e) = check_headers(&config) {
                eprintln!("telegen: {e}");
                return ExitCode::from(2);
            }
            let result = agent::Agent::new(config).and_then(agent::Agent::run);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("telegen: {e}");
                    eprintln!("telegen: run `telegen check` to see what this machine lacks");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Refuses OTLP headers that cannot go on the wire (names and values are checked with the
/// same rule the request writer applies; values are never printed).
fn check_headers(config: &telegen_config::Config) -> Result<(), String> {
    use telegen_config::Signal;
    for signal in [Signal::Metrics, Signal::Traces, Signal::Logs] {
        let Some(s) = config.export_settings(signal) else {
            continue;
        };
        for (k, v) in &s.headers {
            if !telegen_export::http::header_ok(k, v) {
                return Err(format!(
                    "OTLP header {k:?} for {}: the name must be an HTTP token and the value \
                     free of control characters",
                    signal.path()
                ));
            }
        }
    }
    Ok(())
}
