//! IP tunnelling (`-i`, "Tunnel"): the packet is wrapped in an outer IPv4 header addressed to
//! the real server, sourced from the director's address on the route there, and sent to the
//! FIB's next hop. The dest's tunnel type picks the wrapping: IPIP (protocol 4, written here, the
//! hot path) or GUE / GRE (`encap`). As IPVS: outer TTL = inner TTL after the decrement, outer
//! TOS = inner DSCP with ECN encapsulated (CE becomes ECT(0)), DF copied from the inner header
//! (pmtu_disc=1), and a DF packet that no longer fits the route MTU gets ICMP "fragmentation
//! needed" with the MTU reduced by the tunnel's overhead (`lb_common::tunnel::overhead`).
use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    tunnel::{flow_hash_v4, overhead, IPV4_MIN_MTU, IPV6_MIN_MTU},
    Addr, AF_INET, AF_INET6, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, NEIGH_F_RESOLVED,
};
use network_types::ip::Ipv4Hdr;

use crate::{
    csum,
    dr::decrease_ttl,
    encap::{self, Inner, Outer},
    icmp,
    maps::{XLB_DESTS, XLB_DEST_NEIGH},
    nexthop::{self, Route},
    parse::{header, ETH_HLEN, IPV4_HLEN},
    xmit::{self, Target},
};

const IP_DF: u16 = 0x4000;

use encap::encap_tos;

/// Encapsulates the IPv4 packet of `ip_len` bytes and TTL `ttl` (> 1) that was sent to `vip`
/// in IPIP (the dest's `tun_type` is `lb_common::tunnel::TUN_TYPE_IPIP`; else [`forward_other`]).
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

/// [`tun_kind`]'s mark of a dest of the other family (an IPv6 real server of an IPv4 service).
pub const TUN_OUTER6: u8 = 0x80;

/// What the IPv4 paths read of a dest to pick the tunnel code: its tunnel type, with
/// [`TUN_OUTER6`] for an IPv6 real server. `TUN_TYPE_IPIP` alone is [`forward`]'s.
#[inline(always)]
pub fn tun_kind(d: &lb_common::Dest) -> u8 {
    d.tun_type | if d.af == AF_INET6 { TUN_OUTER6 } else { 0 }
}

/// Encapsulates the IPv4 packet (TTL > 1) in the tunnel of dest `t.dest_id` when it is not IPIP
/// to an IPv4 real server ([`tun_kind`] `kind`: GUE, GRE, or any tunnel to an IPv6 real server;
/// the caller tells them apart from the dest it has read, so IPIP costs nothing more). The
/// headers are written by [`xlb_tun_encap4`], which the verifier checks once, not once per path
/// to here, and whose frame (the kernel adds it to its callers' in a 512-byte stack) stays small;
/// to an IPv4 real server the next hop is looked up and the frame sent here, as for IPIP; to an
/// IPv6 one, by two more global functions.
#[inline(always)]
pub fn forward_other(ctx: &XdpContext, t: &Target, kind: u8) -> u32 {
    if kind & TUN_OUTER6 != 0 {
        if xlb_tun_route6(ctx.ctx, t.dest_id, t.ingress, t.now) == 0 {
            return xdp_action::XDP_DROP;
        }
        return match xlb_tun_encap4(ctx.ctx, t.dest_id, t.rip) {
            ENCAPSULATED => xlb_tun_send6(ctx.ctx, t.dest_id, t.ingress),
            v => v,
        };
    }
    let route = nexthop::to_dest(ctx, t.dest_id, t.rip, t.ingress, true, t.now);
    if matches!(route, Route::None) {
        return xmit::send(ctx, &route, t.ingress);
    }
    match xlb_tun_encap4(ctx.ctx, t.dest_id, t.rip) {
        ENCAPSULATED => xmit::send(ctx, &route, t.ingress),
        v => v,
    }
}

/// The next hop toward IPv6 real server `dest_id` looked up (cached for [`xlb_tun_encap4`] and
/// [`xlb_tun_send6`]): 1 when there is a route, else 0 (counted as no route).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_tun_route6(ctx: *mut xdp_md, dest_id: u32, ingress: u32, now: u64) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let Some(d) = XLB_DESTS.get(dest_id) else {
        return 0;
    };
    if xmit::routable6(nexthop::to_dest6(ctx, dest_id, &d.addr, ingress, true, now)) {
        1
    } else {
        crate::stats::bump(|g| &mut g.no_route);
        0
    }
}

/// Sends the frame [`xlb_tun_encap4`] wrapped for IPv6 real server `dest_id` by the next hop
/// [`xlb_tun_route6`] cached (the slow path's next hop: the outer destination, the frame's).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_tun_send6(ctx: *mut xdp_md, dest_id: u32, ingress: u32) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let Some(n) = XLB_DEST_NEIGH.get_ptr(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    // (The slow path's next hop: the one cached for the real server, dest id + 1.)
    xmit::send6(ctx, Some(n), ingress, dest_id + 1)
}

/// What [`xlb_tun_encap4`] returns when the frame is ready to be sent (else an XDP verdict).
pub const ENCAPSULATED: u32 = 0x100;

/// What the route MTU allows a packet about to be tunnelled.
pub enum Mtu {
    Fits,
    /// Answer "fragmentation needed" (IPv4) / "packet too big" (IPv6) with this MTU.
    TooBig(u32),
    /// The route cannot carry the tunnel at all (IPVS drops: MTU left below 68 for an IPv4
    /// outer header, below 1280 for IPv6).
    Drop,
}

/// IPVS's PMTU check for a tunnel (`__ip_vs_get_out_rt{,_v6}`, `ensure_mtu_is_adequate`): the
/// route MTU (`0`: unknown, the slow path's kernel judges) less the tunnel's overhead must hold
/// the inner packet of `len` bytes if it is IPv6 or an IPv4 one with DF. An IPv6 answer never
/// names less than the minimum IPv6 MTU (the receiving stack would raise it to 1280 anyway).
#[inline(always)]
pub fn check_mtu(route_mtu: u32, outer_af: u8, inner_af: u8, df: bool, len: u32, tun_type: u8, tun_flags: u16) -> Mtu {
    if route_mtu == 0 {
        return Mtu::Fits;
    }
    let over = overhead(outer_af, tun_type, tun_flags);
    let min = if outer_af == AF_INET6 { IPV6_MIN_MTU } else { IPV4_MIN_MTU };
    if route_mtu < over + min {
        return Mtu::Drop;
    }
    let mtu = route_mtu - over;
    if inner_af == AF_INET6 {
        if len > mtu { Mtu::TooBig(if mtu < IPV6_MIN_MTU { IPV6_MIN_MTU } else { mtu }) } else { Mtu::Fits }
    } else if df && len > mtu {
        Mtu::TooBig(mtu)
    } else {
        Mtu::Fits
    }
}

/// GUE or GRE (as dest `dest_id` says) around the IPv4 packet in the frame (its TTL > 1 checked
/// by the caller), to IPv4 real server `rip`, by the next hop the caller's `nexthop::to_dest` has
/// just cached: [`ENCAPSULATED`], or the verdict for a packet that is not to be sent (an ICMP
/// "fragmentation needed" answer, a drop). A global BPF function: checked once, with only its
/// arguments known (the packet is parsed again here).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_tun_encap4(ctx: *mut xdp_md, dest_id: u32, rip: u32) -> u32 {
    let ctx = &XdpContext::new(ctx);
    let Some(d) = XLB_DESTS.get(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    let (tun_type, tun_port, tun_flags) = (d.tun_type, d.tun_port, d.tun_flags);
    // The route's source and MTU (0: unknown, the slow path's).
    let Some(n) = XLB_DEST_NEIGH.get(dest_id) else {
        return xdp_action::XDP_DROP;
    };
    let mtu = if n.flags & NEIGH_F_RESOLVED != 0 { n.mtu } else { 0 };
    // The packet as the caller parsed it: a whole IPv4 header, its total length in the frame.
    let Some(ip) = header::<Ipv4Hdr>(ctx.data(), ctx.data_end(), ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let (ip_len, ttl, vip, frags) =
        unsafe { (u16::from_be_bytes((*ip).tot_len), (*ip).ttl, u32::from_ne_bytes((*ip).dst_addr), (*ip).frags) };
    let outer_af = if d.af == AF_INET6 { AF_INET6 } else { AF_INET };
    if ttl <= 1 || ETH_HLEN + ip_len as usize > ctx.data_end() - ctx.data() || (outer_af == AF_INET && d.addr.w[0] != rip) {
        return xdp_action::XDP_DROP;
    }
    let df = u16::from_be_bytes(frags) & IP_DF != 0;
    match check_mtu(mtu, outer_af, AF_INET, df, ip_len as u32, tun_type, tun_flags) {
        Mtu::Fits => {}
        Mtu::TooBig(m) => return icmp::frag_needed(ctx, m as u16),
        Mtu::Drop => return xdp_action::XDP_DROP,
    }
    let Some(hash) = flow_hash_of(ctx, vip) else {
        return xdp_action::XDP_DROP;
    };
    if !decrease_ttl(ctx.data(), ctx.data_end(), ETH_HLEN) {
        return xdp_action::XDP_DROP;
    }
    let Some(ip) = header::<Ipv4Hdr>(ctx.data(), ctx.data_end(), ETH_HLEN) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: as above.
    let (tos, id) = unsafe { ((*ip).tos, (*ip).id) };
    // As IPVS (`ip_select_ident` for a packet without socket): id 0 with DF, else (any id will
    // do, the kernel's is a keyed hash) the inner packet's.
    let id = if df { [0, 0] } else { id };
    // With no address known, the VIP the client addressed is the source (over IPv4; over IPv6
    // there is none to take).
    let fallback = if outer_af == AF_INET { Some([vip, 0, 0, 0]) } else { None };
    let Some(src) = source_or(&n.src, fallback) else {
        return xdp_action::XDP_DROP;
    };
    let outer = Outer { af: outer_af, src, dst: &d.addr, tun_type, tun_port, tun_flags };
    let inner = Inner { af: AF_INET, len: ip_len, hop: ttl - 1, tos, df, id, hash };
    if !encap::encap(ctx, &outer, &inner) {
        return xdp_action::XDP_DROP;
    }
    ENCAPSULATED
}

/// This CPU's spare address: an outer source the cache does not hold.
#[map]
static XLB_TUN_SRC: PerCpuArray<Addr> = PerCpuArray::with_max_entries(1, 0);

/// `src` (a route's cached source) if known, else `fallback` (copied into this CPU's spare
/// slot), else `None`.
#[inline(always)]
pub fn source_or(src: &Addr, fallback: Option<[u32; 4]>) -> Option<&Addr> {
    if src.w != [0; 4] {
        return Some(src);
    }
    let fallback = fallback?;
    let slot = XLB_TUN_SRC.get_ptr_mut(0)?;
    // SAFETY: this CPU's value of a per-CPU array, valid for the run, used by no one else meanwhile.
    let slot = unsafe { &mut *slot };
    slot.w = fallback;
    Some(slot)
}

/// The flow hash of the IPv4 packet in the frame, sent to `vip`: its addresses, protocol and
/// (TCP, UDP) ports.
#[inline(always)]
fn flow_hash_of(ctx: &XdpContext, vip: u32) -> Option<u32> {
    let ip = crate::parse::read::<[u8; 12]>(ctx.data(), ctx.data_end(), ETH_HLEN + 8)?;
    let (proto, saddr) = (ip[1], u32::from_ne_bytes([ip[4], ip[5], ip[6], ip[7]]));
    let vihl = crate::parse::read::<[u8; 2]>(ctx.data(), ctx.data_end(), ETH_HLEN)?[0];
    let ports = if proto == IPPROTO_TCP || proto == IPPROTO_UDP {
        let ihl = ((vihl & 0x0f) as usize * 4) & 0x3c;
        crate::parse::read::<[u8; 4]>(ctx.data(), ctx.data_end(), ETH_HLEN + ihl).unwrap_or([0; 4])
    } else {
        [0; 4]
    };
    Some(flow_hash_v4(
        saddr,
        vip,
        u16::from_ne_bytes([ports[0], ports[1]]),
        u16::from_ne_bytes([ports[2], ports[3]]),
        proto,
    ))
}
