//! Unit tests of every scheduler: the spec's worked examples, and table-vs-reference
//! equivalence over random sequences of changes and picks.

extern crate std;

use super::*;
use std::vec::Vec;


fn d(id: u32, weight: i32) -> DestView {
    DestView { id, weight, overloaded: false }
}

fn table_picks(list: &[DestView], counter: &mut u64, n: usize) -> [u32; 16] {
    let mut slots = [0u32; 16];
    let len = build_rr_table(list, &mut slots) as u32;
    let mut out = [u32::MAX; 16];
    for o in out.iter_mut().take(n) {
        *o = slots[rr_slot(*counter, len) as usize];
        *counter += 1;
    }
    out
}

#[test]
fn spec_example_add_a_b_c() {
    // add A, B, C -> list C, B, A -> picks C, B, A, C, B, A
    let list = [d(3, 1), d(2, 1), d(1, 1)];
    let mut c = 0;
    assert_eq!(table_picks(&list, &mut c, 6)[..6], [3, 2, 1, 3, 2, 1]);
    let mut r = RrReference::default();
    let picks: [u32; 6] = core::array::from_fn(|_| r.pick(&list).unwrap_or(0));
    assert_eq!(picks, [3, 2, 1, 3, 2, 1]);
}

#[test]
fn weight_zero_skipped() {
    let list = [d(3, 1), d(2, 0), d(1, 5)];
    let mut c = 0;
    assert_eq!(table_picks(&list, &mut c, 4)[..4], [3, 1, 3, 1]);
}

#[test]
fn resume_after_add_matches_reference() {
    // Pick twice from [B, A], then add C (prepended): IPVS continues after the cursor.
    let before = [d(2, 1), d(1, 1)];
    let after = [d(3, 1), d(2, 1), d(1, 1)];
    let mut r = RrReference::default();
    r.pick(&before);
    r.pick(&before);
    let mut c = rr_resume(&after, r.cursor, None);
    let got = table_picks(&after, &mut c, 5);
    let want: [u32; 5] = core::array::from_fn(|_| r.pick(&after).unwrap_or(0));
    assert_eq!(got[..5], want);
}

#[test]
fn resume_after_deleting_cursor_matches_reference() {
    let before = [d(3, 1), d(2, 1), d(1, 1)];
    let mut r = RrReference::default();
    r.pick(&before); // 3
    r.pick(&before); // 2
    let pred = Some(3);
    let last = r.cursor;
    r.on_delete(&before, 2);
    let after = [d(3, 1), d(1, 1)];
    let mut c = rr_resume(&after, last, pred);
    let got = table_picks(&after, &mut c, 4);
    let want: [u32; 4] = core::array::from_fn(|_| r.pick(&after).unwrap_or(0));
    assert_eq!(got[..4], want);
}


// ---- a tiny deterministic PRNG for the randomized tests ----
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn wrr_picks(r: &mut WrrReference, l: &[DestView], n: usize) -> Vec<u32> {
    (0..n).map(|_| r.pick(l).unwrap_or(0)).collect()
}

/// Builds the list by adding dests one by one (newest first), as ipvsadm does.
fn wrr_incremental(weights: &[(u32, i32)]) -> (WrrReference, Vec<DestView>) {
    let mut l: Vec<DestView> = Vec::new();
    let mut r = WrrReference::new(&l);
    for &(id, w) in weights {
        l.insert(0, d(id, w));
        r.on_change(&l);
    }
    (r, l)
}

#[test]
fn wrr_spec_fresh_cycles() {
    // Fresh state (cw = mw, cl = head) over a fixed list.
    let l = [d(1, 3), d(2, 1)];
    let mut r = WrrReference::new(&l);
    assert_eq!(wrr_picks(&mut r, &l, 8), [1, 1, 1, 2, 1, 1, 1, 2]);
    let l = [d(1, 4), d(2, 3), d(3, 2)];
    let mut r = WrrReference::new(&l);
    assert_eq!(wrr_picks(&mut r, &l, 9), [1, 1, 2, 1, 2, 3, 1, 2, 3]);
    let l = [d(3, 2), d(2, 3), d(1, 4)];
    let mut r = WrrReference::new(&l);
    assert_eq!(wrr_picks(&mut r, &l, 9), [1, 2, 1, 3, 2, 1, 3, 2, 1]);
}

#[test]
fn wrr_spec_as_produced_by_ipvsadm() {
    // add A(w3) then B(w1): cw ends at 1 -> B, A, A, A, B, A, A, A (also what 6.1 does).
    let (mut r, l) = wrr_incremental(&[(1, 3), (2, 1)]);
    assert_eq!(r.cw, 1);
    assert_eq!(wrr_picks(&mut r, &l, 8), [2, 1, 1, 1, 2, 1, 1, 1]);
    // add A4, B3, C2 -> C B A, A, B A, C B A, C B A, A, B A
    let (mut r, l) = wrr_incremental(&[(1, 4), (2, 3), (3, 2)]);
    assert_eq!(wrr_picks(&mut r, &l, 13), [3, 2, 1, 1, 2, 1, 3, 2, 1, 3, 2, 1, 1]);
    // equal weights -> C, B, A
    let (mut r, l) = wrr_incremental(&[(1, 1), (2, 1), (3, 1)]);
    assert_eq!(wrr_picks(&mut r, &l, 4), [3, 2, 1, 3]);
    // weights 4,2 (di=2, mw=3): per cycle A, B, A
    let l = [d(2, 2), d(1, 4)];
    let mut r = WrrReference::new(&l);
    assert_eq!((r.di, r.mw), (2, 3));
    assert_eq!(wrr_picks(&mut r, &l, 6), [1, 2, 1, 1, 2, 1]);
}

#[test]
fn wrr_no_dest() {
    let l = [d(1, 0), d(2, 0)];
    let mut r = WrrReference::new(&l);
    assert_eq!(r.pick(&l), None);
    let l = [DestView { id: 1, weight: 2, overloaded: true }];
    let mut r = WrrReference::new(&l);
    assert_eq!(r.pick(&l), None);
    assert_eq!(build_wrr_table(&l, &mut [0; 4]), Some(0));
}

/// Userspace's bookkeeping of the kernel wrr state over a table with an atomic cursor.
struct WrrTableSim {
    slots: Vec<u32>,
    runs: Vec<WrrRun>,
    members: Vec<u32>,
    len: u64,
    counter: u64,
    base: u64,
    /// (cl, cw) at the last rebuild.
    stored: (Option<u32>, i32),
    list: Vec<DestView>,
}

impl WrrTableSim {
    fn new() -> Self {
        let r = WrrReference::new(&[]);
        WrrTableSim { slots: Vec::new(), runs: Vec::new(), members: Vec::new(), len: 0, counter: 0, base: 0, stored: (None, r.cw), list: Vec::new() }
    }
    /// The kernel state now, from the old table and the cursor.
    fn state(&self) -> (Option<u32>, i32) {
        if self.counter == self.base || self.len == 0 {
            return self.stored;
        }
        let (id, cw) = wrr_slot_state(&self.list, self.counter - 1).unwrap();
        (Some(id), cw)
    }
    fn rebuild(&mut self, new: &[DestView], scheduler_callback: bool) {
        let (cl, cw) = self.state();
        let (cl, cw) = if scheduler_callback { (None, wrr_update_cw(cw, new)) } else { (cl, cw) };
        let mut buf = std::vec![0u32; 1 << 12];
        let n = build_wrr_table(new, &mut buf).unwrap();
        buf.truncate(n);
        self.slots = buf;
        let mut runs = std::vec![WrrRun::default(); 64];
        let mut members = std::vec![0u32; 1 << 12];
        let (nr, nm, len) = build_wrr_runs(new, &mut runs, &mut members).unwrap();
        runs.truncate(nr);
        members.truncate(nm);
        assert_eq!(len, n as u64);
        self.runs = runs;
        self.members = members;
        self.len = len;
        self.list = new.to_vec();
        self.counter = if len == 0 { 0 } else { wrr_cursor(new, cl, cw) };
        self.base = self.counter;
        self.stored = (cl, cw);
    }
    fn pick(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let i = self.counter % self.len;
        self.counter += 1;
        let a = self.slots[i as usize];
        assert_eq!(wrr_runs_pick(&self.runs, &self.members, i), Some(a));
        Some(a)
    }
}

#[test]
fn wrr_table_matches_reference_random() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _round in 0..300 {
        let mut list: Vec<DestView> = Vec::new();
        let mut r = WrrReference::new(&list);
        let mut t = WrrTableSim::new();
        let mut next_id = 1;
        for _op in 0..60 {
            match rng.below(10) {
                0 | 1 if list.len() < 6 => {
                    list.insert(0, d(next_id, rng.below(7) as i32));
                    next_id += 1;
                    r.on_change(&list);
                    t.rebuild(&list, true);
                }
                2 if !list.is_empty() => {
                    let i = rng.below(list.len() as u64) as usize;
                    list[i].weight = rng.below(7) as i32;
                    r.on_change(&list);
                    t.rebuild(&list, true);
                }
                3 if !list.is_empty() => {
                    let i = rng.below(list.len() as u64) as usize;
                    list.remove(i);
                    r.on_change(&list);
                    t.rebuild(&list, true);
                }
                4 if !list.is_empty() => {
                    // OVERLOAD flag flips: no scheduler callback in the kernel.
                    let i = rng.below(list.len() as u64) as usize;
                    list[i].overloaded = !list[i].overloaded;
                    t.rebuild(&list, false);
                }
                _ => {
                    for _ in 0..rng.below(12) {
                        let want = r.pick(&list);
                        let got = t.pick();
                        assert_eq!(got, want, "list {list:?}");
                        if want.is_none() {
                            // The kernel moved to (head, mw); nothing to pick from either way.
                            t.stored = (r.cl, r.cw);
                            t.base = t.counter;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn wrr_big_weights_use_runs() {
    let l = [d(1, 65535), d(2, 1), d(3, 7)];
    assert_eq!(wrr_cycle_len(&l), 65535 + 1 + 7);
    assert_eq!(build_wrr_table(&l, &mut [0u32; 16]), None);
    let mut runs = [WrrRun::default(); 8];
    let mut members = [0u32; 8];
    let (nr, nm, len) = build_wrr_runs(&l, &mut runs, &mut members).unwrap();
    assert_eq!((nr, nm, len), (3, 6, 65543));
    let mut r = WrrReference::new(&l);
    for i in 0..len + 20 {
        assert_eq!(wrr_runs_pick(&runs[..nr], &members[..nm], i % len), r.pick(&l));
    }
}

/// Userspace's bookkeeping of IPVS's rr cursor across table rebuilds: the dest picked last is
/// `slots[(counter - 1) % len]` if something was picked since the last rebuild, else the anchor
/// stored at that rebuild (deriving it from the table then would lose a cursor that sits on a
/// now-ineligible dest).
#[test]
fn rr_table_matches_reference_random() {
    let mut rng = Rng(77);
    for _ in 0..500 {
        let mut list: Vec<DestView> = Vec::new();
        let mut r = RrReference::default();
        let (mut slots, mut counter, mut base, mut stored, mut next_id) = (Vec::<u32>::new(), 0u64, 0u64, None, 1);
        for _ in 0..40 {
            let old = list.clone();
            let last = if counter == base || slots.is_empty() { stored } else { Some(slots[rr_slot(counter - 1, slots.len() as u32) as usize]) };
            let pred = last.and_then(|l| old.iter().position(|x| x.id == l)).and_then(|p| p.checked_sub(1)).map(|p| old[p].id);
            let mut changed = true;
            match rng.below(6) {
                0 if list.len() < 6 => {
                    list.insert(0, d(next_id, rng.below(3) as i32));
                    next_id += 1;
                }
                1 if !list.is_empty() => {
                    let i = rng.below(list.len() as u64) as usize;
                    list[i].weight = rng.below(3) as i32;
                }
                2 if !list.is_empty() => {
                    let i = rng.below(list.len() as u64) as usize;
                    let id = list[i].id;
                    r.on_delete(&list, id);
                    list.remove(i);
                }
                _ => changed = false,
            }
            if changed {
                let mut buf = std::vec![0u32; 8];
                let n = build_rr_table(&list, &mut buf);
                buf.truncate(n);
                slots = buf;
                counter = rr_resume(&list, last, pred);
                base = counter;
                stored = match last {
                    Some(l) if list.iter().any(|x| x.id == l) => Some(l),
                    Some(_) => pred.filter(|p| list.iter().any(|x| x.id == *p)),
                    None => None,
                };
                assert_eq!(stored, r.cursor);
            }
            for _ in 0..rng.below(5) {
                let want = r.pick(&list);
                let got = if slots.is_empty() { None } else { Some(slots[rr_slot(counter, slots.len() as u32) as usize]) };
                if !slots.is_empty() {
                    counter += 1;
                }
                assert_eq!(got, want, "{list:?}");
            }
        }
    }
}

fn ds(id: u32, w: i32, active: u32, inactive: u32) -> DestState {
    DestState { active, inactive, ..DestState::new(id, w) }
}

#[test]
fn least_conn_rules() {
    // lc: min overhead, ties earliest; weight 0 skipped; weight ignored otherwise.
    let l = [ds(3, 1, 1, 0), ds(2, 9, 1, 0), ds(1, 0, 0, 0)];
    assert_eq!(least_conn_pick(LcKind::Lc, &l), Some(3));
    let l = [ds(3, 1, 1, 0), ds(2, 1, 0, 300), ds(1, 1, 1, 1)];
    assert_eq!(least_conn_pick(LcKind::Lc, &l), Some(3)); // 256 < 300
    // wlc: overhead / weight, strict.
    let l = [ds(3, 1, 1, 0), ds(2, 2, 2, 0), ds(1, 3, 2, 0)];
    assert_eq!(least_conn_pick(LcKind::Wlc, &l), Some(1));
    let l = [ds(3, 0, 0, 0), ds(2, 2, 2, 0), ds(1, 1, 1, 0)];
    assert_eq!(least_conn_pick(LcKind::Wlc, &l), Some(2));
    // sed: (active + 1) / weight, inactive ignored.
    let l = [ds(2, 1, 0, 50), ds(1, 3, 2, 0)];
    assert_eq!(least_conn_pick(LcKind::Sed, &l), Some(2)); // 1/1 vs 3/3: tie -> earliest
    let l = [ds(2, 1, 1, 0), ds(1, 3, 2, 0)];
    assert_eq!(least_conn_pick(LcKind::Sed, &l), Some(1));
    // nq: first idle wins even if a later one is "better".
    let l = [ds(3, 1, 5, 0), ds(2, 1, 0, 9), ds(1, 100, 0, 0)];
    assert_eq!(least_conn_pick(LcKind::Nq, &l), Some(2));
    // overloaded / all zero -> none
    let mut o = ds(1, 1, 0, 0);
    o.overloaded = true;
    for k in [LcKind::Lc, LcKind::Wlc, LcKind::Sed, LcKind::Nq] {
        assert_eq!(least_conn_pick(k, &[o, ds(2, 0, 0, 0)]), None);
    }
}

#[test]
fn fo_ovf_rules() {
    let l = [ds(3, 2, 0, 0), ds(2, 3, 0, 0), ds(1, 3, 0, 0)];
    assert_eq!(fo_pick(&l), Some(2));
    let l = [ds(3, 2, 0, 0), ds(2, 3, 4, 0), ds(1, 3, 3, 0)];
    assert_eq!(ovf_pick(&l), Some(1)); // rs2 has active > weight
    let l = [ds(3, 0, 0, 0), ds(2, 1, 2, 0)];
    assert_eq!(ovf_pick(&l), None);
    assert_eq!(fo_pick(&[ds(1, 0, 0, 0)]), None);
}

#[test]
fn siphash_known_values() {
    // SipHash-1-3 (64-bit key words) of the 4-byte message 0, 1 under the mh keys: fixed values
    // so the implementation cannot drift; the kernel recordings (tests/golden/sched/mh.json)
    // check it end to end.
    let a = siphash::hsiphash_1u32(0, MH_KEY1);
    let b = siphash::hsiphash_1u32(1, MH_KEY1);
    assert_ne!(a, b);
    assert_eq!(siphash::hsiphash_1u32(0, MH_KEY1), a);
}

#[test]
fn sh_dh_tables() {
    let l = [d(3, 1), d(2, 3), d(1, 0)];
    let mut t = [0u32; HASH_TAB_SIZE];
    build_sh_table(&l, &mut t);
    assert_eq!(&t[..8], &[3, 2, 2, 2, 1, 3, 2, 2]);
    build_dh_table(&l, &mut t);
    assert_eq!(&t[..4], &[3, 2, 1, 3]);
    build_sh_table(&[], &mut t);
    assert!(t.iter().all(|x| *x == NO_DEST));
    assert_eq!(sh_pick(&t, 5, 0, true, |_| true), None);
}

/// Reference sh straight from the kernel's description (no table): walk the list for each
/// bucket; used to check the table + pick for many clients.
fn sh_reference(list: &[DestView], fold: u32, port: u16, fallback: bool) -> Option<u32> {
    let mut buckets = [NO_DEST; 256];
    let (mut p, mut c) = (0usize, 0i32);
    for b in buckets.iter_mut() {
        if list.is_empty() {
            break;
        }
        *b = list[p].id;
        c += 1;
        if c >= list[p].weight {
            p = (p + 1) % list.len();
            c = 0;
        }
    }
    let ok = |id: u32| list.iter().any(|d| d.id == id && d.eligible());
    let h = |off: u32| ((off as u64 + (((port as u32).wrapping_add(fold) as u64 * 0x61C88647u64) as u32 >> 24) as u64) & 255) as usize;
    let first = buckets[h(0)];
    if first == NO_DEST {
        return None;
    }
    if ok(first) {
        return Some(first);
    }
    if !fallback {
        return None;
    }
    for off in 0..256u32 {
        let id = buckets[h((off + h(0) as u32) % 256)];
        if id == NO_DEST {
            return None;
        }
        if ok(id) {
            return Some(id);
        }
    }
    None
}

#[test]
fn sh_table_matches_reference_random() {
    let mut rng = Rng(5);
    for _ in 0..100 {
        let n = 1 + rng.below(5) as usize;
        let l: Vec<DestView> = (0..n)
            .map(|i| DestView { id: i as u32 + 1, weight: rng.below(4) as i32, overloaded: rng.below(5) == 0 })
            .collect();
        let mut t = [0u32; HASH_TAB_SIZE];
        build_sh_table(&l, &mut t);
        for _ in 0..200 {
            let fold = rng.next() as u32;
            let port = rng.next() as u16;
            for fb in [false, true] {
                let got = sh_pick(&t, fold, port, fb, |id| l.iter().any(|d| d.id == id && d.eligible()));
                assert_eq!(got, sh_reference(&l, fold, port, fb));
            }
        }
    }
}

#[test]
fn mh_table_properties() {
    let mk = |id: u32, w: i32, lw: i32| DestState { last_weight: lw, addr_fold: 0x0a00020a + id, port: 81, ..DestState::new(id, w) };
    let l = [mk(3, 1, 1), mk(2, 3, 3), mk(1, 2, 2)];
    let mut t = [0u32; MH_TAB_SIZE];
    let mut s = [MhSetup::default(); 3];
    assert!(build_mh_table(&l, &mut t, &mut s));
    let count = |id: u32| t.iter().filter(|x| **x == id).count();
    assert_eq!(count(1) + count(2) + count(3), MH_TAB_SIZE);
    // turns 1:3:2 -> shares about 1/6, 3/6, 2/6 (rounds end mid-way, so allow slack)
    assert!((count(2) as i64 - 2046).abs() < 10, "{}", count(2));
    // added with weight 0: no slots; weight 0 later (last_weight kept): keeps its slots
    let l2 = [mk(3, 0, 0), mk(2, 1, 1), mk(1, 1, 1)];
    build_mh_table(&l2, &mut t, &mut s);
    assert_eq!(t.iter().filter(|x| **x == 3).count(), 0);
    let l3 = [mk(3, 0, 1), mk(2, 1, 1), mk(1, 1, 1)];
    build_mh_table(&l3, &mut t, &mut s);
    assert!(t.iter().filter(|x| **x == 3).count() > 1000);
    let usable = |id: u32| id != 3;
    let mut fell_back = 0;
    for c in 0..2000u32 {
        let fold = 0x0a000100 + c;
        let p = mh_pick(&t, fold, 0, false, usable);
        let f = mh_pick(&t, fold, 0, true, usable);
        assert!(f.is_some() && f != Some(3));
        if p.is_none() {
            fell_back += 1;
        } else {
            assert_eq!(p, f);
        }
    }
    assert!(fell_back > 0);
    // no dest with a non-zero last weight -> empty table
    build_mh_table(&[mk(1, 0, 0)], &mut t, &mut s);
    assert!(t.iter().all(|x| *x == NO_DEST));
    assert!(!build_mh_table(&l, &mut t, &mut s[..1]));
}

#[test]
fn lblc_cache_and_overload() {
    let mut e = [LblcEntry::default(); 4];
    let mut r = LblcReference { entries: &mut e };
    let vip = [0x0a000001, 0, 0, 0];
    let mut l = [ds(3, 1, 0, 0), ds(2, 1, 0, 0), ds(1, 1, 0, 0)];
    assert_eq!(r.pick(&l, vip, 1), Some(3));
    l[0].active = 1;
    assert_eq!(r.pick(&l, vip, 2), Some(3)); // 1 active, not > weight
    l[0].active = 2;
    assert_eq!(r.pick(&l, vip, 3), Some(2)); // overloaded and rs2 is idle -> wlc
    l[1].active = 1;
    assert_eq!(r.pick(&l, vip, 4), Some(2));
    r.expire(100, 10);
    assert!(r.entries.iter().all(|e| !e.used));
}

#[test]
fn lblcr_set_grows_and_shrinks() {
    let mut e = [LblcrEntry::default(); 2];
    let mut r = LblcrReference { entries: &mut e, expiration: 10 };
    let vip = [1, 0, 0, 0];
    let mut l = [ds(3, 1, 0, 0), ds(2, 1, 0, 0), ds(1, 1, 0, 0)];
    let get = |l: &[DestState]| {
        let v = l.to_vec();
        move |id: u32| v.iter().find(|d| d.id == id).copied()
    };
    assert_eq!(r.pick(&l, vip, 0, get(&l)), Some(3));
    l[0].active = 2;
    assert_eq!(r.pick(&l, vip, 1, get(&l)), Some(2)); // set {2, 3}
    assert_eq!(r.entries[0].set.len, 2);
    l[1].active = 1;
    // rs2 (1 active) is the set's least loaded and not overloaded
    assert_eq!(r.pick(&l, vip, 2, get(&l)), Some(2));
    // after the expiration the most loaded member (rs3) leaves the set
    assert_eq!(r.pick(&l, vip, 20, get(&l)), Some(2));
    assert_eq!(r.entries[0].set.members(), &[2]);
}

#[test]
fn twos_rules() {
    let l = [ds(3, 1, 0, 0), ds(2, 0, 0, 0), ds(1, 2, 1, 0)];
    // total = 3 + 1 = 4; r = 0 -> first eligible (rs3); r = 3 -> rs1
    assert_eq!(twos_pick(&l, 0, 0), Some(3));
    assert_eq!(twos_pick(&l, 3, 3), Some(1));
    // rs1 chosen first, rs3 second: rs3 has overhead 0 < rs1's -> rs3
    assert_eq!(twos_pick(&l, 3, 1), Some(3));
    for a in 0..50 {
        for b in 0..50 {
            assert_ne!(twos_pick(&l, a, b), Some(2));
        }
    }
    assert_eq!(twos_pick(&[ds(1, 0, 0, 0)], 1, 2), None);
}
