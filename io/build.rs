//! Builds the kernel programs for bpfel with aya-build; `main` embeds the object.
use aya_build::{Package, Toolchain};

fn main() -> aya_build::Result<()> {
    let ebpf = Package {
        name: "telegen-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/programs"),
        ..Default::default()
    };
    println!("cargo:rerun-if-changed=../ebpf/common/src");
    aya_build::build_ebpf([ebpf], Toolchain::default())?;
    strip_dwarf(&std::path::Path::new(&std::env::var("OUT_DIR")?).join("telegen-ebpf"))
}

/// Removes the DWARF sections (`.debug_*` and their relocations) from the object at
/// `path`. The loader reads the programs, maps, `.BTF` and `.BTF.ext`; DWARF only served
/// bpf-linker to make the BTF, and would be most of the object's size.
fn strip_dwarf(path: &std::path::Path) -> aya_build::Result<()> {
    let data = std::fs::read(path)?;
    let mut elf = object::build::elf::Builder::read(&*data)?;
    for s in elf.sections.iter_mut() {
        let name = s.name.as_slice();
        let name = name
            .strip_prefix(b".rel")
            .or_else(|| name.strip_prefix(b".rela"))
            .unwrap_or(name);
        if name.starts_with(b".debug_") {
            s.delete = true;
        }
    }
    elf.delete_orphans();
    // bpf-linker names sections in the symbol string table; the writer wants a table of
    // their own.
    if !elf
        .sections
        .iter()
        .any(|s| s.name.as_slice() == b".shstrtab")
    {
        let names = elf.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = object::build::elf::SectionData::SectionString;
    }
    let mut out = Vec::new();
    elf.write(&mut out)?;
    std::fs::write(path, out)?;
    Ok(())
}
