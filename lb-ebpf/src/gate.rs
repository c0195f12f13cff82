//! "Could this packet be for a service?", asked first of every TCP/UDP packet with one array
//! element (see `lb_common::GATE_SLOTS_LOG2`): a packet whose addresses hash to clear bits goes
//! to the kernel before any hash lookup, checksum or tail call.
use lb_common::{gate_pos, gate_slot, gate_slot6, Addr, GATE_FWMARK, GATE_NAT_RS, GATE_VIP};

use crate::maps::XLB_GATE;

/// The gate bits (`lb_common::GATE_*`) of IPv4 address `addr` (network order).
#[inline(always)]
pub fn bits(addr: u32) -> u64 {
    let (word, shift) = gate_pos(gate_slot(addr));
    XLB_GATE.get(word).map_or(0, |w| (*w >> shift) & 0xf)
}

/// [`ask`]: the destination may be a service's (an address service's or a fwmark rule's).
pub const TO_SERVICE: u8 = 1;
/// [`ask`]: the source may be a NAT real server (the packet a reply).
pub const FROM_NAT_RS: u8 = 2;

/// The gate's answer for a packet from `saddr` to `daddr`: [`TO_SERVICE`] and/or
/// [`FROM_NAT_RS`], 0 when it is for no service.
#[inline(always)]
pub fn ask(saddr: u32, daddr: u32) -> u8 {
    let to = if bits(daddr) & (GATE_VIP | GATE_FWMARK) != 0 { TO_SERVICE } else { 0 };
    let from = if bits(saddr) & GATE_NAT_RS != 0 { FROM_NAT_RS } else { 0 };
    to | from
}

/// The gate bits of IPv6 address `a` (`lb_common::gate_slot6`).
#[inline(always)]
pub fn bits6(a: &Addr) -> u64 {
    let (word, shift) = gate_pos(gate_slot6(&a.w));
    XLB_GATE.get(word).map_or(0, |w| (*w >> shift) & 0xf)
}

/// [`ask`] for an IPv6 packet.
#[inline(always)]
pub fn ask6(saddr: &Addr, daddr: &Addr) -> u8 {
    let to = if bits6(daddr) & (GATE_VIP | GATE_FWMARK) != 0 { TO_SERVICE } else { 0 };
    let from = if bits6(saddr) & GATE_NAT_RS != 0 { FROM_NAT_RS } else { 0 };
    to | from
}
