//! The table's home: pinned BPF maps under the pin directory, as ipvsadm's table lives in the
//! kernel. `load` reads them into a [`Table`]; `commit` writes a changed table back so that the
//! data plane sees every service either before or after the change, never a mix.
use std::{
    collections::{BTreeMap, HashMap as StdHashMap, HashSet},
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
};
use lb_common::{
    self as c, Addr, ConnKey, DestConns, GlobalStats, Meta, ServiceKey, Stats, SvcState,
    names, sched, tcp_state,
};

use crate::journal::{self, Journal, TableId};
use crate::model::{
    Af, ConnEntry, Counters, Dest, Fwd, Proto, Rates, Service, SvcKey, Table, Timeouts, Tunnel,
};

/// Default pin directory; `XLB_PIN_DIR` overrides it (tests use private ones).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xlb";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn pin_dir() -> PathBuf {
    std::env::var_os("XLB_PIN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR))
}

/// Options used only when the maps do not exist yet.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// Capacity of the connection table (`XLB_MAX_CONNS` overrides the default).
    pub max_conns: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        let max_conns = std::env::var("XLB_MAX_CONNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(c::DEFAULT_MAX_CONNS);
        CreateOptions { max_conns }
    }
}

/// Makes sure `dir` is on a bpf filesystem (mounting /sys/fs/bpf when it is not, as bpftool
/// does) and exists, readable by root only.
pub fn ensure_pin_dir(dir: &Path) -> anyhow::Result<()> {
    let bpffs = Path::new("/sys/fs/bpf");
    if dir.starts_with(bpffs) && !is_bpffs(bpffs) {
        std::fs::create_dir_all(bpffs)?;
        let r = unsafe {
            libc::mount(c"bpf".as_ptr(), c"/sys/fs/bpf".as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
        };
        if r != 0 {
            bail!("cannot mount bpffs on /sys/fs/bpf: {}", std::io::Error::last_os_error());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if !is_bpffs(dir) {
        bail!("{} is not on a bpf filesystem", dir.display());
    }
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(cpath) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(cpath.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Loads the XDP object with its maps pinned in `dir` (reusing the pinned ones). Programs are
/// not loaded into the kernel here; attaching does that.
pub fn load_object(dir: &Path, opts: CreateOptions) -> anyhow::Result<Ebpf> {
    let obj = crate::ebpf_object();
    if obj.is_empty() {
        bail!("this build has no XDP object (built with AYA_BUILD_SKIP)");
    }
    ensure_pin_dir(dir)?;
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(dir).map_max_entries(names::CONNS, opts.max_conns);
    loader.load(obj).with_context(|| format!("cannot create or open the maps in {}", dir.display()))
}

/// Four random bytes from the kernel (the slow-path tag of a new table).
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    let r = u32::from_ne_bytes(b);
    // Never 0 (the data plane's "no tag"), even without /dev/urandom.
    if r != 0 { r } else { std::process::id() | 1 }
}

/// A BPF array shared with the kernel through `mmap` (maps created with `BPF_F_MMAPABLE`).
/// The kernel lays elements out every `round_up(value_size, 8)` bytes.
pub struct MmapArray<T> {
    _map: MapData,
    ptr: *mut u8,
    stride: usize,
    len: usize,
    bytes: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> MmapArray<T> {
    fn new(map: MapData, len: u32) -> anyhow::Result<Self> {
        let have = map.info()?.max_entries();
        if have != len {
            bail!("a pinned array has {have} entries, this build expects {len}: remove the maps (`lbd teardown`)");
        }
        let stride = std::mem::size_of::<T>().next_multiple_of(8);
        let bytes = len as usize * stride;
        let fd = map.fd().as_fd().as_raw_fd();
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            bail!("mmap of a map failed: {}", std::io::Error::last_os_error());
        }
        Ok(MmapArray { _map: map, ptr: p.cast(), stride, len: len as usize, bytes, _t: std::marker::PhantomData })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> Option<T> {
        self.ptr_field(i).map(|p| unsafe { std::ptr::read_volatile(p) })
    }

    pub fn set(&mut self, i: u32, v: T) -> anyhow::Result<()> {
        if (i as usize) >= self.len {
            bail!("index {i} beyond the map's {} entries", self.len);
        }
        unsafe { std::ptr::write_volatile(self.ptr.add(i as usize * self.stride).cast::<T>(), v) };
        Ok(())
    }
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

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
    conns: HashMap<MapData, ConnKey, c::Conn>,
    global: PerCpuArray<MapData, GlobalStats>,
    config: Array<MapData, c::Config>,
    meta: Array<MapData, Meta>,
    rates: HashMap<MapData, u32, c::RateEst>,
    dir: PathBuf,
    _lock: File,
}

/// Where [`Store::open_at`] gets its maps: straight from their pins when all of them exist
/// (the common case: no ELF or kernel BTF to parse), else from the XDP object, which creates
/// the missing ones and pins them.
enum MapSource {
    Pinned(PathBuf),
    Object(Box<Ebpf>),
}

/// Every map the store uses.
const STORE_MAPS: [&str; 14] = [
    names::SERVICES,
    names::SVC_KEYS,
    names::SVC_STATE,
    names::SVC_STATS,
    names::DESTS,
    names::DEST_CONNS,
    names::DEST_STATS,
    names::DEST_NEIGH,
    names::SCHED_SLOTS,
    names::CONNS,
    names::GLOBAL_STATS,
    names::CONFIG,
    names::META,
    names::RATES,
];

impl MapSource {
    fn open(dir: &Path, opts: CreateOptions) -> anyhow::Result<MapSource> {
        if STORE_MAPS.iter().all(|n| dir.join(n).exists()) {
            Ok(MapSource::Pinned(dir.to_path_buf()))
        } else {
            Ok(MapSource::Object(Box::new(load_object(dir, opts)?)))
        }
    }

    fn take(&mut self, name: &str) -> anyhow::Result<aya::maps::Map> {
        match self {
            MapSource::Pinned(dir) => {
                let path = dir.join(name);
                let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
                Ok(aya::maps::Map::from_map_data(data)?)
            }
            MapSource::Object(ebpf) => ebpf.take_map(name).ok_or_else(|| anyhow!("the XDP object has no map {name}")),
        }
    }

    fn take_data(&mut self, name: &str) -> anyhow::Result<MapData> {
        match self.take(name)? {
            aya::maps::Map::Array(d) => Ok(d),
            _ => bail!("map {name} is not an array"),
        }
    }
}

impl Store {
    /// Opens (creating on first use) the pinned maps under [`pin_dir`].
    pub fn open() -> anyhow::Result<Store> {
        Store::open_at(&pin_dir(), CreateOptions::default())
    }

    pub fn open_at(dir: &Path, opts: CreateOptions) -> anyhow::Result<Store> {
        let mut src = MapSource::open(dir, opts)?;
        let lock = File::open(dir)?;
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
            conns: HashMap::try_from(src.take(names::CONNS)?)?,
            global: PerCpuArray::try_from(src.take(names::GLOBAL_STATS)?)?,
            config: Array::try_from(src.take(names::CONFIG)?)?,
            meta: Array::try_from(src.take(names::META)?)?,
            rates: HashMap::try_from(src.take(names::RATES)?)?,
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
        journal.end()
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

        // Services that went away (or whose id now names another service).
        for s in &before.services {
            if new.get(&s.id).is_none_or(|n| n.key != s.key) {
                self.services.remove(&map_key(&s.key)).or_else(ignore_missing)?;
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
            self.commit_service(prev, s, &mut alloc, &revived)?;
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
        self.sync_config_flags(after)?;
        self.free_idle_trash()?;
        Ok(())
    }

    /// Data-plane switches derived from the table: the NAT reply lookup runs only while some
    /// real server is NAT.
    fn sync_config_flags(&mut self, t: &Table) -> anyhow::Result<()> {
        let has_nat = t.services.iter().any(|s| s.dests.iter().any(|d| d.fwd == Fwd::Masq));
        let mut cfg = self.config.get(&0, 0)?;
        let flags = if has_nat { cfg.flags | c::CFG_F_HAS_NAT } else { cfg.flags & !c::CFG_F_HAS_NAT };
        if flags != cfg.flags {
            cfg.flags = flags;
            self.config.set(0, cfg, 0)?;
        }
        Ok(())
    }

    fn commit_service(
        &mut self,
        prev: Option<&Service>,
        s: &Service,
        alloc: &mut SlotAllocator,
        revived: &HashSet<u32>,
    ) -> anyhow::Result<()> {
        let key = map_key(&s.key);
        let is_new = prev.is_none();
        if is_new {
            self.svc_stats.set(s.id, zero_percpu::<Stats>()?, 0)?;
            self.svc_state.set(s.id, SvcState::default(), 0)?;
            self.forget_rate(c::rate_key_service(s.id));
        } else if let Some(p) = prev
            && s.stats == Counters::default()
            && p.stats != Counters::default()
        {
            self.svc_stats.set(s.id, zero_percpu::<Stats>()?, 0)?;
            self.forget_rate(c::rate_key_service(s.id));
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
                    self.dests.set(d.id, dest_to_map(s.id, d))?;
                }
                None => {
                    // A fresh id: whatever an earlier occupant left is gone.
                    self.dest_stats.set(d.id, zero_percpu::<Stats>()?, 0)?;
                    self.forget_rate(c::rate_key_dest(d.id));
                    self.dest_neigh.set(d.id, c::DestNeigh::default(), 0)?;
                    self.dests.set(d.id, dest_to_map(s.id, d))?;
                }
                Some(p) => {
                    if d.stats == Counters::default() && p.stats != Counters::default() {
                        self.dest_stats.set(d.id, zero_percpu::<Stats>()?, 0)?;
                        self.forget_rate(c::rate_key_dest(d.id));
                    }
                    if !same_config(p, d) {
                        self.dests.set(d.id, dest_to_map(s.id, d))?;
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
        if old_map != Some(value) {
            self.services.insert(key, value, 0)?;
        }
        Ok(())
    }

    /// IPVS moves a deleted dest to its trash: connections to it stop (the data plane checks
    /// AVAILABLE) and its id is not reused while connections still count on it.
    fn trash_dest(&mut self, id: u32) -> anyhow::Result<()> {
        if let Some(mut d) = self.dests.get(id) {
            d.flags &= !c::DEST_F_AVAILABLE;
            self.dests.set(id, d)?;
        }
        Ok(())
    }

    /// Frees trash dests no connection refers to any more.
    fn free_idle_trash(&mut self) -> anyhow::Result<()> {
        for id in self.dests.in_use_ids() {
            let Some(d) = self.dests.get(id) else { break };
            if d.flags & c::DEST_F_IN_USE != 0 && d.flags & c::DEST_F_AVAILABLE == 0 {
                let n = self.dest_conns.get(id).unwrap_or_default();
                if n.active == 0 && n.inactive == 0 && n.persist == 0 {
                    self.dests.set(id, c::Dest::default())?;
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

    fn rate_of(&self, key: u32) -> Rates {
        self.rates.get(&key, 0).map(|e| crate::estimator::read(&e)).unwrap_or_default()
    }

    fn forget_rate(&mut self, key: u32) {
        let _ = self.rates.remove(&key);
    }

    /// One tick of IPVS's rate estimator over every service, dest and the totals (lbd runs it
    /// every `estimator::TICK_SECS`); estimators of ids no longer in the table are dropped.
    pub fn tick_rates(&mut self) -> anyhow::Result<()> {
        let t = self.load()?;
        let mut live = HashSet::new();
        let mut entries: Vec<(u32, Counters)> = vec![(c::RATE_KEY_TOTAL, t.totals)];
        for s in &t.services {
            entries.push((c::rate_key_service(s.id), s.stats));
            for d in &s.dests {
                entries.push((c::rate_key_dest(d.id), d.stats));
            }
        }
        for (key, now) in entries {
            live.insert(key);
            let e = match self.rates.get(&key, 0) {
                Ok(mut e) => {
                    crate::estimator::tick(&mut e, &now);
                    e
                }
                Err(_) => crate::estimator::start(&now),
            };
            self.rates.insert(key, e, 0)?;
        }
        let stale: Vec<u32> = self.rates.keys().filter_map(|k| k.ok()).filter(|k| !live.contains(k)).collect();
        for k in stale {
            let _ = self.rates.remove(&k);
        }
        Ok(())
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

    /// Live connection entries and templates for `-Lc`.
    pub fn connections(&self) -> anyhow::Result<Vec<ConnEntry>> {
        let now = monotonic_coarse_ns();
        let mut out = Vec::new();
        for item in self.conns.iter() {
            let (k, v) = item?;
            let template = k.kind == c::CONN_KIND_TEMPLATE;
            // A template re-armed ahead of its expiry (`expire_connections`) still shows the
            // time to that expiry, as the kernel's timer does.
            let end = if template && v.last_seen > now { v.last_seen } else { v.last_seen + v.timeout as u64 * 1_000_000_000 };
            if end <= now || k.kind == c::CONN_KIND_OUT {
                continue;
            }
            let Some(d) = self.dests.get(v.dest_id) else { continue };
            let proto = match (template && k.proto == c::IPPROTO_IP, Proto::from_number(k.proto)) {
                (true, _) => "IP",
                (_, Some(Proto::Tcp)) => "TCP",
                (_, Some(Proto::Udp)) => "UDP",
                (_, Some(Proto::Sctp)) => "SCTP",
                _ => "IP",
            };
            let state = if template {
                "NONE"
            } else {
                tcp_state::STATE_NAMES.get(v.state as usize).copied().unwrap_or("ERR!")
            };
            let dport = if template && k.vport == 0 { 0 } else { u16::from_be(d.port) };
            out.push(ConnEntry {
                proto,
                expires: ((end - now) / 1_000_000_000) as u32,
                state,
                caddr: to_ip(k.af, &k.caddr),
                cport: u16::from_be(k.cport),
                vaddr: to_ip(k.af, &k.vaddr),
                vport: u16::from_be(k.vport),
                daddr: to_ip(d.af, &d.addr),
                dport,
            });
        }
        Ok(out)
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

    /// Removes expired connection entries and templates, releasing their share of the dests'
    /// ActiveConn/InActConn/PersistConn counts. Returns how many were removed.
    ///
    /// A template still controlling a connection when it expires is re-armed for 60 s instead
    /// (IPVS `ip_vs_conn_expire`), and so is one that will expire within `ahead` (the time to
    /// the next pass) while a connection it controls outlives that moment: re-armed ahead, it
    /// stays valid for the data plane without a gap between its expiry and the next pass.
    /// Either way its new expiry is the kernel's: 60 s after the old one (60 s steps).
    pub fn expire_connections(&mut self, ahead: std::time::Duration) -> anyhow::Result<usize> {
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
        for (k, v) in entries {
            let gone = if k.kind == c::CONN_KIND_OUT {
                // A NAT reply-side entry lives as long as its client-side entry.
                // Its `timeout` field carries the VIP (see lb_common::Conn).
                let in_key = ConnKey { vaddr: Addr::v4(v.timeout), vport: v.port, kind: c::CONN_KIND_IN, ..k };
                self.conns.get(&in_key, 0).map_or(true, |i| expired(&i) || i.dest_id != v.dest_id)
            } else {
                expired(&v)
            };
            if gone {
                dead.push((k, v));
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
            if self.conns.remove(&k).is_ok() {
                n += 1;
                self.release_count(&k, &v)?;
            }
        }
        self.free_idle_trash()?;
        Ok(n)
    }

    /// The persistence template a controlled connection was made through.
    fn template_of(&self, k: &ConnKey, v: &c::Conn) -> Option<ConnKey> {
        let sk = self.svc_keys.get(&v.svc_id, 0).ok()?;
        let svc = self.services.get(&sk, 0).ok()?;
        let fwmark = if sk.proto == c::IPPROTO_IP { sk.addr.w[0] } else { 0 };
        Some(c::template_key(&k.caddr, &svc.netmask, k.vaddr, k.proto, sk.port, fwmark, k.af))
    }

    /// Gives back an expired entry's share of its dest's counts. The data plane changes the
    /// same words with atomic adds, so this is an atomic (saturating) decrement too.
    fn release_count(&mut self, k: &ConnKey, v: &c::Conn) -> anyhow::Result<()> {
        if k.kind == c::CONN_KIND_OUT {
            return Ok(());
        }
        let Some(p) = self.dest_conns.ptr_field(v.dest_id) else { return Ok(()) };
        let field = unsafe {
            if k.kind == c::CONN_KIND_TEMPLATE {
                std::ptr::addr_of_mut!((*p).persist)
            } else if v.flags & c::CONN_F_INACTIVE != 0 {
                std::ptr::addr_of_mut!((*p).inactive)
            } else {
                std::ptr::addr_of_mut!((*p).active)
            }
        };
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let counter = unsafe { AtomicU64::from_ptr(field) };
        let _ = counter.fetch_update(Relaxed, Relaxed, |x| Some(x.saturating_sub(1)));
        // ip_vs_unbind_dest: the end of a connection may lift OVERLOAD.
        if k.kind == c::CONN_KIND_IN
            && let (Some(mut d), Some(n)) = (self.dests.get(v.dest_id), self.dest_conns.get(v.dest_id))
            && d.flags & c::DEST_F_OVERLOAD != 0
            && c::overload_lifted(&d, n.active + n.inactive)
        {
            d.flags &= !c::DEST_F_OVERLOAD;
            self.dests.set(v.dest_id, d)?;
        }
        Ok(())
    }
}

impl MmapArray<c::Dest> {
    /// Ids of the slots with `DEST_F_IN_USE` set, in ascending order. Reads one byte per slot:
    /// the arrays are large and mostly empty, and every invocation scans them.
    fn in_use_ids(&self) -> Vec<u32> {
        let off = std::mem::offset_of!(c::Dest, flags);
        let mut ids = Vec::new();
        for i in 0..self.len {
            // SAFETY: i < len, so the byte lies inside the mapping.
            let f = unsafe { std::ptr::read_volatile(self.ptr.add(i * self.stride + off)) };
            if f & c::DEST_F_IN_USE != 0 {
                ids.push(i as u32);
            }
        }
        ids
    }
}

impl<T> MmapArray<T> {
    fn ptr_field(&self, i: u32) -> Option<*mut T> {
        ((i as usize) < self.len).then(|| unsafe { self.ptr.add(i as usize * self.stride).cast::<T>() })
    }
}

fn ignore_missing(e: aya::maps::MapError) -> Result<(), aya::maps::MapError> {
    match e {
        aya::maps::MapError::KeyNotFound => Ok(()),
        aya::maps::MapError::SyscallError(ref s) if s.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        e => Err(e),
    }
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock of the data plane's `bpf_ktime_get_coarse_ns`.
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn nr_cpus() -> anyhow::Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))
}

fn zero_percpu<T: aya::Pod + Default>() -> anyhow::Result<PerCpuValues<T>> {
    Ok(PerCpuValues::try_from(vec![T::default(); nr_cpus()?])?)
}

fn sum(v: &PerCpuValues<Stats>) -> Counters {
    let mut t = Stats::default();
    for s in v.iter() {
        t.accumulate(s);
    }
    counters(&t)
}

fn sum_global(v: &PerCpuValues<GlobalStats>) -> Counters {
    let mut t = GlobalStats::default();
    for g in v.iter() {
        t.accumulate(g);
    }
    counters(&t.total)
}

fn counters(s: &Stats) -> Counters {
    Counters { conns: s.conns, inpkts: s.inpkts, outpkts: s.outpkts, inbytes: s.inbytes, outbytes: s.outbytes }
}

pub fn to_addr(ip: &IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => Addr::v4(u32::from_ne_bytes(a.octets())),
        IpAddr::V6(a) => {
            let o = a.octets();
            Addr::v6(std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])))
        }
    }
}

pub fn to_ip(af: u8, a: &Addr) -> IpAddr {
    if af == c::AF_INET6 {
        let mut o = [0u8; 16];
        for (i, w) in a.w.iter().enumerate() {
            o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::from(a.w[0].to_ne_bytes()))
    }
}

fn af_code(af: Af) -> u8 {
    match af {
        Af::Inet => c::AF_INET,
        Af::Inet6 => c::AF_INET6,
    }
}

pub fn map_key(k: &SvcKey) -> ServiceKey {
    match *k {
        SvcKey::Inet { proto, addr, port } => {
            ServiceKey { addr: to_addr(&addr), port: port.to_be(), proto: proto.number(), af: af_code(k.af()) }
        }
        SvcKey::Fwmark { mark, af } => {
            ServiceKey { addr: Addr::v4(mark), port: 0, proto: c::IPPROTO_IP, af: af_code(af) }
        }
    }
}

fn key_from_map(k: &ServiceKey) -> anyhow::Result<SvcKey> {
    let af = if k.af == c::AF_INET6 { Af::Inet6 } else { Af::Inet };
    if k.proto == c::IPPROTO_IP {
        return Ok(SvcKey::Fwmark { mark: k.addr.w[0], af });
    }
    let proto = Proto::from_number(k.proto).ok_or_else(|| anyhow!("service with protocol {}", k.proto))?;
    Ok(SvcKey::Inet { proto, addr: to_ip(k.af, &k.addr), port: u16::from_be(k.port) })
}

fn netmask_addr(s: &Service) -> Addr {
    match s.key.af() {
        Af::Inet => Addr::v4(s.netmask.to_be()),
        Af::Inet6 => {
            let bits = s.netmask.min(128);
            let mut w = [0u32; 4];
            for (i, word) in w.iter_mut().enumerate() {
                let b = bits.saturating_sub(32 * i as u32).min(32);
                *word = if b == 0 { 0 } else { (u32::MAX << (32 - b)).to_be() };
            }
            Addr::v6(w)
        }
    }
}

fn netmask_from_map(af: Af, a: &Addr) -> u32 {
    match af {
        Af::Inet => u32::from_be(a.w[0]),
        Af::Inet6 => a.w.iter().map(|w| u32::from_be(*w).count_ones()).sum(),
    }
}

fn service_from_map(k: &ServiceKey, v: &c::Service, stats: Option<Counters>) -> anyhow::Result<Service> {
    let key = key_from_map(k)?;
    Ok(Service {
        id: v.id,
        key,
        sched: sched::sched_name(v.sched).to_string(),
        flags: v.flags,
        timeout: v.timeout,
        netmask: netmask_from_map(key.af(), &v.netmask),
        pe_name: if v.pe == c::PE_SIP { "sip".to_string() } else { String::new() },
        dests: Vec::new(),
        stats: stats.unwrap_or_default(),
        rates: Rates::default(),
    })
}

fn dest_from_map(id: u32, d: &c::Dest, n: &DestConns, stats: Counters) -> Dest {
    Dest {
        id,
        addr: to_ip(d.af, &d.addr),
        port: u16::from_be(d.port),
        fwd: Fwd::from_code(d.fwd).unwrap_or(Fwd::Route),
        weight: d.weight,
        last_weight: d.last_weight,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tunnel: Tunnel { kind: d.tun_type, port: d.tun_port, flags: d.tun_flags },
        seq: d.seq,
        overloaded: d.flags & c::DEST_F_OVERLOAD != 0,
        active_conns: n.active.min(u32::MAX as u64) as u32,
        inact_conns: n.inactive.min(u32::MAX as u64) as u32,
        persist_conns: n.persist.min(u32::MAX as u64) as u32,
        stats,
        rates: Rates::default(),
    }
}

fn dest_to_map(svc_id: u32, d: &Dest) -> c::Dest {
    c::Dest {
        addr: to_addr(&d.addr),
        port: d.port.to_be(),
        fwd: d.fwd.code(),
        flags: c::DEST_F_IN_USE | c::DEST_F_AVAILABLE | if d.overloaded { c::DEST_F_OVERLOAD } else { 0 },
        weight: d.weight,
        svc_id,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        tun_type: d.tunnel.kind,
        af: af_code(Af::of(&d.addr)),
        tun_port: d.tunnel.port,
        tun_flags: d.tunnel.flags,
        _pad: 0,
        last_weight: d.last_weight,
        seq: d.seq,
    }
}

fn same_config(a: &Dest, b: &Dest) -> bool {
    a.addr == b.addr
        && a.port == b.port
        && a.fwd == b.fwd
        && a.weight == b.weight
        && a.last_weight == b.last_weight
        && a.u_threshold == b.u_threshold
        && a.l_threshold == b.l_threshold
        && a.tunnel == b.tunnel
        && a.seq == b.seq
        && a.overloaded == b.overloaded
}

fn dest_views(dests: &[Dest]) -> Vec<sched::DestView> {
    // OVERLOAD comes and goes with connections in the data plane, which checks it at pick time:
    // the tables hold every dest with weight.
    dests.iter().map(|d| sched::DestView { id: d.id, weight: d.weight, overloaded: false }).collect()
}

/// Finds room in `XLB_SCHED_SLOTS` for new scheduling tables without touching any table a
/// packet may be reading (every region live at the start of the commit stays intact).
struct SlotAllocator {
    used: Vec<(u32, u32)>,
    bump: u32,
}

impl SlotAllocator {
    fn new(live: &[(u32, u32)]) -> Self {
        let mut used = live.to_vec();
        used.sort_unstable();
        let bump = used.iter().map(|(o, l)| o + l).max().unwrap_or(0);
        SlotAllocator { used, bump }
    }

    fn alloc(&mut self, n: u32) -> anyhow::Result<u32> {
        if n == 0 {
            return Ok(0);
        }
        if self.bump.checked_add(n).is_some_and(|e| e <= c::MAX_SCHED_SLOTS) {
            let off = self.bump;
            self.bump += n;
            self.used.push((off, n));
            return Ok(off);
        }
        // Past the end: first fit between the regions in use.
        self.used.sort_unstable();
        let mut start = 0u32;
        for &(o, l) in &self.used {
            if o >= start && o - start >= n {
                break;
            }
            start = start.max(o + l);
        }
        if start.checked_add(n).is_none_or(|e| e > c::MAX_SCHED_SLOTS) {
            bail!("scheduling tables full ({} slots)", c::MAX_SCHED_SLOTS);
        }
        self.used.push((start, n));
        Ok(start)
    }
}
