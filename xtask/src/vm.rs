//! The kernel matrix: runs test binaries of this workspace inside Debian's cloud kernels under
//! QEMU (TCG: /dev/kvm here cannot run a stock kernel).
//!
//! How: the kernel package is fetched with apt (cached under `<cache>/vm/<version>`); a tiny
//! busybox initramfs (built here, uncompressed cpio) mounts the host's root filesystem, shared
//! over virtiofs (Debian's cloud kernels have virtiofs built in but no 9p), read-only under a tmpfs
//! overlay, and switches into it. So the guest runs the already-built binaries and the host's tools
//! (ip, nft, python3, ...) at their usual paths. Stage 2 (`vm/guest.sh` plus one line per test
//! binary) reports on the second serial port; the console goes to a log next to it.
use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{bootstrap::apt, testbins::TestBinary};

/// Kernel series of the matrix, and the Debian metapackage whose candidate names the kernel.
const SERIES: &[(&str, &str)] = &[("6.1", "linux-image-cloud-amd64"), ("6.12", "linux-image-6.12-cloud-amd64")];

/// Modules the labs use, loaded before the tests (anything else comes through request_module).
const LOAD_MODULES: &[&str] = &[
    "veth", "bridge", "sch_ingress", "cls_bpf", "act_bpf", "nf_tables", "nft_ct", "nft_nat", "nft_chain_nat",
    "nf_conntrack", "nf_nat", "ip_tables", "iptable_mangle", "iptable_nat", "iptable_filter", "xt_mark",
    "xt_tcpudp", "ipip", "tun", "dummy", "ip_vs",
];

/// Host packages the guest needs: QEMU (with its virtiofsd), busybox for the initramfs, kmod for
/// depmod and the guest's modprobe, xz to unpack overlay.ko, ipvsadm to drive the guest kernel's
/// IPVS beside xlb (bench --vm, compare-ipvs).
const HOST_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static", "kmod", "xz-utils", "ipvsadm"];

const GUEST_MEMORY_MIB: u32 = 4096;
const GUEST_CPUS: u32 = 2;
/// The guests' connection table size (`XLB_MAX_CONNS`; see `write_stage2`).
const GUEST_MAX_CONNS: u32 = 65_536;

/// One kernel to run: its series (or the exact version asked for) and its full version.
pub struct Kernel {
    pub label: String,
    pub version: String,
}

pub fn default_series() -> Vec<String> {
    SERIES.iter().map(|(s, _)| s.to_string()).collect()
}

/// Installs the host packages the guest needs (idempotent).
pub fn ensure_host_packages() -> anyhow::Result<()> {
    crate::bootstrap::ensure_debian_packages(HOST_PACKAGES)
}

/// `6.1`, `6.12`, or an exact version such as `6.12.118+deb12-cloud-amd64`.
pub fn resolve(label: &str) -> anyhow::Result<Kernel> {
    let exact = label.strip_prefix("linux-image-").unwrap_or(label);
    if exact.ends_with("-cloud-amd64") {
        return Ok(Kernel { label: label.to_string(), version: exact.to_string() });
    }
    let Some(&(_, meta)) = SERIES.iter().find(|(s, _)| *s == label) else {
        bail!(
            "unknown kernel {label:?}: give one of {} or an exact version like 6.12.118+deb12-cloud-amd64",
            default_series().join(", ")
        );
    };
    let version = match resolve_from_apt(label, meta) {
        Ok(v) => v,
        // Offline, or apt cannot tell: a kernel of this series already in the cache will do.
        Err(e) => match newest_cached(label)? {
            Some(v) => {
                eprintln!("vm: {e:#}; using the cached {v}");
                v
            }
            None => return Err(e),
        },
    };
    Ok(Kernel { label: label.to_string(), version })
}

/// The kernel the metapackage's candidate depends on; `apt-get update` when apt does not know
/// the package, and for 6.12 bookworm-backports as a last resort (added idempotently).
fn resolve_from_apt(series: &str, meta: &str) -> anyhow::Result<String> {
    if let Some(v) = candidate_kernel(meta, series)? {
        return Ok(v);
    }
    apt(&["update", "-qq"])?;
    if let Some(v) = candidate_kernel(meta, series)? {
        return Ok(v);
    }
    if series != "6.1" {
        add_backports_source()?;
        apt(&["update", "-qq"])?;
        if let Some(v) = candidate_kernel("linux-image-cloud-amd64/bookworm-backports", series)? {
            return Ok(v);
        }
    }
    bail!("apt knows no {meta} naming a {series} kernel (looked in the apt sources and bookworm-backports)")
}

/// `linux-image-<version>` from the Depends of `apt-cache show` of the candidate, if it is of `series`.
fn candidate_kernel(meta: &str, series: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", meta])
        .output()
        .context("cannot run apt-cache (the kernel matrix needs Debian's apt)")?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("linux-image-{series}.");
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("Depends:"))
        .flat_map(|d| d.split([',', '|']))
        .filter_map(|d| d.split_whitespace().next())
        .find(|p| p.starts_with(&prefix) && p.ends_with("-cloud-amd64"))
        .map(|p| p.trim_start_matches("linux-image-").to_string()))
}

fn add_backports_source() -> anyhow::Result<()> {
    let file = Path::new("/etc/apt/sources.list.d/xlb-bookworm-backports.sources");
    if file.exists() {
        return Ok(());
    }
    eprintln!("vm: adding bookworm-backports to apt's sources ({})", file.display());
    fs::write(
        file,
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .with_context(|| format!("cannot write {}", file.display()))
}

fn vm_cache() -> anyhow::Result<PathBuf> {
    Ok(crate::bootstrap::toolchain_cache().context("neither XLB_TOOLCHAIN_DIR nor HOME is set")?.join("vm"))
}

fn newest_cached(series: &str) -> anyhow::Result<Option<String>> {
    let Ok(entries) = fs::read_dir(vm_cache()?) else { return Ok(None) };
    let prefix = format!("{series}.");
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(".ready").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    found.sort_by_key(|v| version_key(v));
    Ok(found.pop())
}

/// Numeric parts of a kernel version, for ordering 6.12.9 before 6.12.118.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// The unpacked kernel in the cache: `vmlinuz` and `lib/modules/<version>` (depmod run),
/// downloaded and unpacked once.
struct KernelFiles {
    vmlinuz: PathBuf,
    modules: PathBuf,
}

fn fetch_kernel(version: &str) -> anyhow::Result<KernelFiles> {
    let dir = vm_cache()?.join(version);
    let files =
        KernelFiles { vmlinuz: dir.join("vmlinuz"), modules: dir.join("lib/modules").join(version) };
    if dir.join(".ready").is_file() {
        return Ok(files);
    }
    let t0 = Instant::now();
    eprintln!("vm: fetching linux-image-{version} (once; cached in {})", dir.display());
    let _ = fs::remove_dir_all(&dir);
    let staging = vm_cache()?.join(format!("{version}.partial"));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(staging.join("deb")).with_context(|| format!("cannot create {}", staging.display()))?;
    let pkg = format!("linux-image-{version}");
    let download = || Command::new("apt-get").args(["-q", "-o", "APT::Sandbox::User=root", "download", &pkg]).current_dir(staging.join("deb")).status();
    let mut st = download().context("cannot run apt-get download")?;
    if !st.success() {
        apt(&["update", "-qq"])?;
        st = download().context("cannot run apt-get download")?;
    }
    if !st.success() {
        bail!("apt-get download {pkg} failed ({st})");
    }
    let deb = fs::read_dir(staging.join("deb"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {pkg} left no .deb"))?;
    let root = staging.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    fs::create_dir_all(staging.join("lib/modules"))?;
    fs::rename(root.join("boot").join(format!("vmlinuz-{version}")), staging.join("vmlinuz"))
        .with_context(|| format!("{pkg} has no boot/vmlinuz-{version}"))?;
    fs::rename(root.join("lib/modules").join(version), staging.join("lib/modules").join(version))
        .with_context(|| format!("{pkg} has no lib/modules/{version}"))?;
    run(Command::new("depmod").arg("-b").arg(&staging).arg(version))?;
    fs::remove_dir_all(staging.join("deb"))?;
    fs::remove_dir_all(&root)?;
    fs::write(staging.join(".ready"), format!("{pkg}\n"))?;
    fs::rename(&staging, &dir).with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    eprintln!("vm: {pkg} ready ({:.0} s)", t0.elapsed().as_secs_f64());
    Ok(files)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Modules stage 1 needs to reach the host's files, where the kernel has them as modules (6.1 has
/// virtio_pci and virtiofs as modules, 6.12 has them built in; overlay is a module in both).
const STAGE1_MODULES: &[&str] = &["virtio_pci", "virtiofs", "overlay"];

/// The initramfs of stage 1: busybox, the STAGE1_MODULES this kernel has as modules (with their
/// dependencies, in load order), and `vm/init.sh`. An uncompressed newc cpio: the kernel takes it as is.
fn write_initramfs(out: &Path, files: &KernelFiles) -> anyhow::Result<()> {
    let busybox = fs::read("/bin/busybox").context("cannot read /bin/busybox (package busybox-static)")?;
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "mnt", "mnt/host", "mnt/rw", "newroot", "modules"] {
        c.entry(d, 0o040755, 0, b"");
    }
    c.entry("dev/console", 0o020600, (5 << 8) | 1, b"");
    c.entry("bin/busybox", 0o100755, 0, &busybox);
    c.entry("bin/sh", 0o120777, 0, b"busybox");
    for (i, rel) in module_load_order(&files.modules, STAGE1_MODULES)?.iter().enumerate() {
        let data = read_module(&files.modules.join(rel))?;
        c.entry(&format!("modules/{i:02}-{}.ko", module_name(rel)), 0o100644, 0, &data);
    }
    c.entry("init", 0o100755, 0, include_str!("vm/init.sh").as_bytes());
    c.entry("TRAILER!!!", 0, 0, b"");
    fs::write(out, c.buf).with_context(|| format!("cannot write {}", out.display()))
}

/// `kernel/fs/fuse/virtiofs.ko.xz` -> `virtiofs`.
fn module_name(rel: &str) -> &str {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.split(".ko").next().unwrap_or(file)
}

/// Paths (relative to the modules directory) of `wanted` and what they depend on, dependencies
/// first, from modules.dep. A module not listed there is built in (or absent: then stage 1 says so).
fn module_load_order(modules: &Path, wanted: &[&str]) -> anyhow::Result<Vec<String>> {
    let dep_file = modules.join("modules.dep");
    let text = fs::read_to_string(&dep_file).with_context(|| format!("cannot read {}", dep_file.display()))?;
    let deps: BTreeMap<&str, Vec<&str>> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    fn visit<'a>(m: &'a str, deps: &BTreeMap<&'a str, Vec<&'a str>>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, order);
        }
        order.push(m.to_string());
    }
    let mut order = Vec::new();
    for w in wanted {
        if let Some(m) = deps.keys().find(|m| module_name(m).replace('-', "_") == *w) {
            visit(m, &deps, &mut order);
        }
    }
    Ok(order)
}

/// A module file, unpacked if xz-compressed (Debian's 6.12 packages are).
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let o = Command::new("xz").arg("-dc").arg(path).output().context("cannot run xz")?;
        if !o.status.success() {
            bail!("cannot unpack {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
        }
        return Ok(o.stdout);
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A newc ("070701") cpio archive in memory.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// `rdev` is (major << 8) | minor, for device nodes.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev >> 8, rdev & 0xff, name.len() as u32 + 1, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// Where a guest run keeps its files: removed when the run ends, however it ends. The host's
/// processes (virtiofsd, qemu) are killed if still running.
struct RunDir {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        for c in &mut self.children {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What one test binary did in a guest.
#[derive(Debug, Default)]
pub struct BinaryResult {
    pub exit: Option<i32>,
    pub secs: u64,
    pub passed: u32,
    pub failed: Vec<String>,
    pub ignored: u32,
}

pub struct KernelReport {
    pub kernel: Kernel,
    pub boot_secs: Option<f64>,
    pub total_secs: f64,
    pub binaries: BTreeMap<String, BinaryResult>,
    /// Why the run as a whole failed (no boot, timeout, ...), besides failed tests.
    pub error: Option<String>,
    pub notes: Vec<String>,
    pub log: PathBuf,
    /// Everything the guest's binaries printed (its second serial port), markers included.
    pub output: String,
}

impl KernelReport {
    /// A report with nothing run yet; the guest's full output goes to `log`.
    fn new(kernel: Kernel, log: PathBuf) -> KernelReport {
        KernelReport { kernel, boot_secs: None, total_secs: 0.0, binaries: BTreeMap::new(), error: None, notes: Vec::new(), log, output: String::new() }
    }

    /// The counts of every test binary run in this guest.
    pub fn tally(&self) -> crate::tally::Tally {
        let mut t = crate::tally::Tally::default();
        for b in self.binaries.values() {
            t.add(crate::tally::Tally { passed: b.passed as u64, failed: b.failed.len() as u64, skipped: b.ignored as u64 });
        }
        t
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.binaries.values().all(|b| b.exit == Some(0))
    }

    pub fn print(&self, order: &[TestBinary]) {
        let boot = self.boot_secs.map_or("-".to_string(), |b| format!("{b:.1} s"));
        println!(
            "== kernel {} ({}): {}; boot {boot}, total {:.0} s; log {}",
            self.kernel.label,
            self.kernel.version,
            if self.ok() { "PASS" } else { "FAIL" },
            self.total_secs,
            self.log.display()
        );
        for n in &self.notes {
            println!("   note: {n}");
        }
        for t in order {
            match self.binaries.get(&t.name) {
                None => println!("   {:<16} NOT RUN", t.name),
                Some(b) => {
                    let verdict = match b.exit {
                        Some(0) => "ok".to_string(),
                        Some(124) | Some(137) => "TIMED OUT".to_string(),
                        Some(c) => format!("FAILED (exit {c})"),
                        None => "DID NOT FINISH".to_string(),
                    };
                    println!(
                        "   {:<16} {verdict:<16} {} passed, {} failed, {} ignored ({} s)",
                        t.name,
                        b.passed,
                        b.failed.len(),
                        b.ignored,
                        b.secs
                    );
                    if !t.args.is_empty() {
                        println!("   {:<16}   with: {}", "", t.args.join(" "));
                    }
                    for f in &b.failed {
                        println!("   {:<16}   failed: {f}", "");
                    }
                }
            }
        }
        if let Some(e) = &self.error {
            println!("   error: {e}");
        }
    }
}

/// Boots `kernel` and runs `tests` in it, each with `test_args`. Never fails for failing tests:
/// they are in the report; an error here means the guest could not be set up at all.
pub fn run_kernel(kernel: Kernel, tests: &[TestBinary], test_args: &[String], target: &Path) -> anyhow::Result<KernelReport> {
    let t0 = Instant::now();
    let files = fetch_kernel(&kernel.version)?;
    let virtiofsd = find_virtiofsd()?;
    let logs = target.join("xlb-vm");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let run_dir = logs.join(format!("run-{}", kernel.version));
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let mut guard = RunDir { dir: run_dir.clone(), children: Vec::new() };

    let initramfs = run_dir.join("initramfs.cpio");
    write_initramfs(&initramfs, &files)?;
    let stage2 = run_dir.join("guest.sh");
    write_stage2(&stage2, &files, tests, test_args, &[&run_dir, target, &files.modules])?;

    let socket = run_dir.join("virtiofs.sock");
    // stdout and stderr of a host process share one log file.
    let log_of = |name: &str| -> anyhow::Result<(fs::File, fs::File)> {
        let p = run_dir.join(name);
        let f = fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok((f.try_clone()?, f))
    };
    // The C virtiofsd of QEMU 7.2: sandbox=chroot, as its default (a pivot_root into the shared
    // directory) cannot pivot into "/". The guest mounts the share read-only. cache=always: every
    // FUSE round trip is slow under TCG, and with the default cache=auto python3 took 4 s to start
    // (the labs start six at once and give them 10 s); the guest lives only for the run.
    let (out, err) = log_of("virtiofsd.log")?;
    let fsd = Command::new(&virtiofsd)
        .arg(format!("--socket-path={}", socket.display()))
        .args(["-o", "source=/", "-o", "sandbox=chroot", "-o", "cache=always", "-o", "log_level=warn"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", virtiofsd.display()))?;
    guard.children.push(fsd);
    let wait_socket = Instant::now();
    while !socket.exists() {
        if wait_socket.elapsed() > Duration::from_secs(10) {
            bail!("virtiofsd did not create {} in 10 s (see {})", socket.display(), run_dir.join("virtiofsd.log").display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let results = run_dir.join("results");
    let console = run_dir.join("console.log");
    let mem = format!("{GUEST_MEMORY_MIB}M");
    let (out, err) = log_of("qemu.log")?;
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", &GUEST_CPUS.to_string(), "-m", &mem])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
        // vhost-user (virtiofs) needs the guest's memory shared with virtiofsd.
        .args(["-object", &format!("memory-backend-memfd,id=mem,size={mem},share=on"), "-numa", "node,memdev=mem"])
        .args(["-chardev", &format!("socket,id=vfs,path={}", socket.display())])
        .args(["-device", "vhost-user-fs-pci,chardev=vfs,tag=hostroot"])
        .args(["-serial", &format!("file:{}", console.display())])
        .args(["-serial", &format!("file:{}", results.display())])
        .arg("-kernel")
        .arg(&files.vmlinuz)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", &format!("console=ttyS0 panic=-1 loglevel=4 xlb.stage2={}", stage2.display())])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
    guard.children.push(qemu);
    let boot_start = Instant::now();

    let timeout = guest_timeout();
    let mut reader = LineReader::new(&results);
    let kernel_version = kernel.version.clone();
    let mut report = KernelReport::new(kernel, logs.join(format!("{}.log", kernel_version)));
    let mut output = String::new();
    let mut current: Option<String> = None;
    let mut done = false;
    let tag = report.kernel.label.clone();
    loop {
        let exited = guard.children[1].try_wait().context("cannot wait for qemu")?;
        for line in reader.read_lines() {
            output.push_str(&line);
            output.push('\n');
            parse_line(&line, &tag, &mut report, &mut current, &mut done, boot_start);
        }
        if exited.is_some() || done {
            break;
        }
        if boot_start.elapsed() > timeout {
            report.error = Some(format!("the guest did not finish in {} s (XLB_VM_TIMEOUT): killed", timeout.as_secs()));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // After "done" the guest powers off by itself; give it a moment, then the guard kills it.
    let stop = Instant::now();
    while done && stop.elapsed() < Duration::from_secs(10) {
        if guard.children[1].try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for line in reader.read_lines() {
        output.push_str(&line);
        output.push('\n');
        parse_line(&line, &tag, &mut report, &mut current, &mut done, boot_start);
    }
    if report.error.is_none() && !done {
        report.error = Some(match report.boot_secs {
            None => "the guest stopped before stage 2 came up (see the console log)".to_string(),
            Some(_) => "the guest stopped before it reported the end of its run (see the console log)".to_string(),
        });
    }
    if let Some(name) = current {
        report.binaries.entry(name).or_default();
    }
    report.total_secs = t0.elapsed().as_secs_f64();
    // Keep the guest's output and console as the run's logs; everything else goes with the guard.
    let console_text = fs::read_to_string(&console).unwrap_or_default();
    let qemu_text = fs::read_to_string(run_dir.join("qemu.log")).unwrap_or_default();
    let mut log = fs::File::create(&report.log).with_context(|| format!("cannot write {}", report.log.display()))?;
    write!(log, "{output}\n==== console (ttyS0) ====\n{console_text}\n==== qemu ====\n{qemu_text}")?;
    report.output = output;
    drop(guard);
    Ok(report)
}

/// The guest's marker lines (`@@xlb up|start|end|done`), which the report parses.
const MARKER: &str = "@@xlb ";

impl KernelReport {
    /// What the guest's binaries printed, without the markers.
    pub fn printed(&self) -> impl Iterator<Item = &str> {
        self.output.lines().filter(|l| !l.starts_with(MARKER))
    }
}

/// Applies one line of the guest's serial output to the report (markers and libtest lines).
fn parse_line(line: &str, tag: &str, r: &mut KernelReport, current: &mut Option<String>, done: &mut bool, boot_start: Instant) {
    if let Some(m) = line.strip_prefix(MARKER) {
        let mut w = m.split_whitespace();
        match w.next() {
            Some("up") => {
                let secs = boot_start.elapsed().as_secs_f64();
                r.boot_secs = Some(secs);
                eprintln!("vm[{tag}]: guest up in {secs:.1} s");
            }
            Some("start") => {
                if let Some(n) = w.next() {
                    eprintln!("vm[{tag}]: running {n}");
                    r.binaries.insert(n.to_string(), BinaryResult::default());
                    *current = Some(n.to_string());
                }
            }
            Some("end") => {
                if let (Some(n), Some(rc), Some(secs)) = (w.next(), w.next(), w.next()) {
                    let b = r.binaries.entry(n.to_string()).or_default();
                    b.exit = rc.parse().ok();
                    b.secs = secs.parse().unwrap_or(0);
                    eprintln!(
                        "vm[{tag}]: {n}: {} ({} passed, {} failed) in {} s",
                        if b.exit == Some(0) { "ok" } else { "FAILED" },
                        b.passed,
                        b.failed.len(),
                        b.secs
                    );
                    *current = None;
                }
            }
            Some("note") => r.notes.push(m["note".len()..].trim().to_string()),
            Some("error") => r.error = Some(m["error".len()..].trim().to_string()),
            Some("done") => *done = true,
            _ => {}
        }
        return;
    }
    // libtest: "test NAME ... ok|FAILED|ignored"
    let (Some(name), Some(b)) = (current.as_ref(), line.strip_prefix("test ")) else { return };
    let Some((test, verdict)) = b.rsplit_once(" ... ") else { return };
    let Some(res) = r.binaries.get_mut(name) else { return };
    match verdict.trim() {
        "ok" => res.passed += 1,
        "FAILED" => res.failed.push(test.to_string()),
        v if v.starts_with("ignored") => res.ignored += 1,
        _ => {}
    }
}

/// Whether the matrix runs the fuzzer too (XLB_VM_FUZZ=1): it needs longer time limits.
pub fn with_fuzz() -> bool {
    std::env::var_os("XLB_VM_FUZZ").is_some_and(|v| v == "1")
}

/// Whole-guest limit: `XLB_VM_TIMEOUT` seconds, else 25 minutes (35 with the fuzzer): a guest
/// alone takes 11 to 23 minutes under TCG by machine (about twice that beside another, with
/// `XLB_VM_PARALLEL=1`: raise it then), and two hung guests plus the host suite stay under CI's
/// 90 minutes.
fn guest_timeout() -> Duration {
    let default = if with_fuzz() { 2100 } else { 1500 };
    Duration::from_secs(std::env::var("XLB_VM_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(default))
}

/// Limit of one test binary in the guest: `XLB_VM_TEST_TIMEOUT` seconds, else 10 minutes (the
/// longest, dr_packets, took 2 to 5 minutes under TCG by machine; the fuzzer about 6, so 15 with
/// it).
fn test_timeout() -> u64 {
    let default = if with_fuzz() { 900 } else { 600 };
    std::env::var("XLB_VM_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Writes stage 2: the variables, `vm/guest.sh`, one run_test line per binary, the end.
/// `keep_visible` are host paths the guest needs: no tmpfs is mounted over them.
fn write_stage2(
    out: &Path,
    files: &KernelFiles,
    tests: &[TestBinary],
    test_args: &[String],
    keep_visible: &[&Path],
) -> anyhow::Result<()> {
    let tmpfs: Vec<&str> = ["/tmp", "/var/tmp", "/run"]
        .into_iter()
        .filter(|d| !keep_visible.iter().any(|p| p.starts_with(d)))
        .collect();
    if !tmpfs.contains(&"/run") {
        bail!("the build or the kernel cache is under /run: the guest needs a fresh /run (for /run/netns)");
    }
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("XLB_TMPFS={}\n", sh_quote(&tmpfs.join(" ")));
    s += &format!("XLB_MODULES_DIR={}\n", sh_quote(&files.modules.to_string_lossy()));
    s += &format!("XLB_LOAD={}\n", sh_quote(&LOAD_MODULES.join(" ")));
    s += &format!("XLB_TEST_TIMEOUT={}\n", test_timeout());
    // A smaller connection table than lbd's default (1M): 6.1 preallocates both tables when a
    // test creates its pins, 3.5 s each time under TCG; no matrix test fills 64K entries (the
    // fuzzer, which does, is skipped there). The caller's XLB_MAX_CONNS, exported below, wins.
    s += &format!("export XLB_MAX_CONNS={GUEST_MAX_CONNS}\n");
    // Switches of the tests and the data plane (XLB_FEATURES_OFF, XLB_FUZZ_FRAMES, ...) go along.
    for (k, v) in std::env::vars() {
        if (k.starts_with("XLB_") && k != "XLB_TOOLCHAIN_DIR" && !k.starts_with("XLB_VM_")) || k == "RUST_LOG" {
            s += &format!("export {k}={}\n", sh_quote(&v));
        }
    }
    s += include_str!("vm/guest.sh");
    for t in tests {
        let mut line = format!("run_test {} {} {}", sh_quote(&t.name), sh_quote(&t.cwd.to_string_lossy()), sh_quote(&t.path.to_string_lossy()));
        for a in t.args.iter().chain(test_args) {
            line += " ";
            line += &sh_quote(a);
        }
        s += &line;
        s.push('\n');
    }
    s += "note \"modules loaded: $(lsmod | awk 'NR>1{print $1}' | sort | tr '\\n' ' ')\"\nshutdown\n";
    fs::write(out, s).with_context(|| format!("cannot write {}", out.display()))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn find_virtiofsd() -> anyhow::Result<PathBuf> {
    ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("no virtiofsd (QEMU's, /usr/lib/qemu/virtiofsd of Debian 12's qemu-system-common)")
}

/// Reads whole lines appended to a file by another process (the guest's serial port).
struct LineReader {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LineReader {
    fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), offset: 0, partial: Vec::new() }
    }

    fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut f) = fs::File::open(&self.path) else { return Vec::new() };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else { return Vec::new() };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_versions() {
        assert_eq!(module_name("kernel/fs/fuse/virtiofs.ko.xz"), "virtiofs");
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko"), "overlay");
        assert!(version_key("6.12.9+deb12-cloud-amd64") < version_key("6.12.118+deb12-cloud-amd64"));
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut c = Cpio::default();
        c.entry("init", 0o100755, 0, b"#!/bin/sh\n");
        assert_eq!(&c.buf[..6], b"070701");
        assert_eq!(c.buf.len() % 4, 0);
    }

    #[test]
    fn guest_output_is_counted_per_binary() {
        let kernel = Kernel { label: "6.12".into(), version: "6.12.1+deb12-cloud-amd64".into() };
        let mut r = KernelReport::new(kernel, PathBuf::new());
        let (mut current, mut done) = (None, false);
        let lines = [
            "@@xlb up 7.5",
            "@@xlb start lab_methods",
            "test dr_lab_all_protocols ... ok",
            "test nat_lab_two_interfaces_and_port_mapping ... FAILED",
            "test slow ... ignored, needs a NIC",
            "@@xlb end lab_methods 101 53",
            "@@xlb done",
        ];
        for l in lines {
            parse_line(l, "6.12", &mut r, &mut current, &mut done, Instant::now());
        }
        let b = &r.binaries["lab_methods"];
        assert_eq!((b.exit, b.secs, b.passed, b.ignored), (Some(101), 53, 1, 1));
        assert_eq!(b.failed, ["nat_lab_two_interfaces_and_port_mapping"]);
        assert!(done && r.boot_secs.is_some() && !r.ok());
    }
}
