//! Which language runtime a program runs on, from its executable: `process.runtime.name`
//! and `process.runtime.version`. Sans-IO: the caller reads the bytes this module asks for.
//!
//! - Go: the `.go.buildinfo` section of the ELF file holds the toolchain version (`go1.22.2`)
//!   inline since Go 1.18. The caller reads the ELF header ([`elf_header`]), then the section
//!   headers, then the section names ([`find_section`]), then the section ([`go_version`]).
//!   Binaries without section headers, and Go before 1.18 (pointers instead of inline
//!   strings), give no version.
//! - CPython: an executable named `python3.11` (the name the interpreter is installed
//!   under; `/proc/PID/exe` and exec paths resolve `python3` to it).
//! - Java: an executable `…/bin/java` whose installation has a `release` file
//!   (`JAVA_RUNTIME_VERSION`, else `JAVA_VERSION`).
//! - Node.js: an executable named `node` or `nodejs`. Its version is compiled into a binary
//!   of tens of megabytes, which is not read; it is known when the installation says it:
//!   `NODE_VERSION` in the process's environment (the official container images set it,
//!   [`node_version_in_environ`]), or a path laid out by version, nvm's
//!   `…/versions/node/v20.11.1/bin/node` or an official tarball's
//!   `…/node-v20.11.1-linux-x64/bin/node` ([`node_version_in_path`]).

/// A language runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Go,
    CPython,
    Java,
    Node,
}

impl Runtime {
    /// `process.runtime.name`, as the semantic conventions' examples name them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Go => "go",
            Self::CPython => "cpython",
            Self::Java => "java",
            Self::Node => "nodejs",
        }
    }
}

/// The runtime the executable at `path` (resolved, as `/proc/PID/exe` gives it) implies
/// by its name alone, with the version when the name holds it. Go programs have any name:
/// they are recognised from their build info instead.
pub fn from_path(path: &str) -> Option<(Runtime, Option<&str>)> {
    let name = path.rsplit('/').next()?;
    if let Some(v) = name.strip_prefix("python") {
        let ok = !v.is_empty()
            && v.split('.').count() == 2
            && v.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return ok.then_some((Runtime::CPython, Some(v)));
    }
    match name {
        "node" | "nodejs" => Some((Runtime::Node, None)),
        "java" => Some((Runtime::Java, None)),
        _ => None,
    }
}

/// `X.Y.Z`, digits only.
fn semver(v: &str) -> bool {
    let parts: heapless::Vec<&str, 4> = v.split('.').take(4).collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The Node.js version a path names, laid out as nvm (`…/versions/node/vX.Y.Z/…`) or an
/// official tarball (`…/node-vX.Y.Z-<os>-<arch>/…`) lays it out: `X.Y.Z`.
pub fn node_version_in_path(path: &str) -> Option<&str> {
    let mut segments = path.split('/').peekable();
    let mut previous = ("", "");
    while let Some(seg) = segments.next() {
        if previous == ("versions", "node")
            && let Some(v) = seg.strip_prefix('v')
            && semver(v)
        {
            return Some(v);
        }
        if let Some(rest) = seg.strip_prefix("node-v") {
            let v = rest.split('-').next().unwrap_or("");
            if semver(v) && segments.peek().is_some() {
                return Some(v);
            }
        }
        previous = (previous.1, seg);
    }
    None
}

/// `NODE_VERSION` of a process's NUL-separated environment, when it is `X.Y.Z` (as the
/// official Node.js images set it), with a leading `v` allowed.
pub fn node_version_in_environ(environ: &[u8]) -> Option<&str> {
    let v = environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"NODE_VERSION="))?;
    let v = core::str::from_utf8(v).ok()?.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    semver(v).then_some(v)
}

/// The database or broker a process is, as a resource attribute (`db.system.name` or
/// `messaging.system`, with the conventions' values): by its executable's name (`names`:
/// its task name, its program file's name), else by a port it listens on that only that
/// server uses by default.
pub fn server(
    names: &[&str],
    mut ports: impl Iterator<Item = u16>,
) -> Option<(&'static str, &'static str)> {
    const DB: &str = "db.system.name";
    const MESSAGING: &str = "messaging.system";
    for n in names {
        let found = match *n {
            "postgres" | "postmaster" => (DB, "postgresql"),
            "mysqld" => (DB, "mysql"),
            "mariadbd" => (DB, "mariadb"),
            "redis-server" => (DB, "redis"),
            "valkey-server" => (DB, "redis"),
            _ => continue,
        };
        return Some(found);
    }
    ports.find_map(|p| match p {
        5432 => Some((DB, "postgresql")),
        3306 => Some((DB, "mysql")),
        6379 => Some((DB, "redis")),
        5672 => Some((MESSAGING, "rabbitmq")),
        9092 => Some((MESSAGING, "kafka")),
        _ => None,
    })
}

/// The installation folder of the Java executable at `path` (`…/bin/java` → `…`), whose
/// `release` file names the version.
pub fn java_home(path: &str) -> Option<&str> {
    path.strip_suffix("/bin/java")
}

/// The version a JDK's `release` file states: `JAVA_RUNTIME_VERSION` (`17.0.15+6-Debian-1`),
/// else `JAVA_VERSION` (`17.0.15`).
pub fn java_version(release: &str) -> Option<&str> {
    let field = |key: &str| {
        release.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            let v = v.trim().trim_matches('"');
            (!v.is_empty() && v.len() <= 64).then_some(v)
        })
    };
    field("JAVA_RUNTIME_VERSION").or_else(|| field("JAVA_VERSION"))
}

/// What the ELF header says of where the section headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfHeader {
    pub is64: bool,
    pub little: bool,
    /// File offset of the section header table.
    pub shoff: u64,
    /// Size of one entry.
    pub shentsize: u16,
    pub shnum: u16,
    /// Index of the section holding the section names.
    pub shstrndx: u16,
}

/// Bytes of an ELF header (64-bit; a 32-bit one is shorter) a caller should read.
pub const ELF_HEADER_LEN: usize = 64;
/// Most section headers read: more is not a program this module reads.
pub const MAX_SECTIONS: u16 = 512;

fn uint(b: &[u8], at: usize, n: usize, little: bool) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    let mut v = 0u64;
    for i in 0..n {
        let byte = if little { s[n - 1 - i] } else { s[i] };
        v = (v << 8) | u64::from(byte);
    }
    Some(v)
}

/// Parses the start of an ELF file; `None` when it is not one, or has no usable section
/// header table.
pub fn elf_header(b: &[u8]) -> Option<ElfHeader> {
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = match b.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match b.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let (shoff, rest) = if is64 {
        (uint(b, 0x28, 8, little)?, 0x3a)
    } else {
        (uint(b, 0x20, 4, little)?, 0x2e)
    };
    let shentsize = uint(b, rest, 2, little)? as u16;
    let shnum = uint(b, rest + 2, 2, little)? as u16;
    let shstrndx = uint(b, rest + 4, 2, little)? as u16;
    let entry = if is64 { 64 } else { 40 };
    if shoff == 0 || shnum == 0 || shnum > MAX_SECTIONS || shentsize < entry || shstrndx >= shnum {
        return None;
    }
    Some(ElfHeader {
        is64,
        little,
        shoff,
        shentsize,
        shnum,
        shstrndx,
    })
}

/// One section header: where its name is in the names section, and where it is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    pub name: u32,
    pub offset: u64,
    pub size: u64,
}

impl ElfHeader {
    /// Bytes of the section header table, read from [`ElfHeader::shoff`].
    pub fn table_len(&self) -> usize {
        usize::from(self.shentsize) * usize::from(self.shnum)
    }

    /// Section `i` of `table` (the bytes at `shoff`).
    pub fn section(&self, table: &[u8], i: u16) -> Option<Section> {
        let at = usize::from(i) * usize::from(self.shentsize);
        let l = self.little;
        if self.is64 {
            Some(Section {
                name: uint(table, at, 4, l)? as u32,
                offset: uint(table, at + 0x18, 8, l)?,
                size: uint(table, at + 0x20, 8, l)?,
            })
        } else {
            Some(Section {
                name: uint(table, at, 4, l)? as u32,
                offset: uint(table, at + 0x10, 4, l)?,
                size: uint(table, at + 0x14, 4, l)?,
            })
        }
    }
}

/// The section called `name` in `table`, given the bytes of the names section.
pub fn find_section(h: &ElfHeader, table: &[u8], names: &[u8], name: &str) -> Option<Section> {
    (0..h.shnum).find_map(|i| {
        let s = h.section(table, i)?;
        let n = names.get(s.name as usize..)?;
        let end = n.iter().position(|&b| b == 0)?;
        (&n[..end] == name.as_bytes()).then_some(s)
    })
}

/// Bytes of `.go.buildinfo` that hold the version: its 32-byte header, then a varint
/// length and the version string.
pub const GO_BUILDINFO_LEN: usize = 96;

/// The Go toolchain version (`go1.22.2`) in the start of a `.go.buildinfo` section.
pub fn go_version(b: &[u8]) -> Option<&str> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    const INLINE: u8 = 2;
    if b.get(..MAGIC.len())? != MAGIC || b.get(15)? & INLINE == 0 {
        return None;
    }
    // A varint length (one or two bytes for anything a version can be), then the bytes.
    let mut at = 32;
    let mut len = 0usize;
    for shift in [0, 7] {
        let byte = *b.get(at)?;
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let v = core::str::from_utf8(b.get(at..at + len)?).ok()?;
            return v.starts_with("go").then_some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_name() {
        assert_eq!(
            from_path("/usr/bin/python3.11"),
            Some((Runtime::CPython, Some("3.11")))
        );
        assert_eq!(
            from_path("/root/.pyenv/versions/3.12.1/bin/python3.12"),
            Some((Runtime::CPython, Some("3.12")))
        );
        assert_eq!(from_path("/usr/bin/python3-config"), None);
        assert_eq!(from_path("/usr/bin/python3."), None);
        assert_eq!(from_path("/usr/bin/python"), None);
        assert_eq!(from_path("/usr/bin/node"), Some((Runtime::Node, None)));
        let nvm = "/home/ci/.nvm/versions/node/v20.11.1/bin/node";
        assert_eq!(node_version_in_path(nvm), Some("20.11.1"));
        let tarball = "/opt/node-v18.19.0-linux-arm64/bin/node";
        assert_eq!(node_version_in_path(tarball), Some("18.19.0"));
        for none in [
            "/usr/bin/node",
            "/opt/node-v18.19-linux-x64/bin/node",
            "/srv/versions/node/latest/bin/node",
            "/srv/node-v1.2.3",
        ] {
            assert_eq!(node_version_in_path(none), None, "{none}");
        }
        let env = b"PATH=/usr/local/bin\0NODE_VERSION=20.11.1\0YARN_VERSION=1.22.19\0";
        assert_eq!(node_version_in_environ(env), Some("20.11.1"));
        assert_eq!(
            node_version_in_environ(b"NODE_VERSION=v22.1.0"),
            Some("22.1.0")
        );
        assert_eq!(node_version_in_environ(b"NODE_VERSION=lts\0"), None);
        assert_eq!(node_version_in_environ(b"NODE_VERSIONS=1.2.3"), None);
        assert_eq!(
            from_path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
            Some((Runtime::Java, None))
        );
        assert_eq!(from_path("/usr/sbin/nginx"), None);
        assert_eq!(from_path(""), None);
    }

    #[test]
    fn servers_by_name_and_port() {
        let none = core::iter::empty;
        assert_eq!(
            server(&["postgres", "postgres"], none()),
            Some(("db.system.name", "postgresql"))
        );
        assert_eq!(
            server(&["mariadbd"], [3306].into_iter()),
            Some(("db.system.name", "mariadb"))
        );
        assert_eq!(
            server(&["beam.smp"], [4369, 5672].into_iter()),
            Some(("messaging.system", "rabbitmq"))
        );
        assert_eq!(
            server(&["java"], [9092].into_iter()),
            Some(("messaging.system", "kafka"))
        );
        assert_eq!(server(&["nginx"], [80, 443].into_iter()), None);
        assert_eq!(server(&[], none()), None);
    }

    #[test]
    fn java_release_file() {
        // The head of this machine's /usr/lib/jvm/java-17-openjdk-amd64/release.
        let release = "IMPLEMENTOR=\"Debian\"\nJAVA_RUNTIME_VERSION=\"17.0.15+6-Debian-1deb12u1\"\n\
                       JAVA_VERSION=\"17.0.15\"\nJAVA_VERSION_DATE=\"2025-04-15\"\n";
        assert_eq!(java_version(release), Some("17.0.15+6-Debian-1deb12u1"));
        assert_eq!(
            java_version("JAVA_VERSION=\"1.8.0_392\"\nOS_NAME=\"Linux\"\n"),
            Some("1.8.0_392")
        );
        assert_eq!(java_version("JAVA_VERSION_DATE=\"2025\"\n"), None);
        assert_eq!(
            java_home("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
            Some("/usr/lib/jvm/java-17-openjdk-amd64")
        );
    }

    /// The start of `.go.buildinfo` in a program built by Debian's go1.19.8 (linux/amd64).
    const GO_119: &[u8] = b"\xff Go buildinf:\x08\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x08go1.19.8\xff\x010w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6path\t";

    #[test]
    fn go_build_info() {
        assert_eq!(go_version(GO_119), Some("go1.19.8"));
        // Before Go 1.18: pointers to the strings, not the strings.
        let mut old = GO_119.to_vec();
        old[15] = 0;
        assert_eq!(go_version(&old), None);
        assert_eq!(go_version(&GO_119[..40]), None, "cut in the version");
        let mut bad = GO_119.to_vec();
        bad[1] = b'X';
        assert_eq!(go_version(&bad), None);
        let mut long = GO_119.to_vec();
        long[32] = 0xff; // a varint longer than any version
        long[33] = 0xff;
        assert_eq!(go_version(&long), None);
    }

    /// A 64-bit little-endian ELF with three sections: null, `.go.buildinfo`, `.shstrtab`.
    fn tiny_elf() -> alloc::vec::Vec<u8> {
        let names = b"\0.go.buildinfo\0.shstrtab\0";
        let mut f = alloc::vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let info_off = f.len() as u64;
        f.extend_from_slice(GO_119);
        let names_off = f.len() as u64;
        f.extend_from_slice(names);
        let shoff = f.len() as u64;
        let sh = |name: u32, off: u64, size: u64| {
            let mut e = [0u8; 64];
            e[..4].copy_from_slice(&name.to_le_bytes());
            e[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            e[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            e
        };
        let table = [
            sh(0, 0, 0),
            sh(1, info_off, GO_119.len() as u64),
            sh(15, names_off, names.len() as u64),
        ];
        for e in table {
            f.extend_from_slice(&e);
        }
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn finds_a_section() {
        let f = tiny_elf();
        let h = elf_header(&f).expect("an ELF header");
        let table = &f[h.shoff as usize..h.shoff as usize + h.table_len()];
        let names = h.section(table, h.shstrndx).unwrap();
        let names = &f[names.offset as usize..(names.offset + names.size) as usize];
        let s = find_section(&h, table, names, ".go.buildinfo").expect("found");
        let info = &f[s.offset as usize..(s.offset + s.size) as usize];
        assert_eq!(go_version(info), Some("go1.19.8"));
        assert_eq!(find_section(&h, table, names, ".text"), None);
        assert_eq!(elf_header(b"#!/bin/sh\n"), None);
        let mut no_table = f.clone();
        no_table[0x3c] = 0;
        assert_eq!(elf_header(&no_table), None);
        let mut bad_index = f.clone();
        bad_index[0x3e] = 9;
        assert_eq!(elf_header(&bad_index), None);
    }
}
