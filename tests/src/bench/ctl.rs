//! Control plane: `lbadm -R` of a table of `services` × `dests` real servers, then `lbadm -Ln`
//! and `lbadm -Ln --stats` of it; release binaries, wall time of the process (std::time::Instant
//! around spawn..exit), a fresh table per run. Proof: exit status 0 and the listing has one line
//! per service and per real server (plus the 3 header lines).
use std::{
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use super::{Figure, Results, Size};
use crate::{netns::unique_prefix, pins::TempPins, workspace_bin};

fn restore_text(services: usize, dests: usize) -> String {
    let mut s = String::with_capacity(services * (dests + 1) * 48);
    for i in 0..services {
        let vip = format!("10.{}.{}.{}:80", 1 + (i >> 16), (i >> 8) & 255, i & 255);
        s.push_str(&format!("-A -t {vip} -s rr\n"));
        for j in 0..dests {
            let n = i * dests + j;
            s.push_str(&format!("-a -t {vip} -r 10.{}.{}.{}:80 -g -w 1\n", 128 + (n >> 16), (n >> 8) & 255, n & 255));
        }
    }
    s
}

pub fn run(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let lbadm = workspace_bin("lbadm");
    if !lbadm.is_file() {
        bail!("{} not found: build the binaries first (cargo build --release --bins)", lbadm.display());
    }
    let (ns, nd) = (size.ctl_services, size.ctl_dests);
    let dir = std::env::temp_dir().join(unique_prefix("bctl"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("table.ipvsadm");
    std::fs::write(&file, restore_text(ns, nd))?;
    let want_lines = 3 + ns + ns * nd;
    let mut t_restore = Vec::new();
    let mut t_list = Vec::new();
    let mut t_stats = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for _ in 0..size.ctl_runs {
        let pins = TempPins::new("bench-ctl")?;
        let cmd = |args: &[&str]| {
            let mut c = Command::new(&lbadm);
            c.args(args).env("XLB_PIN_DIR", pins.path());
            c
        };
        // Creating the maps (first use) is not part of the figure.
        let out = cmd(&["-C"]).output().context("lbadm -C")?;
        if !out.status.success() {
            bail!("lbadm -C failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let t = Instant::now();
        let st = cmd(&["-R"]).stdin(std::fs::File::open(&file)?).stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        t_restore.push(t.elapsed().as_secs_f64() * 1e3);
        if !st.status.success() {
            bad.push(format!("lbadm -R: {} {}", st.status, String::from_utf8_lossy(&st.stderr).lines().next().unwrap_or("")));
        }
        for (args, times) in [(&["-Ln"][..], &mut t_list), (&["-Ln", "--stats"][..], &mut t_stats)] {
            let t = Instant::now();
            let out = cmd(args).output()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
            if !out.status.success() || lines != want_lines {
                bad.push(format!("lbadm {}: {} with {lines} lines, want {want_lines}", args.join(" "), out.status));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let proof = |what: &str| -> super::Proof {
        if bad.is_empty() {
            Ok(format!("exit 0; {what}"))
        } else {
            Err(bad.join("; "))
        }
    };
    let table = format!("{ns} services × {nd} real servers");
    let lines = format!("{want_lines} lines");
    for (args, times, checked) in [
        ("-R", &t_restore, format!("then -Ln lists all {lines}")),
        ("-Ln", &t_list, lines.clone()),
        ("-Ln --stats", &t_stats, lines.clone()),
    ] {
        res.figures.push(Figure::new("control", format!("lbadm {args} of {table}"), "ms", times, proof(&checked)));
    }
    res.notes.push(format!(
        "Control plane: {} binary {}, wall time of the process, fresh pinned table per run (maps created by an untimed \
         `lbadm -C` first), {} runs; no baseline: there is no kernel IPVS/ipvsadm on this kernel to time against.",
        if lbadm.to_string_lossy().contains("/release/") { "release" } else { "debug (not a release build!)" },
        lbadm.display(),
        size.ctl_runs
    ));
    Ok(())
}
