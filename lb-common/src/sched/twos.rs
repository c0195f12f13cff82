//! twos, "power of two choices" (`ip_vs_twos.c`, kernel 6.2+; not in 6.1).
//!
//! Two weighted random dests, the less loaded (overhead / weight) wins. The kernel draws its
//! random numbers with `get_random_u32()`; here they are arguments so the pick is a pure
//! function. The data plane runs the same two folds over the service's dests ([`TwosTotal`],
//! then [`TwosChoose`]) with `bpf_get_prandom_u32()`: O(n) per new connection. Arithmetic is
//! the kernel's 32-bit `int` arithmetic (wrapping).

use super::DestState;

#[inline(always)]
const fn twos_eligible(d: &DestState) -> bool {
    !d.overloaded && d.weight > 0
}

/// First pass: the sum of the eligible weights (and whether there is any eligible dest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwosTotal {
    total: i32,
    /// The last eligible dest (the kernel's first-loop `choice1`).
    last: Option<u32>,
}

impl TwosTotal {
    #[inline(always)]
    pub fn step(&mut self, d: &DestState) {
        if twos_eligible(d) {
            self.total = self.total.wrapping_add(d.weight);
            self.last = Some(d.id);
        }
    }

    /// The second pass for random draws `rand1`, `rand2`; `None`: no eligible dest.
    #[inline(always)]
    pub fn choose(&self, rand1: u32, rand2: u32) -> Option<TwosChoose> {
        let last = self.last?;
        // "Add 1 so that the random weights are inclusive from 0 to total_weight."
        let total = self.total.wrapping_add(1) as u32;
        if total == 0 {
            return None;
        }
        Some(TwosChoose {
            r1: (rand1 % total) as i32,
            r2: (rand2 % total) as i32,
            c1: None,
            c2: None,
            fallback: last,
        })
    }
}

/// Second pass: the two weighted choices, then the less loaded of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwosChoose {
    r1: i32,
    r2: i32,
    /// (id, weight, overhead) of each choice.
    c1: Option<(u32, i32, i32)>,
    c2: Option<(u32, i32, i32)>,
    fallback: u32,
}

impl TwosChoose {
    /// Feed the next dest in list order; false once both choices are made.
    #[inline(always)]
    pub fn step(&mut self, d: &DestState) -> bool {
        if !twos_eligible(d) {
            return true;
        }
        self.r1 = self.r1.wrapping_sub(d.weight);
        self.r2 = self.r2.wrapping_sub(d.weight);
        let oh = ((d.active as i32) << 8).wrapping_add(d.inactive as i32);
        if self.r1 <= 0 && self.c1.is_none() {
            self.c1 = Some((d.id, d.weight, oh));
        }
        if self.r2 <= 0 && self.c2.is_none() {
            self.c2 = Some((d.id, d.weight, oh));
        }
        !(self.c1.is_some() && self.c2.is_some())
    }

    #[inline(always)]
    pub fn result(&self) -> u32 {
        match (self.c1, self.c2) {
            (Some((_, w1, oh1)), Some((id2, w2, oh2))) if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) => id2,
            (Some((id1, _, _)), _) => id1,
            // Cannot happen (the walk always ends with r <= 0); the kernel keeps its first-loop
            // choice1, the last eligible dest.
            (None, _) => self.fallback,
        }
    }
}

/// `ip_vs_twos_schedule` with the two random draws `rand1`, `rand2`.
pub fn twos_pick(list: &[DestState], rand1: u32, rand2: u32) -> Option<u32> {
    let mut total = TwosTotal::default();
    list.iter().for_each(|d| total.step(d));
    let mut choose = total.choose(rand1, rand2)?;
    for d in list {
        if !choose.step(d) {
            break;
        }
    }
    Some(choose.result())
}
