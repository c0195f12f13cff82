//! The scenario format of `xlb-compare-ipvs`: one step per line, `#` starts a comment.
//!
//! ```text
//! ipvsadm ARGS...                          # run as /usr/sbin/ipvsadm on one side, lbadm on the other
//! iptables ARGS...                         # in the director's namespace on both sides
//! connect tcp|udp CLIENT VIP:PORT [N] [keep] [sport=P]
//! close                                    # closes the connections kept open so far
//! wait SECS
//! compare                                  # -Ln, -Ln --stats, -Lnc, --rate of both sides now
//! requires module NAME                     # skip the scenario (with the reason) where modprobe NAME fails
//! ```
//!
//! `$VIP` and `$VIP2` stand for the scenario's two virtual addresses: every scenario of a run has
//! its own (the labs are shared).
//!
//! A connection's source port is `sport=P` when given, else the next of the scenario's counter
//! (the same on both sides), so `-Lnc` rows and source-hashing schedulers see the same tuples.
use std::{net::Ipv4Addr, path::Path};

use anyhow::{Context as _, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Ipvsadm(Vec<String>),
    Iptables(Vec<String>),
    Connect { proto: Proto, client: Ipv4Addr, vip: Ipv4Addr, port: u16, count: u32, keep: bool, sport: Option<u16> },
    Close,
    Wait(f64),
    Compare,
}

/// A step with the line it came from (for messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub no: usize,
    pub text: String,
    pub step: Step,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub lines: Vec<Line>,
    /// Kernel modules the scenario needs (`requires module NAME`).
    pub modules: Vec<String>,
    /// Its virtual addresses (`-Lnc` rows of other addresses belong to other scenarios).
    pub vips: Vec<Ipv4Addr>,
}

/// The first port of the run's source-port counter (ports below it are for `sport=P`).
pub const FIRST_SPORT: u16 = 40000;

/// Reads scenario `path` with `$VIP` and `$VIP2` standing for `vips`.
pub fn load(path: &Path, vips: (Ipv4Addr, Ipv4Addr)) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.replace("$VIP2", &vips.1.to_string()).replace("$VIP", &vips.0.to_string());
    let name = path.file_stem().and_then(|s| s.to_str()).context("scenario file without a name")?.to_string();
    let mut sc = parse(&name, &path.display().to_string(), &text)?;
    sc.vips = vec![vips.0, vips.1];
    Ok(sc)
}

/// Parses scenario `name` from `text`; errors name `file` and the line.
pub fn parse(name: &str, file: &str, text: &str) -> anyhow::Result<Scenario> {
    let mut sc = Scenario { name: name.to_string(), lines: Vec::new(), modules: Vec::new(), vips: Vec::new() };
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let words: Vec<&str> = body.split_whitespace().collect();
        let step = match parse_words(&words) {
            Ok(Some(step)) => step,
            Ok(None) => {
                // `requires module NAME`
                sc.modules.push(words[2].to_string());
                continue;
            }
            Err(e) => bail!("{file}:{no}: {e:#}: {body}"),
        };
        sc.lines.push(Line { no, text: body.to_string(), step });
    }
    if !sc.lines.iter().any(|l| l.step == Step::Compare) {
        bail!("{file}: no `compare` step: the scenario would check only the picks");
    }
    Ok(sc)
}

fn parse_words(w: &[&str]) -> anyhow::Result<Option<Step>> {
    let rest = || w[1..].iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Ok(Some(match w[0] {
        "ipvsadm" => Step::Ipvsadm(rest()),
        "iptables" => Step::Iptables(rest()),
        "close" if w.len() == 1 => Step::Close,
        "compare" if w.len() == 1 => Step::Compare,
        "wait" if w.len() == 2 => {
            let s: f64 = w[1].parse().with_context(|| format!("bad seconds {:?}", w[1]))?;
            if !(0.0..=600.0).contains(&s) {
                bail!("wait {s}: out of 0..600 s");
            }
            Step::Wait(s)
        }
        "requires" if w.len() == 3 && w[1] == "module" => return Ok(None),
        "connect" | "udp" | "tcp" => return parse_connect(w).map(Some),
        other => bail!("unknown step {other:?} (or wrong arguments)"),
    }))
}

/// `connect tcp|udp CLIENT VIP:PORT [N] [keep] [sport=P]`; `tcp ...`/`udp ...` are short for it.
fn parse_connect(w: &[&str]) -> anyhow::Result<Step> {
    let w = if w[0] == "connect" { &w[1..] } else { w };
    if w.len() < 3 {
        bail!("expected: connect tcp|udp CLIENT VIP:PORT [N] [keep] [sport=P]");
    }
    let proto = match w[0] {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => bail!("protocol {p:?}: tcp or udp"),
    };
    let client: Ipv4Addr = w[1].parse().with_context(|| format!("bad client address {:?}", w[1]))?;
    let (vip, port) = w[2].rsplit_once(':').with_context(|| format!("{:?}: expected VIP:PORT", w[2]))?;
    let vip: Ipv4Addr = vip.parse().with_context(|| format!("bad address {vip:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port {port:?}"))?;
    let (mut count, mut keep, mut sport) = (1, false, None);
    for opt in &w[3..] {
        if *opt == "keep" {
            keep = true;
        } else if let Some(p) = opt.strip_prefix("sport=") {
            sport = Some(p.parse().with_context(|| format!("bad source port {p:?}"))?);
        } else {
            count = opt.parse().with_context(|| format!("{opt:?}: expected a count, keep or sport=P"))?;
            if !(1..=1000).contains(&count) {
                bail!("count {count}: out of 1..1000");
            }
        }
    }
    if proto == Proto::Udp && keep {
        bail!("keep is for tcp");
    }
    if sport.is_some() && count != 1 {
        bail!("sport=P with more than one connection");
    }
    Ok(Step::Connect { proto, client, vip, port, count, keep, sport })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step() {
        let sc = parse(
            "t",
            "t.scn",
            "# c\nrequires module ip_vs_twos\nipvsadm -A -t 10.1.0.100:80 -s rr  # x\nconnect tcp 10.1.0.11 10.1.0.100:80 3 keep\n\
             udp 10.1.0.12 10.1.0.100:53 sport=41000\nwait 1.5\nclose\ncompare\n",
        )
        .expect("parse");
        assert_eq!(sc.modules, ["ip_vs_twos"]);
        let steps: Vec<&Step> = sc.lines.iter().map(|l| &l.step).collect();
        assert_eq!(steps[0], &Step::Ipvsadm(vec!["-A".into(), "-t".into(), "10.1.0.100:80".into(), "-s".into(), "rr".into()]));
        assert_eq!(
            steps[1],
            &Step::Connect {
                proto: Proto::Tcp,
                client: "10.1.0.11".parse().expect("ip"),
                vip: "10.1.0.100".parse().expect("ip"),
                port: 80,
                count: 3,
                keep: true,
                sport: None
            }
        );
        assert!(matches!(steps[2], Step::Connect { proto: Proto::Udp, sport: Some(41000), count: 1, .. }));
        assert_eq!(steps[3..], [&Step::Wait(1.5), &Step::Close, &Step::Compare]);
        assert_eq!(sc.lines[1].no, 4);
    }

    #[test]
    fn a_malformed_line_names_file_and_line() {
        let e = parse("t", "dir/t.scn", "ipvsadm -A -t 10.1.0.100:80\n\nconnect tcp 10.1.0.11 10.1.0.100 3\ncompare\n")
            .expect_err("malformed");
        let msg = format!("{e:#}");
        assert!(msg.starts_with("dir/t.scn:3: "), "{msg}");
        let e = parse("t", "t.scn", "wait soon\ncompare\n").expect_err("malformed");
        assert!(format!("{e:#}").starts_with("t.scn:1: bad seconds"), "{e:#}");
        let e = parse("t", "t.scn", "frobnicate\n").expect_err("unknown");
        assert!(format!("{e:#}").contains("t.scn:1: unknown step"), "{e:#}");
        assert!(parse("t", "t.scn", "ipvsadm -Ln\n").is_err(), "no compare step");
    }
}
