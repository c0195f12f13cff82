//! ICMPv6 errors about tracked IPv6 connections (IPVS `ip_vs_in_icmp_v6` / `ip_vs_out_icmp_v6`),
//! as related.rs does for IPv4: an error about a reply the client got, arriving at the VIP, goes
//! to the connection's real server by its method (DR: MACs; TUN: encapsulated; NAT: outer
//! destination and the quote's source rewritten); an error a NAT real server sent about a packet
//! of the client goes to the client from the VIP, quoting what the client sent.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Addr, ConnKey6, TailProgram, AF_INET6, CONN_KIND_IN, CONN_KIND_OUT, FWD_DROUTE, FWD_MASQ, FWD_TUNNEL, GATE_NAT_RS, IPPROTO_ICMPV6};

use crate::{
    conn::expired,
    conn6, csum, dr6, gate,
    maps::XLB_CONNS6,
    nat6,
    parse::{Pkt, ETH_HLEN},
    parse6::{addr_at, IcmpErr6, IP6_DADDR, IP6_SADDR},
    schedule::usable_dest,
    stats::bump,
    tail, tun6,
    xmit::Target6,
};

/// The ICMPv6 checksum (over the pseudo-header and the whole message) is valid.
#[inline(always)]
fn checksum_ok(ctx: &XdpContext, e: &IcmpErr6) -> bool {
    let Some(s) = csum::sum_bytes(ctx.data() + e.icmp_off, ctx.data_end(), e.icmp_len) else {
        return false;
    };
    // The pseudo-header: both addresses (read from the packet as the message is), the length
    // and the next header, as 32-bit big-endian words in memory order.
    let Some(a) = csum::sum_bytes(ctx.data() + ETH_HLEN + IP6_SADDR, ctx.data_end(), 32) else {
        return false;
    };
    let len = (e.icmp_len as u32).to_be();
    let nh = (IPPROTO_ICMPV6 as u32).to_be();
    let words = (len & 0xffff) as u64 + (len >> 16) as u64 + (nh & 0xffff) as u64 + (nh >> 16) as u64;
    csum::fold(s + a + words) == 0xffff
}

/// Forwards ICMPv6 error `e` if it is about a tracked connection; `None` otherwise (the kernel
/// handles it).
#[inline(always)]
pub fn forward(ctx: &XdpContext, e: &IcmpErr6, ingress: u32, now: u64) -> Option<u32> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let (qs, qd) = (addr_at(data, end, e.ip_off + IP6_SADDR)?, addr_at(data, end, e.ip_off + IP6_DADDR)?);
    // The quoted packet went from the VIP to the client: reversed, the client-side key.
    let in_key = ConnKey6 { caddr: qd, vaddr: qs, cport: e.dport, vport: e.sport, proto: e.proto, kind: CONN_KIND_IN, _pad: 0 };
    if let Some(c) = conn6::get6(&in_key) {
        // SAFETY: a value of XLB_CONNS6 from a successful lookup, valid for the run; read at once.
        let c = unsafe { *c };
        if expired(&c, now) {
            return None;
        }
        if !checksum_ok(ctx, e) {
            return Some(xdp_action::XDP_DROP);
        }
        let (rip, fwd) = usable_dest(c.dest_id, c.svc_id, |d| (d.addr, d.fwd))?;
        if e.hop <= 1 {
            return Some(xdp_action::XDP_DROP);
        }
        bump(|g| &mut g.icmp_related);
        let t = Target6 { dest_id: c.dest_id, rip, ingress, now };
        return Some(match fwd {
            FWD_DROUTE => dr6::forward(ctx, &t),
            // In a program of its own (`forward_tunnel`): the tunnel's frame does not fit beside
            // this one's.
            FWD_TUNNEL => tail(ctx, TailProgram::Icmp6Tun),
            FWD_MASQ => nat6::icmp_to_real_server(ctx, e, &t, c.port),
            _ => xdp_action::XDP_PASS,
        });
    }
    if gate::bits6(&qd) & GATE_NAT_RS == 0 {
        return None;
    }
    // From a NAT real server about a packet it got from the client: the reply-side key.
    let out_key = ConnKey6 { caddr: qs, vaddr: qd, cport: e.sport, vport: e.dport, proto: e.proto, kind: CONN_KIND_OUT, _pad: 0 };
    // SAFETY: a hash map value stays valid until the program returns (RCU); read at once.
    let (vip, vport): (Addr, u16) = unsafe { XLB_CONNS6.get(&out_key) }.map(|o| (o.vip, o.c.port))?;
    if !checksum_ok(ctx, e) || e.hop <= 1 {
        return Some(xdp_action::XDP_DROP);
    }
    bump(|g| &mut g.icmp_related);
    Some(nat6::icmp_to_client(ctx, e, &vip, vport, ingress, now))
}

/// `xlb_icmp6_tun`: error `e` about a tunnelled connection, which [`forward`] found, checked and
/// counted, into its real server's tunnel.
#[inline(always)]
pub fn forward_tunnel(ctx: &XdpContext, e: &IcmpErr6, ingress: u32, now: u64) -> Option<u32> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let (qs, qd) = (addr_at(data, end, e.ip_off + IP6_SADDR)?, addr_at(data, end, e.ip_off + IP6_DADDR)?);
    let in_key = ConnKey6 { caddr: qd, vaddr: qs, cport: e.dport, vport: e.sport, proto: e.proto, kind: CONN_KIND_IN, _pad: 0 };
    let c = conn6::get6(&in_key)?;
    // SAFETY: a value of XLB_CONNS6 from a successful lookup, valid for the run; read at once.
    let (dest_id, svc_id) = unsafe { ((*c).dest_id, (*c).svc_id) };
    let (rip, af) = usable_dest(dest_id, svc_id, |d| (d.addr, d.af))?;
    let t = Target6 { dest_id, rip, ingress, now };
    Some(tun6::forward_related(ctx, &as_pkt(e, &qs), &t, af))
}

/// The error as the tunnel sees a packet: its length, hop limit and destination (the VIP, the
/// quoted packet's source: the error was sent there).
#[inline(always)]
fn as_pkt(e: &IcmpErr6, vip: &Addr) -> Pkt {
    Pkt {
        af: AF_INET6,
        proto: IPPROTO_ICMPV6,
        saddr: Addr::ZERO,
        daddr: *vip,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        ip_len: e.ip_len,
        ttl: e.hop,
        l4_off: e.icmp_off,
        gate: 0,
    }
}
