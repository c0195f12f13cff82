//! The memory of a dest that both sides change while the other runs: `Dest::flags` and its
//! `DestConns` counts. The data plane changes them as connections start, change state and end;
//! userspace (through `mmap`) as lbd's expiry ends connections and lbadm adds and deletes
//! dests. Every change is an atomic read-modify-write of one word, done through [`SharedMem`]
//! (BPF atomics in lb-ebpf, std atomics in lb-user), so neither side can lose the other's
//! update; the rules both sides apply are written here once. Every change a connection-count
//! scheduler reads is followed by the update of the service's scheduling tree
//! ([`crate::sched::tree`]), through [`TreeMem`].
use core::ptr::{addr_of, addr_of_mut};
#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

use crate::maps::{CONN_F_INACTIVE, CONN_KIND_TEMPLATE, DEST_F_OVERLOAD, Dest, DestConns};
use crate::sched::{
    READS_ACTIVE, READS_FLAGS, READS_INACTIVE, READS_PERSIST,
    tree::{self, TreeMem},
};

/// How one side reads and changes memory shared with the other.
///
/// # Safety
/// Each method must be one atomic access of the whole word (an aligned load, or a locked
/// read-modify-write), so that it never tears nor overwrites a concurrent change of the word.
pub unsafe trait SharedMem {
    /// `*p`.
    ///
    /// # Safety
    /// `p` is valid and aligned.
    unsafe fn load_u32(p: *const u32) -> u32;
    /// `*p`.
    ///
    /// # Safety
    /// `p` is valid and aligned.
    unsafe fn load_u64(p: *const u64) -> u64;
    /// `*p += delta`, wrapping.
    ///
    /// # Safety
    /// `p` is valid and aligned.
    unsafe fn add_u64(p: *mut u64, delta: u64);
    /// `*p |= bits`.
    ///
    /// # Safety
    /// `p` is valid and aligned.
    unsafe fn or_u32(p: *mut u32, bits: u32);
    /// `*p &= mask`.
    ///
    /// # Safety
    /// `p` is valid and aligned.
    unsafe fn and_u32(p: *mut u32, mask: u32);
}

/// Which of its dest's counts an entry of the connection table holds.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// ActiveConn: a connection in an active state.
    Active = 0,
    /// InActConn: a connection in any other state.
    Inactive = 1,
    /// PersistConn: a persistence template.
    Persist = 2,
}

const _: () = assert!(
    Held::Active.reads() == READS_ACTIVE
        && Held::Inactive.reads() == READS_INACTIVE
        && Held::Persist.reads() == READS_PERSIST
);

impl Held {
    /// What an entry of kind `kind` (`CONN_KIND_*`, not the reply side) with `Conn::flags`
    /// `flags` holds.
    #[inline(always)]
    pub fn of(kind: u8, flags: u8) -> Held {
        if kind == CONN_KIND_TEMPLATE {
            Held::Persist
        } else if flags & CONN_F_INACTIVE != 0 {
            Held::Inactive
        } else {
            Held::Active
        }
    }
}

impl Held {
    /// The count of `conns` an entry holding `self` is counted in.
    ///
    /// # Safety
    /// `conns` points to a live `DestConns` (only its field's address is computed).
    #[inline(always)]
    pub unsafe fn count_in(self, conns: *mut DestConns) -> *mut u64 {
        // SAFETY: the caller's pointer is live; addr_of_mut! reads nothing.
        unsafe {
            match self {
                Held::Active => addr_of_mut!((*conns).active),
                Held::Inactive => addr_of_mut!((*conns).inactive),
                Held::Persist => addr_of_mut!((*conns).persist),
            }
        }
    }
}

impl Held {
    /// The `sched::READS_*` bit of the count it names (a shift: no branch for the verifier).
    #[inline(always)]
    pub const fn reads(self) -> u8 {
        1 << self as u8
    }
}

/// A dest's ActiveConn + InActConn (IPVS's `ip_vs_dest_totalconns`: templates are not in it).
///
/// # Safety
/// As [`conn_end`].
#[inline(always)]
unsafe fn total_conns<M: SharedMem>(conns: *mut DestConns) -> u64 {
    // SAFETY: the caller's pointer is live and its fields naturally aligned.
    unsafe { M::load_u64(addr_of!((*conns).active)).wrapping_add(M::load_u64(addr_of!((*conns).inactive))) }
}

/// An entry of the connection table ended: gives back the count it `held` on its dest and lifts
/// OVERLOAD as IPVS's `ip_vs_unbind_dest` does (for connections and templates alike), then
/// brings the service's scheduling tree up to date ([`tree::dest_changed`]). The data plane
/// calls it when it expires or replaces an entry, lbd's expiry for what it removes.
///
/// The count is decremented with a plain (wrapping) atomic add of -1 on both sides: an entry's
/// count is given back only by the side whose delete of that entry succeeded, so every decrement
/// matches one increment and no count goes below zero. A saturating decrement would cost the
/// data plane a compare-and-swap loop and would only hide a double release, not prevent it.
///
/// # Safety
/// `dest` and `conns` point to the dest's elements of `XLB_DESTS` and `XLB_DEST_CONNS`.
#[inline(always)]
pub unsafe fn conn_end<M: SharedMem, T: TreeMem>(dest: *mut Dest, conns: *mut DestConns, held: Held, trees: &mut T) {
    // SAFETY (all below): the caller's pointers are to live map elements; the fields are
    // naturally aligned (#[repr(C)]).
    unsafe {
        M::add_u64(held.count_in(conns), u64::MAX);
        let mut what = held.reads();
        let flags = addr_of_mut!((*dest).flags);
        // Checked first: most ends find no OVERLOAD, and a locked write of the dest for nothing
        // would only make the CPUs fight over its cache line.
        if M::load_u32(flags) & DEST_F_OVERLOAD != 0 {
            let (u, l) = (addr_of!((*dest).u_threshold).read_volatile(), addr_of!((*dest).l_threshold).read_volatile());
            if overload_lifted(u, l, total_conns::<M>(conns)) {
                M::and_u32(flags, !DEST_F_OVERLOAD);
                what |= READS_FLAGS;
            }
        }
        tree::dest_changed(trees, dest, what);
    }
}

/// An entry of the connection table started on a dest, holding `held` (IPVS's
/// `ip_vs_bind_dest`, for connections and templates alike): counts it, and a dest at its upper
/// threshold is OVERLOADed (no new connections until it drains below the lower one,
/// [`conn_end`]); then the service's scheduling tree is brought up to date.
///
/// # Safety
/// As [`conn_end`].
#[inline(always)]
pub unsafe fn conn_start<M: SharedMem, T: TreeMem>(dest: *mut Dest, conns: *mut DestConns, held: Held, trees: &mut T) {
    // SAFETY (all below): as in conn_end.
    unsafe {
        M::add_u64(held.count_in(conns), 1);
        let mut what = held.reads();
        let u = addr_of!((*dest).u_threshold).read_volatile();
        if u != 0 && total_conns::<M>(conns) >= u as u64 {
            // (Also when it was OVERLOADed already: a needless update rather than a branch.)
            what |= READS_FLAGS;
            M::or_u32(addr_of_mut!((*dest).flags), DEST_F_OVERLOAD);
        }
        tree::dest_changed(trees, dest, what);
    }
}

/// A connection's state moved it from one of its dest's counts to another (ActiveConn <->
/// InActConn, as IPVS's state transitions move them); OVERLOAD waits for the next start or end,
/// as in IPVS. The service's scheduling tree is brought up to date.
///
/// # Safety
/// `dest` and `conns` point to the dest's elements of `XLB_DESTS` and `XLB_DEST_CONNS`.
#[inline(always)]
pub unsafe fn conn_moved<M: SharedMem, T: TreeMem>(
    dest: *mut Dest,
    conns: *mut DestConns,
    from: Held,
    to: Held,
    trees: &mut T,
) {
    // SAFETY: as in conn_end.
    unsafe {
        M::add_u64(from.count_in(conns), u64::MAX);
        M::add_u64(to.count_in(conns), 1);
        tree::dest_changed(trees, dest, from.reads() | to.reads());
    }
}

/// IPVS's `ip_vs_unbind_dest` rule: after a connection of a dest with thresholds `u_threshold`
/// and `l_threshold` ends, with `total` = its ActiveConn + InActConn now, whether OVERLOAD is
/// lifted.
#[inline(always)]
pub fn overload_lifted(u_threshold: u32, l_threshold: u32, total: u64) -> bool {
    if l_threshold != 0 {
        total < l_threshold as u64
    } else if u_threshold != 0 {
        total.saturating_mul(4) < u_threshold as u64 * 3
    } else {
        true
    }
}

/// IPVS's `__ip_vs_update_dest` rule: adding or editing a dest (its upper threshold was
/// `old_u_threshold`, 0 for a new one) lifts OVERLOAD when the new upper threshold is 0 or
/// larger. Otherwise OVERLOAD belongs to the connections ([`conn_start`], [`conn_end`]).
#[inline(always)]
pub fn update_lifts_overload(old_u_threshold: u32, new_u_threshold: u32) -> bool {
    new_u_threshold == 0 || new_u_threshold > old_u_threshold
}

/// The host's side of [`SharedMem`] (lbd and lbadm over the `mmap` of the maps, and the tests):
/// core's atomics on the whole word. SeqCst: on x86 the same locked instructions as the data
/// plane's BPF atomics, and fields written before a flag is set are visible before it. (The BPF
/// target's core atomics have no read-modify-write operations: lb-ebpf has its own.)
#[cfg(not(target_arch = "bpf"))]
pub struct HostAtomics;

// SAFETY: each method is one core atomic operation on the whole word; the data plane's accesses
// to these words are BPF atomics or aligned loads.
#[cfg(not(target_arch = "bpf"))]
unsafe impl SharedMem for HostAtomics {
    unsafe fn load_u32(p: *const u32) -> u32 {
        // SAFETY: the caller's pointer is valid and aligned (trait contract).
        unsafe { AtomicU32::from_ptr(p.cast_mut()) }.load(SeqCst)
    }

    unsafe fn load_u64(p: *const u64) -> u64 {
        // SAFETY: as above.
        unsafe { AtomicU64::from_ptr(p.cast_mut()) }.load(SeqCst)
    }

    unsafe fn add_u64(p: *mut u64, delta: u64) {
        // SAFETY: as above.
        unsafe { AtomicU64::from_ptr(p) }.fetch_add(delta, SeqCst);
    }

    unsafe fn or_u32(p: *mut u32, bits: u32) {
        // SAFETY: as above.
        unsafe { AtomicU32::from_ptr(p) }.fetch_or(bits, SeqCst);
    }

    unsafe fn and_u32(p: *mut u32, mask: u32) {
        // SAFETY: as above.
        unsafe { AtomicU32::from_ptr(p) }.fetch_and(mask, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::maps::{CONN_KIND_IN, DEST_F_AVAILABLE, DEST_F_IN_USE};

    fn start(d: &mut Dest, n: &mut DestConns, held: Held) {
        unsafe { conn_start::<HostAtomics, _>(d, n, held, &mut crate::sched::tree::NoTrees) }
    }

    fn end(d: &mut Dest, n: &mut DestConns, held: Held) {
        unsafe { conn_end::<HostAtomics, _>(d, n, held, &mut crate::sched::tree::NoTrees) }
    }

    #[test]
    fn overload_follows_the_thresholds_and_keeps_the_other_flags() {
        let live = DEST_F_IN_USE | DEST_F_AVAILABLE;
        let mut d = Dest { flags: live, u_threshold: 4, ..Dest::default() };
        let mut n = DestConns::default();
        for _ in 0..3 {
            start(&mut d, &mut n, Held::Inactive);
        }
        assert_eq!(d.flags, live, "3 of 4");
        start(&mut d, &mut n, Held::Active);
        assert_eq!((d.flags, n.active, n.inactive), (live | DEST_F_OVERLOAD, 1, 3), "4 of 4");
        end(&mut d, &mut n, Held::Inactive);
        assert_eq!(d.flags, live | DEST_F_OVERLOAD, "3 * 4 is not below 4 * 3");
        end(&mut d, &mut n, Held::Inactive);
        assert_eq!((d.flags, n.inactive), (live, 1), "2 * 4 < 4 * 3: lifted");
        // Templates bind and unbind as connections do (ip_vs_bind_dest / ip_vs_unbind_dest):
        // a template's start at the threshold OVERLOADs, its end gives back PersistConn and lifts
        // OVERLOAD by the same rule (ActiveConn + InActConn: 2 * 4 < 4 * 3).
        d.u_threshold = 2;
        start(&mut d, &mut n, Held::Persist);
        assert_eq!((d.flags, n.persist), (live | DEST_F_OVERLOAD, 1), "2 of 2 when a template starts");
        d.u_threshold = 4;
        end(&mut d, &mut n, Held::Persist);
        assert_eq!((d.flags, n.persist), (live, 0));
        // With -y, below l_threshold.
        d.flags |= DEST_F_OVERLOAD;
        d.l_threshold = 2;
        end(&mut d, &mut n, Held::Active);
        assert_eq!((d.flags, n.active, n.inactive), (live, 0, 1));
    }

    #[test]
    fn held_by_kind_and_state() {
        assert_eq!(Held::of(CONN_KIND_TEMPLATE, CONN_F_INACTIVE), Held::Persist);
        assert_eq!(Held::of(CONN_KIND_IN, CONN_F_INACTIVE), Held::Inactive);
        assert_eq!(Held::of(CONN_KIND_IN, 0), Held::Active);
    }

    #[test]
    fn updates_lift_overload_as_ip_vs_update_dest() {
        assert!(update_lifts_overload(5, 0));
        assert!(update_lifts_overload(5, 6));
        assert!(!update_lifts_overload(5, 5));
        assert!(!update_lifts_overload(5, 4));
        assert!(update_lifts_overload(0, 1), "a new dest");
    }
}
