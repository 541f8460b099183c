//! The privileged helper: a child forked before the agent drops its privileges, which keeps
//! the few it needs to do what the unprivileged agent no longer may.
//!
//! It keeps CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (which the kernel requires again for
//! creating uprobes: see [`kept_caps`]) to attach the OpenSSL uprobes, already loaded, to a
//! libssl that appears after start-up; CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to open other
//! users' processes' `/proc` entries. It runs as the agent's account, in a network namespace of its own (no network
//! at all), with every other descriptor closed, its own seccomp list (no `socket`, no
//! `execve`), `no_new_privs`, and `PR_SET_PDEATHSIG`: it dies with the agent.
//!
//! It serves two socketpairs (SOCK_SEQPACKET), one message a request, each answered in
//! order: `open` (environ, maps, exe of a pid: the agent waits for the answer, at most
//! [`OPEN_TIMEOUT`]) and `attach` (the libssl files a pid maps: answered in the event loop).
//! Messages are [`telegen_core::helper`]'s fixed 16-byte layouts, validated on both sides; a
//! request names a pid, never a path: the helper resolves every file itself, from that
//! pid's `/proc` entries, checks it is a regular ELF file, and attaches through the
//! descriptor it checked (`/proc/self/fd/N`), so the file cannot be swapped in between.
//!
//! As root (`--user root`) or with `--no-helper` there is no helper: as root the agent
//! attaches to a late libssl itself; without the helper it does not.

use crate::kernel::Kernel;
use crate::privileges::Account;
use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use telegen_core::helper::{Answer, Kind, LEN, Request, Status, libssl_paths};
use telegen_core::selfmetrics::{AgentCounters, DropReason};

/// How long the agent waits for a descriptor.
pub const OPEN_TIMEOUT: Duration = Duration::from_millis(200);
/// Exec-time attach requests that may wait; beyond, counted as `helper_queue_full`.
pub const ATTACH_QUEUE: usize = 64;
/// Attach requests sent and not yet answered, at most.
const IN_FLIGHT: usize = 4;
/// When a process's maps are read after its exec: once the dynamic loader has mapped its
/// libraries, and again for a library it loads at run time (Python's `ssl` module).
const ATTACH_AFTER: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(2)];
/// The most of `/proc/PID/maps` read (a process with very many mappings is cut there).
const MAPS_MAX: u64 = 4 << 20;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities the helper keeps on a kernel whose last capability is `last_cap`.
///
/// CAP_SYS_ADMIN too: creating a uprobe needs it again since Linux commit ba677dbe77af
/// ("perf: Revert to requiring CAP_SYS_ADMIN for uprobes", 2025, in the stable kernels
/// from 5.10 on; CAP_PERFMON sufficed from 5.8 until then), and before 5.8 it is what
/// CAP_BPF and CAP_PERFMON were split from. What the helper can do with it is bounded by
/// its seccomp list (no mount, no socket, no execve, no module or namespace calls).
pub fn kept_caps(last_cap: u32) -> u64 {
    let base = 1 << CAP_DAC_READ_SEARCH | 1 << CAP_SYS_PTRACE | 1 << CAP_SYS_ADMIN;
    if last_cap >= CAP_BPF {
        base | 1 << CAP_BPF | 1 << CAP_PERFMON
    } else {
        base
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn socketpair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: the kernel writes two descriptors into `fds`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(os_error("socketpair"));
    }
    // SAFETY: both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with `fd` beside it when given.
fn send(sock: RawFd, bytes: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one descriptor, aligned as cmsghdr wants.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer in it points at live locals.
    let r = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        }
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message into `buf`: its length (0: the other end closed) and the
/// descriptor sent with it, if any. A message longer than `buf` is cut (and then refused by
/// its length check, as MSG_TRUNC reports its whole length).
fn recv(sock: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: as in `send`; the kernel writes at most `msg_controllen` bytes of control.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of_val(&control) as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut fd = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count =
                    ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned((libc::CMSG_DATA(c) as *const RawFd).add(i));
                    // Only the first is kept; any other is closed at once.
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, fd))
    }
}

fn set_timeout(sock: RawFd, opt: libc::c_int, d: Duration) {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    };
    // SAFETY: setsockopt reads the struct it is given.
    unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            opt,
            &tv as *const libc::timeval as *const libc::c_void,
            size_of::<libc::timeval>() as u32,
        );
    }
}

/// The agent's end of the `open` socket: asks for a descriptor and waits for it.
pub struct Opener {
    sock: OwnedFd,
    seq: u32,
    gone: bool,
}

impl Opener {
    /// Opens `/proc/PID/environ`, `maps` or `exe` through the helper; `None` when it
    /// answered otherwise (counted by status), did not answer in time, or is gone.
    pub fn open(
        &mut self,
        kind: Kind,
        pid: u32,
        counters: &mut AgentCounters,
    ) -> Option<std::fs::File> {
        if self.gone || !kind.opens() {
            return None;
        }
        self.seq = self.seq.wrapping_add(1);
        let req = Request {
            kind,
            seq: self.seq,
            pid,
        };
        if let Err(e) = send(self.sock.as_raw_fd(), &req.encode(), None) {
            self.gone = true;
            log::warn!(
                "the privileged helper is gone ({e}): other users' processes are no longer read"
            );
            return None;
        }
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let mut buf = [0u8; LEN * 2];
        loop {
            let (n, fd) = match recv(self.sock.as_raw_fd(), &mut buf) {
                Ok((0, _)) => {
                    self.gone = true;
                    log::warn!(
                        "the privileged helper ended: other users' processes are no longer read"
                    );
                    return None;
                }
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("helper: no answer to {} of {pid} ({e})", kind.as_str());
                    return None;
                }
            };
            match Answer::decode(&buf[..n.min(buf.len())]) {
                // An answer to an earlier request that timed out: not ours.
                Ok(a) if a.seq != self.seq => {}
                Ok(a) => {
                    counters.helper_answered(a.kind, a.status);
                    return match (a.status, fd) {
                        (Status::Ok, Some(fd)) => Some(std::fs::File::from(fd)),
                        _ => None,
                    };
                }
                Err(e) => log::warn!("helper: an answer refused ({e})"),
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// Exec-time attach: the pids whose maps are to be read, when, and the answers.
pub struct Attacher {
    /// The helper's `attach` socket; `None` when the agent attaches itself (root).
    sock: Option<OwnedFd>,
    /// The helper's pid, for reaping it when it ends.
    pub helper_pid: Option<libc::pid_t>,
    due: VecDeque<(Instant, u32)>,
    /// Requests sent and not yet answered: (sequence, pid).
    in_flight: VecDeque<(u32, u32)>,
    seq: u32,
}

impl Attacher {
    /// Attaching in the agent's own process (it kept its privileges).
    pub fn in_process(kernel: &Kernel) -> Option<Self> {
        kernel.tls_probed()?;
        Some(Self {
            sock: None,
            helper_pid: None,
            due: VecDeque::with_capacity(ATTACH_QUEUE),
            in_flight: VecDeque::with_capacity(IN_FLIGHT),
            seq: 0,
        })
    }

    /// The descriptor the event loop polls (the helper's answers).
    pub fn fd(&self) -> Option<RawFd> {
        self.sock.as_ref().map(|s| s.as_raw_fd())
    }

    /// A process executed a program: its maps are read after [`ATTACH_AFTER`].
    /// A pid that executes again (a shell script, a launcher such as pyenv's shims) has
    /// its waiting requests replaced: its maps are read after its last program started.
    pub fn on_exec(&mut self, pid: u32, now: Instant, counters: &mut AgentCounters) {
        self.due.retain(|(_, p)| *p != pid);
        for after in ATTACH_AFTER {
            if self.due.len() >= ATTACH_QUEUE {
                counters.drop(DropReason::HelperQueueFull, 1);
                continue;
            }
            self.due.push_back((now + after, pid));
        }
    }

    /// A process ended: its maps need no reading (a burst of short processes would
    /// otherwise fill the queue for nothing).
    pub fn on_exit(&mut self, pid: u32) {
        self.due.retain(|(_, p)| *p != pid);
    }

    /// When the next request is due.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.in_flight.len() >= IN_FLIGHT {
            return None;
        }
        self.due.iter().map(|(at, _)| *at).min()
    }

    /// Sends (or, in process, carries out) the requests that are due.
    pub fn send_due(&mut self, now: Instant, kernel: &mut Kernel, counters: &mut AgentCounters) {
        while self.in_flight.len() < IN_FLIGHT {
            let Some(i) = self.due.iter().position(|(at, _)| *at <= now) else {
                return;
            };
            let Some((_, pid)) = self.due.remove(i) else {
                return;
            };
            match &self.sock {
                None => {
                    let (status, count) = attach_tls(kernel, pid);
                    counters.helper_answered(Kind::AttachTls, status);
                    log_attach(pid, status, count);
                }
                Some(sock) => {
                    self.seq = self.seq.wrapping_add(1);
                    let req = Request {
                        kind: Kind::AttachTls,
                        seq: self.seq,
                        pid,
                    };
                    if send(sock.as_raw_fd(), &req.encode(), None).is_err() {
                        // Gone: the event loop hears the hang-up.
                        return;
                    }
                    self.in_flight.push_back((self.seq, pid));
                }
            }
        }
    }

    /// Reads the helper's answers; `Err` once it has ended (then reaped, and why said).
    pub fn on_readable(&mut self, counters: &mut AgentCounters) -> Result<(), String> {
        let Some(sock) = &self.sock else {
            return Ok(());
        };
        let mut buf = [0u8; LEN * 2];
        loop {
            match recv(sock.as_raw_fd(), &mut buf) {
                Ok((0, _)) => return Err(self.reap()),
                Ok((n, _)) => {
                    let sent = self.in_flight.pop_front();
                    match Answer::decode(&buf[..n.min(buf.len())]) {
                        Ok(a) => {
                            counters.helper_answered(a.kind, a.status);
                            // Answered in order: the oldest request's pid.
                            let pid = sent.filter(|(seq, _)| *seq == a.seq).map_or(0, |s| s.1);
                            log_attach(pid, a.status, a.count);
                        }
                        Err(e) => log::warn!("helper: an answer refused ({e})"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(self.reap()),
            }
        }
    }

    /// Waits for the helper that ended; how it ended.
    fn reap(&mut self) -> String {
        self.sock = None;
        let Some(pid) = self.helper_pid.take() else {
            return "ended".into();
        };
        let mut status = 0;
        // SAFETY: waits for our own child; writes `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid {
            return format!("ended (pid {pid})");
        }
        if libc::WIFSIGNALED(status) {
            format!(
                "was killed by signal {} (pid {pid})",
                libc::WTERMSIG(status)
            )
        } else {
            format!(
                "exited with status {} (pid {pid})",
                libc::WEXITSTATUS(status)
            )
        }
    }
}

fn log_attach(pid: u32, status: Status, count: u32) {
    let whose = if pid == 0 {
        String::new()
    } else {
        format!(" of pid {pid}")
    };
    match status {
        Status::Ok => log::info!("TLS plaintext: {count} uprobes on a libssl mapped later{whose}"),
        Status::NotElf => log::warn!("helper: a libssl{whose} is not an ELF file: not probed"),
        Status::AttachFailed => {
            log::warn!("helper: the OpenSSL uprobes could not be attached to a libssl{whose}")
        }
        Status::BadRequest => log::warn!("helper: refused a request as malformed"),
        Status::Nothing | Status::NoProcess | Status::Denied => {
            log::debug!("helper: attach{whose}: {}", status.as_str())
        }
    }
}

/// Forks the helper; the agent's ends of its two sockets. `account`: the agent's account
/// after the drop, which the helper takes too.
pub fn spawn(kernel: &mut Kernel, account: Account) -> Result<(Opener, Attacher), String> {
    kernel.tls_probed().ok_or("request tracing is off")?;
    let (open_agent, open_helper) = socketpair()?;
    let (attach_agent, attach_helper) = socketpair()?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the agent is one thread here (the closer threads start after the drop): the
    // child may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_error("fork"));
    }
    if pid == 0 {
        drop((open_agent, attach_agent));
        let code = match child(parent, kernel, account, &open_helper, &attach_helper) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("helper: {e}");
                1
            }
        };
        // SAFETY: ends the child without running the agent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop((open_helper, attach_helper));
    set_timeout(open_agent.as_raw_fd(), libc::SO_RCVTIMEO, OPEN_TIMEOUT);
    set_timeout(open_agent.as_raw_fd(), libc::SO_SNDTIMEO, OPEN_TIMEOUT);
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let fl = libc::fcntl(attach_agent.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(
            attach_agent.as_raw_fd(),
            libc::F_SETFL,
            fl | libc::O_NONBLOCK,
        );
    }
    Ok((
        Opener {
            sock: open_agent,
            seq: 0,
            gone: false,
        },
        Attacher {
            sock: Some(attach_agent),
            helper_pid: Some(pid),
            due: VecDeque::with_capacity(ATTACH_QUEUE),
            in_flight: VecDeque::with_capacity(IN_FLIGHT),
            seq: 0,
        },
    ))
}

/// The helper's life: confinement, then requests until the agent goes.
fn child(
    parent: libc::pid_t,
    kernel: &mut Kernel,
    account: Account,
    open: &OwnedFd,
    attach: &OwnedFd,
) -> Result<(), String> {
    // SAFETY: prctl and unshare with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // The agent may have ended before the line above.
        if libc::getppid() != parent {
            return Ok(());
        }
        libc::prctl(libc::PR_SET_NAME, c"telegen-helper".as_ptr(), 0, 0, 0);
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            log::debug!(
                "helper: no network namespace of its own ({})",
                os_error("unshare")
            );
        }
    }
    let mut keep = kernel.tls_program_fds();
    keep.extend([0, 1, 2, open.as_raw_fd(), attach.as_raw_fd()]);
    close_all_but(&keep);
    confine(account)?;
    crate::seccomp::Filter::helper()
        .install()
        .map_err(|e| format!("seccomp: {e}"))?;
    let mut fds = [
        libc::pollfd {
            fd: open.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: attach.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = [0u8; LEN * 2];
    loop {
        // SAFETY: poll writes the `revents` of the two entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os_error("poll"));
        }
        for pfd in &mut fds {
            if pfd.revents == 0 {
                continue;
            }
            pfd.revents = 0;
            let (len, stray) = match recv(pfd.fd, &mut buf) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The agent closed its end: the helper's work is over.
                Err(_) => return Ok(()),
            };
            // The agent sends no descriptors; one sent anyway is closed here.
            drop(stray);
            if len == 0 {
                return Ok(());
            }
            let (answer, fd) = serve(&buf[..len.min(buf.len())], &mut |pid| {
                attach_tls(kernel, pid)
            });
            if send(pfd.fd, &answer.encode(), fd.as_ref().map(|f| f.as_raw_fd())).is_err() {
                return Ok(());
            }
        }
    }
}

/// Closes every descriptor of the process but `keep`.
fn close_all_but(keep: &[RawFd]) {
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        if !keep.contains(&fd) {
            // SAFETY: the child never uses the agent's descriptors again (it ends with
            // _exit, running no destructor that would close them a second time).
            unsafe { libc::close(fd) };
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Keeps [`kept_caps`] only, as `account`, with no way to gain more.
fn confine(account: Account) -> Result<(), String> {
    let last = last_cap();
    let keep = kept_caps(last);
    // SAFETY: prctl/set*id/capset with integer arguments or structs that live on the stack.
    unsafe {
        for cap in 0..=last {
            if keep & (1 << cap) == 0 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
        }
        if account.uid != 0 {
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
                return Err(os_error("keepcaps"));
            }
            crate::privileges::switch_account(account)?;
        }
        let header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        for (i, d) in data.iter_mut().enumerate() {
            let word = (keep >> (32 * i)) as u32;
            d.effective = word;
            d.permitted = word;
        }
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
            return Err(os_error("capset"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(os_error("no_new_privs"));
        }
    }
    let eff = crate::privileges::effective_caps();
    if eff != keep {
        return Err(format!(
            "capabilities {eff:#x} after confinement, not {keep:#x}"
        ));
    }
    Ok(())
}

/// Opens `/proc/PID/what` for reading.
fn open_proc(pid: u32, what: &str) -> Result<std::fs::File, (Status, u32)> {
    std::fs::File::open(format!("/proc/{pid}/{what}")).map_err(status_of)
}

fn status_of(e: std::io::Error) -> (Status, u32) {
    let errno = e.raw_os_error().unwrap_or(0);
    let status = match errno {
        libc::ENOENT | libc::ESRCH => Status::NoProcess,
        _ => Status::Denied,
    };
    (status, errno as u32)
}

/// Whether `f` is a regular file that starts as ELF files do.
fn is_elf(f: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    f.metadata().is_ok_and(|m| m.is_file())
        && f.read_exact_at(&mut magic, 0).is_ok()
        && magic == *b"\x7fELF"
}

/// One request, checked; the answer and the descriptor to send with it.
fn serve(
    bytes: &[u8],
    attach: &mut dyn FnMut(u32) -> (Status, u32),
) -> (Answer, Option<std::fs::File>) {
    let answer = |kind, status, seq, count, errno| Answer {
        kind,
        status,
        seq,
        count,
        errno,
    };
    let req = match Request::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("helper: a request refused ({e})");
            return (answer(Kind::AttachTls, Status::BadRequest, 0, 0, 0), None);
        }
    };
    let (kind, seq, pid) = (req.kind, req.seq, req.pid);
    let opened = match kind {
        Kind::OpenEnviron => open_proc(pid, "environ"),
        Kind::OpenMaps => open_proc(pid, "maps"),
        Kind::OpenExe => match open_proc(pid, "exe") {
            Ok(f) if is_elf(&f) => Ok(f),
            Ok(_) => Err((Status::NotElf, 0)),
            Err(e) => Err(e),
        },
        Kind::AttachTls => {
            let (status, count) = attach(pid);
            return (answer(kind, status, seq, count, 0), None);
        }
    };
    match opened {
        Ok(f) => (answer(kind, Status::Ok, seq, 0, 0), Some(f)),
        Err((status, errno)) => (answer(kind, status, seq, 0, errno), None),
    }
}

/// A libssl found in a process's maps: its descriptor, (device, inode), and path there.
type Found = (std::fs::File, (u64, u64), String);

/// The libssl files `pid` maps that are not among `probed`, opened through the process's
/// `map_files` (or its own root: a container's files are found in its mount namespace)
/// and checked to be regular ELF files; or why there are none.
fn libssl_files_of(pid: u32, probed: &[(u64, u64)]) -> Result<Vec<Found>, Status> {
    use std::os::unix::fs::MetadataExt;
    let mut maps = String::new();
    let f = open_proc(pid, "maps").map_err(|(status, _)| status)?;
    if f.take(MAPS_MAX).read_to_string(&mut maps).is_err() {
        return Err(Status::NoProcess);
    }
    let (mut found, mut why) = (Vec::new(), Status::Nothing);
    for m in libssl_paths(&maps) {
        let path = m.path;
        // The mapped file itself (`map_files`, CAP_SYS_ADMIN): the path in the maps is the
        // one the reader sees, which for a chroot below the host's root is not the path
        // under the process's root. Else by that path under the process's own root (a
        // container's files in its mount namespace).
        let f =
            match std::fs::File::open(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end))
                .or_else(|_| std::fs::File::open(format!("/proc/{pid}/root{path}")))
            {
                Ok(f) => f,
                Err(e) => {
                    why = status_of(e).0;
                    continue;
                }
            };
        let Ok(m) = f.metadata() else { continue };
        let id = (m.dev(), m.ino());
        if probed.contains(&id) || found.iter().any(|(_, i, _)| *i == id) {
            continue;
        }
        if !is_elf(&f) {
            why = Status::NotElf;
            continue;
        }
        found.push((f, id, path.to_string()));
    }
    if found.is_empty() {
        return Err(why);
    }
    Ok(found)
}

/// Attaches the OpenSSL uprobes to each libssl `pid` maps that is not probed yet; the
/// status and the uprobes attached.
pub fn attach_tls(kernel: &mut Kernel, pid: u32) -> (Status, u32) {
    let files = match libssl_files_of(pid, kernel.tls_probed().unwrap_or(&[])) {
        Ok(f) => f,
        Err(status) => return (status, 0),
    };
    let (mut count, mut status) = (0, Status::AttachFailed);
    for (f, id, path) in files {
        // Through the descriptor just checked: the name cannot be swapped in between.
        let via = std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        match kernel.attach_tls_file(&via, id) {
            Ok(n) => {
                count += n;
                status = Status::Ok;
                log::debug!("helper: {n} OpenSSL uprobes on {path} (pid {pid})");
            }
            Err(e) => log::debug!("helper: {path} (pid {pid}): {e}"),
        }
    }
    (status, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Resolves the files as the helper does, without attaching (that needs the kernel
    /// programs: `io/tests/helper_e2e.rs` does it).
    fn resolve_only(pid: u32) -> (Status, u32) {
        match libssl_files_of(pid, &[]) {
            Ok(f) => (Status::Ok, f.len() as u32),
            Err(s) => (s, 0),
        }
    }

    fn ask(kind: Kind, pid: u32) -> (Answer, Option<std::fs::File>) {
        let req = Request { kind, seq: 5, pid };
        serve(&req.encode(), &mut resolve_only)
    }

    /// A Python process that maps `file` and waits.
    fn mapping(file: &std::path::Path) -> std::process::Child {
        let mut c = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import mmap, sys\nf = open(sys.argv[1], 'rb')\n\
                 m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\nprint('mapped', flush=True)\n\
                 sys.stdin.read()",
            ])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "mapped\n");
        c
    }

    #[test]
    fn requests_are_checked_and_answered_from_proc() {
        // Not a request: refused whole, nothing opened.
        let (a, fd) = serve(b"GET / HTTP/1.1\r\n", &mut resolve_only);
        assert_eq!((a.status, fd.is_none()), (Status::BadRequest, true));
        // This process: its environment, with a descriptor.
        let (a, fd) = ask(Kind::OpenEnviron, std::process::id());
        assert_eq!((a.status, a.seq), (Status::Ok, 5));
        let mut env = Vec::new();
        fd.unwrap().read_to_end(&mut env).unwrap();
        assert!(env.split(|b| *b == 0).any(|v| v.starts_with(b"PATH=")));
        let (a, fd) = ask(Kind::OpenExe, std::process::id());
        assert_eq!(a.status, Status::Ok);
        assert!(is_elf(&fd.unwrap()));
        // A pid that ended: each request says so.
        let mut gone = Command::new("/bin/true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        for kind in Kind::ALL {
            let (a, fd) = ask(kind, pid);
            assert_eq!(
                (a.status, fd.is_none()),
                (Status::NoProcess, true),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_libssl_that_is_no_elf_file_is_refused_and_a_real_one_found_once() {
        let dir = std::env::temp_dir().join(format!("telegen-helper-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("libssl.so.3");
        std::fs::write(&fake, "not a library\n".repeat(400)).unwrap();
        let mut c = mapping(&fake);
        assert_eq!(libssl_files_of(c.id(), &[]).err(), Some(Status::NotElf));
        let _ = c.kill();
        let _ = c.wait();
        let real = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .iter()
            .map(|d| std::path::Path::new(d).join("libssl.so.3"))
            .find(|p| p.exists())
            .expect("Debian's libssl3");
        let copy = dir.join("copy").join("libssl.so.3");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&real, &copy).unwrap();
        let mut c = mapping(&copy);
        let found = libssl_files_of(c.id(), &[]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].2, copy.to_str().unwrap());
        // Probed already: nothing to do.
        let id = found[0].1;
        assert_eq!(libssl_files_of(c.id(), &[id]).err(), Some(Status::Nothing));
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
