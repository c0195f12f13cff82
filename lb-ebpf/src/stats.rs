//! Per-CPU counters: per service, per real server, and global verdicts.
use lb_common::{GlobalStats, Stats};

use crate::maps::{XLB_DEST_STATS, XLB_GLOBAL_STATS, XLB_SVC_STATS};

#[inline(always)]
pub fn global() -> Option<&'static mut GlobalStats> {
    XLB_GLOBAL_STATS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Bumps a global counter chosen by `f`.
#[inline(always)]
pub fn bump(f: impl FnOnce(&mut GlobalStats) -> &mut u64) {
    if let Some(g) = global() {
        *f(g) += 1;
    }
}

#[inline(always)]
fn add_in(s: &mut Stats, bytes: u64, new_conn: bool) {
    s.inpkts += 1;
    s.inbytes += bytes;
    if new_conn {
        s.conns += 1;
    }
}

/// Counts one client-to-server packet of `ip_len` bytes against its service, real server and
/// the global totals (IPVS's `ip_vs_in_stats`, plus `ip_vs_conn_stats` for a new connection).
#[inline(always)]
pub fn count_in(svc_id: u32, dest_id: u32, ip_len: u16, new_conn: bool) {
    let bytes = ip_len as u64;
    if let Some(s) = XLB_SVC_STATS.get_ptr_mut(svc_id) {
        add_in(unsafe { &mut *s }, bytes, new_conn);
    }
    if let Some(s) = XLB_DEST_STATS.get_ptr_mut(dest_id) {
        add_in(unsafe { &mut *s }, bytes, new_conn);
    }
    if let Some(g) = global() {
        add_in(&mut g.total, bytes, new_conn);
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
    if let Some(s) = XLB_SVC_STATS.get_ptr_mut(svc_id) {
        add_out(unsafe { &mut *s }, bytes);
    }
    if let Some(s) = XLB_DEST_STATS.get_ptr_mut(dest_id) {
        add_out(unsafe { &mut *s }, bytes);
    }
    if let Some(g) = global() {
        add_out(&mut g.total, bytes);
    }
}
