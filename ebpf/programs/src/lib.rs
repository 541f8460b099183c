//! Empty on purpose: the programs are the `telegen-ebpf` binary. This library target exists
//! so that `io` can name the crate as a build dependency and be rebuilt when it changes.
#![no_std]
