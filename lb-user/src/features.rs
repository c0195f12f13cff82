//! What the running kernel offers the data plane, probed once at attach with tiny programs (as
//! libbpf and bpftool probe), never guessed from the version number: distributions backport
//! features and builds leave helpers out.
//!
//! Required (attach is refused with one line naming the feature and the oldest kernel that has
//! it): `bpf_loop` (the schedulers' scans), `bpf_redirect_neigh` (the tc slow path), XDP bpf
//! links (pinned attachments).
//!
//! Optional, each with a fallback the suite also runs on every machine by forcing it off with
//! `XLB_FEATURES_OFF=NAME[,NAME...]` (or `all`), as if probed absent:
//! - `fib_src`: `bpf_fib_lookup` gives the route's source address (BPF_FIB_LOOKUP_SRC, 6.7).
//!   Without it IPIP's outer source is the egress interface's primary address.
//! - `tcx`: tc programs attach through tcx links (6.6). Without it: a clsact qdisc and a
//!   netlink tc filter, owned and removed by lbd the same way.
//! - `native`: XDP in the driver. `--mode auto` falls back to generic (skb) XDP where the
//!   driver refuses native mode.
use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};

/// The optional features, by the names `XLB_FEATURES_OFF` and `lbd status` use.
pub const OPTIONAL: [&str; 3] = ["fib_src", "tcx", "native"];

/// Whether `XLB_FEATURES_OFF` forces optional feature `name` off.
pub fn forced_off(name: &str) -> bool {
    std::env::var("XLB_FEATURES_OFF")
        .is_ok_and(|v| v.split(',').map(str::trim).any(|f| f == "all" || f == name))
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// What the probes found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probed {
    pub fib_src: bool,
}

/// Runs the probes with the programs of `ebpf` (xlb's object). Errs, in one line, when a
/// required feature is missing.
pub fn probe(ebpf: &mut Ebpf) -> anyhow::Result<Probed> {
    require(ebpf, "xlb_probe_loop", "bpf_loop", "5.17")?;
    let fib_src = !forced_off("fib_src") && run_probe(ebpf, "xlb_probe_fib_src")? == 1;
    Ok(Probed { fib_src })
}

/// Loads probe `name` (once); an error means the kernel refused it.
fn load_probe<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
    if prog.fd().is_err() {
        prog.load()?;
    }
    Ok(prog)
}

fn require(ebpf: &mut Ebpf, program: &str, feature: &str, since: &str) -> anyhow::Result<()> {
    load_probe(ebpf, program).map(|_| ()).map_err(|_| {
        anyhow!("this kernel ({}) lacks {feature}, which xlb needs (Linux {since} or later)", kernel_release())
    })
}

fn run_probe(ebpf: &mut Ebpf, program: &str) -> anyhow::Result<u32> {
    let prog = load_probe(ebpf, program).with_context(|| format!("the kernel refused probe {program}"))?;
    let frame = [0u8; 64];
    let mut out = [0u8; 128];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&frame);
    opts.data_out = Some(&mut out);
    let r = prog.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN of probe {program}"))?;
    Ok(r.return_value)
}

/// Records the probed features in the table's configuration, where the data plane reads them.
pub fn apply(store: &mut crate::store::Store, p: Probed) -> anyhow::Result<()> {
    store.update_config(|cfg| {
        if p.fib_src {
            cfg.flags |= lb_common::CFG_F_FIB_SRC;
        } else {
            cfg.flags &= !lb_common::CFG_F_FIB_SRC;
        }
        Ok(())
    })
}
