//! Atomic operations on map memory shared by all CPUs and with userspace. The BPF target's
//! `core::sync::atomic` has no read-modify-write operations, so these use the intrinsics that
//! lower to BPF_ATOMIC (BPF_ADD, BPF_OR, BPF_AND; with BPF_FETCH when the result is used): ISA
//! v3, which the build targets (lb-user/build.rs) and every supported kernel (>= 5.12) has.
use core::intrinsics::{atomic_and, atomic_or, atomic_xadd, AtomicOrdering};

/// Adds `delta` (wrapping: pass `-1i64 as u64` to subtract) and returns the previous value.
///
/// SeqCst, not Relaxed: with a relaxed ordering LLVM 22's BPF backend emits the plain
/// `lock add` (no BPF_FETCH) even when the result is used, silently returning garbage. Both
/// JIT to the same locked x86 instruction.
#[inline(always)]
pub fn fetch_add(p: *mut u64, delta: u64) -> u64 {
    // SAFETY: `p` points to a u64 in map memory (callers pass a field of a value from a successful
    // lookup, valid for the run, 8-byte aligned in the map's value); the add is atomic, so
    // concurrent CPUs are fine.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, delta) }
}

/// The data plane's side of [`lb_common::SharedMem`].
pub struct Bpf;

// SAFETY: every method is one BPF load or one BPF_ATOMIC instruction on an aligned word.
// SeqCst for the read-modify-writes for the reason given at `fetch_add`.
unsafe impl lb_common::SharedMem for Bpf {
    #[inline(always)]
    unsafe fn load_u32(p: *const u32) -> u32 {
        // SAFETY: the caller's pointer is valid and aligned (trait contract).
        unsafe { p.read_volatile() }
    }

    #[inline(always)]
    unsafe fn load_u64(p: *const u64) -> u64 {
        // SAFETY: as above.
        unsafe { p.read_volatile() }
    }

    #[inline(always)]
    unsafe fn add_u64(p: *mut u64, delta: u64) {
        fetch_add(p, delta);
    }

    #[inline(always)]
    unsafe fn or_u32(p: *mut u32, bits: u32) {
        // SAFETY: as above; one BPF_ATOMIC BPF_OR.
        unsafe { atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(p, bits) };
    }

    #[inline(always)]
    unsafe fn and_u32(p: *mut u32, mask: u32) {
        // SAFETY: as above; one BPF_ATOMIC BPF_AND.
        unsafe { atomic_and::<u32, u32, { AtomicOrdering::SeqCst }>(p, mask) };
    }
}
