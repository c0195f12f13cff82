//! Per-CPU counters: per service, per real server, and global verdicts.
use aya_ebpf::bindings::xdp_action;
use lb_common::{GlobalStats, Stats};

use crate::maps::{XLB_DEST_STATS, XLB_GLOBAL_STATS, XLB_SVC_STATS};

/// Runs `f` on this CPU's global counters (nothing when the map has no entry).
#[inline(always)]
fn with_global(f: impl FnOnce(&mut GlobalStats)) {
    if let Some(g) = XLB_GLOBAL_STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU array value of this CPU, valid for the program run; a BPF program
        // is not preempted on its CPU, and the borrow ends with `f`, so nothing else touches it.
        f(unsafe { &mut *g })
    }
}

/// Runs `f` on one map value of a per-CPU counter array.
#[inline(always)]
fn with_stats(p: Option<*mut Stats>, f: impl FnOnce(&mut Stats)) {
    if let Some(s) = p {
        // SAFETY: as in `with_global`: this CPU's value, valid and ours alone while `f` runs.
        f(unsafe { &mut *s })
    }
}

/// Counts verdict `v`; with `rx`, also the packet's reception (`xlb_xdp`'s own packets).
/// Returns `v`. (One access per verdict arm: one access choosing among the counters compiles
/// to a computed field offset, which the verifier cannot bound.)
#[inline(always)]
pub fn count_verdict(v: u32, rx: bool) -> u32 {
    if rx {
        bump(|g| &mut g.rx);
    }
    match v {
        xdp_action::XDP_PASS => bump(|g| &mut g.pass),
        xdp_action::XDP_TX => bump(|g| &mut g.tx),
        xdp_action::XDP_REDIRECT => bump(|g| &mut g.redirect),
        _ => bump(|g| &mut g.drop),
    }
    v
}

/// A packet `xlb_xdp` received and passed to the kernel untouched, the common case of traffic
/// for no service: both counters in one access.
#[inline(always)]
pub fn received_passed() -> u32 {
    with_global(|g| {
        g.rx += 1;
        g.pass += 1;
    });
    xdp_action::XDP_PASS
}

/// A packet `xlb_xdp` received and found malformed: passed to the kernel, in one access.
#[inline(always)]
pub fn received_malformed() -> u32 {
    with_global(|g| {
        g.rx += 1;
        g.parse_fail += 1;
        g.pass += 1;
    });
    xdp_action::XDP_PASS
}

/// A client packet of a connection, handled with verdict `v`: IPVS's in-stats of its service,
/// real server and the totals (`ip_vs_in_stats`, and `ip_vs_conn_stats` for a new connection),
/// with, for an established connection's packet (`xlb_xdp`'s own), its reception and the
/// connection hit in the same access of the global counters; then the verdict. Returns `v`.
#[inline(always)]
pub fn count_forwarded(svc_id: u32, dest_id: u32, ip_len: u16, new_conn: bool, v: u32) -> u32 {
    let bytes = ip_len as u64;
    with_stats(XLB_SVC_STATS.get_ptr_mut(svc_id), |s| add_in(s, bytes, new_conn));
    with_stats(XLB_DEST_STATS.get_ptr_mut(dest_id), |s| add_in(s, bytes, new_conn));
    with_global(|g| {
        add_in(&mut g.total, bytes, new_conn);
        if !new_conn {
            g.rx += 1;
            g.conn_hit += 1;
        }
    });
    count_verdict(v, false)
}

/// Bumps a global counter chosen by `f`.
#[inline(always)]
pub fn bump(f: impl FnOnce(&mut GlobalStats) -> &mut u64) {
    with_global(|g| *f(g) += 1);
}

#[inline(always)]
fn add_in(s: &mut Stats, bytes: u64, new_conn: bool) {
    s.inpkts += 1;
    s.inbytes += bytes;
    if new_conn {
        s.conns += 1;
    }
}

#[inline(always)]
fn add_out(s: &mut Stats, bytes: u64) {
    s.outpkts += 1;
    s.outbytes += bytes;
}

/// Counts one server-to-client packet (NAT replies: IPVS's `ip_vs_out_stats`).
#[inline(always)]
pub fn count_out(svc_id: u32, dest_id: u32, ip_len: u16) {
    let bytes = ip_len as u64;
    with_stats(XLB_SVC_STATS.get_ptr_mut(svc_id), |s| add_out(s, bytes));
    with_stats(XLB_DEST_STATS.get_ptr_mut(dest_id), |s| add_out(s, bytes));
    with_global(|g| add_out(&mut g.total, bytes));
}
