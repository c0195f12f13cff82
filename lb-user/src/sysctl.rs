//! `lbd sysctl`: IPVS's sysctls that xlb implements (`lb_common::SYSCTLS`, the forwarding ones,
//! and [`SYNC_SYSCTLS`], the sync daemon's), read and set the way
//! `sysctl net.ipv4.vs.NAME[=VALUE]` does on a director with IPVS. They live in `XLB_CONFIG`
//! with the table; a fresh table has IPVS's defaults.
use anyhow::{anyhow, bail};
use lb_common::{Config, SYSCTLS};

const PREFIX: &str = "net.ipv4.vs.";

/// The sync daemon's sysctls, IPVS's defaults in `Config::default`:
/// - sync_version (1): the message version the master sends (0: the old one, IPv4 only);
/// - sync_threshold ("3 50"): a connection is sent at its `threshold`-th client packet and then
///   every `period` packets (period 0: only at the threshold-th); `threshold < period` unless
///   the period is 0. `sync_period` is xlb's name for the second number alone;
/// - sync_refresh_period (0 s): also send when the connection's expected end moved by this much
///   since the last send (0: off);
/// - sync_retries (0, at most 3): extra sends within a refresh period.
pub const SYNC_SYSCTLS: [&str; 5] = ["sync_version", "sync_threshold", "sync_period", "sync_refresh_period", "sync_retries"];

/// The largest number of seconds a jiffies sysctl holds (an int at HZ 1000).
const MAX_SECONDS: u32 = i32::MAX as u32 / 1000;

fn known(name: &str) -> Option<&'static str> {
    SYSCTLS.iter().chain(SYNC_SYSCTLS.iter()).find(|n| **n == name).copied()
}

/// One argument: `NAME` or `net.ipv4.vs.NAME`, with `=VALUE` to set it.
fn parse(arg: &str) -> anyhow::Result<(&'static str, Option<&str>)> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (arg.trim(), None),
    };
    let short = name.strip_prefix(PREFIX).unwrap_or(name);
    let all: Vec<&str> = SYSCTLS.iter().chain(SYNC_SYSCTLS.iter()).copied().collect();
    let known = known(short).ok_or_else(|| anyhow!("unknown sysctl {name:?} (known: {})", all.join(", ")))?;
    Ok((known, value))
}

fn number(name: &str, v: &str, max: u32) -> anyhow::Result<u32> {
    match v.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => bail!("{PREFIX}{name}: invalid value {v:?} (0 to {max})"),
    }
}

/// The value `sysctl` prints (sync_threshold's two numbers tab-separated, as the kernel's
/// vector sysctls print).
fn get(cfg: &Config, name: &str) -> String {
    match name {
        "sync_version" => cfg.sync_version.to_string(),
        "sync_threshold" => format!("{}\t{}", cfg.sync_threshold, cfg.sync_period),
        "sync_period" => cfg.sync_period.to_string(),
        "sync_refresh_period" => cfg.sync_refresh_period.to_string(),
        "sync_retries" => cfg.sync_retries.to_string(),
        _ => cfg.sysctl(name).unwrap_or(0).to_string(),
    }
}

/// Sets `name` to `v` on `cfg` with IPVS's rules, or says why not (then `cfg` is unchanged).
fn set(cfg: &mut Config, name: &str, v: &str) -> anyhow::Result<()> {
    let threshold_rule = |t: u32, p: u32| {
        if p != 0 && t >= p {
            bail!("{PREFIX}sync_threshold: invalid value \"{t} {p}\" (the threshold must be below the period, or the period 0)");
        }
        Ok(())
    };
    match name {
        // IPVS leaves the old value in place for anything but 0 and 1: xlb says so instead.
        "sync_version" => cfg.sync_version = number(name, v, 1)? as u8,
        "sync_threshold" => {
            let nums: Vec<&str> = v.split_whitespace().collect();
            let [t, p] = nums[..] else { bail!("{PREFIX}{name}: invalid value {v:?} (two numbers: threshold period)") };
            let (t, p) = (number(name, t, i32::MAX as u32)?, number(name, p, i32::MAX as u32)?);
            threshold_rule(t, p)?;
            (cfg.sync_threshold, cfg.sync_period) = (t, p);
        }
        "sync_period" => {
            let p = number(name, v, i32::MAX as u32)?;
            threshold_rule(cfg.sync_threshold, p)?;
            cfg.sync_period = p;
        }
        "sync_refresh_period" => cfg.sync_refresh_period = number(name, v, MAX_SECONDS)?,
        "sync_retries" => cfg.sync_retries = number(name, v, 3)? as u8,
        _ => {
            cfg.set_sysctl(name, number(name, v, Config::sysctl_max(name))?);
        }
    }
    Ok(())
}

/// Applies `args` to `cfg` (all checked before any is set) and returns the lines to print, as
/// sysctl does: `net.ipv4.vs.NAME = VALUE` for each argument, or for every sysctl without any
/// (sync_period aside: sync_threshold shows it).
pub fn apply(cfg: &mut Config, args: &[String]) -> anyhow::Result<Vec<String>> {
    let parsed = args.iter().map(|a| parse(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut trial = *cfg;
    for (n, v) in &parsed {
        if let Some(v) = v {
            set(&mut trial, n, v)?;
        }
    }
    *cfg = trial;
    let mut out = Vec::new();
    if parsed.is_empty() {
        for n in SYSCTLS.iter().chain(SYNC_SYSCTLS.iter()).filter(|n| **n != "sync_period") {
            out.push(format!("{PREFIX}{n} = {}", get(cfg, n)));
        }
    }
    for (n, _) in parsed {
        out.push(format!("{PREFIX}{n} = {}", get(cfg, n)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: &mut Config, args: &[&str]) -> anyhow::Result<Vec<String>> {
        apply(cfg, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_are_ipvs_defaults() {
        let mut c = Config::default();
        assert_eq!(
            run(&mut c, &[]).expect("list"),
            [
                "net.ipv4.vs.conn_reuse_mode = 1",
                "net.ipv4.vs.expire_nodest_conn = 0",
                "net.ipv4.vs.expire_quiescent_template = 0",
                "net.ipv4.vs.sloppy_tcp = 0",
                "net.ipv4.vs.lblcr_expiration = 86400",
                "net.ipv4.vs.sync_version = 1",
                "net.ipv4.vs.sync_threshold = 3\t50",
                "net.ipv4.vs.sync_refresh_period = 0",
                "net.ipv4.vs.sync_retries = 0"
            ]
        );
    }

    #[test]
    fn set_and_read_back_with_or_without_prefix() {
        let mut c = Config::default();
        let out = run(&mut c, &["net.ipv4.vs.expire_nodest_conn=1", "sloppy_tcp = 1", "conn_reuse_mode"]).expect("set");
        assert_eq!(
            out,
            ["net.ipv4.vs.expire_nodest_conn = 1", "net.ipv4.vs.sloppy_tcp = 1", "net.ipv4.vs.conn_reuse_mode = 1"]
        );
        assert_eq!((c.expire_nodest_conn, c.sloppy_tcp), (1, 1));
        let out = run(&mut c, &["net.ipv4.vs.lblcr_expiration=2"]).expect("set");
        assert_eq!((out[0].as_str(), c.lblcr_expiration), ("net.ipv4.vs.lblcr_expiration = 2", 2));
    }

    #[test]
    fn a_bad_argument_changes_nothing() {
        let mut c = Config::default();
        for bad in [&["sloppy_tcp=1", "expire_nodest_conn=2"][..], &["sloppy_tcp=1", "am_droprate=3"], &["sloppy_tcp=x"], &["conn_reuse_mode=4"], &["sloppy_tcp=-1"], &["lblcr_expiration=2147484"], &["lblcr_expiration=1.5"]] {
            assert!(run(&mut c, bad).is_err(), "{bad:?}");
            assert_eq!(c, Config::default(), "{bad:?} changed the config");
        }
        let e = run(&mut c, &["foo"]).expect_err("unknown");
        assert_eq!(format!("{e}"), "unknown sysctl \"foo\" (known: conn_reuse_mode, expire_nodest_conn, expire_quiescent_template, sloppy_tcp, lblcr_expiration, sync_version, sync_threshold, sync_period, sync_refresh_period, sync_retries)");
    }

    #[test]
    fn sync_sysctls_with_ipvs_rules() {
        let mut c = Config::default();
        let out = run(&mut c, &["sync_threshold=5 100", "net.ipv4.vs.sync_version=0", "sync_retries=3", "sync_refresh_period=30"]).expect("set");
        assert_eq!(
            out,
            [
                "net.ipv4.vs.sync_threshold = 5\t100",
                "net.ipv4.vs.sync_version = 0",
                "net.ipv4.vs.sync_retries = 3",
                "net.ipv4.vs.sync_refresh_period = 30"
            ]
        );
        assert_eq!(run(&mut c, &["sync_period=0"]).expect("period"), ["net.ipv4.vs.sync_period = 0"]);
        assert_eq!((c.sync_threshold, c.sync_period), (5, 0));
        // Threshold at or above a non-zero period, bad pairs, versions and retries: refused, nothing set.
        let before = c;
        for bad in [&["sync_period=5"][..], &["sync_threshold=50 50"], &["sync_threshold=3"], &["sync_threshold=3 50 7"], &["sync_version=2"], &["sync_retries=4"], &["sync_threshold=-1 50"], &["sync_retries=1", "sync_version=9"]] {
            assert!(run(&mut c, bad).is_err(), "{bad:?}");
            assert_eq!(c, before, "{bad:?} changed the config");
        }
        assert!(run(&mut c, &["sync_threshold=0 0"]).is_ok());
    }
}
