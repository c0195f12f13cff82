//! IPVS's schedulers: names, and the rules both the data plane and its userspace tests use.
//!
//! Userspace precomputes, per service, a table of dest ids in `XLB_SCHED_SLOTS`: for rr, wrr,
//! dh, sh and mh one from which a new connection's pick costs O(1); for the load-based
//! schedulers (lc wlc sed nq fo ovf twos, lblc/lblcr on a miss) the eligible dests in list order,
//! which the data plane folds over whole with their live counts, O(n) as IPVS's walk of its list
//! (one `bpf_loop` covers any table: up to 2^23 steps, more than `MAX_SCHED_SLOTS`). The
//! functions here build those tables and define the pick, and the `*Reference` types (and the
//! plain `*_pick` functions of the load-based schedulers) are the literal IPVS algorithms the
//! tables are tested against (and, for recorded sequences, that are tested against the real
//! kernel: `tests/golden/sched/`).
//!
//! | scheduler | data-plane form | per new connection |
//! |---|---|---|
//! | rr | [`build_rr_table`], one slot per eligible dest | O(1) |
//! | wrr | [`build_wrr_table`]: one full cycle (Σ weight/gcd slots, cap [`WRR_MAX_SLOTS`]); else [`build_wrr_runs`] | O(1); runs: O(log runs) |
//! | lc wlc sed nq | the root of the service's [`tree`] (O(log n) per count change); else the [`LeastConn`] fold | O(1) |
//! | fo ovf | the root of the service's [`tree`]; else [`fo_pick`] / [`ovf_pick`] (fold: [`Highest`]) | O(1) |
//! | dh sh | 256 buckets ([`build_dh_table`], [`build_sh_table`]) + [`dh_pick`]/[`sh_pick`] | O(1); sh-fallback ≤ 256 probes |
//! | mh | 4093 slots ([`build_mh_table`]) + [`mh_pick`] | O(1) (one hsiphash); mh-fallback ≤ 4093 probes |
//! | lblc lblcr | [`LblcReference`], [`LblcrReference`] (state in caller-provided arrays); a miss takes wlc's [`tree`] | O(1) on a miss (O(n) to test lblc's overload) |
//! | twos | [`twos_pick`] with the random numbers passed in | O(n) |
//!
//! Everything here is `no_std`, allocation-free and (in the functions the data plane calls)
//! free of panicking indexing: tables are read with `.get()`.

mod count_rule;
mod fo_ovf;
mod hash;
mod lblc;
mod leastconn;
mod mh;
mod rr;
pub mod siphash;
pub mod tree;
mod twos;
mod wrr;

pub use count_rule::*;
pub use fo_ovf::*;
pub use hash::*;
pub use lblc::*;
pub use leastconn::*;
pub use mh::*;
pub use rr::*;
pub use twos::*;
pub use wrr::*;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

pub const SCHED_NONE: u8 = 0;
pub const SCHED_RR: u8 = 1;
pub const SCHED_WRR: u8 = 2;
pub const SCHED_LC: u8 = 3;
pub const SCHED_WLC: u8 = 4;
pub const SCHED_LBLC: u8 = 5;
pub const SCHED_LBLCR: u8 = 6;
pub const SCHED_DH: u8 = 7;
pub const SCHED_SH: u8 = 8;
pub const SCHED_SED: u8 = 9;
pub const SCHED_NQ: u8 = 10;
pub const SCHED_FO: u8 = 11;
pub const SCHED_OVF: u8 = 12;
pub const SCHED_MH: u8 = 13;
pub const SCHED_TWOS: u8 = 14;

/// Every IPVS scheduler name and its code.
pub const SCHED_NAMES: [(&str, u8); 14] = [
    ("rr", SCHED_RR),
    ("wrr", SCHED_WRR),
    ("lc", SCHED_LC),
    ("wlc", SCHED_WLC),
    ("lblc", SCHED_LBLC),
    ("lblcr", SCHED_LBLCR),
    ("dh", SCHED_DH),
    ("sh", SCHED_SH),
    ("sed", SCHED_SED),
    ("nq", SCHED_NQ),
    ("fo", SCHED_FO),
    ("ovf", SCHED_OVF),
    ("mh", SCHED_MH),
    ("twos", SCHED_TWOS),
];

pub fn sched_from_name(name: &str) -> Option<u8> {
    SCHED_NAMES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

pub fn sched_name(code: u8) -> &'static str {
    SCHED_NAMES.iter().find(|(_, c)| *c == code).map(|(n, _)| *n).unwrap_or("none")
}

/// What a scheduler needs to know of one dest, in the service's list order (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestView {
    pub id: u32,
    pub weight: i32,
    pub overloaded: bool,
}

impl DestView {
    /// IPVS never picks a quiesced (weight 0) or overloaded dest for a new connection.
    #[inline(always)]
    pub const fn eligible(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }
}


/// Everything a reference scheduler may look at of one dest (kernel `struct ip_vs_dest`), in the
/// service's list order (newest first). The table builders need only [`DestView`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestState {
    pub id: u32,
    /// Current weight (`-w`); 0 = quiesced.
    pub weight: i32,
    /// Last non-zero weight the dest had (kernel `last_weight`, used by mh only): set on add and
    /// on every edit to a non-zero weight; an edit to 0 keeps the old value; a dest added with
    /// weight 0 has 0.
    pub last_weight: i32,
    /// `IP_VS_DEST_F_OVERLOAD` (u-threshold reached).
    pub overloaded: bool,
    /// `IP_VS_DEST_F_AVAILABLE`: false once the dest was deleted (still referenced by caches).
    pub available: bool,
    /// ActiveConn / InActConn (templates not counted).
    pub active: u32,
    pub inactive: u32,
    /// IPv4 address in host order, or for IPv6 the XOR of its four words (host order): what the
    /// kernel's hash functions use (`ntohl(addr_fold)`).
    pub addr_fold: u32,
    /// Real-server port, host order.
    pub port: u16,
}

impl DestState {
    /// A dest just added with weight `w`: available, no connections.
    pub const fn new(id: u32, weight: i32) -> Self {
        DestState {
            id,
            weight,
            last_weight: weight,
            overloaded: false,
            available: true,
            active: 0,
            inactive: 0,
            addr_fold: 0,
            port: 0,
        }
    }

    pub const fn view(&self) -> DestView {
        DestView { id: self.id, weight: self.weight, overloaded: self.overloaded }
    }

    /// `ip_vs_dest_conn_overhead`: active * 256 + inactive.
    #[inline(always)]
    pub const fn overhead(&self) -> i64 {
        ((self.active as i64) << 8) + self.inactive as i64
    }
}

/// Marker for "no dest" in the hash tables (an empty bucket, kernel NULL).
pub const NO_DEST: u32 = u32::MAX;

/// Kernel `gcd()` on positive ints.
pub(crate) const fn gcd(mut a: i32, mut b: i32) -> i32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}
