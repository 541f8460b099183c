//! Any sequence of captured reads, writes and closes on HTTP/2 descriptors
//! (`exchanges::run`): frames, HPACK blocks and streams never panic the HTTP/2 tracker,
//! which stays within its bounds.
#![no_main]

#[path = "common/exchanges.rs"]
mod exchanges;

use libfuzzer_sys::fuzz_target;
use telegen_core::record::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut t = telegen_core::http2::Http2Tracker::new(3);
    exchanges::run(data, &mut t, Protocol::Http2, 8080);
});
