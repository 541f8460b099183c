//! Any sequence of captured reads, writes and closes on DNS descriptors
//! (`exchanges::run`): the DNS tracker never panics and keeps at most 3 queries waiting.
#![no_main]

#[path = "common/exchanges.rs"]
mod exchanges;

use libfuzzer_sys::fuzz_target;
use telegen_core::record::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut t = telegen_core::dns::DnsTracker::new(3, 4, true);
    exchanges::run(data, &mut t, Protocol::Dns, 53);
});
