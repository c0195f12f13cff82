//! lblc and lblcr (`ip_vs_lblc.c`, `ip_vs_lblcr.c`): locality by packet destination address.
//!
//! The kernel keeps, per service, a cache destination address → dest (lblc) or → dest set
//! (lblcr), garbage-collected by a 60 s timer. The references below keep that cache in
//! caller-provided arrays (no allocation; a full array behaves like a failed `kmalloc`: the pick
//! is still returned, nothing is cached) and take the time (`now`, any monotonic unit) as an
//! argument. A cache hit costs O(n) (the "overloaded" test scans the dests; lblcr also scans the
//! set); a miss runs the wlc fold over all dests: O(n) per new connection for n dests.
//!
//! GC ([`LblcReference::expire`] / [`LblcrReference::expire`]): the kernel drops entries unused
//! for `lblc_expiration` / `lblcr_expiration` (sysctl, default 24 h) in a full check every 30
//! timer ticks (30 min), and, when a table holds more than 16384 entries, entries unused for 6 min
//! on every tick. Call `expire` with the horizon that applies.

use super::{DestState, LcKind, least_conn_pick};

/// An address as the kernel compares it (4 words; IPv4 in the first, the rest 0).
pub type AddrKey = [u32; 4];

/// lblc "overloaded": `active > weight` ([`lblc_busy`]) and some dest of the service is
/// [`lblc_half_idle`].
pub fn lblc_overloaded(d: &DestState, list: &[DestState]) -> bool {
    lblc_busy(d.active as u64, d.weight) && list.iter().any(|x| lblc_half_idle(x.active as u64, x.weight))
}

/// More active connections than weight.
#[inline(always)]
pub const fn lblc_busy(active: u64, weight: i32) -> bool {
    active as i64 > weight as i64
}

/// Less than half busy: `2 * active < weight`.
#[inline(always)]
pub const fn lblc_half_idle(active: u64, weight: i32) -> bool {
    (active as i64) * 2 < weight as i64
}

/// The wlc pick both use when the cache does not answer (`__ip_vs_lblc_schedule`).
pub fn lblc_wlc(list: &[DestState]) -> Option<u32> {
    least_conn_pick(LcKind::Wlc, list)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LblcEntry {
    pub used: bool,
    pub addr: AddrKey,
    pub dest: u32,
    pub lastuse: u64,
}

/// The literal lblc with its cache in `entries`.
pub struct LblcReference<'a> {
    pub entries: &'a mut [LblcEntry],
}

impl LblcReference<'_> {
    fn find(&mut self, addr: AddrKey) -> Option<usize> {
        self.entries.iter().position(|e| e.used && e.addr == addr)
    }

    /// `ip_vs_lblc_schedule` for a packet to `daddr`.
    pub fn pick(&mut self, list: &[DestState], daddr: AddrKey, now: u64) -> Option<u32> {
        let hit = self.find(daddr);
        if let Some(i) = hit {
            let e = &mut self.entries[i];
            e.lastuse = now;
            let cached = e.dest;
            if let Some(d) = list.iter().find(|d| d.id == cached)
                && d.available
                && d.weight > 0
                && !lblc_overloaded(d, list)
            {
                return Some(cached);
            }
        }
        let dest = lblc_wlc(list)?;
        // ip_vs_lblc_new: reuse / replace the entry for daddr, else a free one.
        let slot = hit.or_else(|| self.entries.iter().position(|e| !e.used));
        if let Some(i) = slot {
            self.entries[i] = LblcEntry { used: true, addr: daddr, dest, lastuse: now };
        }
        Some(dest)
    }

    /// Drops entries with `lastuse + horizon <= now`.
    pub fn expire(&mut self, now: u64, horizon: u64) {
        for e in self.entries.iter_mut() {
            if e.used && e.lastuse.saturating_add(horizon) <= now {
                e.used = false;
            }
        }
    }
}

/// One lblcr cache entry: a dest set of at most `N` members, newest first (`list_add_rcu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LblcrEntry<const N: usize> {
    pub used: bool,
    pub addr: AddrKey,
    pub lastuse: u64,
    pub lastmod: u64,
    pub len: usize,
    pub set: [u32; N],
}

impl<const N: usize> Default for LblcrEntry<N> {
    fn default() -> Self {
        LblcrEntry { used: false, addr: [0; 4], lastuse: 0, lastmod: 0, len: 0, set: [0; N] }
    }
}

impl<const N: usize> LblcrEntry<N> {
    /// `ip_vs_dest_set_insert` (with `check`): prepend unless present.
    fn insert(&mut self, id: u32, now: u64) {
        if self.set[..self.len].contains(&id) || self.len == N {
            return;
        }
        self.set.copy_within(0..self.len, 1);
        self.set[0] = id;
        self.len += 1;
        self.lastmod = now;
    }

    fn erase(&mut self, id: u32, now: u64) {
        if let Some(p) = self.set[..self.len].iter().position(|x| *x == id) {
            self.set.copy_within(p + 1..self.len, p);
            self.len -= 1;
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`: weighted least-connection member (skips OVERLOAD and unavailable).
    fn min(&self, dest: &impl Fn(u32) -> Option<DestState>) -> Option<DestState> {
        let mut least: Option<DestState> = None;
        for d in self.set[..self.len].iter().filter_map(|id| dest(*id)) {
            if d.overloaded {
                continue;
            }
            match least {
                None => {
                    if d.weight > 0 && d.available {
                        least = Some(d);
                    }
                }
                Some(l) => {
                    if l.overhead() * d.weight as i64 > d.overhead() * l.weight as i64 && d.available {
                        least = Some(d);
                    }
                }
            }
        }
        least
    }

    /// `ip_vs_dest_set_max`: weighted most-connection member with weight > 0.
    fn max(&self, dest: &impl Fn(u32) -> Option<DestState>) -> Option<DestState> {
        let mut most: Option<DestState> = None;
        for d in self.set[..self.len].iter().filter_map(|id| dest(*id)) {
            match most {
                None => {
                    if d.weight > 0 {
                        most = Some(d);
                    }
                }
                Some(m) => {
                    if m.overhead() * (d.weight as i64) < d.overhead() * m.weight as i64 && d.weight > 0 {
                        most = Some(d);
                    }
                }
            }
        }
        most
    }
}

/// The literal lblcr with its cache in `entries`.
pub struct LblcrReference<'a, const N: usize> {
    pub entries: &'a mut [LblcrEntry<N>],
    /// `lblcr_expiration` in the unit of `now`: a set of more than one member that was not
    /// modified for longer than this loses its most loaded member.
    pub expiration: u64,
}

impl<const N: usize> LblcrReference<'_, N> {
    /// `ip_vs_lblcr_schedule` for a packet to `daddr`. `dest(id)` gives the state of any dest a
    /// set may hold, including deleted ones (`available: false`), or `None` if unknown.
    pub fn pick(
        &mut self,
        list: &[DestState],
        daddr: AddrKey,
        now: u64,
        dest: impl Fn(u32) -> Option<DestState>,
    ) -> Option<u32> {
        if let Some(i) = self.entries.iter().position(|e| e.used && e.addr == daddr) {
            let expiration = self.expiration;
            let e = &mut self.entries[i];
            e.lastuse = now;
            let min = e.min(&dest);
            if e.len > 1
                && now > e.lastmod.saturating_add(expiration)
                && let Some(m) = e.max(&dest)
            {
                e.erase(m.id, now);
            }
            if let Some(d) = min
                && !lblc_overloaded(&d, list)
            {
                return Some(d.id);
            }
            let d = lblc_wlc(list)?;
            e.insert(d, now);
            return Some(d);
        }
        let d = lblc_wlc(list)?;
        if let Some(e) = self.entries.iter_mut().find(|e| !e.used) {
            *e = LblcrEntry { used: true, addr: daddr, lastuse: now, lastmod: now, len: 1, set: [0; N] };
            e.set[0] = d;
        }
        Some(d)
    }

    /// Drops entries with `lastuse + horizon <= now`.
    pub fn expire(&mut self, now: u64, horizon: u64) {
        for e in self.entries.iter_mut() {
            if e.used && e.lastuse.saturating_add(horizon) <= now {
                e.used = false;
            }
        }
    }
}
