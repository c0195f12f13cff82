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
use crate::{LblcrSet, LBLCR_SET_MAX};

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

/// `ip_vs_dest_set_min` as a fold over a server set's members in set order: the weighted
/// least-connection member that is available, not OVERLOADed, and (for the first candidate) has
/// weight > 0. The data plane runs [`SetMin::step`] in a bounded loop over the set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetMin {
    best: Option<(u32, i64, i32)>,
}

impl SetMin {
    #[inline(always)]
    pub fn step(&mut self, d: &DestState) {
        if d.overloaded {
            return;
        }
        let doh = d.overhead();
        match self.best {
            None if d.weight > 0 && d.available => self.best = Some((d.id, doh, d.weight)),
            None => {}
            Some((_, loh, lw)) if loh * d.weight as i64 > doh * lw as i64 && d.available => {
                self.best = Some((d.id, doh, d.weight));
            }
            Some(_) => {}
        }
    }

    /// The member and its weight.
    #[inline(always)]
    pub fn result(&self) -> Option<(u32, i32)> {
        self.best.map(|(id, _, w)| (id, w))
    }
}

/// `ip_vs_dest_set_max` as a fold: the weighted most-connection member with weight > 0
/// (availability and OVERLOAD do not matter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetMax {
    best: Option<(u32, i64, i32)>,
}

impl SetMax {
    #[inline(always)]
    pub fn step(&mut self, d: &DestState) {
        if d.weight <= 0 {
            return;
        }
        let doh = d.overhead();
        match self.best {
            Some((_, moh, mw)) if moh * d.weight as i64 >= doh * mw as i64 => {}
            _ => self.best = Some((d.id, doh, d.weight)),
        }
    }

    #[inline(always)]
    pub fn result(&self) -> Option<u32> {
        self.best.map(|(id, _, _)| id)
    }
}

impl LblcrSet {
    /// A set holding only `id`, as `ip_vs_lblcr_new` makes it.
    pub const fn new(id: u32, now: u64) -> Self {
        let mut set = [0; LBLCR_SET_MAX];
        set[0] = id;
        LblcrSet { lastuse: now, lastmod: now, len: 1, _pad: 0, set }
    }

    /// The members, newest first.
    pub fn members(&self) -> &[u32] {
        let n = if (self.len as usize) < LBLCR_SET_MAX { self.len as usize } else { LBLCR_SET_MAX };
        self.set.get(..n).unwrap_or(&[])
    }

    /// Whether `id` is a member. The walk's trip count is the constant LBLCR_SET_MAX: LLVM turns
    /// a walk that stops at `len` into a count-down from `len`, which 6.1's verifier cannot bound.
    #[inline(always)]
    pub fn has(&self, id: u32) -> bool {
        let len = self.len as usize;
        for i in 0..LBLCR_SET_MAX {
            if i < len && self.set[i] == id {
                return true;
            }
        }
        false
    }

    /// `ip_vs_dest_set_insert` (with `check`): prepends `id` unless it is a member already (or
    /// the set is full); a change sets `lastmod`.
    #[inline(always)]
    pub fn insert(&mut self, id: u32, now: u64) {
        let len = self.len as usize;
        if len >= LBLCR_SET_MAX || self.has(id) {
            return;
        }
        // Written with constant bounds: the verifier checks the unrolled moves once each.
        for i in (1..LBLCR_SET_MAX).rev() {
            if i <= len {
                self.set[i] = self.set[i - 1];
            }
        }
        self.set[0] = id;
        self.len += 1;
        self.lastmod = now;
    }

    /// `ip_vs_dest_set_erase`: removes `id` (a change sets `lastmod`).
    #[inline(always)]
    pub fn erase(&mut self, id: u32, now: u64) {
        let len = self.len as usize;
        let mut found = false;
        for i in 0..LBLCR_SET_MAX {
            if i >= len {
                break;
            }
            if !found && self.set[i] == id {
                found = true;
            }
            if found && i + 1 < LBLCR_SET_MAX {
                self.set[i] = self.set[i + 1];
            }
        }
        if found {
            self.len -= 1;
            self.lastmod = now;
        }
    }

    /// A set of more than one member unchanged for longer than `expiration` (same unit as
    /// `now`) loses its most loaded member at this lookup.
    #[inline(always)]
    pub const fn shrink_due(&self, now: u64, expiration: u64) -> bool {
        self.len > 1 && now > self.lastmod.saturating_add(expiration)
    }
}

/// One lblcr cache entry of the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LblcrEntry {
    pub used: bool,
    pub addr: AddrKey,
    pub set: LblcrSet,
}

/// The literal lblcr with its cache in `entries`.
pub struct LblcrReference<'a> {
    pub entries: &'a mut [LblcrEntry],
    /// `lblcr_expiration` in the unit of `now`.
    pub expiration: u64,
}

impl LblcrReference<'_> {
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
            let e = &mut self.entries[i].set;
            e.lastuse = now;
            let mut min = SetMin::default();
            let mut max = SetMax::default();
            for d in e.members().iter().filter_map(|id| dest(*id)) {
                min.step(&d);
                max.step(&d);
            }
            if e.shrink_due(now, expiration)
                && let Some(m) = max.result()
            {
                e.erase(m, now);
            }
            if let Some((id, _)) = min.result()
                && let Some(d) = dest(id)
                && !lblc_overloaded(&d, list)
            {
                return Some(id);
            }
            let d = lblc_wlc(list)?;
            e.insert(d, now);
            return Some(d);
        }
        let d = lblc_wlc(list)?;
        if let Some(e) = self.entries.iter_mut().find(|e| !e.used) {
            *e = LblcrEntry { used: true, addr: daddr, set: LblcrSet::new(d, now) };
        }
        Some(d)
    }

    /// Drops entries with `lastuse + horizon <= now`.
    pub fn expire(&mut self, now: u64, horizon: u64) {
        for e in self.entries.iter_mut() {
            if e.used && e.set.lastuse.saturating_add(horizon) <= now {
                e.used = false;
            }
        }
    }
}
