//! The IPv6 connection table (`XLB_CONNS6`): conn.rs's rules (states, timeouts, counts) on keys
//! with IPv6 addresses. The state machine and the count changes are conn.rs's own functions;
//! only the table differs. (No half-open eviction ring for IPv6 yet: a full IPv6 table refuses
//! new connections, counted as `conn_insert_fail`.)
use lb_common::{
    tcp_state::{NEW_CONN_TIMEOUT, STATE_NONE, STATE_UDP},
    Addr, Conn, Conn6, ConnKey6, Held, CONN_F_INACTIVE, CONN_KIND_IN, FWD_MASQ, IPPROTO_TCP,
};

use crate::{
    conn::{bind, input_dir, transition, uncount, with_config},
    maps::{XLB_CONNS6, XLB_DESTS},
    parse::Pkt,
};

#[inline(always)]
pub fn key_in6(p: &Pkt) -> ConnKey6 {
    ConnKey6 { caddr: p.saddr, vaddr: p.daddr, cport: p.sport, vport: p.dport, proto: p.proto, kind: CONN_KIND_IN, _pad: 0 }
}

/// The entry of `key`, as a [`Conn`] (its first field).
#[inline(always)]
pub fn get6(key: &ConnKey6) -> Option<*mut Conn> {
    XLB_CONNS6.get_ptr_mut(key).map(|c| c as *mut Conn)
}

#[inline(always)]
fn insert6(key: &ConnKey6, c: &Conn, vip: Addr) -> Result<(), ()> {
    XLB_CONNS6.insert(key, &Conn6 { c: *c, vip }, 0).map_err(|_| ())
}

/// A NAT connection's reply-side entry (see `conn::create_reply_entry`); the VIP goes in
/// `Conn6::vip`.
#[inline(always)]
pub fn create_reply_entry6(key: &ConnKey6, svc_id: u32, dest_id: u32, vport: u16, vip: &Addr, now: u64) -> Result<(), ()> {
    let c = Conn { dest_id, svc_id, last_seen: now, timeout: 0, state: 0, flags: 0, port: vport };
    insert6(key, &c, *vip)
}

/// `conn::create` for the IPv6 table.
#[inline(always)]
pub fn create6(key: &ConnKey6, p: &Pkt, svc_id: u32, dest_id: u32, port: u16, flags: u8, now: u64) -> Result<(), ()> {
    let mut c = Conn {
        dest_id,
        svc_id,
        last_seen: now,
        timeout: NEW_CONN_TIMEOUT,
        state: STATE_NONE,
        flags: CONN_F_INACTIVE | flags,
        port,
    };
    if p.proto != IPPROTO_TCP {
        c.state = STATE_UDP;
        if let Some(t) = with_config(|cfg| cfg.timeouts[STATE_UDP as usize]) {
            c.timeout = t;
        }
    }
    let dir = input_dir(&c);
    let _ = transition(&mut c, p, now, dir);
    bind(dest_id, Held::of(CONN_KIND_IN, c.flags));
    if insert6(key, &c, Addr::ZERO).is_err() {
        uncount(&c);
        return Err(());
    }
    Ok(())
}

/// `conn::end_stale` for the IPv6 table.
#[inline(always)]
pub fn end_stale6(key: &ConnKey6, c: &Conn) {
    let c = *c;
    if XLB_CONNS6.remove(key).is_ok() {
        uncount(&c);
    }
}

/// `conn::remove` for the IPv6 table.
#[inline(always)]
pub fn remove6(key: &ConnKey6) {
    // SAFETY: a hash map value stays valid until the program returns (RCU); read at once.
    if let Some(c) = unsafe { XLB_CONNS6.get(key) } {
        let c = c.c;
        expire_now6(key, &c);
    }
}

/// `conn::expire_now` for the IPv6 table: the entry, its NAT reply side, its count.
#[inline(always)]
pub fn expire_now6(key: &ConnKey6, c: &Conn) -> bool {
    if XLB_CONNS6.remove(key).is_err() {
        return false;
    }
    uncount(c);
    if let Some(d) = XLB_DESTS.get(c.dest_id)
        && d.fwd == FWD_MASQ
    {
        let reply = key.reply_side(d.addr, c.port);
        // SAFETY: a hash map value stays valid until the program returns (RCU); read at once.
        if unsafe { XLB_CONNS6.get(&reply) }
            .is_some_and(|r| r.c.dest_id == c.dest_id && r.vip == key.vaddr && r.c.port == key.vport)
        {
            let _ = XLB_CONNS6.remove(&reply);
        }
    }
    true
}
