//! Masquerading (`-m`, "Masq"): requests get the real server's address and port as destination,
//! replies (matched by their reply-side connection entry) get the VIP and virtual port back as
//! source. Checksums are updated incrementally; a UDP datagram without checksum gets a computed
//! one, as IPVS does (a result of 0 is sent as 0xffff).
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    tcp_state::DIR_OUTPUT, Addr, ConnKey, CONN_F_NOOUTPUT, CONN_KIND_IN, CONN_KIND_OUT, IPPROTO_TCP,
    IPPROTO_UDP,
};

use crate::{
    conn::{self, expired},
    csum,
    dr::decrease_ttl,
    maps::XLB_CONNS,
    nexthop::{self, Route},
    parse::{header, IcmpErr, Pkt, ETH_HLEN},
    schedule::usable_dest,
    stats::{self, bump},
    xmit::{self, Target},
};

/// The virtual side of a NAT connection, for packets going back to its client.
pub struct Virtual {
    pub vip: u32,
    pub vport: u16,
    pub ingress: u32,
    pub now: u64,
}

const IP_SADDR: usize = 12;
const IP_DADDR: usize = 16;
const IP_CHECK: usize = 10;

/// Rewrites the IPv4 address at `ip_off + field` and the IP header checksum. Returns the old
/// address.
#[inline(always)]
fn set_ip_addr(data: usize, end: usize, ip_off: usize, field: usize, new: u32) -> Option<u32> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *header::<[u8; 20]>(data, end, ip_off)? };
    let old = u32::from_ne_bytes([h[field], h[field + 1], h[field + 2], h[field + 3]]);
    let check = csum::update32(u16::from_ne_bytes([h[IP_CHECK], h[IP_CHECK + 1]]), old, new).to_ne_bytes();
    h[IP_CHECK] = check[0];
    h[IP_CHECK + 1] = check[1];
    let n = new.to_ne_bytes();
    h[field..field + 4].copy_from_slice(&n);
    Some(old)
}

/// Rewrites the port at `l4_off + port_field` (0 source, 2 destination) and updates the TCP/UDP
/// checksum for it and for an address change `old_addr -> new_addr` of the pseudo-header.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn set_l4(
    data: usize,
    end: usize,
    l4_off: usize,
    proto: u8,
    port_field: usize,
    new_port: u16,
    old_addr: u32,
    new_addr: u32,
) -> Option<()> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ports = unsafe { &mut *header::<[u8; 4]>(data, end, l4_off)? };
    let old_port = u16::from_ne_bytes([ports[port_field], ports[port_field + 1]]);
    let np = new_port.to_ne_bytes();
    ports[port_field] = np[0];
    ports[port_field + 1] = np[1];
    let check_off = if proto == IPPROTO_TCP { 16 } else { 6 };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let c = unsafe { &mut *header::<[u8; 2]>(data, end, l4_off + check_off)? };
    let old = u16::from_ne_bytes(*c);
    if proto == IPPROTO_UDP && old == 0 {
        // No checksum: IPVS computes one. A datagram too long to sum here keeps none (still
        // valid IPv4) rather than being lost half-rewritten.
        let _ = udp_full_checksum(data, end, l4_off);
        return Some(());
    }
    let mut check = csum::update32(old, old_addr, new_addr);
    check = csum::update16(check, old_port, new_port);
    if proto == IPPROTO_UDP && check == 0 {
        check = 0xffff;
    }
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let c = unsafe { &mut *header::<[u8; 2]>(data, end, l4_off + check_off)? };
    *c = check.to_ne_bytes();
    Some(())
}

/// Computes a UDP checksum from scratch (after the addresses and ports were rewritten).
#[inline(always)]
fn udp_full_checksum(data: usize, end: usize, l4_off: usize) -> Option<()> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ip = unsafe { &*header::<[u8; 20]>(data, end, ETH_HLEN)? };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let udp = unsafe { &*header::<[u8; 8]>(data, end, l4_off)? };
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let mut s = 0u64;
    for i in 0..4 {
        s += u16::from_ne_bytes([ip[IP_SADDR + 2 * i], ip[IP_SADDR + 2 * i + 1]]) as u64;
    }
    s += (IPPROTO_UDP as u16).to_be() as u64;
    s += (len as u16).to_be() as u64;
    s += csum::sum_bytes(data + l4_off, end, len)?;
    let mut check = !csum::fold(s);
    if check == 0 {
        check = 0xffff;
    }
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let c = unsafe { &mut *header::<[u8; 2]>(data, end, l4_off + 6)? };
    *c = check.to_ne_bytes();
    Some(())
}

/// A client's packet to a NAT real server: destination := real server address and `rport`.
#[inline(always)]
pub fn request(ctx: &XdpContext, p: &Pkt, t: &Target, rport: u16) -> u32 {
    let (rip, ingress) = (t.rip, t.ingress);
    let route = nexthop::to_dest(ctx, t.dest_id, rip, ingress, false, t.now);
    if matches!(route, Route::None) {
        return xmit::send(ctx, &route, ingress);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(old) = set_ip_addr(data, end, ETH_HLEN, IP_DADDR, rip) else {
        return xdp_action::XDP_ABORTED;
    };
    if set_l4(data, end, p.l4_off, p.proto, 2, rport, old, rip).is_none() || !decrease_ttl(data, end, ETH_HLEN) {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send(ctx, &route, ingress)
}

/// A packet that matched no client-side connection may be a NAT real server's reply: its
/// reply-side entry names the service, its client-side entry carries the state.
#[inline(always)]
pub fn reply(ctx: &XdpContext, p: &Pkt, ingress: u32, now: u64) -> Option<u32> {
    let out_key = ConnKey {
        caddr: p.daddr.w[0],
        vaddr: p.saddr.w[0],
        cport: p.dport,
        vport: p.sport,
        proto: p.proto,
        kind: CONN_KIND_OUT,
        _pad: 0,
    };
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    let o = unsafe { XLB_CONNS.get(&out_key) }?;
    let vip = lb_common::Addr::v4(o.timeout);
    let in_key = ConnKey {
        caddr: p.daddr.w[0],
        vaddr: vip.w[0],
        cport: p.dport,
        vport: o.port,
        proto: p.proto,
        kind: CONN_KIND_IN,
        _pad: 0,
    };
    let c = XLB_CONNS.get_ptr_mut(&in_key)?;
    // SAFETY: a value of XLB_CONNS from a successful lookup: valid until the program returns (RCU);
    // updated with plain stores as in `established`.
    let c = unsafe { &mut *c };
    if expired(c, now) || c.dest_id != o.dest_id {
        return None;
    }
    usable_dest(c.dest_id, c.svc_id, |_| ())?;
    c.flags &= !CONN_F_NOOUTPUT;
    conn::on_packet_dir(c, p, now, DIR_OUTPUT);
    stats::count_out(c.svc_id, c.dest_id, p.ip_len);
    if p.ttl <= 1 {
        return Some(xdp_action::XDP_DROP);
    }
    let route = nexthop::to_addr(ctx, p.daddr.w[0], ingress, now);
    if matches!(route, Route::None) {
        return Some(xmit::send(ctx, &route, ingress));
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let old = set_ip_addr(data, end, ETH_HLEN, IP_SADDR, vip.w[0])?;
    set_l4(data, end, p.l4_off, p.proto, 0, o.port, old, vip.w[0])?;
    if !decrease_ttl(data, end, ETH_HLEN) {
        return Some(xdp_action::XDP_ABORTED);
    }
    bump(|g| &mut g.nat_reply);
    Some(xmit::send(ctx, &route, ingress))
}

/// Updates the ICMP checksum for a rewrite inside the quoted packet.
#[inline(always)]
fn icmp_check_update(data: usize, end: usize, icmp_off: usize, old: u32, new: u32, old16: u16, new16: u16) -> Option<()> {
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let c = unsafe { &mut *header::<[u8; 4]>(data, end, icmp_off)? };
    let mut check = csum::update32(u16::from_ne_bytes([c[2], c[3]]), old, new);
    check = csum::update16(check, old16, new16);
    let b = check.to_ne_bytes();
    c[2] = b[0];
    c[3] = b[1];
    Some(())
}

/// Rewrites one side (address field `addr_field` of the quoted IP header, port field
/// `port_field` of its transport header) of the packet quoted by ICMP error `e`, keeping the
/// quoted IP checksum and the ICMP checksum right.
#[inline(always)]
fn rewrite_quote(data: usize, end: usize, e: &IcmpErr, addr_field: usize, port_field: usize, addr: u32, port: u16) -> Option<()> {
    let q = &e.inner;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let qip = unsafe { &*header::<[u8; 20]>(data, end, q.ip_off)? };
    let old_qcheck = u16::from_ne_bytes([qip[IP_CHECK], qip[IP_CHECK + 1]]);
    let old_addr = set_ip_addr(data, end, q.ip_off, addr_field, addr)?;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let qip = unsafe { &*header::<[u8; 20]>(data, end, q.ip_off)? };
    let new_qcheck = u16::from_ne_bytes([qip[IP_CHECK], qip[IP_CHECK + 1]]);
    icmp_check_update(data, end, e.icmp_off, old_addr, addr, old_qcheck, new_qcheck)?;
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let ports = unsafe { &mut *header::<[u8; 4]>(data, end, q.l4_off)? };
    let old_port = u16::from_ne_bytes([ports[port_field], ports[port_field + 1]]);
    let np = port.to_ne_bytes();
    ports[port_field] = np[0];
    ports[port_field + 1] = np[1];
    icmp_check_update(data, end, e.icmp_off, 0, 0, old_port, port)
}

/// An ICMP error about a reply of NAT connection `c` (it quotes VIP -> client), arriving at the
/// VIP: to the real server, with the outer destination and the quoted source rewritten.
#[inline(always)]
pub fn icmp_to_real_server(ctx: &XdpContext, e: &IcmpErr, t: &Target, rport: u16) -> u32 {
    let (rip, ingress) = (t.rip, t.ingress);
    let route = nexthop::to_dest(ctx, t.dest_id, rip, ingress, false, t.now);
    if matches!(route, Route::None) {
        return xmit::send(ctx, &route, ingress);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if set_ip_addr(data, end, ETH_HLEN, IP_DADDR, rip).is_none()
        || rewrite_quote(data, end, e, IP_SADDR, 0, rip, rport).is_none()
        || !decrease_ttl(data, end, ETH_HLEN)
    {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send(ctx, &route, ingress)
}

/// An ICMP error a NAT real server sent about a client's packet (it quotes client -> RIP): to
/// the client, from the VIP, quoting the packet as the client sent it (to VIP:vport).
#[inline(always)]
pub fn icmp_to_client(ctx: &XdpContext, e: &IcmpErr, v: &Virtual) -> u32 {
    let (vip, vport, ingress) = (v.vip, v.vport, v.ingress);
    let route = nexthop::to_addr(ctx, e.daddr.w[0], ingress, v.now);
    if matches!(route, Route::None) {
        return xmit::send(ctx, &route, ingress);
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if set_ip_addr(data, end, ETH_HLEN, IP_SADDR, vip).is_none()
        || rewrite_quote(data, end, e, IP_DADDR, 2, vip, vport).is_none()
        || !decrease_ttl(data, end, ETH_HLEN)
    {
        return xdp_action::XDP_ABORTED;
    }
    xmit::send(ctx, &route, ingress)
}

/// The reply-side entry of a new NAT connection: (client, RIP:rport) -> the virtual port.
#[inline(always)]
pub fn reply_key(p: &Pkt, rip: Addr, rport: u16) -> ConnKey {
    conn::key_in(p).reply_side(rip.w[0], rport)
}
