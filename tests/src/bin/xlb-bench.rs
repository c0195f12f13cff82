//! `xlb-bench [--quick | --emulated] [--out DIR] [--only SECTION,...]`: the benchmark `cargo xtask
//! bench` runs (see `xlb_tests::bench`). Needs root. Writes `report.md`, `report.json` and
//! `sched_cost.svg` to DIR (default `<target>/bench`). Exits non-zero when a figure failed its
//! path proof or a section could not run. `--emulated`: inside the QEMU TCG guest of `cargo
//! xtask bench --vm` (a smaller size, and the report says the figures are emulated).
use std::time::Instant;

use xlb_tests::bench::{self, Results, Size, report};

const SECTIONS: [&str; 9] = ["packet", "sched", "packet6", "factors", "sync", "progs", "e2e", "ctl", "mem"];

fn main() {
    let mut quick = false;
    let mut emulated = false;
    let mut out = bench::target_dir().join("bench");
    let mut only: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--emulated" => emulated = true,
            "--out" => out = args.next().unwrap_or_default().into(),
            "--only" => only = args.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            _ => {
                eprintln!("usage: xlb-bench [--quick | --emulated] [--out DIR] [--only {}]", SECTIONS.join(","));
                std::process::exit(2);
            }
        }
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("xlb-bench: run as root (BPF programs, network namespaces)");
        std::process::exit(2);
    }
    let size = if emulated {
        Size::emulated()
    } else if quick {
        Size::quick()
    } else {
        Size::full()
    };
    let start = Instant::now();
    let mut facts = bench::machine_facts();
    if emulated {
        facts.push(("Mode".to_string(), bench::EMULATED.to_string()));
    }
    for (k, v) in &facts {
        eprintln!("{k}: {v}");
    }
    let mut res = Results::default();
    type Section = fn(&Size, &mut Results) -> anyhow::Result<()>;
    let table: [(&str, &str, Section); 9] = [
        ("packet", "per-packet", bench::packet::per_packet),
        ("sched", "scheduling", bench::packet::sched_cost),
        // After sections 1 and 2: its figures are printed beside their IPv4 twins.
        ("packet6", "per-packet IPv6", bench::packet6::per_packet6),
        ("factors", "factors", bench::packet::factors),
        ("sync", "sync", bench::sync::run),
        ("progs", "programs", bench::progs::run),
        ("e2e", "e2e", bench::e2e::run),
        ("ctl", "control", bench::ctl::run),
        ("mem", "memory", bench::mem::run),
    ];
    for (key, section, f) in table {
        if !only.iter().any(|o| o == key) {
            continue;
        }
        let t = Instant::now();
        eprintln!("== {key} ...");
        if let Err(e) = f(&size, &mut res) {
            eprintln!("== {key}: FAILED: {e:#}");
            res.failed_sections.push((section.to_string(), format!("{e:#}")));
        } else {
            eprintln!("== {key}: {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    bench::add_method_notes(&mut res, &size, &only);
    let wall = start.elapsed().as_secs_f64();
    let md = report::markdown(&res, &facts, quick, wall);
    let json = report::json(&res, quick);
    let svg = report::sched_svg(&res.sched_points, &facts);
    println!("{md}");
    if let Err(e) = report::write_all(&out, &md, &json, &svg) {
        eprintln!("xlb-bench: cannot write the report to {}: {e:#}", out.display());
        std::process::exit(1);
    }
    eprintln!("report: {}, plot: {} ({wall:.1} s)", out.join("report.md").display(), out.join("sched_cost.svg").display());
    let failed = res.figures.iter().filter(|f| f.proof.is_err()).count();
    if failed > 0 || !res.failed_sections.is_empty() {
        eprintln!("xlb-bench: {failed} figure(s) failed their path proof, {} section(s) failed", res.failed_sections.len());
        std::process::exit(1);
    }
}
