//! fo and ovf (`ip_vs_fo.c`, `ip_vs_ovf.c`): the highest weight wins (ties: earliest in list).
//!
//! fo depends only on weights and OVERLOAD flags, so its pick could be precomputed per service
//! (one slot); ovf also depends on ActiveConn. Both are given as a fold ([`Highest`]) the data
//! plane runs over the dests when the service's scheduling tree ([`super::tree`]) has no usable
//! answer; the trees are tested against it.

use super::DestState;

/// Fold state for fo / ovf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Highest {
    /// ovf rule (skip dests with `active > weight`) instead of fo.
    pub ovf: bool,
    best: Option<(u32, i32)>,
}

impl Highest {
    pub const fn new(ovf: bool) -> Self {
        Highest { ovf, best: None }
    }

    #[inline(always)]
    pub fn step(&mut self, d: &DestState) {
        if d.overloaded {
            return;
        }
        if self.ovf {
            // ip_vs_ovf.c: skip active > weight and weight 0; `!h || w > hw`.
            if d.weight == 0 || d.active as i64 > d.weight as i64 {
                return;
            }
            if self.best.is_none_or(|(_, hw)| d.weight > hw) {
                self.best = Some((d.id, d.weight));
            }
        } else {
            // ip_vs_fo.c: hw starts at 0, `weight > hw`.
            if d.weight > self.best.map_or(0, |(_, hw)| hw) {
                self.best = Some((d.id, d.weight));
            }
        }
    }

    #[inline(always)]
    pub fn result(&self) -> Option<u32> {
        self.best.map(|(id, _)| id)
    }
}

/// `ip_vs_fo_schedule`.
pub fn fo_pick(list: &[DestState]) -> Option<u32> {
    let mut f = Highest::new(false);
    list.iter().for_each(|d| f.step(d));
    f.result()
}

/// `ip_vs_ovf_schedule`.
pub fn ovf_pick(list: &[DestState]) -> Option<u32> {
    let mut f = Highest::new(true);
    list.iter().for_each(|d| f.step(d));
    f.result()
}
