//! Any bytes from a collector, split at any point: the reader answers or errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_export::http::ResponseReader;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let mut r = ResponseReader::new();
    for part in [&rest[..cut], &rest[cut..]] {
        match r.feed(part) {
            Ok(_) => {}
            Err(_) => return,
        }
    }
    let _ = r.eof();
});
