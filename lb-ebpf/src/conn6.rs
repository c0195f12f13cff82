//! The IPv6 connection table (`XLB_CONNS6`): conn.rs's rules (states, timeouts, counts) on keys
//! with IPv6 addresses. The state machine and the count changes are conn.rs's own functions;
//! only the table differs, and so does its ring of recently opened TCP connections
//! (`XLB_HALF_OPEN6`): a full IPv6 table makes room by evicting the oldest one still half-open,
//! as the IPv4 table does (`conn::evict_half_open`).
use lb_common::{
    tcp_state::{NEW_CONN_TIMEOUT, STATE_NONE, STATE_SYN_RECV, STATE_UDP},
    Addr, Conn, Conn6, ConnKey6, HalfOpenCursor, Held, CONN_F_INACTIVE, CONN_KIND_IN, FWD_MASQ, HALF_OPEN_SLOTS, IPPROTO_TCP,
};

use crate::{
    atomic,
    conn::{bind, input_dir, transition, uncount, with_config},
    maps::{XLB_CONNS6, XLB_DESTS, XLB_HALF_OPEN6, XLB_HALF_OPEN6_CURSOR},
    parse::Pkt,
    stats::bump,
};

/// How many of the oldest remembered connections one full-table insert looks at.
const EVICT_TRIES: u32 = 4;

#[inline(always)]
pub fn key_in6(p: &Pkt) -> ConnKey6 {
    ConnKey6 { caddr: p.saddr, vaddr: p.daddr, cport: p.sport, vport: p.dport, proto: p.proto, kind: CONN_KIND_IN, _pad: 0 }
}

/// The entry of `key`, as a [`Conn`] (its first field).
#[inline(always)]
pub fn get6(key: &ConnKey6) -> Option<*mut Conn> {
    XLB_CONNS6.get_ptr_mut(key).map(|c| c as *mut Conn)
}

/// Inserts a new entry; a full table first makes room by evicting a half-open connection
/// ([`evict_half_open6`]).
#[inline(always)]
fn insert6(key: &ConnKey6, c: &Conn, vip: Addr) -> Result<(), ()> {
    let v = Conn6 { c: *c, vip };
    if XLB_CONNS6.insert(key, &v, 0).is_ok() || (evict_half_open6() && XLB_CONNS6.insert(key, &v, 0).is_ok()) {
        Ok(())
    } else {
        Err(())
    }
}

#[inline(always)]
fn ring_slot(n: u64) -> u32 {
    (n as u32) & (HALF_OPEN_SLOTS - 1)
}

#[inline(always)]
fn cursor6() -> Option<*mut HalfOpenCursor> {
    XLB_HALF_OPEN6_CURSOR.get_ptr_mut(0)
}

/// `conn::note_half_open` for the IPv6 table.
#[inline(always)]
fn note_half_open6(key: &ConnKey6) {
    let Some(cur) = cursor6() else { return };
    // SAFETY: the cursor's value (an array: valid for the run); addr_of_mut! only computes the
    // field's address.
    let n = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*cur).head) }, 1);
    if let Some(slot) = XLB_HALF_OPEN6.get_ptr_mut(ring_slot(n)) {
        // SAFETY: a value of XLB_HALF_OPEN6 from a successful lookup, valid for the run; a key
        // torn by a concurrent write matches no connection. (Copied as bytes that do not
        // overlap: an assignment between two pointers is a memmove call.)
        unsafe { core::ptr::copy_nonoverlapping(key, slot, 1) };
    }
}

/// `conn::evict_half_open` for the IPv6 table: removes the oldest remembered connection still
/// half-open (SYN_RECV), with its NAT reply side, giving back its count. True when a slot was
/// freed.
#[inline(always)]
fn evict_half_open6() -> bool {
    let Some(cur) = cursor6() else { return false };
    for _ in 0..EVICT_TRIES {
        // SAFETY: as in `conn::evict_half_open`: plain reads racing other CPUs' atomic adds.
        let (head, tail) = unsafe { ((*cur).head, (*cur).tail) };
        if tail >= head {
            return false;
        }
        if head - tail > HALF_OPEN_SLOTS as u64 {
            // SAFETY: as above.
            unsafe { (*cur).tail = head - HALF_OPEN_SLOTS as u64 };
            continue;
        }
        // SAFETY: as above; addr_of_mut! only computes the field's address.
        let t = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*cur).tail) }, 1);
        let Some(slot) = XLB_HALF_OPEN6.get_ptr(ring_slot(t)) else {
            return false;
        };
        // Copied out: another CPU may write the slot meanwhile, and the key looked up must be the
        // key removed.
        let mut k = ConnKey6::default();
        // SAFETY: a value of XLB_HALF_OPEN6 (an array: valid for the run) and a local, distinct.
        unsafe { core::ptr::copy_nonoverlapping(slot, &mut k, 1) };
        let key = &k;
        let Some(c) = get6(key) else { continue };
        // SAFETY: a value of XLB_CONNS6 from a successful lookup, valid for the run; copied.
        let c = unsafe { *c };
        if key.kind != CONN_KIND_IN || c.state != STATE_SYN_RECV {
            continue;
        }
        if !expire_now6(key, &c) {
            continue;
        }
        bump(|g| &mut g.conn_evicted);
        return true;
    }
    false
}

/// A NAT connection's reply-side entry (see `conn::create_reply_entry`); the VIP goes in
/// `Conn6::vip`.
#[inline(always)]
pub fn create_reply_entry6(key: &ConnKey6, svc_id: u32, dest_id: u32, vport: u16, vip: &Addr, now: u64) -> Result<(), ()> {
    let c = Conn { dest_id, svc_id, last_seen: now, timeout: 0, port: vport, ..Conn::default() };
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
        ..Conn::default()
    };
    if p.proto != IPPROTO_TCP {
        c.state = STATE_UDP;
        if let Some(t) = with_config(|cfg| cfg.timeouts[STATE_UDP as usize]) {
            c.timeout = t;
        }
    }
    let dir = input_dir(&c);
    let _ = transition(&mut c, p, now, dir);
    let send = crate::sync::count_input(&mut c, p.proto, now);
    bind(dest_id, Held::of(CONN_KIND_IN, c.flags));
    if insert6(key, &c, Addr::ZERO).is_err() {
        uncount(&c);
        return Err(());
    }
    if send {
        crate::sync::queue(key);
    }
    if p.proto == IPPROTO_TCP {
        note_half_open6(key);
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
