//! What the agent reads from /proc and /etc: listening sockets older than the agent, and
//! the host's identity for the resource.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};

/// A listening TCP socket from /proc/net/tcp{,6}.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSocket {
    pub port: u16,
    pub inode: u64,
}

/// The listening socket a /proc/net/tcp{,6} line describes, if it is one.
pub fn parse_net_tcp_line(line: &str) -> Option<ListenSocket> {
    const LISTEN: &str = "0A";
    let mut cols = line.split_whitespace();
    let local = cols.nth(1)?;
    if cols.nth(1)? != LISTEN {
        return None;
    }
    let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    let inode = cols.nth(5)?.parse().ok()?;
    Some(ListenSocket { port, inode })
}

/// A process that owns a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOwner {
    pub port: u16,
    pub pid: u32,
    pub comm: String,
}

/// Finds the processes owning the listening sockets that exist now. Processes that vanish
/// while being read, or whose fds cannot be read, are skipped.
pub fn listening_owners() -> Vec<ListenOwner> {
    let mut by_inode: HashMap<u64, u16> = HashMap::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // Streamed line by line: with many sockets in TIME_WAIT the file runs to megabytes.
        let Ok(file) = fs::File::open(f) else {
            continue;
        };
        for line in BufReader::new(file).lines().skip(1).map_while(Result::ok) {
            if let Some(s) = parse_net_tcp_line(&line) {
                by_inode.insert(s.inode, s.port);
            }
        }
    }
    let mut owners = Vec::new();
    if by_inode.is_empty() {
        return owners;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(port) = by_inode.remove(&inode) {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                owners.push(ListenOwner {
                    port,
                    pid,
                    comm: comm.trim_end().to_string(),
                });
            }
        }
    }
    owners
}

/// `PRETTY_NAME` from os-release text.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release_field(os_release, "PRETTY_NAME")
}

/// One `KEY=value` of os-release text (quotes removed); `None` when absent or empty.
pub fn os_release_field(os_release: &str, key: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The machine id (systemd's `/etc/machine-id`, or D-Bus's), for `host.id`.
pub fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// When the host booted: `btime` of `/proc/stat` (Unix seconds).
pub fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    btime(&stat)
}

fn btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Unix seconds as an RFC 3339 UTC time (`2026-11-25T09:14:03Z`).
pub fn rfc3339(unix: u64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let days = (unix / 86_400) as i64 + 719_468;
    let secs = unix % 86_400;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The semantic-conventions value of `host.arch` for the build target.
pub const fn host_arch() -> &'static str {
    match std::env::consts::ARCH.as_bytes() {
        b"x86_64" => "amd64",
        b"aarch64" => "arm64",
        b"arm" => "arm32",
        b"x86" => "x86",
        b"powerpc64" => "ppc64",
        b"s390x" => "s390x",
        _ => std::env::consts::ARCH,
    }
}

/// uname(2) fields the resource uses: node name and kernel release.
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.release))
}

/// Every distinct OpenSSL `libssl` file on this machine that a process maps now, or that sits
/// in a usual library folder: the TLS uprobes attach to each (every process that maps a file,
/// now or later, is then covered). Paths of containerised processes go through their
/// `/proc/PID/root`.
pub fn libssl_files() -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut consider = |p: std::path::PathBuf| {
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && !seen.contains(&(m.dev(), m.ino()))
        {
            seen.push((m.dev(), m.ino()));
            out.push(p);
        }
    };
    let is_libssl = |name: &str| name.starts_with("libssl.so");
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib/arm-linux-gnueabihf",
        "/usr/lib/riscv64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/lib/arm-linux-gnueabihf",
        "/usr/lib64",
        "/usr/lib",
        "/lib64",
        "/lib",
        "/usr/local/lib",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(is_libssl) {
                consider(e.path());
            }
        }
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            let file = path.rsplit('/').next().unwrap_or("");
            if path.starts_with('/') && is_libssl(file) {
                consider(std::path::PathBuf::from(format!("/proc/{pid}/root{path}")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listeners_in_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1\n";
        let found: Vec<_> = text
            .lines()
            .skip(1)
            .filter_map(parse_net_tcp_line)
            .collect();
        assert_eq!(
            found,
            vec![ListenSocket {
                port: 8080,
                inode: 4242
            }]
        );
    }

    #[test]
    fn reads_os_release_fields() {
        let t = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.1\nEMPTY=\"\"\nNAME_X=no\n";
        assert_eq!(os_release_field(t, "NAME").as_deref(), Some("Alpine Linux"));
        assert_eq!(os_release_field(t, "VERSION_ID").as_deref(), Some("3.20.1"));
        assert_eq!(os_release_field(t, "EMPTY"), None);
        assert_eq!(os_release_field(t, "VERSION"), None);
        let here = std::fs::read_to_string("/etc/os-release").unwrap();
        assert!(
            os_release_field(&here, "NAME").is_some(),
            "this machine's os-release"
        );
        assert_eq!(
            machine_id().map(|m| m.len()),
            Some(32),
            "this machine's machine-id"
        );
    }

    #[test]
    fn boot_time_as_a_date() {
        assert_eq!(
            btime("cpu  1 2 3\nbtime 1764061200\nprocesses 9\n"),
            Some(1_764_061_200)
        );
        assert_eq!(btime("cpu 1\n"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_061_200 + 3_723), "2025-11-25T10:02:03Z");
        // This machine's: after 2000, before now.
        let b = boot_time().expect("/proc/stat has btime");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(b > 946_684_800 && b <= now, "{b}");
    }

    #[test]
    fn reads_pretty_name() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_pretty_name(t).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let owners = listening_owners();
        let me = owners
            .iter()
            .find(|o| o.port == port)
            .expect("own listener found");
        assert_eq!(me.pid, std::process::id());
    }
}
