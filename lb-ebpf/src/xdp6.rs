//! The IPv6 data plane: `xlb_xdp` tail-calls `xlb_xdp6` for every IPv6 frame (the IPv4 path
//! pays one ethertype branch), which does for IPv6 what `xlb_xdp` does for IPv4 with the IPv6
//! parser, gate slots and connection table: an established connection is forwarded here, a NAT
//! reply too, a new one goes to `xlb_new6*` (the scheduler groups of the IPv4 twins, verified
//! apart), whose first packet `xlb_fwd6` forwards. Counters are the IPv4 path's, field for
//! field.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    tcp_state::{TCP_FLAG_RST, TCP_FLAG_SYN},
    TailProgram, CONN_F_CONTROLLED, CONN_F_NOOUTPUT, FWD_DROUTE, FWD_MASQ, FWD_TUNNEL, IPPROTO_TCP, SVC_F_PERSISTENT,
};
use lb_ebpf::parse6::{parse6_gated, Parsed6};

use crate::{
    conn, conn6, dr6, gate, handoff, ingress, leave6, nat6, related6,
    parse::Pkt,
    received, schedule,
    stats::{self, bump},
    tail, tail_call, tun6, verdict, xmit,
};

/// The IPv6 entry point (`xlb_xdp`'s twin; see there).
#[xdp]
pub fn xlb_xdp6(ctx: XdpContext) -> u32 {
    let p = match parse6_gated(ctx.data(), ctx.data_end(), gate::ask6) {
        Parsed6::Ok(p) => p,
        Parsed6::Icmp(_) => {
            bump(|g| &mut g.rx);
            return tail(&ctx, TailProgram::Icmp6);
        }
        Parsed6::Other => return stats::received_passed(),
        Parsed6::Malformed => return stats::received_malformed(),
    };
    let now = conn::now();
    let key = conn6::key_in6(&p);
    // Only a NAT real server's address passed the gate: no client-side lookup (IPv4's order).
    let found = if p.gate & gate::TO_SERVICE != 0 { conn6::get6(&key) } else { None };
    let Some(c) = found else {
        if p.gate & gate::FROM_NAT_RS != 0 {
            // Counted there.
            tail_call(&ctx, TailProgram::Reply6);
            return verdict(xdp_action::XDP_DROP);
        }
        bump(|g| &mut g.rx);
        return new_flow6(&ctx, &p, false, now);
    };
    // SAFETY: a value of XLB_CONNS6 from a successful lookup (its `Conn`): valid until the
    // program returns (RCU); plain stores as for IPv4.
    let c = unsafe { &mut *c };
    if conn::expired(c, now) {
        bump(|g| &mut g.rx);
        return new_flow6(&ctx, &p, true, now);
    }
    if p.proto == IPPROTO_TCP && p.tcp_flags & TCP_FLAG_SYN != 0 && conn::reschedule_on_syn(c) {
        conn6::expire_now6(&key, &{ *c });
        bump(|g| &mut g.rx);
        return new_flow6(&ctx, &p, false, now);
    }
    let (svc_id, dest_id, rport) = (c.svc_id, c.dest_id, c.port);
    // IPVS drops a deleted real server's packet before it touches the connection (one array
    // lookup, the kernel inlines it; a callback into `forward6` took xlb_xdp6 past the stack).
    if schedule::usable_dest(dest_id, svc_id, |_| ()).is_some() {
        conn::on_packet(c, &p, now);
        crate::sync::after_input(&key, c, p.proto, now);
    }
    if let Some(v) = forward6(&ctx, &p, svc_id, dest_id, rport, false, now) {
        return v;
    }
    bump(|g| {
        g.rx += 1;
        &mut g.conn_hit
    });
    if conn::with_config(|cfg| cfg.expire_nodest_conn != 0).unwrap_or(false) {
        conn6::expire_now6(&key, &{ *c });
        return new_flow6(&ctx, &p, false, now);
    }
    verdict(xdp_action::XDP_DROP)
}

/// A packet from a NAT real server's address that matched no client-side connection: a reply
/// (rewritten back to the VIP), else a new flow if the gate let its destination through, else
/// the kernel's. A program of its own: inlined into `xlb_xdp6`, the reply path took its stack
/// past the kernel's 512 bytes.
#[xdp]
pub fn xlb_reply6(ctx: XdpContext) -> u32 {
    let p = match parse6_gated(ctx.data(), ctx.data_end(), gate::ask6) {
        Parsed6::Ok(p) => p,
        // (`xlb_xdp6` sends ICMPv6 errors to `xlb_icmp6`, not here.)
        Parsed6::Icmp(_) | Parsed6::Other => return stats::received_passed(),
        Parsed6::Malformed => return stats::received_malformed(),
    };
    let now = conn::now();
    if let Some(v) = nat6::reply(&ctx, &p, ingress(&ctx), now) {
        return received(v);
    }
    if p.gate & gate::TO_SERVICE == 0 {
        return stats::received_passed();
    }
    bump(|g| &mut g.rx);
    new_flow6(&ctx, &p, false, now)
}

/// ICMPv6 errors about connections (`xlb_icmp`'s twin).
#[xdp]
pub fn xlb_icmp6(ctx: XdpContext) -> u32 {
    let v = match parse6_gated(ctx.data(), ctx.data_end(), |_, _| u8::MAX) {
        Parsed6::Icmp(e) => related6::forward(&ctx, &e, ingress(&ctx), conn::now()).unwrap_or(xdp_action::XDP_PASS),
        _ => xdp_action::XDP_PASS,
    };
    verdict(v)
}

/// ICMPv6 errors about tunnelled connections, which `xlb_icmp6` found and counted.
#[xdp]
pub fn xlb_icmp6_tun(ctx: XdpContext) -> u32 {
    let v = match parse6_gated(ctx.data(), ctx.data_end(), |_, _| u8::MAX) {
        Parsed6::Icmp(e) => related6::forward_tunnel(&ctx, &e, ingress(&ctx), conn::now()).unwrap_or(xdp_action::XDP_DROP),
        _ => xdp_action::XDP_DROP,
    };
    verdict(v)
}

/// `new_flow` for IPv6: the service, then the scheduling program of its group.
#[inline(always)]
fn new_flow6(ctx: &XdpContext, p: &Pkt, stale: bool, now: u64) -> u32 {
    let Some(m) = schedule::find_service(ctx, p) else {
        return verdict(xdp_action::XDP_PASS);
    };
    let sloppy = || conn::with_config(|c| c.sloppy_tcp != 0).unwrap_or(false);
    if p.proto == IPPROTO_TCP && (p.tcp_flags & TCP_FLAG_RST != 0 || (p.tcp_flags & TCP_FLAG_SYN == 0 && !sloppy())) {
        return verdict(xdp_action::XDP_PASS);
    }
    let Some(h) = handoff::get() else {
        return verdict(xdp_action::XDP_DROP);
    };
    h.pkt = *p;
    // SAFETY: as in `new_flow`: two distinct map values, copied as non-overlapping.
    unsafe { core::ptr::copy_nonoverlapping(m.svc, &mut h.svc, 1) };
    h.port = m.port;
    h.fwmark = m.fwmark;
    h.stale = stale;
    h.now = now;
    let next = match schedule::group_of(m.svc.sched) {
        schedule::GROUP_SET => TailProgram::NewSet6,
        schedule::GROUP_TWOS => TailProgram::NewTwos6,
        schedule::GROUP_SCAN => TailProgram::NewScan6,
        _ => TailProgram::New6,
    };
    tail(ctx, next)
}

#[xdp]
pub fn xlb_new6(ctx: XdpContext) -> u32 {
    verdict(new_conn6::<{ schedule::GROUP_NEW }>(&ctx))
}

#[xdp]
pub fn xlb_new_set6(ctx: XdpContext) -> u32 {
    verdict(new_conn6::<{ schedule::GROUP_SET }>(&ctx))
}

#[xdp]
pub fn xlb_new_twos6(ctx: XdpContext) -> u32 {
    verdict(new_conn6::<{ schedule::GROUP_TWOS }>(&ctx))
}

#[xdp]
pub fn xlb_new_scan6(ctx: XdpContext) -> u32 {
    verdict(new_conn6::<{ schedule::GROUP_SCAN }>(&ctx))
}

/// The first packet of an IPv6 connection `xlb_new6*` has just made.
#[xdp]
pub fn xlb_fwd6(ctx: XdpContext) -> u32 {
    let Some(h) = handoff::get() else {
        return verdict(xdp_action::XDP_DROP);
    };
    let Some(p) = handoff::pkt6(h) else {
        return verdict(xdp_action::XDP_DROP);
    };
    forward6(&ctx, &p, h.svc.id, h.dest_id, h.rport, true, h.now).unwrap_or_else(|| verdict(xdp_action::XDP_DROP))
}

/// `new_conn` for IPv6 (see there): schedule, record (with a NAT reply side), hand the first
/// packet to `xlb_fwd6`.
#[inline(always)]
fn new_conn6<const GROUP: u8>(ctx: &XdpContext) -> u32 {
    let Some(h) = handoff::get() else {
        return xdp_action::XDP_DROP;
    };
    let p = &h.pkt;
    let now = h.now;
    let key = conn6::key_in6(p);
    if h.stale
        && let Some(old) = conn6::get6(&key)
    {
        // SAFETY: a value of XLB_CONNS6 from a successful lookup, valid for the run; only read.
        let old = unsafe { &*old };
        if conn::expired(old, now) {
            conn6::end_stale6(&key, old);
        }
    }
    let m = schedule::Matched { svc: &h.svc, port: h.port, fwmark: h.fwmark };
    let chosen = schedule::choose_dest6::<GROUP>(&m, p, now)
        .and_then(|id| schedule::usable_dest(id, m.svc.id, |d| (id, d.port, d.fwd)));
    let Some((dest_id, dport, fwd)) = chosen else {
        bump(|g| &mut g.no_dest);
        return leave6::port_unreachable(ctx, now);
    };
    let rport = if m.port != 0 && dport != 0 { dport } else { p.dport };
    let svc = m.svc;
    let flags = if fwd == FWD_DROUTE || fwd == FWD_TUNNEL { CONN_F_NOOUTPUT } else { 0 }
        | if svc.flags & SVC_F_PERSISTENT != 0 { CONN_F_CONTROLLED } else { 0 };
    if conn6::create6(&key, p, svc.id, dest_id, rport, flags, now).is_err() {
        bump(|g| &mut g.conn_insert_fail);
        return xdp_action::XDP_DROP;
    }
    if fwd == FWD_MASQ
        && schedule::usable_dest(dest_id, svc.id, |d| nat6::reply_key6(p, &d.addr, rport)).is_none_or(|reply| {
            conn6::create_reply_entry6(&reply, svc.id, dest_id, p.dport, &p.daddr, now).is_err()
        })
    {
        conn6::remove6(&key);
        bump(|g| &mut g.conn_insert_fail);
        return xdp_action::XDP_DROP;
    }
    bump(|g| &mut g.conn_new);
    h.dest_id = dest_id;
    h.rport = rport;
    tail_call(ctx, TailProgram::Fwd6);
    xdp_action::XDP_DROP
}

/// `forward` for IPv6: by the real server's method, counted as IPv4's.
#[inline(always)]
fn forward6(ctx: &XdpContext, p: &Pkt, svc_id: u32, dest_id: u32, rport: u16, new_conn: bool, now: u64) -> Option<u32> {
    let (rip, fwd, af) = schedule::usable_dest(dest_id, svc_id, |d| (d.addr, d.fwd, d.af))?;
    let t = xmit::Target6 { dest_id, rip, ingress: ingress(ctx), now };
    let v = if p.ttl <= 1 {
        leave6::time_exceeded(ctx)
    } else {
        match fwd {
            FWD_DROUTE => dr6::forward(ctx, &t),
            FWD_TUNNEL => tun6::forward(ctx, p, &t, af),
            FWD_MASQ => nat6::request(ctx, p, &t, rport),
            // LOCAL: the director itself serves it.
            _ => xdp_action::XDP_PASS,
        }
    };
    Some(stats::count_forwarded(svc_id, dest_id, p.ip_len, new_conn, v))
}
