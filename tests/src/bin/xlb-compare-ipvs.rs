//! `xlb-compare-ipvs [--scenarios DIR] [SCENARIO...]`: runs the scenarios through kernel IPVS and
//! through xlb in the same kernel and reports every difference (see tests/compare/README.md).
//! Exit status: 0 when every scenario ran without a difference, 1 on any difference, 2 when this
//! kernel has no IPVS or the arguments are wrong.
use std::{path::PathBuf, process::ExitCode};

use xlb_tests::compare;

fn main() -> ExitCode {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compare/scenarios");
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scenarios" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => return usage("--scenarios needs a directory"),
            },
            "-h" | "--help" => {
                println!("usage: xlb-compare-ipvs [--scenarios DIR] [SCENARIO...]");
                return ExitCode::SUCCESS;
            }
            // libtest's options, which the kernel matrix gives every binary it runs.
            s if s.starts_with("--test-threads") || s == "--nocapture" || s == "-q" => {}
            s if s.starts_with('-') => return usage(&format!("unknown option {s}")),
            s => names.push(s.to_string()),
        }
    }
    let files = match compare::find(&dir, &names) {
        Ok(f) => f,
        Err(e) => return usage(&format!("{e:#}")),
    };
    let mut scenarios = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let Some(vips) = compare::side::vip_pair(i) else {
            return usage(&format!("more scenarios than the labs have VIPs for ({i})"));
        };
        match compare::scenario::load(f, vips) {
            Ok(s) => scenarios.push(s),
            Err(e) => return usage(&format!("{e:#}")),
        }
    }
    if !compare::side::kernel_has_ipvs() {
        eprintln!("xlb-compare-ipvs: this kernel has no IPVS (modprobe ip_vs failed, no /proc/net/ip_vs): nothing to compare with");
        return ExitCode::from(2);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("xlb-compare-ipvs: {} scenarios on kernel {}", scenarios.len(), kernel.trim());
    let t0 = std::time::Instant::now();
    let mut labs = match compare::Labs::new() {
        Ok(l) => l,
        Err(e) => {
            println!("xlb-compare-ipvs: cannot build the labs: {e:#}");
            for sc in &scenarios {
                println!("test compare::{} ... FAILED", sc.name);
            }
            return ExitCode::from(1);
        }
    };
    let mut ports = compare::Ports::default();
    let mut outcomes = Vec::new();
    for sc in &scenarios {
        let o = compare::run(&mut labs, &mut ports, sc);
        let verdict = match (&o.skipped, o.ok()) {
            (Some(_), _) => "ignored",
            (None, true) => "ok",
            (None, false) => "FAILED",
        };
        println!("test compare::{} ... {verdict}", o.name);
        if let Some(why) = &o.skipped {
            println!("  {}: skipped: {why}", o.name);
        }
        for d in &o.differences {
            println!("  {}: {}", o.name, d.trim_end().replace('\n', "\n    "));
        }
        outcomes.push(o);
    }
    println!("\n{:<22} {:>7} {:>12} {:>8}", "scenario", "checks", "differences", "secs");
    for o in &outcomes {
        let diffs = if o.skipped.is_some() { "skipped".to_string() } else { o.differences.len().to_string() };
        println!("{:<22} {:>7} {:>12} {:>8.1}", o.name, o.checks, diffs, o.secs);
    }
    drop(labs);
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    println!(
        "\ntest result: {}. {} passed; {failed} failed; {} ignored; finished in {:.1}s",
        if failed == 0 { "ok" } else { "FAILED" },
        outcomes.iter().filter(|o| o.ok() && o.skipped.is_none()).count(),
        outcomes.iter().filter(|o| o.skipped.is_some()).count(),
        t0.elapsed().as_secs_f64()
    );
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("xlb-compare-ipvs: {msg}\nusage: xlb-compare-ipvs [--scenarios DIR] [SCENARIO...]");
    ExitCode::from(2)
}
