//! Sending a finished frame toward a next hop: straight from XDP when the kernel gave the full
//! answer (XDP_TX on the ingress interface, XDP_REDIRECT to another), else the tc slow path.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use network_types::eth::EthHdr;

use lb_common::{
    neigh_xdp_egress, DestNeigh, IFACE_XDP_NATIVE, IFACE_XDP_NONE, IFACE_XDP_SKB, NEIGH_F_RESOLVED, NEIGH_F_ROUTED,
    NEIGH_F_XDP_EGRESS,
};

use crate::{
    maps::XLB_IFACES,
    nexthop::{slow_path, Route},
    parse::header,
    stats::bump,
};

/// Where a packet of a connection goes: its real server (id and IPv4 address), and the
/// context of the decision (BPF functions take at most five arguments: they travel together).
pub struct Target {
    pub dest_id: u32,
    pub rip: u32,
    pub ingress: u32,
    pub now: u64,
}

/// Whether an XDP_REDIRECT from `ingress` to `egress` is delivered. A native-mode redirect
/// needs an egress driver that transmits XDP frames, which a bridge (or a veth whose peer runs
/// no XDP program) does not: the frame would be counted as redirected and lost. So XDP sends
/// only to interfaces xlb is attached to natively, or from one attached in skb mode (whose
/// redirects use the kernel's transmit path); any other egress takes the tc slow path.
#[inline(always)]
fn can_redirect(ingress: u32, n: &DestNeigh) -> bool {
    // Cached with the next hop while no attachment changed since: no lookup per packet.
    let cached = n.flags & NEIGH_F_XDP_EGRESS != 0
        && crate::conn::with_config(|c| neigh_xdp_egress(n.flags, c.iface_gen)).unwrap_or(false);
    cached || xdp_mode(n.ifindex) == IFACE_XDP_NATIVE || xdp_mode(ingress) == IFACE_XDP_SKB
}

/// How xlb is attached to interface `ifindex` (`IFACE_XDP_*`, from `XLB_IFACES`).
#[inline(always)]
pub fn xdp_mode(ifindex: u32) -> u32 {
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    unsafe { XLB_IFACES.get(&ifindex) }.map_or(IFACE_XDP_NONE, |f| f.xdp)
}

#[inline(always)]
pub fn send(ctx: &XdpContext, route: &Route, ingress: u32) -> u32 {
    send_with(ctx, route, ingress, |ifindex, nh| slow_path(ctx, ifindex, *nh))
}

/// Where an IPv6 packet of a connection goes (see [`Target`]).
pub struct Target6 {
    pub dest_id: u32,
    pub rip: lb_common::Addr,
    pub ingress: u32,
    pub now: u64,
}

/// Whether a next-hop answer of `nexthop::to_dest6`/`to_addr6` can be sent to (directly or by
/// the slow path).
#[inline(always)]
pub fn routable6(n: Option<*const DestNeigh>) -> bool {
    // SAFETY: the answer points into a map value (a cache entry or this CPU's scratch), valid
    // for the run.
    n.is_some_and(|n| unsafe { (*n).flags } & (NEIGH_F_RESOLVED | NEIGH_F_ROUTED) != 0)
}

/// [`send`] for an IPv6 frame, by the next-hop answer `n` (see `nexthop::to_dest6`). Its
/// slow-path mark cannot hold an IPv6 next hop, so it names it by `slow_nh`
/// (`lb_common::SlowPathMark::nh`: dest id + 1, whose cached next hop the tc program reads, or
/// 0 for the packet's own destination).
#[inline(always)]
pub fn send6(ctx: &XdpContext, n: Option<*const DestNeigh>, ingress: u32, slow_nh: u32) -> u32 {
    let slow = |ifindex: u32| slow_path(ctx, ifindex, lb_common::Addr::v4(slow_nh));
    let Some(n) = n else {
        bump(|g| &mut g.no_route);
        return xdp_action::XDP_DROP;
    };
    // SAFETY: as in `routable6`.
    let (flags, ifindex) = unsafe { ((*n).flags, (*n).ifindex) };
    if flags & NEIGH_F_RESOLVED != 0 {
        send_with(ctx, &Route::Direct(n), ingress, |ifindex, _| slow(ifindex))
    } else if flags & NEIGH_F_ROUTED != 0 {
        slow(ifindex)
    } else {
        bump(|g| &mut g.no_route);
        xdp_action::XDP_DROP
    }
}

/// [`send`], handing a frame for the tc slow path to `slow` (egress, next hop).
#[inline(always)]
fn send_with(ctx: &XdpContext, route: &Route, ingress: u32, slow: impl FnOnce(u32, &lb_common::Addr) -> u32) -> u32 {
    match route {
        Route::Direct(n) => {
            // SAFETY: a Direct route points into a map value (the per-dest cache or this CPU's
            // scratch), valid for the run.
            let n = unsafe { &**n };
            let tx = n.ifindex == ingress;
            if !tx && !can_redirect(ingress, n) {
                return slow(n.ifindex, &n.nh);
            }
            let Some(eth) = header::<EthHdr>(ctx.data(), ctx.data_end(), 0) else {
                return xdp_action::XDP_ABORTED;
            };
            // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while
            // this lives.
            // (Copied as non-overlapping bytes: an assignment between two pointers is a
            // memmove, which the BPF backend does not inline but calls, byte by byte.)
            unsafe {
                core::ptr::copy_nonoverlapping(n.dmac.as_ptr(), (*eth).dst_addr.as_mut_ptr(), 6);
                core::ptr::copy_nonoverlapping(n.smac.as_ptr(), (*eth).src_addr.as_mut_ptr(), 6);
            }
            if tx {
                xdp_action::XDP_TX
            } else {
                // SAFETY: a helper taking plain integers.
                unsafe { aya_ebpf::helpers::bpf_redirect(n.ifindex, 0) as u32 }
            }
        }
        Route::Slow { ifindex, nh, .. } => slow(*ifindex, nh),
        Route::None => {
            bump(|g| &mut g.no_route);
            xdp_action::XDP_DROP
        }
    }
}
