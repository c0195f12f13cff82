//! Tunnelling for IPv6 services (`-i`), as IPVS's `ip_vs_tunnel_xmit_v6` / `_xmit` for an IPv6
//! packet: to an IPv6 real server, IPv6-in-IPv6 (next header 41); to an IPv4 real server (mixed
//! families, tunnels only), IPv6-in-IPv4 (protocol 41). The inner hop limit is decremented
//! first (IPVS's `decrement_ttl`); the outer hop limit / TTL is the inner one after it, the
//! outer traffic class / TOS the inner one with ECN encapsulated (CE becomes ECT(0)), the flow
//! label 0; an IPv4 outer header has DF set (an IPv6 packet is never fragmented on the way).
//! The outer source is the route's (the FIB's answer with BPF_FIB_LOOKUP_SRC); without it, the
//! egress interface's first address of the family (lbd records them in `XLB_IFACES`), else,
//! for an IPv6 outer header, the VIP. A packet that
//! no longer fits the route's MTU once wrapped gets ICMPv6 Packet Too Big with the MTU less the
//! outer header (`leave6::packet_too_big`).
//!
//! Only plain IP-in-IP (`--tun-type ipip`): GUE and GRE encapsulation are the tunnel work's
//! (tun.rs); a GUE or GRE real server of an IPv6 service is not sent to here (dropped).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Addr, AF_INET6, IPPROTO_IPV6, NEIGH_F_RESOLVED};

use crate::{
    csum,
    dr6::decrease_hop_limit,
    leave6,
    maps::XLB_DESTS,
    nexthop::{self, Route},
    parse::{header, Pkt, ETH_HLEN, IPV4_HLEN},
    parse6::IPV6_HLEN,
    xmit::{self, Target6},
};

/// `Dest::tun_type` of plain IP-in-IP.
const TUN_TYPE_IPIP: u8 = 0;

/// RFC 6040 / the kernel's INET_ECN_encapsulate: copy ECN, except CE which becomes ECT(0).
#[inline(always)]
fn encap_tc(inner: u8) -> u8 {
    let ecn = inner & 3;
    (inner & !3) | if ecn == 3 { 2 } else { ecn }
}

/// The route's source address and MTU (0: unknown).
#[inline(always)]
fn src_mtu(route: &Route) -> (Addr, u32) {
    match route {
        // SAFETY: a Direct route points into a map value (the per-dest cache or this CPU's
        // scratch), valid for the run.
        Route::Direct(n) => unsafe { ((**n).src, (**n).mtu) },
        Route::Slow { src, .. } => (Addr::v4(*src), 0),
        Route::None => (Addr::ZERO, 0),
    }
}

/// Sends IPv6 packet `p` (hop limit > 1) to tunnel real server `t` of address family
/// `dest_af`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Pkt, t: &Target6, dest_af: u8) -> u32 {
    if XLB_DESTS.get(t.dest_id).is_none_or(|d| d.tun_type != TUN_TYPE_IPIP) {
        return xdp_action::XDP_DROP;
    }
    if dest_af == AF_INET6 { in_ipv6(ctx, p, t) } else { in_ipv4(ctx, p, t) }
}

/// The inner packet's traffic class, read before the frame moves.
#[inline(always)]
fn inner_tc(ctx: &XdpContext) -> Option<u8> {
    let h = header::<[u8; 2]>(ctx.data(), ctx.data_end(), ETH_HLEN)?;
    // SAFETY: `header` checked the bytes are in the frame; read at once.
    let h = unsafe { *h };
    Some((h[0] << 4) | (h[1] >> 4))
}

/// IPv6-in-IPv6 to an IPv6 real server.
#[inline(always)]
fn in_ipv6(ctx: &XdpContext, p: &Pkt, t: &Target6) -> u32 {
    let ingress = t.ingress;
    let n = nexthop::to_dest6(ctx, t.dest_id, &t.rip, ingress, true, t.now);
    let Some(nh) = n.filter(|_| xmit::routable6(n)) else {
        return xmit::send6(ctx, n, ingress, 0);
    };
    // SAFETY: the answer points into a map value (a cache entry or this CPU's scratch), valid
    // for the run. (The MTU is known for a resolved route only.)
    let (src, mtu) = unsafe { ((*nh).src, if (*nh).flags & NEIGH_F_RESOLVED != 0 { (*nh).mtu } else { 0 }) };
    // With no source address known (no FIB source, no global address on the egress), the VIP
    // the client addressed.
    let src = if src.w == [0; 4] { p.daddr } else { src };
    let inner_len = p.ip_len as u32;
    let outer_len = inner_len + IPV6_HLEN as u32;
    if mtu != 0 && outer_len > mtu {
        return leave6::packet_too_big(ctx, mtu - IPV6_HLEN as u32);
    }
    let Some(tc) = inner_tc(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    // (The payload length, the inner packet's, always fits its 16 bits.)
    if !decrease_hop_limit(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_DROP;
    }
    let hop = p.ttl - 1;
    // SAFETY: `ctx.ctx` is this program's xdp_md; no pointer into the frame is used after it moves
    // (they are taken again below).
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(IPV6_HLEN as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let Some(h) = header::<[u8; ETH_HLEN + IPV6_HLEN]>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *h };
    h[12] = 0x86;
    h[13] = 0xdd;
    const O: usize = ETH_HLEN;
    let tc = encap_tc(tc);
    h[O] = 0x60 | (tc >> 4);
    h[O + 1] = tc << 4;
    h[O + 2] = 0;
    h[O + 3] = 0;
    let plen = (inner_len as u16).to_be_bytes();
    h[O + 4] = plen[0];
    h[O + 5] = plen[1];
    h[O + 6] = IPPROTO_IPV6;
    h[O + 7] = hop;
    for i in 0..4 {
        let s = src.w[i].to_ne_bytes();
        let d = t.rip.w[i].to_ne_bytes();
        for j in 0..4 {
            h[O + 8 + 4 * i + j] = s[j];
            h[O + 24 + 4 * i + j] = d[j];
        }
    }
    xmit::send6(ctx, n, ingress, t.dest_id + 1)
}

/// IPv6-in-IPv4 to an IPv4 real server (mixed families).
#[inline(always)]
fn in_ipv4(ctx: &XdpContext, p: &Pkt, t: &Target6) -> u32 {
    let ingress = t.ingress;
    let rip = t.rip.w[0];
    let route = nexthop::to_dest(ctx, t.dest_id, rip, ingress, true, t.now);
    let (src, mtu) = src_mtu(&route);
    // An IPv4 outer header needs an IPv4 source: none known, no tunnel.
    if matches!(route, Route::None) || src.w[0] == 0 {
        return xmit::send(ctx, &Route::None, ingress);
    }
    let inner_len = p.ip_len as u32;
    let outer_len = inner_len + IPV4_HLEN as u32;
    if mtu != 0 && outer_len > mtu {
        return leave6::packet_too_big(ctx, mtu - IPV4_HLEN as u32);
    }
    let Some(tc) = inner_tc(ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    if outer_len > 0xffff || !decrease_hop_limit(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_DROP;
    }
    let hop = p.ttl - 1;
    // SAFETY: as in `in_ipv6`.
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(IPV4_HLEN as i32)) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let Some(h) = header::<[u8; ETH_HLEN + IPV4_HLEN]>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *h };
    h[12] = 0x08;
    h[13] = 0x00;
    const O: usize = ETH_HLEN;
    h[O] = 0x45;
    h[O + 1] = encap_tc(tc);
    let len = (outer_len as u16).to_be_bytes();
    h[O + 2] = len[0];
    h[O + 3] = len[1];
    // The id: the low bits of the inner flow's hash would do; fragments are forbidden (DF).
    h[O + 4] = 0;
    h[O + 5] = 0;
    h[O + 6] = 0x40;
    h[O + 7] = 0;
    h[O + 8] = hop;
    h[O + 9] = IPPROTO_IPV6;
    h[O + 10] = 0;
    h[O + 11] = 0;
    let (s, d) = (src.w[0].to_ne_bytes(), rip.to_ne_bytes());
    for j in 0..4 {
        h[O + 12 + j] = s[j];
        h[O + 16 + j] = d[j];
    }
    let check = csum::ipv4_header(h, O).to_ne_bytes();
    h[O + 10] = check[0];
    h[O + 11] = check[1];
    xmit::send(ctx, &route, ingress)
}
