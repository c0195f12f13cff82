//! lc, wlc, sed, nq (`ip_vs_lc.c`, `ip_vs_wlc.c`, `ip_vs_sed.c`, `ip_vs_nq.c`).
//!
//! These depend on live connection counts, so there is no precomputed table: the pick is a fold
//! over the service's dests in list order with their current ActiveConn/InActConn. The data plane
//! runs [`LeastConn::step`] in a bounded loop over the service's dest ids (one map lookup for
//! each dest's counts), then [`LeastConn::result`]: cost O(n) per new connection for n dests
//! (nq can stop at the first idle dest). Ties go to the earliest dest in list order (strict
//! comparisons), exactly like the kernel. Products are 64-bit, as in the kernel (`(__s64)`).
//! This fold, IPVS's loop as the kernel writes it, is the reference the scheduling trees
//! ([`super::tree`], whose rule is [`super::CountRule`]) are tested against; the data plane
//! reads the pick from the tree in O(1) and runs the fold only when the tree's answer is not
//! usable.

use super::DestState;

/// Which of the four rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcKind {
    /// Least `active * 256 + inactive` among dests with weight != 0.
    Lc,
    /// Least `(active * 256 + inactive) / weight`.
    Wlc,
    /// Least `(active + 1) / weight`.
    Sed,
    /// First dest with no active connection, else the sed rule.
    Nq,
}

/// The fold state: the best dest so far and its overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeastConn {
    pub kind: LcKind,
    best: Option<(u32, i64, i32)>,
    done: bool,
}

impl LeastConn {
    pub const fn new(kind: LcKind) -> Self {
        LeastConn { kind, best: None, done: false }
    }

    /// Feed the next dest in list order. Returns false when the result is final (nq found an
    /// idle dest) and the caller may stop early.
    #[inline(always)]
    pub fn step(&mut self, d: &DestState) -> bool {
        if self.done {
            return false;
        }
        if d.overloaded {
            return true;
        }
        match self.kind {
            LcKind::Lc => {
                // ip_vs_lc.c: skip weight 0; strict `<` on the overhead.
                if d.weight == 0 {
                    return true;
                }
                let doh = d.overhead();
                if self.best.is_none_or(|(_, loh, _)| doh < loh) {
                    self.best = Some((d.id, doh, d.weight));
                }
            }
            LcKind::Wlc | LcKind::Sed => {
                let doh = if self.kind == LcKind::Wlc { d.overhead() } else { d.active as i64 + 1 };
                match self.best {
                    // The first candidate must have weight > 0.
                    None if d.weight > 0 => self.best = Some((d.id, doh, d.weight)),
                    None => {}
                    Some((_, loh, lw)) if loh * d.weight as i64 > doh * lw as i64 => {
                        self.best = Some((d.id, doh, d.weight));
                    }
                    Some(_) => {}
                }
            }
            LcKind::Nq => {
                if d.weight == 0 {
                    return true;
                }
                let doh = d.active as i64 + 1;
                if d.active == 0 {
                    self.best = Some((d.id, doh, d.weight));
                    self.done = true;
                    return false;
                }
                match self.best {
                    Some((_, loh, lw)) if loh * (d.weight as i64) <= doh * lw as i64 => {}
                    _ => self.best = Some((d.id, doh, d.weight)),
                }
            }
        }
        true
    }

    #[inline(always)]
    pub fn result(&self) -> Option<u32> {
        self.best.map(|(id, _, _)| id)
    }
}

/// The kernel pick of `kind` over a list (newest first) with live counts.
pub fn least_conn_pick(kind: LcKind, list: &[DestState]) -> Option<u32> {
    let mut f = LeastConn::new(kind);
    for d in list {
        if !f.step(d) {
            break;
        }
    }
    f.result()
}
