//! `cargo xtask`: set-up and project tasks. Everything a fresh machine needs is installed here.
//!
//! - `bootstrap`: rust-src, bpf-linker built against rustc's own libLLVM (cached), the Debian
//!   packages the labs use. Idempotent; a second run takes well under a second.
//! - `build`: bootstrap, then `cargo build` (the eBPF object is built by lb-user's build script).
//! - `test`: build, then every test (unit, packet-level, lab) on the host, the fixtures and labs
//!   again with every optional kernel feature forced off, then the kernel matrix: the packet
//!   fixtures, verifier tests and labs inside Debian's 6.1 and 6.12 cloud kernels under QEMU
//!   (`vm.rs`). `--host-only` skips the matrix; `--kernel V` runs only the matrix, for V;
//!   `--only NAME` (repeatable) narrows every run to those test binaries, e.g.
//!   `cargo xtask test --kernel 6.12 --only lab_v6`.
//! - `demo`: build, then the DR demo lab (`--mode` picks another method, `dr6` etc. over IPv6).
//! - `compare-ipvs [--kernel V]... [SCENARIO...]`: the scenarios of tests/compare/scenarios run
//!   through kernel IPVS and through xlb in the same kernel (`xlb-compare-ipvs`), every difference
//!   reported: natively when this kernel has IPVS, else in the matrix's guests (6.1 and 6.12).
//! - `bench [--quick]`: release build, then the benchmark (`xlb-bench`): report in
//!   `target/bench/report.md`, plot in `target/bench/sched_cost.svg`. `bench --vm [--kernel V]`:
//!   its end-to-end section (xlb, kernel IPVS, nftables) inside a Debian kernel guest under QEMU
//!   TCG (default 6.12): report in `target/bench/vm-<kernel>/report.md`.
mod bootstrap;
mod tally;
mod testbins;
mod vm;

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Bootstrap,
    /// Bootstrap and build the workspace (eBPF object and binaries).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit, packet-level (BPF_PROG_TEST_RUN) and namespace labs on the host,
    /// the fixtures and labs with kernel features forced off, then the kernel matrix (6.1, 6.12
    /// under QEMU). Needs root.
    Test {
        /// Only the host runs: no kernel matrix.
        #[arg(long, conflicts_with = "kernel")]
        host_only: bool,
        /// Only the kernel matrix, for this kernel: 6.1, 6.12, or an exact Debian cloud kernel
        /// version (e.g. 6.12.118+deb12-cloud-amd64). Repeatable.
        #[arg(long, value_name = "VERSION")]
        kernel: Vec<String>,
        /// Only these test binaries (tests/tests/NAME.rs; repeatable): the host suite runs
        /// `cargo test -p xlb-tests --test NAME`, the forced-fallback run and the kernel matrix
        /// run them instead of their own lists (the fallback run: those of its list named here).
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Extra arguments for the host's `cargo test` (e.g. a test name filter); with --kernel,
        /// libtest arguments for each test binary in the guest.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The demo lab: the seed's setup, six requests through the VIP, the listing. Needs root.
    Demo {
        /// Forwarding method of the lab: dr (the seed's DR example), tun, nat, bridge; dr6, tun6
        /// and nat6 balance an IPv6 service in the dual-stack lab.
        #[arg(long, default_value = "dr", value_parser = ["dr", "tun", "nat", "bridge", "dr6", "tun6", "nat6"])]
        mode: String,
    },
    /// Compare xlb with kernel IPVS: the scenarios (tests/compare/scenarios/*.scn) run through both
    /// in the same kernel, natively when this kernel has IPVS, else in the kernel matrix's guests.
    /// Needs root.
    CompareIpvs {
        /// Run in the guest of this kernel (6.1, 6.12 or an exact version; repeatable), even when
        /// this kernel has IPVS. Default without IPVS here: 6.1 and 6.12.
        #[arg(long, value_name = "VERSION")]
        kernel: Vec<String>,
        /// Scenario names (file stems); default all.
        scenarios: Vec<String>,
    },
    /// Benchmarks against their baselines in one run: per-packet cost, scheduling cost, forwarding
    /// rate, control plane, memory. Writes target/bench/report.md and sched_cost.svg. Needs root.
    Bench {
        /// A small version (under 2 minutes).
        #[arg(long, conflicts_with = "vm")]
        quick: bool,
        /// Only the end-to-end section (xlb, kernel IPVS, nftables), inside a Debian cloud kernel
        /// under QEMU TCG, for kernels without IPVS: emulated, so ratios are rough and absolute
        /// figures meaningless. Report in target/bench/vm-<kernel>/report.md.
        #[arg(long)]
        vm: bool,
        /// With --vm: the guest's kernel, 6.1, 6.12 (the default) or an exact Debian cloud kernel
        /// version. Repeatable.
        #[arg(long, value_name = "VERSION", requires = "vm")]
        kernel: Vec<String>,
    },
    /// Runs one command inside a kernel of the matrix (as root, the host's files read-only, a
    /// fresh /tmp) and prints what it printed: for looking at another kernel by hand, e.g.
    /// `cargo xtask vm-run --kernel 6.1 -- ipvsadm -Ln`.
    VmRun {
        /// 6.1, 6.12 or an exact Debian cloud kernel version.
        #[arg(long, default_value = "6.12")]
        kernel: String,
        /// The command and its arguments (an absolute path, or a name on the guest's PATH).
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Bootstrap => bootstrap::run(),
        Cmd::Build { release } => {
            bootstrap::run()?;
            build(release)
        }
        Cmd::Test { host_only, kernel, only, args } => test(host_only, kernel, &only, args),
        Cmd::Demo { mode } => {
            need_root("the demo loads BPF programs and builds network namespaces")?;
            bootstrap::run()?;
            build(false)?;
            let lab = workspace_root()?.join("target/debug/xlb-lab");
            let status = Command::new(&lab).args(["demo", "--mode", &mode]).status().with_context(|| format!("cannot run {}", lab.display()))?;
            if !status.success() {
                bail!("the demo failed ({status})");
            }
            Ok(())
        }
        Cmd::Bench { quick, vm, kernel } => bench(quick, vm, kernel),
        Cmd::VmRun { kernel, cmd } => vm_run(&kernel, &cmd),
        Cmd::CompareIpvs { kernel, scenarios } => compare_ipvs(kernel, scenarios),
    }
}

fn vm_run(kernel: &str, cmd: &[String]) -> anyhow::Result<()> {
    need_root("the guest's virtiofsd shares the host's root filesystem")?;
    vm::ensure_host_packages()?;
    let (prog, args) = cmd.split_first().context("no command")?;
    let path = which(prog)?;
    let t = testbins::TestBinary { name: "vm-run".into(), path, cwd: std::env::current_dir()?, args: args.to_vec() };
    let report = vm::run_kernel(vm::resolve(kernel)?, &[t], &[], &target_dir()?)?;
    for line in report.printed() {
        println!("{line}");
    }
    let rc = report.binaries.get("vm-run").and_then(|b| b.exit);
    eprintln!("vm-run: kernel {} exit {rc:?}; log {}", report.kernel.version, report.log.display());
    if let Some(e) = report.error {
        bail!("{e}");
    }
    if rc != Some(0) {
        bail!("the command exited with {rc:?}");
    }
    Ok(())
}

/// The guest's limit for the comparison's run (`cargo xtask compare-ipvs`): the suite takes
/// about 5 minutes under TCG.
const COMPARE_TIMEOUT_SECS: u64 = 720;

/// `cargo xtask compare-ipvs`: the runner natively when this kernel has IPVS (and no kernel was
/// asked for), else in each guest, its output printed.
fn compare_ipvs(kernels: Vec<String>, scenarios: Vec<String>) -> anyhow::Result<()> {
    need_root("the comparison builds network namespaces and loads BPF programs")?;
    bootstrap::run()?;
    build(false)?;
    let runner = testbins::compare_runner(&target_dir()?, &scenarios)?;
    if kernels.is_empty() && testbins::host_has_ipvs() {
        bootstrap::ensure_debian_packages(&["ipvsadm"])?;
        let status = Command::new(&runner.path)
            .args(&runner.args)
            .current_dir(&runner.cwd)
            .status()
            .with_context(|| format!("cannot run {}", runner.path.display()))?;
        if !status.success() {
            bail!("xlb and IPVS differ ({status}): see the differences above");
        }
        return Ok(());
    }
    let kernels = if kernels.is_empty() {
        eprintln!("xtask: this kernel has no IPVS: comparing in the guests");
        vm::default_series()
    } else {
        kernels
    };
    vm::ensure_host_packages()?;
    if std::env::var_os("XLB_VM_TEST_TIMEOUT").is_none() {
        // The whole suite is one binary in the guest, longer than the matrix's per-binary limit.
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var("XLB_VM_TEST_TIMEOUT", COMPARE_TIMEOUT_SECS.to_string()) };
    }
    let target = target_dir()?;
    let tests = [runner];
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for k in &kernels {
        match vm::resolve(k).and_then(|kernel| vm::run_kernel(kernel, &tests, &[], &target)) {
            Ok(report) => {
                println!("==== {k}: what the runner printed ====");
                for line in report.printed() {
                    println!("{line}");
                }
                if !report.ok() {
                    failed.push(k.clone());
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("xtask: kernel {k}: could not run: {e:#}");
                failed.push(k.clone());
            }
        }
    }
    println!("\n==== xtask compare-ipvs: summary ====");
    for r in &reports {
        r.print(&tests);
    }
    if !failed.is_empty() {
        bail!("xlb and IPVS differ, or the comparison did not run, on {}", failed.join(", "));
    }
    Ok(())
}

/// `prog` as given when it has a slash, else found on PATH.
fn which(prog: &str) -> anyhow::Result<PathBuf> {
    if prog.contains('/') {
        return std::fs::canonicalize(prog).with_context(|| format!("no {prog}"));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .with_context(|| format!("{prog} is not on PATH"))
}

/// The host suite, the forced-fallback run, the kernel matrix; all of them run (a failure in one
/// does not skip the next), then one summary.
fn test(host_only: bool, kernels: Vec<String>, only: &[String], args: Vec<String>) -> anyhow::Result<()> {
    need_root("the tests load BPF programs and build network namespaces")?;
    let t0 = Instant::now();
    bootstrap::run()?;
    build(false)?;
    let mut summary = Vec::new();
    let mut failed = false;
    let mut total = tally::Tally::default();
    let matrix_only = !kernels.is_empty();
    if !matrix_only {
        let t = Instant::now();
        let r = clippy();
        failed |= r.is_err();
        summary.push(format!("clippy --workspace --all-targets: {} ({:.0} s)", verdict(&r), t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let mut host_args = Vec::new();
        if !only.is_empty() {
            host_args.extend(["-p".to_string(), "xlb-tests".to_string()]);
            host_args.extend(only.iter().flat_map(|n| ["--test".to_string(), n.clone()]));
        }
        host_args.extend(args.iter().cloned());
        let r = cargo_test_counted(&host_args, &mut total);
        failed |= r.is_err();
        summary.push(format!("host suite: {} ({:.0} s)", verdict(&r), t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let r = features_off(only, &mut total);
        failed |= r.is_err();
        summary.push(format!("host, XLB_FEATURES_OFF=all: {} ({:.0} s)", verdict(&r), t.elapsed().as_secs_f64()));
    }
    let mut reports = Vec::new();
    let mut matrix_tests = Vec::new();
    if !host_only {
        let kernels = if matrix_only { kernels } else { vm::default_series() };
        // Two vCPUs in the guest: two test threads, as cargo test uses on this 2-core host.
        let mut guest_args = if matrix_only { args.clone() } else { Vec::new() };
        if !guest_args.iter().any(|a| a.starts_with("--test-threads")) {
            guest_args.push("--test-threads=2".to_string());
        }
        let prepared = vm::ensure_host_packages().and_then(|()| testbins::matrix(only)).and_then(|t| Ok((t, target_dir()?)));
        let (target, ready) = match prepared {
            Ok((tests, target)) => {
                matrix_tests = tests;
                (target, true)
            }
            Err(e) => {
                failed = true;
                summary.push(format!("kernel matrix: could not prepare: {e:#}"));
                (PathBuf::new(), false)
            }
        };
        // The comparison with kernel IPVS (xlb-compare-ipvs, built with the bins) where it fits.
        let compare = testbins::compare_runner(&target, &[]);
        let mut jobs = Vec::new();
        for k in kernels.iter().filter(|_| ready) {
            let mut tests = matrix_tests.clone();
            match (testbins::compare_in_matrix(k, only), compare.as_ref()) {
                (Ok(None), _) => {}
                (Ok(Some(scenarios)), Ok(c)) => tests.push(testbins::TestBinary { args: scenarios, ..c.clone() }),
                (Err(e), _) => {
                    failed = true;
                    summary.push(format!("kernel {k}: no comparison with IPVS: {e:#}"));
                }
                (_, Err(e)) => {
                    failed = true;
                    summary.push(format!("kernel {k}: no comparison with IPVS: {e:#}"));
                }
            }
            if !tests.is_empty() {
                jobs.push((k.clone(), tests));
            }
        }
        // One guest after the other: side by side (XLB_VM_PARALLEL=1) each took about twice as
        // long on a 2-core machine (dr_packets 289 and 299 s against about 150 alone), so the
        // pair gained nothing there and every timing in the guests got tighter.
        let serial = !std::env::var("XLB_VM_PARALLEL").is_ok_and(|v| v == "1");
        let run = |(k, tests): &(String, Vec<testbins::TestBinary>)| {
            vm::resolve(k).and_then(|kernel| vm::run_kernel(kernel, tests, &guest_args, &target))
        };
        let results: Vec<anyhow::Result<vm::KernelReport>> = if serial {
            jobs.iter().map(run).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || run(j))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the guest's thread panicked"))))
                    .collect()
            })
        };
        for ((k, tests), r) in jobs.into_iter().zip(results) {
            match r {
                Ok(report) => {
                    failed |= !report.ok();
                    reports.push((report, tests));
                }
                Err(e) => {
                    failed = true;
                    summary.push(format!("kernel {k}: could not run: {e:#}"));
                }
            }
        }
    }
    println!("\n==== xtask test: summary ====");
    for line in &summary {
        println!("{line}");
    }
    for (r, tests) in &reports {
        r.print(tests);
        total.add(r.tally());
    }
    println!("total {:.0} s", t0.elapsed().as_secs_f64());
    // The closing line CI reads: every test of every run (host, forced fallbacks, guests).
    println!("total: {} passed, {} failed, {} skipped", total.passed, total.failed, total.skipped);
    if failed {
        bail!("some tests failed (see the summary above)");
    }
    Ok(())
}

fn verdict(r: &anyhow::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("FAILED: {e:#}"),
    }
}

/// The fixtures and labs once more on the host, with every optional kernel feature forced off
/// (as if probed absent): the fallbacks that older kernels take run on every CI run.
fn features_off(only: &[String], total: &mut tally::Tally) -> anyhow::Result<()> {
    let names: Vec<&str> =
        testbins::FEATURES_OFF.iter().copied().filter(|n| only.is_empty() || only.iter().any(|o| o == n)).collect();
    if names.is_empty() {
        return Ok(());
    }
    let tests = testbins::build(&names)?;
    let mut failed = Vec::new();
    for t in &tests {
        eprintln!("xtask: {} with XLB_FEATURES_OFF=all", t.name);
        let st = tally::run_counted(Command::new(&t.path).current_dir(&t.cwd).env("XLB_FEATURES_OFF", "all"), total)?;
        if !st.success() {
            failed.push(t.name.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("{} failed", failed.join(", "));
    }
    Ok(())
}

fn bench(quick: bool, vm: bool, kernels: Vec<String>) -> anyhow::Result<()> {
    need_root("the benchmark loads BPF programs and builds network namespaces")?;
    bootstrap::run()?;
    build(true)?;
    let bin = target_dir()?.join("release/xlb-bench");
    if !vm {
        // A kernel with IPVS (built in, or the module loads): its column needs Debian's ipvsadm.
        let has_ipvs = std::path::Path::new("/proc/net/ip_vs").exists()
            || Command::new("modprobe").args(["-q", "ip_vs"]).status().is_ok_and(|s| s.success());
        if has_ipvs {
            bootstrap::ensure_debian_packages(&["ipvsadm"])?;
        }
        let mut cmd = Command::new(&bin);
        if quick {
            cmd.arg("--quick");
        }
        let status = cmd.status().with_context(|| format!("cannot run {}", bin.display()))?;
        if !status.success() {
            bail!("the benchmark failed ({status}): see the report for figures that failed their path proof");
        }
        return Ok(());
    }
    // The guest's filesystem is the host's, read-only with a tmpfs on /tmp: the report comes back
    // on the guest's output (xlb-bench prints it), the files it writes stay in the guest.
    vm::ensure_host_packages()?;
    for (var, secs) in [("XLB_VM_TEST_TIMEOUT", "840"), ("XLB_VM_TIMEOUT", "900")] {
        if std::env::var_os(var).is_none() {
            // SAFETY: xtask has started no thread yet.
            unsafe { std::env::set_var(var, secs) };
        }
    }
    let guest_bench = testbins::TestBinary {
        name: "xlb-bench".to_string(),
        path: bin,
        cwd: workspace_root()?,
        args: ["--emulated", "--only", "e2e", "--out", "/tmp/xlb-bench"].map(str::to_string).to_vec(),
    };
    let target = target_dir()?;
    let kernels = if kernels.is_empty() { vec!["6.12".to_string()] } else { kernels };
    let mut failed = Vec::new();
    for k in &kernels {
        let report = vm::resolve(k).and_then(|kernel| vm::run_kernel(kernel, std::slice::from_ref(&guest_bench), &[], &target))?;
        // The report: from its title to the first line the benchmark wrote to stderr after it.
        let lines: Vec<&str> = report.printed().collect();
        let md = match lines.iter().position(|l| l.starts_with("# xlb benchmark")) {
            Some(i) => {
                let end = lines[i..].iter().position(|l| l.starts_with("report: ") || l.starts_with("xlb-bench: ")).map_or(lines.len(), |e| i + e);
                lines[i..end].join("\n")
            }
            None => String::new(),
        };
        let exit = report.binaries.get(&guest_bench.name).and_then(|b| b.exit);
        let out = target.join("bench").join(format!("vm-{k}"));
        if md.is_empty() {
            failed.push(format!("{k}: no report ({}; see {})", report.error.as_deref().unwrap_or("the benchmark printed none"), report.log.display()));
            continue;
        }
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(out.join("report.md"), format!("{md}\n")).with_context(|| format!("cannot write {}/report.md", out.display()))?;
        println!("{md}\n");
        eprintln!(
            "xtask bench --vm: kernel {} (QEMU TCG): report {}, guest log {} ({:.0} s in all)",
            report.kernel.version,
            out.join("report.md").display(),
            report.log.display(),
            report.total_secs
        );
        if exit != Some(0) || report.error.is_some() {
            failed.push(format!("{k}: xlb-bench exit {exit:?}{}", report.error.map(|e| format!(", {e}")).unwrap_or_default()));
        }
    }
    if !failed.is_empty() {
        bail!("the benchmark failed in the guest: {}", failed.join("; "));
    }
    Ok(())
}

/// Cargo's target directory (`CARGO_TARGET_DIR` when set).
fn target_dir() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = std::path::PathBuf::from(d);
            Ok(if d.is_absolute() { d } else { workspace_root()?.join(d) })
        }
        None => Ok(workspace_root()?.join("target")),
    }
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "--bins"];
    if release {
        args.push("--release");
    }
    cargo(&args, &[])
}

/// `cargo clippy` over every crate and target, lb-ebpf included (checked for the host, where its
/// `core_intrinsics` feature needs RUSTC_BOOTSTRAP as its BPF build does); any warning fails.
fn clippy() -> anyhow::Result<()> {
    bootstrap::ensure_component("clippy")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(workspace_root()?);
    bootstrap::add_toolchain_to_path(&mut cmd)?;
    let status = cmd.status().context("cannot run cargo clippy")?;
    if !status.success() {
        bail!("cargo clippy found problems ({status})");
    }
    Ok(())
}

/// The host suite (`cargo test --no-fail-fast ARGS`), its counts added to `total`.
fn cargo_test_counted(args: &[String], total: &mut tally::Tally) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--no-fail-fast"]).args(args).current_dir(workspace_root()?);
    bootstrap::add_toolchain_to_path(&mut cmd)?;
    let status = tally::run_counted(&mut cmd, total)?;
    if !status.success() {
        bail!("cargo test --no-fail-fast failed ({status})");
    }
    Ok(())
}

/// Runs cargo in the workspace with the toolchain's PATH (bpf-linker included).
fn cargo(args: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace_root()?);
    if !extra.is_empty() {
        cmd.args(extra);
    }
    bootstrap::add_toolchain_to_path(&mut cmd)?;
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(std::path::Path::to_path_buf).context("xtask has no parent directory")
}

fn need_root(why: &str) -> anyhow::Result<()> {
    if unsafe { libc_geteuid() } != 0 {
        bail!("run as root: {why}");
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
