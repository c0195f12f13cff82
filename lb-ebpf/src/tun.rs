//! IP tunnelling (`-i`, "Tunnel"): the packet is wrapped in an outer IPv4 header (protocol 4,
//! IPIP) addressed to the real server, sourced from the director's address on the route there,
//! and sent to the FIB's next hop. As IPVS: outer TTL = inner TTL after the decrement, outer TOS
//! = inner DSCP with ECN encapsulated (CE becomes ECT(0)), DF copied from the inner header
//! (pmtu_disc=1), and a DF packet that no longer fits the route MTU gets ICMP "fragmentation
//! needed" with the MTU reduced by the tunnel header.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::IPPROTO_IPIP;
use network_types::ip::Ipv4Hdr;

use crate::{
    csum,
    dr::decrease_ttl,
    icmp,
    nexthop::{self, Route},
    parse::{header, ETH_HLEN, IPV4_HLEN},
    xmit::{self, Target},
};

const IP_DF: u16 = 0x4000;

/// RFC 6040 / the kernel's INET_ECN_encapsulate: copy ECN, except CE which becomes ECT(0).
#[inline(always)]
fn encap_tos(inner: u8) -> u8 {
    let ecn = inner & 3;
    (inner & !3) | if ecn == 3 { 2 } else { ecn }
}

/// Encapsulates the IPv4 packet of `ip_len` bytes and TTL `ttl` (> 1) that was sent to `vip`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, t: &Target, ip_len: u16, ttl: u8, vip: u32) -> u32 {
    let (rip, ingress) = (t.rip, t.ingress);
    let route = nexthop::to_dest(ctx, t.dest_id, rip, ingress, true, t.now);
    // The route's source (from the FIB, or the egress interface's address: see nexthop).
    let (src, mtu) = match &route {
        // SAFETY: a Direct route points into a map value (the per-dest cache or this CPU's
        // scratch), valid for the run.
        Route::Direct(n) => unsafe { ((**n).src.w[0], (**n).mtu) },
        Route::Slow { src, .. } => (*src, 0),
        Route::None => return xmit::send(ctx, &route, ingress),
    };
    let Some(ip) = header::<Ipv4Hdr>(ctx.data(), ctx.data_end(), ETH_HLEN) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let (tos, id, frags) = unsafe { ((*ip).tos, (*ip).id, u16::from_be_bytes((*ip).frags)) };
    let df = frags & IP_DF != 0;
    let outer_len = ip_len as u32 + IPV4_HLEN as u32;
    if df && mtu != 0 && outer_len > mtu {
        return icmp::frag_needed(ctx, (mtu - IPV4_HLEN as u32) as u16);
    }
    if outer_len > 0xffff || !decrease_ttl(ctx.data(), ctx.data_end(), ETH_HLEN) {
        return xdp_action::XDP_DROP;
    }
    // With no address known, the VIP the client addressed is the source.
    let src = if src != 0 { src } else { vip };
    // SAFETY: `ctx.ctx` is this program's xdp_md; no pointer into the frame is used after it moves
    // (they are taken again below).
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(IPV4_HLEN as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let Some(hdrs) = header::<[u8; ETH_HLEN + IPV4_HLEN]>(data, data_end, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *hdrs };
    // Ethernet: addresses are filled by xmit; the type stays IPv4.
    h[12] = 0x08;
    h[13] = 0x00;
    const O: usize = ETH_HLEN;
    h[O] = 0x45;
    h[O + 1] = encap_tos(tos);
    let len = (outer_len as u16).to_be_bytes();
    h[O + 2] = len[0];
    h[O + 3] = len[1];
    // The inner datagram's id: deterministic per packet and unique enough (IPVS uses
    // ip_select_ident; receivers only need uniqueness for fragments, which DF forbids).
    h[O + 4] = id[0];
    h[O + 5] = id[1];
    h[O + 6] = if df { 0x40 } else { 0 };
    h[O + 7] = 0;
    h[O + 8] = ttl - 1;
    h[O + 9] = IPPROTO_IPIP;
    h[O + 10] = 0;
    h[O + 11] = 0;
    let s4 = src.to_ne_bytes();
    let d4 = rip.to_ne_bytes();
    for i in 0..4 {
        h[O + 12 + i] = s4[i];
        h[O + 16 + i] = d4[i];
    }
    let check = csum::ipv4_header(h, O).to_ne_bytes();
    h[O + 10] = check[0];
    h[O + 11] = check[1];
    xmit::send(ctx, &route, ingress)
}
