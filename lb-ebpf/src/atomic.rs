//! Atomic add on map memory shared by all CPUs. The BPF target's `core::sync::atomic` has no
//! read-modify-write operations, so this uses the intrinsic that lowers to BPF_ATOMIC_ADD
//! (with BPF_FETCH when the result is used).
use core::intrinsics::{atomic_xadd, AtomicOrdering};

/// Adds `delta` (wrapping: pass `-1i64 as u64` to subtract) and returns the previous value.
#[inline(always)]
pub fn fetch_add(p: *mut u64, delta: u64) -> u64 {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) }
}
