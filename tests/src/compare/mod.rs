//! `xlb-compare-ipvs`: runs scenarios (ipvsadm lines, connections, waits) through kernel IPVS
//! and through xlb in two identical labs of the same kernel, step by step and side by side, and
//! reports every difference: exit codes and output of each ipvsadm line, the real server each
//! connection reached, and at each `compare` the listings (see [`diff`] for the tolerances).
pub mod diff;
pub mod scenario;
pub mod side;

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use scenario::{Proto, Scenario, Step};
use side::{CmdOut, Kind, Side};

/// The outcome of one scenario.
pub struct Outcome {
    pub name: String,
    pub checks: u32,
    pub differences: Vec<String>,
    /// Why the scenario did not run here (e.g. a scheduler this kernel lacks).
    pub skipped: Option<String>,
    pub secs: f64,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Scenario files of `dir` (`*.scn`), sorted; only `names` when not empty.
pub fn find(dir: &Path, names: &[String]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut all: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    all.sort();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|p| p.file_stem().is_some_and(|s| s == n.as_str()))
                .cloned()
                .with_context(|| format!("no scenario {n} in {}", dir.display()))
        })
        .collect()
}

/// Runs `f` on both sides at once (each on a thread of its own); the IPVS side's result first.
fn both<T: Send>(
    ipvs: &mut Side,
    xlb: &mut Side,
    f: impl Fn(&mut Side) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<(T, T)> {
    std::thread::scope(|s| {
        let a = s.spawn(|| f(ipvs));
        let b = s.spawn(|| f(xlb));
        let a = a.join().map_err(|_| anyhow::anyhow!("the IPVS side panicked"))?;
        let b = b.join().map_err(|_| anyhow::anyhow!("the xlb side panicked"))?;
        Ok((a?, b?))
    })
}

/// How long a `compare` waits after the last traffic: IPVS's listed counters are what its
/// estimator last summed from the per-CPU counters, every 2 s; xlb's are live. Waiting one tick
/// (and a half for TCG's slowness) compares the same traffic on both.
const STATS_SETTLE: std::time::Duration = std::time::Duration::from_millis(2500);

/// The listings a `compare` step reads.
const LISTINGS: &[&[&str]] = &[&["-Lnc"], &["-Ln"], &["-Ln", "--stats"], &["-Ln", "--rate"]];

/// The two labs, built once for a run (building one takes a minute or more under TCG, most
/// of it the verifier checking xlb's programs).
pub struct Labs {
    pub ipvs: Side,
    pub xlb: Side,
    /// Whether the last scenario set MARK rules (the next one starts without them).
    marks: bool,
}

impl Labs {
    pub fn new() -> anyhow::Result<Labs> {
        let (ipvs, xlb) = std::thread::scope(|s| {
            let a = s.spawn(|| Side::new(Kind::Ipvs));
            let b = s.spawn(|| Side::new(Kind::Xlb));
            (a.join(), b.join())
        });
        let ipvs = ipvs.map_err(|_| anyhow::anyhow!("building the IPVS lab panicked"))?.context("cannot build the IPVS lab")?;
        let xlb = xlb.map_err(|_| anyhow::anyhow!("building the xlb lab panicked"))?.context("cannot build the xlb lab")?;
        println!("labs up (ipvs: {}; xlb: {})", ipvs.setup, xlb.setup);
        Ok(Labs { ipvs, xlb, marks: false })
    }
}

/// The run's source-port counter: every connection of a run has a port of its own (unless a
/// scenario names one), so no connection meets an entry of an earlier scenario.
pub struct Ports(u16);

impl Default for Ports {
    fn default() -> Ports {
        Ports(scenario::FIRST_SPORT)
    }
}

pub fn run(labs: &mut Labs, ports: &mut Ports, sc: &Scenario) -> Outcome {
    let t0 = Instant::now();
    let mut out = Outcome { name: sc.name.clone(), checks: 0, differences: Vec::new(), skipped: None, secs: 0.0 };
    if let Some(m) = sc.modules.iter().find(|m| !side::has_module(m)) {
        out.skipped = Some(format!("this kernel has no {m}"));
        return out;
    }
    let marks = labs.marks;
    let reset = both(&mut labs.ipvs, &mut labs.xlb, |s| s.reset(marks));
    labs.marks = sc.lines.iter().any(|l| matches!(l.step, Step::Iptables(_)));
    if let Err(e) = reset.and_then(|_| run_steps(labs, ports, sc, &mut out)) {
        out.differences.push(format!("the scenario could not run: {e:#}"));
    }
    out.secs = t0.elapsed().as_secs_f64();
    out
}

fn run_steps(labs: &mut Labs, ports: &mut Ports, sc: &Scenario, out: &mut Outcome) -> anyhow::Result<()> {
    let (ipvs, xlb) = (&mut labs.ipvs, &mut labs.xlb);
    let mut last_traffic = Instant::now();
    // The clients' traffic so far: each compare measures the scenario's from here.
    let traffic0 = both(ipvs, xlb, |s| s.client_traffic())?;
    let vips: Vec<String> = sc.vips.iter().map(|v| v.to_string()).collect();
    for line in &sc.lines {
        let at = format!("line {} `{}`", line.no, line.text);
        match &line.step {
            Step::Ipvsadm(args) => {
                let (a, b) = both(ipvs, xlb, |s| s.ipvsadm(&args.iter().map(String::as_str).collect::<Vec<_>>()))?;
                check_cmd(out, &at, &a, &b);
            }
            Step::Iptables(args) => {
                let (a, b) = both(ipvs, xlb, |s| s.iptables(&args.iter().map(String::as_str).collect::<Vec<_>>()))?;
                check_cmd(out, &at, &a, &b);
            }
            Step::Connect { proto, client, vip, port, count, keep, sport } => {
                let mut picks = (Vec::new(), Vec::new());
                for _ in 0..*count {
                    let sp = match sport {
                        Some(p) => *p,
                        None => {
                            ports.0 = ports.0.checked_add(1).context("the run used every source port")?;
                            ports.0 - 1
                        }
                    };
                    let (a, b) = both(ipvs, xlb, |s| match proto {
                        Proto::Tcp => s.connect_tcp(*client, sp, *vip, *port, *keep),
                        Proto::Udp => s.query_udp(*client, sp, *vip, *port),
                    })?;
                    picks.0.push(a);
                    picks.1.push(b);
                }
                last_traffic = Instant::now();
                out.checks += 1;
                if picks.0 != picks.1 {
                    out.differences.push(format!(
                        "{at}: the connections reached different real servers\n  ipvs: {}\n  xlb:  {}\n",
                        picks.0.join(" "),
                        picks.1.join(" ")
                    ));
                } else {
                    println!("  {}: {at}: {}", sc.name, picks.0.join(" "));
                }
            }
            Step::Close => {
                both(ipvs, xlb, |s| {
                    s.close_kept();
                    Ok(())
                })?;
                last_traffic = Instant::now();
            }
            Step::Wait(secs) => std::thread::sleep(std::time::Duration::from_secs_f64(*secs)),
            Step::Compare => {
                std::thread::sleep(STATS_SETTLE.saturating_sub(last_traffic.elapsed()));
                let (a, b) = both(ipvs, xlb, |s| s.ipvsadm_many(LISTINGS))?;
                let (ta_, tb_) = both(ipvs, xlb, |s| s.client_traffic())?;
                let slack = diff::StatsSlack::between(ta_.since(traffic0.0), tb_.since(traffic0.1));
                for ((args, (a, ta)), (b, tb)) in LISTINGS.iter().zip(&a).zip(&b) {
                    out.checks += 1;
                    let what = format!("{at}: ipvsadm {}", args.join(" "));
                    let d = match args {
                        [_, "--rate"] if a.code == b.code => diff::rates(&a.stdout, &b.stdout),
                        [_, "--stats"] if a.code == b.code && a.stderr == b.stderr => diff::stats(&a.stdout, &b.stdout, &slack),
                        ["-Lnc"] if a.code == b.code => {
                            // Each side read its table at some moment while its listing ran.
                            let slack = diff::EXPIRE_SLACK + ta.max(tb).as_secs_f64().ceil() as i64;
                            diff::connections(&only_vips(&a.stdout, &vips), &only_vips(&b.stdout, &vips), slack)
                        }
                        _ => cmd_diff(&what, a, b),
                    };
                    if let Some(d) = d {
                        out.differences.push(format!("{what}: {d}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `-Lnc` without the rows of other scenarios (their VIPs): the header and this scenario's rows.
fn only_vips(listing: &str, vips: &[String]) -> String {
    listing
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            *i < 2
                || l.split_whitespace().nth(4).and_then(|v| v.rsplit_once(':')).is_some_and(|(a, _)| vips.iter().any(|x| x == a))
        })
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

fn check_cmd(out: &mut Outcome, at: &str, a: &CmdOut, b: &CmdOut) {
    out.checks += 1;
    if let Some(d) = cmd_diff(at, a, b) {
        out.differences.push(d);
    }
}

/// Exit code, stdout and stderr, byte for byte.
fn cmd_diff(what: &str, a: &CmdOut, b: &CmdOut) -> Option<String> {
    let mut s = String::new();
    if a.code != b.code {
        s += &format!("{what}: exit code: ipvs {:?}, xlb {:?}\n", a.code, b.code);
    }
    if let Some(d) = diff::exact(&format!("{what}: stdout"), &a.stdout, &b.stdout) {
        s += &d;
    }
    if let Some(d) = diff::exact(&format!("{what}: stderr"), &a.stderr, &b.stderr) {
        s += &d;
    }
    (!s.is_empty()).then_some(s)
}
