//! A small stderr logger for the `log` facade. Level from `TELEGEN_LOG` (error, warn, info,
//! debug, trace; default info). Lines carry the level and the module; nothing is buffered.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("telegen")
            || m.level() <= Level::Warn
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = r.level().as_str().to_ascii_lowercase();
            let _ = writeln!(std::io::stderr().lock(), "telegen {level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once, at start.
pub fn init() {
    let level = match std::env::var("TELEGEN_LOG").as_deref() {
        Ok("error") => LevelFilter::Error,
        Ok("warn") => LevelFilter::Warn,
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
