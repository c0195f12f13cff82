//! Direct routing for IPv6: the frame goes to the real server's MAC with the packet unchanged
//! but for the hop limit (no header checksum in IPv6).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::{
    nexthop,
    parse::{header, ETH_HLEN},
    parse6::IP6_HOP,
    xmit::{self, Target6},
};

/// Decrements the hop limit of the IPv6 header after the Ethernet header. The caller has
/// checked it is > 1.
#[inline(always)]
pub fn decrease_hop_limit(data: usize, data_end: usize) -> bool {
    let Some(h) = header::<u8>(data, data_end, ETH_HLEN + IP6_HOP) else {
        return false;
    };
    // SAFETY: `header` checked the byte is in the frame, which is not moved while this lives.
    unsafe { *h -= 1 };
    true
}

#[inline(always)]
pub fn forward(ctx: &XdpContext, t: &Target6) -> u32 {
    let ingress = t.ingress;
    let n = nexthop::to_dest6(ctx, t.dest_id, &t.rip, ingress, false, t.now);
    if xmit::routable6(n) && !decrease_hop_limit(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_ABORTED;
    }
    // The destination is the VIP: the slow path is told the real server's next hop by its id.
    xmit::send6(ctx, n, ingress, t.dest_id + 1)
}
