//! Where to send a packet next, from the kernel's FIB and neighbour table.
//!
//! The data plane never keeps a MAC address of its own invention: it asks `bpf_fib_lookup` and
//! caches the answer per real server for `NEIGH_TTL_NS`, so a changed neighbour entry is followed
//! within that time. When the kernel knows the route but has no neighbour entry yet, the packet
//! is handed to the kernel (XDP_PASS) with a mark naming the egress and the next hop, and the
//! `xlb_tc_neigh` classifier sends it with `bpf_redirect_neigh`, which resolves the neighbour the
//! normal way: the first packets are delayed, never black-holed.
//!
//! `bpf_fib_lookup` refuses to answer on an interface with forwarding disabled; then the next
//! hop is taken to be on the ingress link (as it is for DR, and for a one-armed director), and
//! packets take the same slow path: correct, at the kernel's speed (`lbd attach` warns).
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, BPF_FIB_LOOKUP_SRC,
    },
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
    EbpfContext,
};
use lb_common::{
    Addr, DestNeigh, SlowPathMark, AF_INET, AF_INET6, CFG_F_FIB_SRC, IFACE_XDP_NATIVE, NEIGH_F_RESOLVED, NEIGH_F_ROUTED,
    NEIGH_F_XDP_EGRESS, NEIGH_RETRY_NS, neigh_gen,
    NEIGH_TTL_NS,
};

use crate::{
    maps::{XLB_CLIENT_NEIGH, XLB_CLIENT_NEIGH6, XLB_DEST_NEIGH, XLB_IFACES},
    parse::header,
    xmit,
};

/// How to reach a next hop.
pub enum Route {
    /// Send from XDP: MACs, egress and route MTU known (points into a map: the per-dest cache,
    /// or this CPU's scratch entry).
    Direct(*const DestNeigh),
    /// Hand to the tc slow path: out `ifindex` toward `nh`, neighbour to be resolved; `src` is
    /// the source address of that route (0: unknown).
    Slow { ifindex: u32, nh: Addr, src: u32 },
    /// No route: drop.
    None,
}

/// Per-CPU scratch memory: the FIB lookup's parameters and an uncached answer live here, not on
/// the 512-byte BPF stack.
#[repr(C)]
pub struct Scratch {
    pub fib: bpf_fib_lookup,
    pub neigh: DestNeigh,
}

#[map]
static XLB_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Asks the kernel's FIB for `dst`; the parameters and results are in `f`.
#[inline(always)]
fn fib(ctx: *mut core::ffi::c_void, f: &mut bpf_fib_lookup, dst: u32, ifindex: u32, want_src: bool) -> i64 {
    f.family = AF_INET;
    f.l4_protocol = 0;
    f.sport = 0;
    f.dport = 0;
    f.__bindgen_anon_1.tot_len = 0;
    f.ifindex = ifindex;
    f.__bindgen_anon_2.flowinfo = 0;
    f.__bindgen_anon_3.ipv6_src = [0; 4];
    f.__bindgen_anon_4.ipv6_dst = [dst, 0, 0, 0];
    f.__bindgen_anon_5.tbid = 0;
    // Ingress view (the packet is forwarded, from the interface it came in on): any egress
    // interface. SRC also asks for the source address the route prefers (the outer source of
    // IPIP).
    // BPF_FIB_LOOKUP_SRC exists from 6.7 on; older kernels refuse the whole lookup with it.
    let flags = if want_src && crate::conn::with_config(|c| c.flags & CFG_F_FIB_SRC != 0).unwrap_or(false) {
        BPF_FIB_LOOKUP_SRC
    } else {
        0
    };
    // SAFETY: `ctx` is this program's context and `f` a parameter block of the size given, on this
    // CPU's scratch entry.
    unsafe { aya_ebpf::helpers::bpf_fib_lookup(ctx, f, core::mem::size_of::<bpf_fib_lookup>() as i32, flags) }
}

fn answer(rc: i64, f: &bpf_fib_lookup, dst: u32, ingress: u32, now: u64) -> DestNeigh {
    // SAFETY: a union of plain integers: any bit pattern is valid.
    let nh = Addr::v4(unsafe { f.__bindgen_anon_4.ipv4_dst });
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        let iface_gen = neigh_gen(crate::conn::with_config(|c| c.iface_gen).unwrap_or(0));
        let egress = if xmit::xdp_mode(f.ifindex) == IFACE_XDP_NATIVE { NEIGH_F_XDP_EGRESS } else { 0 };
        return DestNeigh {
            dmac: f.dmac,
            smac: f.smac,
            ifindex: f.ifindex,
            // SAFETY: a union of plain integers: any bit pattern is valid.
            mtu: unsafe { f.__bindgen_anon_1.mtu_result } as u32,
            flags: NEIGH_F_RESOLVED | egress | iface_gen,
            nh,
            // SAFETY: a union of plain integers: any bit pattern is valid.
            src: Addr::v4(unsafe { f.__bindgen_anon_3.ipv4_src }),
            expires: now + NEIGH_TTL_NS,
        };
    }
    let no_route = rc == BPF_FIB_LKUP_RET_BLACKHOLE as i64
        || rc == BPF_FIB_LKUP_RET_UNREACHABLE as i64
        || rc == BPF_FIB_LKUP_RET_PROHIBIT as i64;
    let (flags, ifindex, nh) = if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        (NEIGH_F_ROUTED, f.ifindex, nh)
    } else if no_route {
        (0, 0, nh)
    } else {
        // Forwarding disabled (or no source address): assume the ingress link.
        (NEIGH_F_ROUTED, ingress, Addr::v4(dst))
    };
    DestNeigh { ifindex, flags, nh, expires: now + NEIGH_RETRY_NS, ..DestNeigh::default() }
}

#[inline(always)]
fn route_of(n: &DestNeigh) -> Route {
    if n.flags & NEIGH_F_RESOLVED != 0 {
        Route::Direct(n as *const DestNeigh)
    } else if n.flags & NEIGH_F_ROUTED != 0 {
        Route::Slow { ifindex: n.ifindex, nh: n.nh, src: n.src.w[0] }
    } else {
        Route::None
    }
}

/// The next hop toward real server `dest_id` at `dst`, cached per dest.
#[inline(always)]
pub fn to_dest(ctx: &XdpContext, dest_id: u32, dst: u32, ingress: u32, want_src: bool, now: u64) -> Route {
    let Some(cache) = XLB_DEST_NEIGH.get_ptr_mut(dest_id) else {
        return Route::None;
    };
    // SAFETY: a value of XLB_DEST_NEIGH (an array: never freed), valid for the program run.
    // Another CPU may refresh the same entry meanwhile: both write an answer of the kernel's FIB,
    // and a torn read only sends one packet by a mix of two answers (as before the cache).
    let cached = unsafe { &mut *cache };
    if cached.expires > now {
        return route_of(cached);
    }
    let Some(s) = XLB_SCRATCH.get_ptr_mut(0) else {
        return Route::None;
    };
    // SAFETY: this CPU's value of a per-CPU array, valid for the program run; a BPF program is
    // not preempted on its CPU, and nothing else borrows the entry while `s` lives (this call).
    let s = unsafe { &mut *s };
    let rc = fib(ctx.as_ptr(), &mut s.fib, dst, ingress, want_src);
    *cached = answer(rc, &s.fib, dst, ingress, now);
    // Without BPF_FIB_LOOKUP_SRC (before 6.7) the FIB gives no source: the egress interface's
    // primary address, as the kernel's source selection picks it for a directly reached real
    // server. Looked up here, with the cached answer, not per packet.
    if want_src && cached.src.w[0] == 0 && cached.ifindex != 0 {
        // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once,
        // not kept.
        cached.src = Addr::v4(unsafe { XLB_IFACES.get(&cached.ifindex) }.map_or(0, |f| f.addr));
    }
    route_of(cached)
}

/// Key of [`XLB_CLIENT_NEIGH`]: a client address and the interface its replies came in on (the
/// FIB is asked from that interface).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ClientKey {
    pub addr: u32,
    pub ingress: u32,
}

/// The next hop toward client `dst` (NAT replies), cached per (client, ingress) for
/// `NEIGH_TTL_NS` as answers for real servers are.
#[inline(always)]
pub fn to_addr(ctx: &XdpContext, dst: u32, ingress: u32, now: u64) -> Route {
    let key = ClientKey { addr: dst, ingress };
    if let Some(n) = XLB_CLIENT_NEIGH.get_ptr(&key) {
        // SAFETY: a value of an LRU hash map from a successful lookup: valid until the program
        // returns (RCU), even if evicted meanwhile; a concurrent refresh by another CPU writes
        // another answer of the FIB (a torn read sends one packet by a mix of two).
        let n = unsafe { &*n };
        if n.expires > now {
            return route_of(n);
        }
    }
    let Some(s) = XLB_SCRATCH.get_ptr_mut(0) else {
        return Route::None;
    };
    // SAFETY: as in `to_dest`: this CPU's entry, valid for the run, borrowed by this call alone.
    let s = unsafe { &mut *s };
    let rc = fib(ctx.as_ptr(), &mut s.fib, dst, ingress, false);
    // The answer stays in this CPU's scratch entry, which the route points to.
    s.neigh = answer(rc, &s.fib, dst, ingress, now);
    let _ = XLB_CLIENT_NEIGH.insert(&key, &s.neigh, 0);
    route_of(&s.neigh)
}

/// Hands the (already rewritten) frame to the kernel for the tc slow path: the mark naming the
/// egress and next hop takes the place of the MAC addresses (`lb_common::SlowPathMark`).
#[inline(always)]
pub fn slow_path(ctx: &XdpContext, ifindex: u32, nh: Addr) -> u32 {
    let Some(tag) = crate::conn::with_config(|c| c.slow_path_tag) else {
        return xdp_action::XDP_DROP;
    };
    let Some(m) = header::<SlowPathMark>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that the frame holds a SlowPathMark at offset 0.
    unsafe { *m = SlowPathMark { tag, ifindex, nh: nh.w[0] } };
    xdp_action::XDP_PASS
}

/// Asks the kernel's FIB for IPv6 destination `dst` (as [`fib`]; the route's source address
/// comes with the answer where the kernel gives it, BPF_FIB_LOOKUP_SRC).
#[inline(always)]
fn fib6(ctx: *mut core::ffi::c_void, f: &mut bpf_fib_lookup, dst: &Addr, ifindex: u32, want_src: bool) -> i64 {
    f.family = AF_INET6;
    f.l4_protocol = 0;
    f.sport = 0;
    f.dport = 0;
    f.__bindgen_anon_1.tot_len = 0;
    f.ifindex = ifindex;
    f.__bindgen_anon_2.flowinfo = 0;
    f.__bindgen_anon_3.ipv6_src = [0; 4];
    f.__bindgen_anon_4.ipv6_dst = dst.w;
    f.__bindgen_anon_5.tbid = 0;
    let flags = if want_src && crate::conn::with_config(|c| c.flags & CFG_F_FIB_SRC != 0).unwrap_or(false) {
        BPF_FIB_LOOKUP_SRC
    } else {
        0
    };
    // SAFETY: as in `fib`.
    unsafe { aya_ebpf::helpers::bpf_fib_lookup(ctx, f, core::mem::size_of::<bpf_fib_lookup>() as i32, flags) }
}

/// [`answer`] for an IPv6 lookup: the next hop and source are IPv6 addresses.
fn answer6(rc: i64, f: &bpf_fib_lookup, dst: &Addr, ingress: u32, now: u64) -> DestNeigh {
    // SAFETY: unions of plain integers: any bit pattern is valid.
    let (nh, src) = unsafe { (Addr::v6(f.__bindgen_anon_4.ipv6_dst), Addr::v6(f.__bindgen_anon_3.ipv6_src)) };
    let mut n = answer(rc, f, 0, ingress, now);
    // `answer` took the IPv4 fields: the next hop is the FIB's, or, with forwarding disabled
    // (routed to the ingress link), the destination itself.
    let on_ingress_link = n.flags & NEIGH_F_ROUTED != 0 && rc != BPF_FIB_LKUP_RET_NO_NEIGH as i64;
    n.nh = if on_ingress_link { *dst } else { nh };
    // (The kernel fills the source in before it looks for the neighbour: a route without a
    // neighbour entry yet has its source too, which an IPv4 service's tunnel to an IPv6 real
    // server, with no VIP of that family to fall back on, needs from the first packet.)
    let has_src = rc == BPF_FIB_LKUP_RET_SUCCESS as i64 || rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64;
    n.src = if has_src { src } else { Addr::ZERO };
    n
}

/// [`to_dest`] for an IPv6 real server `dst` (the same per-dest cache: dest ids are unique
/// across families): the cached answer itself (`xmit::send6` reads it), `None` without a cache
/// entry. (Not a [`Route`]: copies of an enum whose variants leave fields unset made LLVM
/// spill registers the verifier considers unset.)
#[inline(always)]
pub fn to_dest6(ctx: &XdpContext, dest_id: u32, dst: &Addr, ingress: u32, want_src: bool, now: u64) -> Option<*const DestNeigh> {
    let cache = XLB_DEST_NEIGH.get_ptr_mut(dest_id)?;
    // SAFETY: as in `to_dest`.
    let cached = unsafe { &mut *cache };
    if cached.expires > now {
        return Some(cached);
    }
    let s = XLB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: as in `to_dest`.
    let s = unsafe { &mut *s };
    let rc = fib6(ctx.as_ptr(), &mut s.fib, dst, ingress, want_src);
    *cached = answer6(rc, &s.fib, dst, ingress, now);
    // No source from the FIB (before 6.7): the egress interface's first global IPv6 address,
    // as `to_dest` takes its IPv4 one.
    if want_src && cached.src.w == [0; 4] && cached.ifindex != 0 {
        // SAFETY: a hash map value stays valid until the program returns (RCU); read at once.
        cached.src = unsafe { XLB_IFACES.get(&cached.ifindex) }.map_or(Addr::ZERO, |f| f.addr6);
    }
    Some(cached)
}

/// Key of [`XLB_CLIENT_NEIGH6`]: [`ClientKey`] with an IPv6 client.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ClientKey6 {
    pub addr: Addr,
    pub ingress: u32,
}

/// [`to_addr`] for IPv6 client `dst`: the answer (cached, or this CPU's scratch entry), as
/// [`to_dest6`].
#[inline(always)]
pub fn to_addr6(ctx: &XdpContext, dst: &Addr, ingress: u32, now: u64) -> Option<*const DestNeigh> {
    let key = ClientKey6 { addr: *dst, ingress };
    if let Some(n) = XLB_CLIENT_NEIGH6.get_ptr(&key) {
        // SAFETY: as in `to_addr`.
        if unsafe { (*n).expires } > now {
            return Some(n);
        }
    }
    let s = XLB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: as in `to_dest`.
    let s = unsafe { &mut *s };
    let rc = fib6(ctx.as_ptr(), &mut s.fib, dst, ingress, false);
    s.neigh = answer6(rc, &s.fib, dst, ingress, now);
    let _ = XLB_CLIENT_NEIGH6.insert(&key, &s.neigh, 0);
    Some(&s.neigh)
}
