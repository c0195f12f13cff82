//! The commit journal: what makes a table change all-or-nothing across processes.
//!
//! [`crate::store::Store::commit`] writes many map entries (one per changed service and real
//! server). Before the first of them it records the whole new table here (written to a
//! temporary file, synced, then renamed: the journal either exists complete or not at all),
//! and removes it after the last. A commit that was interrupted (`lbadm -R` killed, a crash, a
//! power cut of the process) leaves the journal behind; the next process that opens the table
//! (any lbadm command, every `lbd run` tick) finishes it before it reads anything. So every
//! reader sees the old table or the new one, never a mix.
//!
//! The journal names the table it belongs to by the kernel's id of its META map and the boot
//! id: a journal left for a table that was torn down and created again is discarded, never
//! applied to the new one. bpffs holds no regular files, so journals live under `/run/xlb`
//! (`XLB_JOURNAL_DIR` overrides it), named after the pin directory.
//!
//! Hand-written: one JSON document (serde_json) written, synced and renamed; no database is needed for that.
use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::model::Table;

pub const DEFAULT_JOURNAL_DIR: &str = "/run/xlb";

/// Which table a journal belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableId {
    pub boot_id: String,
    pub meta_map_id: u32,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    table: TableId,
    before: Table,
    after: Table,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    table: &'a TableId,
    before: &'a Table,
    after: &'a Table,
}

/// The journal file of the table pinned in `pin_dir`.
pub struct Journal {
    path: PathBuf,
}

/// FNV-1a: a stable name for a path of any length (std's hashers may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl Journal {
    pub fn for_pin_dir(pin_dir: &Path) -> Journal {
        let dir = std::env::var_os("XLB_JOURNAL_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_JOURNAL_DIR.into());
        let base: String = pin_dir
            .file_name()
            .map(|n| n.to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(64).collect())
            .unwrap_or_default();
        let hash = fnv1a(pin_dir.as_os_str().as_encoded_bytes());
        Journal { path: dir.join(format!("{hash:016x}-{base}.journal")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        self.path.with_extension("journal.tmp")
    }

    /// Records the commit from `before` to `after` (durably, before any map is written).
    pub fn begin(&self, table: &TableId, before: &Table, after: &Table) -> anyhow::Result<()> {
        let dir = self.path.parent().context("journal path without a directory")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = self.tmp_path();
        let body = serde_json::to_vec(&EntryRef { table, before, after })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }

    /// The commit is complete: forget it (and any temporary file a writer killed while
    /// recording left).
    pub fn end(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(self.tmp_path());
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", self.path.display())),
        }
    }

    /// The (before, after) tables of an interrupted commit of `table`, if any. A journal of
    /// another table, or one that cannot be read, is removed (and reported in the error of the
    /// latter).
    pub fn pending(&self, table: &TableId) -> anyhow::Result<Option<(Table, Table)>> {
        let body = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        };
        match serde_json::from_slice::<Entry>(&body) {
            Ok(e) if e.table == *table => Ok(Some((e.before, e.after))),
            Ok(_) => {
                self.end()?;
                Ok(None)
            }
            Err(err) => {
                self.end()?;
                Err(anyhow::anyhow!("discarded the unreadable commit journal {}: {err}", self.path.display()))
            }
        }
    }
}
