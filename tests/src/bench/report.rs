//! The report: markdown table (printed and written), JSON (for the quick-bench test), and the
//! scheduling-cost plot as a hand-written SVG.
use std::{fmt::Write as _, path::Path};

use super::{Figure, Results, progs};

/// The issue's goals (issue 14, "Per-packet cost"): key (`Figure::goal`), wording.
pub const GOALS: [(&str, &str); 9] = [
    ("pass", "not for a service → kernel ≤ 15 ns, NAT and fwmark services configured"),
    ("new-cheap", "new connection ≤ 215 ns: rr, wrr, sh, dh, mh at 2 servers"),
    ("new-other", "new connection ≤ 430 ns: every other scheduler at 2 servers"),
    ("new-scale", "lc wlc sed nq fo ovf at 256 and 1024 servers ≤ 1.5× their own 2-server figure"),
    ("est-hot", "established, one hot flow ≤ 38 ns (DR, TUN, NAT request)"),
    ("est-spread", "established, spread over 20,000 flows ≤ 116 ns (DR, TUN, NAT request)"),
    ("nat-reply", "NAT replies ≤ 1.2× the NAT request figure of the same kind"),
    ("verifier", "every program ≤ 300,000 verifier-processed instructions on each kernel of the matrix"),
    ("e2e", "end to end on one core ≥ 4× nftables DNAT (DR, TUN, NAT)"),
];

fn check_value(v: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{v:.2}×"),
        "insns" => format!("{v:.0} insns"),
        u => num(v, u),
    }
}

/// One line per goal: the worst figure counted toward it and whether the goal is met.
fn summary(res: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Summary: the issue's goals
");
    let _ = writeln!(s, "| goal | figures | worst figure | worst value | met |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (key, text) in GOALS {
        if key == "verifier" {
            let _ = writeln!(s, "{}", verifier_summary(res, text));
            continue;
        }
        let figs: Vec<&Figure> = res.figures.iter().filter(|f| f.goal == Some(key)).collect();
        let unproven: Vec<&&Figure> = figs.iter().filter(|f| f.proof.is_err() || f.check.is_none()).collect();
        let checked: Vec<(&Figure, &super::Check)> =
            figs.iter().filter(|f| f.proof.is_ok()).filter_map(|f| f.check.as_ref().map(|c| (*f, c))).collect();
        // Worst: the farthest on the wrong side of its limit (relative), else the closest to it.
        let worst = checked.iter().max_by(|a, b| {
            let m = |c: &super::Check| if c.at_least { c.limit / c.value } else { c.value / c.limit };
            m(a.1).total_cmp(&m(b.1))
        });
        let (wname, wval) = match worst {
            Some((f, c)) => (f.name.clone(), check_value(c.value, &c.unit)),
            None => ("—".to_string(), "—".to_string()),
        };
        let met = if figs.is_empty() {
            "not measured in this run".to_string()
        } else if !unproven.is_empty() {
            format!("NOT met ({} figure(s) NOT REPORTED)", unproven.len())
        } else if checked.iter().all(|(_, c)| c.met()) {
            "met".to_string()
        } else {
            format!("NOT met ({} of {} figures over)", checked.iter().filter(|(_, c)| !c.met()).count(), checked.len())
        };
        let _ = writeln!(s, "| {text} | {} | {wname} | {wval} | {met} |", figs.len());
    }
    let _ = writeln!(s);
    s
}

fn verifier_summary(res: &Results, text: &str) -> String {
    let counted: Vec<&progs::ProgCount> = res.programs.iter().filter(|p| p.verified.is_some()).collect();
    let absent = res.programs.iter().filter(|p| p.verified.is_none()).count();
    let worst = counted.iter().max_by_key(|p| p.verified);
    let (wname, wval) = match worst {
        Some(p) => (format!("{} on {}", p.program, p.kernel), format!("{} insns", p.verified.unwrap_or(0))),
        None => ("—".to_string(), "—".to_string()),
    };
    let over = counted.iter().filter(|p| p.verified.unwrap_or(0) > progs::VERIFIER_TARGET).count();
    let mut kernels: Vec<&str> = Vec::new();
    for p in &res.programs {
        if !kernels.contains(&p.kernel.as_str()) {
            kernels.push(&p.kernel);
        }
    }
    let met = if res.programs.is_empty() {
        "not measured in this run".to_string()
    } else if over > 0 {
        format!("NOT met ({over} program(s) over)")
    } else if absent > 0 {
        format!("NOT met ({absent} program/kernel count(s) missing)")
    } else {
        let mut m = if res.kernels_missing.is_empty() {
            "met".to_string()
        } else {
            let missing: Vec<&str> = res.kernels_missing.iter().map(|(k, _)| k.as_str()).collect();
            format!("met on {}; not known for {} (not run)", kernels.join(", "), missing.join(", "))
        };
        let mut stale: Vec<&str> = res.programs.iter().filter(|p| p.stale).map(|p| p.kernel.as_str()).collect();
        stale.dedup();
        if !stale.is_empty() {
            m.push_str(&format!(" (counts of {} from a matrix log older than the last data-plane commit)", stale.join(", ")));
        }
        m
    };
    format!("| {text} | {} | {wname} | {wval} | {met} |", counted.len())
}

fn programs_table(res: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## 6. Program size and verifier work
");
    let _ = writeln!(
        s,
        "| kernel | program | instructions (xlated) | bpftool prog dump xlated | verifier-processed instructions | target | source |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for p in &res.programs {
        let x = p.xlated.map(|v| v.to_string()).unwrap_or_else(|| "—".to_string());
        let b = p.bpftool.map(|v| v.to_string()).unwrap_or_else(|| "—".to_string());
        let (v, t) = match p.verified {
            Some(v) => (
                v.to_string(),
                format!("≤ {}: {}", progs::VERIFIER_TARGET, if v <= progs::VERIFIER_TARGET { "met" } else { "NOT met" }),
            ),
            None => ("absent".to_string(), "NOT met (no count)".to_string()),
        };
        let _ = writeln!(s, "| {} | {} | {x} | {b} | {v} | {t} | {} |", p.kernel, p.program, p.source);
    }
    for (k, why) in &res.kernels_missing {
        let _ = writeln!(s, "| {k} | (every program) | — | — | — | not run | {why} |");
    }
    let _ = writeln!(s);
    s
}

/// Order of the rows of section 1 (figures arrive in the order their sections ran).
fn rank(f: &Figure) -> u8 {
    let n = f.name.as_str();
    if n.starts_with("empty") {
        0
    } else if n.contains("established") {
        1
    } else if n.starts_with("new connection") {
        2
    } else {
        3
    }
}

fn num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "—".to_string();
    }
    let s = match unit {
        "ns" | "B" => format!("{v:.1}"),
        "Mpps" | "Mconn/s" => format!("{v:.3}"),
        "ms" => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    };
    format!("{s} {unit}")
}

fn row(f: &Figure) -> String {
    match &f.proof {
        Ok(p) => format!(
            "| {} | {} | {} – {} | {} | {} | {} | {} | ✓ {} |",
            f.name,
            num(f.median, f.unit),
            num(f.min, ""),
            num(f.max, "").trim(),
            f.runs,
            f.baseline.as_ref().map(|(l, v)| format!("{} ({l})", num(*v, f.unit))).unwrap_or_else(|| "—".into()),
            f.ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into()),
            f.target.clone().unwrap_or_default(),
            p,
        ),
        Err(e) => format!("| {} | NOT REPORTED | | | | | | ✗ path proof failed: {e} |", f.name),
    }
}

pub fn markdown(res: &Results, facts: &[(String, String)], quick: bool, wall_s: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# xlb benchmark{}\n", if quick { " (--quick: small version)" } else { "" });
    for (k, v) in facts {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(s, "- Run: {} s wall, figures pinned to CPU {}\n", wall_s.round(), super::bench_cpu());
    s.push_str(&summary(res));
    let sections = [
        ("per-packet", "1. Per-packet cost (BPF_PROG_TEST_RUN, net of the empty program)"),
        ("per-packet IPv6", "1b. Per-packet cost over IPv6 (the same paths; IPv4 figure of this run beside each)"),
        ("scheduling", "2. New-connection cost against the number of real servers"),
        ("factors", "2b. What a new connection's cost depends on (why sections 1 and 2 used to disagree)"),
        ("e2e", "3. Forwarding rate end to end, one core"),
        ("control", "4. Control plane (release lbadm)"),
        ("memory", "5. Memory per tracked connection"),
        ("programs", ""),
        ("sync", "7. What a running sync master costs the per-packet path (issue 17)"),
    ];
    for (key, title) in sections {
        if key == "programs" {
            if !res.programs.is_empty() || !res.kernels_missing.is_empty() {
                s.push_str(&programs_table(res));
            }
            for (k, e) in &res.failed_sections {
                if k == key {
                    let _ = writeln!(s, "## 6. Program size and verifier work\n\nNOT REPORTED: {e}\n");
                }
            }
            continue;
        }
        let mut figs: Vec<&Figure> = res.figures.iter().filter(|f| f.section == key).collect();
        if key == "per-packet" {
            figs.sort_by_key(|f| rank(f));
        }
        if figs.is_empty() && !res.failed_sections.iter().any(|(k, _)| k == key) {
            continue;
        }
        let _ = writeln!(s, "## {title}\n");
        let _ = writeln!(s, "| figure | median | min – max | runs | baseline (same run) | ratio | target | path proof |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for f in figs {
            let _ = writeln!(s, "{}", row(f));
        }
        for (k, e) in &res.failed_sections {
            if k == key {
                let _ = writeln!(s, "| (section failed) | NOT REPORTED | | | | | | ✗ {e} |");
            }
        }
        let _ = writeln!(s);
    }
    if !res.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &res.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

pub fn json(res: &Results, quick: bool) -> serde_json::Value {
    let figs: Vec<serde_json::Value> = res
        .figures
        .iter()
        .map(|f| {
            serde_json::json!({
                "section": f.section,
                "name": f.name,
                "unit": f.unit,
                "median": if f.median.is_finite() { Some(f.median) } else { None },
                "min": if f.min.is_finite() { Some(f.min) } else { None },
                "max": if f.max.is_finite() { Some(f.max) } else { None },
                "runs": f.runs,
                "baseline": f.baseline.as_ref().map(|(l, v)| serde_json::json!({"label": l, "value": v})),
                "ratio": f.ratio,
                "target": f.target,
                "proof_ok": f.proof.is_ok(),
                "proof": match &f.proof { Ok(p) => p.clone(), Err(e) => e.clone() },
            })
        })
        .collect();
    serde_json::json!({
        "quick": quick,
        "figures": figs,
        "failed_sections": res.failed_sections.iter().map(|(k, e)| serde_json::json!({"section": k, "error": e})).collect::<Vec<_>>(),
        "notes": res.notes,
        "programs": res.programs.iter().map(|p| serde_json::json!({
            "kernel": p.kernel, "program": p.program, "source": p.source,
            "xlated": p.xlated, "bpftool_xlated": p.bpftool, "verified": p.verified, "stale": p.stale,
        })).collect::<Vec<_>>(),
        "kernels_missing": res.kernels_missing.iter().map(|(k, w)| serde_json::json!({"kernel": k, "why": w})).collect::<Vec<_>>(),
    })
}

/// Scheduling cost (ns) against the number of real servers (log scale), one line per scheduler
/// with min–max bars.
pub fn sched_svg(points: &[(String, u32, f64, f64, f64)], facts: &[(String, String)]) -> String {
    let (w, h) = (720.0, 440.0);
    let (l, r, t, b) = (70.0, 160.0, 50.0, 60.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let xs: Vec<u32> = super::packet::SCHED_SIZES.to_vec();
    let lx = |n: u32| {
        let (a, z) = ((xs[0] as f64).log2(), (*xs.last().unwrap_or(&2) as f64).log2());
        l + ((n as f64).log2() - a) / (z - a).max(1e-9) * pw
    };
    let ymax = points.iter().map(|p| p.4).fold(10.0_f64, f64::max) * 1.15;
    let ymax = (ymax / 50.0).ceil() * 50.0;
    let ly = |v: f64| t + ph - (v.max(0.0) / ymax) * ph;
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let cpu = facts.iter().find(|(k, _)| k == "CPU").map(|(_, v)| v.as_str()).unwrap_or("");
    let _ = writeln!(s, r#"<text x="{l}" y="22" font-size="14">New-connection cost vs real servers (BPF_PROG_TEST_RUN, net of empty program)</text>"#);
    let _ = writeln!(s, r##"<text x="{l}" y="38" fill="#555">{}</text>"##, xml(cpu));
    // Axes and grid.
    let steps = 5;
    for i in 0..=steps {
        let v = ymax * i as f64 / steps as f64;
        let y = ly(v);
        let _ = writeln!(s, r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, l + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"#, l - 6.0, y + 4.0);
    }
    for &n in &xs {
        let x = lx(n);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/>"##, t + ph);
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"#, t + ph + 16.0);
    }
    let _ = writeln!(s, r#"<line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#, t + ph, l + pw, t + ph);
    let _ = writeln!(s, r#"<line x1="{l}" y1="{t}" x2="{l}" y2="{:.1}" stroke="black"/>"#, t + ph);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">real servers (log scale)</text>"#, l + pw / 2.0, h - 18.0);
    let _ = writeln!(s, r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">ns per new connection</text>"#, t + ph / 2.0);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
    let mut names: Vec<&str> = Vec::new();
    for p in points {
        if !names.contains(&p.0.as_str()) {
            names.push(&p.0);
        }
    }
    for (i, name) in names.iter().enumerate() {
        let c = colors[i % colors.len()];
        let mut pts: Vec<&(String, u32, f64, f64, f64)> = points.iter().filter(|p| p.0 == *name).collect();
        pts.sort_by_key(|p| p.1);
        let line: Vec<String> = pts.iter().map(|p| format!("{:.1},{:.1}", lx(p.1), ly(p.2))).collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, line.join(" "));
        for p in &pts {
            let x = lx(p.1);
            let _ = writeln!(s, r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{c}"/>"#, ly(p.3), ly(p.4));
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{} @ {}: {:.1} ns ({:.1}–{:.1})</title></circle>"#, ly(p.2), xml(name), p.1, p.2, p.3, p.4);
            let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" fill="{c}" font-size="10">{:.0}</text>"#, x + 5.0, ly(p.2) - 6.0, p.2);
        }
        let ly0 = t + 10.0 + i as f64 * 18.0;
        let _ = writeln!(s, r#"<line x1="{:.1}" y1="{ly0:.1}" x2="{:.1}" y2="{ly0:.1}" stroke="{c}" stroke-width="2"/>"#, l + pw + 15.0, l + pw + 40.0);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, l + pw + 46.0, ly0 + 4.0, xml(name));
    }
    if names.is_empty() {
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no figure passed its path proof</text>"#, l + pw / 2.0, t + ph / 2.0);
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn write_all(dir: &Path, md: &str, json: &serde_json::Value, svg: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), md)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(json)?)?;
    std::fs::write(dir.join("sched_cost.svg"), svg)?;
    Ok(())
}
