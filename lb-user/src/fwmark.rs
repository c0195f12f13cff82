//! fwmark services meet XDP: the data plane runs before netfilter, so no mark exists yet when it
//! sees a packet. `lbd` reads the director's `iptables -t mangle ... -j MARK` rules (as
//! `iptables-save` prints them) and the `ip6tables` ones (`ip6tables-save`) into the
//! `XLB_FWMARKS` classifier map (keys of family AF_INET and AF_INET6), which the data plane
//! consults when no address service matches.
//!
//! Rules honoured: chain PREROUTING, matches `-d ADDR[/32]` (`ADDR[/128]` for IPv6), `-p tcp|udp`, `-m tcp|udp`,
//! `--dport N`, target `-j MARK --set-xmark V/0xffffffff` (what `--set-mark V` saves as) or
//! `--set-mark V`. A rule with any other match (source, interface, port ranges, ...) cannot be
//! represented and is reported, not guessed. As in netfilter, when several rules mark the same
//! packet the last one wins.
//!
//! Hand-written: no crate parses `iptables-save` output.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, MapData};
use lb_common::{Addr, ServiceKey, IPPROTO_TCP, IPPROTO_UDP};

/// One understood MARK rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkRule {
    pub proto: u8,
    pub addr: IpAddr,
    /// 0 = any port.
    pub port: u16,
    pub mark: u32,
}

/// Which tool's output is read: `iptables-save` (IPv4) or `ip6tables-save` (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Parses `iptables-save -t mangle` output: the rules understood, and one line per rule that
/// marks packets in a way the classifier cannot express.
pub fn parse_save(text: &str) -> (Vec<MarkRule>, Vec<String>) {
    parse_save_family(text, Family::V4)
}

/// Parses `iptables-save -t mangle` or `ip6tables-save -t mangle` output.
pub fn parse_save_family(text: &str, fam: Family) -> (Vec<MarkRule>, Vec<String>) {
    let (mut rules, mut skipped) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.len() < 2 || toks[0] != "-A" || toks[1] != "PREROUTING" || !toks.contains(&"MARK") {
            continue;
        }
        match parse_rule(&toks[2..], fam) {
            Ok(r) => rules.push(r),
            Err(why) => skipped.push(format!("{line}: {why}")),
        }
    }
    (rules, skipped)
}

fn parse_rule(toks: &[&str], fam: Family) -> Result<MarkRule, String> {
    let (mut proto, mut addr, mut port, mut mark) = (None, None, 0u16, None);
    let mut i = 0;
    let arg = |i: usize| toks.get(i + 1).copied().ok_or_else(|| format!("{} needs a value", toks[i]));
    while i < toks.len() {
        match toks[i] {
            "-d" => {
                let a = arg(i)?;
                addr = Some(match fam {
                    Family::V4 => {
                        let a = a.strip_suffix("/32").unwrap_or(a);
                        IpAddr::V4(a.parse::<Ipv4Addr>().map_err(|_| format!("destination {a} is not one IPv4 address"))?)
                    }
                    Family::V6 => {
                        let a = a.strip_suffix("/128").unwrap_or(a);
                        IpAddr::V6(a.parse::<Ipv6Addr>().map_err(|_| format!("destination {a} is not one IPv6 address"))?)
                    }
                });
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
pub fn classify(rules: &[MarkRule]) -> BTreeMap<(u8, IpAddr, u16), u32> {
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

/// The classifier's key: the service key layout (address and family as lb-common's codec
/// writes them), with the packet's protocol and destination port.
fn map_key(proto: u8, addr: IpAddr, port: u16) -> ServiceKey {
    let addr_key: Addr = crate::store::to_addr(&addr);
    let af = if addr.is_ipv6() { lb_common::AF_INET6 } else { lb_common::AF_INET };
    ServiceKey { addr: addr_key, port: port.to_be(), proto, af }
}

/// `tool -t mangle`'s output; empty when the tool is not installed (no rules of that family).
fn save_output(tool: &str) -> anyhow::Result<String> {
    match Command::new(tool).args(["-t", "mangle"]).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => bail!("{tool} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot run {tool}")),
    }
}

/// Reads this network namespace's mangle rules and makes `XLB_FWMARKS` in `pin_dir` say the
/// same. Returns the number of entries and the rules that could not be represented.
pub fn sync(pin_dir: &Path) -> anyhow::Result<(usize, Vec<String>)> {
    let (mut rules, mut skipped) = parse_save_family(&save_output("iptables-save")?, Family::V4);
    let (rules6, skipped6) = parse_save_family(&save_output("ip6tables-save")?, Family::V6);
    rules.extend(rules6);
    skipped.extend(skipped6);
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
    let addrs: Vec<IpAddr> = marks.keys().filter_map(|k| k.ok()).map(|k| crate::store::to_ip(k.af, &k.addr)).collect();
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
        let vip = IpAddr::V4("192.168.0.105".parse().unwrap_or(Ipv4Addr::UNSPECIFIED));
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
        let a = IpAddr::V4("10.0.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED));
        let r = |port, mark| MarkRule { proto: IPPROTO_TCP, addr: a, port, mark };
        let m = classify(&[r(80, 1), r(0, 2), r(443, 3)]);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![((IPPROTO_TCP, a, 0), 2), ((IPPROTO_TCP, a, 443), 3)]);
    }

    /// `ip6tables-save -t mangle` as ip6tables 1.8 prints `ip6tables -t mangle -A PREROUTING
    /// -d 2001:db8::1 -p tcp --dport 80 -j MARK --set-mark 100` (and a UDP rule, an
    /// all-ports rule and rules the classifier cannot express).
    const V6_SAVE: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -d 2001:db8::1/128 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x64/0xffffffff\n\
        -A PREROUTING -d 2001:db8::1/128 -p udp -m udp --dport 53 -j MARK --set-xmark 0x65/0xffffffff\n\
        -A PREROUTING -d fd00::5/128 -p tcp -j MARK --set-xmark 0x7/0xffffffff\n\
        -A PREROUTING -d 2001:db8::/64 -p tcp -j MARK --set-xmark 0x8/0xffffffff\n\
        -A PREROUTING -d 192.168.0.1/32 -p tcp -j MARK --set-xmark 0x9/0xffffffff\nCOMMIT\n";

    #[test]
    fn ip6tables_rules() {
        let (rules, skipped) = parse_save_family(V6_SAVE, Family::V6);
        let a = |s: &str| IpAddr::V6(s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            rules,
            vec![
                MarkRule { proto: IPPROTO_TCP, addr: a("2001:db8::1"), port: 80, mark: 100 },
                MarkRule { proto: lb_common::IPPROTO_UDP, addr: a("2001:db8::1"), port: 53, mark: 101 },
                MarkRule { proto: IPPROTO_TCP, addr: a("fd00::5"), port: 0, mark: 7 },
            ]
        );
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].contains("2001:db8::/64 is not one IPv6 address"), "{skipped:?}");
        assert!(skipped[1].contains("192.168.0.1/32 is not one IPv6 address"), "{skipped:?}");
        // The classifier's keys: AF_INET6, the address as the service keys hold it.
        let k = map_key(IPPROTO_TCP, a("2001:db8::1"), 80);
        assert_eq!((k.af, k.port, k.proto), (lb_common::AF_INET6, 80u16.to_be(), IPPROTO_TCP));
        let svc = crate::store::map_key(&crate::model::SvcKey::Inet {
            proto: crate::model::Proto::Tcp,
            addr: a("2001:db8::1"),
            port: 80,
        });
        assert_eq!(k, svc);
        // An IPv4 rule read as IPv4 is not taken as IPv6, and the other way round.
        let (r4, _) = parse_save(V6_SAVE);
        assert_eq!(r4.len(), 1);
        assert!(r4[0].addr.is_ipv4());
    }
}
