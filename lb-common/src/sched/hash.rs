//! dh and sh (`ip_vs_dh.c`, `ip_vs_sh.c`): 256-bucket tables of dest ids.
//!
//! Userspace builds the table on every add/edit/delete ([`build_dh_table`], [`build_sh_table`]);
//! a new connection costs one multiply and one table read ([`dh_pick`], [`sh_pick`]); only
//! sh-fallback may probe up to 256 more buckets (bounded loop) when the bucket's dest is
//! unusable. Availability (weight > 0, not overloaded, not deleted) is checked at pick time, as in
//! the kernel, through the `usable` callback (the data plane reads the dest's live state).
//! Buckets hold [`NO_DEST`] when the service has no dest.

use super::{DestView, NO_DEST};

pub const HASH_TAB_SIZE: usize = 256;
pub const HASH_TAB_MASK: u32 = 255;

/// Folds an address for hashing: IPv4 host-order value, or the XOR of the four words of an IPv6
/// address (then converted to host order), as `ntohl(addr_fold)` in the kernel. `words` are in
/// network byte order as they sit in the packet.
#[inline(always)]
pub const fn addr_fold(words: [u32; 4], v6: bool) -> u32 {
    if v6 {
        u32::from_be(words[0] ^ words[1] ^ words[2] ^ words[3])
    } else {
        u32::from_be(words[0])
    }
}

/// `hash_32(val, 8)` of include/linux/hash.h: `(val * GOLDEN_RATIO_32) >> (32 - 8)`.
#[inline(always)]
pub const fn hash_32_8(val: u32) -> u32 {
    val.wrapping_mul(0x61C88647) >> 24
}

/// dh bucket of a destination address (`ip_vs_dh_hashkey`): `hash_32(ntohl(fold), 8)`.
///
/// Older kernels (and the spec) used `(fold * 2654435761) & 255`; 6.1 uses `hash_32`, which the
/// kernel recordings confirm (tests/golden/sched/dh.json, sh.json).
#[inline(always)]
pub const fn dh_hash(fold: u32) -> u32 {
    hash_32_8(fold)
}

/// sh bucket (`ip_vs_sh_hashkey`): `(offset + hash_32(port + fold, 8)) & 255`, `port` in host
/// order (0 unless sh-port).
#[inline(always)]
pub const fn sh_hash(fold: u32, port: u16, offset: u32) -> u32 {
    offset.wrapping_add(hash_32_8((port as u32).wrapping_add(fold))) & HASH_TAB_MASK
}

/// dh table: buckets filled by cycling through the list, one bucket per dest (weights ignored).
pub fn build_dh_table(list: &[DestView], out: &mut [u32; HASH_TAB_SIZE]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = if list.is_empty() { NO_DEST } else { list[i % list.len()].id };
    }
}

/// sh table: cycling through the list, each dest takes `weight` consecutive buckets (a weight-0
/// dest still takes one) until the 256 are filled.
pub fn build_sh_table(list: &[DestView], out: &mut [u32; HASH_TAB_SIZE]) {
    let (mut p, mut count) = (0usize, 0i32);
    for b in out.iter_mut() {
        match list.get(p) {
            None => *b = NO_DEST,
            Some(d) => {
                *b = d.id;
                count += 1;
                if count >= d.weight {
                    p = (p + 1) % list.len();
                    count = 0;
                }
            }
        }
    }
}

/// dh pick: the bucket of the packet's destination address, if its dest is usable.
#[inline(always)]
pub fn dh_pick(table: &[u32], fold: u32, usable: impl Fn(u32) -> bool) -> Option<u32> {
    match table.get(dh_hash(fold) as usize) {
        Some(&id) if id != NO_DEST && usable(id) => Some(id),
        _ => None,
    }
}

/// sh pick (`ip_vs_sh_get` / `ip_vs_sh_get_fallback`): `fold` of the client address, `port` the
/// client's source port with sh-port (else 0). With `fallback`, an unusable dest makes it probe
/// buckets `sh_hash(fold, port, (ihash + k) % 256)` for k = 0..255, stopping at an empty one.
#[inline(always)]
pub fn sh_pick(table: &[u32], fold: u32, port: u16, fallback: bool, usable: impl Fn(u32) -> bool) -> Option<u32> {
    probe_pick(table, HASH_TAB_SIZE as u32, fallback, usable, |off| sh_hash(fold, port, off))
}

/// The lookup sh and mh share: the entry at `slot(0)` if usable; with `fallback`, entries
/// `slot((slot(0) + k) % size)` for k = 0..size−1 until a usable one, stopping at an empty one.
#[inline(always)]
pub(super) fn probe_pick(
    table: &[u32],
    size: u32,
    fallback: bool,
    usable: impl Fn(u32) -> bool,
    slot: impl Fn(u32) -> u32,
) -> Option<u32> {
    let ihash = slot(0);
    let id = *table.get(ihash as usize)?;
    if id == NO_DEST {
        return None;
    }
    if usable(id) {
        return Some(id);
    }
    if !fallback {
        return None;
    }
    for off in 0..size {
        let id = *table.get(slot((off + ihash) % size) as usize)?;
        if id == NO_DEST {
            return None;
        }
        if usable(id) {
            return Some(id);
        }
    }
    None
}
