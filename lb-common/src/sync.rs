//! The connection sync daemon's shared facts (IPVS `ip_vs_sync.c`): the daemons' settings lbadm
//! writes and lbd reads (`XLB_SYNC_DAEMONS`), what the data plane queues for the master
//! (`XLB_SYNC_EVENTS`), and IPVS's rule for when a connection is sent, which the data plane
//! applies per packet and userspace tests check against the kernel's.
use crate::{
    IPPROTO_TCP,
    maps::{Addr, Conn},
    tcp_state::*,
};

/// `XLB_SYNC_DAEMONS` index of the master daemon's settings.
pub const SYNC_MASTER: u32 = 0;
/// `XLB_SYNC_DAEMONS` index of the backup daemon's settings.
pub const SYNC_BACKUP: u32 = 1;

/// IPVS's defaults: multicast group 224.0.0.81, UDP port 8848, TTL 1.
pub const SYNC_GROUP_V4: [u8; 4] = [224, 0, 0, 81];
pub const SYNC_PORT: u16 = 8848;
pub const SYNC_TTL: u8 = 1;

/// Size of `XLB_SYNC_EVENTS` in bytes: with 8 bytes of header per record, about 10,000 IPv4
/// records; when lbd cannot keep up the data plane drops (and counts) records, never packets.
pub const SYNC_EVENTS_BYTES: u32 = 256 * 1024;

/// Value of `XLB_SYNC_DAEMONS[SYNC_MASTER | SYNC_BACKUP]`: a daemon as `ipvsadm --start-daemon`
/// configured it (what `-L --daemon` prints). lbadm writes it; lbd runs the daemon it describes,
/// so the daemons survive lbd restarts as the rest of the table does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncDaemon {
    /// 1 while started.
    pub running: u32,
    pub syncid: u32,
    /// The largest message, as the kernel computes it at start.
    pub maxlen: u32,
    /// Host order.
    pub port: u16,
    pub ttl: u8,
    /// `AF_INET` / `AF_INET6`: the group's family.
    pub af: u8,
    /// Network order (IPv4 in the first word).
    pub group: Addr,
    /// `--mcast-interface`, NUL padded.
    pub ifname: [u8; 16],
    pub ifindex: u32,
    /// Bumped by every start: lbd restarts the daemon when it changes.
    pub generation: u32,
}

impl SyncDaemon {
    /// The interface name (up to its first NUL).
    pub fn ifname(&self) -> &[u8] {
        let n = self.ifname.iter().position(|b| *b == 0).unwrap_or(self.ifname.len());
        &self.ifname[..n]
    }
}

/// The sync sysctls the data plane needs, from `Config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRules {
    pub threshold: u32,
    pub period: u32,
    /// Seconds.
    pub refresh_period: u32,
    pub retries: u32,
}

/// The states in which IPVS sends a TCP connection.
const TCP_SYNC_STATES: u32 = (1 << STATE_ESTABLISHED)
    | (1 << STATE_FIN_WAIT)
    | (1 << STATE_CLOSE)
    | (1 << STATE_CLOSE_WAIT)
    | (1 << STATE_TIME_WAIT);

/// `Conn::sync_state`: the state last sent (low 4 bits) and the refresh retries (bits 4-5).
const SYNC_STATE_MASK: u8 = 0x0f;
const SYNC_RETRY_SHIFT: u8 = 4;

/// IPVS `ip_vs_sync_conn_needed` for a client-side connection (not a template: the master sends
/// a template whenever it sends a connection the template controls) after its `pkts`-th client
/// packet, at `now_s` (seconds on the data plane's clock). Updates `c`'s sync bookkeeping when
/// it says yes. The kernel keeps the expected end time in jiffies with the retries in its low
/// two bits; xlb keeps it in seconds modulo 65536 (differences are at most hours) with the
/// retries apart.
#[inline(always)]
pub fn sync_needed(c: &mut Conn, proto: u8, pkts: u32, now_s: u32, rules: &SyncRules) -> bool {
    let old_state = c.sync_state & SYNC_STATE_MASK;
    let n = (now_s.wrapping_add(c.timeout)) as u16;
    let mut retries_after = 0u8;
    if proto == IPPROTO_TCP {
        if c.state >= 32 || TCP_SYNC_STATES & (1u32 << c.state) == 0 {
            return false;
        }
        // A new state other than ESTABLISHED is sent at once (IPVS `force`; the kernel's
        // compare-and-swap that could otherwise refuse the send has no rival here).
        if c.state != old_state && c.state != STATE_ESTABLISHED {
            set(c, n, 0);
            return true;
        }
    }
    if rules.refresh_period > 0 {
        let orig = c.sync_end;
        let diff = (n.wrapping_sub(orig) as i16 as i32).unsigned_abs();
        let min_diff = core::cmp::max(c.timeout >> 1, 10);
        if diff < core::cmp::min(rules.refresh_period, min_diff) {
            let retries = (c.sync_state >> SYNC_RETRY_SHIFT) & 3;
            if retries as u32 >= rules.retries {
                return false;
            }
            // Not before an eighth of the refresh period has passed since the last send.
            let since = orig.wrapping_sub(c.timeout as u16).wrapping_add((rules.refresh_period >> 3) as u16);
            if ((now_s as u16).wrapping_sub(since) as i16) < 0 {
                return false;
            }
            retries_after = retries + 1;
        }
    }
    if rules.period > 0 {
        if pkts % rules.period != rules.threshold {
            return false;
        }
    } else if rules.refresh_period == 0 && pkts != rules.threshold {
        return false;
    }
    set(c, n, retries_after);
    true
}

#[inline(always)]
fn set(c: &mut Conn, end: u16, retries: u8) {
    c.sync_state = (c.state & SYNC_STATE_MASK) | (retries << SYNC_RETRY_SHIFT);
    c.sync_end = end;
}

/// A connection a backup installs from a sync message: IPVS sets its packet count to the
/// threshold and its last-sent state to its state.
pub fn mark_synced(c: &mut Conn, threshold: u32) {
    c.in_pkts = threshold;
    c.sync_state = c.state & SYNC_STATE_MASK;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IPPROTO_UDP;

    const DEFAULT: SyncRules = SyncRules { threshold: 3, period: 50, refresh_period: 0, retries: 0 };

    fn conn(state: u8, timeout: u32) -> Conn {
        Conn { state, timeout, ..Default::default() }
    }

    /// The packets of a connection that stays ESTABLISHED that IPVS sends with its defaults
    /// ("3 50"): the 3rd, 53rd, 103rd...
    #[test]
    fn established_every_period_from_the_threshold() {
        let mut c = conn(STATE_ESTABLISHED, 900);
        c.sync_state = STATE_ESTABLISHED;
        let mut got = [0u32; 4];
        let mut k = 0;
        for pkts in 1..=160 {
            if sync_needed(&mut c, IPPROTO_TCP, pkts, 0, &DEFAULT) {
                got[k] = pkts;
                k += 1;
            }
        }
        assert_eq!(got, [3, 53, 103, 153]);
    }

    /// Entering ESTABLISHED forces nothing by itself (the packet rule still applies); entering
    /// FIN_WAIT, CLOSE, TIME_WAIT sends at once; SYN_RECV never sends.
    #[test]
    fn state_changes() {
        let mut c = conn(STATE_SYN_RECV, 60);
        assert!(!sync_needed(&mut c, IPPROTO_TCP, 3, 0, &DEFAULT));
        c.state = STATE_ESTABLISHED;
        assert!(!sync_needed(&mut c, IPPROTO_TCP, 2, 0, &DEFAULT));
        assert!(sync_needed(&mut c, IPPROTO_TCP, 3, 0, &DEFAULT));
        c.state = STATE_FIN_WAIT;
        assert!(sync_needed(&mut c, IPPROTO_TCP, 7, 0, &DEFAULT));
        assert!(!sync_needed(&mut c, IPPROTO_TCP, 8, 0, &DEFAULT), "no change since the last send");
        c.state = STATE_TIME_WAIT;
        assert!(sync_needed(&mut c, IPPROTO_TCP, 9, 0, &DEFAULT));
    }

    #[test]
    fn udp_by_packets_only() {
        let mut c = conn(STATE_UDP, 300);
        let sent = [1, 3, 50, 53].map(|p| sync_needed(&mut c, IPPROTO_UDP, p, 0, &DEFAULT));
        assert_eq!(sent, [false, true, false, true]);
        // Period 0: only the threshold-th packet.
        let once = SyncRules { period: 0, ..DEFAULT };
        assert_eq!([2, 3, 53].map(|p| sync_needed(&mut c, IPPROTO_UDP, p, 0, &once)), [false, true, false]);
    }

    /// sync_refresh_period: a packet whose expected end time moved less than the refresh period
    /// since the last send is not sent again (unless retries allow); one that moved more is.
    #[test]
    fn refresh_period() {
        let rules = SyncRules { threshold: 3, period: 0, refresh_period: 30, retries: 0 };
        let mut c = conn(STATE_UDP, 300);
        assert!(sync_needed(&mut c, IPPROTO_UDP, 1, 100, &rules));
        assert!(!sync_needed(&mut c, IPPROTO_UDP, 2, 110, &rules));
        assert!(sync_needed(&mut c, IPPROTO_UDP, 3, 131, &rules));
        // With retries, up to that many more sends within the period, each an eighth apart.
        let rules = SyncRules { retries: 2, ..rules };
        let mut c = conn(STATE_UDP, 300);
        assert!(sync_needed(&mut c, IPPROTO_UDP, 1, 1000, &rules));
        assert!(!sync_needed(&mut c, IPPROTO_UDP, 2, 1001, &rules), "before an eighth of the period");
        assert!(sync_needed(&mut c, IPPROTO_UDP, 3, 1004, &rules));
        assert!(sync_needed(&mut c, IPPROTO_UDP, 4, 1008, &rules));
        assert!(!sync_needed(&mut c, IPPROTO_UDP, 5, 1012, &rules), "retries used up");
    }

    #[test]
    fn synced_connections_start_at_the_threshold() {
        let mut c = conn(STATE_ESTABLISHED, 900);
        mark_synced(&mut c, 3);
        assert_eq!((c.in_pkts, c.sync_state), (3, STATE_ESTABLISHED));
        // Its next packet (the 4th) is not sent; the 53rd is.
        assert!(!sync_needed(&mut c, IPPROTO_TCP, 4, 0, &DEFAULT));
        assert!(sync_needed(&mut c, IPPROTO_TCP, 53, 0, &DEFAULT));
    }
}
