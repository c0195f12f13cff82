//! Memory per tracked connection: XLB_CONNS is a preallocated BPF hash map, so its kernel memory
//! is fixed at creation; read the kernel's own accounting (`memlock:` in the map fd's fdinfo)
//! before and after writing `mem_fill` entries from userspace through the map API, and divide by
//! max_entries. A DR/TUN connection is one entry, a NAT connection two (client-side and
//! reply-side keys). Baseline: the kernel's conntrack entry (`nf_conntrack` slab object size).
use std::{os::fd::AsRawFd as _, path::Path};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, Map, MapData};
use lb_common::{Conn, ConnKey, names};
use lb_user::store::{self, CreateOptions};

use super::{Figure, Results, Size};
use crate::pins::TempPins;

fn fdinfo(map: &MapData) -> anyhow::Result<std::collections::HashMap<String, String>> {
    use std::os::fd::AsFd as _;
    let fd = map.fd().as_fd().as_raw_fd();
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    Ok(s.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect())
}

fn num(info: &std::collections::HashMap<String, String>, k: &str) -> anyhow::Result<u64> {
    let v = info.get(k).with_context(|| format!("no {k} in fdinfo"))?;
    if let Some(h) = v.strip_prefix("0x") { Ok(u64::from_str_radix(h, 16)?) } else { Ok(v.parse()?) }
}

fn conntrack_objsize() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/slabinfo").ok()?;
    s.lines().find(|l| l.starts_with("nf_conntrack ")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok())
}

pub fn run(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let pins = TempPins::new("bench-mem")?;
    let max = lb_common::DEFAULT_MAX_CONNS;
    drop(store::load_object(pins.path(), CreateOptions { max_conns: max })?);
    let data = MapData::from_pin(pins.path().join(names::CONNS))?;
    let before = fdinfo(&data)?;
    let (memlock0, max_entries, flags) = (num(&before, "memlock")?, num(&before, "max_entries")?, num(&before, "map_flags")?);
    let prealloc = flags & 1 == 0; // BPF_F_NO_PREALLOC
    let mut conns: HashMap<MapData, ConnKey, Conn> = HashMap::try_from(Map::HashMap(data))?;
    let n = size.mem_fill.min(max_entries as u32);
    let t = std::time::Instant::now();
    for i in 0..n {
        let key = ConnKey {
            caddr: u32::from_be_bytes([100, (i >> 16) as u8, (i >> 8) as u8, i as u8]).to_be(),
            vaddr: u32::from_be_bytes([192, 168, 88, 15]).to_be(),
            cport: 40_000u16.to_be(),
            vport: 80u16.to_be(),
            proto: lb_common::IPPROTO_TCP,
            kind: lb_common::CONN_KIND_IN,
            _pad: 0,
        };
        conns.insert(key, Conn { dest_id: i % 2, svc_id: 0, last_seen: 0, timeout: 900, state: 3, flags: 0, port: 80u16.to_be(), ..Default::default() }, 0)?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let counted = conns.keys().filter(|k| k.is_ok()).count() as u64;
    let after = fdinfo(conns_map_data(pins.path())?.as_ref())?;
    let memlock1 = num(&after, "memlock")?;
    let mut bad = Vec::new();
    if counted != n as u64 {
        bad.push(format!("map holds {counted} entries, {n} written"));
    }
    let per = memlock1 as f64 / max_entries as f64;
    let proof = |extra: &str| -> super::Proof {
        if bad.is_empty() {
            Ok(format!(
                "{counted} entries written and counted back; memlock {memlock0} B before, {memlock1} B after \
                 ({}){extra}",
                if prealloc { "preallocated" } else { "not preallocated" }
            ))
        } else {
            Err(bad.join("; "))
        }
    };
    if !prealloc {
        bail!("XLB_CONNS is not preallocated: memlock / max_entries would not be the per-entry cost");
    }
    let ct = conntrack_objsize();
    let mut f1 = Figure::new(
        "memory",
        format!("XLB_CONNS memlock ÷ max_entries ({max_entries}): one DR/TUN connection"),
        "B",
        &[per],
        proof(""),
    );
    let mut f2 = Figure::new("memory", "one NAT connection (client-side + reply-side entries)", "B", &[2.0 * per], proof(""));
    if let Some(o) = ct {
        f1 = f1.baseline("nf_conntrack slab object", o as f64).ratio(per / o as f64);
        f2 = f2.baseline("nf_conntrack slab object", o as f64).ratio(2.0 * per / o as f64);
    }
    res.figures.push(f1);
    res.figures.push(f2);
    res.figures.push(Figure::new(
        "memory",
        format!("XLB_CONNS total at {max_entries} entries (fixed at creation)"),
        "MiB",
        &[memlock1 as f64 / 1048576.0],
        proof(""),
    ));
    // The whole data plane's maps, for scale.
    let mut total = 0u64;
    for name in names::ALL {
        if let Ok(d) = MapData::from_pin(pins.path().join(name)) {
            total += fdinfo(&d).and_then(|i| num(&i, "memlock")).unwrap_or(0);
        }
    }
    res.figures.push(Figure::new(
        "memory",
        "all pinned data-plane maps (conn table included)",
        "MiB",
        &[total as f64 / 1048576.0],
        Ok("sum of memlock over the pinned maps".to_string()),
    ));
    res.notes.push(format!(
        "Memory: XLB_CONNS is a preallocated hash map (no BPF_F_NO_PREALLOC), so memlock is charged at creation and does \
         not move when entries are written ({n} written in {:.0} ms through the map API); per-connection figure = \
         memlock (the kernel's own accounting of the map) ÷ max_entries (key {} B + value {} B + the kernel's htab element overhead). Baseline: `nf_conntrack` \
         object size from /proc/slabinfo{} (IPVS's own ip_vs_conn cannot be measured: no IPVS in this kernel).",
        fill_s * 1e3,
        std::mem::size_of::<ConnKey>(),
        std::mem::size_of::<Conn>(),
        if ct.is_some() { "" } else { " — not present on this machine, so no baseline" }
    ));
    Ok(())
}

fn conns_map_data(dir: &Path) -> anyhow::Result<Box<MapData>> {
    Ok(Box::new(MapData::from_pin(dir.join(names::CONNS))?))
}
