//! `cargo xtask bench --quick` cannot rot: runs the quick benchmark and checks that the report
//! was produced and that every reported figure passed its path proof (timings are not asserted:
//! machines are shared and noisy). Needs root, and lbadm built next to this test's binaries
//! (`cargo xtask test` builds them first).
use lb_common::sched::SCHED_NAMES;

#[test]
fn quick_bench_reports_every_figure_with_its_path_proof() {
    let out = std::env::temp_dir().join(format!("xlb-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_xlb-bench"))
        .args(["--quick", "--out"])
        .arg(&out)
        .output()
        .expect("run xlb-bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    let svg = std::fs::read_to_string(out.join("sched_cost.svg")).expect("sched_cost.svg written");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("json");
    let _ = std::fs::remove_dir_all(&out);
    assert!(run.status.success(), "xlb-bench --quick failed ({}):\n{stderr}\n{md}", run.status);
    assert!(md.contains("- CPU: ") && md.contains("- Kernel: "), "machine facts at the top:\n{md}");
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "a plotted line in the SVG");
    assert_eq!(json["failed_sections"].as_array().map(Vec::len), Some(0), "{md}");
    let figs = json["figures"].as_array().expect("figures");
    let failed: Vec<String> = figs
        .iter()
        .filter(|f| f["proof_ok"] != true)
        .map(|f| format!("{}: {}", f["name"], f["proof"]))
        .collect();
    assert!(failed.is_empty(), "figures that failed their path proof:\n{}", failed.join("\n"));
    let names: Vec<&str> = figs.iter().filter_map(|f| f["name"].as_str()).collect();
    let has = |s: &str| names.iter().any(|n| n.contains(s));
    for want in [
        "empty XDP program",
        "DR established, hot",
        "DR established, spread",
        "TUN established, hot",
        "TUN established, spread",
        "NAT request established, hot",
        "NAT request established, spread",
        "NAT reply established, hot",
        "NAT reply established, spread",
        "non-VIP packet",
        "IPv6 DR established, hot",
        "IPv6 DR established, spread",
        "IPv6 TUN established, hot",
        "IPv6 NAT request established, hot",
        "IPv6 NAT reply established, spread",
        "IPv6 non-VIP packet",
        "IPv6 new connection (TCP SYN, DR), rr at 2 servers",
        "xlb DR",
        "xlb TUN",
        "xlb NAT",
        "nftables DNAT",
        "new connections: xlb DR",
        "new connections: kernel forwarding + nftables DNAT",
        "lbadm -R",
        "lbadm -Ln of",
        "lbadm -Ln --stats",
        "one DR/TUN connection",
        "one NAT connection",
    ] {
        assert!(has(want), "no figure named like {want:?} in {names:#?}");
    }
    for (s, _) in SCHED_NAMES {
        assert!(has(&format!("{s} at 2 servers")), "no new-connection figure for {s}");
        for n in [2, 16, 256, 1024] {
            assert!(has(&format!("new connection, {s}, {n} real servers")), "no scheduling figure for {s} at {n}");
        }
    }
    assert!(figs.iter().all(|f| f["proof_ok"] != true || f["median"].is_number()), "every proven figure has a value");
    // The summary: one line per goal of issue 14.
    assert!(md.contains("## Summary"), "{md}");
    for (_, text) in xlb_tests::bench::report::GOALS {
        assert!(md.contains(&format!("| {text} |")), "no summary line for {text:?}");
    }
    // Section 6: every program named, on this kernel, with both counts.
    let progs = json["programs"].as_array().expect("programs");
    let kernel = lb_user::features::kernel_release();
    for name in xlb_tests::bench::progs::PROGRAMS {
        assert!(
            progs.iter().any(|p| p["program"] == name && p["kernel"] == kernel.as_str() && p["xlated"].is_number() && p["verified"].is_number()),
            "no counts of {name} on {kernel}: {progs:?}"
        );
    }
}
