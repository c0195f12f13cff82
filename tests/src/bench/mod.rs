//! `cargo xtask bench`: every figure measured in the same run as its baseline, each one proven to
//! have taken the path it names (counter deltas equal to the iteration count) or not reported.
//!
//! Sections: [`packet`] (per-packet cost with BPF_PROG_TEST_RUN, scheduling cost against the
//! number of real servers, and what a new connection's cost depends on, all new-connection
//! figures by one function), [`progs`] (instruction counts and verifier work per program),
//! [`e2e`] (forwarding rate on one core in a namespace lab, against nftables DNAT), [`ctl`]
//! (lbadm on a 10,000-service table), [`mem`] (connection-table memory), [`sync`] (what a running
//! sync master costs the per-packet path, and its full queue). [`report`] writes
//! `report.md` (a summary of issue 14's goals first), `report.json` and `sched_cost.svg`.
pub mod ctl;
pub mod e2e;
pub mod mem;
pub mod packet;
pub mod packet6;
pub mod progs;
pub mod report;
pub mod sync;

use std::{os::fd::AsRawFd as _, path::PathBuf};

use anyhow::Context as _;

/// What the report says of a run inside the QEMU TCG guest (`xlb-bench --emulated`).
pub const EMULATED: &str = "emulated (TCG): ratios rough, absolute figures meaningless — a Debian kernel under QEMU \
     TCG (`cargo xtask bench --vm`), every column on that guest's kernel";

/// How big a run is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub quick: bool,
    /// Rounds (runs) of every per-packet figure.
    pub rounds: usize,
    /// Interleaved (path, empty) pairs of BPF_PROG_TEST_RUN calls per round.
    pub pairs: usize,
    /// Flows of the "spread" established-flow figures.
    pub spread_flows: usize,
    /// Rounds of the end-to-end rate, frames per measured run, flows the generator cycles.
    pub e2e_rounds: usize,
    pub e2e_frames: u32,
    pub e2e_flows: u32,
    /// Frames per measured new-connection run (every frame a new flow).
    pub e2e_new_frames: u32,
    /// Control plane: services x real servers, runs.
    pub ctl_services: usize,
    pub ctl_dests: usize,
    pub ctl_runs: usize,
    /// Memory: connection entries written into XLB_CONNS.
    pub mem_fill: u32,
}

impl Size {
    pub fn full() -> Size {
        Size {
            quick: false,
            rounds: 5,
            pairs: 20_000,
            spread_flows: 20_000,
            e2e_rounds: 5,
            e2e_frames: 1_000_000,
            e2e_flows: 1_000,
            e2e_new_frames: 100_000,
            ctl_services: 10_000,
            ctl_dests: 10,
            ctl_runs: 3,
            mem_fill: lb_common::DEFAULT_MAX_CONNS,
        }
    }

    pub fn quick() -> Size {
        Size {
            quick: true,
            rounds: 3,
            pairs: 2_000,
            spread_flows: 2_000,
            e2e_rounds: 2,
            e2e_frames: 100_000,
            e2e_flows: 256,
            e2e_new_frames: 20_000,
            ctl_services: 500,
            ctl_dests: 10,
            ctl_runs: 3,
            mem_fill: 50_000,
        }
    }

    /// Inside a QEMU TCG guest (`cargo xtask bench --vm`): the quick size, with the end-to-end
    /// section sized to what the guest's emulated CPU gets through in its time limit.
    pub fn emulated() -> Size {
        Size { e2e_rounds: 5, e2e_frames: 50_000, e2e_new_frames: 20_000, ..Size::quick() }
    }
}

/// Whether a figure's path was proven: `Ok(what was checked)` or `Err(what did not hold)`.
pub type Proof = Result<String, String>;

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Figure {
    pub section: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// Label and value of the baseline measured in the same run.
    pub baseline: Option<(String, f64)>,
    /// figure / baseline, or as the section defines it (said in the report's notes).
    pub ratio: Option<f64>,
    /// The target and where the figure stands.
    pub target: Option<String>,
    /// The target as a comparison, for the summary.
    pub check: Option<Check>,
    /// Which goal of the summary (`report::GOALS`) this figure counts toward.
    pub goal: Option<&'static str>,
    pub proof: Proof,
}

/// A target as numbers: `value` against `limit` (at most, or at least).
#[derive(Clone, Debug)]
pub struct Check {
    pub value: f64,
    pub limit: f64,
    pub at_least: bool,
    /// "ns", "×", "insns".
    pub unit: String,
}

impl Check {
    pub fn met(&self) -> bool {
        if self.at_least { self.value >= self.limit } else { self.value <= self.limit }
    }

    pub fn verdict(&self) -> &'static str {
        if self.met() { "met" } else { "NOT met" }
    }
}

impl Figure {
    pub fn new(section: &'static str, name: impl Into<String>, unit: &'static str, per_run: &[f64], proof: Proof) -> Figure {
        Figure {
            section,
            name: name.into(),
            unit,
            median: median_f(per_run),
            min: per_run.iter().copied().fold(f64::INFINITY, f64::min),
            max: per_run.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            runs: per_run.len(),
            baseline: None,
            ratio: None,
            target: None,
            check: None,
            goal: None,
            proof,
        }
    }

    pub fn baseline(mut self, label: impl Into<String>, value: f64) -> Figure {
        self.baseline = Some((label.into(), value));
        self
    }

    pub fn ratio(mut self, r: f64) -> Figure {
        self.ratio = Some(r);
        self
    }

    /// `at most` target on the median: "hot ≤ 38 ns: met" / "NOT met".
    pub fn target_max(mut self, limit: f64, what: &str) -> Figure {
        let c = Check { value: self.median, limit, at_least: false, unit: self.unit.to_string() };
        self.target = Some(format!("{what} ≤ {limit} {}: {}", self.unit, c.verdict()));
        self.check = Some(c);
        self
    }

    /// Ratio target: this figure's median ÷ `of` (labelled `of_label`) at most `limit` (or at
    /// least, with `at_least`): "≤ 1.5× lc at 2 servers (1.23×): met".
    pub fn target_ratio(mut self, of: f64, of_label: &str, limit: f64, at_least: bool) -> Figure {
        let r = self.median / of;
        let c = Check { value: r, limit, at_least, unit: "×".to_string() };
        let op = if at_least { "≥" } else { "≤" };
        self.target = Some(format!("{op} {limit}× {of_label} ({r:.2}×): {}", c.verdict()));
        self.check = Some(c);
        self
    }

    /// Counts this figure toward summary goal `key` (`report::GOALS`).
    pub fn goal(mut self, key: &'static str) -> Figure {
        self.goal = Some(key);
        self
    }

    pub fn target_text(mut self, t: impl Into<String>) -> Figure {
        self.target = Some(t.into());
        self
    }
}

/// Everything one run produced.
#[derive(Default)]
pub struct Results {
    pub figures: Vec<Figure>,
    /// Lines printed under the table (skipped columns, method notes).
    pub notes: Vec<String>,
    /// Scheduling cost: (scheduler, servers, median, min, max) for the plot.
    pub sched_points: Vec<(String, u32, f64, f64, f64)>,
    /// Sections that failed to run at all, with the error.
    pub failed_sections: Vec<(String, String)>,
    /// Instruction counts per program and kernel (section 6).
    pub programs: Vec<progs::ProgCount>,
    /// Kernels of the matrix whose counts are missing, with why.
    pub kernels_missing: Vec<(String, String)>,
}

pub fn median_u(v: &mut [u64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0 }
}

pub fn median_f(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The CPU the measurements are pinned to: the last one (the first tends to take the machine's
/// interrupts and housekeeping).
pub fn bench_cpu() -> usize {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    n.saturating_sub(1)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!("sched_setaffinity({cpu}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `f` on a thread that moved into the network namespace `ns` (and is pinned to `cpu`):
/// BPF_PROG_TEST_RUN and interface names resolve in the caller's namespace.
pub fn in_netns<T: Send>(ns: &str, cpu: Option<usize>, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).with_context(|| format!("netns {ns}"))?;
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                anyhow::bail!("setns {ns}: {}", std::io::Error::last_os_error());
            }
            if let Some(c) = cpu {
                pin_to_cpu(c)?;
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
    })
}

/// The target directory the running binary was built in (`<target>/<profile>/xlb-bench`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    dir
}

/// Machine facts for the top of the report.
pub fn machine_facts() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let kernel = if unsafe { libc::uname(&mut u) } == 0 {
        let f = |b: &[libc::c_char]| unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }.to_string_lossy().into_owned();
        format!("{} {} {} ({})", f(&u.sysname), f(&u.release), f(&u.version), f(&u.machine))
    } else {
        "unknown".to_string()
    };
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let jit = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable").unwrap_or_default().trim().to_string();
    vec![
        ("CPU".to_string(), format!("{model} ({cpus} CPUs)")),
        ("Kernel".to_string(), kernel),
        ("Memory".to_string(), mem),
        ("BPF JIT".to_string(), if jit == "1" { "on".to_string() } else { format!("bpf_jit_enable={jit}") }),
    ]
}

/// How the figures were obtained, under the table: the notes of the sections that ran (`ran`:
/// xlb-bench's section keys).
pub fn add_method_notes(res: &mut Results, size: &Size, ran: &[String]) {
    let ran = |keys: &[&str]| keys.iter().any(|k| ran.iter().any(|r| r == k));
    let n = &mut res.notes;
    if ran(&["packet", "sched", "packet6", "factors", "sync"]) {
        n.insert(
            0,
            format!(
                "Per-packet: {} rounds × {} interleaved (path, empty) BPF_PROG_TEST_RUN calls with repeat = 1; \
                 a round's figure = median(path) − median(empty, `xlb_pass`), kernel-reported durations; median = median \
                 over rounds, min – max over rounds; baseline = the empty program's median (raw); ratio = raw path median \
                 ÷ empty median. Thread pinned to CPU {} (sched_setaffinity).",
                size.rounds,
                size.pairs,
                bench_cpu()
            ),
        );
        n.insert(
            1,
            "Path proof: every path call's verdict checked, and per round the GlobalStats deltas (rx and the path's \
             counters: tx / redirect / pass / conn_hit / conn_new / nat_reply) equal the number of path calls while \
             the others named stay at 0; a figure that fails is printed as NOT REPORTED."
                .to_string(),
        );
    }
    n.push(
        "Targets: issue 14's goals; a per-packet target is on the net median (path − empty program); ratio targets \
         compare net medians of the same run (a scheduler at 256/1024 servers ÷ its own 2-server figure; a NAT reply ÷ the \
         NAT request of the same kind, hot vs hot, spread vs spread). The summary's worst figure is the one farthest over \
         its limit (relative), or the closest to it when all are met; a figure that failed its proof counts as not met."
            .to_string(),
    );
    if !ran(&["progs"]) {
        return;
    }
    n.push(format!(
        "Program size: section 6 loads a fresh copy of the object as the benchmark does (maps of a temporary pin \
         directory) and loads every program the issue names; instructions (xlated) = bpf_prog_info.xlated_prog_len / 8, \
         checked against the listing of `bpftool prog dump xlated id N` (last index + its length); verifier-processed = \
         bpf_prog_info.verified_insns (the verifier log's \"processed N insns\"). Other kernels: the newest \
         target/xlb-vm/<kernel>.log of each series of the matrix ({}), written by `cargo xtask test` (the verifier-budget \
         test's lines), with its time; only the verifier count is known there.",
        progs::MATRIX.join(", ")
    ));
}
