//! Where the table lives: the pin directory on bpffs, and the XDP object that creates the
//! maps pinned there.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use aya::{Ebpf, EbpfLoader, maps::MapData};
use lb_common::{self as c, names};

/// Default pin directory; `XLB_PIN_DIR` overrides it (tests use private ones).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xlb";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn pin_dir() -> PathBuf {
    std::env::var_os("XLB_PIN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR))
}

/// Options used only when the maps do not exist yet.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// Capacity of the connection table (`XLB_MAX_CONNS` overrides the default).
    pub max_conns: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        let max_conns = std::env::var("XLB_MAX_CONNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(c::DEFAULT_MAX_CONNS);
        CreateOptions { max_conns }
    }
}

/// Makes sure `dir` is on a bpf filesystem (mounting /sys/fs/bpf when it is not, as bpftool
/// does) and exists, readable by root only.
pub fn ensure_pin_dir(dir: &Path) -> anyhow::Result<()> {
    let bpffs = Path::new("/sys/fs/bpf");
    if dir.starts_with(bpffs) && !is_bpffs(bpffs) {
        std::fs::create_dir_all(bpffs)?;
        // SAFETY: NUL-terminated static strings, no mount data.
        let r = unsafe {
            libc::mount(c"bpf".as_ptr(), c"/sys/fs/bpf".as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
        };
        if r != 0 {
            bail!("cannot mount bpffs on /sys/fs/bpf: {}", std::io::Error::last_os_error());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if !is_bpffs(dir) {
        bail!("{} is not on a bpf filesystem", dir.display());
    }
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(cpath) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain integers (all zero is a value).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a pointer to a live statfs for the kernel to fill.
    unsafe { libc::statfs(cpath.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Loads the XDP object with its maps pinned in `dir` (reusing the pinned ones). Programs are
/// not loaded into the kernel here; attaching does that.
pub fn load_object(dir: &Path, opts: CreateOptions) -> anyhow::Result<Ebpf> {
    let obj = crate::ebpf_object();
    if obj.is_empty() {
        bail!("this build has no XDP object (built with AYA_BUILD_SKIP)");
    }
    ensure_pin_dir(dir)?;
    let mut loader = EbpfLoader::new();
    loader
        .default_map_pin_directory(dir)
        .map_max_entries(names::CONNS, opts.max_conns)
        .map_max_entries(names::CONNS6, opts.max_conns);
    loader.load(obj).with_context(|| format!("cannot create or open the maps in {}", dir.display()))
}

/// Four random bytes from the kernel (the slow-path tag of a new table).
pub(super) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    let r = u32::from_ne_bytes(b);
    // Never 0 (the data plane's "no tag"), even without /dev/urandom.
    if r != 0 { r } else { std::process::id() | 1 }
}

/// Where [`Store::open_at`] gets its maps: straight from their pins when all of them exist
/// (the common case: no ELF or kernel BTF to parse), else from the XDP object, which creates
/// the missing ones and pins them.
pub(super) enum MapSource {
    Pinned(PathBuf),
    Object(Box<Ebpf>),
}

/// Every map the store uses.
const STORE_MAPS: [&str; 18] = [
    names::SERVICES,
    names::SVC_KEYS,
    names::SVC_STATE,
    names::SVC_STATS,
    names::DESTS,
    names::DEST_CONNS,
    names::DEST_STATS,
    names::DEST_NEIGH,
    names::SCHED_SLOTS,
    names::SCHED_TREE,
    names::CONNS,
    names::CONNS6,
    names::GLOBAL_STATS,
    names::CONFIG,
    names::META,
    names::RATES,
    names::GATE,
    names::SYNC_DAEMONS,
];

impl MapSource {
    pub(super) fn open(dir: &Path, opts: CreateOptions) -> anyhow::Result<MapSource> {
        if STORE_MAPS.iter().all(|n| dir.join(n).exists()) {
            Ok(MapSource::Pinned(dir.to_path_buf()))
        } else {
            Ok(MapSource::Object(Box::new(load_object(dir, opts)?)))
        }
    }

    pub(super) fn take(&mut self, name: &str) -> anyhow::Result<aya::maps::Map> {
        match self {
            MapSource::Pinned(dir) => {
                let path = dir.join(name);
                let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
                Ok(aya::maps::Map::from_map_data(data)?)
            }
            MapSource::Object(ebpf) => ebpf.take_map(name).ok_or_else(|| anyhow!("the XDP object has no map {name}")),
        }
    }

    pub(super) fn take_data(&mut self, name: &str) -> anyhow::Result<MapData> {
        match self.take(name)? {
            aya::maps::Map::Array(d) => Ok(d),
            _ => bail!("map {name} is not an array"),
        }
    }
}
