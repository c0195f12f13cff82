//! The kernel's control semantics (`net/netfilter/ipvs/ip_vs_ctl.c`) as methods on [`Table`].
//!
//! Every method validates first and mutates last, so a failed operation leaves the table
//! untouched. Errors are errno values (`libc::E*`), the ones IPVS returns for the same request;
//! `ipvsadm` turns them into text with `ipvs_strerror`.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::{Af, Counters, Dest, Fwd, Rates, Service, SvcKey, Table, Tunnel};

/// An errno value (`libc::EEXIST`, ...).
pub type Errno = i32;

/// What `ipvsadm -A/-E` hands the kernel (`ip_vs_service_user_kern`): a complete record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub key: SvcKey,
    pub sched: String,
    /// `lb_common::SVC_F_*` without `SVC_F_HASHED`.
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// IPv4 mask in host order, or IPv6 prefix length.
    pub netmask: u32,
    /// Persistence engine, empty for none.
    pub pe_name: String,
}

/// What `ipvsadm -a/-e/-d` hands the kernel (`ip_vs_dest_user_kern`): a complete record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: Fwd,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tunnel: Tunnel,
}

impl Service {
    /// A new service as `ip_vs_add_service` makes it: the spec's settings, no real servers,
    /// zero counters.
    pub fn new(id: u32, spec: &ServiceSpec) -> Service {
        Service {
            id,
            key: spec.key,
            sched: spec.sched.clone(),
            flags: spec.flags,
            timeout: spec.timeout,
            netmask: spec.netmask,
            pe_name: spec.pe_name.clone(),
            dests: Vec::new(),
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }
}

impl Dest {
    /// A new real server as `ip_vs_new_dest` makes it: the spec's settings (its weight also the
    /// last one), no connections, zero counters; `seq` is its insertion sequence number.
    pub fn new(id: u32, seq: u64, spec: &DestSpec) -> Dest {
        Dest {
            id,
            addr: spec.addr,
            port: spec.port,
            fwd: spec.fwd,
            weight: spec.weight,
            last_weight: spec.weight,
            u_threshold: spec.u_threshold,
            l_threshold: spec.l_threshold,
            tunnel: spec.tunnel,
            seq,
            overloaded: false,
            local: crate::local::is_local(&spec.addr),
            active_conns: 0,
            inact_conns: 0,
            persist_conns: 0,
            stats: Counters::default(),
            rates: Rates::default(),
        }
    }
}

/// IPVS's `IP_VS_CONN_F_TUNNEL_TYPE_GUE`: a GUE real server needs a tunnel port.
pub const TUN_TYPE_GUE: u8 = 1;

#[cfg(test)]
thread_local! {
    /// Tests that replay real ipvsadm recordings need every IPVS scheduler to be accepted.
    pub(crate) static ALL_SCHEDULERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Environment variable: when set to `1`, also accept the scheduler `none` (a service that
/// schedules no new connection: they are refused, as when no real server is available); for
/// testing the control plane against recordings that use it. Every IPVS scheduler of
/// `lb_common::sched::SCHED_NAMES` is in the data plane (twos as kernels from 6.2 on have it).
pub const ALLOW_ANY_SCHEDULER_ENV: &str = "XLB_ALLOW_ANY_SCHEDULER";

/// Whether [`ALLOW_ANY_SCHEDULER_ENV`] is set to `1` (read once per process).
fn any_scheduler_allowed() -> bool {
    #[cfg(test)]
    if ALL_SCHEDULERS.with(|c| c.get()) {
        return true;
    }
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os(ALLOW_ANY_SCHEDULER_ENV).is_some_and(|v| v == "1"))
}

/// Whether the table accepts scheduler `name`: every IPVS scheduler of
/// `lb_common::sched::SCHED_NAMES` (all are in the data plane), and `none` only with
/// [`ALLOW_ANY_SCHEDULER_ENV`]. Any other name fails as a scheduler module that cannot be loaded
/// does: ENOENT, "Scheduler or persistence engine not found". This is the one place that knows it.
pub fn scheduler_available(name: &str) -> bool {
    if name == "none" {
        return any_scheduler_allowed();
    }
    lb_common::sched::sched_from_name(name).is_some()
}

/// Persistence engines IPVS ships (`ip_vs_pe_sip`).
fn pe_available(name: &str) -> bool {
    name == "sip"
}

/// Lookup structures over a [`Table`] so that long runs of changes (`-R` of a large
/// configuration) cost O(1) per change instead of O(table): the position of every service by
/// key and the ids in use. Built from the table ([`Index::new`]) and kept in step by the
/// `*_in` methods; the plain methods build a throwaway one, so both give the same results
/// (ids are always the lowest free ones).
#[derive(Clone, Debug)]
pub struct Index {
    pos: HashMap<SvcKey, usize>,
    svc_ids: IdSet,
    dest_ids: IdSet,
}

impl Index {
    pub fn new(t: &Table) -> Index {
        let mut svc_ids = IdSet::new(lb_common::MAX_SERVICES);
        let mut dest_ids = IdSet::new(lb_common::MAX_DESTS);
        for s in &t.services {
            svc_ids.insert(s.id);
            for d in &s.dests {
                dest_ids.insert(d.id);
            }
        }
        for id in &t.reserved_dest_ids {
            dest_ids.insert(*id);
        }
        // A service id stays taken while a dest of it is in the trash (see TrashedDest::svc_id).
        for d in &t.trash {
            svc_ids.insert(d.svc_id);
        }
        Index { pos: positions(t), svc_ids, dest_ids }
    }
}

fn positions(t: &Table) -> HashMap<SvcKey, usize> {
    t.services.iter().enumerate().map(|(i, s)| (s.key, i)).collect()
}

/// A set of ids in `0..max` that hands out the lowest free one.
#[derive(Clone, Debug)]
struct IdSet {
    words: Vec<u64>,
    max: u32,
    /// Every id below it is in use.
    low: u32,
}

impl IdSet {
    fn new(max: u32) -> IdSet {
        IdSet { words: vec![0; max.div_ceil(64) as usize], max, low: 0 }
    }

    fn insert(&mut self, id: u32) {
        if let Some(w) = self.words.get_mut((id / 64) as usize) {
            *w |= 1 << (id % 64);
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(w) = self.words.get_mut((id / 64) as usize) {
            *w &= !(1 << (id % 64));
            self.low = self.low.min(id);
        }
    }

    /// The lowest free id (not taken yet), ENOMEM when all are in use.
    fn lowest_free(&mut self) -> Result<u32, Errno> {
        let mut i = (self.low / 64) as usize;
        while let Some(&w) = self.words.get(i) {
            if w != u64::MAX {
                let id = i as u32 * 64 + (!w).trailing_zeros();
                self.low = id;
                return if id < self.max { Ok(id) } else { Err(libc::ENOMEM) };
            }
            i += 1;
        }
        self.low = self.max;
        Err(libc::ENOMEM)
    }
}

impl Table {
    /// The service a request names: by (af, protocol, address, port) or by (af, fwmark).
    pub fn find_service(&self, key: &SvcKey) -> Option<&Service> {
        self.services.iter().find(|s| s.key == *key)
    }

    fn service_index(&self, ix: &Index, key: &SvcKey) -> Result<usize, Errno> {
        let i = ix.pos.get(key).copied().ok_or(libc::ESRCH)?;
        debug_assert_eq!(self.services.get(i).map(|s| s.key), Some(*key));
        Ok(i)
    }

    /// `ip_vs_add_service` (IPVS_CMD_NEW_SERVICE). Returns the new service's id.
    pub fn add_service(&mut self, spec: &ServiceSpec) -> Result<u32, Errno> {
        self.add_service_in(&mut Index::new(self), spec)
    }

    pub fn add_service_in(&mut self, ix: &mut Index, spec: &ServiceSpec) -> Result<u32, Errno> {
        if ix.pos.contains_key(&spec.key) {
            return Err(libc::EEXIST);
        }
        check_service_params(spec)?;
        let id = ix.svc_ids.lowest_free()?;
        ix.svc_ids.insert(id);
        ix.pos.insert(spec.key, self.services.len());
        self.services.push(Service::new(id, spec));
        Ok(id)
    }

    /// `ip_vs_edit_service` (IPVS_CMD_SET_SERVICE): replaces scheduler, flags, timeout,
    /// netmask and persistence engine; keeps the id, the dests and the counters.
    pub fn edit_service(&mut self, spec: &ServiceSpec) -> Result<(), Errno> {
        self.edit_service_in(&Index::new(self), spec)
    }

    pub fn edit_service_in(&mut self, ix: &Index, spec: &ServiceSpec) -> Result<(), Errno> {
        let i = self.service_index(ix, &spec.key)?;
        check_service_params(spec)?;
        let svc = &mut self.services[i];
        svc.sched = spec.sched.clone();
        svc.flags = spec.flags;
        svc.timeout = spec.timeout;
        svc.netmask = spec.netmask;
        svc.pe_name = spec.pe_name.clone();
        Ok(())
    }

    /// `ip_vs_del_service`: the service and all its real servers go.
    pub fn del_service(&mut self, key: &SvcKey) -> Result<(), Errno> {
        self.del_service_in(&mut Index::new(self), key)
    }

    pub fn del_service_in(&mut self, ix: &mut Index, key: &SvcKey) -> Result<(), Errno> {
        let i = self.service_index(ix, key)?;
        let svc = self.services.remove(i);
        // Its dests' ids stay taken: connections may still point at them; and so does its own
        // id while they are in the trash.
        for d in &svc.dests {
            self.trash_dest(&svc.key, svc.id, d);
        }
        self.release_svc_id(ix, svc.id);
        // The services after it moved up by one.
        ix.pos.remove(key);
        if i < self.services.len() {
            for p in ix.pos.values_mut() {
                if *p > i {
                    *p -= 1;
                }
            }
        }
        Ok(())
    }

    /// `ip_vs_flush`: every service goes.
    pub fn flush(&mut self) {
        self.flush_in(&mut Index::new(self));
    }

    pub fn flush_in(&mut self, ix: &mut Index) {
        // As `ip_vs_flush` deletes each service: the dests go to the trash.
        for svc in std::mem::take(&mut self.services) {
            for d in &svc.dests {
                self.trash_dest(&svc.key, svc.id, d);
            }
        }
        *ix = Index::new(self);
    }

    /// Frees service id `id` in `ix` unless a service or a trashed dest still holds it.
    fn release_svc_id(&self, ix: &mut Index, id: u32) {
        if !self.services.iter().any(|s| s.id == id) && !self.trash.iter().any(|t| t.svc_id == id) {
            ix.svc_ids.remove(id);
        }
    }

    /// `ip_vs_zero_service` for `Some(key)`, `ip_vs_zero_all` (all services, all dests and the
    /// global totals) for `None`.
    pub fn zero(&mut self, key: Option<&SvcKey>) -> Result<(), Errno> {
        self.zero_in(&Index::new(self), key)
    }

    pub fn zero_in(&mut self, ix: &Index, key: Option<&SvcKey>) -> Result<(), Errno> {
        fn zero_svc(svc: &mut Service) {
            svc.stats = Counters::default();
            svc.rates = Rates::default();
            for d in &mut svc.dests {
                d.stats = Counters::default();
                d.rates = Rates::default();
            }
        }
        match key {
            Some(key) => {
                let i = self.service_index(ix, key)?;
                zero_svc(&mut self.services[i]);
            }
            None => {
                self.services.iter_mut().for_each(zero_svc);
                self.totals = Counters::default();
            }
        }
        Ok(())
    }

    /// `ip_vs_add_dest` (IPVS_CMD_NEW_DEST). The new dest goes to the head of the list (IPVS
    /// list order: newest first). Returns its id.
    pub fn add_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<u32, Errno> {
        self.add_dest_in(&mut Index::new(self), key, spec)
    }

    pub fn add_dest_in(&mut self, ix: &mut Index, key: &SvcKey, spec: &DestSpec) -> Result<u32, Errno> {
        let i = self.service_index(ix, key)?;
        check_dest_family(&self.services[i], spec)?;
        check_dest_params(spec)?;
        let svc = &self.services[i];
        if find_dest(svc, &spec.addr, spec.port).is_some() {
            return Err(libc::EEXIST);
        }
        if !dest_addr_usable(&spec.addr) {
            return Err(libc::EINVAL);
        }
        // A deleted dest of this service with this address and port comes back from the trash.
        let revived = self.trash.iter().position(|t| t.svc == *key && t.addr == spec.addr && t.port == spec.port);
        let id = match revived {
            Some(pos) => {
                let t = self.trash.remove(pos);
                self.reserved_dest_ids.retain(|r| *r != t.id);
                self.release_svc_id(ix, t.svc_id);
                t.id
            }
            None => {
                let id = ix.dest_ids.lowest_free()?;
                ix.dest_ids.insert(id);
                id
            }
        };
        let seq = self.next_seq;
        let dest = Dest::new(id, seq, spec);
        self.services[i].dests.insert(0, dest);
        self.next_seq = seq + 1;
        Ok(id)
    }

    /// `ip_vs_edit_dest` (IPVS_CMD_SET_DEST): replaces forwarding method, weight, thresholds and
    /// tunnel settings of the dest with this address and port.
    pub fn edit_dest(&mut self, key: &SvcKey, spec: &DestSpec) -> Result<(), Errno> {
        self.edit_dest_in(&Index::new(self), key, spec)
    }

    pub fn edit_dest_in(&mut self, ix: &Index, key: &SvcKey, spec: &DestSpec) -> Result<(), Errno> {
        let i = self.service_index(ix, key)?;
        check_dest_family(&self.services[i], spec)?;
        check_dest_params(spec)?;
        let svc = &mut self.services[i];
        let j = find_dest(svc, &spec.addr, spec.port).ok_or(libc::ENOENT)?;
        let d = &mut svc.dests[j];
        // __ip_vs_update_dest: a raised or removed upper threshold lifts OVERLOAD.
        if lb_common::update_lifts_overload(d.u_threshold, spec.u_threshold) {
            d.overloaded = false;
        }
        d.fwd = spec.fwd;
        d.weight = spec.weight;
        if spec.weight != 0 {
            d.last_weight = spec.weight;
        }
        d.u_threshold = spec.u_threshold;
        d.l_threshold = spec.l_threshold;
        d.tunnel = spec.tunnel;
        d.local = crate::local::is_local(&spec.addr);
        Ok(())
    }

    /// Marks every real server whose address is local to the director now (and unmarks the
    /// others); whether anything changed. lbd runs it when the director's addresses change.
    pub fn refresh_local(&mut self) -> bool {
        let mut changed = false;
        for d in self.services.iter_mut().flat_map(|s| s.dests.iter_mut()) {
            let l = crate::local::is_local(&d.addr);
            changed |= d.local != l;
            d.local = l;
        }
        changed
    }

    /// `ip_vs_del_dest` (IPVS_CMD_DEL_DEST): looked up by address family, address and port.
    pub fn del_dest(&mut self, key: &SvcKey, addr: &IpAddr, port: u16) -> Result<(), Errno> {
        self.del_dest_in(&mut Index::new(self), key, addr, port)
    }

    pub fn del_dest_in(&mut self, ix: &mut Index, key: &SvcKey, addr: &IpAddr, port: u16) -> Result<(), Errno> {
        let i = self.service_index(ix, key)?;
        let svc = &mut self.services[i];
        let j = find_dest(svc, addr, port).ok_or(libc::ENOENT)?;
        let d = svc.dests.remove(j);
        // The id stays taken: connections may still point at the deleted dest.
        let svc_id = self.services[i].id;
        self.trash_dest(key, svc_id, &d);
        Ok(())
    }

    fn trash_dest(&mut self, svc: &SvcKey, svc_id: u32, d: &Dest) {
        self.reserved_dest_ids.push(d.id);
        self.trash.push(crate::model::TrashedDest { svc: *svc, svc_id, addr: d.addr, port: d.port, id: d.id });
    }

    /// `start_sync_thread`'s checks and bookkeeping: one daemon per role (EEXIST), none while a
    /// service has real servers of the other address family (EINVAL, IPVS cannot sync those).
    pub fn start_daemon(&mut self, master: bool, mut cfg: crate::model::SyncDaemonCfg) -> Result<(), Errno> {
        if self.services.iter().any(|s| s.dests.iter().any(|d| Af::of(&d.addr) != s.key.af())) {
            return Err(libc::EINVAL);
        }
        let d = &mut self.daemons;
        let slot = if master { &mut d.master } else { &mut d.backup };
        if slot.is_some() {
            return Err(libc::EEXIST);
        }
        d.starts = d.starts.wrapping_add(1);
        cfg.generation = d.starts;
        *slot = Some(cfg);
        Ok(())
    }

    /// `stop_sync_thread`: ESRCH when that daemon does not run.
    pub fn stop_daemon(&mut self, master: bool) -> Result<(), Errno> {
        let slot = if master { &mut self.daemons.master } else { &mut self.daemons.backup };
        slot.take().map(|_| ()).ok_or(libc::ESRCH)
    }

    /// `ip_vs_set_timeout` (`--set tcp tcpfin udp`): 0 keeps the current value.
    pub fn set_timeouts(&mut self, tcp: u32, tcp_fin: u32, udp: u32) -> Result<(), Errno> {
        // The kernel multiplies by HZ into an int.
        const MAX: u32 = (i32::MAX / 1000) as u32;
        if tcp > MAX || tcp_fin > MAX || udp > MAX {
            return Err(libc::EINVAL);
        }
        if tcp != 0 {
            self.timeouts.tcp = tcp;
        }
        if tcp_fin != 0 {
            self.timeouts.tcp_fin = tcp_fin;
        }
        if udp != 0 {
            self.timeouts.udp = udp;
        }
        Ok(())
    }
}

/// Scheduler, persistence engine and IPv6 netmask checks shared by add and edit.
fn check_service_params(spec: &ServiceSpec) -> Result<(), Errno> {
    if !scheduler_available(&spec.sched) {
        return Err(libc::ENOENT);
    }
    if !spec.pe_name.is_empty() && !pe_available(&spec.pe_name) {
        return Err(libc::ENOENT);
    }
    if spec.key.af() == Af::Inet6 && !(1..=128).contains(&spec.netmask) {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// Mixed address families are only allowed for tunnelled real servers
/// (`ip_vs_genl_set_cmd`: EINVAL for any other method; xlb runs no sync daemon, whose
/// protocol would refuse them too).
fn check_dest_family(svc: &Service, spec: &DestSpec) -> Result<(), Errno> {
    if Af::of(&spec.addr) != svc.key.af() && spec.fwd != Fwd::Tunnel {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// Checks at the top of `ip_vs_add_dest` / `ip_vs_edit_dest`.
fn check_dest_params(spec: &DestSpec) -> Result<(), Errno> {
    if spec.weight < 0 || spec.l_threshold > spec.u_threshold {
        return Err(libc::ERANGE);
    }
    if spec.tunnel.kind == TUN_TYPE_GUE && spec.tunnel.port == 0 {
        return Err(libc::EINVAL);
    }
    Ok(())
}

/// `ip_vs_lookup_dest`: same family, address and port.
fn find_dest(svc: &Service, addr: &IpAddr, port: u16) -> Option<usize> {
    svc.dests.iter().position(|d| d.addr == *addr && d.port == port)
}

/// `ip_vs_new_dest`: an IPv4 dest must be unicast or local (`inet_addr_type`: not zeronet,
/// multicast, the limited broadcast, or a broadcast address of the director's own networks);
/// an IPv6 dest unicast and not link-local, unless it is local to the director
/// (`__ip_vs_addr_is_local_v6`): v4-mapped, multicast, unspecified and link-local addresses
/// are refused otherwise.
fn dest_addr_usable(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(o[0] == 0 || a.is_broadcast() || a.is_multicast() || crate::local::is_local_broadcast(a))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let mapped = s[..5].iter().all(|&w| w == 0) && s[5] == 0xffff;
            let unicast = !(a.is_unspecified() || a.is_multicast() || mapped);
            let link_local = (s[0] & 0xffc0) == 0xfe80;
            (unicast && !link_local) || crate::local::is_local(addr)
        }
    }
}

/// The lowest id in `0..max` not in `used`, ENOMEM when all are taken.
#[cfg(test)]
fn lowest_free(used: impl Iterator<Item = u32>, max: u32) -> Result<u32, Errno> {
    let mut set = IdSet::new(max);
    used.for_each(|id| set.insert(id));
    set.lowest_free()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED))
    }

    fn key(addr: &str, port: u16) -> SvcKey {
        SvcKey::Inet { proto: Proto::Tcp, addr: v4(addr), port }
    }

    fn svc(addr: &str, port: u16, sched: &str) -> ServiceSpec {
        ServiceSpec {
            key: key(addr, port),
            sched: sched.into(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: String::new(),
        }
    }

    fn dest(addr: &str, port: u16) -> DestSpec {
        DestSpec {
            addr: v4(addr),
            port,
            fwd: Fwd::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: Tunnel::default(),
        }
    }

    #[test]
    fn add_edit_delete_service() {
        let mut t = Table::default();
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "rr")), Ok(0));
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "rr")), Err(libc::EEXIST));
        assert_eq!(t.add_service(&svc("10.0.0.2", 80, "rr")), Ok(1));
        assert_eq!(t.edit_service(&svc("10.0.0.3", 80, "rr")), Err(libc::ESRCH));
        let mut e = svc("10.0.0.1", 80, "rr");
        e.flags = lb_common::SVC_F_PERSISTENT;
        e.timeout = 300;
        assert_eq!(t.edit_service(&e), Ok(()));
        assert_eq!(t.find_service(&e.key).map(|s| s.timeout), Some(300));
        assert_eq!(t.del_service(&key("10.0.0.1", 80)), Ok(()));
        assert_eq!(t.del_service(&key("10.0.0.1", 80)), Err(libc::ESRCH));
        // The freed id is reused.
        assert_eq!(t.add_service(&svc("10.0.0.9", 80, "rr")), Ok(0));
    }

    #[test]
    fn missing_scheduler_or_pe_is_enoent_and_leaves_table() {
        let mut t = Table::default();
        let before = t.clone();
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "nosuch")), Err(libc::ENOENT));
        let mut s = svc("10.0.0.1", 80, "rr");
        s.pe_name = "foo".into();
        assert_eq!(t.add_service(&s), Err(libc::ENOENT));
        assert_eq!(t, before);
    }

    #[test]
    fn unknown_scheduler_is_enoent() {
        // Every IPVS scheduler is accepted; `none` only with the switch.
        for (name, _) in lb_common::sched::SCHED_NAMES {
            assert!(scheduler_available(name), "{name}");
        }
        assert!(!scheduler_available("none"));
        ALL_SCHEDULERS.with(|c| c.set(true));
        assert!(scheduler_available("wlc"));
        assert!(scheduler_available("none"));
        assert!(!scheduler_available("foo"));
        assert!(scheduler_available("twos"));
        assert!(!scheduler_available("RR"));
        ALL_SCHEDULERS.with(|c| c.set(false));
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED))
    }

    #[test]
    fn ipv6_services_and_mixed_families() {
        let mut t = Table::default();
        let mut s = svc("10.0.0.1", 80, "rr");
        s.key = SvcKey::Fwmark { mark: 1, af: Af::Inet6 };
        // An IPv6 service's netmask is a prefix length, 1..=128.
        for bad in [0, 129] {
            s.netmask = bad;
            assert_eq!(t.add_service(&s), Err(libc::EINVAL), "{bad}");
        }
        s.netmask = 64;
        assert_eq!(t.add_service(&s), Ok(0));
        let k6 = SvcKey::Inet { proto: Proto::Tcp, addr: v6("2001:db8::1"), port: 80 };
        s.key = k6;
        s.netmask = 128;
        assert_eq!(t.add_service(&s), Ok(1));
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "rr")), Ok(2));
        let k4 = key("10.0.0.1", 80);
        let before = t.clone();
        // Another family than the service's: tunnel only (EINVAL for -g/-m), both ways.
        let mut d = dest("0.0.0.0", 80);
        d.addr = v6("2001:db8::10");
        for fwd in [Fwd::Masq, Fwd::Route] {
            d.fwd = fwd;
            assert_eq!(t.add_dest(&k4, &d), Err(libc::EINVAL));
            assert_eq!(t.add_dest(&k6, &dest("192.168.1.1", 80)), Err(libc::EINVAL));
        }
        assert_eq!(t, before);
        d.fwd = Fwd::Tunnel;
        assert_eq!(t.add_dest(&k4, &d), Ok(0));
        let mut d4 = dest("192.168.1.1", 80);
        d4.fwd = Fwd::Tunnel;
        assert_eq!(t.add_dest(&k6, &d4), Ok(1));
        // Editing it to another method is refused the same way; deleting it is not checked.
        d4.fwd = Fwd::Route;
        assert_eq!(t.edit_dest(&k6, &d4), Err(libc::EINVAL));
        assert_eq!(t.del_dest(&k6, &d4.addr, 80), Ok(()));
        // Same-family IPv6 real servers of each method.
        for (i, fwd) in [Fwd::Masq, Fwd::Route, Fwd::Tunnel].into_iter().enumerate() {
            let mut d = dest("0.0.0.0", 80);
            d.addr = v6(&format!("2001:db8::2{i}"));
            d.fwd = fwd;
            assert!(t.add_dest(&k6, &d).is_ok(), "{fwd:?}");
        }
        // Link-local and multicast IPv6 real servers are refused as ip_vs_new_dest does.
        for bad in ["fe80::1", "ff02::1", "::", "::ffff:10.0.0.1"] {
            let mut d = dest("0.0.0.0", 80);
            d.addr = v6(bad);
            assert_eq!(t.add_dest(&k6, &d), Err(libc::EINVAL), "{bad}");
        }
        assert_eq!(t.del_service(&k6), Ok(()));
        assert_eq!(t.del_service(&k6), Err(libc::ESRCH));
    }

    #[test]
    fn local_real_servers_are_marked_and_refreshed() {
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        let k = key("10.0.0.1", 80);
        let mut d = dest("127.0.0.1", 80);
        d.fwd = Fwd::Route;
        t.add_dest(&k, &d).ok();
        t.add_dest(&k, &dest("192.0.2.10", 80)).ok();
        let local = |t: &Table| t.services[0].dests.iter().map(|d| (d.addr.to_string(), d.fwd, d.local)).collect::<Vec<_>>();
        // Listed with the method given (the oracle shows `Route`, not `Local`).
        assert_eq!(local(&t), [("192.0.2.10".into(), Fwd::Masq, false), ("127.0.0.1".into(), Fwd::Route, true)]);
        assert!(!t.refresh_local());
        // A stale mark (the address went away) is corrected by the refresh.
        t.services[0].dests[0].local = true;
        assert!(t.refresh_local());
        assert_eq!(local(&t)[0], ("192.0.2.10".into(), Fwd::Masq, false));
    }

    #[test]
    fn dests_prepended_with_ids_and_seq() {
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        t.add_service(&svc("10.0.0.2", 80, "rr")).ok();
        let k1 = key("10.0.0.1", 80);
        let k2 = key("10.0.0.2", 80);
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.1", 80)), Ok(0));
        assert_eq!(t.add_dest(&k2, &dest("192.168.1.1", 80)), Ok(1));
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.2", 80)), Ok(2));
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.2", 80)), Err(libc::EEXIST));
        let s = t.find_service(&k1).map(|s| s.dests.iter().map(|d| (d.id, d.seq)).collect::<Vec<_>>());
        assert_eq!(s, Some(vec![(2, 2), (0, 0)]));
        assert_eq!(t.next_seq, 3);
        assert_eq!(t.del_dest(&k1, &v4("192.168.1.1"), 80), Ok(()));
        assert_eq!(t.del_dest(&k1, &v4("192.168.1.1"), 80), Err(libc::ENOENT));
        // A deleted dest's id is not reused: its connections may still refer to it.
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.3", 80)), Ok(3));
        assert_eq!(t.reserved_dest_ids, vec![0]);
        assert_eq!(t.add_dest(&key("10.0.0.9", 80), &dest("192.168.1.3", 80)), Err(libc::ESRCH));
        // Deleting the service drops its dests (their ids reserved too).
        t.del_service(&k1).ok();
        assert_eq!(t.add_dest(&k2, &dest("192.168.1.4", 80)), Ok(4));
    }

    /// `ipvsadm -C`, then a service on another address with the same real server (what
    /// `xlb-compare-ipvs` found): the new service must not get the deleted one's id while that
    /// one's dests are in the trash, else the trash, which names its service through the id,
    /// would hand the new service the old dest with its counters and connections.
    #[test]
    fn a_trashed_dests_service_id_is_not_reused() {
        let mut t = Table::default();
        let (k1, k2) = (key("10.0.0.1", 80), key("10.0.0.2", 80));
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "rr")), Ok(0));
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.1", 80)), Ok(0));
        t.del_service(&k1).ok();
        assert_eq!(t.trash.iter().map(|d| (d.svc_id, d.id)).collect::<Vec<_>>(), [(0, 0)]);
        // Another service: a fresh id, and the real server is a fresh dest.
        assert_eq!(t.add_service(&svc("10.0.0.2", 80, "rr")), Ok(1));
        assert_eq!(t.add_dest(&k2, &dest("192.168.1.1", 80)), Ok(1));
        assert_eq!(t.trash.len(), 1);
        // The same service again revives its dest (ip_vs_trash_get_dest), under a new id.
        assert_eq!(t.add_service(&svc("10.0.0.1", 80, "rr")), Ok(2));
        assert_eq!(t.add_dest(&k1, &dest("192.168.1.1", 80)), Ok(0));
        assert!(t.trash.is_empty());
        // A service without dests leaves nothing in the trash: its id is free at once.
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        t.del_service(&k1).ok();
        assert_eq!(t.add_service(&svc("10.0.0.2", 80, "rr")), Ok(0));
    }

    #[test]
    fn dest_validation() {
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        let k = key("10.0.0.1", 80);
        let before = t.clone();
        let mut d = dest("192.168.1.1", 80);
        d.l_threshold = 10;
        assert_eq!(t.add_dest(&k, &d), Err(libc::ERANGE));
        d.l_threshold = 0;
        d.weight = -1;
        assert_eq!(t.add_dest(&k, &d), Err(libc::ERANGE));
        for bad in ["255.255.255.255", "224.0.0.1", "0.1.2.3"] {
            assert_eq!(t.add_dest(&k, &dest(bad, 80)), Err(libc::EINVAL), "{bad}");
        }
        // GUE needs a tunnel port (EINVAL), on add and on edit; GRE needs none.
        let mut g = dest("192.168.1.9", 80);
        g.fwd = Fwd::Tunnel;
        g.tunnel.kind = TUN_TYPE_GUE;
        assert_eq!(t.add_dest(&k, &g), Err(libc::EINVAL));
        assert_eq!(t, before);
        g.tunnel.port = 6080;
        assert_eq!(t.add_dest(&k, &g), Ok(0));
        assert_eq!(t.services[0].dests[0].tunnel, Tunnel { kind: TUN_TYPE_GUE, port: 6080, flags: 0 });
        g.tunnel.port = 0;
        assert_eq!(t.edit_dest(&k, &g), Err(libc::EINVAL));
        g.tunnel = Tunnel { kind: 2, port: 0, flags: 1 };
        assert_eq!(t.edit_dest(&k, &g), Ok(()));
        assert_eq!(t.services[0].dests[0].tunnel, g.tunnel);
        assert_eq!(t.edit_dest(&k, &dest("192.168.1.1", 80)), Err(libc::ENOENT));
    }

    #[test]
    fn edit_dest_replaces_and_clears_overload() {
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        let k = key("10.0.0.1", 80);
        let mut d = dest("192.168.1.1", 80);
        d.u_threshold = 10;
        t.add_dest(&k, &d).ok();
        t.services[0].dests[0].overloaded = true;
        t.services[0].dests[0].active_conns = 7;
        d.u_threshold = 20;
        d.weight = 5;
        assert_eq!(t.edit_dest(&k, &d), Ok(()));
        let got = &t.services[0].dests[0];
        assert_eq!((got.weight, got.u_threshold, got.overloaded, got.active_conns), (5, 20, false, 7));
    }

    #[test]
    fn zero_and_timeouts() {
        let mut t = Table::default();
        t.add_service(&svc("10.0.0.1", 80, "rr")).ok();
        t.add_dest(&key("10.0.0.1", 80), &dest("192.168.1.1", 80)).ok();
        t.services[0].stats.conns = 5;
        t.services[0].dests[0].stats.inpkts = 9;
        t.totals.conns = 5;
        assert_eq!(t.zero(Some(&key("10.0.0.2", 80))), Err(libc::ESRCH));
        assert_eq!(t.zero(Some(&key("10.0.0.1", 80))), Ok(()));
        assert_eq!((t.services[0].stats.conns, t.services[0].dests[0].stats.inpkts, t.totals.conns), (0, 0, 5));
        assert_eq!(t.zero(None), Ok(()));
        assert_eq!(t.totals.conns, 0);
        assert_eq!(t.set_timeouts(10, 0, 30), Ok(()));
        assert_eq!((t.timeouts.tcp, t.timeouts.tcp_fin, t.timeouts.udp), (10, 120, 30));
    }

    #[test]
    fn indexed_changes_match_plain_ones() {
        // A pseudo-random mix of changes applied through one long-lived Index and through the
        // plain methods (a fresh Index each time) gives the same results and the same table.
        let (mut a, mut b) = (Table::default(), Table::default());
        let mut ix = Index::new(&a);
        let mut x: u64 = 7;
        for _ in 0..3000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (x >> 33) as u32;
            let k = key(&format!("10.0.0.{}", r % 13), 80);
            let d = dest(&format!("192.168.1.{}", 1 + (r >> 8) % 7), 80);
            let (ra, rb) = match (r >> 16) % 8 {
                0 | 1 => (a.add_service_in(&mut ix, &svc(&format!("10.0.0.{}", r % 13), 80, "rr")), b.add_service(&svc(&format!("10.0.0.{}", r % 13), 80, "rr"))),
                2 => (a.del_service_in(&mut ix, &k).map(|_| 0), b.del_service(&k).map(|_| 0)),
                3..=5 => (a.add_dest_in(&mut ix, &k, &d), b.add_dest(&k, &d)),
                6 => (a.del_dest_in(&mut ix, &k, &d.addr, 80).map(|_| 0), b.del_dest(&k, &d.addr, 80).map(|_| 0)),
                _ if r.is_multiple_of(97) => {
                    a.flush_in(&mut ix);
                    b.flush();
                    (Ok(0), Ok(0))
                }
                _ => (a.edit_dest_in(&ix, &k, &d).map(|_| 0), b.edit_dest(&k, &d).map(|_| 0)),
            };
            assert_eq!(ra, rb);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn lowest_free_ids() {
        assert_eq!(lowest_free([0, 1, 3].into_iter(), 10), Ok(2));
        assert_eq!(lowest_free([1, 2].into_iter(), 10), Ok(0));
        assert_eq!(lowest_free([0, 1].into_iter(), 2), Err(libc::ENOMEM));
    }
}
