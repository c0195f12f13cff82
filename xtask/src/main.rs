//! `cargo xtask`: set-up and project tasks. Everything a fresh machine needs is installed here.
//!
//! - `bootstrap`: rust-src, bpf-linker built against rustc's own libLLVM (cached), the Debian
//!   packages the labs use. Idempotent; a second run takes well under a second.
//! - `build`: bootstrap, then `cargo build` (the eBPF object is built by lb-user's build script).
//! - `test`: build, then every test (unit, packet-level, lab).
//! - `demo`: build, then the DR demo lab.
//! - `bench [--quick]`: release build, then the benchmark (`xlb-bench`): report in
//!   `target/bench/report.md`, plot in `target/bench/sched_cost.svg`.
mod bootstrap;

use std::process::{Command, ExitCode};

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
    /// Run every test: unit, packet-level (BPF_PROG_TEST_RUN) and namespace labs. Needs root.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The demo lab: the seed's setup, six requests through the VIP, the listing. Needs root.
    Demo {
        /// Forwarding method of the lab: dr (the seed's DR example), tun or nat.
        #[arg(long, default_value = "dr", value_parser = ["dr", "tun", "nat"])]
        mode: String,
    },
    /// Benchmarks against their baselines in one run: per-packet cost, scheduling cost, forwarding
    /// rate, control plane, memory. Writes target/bench/report.md and sched_cost.svg. Needs root.
    Bench {
        /// A small version (under 2 minutes).
        #[arg(long)]
        quick: bool,
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
        Cmd::Test { args } => {
            need_root("the tests load BPF programs and build network namespaces")?;
            bootstrap::run()?;
            build(false)?;
            cargo(&["test", "--no-fail-fast"], &args)
        }
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
        Cmd::Bench { quick } => bench(quick),
    }
}

fn bench(quick: bool) -> anyhow::Result<()> {
    need_root("the benchmark loads BPF programs and builds network namespaces")?;
    bootstrap::run()?;
    build(true)?;
    let bin = target_dir()?.join("release/xlb-bench");
    let mut cmd = Command::new(&bin);
    if quick {
        cmd.arg("--quick");
    }
    let status = cmd.status().with_context(|| format!("cannot run {}", bin.display()))?;
    if !status.success() {
        bail!("the benchmark failed ({status}): see the report for figures that failed their path proof");
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
