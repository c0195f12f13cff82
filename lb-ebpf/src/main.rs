//! xlb's data plane.
//!
//! `xlb_xdp`: parse -> connection table (or a NAT reply, or an ICMP error about a connection) ->
//! (new flow) virtual service + scheduler -> forward by the real server's method (dr, tun, nat)
//! -> counters. `xlb_tc_neigh`: the unresolved-neighbour slow path. `xlb_decap`: IPIP decap for
//! real servers without an ipip device.
//! `xlb_pass`: a do-nothing XDP program (veth peers need one to receive XDP_TX frames; also the
//! benchmark floor).
//!
//! Built for the BPF target (lb-user's build script does that); on the host it is an ordinary
//! binary with std and an empty `main`, so `cargo clippy --all-targets` can check it (with
//! `RUSTC_BOOTSTRAP=1` for `core_intrinsics`), as aya's own eBPF crates are set up.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys and values go to aya's `impl Borrow<K>` parameters by reference on purpose: passed by
// value, each would be copied to the BPF stack first (measured: 20% more verifier steps for
// `xlb_new`, 27% for `xlb_new_twos`).
#![allow(clippy::needless_borrows_for_generic_args)]

mod atomic;
mod bpf_loop;
mod conn;
mod conn6;
mod decap;
mod dr;
mod dr6;
mod encap;
mod gate;
mod handoff;
mod icmp;
mod icmp6;
mod leave6;
mod maps;
mod nat;
mod nat6;
mod nexthop;
mod probe;
mod related;
mod related6;
mod schedule;
mod stats;
mod sync;
mod tc_neigh;
mod tun;
mod tun6;
mod xdp6;
mod xmit;

use lb_ebpf::{csum, parse, parse6};
use xdp6::{xlb_fwd6, xlb_icmp6, xlb_icmp6_tun, xlb_new6, xlb_new_scan6, xlb_new_set6, xlb_new_twos6, xlb_reply6, xlb_xdp6};

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lb_common::{
    str_eq,
    tunnel::TUN_TYPE_IPIP,
    tcp_state::{TCP_FLAG_RST, TCP_FLAG_SYN},
    TailProgram, AF_INET, CONN_F_CONTROLLED, CONN_F_NOOUTPUT, FWD_DROUTE, FWD_MASQ, FWD_TUNNEL, IPPROTO_TCP,
    SVC_F_PERSISTENT,
};

use crate::{
    maps::{XLB_CONNS, XLB_PROGS},
    parse::{parse, parse_gated, Parsed, Pkt},
    stats::bump,
};

/// Counts a verdict and returns it.
#[inline(always)]
fn verdict(v: u32) -> u32 {
    stats::count_verdict(v, false)
}

/// Counts the reception of a packet of `xlb_xdp`'s and its verdict (one counter access).
#[inline(always)]
fn received(v: u32) -> u32 {
    stats::count_verdict(v, true)
}

/// The programs of `lb_common::TailProgram`, each by its function here: every one is listed, in
/// slot order, and its function has the name userspace loads it by, or this does not compile.
macro_rules! tail_programs {
    ($($p:ident => $f:ident),* $(,)?) => {
        const _: () = {
            let listed = [$(TailProgram::$p),*];
            let names = [$({ let _ = $f; stringify!($f) }),*];
            assert!(listed.len() == TailProgram::ALL.len(), "a TailProgram without its function");
            let mut i = 0;
            while i < listed.len() {
                assert!(listed[i] as u32 == TailProgram::ALL[i] as u32, "tail programs out of slot order");
                assert!(str_eq(listed[i].name(), names[i]), "a tail program's function is not named as lb-common says");
                i += 1;
            }
        };
    };
}

tail_programs! {
    New => xlb_new,
    Icmp => xlb_icmp,
    Fwd => xlb_fwd,
    NewSet => xlb_new_set,
    NewScan => xlb_new_scan,
    NewTwos => xlb_new_twos,
    Xdp6 => xlb_xdp6,
    New6 => xlb_new6,
    NewSet6 => xlb_new_set6,
    NewScan6 => xlb_new_scan6,
    NewTwos6 => xlb_new_twos6,
    Fwd6 => xlb_fwd6,
    Reply6 => xlb_reply6,
    Icmp6 => xlb_icmp6,
    Icmp6Tun => xlb_icmp6_tun,
}

/// The entry point. Parses the packet once, asks the gate whether it could be for a service
/// (anything else goes to the kernel at once), then looks it up once in the connection table:
/// an established connection is forwarded here, a NAT reply too; a packet of no connection to
/// a virtual service goes on, with the packet and its service in the hand-off entry, to the
/// scheduling program of the service's scheduler; an ICMP error to `xlb_icmp`.
#[xdp]
pub fn xlb_xdp(ctx: XdpContext) -> u32 {
    let p = match parse_gated(ctx.data(), ctx.data_end(), gate::ask) {
        Parsed::Ok(p) => p,
        Parsed::Icmp(_) => {
            bump(|g| &mut g.rx);
            return tail(&ctx, TailProgram::Icmp);
        }
        // Not for a service (the gate said so, or not IP TCP/UDP/ICMP): one counter access.
        Parsed::Other => return stats::received_passed(),
        // IPv6: its own programs (counted there); to the kernel when they are not installed.
        Parsed::V6 => {
            tail_call(&ctx, TailProgram::Xdp6);
            return stats::received_passed();
        }
        Parsed::Malformed => return stats::received_malformed(),
    };
    if p.gate & gate::TO_SERVICE == 0 {
        // Only a NAT real server's address passed the gate: a reply, or nothing of ours.
        return received(nat::reply(&ctx, &p, ingress(&ctx), conn::now()).unwrap_or(xdp_action::XDP_PASS));
    }
    let from_nat_rs = || p.gate & gate::FROM_NAT_RS != 0;
    let now = conn::now();
    let key = conn::key_in(&p);
    let Some(c) = XLB_CONNS.get_ptr_mut(&key) else {
        if from_nat_rs()
            && let Some(v) = nat::reply(&ctx, &p, ingress(&ctx), now)
        {
            return received(v);
        }
        bump(|g| &mut g.rx);
        return new_flow(&ctx, &p, false, now);
    };
    // SAFETY: a value of XLB_CONNS from a successful lookup: valid until the program returns (RCU).
    // Other CPUs may update the same connection; as IPVS's per-packet updates, the fields are plain
    // stores.
    let c = unsafe { &mut *c };
    if conn::expired(c, now) {
        bump(|g| &mut g.rx);
        return new_flow(&ctx, &p, true, now);
    }
    if p.proto == IPPROTO_TCP && p.tcp_flags & TCP_FLAG_SYN != 0 && conn::reschedule_on_syn(c) {
        conn::expire_now(&key, &{ *c });
        bump(|g| &mut g.rx);
        return new_flow(&ctx, &p, false, now);
    }
    let (svc_id, dest_id, rport) = (c.svc_id, c.dest_id, c.port);
    // IPVS drops a deleted real server's packet before it touches the connection (one array
    // lookup, the kernel inlines it; a callback into `forward` took xlb_xdp6 past the stack).
    if schedule::usable_dest(dest_id, svc_id, |_| ()).is_some() {
        conn::on_packet(c, &p, now);
        sync::after_input(&key, c, p.proto, now);
    }
    // Counted there with its reception and the connection hit.
    if let Some(v) = forward(&ctx, &p, svc_id, dest_id, rport, false, now) {
        return v;
    }
    bump(|g| {
        g.rx += 1;
        &mut g.conn_hit
    });
    // Its real server was deleted: expire_nodest_conn = 1 expires the connection and handles
    // the packet as new; 0 drops it.
    if conn::with_config(|cfg| cfg.expire_nodest_conn != 0).unwrap_or(false) {
        conn::expire_now(&key, &{ *c });
        return new_flow(&ctx, &p, false, now);
    }
    verdict(xdp_action::XDP_DROP)
}

/// A packet of no (live) connection to a gated address: its virtual service, if it has one,
/// and the packet go in the hand-off entry to the scheduling program of the service's
/// scheduler. `stale`: an expired entry holds the packet's key (the new connection replaces
/// it).
#[inline(always)]
fn new_flow(ctx: &XdpContext, p: &Pkt, stale: bool, now: u64) -> u32 {
    let Some(m) = schedule::find_service(ctx, p) else {
        return verdict(xdp_action::XDP_PASS);
    };
    // Only a SYN opens a TCP connection (any packet but a RST with sloppy_tcp = 1); anything
    // else without a connection goes to the local stack as with IPVS.
    let sloppy = || conn::with_config(|c| c.sloppy_tcp != 0).unwrap_or(false);
    if p.proto == IPPROTO_TCP && (p.tcp_flags & TCP_FLAG_RST != 0 || (p.tcp_flags & TCP_FLAG_SYN == 0 && !sloppy())) {
        return verdict(xdp_action::XDP_PASS);
    }
    let Some(h) = handoff::get() else {
        return verdict(xdp_action::XDP_DROP);
    };
    h.pkt = *p;
    // SAFETY: two distinct map values (the service's and this CPU's hand-off entry), both valid
    // for the run. Copied as non-overlapping: an assignment between the two is a memmove, which
    // the BPF backend calls (a byte loop) instead of inlining.
    unsafe { core::ptr::copy_nonoverlapping(m.svc, &mut h.svc, 1) };
    h.port = m.port;
    h.fwmark = m.fwmark;
    h.stale = stale;
    h.now = now;
    let next = match schedule::group_of(m.svc.sched) {
        schedule::GROUP_SET => TailProgram::NewSet,
        schedule::GROUP_TWOS => TailProgram::NewTwos,
        schedule::GROUP_SCAN => TailProgram::NewScan,
        _ => TailProgram::New,
    };
    tail(ctx, next)
}

/// The first packet of a connection a scheduling program has just made: forwarded like an
/// established one (but counted as the connection's first).
#[xdp]
pub fn xlb_fwd(ctx: XdpContext) -> u32 {
    let Some(h) = handoff::get() else {
        return verdict(xdp_action::XDP_DROP);
    };
    let Some(p) = handoff::pkt(h) else {
        return verdict(xdp_action::XDP_DROP);
    };
    // Counted there.
    forward(&ctx, &p, h.svc.id, h.dest_id, h.rport, true, h.now).unwrap_or_else(|| verdict(xdp_action::XDP_DROP))
}

/// Continues with tail program `p`; returns (the drop verdict) only when it is not installed.
#[inline(always)]
fn tail(ctx: &XdpContext, p: TailProgram) -> u32 {
    tail_call(ctx, p);
    // Only reached when the program is not installed: never guess, drop.
    verdict(xdp_action::XDP_DROP)
}

#[inline(always)]
fn tail_call(ctx: &XdpContext, p: TailProgram) {
    // SAFETY: a tail call replaces this program with an XDP program on the same context (lb-user
    // installs only XDP programs of this object, `TailProgram::ALL` by slot), or returns when the
    // slot is empty; nothing after it relies on state the callee could change.
    unsafe { XLB_PROGS.tail_call(ctx, p.index()) };
}

/// New connections to a service of one of the cheap schedulers (`schedule::GROUP_NEW`).
#[xdp]
pub fn xlb_new(ctx: XdpContext) -> u32 {
    verdict(new_conn::<{ schedule::GROUP_NEW }>(&ctx))
}

/// New connections to a service whose scheduler keeps per-destination server sets (lblcr,
/// `schedule::GROUP_SET`).
#[xdp]
pub fn xlb_new_set(ctx: XdpContext) -> u32 {
    verdict(new_conn::<{ schedule::GROUP_SET }>(&ctx))
}

/// New connections to a service of twos (two random weighted draws, `schedule::GROUP_TWOS`).
#[xdp]
pub fn xlb_new_twos(ctx: XdpContext) -> u32 {
    verdict(new_conn::<{ schedule::GROUP_TWOS }>(&ctx))
}

/// New connections to a service of a connection-count scheduler (`schedule::GROUP_SCAN`).
#[xdp]
pub fn xlb_new_scan(ctx: XdpContext) -> u32 {
    verdict(new_conn::<{ schedule::GROUP_SCAN }>(&ctx))
}

/// ICMP errors about connections.
#[xdp]
pub fn xlb_icmp(ctx: XdpContext) -> u32 {
    let ingress = ingress(&ctx);
    let v = match parse(ctx.data(), ctx.data_end()) {
        Parsed::Icmp(e) => related::forward(&ctx, &e, ingress, conn::now()).unwrap_or(xdp_action::XDP_PASS),
        _ => xdp_action::XDP_PASS,
    };
    verdict(v)
}

/// The interface the frame came in on.
#[inline(always)]
fn ingress(ctx: &XdpContext) -> u32 {
    // SAFETY: `ctx.ctx` is the `xdp_md` the kernel passed this program, valid for the run.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Schedules the new connection `xlb_xdp` handed over (`GROUP`: which program this is,
/// `schedule::group_of`), records it, and hands its first packet to `xlb_fwd`.
#[inline(always)]
fn new_conn<const GROUP: u8>(ctx: &XdpContext) -> u32 {
    let Some(h) = handoff::get() else {
        return xdp_action::XDP_DROP;
    };
    // Read in place (a copy would not fit the stack beside lblcr's set); this program uses no
    // header offset of it.
    let p = &h.pkt;
    let now = h.now;
    let key = conn::key_in(p);
    if h.stale
        && let Some(old) = XLB_CONNS.get_ptr_mut(&key)
    {
        // SAFETY: a value of XLB_CONNS from a successful lookup, valid for the run; only read.
        let old = unsafe { &*old };
        if conn::expired(old, now) {
            conn::end_stale(&key, old);
        }
    }
    let m = schedule::Matched { svc: &h.svc, port: h.port, fwmark: h.fwmark };
    let chosen = schedule::choose_dest::<GROUP>(&m, p, now)
        .and_then(|id| schedule::usable_dest(id, m.svc.id, |d| (id, d.port, d.fwd)));
    let Some((dest_id, dport, fwd)) = chosen else {
        bump(|g| &mut g.no_dest);
        return if p.af == AF_INET { icmp::port_unreachable(ctx, now) } else { xdp_action::XDP_DROP };
    };
    // The real server's port: its own for a service on one port, the client's choice for an
    // "all ports" service (IPVS: dport = dest port iff packet port = service port).
    let rport = if m.port != 0 && dport != 0 { dport } else { p.dport };
    let svc = m.svc;
    let flags = if fwd == FWD_DROUTE || fwd == FWD_TUNNEL { CONN_F_NOOUTPUT } else { 0 }
        | if svc.flags & SVC_F_PERSISTENT != 0 { CONN_F_CONTROLLED } else { 0 };
    if conn::create(&key, p, svc.id, dest_id, rport, flags, now).is_err() {
        bump(|g| &mut g.conn_insert_fail);
        return xdp_action::XDP_DROP;
    }
    // (The real server's address, which only NAT needs, is read for NAT alone.)
    if fwd == FWD_MASQ
        && schedule::usable_dest(dest_id, svc.id, |d| nat::reply_key(p, d.addr, rport)).is_none_or(|reply| {
            conn::create_reply_entry(&reply, svc.id, dest_id, p.dport, p.daddr.w[0], now).is_err()
        })
    {
        // Without its reply side a NAT connection would answer from the real server's address:
        // not at all, then.
        conn::remove(&key);
        bump(|g| &mut g.conn_insert_fail);
        return xdp_action::XDP_DROP;
    }
    bump(|g| &mut g.conn_new);
    h.dest_id = dest_id;
    h.rport = rport;
    // Its first packet is forwarded by xlb_fwd (as a new connection's).
    tail_call(ctx, TailProgram::Fwd);
    xdp_action::XDP_DROP
}

/// Sends a client packet of a connection to its real server by its method, and counts it
/// (`stats::count_forwarded`: for `new_conn` false, also its reception by `xlb_xdp`). `None`:
/// the real server was deleted (nothing counted).
#[inline(always)]
fn forward(ctx: &XdpContext, p: &Pkt, svc_id: u32, dest_id: u32, rport: u16, new_conn: bool, now: u64) -> Option<u32> {
    let (rip, fwd, tun) = schedule::usable_dest(dest_id, svc_id, |d| (d.addr.w[0], d.fwd, tun::tun_kind(d)))?;
    let t = xmit::Target { dest_id, rip, ingress: ingress(ctx), now };
    let v = forward_to(ctx, p, &t, fwd, tun, rport);
    Some(stats::count_forwarded(svc_id, dest_id, p.ip_len, new_conn, v))
}

#[inline(always)]
fn forward_to(ctx: &XdpContext, p: &Pkt, t: &xmit::Target, fwd: u8, tun_type: u8, rport: u16) -> u32 {
    if p.ttl <= 1 {
        return icmp::time_exceeded(ctx);
    }
    match fwd {
        FWD_DROUTE => dr::forward(ctx, t),
        FWD_TUNNEL if tun_type != TUN_TYPE_IPIP => tun::forward_other(ctx, t, tun_type),
        FWD_TUNNEL => tun::forward(ctx, t, p.ip_len, p.ttl, p.daddr.w[0]),
        FWD_MASQ => nat::request(ctx, p, t, rport),
        // LOCAL: the director itself serves it.
        _ => xdp_action::XDP_PASS,
    }
}

#[classifier]
pub fn xlb_tc_neigh(ctx: TcContext) -> i32 {
    tc_neigh::run(&ctx)
}

#[xdp]
pub fn xlb_decap(ctx: XdpContext) -> u32 {
    decap::run(&ctx)
}

/// Feature probe: does `bpf_fib_lookup` take BPF_FIB_LOOKUP_SRC? (see probe.rs)
#[xdp]
pub fn xlb_probe_fib_src(ctx: XdpContext) -> u32 {
    probe::fib_src(&ctx)
}

/// Feature probe: loads only where the kernel has `bpf_loop`.
#[xdp]
pub fn xlb_probe_loop(_ctx: XdpContext) -> u32 {
    probe::has_loop()
}

#[xdp]
pub fn xlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The host build (clippy, tests) is a program like any other; the panic handler of the BPF
/// build is lb-ebpf's lib's.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
