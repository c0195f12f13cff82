//! The backup thread: receives sync messages (from an xlb master or a kernel IPVS one), decodes
//! them as `ip_vs_process_message` does and installs their connections
//! ([`Store::sync_install`]).

use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::wire::{self, Skip};
use super::{COUNTERS, DaemonCfg, socket};
use crate::store::{DestCache, Installed, Store};

/// The most messages installed under one opening of the table.
const BATCH: usize = 64;

pub fn run(dir: &Path, cfg: &DaemonCfg, stop: &AtomicBool) -> anyhow::Result<()> {
    let sock = socket::receive_socket(cfg)?;
    // The kernel reads into a buffer of maxlen: a longer datagram is cut there (and then
    // fails the size check).
    let mut buf = vec![MaybeUninit::<u8>::uninit(); cfg.maxlen.max(1) as usize];
    let mut batch: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                // SAFETY: recv initialised the first n bytes.
                let got: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
                batch.push(got);
                // Take what else is queued without waiting, then install the lot at once.
                sock.set_nonblocking(true)?;
                while batch.len() < BATCH
                    && let Ok(n) = sock.recv(&mut buf)
                {
                    // SAFETY: as above.
                    batch.push(buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect());
                }
                sock.set_nonblocking(false)?;
                install(dir, cfg.syncid, &batch);
                batch.clear();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow::anyhow!("sync backup: receiving: {e}")),
        }
    }
    Ok(())
}

/// Decodes and installs received messages `msgs` (one opening of the table).
pub fn install(dir: &Path, syncid: u8, msgs: &[Vec<u8>]) {
    let decoded: Vec<wire::Decoded> = msgs.iter().map(|m| wire::decode(m, syncid)).collect();
    COUNTERS.received_messages.fetch_add(msgs.len() as u64, Relaxed);
    let mut store = match Store::open_at(dir, Default::default()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("sync backup: {} messages not installed: {e:#}", msgs.len());
            return;
        }
    };
    let mut cache = DestCache::default();
    for d in decoded {
        if d.dropped.is_some() {
            COUNTERS.dropped_messages.fetch_add(1, Relaxed);
        }
        for s in &d.skipped {
            match s {
                Skip::Protocol | Skip::State | Skip::UnknownOption | Skip::PeData => {
                    COUNTERS.skipped_invalid.fetch_add(1, Relaxed);
                }
            }
        }
        for e in &d.conns {
            let counter = match store.sync_install(e, &mut cache) {
                Ok(Installed::New) => &COUNTERS.installed,
                Ok(Installed::Updated) => &COUNTERS.updated,
                Ok(Installed::NoDest) => &COUNTERS.skipped_no_dest,
                Ok(Installed::Stale | Installed::NotCarried) => &COUNTERS.skipped_other,
                Err(err) => {
                    tracing::warn!("sync backup: entry not installed: {err:#}");
                    &COUNTERS.skipped_other
                }
            };
            counter.fetch_add(1, Relaxed);
        }
    }
}
