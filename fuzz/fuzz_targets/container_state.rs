//! Any bytes as a container runtime's state file (containers/storage `containers.json`,
//! docker `config.v2.json`): the parsers return names or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telegen_export::containers::{NAME_CAP, docker_name, storage_names};

fuzz_target!(|data: &[u8]| {
    for (_, name) in storage_names(data).unwrap_or_default() {
        assert!(!name.is_empty() && name.len() <= NAME_CAP);
    }
    if let Ok(Some((_, name))) = docker_name(data) {
        assert!(!name.is_empty() && name.len() <= NAME_CAP);
    }
});
