//! `lbd sysctl`: IPVS's forwarding sysctls (`lb_common::SYSCTLS`), read and set the way
//! `sysctl net.ipv4.vs.NAME[=VALUE]` does on a director with IPVS. They live in `XLB_CONFIG`
//! with the table; a fresh table has IPVS's defaults.
use anyhow::{anyhow, bail};
use lb_common::{Config, SYSCTLS};

const PREFIX: &str = "net.ipv4.vs.";

/// One argument: `NAME` or `net.ipv4.vs.NAME`, with `=VALUE` to set it.
fn parse(arg: &str) -> anyhow::Result<(&'static str, Option<u32>)> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (arg.trim(), None),
    };
    let short = name.strip_prefix(PREFIX).unwrap_or(name);
    let known = SYSCTLS
        .iter()
        .find(|n| **n == short)
        .ok_or_else(|| anyhow!("unknown sysctl {name:?} (known: {})", SYSCTLS.join(", ")))?;
    let value = match value {
        None => None,
        Some(v) => {
            let max = Config::sysctl_max(known);
            match v.parse::<u32>() {
                Ok(n) if n <= max => Some(n),
                _ => bail!("{PREFIX}{known}: invalid value {v:?} (0 to {max})"),
            }
        }
    };
    Ok((known, value))
}

/// Applies `args` to `cfg` (all checked before any is set) and returns the lines to print, as
/// sysctl does: `net.ipv4.vs.NAME = VALUE` for each argument, or for every sysctl without any.
pub fn apply(cfg: &mut Config, args: &[String]) -> anyhow::Result<Vec<String>> {
    let parsed = args.iter().map(|a| parse(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    if parsed.is_empty() {
        for n in SYSCTLS {
            out.push(format!("{PREFIX}{n} = {}", cfg.sysctl(n).unwrap_or(0)));
        }
    }
    for (n, v) in parsed {
        if let Some(v) = v {
            cfg.set_sysctl(n, v);
        }
        out.push(format!("{PREFIX}{n} = {}", cfg.sysctl(n).unwrap_or(0)));
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
                "net.ipv4.vs.lblcr_expiration = 86400"
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
        assert_eq!(format!("{e}"), "unknown sysctl \"foo\" (known: conn_reuse_mode, expire_nodest_conn, expire_quiescent_template, sloppy_tcp, lblcr_expiration)");
    }
}
