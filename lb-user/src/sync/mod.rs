//! The IPVS connection sync daemon, run by `lbd run` (kernel `ip_vs_sync.c`): a master sends
//! the connections the data plane reports (ring buffer `XLB_SYNC_EVENTS`) as IPVS sync messages
//! to a multicast group; a backup receives such messages (from xlb or from kernel IPVS) and
//! installs the connections into its own tables, so it forwards them as the master did once it
//! holds the VIP.
//!
//! lbadm's `--start-daemon` / `--stop-daemon` only write `XLB_SYNC_DAEMONS` (as ipvsadm only
//! tells the kernel); [`spawn`]'s supervisor thread follows that map and starts, restarts and
//! stops the master and backup threads. The map and the ring buffer are pinned, so a restarted
//! lbd picks up where the last one stopped: the daemons it ran are started again and the events
//! the ring buffer kept meanwhile are sent.

pub mod backup;
pub mod master;
pub mod socket;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{Array, MapData};
use lb_common::{self as c, sync::SyncDaemon};


/// One daemon's settings: the table's (`store::daemons::from_map` reads the map entry).
pub use crate::model::SyncDaemonCfg as DaemonCfg;

/// What the daemons did since this lbd started (metrics).
#[derive(Default)]
pub struct Counters {
    /// Master: ring buffer records read, messages and entries sent, send errors, records whose
    /// connection was gone already.
    pub events: AtomicU64,
    pub sent_messages: AtomicU64,
    pub sent_conns: AtomicU64,
    pub send_errors: AtomicU64,
    pub events_gone: AtomicU64,
    /// Backup: messages received, dropped whole, entries installed new, updated, skipped.
    pub received_messages: AtomicU64,
    pub dropped_messages: AtomicU64,
    pub installed: AtomicU64,
    pub updated: AtomicU64,
    /// Entries skipped by the decoder (bad protocol/state/options).
    pub skipped_invalid: AtomicU64,
    /// Entries for which no service or real server matches here (IPVS would keep them as
    /// connections bound to no real server; xlb's table has no such thing).
    pub skipped_no_dest: AtomicU64,
    /// Expiry messages for a connection already moved to another real server, and entries
    /// whose protocol the data plane does not carry.
    pub skipped_other: AtomicU64,
}

pub static COUNTERS: Counters =
    Counters {
        events: AtomicU64::new(0),
        sent_messages: AtomicU64::new(0),
        sent_conns: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        events_gone: AtomicU64::new(0),
        received_messages: AtomicU64::new(0),
        dropped_messages: AtomicU64::new(0),
        installed: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        skipped_invalid: AtomicU64::new(0),
        skipped_no_dest: AtomicU64::new(0),
        skipped_other: AtomicU64::new(0),
    };

impl Counters {
    /// (name, help, value) of each counter, for the metrics (`lbd run --metrics`).
    pub fn all(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            ("sync_master_events", "ring buffer records the master read", self.events.load(Relaxed)),
            ("sync_master_messages", "sync messages sent", self.sent_messages.load(Relaxed)),
            ("sync_master_conns", "connection entries sent", self.sent_conns.load(Relaxed)),
            ("sync_master_send_errors", "sync messages not sent", self.send_errors.load(Relaxed)),
            ("sync_master_gone", "records whose connection had left the table", self.events_gone.load(Relaxed)),
            ("sync_backup_messages", "sync messages received", self.received_messages.load(Relaxed)),
            ("sync_backup_dropped", "sync messages dropped whole (size, syncid, bogus entries)", self.dropped_messages.load(Relaxed)),
            ("sync_backup_installed", "connections installed", self.installed.load(Relaxed)),
            ("sync_backup_updated", "connections updated", self.updated.load(Relaxed)),
            ("sync_backup_invalid", "entries skipped: protocol, state or options invalid", self.skipped_invalid.load(Relaxed)),
            ("sync_backup_no_dest", "entries skipped: no matching service or real server", self.skipped_no_dest.load(Relaxed)),
            ("sync_backup_other", "entries skipped: stale expiry or protocol not carried", self.skipped_other.load(Relaxed)),
        ]
    }
}

/// A running master or backup thread.
struct Worker {
    entry: SyncDaemon,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Worker {
    fn end(self) {
        self.stop.store(true, Relaxed);
        let _ = self.thread.join();
    }
}

/// How often the supervisor reads `XLB_SYNC_DAEMONS`.
const POLL: Duration = Duration::from_millis(250);

fn open_daemons(dir: &Path) -> anyhow::Result<Array<MapData, SyncDaemon>> {
    let path = dir.join(c::names::SYNC_DAEMONS);
    let data = MapData::from_pin(&path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    Ok(Array::try_from(aya::maps::Map::from_map_data(data)?)?)
}

/// Starts the supervisor thread of `lbd run` for the table pinned under `dir`. It runs until
/// the process ends.
pub fn spawn(dir: PathBuf) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("lbd-sync".into()).spawn(move || supervise(&dir))
}

fn supervise(dir: &Path) {
    let mut workers: [Option<Worker>; 2] = [None, None];
    let mut complained = false;
    loop {
        match open_daemons(dir) {
            Ok(map) => {
                complained = false;
                for role in [c::sync::SYNC_MASTER, c::sync::SYNC_BACKUP] {
                    let entry = map.get(&role, 0).ok();
                    let slot = &mut workers[role as usize];
                    // A finished thread (its socket failed) is started again only by a new
                    // --start-daemon (a new generation).
                    let same = match (&*slot, &entry) {
                        (Some(w), Some(e)) => w.entry == *e,
                        (None, Some(e)) => e.running == 0,
                        (_, None) => slot.is_none(),
                    };
                    if same {
                        continue;
                    }
                    if let Some(w) = slot.take() {
                        tracing::info!(sync_role = role_name(role), "sync: stopping the {} thread", role_name(role));
                        w.end();
                    }
                    let Some(entry) = entry else { continue };
                    let Some(cfg) = crate::store::daemons::from_map(&entry) else {
                        // Stopped: remember the entry so it is not looked at again.
                        *slot = Some(idle(entry));
                        continue;
                    };
                    *slot = Some(start(dir, role, entry, cfg));
                }
            }
            Err(e) => {
                if !complained {
                    tracing::warn!("sync: no daemon table ({e:#}); retrying");
                    complained = true;
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn role_name(role: u32) -> &'static str {
    if role == c::sync::SYNC_MASTER { "master" } else { "backup" }
}

/// A worker that does nothing (a stopped daemon's entry).
fn idle(entry: SyncDaemon) -> Worker {
    Worker { entry, stop: Arc::new(AtomicBool::new(true)), thread: std::thread::spawn(|| {}) }
}

fn start(dir: &Path, role: u32, entry: SyncDaemon, cfg: DaemonCfg) -> Worker {
    let stop = Arc::new(AtomicBool::new(false));
    let (d, s) = (dir.to_path_buf(), stop.clone());
    tracing::info!(
        sync_role = role_name(role),
        interface = %cfg.ifname,
        syncid = cfg.syncid,
        "sync thread started: state = {}, mcast_ifn = {}, syncid = {}, group = {}:{}, maxlen = {}",
        role_name(role).to_uppercase(),
        cfg.ifname,
        cfg.syncid,
        cfg.group,
        cfg.port,
        cfg.maxlen
    );
    let name = format!("lbd-sync-{}", role_name(role));
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let r = if role == c::sync::SYNC_MASTER { master::run(&d, &cfg, &s) } else { backup::run(&d, &cfg, &s) };
        if let Err(e) = r {
            tracing::error!(sync_role = role_name(role), "sync {} thread ended: {e:#}", role_name(role));
        }
    });
    match spawned {
        Ok(thread) => Worker { entry, stop, thread },
        Err(e) => {
            tracing::error!(sync_role = role_name(role), "sync: cannot start the {} thread: {e}", role_name(role));
            idle(entry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn daemon_cfg_from_the_map_entry() {
        let mut ifname = [0u8; 16];
        ifname[..4].copy_from_slice(b"eth0");
        let e = SyncDaemon {
            running: 1,
            syncid: 7,
            maxlen: 1472,
            port: 8848,
            ttl: 1,
            af: c::AF_INET,
            group: c::Addr::v4(u32::from_ne_bytes([224, 0, 0, 81])),
            ifname,
            ifindex: 3,
            generation: 2,
        };
        let cfg = crate::store::daemons::from_map(&e).expect("running");
        assert_eq!(cfg.group, "224.0.0.81".parse::<IpAddr>().unwrap());
        assert_eq!((cfg.ifname.as_str(), cfg.ifindex, cfg.syncid, cfg.maxlen, cfg.port), ("eth0", 3, 7, 1472, 8848));
        let g6: Ipv6Addr = "ff02::81".parse().unwrap();
        let o = g6.octets();
        let w = std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]));
        let e6 = SyncDaemon { af: c::AF_INET6, group: c::Addr::v6(w), ..e };
        assert_eq!(crate::store::daemons::from_map(&e6).map(|c| c.group), Some(IpAddr::V6(g6)));
        assert_eq!(crate::store::daemons::from_map(&SyncDaemon { running: 0, ..e }), None);
    }
}
