//! The `virtual_server` part of keepalived.conf (spec §8.2).
//!
//! The file is read as keepalived reads it: words, `{ ... }` blocks, comments from a word that
//! starts with `#` or `!` to the end of the line. Top-level blocks other than `virtual_server`
//! and `virtual_server_group` (global_defs, vrrp_instance, ...) are not lbd's business and are
//! skipped, but for `SSL`, whose `ca` SSL_GET verifies against. Unknown keywords are ignored
//! with a warning, as keepalived does; known keywords that need something lbd does not do
//! (MISC_CHECK scripts, encrypted SSL keys, quorum, ...) are errors.
//!
//! IPv6 as keepalived 2.2 reads it: IPv6 `virtual_server`/`real_server`/`sorry_server` addresses
//! and group members (a range ends in the last 16-bit group, hex), a fwmark service's family from
//! `ip_family inet|inet6` or else from its real servers, `persistence_granularity` as a prefix
//! length, real servers of the other family for TUN only (keepalived skips them with a log line;
//! lbd refuses the file), and `lvs_method TUN [type {ipip|gue port N|gre} [nocsum|csum|remcsum]]`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{Check, CheckKind, DesiredConfig, Diag, HttpCheck, RealServer, TlsCheck, VirtualService};
use super::{parse_ip, parse_secs, parse_v4_mask, port_by_name};
use crate::ctl::{DestSpec, ServiceSpec};
use crate::model::{Af, Fwd, Proto, SvcKey, Tunnel};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(usize, String),
    Open(usize),
    Close(usize),
    Eol,
}

/// One statement: `key args... [{ children }]`.
#[derive(Clone, Debug)]
struct Node {
    line: usize,
    key: String,
    args: Vec<String>,
    children: Option<Vec<Node>>,
}

fn tokenize(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let mut chars = l.chars().peekable();
        'line: loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&c) = chars.peek() else { break };
            match c {
                '#' | '!' => break 'line,
                '{' => {
                    chars.next();
                    out.push(Tok::Open(line));
                }
                '}' => {
                    chars.next();
                    out.push(Tok::Close(line));
                }
                '"' => {
                    chars.next();
                    let mut w = String::new();
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        w.push(c);
                    }
                    out.push(Tok::Word(line, w));
                }
                _ => {
                    let mut w = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || c == '{' || c == '}' {
                            break;
                        }
                        w.push(c);
                        chars.next();
                    }
                    out.push(Tok::Word(line, w));
                }
            }
        }
        out.push(Tok::Eol);
    }
    out
}

fn parse_nodes(toks: &[Tok], pos: &mut usize, top: bool, open_line: usize, errors: &mut Vec<Diag>) -> Vec<Node> {
    let mut nodes = Vec::new();
    loop {
        match toks.get(*pos) {
            None => {
                if !top {
                    errors.push(Diag { line: open_line, msg: "this block is never closed (missing `}`)".into() });
                }
                return nodes;
            }
            Some(Tok::Eol) => *pos += 1,
            Some(Tok::Close(line)) => {
                *pos += 1;
                if top {
                    errors.push(Diag { line: *line, msg: "unexpected `}`".into() });
                } else {
                    return nodes;
                }
            }
            Some(Tok::Open(line)) => {
                let line = *line;
                *pos += 1;
                errors.push(Diag { line, msg: "`{` without a keyword".into() });
                parse_nodes(toks, pos, false, line, errors);
            }
            Some(Tok::Word(line, key)) => {
                let (line, key) = (*line, key.clone());
                *pos += 1;
                let mut args = Vec::new();
                while let Some(Tok::Word(_, w)) = toks.get(*pos) {
                    args.push(w.clone());
                    *pos += 1;
                }
                // The block may open on the next line.
                let mut look = *pos;
                while toks.get(look) == Some(&Tok::Eol) {
                    look += 1;
                }
                let children = if let Some(Tok::Open(_)) = toks.get(look) {
                    *pos = look + 1;
                    Some(parse_nodes(toks, pos, false, line, errors))
                } else {
                    None
                };
                nodes.push(Node { line, key, args, children });
            }
        }
    }
}

pub fn parse(text: &str) -> Result<DesiredConfig, Vec<Diag>> {
    let toks = tokenize(text);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut pos = 0;
    let nodes = parse_nodes(&toks, &mut pos, true, 0, &mut errors);
    let mut cfg = DesiredConfig::default();
    let groups: Vec<&Node> = nodes.iter().filter(|n| n.key == "virtual_server_group").collect();
    let mut ssl = SslSettings::default();
    for n in nodes.iter().filter(|n| n.key == "SSL") {
        let mut p = Parser { errors: &mut errors, warnings: &mut warnings, ssl: SslSettings::default() };
        ssl = p.ssl_block(n);
    }
    for n in &nodes {
        match n.key.as_str() {
            "virtual_server" => {
                let mut p = Parser { errors: &mut errors, warnings: &mut warnings, ssl: ssl.clone() };
                if let Some(mut list) = p.virtual_server(n, &groups) {
                    cfg.services.append(&mut list);
                }
            }
            "include" => errors.push(Diag { line: n.line, msg: "`include` is not supported: give lbd one file".into() }),
            // Not lbd's business: VRRP, global settings, scripts, groups (read on use).
            _ => {}
        }
    }
    super::finish(cfg, warnings, errors)
}

/// Checker settings a virtual_server gives its real servers' checkers.
#[derive(Clone)]
struct CheckDefaults {
    delay_loop: Duration,
    connect_timeout: Duration,
    retry: u32,
    delay_before_retry: Duration,
    virtualhost: Option<String>,
}

struct Parser<'a> {
    errors: &'a mut Vec<Diag>,
    warnings: &'a mut Vec<Diag>,
    /// The `SSL { ... }` block's settings for SSL_GET.
    ssl: SslSettings,
}

/// keepalived's `SSL { ca certificate key }`, read.
#[derive(Clone, Default)]
struct SslSettings {
    /// The CAs SSL_GET verifies servers against.
    ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key.
    client_pem: Option<Vec<u8>>,
}

const UNSUPPORTED_CHECKERS: &[&str] = &["PING_CHECK", "FILE_CHECK", "BFD_CHECK"];

/// The checkers lbd runs (HTTP_GET's and SSL_GET's options are read with the others').
const CHECKERS: &[&str] = &["TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK"];

impl Parser<'_> {
    /// The top-level `SSL { ... }` block: its `ca` file's certificates and its client
    /// certificate with key. keepalived 2.2.7 loads the CA file but never asks OpenSSL to verify
    /// the peer; lbd takes a configured CA as the wish it expresses and verifies SSL_GET servers
    /// against it (no `ca`: no verification, as keepalived).
    fn ssl_block(&mut self, n: &Node) -> SslSettings {
        let mut out = SslSettings::default();
        let (mut cert, mut key) = (None, None);
        for c in n.children.iter().flatten() {
            match c.key.as_str() {
                "ca" | "certificate" | "key" => {
                    let Some(path) = self.arg(c, 0) else { continue };
                    let pem = match std::fs::read(path) {
                        Ok(pem) => pem,
                        Err(e) => {
                            self.err(c.line, format!("{} {path}: {e}", c.key));
                            continue;
                        }
                    };
                    match c.key.as_str() {
                        "ca" if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|v| !v.is_empty()) => out.ca_pem = Some(pem),
                        "ca" => self.err(c.line, format!("ca {path}: no PEM certificate in it")),
                        "certificate" => cert = Some((c.line, pem)),
                        _ => key = Some((c.line, pem)),
                    }
                }
                "password" => self.err(c.line, "SSL `password`: lbd reads no encrypted keys (give `key` unencrypted)"),
                _ => self.unknown(c, "SSL"),
            }
        }
        match (cert, key) {
            (None, None) => {}
            (Some((_, mut cert)), Some((line, key))) => {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                match reqwest::Identity::from_pem(&cert) {
                    Ok(_) => out.client_pem = Some(cert),
                    Err(e) => self.err(line, format!("SSL certificate and key: {e}")),
                }
            }
            (Some((line, _)), None) => self.err(line, "SSL `certificate` needs its `key`"),
            (None, Some((line, _))) => self.err(line, "SSL `key` needs its `certificate`"),
        }
        out
    }

    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(Diag { line, msg: msg.into() });
    }

    fn unknown(&mut self, n: &Node, within: &str) {
        self.warnings.push(Diag { line: n.line, msg: format!("unknown keyword `{}` in {within}: ignored", n.key) });
    }

    fn arg<'n>(&mut self, n: &'n Node, i: usize) -> Option<&'n str> {
        let a = n.args.get(i).map(String::as_str);
        if a.is_none() {
            self.err(n.line, format!("`{}` needs a value", n.key));
        }
        a
    }

    fn secs(&mut self, n: &Node) -> Option<Duration> {
        let v = self.arg(n, 0)?;
        let d = parse_secs(v);
        if d.is_none() {
            self.err(n.line, format!("`{}` must be a positive number of seconds, not `{v}`", n.key));
        }
        d
    }

    fn num(&mut self, n: &Node, max: u64) -> Option<u64> {
        let v = self.arg(n, 0)?;
        match v.parse::<u64>() {
            Ok(x) if x <= max => Some(x),
            _ => {
                self.err(n.line, format!("`{}` must be a number up to {max}, not `{v}`", n.key));
                None
            }
        }
    }

    /// `NAT|DR|TUN [type {ipip|gue port NUM|gre} [nocsum|csum|remcsum]]` (keepalived 2.2's
    /// `lvs_method`), with IPVS's tunnel values.
    fn method(&mut self, n: &Node) -> Option<(Fwd, Tunnel)> {
        let v = self.arg(n, 0)?;
        let fwd = match v.to_ascii_uppercase().as_str() {
            "NAT" => Fwd::Masq,
            "DR" => Fwd::Route,
            "TUN" => Fwd::Tunnel,
            _ => {
                self.err(n.line, format!("unknown forwarding method `{v}` (NAT, DR or TUN)"));
                return None;
            }
        };
        let rest: Vec<&str> = n.args[1..].iter().map(String::as_str).collect();
        if fwd != Fwd::Tunnel {
            if !rest.is_empty() {
                self.err(n.line, format!("unexpected `{}` after {v} (tunnel options go with TUN)", rest.join(" ")));
            }
            return Some((fwd, Tunnel::default()));
        }
        match parse_tunnel(&rest) {
            Ok(t) => Some((fwd, t)),
            Err(m) => {
                self.err(n.line, m);
                None
            }
        }
    }

    /// The services a `virtual_server` line names (several for a group).
    /// `fw_af`: the family of fwmark services (`ip_family`, else from the real servers).
    fn keys(&mut self, n: &Node, groups: &[&Node], proto: Proto, fw_af: Af) -> Vec<(SvcKey, u16)> {
        let a: Vec<&str> = n.args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["fwmark", m] => match m.parse::<u32>() {
                Ok(mark) if mark > 0 => vec![(SvcKey::Fwmark { mark, af: fw_af }, 0)],
                _ => {
                    self.err(n.line, format!("bad fwmark `{m}`"));
                    vec![]
                }
            },
            ["group", name] => {
                let Some(g) = groups.iter().find(|g| g.args.first().map(String::as_str) == Some(*name)) else {
                    self.err(n.line, format!("no virtual_server_group `{name}`"));
                    return vec![];
                };
                let mut out = Vec::new();
                for m in g.children.iter().flatten() {
                    let mut words = vec![m.key.as_str()];
                    words.extend(m.args.iter().map(String::as_str));
                    out.extend(self.group_member(m.line, &words, proto, fw_af));
                }
                out
            }
            [addr] | [addr, _] => {
                let Some(ip) = parse_ip(addr) else {
                    self.err(n.line, format!("bad virtual address `{addr}`"));
                    return vec![];
                };
                let port = match a.get(1) {
                    None => 0,
                    Some(p) => match port_by_name(p) {
                        Some(p) => p,
                        None => {
                            self.err(n.line, format!("bad port `{p}`"));
                            return vec![];
                        }
                    },
                };
                vec![(SvcKey::Inet { proto, addr: ip, port }, port)]
            }
            _ => {
                self.err(n.line, "virtual_server needs `IP [PORT]`, `fwmark N` or `group NAME`");
                vec![]
            }
        }
    }

    /// `IP [PORT]`, `IP-LAST [PORT]` (last byte range) or `fwmark N` in a group.
    fn group_member(&mut self, line: usize, w: &[&str], proto: Proto, fw_af: Af) -> Vec<(SvcKey, u16)> {
        if w.first() == Some(&"fwmark") {
            return match w.get(1).and_then(|m| m.parse::<u32>().ok()) {
                Some(mark) if mark > 0 => vec![(SvcKey::Fwmark { mark, af: fw_af }, 0)],
                _ => {
                    self.err(line, "bad fwmark in virtual_server_group");
                    vec![]
                }
            };
        }
        let port = match w.get(1) {
            None => 0,
            Some(p) => match port_by_name(p) {
                Some(p) => p,
                None => {
                    self.err(line, format!("bad port `{p}`"));
                    return vec![];
                }
            },
        };
        let first = w.first().copied().unwrap_or_default();
        // A range's last part: the last byte of IPv4, the last 16-bit group (hex) of IPv6.
        let (base, last) = match first.rsplit_once('-') {
            Some((b, l)) => {
                let last = match parse_ip(b) {
                    Some(IpAddr::V6(_)) => u16::from_str_radix(l, 16).ok(),
                    _ => l.parse::<u8>().ok().map(u16::from),
                };
                if last.is_none() {
                    self.err(line, format!("bad range `{first}`"));
                    return vec![];
                }
                (b, last)
            }
            None => (first, None),
        };
        let Some(ip) = parse_ip(base) else {
            self.err(line, format!("bad address `{first}` in virtual_server_group"));
            return vec![];
        };
        match (ip, last) {
            (IpAddr::V4(a), Some(last)) => {
                let o = a.octets();
                let last = last as u8;
                if last < o[3] {
                    self.err(line, format!("bad range `{first}`"));
                    return vec![];
                }
                (o[3]..=last)
                    .map(|b| {
                        let addr = IpAddr::V4([o[0], o[1], o[2], b].into());
                        (SvcKey::Inet { proto, addr, port }, port)
                    })
                    .collect()
            }
            (IpAddr::V6(a), Some(last)) => {
                let g = a.segments();
                if last < g[7] {
                    self.err(line, format!("bad range `{first}`"));
                    return vec![];
                }
                (g[7]..=last)
                    .map(|x| {
                        let mut s = g;
                        s[7] = x;
                        let addr = IpAddr::V6(s.into());
                        (SvcKey::Inet { proto, addr, port }, port)
                    })
                    .collect()
            }
            (addr, None) => vec![(SvcKey::Inet { proto, addr, port }, port)],
        }
    }

    fn virtual_server(&mut self, n: &Node, groups: &[&Node]) -> Option<Vec<VirtualService>> {
        let Some(children) = &n.children else {
            self.err(n.line, "virtual_server without a `{ ... }` block");
            return None;
        };
        let before = self.errors.len();
        let mut sched = "wlc".to_string();
        let mut fwd = Fwd::Masq;
        let mut tunnel = Tunnel::default();
        let mut family: Option<(usize, Af)> = None;
        let mut proto = Proto::Tcp;
        let mut flags = 0u32;
        let mut timeout = 0u32;
        let mut netmask: Option<(usize, String)> = None;
        let mut pe_name = String::new();
        let mut inhibit = false;
        let mut sorry: Option<(usize, IpAddr, Option<u16>)> = None;
        let mut sorry_fwd: Option<(Fwd, Tunnel)> = None;
        let mut defaults = CheckDefaults {
            delay_loop: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            virtualhost: None,
        };
        let mut real_nodes = Vec::new();
        for c in children {
            match c.key.as_str() {
                "delay_loop" => {
                    if let Some(d) = self.secs(c) {
                        defaults.delay_loop = d;
                    }
                }
                "lb_algo" | "lvs_sched" => {
                    if let Some(v) = self.arg(c, 0) {
                        sched = v.to_string();
                        if !crate::ctl::scheduler_available(v) {
                            self.err(c.line, format!("scheduler `{v}` is not available in xlb's data plane"));
                        }
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some((f, t)) = self.method(c) {
                        fwd = f;
                        tunnel = t;
                    }
                }
                "protocol" => match self.arg(c, 0).map(str::to_ascii_uppercase).as_deref() {
                    Some("TCP") => proto = Proto::Tcp,
                    Some("UDP") => proto = Proto::Udp,
                    Some("SCTP") => proto = Proto::Sctp,
                    Some(v) => self.err(c.line, format!("unknown protocol `{v}`")),
                    None => {}
                },
                "persistence_timeout" => {
                    flags |= lb_common::SVC_F_PERSISTENT;
                    timeout = 360;
                    if !c.args.is_empty() {
                        match self.num(c, u32::MAX as u64) {
                            Some(t) if t > 0 => timeout = t as u32,
                            Some(_) => self.err(c.line, "persistence_timeout must be positive"),
                            None => {}
                        }
                    }
                }
                "persistence_granularity" => netmask = self.arg(c, 0).map(|v| (c.line, v.to_string())),
                "persistence_engine" => pe_name = self.arg(c, 0).unwrap_or_default().to_string(),
                "sorry_server" => {
                    let ip = self.arg(c, 0).and_then(parse_ip);
                    let port = c.args.get(1).and_then(|p| port_by_name(p));
                    match ip {
                        Some(ip) if c.args.len() < 2 || port.is_some() => sorry = Some((c.line, ip, port)),
                        _ => self.err(c.line, "sorry_server needs `IP [PORT]`"),
                    }
                }
                "sorry_server_lvs_method" => sorry_fwd = self.method(c),
                "sorry_server_inhibit" => self.warnings.push(Diag {
                    line: c.line,
                    msg: "sorry_server_inhibit: lbd removes the sorry server when a real server is back".into(),
                }),
                "inhibit_on_failure" => inhibit = true,
                "connect_timeout" => {
                    if let Some(d) = self.secs(c) {
                        defaults.connect_timeout = d;
                    }
                }
                "retry" | "nb_get_retry" => {
                    if let Some(r) = self.num(c, 1000) {
                        defaults.retry = r as u32;
                    }
                }
                "delay_before_retry" => {
                    if let Some(d) = self.secs(c) {
                        defaults.delay_before_retry = d;
                    }
                }
                "virtualhost" => defaults.virtualhost = self.arg(c, 0).map(str::to_string),
                "flag-1" | "sh-fallback" | "mh-fallback" => flags |= lb_common::SVC_F_SCHED1,
                "flag-2" | "sh-port" | "mh-port" => flags |= lb_common::SVC_F_SCHED2,
                "flag-3" => flags |= lb_common::SVC_F_SCHED3,
                "ops" => flags |= lb_common::SVC_F_ONEPACKET,
                "ip_family" => match self.arg(c, 0) {
                    Some("inet") => family = Some((c.line, Af::Inet)),
                    Some("inet6") => family = Some((c.line, Af::Inet6)),
                    Some(v) => self.err(c.line, format!("unknown address family `{v}` (inet or inet6)")),
                    None => {}
                },
                "quorum" | "hysteresis" => {
                    let max = if c.key == "quorum" { 1 } else { 0 };
                    if self.num(c, u64::MAX).is_some_and(|q| q > max) {
                        self.err(c.line, format!("`{}` above {max} is not supported by lbd", c.key));
                    }
                }
                "quorum_up" | "quorum_down" | "alpha" | "omega" | "warmup" => {
                    self.err(c.line, format!("`{}` is not supported by lbd", c.key))
                }
                "ha_suspend" => self.warnings.push(Diag {
                    line: c.line,
                    msg: "ha_suspend: lbd runs no VRRP; the service is always programmed".into(),
                }),
                "real_server" => real_nodes.push(c),
                _ => self.unknown(c, "virtual_server"),
            }
        }
        // The service's family: its address's (a group's: its first address member's; a
        // conflicting `ip_family` is an error), else `ip_family`, else (fwmark) that of its
        // non-tunnelled real or sorry servers, else of its tunnelled ones if they agree, else
        // IPv4 (keepalived's vs_end_handler).
        let addr_af = match n.args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["fwmark", ..] | [] => None,
            ["group", name] => groups
                .iter()
                .find(|g| g.args.first().map(String::as_str) == Some(*name))
                .and_then(|g| g.children.iter().flatten().find_map(|m| parse_ip(m.key.split('-').next().unwrap_or_default())))
                .map(|ip| Af::of(&ip)),
            [a, ..] => parse_ip(a).map(|ip| Af::of(&ip)),
        };
        if let (Some((line, f)), Some(a)) = (family, addr_af)
            && f != a
        {
            self.err(line, "ip_family conflicts with the virtual server's address family");
        }
        let is_tun = |own: Option<&Node>, default: Fwd| own.and_then(|c| c.args.first()).map_or(default == Fwd::Tunnel, |m| m.eq_ignore_ascii_case("TUN"));
        let sorry_tun = sorry_fwd.map_or(fwd, |(f, _)| f) == Fwd::Tunnel;
        let server_af = |tunnelled: bool| -> Option<Af> {
            let mut fams = real_nodes
                .iter()
                .filter(|r| is_tun(r.children.iter().flatten().find(|c| c.key == "lvs_method" || c.key == "lb_kind"), fwd) == tunnelled)
                .filter_map(|r| r.args.first().and_then(|a| parse_ip(a)))
                .chain(sorry.filter(|_| sorry_tun == tunnelled).map(|(_, ip, _)| ip))
                .map(|ip| Af::of(&ip));
            let first = fams.next()?;
            if tunnelled && fams.any(|f| f != first) {
                return None;
            }
            Some(first)
        };
        let svc_af = addr_af.or(family.map(|(_, f)| f)).or_else(|| server_af(false)).or_else(|| server_af(true)).unwrap_or(Af::Inet);
        let keys = self.keys(n, groups, proto, svc_af);
        if keys.iter().any(|(k, _)| matches!(k, SvcKey::Inet { port: 0, .. })) && flags & lb_common::SVC_F_PERSISTENT == 0 {
            self.err(n.line, "a virtual_server without a port must be persistent (persistence_timeout)");
        }
        let full = if svc_af == Af::Inet6 { 128 } else { 0xffff_ffff };
        let netmask = match netmask {
            None => full,
            Some((line, v)) => {
                // IPv6: a prefix length 1..128 (keepalived's pgr_handler).
                let m = if svc_af == Af::Inet6 { v.parse::<u32>().ok().filter(|n| (1..=128).contains(n)) } else { parse_v4_mask(&v) };
                match m {
                    Some(m) => m,
                    None => {
                        self.err(line, format!("bad persistence_granularity `{v}`"));
                        full
                    }
                }
            }
        };
        let fwmark = keys.first().is_some_and(|(k, _)| matches!(k, SvcKey::Fwmark { .. }));
        let mut out = Vec::new();
        for (key, vport) in keys {
            let spec = ServiceSpec { key, sched: sched.clone(), flags, timeout, netmask, pe_name: pe_name.clone() };
            let mut reals = Vec::new();
            for r in &real_nodes {
                if let Some(real) = self.real_server(r, vport, fwmark, (fwd, tunnel, svc_af), inhibit, &defaults, proto) {
                    reals.push(real);
                }
            }
            let fallback = sorry.and_then(|(line, addr, port)| {
                let (f, t) = sorry_fwd.unwrap_or((fwd, tunnel));
                if Af::of(&addr) != svc_af && f != Fwd::Tunnel {
                    self.err(line, mixed_family_msg("sorry_server", &addr));
                    return None;
                }
                let port = if f == Fwd::Masq || fwmark { port.unwrap_or(vport) } else { vport };
                Some(DestSpec { addr, port, fwd: f, weight: 1, u_threshold: 0, l_threshold: 0, tunnel: t })
            });
            out.push(VirtualService { line: n.line, spec, reals, fallback });
        }
        (self.errors.len() == before).then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn real_server(
        &mut self,
        n: &Node,
        vport: u16,
        fwmark: bool,
        (vs_fwd, vs_tunnel, svc_af): (Fwd, Tunnel, Af),
        vs_inhibit: bool,
        defaults: &CheckDefaults,
        proto: Proto,
    ) -> Option<RealServer> {
        let addr = match n.args.first().map(|a| (a, parse_ip(a))) {
            Some((_, Some(ip))) => ip,
            Some((a, None)) => {
                self.err(n.line, format!("bad real server address `{a}`"));
                return None;
            }
            None => {
                self.err(n.line, "real_server needs `IP [PORT]`");
                return None;
            }
        };
        let given_port = match n.args.get(1) {
            None => None,
            Some(p) => match port_by_name(p) {
                Some(p) => Some(p),
                None => {
                    self.err(n.line, format!("bad port `{p}`"));
                    return None;
                }
            },
        };
        let mut dest = DestSpec {
            addr,
            port: 0,
            fwd: vs_fwd,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tunnel: vs_tunnel,
        };
        let mut quiescent = vs_inhibit;
        let mut check_nodes = Vec::new();
        let mut rs_vhost = None;
        for c in n.children.iter().flatten() {
            match c.key.as_str() {
                "weight" => {
                    if let Some(w) = self.num(c, 65535) {
                        dest.weight = w as i32;
                    }
                }
                "inhibit_on_failure" => quiescent = true,
                "lvs_method" | "lb_kind" => {
                    if let Some((f, t)) = self.method(c) {
                        dest.fwd = f;
                        dest.tunnel = t;
                    }
                }
                "uthreshold" => dest.u_threshold = self.num(c, u32::MAX as u64).unwrap_or(0) as u32,
                "lthreshold" => dest.l_threshold = self.num(c, u32::MAX as u64).unwrap_or(0) as u32,
                k if CHECKERS.contains(&k) => check_nodes.push(c),
                "virtualhost" => rs_vhost = self.arg(c, 0).map(str::to_string),
                k if UNSUPPORTED_CHECKERS.contains(&k) => {
                    self.err(c.line, format!("{k} is not supported by lbd ({} are)", CHECKERS.join(", ")))
                }
                "notify_up" | "notify_down" => self.err(c.line, format!("`{}`: lbd runs no notify scripts", c.key)),
                _ => self.unknown(c, "real_server"),
            }
        }
        if Af::of(&addr) != svc_af && dest.fwd != Fwd::Tunnel {
            // keepalived skips such a real server with a log line; lbd refuses the file.
            self.err(n.line, mixed_family_msg("real_server", &addr));
            return None;
        }
        dest.port = if fwmark || dest.fwd == Fwd::Masq { given_port.unwrap_or(vport) } else { vport };
        if let Some(c) = check_nodes.iter().find(|c| matches!(c.key.as_str(), "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK"))
            && proto == Proto::Udp
        {
            self.err(c.line, format!("{} cannot check a UDP service (UDP_CHECK, DNS_CHECK and MISC_CHECK can)", c.key));
            return None;
        }
        let mut checks = Vec::new();
        let check_port = if dest.port != 0 { dest.port } else { given_port.unwrap_or(0) };
        // keepalived: a url's virtualhost, else the checker's, else the real server's, else the
        // virtual server's.
        let defaults = &CheckDefaults { virtualhost: rs_vhost.or_else(|| defaults.virtualhost.clone()), ..defaults.clone() };
        for c in check_nodes {
            checks.extend(self.checker(c, addr, check_port, defaults)?);
        }
        Some(RealServer { line: n.line, dest, checks, quiescent })
    }

    fn checker(&mut self, n: &Node, addr: IpAddr, port: u16, d: &CheckDefaults) -> Option<Vec<Check>> {
        let http = matches!(n.key.as_str(), "HTTP_GET" | "SSL_GET");
        let mut ip = addr;
        let mut port = port;
        let mut interval = d.delay_loop;
        let mut timeout = d.connect_timeout;
        let mut retry = d.retry;
        let mut delay_before_retry = d.delay_before_retry;
        let mut vhost = d.virtualhost.clone();
        let mut enable_sni = false;
        // keepalived's default: HTTP/1.0 without a Connection header.
        let mut protocol = (true, false);
        let mut urls = Vec::new();
        let mut own_retry = false;
        let mut own_delay_before_retry = false;
        let mut misc: Option<Vec<String>> = None;
        let mut misc_given = false;
        let mut misc_timeout = None;
        let mut misc_dynamic = false;
        let mut helo = "smtpchecker.keepalived.org".to_string();
        let mut dns_type = "SOA".to_string();
        let mut dns_name = ".".to_string();
        let mut payload: Option<Vec<u8>> = None;
        let mut require_reply: Option<(Vec<u8>, Vec<u8>)> = None;
        let (mut min_reply, mut max_reply) = (0usize, 255usize);
        let kind = n.key.as_str();
        for c in n.children.iter().flatten() {
            match (kind, c.key.as_str()) {
                ("MISC_CHECK", "misc_path") => {
                    misc_given = true;
                    let line = c.args.join(" ");
                    match shlex::split(&line) {
                        Some(argv) if !argv.is_empty() => misc = Some(argv),
                        _ => self.err(c.line, format!("misc_path: cannot split `{line}` into a command and its arguments")),
                    }
                }
                ("MISC_CHECK", "misc_timeout") => misc_timeout = self.secs(c),
                ("MISC_CHECK", "misc_dynamic") => misc_dynamic = true,
                ("MISC_CHECK", "user") => {
                    self.err(c.line, "`user`: lbd runs misc_path as itself (use runuser or setpriv in misc_path)")
                }
                ("MISC_CHECK", "connect_ip" | "connect_port" | "connect_timeout" | "bindto" | "bind_port" | "bind_if" | "fwmark") => {
                    self.err(c.line, format!("`{}` is not an option of MISC_CHECK", c.key))
                }
                ("SMTP_CHECK", "helo_name") => {
                    if let Some(h) = self.arg(c, 0) {
                        helo = h.to_string();
                    }
                }
                ("DNS_CHECK", "type") => {
                    if let Some(t) = self.arg(c, 0) {
                        match t.to_ascii_uppercase().as_str() {
                            "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA" => dns_type = t.to_ascii_uppercase(),
                            _ => self.err(c.line, format!("DNS_CHECK type `{t}`: one of A, NS, CNAME, SOA, MX, TXT, AAAA")),
                        }
                    }
                }
                ("DNS_CHECK", "name") => {
                    if let Some(v) = self.arg(c, 0) {
                        dns_name = v.to_string();
                    }
                }
                ("UDP_CHECK", "payload") => match crate::health::udp::parse_hex(&c.args.join(" "), false) {
                    Ok((b, _)) => payload = Some(b),
                    Err(e) => self.err(c.line, format!("payload: {e}")),
                },
                ("UDP_CHECK", "require_reply") => match crate::health::udp::parse_hex(&c.args.join(" "), true) {
                    Ok(r) => require_reply = Some(r),
                    Err(e) => self.err(c.line, format!("require_reply: {e}")),
                },
                ("UDP_CHECK", "min_reply_length") => min_reply = self.num(c, 65535).unwrap_or(0) as usize,
                ("UDP_CHECK", "max_reply_length") => max_reply = self.num(c, 65535).unwrap_or(255) as usize,
                (_, "retry" | "nb_get_retry") => {
                    own_retry = true;
                    retry = self.num(c, 1000).unwrap_or(retry as u64) as u32
                }
                (_, "delay_before_retry") => {
                    own_delay_before_retry = true;
                    delay_before_retry = self.secs(c).unwrap_or(delay_before_retry)
                }
                (_, key) => match key {
                "connect_ip" => match self.arg(c, 0).and_then(parse_ip) {
                    Some(a) => ip = a,
                    None => self.err(c.line, "bad connect_ip"),
                },
                "connect_port" => match self.arg(c, 0).and_then(port_by_name) {
                    Some(p) => port = p,
                    None => self.err(c.line, "bad connect_port"),
                },
                "connect_timeout" => timeout = self.secs(c).unwrap_or(timeout),
                "delay_loop" => interval = self.secs(c).unwrap_or(interval),
                "virtualhost" if http => vhost = self.arg(c, 0).map(str::to_string),
                "http_protocol" if http => match self.arg(c, 0) {
                    Some("1.0") => protocol = (true, false),
                    Some("1.0C" | "1.0c") => protocol = (true, true),
                    Some("1.1") => protocol = (false, true),
                    Some(v) => self.err(c.line, format!("unknown http_protocol `{v}` (1.0, 1.0C or 1.1)")),
                    None => {}
                },
                "enable_sni" if http => enable_sni = c.args.first().is_none_or(|a| !matches!(a.as_str(), "false" | "no" | "off" | "0")),
                "url" if http => urls.push(c),
                "bindto" | "bind_port" | "bind_if" | "fwmark" | "warmup" | "fast_recovery" => {
                    self.err(c.line, format!("`{}` is not supported by lbd's {}", c.key, n.key))
                }
                _ => self.unknown(c, &n.key),
                },
            }
        }
        // keepalived's own defaults: MISC_CHECK retries 0 times, DNS_CHECK 3 times after delay_loop.
        if kind == "MISC_CHECK" && !own_retry {
            retry = 0;
        }
        if kind == "DNS_CHECK" {
            retry = if own_retry { retry } else { 3 };
            delay_before_retry = if own_delay_before_retry { delay_before_retry } else { interval };
        }
        if kind == "MISC_CHECK" {
            let Some(argv) = misc else {
                if !misc_given {
                    self.err(n.line, "MISC_CHECK needs `misc_path`");
                }
                return None;
            };
            let timeout = misc_timeout.unwrap_or(interval);
            let kind = CheckKind::External { argv, dynamic: misc_dynamic };
            let target = SocketAddr::new(ip, port);
            return Some(vec![Check { kind, target, interval, timeout, fail_after: retry + 1, retry_delay: delay_before_retry, rise_after: 1 }]);
        }
        if port == 0 {
            self.err(n.line, format!("{}: no port to connect to (set connect_port)", n.key));
            return None;
        }
        let target = SocketAddr::new(ip, port);
        let mk = |kind| Check { kind, target, interval, timeout, fail_after: retry + 1, retry_delay: delay_before_retry, rise_after: 1 };
        match kind {
            "TCP_CHECK" => return Some(vec![mk(CheckKind::Connect)]),
            "SMTP_CHECK" => return Some(vec![mk(CheckKind::Smtp { helo })]),
            "DNS_CHECK" => return Some(vec![mk(CheckKind::Dns { name: dns_name, qtype: dns_type, tcp: false, expect: None })]),
            "UDP_CHECK" => {
                if min_reply > max_reply {
                    self.err(n.line, format!("UDP_CHECK: min_reply_length {min_reply} > max_reply_length {max_reply}: it would always fail"));
                }
                let reply = require_reply.map(|(data, mask)| crate::health::udp::UdpReply { data, mask, min_len: min_reply, max_len: max_reply });
                // keepalived sends random bytes without `payload`; what they are does not matter.
                let payload = payload.unwrap_or_else(|| b"lbd UDP_CHECK".to_vec());
                return Some(vec![mk(CheckKind::Udp { payload, reply })]);
            }
            _ => {}
        }
        if urls.is_empty() {
            self.err(n.line, format!("{} needs at least one `url {{ path ... }}`", n.key));
            return None;
        }
        let mut out = Vec::new();
        for u in urls {
            if let Some(kind) = self.url(u, n.key == "SSL_GET", target, vhost.as_deref(), enable_sni) {
                out.push(mk(CheckKind::Http(HttpCheck { http10: protocol.0, connection_close: protocol.1, ..kind })));
            }
        }
        Some(out)
    }

    /// One `url { ... }` of HTTP_GET/SSL_GET.
    fn url(&mut self, u: &Node, ssl: bool, target: SocketAddr, vhost: Option<&str>, enable_sni: bool) -> Option<HttpCheck> {
        let mut path = None;
        let mut status = Vec::new();
        let mut uhost = vhost.map(str::to_string);
        let mut digest = None;
        let mut regex: Option<(usize, String)> = None;
        let mut regex_no_match = false;
        let mut flags = String::new();
        for c in u.children.iter().flatten() {
            match c.key.as_str() {
                "path" => path = self.arg(c, 0).map(str::to_string),
                "status_code" => {
                    for a in &c.args {
                        let r = match a.split_once('-') {
                            Some((lo, hi)) => lo.parse().ok().zip(hi.parse().ok()),
                            None => a.parse().ok().map(|s| (s, s)),
                        };
                        match r {
                            Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => status.push((lo, hi)),
                            _ => self.err(c.line, format!("bad status_code `{a}` (100-599, or a range LOW-HIGH)")),
                        }
                    }
                }
                "virtualhost" => uhost = self.arg(c, 0).map(str::to_string),
                "digest" => match self.arg(c, 0) {
                    Some(d) if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) => digest = Some(d.to_ascii_lowercase()),
                    Some(d) => self.err(c.line, format!("digest `{d}` is not an MD5 (32 hex digits)")),
                    None => {}
                },
                "regex" => regex = self.arg(c, 0).map(|r| (c.line, r.to_string())),
                "regex_no_match" => regex_no_match = true,
                // PCRE2 options with an equivalent inline flag; the others change matching
                // in ways lbd's regex engine does not offer.
                "regex_options" => {
                    for o in &c.args {
                        match o.as_str() {
                            "caseless" => flags.push('i'),
                            "multiline" => flags.push('m'),
                            "dotall" => flags.push('s'),
                            "extended" => flags.push('x'),
                            "ungreedy" => flags.push('U'),
                            _ => self.err(c.line, format!("regex_options `{o}` is not supported by lbd (caseless, multiline, dotall, extended, ungreedy are)")),
                        }
                    }
                }
                "regex_min_offset" | "regex_max_offset" | "regex_stack" => {
                    self.err(c.line, format!("`{}` is not supported by lbd's {}", c.key, if ssl { "SSL_GET" } else { "HTTP_GET" }))
                }
                _ => self.unknown(c, "url"),
            }
        }
        let Some(path) = path else {
            self.err(u.line, "url needs a `path`");
            return None;
        };
        if !path.starts_with('/') {
            self.err(u.line, format!("url path `{path}` must start with `/`"));
            return None;
        }
        let regex = match regex {
            None => None,
            Some((line, r)) => {
                let r = if flags.is_empty() { r } else { format!("(?{flags}){r}") };
                if let Err(e) = regex_lite::Regex::new(&r) {
                    self.err(line, format!("regex {r:?} is not a regular expression lbd reads: {e}"));
                    return None;
                }
                Some(r)
            }
        };
        if status.is_empty() {
            status.push((200, 299));
        }
        // keepalived's Host header: the virtualhost as is, else the address with the port.
        let host = match (&uhost, target) {
            (Some(h), _) => h.clone(),
            (None, SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            (None, a) => a.to_string(),
        };
        let tls = ssl.then(|| TlsCheck { send_sni: enable_sni && uhost.is_some(), server_name: uhost, ca_pem: self.ssl.ca_pem.clone(), client_pem: self.ssl.client_pem.clone() });
        Some(HttpCheck {
            method: "GET".into(),
            path,
            host,
            tls,
            status,
            regex,
            regex_no_match,
            digest,
            follow_redirects: false,
            http10: true,
            connection_close: false,
        })
    }
}

/// What a real or sorry server of the other address family than its service's is told: IPVS
/// takes one only for tunnel forwarding.
fn mixed_family_msg(what: &str, addr: &IpAddr) -> String {
    format!("{what} {addr}: address family differs from the virtual server's (only TUN real servers may differ)")
}

/// The tunnel options after `TUN`: `[type {ipip|gue port NUM|gre} [nocsum|csum|remcsum]]`.
fn parse_tunnel(w: &[&str]) -> Result<Tunnel, String> {
    const IPIP: u8 = 0;
    const GUE: u8 = 1;
    const GRE: u8 = 2;
    let mut t = Tunnel::default();
    let mut it = w.iter().copied();
    match it.next() {
        None => return Ok(t),
        Some("type") => {}
        Some(x) => return Err(format!("unexpected `{x}` after TUN (type ipip|gue|gre)")),
    }
    match it.next() {
        Some("ipip") => t.kind = IPIP,
        Some("gue") => {
            t.kind = GUE;
            match (it.next(), it.next()) {
                (Some("port"), Some(p)) => match p.parse::<u16>() {
                    Ok(p) if p > 0 => t.port = p,
                    _ => return Err(format!("bad gue port `{p}`")),
                },
                _ => return Err("TUN type gue needs `port NUM`".into()),
            }
        }
        Some("gre") => t.kind = GRE,
        x => return Err(format!("unknown tunnel type `{}` (ipip, gue or gre)", x.unwrap_or(""))),
    }
    match it.next() {
        None => {}
        Some(c) if t.kind == IPIP => return Err(format!("`{c}`: ipip tunnels take no checksum option")),
        Some("nocsum") => t.flags = 0,
        Some("csum") => t.flags = 1,
        Some("remcsum") if t.kind == GUE => t.flags = 2,
        Some(c) => return Err(format!("bad tunnel checksum option `{c}` (nocsum, csum{})", if t.kind == GUE { " or remcsum" } else { "" })),
    }
    if let Some(x) = it.next() {
        return Err(format!("unexpected `{x}` after the tunnel options"));
    }
    Ok(t)
}
