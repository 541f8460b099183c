//! Any bytes as a message between the agent and its privileged helper, and any text as a
//! process's maps: a request, an answer or a refusal, and libssl paths, never a panic. What
//! decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::helper::{Answer, Request, libssl_paths};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(&r.encode()[..], data);
    }
    if let Ok(a) = Answer::decode(data) {
        assert_eq!(&a.encode()[..], data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for m in libssl_paths(text) {
            let p = m.path;
            assert!(p.starts_with('/') && p.rsplit('/').next().unwrap().starts_with("libssl.so"));
            assert!(m.start < m.end);
        }
    }
});
