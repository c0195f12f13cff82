//! `XLB_GATE` (see lb-common's `GATE_*`): the data plane's first question, "could this packet be
//! for a service?". Each writer owns one bit of every slot and sets it for its addresses with
//! atomic OR/AND on the shared mapping, so writers of the other bits are never overwritten:
//! lbadm's commit owns [`c::GATE_VIP`] and [`c::GATE_NAT_RS`], lbd's fwmark sync
//! [`c::GATE_FWMARK`].
//!
//! A VIP stays open while connections to it live, its service deleted or not: their packets
//! must still meet the connection table, which drops them as IPVS does (`ipvsadm -C` then
//! `-R`, a reload, must not hand a live connection's packets to the director's own stack,
//! which would reset it). So a commit only opens VIPs, and lbd's expiry pass, which reads the
//! whole connection table anyway, closes those left with neither a service nor a connection.
use std::{net::IpAddr, path::Path, sync::atomic::{AtomicU64, Ordering::SeqCst}};

use anyhow::Context as _;
use aya::maps::MapData;
use lb_common::{self as c, names};

use super::MmapArray;

pub struct Gate(MmapArray<u64>);

impl Gate {
    pub(super) fn new(map: MapData) -> anyhow::Result<Gate> {
        Ok(Gate(MmapArray::new(map, c::GATE_WORDS)?))
    }

    /// The gate pinned in `pin_dir` (created with the other maps by the store).
    pub fn open(pin_dir: &Path) -> anyhow::Result<Gate> {
        let path = pin_dir.join(names::GATE);
        let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
        Gate::new(data)
    }

    fn word(&self, i: u32) -> Option<&AtomicU64> {
        let p = self.0.ptr_field(i)?;
        // SAFETY: an element inside the mapping, 8-aligned (the stride is 8); the reference
        // borrows `self`, so it cannot outlive the mapping; every write to the word, here and in
        // lbd's other writer, is atomic (the data plane only reads it).
        Some(unsafe { AtomicU64::from_ptr(p) })
    }

    /// Makes `bit` set in exactly the slots of `addrs` (IPv4 and IPv6 share the slots). Bits are set before others are cleared, so an address that stays
    /// configured is never gated out meanwhile.
    pub fn set(&self, bit: u64, addrs: impl IntoIterator<Item = IpAddr>) {
        let mut want = vec![0u64; c::GATE_WORDS as usize];
        for a in addrs {
            let (w, shift) = pos(a);
            want[w as usize] |= bit << shift;
        }
        let every = bit * 0x1111_1111_1111_1111;
        for (i, w) in want.iter().enumerate() {
            let Some(word) = self.word(i as u32) else { continue };
            let have = word.load(SeqCst) & every;
            if have != *w {
                word.fetch_or(*w, SeqCst);
                word.fetch_and(!(have & !*w), SeqCst);
            }
        }
    }

    /// Sets `bit` in the slots of `addrs`, clearing none.
    pub fn add(&self, bit: u64, addrs: impl IntoIterator<Item = IpAddr>) {
        for a in addrs {
            let (w, shift) = pos(a);
            if let Some(word) = self.word(w) {
                word.fetch_or(bit << shift, SeqCst);
            }
        }
    }

    /// Whether IPv4 address `a` has `bit` (tests).
    pub fn has(&self, bit: u64, a: std::net::Ipv4Addr) -> bool {
        self.has_ip(bit, IpAddr::V4(a))
    }

    /// Whether address `a` (either family) has `bit` (tests).
    pub fn has_ip(&self, bit: u64, a: IpAddr) -> bool {
        let (w, shift) = pos(a);
        self.word(w).is_some_and(|x| x.load(SeqCst) >> shift & bit != 0)
    }
}

/// Where address `a`'s bits are: (word, shift), as the data plane computes them
/// (`lb_common::gate_slot`, `gate_slot6`).
fn pos(a: IpAddr) -> (u32, u32) {
    match a {
        IpAddr::V4(v4) => c::gate_pos(c::gate_slot(u32::from_ne_bytes(v4.octets()))),
        IpAddr::V6(_) => c::gate_pos(c::gate_slot6(&super::to_addr(&a).w)),
    }
}
