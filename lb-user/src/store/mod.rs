//! The table's home: pinned BPF maps under the pin directory, as ipvsadm's table lives in the
//! kernel. `load` reads them into a [`Table`]; `commit` writes a changed table back so that the
//! data plane sees every service either before or after the change, never a mix.
mod codec;
mod conns;
pub mod daemons;
mod gate;
mod mmap;
mod pins;
mod rates;
mod slots;
mod sync_install;
mod trees;

use std::{
    collections::{BTreeMap, HashMap as StdHashMap, HashSet},
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    sync::atomic::Ordering::SeqCst,
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use lb_common::{self as c, ConnKey, DestConns, GlobalStats, Meta, ServiceKey, Stats, SvcState, names, sched, tcp_state};

use crate::journal::{self, Journal, TableId};
use crate::model::{Counters, Dest, Fwd, Service, Table, Timeouts};
use codec::{
    dest_from_map, dest_to_map, dest_views, key_from_map, netmask_addr, same_config, service_from_map, sum, sum_global,
};
use pins::{MapSource, random_u32};
use slots::SlotAllocator;

pub use codec::{map_key, to_addr, to_ip};
pub use conns::monotonic_coarse_ns;
pub use gate::Gate;
pub use mmap::MmapArray;
pub use sync_install::{DestCache, Installed};
pub use pins::{CreateOptions, DEFAULT_PIN_DIR, ensure_pin_dir, load_object, pin_dir};

/// Opened maps. Holds an exclusive lock on the pin directory so concurrent lbadm/lbd
/// invocations apply their changes one after the other.
pub struct Store {
    services: HashMap<MapData, ServiceKey, c::Service>,
    svc_keys: Array<MapData, ServiceKey>,
    svc_state: Array<MapData, SvcState>,
    svc_stats: PerCpuArray<MapData, Stats>,
    dests: MmapArray<c::Dest>,
    dest_conns: MmapArray<DestConns>,
    dest_stats: PerCpuArray<MapData, Stats>,
    dest_neigh: Array<MapData, c::DestNeigh>,
    slots: MmapArray<u32>,
    tree: MmapArray<u32>,
    conns: HashMap<MapData, ConnKey, c::Conn>,
    conns6: HashMap<MapData, c::ConnKey6, c::Conn6>,
    global: PerCpuArray<MapData, GlobalStats>,
    config: Array<MapData, c::Config>,
    meta: Array<MapData, Meta>,
    sync_daemons: Array<MapData, c::sync::SyncDaemon>,
    rates: HashMap<MapData, u32, c::RateEst>,
    gate: Gate,
    dir: PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (creating on first use) the pinned maps under [`pin_dir`].
    pub fn open() -> anyhow::Result<Store> {
        Store::open_at(&pin_dir(), CreateOptions::default())
    }

    pub fn open_at(dir: &Path, opts: CreateOptions) -> anyhow::Result<Store> {
        let mut src = MapSource::open(dir, opts)?;
        let lock = File::open(dir)?;
        // SAFETY: flock on an open descriptor owned by `lock`, which the Store keeps.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}: {}", dir.display(), std::io::Error::last_os_error());
        }
        let mut s = Store {
            services: HashMap::try_from(src.take(names::SERVICES)?)?,
            svc_keys: Array::try_from(src.take(names::SVC_KEYS)?)?,
            svc_state: Array::try_from(src.take(names::SVC_STATE)?)?,
            svc_stats: PerCpuArray::try_from(src.take(names::SVC_STATS)?)?,
            dests: MmapArray::new(src.take_data(names::DESTS)?, c::MAX_DESTS)?,
            dest_conns: MmapArray::new(src.take_data(names::DEST_CONNS)?, c::MAX_DESTS)?,
            dest_stats: PerCpuArray::try_from(src.take(names::DEST_STATS)?)?,
            dest_neigh: Array::try_from(src.take(names::DEST_NEIGH)?)?,
            slots: MmapArray::new(src.take_data(names::SCHED_SLOTS)?, c::MAX_SCHED_SLOTS)?,
            tree: MmapArray::new(src.take_data(names::SCHED_TREE)?, sched::tree::MAX_SCHED_TREE)?,
            conns: HashMap::try_from(src.take(names::CONNS)?)?,
            conns6: HashMap::try_from(src.take(names::CONNS6)?)?,
            global: PerCpuArray::try_from(src.take(names::GLOBAL_STATS)?)?,
            config: Array::try_from(src.take(names::CONFIG)?)?,
            meta: Array::try_from(src.take(names::META)?)?,
            sync_daemons: Array::try_from(src.take(names::SYNC_DAEMONS)?)?,
            rates: HashMap::try_from(src.take(names::RATES)?)?,
            gate: Gate::new(src.take_data(names::GATE)?)?,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        s.check_layout()?;
        s.finish_interrupted_commit()?;
        Ok(s)
    }

    /// Which table this is, for the commit journal.
    fn table_id(&self) -> anyhow::Result<TableId> {
        let meta_map_id = aya::maps::IterableMap::map(&self.meta).info()?.id();
        Ok(TableId { boot_id: journal::boot_id(), meta_map_id })
    }

    /// A commit that was interrupted (its process killed) is redone before anything reads the
    /// table: readers see the old table or the new one (see [`journal`]).
    fn finish_interrupted_commit(&mut self) -> anyhow::Result<()> {
        let journal = Journal::for_pin_dir(&self.dir);
        let Some((before, after)) = journal.pending(&self.table_id()?)? else {
            return Ok(());
        };
        self.apply(&before, &after).context("cannot finish the interrupted commit")?;
        journal.end()?;
        tracing::warn!(
            journal = %journal.path().display(),
            "an interrupted table commit was finished from its journal {}",
            journal.path().display()
        );
        Ok(())
    }

    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    fn check_layout(&mut self) -> anyhow::Result<()> {
        let meta = self.meta.get(&0, 0)?;
        match meta.layout_version {
            0 => {
                self.meta.set(0, Meta { layout_version: c::LAYOUT_VERSION, _pad: 0, next_seq: 1 }, 0)?;
                let tag = c::slow_path_tag(random_u32());
                self.config.set(0, c::Config { slow_path_tag: tag, ..c::Config::default() }, 0)?;
                Ok(())
            }
            c::LAYOUT_VERSION => Ok(()),
            v => bail!(
                "the maps pinned in {} have layout {v}, this build uses {}: remove them (`lbd teardown`) \
                 or run the matching build",
                self.dir.display(),
                c::LAYOUT_VERSION
            ),
        }
    }

    /// `XLB_CONFIG` as it is.
    pub fn config(&self) -> anyhow::Result<c::Config> {
        Ok(self.config.get(&0, 0)?)
    }

    /// Changes `XLB_CONFIG` with `f` (one map update; nothing when `f` fails).
    pub fn update_config<R>(&mut self, f: impl FnOnce(&mut c::Config) -> anyhow::Result<R>) -> anyhow::Result<R> {
        let mut cfg = self.config.get(&0, 0)?;
        let before = cfg;
        let r = f(&mut cfg)?;
        if cfg != before {
            self.config.set(0, cfg, 0)?;
        }
        Ok(r)
    }

    /// The whole table with live counters.
    pub fn load(&self) -> anyhow::Result<Table> {
        let mut by_id: BTreeMap<u32, Service> = BTreeMap::new();
        for item in self.services.iter() {
            let (key, v) = item?;
            by_id.insert(v.id, service_from_map(&key, &v, self.svc_stats.get(&v.id, 0).ok().map(|s| sum(&s)))?);
        }
        for id in self.dests.in_use_ids() {
            let Some(d) = self.dests.get(id) else { break };
            let live = c::DEST_F_IN_USE | c::DEST_F_AVAILABLE;
            if d.flags & live != live {
                continue;
            }
            let Some(svc) = by_id.get_mut(&d.svc_id) else { continue };
            let conns = self.dest_conns.get(id).unwrap_or_default();
            let stats = self.dest_stats.get(&id, 0).ok().map(|s| sum(&s)).unwrap_or_default();
            svc.dests.push(dest_from_map(id, &d, &conns, stats));
        }
        for svc in by_id.values_mut() {
            svc.dests.sort_by_key(|d| std::cmp::Reverse(d.seq));
            svc.rates = self.rate_of(c::rate_key_service(svc.id));
            for d in &mut svc.dests {
                d.rates = self.rate_of(c::rate_key_dest(d.id));
            }
        }
        let cfg = self.config.get(&0, 0)?;
        let meta = self.meta.get(&0, 0)?;
        let totals = self.global.get(&0, 0).map(|g| sum_global(&g)).unwrap_or_default();
        Ok(Table {
            services: by_id.into_values().collect(),
            timeouts: Timeouts {
                tcp: cfg.timeouts[tcp_state::STATE_ESTABLISHED as usize],
                tcp_fin: cfg.timeouts[tcp_state::STATE_FIN_WAIT as usize],
                udp: cfg.timeouts[tcp_state::STATE_UDP as usize],
            },
            totals,
            next_seq: meta.next_seq.max(1),
            reserved_dest_ids: self.trash_ids(),
            trash: self.trash(),
            daemons: self.sync_daemons()?,
        })
    }

    /// Writes `after` to the maps; `before` is what [`Store::load`] returned. All or nothing:
    /// if this process dies midway, the next one to open the table finishes the commit.
    pub fn commit(&mut self, before: &Table, after: &Table) -> anyhow::Result<()> {
        if before == after {
            // Nothing to record (only the trash may be emptied).
            return self.apply(before, after);
        }
        let journal = Journal::for_pin_dir(&self.dir);
        journal.begin(&self.table_id()?, before, after)?;
        self.apply(before, after)?;
        journal.end()
    }

    /// Writes the difference between `before` and `after` to the maps. Idempotent: redoing it
    /// over a partly applied state reaches the same maps.
    fn apply(&mut self, before: &Table, after: &Table) -> anyhow::Result<()> {
        let old: StdHashMap<u32, &Service> = before.services.iter().map(|s| (s.id, s)).collect();
        let new: StdHashMap<u32, &Service> = after.services.iter().map(|s| (s.id, s)).collect();
        let mut alloc = SlotAllocator::new(&self.live_regions()?);
        let mut tree_alloc = self.tree_allocator()?;

        // Services that went away (or whose id now names another service).
        for s in &before.services {
            if new.get(&s.id).is_none_or(|n| n.key != s.key) {
                self.services.remove(&map_key(&s.key)).or_else(ignore_missing)?;
                self.drop_tree(s.id)?;
                for d in &s.dests {
                    self.trash_dest(d.id)?;
                }
            }
        }
        // Dests deleted earlier (the trash) that this table brings back.
        let revived: HashSet<u32> = before.reserved_dest_ids.iter().copied().collect();
        // Fault drill (tests only): die like a SIGKILL after writing this many services.
        let die_after: Option<usize> = std::env::var("XLB_FAILPOINT_COMMIT_SERVICES").ok().and_then(|v| v.parse().ok());
        for (n, s) in after.services.iter().enumerate() {
            if die_after == Some(n) {
                std::process::abort();
            }
            let prev = old.get(&s.id).copied().filter(|p| p.key == s.key);
            self.commit_service(prev, s, &mut alloc, &mut tree_alloc, &revived)?;
        }
        if before.timeouts != after.timeouts {
            let mut cfg = self.config.get(&0, 0)?;
            cfg.timeouts[tcp_state::STATE_ESTABLISHED as usize] = after.timeouts.tcp;
            cfg.timeouts[tcp_state::STATE_FIN_WAIT as usize] = after.timeouts.tcp_fin;
            cfg.timeouts[tcp_state::STATE_UDP as usize] = after.timeouts.udp;
            self.config.set(0, cfg, 0)?;
        }
        if after.totals == Counters::default() && before.totals != Counters::default() {
            let nr = nr_cpus()?;
            let vals: Vec<GlobalStats> = match self.global.get(&0, 0) {
                Ok(v) => v.iter().map(|g| GlobalStats { total: Stats::default(), ..*g }).collect(),
                Err(_) => vec![GlobalStats::default(); nr],
            };
            self.global.set(0, PerCpuValues::try_from(vals)?, 0)?;
        }
        if after.next_seq != before.next_seq {
            let mut meta = self.meta.get(&0, 0)?;
            meta.next_seq = after.next_seq;
            self.meta.set(0, meta, 0)?;
        }
        if before.daemons != after.daemons {
            self.commit_daemons(&after.daemons)?;
        }
        self.sync_gate(after);
        self.free_idle_trash()?;
        Ok(())
    }

    /// The gate's bits of the table (see [`Gate`]): the services' addresses (opened only: the
    /// expiry pass closes them, [`Store::close_idle_vips`]), and the NAT real servers' (whose
    /// replies the data plane looks up).
    fn sync_gate(&mut self, t: &Table) {
        let vips = t.services.iter().filter_map(|s| match s.key {
            crate::model::SvcKey::Inet { addr, .. } => Some(addr),
            crate::model::SvcKey::Fwmark { .. } => None,
        });
        self.gate.add(c::GATE_VIP, vips);
        let nat = t.services.iter().flat_map(|s| s.dests.iter()).filter(|d| d.fwd == Fwd::Masq).map(|d| d.addr);
        self.gate.set(c::GATE_NAT_RS, nat);
    }

    fn commit_service(
        &mut self,
        prev: Option<&Service>,
        s: &Service,
        alloc: &mut SlotAllocator,
        tree_alloc: &mut SlotAllocator,
        revived: &HashSet<u32>,
    ) -> anyhow::Result<()> {
        let key = map_key(&s.key);
        let is_new = prev.is_none();
        if is_new {
            self.svc_stats.set(s.id, zero_percpu::<Stats>()?, 0)?;
            self.svc_state.set(s.id, SvcState::default(), 0)?;
            self.reset_rate(c::rate_key_service(s.id));
        } else if let Some(p) = prev
            && s.stats == Counters::default()
            && p.stats != Counters::default()
        {
            self.svc_stats.set(s.id, zero_percpu::<Stats>()?, 0)?;
            self.reset_rate(c::rate_key_service(s.id));
        }
        self.svc_keys.set(s.id, key, 0)?;

        let prev_dests: StdHashMap<u32, &Dest> = prev.map(|p| p.dests.iter().map(|d| (d.id, d)).collect()).unwrap_or_default();
        let now_ids: HashSet<u32> = s.dests.iter().map(|d| d.id).collect();
        for d in prev.map(|p| p.dests.as_slice()).unwrap_or_default() {
            if !now_ids.contains(&d.id) {
                self.trash_dest(d.id)?;
            }
        }
        for d in &s.dests {
            match prev_dests.get(&d.id) {
                None if revived.contains(&d.id) => {
                    // Back from the trash: IPVS keeps its counters (and its connections).
                    self.dest_neigh.set(d.id, c::DestNeigh::default(), 0)?;
                    let old_u_threshold = self.dests.get(d.id).map_or(0, |m| m.u_threshold);
                    self.write_dest(d.id, &dest_to_map(s.id, d), c::update_lifts_overload(old_u_threshold, d.u_threshold))?;
                }
                None => {
                    // A fresh id: whatever an earlier occupant left is gone.
                    self.dest_stats.set(d.id, zero_percpu::<Stats>()?, 0)?;
                    self.reset_rate(c::rate_key_dest(d.id));
                    self.dest_neigh.set(d.id, c::DestNeigh::default(), 0)?;
                    self.write_dest(d.id, &dest_to_map(s.id, d), true)?;
                }
                Some(p) => {
                    if d.stats == Counters::default() && p.stats != Counters::default() {
                        self.dest_stats.set(d.id, zero_percpu::<Stats>()?, 0)?;
                        self.reset_rate(c::rate_key_dest(d.id));
                    }
                    if !same_config(p, d) {
                        let lift = c::update_lifts_overload(p.u_threshold, d.u_threshold);
                        self.write_dest(d.id, &dest_to_map(s.id, d), lift)?;
                    }
                }
            }
        }

        let old_map = self.services.get(&key, 0).ok();
        let sched_code = sched::sched_from_name(&s.sched).unwrap_or(sched::SCHED_NONE);
        let views = dest_views(&s.dests);
        // wrr's state also resets on an edit that leaves the weights alone (its upd_dest hook
        // runs on every -e); the other schedulers only care about the table's contents.
        let edited = |p: &Service| {
            p.dests.len() != s.dests.len() || p.dests.iter().zip(&s.dests).any(|(a, b)| !same_config(a, b))
        };
        let table_changed = prev.is_none_or(|p| {
            p.sched != s.sched || dest_views(&p.dests) != views || (sched_code == sched::SCHED_WRR && edited(p))
        });
        let mut new_table = None;
        let (sched_off, sched_len) = match (&old_map, table_changed) {
            (Some(m), false) => (m.sched_off, m.sched_len),
            _ => {
                let old_slots: Vec<u32> = match &old_map {
                    Some(m) => (0..m.sched_len).filter_map(|i| self.slots.get(m.sched_off + i)).collect(),
                    None => Vec::new(),
                };
                let old_views = prev.map(|p| dest_views(&p.dests)).unwrap_or_default();
                let old_state = self.svc_state.get(&s.id, 0).unwrap_or_default();
                let old = (old_map.is_some() && prev.is_some_and(|p| p.sched == s.sched))
                    .then(|| crate::sched_tables::OldTable { views: &old_views, slots: &old_slots, state: old_state });
                let states: Vec<sched::DestState> = s
                    .dests
                    .iter()
                    .map(|d| sched::DestState {
                        last_weight: d.last_weight,
                        addr_fold: sched::addr_fold(to_addr(&d.addr).w, d.addr.is_ipv6()),
                        port: d.port,
                        ..sched::DestState::new(d.id, d.weight)
                    })
                    .collect();
                let built = crate::sched_tables::build(sched_code, &views, &states, old.as_ref())?;
                let n = built.slots.len();
                let off = alloc.alloc(n as u32)?;
                for (i, id) in built.slots.iter().enumerate() {
                    self.slots.set(off + i as u32, *id)?;
                }
                self.svc_state.set(s.id, built.state, 0)?;
                new_table = Some(built.slots);
                (off, n as u32)
            }
        };
        let value = c::Service {
            id: s.id,
            flags: s.flags,
            timeout: s.timeout,
            sched_off,
            sched_len,
            netmask: netmask_addr(s),
            sched: sched_code,
            pe: if s.pe_name == "sip" { c::PE_SIP } else { 0 },
            _pad: [0; 2],
        };
        let refresh = self.update_tree(s.id, sched_code, &s.dests, new_table.as_deref(), prev.is_some_and(edited), tree_alloc)?;
        if old_map != Some(value) {
            self.services.insert(key, value, 0)?;
        }
        if refresh {
            self.refresh_tree(s.id);
        }
        Ok(())
    }

    /// IPVS moves a deleted dest to its trash: connections to it stop (the data plane checks
    /// AVAILABLE) and its id is not reused while connections still count on it.
    fn trash_dest(&mut self, id: u32) -> anyhow::Result<()> {
        if let Some(f) = self.dests.flags(id) {
            f.fetch_and(!c::DEST_F_AVAILABLE, SeqCst);
        }
        self.dests.set_tree_leaf(id, sched::tree::NO_LEAF)
    }

    /// Writes dest `id` as lbadm configured it, in `__ip_vs_update_dest`'s order: OVERLOAD
    /// cleared when `lift_overload` ([`c::update_lifts_overload`]), the fields written, IN_USE
    /// and AVAILABLE set. Flags bit by bit, atomically: the data plane sets and lifts OVERLOAD
    /// in the same word meanwhile. (Clearing before the thresholds change also keeps a redone
    /// commit's decision, taken from the old thresholds, the same.)
    fn write_dest(&mut self, id: u32, v: &c::Dest, lift_overload: bool) -> anyhow::Result<()> {
        if lift_overload && let Some(f) = self.dests.flags(id) {
            f.fetch_and(!c::DEST_F_OVERLOAD, SeqCst);
        }
        self.dests.write_fields(id, v)?;
        if let Some(f) = self.dests.flags(id) {
            f.fetch_or(c::DEST_F_IN_USE | c::DEST_F_AVAILABLE, SeqCst);
        }
        Ok(())
    }

    /// Frees trash dests no connection refers to any more.
    fn free_idle_trash(&mut self) -> anyhow::Result<()> {
        for id in self.dests.in_use_ids() {
            let Some(d) = self.dests.get(id) else { break };
            if d.flags & c::DEST_F_IN_USE != 0 && d.flags & c::DEST_F_AVAILABLE == 0 {
                let n = self.dest_conns.get(id).unwrap_or_default();
                if n.active == 0 && n.inactive == 0 && n.persist == 0
                    && let Some(f) = self.dests.flags(id)
                {
                    // Free (IN_USE cleared) first, then emptied.
                    f.fetch_and(0, SeqCst);
                    self.dests.write_fields(id, &c::Dest::default())?;
                }
            }
        }
        Ok(())
    }

    /// Dest ids held by deleted dests that connections still use: not free for new dests.
    pub fn trash_ids(&self) -> Vec<u32> {
        self.dests
            .in_use_ids()
            .into_iter()
            .filter(|id| {
                self.dests
                    .get(*id)
                    .is_some_and(|d| d.flags & c::DEST_F_IN_USE != 0 && d.flags & c::DEST_F_AVAILABLE == 0)
            })
            .collect()
    }



    /// The trash with what reviving needs: the service a dest belonged to, its address and port.
    pub fn trash(&self) -> Vec<crate::model::TrashedDest> {
        self.trash_ids()
            .into_iter()
            .filter_map(|id| {
                let d = self.dests.get(id)?;
                let key = self.svc_keys.get(&d.svc_id, 0).ok()?;
                Some(crate::model::TrashedDest {
                    svc: key_from_map(&key).ok()?,
                    svc_id: d.svc_id,
                    addr: to_ip(d.af, &d.addr),
                    port: u16::from_be(d.port),
                    id,
                })
            })
            .collect()
    }

    fn live_regions(&self) -> anyhow::Result<Vec<(u32, u32)>> {
        let mut v = Vec::new();
        for item in self.services.iter() {
            let (_, s) = item?;
            if s.sched_len > 0 {
                v.push((s.sched_off, s.sched_len));
            }
        }
        Ok(v)
    }


    /// The data plane's global counters, summed over CPUs.
    pub fn global_stats(&self) -> anyhow::Result<GlobalStats> {
        let v = self.global.get(&0, 0)?;
        let mut t = GlobalStats::default();
        for g in v.iter() {
            t.accumulate(g);
        }
        Ok(t)
    }

}

fn ignore_missing(e: aya::maps::MapError) -> Result<(), aya::maps::MapError> {
    match e {
        aya::maps::MapError::KeyNotFound => Ok(()),
        aya::maps::MapError::SyscallError(ref s) if s.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        e => Err(e),
    }
}

fn nr_cpus() -> anyhow::Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))
}

fn zero_percpu<T: aya::Pod + Default>() -> anyhow::Result<PerCpuValues<T>> {
    Ok(PerCpuValues::try_from(vec![T::default(); nr_cpus()?])?)
}
