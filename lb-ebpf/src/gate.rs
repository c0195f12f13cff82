//! "Could this packet be for a service?", asked first of every TCP/UDP packet with one array
//! element (see `lb_common::GATE_SLOTS_LOG2`): a packet whose addresses hash to clear bits goes
//! to the kernel before any hash lookup, checksum or tail call.
use lb_common::{gate_pos, gate_slot};

use crate::maps::XLB_GATE;

/// The gate bits (`lb_common::GATE_*`) of IPv4 address `addr` (network order).
#[inline(always)]
pub fn bits(addr: u32) -> u64 {
    let (word, shift) = gate_pos(gate_slot(addr));
    XLB_GATE.get(word).map_or(0, |w| (*w >> shift) & 0xf)
}
