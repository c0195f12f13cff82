//! wrr (`ip_vs_wrr.c`): the literal algorithm ([`WrrReference`]) and its O(1) table.
//!
//! Kernel state: `cl` (cursor: a dest or the list head), `cw` (current weight), `mw` (max weight
//! − (di − 1)), `di` (gcd of the weights > 0). A pick walks forward from `cl` to the first dest
//! that is not overloaded and has `weight >= cw`; at the list end `cw -= di` (wrapping to `mw`).
//! On every add / edit / delete of a dest: `cl := head`, di and mw recomputed, and `cw := mw` if
//! `cw > mw || cw == 0`, else `cw := (cw / di) * di + 1` when `di > 1`.
//!
//! As long as the dests and their flags do not change, the picks are periodic: one cycle is, for
//! `cw = mw, mw − di, …, ≥ 1`, every eligible dest with `weight >= cw` in list order. The table
//! is that cycle ([`build_wrr_table`]); [`wrr_cursor`] says where in it a kernel state
//! `(cl, cw)` stands, [`wrr_slot_state`] gives back the kernel state after a pick of slot `i`,
//! and [`wrr_update_cw`] is the update rule, so userspace can carry the exact state across
//! rebuilds:
//!
//! * after an add/edit/delete: `cw' = wrr_update_cw(cw, new)`, cursor `= wrr_cursor(new, None, cw')`;
//! * after an OVERLOAD flag change (no scheduler callback in the kernel, `cl` stays):
//!   cursor `= wrr_cursor(new, cl, cw)`;
//!
//! where `(cl, cw)` is `wrr_slot_state(old, last_index)` if something was picked since the last
//! rebuild, else the state stored at that rebuild.
//!
//! The cycle has `Σ ceil-ish(weight / di)` slots (exactly Σ w/di when all weights are multiples
//! of di, which they are by definition of di). With big co-prime weights (e.g. 65535 and 1) that
//! exceeds [`WRR_MAX_SLOTS`]; [`build_wrr_runs`] is the exact alternative: consecutive passes with
//! the same members are one run (at most one run per distinct weight), so it needs at most
//! n(n+1)/2 member slots for n dests, and a pick costs a binary search over the runs.

use super::{gcd, DestView};

/// Cap of one expanded wrr cycle ([`build_wrr_table`]).
pub const WRR_MAX_SLOTS: usize = 65536;

/// `di` and `mw` of a list (kernel `ip_vs_wrr_gcd_weight`, `ip_vs_wrr_max_weight`): the max is
/// over every dest (overloaded ones included), the gcd over weights > 0 (1 if none).
pub fn wrr_params(list: &[DestView]) -> (i32, i32) {
    let mut g = 0;
    let mut maxw = 0;
    for d in list {
        if d.weight > 0 {
            g = if g > 0 { gcd(d.weight, g) } else { d.weight };
        }
        if d.weight > maxw {
            maxw = d.weight;
        }
    }
    let di = if g > 0 { g } else { 1 };
    (di, maxw - (di - 1))
}

/// The kernel's update rule for `cw` after an add/edit/delete (`new` = the list after it).
pub fn wrr_update_cw(cw: i32, new: &[DestView]) -> i32 {
    let (di, mw) = wrr_params(new);
    if cw > mw || cw == 0 {
        mw
    } else if di > 1 {
        (cw / di) * di + 1
    } else {
        cw
    }
}

#[inline(always)]
fn wrr_member(d: &DestView, cw: i32) -> bool {
    !d.overloaded && d.weight >= cw
}

/// The literal kernel wrr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrReference {
    /// Id of the dest last picked; `None` = the list head.
    pub cl: Option<u32>,
    pub cw: i32,
    pub mw: i32,
    pub di: i32,
}

impl WrrReference {
    /// `ip_vs_wrr_init_svc` (the service is created with its current list, usually empty).
    pub fn new(list: &[DestView]) -> Self {
        let (di, mw) = wrr_params(list);
        WrrReference { cl: None, cw: mw, mw, di }
    }

    /// `ip_vs_wrr_dest_changed`: call after every add / edit / delete with the new list.
    pub fn on_change(&mut self, list: &[DestView]) {
        let (di, mw) = wrr_params(list);
        self.cl = None;
        self.cw = wrr_update_cw(self.cw, list);
        self.di = di;
        self.mw = mw;
    }

    /// `ip_vs_wrr_schedule`.
    pub fn pick(&mut self, list: &[DestView]) -> Option<u32> {
        if self.mw == 0 {
            return None;
        }
        let last = self.cl.and_then(|c| list.iter().position(|d| d.id == c));
        let mut start = last.map_or(0, |p| p + 1);
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        loop {
            for (pos, d) in list.iter().enumerate().skip(start) {
                if wrr_member(d, self.cw) {
                    self.cl = Some(d.id);
                    return Some(d.id);
                }
                if stop == Some(pos) {
                    self.cl = Some(d.id);
                    return None;
                }
            }
            start = 0;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

/// The pass weights of one cycle: `mw, mw − di, …` while ≥ 1.
fn passes(mw: i32, di: i32) -> impl Iterator<Item = i32> {
    let count = if mw > 0 { (mw - 1) / di + 1 } else { 0 };
    (0..count).map(move |k| mw - k * di)
}

/// Number of slots of one cycle (0 = no eligible dest).
pub fn wrr_cycle_len(list: &[DestView]) -> u64 {
    let (di, mw) = wrr_params(list);
    let j_max = if mw > 0 { (mw - 1) / di } else { return 0 };
    // Pass weights are j*di + 1 + r for j = 0..=j_max with r = (mw - 1) % di; a dest of weight w
    // is in the passes with j*di + 1 + r <= w.
    let r = (mw - 1) % di;
    list.iter()
        .filter(|d| !d.overloaded && d.weight > r)
        .map(|d| (((d.weight - 1 - r) / di).min(j_max) + 1) as u64)
        .sum()
}

/// One wrr cycle, expanded: returns the number of slots written, or `None` when the cycle does
/// not fit in `out` (or exceeds [`WRR_MAX_SLOTS`]); use [`build_wrr_runs`] then. The pick for
/// cursor value `c` is `out[c % len]` (same as rr, [`super::rr_slot`]).
pub fn build_wrr_table(list: &[DestView], out: &mut [u32]) -> Option<usize> {
    let len = wrr_cycle_len(list);
    if len > out.len() as u64 || len > WRR_MAX_SLOTS as u64 {
        return None;
    }
    let (di, mw) = wrr_params(list);
    let mut n = 0;
    for cw in passes(mw, di) {
        for d in list.iter().filter(|d| wrr_member(d, cw)) {
            *out.get_mut(n)? = d.id;
            n += 1;
        }
    }
    Some(n)
}

/// Slots of the passes with weight above `cw` (the cycle index where pass `cw` starts).
fn slots_before_pass(list: &[DestView], cw: i32) -> u64 {
    let (di, mw) = wrr_params(list);
    passes(mw, di)
        .take_while(|p| *p > cw)
        .map(|p| list.iter().filter(|d| wrr_member(d, p)).count() as u64)
        .sum()
}

/// Cycle index of the next pick of the kernel state `(cl, cw)` (`cl = None`: the list head).
/// Reduce it modulo the cycle length.
pub fn wrr_cursor(list: &[DestView], cl: Option<u32>, cw: i32) -> u64 {
    let base = slots_before_pass(list, cw);
    let within = match cl.and_then(|c| list.iter().position(|d| d.id == c)) {
        Some(pos) => list.iter().take(pos + 1).filter(|d| wrr_member(d, cw)).count() as u64,
        None => 0,
    };
    let len = wrr_cycle_len(list);
    if len == 0 { 0 } else { (base + within) % len }
}

/// Kernel state `(cl, cw)` right after the pick of cycle slot `index` (taken modulo the cycle).
pub fn wrr_slot_state(list: &[DestView], index: u64) -> Option<(u32, i32)> {
    let len = wrr_cycle_len(list);
    if len == 0 {
        return None;
    }
    let mut i = index % len;
    let (di, mw) = wrr_params(list);
    for cw in passes(mw, di) {
        for d in list.iter().filter(|d| wrr_member(d, cw)) {
            if i == 0 {
                return Some((d.id, cw));
            }
            i -= 1;
        }
    }
    None
}

/// A run of consecutive passes of a wrr cycle that have the same members: cycle slots
/// `start .. start + passes * len` are `members[off .. off + len]` repeated `passes` times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrrRun {
    pub start: u64,
    pub passes: u32,
    pub off: u32,
    pub len: u32,
}

/// The run form of a wrr cycle (for cycles too long to expand). Returns (runs, member slots,
/// cycle length), or `None` when an output is too small.
pub fn build_wrr_runs(list: &[DestView], runs: &mut [WrrRun], members: &mut [u32]) -> Option<(usize, usize, u64)> {
    let (di, mw) = wrr_params(list);
    let (mut nr, mut nm, mut start) = (0usize, 0usize, 0u64);
    let mut cur: Option<WrrRun> = None;
    for cw in passes(mw, di) {
        let count = list.iter().filter(|d| wrr_member(d, cw)).count() as u32;
        match cur.as_mut() {
            Some(r) if r.len == count => r.passes += 1,
            _ => {
                if let Some(r) = cur.take() {
                    start += r.passes as u64 * r.len as u64;
                    *runs.get_mut(nr)? = r;
                    nr += 1;
                }
                if count > 0 {
                    let off = nm as u32;
                    for d in list.iter().filter(|d| wrr_member(d, cw)) {
                        *members.get_mut(nm)? = d.id;
                        nm += 1;
                    }
                    cur = Some(WrrRun { start, passes: 1, off, len: count });
                }
            }
        }
    }
    if let Some(r) = cur.take() {
        start += r.passes as u64 * r.len as u64;
        *runs.get_mut(nr)? = r;
        nr += 1;
    }
    Some((nr, nm, start))
}

/// Pick of cycle index `index` (already reduced modulo the cycle length) from the run form:
/// a binary search over the runs (at most log2(#runs) + 1 steps) and one member read.
#[inline(always)]
pub fn wrr_runs_pick(runs: &[WrrRun], members: &[u32], index: u64) -> Option<u32> {
    let (mut lo, mut hi) = (0usize, runs.len());
    // Invariant: the run holding `index` is in [lo, hi).
    for _ in 0..32 {
        if hi - lo <= 1 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        if runs.get(mid)?.start <= index { lo = mid } else { hi = mid }
    }
    let r = runs.get(lo)?;
    if r.len == 0 || index < r.start {
        return None;
    }
    let k = ((index - r.start) % r.len as u64) as u32;
    members.get(r.off.checked_add(k)? as usize).copied()
}
