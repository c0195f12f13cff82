//! Section 6: the size of every program of the object after the kernel's rewrites (the
//! instruction count `bpftool prog dump xlated` prints: `xlated_prog_len / 8` of
//! `bpf_prog_info`) and the verifier's work on it (`verified_insns`, the "processed N insns" of
//! the verifier log), on this kernel; for the other kernels of the matrix, the counts the
//! verifier-budget test printed in `target/xlb-vm/<kernel>.log` (`cargo xtask test`).
use std::path::Path;

use aya::programs::{SchedClassifier, Xdp};
use lb_user::store::{self, CreateOptions};

use super::{Results, Size};
use crate::pins::TempPins;

/// The programs issue 14 names, in its order, then the IPv6 ones (issue 15).
pub const PROGRAMS: [&str; 18] = [
    "xlb_xdp",
    "xlb_new",
    "xlb_fwd",
    "xlb_icmp",
    "xlb_new_set",
    "xlb_new_scan",
    "xlb_new_twos",
    "xlb_tc_neigh",
    "xlb_decap",
    "xlb_xdp6",
    "xlb_new6",
    "xlb_new_set6",
    "xlb_new_scan6",
    "xlb_new_twos6",
    "xlb_fwd6",
    "xlb_reply6",
    "xlb_icmp6",
    "xlb_icmp6_tun",
];

/// The limit on verifier-processed instructions, per program and kernel.
pub const VERIFIER_TARGET: u32 = 300_000;

/// Kernel series of the VM matrix (`xtask/src/vm.rs`), besides the running kernel.
pub const MATRIX: [&str; 2] = ["6.1", "6.12"];

/// One program on one kernel.
#[derive(Clone, Debug)]
pub struct ProgCount {
    pub kernel: String,
    /// Where the counts come from.
    pub source: String,
    pub program: String,
    /// Instructions after the kernel's rewrites (None: not known from this source).
    pub xlated: Option<u32>,
    /// The same counted from `bpftool prog dump xlated id N` (None: bpftool absent or not here).
    pub bpftool: Option<u32>,
    /// The source is older than the last commit to the data plane.
    pub stale: bool,
    /// Verifier-processed instructions (None: the program was absent or refused).
    pub verified: Option<u32>,
}

pub fn run(_size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let kernel = lb_user::features::kernel_release();
    let pins = TempPins::new("bench-progs")?;
    let mut ebpf = store::load_object(pins.path(), CreateOptions::default())?;
    for name in PROGRAMS {
        let mut row = ProgCount {
            kernel: kernel.clone(),
            source: "loaded here (bpf_prog_info)".to_string(),
            program: name.to_string(),
            xlated: None,
            bpftool: None,
            stale: false,
            verified: None,
        };
        if let Some(prog) = ebpf.program_mut(name) {
            let info = if let Ok(x) = <&mut Xdp>::try_from(&mut *prog) {
                x.load()?;
                x.info()?
            } else if let Ok(t) = <&mut SchedClassifier>::try_from(&mut *prog) {
                t.load()?;
                t.info()?
            } else {
                anyhow::bail!("{name}: neither XDP nor tc");
            };
            row.xlated = info.size_translated().map(|b| b / 8);
            row.bpftool = bpftool_count(info.id());
            row.verified = info.verified_instruction_count();
        }
        res.programs.push(row);
    }
    let logs = super::target_dir().join("xlb-vm");
    let dp_commit = data_plane_commit_time();
    for series in MATRIX {
        match matrix_log(&logs, series) {
            Some((file, when, counts)) if !counts.is_empty() => {
                let stale = match (when, dp_commit) {
                    (Some(w), Some(c)) if w < c => ", older than the last data-plane commit",
                    _ => "",
                };
                let source = format!(
                    "target/xlb-vm/{file} ({}{stale})",
                    when.map(fmt_time).unwrap_or_else(|| "time unknown".to_string())
                );
                let k = file.trim_end_matches(".log").to_string();
                for name in PROGRAMS {
                    res.programs.push(ProgCount {
                        kernel: k.clone(),
                        source: source.clone(),
                        program: name.to_string(),
                        xlated: None,
                        bpftool: None,
                        stale: !stale.is_empty(),
                        verified: counts.iter().find(|(n, _)| n == name).map(|(_, c)| *c),
                    });
                }
            }
            Some((file, _, _)) => res
                .kernels_missing
                .push((series.to_string(), format!("target/xlb-vm/{file} has no verifier counts (the matrix run did not reach the verifier test)"))),
            None => res.kernels_missing.push((
                series.to_string(),
                "not run: no target/xlb-vm/<kernel>.log (`cargo xtask test` runs the kernel matrix)".to_string(),
            )),
        }
    }
    Ok(())
}

/// The newest log of kernel `series` in `dir`: (file name, modification time, (program, count)).
#[allow(clippy::type_complexity)]
fn matrix_log(dir: &Path, series: &str) -> Option<(String, Option<i64>, Vec<(String, u32)>)> {
    let mut best: Option<(String, Option<i64>)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ver) = name.strip_suffix(".log") else { continue };
        // "6.1.0-57-cloud-amd64" is of 6.1, "6.12.118+deb12-..." of 6.12.
        let mut parts = ver.split(|c: char| !c.is_ascii_digit());
        let s = format!("{}.{}", parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if s != series {
            continue;
        }
        let when = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if best.as_ref().is_none_or(|(_, w)| when > *w) {
            best = Some((name, when));
        }
    }
    let (file, when) = best?;
    let text = std::fs::read_to_string(dir.join(&file)).ok()?;
    Some((file, when, parse_counts(&text)))
}

/// `verifier: xlb_new   70853 instructions processed (...)` lines (verifier_budget.rs); the
/// last run in the log wins.
pub fn parse_counts(text: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for l in text.lines() {
        let Some(rest) = l.split("verifier: ").nth(1) else { continue };
        if rest.starts_with("kernel ") {
            out.clear();
            continue;
        }
        let mut w = rest.split_whitespace();
        let (Some(name), Some(n), Some("instructions")) = (w.next(), w.next(), w.next()) else { continue };
        if let Ok(n) = n.parse() {
            out.retain(|(m, _)| m != name);
            out.push((name.to_string(), n));
        }
    }
    out
}

/// Instructions of program `id` as `bpftool prog dump xlated` lists them: the last
/// instruction's index plus its length (2 for a 64-bit immediate load, opcode 0x18).
fn bpftool_count(id: u32) -> Option<u32> {
    let out = std::process::Command::new("bpftool").args(["prog", "dump", "xlated", "id", &id.to_string()]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut last = None;
    for l in text.lines() {
        let t = l.trim_start();
        let Some((idx, rest)) = t.split_once(": (") else { continue };
        if let Ok(i) = idx.parse::<u32>() {
            last = Some(i + if rest.starts_with("18)") { 2 } else { 1 });
        }
    }
    last
}

/// Commit time of the last change to the data plane (lb-ebpf, lb-common) in the workspace the
/// benchmark was built from, if git can tell.
fn data_plane_commit_time() -> Option<i64> {
    let ws = super::target_dir().parent()?.to_path_buf();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&ws)
        .args(["log", "-1", "--format=%ct", "--", "lb-ebpf", "lb-common"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn fmt_time(t: i64) -> String {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M UTC"]).output();
    out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_else(|| t.to_string())
}
