//! The sync daemons in the table (`XLB_SYNC_DAEMONS`, see `lb_common::sync`): what lbadm's
//! `--start-daemon` records and lbd runs.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{self as c, Addr, sync::SyncDaemon};

use super::Store;
use crate::model::{SyncDaemonCfg, SyncDaemons};

/// The settings in a map entry; `None` when that daemon is stopped.
pub fn from_map(d: &SyncDaemon) -> Option<SyncDaemonCfg> {
    if d.running == 0 {
        return None;
    }
    let group = if d.af == c::AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(d.group.w.map(u32::from_be).iter().fold(0u128, |a, w| (a << 32) | *w as u128)))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::from_be(d.group.w[0])))
    };
    Some(SyncDaemonCfg {
        ifname: String::from_utf8_lossy(d.ifname()).into_owned(),
        ifindex: d.ifindex,
        syncid: d.syncid.min(255) as u8,
        maxlen: d.maxlen,
        group,
        port: d.port,
        ttl: d.ttl,
        generation: d.generation,
    })
}

/// The map entry of `cfg` (stopped: only the generation is kept, so starts stay counted).
pub fn to_map(cfg: Option<&SyncDaemonCfg>, generation: u32) -> SyncDaemon {
    let Some(cfg) = cfg else {
        return SyncDaemon { generation, ..Default::default() };
    };
    let (af, group) = match cfg.group {
        IpAddr::V4(a) => (c::AF_INET, Addr::v4(u32::from_ne_bytes(a.octets()))),
        IpAddr::V6(a) => {
            let o = a.octets();
            (c::AF_INET6, Addr::v6(core::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))))
        }
    };
    let mut ifname = [0u8; 16];
    for (d, s) in ifname.iter_mut().take(15).zip(cfg.ifname.bytes()) {
        *d = s;
    }
    SyncDaemon {
        running: 1,
        syncid: cfg.syncid as u32,
        maxlen: cfg.maxlen,
        port: cfg.port,
        ttl: cfg.ttl,
        af,
        group,
        ifname,
        ifindex: cfg.ifindex,
        generation: cfg.generation,
    }
}

impl Store {
    /// The daemons as the table holds them.
    pub fn sync_daemons(&self) -> anyhow::Result<SyncDaemons> {
        let m = self.sync_daemons.get(&c::sync::SYNC_MASTER, 0)?;
        let b = self.sync_daemons.get(&c::sync::SYNC_BACKUP, 0)?;
        Ok(SyncDaemons { master: from_map(&m), backup: from_map(&b), starts: m.generation.max(b.generation) })
    }

    /// Writes `after`'s daemons and tells the data plane whether a master runs.
    pub(super) fn commit_daemons(&mut self, after: &SyncDaemons) -> anyhow::Result<()> {
        let old_m = self.sync_daemons.get(&c::sync::SYNC_MASTER, 0)?;
        let old_b = self.sync_daemons.get(&c::sync::SYNC_BACKUP, 0)?;
        let m = to_map(after.master.as_ref(), old_m.generation);
        let b = to_map(after.backup.as_ref(), old_b.generation);
        self.sync_daemons.set(c::sync::SYNC_MASTER, m, 0)?;
        self.sync_daemons.set(c::sync::SYNC_BACKUP, b, 0)?;
        let mut cfg = self.config.get(&0, 0)?;
        let flags = if after.master.is_some() { cfg.flags | c::CFG_F_SYNC_MASTER } else { cfg.flags & !c::CFG_F_SYNC_MASTER };
        if flags != cfg.flags {
            cfg.flags = flags;
            self.config.set(0, cfg, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip() {
        for group in ["224.0.0.81", "ff02::1234"] {
            let cfg = SyncDaemonCfg {
                ifname: "eth0".into(),
                ifindex: 3,
                syncid: 9,
                maxlen: 1472,
                group: group.parse().expect("group"),
                port: 8848,
                ttl: 1,
                generation: 4,
            };
            let m = to_map(Some(&cfg), 1);
            assert_eq!(from_map(&m), Some(cfg));
        }
        let stopped = to_map(None, 7);
        assert_eq!((from_map(&stopped), stopped.generation), (None, 7));
    }
}
