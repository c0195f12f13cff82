//! The userspace half of the connection table (the data plane's is `lb-ebpf/src/conn.rs`):
//! listing, expiry with IPVS's template re-arm policy, and giving back an ended connection's
//! count.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::{HashMap, IterableMap as _, MapData};
use lb_common::{self as c, Addr, ConnKey, tcp_state};

use super::{Store, codec::to_ip};
use crate::model::{ConnEntry, Proto};

/// One entry of either table as `-Lc` lists it: the key's fields with the family to read its
/// addresses in.
struct ListedKey {
    af: u8,
    caddr: Addr,
    cport: u16,
    vaddr: Addr,
    vport: u16,
    proto: u8,
    kind: u8,
}

impl ListedKey {
    fn v4(k: &ConnKey) -> ListedKey {
        ListedKey {
            af: c::AF_INET,
            caddr: Addr::v4(k.caddr),
            cport: k.cport,
            vaddr: Addr::v4(k.vaddr),
            vport: k.vport,
            proto: k.proto,
            kind: k.kind,
        }
    }

    fn v6(k: &c::ConnKey6) -> ListedKey {
        ListedKey { af: c::AF_INET6, caddr: k.caddr, cport: k.cport, vaddr: k.vaddr, vport: k.vport, proto: k.proto, kind: k.kind }
    }
}

/// Whether entry `v` of kind `kind` assured the template it was made through.
fn assures_template(kind: u8, v: &c::Conn) -> bool {
    kind == c::CONN_KIND_IN && v.flags & (c::CONN_F_CONTROLLED | c::CONN_F_ASSURED) == c::CONN_F_CONTROLLED | c::CONN_F_ASSURED
}

impl Store {
    /// Live connection entries and templates for `-Lc`, the IPv4 table's then the IPv6 one's
    /// (IPVS's hash walk has no family order either).
    pub fn connections(&self) -> anyhow::Result<Vec<ConnEntry>> {
        let now = monotonic_coarse_ns();
        let v4: Vec<(ConnKey, c::Conn)> = self.conns.iter().collect::<Result<_, _>>()?;
        let v6: Vec<(c::ConnKey6, c::Conn6)> = self.conns6.iter().collect::<Result<_, _>>()?;
        // Templates a connection assured that is still in the table (lbd's expiry marks the
        // template itself when the connection goes).
        let assured4: HashSet<ConnKey> =
            v4.iter().filter(|(k, v)| assures_template(k.kind, v)).filter_map(|(k, v)| self.template_of(k, v)).collect();
        let assured6: HashSet<c::ConnKey6> =
            v6.iter().filter(|(k, v)| assures_template(k.kind, &v.c)).filter_map(|(k, v)| self.template_of6(k, &v.c)).collect();
        let rows4 = v4.iter().filter_map(|(k, v)| self.listed(now, ListedKey::v4(k), v, assured4.contains(k)));
        let rows6 = v6.iter().filter_map(|(k, v)| self.listed(now, ListedKey::v6(k), &v.c, assured6.contains(k)));
        Ok(rows4.chain(rows6).collect())
    }

    /// The `-Lc` row of one entry, or `None` for a NAT reply side, an expired entry or one of a
    /// real server no longer in the table. `assured`: a live connection assured this template.
    fn listed(&self, now: u64, k: ListedKey, v: &c::Conn, assured: bool) -> Option<ConnEntry> {
        let template = k.kind == c::CONN_KIND_TEMPLATE;
        // A template re-armed ahead of its expiry (`expire_connections`) still shows the time
        // to that expiry, as the kernel's timer does.
        let end = if template && v.last_seen > now { v.last_seen } else { v.last_seen + v.timeout as u64 * 1_000_000_000 };
        if end <= now || k.kind == c::CONN_KIND_OUT {
            return None;
        }
        let d = self.dests.get(v.dest_id)?;
        // A fwmark template's protocol is IPPROTO_IP; its "virtual address" is the mark.
        let proto = match (template && k.proto == c::IPPROTO_IP, Proto::from_number(k.proto)) {
            (true, _) => "IP",
            (_, Some(Proto::Tcp)) => "TCP",
            (_, Some(Proto::Udp)) => "UDP",
            (_, Some(Proto::Sctp)) => "SCTP",
            _ => "IP",
        };
        let state = match template {
            true if assured || v.state & c::TEMPLATE_S_ASSURED != 0 => "ASSURED",
            true => "NONE",
            false => tcp_state::STATE_NAMES.get(v.state as usize).copied().unwrap_or("ERR!"),
        };
        // A connection shows the port it goes to (an "all ports" service's to a port-0 real
        // server: the client's), a template its real server's.
        let dport = match template {
            false => u16::from_be(v.port),
            true if k.vport == 0 => 0,
            true => u16::from_be(d.port),
        };
        Some(ConnEntry {
            proto,
            expires: ((end - now) / 1_000_000_000) as u32,
            state,
            caddr: to_ip(k.af, &k.caddr),
            cport: u16::from_be(k.cport),
            vaddr: to_ip(k.af, &k.vaddr),
            vport: u16::from_be(k.vport),
            daddr: to_ip(d.af, &d.addr),
            dport,
        })
    }

    /// ActiveConn/InActConn/PersistConn counts. Returns how many were removed.
    ///
    /// A template still controlling a connection when it expires is re-armed for 60 s instead
    /// (IPVS `ip_vs_conn_expire`), and so is one that will expire within `ahead` (the time to
    /// the next pass) while a connection it controls outlives that moment: re-armed ahead, it
    /// stays valid for the data plane without a gap between its expiry and the next pass.
    /// Either way its new expiry is the kernel's: 60 s after the old one (60 s steps).
    pub fn expire_connections(&mut self, ahead: std::time::Duration) -> anyhow::Result<usize> {
        self.expire_connections_racing(ahead, |_| {})
    }

    /// [`Store::expire_connections`], calling `between` with each expired entry's key after the
    /// entry was last checked and before it is taken out: the window in which the data plane may
    /// end and replace it. Tests drive packets there; lbd passes nothing.
    #[doc(hidden)]
    pub fn expire_connections_racing(
        &mut self,
        ahead: std::time::Duration,
        mut between: impl FnMut(&ConnKey),
    ) -> anyhow::Result<usize> {
        const S: u64 = 1_000_000_000;
        let now = monotonic_coarse_ns();
        let ahead = ahead.as_nanos() as u64;
        let mut dead = Vec::new();
        let end = |v: &c::Conn| v.last_seen + v.timeout as u64 * S;
        let expired = |v: &c::Conn| end(v) < now;
        let mut entries: Vec<(ConnKey, c::Conn)> = self.conns.iter().collect::<Result<_, _>>()?;
        // The latest end of the live connections each template controls.
        let mut controlling: StdHashMap<ConnKey, u64> = StdHashMap::new();
        for (k, v) in &entries {
            if k.kind == c::CONN_KIND_IN && v.flags & c::CONN_F_CONTROLLED != 0 && !expired(v)
                && let Some(t) = self.template_of(k, v)
            {
                let e = controlling.entry(t).or_insert(0);
                *e = (*e).max(end(v));
            }
        }
        let rearm = c::TEMPLATE_REARM_S as u64 * S;
        for (k, v) in entries.iter_mut() {
            // A template re-armed ahead has `last_seen` at its old expiry, in the future.
            if k.kind != c::CONN_KIND_TEMPLATE || v.last_seen > now || end(v) > now + ahead {
                continue;
            }
            let Some(&conn_end) = controlling.get(k) else { continue };
            if conn_end <= end(v) && !expired(v) {
                // Its connections end first: the template expires with them.
                continue;
            }
            // The kernel's re-arm points: end, end + 60 s, ...; the last one not after now.
            let at = end(v) + now.saturating_sub(end(v)) / rearm * rearm;
            let rearmed = c::Conn { last_seen: at, timeout: c::TEMPLATE_REARM_S, ..*v };
            if self.conns.get(k, 0).is_ok_and(|cur| cur == *v) {
                self.conns.insert(*k, rearmed, 0)?;
                *v = rearmed;
            }
        }
        let mut live_vips = Vec::new();
        for (k, v) in entries {
            let gone = if k.kind == c::CONN_KIND_OUT {
                // A NAT reply-side entry lives as long as its client-side entry.
                // Its `timeout` field carries the VIP (see lb_common::Conn).
                let in_key = ConnKey { vaddr: v.timeout, vport: v.port, kind: c::CONN_KIND_IN, ..k };
                self.conns.get(&in_key, 0).map_or(true, |i| expired(&i) || i.dest_id != v.dest_id)
            } else {
                expired(&v)
            };
            if gone {
                dead.push((k, v));
            } else if k.kind == c::CONN_KIND_IN {
                live_vips.push(k.vaddr);
            }
        }
        let mut n = 0;
        for (k, v) in dead {
            // The data plane may have refreshed or replaced it meanwhile: only remove what is
            // still the expired entry.
            match self.conns.get(&k, 0) {
                Ok(cur) if cur == v => {}
                _ => continue,
            }
            between(&k);
            // Taken out with its value in one step, so the count given back is that of the entry
            // removed. Gone already: whoever removed it gave its count back.
            let Some(cur) = take_conn(&self.conns, &k)? else { continue };
            if cur == v {
                n += 1;
                self.release_count(&k, &v);
                if assures_template(k.kind, &v)
                    && let Some(t) = self.template_of(&k, &v)
                {
                    mark_assured(&mut self.conns, &t, |e| &mut e.state);
                }
            } else if self.conns.insert(k, cur, BPF_NOEXIST).is_err() {
                // The data plane replaced or refreshed it since the check: it goes back, unless a
                // packet re-created the key meanwhile; then `cur` is gone for good.
                self.release_count(&k, &cur);
            }
        }
        let live6 = self.expire_connections6(now, ahead, &mut n)?;
        self.close_idle_vips(live_vips, live6)?;
        self.refresh_trees()?;
        self.free_idle_trash()?;
        Ok(n)
    }

    /// Closes the gate (see [`super::Gate`]) for addresses that are no longer a service's and
    /// that no connection (`live`: the VIPs of the live ones) points to.
    fn close_idle_vips(&mut self, live: Vec<u32>, live6: Vec<Addr>) -> anyhow::Result<()> {
        let services: Vec<c::ServiceKey> = self.services.keys().collect::<Result<_, _>>()?;
        let open = services
            .iter()
            .filter(|k| k.proto != c::IPPROTO_IP)
            .map(|k| to_ip(k.af, &k.addr))
            .chain(live.into_iter().map(|a| std::net::IpAddr::V4(std::net::Ipv4Addr::from(a.to_ne_bytes()))))
            .chain(live6.iter().map(|a| to_ip(c::AF_INET6, a)));
        self.gate.set(c::GATE_VIP, open);
        Ok(())
    }

    /// [`Store::expire_connections_racing`]'s pass over the IPv6 table (the same rules: templates
    /// re-armed while they control a live connection, reply sides removed with their client
    /// side, counts given back). Adds the entries removed to `n`; returns the live VIPs.
    fn expire_connections6(&mut self, now: u64, ahead: u64, n: &mut usize) -> anyhow::Result<Vec<Addr>> {
        const S: u64 = 1_000_000_000;
        let end = |v: &c::Conn| v.last_seen + v.timeout as u64 * S;
        let expired = |v: &c::Conn| end(v) < now;
        let mut entries: Vec<(c::ConnKey6, c::Conn6)> = self.conns6.iter().collect::<Result<_, _>>()?;
        let mut controlling: StdHashMap<c::ConnKey6, u64> = StdHashMap::new();
        for (k, v) in &entries {
            if k.kind == c::CONN_KIND_IN && v.c.flags & c::CONN_F_CONTROLLED != 0 && !expired(&v.c)
                && let Some(t) = self.template_of6(k, &v.c)
            {
                let e = controlling.entry(t).or_insert(0);
                *e = (*e).max(end(&v.c));
            }
        }
        let rearm = c::TEMPLATE_REARM_S as u64 * S;
        for (k, v) in entries.iter_mut() {
            if k.kind != c::CONN_KIND_TEMPLATE || v.c.last_seen > now || end(&v.c) > now + ahead {
                continue;
            }
            let Some(&conn_end) = controlling.get(k) else { continue };
            if conn_end <= end(&v.c) && !expired(&v.c) {
                continue;
            }
            let at = end(&v.c) + now.saturating_sub(end(&v.c)) / rearm * rearm;
            let rearmed = c::Conn6 { c: c::Conn { last_seen: at, timeout: c::TEMPLATE_REARM_S, ..v.c }, ..*v };
            if self.conns6.get(k, 0).is_ok_and(|cur| cur == *v) {
                self.conns6.insert(*k, rearmed, 0)?;
                *v = rearmed;
            }
        }
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (k, v) in entries {
            let gone = if k.kind == c::CONN_KIND_OUT {
                let in_key = c::ConnKey6 { vaddr: v.vip, vport: v.c.port, kind: c::CONN_KIND_IN, ..k };
                self.conns6.get(&in_key, 0).map_or(true, |i| expired(&i.c) || i.c.dest_id != v.c.dest_id)
            } else {
                expired(&v.c)
            };
            if gone {
                dead.push((k, v));
            } else if k.kind == c::CONN_KIND_IN {
                live.push(k.vaddr);
            }
        }
        for (k, v) in dead {
            match self.conns6.get(&k, 0) {
                Ok(cur) if cur == v => {}
                _ => continue,
            }
            let Some(cur) = take_entry(&self.conns6, &k)? else { continue };
            if cur == v {
                *n += 1;
                self.release_count6(&k, &v.c);
                if assures_template(k.kind, &v.c)
                    && let Some(t) = self.template_of6(&k, &v.c)
                {
                    mark_assured(&mut self.conns6, &t, |e| &mut e.c.state);
                }
            } else if self.conns6.insert(k, cur, BPF_NOEXIST).is_err() {
                self.release_count6(&k, &cur.c);
            }
        }
        Ok(live)
    }

    /// [`Store::template_of`] for the IPv6 table.
    pub(super) fn template_of6(&self, k: &c::ConnKey6, v: &c::Conn) -> Option<c::ConnKey6> {
        let sk = self.svc_keys.get(&v.svc_id, 0).ok()?;
        let svc = self.services.get(&sk, 0).ok()?;
        let fwmark = if sk.proto == c::IPPROTO_IP { sk.addr.w[0] } else { 0 };
        Some(c::template_key6(&k.caddr, &svc.netmask, &k.vaddr, k.proto, sk.port, fwmark))
    }

    /// [`Store::release_count`] for the IPv6 table.
    fn release_count6(&mut self, k: &c::ConnKey6, v: &c::Conn) {
        if k.kind == c::CONN_KIND_OUT {
            return;
        }
        let (Some(d), Some(n)) = (self.dests.ptr_field(v.dest_id), self.dest_conns.ptr_field(v.dest_id)) else {
            return;
        };
        // SAFETY: as in `release_count`.
        unsafe { c::conn_end::<c::HostAtomics, _>(d, n, c::Held::of(k.kind, v.flags), &mut self.trees()) };
    }

    /// The persistence template a controlled connection was made through.
    pub(super) fn template_of(&self, k: &ConnKey, v: &c::Conn) -> Option<ConnKey> {
        let sk = self.svc_keys.get(&v.svc_id, 0).ok()?;
        let svc = self.services.get(&sk, 0).ok()?;
        let fwmark = if sk.proto == c::IPPROTO_IP { sk.addr.w[0] } else { 0 };
        Some(c::template_key(k.caddr, &svc.netmask, k.vaddr, k.proto, sk.port, fwmark))
    }

    /// Gives back the count of an entry this pass removed, lifts OVERLOAD as its end may and
    /// updates the scheduling tree: [`c::conn_end`], the data plane's rule, on the same words
    /// through the mapping.
    fn release_count(&mut self, k: &ConnKey, v: &c::Conn) {
        if k.kind == c::CONN_KIND_OUT {
            return;
        }
        let (Some(d), Some(n)) = (self.dests.ptr_field(v.dest_id), self.dest_conns.ptr_field(v.dest_id)) else {
            return;
        };
        // SAFETY: the dest's elements of XLB_DESTS and XLB_DEST_CONNS in their live mappings
        // (ptr_field checked the id), only changed atomically there; the tree update reads them
        // and writes only XLB_SCHED_TREE's words.
        unsafe { c::conn_end::<c::HostAtomics, _>(d, n, c::Held::of(k.kind, v.flags), &mut self.trees()) };
    }
}

/// `BPF_NOEXIST`: insert only where the key is absent.
const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only an entry still there.
const BPF_EXIST: u64 = 2;

/// Marks template `t` assured (`c::TEMPLATE_S_ASSURED`, IPVS keeps it so for the template's
/// life) when a connection that assured it leaves the table; gone already, it stays gone.
fn mark_assured<K: aya::Pod, V: aya::Pod>(conns: &mut HashMap<MapData, K, V>, t: &K, state: impl Fn(&mut V) -> &mut u8) {
    let Ok(mut cur) = conns.get(t, 0) else { return };
    if *state(&mut cur) & c::TEMPLATE_S_ASSURED == 0 {
        *state(&mut cur) |= c::TEMPLATE_S_ASSURED;
        // The data plane only moves a template's timer: a packet refreshing it in between
        // loses that refresh, and the next connection through it refreshes it again.
        let _ = conns.insert(t, cur, BPF_EXIST);
    }
}

/// Removes entry `k` of the connection table and returns its value, in one step
/// (`BPF_MAP_LOOKUP_AND_DELETE_ELEM` on a hash map, Linux 5.14; aya exposes it only for queues
/// and stacks). `None` when there is no such entry.
fn take_conn(conns: &HashMap<MapData, ConnKey, c::Conn>, k: &ConnKey) -> anyhow::Result<Option<c::Conn>> {
    take_entry(conns, k)
}

/// [`take_conn`] for either table.
pub(super) fn take_entry<K: aya::Pod, V: aya::Pod + Default>(conns: &HashMap<MapData, K, V>, k: &K) -> anyhow::Result<Option<V>> {
    const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
    /// The kernel's `bpf_attr` for element commands.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut value = V::default();
    let attr = ElemAttr {
        map_fd: conns.map().fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: k as *const K as u64,
        value: &mut value as *mut V as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix of the size given; the kernel reads the key and
    // writes one value of the map's value size (`V`) through the pointers, both live here.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &attr as *const ElemAttr,
            std::mem::size_of::<ElemAttr>() as libc::c_uint,
        )
    };
    if rc == 0 {
        return Ok(Some(value));
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        e => Err(anyhow::anyhow!("taking a connection out of the table: {e}")),
    }
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock of the data plane's `bpf_ktime_get_coarse_ns`.
pub fn monotonic_coarse_ns() -> u64 {
    // SAFETY: timespec is plain integers (all zero is a value); clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
