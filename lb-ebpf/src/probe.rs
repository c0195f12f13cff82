//! Feature probes: tiny programs lbd loads (and test-runs) once at attach to learn what the
//! kernel offers, as libbpf and bpftool probe, instead of trusting version numbers. See
//! lb-user's `features` module for what each answer changes.
use core::ops::ControlFlow;

use aya_ebpf::{
    bindings::{bpf_fib_lookup, BPF_FIB_LOOKUP_SRC},
    helpers::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
    EbpfContext,
};
use lb_common::AF_INET;

use crate::bpf_loop::{for_each, Step};

const EINVAL: i64 = 22;

/// Returns 1 when `bpf_fib_lookup` takes BPF_FIB_LOOKUP_SRC (Linux 6.7), 0 when it refuses the
/// flag (-EINVAL: flags are checked before anything else).
#[inline(always)]
pub fn fib_src(ctx: &XdpContext) -> u32 {
    // SAFETY: a zeroed bpf_fib_lookup is a valid parameter block.
    let mut f: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    f.family = AF_INET;
    f.ifindex = 1;
    f.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([127, 0, 0, 1]);
    // SAFETY: `f` is on the stack and of the size given.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), &mut f, core::mem::size_of::<bpf_fib_lookup>() as i32, BPF_FIB_LOOKUP_SRC) };
    (rc != -EINVAL) as u32
}

/// A loop body that stops at once.
struct Once;

impl Step for Once {
    #[inline(always)]
    fn step(&mut self, _i: u32) -> ControlFlow<()> {
        ControlFlow::Break(())
    }
}

/// Loads only where the kernel has `bpf_loop` (Linux 5.17), which the schedulers need.
#[inline(always)]
pub fn has_loop() -> u32 {
    for_each(1, &mut Once) as u32
}
