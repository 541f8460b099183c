//! Any bytes as a spool segment: scanning returns records, skips or ends, never panics, and
//! always moves forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_export::spool::{Scan, scan};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    loop {
        match scan(data, at) {
            Scan::Record { payload, next, .. } => {
                assert!(payload.end <= data.len() && next > at);
                at = next;
            }
            Scan::Corrupt { next } => {
                assert!(next > at);
                at = next;
            }
            Scan::Torn | Scan::End => break,
        }
    }
});
