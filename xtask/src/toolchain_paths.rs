// Where the bootstrap keeps bpf-linker. Shared, via include!, by xtask (which builds it) and
// lb-user/build.rs (which uses it), so both agree on one rule.

/// bpf-linker release the recipe builds (the last one that builds against LLVM 22 on rustc 1.95).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Cache root: `$XLB_TOOLCHAIN_DIR`, else `$HOME/.cache/xlb`.
pub fn toolchain_cache() -> Option<std::path::PathBuf> {
    std::env::var_os("XLB_TOOLCHAIN_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/xlb")))
}

/// Install root of the bpf-linker built against the libLLVM of rustc `release` (e.g. "1.95.0").
pub fn bpf_linker_root(cache: &std::path::Path, release: &str) -> std::path::PathBuf {
    cache.join(format!("bpf-linker-{BPF_LINKER_VERSION}-rust-{release}"))
}

/// `release:` of `rustc -vV` output, and the LLVM major version.
pub fn rustc_release_and_llvm(verbose_version: &str) -> Option<(String, u32)> {
    let field = |name: &str| {
        verbose_version.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let release = field("release:")?;
    let llvm = field("LLVM version:")?;
    let major = llvm.split('.').next()?.parse().ok()?;
    Some((release, major))
}
