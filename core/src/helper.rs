//! The messages between the unprivileged agent and its privileged helper, sans-IO.
//!
//! Both are 16 bytes, little-endian, with a fixed layout, and each side validates what it
//! reads: a message of another length, another magic or an unknown kind is refused whole.
//! A request names a pid and what is wanted of it, never a path: the helper finds every
//! file itself from that pid's `/proc` entries. An answer carries a status, a number (the
//! uprobes attached) and, for an `Open*` request that succeeded, a descriptor sent beside
//! it (SCM_RIGHTS).
//!
//! Also here: which files of a process's `/proc/PID/maps` are a libssl, the helper's
//! reading of what the kernel gives it.

/// The first two bytes of every message: "t" and the layout's version.
pub const MAGIC: u16 = 0x0174;
/// The size of a request and of an answer.
pub const LEN: usize = 16;

/// What the agent asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A descriptor of `/proc/PID/environ`, open for reading.
    OpenEnviron = 1,
    /// A descriptor of `/proc/PID/maps`, open for reading.
    OpenMaps = 2,
    /// A descriptor of the program `pid` runs (`/proc/PID/exe`), checked to be ELF.
    OpenExe = 3,
    /// The OpenSSL uprobes on every libssl `pid` maps that is not probed yet.
    AttachTls = 4,
}

impl Kind {
    pub const ALL: [Self; 4] = [
        Self::OpenEnviron,
        Self::OpenMaps,
        Self::OpenExe,
        Self::AttachTls,
    ];

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// For logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenEnviron => "open_environ",
            Self::OpenMaps => "open_maps",
            Self::OpenExe => "open_exe",
            Self::AttachTls => "attach_tls",
        }
    }

    /// Whether a successful answer carries a descriptor.
    pub const fn opens(self) -> bool {
        !matches!(self, Self::AttachTls)
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// The pid is not (or no longer) a process.
    NoProcess = 1,
    /// The helper may not open that file (a kernel thread, another namespace's rules).
    Denied = 2,
    /// The file is not a regular ELF file.
    NotElf = 3,
    /// Nothing to do: the process maps no libssl that is not probed already.
    Nothing = 4,
    /// The kernel refused to attach (a libssl without the symbols, no uprobe support).
    AttachFailed = 5,
    /// The request did not decode (answered with kind and sequence zero when unknown).
    BadRequest = 6,
}

impl Status {
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::NoProcess,
        Self::Denied,
        Self::NotElf,
        Self::Nothing,
        Self::AttachFailed,
        Self::BadRequest,
    ];

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == v)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoProcess => "no_process",
            Self::Denied => "denied",
            Self::NotElf => "not_elf",
            Self::Nothing => "nothing",
            Self::AttachFailed => "attach_failed",
            Self::BadRequest => "bad_request",
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Length(usize),
    Magic(u16),
    Kind(u8),
    Status(u8),
    /// Pid 0 names no process; reserved bytes must be zero.
    Field(&'static str),
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length(n) => write!(f, "{n} bytes, not {LEN}"),
            Self::Magic(m) => write!(f, "magic {m:#06x}, not {MAGIC:#06x}"),
            Self::Kind(k) => write!(f, "unknown kind {k}"),
            Self::Status(s) => write!(f, "unknown status {s}"),
            Self::Field(what) => write!(f, "bad {what}"),
        }
    }
}

/// A request: what is wanted of which pid; `seq` pairs it with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    pub seq: u32,
    pub pid: u32,
}

/// An answer to the request of the same `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub kind: Kind,
    pub status: Status,
    pub seq: u32,
    /// AttachTls: the uprobes attached.
    pub count: u32,
    /// The kernel's error number where one explains the status; 0 otherwise.
    pub errno: u32,
}

fn u16_at(b: &[u8; LEN], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8; LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn header(bytes: &[u8]) -> Result<&[u8; LEN], Refused> {
    let b: &[u8; LEN] = bytes.try_into().map_err(|_| Refused::Length(bytes.len()))?;
    match u16_at(b, 0) {
        MAGIC => Ok(b),
        m => Err(Refused::Magic(m)),
    }
}

impl Request {
    /// magic, kind, 0, seq, pid, 0.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = self.kind as u8;
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Refused> {
        let b = header(bytes)?;
        let kind = Kind::from_u8(b[2]).ok_or(Refused::Kind(b[2]))?;
        if b[3] != 0 || u32_at(b, 12) != 0 {
            return Err(Refused::Field("reserved bytes"));
        }
        let pid = u32_at(b, 8);
        // Pids are positive and below 2^22 (PID_MAX_LIMIT).
        if pid == 0 || pid > 1 << 22 {
            return Err(Refused::Field("pid"));
        }
        Ok(Self {
            kind,
            seq: u32_at(b, 4),
            pid,
        })
    }
}

impl Answer {
    /// magic, kind, status, seq, count, errno.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = self.kind as u8;
        b[3] = self.status as u8;
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.errno.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Refused> {
        let b = header(bytes)?;
        Ok(Self {
            kind: Kind::from_u8(b[2]).ok_or(Refused::Kind(b[2]))?,
            status: Status::from_u8(b[3]).ok_or(Refused::Status(b[3]))?,
            seq: u32_at(b, 4),
            count: u32_at(b, 8),
            errno: u32_at(b, 12),
        })
    }
}

/// A libssl a process maps: the address range of its first mapping and its path as the
/// reader of the maps sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped<'a> {
    pub start: u64,
    pub end: u64,
    pub path: &'a str,
}

/// The files `maps` (the text of `/proc/PID/maps`) maps whose name is a libssl
/// (`libssl.so`, `libssl.so.3`, ...), in the order they appear (the consecutive mappings of
/// one file once, by the first).
/// Lines that are not a mapping of a file by absolute path are skipped; a path the kernel
/// marks as deleted is skipped too (its file can no longer be opened by name).
pub fn libssl_paths(maps: &str) -> impl Iterator<Item = Mapped<'_>> {
    let mut last: Option<&str> = None;
    maps.lines().filter_map(move |line| {
        // address perms offset dev inode path: the path is the sixth field, and may hold
        // spaces, so it is what follows the fifth.
        let (range, _) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ')?;
            rest = &rest[end..];
        }
        let path = rest.trim_start();
        if !path.starts_with('/') || path.ends_with(" (deleted)") || start >= end {
            return None;
        }
        let name = path.rsplit('/').next().unwrap_or("");
        if !name.starts_with("libssl.so") || last == Some(path) {
            return None;
        }
        last = Some(path);
        Some(Mapped { start, end, path })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_and_bad_ones_are_refused() {
        let r = Request {
            kind: Kind::AttachTls,
            seq: 7,
            pid: 4242,
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let a = Answer {
            kind: Kind::OpenEnviron,
            status: Status::NoProcess,
            seq: 9,
            count: 0,
            errno: 3,
        };
        assert_eq!(Answer::decode(&a.encode()), Ok(a));
        let b = r.encode();
        assert_eq!(Request::decode(&b[..15]), Err(Refused::Length(15)));
        let mut bad = b;
        bad[0] = 0;
        assert!(matches!(Request::decode(&bad), Err(Refused::Magic(_))));
        let mut bad = b;
        bad[2] = 9;
        assert_eq!(Request::decode(&bad), Err(Refused::Kind(9)));
        let mut bad = b;
        bad[13] = 1;
        assert_eq!(Request::decode(&bad), Err(Refused::Field("reserved bytes")));
        let zero = Request { pid: 0, ..r }.encode();
        assert_eq!(Request::decode(&zero), Err(Refused::Field("pid")));
        let mut bad = a.encode();
        bad[3] = 200;
        assert_eq!(Answer::decode(&bad), Err(Refused::Status(200)));
    }

    #[test]
    fn the_libssl_files_a_process_maps() {
        // From /proc/PID/maps of a Python client with a copy of libssl under
        // LD_LIBRARY_PATH (Debian 13, x86_64), shortened.
        let maps = "\
55d0c0a3e000-55d0c0a94000 r--p 00000000 fe:01 2883597                    /usr/bin/python3.13
7f3c1a200000-7f3c1a2a0000 r--p 00000000 00:2a 41                        /tmp/late ssl/libssl.so.3
7f3c1a2a0000-7f3c1a3a0000 r-xp 000a0000 00:2a 41                        /tmp/late ssl/libssl.so.3
7f3c1a3a0000-7f3c1a3b0000 r--p 001a0000 00:2a 41                        /tmp/late ssl/libssl.so.3
7f3c1a400000-7f3c1a900000 r-xp 00000000 00:2a 42                        /tmp/late ssl/libcrypto.so.3
7f3c1b000000-7f3c1b001000 r--p 00000000 fe:01 100                       /usr/lib/x86_64-linux-gnu/libssl.so.1.1 (deleted)
7f3c1c000000-7f3c1c021000 rw-p 00000000 00:00 0                          [heap]
7f3c1d000000-7f3c1d001000 r--p 00000000 fe:01 3                          /opt/libssl.so
7ffd4e9f1000-7ffd4e9f3000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";
        let got: alloc::vec::Vec<Mapped> = libssl_paths(maps).collect();
        assert_eq!(
            got,
            [
                Mapped {
                    start: 0x7f3c1a200000,
                    end: 0x7f3c1a2a0000,
                    path: "/tmp/late ssl/libssl.so.3"
                },
                Mapped {
                    start: 0x7f3c1d000000,
                    end: 0x7f3c1d001000,
                    path: "/opt/libssl.so"
                }
            ]
        );
        // A range that does not parse, or is empty: not a mapping.
        let bad = "zz-7f00 r--p 00000000 fe:01 3 /opt/libssl.so\n\
                   7f00-7f00 r--p 00000000 fe:01 3 /opt/libssl.so.3\n";
        assert_eq!(libssl_paths(bad).count(), 0);
        assert_eq!(libssl_paths("").count(), 0);
    }
}
