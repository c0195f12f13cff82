//! The master thread: reads the connections the data plane asks to sync from the ring buffer
//! `XLB_SYNC_EVENTS`, describes each (and its persistence template) from the tables, fills
//! messages as the kernel's sync buffers fill, and sends each when full or, partly filled,
//! [`FLUSH_TIME`] after its first entry.

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use lb_common::{self as c, ConnKey, ConnKey6};

use super::wire::{Builder, Version};
use super::{COUNTERS, DaemonCfg, socket};
use crate::store::Store;

/// A partly filled message waits at most this long (`IPVS_SYNC_FLUSH_TIME`, 2 s).
pub const FLUSH_TIME: Duration = Duration::from_secs(2);
/// How often the ring buffer is read (and the stop flag looked at). The data plane queues without
/// waking the reader (a wakeup interrupts the packet's CPU), so this clock is the reader's; IPVS's
/// master thread also sends what was queued within 20 ms.
const WAIT: Duration = Duration::from_millis(20);

/// One ring buffer record: a client-side key of either table, told apart by length.
enum Event {
    V4(ConnKey),
    V6(ConnKey6),
}

fn parse(rec: &[u8]) -> Option<Event> {
    if rec.len() == size_of::<ConnKey>() {
        // SAFETY: exactly a ConnKey's bytes; ConnKey is plain integers (any bit pattern is a
        // value); read unaligned.
        Some(Event::V4(unsafe { std::ptr::read_unaligned(rec.as_ptr().cast::<ConnKey>()) }))
    } else if rec.len() == size_of::<ConnKey6>() {
        // SAFETY: as above, for ConnKey6.
        Some(Event::V6(unsafe { std::ptr::read_unaligned(rec.as_ptr().cast::<ConnKey6>()) }))
    } else {
        None
    }
}

/// Waits until `fd` is readable or `timeout` passed.
fn wait_readable(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
}

pub fn run(dir: &Path, cfg: &DaemonCfg, stop: &AtomicBool) -> anyhow::Result<()> {
    let sock = socket::send_socket(cfg)?;
    let path = dir.join(c::names::SYNC_EVENTS);
    let data = MapData::from_pin(&path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut ring = RingBuf::try_from(aya::maps::Map::from_map_data(data)?)?;
    let mut builder = Builder::new(cfg.syncid, cfg.maxlen as usize);
    let send = |m: Vec<u8>| match sock.send(&m) {
        Ok(_) => {
            COUNTERS.sent_messages.fetch_add(1, Relaxed);
        }
        Err(_) => {
            COUNTERS.send_errors.fetch_add(1, Relaxed);
        }
    };
    while !stop.load(Relaxed) {
        let wait = match builder.started() {
            Some(t) => FLUSH_TIME.saturating_sub(t.elapsed()).min(WAIT),
            None => WAIT,
        };
        wait_readable(ring.as_raw_fd(), wait);
        let mut events = Vec::new();
        while let Some(rec) = ring.next() {
            COUNTERS.events.fetch_add(1, Relaxed);
            events.extend(parse(&rec));
        }
        if !events.is_empty() {
            match Store::open_at(dir, Default::default()) {
                Ok(store) => {
                    let version = match store.config().map(|c| c.sync_version) {
                        Ok(0) => Version::V0,
                        _ => Version::V1,
                    };
                    let mut entries = Vec::new();
                    for ev in &events {
                        let e = match ev {
                            Event::V4(k) => store.sync_entries4(k),
                            Event::V6(k) => store.sync_entries6(k),
                        };
                        if e.is_empty() {
                            COUNTERS.events_gone.fetch_add(1, Relaxed);
                        }
                        entries.extend(e);
                    }
                    drop(store);
                    for e in &entries {
                        if version == Version::V1 || !e.caddr.is_ipv6() {
                            COUNTERS.sent_conns.fetch_add(1, Relaxed);
                        }
                        if let Some(m) = builder.add(version, e) {
                            send(m);
                        }
                    }
                }
                Err(e) => tracing::warn!("sync master: {} events not sent: {e:#}", events.len()),
            }
        }
        if builder.started().is_some_and(|t| t.elapsed() >= FLUSH_TIME)
            && let Some(m) = builder.take()
        {
            send(m);
        }
    }
    Ok(())
}
