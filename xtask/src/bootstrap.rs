//! Installs what the build and the labs need, fast when already done:
//! rust-src (for `-Z build-std=core`), bpf-linker built against rustc's own libLLVM (no LLVM of
//! that version exists in Debian; recipe in ../shared/TOOLCHAIN.md), and Debian packages.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

include!("toolchain_paths.rs");

/// Debian packages the labs and tests use.
const PACKAGES: &[&str] = &[
    "iproute2",   // ip netns, veth, bridge
    "ethtool",    // checksum offload off on lab veths
    "nftables",   // client-side packet counters in labs
    "tcpdump",    // captures in labs
    "curl",       // HTTP client in labs
    "python3",    // HTTP and UDP servers in labs
    "util-linux", // nsenter, unshare (lbd_systemd's private mount namespace for journald)
    "systemd",    // systemd-journald, journalctl, systemd-analyze verify (lbd_systemd; none runs as PID 1)
    "procps",     // sysctl
    "bpftool",    // inspecting loaded programs and maps
    "iptables",   // the seeds' mangle MARK rules for fwmark services
    "openssl",    // the HTTPS check lab's CA and server certificates
    "keepalived", // VRRP between the failover drill's directors (run by the test, never as a service)
    "prometheus", // promtool's lint of /metrics and a Prometheus server scraping lbd (run by the test)
    "dnsmasq-base", // the DNS server the DNS checks query in check_protocols (run by the test, no service)
];

pub fn run() -> anyhow::Result<()> {
    let vv = output(Command::new(rustc()).arg("-vV"))?;
    let (release, llvm_major) = rustc_release_and_llvm(&vv).context("cannot read rustc's version and LLVM version")?;
    let sysroot = PathBuf::from(output(Command::new(rustc()).args(["--print", "sysroot"]))?.trim());
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot, &release, llvm_major)?;
    ensure_packages()?;
    Ok(())
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").is_file() {
        return Ok(());
    }
    add_component("rust-src")
}

/// Installs rustup component `name` (e.g. clippy) unless the toolchain already has it.
pub fn ensure_component(name: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    if installed.lines().any(|l| l == name || l.starts_with(&format!("{name}-"))) {
        return Ok(());
    }
    add_component(name)
}

fn add_component(name: &str) -> anyhow::Result<()> {
    eprintln!("bootstrap: installing {name}");
    let st = Command::new("rustup").args(["component", "add", name]).status().context("cannot run rustup")?;
    if !st.success() {
        bail!("`rustup component add {name}` failed");
    }
    Ok(())
}

/// rustc ships its LLVM as a shared library (libLLVM.so.<ver>-rust-<release>); bpf-linker is
/// built against it so both read the same bitcode.
fn rustc_libllvm(sysroot: &Path) -> anyhow::Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("cannot read {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libLLVM.so.")))
        .collect();
    found.sort();
    found.pop().with_context(|| {
        format!("no libLLVM.so.* in {}: this toolchain does not ship LLVM as a shared library", lib.display())
    })
}

pub fn bpf_linker_bin() -> anyhow::Result<PathBuf> {
    let vv = output(Command::new(rustc()).arg("-vV"))?;
    let (release, _) = rustc_release_and_llvm(&vv).context("cannot read rustc's version")?;
    let cache = toolchain_cache().context("neither XLB_TOOLCHAIN_DIR nor HOME is set")?;
    Ok(bpf_linker_root(&cache, &release).join("bin/bpf-linker"))
}

fn ensure_bpf_linker(sysroot: &Path, release: &str, llvm_major: u32) -> anyhow::Result<()> {
    let cache = toolchain_cache().context("neither XLB_TOOLCHAIN_DIR nor HOME is set")?;
    let root = bpf_linker_root(&cache, release);
    let bin = root.join("bin/bpf-linker");
    if bin.is_file() && Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    let libllvm = rustc_libllvm(sysroot)?;
    // LLVM_PREFIX/lib must hold libLLVM.so (the link name) and the versioned file; the built
    // binary's rpath points there, so this directory stays.
    let prefix = cache.join(format!("llvm-rust-{release}"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let file_name = libllvm.file_name().context("libLLVM has no file name")?;
    for link in [prefix.join("lib/libLLVM.so"), prefix.join("lib").join(file_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link).with_context(|| format!("cannot link {}", link.display()))?;
    }
    eprintln!(
        "bootstrap: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute, once)",
        libllvm.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let st = Command::new(cargo)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features", "--features"])
        .arg(format!("llvm-{llvm_major}"))
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("cannot run cargo install")?;
    if !st.success() || !bin.is_file() {
        bail!(
            "building bpf-linker {BPF_LINKER_VERSION} with feature llvm-{llvm_major} against rustc's libLLVM ({}) \
             failed: the recipe of ../shared/TOOLCHAIN.md no longer works with this toolchain (rustc {release}). \
             Check which bpf-linker release supports LLVM {llvm_major}.",
            libllvm.display()
        );
    }
    Ok(())
}

/// Puts the cached bpf-linker first on the PATH of `cmd`.
pub fn add_toolchain_to_path(cmd: &mut Command) -> anyhow::Result<()> {
    let bin = bpf_linker_bin()?;
    let dir = bin.parent().context("bpf-linker has no directory")?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?);
    Ok(())
}

fn ensure_packages() -> anyhow::Result<()> {
    ensure_debian_packages(PACKAGES)
}

/// `apt-get ARGS`, non-interactive (as root).
pub fn apt(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get (Debian packages are installed with it, as root)")?;
    if !st.success() {
        bail!("apt-get {} failed ({st})", args.join(" "));
    }
    Ok(())
}

/// Installs those of `packages` that are not installed (apt-get, as root).
pub fn ensure_debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("bootstrap: installing Debian packages: {}", missing.join(" "));
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}
