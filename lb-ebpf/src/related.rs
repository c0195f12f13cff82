//! ICMP errors about tracked connections, sent on to the party that needs them (IPVS
//! `ip_vs_in_icmp` / `ip_vs_out_icmp`) by the connection's forwarding method.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{tunnel::TUN_TYPE_IPIP, ConnKey, CONN_KIND_IN, GATE_NAT_RS, CONN_KIND_OUT, FWD_DROUTE, FWD_MASQ, FWD_TUNNEL};

use crate::{
    conn::expired,
    csum, dr,
    maps::XLB_CONNS,
    nat,
    parse::{IcmpErr, ETH_HLEN},
    schedule::usable_dest,
    stats::bump,
    tun,
    xmit::Target,
};

/// The ICMP message's checksum is valid (IPVS drops related ICMP with a bad one).
#[inline(always)]
fn checksum_ok(ctx: &XdpContext, e: &IcmpErr) -> bool {
    let len = e.ip_len as usize - (e.icmp_off - ETH_HLEN);
    match csum::sum_bytes(ctx.data() + e.icmp_off, ctx.data_end(), len) {
        Some(s) => csum::fold(s) == 0xffff,
        None => false,
    }
}

/// An ICMP error about a tracked connection: to the real server (an error about a reply the
/// client got, arriving at the VIP) or to the client (an error a NAT real server sent). `None`
/// when it is about no connection: the kernel handles it.
#[inline(always)]
pub fn forward(ctx: &XdpContext, e: &IcmpErr, ingress: u32, now: u64) -> Option<u32> {
    let q = &e.inner;
    // The quoted packet went from the VIP to the client: reverse it to the client-side key.
    let in_key = ConnKey {
        caddr: q.daddr.w[0],
        vaddr: q.saddr.w[0],
        cport: q.dport,
        vport: q.sport,
        proto: q.proto,
        kind: CONN_KIND_IN,
        _pad: 0,
    };
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    if let Some(c) = unsafe { XLB_CONNS.get(&in_key) } {
        if expired(c, now) {
            return None;
        }
        if !checksum_ok(ctx, e) {
            return Some(xdp_action::XDP_DROP);
        }
        let (rip, fwd, tun_type) = usable_dest(c.dest_id, c.svc_id, |d| (d.addr.w[0], d.fwd, tun::tun_kind(d)))?;
        if e.ttl <= 1 {
            return Some(xdp_action::XDP_DROP);
        }
        bump(|g| &mut g.icmp_related);
        let t = Target { dest_id: c.dest_id, rip, ingress, now };
        return Some(match fwd {
            FWD_DROUTE => dr::forward(ctx, &t),
            FWD_TUNNEL if tun_type != TUN_TYPE_IPIP => tun::forward_other(ctx, &t, tun_type),
            FWD_TUNNEL => tun::forward(ctx, &t, e.ip_len, e.ttl, e.daddr.w[0]),
            FWD_MASQ => nat::icmp_to_real_server(ctx, e, &t, c.port),
            _ => xdp_action::XDP_PASS,
        });
    }
    if crate::gate::bits(q.daddr.w[0]) & GATE_NAT_RS == 0 {
        return None;
    }
    // From a NAT real server about a packet it got from the client: the reply-side key.
    let out_key = ConnKey {
        caddr: q.saddr.w[0],
        vaddr: q.daddr.w[0],
        cport: q.sport,
        vport: q.dport,
        proto: q.proto,
        kind: CONN_KIND_OUT,
        _pad: 0,
    };
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    let o = unsafe { XLB_CONNS.get(&out_key) }?;
    let vip = o.timeout;
    if !checksum_ok(ctx, e) {
        return Some(xdp_action::XDP_DROP);
    }
    if e.ttl <= 1 {
        return Some(xdp_action::XDP_DROP);
    }
    bump(|g| &mut g.icmp_related);
    Some(nat::icmp_to_client(ctx, e, &nat::Virtual { vip, vport: o.port, ingress, now }))
}
