//! The optional seccomp filter for the steady state (`--seccomp`, `[security] seccomp`).
//!
//! Once the programs are attached and the privileges dropped, the event loop needs a short
//! list of system calls: reading and writing descriptors, epoll, sockets to the collector
//! (and name resolution for a host name endpoint, which reads /etc files and may ask a DNS
//! server), the spool's files, memory, time and exit. The filter allows those and either
//! kills the agent (`kill`) or lets the kernel log the call (`log`, for finding what a
//! platform needs) for anything else, including calls made through a foreign ABI (x32 or
//! i386 calls from an x86_64 process).
//!
//! The filter is a classic BPF program built here, a list of equality tests on the call
//! number after a check of the architecture. It is small enough that a crate would bring
//! more than it saves, and it covers armv7, which the usual crates (seccompiler) do not.
//! The list was taken from `strace` of the agent under every exercised path (export, retry,
//! spool, TLS, host name resolution, shutdown), and the whole end-to-end suite runs with
//! `kill` (x86_64 glibc), as does the arm64 VM run (aarch64 musl).

use telegen_config::Seccomp;

// seccomp_data: `nr` at offset 0, `arch` at offset 4, the arguments as u64 from 16 (the low
// half of the second at 24: every architecture here is little-endian).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG1_LOW: u32 = 24;

// The one ioctl of the steady state: aya disables the perf events when the perf buffers
// close at shutdown (and enabling is allowed with it).
const PERF_EVENT_IOC_ENABLE: u32 = 0x2400;
const PERF_EVENT_IOC_DISABLE: u32 = 0x2401;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;

const SET_MODE_FILTER: libc::c_uint = 1;
const GET_ACTION_AVAIL: libc::c_uint = 2;
const FILTER_FLAG_TSYNC: libc::c_uint = 1;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "arm")]
const AUDIT_ARCH: u32 = 0x4000_0028;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

/// On every architecture.
const COMMON: &[libc::c_long] = &[
    // Descriptors and files.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_statx,
    // /proc/PID/exe, and the links in a program's path.
    libc::SYS_readlinkat,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_mkdirat,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    // The event loop.
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_ppoll,
    // Sockets to the collector and to a DNS server.
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getpeername,
    libc::SYS_getsockname,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_bind,
    // Memory (mprotect: a resolver module loaded by glibc's name service switch).
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    // Time, threads' basics, process.
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_futex,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_uname,
    libc::SYS_getrandom,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sched_yield,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Reaping the privileged helper when it ends.
    libc::SYS_wait4,
];

#[cfg(target_arch = "x86_64")]
const ARCH: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_stat,
    libc::SYS_fstat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_readlink,
    libc::SYS_lseek,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_mkdir,
    libc::SYS_ftruncate,
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_mmap,
    libc::SYS_getuid,
    libc::SYS_geteuid,
];

#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const ARCH: &[libc::c_long] = &[
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_lseek,
    libc::SYS_ftruncate,
    libc::SYS_mmap,
    libc::SYS_getuid,
    libc::SYS_geteuid,
];

#[cfg(target_arch = "arm")]
const ARCH: &[libc::c_long] = &[
    libc::SYS_open,
    libc::SYS_readlink,
    libc::SYS_stat64,
    libc::SYS_fstat64,
    libc::SYS_lstat64,
    libc::SYS_fstatat64,
    libc::SYS_lseek,
    libc::SYS__llseek,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_mkdir,
    libc::SYS_ftruncate,
    libc::SYS_ftruncate64,
    libc::SYS_fcntl64,
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_mmap2,
    libc::SYS_send,
    libc::SYS_recv,
    libc::SYS_getuid32,
    libc::SYS_geteuid32,
    libc::SYS_sigreturn,
    // The 64-bit time forms a 32-bit libc calls first (numbers from the kernel's common
    // 32-bit table; the libc crate does not name them for arm).
    403, // clock_gettime64
    407, // clock_nanosleep_time64
    414, // ppoll_time64
    422, // futex_time64
];

/// Every call the steady state may make.
const LEN: usize = COMMON.len() + ARCH.len();
// Jump offsets are 8 bits: the list must stay well short of 255 entries.
const _: () = assert!(LEN < 240);

/// What the privileged helper may call: its socket to the agent, /proc and the files it
/// opens there, what attaching a uprobe takes (reading the ELF file, `perf_event_open`,
/// `bpf`, the perf ioctls), memory, and exit. No `socket`, no `connect`, no `execve`.
const HELPER: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_pread64,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_lseek,
    libc::SYS_fstat,
    #[cfg(not(target_arch = "arm"))]
    libc::SYS_newfstatat,
    libc::SYS_ppoll,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_perf_event_open,
    libc::SYS_bpf,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_clock_gettime,
    libc::SYS_futex,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_uname,
    libc::SYS_getrandom,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    // A poll interrupted by a stop (job control, a tracer) resumes through it.
    libc::SYS_restart_syscall,
    libc::SYS_sched_yield,
    libc::SYS_exit,
    libc::SYS_exit_group,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    libc::SYS_mmap,
    #[cfg(target_arch = "arm")]
    libc::SYS_mmap2,
    #[cfg(target_arch = "arm")]
    libc::SYS_open,
    #[cfg(target_arch = "arm")]
    libc::SYS_readlink,
    #[cfg(target_arch = "arm")]
    libc::SYS_stat64,
    #[cfg(target_arch = "arm")]
    libc::SYS_fstat64,
    #[cfg(target_arch = "arm")]
    libc::SYS_fstatat64,
    #[cfg(target_arch = "arm")]
    libc::SYS__llseek,
    #[cfg(target_arch = "arm")]
    libc::SYS_fcntl64,
    #[cfg(target_arch = "arm")]
    libc::SYS_sigreturn,
    #[cfg(target_arch = "arm")]
    403, // clock_gettime64
    #[cfg(target_arch = "arm")]
    414, // ppoll_time64
    #[cfg(target_arch = "arm")]
    422, // futex_time64
];

/// The helper's ioctls: a uprobe's perf event enabled and given its program (kernels
/// without BPF links).
const PERF_EVENT_IOC_SET_BPF: u32 = 0x4004_2408;

/// The filter program.
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    deny: u32,
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: JEQ_K,
        jt,
        jf,
        k,
    }
}

/// The program: the architecture (a foreign ABI is refused), one test per allowed call,
/// ioctl with one of `ioctls` as its command, then refusal and allowance.
fn program(calls: &[libc::c_long], ioctls: &[u32], deny: u32) -> Vec<libc::sock_filter> {
    let len = calls.len();
    let deny_at = 3 + len + 2 + ioctls.len();
    let allow_at = deny_at + 1;
    // A jump from instruction `from` to `to` skips `to - from - 1` instructions.
    let skip = |from: usize, to: usize| (to - from - 1) as u8;
    let mut prog = vec![stmt(0, 0); allow_at + 1];
    prog[0] = stmt(LD_W_ABS, OFFSET_ARCH);
    prog[1] = jeq(AUDIT_ARCH, 0, skip(1, deny_at));
    prog[2] = stmt(LD_W_ABS, OFFSET_NR);
    for (i, nr) in calls.iter().enumerate() {
        prog[3 + i] = jeq(*nr as u32, skip(3 + i, allow_at), 0);
    }
    let at = 3 + len;
    prog[at] = jeq(libc::SYS_ioctl as u32, 0, skip(at, deny_at));
    prog[at + 1] = stmt(LD_W_ABS, OFFSET_ARG1_LOW);
    for (i, cmd) in ioctls.iter().enumerate() {
        prog[at + 2 + i] = jeq(*cmd, skip(at + 2 + i, allow_at), 0);
    }
    prog[deny_at] = stmt(RET_K, deny);
    prog[allow_at] = stmt(RET_K, RET_ALLOW);
    prog
}

fn kill_action() -> u32 {
    if action_available(RET_KILL_PROCESS) {
        RET_KILL_PROCESS
    } else {
        // Before 4.14: the thread, which is the whole process (one thread).
        RET_KILL_THREAD
    }
}

impl Filter {
    /// The filter for `mode`; `None` for [`Seccomp::Off`].
    pub fn new(mode: Seccomp) -> Option<Self> {
        let deny = match mode {
            Seccomp::Off => return None,
            Seccomp::Log => RET_LOG,
            Seccomp::Kill => kill_action(),
        };
        let calls: Vec<libc::c_long> = COMMON.iter().chain(ARCH).copied().collect();
        let prog = program(
            &calls,
            &[PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_DISABLE],
            deny,
        );
        Some(Self { prog, deny })
    }

    /// The privileged helper's filter: always on, killing on anything outside its list.
    pub fn helper() -> Self {
        let deny = kill_action();
        let ioctls = [
            PERF_EVENT_IOC_ENABLE,
            PERF_EVENT_IOC_DISABLE,
            PERF_EVENT_IOC_SET_BPF,
        ];
        Self {
            prog: program(HELPER, &ioctls, deny),
            deny,
        }
    }

    /// Installs the filter on this (single) thread, with `no_new_privs` (required without
    /// CAP_SYS_ADMIN, harmless with it). Allocates nothing.
    pub fn install(&self) -> Result<(), String> {
        if self.deny == RET_LOG && !action_available(RET_LOG) {
            return Err("seccomp = log needs Linux 4.14 or later (SECCOMP_RET_LOG)".into());
        }
        let fprog = libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prctl with integer arguments; seccomp reads `fprog`, which outlives the
        // call (the kernel copies the program).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
            }
            // TSYNC: every thread of the agent gets the filter (the shutdown closers too).
            if libc::syscall(
                libc::SYS_seccomp,
                SET_MODE_FILTER,
                FILTER_FLAG_TSYNC,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                let e = std::io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::ENOSYS) | Some(libc::EINVAL) => {
                        format!("this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): {e}")
                    }
                    _ => format!("installing the seccomp filter: {e}"),
                });
            }
        }
        Ok(())
    }
}

/// Whether the kernel knows a filter action (SECCOMP_GET_ACTION_AVAIL, 4.14+).
pub fn action_available(action: u32) -> bool {
    // SAFETY: the kernel reads one u32 from the pointer.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &action as *const u32,
        ) == 0
    }
}

/// For `telegen check`: whether filters can be installed, and with which actions.
pub fn availability() -> Result<&'static str, &'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Err("this kernel has no seccomp (CONFIG_SECCOMP): --seccomp must stay off");
    }
    match (
        action_available(RET_KILL_PROCESS),
        action_available(RET_LOG),
    ) {
        (true, true) => Ok("available: --seccomp log and kill"),
        _ => Ok("available before 4.14's actions: --seccomp kill only (the thread is killed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the agent's filter refuses and allows: after the arch check, the list, the
    /// ioctl test, its argument load and its two commands.
    const DENY_AT: usize = LEN + 7;
    const ALLOW_AT: usize = LEN + 8;

    /// Runs `body` in a forked child with `mode`'s filter installed; returns the wait status.
    /// The filter is built before the fork, so the child only makes system calls.
    fn in_child(mode: Seccomp, body: fn() -> i32) -> libc::c_int {
        filtered_child(Filter::new(mode).unwrap(), body)
    }

    /// Runs `body` in a forked child with filter `f` installed; returns the wait status.
    fn filtered_child(f: Filter, body: fn() -> i32) -> libc::c_int {
        // SAFETY: the child makes raw system calls only and leaves with _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let code = match f.install() {
                    Ok(()) => body(),
                    Err(_) => 99,
                };
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            status
        }
    }

    fn allowed_calls() -> i32 {
        // SAFETY: calls without side effects on memory.
        unsafe {
            let pid = libc::syscall(libc::SYS_getpid);
            if pid <= 0 || libc::syscall(libc::SYS_close, -1 as libc::c_int) != -1 {
                return 2;
            }
        }
        0
    }

    fn perf_ioctl() -> i32 {
        // Allowed: fails on the bad descriptor, not on the filter.
        // SAFETY: no memory is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_ioctl,
                -1,
                PERF_EVENT_IOC_DISABLE as libc::c_ulong,
                0,
            )
        };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
            0
        } else {
            4
        }
    }

    fn other_ioctl() -> i32 {
        // FIONBIO is not the perf command: under `kill` the child dies here.
        // SAFETY: no memory is passed (the descriptor is bad anyway).
        unsafe { libc::syscall(libc::SYS_ioctl, -1, libc::FIONBIO as libc::c_ulong, 0) };
        0
    }

    fn forbidden_call() -> i32 {
        // chdir is not on the list: under `kill` the child dies here.
        let root = c"/";
        // SAFETY: a valid C string.
        match unsafe { libc::syscall(libc::SYS_chdir, root.as_ptr()) } {
            0 => 0,
            _ => 3,
        }
    }

    #[test]
    fn the_program_is_well_formed() {
        let f = Filter::new(Seccomp::Kill).unwrap();
        assert_eq!(f.prog[0].k, OFFSET_ARCH);
        assert_eq!(f.prog[ALLOW_AT].k, RET_ALLOW);
        assert_eq!(f.prog[DENY_AT].k, RET_KILL_PROCESS);
        assert_eq!(f.prog.len(), ALLOW_AT + 1);
        let target = |at: usize, off: u8| at + 1 + off as usize;
        for (i, ins) in f.prog[3..LEN + 3].iter().enumerate() {
            // Every test of the list jumps exactly to the allowance.
            assert_eq!(target(3 + i, ins.jt), ALLOW_AT, "instruction {}", 3 + i);
        }
        // A foreign ABI, and an ioctl with another command, land on the refusal.
        assert_eq!(target(1, f.prog[1].jf), DENY_AT);
        assert_eq!(target(LEN + 3, f.prog[LEN + 3].jf), DENY_AT);
        assert_eq!(target(LEN + 6, f.prog[LEN + 6].jf), DENY_AT);
        assert_eq!(target(LEN + 5, f.prog[LEN + 5].jt), ALLOW_AT);
        assert!(Filter::new(Seccomp::Off).is_none());
        // No call is listed twice (a sign of a copy error in the lists).
        let mut all: Vec<_> = COMMON.iter().chain(ARCH).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), LEN);
    }

    fn opens_a_socket() -> i32 {
        // The helper has no network: under its filter the child dies here.
        // SAFETY: integer arguments.
        match unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } {
            -1 => 5,
            _ => 0,
        }
    }

    #[test]
    fn the_helper_filter_allows_its_list_and_no_socket() {
        let mut all: Vec<_> = HELPER.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), HELPER.len(), "a call listed twice");
        assert!(!HELPER.contains(&libc::SYS_socket) && !HELPER.contains(&libc::SYS_connect));
        let run = |body: fn() -> i32| filtered_child(Filter::helper(), body);
        let s = run(allowed_calls);
        assert!(
            libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0,
            "status {s:#x}"
        );
        let s = run(opens_a_socket);
        assert!(
            libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGSYS,
            "status {s:#x}"
        );
    }

    #[test]
    fn kill_allows_the_list_and_kills_on_anything_else() {
        let s = in_child(Seccomp::Kill, allowed_calls);
        assert!(
            libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0,
            "status {s:#x}"
        );
        let s = in_child(Seccomp::Kill, perf_ioctl);
        assert!(
            libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0,
            "status {s:#x}"
        );
        for body in [forbidden_call as fn() -> i32, other_ioctl] {
            let s = in_child(Seccomp::Kill, body);
            assert!(
                libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGSYS,
                "status {s:#x}"
            );
        }
    }

    #[test]
    fn log_lets_everything_through() {
        let s = in_child(Seccomp::Log, forbidden_call);
        assert!(
            libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0,
            "status {s:#x}"
        );
    }
}
