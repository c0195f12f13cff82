//! lbd's `/metrics` read by Prometheus's own tools: in the DR lab, with the data plane attached,
//! lbd checks two services (an HTTP check that passes, a connect check that fails) while a
//! client's requests go through XDP. `promtool check metrics` lints the exposition; a Prometheus
//! server in the director's namespace scrapes lbd every second; then every query of every panel
//! of `dist/grafana-xlb.json` is evaluated through Prometheus's HTTP API and must return data,
//! and a few series must hold the values the lab knows (connections made, bytes the client
//! sent as nftables counted them, the failed check's server down and quiesced).
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use xlb_tests::lab::{Lab, Mode, NftCounter, VIP, WEB1, WEB2};
use xlb_tests::lab_health::{Lbd, requests, wait_weights};
use xlb_tests::netns::{Netns, Proc};

const METRICS: &str = "127.0.0.1:9177";
const PROMETHEUS: &str = "127.0.0.1:9090";
/// What the test puts for Grafana's `$__rate_interval` (4 × the 1 s scrape interval at least).
const RATE_WINDOW: &str = "10s";

/// The lab's lbd configuration: `TCP VIP:80` checked over HTTP (both servers answer), and
/// `TCP VIP:8081` with a connect check to a port nothing listens on (down, quiesced).
fn config() -> String {
    format!(
        "checktimeout=1\ncheckinterval=1\nfailurecount=1\nquiescent=yes\n\n\
         virtual={VIP}:80\n\treal={WEB1}:80 gate 1\n\treal={WEB2}:80 gate 1\n\tservice=http\n\tscheduler=rr\n\t\
         protocol=tcp\n\tchecktype=negotiate\n\tcheckport=80\n\trequest=\"index.html\"\n\treceive=\"Welcome from\"\n\n\
         virtual={VIP}:8081\n\treal={WEB1}:8081 gate 1\n\tscheduler=rr\n\tprotocol=tcp\n\tchecktype=connect\n"
    )
}

/// `GET /metrics` in the director's namespace with `accept`: (Content-Type, body).
fn scrape(ns: &Netns, accept: &str) -> anyhow::Result<(String, String)> {
    let out = ns.exec("curl", &["-sS", "-i", "--max-time", "5", "-H", &format!("Accept: {accept}"), &format!("http://{METRICS}/metrics")])?;
    let (head, body) = out.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "scrape: {head}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string()))
        .context("no Content-Type")?;
    Ok((content_type, body.to_string()))
}

/// `promtool check metrics` on `text`: its complaints (none: clean).
fn promtool_lint(text: &str) -> anyhow::Result<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (Debian package prometheus; cargo xtask bootstrap installs it)")?;
    child.stdin.take().context("promtool stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success() || !said.trim().is_empty(), "promtool failed silently ({})", out.status);
    Ok(said.trim().to_string())
}

/// One series of a query's answer: its labels and value.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// An instant query through Prometheus's HTTP API (`/api/v1/query`), in the director's namespace.
fn query(ns: &Netns, expr: &str) -> anyhow::Result<Vec<Sample>> {
    let out = ns.exec(
        "curl",
        &["-sS", "--max-time", "5", "-G", "--data-urlencode", &format!("query={expr}"), &format!("http://{PROMETHEUS}/api/v1/query")],
    )?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))?;
    ensure!(v["status"] == "success", "{expr}: {out}");
    let result = v["data"]["result"].as_array().with_context(|| format!("{expr}: no result vector: {out}"))?;
    result
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .context("no labels")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = r["value"][1].as_str().context("no value")?.parse::<f64>()?;
            Ok(Sample { labels, value })
        })
        .collect()
}

/// The value of the one series `expr` selects.
fn value(ns: &Netns, expr: &str) -> anyhow::Result<f64> {
    let s = query(ns, expr)?;
    ensure!(s.len() == 1, "{expr}: {} series, want 1: {s:?}", s.len());
    Ok(s[0].value)
}

/// Waits until `expr` has one series whose value is `want`.
fn wait_value(ns: &Netns, expr: &str, want: f64, timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        match value(ns, expr) {
            Ok(v) if v == want => return Ok(()),
            r if t0.elapsed() > timeout => bail!("{expr}: {r:?} after {timeout:?}, want {want}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Prometheus scraping lbd every second, in `ns`, its data and log in `dir`.
fn start_prometheus(ns: &Netns, dir: &std::path::Path) -> anyhow::Result<Proc> {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lbd\n    \
             static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let child = ns
        .cmd("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot run prometheus (Debian package prometheus; cargo xtask bootstrap installs it)")?;
    Ok(Proc::from_child(child))
}

/// Every (panel title, query) of the dashboard.
fn dashboard_queries() -> anyhow::Result<Vec<(String, String, String)>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/grafana-xlb.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path)?).context("dist/grafana-xlb.json")?;
    let vars: Vec<&str> = d["templating"]["list"].as_array().context("no variables")?.iter().filter_map(|v| v["name"].as_str()).collect();
    ensure!(vars == ["datasource", "instance", "service"], "the dashboard's variables: {vars:?}");
    let mut out = Vec::new();
    for p in d["panels"].as_array().context("no panels")? {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().context("a panel without title")?;
        ensure!(p["datasource"]["uid"] == "${datasource}", "{title}: not on the datasource variable");
        let targets = p["targets"].as_array().with_context(|| format!("{title}: no targets"))?;
        ensure!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            let expr = t["expr"].as_str().with_context(|| format!("{title}: a target without expr"))?;
            let legend = t["legendFormat"].as_str().unwrap_or_default();
            out.push((title.to_string(), expr.to_string(), legend.to_string()));
        }
    }
    Ok(out)
}

/// A query as Grafana sends it with every variable on "All".
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_WINDOW).replace("$instance", ".*").replace("$service", ".*")
}

/// A query's answer for the README's table: each series named by the panel's legend (its
/// labels when it has none), `name = value; ...`.
fn describe(samples: &[Sample], legend: &str) -> String {
    let mut parts: Vec<String> = samples
        .iter()
        .map(|s| {
            let name = if legend.is_empty() {
                s.labels.iter().filter(|(k, _)| !["instance", "job"].contains(&k.as_str())).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" ")
            } else {
                s.labels.iter().fold(legend.to_string(), |l, (k, v)| l.replace(&format!("{{{{{k}}}}}"), v))
            };
            let v = if s.value.fract() == 0.0 { format!("{}", s.value) } else { format!("{:.3}", s.value) };
            if name.is_empty() { v } else { format!("{name} = {v}") }
        })
        .collect();
    parts.sort();
    parts.join("; ")
}

#[test]
fn prometheus_scrapes_lbd_and_every_dashboard_query_has_data() {
    let t0 = Instant::now();
    let lab = Lab::new("msc", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let cfg = lab.dir.join("ldirectord.cf");
    std::fs::write(&cfg, config()).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &["--metrics", METRICS], &lab.dir.join("lbd.log")).expect("lbd");
    let ns = &lab.lvs1.ns;
    wait_weights(&lab, Duration::from_secs(5), |w| w == [(WEB1.to_string(), 1), (WEB2.to_string(), 1)])
        .unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));

    // Prometheus first, so that its samples cover the traffic to come (rates need two).
    let prometheus = start_prometheus(ns, &lab.dir).expect("prometheus");
    let prom_log = || std::fs::read_to_string(lab.dir.join("prometheus.log")).unwrap_or_default();
    wait_value(ns, "up{job=\"lbd\"}", 1.0, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}\n{}", prom_log()));
    let down = "xlb_real_up{service=\"TCP 192.168.88.15:8081\",real=\"192.168.88.100:8081\"}";
    wait_value(ns, down, 0.0, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));

    // Six connections through XDP, counted by the client's nftables on the way out.
    let sent = NftCounter::output(&lab.client.ns, &format!("ip daddr {VIP} tcp dport 80")).expect("nft");
    let answers = requests(&lab, 31000, 6).expect("requests");
    assert_eq!(answers.iter().filter(|a| a.starts_with("Welcome from web")).count(), 6, "{answers:?}");
    let (pkts, bytes) = sent.read().expect("nft counters");
    let svc = "service=\"TCP 192.168.88.15:80\"";
    wait_value(ns, &format!("xlb_service_connections_total{{{svc}}}"), 6.0, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    // One more scrape after the traffic's, so every rate window holds it.
    std::thread::sleep(Duration::from_millis(1100));

    // The exposition itself: promtool's lint, the text format for curl, OpenMetrics for Prometheus.
    let (content_type, text) = scrape(ns, "*/*").expect("scrape");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let lint = promtool_lint(&text).expect("promtool");
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}\n{text}");
    let (om_type, om) = scrape(ns, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5").expect("scrape");
    assert!(om_type.starts_with("application/openmetrics-text; version=1.0.0"), "{om_type}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# UNIT xlb_check_duration_seconds seconds\n"), "{om}");

    // The HTTP server: HEAD has the head alone, other methods and paths are refused.
    let status = |args: &[&str]| {
        let mut a = vec!["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", "5"];
        a.extend_from_slice(args);
        ns.exec("curl", &a).expect("curl")
    };
    assert_eq!(status(&["-I", &format!("http://{METRICS}/metrics")]), "200 0");
    assert_eq!(status(&["-X", "POST", &format!("http://{METRICS}/metrics")]), "405 18");
    assert_eq!(status(&[&format!("http://{METRICS}/nothing")]), "404 13");

    // Values the lab knows, as Prometheus read them.
    let q = |e: &str| value(ns, e).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert_eq!(q(&format!("xlb_service_connections_total{{{svc}}}")), 6.0);
    for web in [WEB1, WEB2] {
        assert_eq!(q(&format!("xlb_real_connections_total{{{svc},real=\"{web}:80\"}}")), 3.0, "rr over two servers");
        assert_eq!(q(&format!("xlb_real_up{{{svc},real=\"{web}:80\"}}")), 1.0);
        assert_eq!(q(&format!("xlb_check_up{{{svc},real=\"{web}:80\",check_type=\"http\",check_target=\"{web}:80\"}}")), 1.0);
    }
    assert_eq!(q(&format!("xlb_service_in_packets_total{{{svc}}}")), pkts as f64, "packets the client sent");
    assert_eq!(q(&format!("xlb_service_in_bytes_total{{{svc}}}")), bytes as f64, "bytes the client sent");
    assert_eq!(q(&format!("xlb_service_out_bytes_total{{{svc}}}")), 0.0, "DR: replies never cross the director");
    assert_eq!(q(&format!("sum(xlb_real_in_packets_total{{{svc}}})")), pkts as f64);
    assert_eq!(q("xlb_real_weight{real=\"192.168.88.100:8081\"}"), 0.0, "the down server is quiesced");
    assert_eq!(q("xlb_check_up{real=\"192.168.88.100:8081\",check_type=\"connect\"}"), 0.0);
    let runs = q("xlb_check_duration_seconds_count{real=\"192.168.88.100:8081\"}");
    let failures = q("xlb_check_failures_total{real=\"192.168.88.100:8081\"}");
    assert!(runs >= 1.0 && failures == runs, "every run of the refused check failed: {failures} of {runs}");
    assert_eq!(q("xlb_check_failures_total{real=\"192.168.88.200:80\"}"), 0.0);
    assert_eq!(q("xlb_dataplane_attached_interfaces"), 1.0);
    assert_eq!(q("count(xlb_dataplane_attachment_info{interface=\"eth0\"})"), 1.0);
    // DR out of the interface it came in: every client packet to the VIP is an XDP_TX.
    assert!(q("xlb_dataplane_verdicts_total{verdict=\"tx\"}") >= pkts as f64);
    assert_eq!(q(&format!("count(xlb_lbd_build_info{{version=\"{}\"}})", env!("CARGO_PKG_VERSION"))), 1.0);

    // Every panel's every query, with the dashboard's variables on "All": data, and numbers.
    let queries = dashboard_queries().expect("dashboard");
    println!("| Panel | Query | Lab value |\n|---|---|---|");
    let mut empty = Vec::new();
    for (title, expr, legend) in &queries {
        let samples = query(ns, &as_grafana_sends(expr)).unwrap_or_else(|e| panic!("{title}: {e}"));
        if samples.is_empty() || samples.iter().any(|s| s.value.is_nan()) {
            empty.push(format!("{title}: {expr} -> {samples:?}"));
        }
        println!("| {title} | `{expr}` | {} |", describe(&samples, legend));
    }
    assert!(empty.is_empty(), "panel queries without data:\n{}\n{text}", empty.join("\n"));
    drop(prometheus);
    println!("{} panel queries evaluated; {} series in the scrape; {:?} in all", queries.len(), text.lines().filter(|l| !l.starts_with('#')).count(), t0.elapsed());
}
