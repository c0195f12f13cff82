//! The sync daemon's side of the connection tables (`crate::sync`): what a master reads to
//! describe a connection, and what a backup writes to install one (kernel `ip_vs_proc_conn`),
//! with the dest counts kept as the data plane and lbd's expiry keep them, so they balance when
//! lbd later expires the entry.

use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap, MapData};
use lb_common::{self as c, Addr, ConnKey, ConnKey6, Held, tcp_state};

use super::Store;
use super::codec::{to_addr, to_ip};
use super::conns::{monotonic_coarse_ns, take_entry};
use crate::sync::wire::{SyncConn, flags as wf};

/// `BPF_NOEXIST` / `BPF_EXIST`.
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;
/// A template's timeout when the message has none (version 0): the kernel's 3 minutes.
const TEMPLATE_DEFAULT_TIMEOUT: u32 = 180;

/// What became of one received entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    New,
    Updated,
    /// No service or real server here matches it.
    NoDest,
    /// The expiry of a connection already moved to another real server (ignored, as IPVS).
    Stale,
    /// A protocol the data plane does not carry, or a one-packet service's.
    NotCarried,
}

/// Value types of the two tables.
trait Entry: aya::Pod + Copy + Default {
    fn conn(&self) -> &c::Conn;
    fn with_conn(&self, c: c::Conn) -> Self;
    fn new(c: c::Conn, vip: Addr) -> Self;
}

impl Entry for c::Conn {
    fn conn(&self) -> &c::Conn {
        self
    }
    fn with_conn(&self, c: c::Conn) -> Self {
        c
    }
    fn new(c: c::Conn, _vip: Addr) -> Self {
        c
    }
}

impl Entry for c::Conn6 {
    fn conn(&self) -> &c::Conn {
        &self.c
    }
    fn with_conn(&self, c: c::Conn) -> Self {
        c::Conn6 { c, ..*self }
    }
    fn new(c: c::Conn, vip: Addr) -> Self {
        c::Conn6 { c, vip }
    }
}

/// Key types of the two tables.
trait Key: aya::Pod + Copy {
    type V: Entry;
    fn table(s: &Store) -> &HashMap<MapData, Self, Self::V>;
    fn table_mut(s: &mut Store) -> &mut HashMap<MapData, Self, Self::V>;
    fn reply(&self, rs: &Addr, rport: u16) -> Self;
    fn vaddr(&self) -> Addr;
    /// Network order.
    fn vport(&self) -> u16;
    /// A NAT reply-side entry's value: the VIP goes in `timeout` (IPv4) or `vip` (IPv6).
    fn reply_value(&self, dest_id: u32, svc_id: u32, vport: u16, now: u64) -> Self::V;
    /// Whether reply-side entry `r` belongs to client-side key `self`.
    fn reply_points_back(&self, r: &Self::V) -> bool;
}

impl Key for ConnKey {
    type V = c::Conn;
    fn table(s: &Store) -> &HashMap<MapData, Self, c::Conn> {
        &s.conns
    }
    fn table_mut(s: &mut Store) -> &mut HashMap<MapData, Self, c::Conn> {
        &mut s.conns
    }
    fn reply(&self, rs: &Addr, rport: u16) -> Self {
        self.reply_side(rs.w[0], rport)
    }
    fn vaddr(&self) -> Addr {
        Addr::v4(self.vaddr)
    }
    fn vport(&self) -> u16 {
        self.vport
    }
    fn reply_value(&self, dest_id: u32, svc_id: u32, vport: u16, now: u64) -> c::Conn {
        c::Conn { dest_id, svc_id, last_seen: now, timeout: self.vaddr, port: vport, ..Default::default() }
    }
    fn reply_points_back(&self, r: &c::Conn) -> bool {
        r.timeout == self.vaddr && r.port == self.vport
    }
}

impl Key for ConnKey6 {
    type V = c::Conn6;
    fn table(s: &Store) -> &HashMap<MapData, Self, c::Conn6> {
        &s.conns6
    }
    fn table_mut(s: &mut Store) -> &mut HashMap<MapData, Self, c::Conn6> {
        &mut s.conns6
    }
    fn reply(&self, rs: &Addr, rport: u16) -> Self {
        self.reply_side(*rs, rport)
    }
    fn vaddr(&self) -> Addr {
        self.vaddr
    }
    fn vport(&self) -> u16 {
        self.vport
    }
    fn reply_value(&self, dest_id: u32, svc_id: u32, vport: u16, now: u64) -> c::Conn6 {
        c::Conn6 { c: c::Conn { dest_id, svc_id, last_seen: now, port: vport, ..Default::default() }, vip: self.vaddr }
    }
    fn reply_points_back(&self, r: &c::Conn6) -> bool {
        r.vip == self.vaddr && r.c.port == self.vport
    }
}

/// A template's "virtual address" on the wire when it is a fwmark one (protocol IP): the mark,
/// in network order where an address would be.
fn mark_addr(mark: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(mark))
}

/// The wire state of an entry of ours: TCP's numbers are IPVS's; UDP's one state is 0.
fn wire_state(state: u8) -> u16 {
    if state == tcp_state::STATE_UDP { 0 } else { u16::from(state) }
}

impl Store {
    // ---- master side ----

    /// The sync entries of client-side connection `k` (IPv4): the connection, then, for one
    /// made through a persistence template, the template (IPVS syncs `cp->control` with it).
    /// Empty when it left the table meanwhile.
    pub fn sync_entries4(&self, k: &ConnKey) -> Vec<SyncConn> {
        let Ok(v) = self.conns.get(k, 0) else { return Vec::new() };
        let af = c::AF_INET;
        let tk = self.template_of(k, &v);
        let t = tk.and_then(|tk| self.conns.get(&tk, 0).ok().map(|t| (tk, t)));
        let mut out = Vec::new();
        let Some(fwmark) = self.sync_fwmark(&v) else { return out };
        let caddr = to_ip(af, &Addr::v4(k.caddr));
        out.extend(self.sync_conn(caddr, k.cport, to_ip(af, &Addr::v4(k.vaddr)), k.vport, k.proto, &v, fwmark));
        if v.flags & c::CONN_F_CONTROLLED != 0
            && let Some((tk, t)) = t
        {
            let vaddr = if tk.proto == c::IPPROTO_IP { mark_addr(tk.vaddr) } else { to_ip(af, &Addr::v4(tk.vaddr)) };
            let assured = v.flags & c::CONN_F_ASSURED != 0;
            out.extend(self.sync_template(to_ip(af, &Addr::v4(tk.caddr)), vaddr, tk.vport, tk.proto, &t, assured, fwmark));
        }
        out
    }

    /// [`Store::sync_entries4`] for the IPv6 table.
    pub fn sync_entries6(&self, k: &ConnKey6) -> Vec<SyncConn> {
        let Ok(v) = self.conns6.get(k, 0) else { return Vec::new() };
        let v = v.c;
        let af = c::AF_INET6;
        let mut out = Vec::new();
        let Some(fwmark) = self.sync_fwmark(&v) else { return out };
        out.extend(self.sync_conn(to_ip(af, &k.caddr), k.cport, to_ip(af, &k.vaddr), k.vport, k.proto, &v, fwmark));
        if v.flags & c::CONN_F_CONTROLLED != 0
            && let Some(tk) = self.template_of6(k, &v)
            && let Ok(t) = self.conns6.get(&tk, 0)
        {
            let vaddr = if tk.proto == c::IPPROTO_IP {
                // The mark in the address's first word, network order, the rest zero.
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&tk.vaddr.w[0].to_be_bytes());
                IpAddr::from(o)
            } else {
                to_ip(af, &tk.vaddr)
            };
            let assured = v.flags & c::CONN_F_ASSURED != 0;
            out.extend(self.sync_template(to_ip(af, &tk.caddr), vaddr, tk.vport, tk.proto, &t.c, assured, fwmark));
        }
        out
    }

    /// The fwmark a connection's entries carry (its service's mark, 0 for an address service);
    /// `None` for a connection not to sync: its service is gone, or is one-packet (IPVS does not
    /// sync ONE_PACKET connections).
    fn sync_fwmark(&self, v: &c::Conn) -> Option<u32> {
        let sk = self.svc_keys.get(&v.svc_id, 0).ok()?;
        let svc = self.services.get(&sk, 0).ok()?;
        if svc.flags & c::SVC_F_ONEPACKET != 0 {
            return None;
        }
        Some(if sk.proto == c::IPPROTO_IP { sk.addr.w[0] } else { 0 })
    }

    #[allow(clippy::too_many_arguments)]
    fn sync_conn(&self, caddr: IpAddr, cport: u16, vaddr: IpAddr, vport: u16, proto: u8, v: &c::Conn, fwmark: u32) -> Option<SyncConn> {
        let d = self.dests.get(v.dest_id)?;
        let mut flags = u32::from(d.fwd) & wf::FWD_MASK;
        if v.flags & c::CONN_F_INACTIVE != 0 {
            flags |= wf::INACTIVE;
        }
        if v.flags & c::CONN_F_NOOUTPUT != 0 {
            flags |= wf::NOOUTPUT;
        }
        Some(SyncConn {
            protocol: proto,
            flags,
            state: wire_state(v.state),
            cport: u16::from_be(cport),
            vport: u16::from_be(vport),
            dport: u16::from_be(v.port),
            fwmark,
            timeout: v.timeout,
            caddr,
            vaddr,
            daddr: to_ip(d.af, &d.addr),
            seq: None,
            pe_data: None,
            pe_name: None,
        })
    }

    /// A template's entry: flags as a kernel template's (TEMPLATE, its real server's forwarding
    /// method, INACTIVE, NOOUTPUT but for NAT), state ASSURED once a connection through it was.
    #[allow(clippy::too_many_arguments)]
    fn sync_template(&self, caddr: IpAddr, vaddr: IpAddr, vport: u16, proto: u8, t: &c::Conn, assured: bool, fwmark: u32) -> Option<SyncConn> {
        let d = self.dests.get(t.dest_id)?;
        let fwd = u32::from(d.fwd) & wf::FWD_MASK;
        let mut flags = wf::TEMPLATE | fwd | wf::INACTIVE;
        if fwd != wf::MASQ {
            flags |= wf::NOOUTPUT;
        }
        let assured = assured || t.state & c::TEMPLATE_S_ASSURED != 0;
        Some(SyncConn {
            protocol: proto,
            flags,
            state: u16::from(assured),
            cport: 0,
            vport: u16::from_be(vport),
            // As -Lc shows it: the real server's port, 0 for a template of all ports.
            dport: if vport == 0 { 0 } else { u16::from_be(d.port) },
            fwmark,
            timeout: t.timeout,
            caddr,
            vaddr,
            daddr: to_ip(d.af, &d.addr),
            seq: None,
            pe_data: None,
            pe_name: None,
        })
    }

    // ---- backup side ----

    /// Installs one received entry as IPVS's `ip_vs_proc_conn` does. `cache`: the real
    /// servers, read once per batch.
    pub fn sync_install(&mut self, e: &SyncConn, cache: &mut DestCache) -> anyhow::Result<Installed> {
        let cfg = self.config()?;
        let template = e.flags & wf::TEMPLATE != 0;
        if !template && e.protocol != c::IPPROTO_TCP && e.protocol != c::IPPROTO_UDP {
            return Ok(Installed::NotCarried);
        }
        let vaddr_key = |a: &IpAddr| -> Addr {
            if template && e.protocol == c::IPPROTO_IP {
                // A fwmark template's "address" is the mark (network order on the wire).
                match a {
                    IpAddr::V4(a) => Addr::v4(u32::from(*a)),
                    IpAddr::V6(a) => {
                        let o = a.octets();
                        Addr::v4(u32::from_be_bytes([o[0], o[1], o[2], o[3]]))
                    }
                }
            } else {
                to_addr(a)
            }
        };
        let kind = if template { c::CONN_KIND_TEMPLATE } else { c::CONN_KIND_IN };
        let (caddr, vaddr) = (to_addr(&e.caddr), vaddr_key(&e.vaddr));
        match e.caddr {
            IpAddr::V4(_) => {
                let k = ConnKey {
                    caddr: caddr.w[0],
                    vaddr: vaddr.w[0],
                    cport: e.cport.to_be(),
                    vport: e.vport.to_be(),
                    proto: e.protocol,
                    kind,
                    _pad: 0,
                };
                self.install(k, e, &cfg, cache)
            }
            IpAddr::V6(_) => {
                let k = ConnKey6 { caddr, vaddr, cport: e.cport.to_be(), vport: e.vport.to_be(), proto: e.protocol, kind, _pad: 0 };
                self.install(k, e, &cfg, cache)
            }
        }
    }

    fn install<K: Key>(&mut self, k: K, e: &SyncConn, cfg: &c::Config, cache: &mut DestCache) -> anyhow::Result<Installed> {
        let template = e.flags & wf::TEMPLATE != 0;
        let now = monotonic_coarse_ns();
        let daddr = to_addr(&e.daddr);
        let dport = e.dport.to_be();
        let inactive = e.flags & wf::INACTIVE != 0;
        let state = if template {
            e.state as u8 & c::TEMPLATE_S_ASSURED
        } else if e.protocol == c::IPPROTO_UDP {
            tcp_state::STATE_UDP
        } else {
            e.state as u8
        };
        let timeout = match e.timeout {
            0 if template => TEMPLATE_DEFAULT_TIMEOUT,
            0 => cfg.timeout(state).unwrap_or(TEMPLATE_DEFAULT_TIMEOUT),
            t => t,
        };
        if let Ok(cur) = K::table(self).get(&k, 0) {
            let cc = *cur.conn();
            let same_dest = self.dests.get(cc.dest_id).is_some_and(|d| d.addr == daddr && (template || cc.port == dport));
            if template || same_dest {
                // Update what IPVS updates (state, timer, INACTIVE), moving the connection
                // between its dest's active and inactive counts when INACTIVE changed.
                let mut n = c::Conn { state, timeout, last_seen: now, ..cc };
                if !template {
                    n.flags = (cc.flags & !c::CONN_F_INACTIVE) | if inactive { c::CONN_F_INACTIVE } else { 0 };
                    c::sync::mark_synced(&mut n, cfg.sync_threshold);
                }
                if K::table_mut(self).insert(k, cur.with_conn(n), BPF_EXIST).is_ok() {
                    let (from, to) = (Held::of(c::CONN_KIND_IN, cc.flags), Held::of(c::CONN_KIND_IN, n.flags));
                    if !template && from != to {
                        self.count_moved(cc.dest_id, from, to);
                    }
                    return Ok(Installed::Updated);
                }
                // Gone meanwhile (expired, replaced): installed anew below.
            } else if inactive {
                // The expiry message of a connection already moved to another real server.
                return Ok(Installed::Stale);
            } else {
                // Another real server now: the old connection ends (ip_vs_conn_expire_now).
                self.expire_now(&k)?;
            }
        }
        // A new connection or template, bound to this director's matching real server.
        let Some((svc_id, svc_flags, dest_id, dest)) = self.find_dest(e, &k, daddr, cache) else {
            return Ok(Installed::NoDest);
        };
        if svc_flags & c::SVC_F_ONEPACKET != 0 && !template {
            return Ok(Installed::NotCarried);
        }
        let (conn, held) = if template {
            (c::Conn { dest_id, svc_id, last_seen: now, timeout, state, flags: 0, port: 0, ..Default::default() }, Held::Persist)
        } else {
            let mut flags = if inactive { c::CONN_F_INACTIVE } else { 0 };
            // The backup's real server decides the forwarding (IPVS: "connections inherit
            // forwarding method from backup server"): DR/TUN never see a reply.
            if dest.fwd == c::FWD_DROUTE || dest.fwd == c::FWD_TUNNEL {
                flags |= c::CONN_F_NOOUTPUT;
            }
            if svc_flags & c::SVC_F_PERSISTENT != 0 {
                flags |= c::CONN_F_CONTROLLED;
            }
            let mut conn = c::Conn { dest_id, svc_id, last_seen: now, timeout, state, flags, port: dport, ..Default::default() };
            // IPVS: its packet count starts at sync_threshold, its last-sent state is its state.
            c::sync::mark_synced(&mut conn, cfg.sync_threshold);
            (conn, Held::of(c::CONN_KIND_IN, flags))
        };
        // Counted first and given back on failure, as the data plane's `create` does, so the
        // count never goes below zero when the entry ends right away.
        self.count_start(dest_id, held);
        if K::table_mut(self).insert(k, K::V::new(conn, Addr::ZERO), BPF_NOEXIST).is_err() {
            self.count_end(dest_id, held);
            // The data plane made it meanwhile (a packet of it reached us): it stays.
            return Ok(Installed::Stale);
        }
        if !template && dest.fwd == c::FWD_MASQ {
            let reply = k.reply(&dest.addr, dport);
            let rv = k.reply_value(dest_id, svc_id, k.vport(), now);
            if K::table_mut(self).insert(reply, rv, 0).is_err() {
                // Without its reply side a NAT connection would answer from the real server's
                // address: not at all, then (as the data plane).
                self.expire_now(&k)?;
                return Ok(Installed::NotCarried);
            }
        }
        Ok(Installed::New)
    }

    /// Ends client-side connection `k` now: removes it (and a NAT reply side that points back
    /// to it) and gives back the count of the entry removed, unless someone else removed it
    /// first (then they gave it back).
    fn expire_now<K: Key>(&mut self, k: &K) -> anyhow::Result<()> {
        let Some(cur) = take_entry(K::table(self), k)? else { return Ok(()) };
        let cc = *cur.conn();
        self.count_end(cc.dest_id, Held::of(c::CONN_KIND_IN, cc.flags));
        if let Some(d) = self.dests.get(cc.dest_id)
            && d.fwd == c::FWD_MASQ
        {
            let reply = k.reply(&d.addr, cc.port);
            if K::table(self).get(&reply, 0).is_ok_and(|r| r.conn().dest_id == cc.dest_id && k.reply_points_back(&r)) {
                let _ = K::table_mut(self).remove(&reply);
            }
        }
        Ok(())
    }

    /// The service of entry `e` here and its real server (IPVS `ip_vs_find_dest`): the service
    /// by fwmark, else by (protocol, VIP, port), else the "all ports" one; in it the real server
    /// at (daddr, dport), or at (daddr, 0) (for a fwmark service not NATed, port 0 first).
    fn find_dest<K: Key>(&self, e: &SyncConn, k: &K, daddr: Addr, cache: &mut DestCache) -> Option<(u32, u32, u32, c::Dest)> {
        let af = if e.caddr.is_ipv6() { c::AF_INET6 } else { c::AF_INET };
        let template = e.flags & wf::TEMPLATE != 0;
        // A fwmark template says its mark in its address when the message has none (version 0).
        let mark = match (e.fwmark, template && e.protocol == c::IPPROTO_IP) {
            (0, true) => k.vaddr().w[0],
            (m, _) => m,
        };
        let mut keys = Vec::new();
        if mark != 0 {
            keys.push(c::ServiceKey { addr: Addr::v4(mark), port: 0, proto: c::IPPROTO_IP, af });
        }
        if !(template && e.protocol == c::IPPROTO_IP) {
            let vaddr = to_addr(&e.vaddr);
            keys.push(c::ServiceKey { addr: vaddr, port: e.vport.to_be(), proto: e.protocol, af });
            keys.push(c::ServiceKey { addr: vaddr, port: 0, proto: e.protocol, af });
        }
        let svc = keys.iter().find_map(|sk| self.services.get(sk, 0).ok())?;
        let dport = e.dport.to_be();
        let port = if mark != 0 && e.flags & wf::FWD_MASK != wf::MASQ { 0 } else { dport };
        let dests = cache.of(self, svc.id);
        [port, port ^ dport].iter().find_map(|p| {
            dests.iter().find(|(_, d)| d.addr == daddr && d.port == *p).map(|(id, d)| (svc.id, svc.flags, *id, *d))
        })
    }

    fn count_start(&mut self, dest_id: u32, held: Held) {
        let (Some(d), Some(n)) = (self.dests.ptr_field(dest_id), self.dest_conns.ptr_field(dest_id)) else { return };
        // SAFETY: the dest's elements of XLB_DESTS and XLB_DEST_CONNS in their live mappings
        // (ptr_field checked the id), only changed atomically (see conns.rs release_count).
        unsafe { c::conn_start::<c::HostAtomics, _>(d, n, held, &mut self.trees()) };
    }

    fn count_end(&mut self, dest_id: u32, held: Held) {
        let (Some(d), Some(n)) = (self.dests.ptr_field(dest_id), self.dest_conns.ptr_field(dest_id)) else { return };
        // SAFETY: as in count_start.
        unsafe { c::conn_end::<c::HostAtomics, _>(d, n, held, &mut self.trees()) };
    }

    fn count_moved(&mut self, dest_id: u32, from: Held, to: Held) {
        let (Some(d), Some(n)) = (self.dests.ptr_field(dest_id), self.dest_conns.ptr_field(dest_id)) else { return };
        // SAFETY: as in count_start.
        unsafe { c::conn_moved::<c::HostAtomics, _>(d, n, from, to, &mut self.trees()) };
    }
}

/// The live real servers of each service, read once per batch of messages.
#[derive(Default)]
pub struct DestCache {
    by_svc: Option<StdHashMap<u32, Vec<(u32, c::Dest)>>>,
}

impl DestCache {
    fn of(&mut self, s: &Store, svc_id: u32) -> Vec<(u32, c::Dest)> {
        let all = self.by_svc.get_or_insert_with(|| {
            let mut m: StdHashMap<u32, Vec<(u32, c::Dest)>> = StdHashMap::new();
            let live = c::DEST_F_IN_USE | c::DEST_F_AVAILABLE;
            for id in s.dests.in_use_ids() {
                if let Some(d) = s.dests.get(id)
                    && d.flags & live == live
                {
                    m.entry(d.svc_id).or_default().push((id, d));
                }
            }
            m
        });
        all.get(&svc_id).cloned().unwrap_or_default()
    }
}
