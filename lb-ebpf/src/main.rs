//! xlb's data plane.
//!
//! `xlb_xdp`: parse -> connection table -> (new flow) virtual service + scheduler -> forward by
//! the real server's method -> counters. `xlb_tc_neigh`: the unresolved-neighbour slow path.
//! `xlb_pass`: a do-nothing XDP program (veth peers need one to receive XDP_TX frames; also the
//! benchmark floor).
#![no_std]
#![no_main]
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod atomic;
mod conn;
mod dr;
mod maps;
mod nexthop;
mod parse;
mod schedule;
mod stats;
mod tc_neigh;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use lb_common::{tcp_state::TCP_FLAG_RST, tcp_state::TCP_FLAG_SYN, FWD_DROUTE, FWD_TUNNEL, IPPROTO_TCP};

use crate::{
    maps::XLB_CONNS,
    parse::{parse, Parsed},
    stats::bump,
};

#[xdp]
pub fn xlb_xdp(ctx: XdpContext) -> u32 {
    let verdict = balance(&ctx);
    match verdict {
        xdp_action::XDP_PASS => bump(|g| &mut g.pass),
        xdp_action::XDP_TX => bump(|g| &mut g.tx),
        xdp_action::XDP_REDIRECT => bump(|g| &mut g.redirect),
        _ => bump(|g| &mut g.drop),
    }
    verdict
}

#[inline(always)]
fn balance(ctx: &XdpContext) -> u32 {
    bump(|g| &mut g.rx);
    let p = match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ok(p) => p,
        Parsed::Other => return xdp_action::XDP_PASS,
        Parsed::Malformed => {
            bump(|g| &mut g.parse_fail);
            return xdp_action::XDP_PASS;
        }
    };
    let now = conn::now();
    let key = conn::key_in(&p);
    let mut new_conn = false;
    let (svc_id, dest_id) = match XLB_CONNS.get_ptr_mut(&key) {
        Some(c) if !conn::expired(unsafe { &*c }, now) => {
            let c = unsafe { &mut *c };
            conn::on_packet(c, &p, now);
            bump(|g| &mut g.conn_hit);
            (c.svc_id, c.dest_id)
        }
        stale => {
            let Some(m) = schedule::find_service(&p) else {
                return xdp_action::XDP_PASS;
            };
            // Only a SYN opens a TCP connection (sloppy_tcp=0); anything else without a
            // connection goes to the local stack as with IPVS.
            if p.proto == IPPROTO_TCP && p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST) != TCP_FLAG_SYN {
                return xdp_action::XDP_PASS;
            }
            if let Some(old) = stale {
                conn::uncount(unsafe { &*old });
            }
            let Some(dest_id) = schedule::choose_dest(&m, &p, now) else {
                bump(|g| &mut g.no_dest);
                return xdp_action::XDP_DROP;
            };
            let Some(dest) = schedule::usable_dest(dest_id, m.svc.id) else {
                bump(|g| &mut g.no_dest);
                return xdp_action::XDP_DROP;
            };
            let no_output = dest.fwd == FWD_DROUTE || dest.fwd == FWD_TUNNEL;
            if conn::create(&key, &p, m.svc.id, dest_id, no_output, now).is_err() {
                bump(|g| &mut g.conn_insert_fail);
                return xdp_action::XDP_DROP;
            }
            bump(|g| &mut g.conn_new);
            new_conn = true;
            (m.svc.id, dest_id)
        }
    };
    // A connection whose real server was deleted: dropped (expire_nodest_conn = 0).
    let Some(dest) = schedule::usable_dest(dest_id, svc_id) else {
        return xdp_action::XDP_DROP;
    };
    stats::count_in(svc_id, dest_id, p.ip_len, new_conn);
    if p.ttl <= 1 {
        return xdp_action::XDP_DROP;
    }
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    match dest.fwd {
        FWD_DROUTE => match nexthop::resolve(ctx.as_ptr(), dest_id, dest, ifindex, now) {
            Some(nh) => dr::xmit(ctx.data(), ctx.data_end(), &nh, ifindex),
            None => xdp_action::XDP_PASS,
        },
        // TUN and NAT are not implemented in the data plane yet: never forward what we
        // cannot forward correctly.
        _ => xdp_action::XDP_DROP,
    }
}

#[classifier]
pub fn xlb_tc_neigh(ctx: TcContext) -> i32 {
    tc_neigh::run(&ctx)
}

#[xdp]
pub fn xlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
