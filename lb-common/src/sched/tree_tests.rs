//! The trees against the folds: over random count, weight, threshold and flag changes, the root
//! of every scheduler's tree is the linear scan's pick after every change.

extern crate std;

use super::*;
use crate::dest_mem::{conn_end, conn_moved, conn_start, update_lifts_overload, Held, HostAtomics};
use crate::maps::{DEST_F_AVAILABLE, DEST_F_IN_USE, DEST_F_OVERLOAD};
use crate::sched::{fo_pick, least_conn_pick, ovf_pick, DestState, LcKind};
use std::vec::Vec;

/// The maps as plain memory, reached only through raw pointers (as the data plane's and the
/// mmap's memory is), so a dest can be changed through one while the tree code reads it.
struct Mem {
    dests: *mut Dest,
    conns: *mut DestConns,
    n: usize,
    tree: *mut u32,
    tree_len: usize,
}

impl TreeMem for Mem {
    fn node(&self, i: u32) -> u32 {
        if (i as usize) < self.tree_len { unsafe { *self.tree.add(i as usize) } } else { NO_DEST }
    }

    fn set_node(&mut self, i: u32, v: u32) {
        if (i as usize) < self.tree_len {
            unsafe { *self.tree.add(i as usize) = v };
        }
    }

    fn rank(&self, id: u32, svc_id: u32, coeffs: u32) -> Rank {
        if id as usize >= self.n {
            return Rank::NONE;
        }
        unsafe { rank_of(coeffs, &*self.dests.add(id as usize), &*self.conns.add(id as usize), svc_id) }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const SVC: u32 = 7;

struct World {
    mem: Mem,
    rule: CountRule,
    /// The next tree goes here or at the other half (a commit builds beside the live tree).
    flip: bool,
    _keep: (Vec<Dest>, Vec<DestConns>, Vec<u32>),
}

impl World {
    fn new(n: usize, rule: CountRule, rng: &mut Rng) -> World {
        let mut dests: Vec<Dest> = (0..n)
            .map(|_| {
                let u = if rng.below(3) == 0 { rng.below(6) as u32 + 1 } else { 0 };
                Dest {
                    flags: DEST_F_IN_USE | DEST_F_AVAILABLE,
                    weight: rng.below(6) as i32,
                    svc_id: SVC,
                    u_threshold: u,
                    l_threshold: if u > 1 && rng.below(2) == 0 { rng.below(u as u64) as u32 } else { 0 },
                    tree_leaf: NO_LEAF,
                    ..Dest::default()
                }
            })
            .collect();
        let mut conns = std::vec![DestConns::default(); n];
        let mut tree = std::vec![0u32; TREE_FIRST_NODE as usize + 2 * 4 * n + 8];
        let mem = Mem {
            dests: dests.as_mut_ptr(),
            conns: conns.as_mut_ptr(),
            n,
            tree: tree.as_mut_ptr(),
            tree_len: tree.len(),
        };
        let mut w = World { mem, rule, flip: false, _keep: (dests, conns, tree) };
        w.commit();
        w
    }

    fn d(&mut self, id: usize) -> &mut Dest {
        unsafe { &mut *self.mem.dests.add(id) }
    }

    /// What userspace does when the table changes: a new tree over the dests with weight, in a
    /// fresh region, the leaves' positions, the tree published, refreshed once more.
    fn commit(&mut self) {
        let n = self.mem.n;
        let leaves: Vec<u32> = (0..n as u32).filter(|&i| self.d(i as usize).weight > 0).collect();
        for i in 0..n {
            self.d(i).tree_leaf = NO_LEAF;
        }
        if leaves.is_empty() {
            self.mem.set_node(SVC, 0);
            return;
        }
        let base = TREE_FIRST_NODE + if self.flip { 4 * n as u32 + 4 } else { 0 };
        self.flip = !self.flip;
        build(&mut self.mem, base, self.rule, SVC, &leaves);
        for (i, &id) in leaves.iter().enumerate() {
            self.d(id as usize).tree_leaf = i as u32;
        }
        self.mem.set_node(SVC, base);
        refresh(&mut self.mem, base, SVC);
    }

    fn expected(&self) -> Option<u32> {
        // Every dest of the test is live and of the service.
        let list: Vec<DestState> = (0..self.mem.n)
            .map(|i| unsafe {
                let (d, c) = (&*self.mem.dests.add(i), &*self.mem.conns.add(i));
                DestState {
                    active: c.active as u32,
                    inactive: c.inactive as u32,
                    overloaded: d.flags & DEST_F_OVERLOAD != 0,
                    ..DestState::new(i as u32, d.weight)
                }
            })
            .collect();
        match self.rule {
            CountRule::Lc => least_conn_pick(LcKind::Lc, &list),
            CountRule::Wlc => least_conn_pick(LcKind::Wlc, &list),
            CountRule::Sed => least_conn_pick(LcKind::Sed, &list),
            CountRule::Nq => least_conn_pick(LcKind::Nq, &list),
            CountRule::Fo => fo_pick(&list),
            CountRule::Ovf => ovf_pick(&list),
        }
    }

    /// The root node as it is. An internal node holds a candidate or NO_DEST; the root of a
    /// one-leaf tree is its leaf, which holds its dest whatever its state.
    fn root(&self) -> Option<u32> {
        let base = self.mem.node(SVC);
        if base == 0 {
            return None;
        }
        let r = self.mem.node(base + 1);
        let leaf_root = parse_header(self.mem.node(base)).is_some_and(|(_, levels)| levels == 0);
        if r == NO_DEST || leaf_root && !self.mem.rank(r, SVC, self.rule.coeffs()).is_candidate() {
            None
        } else {
            Some(r)
        }
    }

    /// One random change.
    fn step(&mut self, rng: &mut Rng) {
        let n = self.mem.n;
        let j = rng.below(n as u64) as usize;
        let (d, c) = (unsafe { self.mem.dests.add(j) }, unsafe { self.mem.conns.add(j) });
        let op = rng.below(100);
        let held = match rng.below(3) {
            0 => Held::Active,
            1 => Held::Inactive,
            _ => Held::Persist,
        };
        unsafe {
            if op < 40 {
                conn_start::<HostAtomics, _>(d, c, held, &mut self.mem);
            } else if op < 65 {
                let held = [Held::Active, Held::Inactive, Held::Persist]
                    .into_iter()
                    .find(|h| *h.count_in(c) > 0);
                if let Some(h) = held {
                    conn_end::<HostAtomics, _>(d, c, h, &mut self.mem);
                }
            } else if op < 85 {
                if (*c).active > 0 {
                    conn_moved::<HostAtomics, _>(d, c, Held::Active, Held::Inactive, &mut self.mem);
                } else if (*c).inactive > 0 {
                    conn_moved::<HostAtomics, _>(d, c, Held::Inactive, Held::Active, &mut self.mem);
                }
            } else if op < 91 {
                // lbadm -e -w: the table changes, a new tree.
                self.d(j).weight = rng.below(6) as i32;
                self.commit();
            } else if op < 97 {
                // lbadm -e -x -y: OVERLOAD lifted as __ip_vs_update_dest does, the tree refreshed.
                let old = self.d(j).u_threshold;
                let u = rng.below(8) as u32;
                if update_lifts_overload(old, u) {
                    self.d(j).flags &= !DEST_F_OVERLOAD;
                }
                self.d(j).u_threshold = u;
                self.d(j).l_threshold = if u > 1 { rng.below(u as u64) as u32 } else { 0 };
                let base = self.mem.node(SVC);
                if base != 0 {
                    refresh(&mut self.mem, base, SVC);
                }
            } else {
                // A change of both configuration and flags at once (an edit, a revived dest).
                self.d(j).flags ^= DEST_F_OVERLOAD;
                self.d(j).weight = rng.below(6) as i32;
                self.commit();
            }
        }
    }
}

#[test]
fn tree_root_is_the_scan_pick() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for n in [1usize, 2, 3, 5, 16, 257, 1024] {
        for rule in CountRule::ALL {
            let mut w = World::new(n, rule, &mut rng);
            let steps = if n > 100 { 1500 } else { 3000 };
            for s in 0..steps {
                w.step(&mut rng);
                let want = w.expected();
                assert_eq!(w.root(), want, "n={n} {rule:?} after step {s}");
                assert_eq!(root_pick(&w.mem, SVC, rule), want, "n={n} {rule:?} after step {s}");
                if rule != CountRule::Wlc {
                    assert_eq!(root_pick(&w.mem, SVC, CountRule::Wlc), None, "another rule's tree is not used");
                }
            }
        }
    }
}

/// Many connections on few dests, heavily tied counts: the ties must go to the first dest in
/// list order, as IPVS's strict comparisons give them.
#[test]
fn ties_go_to_the_first_dest() {
    let mut rng = Rng(12345);
    for rule in CountRule::ALL {
        let mut w = World::new(16, rule, &mut rng);
        for i in 0..16 {
            let d = w.d(i);
            d.weight = 2;
            d.u_threshold = 0;
            d.l_threshold = 0;
            d.flags &= !DEST_F_OVERLOAD;
        }
        w.commit();
        assert_eq!(w.root(), w.expected(), "{rule:?}");
        assert_eq!(w.root(), Some(0), "{rule:?}: all equal, the first one");
        for _ in 0..2000 {
            let j = rng.below(16) as usize;
            let (d, c) = (unsafe { w.mem.dests.add(j) }, unsafe { w.mem.conns.add(j) });
            unsafe {
                if rng.below(2) == 0 || (*c).active == 0 {
                    conn_start::<HostAtomics, _>(d, c, Held::Active, &mut w.mem);
                } else {
                    conn_end::<HostAtomics, _>(d, c, Held::Active, &mut w.mem);
                }
            }
            assert_eq!(w.root(), w.expected(), "{rule:?}");
        }
    }
}

#[test]
fn layout() {
    assert_eq!(levels_for(1), 0);
    assert_eq!(levels_for(2), 1);
    assert_eq!(levels_for(3), 2);
    assert_eq!(levels_for(1024), 10);
    assert_eq!(levels_for(1025), 11);
    assert_eq!(tree_words(0), 0);
    assert_eq!(tree_words(1), 2);
    assert_eq!(tree_words(5), 16);
    for n in 1..2000u32 {
        assert!(tree_words(n) <= 4 * n, "{n}");
    }
    assert_eq!(parse_header(header(CountRule::Ovf, 18)), Some((CountRule::Ovf, 18)));
    assert_eq!(parse_header(0), None);
    assert_eq!(parse_header(header(CountRule::Lc, 19)), None);
    for s in 0..=14u8 {
        let r = CountRule::of_sched(s);
        if let Some(r) = r {
            assert_eq!(CountRule::from_code(r as u32), Some(r));
        }
    }
}

/// The tree's test ([`rank`], [`Rank::beaten_by`]) is IPVS's loop on every pair of small dest
/// states: the fold over `[a, b]` picks what the tree's node over the leaves `a`, `b` holds, and
/// over `[a]` what its leaf offers.
#[test]
fn rank_is_the_kernel_fold_on_every_small_pair() {
    let mut states = Vec::new();
    for weight in 0..4 {
        for active in 0..4 {
            for inactive in [0, 1, 255, 256, 300] {
                for overloaded in [false, true] {
                    states.push(DestState { active, inactive, overloaded, ..DestState::new(0, weight) });
                }
            }
        }
    }
    for rule in CountRule::ALL {
        let fold = |list: &[DestState]| match rule {
            CountRule::Lc => least_conn_pick(LcKind::Lc, list),
            CountRule::Wlc => least_conn_pick(LcKind::Wlc, list),
            CountRule::Sed => least_conn_pick(LcKind::Sed, list),
            CountRule::Nq => least_conn_pick(LcKind::Nq, list),
            CountRule::Fo => fo_pick(list),
            CountRule::Ovf => ovf_pick(list),
        };
        let rank_of = |d: &DestState| rank(rule.coeffs(), d.weight, d.active, d.inactive, d.overloaded as u64);
        for a in &states {
            let a = DestState { id: 1, ..*a };
            assert_eq!(fold(&[a]).is_some(), rule.candidate(&a), "{rule:?} {a:?}");
            for b in &states {
                let b = DestState { id: 2, ..*b };
                let (ra, rb) = (rank_of(&a), rank_of(&b));
                let (w, rw) = if ra.beaten_by(&rb) { (2, rb) } else { (1, ra) };
                let tree = if rw.is_candidate() { Some(w) } else { None };
                assert_eq!(tree, fold(&[a, b]), "{rule:?} {a:?} {b:?}");
                if rule.candidate(&a) && rule.candidate(&b) {
                    assert_eq!(rule.replaces(&a, &b), fold(&[a, b]) == Some(2), "{rule:?} {a:?} {b:?}");
                }
            }
        }
    }
}
