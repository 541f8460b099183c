//! Any sequence of captured reads, writes and closes on MQTT descriptors
//! (`exchanges::run`): the MQTT tracker never panics and stays within its bounds.
#![no_main]

#[path = "common/exchanges.rs"]
mod exchanges;

use libfuzzer_sys::fuzz_target;
use telegen_core::record::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut t = telegen_core::mqtt::MqttTracker::new(3);
    exchanges::run(data, &mut t, Protocol::Mqtt, 1883);
});
