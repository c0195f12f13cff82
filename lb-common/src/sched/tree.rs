//! Scheduling trees: the connection-count schedulers' pick in O(1), kept up to date in
//! O(log n) per change.
//!
//! Each service of lc, wlc, sed, nq, fo, ovf (and lblc, lblcr, whose misses take wlc's pick) has
//! a tournament tree over its scheduling table (the dests with weight, in list order) in
//! `XLB_SCHED_TREE`. Every internal node holds the winner of its two children by the service's
//! [`CountRule`]: the right child's winner replaces the left's only when strictly better, so a
//! node holds the first dest in list order among the best of its leaves, what IPVS's loop over
//! the same leaves gives (the rule being a total preorder on the candidates), and the root holds
//! the pick. Nodes hold dest ids; a comparison reads the two dests' live state.
//!
//! Whenever something a rule reads of a dest changes, the path from its leaf to the root is
//! recomputed ([`dest_changed`], called by `dest_mem`'s `conn_start` / `conn_end` /
//! `conn_moved`, so by the data plane and lbd's expiry alike); on a configuration change
//! userspace builds the service's tree anew ([`build`]) or recomputes it ([`refresh`]).
//! Recomputing a node only ever writes the winner of its children: a path recomputed at the wrong
//! time or place is never wrong, only possibly stale.
//!
//! Concurrency: CPUs (and lbd) recompute paths without locks, as IPVS itself reads the counts
//! without locks. Two updates crossing on a shared ancestor may leave it briefly stale (each
//! read the other's child before it was written, or a count changed after it was read); a stale
//! node heals at the next update of any leaf below it. So the data plane checks the root's dest
//! before it uses it ([`root_pick`]) and folds over the table instead
//! when the check fails: a stale tree may cost a connection IPVS's exact pick, never the
//! connection.
//!
//! Layout of `XLB_SCHED_TREE` (u32 words, [`MAX_SCHED_TREE`]):
//! - words `[0, MAX_SERVICES)`: per service id, the base of its tree, 0 for none;
//! - from [`TREE_FIRST_NODE`] on: the trees. A tree of `2^levels` leaves at `base` has its header
//!   ([`header`]: rule and levels) at `base`, node `k` at `base + k` (1 = the root, `2k` and
//!   `2k + 1` its children), leaf `i` (the table's slot `i`) at `base + 2^levels + i`; leaves
//!   past the table hold [`NO_DEST`]. `Dest::tree_leaf` is the dest's leaf index ([`NO_LEAF`]:
//!   none).

use super::{rank, CountRule, Rank, NO_DEST};
use crate::maps::{DEST_F_AVAILABLE, DEST_F_IN_USE, DEST_F_OVERLOAD, Dest, DestConns};
use crate::MAX_SERVICES;
use core::ptr::addr_of;

/// Words of `XLB_SCHED_TREE`: the per-service bases, then room for every dest's tree twice
/// over (a tree of n leaves takes at most 4n words; a commit builds new trees beside the live
/// ones).
pub const MAX_SCHED_TREE: u32 = 1 << 22;
/// The first word trees are allocated from.
pub const TREE_FIRST_NODE: u32 = MAX_SERVICES;
/// `Dest::tree_leaf` of a dest in no tree.
pub const NO_LEAF: u32 = u32::MAX;
/// Deepest tree: 2^18 leaves (`MAX_DESTS`).
pub const TREE_MAX_LEVELS: u32 = 18;

const _: () = assert!(1 << TREE_MAX_LEVELS >= crate::MAX_DESTS);

/// A tree's header word: its rule (bits 0-7), depth (8-15), the rule as data (16-23,
/// [`CountRule::coeffs`]) and what it reads of a dest (24-31, [`CountRule::reads`]): the data
/// plane's update reads the last three without a branch per rule.
#[inline(always)]
pub const fn header(rule: CountRule, levels: u32) -> u32 {
    rule as u32 | levels << 8 | rule.coeffs() << 16 | (rule.reads() as u32) << 24
}

/// The rule as data of header `h`.
#[inline(always)]
pub const fn header_coeffs(h: u32) -> u32 {
    (h >> 16) & 0xff
}

/// The rule and depth of header `h`; `None` for anything else.
#[inline(always)]
pub const fn parse_header(h: u32) -> Option<(CountRule, u32)> {
    let levels = (h >> 8) & 0xff;
    if levels > TREE_MAX_LEVELS {
        return None;
    }
    match CountRule::from_code(h & 0xff) {
        Some(r) => Some((r, levels)),
        None => None,
    }
}

/// Depth of the tree over `n` leaves: the least `l` with `2^l >= n`.
pub const fn levels_for(n: u32) -> u32 {
    let mut l = 0;
    while (1u32 << l) < n {
        l += 1;
    }
    l
}

/// Words a tree over `n` leaves takes, its header included (0 for no leaves: no tree).
pub const fn tree_words(n: u32) -> u32 {
    if n == 0 { 0 } else { 2 << levels_for(n) }
}

/// The place ([`rank`]) of dest `d` (element of `XLB_DESTS`, `c` of `XLB_DEST_CONNS`) under rule
/// `coeffs` in service `svc_id`: a candidate only when it is a live dest of the service (in use,
/// available). Arithmetic only (see [`rank`]).
#[inline(always)]
pub fn rank_of(coeffs: u32, d: &Dest, c: &DestConns, svc_id: u32) -> Rank {
    let want = DEST_F_IN_USE | DEST_F_AVAILABLE;
    let off = ((d.flags & want) ^ want) as u64 | (d.svc_id ^ svc_id) as u64;
    let live = 1 ^ ((off | off.wrapping_neg()) >> 63) as i64;
    let r = rank(coeffs, d.weight, c.active as u32, c.inactive as u32, ((d.flags & DEST_F_OVERLOAD) / DEST_F_OVERLOAD) as u64);
    Rank { num: r.num * live + (1 - live), den: r.den * live }
}

/// How one side reads and writes the trees (the data plane through its maps, userspace through
/// their `mmap`, tests through plain memory). Node words are read and written whole (aligned
/// u32: never torn).
pub trait TreeMem: Sized {
    /// Word `i` of `XLB_SCHED_TREE` ([`NO_DEST`] past its end).
    fn node(&self, i: u32) -> u32;
    /// Sets word `i` (nothing past the end).
    fn set_node(&mut self, i: u32, v: u32);
    /// [`rank_of`] dest `id` for service `svc_id` ([`Rank::NONE`] for an id past the arrays).
    fn rank(&self, id: u32, svc_id: u32, coeffs: u32) -> Rank;
    /// Recomputes every node of `c`'s path: [`Climb::step`] for levels `0..c.levels`. The data
    /// plane runs it as a `bpf_loop`.
    #[inline(always)]
    fn climb(&mut self, c: &Climb) {
        for level in 0..c.levels {
            c.step(self, level);
        }
    }

    /// [`dest_changed`]: reads the dest's leaf and service, then [`leaf_changed`]. The data plane
    /// runs it in a function of its own, which the verifier checks once, instead of once for
    /// every path to every count change.
    ///
    /// # Safety
    /// `dest` points to a live element of `XLB_DESTS`.
    #[inline(always)]
    unsafe fn changed(&mut self, dest: *const Dest, what: u8) {
        // SAFETY: the caller's pointer is live; aligned u32 fields, read once each (userspace
        // may rewrite them meanwhile: see the module's note on concurrency).
        let (leaf, svc_id) =
            unsafe { (addr_of!((*dest).tree_leaf).read_volatile(), addr_of!((*dest).svc_id).read_volatile()) };
        leaf_changed(self, leaf, svc_id, what);
    }
}

/// The winner of `l` and `r` (left before right in list order) by the rule `coeffs`: the one of
/// the two that is a candidate, the right one only when strictly better; [`NO_DEST`] if neither
/// is. (The same test as [`CountRule::replaces`]: [`Rank::beaten_by`].)
#[inline(always)]
fn winner<T: TreeMem>(mem: &T, coeffs: u32, svc_id: u32, l: u32, r: u32) -> u32 {
    let ls = mem.rank(l, svc_id, coeffs);
    let rs = mem.rank(r, svc_id, coeffs);
    let (w, ws) = if ls.beaten_by(&rs) { (r, rs) } else { (l, ls) };
    if ws.is_candidate() { w } else { NO_DEST }
}

/// Recomputes node `k` of the tree at `base` from its children: THE tree-update rule (both
/// sides, every path). Writes only a changed value, so a path that changes nothing does not
/// bounce cache lines between CPUs.
#[inline(always)]
pub fn fix_node<T: TreeMem>(mem: &mut T, base: u32, k: u32, coeffs: u32, svc_id: u32) {
    let l = mem.node(base + 2 * k);
    let r = mem.node(base + 2 * k + 1);
    let w = winner(mem, coeffs, svc_id, l, r);
    if mem.node(base + k) != w {
        mem.set_node(base + k, w);
    }
}

/// One leaf's path to the root, to recompute after its dest changed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Climb {
    pub base: u32,
    /// The leaf's node index (`2^levels + i`).
    pub leaf: u32,
    pub svc_id: u32,
    pub levels: u32,
    /// The rule as data ([`CountRule::coeffs`]).
    pub coeffs: u32,
}

impl Climb {
    /// Recomputes the leaf's ancestor `level + 1` levels up (0: its parent, `levels - 1`: the
    /// root).
    #[inline(always)]
    pub fn step<T: TreeMem>(&self, mem: &mut T, level: u32) {
        let k = self.leaf.checked_shr(level + 1).unwrap_or(0);
        if k != 0 {
            fix_node(mem, self.base, k, self.coeffs, self.svc_id);
        }
    }
}

/// Dest `dest` changed what `what` says (`READS_*`): recomputes its leaf's path in its
/// service's tree, if it has one whose rule reads that.
///
/// # Safety
/// `dest` points to a live element of `XLB_DESTS`.
#[inline(always)]
pub unsafe fn dest_changed<T: TreeMem>(mem: &mut T, dest: *const Dest, what: u8) {
    // SAFETY: the caller's pointer is live.
    unsafe { mem.changed(dest, what) };
}

/// The dest at leaf `leaf` of service `svc_id`'s tree changed what `what` says (`READS_*`):
/// recomputes the leaf's path if the tree's rule reads that ([`dest_changed`]).
#[inline(always)]
pub fn leaf_changed<T: TreeMem>(mem: &mut T, leaf: u32, svc_id: u32, what: u8) {
    if what == 0 || leaf == NO_LEAF || svc_id >= MAX_SERVICES {
        return;
    }
    let base = mem.node(svc_id);
    if base < TREE_FIRST_NODE || base == NO_DEST {
        return;
    }
    let h = mem.node(base);
    let levels = (h >> 8) & 0xff;
    if (h >> 24) & what as u32 == 0 || levels > TREE_MAX_LEVELS || leaf >= 1 << levels {
        return;
    }
    mem.climb(&Climb { base, leaf: (1 << levels) + leaf, svc_id, levels, coeffs: header_coeffs(h) });
}

/// The usable root of service `svc_id`'s tree under `rule`: its dest, if it is a live dest of
/// the service and a candidate. `None` (no tree, another rule, no candidate, or a stale root):
/// fold over the table instead.
#[inline(always)]
pub fn root_pick<T: TreeMem>(mem: &T, svc_id: u32, rule: CountRule) -> Option<u32> {
    if svc_id >= MAX_SERVICES {
        return None;
    }
    let base = mem.node(svc_id);
    if base < TREE_FIRST_NODE || base == NO_DEST || parse_header(mem.node(base))?.0 != rule {
        return None;
    }
    let id = mem.node(base + 1);
    if mem.rank(id, svc_id, rule.coeffs()).is_candidate() { Some(id) } else { None }
}

/// The fold the data plane falls back on when the tree's root is not usable: the same rule
/// ([`rank_of`] and [`Rank::beaten_by`], the tree's own test) over the table's dests in list
/// order, keeping the first of the best. Small (24 bytes), as it lives on the stack of a
/// `bpf_loop` near the kernel's stack limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankFold {
    pub coeffs: u32,
    pub svc_id: u32,
    /// The best so far ([`NO_DEST`]: none yet) and its place (`den` fits 32 bits: a weight,
    /// 1, or 0 for none).
    pub best: u32,
    den: i32,
    num: i64,
}

impl RankFold {
    #[inline(always)]
    pub const fn new(coeffs: u32, svc_id: u32) -> Self {
        RankFold { coeffs, svc_id, best: NO_DEST, den: Rank::NONE.den as i32, num: Rank::NONE.num }
    }

    /// The next dest in list order, `id`, and its place `r` (a dest that is no candidate never
    /// beats anything, and every candidate beats "none yet": [`Rank::NONE`]).
    #[inline(always)]
    pub fn step(&mut self, id: u32, r: Rank) {
        if (Rank { num: self.num, den: self.den as i64 }).beaten_by(&r) {
            self.best = id;
            self.num = r.num;
            self.den = r.den as i32;
        }
    }
}

/// Writes a tree for service `svc_id` over `leaves` (its scheduling table, list order) at
/// `base` ([`tree_words`] words): header, leaves, then every internal node bottom-up. Userspace
/// does this in a region no packet reads, then publishes it (`node(svc_id) = base`).
pub fn build<T: TreeMem>(mem: &mut T, base: u32, rule: CountRule, svc_id: u32, leaves: &[u32]) {
    let n = leaves.len() as u32;
    if n == 0 {
        return;
    }
    let levels = levels_for(n);
    mem.set_node(base, header(rule, levels));
    let width = 1u32 << levels;
    for i in 0..width {
        mem.set_node(base + width + i, leaves.get(i as usize).copied().unwrap_or(NO_DEST));
    }
    refresh(mem, base, svc_id);
}

/// Recomputes every internal node of the tree at `base` from the live state of its dests (after
/// a configuration change that no count change reports: a weight or threshold edited, OVERLOAD
/// lifted by an edit; and once more after a new tree is published, for the changes that went to
/// the old one meanwhile).
pub fn refresh<T: TreeMem>(mem: &mut T, base: u32, svc_id: u32) {
    let h = mem.node(base);
    let Some((_, levels)) = parse_header(h) else {
        return;
    };
    for k in (1..1u32 << levels).rev() {
        fix_node(mem, base, k, header_coeffs(h), svc_id);
    }
}

/// No trees at all (tests of the count rules alone).
#[cfg(test)]
pub(crate) struct NoTrees;

#[cfg(test)]
impl TreeMem for NoTrees {
    fn node(&self, _i: u32) -> u32 {
        NO_DEST
    }

    fn set_node(&mut self, _i: u32, _v: u32) {}

    fn rank(&self, _id: u32, _svc_id: u32, _coeffs: u32) -> Rank {
        Rank::NONE
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
