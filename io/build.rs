//! Builds the kernel programs for bpfel with aya-build; `main` embeds the object.
use aya_build::{Package, Toolchain};

fn main() -> aya_build::Result<()> {
    let ebpf = Package {
        name: "telegen-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/programs"),
        ..Default::default()
    };
    println!("cargo:rerun-if-changed=../ebpf/common/src");
    aya_build::build_ebpf([ebpf], Toolchain::default())
}
