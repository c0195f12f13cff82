//! `bpf_loop` (Linux 5.17), typed: a loop whose body the verifier checks once, not once per
//! iteration. The body is a [`Step`]; [`for_each`] hands it to the helper through one generic
//! callback, so no call site casts a function or a context pointer.
use core::{ffi::c_void, mem::size_of, ops::ControlFlow, ptr::NonNull};

use aya_ebpf::helpers::bpf_loop;

/// The most iterations the kernel's `bpf_loop` runs (`BPF_MAX_LOOPS`): a larger count is
/// refused (-E2BIG) without running any.
pub const MAX_LOOPS: u32 = 1 << 23;

// Every scheduling table fits one loop: a scan over a whole table is never cut short.
const _: () = assert!(lb_common::MAX_SCHED_SLOTS <= MAX_LOOPS);

/// A loop body: `step(i)` for i = 0, 1, ... until it breaks or the count is reached.
pub trait Step {
    fn step(&mut self, i: u32) -> ControlFlow<()>;
}

/// The callback `bpf_loop` calls: `ctx` is the `S` that [`for_each`] passed.
extern "C" fn callback<S: Step>(i: u64, ctx: *mut c_void) -> i64 {
    // A zero-sized body travels as NULL (see `for_each`).
    let p = if size_of::<S>() == 0 { NonNull::<S>::dangling().as_ptr() } else { ctx as *mut S };
    // SAFETY: `p` is the `&mut S` that `for_each` gave `bpf_loop` (or, for a zero-sized `S`,
    // a dangling pointer, valid for it); bpf_loop calls this synchronously, on the same CPU,
    // while `for_each` (and so that borrow) is still running, and nothing else uses it meanwhile.
    let s = unsafe { &mut *p };
    // i < MAX_LOOPS: the conversion loses nothing.
    match s.step(i as u32) {
        ControlFlow::Continue(()) => 0,
        ControlFlow::Break(()) => 1,
    }
}

/// Runs `s.step(i)` for i in 0..n until it breaks. Returns what the helper does: the number of
/// iterations run, or a negative error (`n` > [`MAX_LOOPS`]).
#[inline(always)]
pub fn for_each<S: Step>(n: u32, s: &mut S) -> i64 {
    // The verifier wants the context on the stack or NULL: a zero-sized body has no address.
    let ctx = if size_of::<S>() == 0 { core::ptr::null_mut() } else { s as *mut S as *mut c_void };
    // SAFETY: the callback has the signature bpf_loop expects and casts `ctx` back to the very
    // type passed here (see `callback`); flags must be 0.
    unsafe { bpf_loop(n, callback::<S> as *mut c_void, ctx, 0) }
}
