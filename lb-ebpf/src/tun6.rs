//! Tunnelling for IPv6 services (`-i`), as IPVS's `ip_vs_tunnel_xmit_v6` for an IPv6 real server
//! (IPv6-in-IPv6: next header 41, or GUE / GRE) and `ip_vs_tunnel_xmit` for an IPv4 one (the
//! mixed families IPVS allows for tunnels only). The next hop is looked up and the frame sent
//! here; the headers are written by [`xlb_tun_encap6`], a global BPF function the verifier checks
//! once (`encap` does the writing, tun's `check_mtu` the PMTU check: ICMPv6 Packet Too Big).
use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    programs::XdpContext,
};
use lb_common::{tunnel::flow_hash, AF_INET, AF_INET6, NEIGH_F_RESOLVED};

use crate::{
    dr6::decrease_hop_limit,
    encap::{self, Inner, Outer},
    icmp6,
    maps::{XLB_DESTS, XLB_DEST_NEIGH},
    nexthop::{self, Route},
    parse::{header, Pkt, ETH_HLEN},
    parse6::IPV6_HLEN,
    tun::{check_mtu, source_or, Mtu, ENCAPSULATED},
    xmit::{self, Target6},
};

/// Sends the IPv6 packet `p` (hop limit > 1) through the tunnel of dest `t.dest_id`, whose
/// family is `dest_af`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, p: &Pkt, t: &Target6, dest_af: u8) -> u32 {
    forward_with(ctx, p, t, dest_af, answer)
}

/// [`forward`] for an ICMPv6 error about a connection: one that no longer fits the tunnel is
/// dropped, not answered (IPVS's `ensure_mtu_is_adequate` sends no Packet Too Big about ICMP).
/// (Also what keeps `xlb_icmp6`'s stack within the limit: the error builder is not called.)
#[inline(always)]
pub fn forward_related(ctx: &XdpContext, p: &Pkt, t: &Target6, dest_af: u8) -> u32 {
    forward_with(ctx, p, t, dest_af, |_, v| if v & TOO_BIG != 0 { xdp_action::XDP_DROP } else { v })
}

#[inline(always)]
fn forward_with(ctx: &XdpContext, p: &Pkt, t: &Target6, dest_af: u8, answer: impl Fn(&XdpContext, u32) -> u32) -> u32 {
    let hash = flow_hash(&p.saddr.w, &p.daddr.w, p.sport, p.dport, p.proto);
    if dest_af == AF_INET6 {
        // The answer is cached in XLB_DEST_NEIGH, where xlb_tun_encap6 reads its source and MTU.
        let n = nexthop::to_dest6(ctx, t.dest_id, &t.rip, t.ingress, true, t.now);
        if !xmit::routable6(n) {
            return xmit::send6(ctx, n, t.ingress, 0);
        }
        // (The slow path's next hop: the one cached for the real server, dest id + 1.)
        match xlb_tun_encap6(ctx.ctx, t.dest_id, hash) {
            ENCAPSULATED => xmit::send6(ctx, n, t.ingress, t.dest_id + 1),
            v => answer(ctx, v),
        }
    } else {
        let route = nexthop::to_dest(ctx, t.dest_id, t.rip.w[0], t.ingress, true, t.now);
        if matches!(route, Route::None) {
            return xmit::send(ctx, &route, t.ingress);
        }
        match xlb_tun_encap6(ctx.ctx, t.dest_id, hash) {
            ENCAPSULATED => xmit::send(ctx, &route, t.ingress),
            v => answer(ctx, v),
        }
    }
}

/// What [`xlb_tun_encap6`] returns for a packet too big for the tunnel, the MTU in the low bits.
const TOO_BIG: u32 = 0x8000_0000;

/// A packet [`xlb_tun_encap6`] did not wrap: ICMPv6 Packet Too Big (from here, not from within
/// it: the two functions' frames are not stacked), or its verdict.
#[inline(always)]
fn answer(ctx: &XdpContext, v: u32) -> u32 {
    if v & TOO_BIG != 0 { icmp6::packet_too_big(ctx, v & 0xffff) } else { v }
}

/// Wraps the IPv6 packet in the frame (hop limit > 1, checked by the caller) in the tunnel of
/// dest `dest_id` (IPIP, GUE or GRE; outer IPv4 or IPv6 as the dest's family), from the source
/// address the caller's next-hop lookup cached (or the VIP, over IPv6, when none is known), GUE's
/// source port from `hash`: [`ENCAPSULATED`], [`TOO_BIG`] with the MTU to answer, or the verdict
/// for a packet not to be sent. A global BPF function: checked once, with only its arguments
/// known.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_tun_encap6(ctx: *mut xdp_md, dest_id: u32, hash: u32) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let Some(d) = XLB_DESTS.get(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    let (outer_af, tun_type, tun_port, tun_flags) = (d.af, d.tun_type, d.tun_port, d.tun_flags);
    let Some(n) = XLB_DEST_NEIGH.get(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    // The route's MTU (0: unknown, the slow path's).
    let mtu = if n.flags & NEIGH_F_RESOLVED != 0 { n.mtu } else { 0 };
    let Some(ip) = header::<[u8; 8]>(ctx.data(), ctx.data_end(), ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ip = unsafe { *ip };
    let len = IPV6_HLEN + u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let (tclass, hop) = ((ip[0] << 4) | (ip[1] >> 4), ip[7]);
    if hop <= 1 || ETH_HLEN + len > ctx.data_end() - ctx.data() {
        return xdp_action::XDP_DROP;
    }
    match check_mtu(mtu, outer_af, AF_INET6, false, len as u32, tun_type, tun_flags) {
        Mtu::Fits => {}
        Mtu::TooBig(m) => return TOO_BIG | (m & 0xffff),
        Mtu::Drop => return xdp_action::XDP_DROP,
    }
    // With no source address known, the VIP the client addressed, over IPv6 (none over IPv4:
    // `nexthop::to_dest` falls back to the interface's address).
    let vip = if outer_af == AF_INET6 { crate::parse::read::<[u32; 4]>(ctx.data(), ctx.data_end(), ETH_HLEN + 24) } else { None };
    let Some(src) = source_or(&n.src, vip) else {
        return xdp_action::XDP_DROP;
    };
    if !decrease_hop_limit(ctx.data(), ctx.data_end()) {
        return xdp_action::XDP_DROP;
    }
    let outer_af = if outer_af == AF_INET6 { AF_INET6 } else { AF_INET };
    let outer = Outer { af: outer_af, src, dst: &d.addr, tun_type, tun_port, tun_flags };
    let inner = Inner { af: AF_INET6, len: len as u16, hop: hop - 1, tos: tclass, df: false, id: [0, 0], hash };
    if !encap::encap(ctx, &outer, &inner) {
        return xdp_action::XDP_DROP;
    }
    ENCAPSULATED
}
