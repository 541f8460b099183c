//! Finding (and if needed mounting) tracefs, and reading tracepoint formats.

use std::path::{Path, PathBuf};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Where tracefs is mounted, if it is.
pub fn find() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Finds tracefs, mounting it at /sys/kernel/tracing when it is not mounted.
pub fn ensure_mounted() -> Result<PathBuf, String> {
    if let Some(p) = find() {
        return Ok(p);
    }
    let src = c"tracefs";
    let dst = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed: {e} \
             (mount it with: mount -t tracefs tracefs {TRACEFS})"
        ));
    }
    log::info!("mounted tracefs at {TRACEFS}");
    find().ok_or_else(|| format!("mounted tracefs at {TRACEFS} but it has no events/"))
}

/// Whether this kernel has `sock:sock_send_length` and `sock:sock_recv_length` (Linux 6.4+),
/// which name the socket a read or write goes through: request tracing needs both.
pub fn sockets_named(tracing: &Path) -> bool {
    ["sock_send_length", "sock_recv_length"]
        .iter()
        .all(|n| tracing.join("events/sock").join(n).join("id").exists())
}

/// The `format` text of a tracepoint.
pub fn read_format(tracing: &Path, group: &str, name: &str) -> std::io::Result<String> {
    std::fs::read_to_string(tracing.join("events").join(group).join(name).join("format"))
}
