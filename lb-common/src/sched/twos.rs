//! twos, "power of two choices" (`ip_vs_twos.c`, kernel 6.2+; not in 6.1).
//!
//! Two weighted random dests, the less loaded (overhead / weight) wins. The kernel draws its
//! random numbers with `prandom_u32()`/`get_random_u32()`; here they are arguments so the pick is
//! a pure function. Cost: two passes over the dests, O(n) per new connection. Arithmetic is the
//! kernel's 32-bit `int` arithmetic (wrapping).

use super::DestState;

/// `ip_vs_twos_schedule` with the two random draws `rand1`, `rand2`.
pub fn twos_pick(list: &[DestState], rand1: u32, rand2: u32) -> Option<u32> {
    let eligible = |d: &&DestState| !d.overloaded && d.weight > 0;
    let total = list.iter().filter(eligible).fold(0i32, |t, d| t.wrapping_add(d.weight));
    if !list.iter().any(|d| !d.overloaded && d.weight > 0) {
        return None;
    }
    let total = total.wrapping_add(1) as u32;
    if total == 0 {
        return None;
    }
    let mut r1 = (rand1 % total) as i32;
    let mut r2 = (rand2 % total) as i32;
    let (mut c1, mut c2): (Option<&DestState>, Option<&DestState>) = (None, None);
    for d in list.iter().filter(eligible) {
        r1 = r1.wrapping_sub(d.weight);
        r2 = r2.wrapping_sub(d.weight);
        if r1 <= 0 && c1.is_none() {
            c1 = Some(d);
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some(d);
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    let oh = |d: &DestState| ((d.active as i32) << 8).wrapping_add(d.inactive as i32);
    match (c1, c2) {
        (Some(a), Some(b)) if b.weight.wrapping_mul(oh(a)) > a.weight.wrapping_mul(oh(b)) => Some(b.id),
        (Some(a), _) => Some(a.id),
        // Cannot happen (the walk always ends with r <= 0); the kernel keeps its first-loop
        // choice1, the last eligible dest.
        (None, _) => list.iter().rev().find(|d| !d.overloaded && d.weight > 0).map(|d| d.id),
    }
}
