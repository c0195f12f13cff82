//! mh, Maglev hashing (`ip_vs_mh.c`): a 4093-slot lookup table of dest ids.
//!
//! Userspace builds the table on every add/edit/delete ([`build_mh_table`], O(M + n) work plus
//! probing). A new connection costs one [`hsiphash_1u32`] and one table read ([`mh_pick`]);
//! mh-fallback may probe up to M more slots (one hsiphash each) when the chosen dest is
//! unusable, a bounded loop that is expensive in BPF (≈ 4093 × ~40 instructions worst case).
//!
//! Table size M: the kernel's default CONFIG_IP_VS_MH_TAB_INDEX=12 selects primes[12 − 8] = 4093
//! (Debian kernels use the default).

use super::siphash::hsiphash_1u32;
use super::{gcd, DestState, NO_DEST};

pub const MH_TAB_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_BITS` = CONFIG_IP_VS_MH_TAB_INDEX / 2.
pub const MH_TAB_BITS: i32 = 6;
pub const MH_KEY1: [u64; 2] = [2654435761, 2654435761];
pub const MH_KEY2: [u64; 2] = [2654446892, 2654446892];

/// `ip_vs_mh_hashkey`: hsiphash of the u32 `offset + port + fold` (port in host order).
#[inline(always)]
pub fn mh_hash(fold: u32, port: u16, key: [u64; 2], offset: u32) -> u32 {
    hsiphash_1u32(offset.wrapping_add(port as u32).wrapping_add(fold), key)
}

/// Per-dest scratch of the table build (kernel `ip_vs_mh_dest_setup`); the caller provides one
/// per dest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MhSetup {
    pub offset: u32,
    pub skip: u32,
    pub perm: u32,
    pub turns: i32,
}

/// `(gcd, rshift)` over the dests' `last_weight` (`ip_vs_mh_gcd_weight`, `ip_vs_mh_shift_weight`).
pub fn mh_gcd_rshift(list: &[DestState]) -> (i32, i32) {
    let mut g = 0;
    let mut maxw = 0;
    for d in list {
        if d.last_weight > 0 {
            g = if g > 0 { gcd(d.last_weight, g) } else { d.last_weight };
        }
        if d.last_weight > maxw {
            maxw = d.last_weight;
        }
    }
    if g < 1 {
        return (g, 0);
    }
    let mw = maxw / g;
    let fls = 32 - (mw as u32).leading_zeros() as i32;
    (g, (fls - MH_TAB_BITS).max(0))
}

/// Builds the lookup table (`ip_vs_mh_permutate` + `ip_vs_mh_populate`). `setup` needs one entry
/// per dest. Returns false (table untouched) when `setup` is too small. With no dest of non-zero
/// `last_weight` every slot is [`NO_DEST`].
pub fn build_mh_table(list: &[DestState], out: &mut [u32; MH_TAB_SIZE], setup: &mut [MhSetup]) -> bool {
    if setup.len() < list.len() {
        return false;
    }
    out.iter_mut().for_each(|s| *s = NO_DEST);
    let (g, rshift) = mh_gcd_rshift(list);
    if g < 1 {
        return true;
    }
    let m = MH_TAB_SIZE as u32;
    for (d, ds) in list.iter().zip(setup.iter_mut()) {
        ds.offset = mh_hash(d.addr_fold, d.port, MH_KEY1, 0) % m;
        ds.skip = mh_hash(d.addr_fold, d.port, MH_KEY2, 0) % (m - 1) + 1;
        ds.perm = ds.offset;
        let lw = d.last_weight;
        let t = (lw / g) >> rshift;
        ds.turns = if t != 0 { t } else { (lw != 0) as i32 };
    }
    let mut n = 0usize;
    loop {
        // One round over the list; each dest with turns >= 1 claims `turns` free slots of its
        // permutation in a row.
        for (d, ds) in list.iter().zip(setup.iter_mut()) {
            if ds.turns < 1 {
                continue;
            }
            for _ in 0..ds.turns {
                let mut c = ds.perm;
                while out[c as usize] != NO_DEST {
                    ds.perm += ds.skip;
                    if ds.perm >= m {
                        ds.perm -= m;
                    }
                    c = ds.perm;
                }
                out[c as usize] = d.id;
                n += 1;
                if n == MH_TAB_SIZE {
                    return true;
                }
            }
        }
    }
}

/// mh pick (`ip_vs_mh_get` / `ip_vs_mh_get_fallback`): `fold` of the client address, `port` its
/// source port with mh-port (else 0). With `fallback`, an unusable dest makes it probe slots
/// `mh_hash(fold, port, KEY1, (ihash + k) % M) % M` for k = 0..M−1, stopping at an empty one.
#[inline(always)]
pub fn mh_pick(table: &[u32], fold: u32, port: u16, fallback: bool, usable: impl Fn(u32) -> bool) -> Option<u32> {
    let m = MH_TAB_SIZE as u32;
    super::hash::probe_pick(table, m, fallback, usable, |off| mh_hash(fold, port, MH_KEY1, off) % m)
}
