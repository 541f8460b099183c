//! Any bytes as an executable: the ELF header, its section table and names, a Go build
//! info section, a JDK `release` file and a path are read without a panic, and a found
//! section lies where the header says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_core::runtime;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = runtime::elf_header(data) {
        let table = data.get(h.shoff as usize..).unwrap_or(&[]);
        let names = h
            .section(table, h.shstrndx)
            .and_then(|s| data.get(s.offset as usize..))
            .unwrap_or(&[]);
        if let Some(s) = runtime::find_section(&h, table, names, ".go.buildinfo") {
            let info = data.get(s.offset as usize..).unwrap_or(&[]);
            let _ = runtime::go_version(info);
        }
    }
    if let Some(v) = runtime::go_version(data) {
        assert!(v.starts_with("go"));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = runtime::java_version(text);
        let _ = runtime::from_path(text);
        let _ = runtime::java_home(text);
    }
});
