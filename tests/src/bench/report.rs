//! The report: markdown table (printed and written), JSON (for the quick-bench test), and the
//! scheduling-cost plot as a hand-written SVG.
use std::{fmt::Write as _, path::Path};

use super::{Figure, Results};

fn num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "—".to_string();
    }
    let s = match unit {
        "ns" | "B" => format!("{v:.1}"),
        "Mpps" => format!("{v:.3}"),
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
    let sections = [
        ("per-packet", "1. Per-packet cost (BPF_PROG_TEST_RUN, net of the empty program)"),
        ("scheduling", "2. New-connection cost against the number of real servers"),
        ("e2e", "3. Forwarding rate end to end, one core"),
        ("control", "4. Control plane (release lbadm)"),
        ("memory", "5. Memory per tracked connection"),
    ];
    for (key, title) in sections {
        let figs: Vec<&Figure> = res.figures.iter().filter(|f| f.section == key).collect();
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
