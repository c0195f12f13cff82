//! The table's home: pinned BPF maps (like ipvsadm's table lives in the kernel).
//! PLACEHOLDER API (being written): `Store::open`, `load`, `commit`, `connections`.
use crate::model::{ConnEntry, Table};

pub struct Store {
    _private: (),
}

impl Store {
    /// Opens (creating on first use) the pinned maps under `$XLB_PIN_DIR` (default
    /// `/sys/fs/bpf/xlb`).
    pub fn open() -> anyhow::Result<Store> {
        anyhow::bail!("store not implemented yet")
    }

    /// The whole table with live counters.
    pub fn load(&self) -> anyhow::Result<Table> {
        anyhow::bail!("store not implemented yet")
    }

    /// Writes `after` to the maps; `before` is what `load` returned (only differences are written).
    pub fn commit(&mut self, _before: &Table, _after: &Table) -> anyhow::Result<()> {
        anyhow::bail!("store not implemented yet")
    }

    /// Live connection entries and templates for `-Lc`.
    pub fn connections(&self) -> anyhow::Result<Vec<ConnEntry>> {
        anyhow::bail!("store not implemented yet")
    }
}
