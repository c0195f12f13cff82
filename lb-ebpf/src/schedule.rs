//! Virtual-service lookup and the choice of a real server for a new connection: persistence
//! templates first (IPVS `ip_vs_sched_persist`), then the service's scheduler.
use lb_common::{
    sched::{rr_slot, SCHED_RR},
    Conn, ConnKey, Dest, Service, ServiceKey, CONN_KIND_TEMPLATE, DEST_F_AVAILABLE, DEST_F_IN_USE,
    SVC_F_PERSISTENT,
};

use crate::{
    atomic,
    conn::expired,
    maps::{XLB_CONNS, XLB_DESTS, XLB_DEST_CONNS, XLB_SCHED_SLOTS, XLB_SERVICES, XLB_SVC_STATE},
    parse::Pkt,
};

/// A matched virtual service and the port its key has (`0` for an "all ports" service).
pub struct Matched {
    pub svc: &'static Service,
    pub port: u16,
}

/// IPVS `ip_vs_service_find`: the exact (proto, VIP, port) service, else the VIP's port-0
/// ("all ports") service.
#[inline(always)]
pub fn find_service(p: &Pkt) -> Option<Matched> {
    let mut key = ServiceKey { addr: p.daddr, port: p.dport, proto: p.proto, af: p.af };
    if let Some(svc) = unsafe { XLB_SERVICES.get(&key) } {
        return Some(Matched { svc, port: p.dport });
    }
    key.port = 0;
    unsafe { XLB_SERVICES.get(&key) }.map(|svc| Matched { svc, port: 0 })
}

/// A dest the data plane may send to: configured, linked to `svc_id`.
#[inline(always)]
pub fn usable_dest(dest_id: u32, svc_id: u32) -> Option<&'static Dest> {
    let d = XLB_DESTS.get(dest_id)?;
    let want = DEST_F_IN_USE | DEST_F_AVAILABLE;
    if d.flags & want == want && d.svc_id == svc_id { Some(d) } else { None }
}

/// Runs the service's scheduler. `None`: no usable real server.
#[inline(always)]
fn run_scheduler(svc: &Service) -> Option<u32> {
    if svc.sched_len == 0 {
        return None;
    }
    let slot = match svc.sched {
        SCHED_RR => {
            let st = XLB_SVC_STATE.get_ptr_mut(svc.id)?;
            let n = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*st).rr_next) }, 1);
            rr_slot(n, svc.sched_len)
        }
        _ => return None,
    };
    XLB_SCHED_SLOTS.get(svc.sched_off + slot).copied()
}

#[inline(always)]
fn persist_count(dest_id: u32, delta: i32) {
    if let Some(dc) = XLB_DEST_CONNS.get_ptr_mut(dest_id) {
        atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*dc).persist) }, delta as i64 as u64);
    }
}

/// The real server for a new connection of `p` to `svc`.
#[inline(always)]
pub fn choose_dest(m: &Matched, p: &Pkt, now: u64) -> Option<u32> {
    let svc = m.svc;
    if svc.flags & SVC_F_PERSISTENT == 0 {
        return run_scheduler(svc);
    }
    // Persistence template: one per (client & mask, VIP, service port or 0 for a port-0
    // service, protocol). FTP's control port keys as 0 like IPVS.
    let vport = if m.port == 21u16.to_be() { 0 } else { m.port };
    let key = ConnKey {
        caddr: p.saddr.masked(&svc.netmask),
        vaddr: p.daddr,
        cport: 0,
        vport,
        proto: p.proto,
        af: p.af,
        kind: CONN_KIND_TEMPLATE,
        _pad: 0,
    };
    if let Some(t) = XLB_CONNS.get_ptr_mut(&key) {
        let t = unsafe { &mut *t };
        if !expired(t, now) && usable_dest(t.dest_id, svc.id).is_some() {
            // A new connection through the template restarts its timer.
            t.last_seen = now;
            t.timeout = svc.timeout;
            return Some(t.dest_id);
        }
        persist_count(t.dest_id, -1);
        let _ = XLB_CONNS.remove(&key);
    }
    let dest_id = run_scheduler(svc)?;
    let t = Conn { dest_id, svc_id: svc.id, last_seen: now, timeout: svc.timeout, state: 0, flags: 0, port: 0 };
    if XLB_CONNS.insert(&key, &t, 0).is_ok() {
        persist_count(dest_id, 1);
    }
    Some(dest_id)
}
