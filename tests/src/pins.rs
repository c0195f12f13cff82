//! A private pin directory per test, removed (with every map and link in it) when dropped, so
//! tests run side by side and leave nothing behind even when they fail.
use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);
static SWEPT: std::sync::Once = std::sync::Once::new();

/// Removes the pin directories of test processes that no longer exist: a test killed by a
/// signal (or a timeout) cannot run its destructors, so the next run cleans up after it.
fn sweep_dead_runs() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("xlb-test-")) else { continue };
        // xlb-test-{tag}-{pid}-{n}: the pid is the second field from the end.
        let Some(pid) = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub struct TempPins {
    dir: PathBuf,
}

impl TempPins {
    pub fn new(tag: &str) -> anyhow::Result<TempPins> {
        SWEPT.call_once(sweep_dead_runs);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // bpffs refuses '.' in names (a tag may carry a kernel version such as 6.12).
        let tag = tag.replace('.', "_");
        let dir = PathBuf::from(format!("/sys/fs/bpf/xlb-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        lb_user::store::ensure_pin_dir(&dir)?;
        Ok(TempPins { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempPins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = lb_user::journal::Journal::for_pin_dir(&self.dir).end();
    }
}
