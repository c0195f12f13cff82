//! What `xlb_xdp` hands to the programs it tail-calls, so that a packet is parsed once and its
//! service looked up once: the parsed packet, the matched service, and (from the scheduling
//! programs to `xlb_fwd`) the connection just made. A per-CPU entry: a tail call runs on the
//! CPU of its caller, and an XDP run is not interleaved with another on its CPU (in NAPI, in
//! BPF_PROG_TEST_RUN with preemption off). Pinned (`XLB_HANDOFF`) like the program array: the
//! programs a tail call reaches may come from another load of the object than the caller (each
//! `lbd attach` loads it), and caller and callee must see the same entry.
use lb_common::Service;

use crate::{
    maps::XLB_HANDOFF,
    parse::{Pkt, ETH_HLEN, IPV4_HLEN},
};

pub struct Handoff {
    pub pkt: Pkt,
    /// A copy of the matched service (the map value may be replaced meanwhile; the copy is what
    /// this packet matched).
    pub svc: Service,
    /// The matched service key's port (0: an "all ports" or fwmark service).
    pub port: u16,
    /// The matched fwmark (0: an address service).
    pub fwmark: u32,
    /// The connection table held an expired entry under the packet's key.
    pub stale: bool,
    /// The time `xlb_xdp` read (coarse monotonic ns): one clock read per packet.
    pub now: u64,
    /// Set by the scheduling programs for `xlb_fwd`: the new connection's real server and its
    /// port.
    pub dest_id: u32,
    pub rport: u16,
}

/// This CPU's hand-off entry.
#[inline(always)]
pub fn get() -> Option<&'static mut Handoff> {
    let h = XLB_HANDOFF.get_ptr_mut(0)?;
    // SAFETY: this CPU's value of a per-CPU array (never freed), valid for the program run; one
    // program runs on a CPU at a time and each takes the entry once.
    Some(unsafe { &mut *h })
}

/// The packet as `xlb_xdp` parsed it. Its header offset is bounded again: the verifier knows
/// nothing of a number read from a map.
#[inline(always)]
pub fn pkt(h: &Handoff) -> Option<Pkt> {
    let p = h.pkt;
    if p.l4_off < ETH_HLEN + IPV4_HLEN || p.l4_off > ETH_HLEN + 60 {
        return None;
    }
    Some(p)
}

/// [`pkt`] for an IPv6 packet (`xlb_xdp6`'s): its transport header after the walked extension
/// headers.
#[inline(always)]
pub fn pkt6(h: &Handoff) -> Option<Pkt> {
    let p = h.pkt;
    if p.l4_off < lb_ebpf::parse6::L4_OFF_MIN || p.l4_off > lb_ebpf::parse6::L4_OFF_MAX {
        return None;
    }
    Some(p)
}
