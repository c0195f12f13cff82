//! The connection table: client 5-tuple -> real server, with IPVS's TCP states, timeouts and
//! per-dest ActiveConn/InActConn counts.
use lb_common::{
    tcp_state::{
        self, DIR_INPUT, DIR_INPUT_ONLY, DIR_OUTPUT, NEW_CONN_TIMEOUT, STATE_CLOSE, STATE_ESTABLISHED, STATE_FIN_WAIT, STATE_NONE,
        STATE_SYN_RECV, STATE_TIME_WAIT, STATE_UDP,
    },
    Config, Conn, ConnKey, HalfOpenCursor, Held, CONN_F_ASSURED, CONN_F_CONTROLLED, CONN_F_INACTIVE, CONN_F_NOOUTPUT, CONN_KIND_IN, FWD_MASQ,
    HALF_OPEN_SLOTS, IPPROTO_TCP,
};

use crate::{
    atomic,
    maps::{XLB_CONFIG, XLB_CONNS, XLB_DESTS, XLB_DEST_CONNS, XLB_HALF_OPEN, XLB_HALF_OPEN_CURSOR},
    parse::Pkt,
    stats::bump,
};

/// How many of the oldest remembered connections one full-table insert looks at.
const EVICT_TRIES: u32 = 4;

/// Coarse monotonic clock (CLOCK_MONOTONIC_COARSE, ns): cheap, and what userspace compares with.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn key_in(p: &Pkt) -> ConnKey {
    ConnKey {
        caddr: p.saddr.w[0],
        vaddr: p.daddr.w[0],
        cport: p.sport,
        vport: p.dport,
        proto: p.proto,
        kind: CONN_KIND_IN,
        _pad: 0,
    }
}

/// A NAT connection's reply-side entry: it only points back (virtual port, service, dest); its
/// client-side entry carries state and lifetime, and lbd removes it with that one.
#[inline(always)]
pub fn create_reply_entry(key: &ConnKey, svc_id: u32, dest_id: u32, vport: u16, vip: u32, now: u64) -> Result<(), ()> {
    // `timeout` carries the VIP in a reply-side entry (see lb_common::Conn).
    let c = Conn { dest_id, svc_id, last_seen: now, timeout: vip, port: vport, ..Conn::default() };
    insert(key, &c)
}

#[inline(always)]
pub fn expired(c: &Conn, now: u64) -> bool {
    now > c.last_seen + c.timeout as u64 * 1_000_000_000
}

/// A state change moved connection `c`'s count on its dest from `from` to `to`.
#[inline(always)]
fn recount(c: &Conn, from: Held, to: Held) {
    if let (Some(d), Some(n)) = (XLB_DESTS.get_ptr_mut(c.dest_id), XLB_DEST_CONNS.get_ptr_mut(c.dest_id)) {
        // SAFETY: the dest's elements of XLB_DESTS and XLB_DEST_CONNS (arrays: never freed), valid
        // for the run; changed only atomically (the dest's tree fields are only read).
        unsafe { lb_common::conn_moved::<atomic::Bpf, _>(d, n, from, to, &mut crate::schedule::Trees(c.dest_id)) };
    }
}

/// Forgets a connection's share of its dest's ActiveConn/InActConn (expiry, replacement), and
/// lifts OVERLOAD as IPVS's `ip_vs_unbind_dest` does ([`lb_common::conn_end`], which lbd's
/// expiry calls too). Only for a connection whose entry this program removed (or never
/// inserted): that is what keeps the counts from going below zero.
#[inline(always)]
pub fn uncount(c: &Conn) {
    let (Some(d), Some(n)) = (XLB_DESTS.get_ptr_mut(c.dest_id), XLB_DEST_CONNS.get_ptr_mut(c.dest_id)) else {
        return;
    };
    // SAFETY: both point to the dest's elements of XLB_DESTS and XLB_DEST_CONNS (arrays: never
    // freed), valid for the run; every write through them is atomic (lb_common::dest_mem).
    unsafe { lb_common::conn_end::<atomic::Bpf, _>(d, n, Held::of(CONN_KIND_IN, c.flags), &mut crate::schedule::Trees(c.dest_id)) };
}

/// Ends a connection found expired by a new connection with its key (`c`: its entry): removes
/// it, giving back its count, unless another CPU or lbd's expiry removed it first (then that
/// one gave the count back).
#[inline(always)]
pub fn end_stale(key: &ConnKey, c: &Conn) {
    let c = *c;
    if XLB_CONNS.remove(key).is_ok() {
        uncount(&c);
    }
}

/// Inserts a new entry; a full table first makes room by evicting a half-open connection
/// (`evict_half_open`).
#[inline(always)]
fn insert(key: &ConnKey, c: &Conn) -> Result<(), ()> {
    if XLB_CONNS.insert(key, c, 0).is_ok() || (evict_half_open() && XLB_CONNS.insert(key, c, 0).is_ok()) {
        Ok(())
    } else {
        Err(())
    }
}

/// Removes a client-side entry, giving back its count.
#[inline(always)]
pub fn remove(key: &ConnKey) {
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    if let Some(c) = unsafe { XLB_CONNS.get(key) } {
        let c = *c;
        expire_now(key, &c);
    }
}

/// Ends client-side connection `key` (whose entry is `c`) now, as IPVS's
/// `ip_vs_conn_expire_now`: removes it and, for NAT, its reply side (when that still points
/// back to it), and gives back its count. False when another CPU removed it first.
#[inline(always)]
pub fn expire_now(key: &ConnKey, c: &Conn) -> bool {
    if XLB_CONNS.remove(key).is_err() {
        return false;
    }
    uncount(c);
    if let Some(d) = XLB_DESTS.get(c.dest_id)
        && d.fwd == FWD_MASQ
    {
        let reply = key.reply_side(d.addr.w[0], c.port);
        // A reply entry carries the VIP in `timeout` (see lb_common::Conn).
        // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once,
        // not kept.
        if unsafe { XLB_CONNS.get(&reply) }
            .is_some_and(|r| r.dest_id == c.dest_id && r.timeout == key.vaddr && r.port == key.vport)
        {
            let _ = XLB_CONNS.remove(&reply);
        }
    }
    true
}

/// IPVS's `ip_vs_bind_dest` for a new connection (inactive until its first packet is applied):
/// counts it, and a dest reaching its upper threshold is OVERLOADed ([`lb_common::conn_start`]).
#[inline(always)]
pub(crate) fn bind(dest_id: u32, held: Held) {
    let (Some(d), Some(n)) = (XLB_DESTS.get_ptr_mut(dest_id), XLB_DEST_CONNS.get_ptr_mut(dest_id)) else {
        return;
    };
    // SAFETY: as in `uncount`.
    unsafe { lb_common::conn_start::<atomic::Bpf, _>(d, n, held, &mut crate::schedule::Trees(dest_id)) };
}

/// Reads the timeouts, flags and IPVS's sysctls (`lb_common::SYSCTLS`) through `f`; `None`
/// when the map has no entry.
#[inline(always)]
pub fn with_config<R>(f: impl FnOnce(&Config) -> R) -> Option<R> {
    XLB_CONFIG.get(0).map(f)
}

/// Applies a client packet's TCP state transition (input, or input-only while no reply was
/// seen, as for DR/TUN).
#[inline(always)]
pub fn on_packet(c: &mut Conn, p: &Pkt, now: u64) {
    on_packet_dir(c, p, now, input_dir(c));
}

/// The TCP state table a client packet of `c` follows: input, or input-only while no reply was
/// seen (DR/TUN).
#[inline(always)]
pub(crate) fn input_dir(c: &Conn) -> usize {
    if c.flags & CONN_F_NOOUTPUT != 0 { DIR_INPUT_ONLY } else { DIR_INPUT }
}

/// Applies one packet's TCP state transition (IPVS `set_tcp_state`): new state, its timeout,
/// and the move between the dest's active and inactive counts. UDP only refreshes the timer.
#[inline(always)]
pub fn on_packet_dir(c: &mut Conn, p: &Pkt, now: u64, dir: usize) {
    if let Some((from, to)) = transition(c, p, now, dir) {
        recount(c, from, to);
    }
}

/// [`on_packet_dir`]'s changes to the entry alone: the count the connection held before and
/// holds now, when they differ (the caller moves it).
#[inline(always)]
pub(crate) fn transition(c: &mut Conn, p: &Pkt, now: u64, dir: usize) -> Option<(Held, Held)> {
    c.last_seen = now;
    if p.proto != IPPROTO_TCP {
        // IPVS assures a UDP connection's template when a reply passes.
        if dir == DIR_OUTPUT {
            c.flags |= CONN_F_ASSURED;
        }
        return None;
    }
    let new = tcp_state::next_tcp_state(c.state, dir, p.tcp_flags);
    if new == c.state {
        return None;
    }
    if new == STATE_ESTABLISHED {
        c.flags |= CONN_F_ASSURED;
    }
    let was_inactive = c.flags & CONN_F_INACTIVE != 0;
    let now_active = tcp_state::is_active(new);
    let moved = if was_inactive && now_active {
        c.flags &= !CONN_F_INACTIVE;
        Some((Held::Inactive, Held::Active))
    } else if !was_inactive && !now_active {
        c.flags |= CONN_F_INACTIVE;
        Some((Held::Active, Held::Inactive))
    } else {
        None
    };
    c.state = new;
    if let Some(t) = with_config(|cfg| cfg.timeout(new)).flatten() {
        c.timeout = t;
    }
    moved
}

/// Records a new connection to `dest_id` (real server port `port`, `CONN_F_NOOUTPUT` /
/// `CONN_F_CONTROLLED` in `flags`) and applies its first packet. New connections start inactive with IPVS's 3 s timeout; UDP stays in its one state
/// (always InActConn).
#[inline(always)]
pub fn create(key: &ConnKey, p: &Pkt, svc_id: u32, dest_id: u32, port: u16, flags: u8, now: u64) -> Result<(), ()> {
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
    // Its first packet's state first, then one count in the class it ends in (IPVS binds it
    // inactive and moves it as the packet sets its state: the same counts after the packet,
    // with one atomic change and one scheduling-tree update instead of two).
    let dir = input_dir(&c);
    let _ = transition(&mut c, p, now, dir);
    let send = crate::sync::count_input(&mut c, p.proto, now);
    bind(dest_id, Held::of(CONN_KIND_IN, c.flags));
    if insert(key, &c).is_err() {
        uncount(&c);
        return Err(());
    }
    if send {
        crate::sync::queue(key);
    }
    if p.proto == IPPROTO_TCP {
        note_half_open(key);
    }
    Ok(())
}

/// The ring's cursor (shared by all CPUs).
#[inline(always)]
fn half_open_cursor() -> Option<*mut HalfOpenCursor> {
    XLB_HALF_OPEN_CURSOR.get_ptr_mut(0)
}

#[inline(always)]
fn ring_slot(n: u64) -> u32 {
    (n as u32) & (HALF_OPEN_SLOTS - 1)
}

/// Remembers a TCP connection just opened (SYN_RECV) as a candidate for eviction; the ring
/// keeps the newest `HALF_OPEN_SLOTS`.
#[inline(always)]
fn note_half_open(key: &ConnKey) {
    let Some(cur) = half_open_cursor() else { return };
    // SAFETY: `cur` is XLB_HALF_OPEN_CURSOR's value (an array: valid for the run); addr_of_mut!
    // only computes the field's address.
    let n = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*cur).head) }, 1);
    if let Some(slot) = XLB_HALF_OPEN.get_ptr_mut(ring_slot(n)) {
        // SAFETY: `slot` is a value of XLB_HALF_OPEN from a successful lookup, valid for the run; a
        // key torn by a concurrent write matches no connection (see `evict_half_open`).
        unsafe { *slot = *key };
    }
}

/// The table is full: removes the oldest remembered connection that is still half-open
/// (SYN_RECV: its handshake never completed, as a flood's never do), with its NAT reply side,
/// giving back its InActConn as expiry would. Established connections are never evicted (they
/// leave the ring once looked at). True when a slot was freed. Races between CPUs are benign:
/// each claims its own tail positions, and a key read while being overwritten matches nothing.
#[inline(always)]
fn evict_half_open() -> bool {
    let Some(cur) = half_open_cursor() else { return false };
    for _ in 0..EVICT_TRIES {
        // SAFETY: `cur` is XLB_HALF_OPEN_CURSOR's value, valid for the run; the plain reads may
        // race with other CPUs' atomic adds, which only makes this look at a slot more or less.
        let (head, tail) = unsafe { ((*cur).head, (*cur).tail) };
        if tail >= head {
            return false;
        }
        if head - tail > HALF_OPEN_SLOTS as u64 {
            // Overwritten since: the oldest left is HALF_OPEN_SLOTS behind the head.
            // SAFETY: as above: the cursor's value, valid for the run.
            unsafe { (*cur).tail = head - HALF_OPEN_SLOTS as u64 };
            continue;
        }
        // SAFETY: as above; addr_of_mut! only computes the field's address.
        let t = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*cur).tail) }, 1);
        let Some(slot) = XLB_HALF_OPEN.get(ring_slot(t)) else {
            return false;
        };
        let key = *slot;
        // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once,
        // not kept.
        let Some(c) = (unsafe { XLB_CONNS.get(&key) }) else { continue };
        let c = *c;
        if key.kind != CONN_KIND_IN || c.state != STATE_SYN_RECV {
            continue;
        }
        if !expire_now(&key, &c) {
            continue;
        }
        bump(|g| &mut g.conn_evicted);
        return true;
    }
    false
}

/// A SYN found connection `c` (IPVS `ip_vs_in`, conn_reuse_mode): true when the connection is to
/// be expired and the SYN scheduled as a new connection.
#[inline(always)]
pub fn reschedule_on_syn(c: &Conn) -> bool {
    let Some((reuse_mode, expire_nodest)) = with_config(|cfg| (cfg.conn_reuse_mode, cfg.expire_nodest_conn)) else {
        return false;
    };
    if reuse_mode == 0 {
        return false;
    }
    if expire_nodest != 0 && XLB_DESTS.get(c.dest_id).is_some_and(|d| d.weight == 0) {
        return true;
    }
    c.flags & CONN_F_CONTROLLED == 0
        && (c.state == STATE_TIME_WAIT
            || c.state == STATE_CLOSE
            || (reuse_mode & 2 != 0 && c.state == STATE_FIN_WAIT && c.flags & CONN_F_NOOUTPUT != 0))
}
