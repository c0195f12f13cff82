//! An IPv4 service's tunnel real server with an IPv6 address (mixed families, tunnels only):
//! the IPv4 packet goes in an IPv6 header (next header 4), as IPVS's `ip_vs_tunnel_xmit_v6`
//! wraps it. `xlb_xdp`/`xlb_fwd` hand such packets to `xlb_tun46` (a program of its own, so
//! the IPv4 path only pays the check of the real server's family on its tunnel arm). The inner
//! TTL is decremented (the caller checked it is > 1); the outer hop limit is the inner TTL after
//! it, the traffic class the inner TOS with ECN encapsulated, the flow label 0, the source the
//! route's (FIB) or the egress interface's first global IPv6 address. A DF packet that no
//! longer fits gets ICMP "fragmentation needed" with the MTU less the tunnel's overhead.
//!
//! Plain IP-in-IP only: GUE/GRE real servers of this kind are dropped (encap.rs's general
//! encapsulation can take this over).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Addr, AF_INET, AF_INET6, IPPROTO_IPIP, NEIGH_F_RESOLVED};
use network_types::ip::Ipv4Hdr;

use crate::{
    dr::decrease_ttl,
    encap::encap_tos,
    icmp,
    maps::XLB_DESTS,
    nexthop,
    parse::{header, Pkt, ETH_HLEN},
    parse6::IPV6_HLEN,
    tun::{self, Mtu},
    xmit,
};

const IP_DF: u16 = 0x4000;
/// `Dest::tun_type` of plain IP-in-IP.
const TUN_TYPE_IPIP: u8 = 0;

/// Whether dest `dest_id` is a tunnel real server with an IPv6 address (for `xlb_tun46`).
#[inline(always)]
pub fn v6_dest(af: u8) -> bool {
    af == AF_INET6
}

/// Wraps IPv4 packet `p` (TTL > 1) for real server `dest_id` in IPv6 and sends it.
#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Pkt, dest_id: u32, ingress: u32, now: u64) -> u32 {
    let Some(d) = XLB_DESTS.get(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    if d.tun_type != TUN_TYPE_IPIP || d.af != AF_INET6 {
        return xdp_action::XDP_DROP;
    }
    let rip = d.addr;
    let n = nexthop::to_dest6(ctx, dest_id, &rip, ingress, true, now);
    let Some(nh) = n.filter(|_| xmit::routable6(n)) else {
        return xmit::send6(ctx, n, ingress, 0);
    };
    // SAFETY: the answer points into a map value (a cache entry or this CPU's scratch), valid
    // for the run.
    let (src, mtu) = unsafe { ((*nh).src, if (*nh).flags & NEIGH_F_RESOLVED != 0 { (*nh).mtu } else { 0 }) };
    // An IPv6 outer header needs an IPv6 source (the VIP is IPv4): none known, no tunnel.
    if src.w == [0; 4] {
        return xmit::send6(ctx, None, ingress, 0);
    }
    let Some(ip) = header::<Ipv4Hdr>(ctx.data(), ctx.data_end(), ETH_HLEN) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let (tos, frags) = unsafe { ((*ip).tos, u16::from_be_bytes((*ip).frags)) };
    let df = frags & IP_DF != 0;
    match tun::check_mtu(mtu, AF_INET6, AF_INET, df, p.ip_len as u32, d.tun_type, d.tun_flags) {
        Mtu::Fits => {}
        Mtu::TooBig(m) => return icmp::frag_needed(ctx, m as u16),
        Mtu::Drop => return xdp_action::XDP_DROP,
    }
    if !decrease_ttl(ctx.data(), ctx.data_end(), ETH_HLEN) {
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
    let tc = encap_tos(tos);
    h[O] = 0x60 | (tc >> 4);
    h[O + 1] = tc << 4;
    h[O + 2] = 0;
    h[O + 3] = 0;
    let plen = p.ip_len.to_be_bytes();
    h[O + 4] = plen[0];
    h[O + 5] = plen[1];
    h[O + 6] = IPPROTO_IPIP;
    h[O + 7] = hop;
    write_addrs(h, &src, &rip);
    xmit::send6(ctx, n, ingress, dest_id + 1)
}

/// The outer source and destination, word by word.
#[inline(always)]
fn write_addrs(h: &mut [u8; ETH_HLEN + IPV6_HLEN], src: &Addr, dst: &Addr) {
    const O: usize = ETH_HLEN;
    for i in 0..4 {
        let s = src.w[i].to_ne_bytes();
        let d = dst.w[i].to_ne_bytes();
        for j in 0..4 {
            h[O + 8 + 4 * i + j] = s[j];
            h[O + 24 + 4 * i + j] = d[j];
        }
    }
}
