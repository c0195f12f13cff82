//! Atomic add on map memory shared by all CPUs. The BPF target's `core::sync::atomic` has no
//! read-modify-write operations, so this uses the intrinsic that lowers to BPF_ATOMIC_ADD
//! (with BPF_FETCH when the result is used).
use core::intrinsics::{atomic_xadd, AtomicOrdering};

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
