//! Any sequence of header blocks through one HPACK decoder (a length byte, then the
//! block): decoding never panics, and the dynamic table stays within its size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::hpack::{Decoder, Scratch, TABLE_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut d = Box::<Decoder>::default();
    let mut scratch = Box::<Scratch>::default();
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (block, next) = tail.split_at(n);
        rest = next;
        let mut fields = 0usize;
        if d.decode(block, &mut scratch, |n, v| fields += n.len() + v.len()).is_err() {
            d.reset();
        }
        assert!(d.table_size() <= TABLE_BYTES);
    }
});
