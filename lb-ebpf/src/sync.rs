//! What the sync master is told (IPVS `ip_vs_in` -> `ip_vs_sync_conn`): every client packet is
//! counted on its connection, and when IPVS's rule (`lb_common::sync::sync_needed`) says the
//! connection is to be sent, its key goes on `XLB_SYNC_EVENTS` for lbd's master daemon to read
//! and send. Only while a master runs; a full queue drops the record (counted), never the packet.
use lb_common::{CFG_F_SYNC_MASTER, Conn, sync::sync_needed};

use crate::{conn::with_config, maps::XLB_SYNC_EVENTS, stats::bump};

/// Counts a client packet of `c` (its state already updated by it) and says whether the master
/// is to send `c` now (updating `c`'s record of what was sent).
#[inline(always)]
pub fn count_input(c: &mut Conn, proto: u8, now: u64) -> bool {
    c.in_pkts = c.in_pkts.wrapping_add(1);
    let pkts = c.in_pkts;
    with_config(|cfg| {
        cfg.flags & CFG_F_SYNC_MASTER != 0
            && sync_needed(c, proto, pkts, (now / 1_000_000_000) as u32, &cfg.sync_rules())
    })
    .unwrap_or(false)
}

/// Queues connection key `key` (a `ConnKey` or `ConnKey6`: the record's length tells them apart).
#[inline(always)]
pub fn queue<K>(key: &K) {
    if XLB_SYNC_EVENTS.output::<K>(key, 0).is_ok() {
        bump(|g| &mut g.sync_queued);
    } else {
        bump(|g| &mut g.sync_dropped);
    }
}

/// [`count_input`], then [`queue`] when the connection is to be sent.
#[inline(always)]
pub fn after_input<K>(key: &K, c: &mut Conn, proto: u8, now: u64) {
    if count_input(c, proto, now) {
        queue(key);
    }
}
