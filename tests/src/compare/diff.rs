//! What `compare` checks between the two sides' listings, and with which tolerances.
//!
//! - `-Ln` and `-Ln --stats`: byte for byte (both sides carried the same packets).
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
    fn exact_shows_a_line_diff() {
        assert_eq!(exact("x", "a\nb\n", "a\nb\n"), None);
        let d = exact("x", "a\nb\n", "a\nc\n").expect("differs");
        assert!(d.contains("  - b\n  + c\n"), "{d}");
    }
}
