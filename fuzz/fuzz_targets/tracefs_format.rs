//! Any text as a tracefs `format` file: a layout or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::tracefs::{TcpTracepoint, tcp_offsets};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for tp in TcpTracepoint::ALL {
            let _ = tcp_offsets(tp, text);
        }
    }
});
