//! Command-line flags (lexopt). Flags override the environment and the file.

use crate::endpoint::parse_from;
use crate::{Config, Error, parse_u64};
use lexopt::{Arg, Parser, ValueExt};
use std::ffi::OsString;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Config),
    Check(Config),
    Help,
    Version,
}

pub const HELP: &str = "\
telegen — a tiny eBPF observability agent for edge Linux

Usage: telegen [check] [OPTIONS]

Commands:
  (none)                    run the agent
  check                     preflight: kernel features, privileges, memory budget

Options:
  -c, --config FILE         TOML configuration file
      --console             print every exported signal on stdout (OTLP export only
                            when an endpoint is set explicitly)
      --otlp-endpoint URL   base OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)
      --metric-interval MS  metric export interval in ms (OTEL_METRIC_EXPORT_INTERVAL)
      --service-name NAME   service.name of the agent's own resource (OTEL_SERVICE_NAME)
      --spool-dir DIR       keep batches that cannot be sent in DIR (off by default)
      --transport KIND      how kernel records reach user space: auto (default),
                            ring (BPF ring buffer, 5.8+) or perf (perf buffers)
      --capture-join HOW    how a read or write finds its socket: auto (default),
                            socket (sock:sock_{send,recv}_length, Linux 6.4+) or
                            descriptor (learnt at connect and TCP reads, 4.16+)
      --user NAME           account to run as once the programs are attached
                            (default nobody; root keeps every privilege)
      --seccomp MODE        system-call filter once started: off (default), log
                            (allow and log what is outside the list) or kill
      --no-helper           no privileged helper: a libssl mapped after start-up is
                            not probed, other users' processes' environments are
                            not read
      --record FILE         also write every kernel record to FILE (at most 64 MiB),
                            for replay; it holds captured bytes: keep it private
      --cloud-metadata URL  the cloud instance metadata service asked at start-up:
                            auto (default: http://169.254.169.254, only where the
                            machine's DMI data names AWS, GCP or Azure), off, or a
                            URL asked on any machine
  -h, --help                print this help
  -V, --version             print the version

Precedence: flags > OTEL_* environment > config file > defaults.
";

/// Flags that override the other sources, applied last.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub check: bool,
    pub config: Option<PathBuf>,
    console: bool,
    endpoint: Option<String>,
    metric_interval: Option<String>,
    service_name: Option<String>,
    spool_dir: Option<String>,
    user: Option<String>,
    transport: Option<String>,
    capture_join: Option<String>,
    seccomp: Option<String>,
    no_helper: bool,
    record: Option<String>,
    cloud: Option<String>,
}

pub(crate) enum Parsed {
    Run(Overrides),
    Check(Overrides),
    Help,
    Version,
}

fn flag_err(flag: &str, e: impl std::fmt::Display) -> Error {
    Error::new(flag, e.to_string())
}

/// Parses the arguments (without the program name).
pub(crate) fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, Error> {
    let mut p = Parser::from_args(args);
    let mut o = Overrides::default();
    let mut first = true;
    while let Some(arg) = p.next().map_err(|e| flag_err("arguments", e))? {
        let value = |p: &mut Parser, flag: &str| -> Result<String, Error> {
            p.value()
                .map_err(|e| flag_err(flag, e))?
                .string()
                .map_err(|e| flag_err(flag, e))
        };
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Parsed::Help),
            Arg::Short('V') | Arg::Long("version") => return Ok(Parsed::Version),
            Arg::Short('c') | Arg::Long("config") => {
                o.config = Some(PathBuf::from(value(&mut p, "--config")?));
            }
            Arg::Long("console") => o.console = true,
            Arg::Long("otlp-endpoint") => o.endpoint = Some(value(&mut p, "--otlp-endpoint")?),
            Arg::Long("metric-interval") => {
                o.metric_interval = Some(value(&mut p, "--metric-interval")?);
            }
            Arg::Long("service-name") => o.service_name = Some(value(&mut p, "--service-name")?),
            Arg::Long("spool-dir") => o.spool_dir = Some(value(&mut p, "--spool-dir")?),
            Arg::Long("user") => o.user = Some(value(&mut p, "--user")?),
            Arg::Long("transport") => o.transport = Some(value(&mut p, "--transport")?),
            Arg::Long("capture-join") => o.capture_join = Some(value(&mut p, "--capture-join")?),
            Arg::Long("seccomp") => o.seccomp = Some(value(&mut p, "--seccomp")?),
            Arg::Long("no-helper") => o.no_helper = true,
            Arg::Long("record") => o.record = Some(value(&mut p, "--record")?),
            Arg::Long("cloud-metadata") => o.cloud = Some(value(&mut p, "--cloud-metadata")?),
            Arg::Value(v) if first && v == "check" => o.check = true,
            Arg::Value(v) => {
                return Err(Error::new(
                    "arguments",
                    format!(
                        "unexpected {:?}; the only command is `check` (see --help)",
                        v
                    ),
                ));
            }
            other => {
                return Err(Error::new(
                    "arguments",
                    format!("{}; see --help", other.unexpected()),
                ));
            }
        }
        first = false;
    }
    Ok(if o.check {
        Parsed::Check(o)
    } else {
        Parsed::Run(o)
    })
}

impl Overrides {
    pub(crate) fn apply(self, c: &mut Config) -> Result<(), Error> {
        if self.console {
            c.console = true;
        }
        if let Some(v) = self.endpoint {
            c.otlp.endpoint = Some(parse_from("--otlp-endpoint", &v)?);
        }
        if let Some(v) = self.metric_interval {
            c.metrics.interval_ms = parse_u64("--metric-interval", &v)?;
        }
        if let Some(v) = self.service_name {
            c.service_name = Some(v);
        }
        if let Some(t) = self.transport {
            c.transport = crate::file::transport("--transport", &t)?;
        }
        if let Some(j) = self.capture_join {
            c.capture_join = crate::file::capture_join("--capture-join", &j)?;
        }
        if let Some(user) = self.user {
            c.user = crate::file::user_setting(user);
        }
        if let Some(m) = self.seccomp {
            c.seccomp = crate::file::seccomp("--seccomp", &m)?;
        }
        if self.no_helper {
            c.helper = false;
        }
        if let Some(f) = self.record {
            c.record = Some(f.into());
        }
        if let Some(v) = self.cloud {
            let timeout_ms = c
                .cloud
                .as_ref()
                .map_or(crate::defaults::CLOUD_TIMEOUT_MS, |p| p.timeout_ms);
            c.cloud = crate::CloudProbe::parse("--cloud-metadata", &v, timeout_ms)?;
        }
        if let Some(dir) = self.spool_dir {
            let spool = c.spool.get_or_insert(crate::Spool {
                dir: dir.clone().into(),
                max_bytes: crate::defaults::SPOOL_MAX_BYTES,
                fsync: crate::Fsync::Always,
            });
            spool.dir = dir.into();
        }
        Ok(())
    }
}
