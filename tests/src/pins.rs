//! A private pin directory per test, removed (with every map and link in it) when dropped, so
//! tests run side by side and leave nothing behind even when they fail.
use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TempPins {
    dir: PathBuf,
}

impl TempPins {
    pub fn new(tag: &str) -> anyhow::Result<TempPins> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
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
    }
}
