//! fwmark services meet XDP: the data plane runs before netfilter, so no mark exists yet when it
//! sees a packet. `lbd` reads the director's `iptables -t mangle ... -j MARK` rules (as
//! `iptables-save` prints them) into the `XLB_FWMARKS` classifier map, which the data plane
//! consults when no address service matches.
//!
//! Rules honoured: chain PREROUTING, matches `-d ADDR[/32]`, `-p tcp|udp`, `-m tcp|udp`,
//! `--dport N`, target `-j MARK --set-xmark V/0xffffffff` (what `--set-mark V` saves as) or
//! `--set-mark V`. A rule with any other match (source, interface, port ranges, ...) cannot be
//! represented and is reported, not guessed. As in netfilter, when several rules mark the same
//! packet the last one wins.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, MapData};
use lb_common::{Addr, ServiceKey, AF_INET, IPPROTO_TCP, IPPROTO_UDP};

/// One understood MARK rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkRule {
    pub proto: u8,
    pub addr: Ipv4Addr,
    /// 0 = any port.
    pub port: u16,
    pub mark: u32,
}

/// Parses `iptables-save -t mangle` output: the rules understood, and one line per rule that
/// marks packets in a way the classifier cannot express.
pub fn parse_save(text: &str) -> (Vec<MarkRule>, Vec<String>) {
    let (mut rules, mut skipped) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.len() < 2 || toks[0] != "-A" || toks[1] != "PREROUTING" || !toks.contains(&"MARK") {
            continue;
        }
        match parse_rule(&toks[2..]) {
            Ok(r) => rules.push(r),
            Err(why) => skipped.push(format!("{line}: {why}")),
        }
    }
    (rules, skipped)
}

fn parse_rule(toks: &[&str]) -> Result<MarkRule, String> {
    let (mut proto, mut addr, mut port, mut mark) = (None, None, 0u16, None);
    let mut i = 0;
    let arg = |i: usize| toks.get(i + 1).copied().ok_or_else(|| format!("{} needs a value", toks[i]));
    while i < toks.len() {
        match toks[i] {
            "-d" => {
                let a = arg(i)?;
                let a = a.strip_suffix("/32").unwrap_or(a);
                addr = Some(a.parse::<Ipv4Addr>().map_err(|_| format!("destination {a} is not one IPv4 address"))?);
                i += 2;
            }
            "-p" => {
                proto = Some(match arg(i)? {
                    "tcp" => IPPROTO_TCP,
                    "udp" => IPPROTO_UDP,
                    p => return Err(format!("protocol {p} is not tcp or udp")),
                });
                i += 2;
            }
            "-m" if matches!(arg(i)?, "tcp" | "udp") => i += 2,
            "--dport" => {
                port = arg(i)?.parse().map_err(|_| format!("port {} is not one port", toks[i + 1]))?;
                i += 2;
            }
            "-j" if arg(i)? == "MARK" => i += 2,
            "--set-xmark" | "--set-mark" => {
                let v = arg(i)?;
                let (val, mask) = v.split_once('/').unwrap_or((v, "0xffffffff"));
                let num = |s: &str| match s.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                };
                if num(mask) != Some(u32::MAX) {
                    return Err(format!("mark mask {mask} (only whole marks are supported)"));
                }
                mark = Some(num(val).ok_or_else(|| format!("mark {val}"))?);
                i += 2;
            }
            other => return Err(format!("match {other} is not supported")),
        }
    }
    match (proto, addr, mark) {
        (Some(proto), Some(addr), Some(mark)) if mark != 0 => Ok(MarkRule { proto, addr, port, mark }),
        (None, _, _) => Err("no -p tcp|udp".into()),
        (_, None, _) => Err("no -d address".into()),
        _ => Err("no non-zero mark".into()),
    }
}

/// The classifier entries the rules amount to, later rules winning over earlier ones.
pub fn classify(rules: &[MarkRule]) -> BTreeMap<(u8, Ipv4Addr, u16), u32> {
    let mut m = BTreeMap::new();
    for r in rules {
        if r.port == 0 {
            // Marks every port: overrides what earlier rules gave single ports.
            m.retain(|(p, a, _), _| !(*p == r.proto && *a == r.addr));
        }
        m.insert((r.proto, r.addr, r.port), r.mark);
    }
    m
}

fn map_key(proto: u8, addr: Ipv4Addr, port: u16) -> ServiceKey {
    ServiceKey { addr: Addr::v4(u32::from_ne_bytes(addr.octets())), port: port.to_be(), proto, af: AF_INET }
}

/// Reads this network namespace's mangle rules and makes `XLB_FWMARKS` in `pin_dir` say the
/// same. Returns the number of entries and the rules that could not be represented.
pub fn sync(pin_dir: &Path) -> anyhow::Result<(usize, Vec<String>)> {
    let out = match Command::new("iptables-save").args(["-t", "mangle"]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => bail!("iptables-save failed: {}", String::from_utf8_lossy(&o.stderr)),
        // No iptables on this host: no marks.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("cannot run iptables-save"),
    };
    let (rules, skipped) = parse_save(&out);
    let want = classify(&rules);
    let path = pin_dir.join(lb_common::names::FWMARKS);
    if !path.exists() {
        crate::store::load_object(pin_dir, Default::default())?;
    }
    let data = MapData::from_pin(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut map: HashMap<MapData, ServiceKey, u32> = HashMap::try_from(aya::maps::Map::HashMap(data))?;
    let want_keys: std::collections::HashMap<ServiceKey, u32> =
        want.iter().map(|((p, a, port), mark)| (map_key(*p, *a, *port), *mark)).collect();
    let have: Vec<ServiceKey> = map.keys().filter_map(|k| k.ok()).collect();
    for k in have {
        if !want_keys.contains_key(&k) {
            let _ = map.remove(&k);
        }
    }
    for (k, mark) in &want_keys {
        if map.get(k, 0).ok() != Some(*mark) {
            map.insert(*k, *mark, 0)?;
        }
    }
    sync_gate(pin_dir, &map)?;
    Ok((want_keys.len(), skipped))
}

/// Opens the gate for the addresses `XLB_FWMARKS` marks (and for those alone): the data plane
/// looks a packet up in the classifier only when its destination passes the gate.
pub fn sync_gate(pin_dir: &Path, marks: &HashMap<MapData, ServiceKey, u32>) -> anyhow::Result<()> {
    let addrs: Vec<IpAddr> = marks
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.af == AF_INET)
        .map(|k| IpAddr::V4(Ipv4Addr::from(k.addr.w[0].to_ne_bytes())))
        .collect();
    crate::store::Gate::open(pin_dir)?.set(lb_common::GATE_FWMARK, addrs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_001: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -d 192.168.0.105/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x64/0xffffffff\n\
        -A PREROUTING -d 192.168.0.105/32 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x64/0xffffffff\n\
        -A PREROUTING -s 10.0.0.0/8 -d 192.168.0.106/32 -p tcp -j MARK --set-xmark 0x7/0xffffffff\n\
        -A OUTPUT -p tcp -j MARK --set-xmark 0x9/0xffffffff\nCOMMIT\n";

    #[test]
    fn seed_001_rules() {
        let (rules, skipped) = parse_save(SEED_001);
        let vip: Ipv4Addr = "192.168.0.105".parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            rules,
            vec![
                MarkRule { proto: IPPROTO_TCP, addr: vip, port: 80, mark: 100 },
                MarkRule { proto: IPPROTO_TCP, addr: vip, port: 8080, mark: 100 }
            ]
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("-s is not supported"), "{skipped:?}");
    }

    #[test]
    fn later_rules_win() {
        let a: Ipv4Addr = "10.0.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let r = |port, mark| MarkRule { proto: IPPROTO_TCP, addr: a, port, mark };
        let m = classify(&[r(80, 1), r(0, 2), r(443, 3)]);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![((IPPROTO_TCP, a, 0), 2), ((IPPROTO_TCP, a, 443), 3)]);
    }
}
