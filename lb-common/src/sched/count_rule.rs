//! The rule of the connection-count schedulers (lc wlc sed nq fo ovf, and lblc/lblcr's wlc
//! fallback) as the scheduling trees ([`super::tree`]) apply it: which dests may be picked
//! ([`CountRule::candidate`]) and when a later dest in list order replaces the best so far
//! ([`CountRule::replaces`]), both from one branch-free formula ([`rank`]) so that the data
//! plane's tree update is one path for the verifier whatever the rule. IPVS's loops
//! (`ip_vs_lc_schedule` ... `ip_vs_ovf_schedule`, written out as the folds [`super::LeastConn`]
//! and [`super::Highest`], which the kernel recordings check) are folds over the list with
//! exactly these two tests: the tests of this module check the formula against the folds on
//! every pair of small states, and the trees against the folds over random changes.
//!
//! Every rule is "the first dest in list order among the best" for a total preorder on the
//! candidates (weights > 0, as IPVS allows): `replaces(a, b)` is "b strictly better than a". A
//! fold that keeps its best unless strictly beaten, and a tournament tree whose right child
//! beats its left only when strictly better, then give the same dest.

use super::{DestState, SCHED_FO, SCHED_LBLC, SCHED_LBLCR, SCHED_LC, SCHED_NQ, SCHED_OVF, SCHED_SED, SCHED_WLC};

/// Which connection-count rule. The discriminants are stored in tree headers.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountRule {
    /// Least `active * 256 + inactive` among dests with weight != 0.
    Lc = 1,
    /// Least `(active * 256 + inactive) / weight`.
    Wlc = 2,
    /// Least `(active + 1) / weight`.
    Sed = 3,
    /// The first dest with no active connection, else the sed rule.
    Nq = 4,
    /// The highest weight.
    Fo = 5,
    /// The highest weight among dests with `active <= weight`.
    Ovf = 6,
}

/// What a rule reads of a dest besides its weight (which only a configuration change changes):
/// a change of anything else leaves the rule's picks alone.
pub const READS_ACTIVE: u8 = 1;
pub const READS_INACTIVE: u8 = 2;
/// PersistConn: no rule reads it.
pub const READS_PERSIST: u8 = 4;
/// `DEST_F_OVERLOAD` (and the dest's availability).
pub const READS_FLAGS: u8 = 8;

impl CountRule {
    pub const ALL: [CountRule; 6] =
        [CountRule::Lc, CountRule::Wlc, CountRule::Sed, CountRule::Nq, CountRule::Fo, CountRule::Ovf];

    /// The rule of scheduler `sched` (`SCHED_*`): lblc and lblcr fall back on wlc's.
    #[inline(always)]
    pub const fn of_sched(sched: u8) -> Option<CountRule> {
        match sched {
            SCHED_LC => Some(CountRule::Lc),
            SCHED_WLC | SCHED_LBLC | SCHED_LBLCR => Some(CountRule::Wlc),
            SCHED_SED => Some(CountRule::Sed),
            SCHED_NQ => Some(CountRule::Nq),
            SCHED_FO => Some(CountRule::Fo),
            SCHED_OVF => Some(CountRule::Ovf),
            _ => None,
        }
    }

    /// The rule whose discriminant is `code`.
    #[inline(always)]
    pub const fn from_code(code: u32) -> Option<CountRule> {
        match code {
            1 => Some(CountRule::Lc),
            2 => Some(CountRule::Wlc),
            3 => Some(CountRule::Sed),
            4 => Some(CountRule::Nq),
            5 => Some(CountRule::Fo),
            6 => Some(CountRule::Ovf),
            _ => None,
        }
    }

    /// `READS_*`: what of a dest the rule looks at.
    #[inline(always)]
    pub const fn reads(self) -> u8 {
        match self {
            CountRule::Lc | CountRule::Wlc => READS_ACTIVE | READS_INACTIVE | READS_FLAGS,
            CountRule::Sed | CountRule::Nq | CountRule::Ovf => READS_ACTIVE | READS_FLAGS,
            CountRule::Fo => READS_FLAGS,
        }
    }

    /// The rule as data (`K_*` bits): what [`rank`] computes a dest's place from. Stored in
    /// tree headers, so the data plane's tree update runs one branch-free formula for every rule
    /// (the verifier then checks one path, not one per rule).
    #[inline(always)]
    pub const fn coeffs(self) -> u32 {
        match self {
            CountRule::Lc => K_OH,
            CountRule::Wlc => K_OH | K_W,
            CountRule::Sed => K_A1 | K_W,
            CountRule::Nq => K_A1 | K_W | K_IDLE,
            CountRule::Fo => K_ONE | K_W,
            CountRule::Ovf => K_ONE | K_W | K_OVF,
        }
    }

    /// Whether IPVS's loop considers `d` at all: never an OVERLOADed dest; lc and nq skip
    /// weight 0; wlc and sed only take a first candidate of weight > 0 (and a later one of
    /// weight 0 never wins their comparison); fo starts from weight 0 with `>`; ovf skips weight
    /// 0 and `active > weight`.
    #[inline(always)]
    pub fn candidate(self, d: &DestState) -> bool {
        self.rank(d).den != 0
    }

    /// Whether candidate `d`, later in list order, takes the place of candidate `best` (IPVS's
    /// strict comparisons: ties stay with the earlier dest).
    #[inline(always)]
    pub fn replaces(self, best: &DestState, d: &DestState) -> bool {
        self.rank(best).beaten_by(&self.rank(d))
    }

    #[inline(always)]
    fn rank(self, d: &DestState) -> Rank {
        rank(self.coeffs(), d.weight, d.active, d.inactive, d.overloaded as u64)
    }
}

/// `K_*`: a rule as data ([`CountRule::coeffs`]). The place of a dest is the fraction
/// `num / den` (less is better) among candidates:
/// - `num`: the overhead `active * 256 + inactive` (`K_OH`), `active + 1` (`K_A1`) or 1 (`K_ONE`);
/// - `den`: the weight (`K_W`) or 1;
/// - `K_IDLE` (nq): a dest without active connections is `0 / 1`, before every other and tied
///   with the other idle ones (so the first idle dest wins, as nq's loop stops there);
/// - candidates: not OVERLOADed, weight > 0, and with `K_OVF` `active <= weight`. (lc's and nq's
///   loops test `weight != 0`: the same, as IPVS refuses negative weights, `-ERANGE`.)
///
/// So lc compares overheads, wlc `oh / w`, sed `(active + 1) / w`, fo and ovf `1 / w` (the
/// highest weight), all by IPVS's cross-multiplied comparison `num_b * den_d > num_d * den_b`
/// in 64 bits (the kernel's `(__s64)` casts).
pub const K_OH: u32 = 1;
pub const K_A1: u32 = 2;
pub const K_ONE: u32 = 4;
pub const K_W: u32 = 8;
pub const K_IDLE: u32 = 16;
pub const K_OVF: u32 = 32;

/// A dest's place under a rule ([`rank`]): `num / den`, less is better. A dest that is no
/// candidate is `1 / 0` (`den == 0`), worse than every candidate (whose `den` is at least 1):
/// then one comparison orders every pair, and a tree node is the better of its children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rank {
    pub num: i64,
    pub den: i64,
}

impl Rank {
    /// Not a candidate.
    pub const NONE: Rank = Rank { num: 1, den: 0 };

    /// Whether a candidate.
    #[inline(always)]
    pub const fn is_candidate(&self) -> bool {
        self.den != 0
    }

    /// Whether `d`, later in list order, is strictly better than `self` (IPVS's
    /// `num_b * den_d > num_d * den_b`): never when `d` is no candidate, always when `d` is one
    /// and `self` is not.
    #[inline(always)]
    pub fn beaten_by(&self, d: &Rank) -> bool {
        self.num.wrapping_mul(d.den) > d.num.wrapping_mul(self.den)
    }
}

/// 1 when `x == 0`, else 0, without a branch.
#[inline(always)]
const fn is_zero(x: u64) -> i64 {
    1 ^ ((x | x.wrapping_neg()) >> 63) as i64
}

/// 1 when `x < 0`, else 0 (`x` of 32-bit origin), without a branch.
#[inline(always)]
const fn is_neg(x: i64) -> i64 {
    ((x as u64) >> 63) as i64
}

/// The place of a dest of weight `weight`, counts `active`/`inactive`, OVERLOAD `overloaded`
/// (0 or 1) under the rule `coeffs` ([`CountRule::coeffs`]). Arithmetic only: the data plane
/// runs it with `coeffs` read from a tree header, and the verifier sees no branch per rule.
#[inline(always)]
pub fn rank(coeffs: u32, weight: i32, active: u32, inactive: u32, overloaded: u64) -> Rank {
    let k = |bit: u32| ((coeffs & bit) != 0) as i64;
    let (w, a) = (weight as i64, active as i64);
    let (k_oh, k_a1, k_one, k_w, k_idle, k_ovf) = (k(K_OH), k(K_A1), k(K_ONE), k(K_W), k(K_IDLE), k(K_OVF));
    let idle = k_idle * is_zero(active as u64);
    let oh = (a << 8) + inactive as i64;
    let num = (k_oh * oh + k_a1 * (a + 1) + k_one) * (1 - idle);
    let den = (k_w * w + (1 - k_w)) * (1 - idle) + idle;
    let cand = (1 - (overloaded & 1) as i64) * is_neg(-w) * (1 - k_ovf * is_neg(w - a));
    Rank { num: num * cand + (1 - cand), den: den * cand }
}


impl super::LcKind {
    /// Its [`CountRule`].
    #[inline(always)]
    pub const fn rule(self) -> CountRule {
        match self {
            super::LcKind::Lc => CountRule::Lc,
            super::LcKind::Wlc => CountRule::Wlc,
            super::LcKind::Sed => CountRule::Sed,
            super::LcKind::Nq => CountRule::Nq,
        }
    }
}

impl super::Highest {
    /// Its [`CountRule`].
    #[inline(always)]
    pub const fn rule(&self) -> CountRule {
        if self.ovf { CountRule::Ovf } else { CountRule::Fo }
    }
}
