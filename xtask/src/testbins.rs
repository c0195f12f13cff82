//! Test binaries of the workspace, as cargo built them, so they can run without cargo: in the
//! kernel matrix's guests, and on the host with the forced fallbacks.
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// Test binaries (tests/tests/*.rs) the kernel matrix runs in every guest: the packet fixtures
/// (IPv4, IPv6, tunnels), the verifier's budget, and the DR, TUN, NAT and local-real-server labs,
/// IPv4 and IPv6, with every tunnel type; and the sync daemon against kernel IPVS's (both ways).
pub const MATRIX: &[&str] = &[
    "fixtures", "v6_packets", "tunnel_packets", "dr_packets", "hostile_packets", "verifier_budget", "lab_dr", "lab_methods",
    "lbd_attach", "lab_v6", "lab_tunnels", "lab_local", "sync_interop",
];

/// Tests the matrix leaves out unless XLB_VM_FUZZ=1: the fuzzer's million frames take 6 minutes
/// per kernel under TCG (the host suite runs it; fewer frames would not fill the connection table
/// it checks).
pub const MATRIX_SKIP: &[(&str, &str)] = &[("hostile_packets", "fuzz_frames_never_forward_malformed_input")];

/// Run once more on the host with every optional kernel feature forced off (XLB_FEATURES_OFF=all).
pub const FEATURES_OFF: &[&str] = &[
    "fixtures", "v6_packets", "tunnel_packets", "dr_packets", "lab_dr", "lab_fwmark", "lab_methods", "lab_v6", "lab_tunnels",
    "lab_local",
];

#[derive(Clone)]
pub struct TestBinary {
    pub name: String,
    pub path: PathBuf,
    /// The package's directory: cargo runs a test binary there.
    pub cwd: PathBuf,
    /// libtest arguments of this binary's own (e.g. `--skip NAME`).
    pub args: Vec<String>,
}

/// Tests the matrix always leaves out, to keep a guest's run short (a lab takes about a minute
/// under TCG, where python's servers start slowly): host-side checks of a lab's plumbing with no
/// xlb attached, and the IPv6 and tunnel labs whose kernel-facing paths another lab of the guest
/// already takes (schedulers and persistence are the same code as DR6's; GUE6 and GRE4 send as
/// GRE6 and GUE4 do; the mixed families' programs are loaded and verified by every attach).
/// The guests run DR6, NAT66, TUN6 (ip6ip6), GUE4 and GRE6.
pub const MATRIX_HOST_ONLY: &[(&str, &str)] = &[
    ("lab_v6", "dual_stack_plumbing_without_xlb"),
    ("lab_v6", "dr6_schedulers_and_persistence"),
    ("lab_v6", "fwmark6_both_ports_stick_to_one_server"),
    ("lab_tunnels", "gue6_without_checksum"),
    ("lab_tunnels", "gre4_without_checksum"),
    ("lab_tunnels", "ipv6_service_over_ipv4_real_servers"),
    ("lab_tunnels", "ipv4_service_over_ipv6_real_servers"),
];

/// The matrix's test binaries (`only` when not empty: `--only`), with MATRIX_HOST_ONLY and
/// MATRIX_SKIP applied.
pub fn matrix(only: &[String]) -> anyhow::Result<Vec<TestBinary>> {
    // The comparison with IPVS is a bin target, added per kernel by the caller.
    let names: Vec<&str> = if only.is_empty() {
        MATRIX.to_vec()
    } else {
        only.iter().map(String::as_str).filter(|n| *n != COMPARE_IPVS).collect()
    };
    let mut tests = if names.is_empty() { Vec::new() } else { build(&names)? };
    // The verifier's counts per program are the matrix's report: shown, not captured.
    for t in tests.iter_mut().filter(|t| t.name == "verifier_budget") {
        t.args.push("--nocapture".to_string());
    }
    for t in &mut tests {
        for (_, name) in MATRIX_HOST_ONLY.iter().filter(|(bin, _)| *bin == t.name) {
            t.args.extend(["--skip".to_string(), name.to_string()]);
        }
    }
    if !crate::vm::with_fuzz() {
        for t in &mut tests {
            for (_, name) in MATRIX_SKIP.iter().filter(|(bin, _)| *bin == t.name) {
                t.args.extend(["--skip".to_string(), name.to_string()]);
            }
        }
    }
    Ok(tests)
}

/// Builds the named integration-test binaries of xlb-tests (`cargo test --no-run`) and returns
/// them in the order asked.
pub fn build(names: &[&str]) -> anyhow::Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--no-run", "--message-format=json-render-diagnostics", "-p", "xlb-tests"])
        .current_dir(crate::workspace_root()?);
    for n in names {
        cmd.args(["--test", n]);
    }
    crate::bootstrap::add_toolchain_to_path(&mut cmd)?;
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed ({})", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let (Some(name), Some(exe), Some(manifest)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        if msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test")) {
            let cwd = PathBuf::from(manifest).parent().map(PathBuf::from).unwrap_or_default();
            found.push(TestBinary { name: name.to_string(), path: PathBuf::from(exe), cwd, args: Vec::new() });
        }
    }
    names
        .iter()
        .map(|n| {
            let i = found.iter().position(|t| t.name == *n).with_context(|| format!("cargo built no test binary {n}"))?;
            Ok(found.swap_remove(i))
        })
        .collect()
}

/// The binary of `xlb-compare-ipvs` as `cargo build --bins` left it (run with `args`), as a
/// test binary the guests can run: it prints libtest-style lines, one per scenario.
pub fn compare_runner(target: &std::path::Path, args: &[String]) -> anyhow::Result<TestBinary> {
    let path = target.join("debug/xlb-compare-ipvs");
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(TestBinary { name: COMPARE_IPVS.to_string(), path, cwd: crate::workspace_root()?.join("tests"), args: args.to_vec() })
}

/// The comparison's name in the matrix (for `--only`) and in its reports.
pub const COMPARE_IPVS: &str = "compare_ipvs";

/// The scenarios the matrix's guest of kernel `label` (a series or an exact version) runs, given
/// `--only`: the whole suite takes 5 to 7 minutes under TCG, longer than a guest's per-binary
/// limit, so the 6.1 guest runs the first half of the scenarios and the 6.12 guest the second
/// (`cargo xtask compare-ipvs` runs every scenario on both). None: no comparison there.
pub fn compare_in_matrix(label: &str, only: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    if !(only.is_empty() || only.iter().any(|o| o == COMPARE_IPVS)) {
        return Ok(None);
    }
    let of = |series: &str| label == series || label.starts_with(&format!("{series}."));
    let dir = crate::workspace_root()?.join("tests/compare/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".scn").map(str::to_string))
        .collect();
    names.sort();
    let half = names.len().div_ceil(2);
    Ok(if of("6.12") {
        Some(names.split_off(half))
    } else if of("6.1") {
        names.truncate(half);
        Some(names)
    } else {
        None
    })
}

/// The tests' check for kernel IPVS, shared by source (xtask does not depend on xlb-tests).
#[path = "../../tests/src/ipvs_host.rs"]
#[allow(dead_code)]
mod ipvs_host;

/// Whether this kernel has IPVS (`modprobe ip_vs`, then /proc/net/ip_vs).
pub fn host_has_ipvs() -> bool {
    ipvs_host::kernel_has_ipvs()
}
