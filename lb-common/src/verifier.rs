//! Indexing that older verifiers accept.
//!
//! A bounds check in Rust (`i < len`) is often compiled as a compare on one register while the
//! access uses a copy reloaded from the stack. Linux 6.1's verifier does not carry the bound to
//! that copy (6.8+ does), so it sees an index of up to 255 (or 2^32) and refuses the program.
//! `masked` applies the bound in the register the access uses, in an instruction LLVM cannot
//! move or drop, so every verifier sees it. Callers check the logical bound first; the mask only
//! has to keep the access inside the value (hence a power-of-two mask no smaller than the array).

/// `i & MASK`, done by the program itself (BPF) so the verifier sees it on the register used.
#[inline(always)]
pub fn masked<const MASK: u64>(i: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    {
        let mut v = i as u64;
        // SAFETY: a register-only AND; no memory is read or written.
        unsafe { core::arch::asm!("{v} &= {m}", v = inout(reg) v, m = const MASK, options(pure, nomem, nostack)) };
        v as usize
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        i & MASK as usize
    }
}
