//! Benchmark floors, never loaded by the agent: what raw tracepoints
//! (`BPF_PROG_TYPE_RAW_TRACEPOINT`) would cost on the syscall path, against the perf-event
//! tracepoints the agent attaches (`io/benches/kernel_cost.rs` runs both under the same load).
//!
//! A raw tracepoint on `sys_enter`/`sys_exit` runs for every system call of every process;
//! its context is the `pt_regs` pointer and the call number (enter) or return value (exit),
//! so a capture program there would first read its arguments with a helper. The `args`
//! pair does that much and nothing more: it reads the three arguments a read or write
//! entry needs (x86_64 `pt_regs` offsets: the bench runs on x86_64).
use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::raw_tracepoint, programs::RawTracePointContext,
};

/// Empty: the raw tracepoint's own cost (and the run statistics' clock reads).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_raw_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_raw_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Empty, attached to each tracepoint that is not a system call's.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn floor_raw_other(_ctx: RawTracePointContext) -> i32 {
    0
}

// x86_64 `struct pt_regs`: di, si, dx (the first three arguments), orig_ax (the call).
const DI: usize = 112;
const SI: usize = 104;
const DX: usize = 96;
const ORIG_AX: usize = 120;

/// The x86_64 numbers of the calls the agent traces (read, write, close, readv, writev,
/// connect, accept, sendto, recvfrom, sendmsg, recvmsg, accept4).
fn traced(nr: u64) -> bool {
    matches!(nr, 0 | 1 | 3 | 19 | 20 | 42 | 43 | 44 | 45 | 46 | 47 | 288)
}

fn reg(regs: u64, offset: usize) -> u64 {
    // SAFETY: a helper read of kernel memory; a bad address gives an error, not a fault.
    unsafe { bpf_probe_read_kernel((regs as usize + offset) as *const u64) }.unwrap_or(0)
}

/// The call number, then the three arguments of a traced call.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_raw_args_enter(ctx: RawTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let nr: u64 = ctx.arg(1);
    if !traced(nr) {
        return 0;
    }
    let sum = reg(regs, DI) ^ reg(regs, SI) ^ reg(regs, DX);
    // Kept: the reads are not optimised away.
    (sum & 1) as i32
}

/// The call number from `orig_ax` (the exit has the return value, not the number).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_raw_args_exit(ctx: RawTracePointContext) -> i32 {
    let regs: u64 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    if !traced(reg(regs, ORIG_AX)) {
        return 0;
    }
    (ret & 1) as i32
}
