//! What `compare` checks between the two sides' listings, and with which tolerances.
//!
//! - `-Ln`: byte for byte. `-Ln --stats`: byte for byte when both sides' clients sent and
//!   received the same packets with the VIPs in the scenario (counted by nftables in the
//!   client); when TCP's timers made them differ (a retransmission or an extra ACK under TCG's
//!   load), Conns still exactly and each packet and byte figure within that measured difference.
//! - `-Lnc`: rows matched as a multiset on (protocol, state, source, virtual, destination); the
//!   expire timers of matched rows within [`EXPIRE_SLACK`] seconds plus the time the slower
//!   listing took (the sides run each step at the same time, each in a thread of its own; the
//!   listings print whole seconds, and each side read its table at some moment of its listing);
//!   a row that one side lists with a timer within that slack of its end may be missing from the
//!   other side (expired there a moment earlier).
//! - `--rate`: the address columns exactly, each figure within [`rate_tolerance`].

/// Seconds two matched `-Lnc` rows' timers may differ by, besides the listings' run time.
pub const EXPIRE_SLACK: i64 = 1;

/// How far two `--rate` figures may be apart: both estimators tick every 2 s, at phases of their
/// own, and each tick moves a rate a quarter of the way to the last interval's figure; so when
/// the sides are a tick apart, the figures differ by up to a quarter of the larger one (a decay
/// step, or the last step of a rise), plus 1 for the printed integer's rounding.
pub fn rate_tolerance(a: u64, b: u64) -> u64 {
    a.max(b) / 4 + 1
}

/// Differences between two texts that must be equal, as a line diff (`-` IPVS, `+` xlb).
pub fn exact(what: &str, ipvs: &str, xlb: &str) -> Option<String> {
    if ipvs == xlb {
        return None;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (ipvs.lines().collect(), xlb.lines().collect());
    let mut s = format!("{what} differs (- ipvs, + xlb):\n");
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => s += &format!("    {x}\n"),
            (x, y) => {
                if let Some(x) = x {
                    s += &format!("  - {x}\n");
                }
                if let Some(y) = y {
                    s += &format!("  + {y}\n");
                }
            }
        }
    }
    if a == b {
        s += "  (the texts differ only in line endings or a final newline)\n";
    }
    Some(s)
}

/// How far `--stats` figures may differ: by what the two sides' clients measurably sent
/// (InPkts, InBytes) and received (OutPkts, OutBytes) differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSlack {
    pub in_pkts: u64,
    pub in_bytes: u64,
    pub out_pkts: u64,
    pub out_bytes: u64,
}

impl StatsSlack {
    pub fn between(a: super::side::Traffic, b: super::side::Traffic) -> StatsSlack {
        StatsSlack {
            in_pkts: a.sent.0.abs_diff(b.sent.0),
            in_bytes: a.sent.1.abs_diff(b.sent.1),
            out_pkts: a.received.0.abs_diff(b.received.0),
            out_bytes: a.received.1.abs_diff(b.received.1),
        }
    }
}

/// `-Ln --stats` of both sides: see the module's description.
pub fn stats(ipvs: &str, xlb: &str, slack: &StatsSlack) -> Option<String> {
    let d = exact("ipvsadm -Ln --stats", ipvs, xlb)?;
    if *slack == StatsSlack::default() {
        return Some(d);
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (ipvs.lines().collect(), xlb.lines().collect());
    let mut within = a.len() == b.len();
    for (x, y) in a.iter().zip(&b) {
        let (wx, wy): (Vec<&str>, Vec<&str>) = (x.split_whitespace().collect(), y.split_whitespace().collect());
        // A counters row: "TCP ADDR:PORT" or "-> ADDR:PORT", then Conns InPkts OutPkts InBytes OutBytes.
        let counters = wx.len() == 7 && (wx[0] == "->" || wx[2].bytes().all(|c| c.is_ascii_digit()));
        if !counters || wx.len() != wy.len() || wx[..3] != wy[..3] {
            within &= x == y;
            continue;
        }
        let limits = [slack.in_pkts, slack.out_pkts, slack.in_bytes, slack.out_bytes];
        for (i, limit) in limits.iter().enumerate() {
            let (p, q) = (figure(wx[3 + i]), figure(wy[3 + i]));
            within &= matches!((p, q), (Some(p), Some(q)) if p.abs_diff(q) <= *limit);
        }
    }
    (!within).then(|| format!("{d}  (beyond what the clients' traffic differed by: {slack:?})\n"))
}

/// One `-Lnc` row: the matched fields and the timer in seconds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ConnRow {
    key: (String, String, String, String, String),
    expire: i64,
    text: String,
}

fn conn_rows(listing: &str) -> Result<Vec<ConnRow>, String> {
    let mut rows = Vec::new();
    for l in listing.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if l.starts_with("IPVS connection entries") || w.first() == Some(&"pro") || w.is_empty() {
            continue;
        }
        let [pro, expire, state, source, virt, dest] = w[..] else {
            return Err(format!("unexpected -Lnc row {l:?}"));
        };
        let (m, s) = expire.split_once(':').ok_or_else(|| format!("bad timer in {l:?}"))?;
        let secs = m.parse::<i64>().map_err(|_| format!("bad timer in {l:?}"))? * 60
            + s.parse::<i64>().map_err(|_| format!("bad timer in {l:?}"))?;
        rows.push(ConnRow {
            key: (pro.into(), state.into(), source.into(), virt.into(), dest.into()),
            expire: secs,
            text: l.to_string(),
        });
    }
    rows.sort();
    Ok(rows)
}

/// `-Lnc` of both sides: the header lines exactly, the rows as a multiset with timers within
/// `slack` seconds.
pub fn connections(ipvs: &str, xlb: &str, slack: i64) -> Option<String> {
    let head = |t: &str| t.lines().take(2).map(str::to_string).collect::<Vec<_>>();
    if head(ipvs) != head(xlb) {
        return exact("ipvsadm -Lnc (header)", &head(ipvs).join("\n"), &head(xlb).join("\n"));
    }
    let (a, b) = match (conn_rows(ipvs), conn_rows(xlb)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(format!("ipvsadm -Lnc: {e}\n")),
    };
    let mut b_left: Vec<Option<&ConnRow>> = b.iter().map(Some).collect();
    let mut only_a = Vec::new();
    for r in &a {
        // The closest timer among the unmatched rows of the same key.
        let best = b_left
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.filter(|x| x.key == r.key).map(|x| (i, (x.expire - r.expire).abs())))
            .min_by_key(|(_, d)| *d);
        match best {
            Some((i, d)) if d <= slack => b_left[i] = None,
            _ => only_a.push(r),
        }
    }
    let mut only_b: Vec<&ConnRow> = b_left.into_iter().flatten().collect();
    // A row within `slack` of its end may be gone from one side's listing and not yet from the
    // other's.
    only_a.retain(|r| r.expire > slack);
    only_b.retain(|r| r.expire > slack);
    if only_a.is_empty() && only_b.is_empty() {
        return None;
    }
    let mut s = format!("ipvsadm -Lnc differs (timers within {slack} s; - only ipvs, + only xlb):\n");
    for r in only_a {
        s += &format!("  - {}\n", r.text);
    }
    for r in only_b {
        s += &format!("  + {}\n", r.text);
    }
    s += "  full listings:\n";
    s += &indent("ipvs", ipvs);
    s += &indent("xlb", xlb);
    Some(s)
}

fn indent(who: &str, text: &str) -> String {
    text.lines().map(|l| format!("    {who:<4}| {l}\n")).collect()
}

/// `-Ln --rate` of both sides: same lines, same words but for the figures, figures within
/// [`rate_tolerance`].
pub fn rates(ipvs: &str, xlb: &str) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (ipvs.lines().collect(), xlb.lines().collect());
    let mut bad = a.len() != b.len();
    for (x, y) in a.iter().zip(&b) {
        let (wx, wy): (Vec<&str>, Vec<&str>) = (x.split_whitespace().collect(), y.split_whitespace().collect());
        if wx.len() != wy.len() {
            bad = true;
            continue;
        }
        for (p, q) in wx.iter().zip(&wy) {
            bad |= match (figure(p), figure(q)) {
                (Some(p), Some(q)) => p.abs_diff(q) > rate_tolerance(p, q),
                _ => p != q,
            };
        }
    }
    if !bad {
        return None;
    }
    let mut s = "ipvsadm -Ln --rate differs beyond the tolerance (a quarter of the larger figure + 1):\n".to_string();
    s += &indent("ipvs", ipvs);
    s += &indent("xlb", xlb);
    Some(s)
}

/// A rate figure as ipvsadm prints it: a number, with K/M/G/T when large.
fn figure(w: &str) -> Option<u64> {
    let (num, mult) = match w.as_bytes().last()? {
        b'K' => (&w[..w.len() - 1], 1_000),
        b'M' => (&w[..w.len() - 1], 1_000_000),
        b'G' => (&w[..w.len() - 1], 1_000_000_000),
        b'T' => (&w[..w.len() - 1], 1_000_000_000_000),
        _ => (w, 1),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "IPVS connection entries\npro expire state       source             virtual            destination\n";

    #[test]
    fn connection_rows_match_as_a_multiset_with_a_second_of_slack() {
        let a = format!(
            "{HEAD}TCP 00:59  ESTABLISHED 10.1.0.11:40000 10.1.0.100:80      10.2.0.11:80\n\
             TCP 01:30  FIN_WAIT    10.1.0.11:40001 10.1.0.100:80      10.2.0.12:80\n"
        );
        let b = format!(
            "{HEAD}TCP 01:29  FIN_WAIT    10.1.0.11:40001 10.1.0.100:80      10.2.0.12:80\n\
             TCP 01:00  ESTABLISHED 10.1.0.11:40000 10.1.0.100:80      10.2.0.11:80\n"
        );
        assert_eq!(connections(&a, &b, EXPIRE_SLACK), None);
        let late = b.replace("01:29", "01:27");
        assert!(connections(&a, &late, EXPIRE_SLACK).is_some_and(|d| d.contains("- TCP 01:30")));
        let other = b.replace("10.2.0.11:80", "10.2.0.13:80");
        assert!(connections(&a, &other, EXPIRE_SLACK).is_some());
        let missing = format!("{HEAD}TCP 00:59  ESTABLISHED 10.1.0.11:40000 10.1.0.100:80      10.2.0.11:80\n");
        assert!(connections(&a, &missing, EXPIRE_SLACK).is_some());
        // About to expire: one side may have removed it already.
        let ending = format!("{HEAD}UDP 00:01  UDP         10.1.0.13:40009 10.1.0.100:53      10.2.0.12:53\n");
        assert_eq!(connections(&ending, HEAD, EXPIRE_SLACK), None);
        assert!(connections(&ending.replace("00:01", "00:02"), HEAD, EXPIRE_SLACK).is_some());
    }

    #[test]
    fn rates_within_a_quarter_plus_one() {
        let head = "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n";
        let a = format!("{head}TCP  10.1.0.100:80                       4       20        0     1200        0\n");
        let near = a.replace("1200", "1400").replace("  4 ", "  5 ");
        assert_eq!(rates(&a, &near), None);
        assert!(rates(&a, &a.replace("1200", "1700")).is_some());
        assert!(rates(&a, &a.replace("10.1.0.100:80", "10.1.0.101:80")).is_some());
        assert_eq!(figure("12K"), Some(12_000));
        assert_eq!(figure("10.1.0.100:80"), None);
    }

    #[test]
    fn stats_within_the_measured_traffic_difference() {
        let head = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n";
        let a = format!("{head}TCP  10.1.0.100:80                       8       32        0     1736        0\n  -> 10.2.0.12:80                        4       16        0      868        0\n");
        let b = a.replace("32        0     1736", "33        0     1788").replace("16        0      868", "17        0      920");
        assert_eq!(stats(&a, &a, &StatsSlack::default()), None);
        // The same traffic: exact.
        assert!(stats(&a, &b, &StatsSlack::default()).is_some());
        // One 52-byte packet more from one side's client: allowed; not two, nor another Conns.
        let one = StatsSlack { in_pkts: 1, in_bytes: 52, ..Default::default() };
        assert_eq!(stats(&a, &b, &one), None);
        assert!(stats(&a, &b.replace("33 ", "34 "), &one).is_some());
        assert!(stats(&a, &b.replace("  8  ", "  9  "), &one).is_some());
    }

    #[test]
    fn exact_shows_a_line_diff() {
        assert_eq!(exact("x", "a\nb\n", "a\nb\n"), None);
        let d = exact("x", "a\nb\n", "a\nc\n").expect("differs");
        assert!(d.contains("  - b\n  + c\n"), "{d}");
    }
}
