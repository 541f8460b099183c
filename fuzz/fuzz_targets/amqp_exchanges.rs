//! Any sequence of captured reads, writes and closes on AMQP descriptors
//! (`exchanges::run`): the AMQP tracker never panics and stays within its bounds.
#![no_main]

#[path = "common/exchanges.rs"]
mod exchanges;

use libfuzzer_sys::fuzz_target;
use telegen_core::record::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut t = telegen_core::amqp::AmqpTracker::new(3);
    exchanges::run(data, &mut t, Protocol::Amqp, 5672);
});
