//! Direct routing (`-g`, "Route"): the frame goes to the real server's MAC with the IP packet
//! unchanged but for the TTL (IPVS decrements it like a router).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use network_types::ip::Ipv4Hdr;

use crate::{
    csum,
    nexthop::{self, Route},
    parse::{header, ETH_HLEN},
    xmit::{self, Target},
};

/// IPv4 TTL decrement with the incremental header checksum update (as the kernel's
/// `ip_decrease_ttl`) on the IPv4 header at `ip_off`. The caller has checked TTL > 1.
#[inline(always)]
pub fn decrease_ttl(data: usize, data_end: usize, ip_off: usize) -> bool {
    let Some(ip) = header::<Ipv4Hdr>(data, data_end, ip_off) else {
        return false;
    };
    // SAFETY: `header` checked the IPv4 header is in the frame; nothing else points into it
    // meanwhile.
    unsafe {
        let check = csum::update16(
            u16::from_ne_bytes((*ip).check),
            u16::from_ne_bytes([(*ip).ttl, (*ip).proto]),
            u16::from_ne_bytes([(*ip).ttl - 1, (*ip).proto]),
        );
        (*ip).check = check.to_ne_bytes();
        (*ip).ttl -= 1;
    }
    true
}

#[inline(always)]
pub fn forward(ctx: &XdpContext, t: &Target) -> u32 {
    let ingress = t.ingress;
    let route = nexthop::to_dest(ctx, t.dest_id, t.rip, ingress, false, t.now);
    if matches!(route, Route::None) {
        return xmit::send(ctx, &route, ingress);
    }
    if !decrease_ttl(ctx.data(), ctx.data_end(), ETH_HLEN) {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send(ctx, &route, ingress)
}
