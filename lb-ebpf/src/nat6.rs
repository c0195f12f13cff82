//! Masquerading for IPv6 (NAT66): requests get the real server's address and port as
//! destination, replies (matched by their reply-side entry in `XLB_CONNS6`) get the VIP and
//! virtual port back as source. IPv6 has no header checksum: only the TCP/UDP checksum is
//! updated, incrementally, for the pseudo-header's address and the port (a UDP datagram without
//! checksum never gets here: the parser refuses it, as the kernel does).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{tcp_state::DIR_OUTPUT, Addr, ConnKey6, CONN_F_NOOUTPUT, CONN_KIND_IN, CONN_KIND_OUT, IPPROTO_TCP, IPPROTO_UDP};

use crate::{
    conn::{self, expired},
    conn6, csum,
    dr6::decrease_hop_limit,
    maps::XLB_CONNS6,
    nexthop,
    parse::{header, Pkt, ETH_HLEN},
    parse6::{IcmpErr6, IP6_DADDR, IP6_SADDR},
    schedule::usable_dest,
    stats::{self, bump},
    xmit::{self, Target6},
};

/// Rewrites the IPv6 address at `ETH_HLEN + field`; returns the old one.
#[inline(always)]
fn set_addr(data: usize, end: usize, field: usize, new: &Addr) -> Option<Addr> {
    set_addr_at(data, end, ETH_HLEN + field, new)
}

/// Rewrites the IPv6 address at `off`; returns the old one.
#[inline(always)]
fn set_addr_at(data: usize, end: usize, off: usize, new: &Addr) -> Option<Addr> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let a = unsafe { &mut *header::<[u32; 4]>(data, end, off)? };
    let old = Addr::v6(*a);
    *a = new.w;
    Some(old)
}

/// A checksum after an IPv6 address it covers changed from `old` to `new`.
#[inline(always)]
fn update_addr(mut check: u16, old: &Addr, new: &Addr) -> u16 {
    for i in 0..4 {
        check = csum::update32(check, old.w[i], new.w[i]);
    }
    check
}

/// Updates the ICMPv6 checksum of error `e` for an outer address change `outer -> new` (the
/// pseudo-header's), a quoted one `quoted -> new` and a quoted port change.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn icmp_check_update(
    data: usize,
    end: usize,
    e: &IcmpErr6,
    outer: &Addr,
    quoted: &Addr,
    new: &Addr,
    old_port: u16,
    new_port: u16,
) -> Option<()> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let c = unsafe { &mut *header::<[u8; 4]>(data, end, e.icmp_off)? };
    let mut check = u16::from_ne_bytes([c[2], c[3]]);
    check = update_addr(check, outer, new);
    check = update_addr(check, quoted, new);
    check = csum::update16(check, old_port, new_port);
    let b = check.to_ne_bytes();
    c[2] = b[0];
    c[3] = b[1];
    Some(())
}

/// Rewrites one side of the packet quoted by `e` (address field `addr_field` of the quoted
/// IPv6 header, port `port_field` of its transport header); returns the old address and port.
#[inline(always)]
fn rewrite_quote(data: usize, end: usize, e: &IcmpErr6, addr_field: usize, port_field: usize, addr: &Addr, port: u16) -> Option<(Addr, u16)> {
    let old = set_addr_at(data, end, e.ip_off + addr_field, addr)?;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ports = unsafe { &mut *header::<[u8; 4]>(data, end, e.l4_off)? };
    let old_port = u16::from_ne_bytes([ports[port_field], ports[port_field + 1]]);
    let np = port.to_ne_bytes();
    ports[port_field] = np[0];
    ports[port_field + 1] = np[1];
    Some((old, old_port))
}

/// An ICMPv6 error about a reply of NAT connection (it quotes VIP -> client), arriving at the
/// VIP: to the real server, with the outer destination and the quoted source rewritten.
#[inline(always)]
pub fn icmp_to_real_server(ctx: &XdpContext, e: &IcmpErr6, t: &Target6, rport: u16) -> u32 {
    let ingress = t.ingress;
    let n = nexthop::to_dest6(ctx, t.dest_id, &t.rip, ingress, false, t.now);
    if !xmit::routable6(n) {
        return xmit::send6(ctx, n, ingress, 0);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(outer) = set_addr(data, end, IP6_DADDR, &t.rip) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some((quoted, old_port)) = rewrite_quote(data, end, e, IP6_SADDR, 0, &t.rip, rport) else {
        return xdp_action::XDP_ABORTED;
    };
    if icmp_check_update(data, end, e, &outer, &quoted, &t.rip, old_port, rport).is_none() || !decrease_hop_limit(data, end) {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send6(ctx, n, ingress, 0)
}

/// An ICMPv6 error a NAT real server sent about a client's packet (it quotes client -> RIP): to
/// the client, from the VIP, quoting the packet as the client sent it (to VIP:vport).
#[inline(always)]
pub fn icmp_to_client(ctx: &XdpContext, e: &IcmpErr6, vip: &Addr, vport: u16, ingress: u32, now: u64) -> u32 {
    // The error goes where it was sent: the client (the quoted packet's source).
    let Some(client) = crate::parse6::addr_at(ctx.data(), ctx.data_end(), ETH_HLEN + IP6_DADDR) else {
        return xdp_action::XDP_ABORTED;
    };
    let n = nexthop::to_addr6(ctx, &client, ingress, now);
    if !xmit::routable6(n) {
        return xmit::send6(ctx, n, ingress, 0);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(outer) = set_addr(data, end, IP6_SADDR, vip) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some((quoted, old_port)) = rewrite_quote(data, end, e, IP6_DADDR, 2, vip, vport) else {
        return xdp_action::XDP_ABORTED;
    };
    if icmp_check_update(data, end, e, &outer, &quoted, vip, old_port, vport).is_none() || !decrease_hop_limit(data, end) {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send6(ctx, n, ingress, 0)
}

/// Rewrites the port at `l4_off + port_field` (0 source, 2 destination) and updates the TCP/UDP
/// checksum for it and for the pseudo-header's address change `old -> new`.
#[inline(always)]
fn set_l4(data: usize, end: usize, p: &Pkt, port_field: usize, new_port: u16, old: &Addr, new: &Addr) -> Option<()> {
    let l4_off = p.l4_off;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ports = unsafe { &mut *header::<[u8; 4]>(data, end, l4_off)? };
    let old_port = u16::from_ne_bytes([ports[port_field], ports[port_field + 1]]);
    let np = new_port.to_ne_bytes();
    ports[port_field] = np[0];
    ports[port_field + 1] = np[1];
    let check_off = if p.proto == IPPROTO_TCP { 16 } else { 6 };
    // SAFETY: as above.
    let c = unsafe { &mut *header::<[u8; 2]>(data, end, l4_off + check_off)? };
    let mut check = u16::from_ne_bytes(*c);
    for i in 0..4 {
        check = csum::update32(check, old.w[i], new.w[i]);
    }
    check = csum::update16(check, old_port, new_port);
    if p.proto == IPPROTO_UDP && check == 0 {
        check = 0xffff;
    }
    *c = check.to_ne_bytes();
    Some(())
}

/// A client's packet to a NAT real server: destination := real server address and `rport`.
#[inline(always)]
pub fn request(ctx: &XdpContext, p: &Pkt, t: &Target6, rport: u16) -> u32 {
    let ingress = t.ingress;
    let n = nexthop::to_dest6(ctx, t.dest_id, &t.rip, ingress, false, t.now);
    if !xmit::routable6(n) {
        return xmit::send6(ctx, n, ingress, 0);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(old) = set_addr(data, end, IP6_DADDR, &t.rip) else {
        return xdp_action::XDP_ABORTED;
    };
    if set_l4(data, end, p, 2, rport, &old, &t.rip).is_none() || !decrease_hop_limit(data, end) {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send6(ctx, n, ingress, 0)
}

/// A packet that matched no client-side connection may be a NAT real server's reply: its
/// reply-side entry names the connection, whose client-side entry carries the state.
#[inline(always)]
pub fn reply(ctx: &XdpContext, p: &Pkt, ingress: u32, now: u64) -> Option<u32> {
    let out_key =
        ConnKey6 { caddr: p.daddr, vaddr: p.saddr, cport: p.dport, vport: p.sport, proto: p.proto, kind: CONN_KIND_OUT, _pad: 0 };
    // SAFETY: a hash map value stays valid until the program returns (RCU); read at once.
    let o = unsafe { XLB_CONNS6.get(&out_key) }?;
    let (vip, vport, dest_id) = (o.vip, o.c.port, o.c.dest_id);
    let in_key = ConnKey6 { caddr: p.daddr, vaddr: vip, cport: p.dport, vport, proto: p.proto, kind: CONN_KIND_IN, _pad: 0 };
    let c = conn6::get6(&in_key)?;
    // SAFETY: a value of XLB_CONNS6 from a successful lookup: valid until the program returns
    // (RCU); updated with plain stores as the IPv4 table's.
    let c = unsafe { &mut *c };
    if expired(c, now) || c.dest_id != dest_id {
        return None;
    }
    usable_dest(c.dest_id, c.svc_id, |_| ())?;
    c.flags &= !CONN_F_NOOUTPUT;
    conn::on_packet_dir(c, p, now, DIR_OUTPUT);
    stats::count_out(c.svc_id, c.dest_id, p.ip_len);
    if p.ttl <= 1 {
        return Some(xdp_action::XDP_DROP);
    }
    let n = nexthop::to_addr6(ctx, &p.daddr, ingress, now);
    if !xmit::routable6(n) {
        return Some(xmit::send6(ctx, n, ingress, 0));
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let old = set_addr(data, end, IP6_SADDR, &vip)?;
    set_l4(data, end, p, 0, vport, &old, &vip)?;
    if !decrease_hop_limit(data, end) {
        return Some(xdp_action::XDP_ABORTED);
    }
    bump(|g| &mut g.nat_reply);
    Some(xmit::send6(ctx, n, ingress, 0))
}

/// The reply-side entry of a new NAT connection: (client, RIP:rport) -> the virtual side.
#[inline(always)]
pub fn reply_key6(p: &Pkt, rip: &Addr, rport: u16) -> ConnKey6 {
    conn6::key_in6(p).reply_side(*rip, rport)
}
