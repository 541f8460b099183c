//! Dropping privileges once the kernel programs are loaded and attached.
//!
//! After start-up the agent needs no privilege at all: the event ring and the drop counters
//! are read through memory mapped at start-up, the exporter's sockets are ordinary sockets,
//! and /proc was read before. So it switches to an unprivileged account (default `nobody`),
//! with no supplementary groups, an empty capability bounding set (so no later exec could
//! regain one) and `no_new_privs`, and then verifies that it cannot become root again.
//! Directories it must write later (the spool) are handed to that account first.

use std::ffi::CString;
use std::path::Path;

/// A resolved account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Finds an account by name in /etc/passwd text, or takes `uid` / `uid:gid` numbers.
pub fn resolve(name: &str, passwd: &str) -> Result<Account, String> {
    if let Some((Ok(uid), Ok(gid))) = name.split_once(':').map(|(u, g)| (u.parse(), g.parse())) {
        return Ok(Account { uid, gid });
    }
    if let Ok(uid) = name.parse() {
        return Ok(Account { uid, gid: uid });
    }
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2]
                .parse()
                .map_err(|_| format!("/etc/passwd: bad uid for {name}"))?;
            let gid = f[3]
                .parse()
                .map_err(|_| format!("/etc/passwd: bad gid for {name}"))?;
            return Ok(Account { uid, gid });
        }
    }
    Err(format!(
        "no account {name:?} in /etc/passwd (set --user or [security] user; root keeps privileges)"
    ))
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Gives `path` (and, for a directory, what it holds) to the account.
fn hand_over(path: &Path, a: Account) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "path with NUL".to_string())?;
    // SAFETY: a valid C string.
    if unsafe { libc::chown(c.as_ptr(), a.uid, a.gid) } != 0 {
        return Err(last_os_error(&format!("chown {}", path.display())));
    }
    if path.is_dir() {
        for e in std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .flatten()
        {
            hand_over(&e.path(), a)?;
        }
    }
    Ok(())
}

/// A hexadecimal field of /proc/self/status (the capability sets).
fn status_hex(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The effective capability set of this process.
pub fn effective_caps() -> u64 {
    status_hex("CapEff:")
}

/// Becomes account `a` (real, effective and saved ids), with no supplementary groups.
pub fn switch_account(a: Account) -> Result<(), String> {
    // SAFETY: plain syscalls with integer arguments or a null pointer.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(last_os_error("setgroups"));
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            return Err(last_os_error("setresgid"));
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            return Err(last_os_error("setresuid"));
        }
    }
    Ok(())
}

/// Switches to `user` for good; `writable` paths are handed to it first.
pub fn drop_to(user: &str, writable: &[&Path]) -> Result<Account, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let a = resolve(user, &passwd)?;
    for p in writable {
        hand_over(p, a)?;
    }
    let last_cap: u64 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // SAFETY: plain syscalls with integer arguments or a null pointer.
    unsafe {
        for cap in 0..=last_cap {
            // EINVAL for capabilities this kernel does not know: fine.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        switch_account(a)?;
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(last_os_error("no_new_privs"));
        }
        // It must not be possible to go back.
        if a.uid != 0 && libc::setuid(0) == 0 {
            return Err("still able to become root after dropping privileges".into());
        }
    }
    let caps = effective_caps();
    if caps != 0 {
        return Err(format!(
            "capabilities left after dropping privileges: {caps:#x}"
        ));
    }
    if status_hex("CapBnd:") != 0 {
        log::warn!("the capability bounding set could not be emptied (no CAP_SETPCAP at start)");
    }
    Ok(a)
}

/// Whether the agent runs as root (it kept its privileges: `--user root`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            resolve("nobody", passwd),
            Ok(Account {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            resolve("1000", passwd),
            Ok(Account {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            resolve("1000:50", passwd),
            Ok(Account { uid: 1000, gid: 50 })
        );
        assert!(
            resolve("telegen", passwd)
                .unwrap_err()
                .contains("no account")
        );
    }
}
